"""
Internal RPC between mmo's processes: AMP over mutual TLS.

Commands and their errors are declared in L{mmo.rpc.commands}; the protocol,
factories, listener and reconnecting client are in L{mmo.rpc.service}.  See
C{docs/rpc.md}.
"""

from mmo.rpc.commands import (
    ERRORS,
    BadRequest,
    Command,
    Conflict,
    NotFound,
    Ping,
    Refused,
    RPCError,
    Unavailable,
)
from mmo.rpc.service import (
    RPCClientFactory,
    RPCClientService,
    RPCProtocol,
    RPCServerFactory,
    listen,
    listen_port,
    peer_endpoint,
)

__all__ = [
    "ERRORS",
    "BadRequest",
    "Command",
    "Conflict",
    "NotFound",
    "Ping",
    "Refused",
    "RPCError",
    "Unavailable",
    "RPCClientFactory",
    "RPCClientService",
    "RPCProtocol",
    "RPCServerFactory",
    "listen",
    "listen_port",
    "peer_endpoint",
]
