"""
Unix-socket links between the processes of one machine
(C{[deployment] rpc_unix_dir}).

When the config names a directory, every process with an RPC listener also
listens on C{DIR/NAME.sock}, and a process reaches a peer on the same
machine (L{mmo.config.Config.same_machine}) there, without TLS; links
across machines stay mutual TLS.

What stands in for the certificates:

  - B{who can connect}: the directory is made mode 0700 and each socket
    0600, both owned by the user the processes run as; a directory that
    exists with other owners or wider permissions fails the start.  Only
    that user (and root) can connect, the same users who can read the
    processes' private keys in C{tls_dir} (0600 too) and so could pass
    for any process over TLS;
  - B{checked on every link}: each end reads the other's user from the
    kernel (C{SO_PEERCRED}) and closes the link unless it is its own
    (L{peer_uid});
  - B{which process it is}: the client names itself in its first command
    (L{mmo.rpc.commands.Identify}); the server accepts a name of the
    deployment's processes (its C{allowed}) and answers with its own,
    which the client checks as it checks the server certificate's name.
    The C{SENDERS} checks then apply to that name's kind, as over TLS.

So a Unix link is exactly as strong as the file permissions of the keys it
replaces: what can pass for a process over it could read that process's
key.
"""

from __future__ import annotations

import os
import socket
import stat
import struct

from twisted.internet import defer, endpoints, interfaces
from zope.interface import implementer

from mmo.config import Config, ConfigError, ProcessSection

#: struct ucred: pid, uid, gid.
_UCRED = struct.Struct("3i")


def unix_link(config: Config, process: ProcessSection, peer: ProcessSection) -> bool:
    """Whether C{process} reaches C{peer} over a Unix socket: enabled, and one machine."""
    return bool(config.deployment.rpc_unix_dir) and config.same_machine(process, peer)


def prepare_directory(config: Config) -> str:
    """
    Make the socket directory (mode 0700) or check the one there: owned by
    this process's user, no access for group or others.

    @raise ConfigError: It cannot be made, or it is open to other users.
    """
    directory = config.deployment.rpc_unix_dir
    key = ("deployment", "rpc_unix_dir")
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        status = os.stat(directory)
    except OSError as e:
        raise ConfigError(f"cannot make {directory}: {e.strerror or e}", key, config.file)
    if status.st_uid != os.getuid() or stat.S_IMODE(status.st_mode) & 0o077:
        raise ConfigError(
            f"{directory} must be owned by uid {os.getuid()} with mode 0700 "
            f"(it is uid {status.st_uid}, mode {stat.S_IMODE(status.st_mode):04o}): "
            "only the deployment's own user may reach its sockets",
            key,
            config.file,
        )
    return directory


def server_description(config: Config, process: ProcessSection) -> str:
    """
    The endpoint description of C{process}'s Unix-socket listener (socket
    mode 0600), its directory made or checked.

    @raise ConfigError: As L{prepare_directory}.
    """
    prepare_directory(config)
    path = config.rpc_socket(process).replace("\\", "\\\\").replace(":", "\\:")
    # lockfile: a socket left by a crashed process is replaced; one in use is not.
    return f"unix:{path}:mode=600:lockfile=1"


def client_endpoint(config: Config, peer: ProcessSection, reactor):
    """Where to reach C{peer} over a Unix socket."""
    return endpoints.UNIXClientEndpoint(reactor, config.rpc_socket(peer))


def is_unix(transport) -> bool:
    """Whether C{transport} is a Unix-socket connection."""
    return interfaces.IUNIXTransport.providedBy(transport)


def peer_uid(transport) -> int | None:
    """The user id of the process at the other end of C{transport} (SO_PEERCRED)."""
    handle = transport.getHandle()
    try:
        _, uid, _ = _UCRED.unpack(
            handle.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
        )
    except (OSError, AttributeError):
        return None
    return uid


@implementer(interfaces.IListeningPort)
class ListeningPorts:
    """
    A process's RPC listening ports (TLS, and Unix socket) as one: stopping
    it stops both; its host is the first's (the TCP port peers elsewhere use).
    """

    def __init__(self, ports):
        self.ports = list(ports)

    def startListening(self) -> None:
        for port in self.ports:
            port.startListening()

    def stopListening(self) -> defer.Deferred:
        return defer.gatherResults(
            [defer.maybeDeferred(port.stopListening) for port in self.ports], consumeErrors=True
        )

    def getHost(self):
        return self.ports[0].getHost()
