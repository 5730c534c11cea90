"""
Listeners in the config: the L{ServerEndpoint} field, which checks a Twisted
server endpoint description, L{listening_address}, which tells where a
description would listen so that the deployment-wide checks can find two
listeners on one port, and the C{[listeners]} section (L{ListenersSection}),
the limits every client-facing listener applies to its connections.

Both parse descriptions with C{endpoints.serverFromString} and learn the
address through the endpoint's public C{listen}, given a reactor that only
records the call (L{_ListenRecorder}): no endpoint attribute is read, and
nothing ever listens.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass

from twisted.internet import endpoints
from twisted.internet.protocol import Factory

from mmo.config.schema import ConfigError, Number, Section, Str, StrList

#: Interfaces that mean "every address of the machine".
WILDCARD_INTERFACES = ("", "0.0.0.0", "::")


@dataclass(frozen=True)
class ListeningAddress:
    """
    Where a listener binds: a TCP C{port} on an C{interface} (C{""}, C{"::"}
    or C{"0.0.0.0"}: every interface), or the C{path} of a UNIX socket.
    """

    port: int | None = None
    interface: str = ""
    path: str | None = None

    def clashes(self, other: ListeningAddress) -> bool:
        """
        Whether the two cannot both listen on one machine: one UNIX socket
        path, or one TCP port (not 0, which the system chooses at start) on
        interfaces that meet.
        """
        if self.path is not None or other.path is not None:
            return self.path == other.path
        if not self.port or self.port != other.port:
            return False
        return (
            self.interface in WILDCARD_INTERFACES
            or other.interface in WILDCARD_INTERFACES
            or self.interface == other.interface
        )

    def local(self) -> bool:
        """Whether only this machine can reach it: a Unix socket, or a loopback interface."""
        if self.path is not None:
            return True
        try:
            return ipaddress.ip_address(self.interface).is_loopback
        except ValueError:
            return False

    def __str__(self) -> str:
        return self.path if self.path is not None else str(self.port)


class _ListenRecorder:
    """
    A stand-in reactor for endpoints built from a description: it has the
    listen methods of C{IReactorTCP} and C{IReactorUNIX}, and records the
    address an endpoint's C{listen} asks for instead of listening.

    @ivar address: The L{ListeningAddress} of the last listen call, if any.
    """

    address: ListeningAddress | None = None

    def listenTCP(self, port, factory, backlog=50, interface=""):
        self.address = ListeningAddress(port=port, interface=interface)

    def listenUNIX(self, address, factory, backlog=50, mode=0o666, wantPID=0):
        self.address = ListeningAddress(path=os.path.abspath(address))


#: The endpoints whose address is known: those that listen through
#: C{listenTCP} or C{listenUNIX}.  Others (C{systemd:}, plugins) are not
#: asked to listen, since they could do more than call the reactor.
_RECORDED_ENDPOINTS = (
    endpoints.TCP4ServerEndpoint,
    endpoints.TCP6ServerEndpoint,
    endpoints.UNIXServerEndpoint,
)


def listening_address(description: str) -> ListeningAddress | None:
    """
    Where the endpoint C{description} listens: a TCP port and interface, or
    a UNIX socket path (made absolute); C{None} for other kinds of
    endpoint.

    @raise ValueError: C{description} is not a valid endpoint (L{ServerEndpoint}
        has already checked those of a loaded config).
    """
    recorder = _ListenRecorder()
    endpoint = endpoints.serverFromString(recorder, description)
    if not isinstance(endpoint, _RECORDED_ENDPOINTS):
        return None
    # The recorder returns at once, so the Deferred has fired: nothing to wait for.
    endpoint.listen(Factory())
    return recorder.address


class ServerEndpoint(Str):
    """
    A Twisted server endpoint description (C{tcp:7000:interface=127.0.0.1}),
    checked by parsing it.  TLS is added by mmo from the C{[tls]} section, so
    endpoint types that do their own TLS are refused.  An empty string means
    "no listener" and reads as C{None}.
    """

    TLS_TYPES = ("ssl", "tls", "le", "lets")

    def convert(self, value, path, ctx):
        value = super().convert(value, path, ctx)
        if not value:
            return None
        kind = value.split(":", 1)[0].lower()
        if kind in self.TLS_TYPES:
            raise ConfigError(
                f"{value!r}: TLS is added by mmo from the [tls] section; "
                f"use a plain endpoint such as 'tcp:7000'",
                path,
            )
        try:
            # The reactor is only stored by the parsers, never used.
            endpoints.serverFromString(_ListenRecorder(), value)
        except Exception as e:
            raise ConfigError(f"{value!r} is not a valid endpoint: {_reason(e)}", path)
        return value

    def missing(self, path, ctx):
        return self.convert(self.default, path, ctx) if self.default else None


def _reason(e: BaseException) -> str:
    """Why a description did not parse, for an error message."""
    text = str(e)
    if isinstance(e, KeyError):
        text = f"unknown endpoint type {e.args[0]!r}" if e.args else "unknown endpoint type"
    return text or type(e).__name__


def check_network(value: str) -> str | None:
    """An IP address or network (C{10.0.0.0/8}, C{::1}), or why not."""
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return "not an IP address or network"
    return None


class ListenersSection(Section):
    """
    Limits of every client-facing listener (TLS and WebSocket; login,
    gateway and standalone): what one connection may leave unsent, and
    how many connections, and how fast, one address may open.
    """

    fields = {
        "max_unsent": Number(
            4 * 1024 * 1024,
            minimum=64 * 1024,
            maximum=1024 * 1024 * 1024,
            doc="Bytes a connection may queue for a client that does not read, beyond "
            "the system's socket buffer, before it is closed (goodbye 'slow_reader').",
        ),
        "per_address": Number(
            200,
            minimum=0,
            maximum=1000000,
            doc="Connections one address may hold at once on this process's client "
            "listeners; 0: no limit.",
        ),
        "per_address_rate": Number(
            10.0,
            minimum=0,
            maximum=1000000,
            kind=float,
            doc="New connections per second one address may open on average; 0: no limit.",
        ),
        "per_address_burst": Number(
            50, minimum=1, maximum=1000000, doc="New connections one address may open at once."
        ),
        "exempt": StrList(
            ["127.0.0.0/8", "::1"],
            item=check_network,
            doc="Addresses and networks the per-address limits do not apply to "
            "(loopback by default, for development, tests and benchmarks).",
        ),
        "max_addresses": Number(
            65536,
            minimum=16,
            maximum=10000000,
            doc="Addresses the per-address limits keep track of at once.",
        ),
    }
