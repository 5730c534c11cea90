"""
The internal RPC base: AMP between the processes of a deployment, over mutual TLS
(or, between the processes of one machine when the config says so, a Unix
socket: L{mmo.rpc.unix}).

Every process may listen for internal links (L{listen}, on C{processes.NAME.rpc})
and keep links to the peers it needs (L{RPCClientService}).  Both sides present a
certificate of the deployment's CA (L{mmo.tls}); the client checks that the
server is the peer it meant to reach, the server checks that the client is one
of the deployment's processes.  Only then are commands dispatched.

The pieces follow the usual Twisted split:

  - L{RPCProtocol} authenticates the link and dispatches commands to
    responders; services subclass it and add C{@SomeCommand.responder}s.
  - L{RPCServerFactory} and L{RPCClientFactory} hold the configuration, build
    protocols and know which links are up.
  - L{listen} / L{listen_port} and L{RPCClientService} put TLS around them and
    manage listening and reconnecting.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterable

from cryptography import x509
from twisted.application import service, strports
from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import IService
from twisted.internet import defer, endpoints, protocol
from twisted.internet.interfaces import IHandshakeListener, IStreamClientEndpoint
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import implementer

import mmo
from mmo.compat import WriteThroughTLSFactory
from mmo.config import Config, ConfigError, ProcessSection
from mmo.rpc import unix
from mmo.rpc.commands import ADMIN, SENDERS, Identify, Ping, Refused, Unavailable
from mmo.tls import (
    HandshakeLogging,
    describe_failure,
    internal_client_options,
    internal_server_options,
    peer_address,
    peer_identity,
)

#: Default seconds L{RPCClientService.callRemote} waits for a link before it
#: gives up with L{Unavailable}.
CALL_TIMEOUT = 10.0

#: Reconnect delays: 0.5 s after the first failure, growing 1.5 times per
#: failure up to 30 s, plus up to 1 s of jitter so that every process of a
#: restarted deployment does not reconnect in the same instant.
RETRY_INITIAL = 0.5
RETRY_MAX = 30.0


def _default_reactor(reactor):
    if reactor is None:
        from twisted.internet import reactor
    return reactor


def _section(config: Config, process: ProcessSection | str) -> ProcessSection:
    """C{process}, given as its section or its name."""
    if isinstance(process, ProcessSection):
        return process
    return config.process(process)


def _certificate_names(transport) -> str:
    """The DNS names in the peer certificate on C{transport}, for the log."""
    peer = transport.getPeerCertificate()
    if peer is None:
        return "no certificate"
    try:
        extension = peer.to_cryptography().extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        )
    except x509.ExtensionNotFound:
        return "no DNS names"
    names = extension.value.get_values_for_type(x509.DNSName)
    return ", ".join(names) if names else "no DNS names"


def _command_name(name: bytes) -> str:
    """A command's wire name, for logs."""
    return name.decode("ascii", "replace") if name else "?"


@implementer(IHandshakeListener)
class RPCProtocol(HandshakeLogging, amp.AMP):
    """
    One authenticated AMP link between two processes, either end.

    The link counts as up once TLS is done and the peer is known:

      - B{server side}: the client certificate (already checked against the
        deployment CA by TLS) must name one of C{factory.allowed}; otherwise
        the refusal is logged and the connection aborted before any command
        is read.
      - B{client side}: TLS has already checked that the server is
        C{factory.expected_peer}.  With TLS 1.3 the server only judges our
        certificate after our side of the handshake is over, so the link is
        announced only when a first L{Ping} has been answered: a link the
        server refuses never looks usable.

    Then the factory hears of it (C{peer_connected}, later C{peer_disconnected}).
    A link that is not up within C{factory.handshake_timeout} seconds is
    aborted, so that a silent peer cannot hold a socket or a reconnect loop.

    Services subclass this and add responders with C{@SomeCommand.responder}.
    A command is carried out only if the peer's kind (its process's kind in
    the config, or C{admin} for the operators' certificate) is one of those
    C{senders} allows for it (by default L{mmo.rpc.commands.SENDERS}); any
    other peer is answered L{Refused}, and the first refusal of each command
    on a link is logged.
    A responder that raises one of L{mmo.rpc.commands.ERRORS} answers with that
    error; any other exception is logged here and answered with AMP's
    C{UNKNOWN} error code, and the link stays up: one buggy request must not
    cut every other request on the link.

    The commands without an answer a subclass lists in C{heard_directly}
    (command -> the name of its responder method) are carried out straight
    from their box once the peer was found allowed to send them (their
    first box goes AMP's whole way, L{dispatchCommand}'s check included):
    a zone's tick on a gateway's link, a gateway's inputs on a zone's.
    AMP's dispatch of a box that is never answered (the responder's look-up
    and serialization wrapper, two Deferreds and their callbacks) costs
    more than most of what such a responder does.  The responder is called
    with the box's arguments (C{Command.parseArguments}); what it returns
    is dropped, and what it raises is logged.

    The protocol's factory provides C{process}, C{reactor}, C{expected_peer}
    (C{None} on the server side), C{allowed}, C{handshake_timeout},
    C{peer_connected} and C{peer_disconnected}: see L{RPCServerFactory} and
    L{RPCClientFactory}.

    @ivar peer: The peer's process name, once known; C{None} before.
    @ivar ready: Whether the link is up (and the factory was told).
    """

    log = Logger()
    #: Command -> the kinds of peer that may send it.
    senders: dict[type[amp.Command], frozenset[str]] = SENDERS
    peer: str | None = None
    #: The commands without an answer the peer takes (L{takes}): on the
    #: client side from the first L{Ping}, on the server side once asked
    #: (L{ask_takes}).
    peer_takes: frozenset[str] = frozenset()
    ready = False
    _timer = None
    _lost = False
    _refused: frozenset[bytes] = frozenset()
    #: The commands the peer was found allowed to send (L{dispatchCommand}).
    _allowed: frozenset[bytes] = frozenset()
    #: Commands without an answer carried out straight from their box once
    #: cleared: command -> the name of its responder method (see above).
    heard_directly: dict[type[amp.Command], str] = {}
    #: C{heard_directly} by wire name: (command, responder function).
    _direct: dict[bytes, tuple[type[amp.Command], Callable]] = {}

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        direct = {}
        for command, method in cls.heard_directly.items():
            if command.requiresAnswer:
                raise TypeError(
                    f"{cls.__name__}.heard_directly: {command.__name__} is answered; "
                    "only a command without an answer can be heard directly"
                )
            responder = getattr(cls, method, None)
            if not callable(responder):
                raise TypeError(f"{cls.__name__}.heard_directly: no method {method!r}")
            direct[command.commandName] = (command, responder)
        cls._direct = direct

    # -- connection life cycle -------------------------------------------

    def connectionMade(self) -> None:
        super().connectionMade()
        timeout = self.factory.handshake_timeout
        if timeout:
            self._timer = self.factory.reactor.callLater(timeout, self._too_slow, timeout)
        if unix.is_unix(self.transport):
            self._unix_link()

    def _unix_link(self) -> None:
        """
        A Unix-socket link: no TLS, so no certificate names the peer.  Its
        user must be ours (the socket's permissions let no other in, this
        checks it); then the client names itself with L{Identify} and the
        server answers with its name, checked as a certificate's would be.
        """
        # No TLS handshake to wait for, nor to log as refused.
        self.tlsHandshakeDone = True
        uid = unix.peer_uid(self.transport)
        if uid != os.getuid():
            self.log.warn(
                "RPC refused {address}: a Unix-socket peer of uid {uid}, not ours ({ours})",
                address=peer_address(self.transport),
                uid=uid,
                ours=os.getuid(),
            )
            self._cancel_timer()
            self.transport.abortConnection()
            return
        expected = self.factory.expected_peer
        if expected is not None:
            self.peer = expected
            self._confirm(self.callRemote(Identify, name=self.factory.process.name))

    def handshakeCompleted(self) -> None:
        HandshakeLogging.handshakeCompleted(self)
        expected = self.factory.expected_peer
        if expected is not None:
            self.peer = expected
            self._confirm(self.callRemote(Ping, nonce=random.getrandbits(31)))
            return
        name = peer_identity(self.transport, self.factory.allowed)
        if name is None:
            self.log.warn(
                "RPC refused {address}: its certificate ({names}) names none of the "
                "processes allowed to connect ({allowed})",
                address=peer_address(self.transport),
                names=_certificate_names(self.transport),
                allowed=", ".join(self.factory.allowed) or "none",
            )
            self._cancel_timer()
            self.transport.abortConnection()
            return
        self.peer = name
        self._up()

    def connectionLost(self, reason: Failure) -> None:
        self._lost = True
        self._cancel_timer()
        HandshakeLogging.connectionLost(self, reason)
        # HandshakeLogging.connectionLost does not call up; when it does not,
        # AMP still has to fail the outstanding calls.  (AMP clears
        # self.transport, which tells whether it already ran.)
        if self.transport is not None:
            amp.AMP.connectionLost(self, reason)
        if self.ready:
            self.ready = False
            self.log.info(
                "RPC link with {peer} closed: {why}", peer=self.peer, why=describe_failure(reason)
            )
            self.factory.peer_disconnected(self, reason)

    def _confirm(self, first: defer.Deferred) -> None:
        """
        Client side: the link is up when the server has answered the first
        command (a L{Ping}, or L{Identify} on a Unix socket) with the name
        it was expected to have.
        """

        def answered(response):
            if self._lost:
                return
            if response["name"] != self.peer:
                self.log.warn(
                    "RPC link to {expected} at {address} refused: the server says it is "
                    "{name!r}; two processes share a certificate?",
                    expected=self.peer,
                    address=peer_address(self.transport),
                    name=response["name"],
                )
                self._cancel_timer()
                self.transport.abortConnection()
                return
            self.peer_takes = frozenset(response.get("takes") or ())
            self._up(response["version"])

        def failed(reason):
            self.log.warn(
                "RPC link to {peer} at {address} failed before it was up: {why}",
                peer=self.peer,
                address=peer_address(self.transport),
                why=describe_failure(reason),
            )
            if not self._lost:
                self._cancel_timer()
                self.transport.abortConnection()

        first.addCallbacks(answered, failed)

    def _up(self, version: str | None = None) -> None:
        self._cancel_timer()
        self.ready = True
        if self.factory.expected_peer is None:
            self.log.info(
                "RPC link from {peer} at {address} accepted",
                peer=self.peer,
                address=peer_address(self.transport),
            )
        else:
            self.log.info(
                "RPC link to {peer} at {address} up (mmo {version}; takes {takes})",
                peer=self.peer,
                address=peer_address(self.transport),
                version=version,
                takes=", ".join(sorted(self.peer_takes)) or "no command without an answer",
            )
        self.factory.peer_connected(self)

    def _too_slow(self, timeout: float) -> None:
        self._timer = None
        self.log.warn(
            "RPC link with {address} not up after {timeout} s; closing it",
            address=peer_address(self.transport),
            timeout=timeout,
        )
        self.transport.abortConnection()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    # -- dispatch ----------------------------------------------------------

    def locateResponder(self, name: bytes):
        # The link is TLS from its first byte; AMP's built-in StartTLS would
        # try to start TLS again inside it.
        if name == amp.StartTLS.commandName:
            return None
        return super().locateResponder(name)

    def dispatchCommand(self, box):
        name = box.get(amp.COMMAND, b"")
        if self.peer is None and name == Identify.commandName:
            return super().dispatchCommand(box)
        if self.peer is None:
            # Unreachable over TLS (nothing is read before the peer is known);
            # guards a protocol connected to something else, as in unit tests.
            self.log.warn(
                "RPC command {command} from unauthenticated {address} refused",
                command=_command_name(name),
                address=peer_address(self.transport),
            )
            return defer.fail(amp.RemoteAmpError(Refused.code, "not authenticated"))
        # Every box asks (every turn of a gateway's inputs): the peer's
        # commands found allowed are kept, for the link's life (its peer's
        # kind does not change).
        if name not in self._allowed:
            refusal = self._refusal(name, _command_name(name))
            if refusal is not None:
                return defer.fail(amp.RemoteAmpError(Refused.code, refusal))
        result = super().dispatchCommand(box)
        result.addErrback(self._unexpected, name)
        return result

    def ampBoxReceived(self, box) -> None:
        name = box.get(amp.COMMAND)
        direct = self._direct.get(name)
        if direct is None or amp.ASK in box or name not in self._allowed:
            super().ampBoxReceived(box)
            return
        command, method = direct
        try:
            method(self, **command.parseArguments(box, self))
        except Exception:
            self.log.failure(
                "RPC responder for {command} from {peer} failed",
                command=_command_name(name),
                peer=self.peer,
            )

    def peer_kind(self) -> str | None:
        """
        The kind of the peer: its process's kind in the config, C{"admin"}
        for the operators' certificate, or C{None} for a name the config
        does not know.
        """
        if self.peer == ADMIN:
            return ADMIN
        process = self.factory.config.processes.get(self.peer)
        return process.kind if process is not None else None

    def _refusal(self, name: bytes, command: str) -> str | None:
        """Why the peer may not send the command C{name}, or C{None} if it may."""
        if self.locateResponder(name) is None:
            # Not served here: AMP answers UNHANDLED, as to anyone.
            return None
        kinds = next(
            (kinds for cls, kinds in self.senders.items() if cls.commandName == name), frozenset()
        )
        kind = self.peer_kind()
        if kind in kinds:
            # One of the commands served here: a bounded set to keep.
            self._allowed = self._allowed | {name}
            return None
        allowed = ", ".join(sorted(kinds)) or "no"
        reason = f"{self.peer} ({kind or 'unknown'}) may not send {command}: {allowed} may"
        if name not in self._refused:
            # Once per command and link: a peer that insists fills no log.
            self._refused = self._refused | {name}
            self.log.warn(
                "RPC command {command} from {peer} at {address} refused: a {kind} process "
                "may not send it (only {allowed})",
                command=command,
                peer=self.peer,
                address=peer_address(self.transport),
                kind=kind or "unknown",
                allowed=allowed,
            )
        return reason

    def _unexpected(self, reason: Failure, name: bytes) -> Failure:
        """Log a responder's unexpected exception; answer C{UNKNOWN}, keep the link."""
        if reason.check(amp.RemoteAmpError):
            return reason
        self.log.failure(
            "RPC responder for {command} from {peer} failed",
            reason,
            command=_command_name(name),
            peer=self.peer,
        )
        return Failure(amp.RemoteAmpError(amp.UNKNOWN_ERROR_CODE, "Unknown Error"))

    # -- built-in responders ---------------------------------------------

    @Ping.responder
    def ping(self, nonce: int) -> dict:
        """
        Echo C{nonce}, with this process's name and mmo version, and the
        commands without an answer this end carries out.
        """
        return {"nonce": nonce, **self._about()}

    def _about(self) -> dict:
        """
        What this end says of itself answering a link's first command
        (L{Ping}, L{Identify}): its process name, mmo version and the
        commands without an answer it carries out.
        """
        return {
            "name": self.factory.process.name,
            "version": mmo.__version__,
            "takes": [
                command.commandName.decode("ascii")
                for command in self.senders
                if not command.requiresAnswer
                and self.locateResponder(command.commandName) is not None
            ],
        }

    def takes(self, command: type[amp.Command]) -> bool:
        """
        Whether the peer said, answering the link's first command (a
        L{Ping}, or L{Identify} on a Unix socket) or L{ask_takes}, that it
        carries out C{command} (one without an answer).
        """
        return command.commandName.decode("ascii") in self.peer_takes

    def ask_takes(self) -> defer.Deferred:
        """
        Server side: ask the peer (a L{Ping}) which commands without an
        answer it carries out, into L{peer_takes} (an older peer's answer
        lists none).  Fires with this link then; fails as the ping does.
        """

        def answered(response):
            self.peer_takes = frozenset(response.get("takes") or ())
            return self

        return self.callRemote(Ping, nonce=random.getrandbits(31)).addCallback(answered)

    @Identify.responder
    def identify(self, name: str) -> dict:
        """
        Server side of a Unix-socket link: the client is C{name} if it is
        one of the processes allowed to connect, on this machine.
        """
        if not unix.is_unix(self.transport) or self.factory.expected_peer is not None:
            raise Refused("Identify is for the server of a Unix-socket link")
        if self.peer is not None:
            raise Refused(f"already identified as {self.peer}")
        why = self._identity_refusal(name)
        if why is not None:
            self.log.warn(
                "RPC refused {address}: {why}", address=peer_address(self.transport), why=why
            )
            self._cancel_timer()
            self.transport.loseConnection()
            raise Refused(why)
        self.peer = name
        self._up()
        return self._about()

    def _identity_refusal(self, name: str) -> str | None:
        """Why a Unix-socket client may not be C{name}, or C{None}."""
        config = self.factory.config
        process = config.processes.get(name)
        if name not in self.factory.allowed or process is None:
            return f"{name!r} names none of the processes allowed to connect"
        if not config.same_machine(self.factory.process, process):
            return f"{name!r} does not run on this machine"
        return None


class RPCServerFactory(protocol.ServerFactory):
    """
    Builds the protocols of C{process}'s internal listener.

    Subclass it with C{protocol = YourRPCProtocol} to serve your commands;
    override L{peer_connected} / L{peer_disconnected} to follow links (call
    up to keep L{connections} right).

    @ivar config: The deployment's L{Config}.
    @ivar process: This process's L{ProcessSection}.
    @ivar reactor: The reactor (for timers).
    @ivar allowed: Names of the processes allowed to connect, in the order
        they are tried against the client certificate: by default every
        process of the deployment.
    @ivar handshake_timeout: Seconds a connection has to become an
        authenticated link (C{[wire] handshake_timeout}).
    @ivar connections: The links that are up.
    """

    protocol = RPCProtocol
    noisy = False
    #: Servers do not expect a particular peer: any of L{allowed} may connect.
    expected_peer = None

    def __init__(
        self,
        config: Config,
        process: ProcessSection,
        reactor=None,
        allowed: Iterable[str] | None = None,
    ):
        self.config = config
        self.process = process
        self.reactor = _default_reactor(reactor)
        self.allowed = tuple(config.processes if allowed is None else allowed)
        self.handshake_timeout = config.wire.handshake_timeout
        self.connections: set[RPCProtocol] = set()

    def peer_connected(self, link: RPCProtocol) -> None:
        """C{link} is authenticated: C{link.peer} names the client process."""
        self.connections.add(link)

    def peer_disconnected(self, link: RPCProtocol, reason: Failure) -> None:
        """C{link}, once up, has closed."""
        self.connections.discard(link)


class RPCClientFactory(protocol.Factory):
    """
    Builds the protocols of the link from C{process} to C{peer} and keeps
    the one that is up, for L{RPCClientService}.

    @ivar connection: The link that is up, or C{None}.
    @ivar failures: Connection attempts that failed (or ended before the
        link was up) since the last link was up; the reconnect delay grows
        with it.
    """

    protocol = RPCProtocol
    noisy = False
    #: Clients check the server's identity, not a list of names.
    allowed: tuple[str, ...] = ()

    def __init__(self, config: Config, process: ProcessSection, peer: ProcessSection, reactor=None):
        self.config = config
        self.process = process
        self.peer = peer
        self.reactor = _default_reactor(reactor)
        self.handshake_timeout = config.wire.handshake_timeout
        self.connection: RPCProtocol | None = None
        self.failures = 0
        self._waiters: list[defer.Deferred] = []

    @property
    def expected_peer(self) -> str:
        """The process name the server must be."""
        return self.peer.name

    def peer_connected(self, link: RPCProtocol) -> None:
        self.connection = link
        self.failures = 0
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(link)

    def peer_disconnected(self, link: RPCProtocol, reason: Failure) -> None:
        if self.connection is link:
            self.connection = None

    def fresh(self) -> RPCClientFactory:
        """A factory like this one, for another link to its peer (L{RPCClientService.relink})."""
        return type(self)(self.config, self.process, self.peer, self.reactor)

    def when_connected(self) -> defer.Deferred:
        """
        A L{Deferred} that fires with the link that is up, now or when there
        is one.  Cancelling it stops waiting.
        """
        if self.connection is not None:
            return defer.succeed(self.connection)
        waiter = defer.Deferred(self._waiters.remove)
        self._waiters.append(waiter)
        return waiter

    def fail_waiters(self, error: Exception) -> None:
        """Fail every L{when_connected} waiter with C{error}."""
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.errback(error)


def _require_rpc(config: Config, process: ProcessSection) -> str:
    if not process.rpc:
        raise ConfigError(
            "is not set: the process has no internal (RPC) listener",
            ("processes", process.name, "rpc"),
            config.file,
        )
    return process.rpc


def _server_tls(config, process, factory, reactor) -> TLSMemoryBIOFactory:
    if factory is None:
        factory = RPCServerFactory(config, process, reactor)
    return WriteThroughTLSFactory(internal_server_options(config, process), False, factory)


@implementer(IStreamClientEndpoint)
class _TLSClientEndpoint:
    """
    C{endpoints.wrapClientTLS}'s endpoint, whose links send and read as
    clients' connections do (L{WriteThroughTLSFactory}): a link writes
    every turn it has boxes to send (a gateway's players' inputs, a zone's
    tick of pushes to each gateway) and reads every box the other end
    sends; Twisted's TLS protocol buffered each write for the socket's
    writability (two C{epoll_ctl} and a turn) and raised an exception at
    the end of every read.
    """

    def __init__(self, options, endpoint: IStreamClientEndpoint):
        self._options = options
        self._endpoint = endpoint

    def connect(self, factory) -> defer.Deferred:
        tls = WriteThroughTLSFactory(self._options, True, factory)
        return self._endpoint.connect(tls).addCallback(lambda protocol: protocol.wrappedProtocol)


def listen(
    config: Config,
    process: ProcessSection | str,
    factory: RPCServerFactory | None = None,
    reactor=None,
) -> IService:
    """
    A service that listens on C{process.rpc} for internal links, with mutual
    TLS around C{factory} (by default a plain L{RPCServerFactory}), and with
    C{[deployment] rpc_unix_dir} also on its Unix socket there (L{mmo.rpc.unix}).

    The certificates are read now, so a missing one fails the start.

    @raise ConfigError: C{process.rpc} is not set, or a certificate is missing.
    """
    process = _section(config, process)
    description = _require_rpc(config, process)
    reactor = _default_reactor(reactor)
    tls = _server_tls(config, process, factory, reactor)
    listening = strports.service(description, tls, reactor=reactor)
    if not config.deployment.rpc_unix_dir:
        return listening
    both = service.MultiService()
    listening.setServiceParent(both)
    local = unix.server_description(config, process)
    strports.service(local, tls.wrappedFactory, reactor=reactor).setServiceParent(both)
    return both


def listen_port(
    config: Config,
    process: ProcessSection | str,
    factory: RPCServerFactory | None = None,
    reactor=None,
) -> defer.Deferred:
    """
    Listen now, like L{listen} but without a service: a L{Deferred} that fires
    with the L{IListeningPort} (its C{getHost().port} is the real port when the
    endpoint asks for port 0).  The caller stops it with C{stopListening}.

    @raise ConfigError: As L{listen}.
    """
    process = _section(config, process)
    description = _require_rpc(config, process)
    reactor = _default_reactor(reactor)
    tls = _server_tls(config, process, factory, reactor)
    if not config.deployment.rpc_unix_dir:
        return endpoints.serverFromString(reactor, description).listen(tls)
    # The socket directory is checked before anything listens.
    local = endpoints.serverFromString(reactor, unix.server_description(config, process))
    listening = endpoints.serverFromString(reactor, description).listen(tls)

    async def both():
        tcp = await listening
        try:
            return unix.ListeningPorts([tcp, await local.listen(tls.wrappedFactory)])
        except Exception:
            await tcp.stopListening()
            raise

    return defer.ensureDeferred(both())


def _split_description(description: str) -> tuple[str, list[str], dict[str, str]]:
    """An endpoint string's type, positional arguments and keyword arguments."""
    fields, current, chars = [], [], iter(description)
    for char in chars:
        if char == "\\":
            current.append(next(chars, ""))
        elif char == ":":
            fields.append("".join(current))
            current = []
        else:
            current.append(char)
    fields.append("".join(current))
    positional = [f for f in fields[1:] if "=" not in f]
    keywords = dict(f.split("=", 1) for f in fields[1:] if "=" in f)
    return fields[0].lower(), positional, keywords


def peer_endpoint(
    config: Config, peer: ProcessSection | str, reactor=None
) -> IStreamClientEndpoint:
    """
    The plain (pre-TLS) client endpoint for C{peer}'s internal listener: its
    first C{hosts} entry at the port of its C{rpc} TCP listener, or the
    socket of a UNIX one.

    @raise ConfigError: The peer has no RPC listener, or where to connect to
        cannot be derived from it (port 0, no hosts, another endpoint type):
        pass an endpoint to L{RPCClientService} instead.
    """
    peer = _section(config, peer)
    description = _require_rpc(config, peer)
    reactor = _default_reactor(reactor)
    key = ("processes", peer.name, "rpc")
    kind, positional, keywords = _split_description(description)
    if kind in ("tcp", "tcp6"):
        port = int(keywords.get("port") or positional[0])
        if port == 0:
            raise ConfigError(
                f"{description!r} listens on any free port; cannot tell where to connect",
                key,
                config.file,
            )
        if not peer.hosts:
            raise ConfigError(
                "is empty: no host to reach the process at",
                ("processes", peer.name, "hosts"),
                config.file,
            )
        return endpoints.HostnameEndpoint(reactor, peer.hosts[0], port)
    if kind == "unix":
        return endpoints.UNIXClientEndpoint(reactor, keywords.get("address") or positional[0])
    raise ConfigError(
        f"cannot tell where to connect to a {kind!r} listener; pass the endpoint explicitly",
        key,
        config.file,
    )


class RPCClientService(service.Service):
    """
    Keeps one link from C{process} to C{peer} up: connects with mutual TLS,
    reconnects with exponential backoff after a failure or a drop, and sends
    commands over whichever link is up.

    The endpoint is derived from the peer's config (L{peer_endpoint}) unless
    one is given (tests, or peers found in the directory); TLS is added
    here either way.  With C{[deployment] rpc_unix_dir}, a peer on the same
    machine is reached on its Unix socket instead, without TLS
    (L{mmo.rpc.unix}).

    A L{ClientService} does the connecting.  This service owns it rather
    than being one: after L{relink} the connection ends while this service
    goes on, handing its callers to the successor.

    @ivar factory: The L{RPCClientFactory}; its C{connection} is the link
        that is up, if any.
    @ivar timeout: Seconds L{callRemote} waits for a link.
    """

    log = Logger()

    def __init__(
        self,
        config: Config,
        process: ProcessSection | str,
        peer: ProcessSection | str,
        endpoint: IStreamClientEndpoint | None = None,
        factory: RPCClientFactory | None = None,
        reactor=None,
        timeout: float = CALL_TIMEOUT,
        retry_policy: Callable[[int], float] | None = None,
    ):
        reactor = _default_reactor(reactor)
        process, peer = _section(config, process), _section(config, peer)
        #: Whether the link is a Unix socket (same machine, and the config says so).
        self.unix = endpoint is None and unix.unix_link(config, process, peer)
        if self.unix:
            endpoint = unix.client_endpoint(config, peer, reactor)
        elif endpoint is None:
            endpoint = peer_endpoint(config, peer, reactor)
        if factory is None:
            factory = RPCClientFactory(config, process, peer, reactor)
        if retry_policy is None:
            retry_policy = backoffPolicy(RETRY_INITIAL, RETRY_MAX, jitter=random.random)
        self.config = config
        self.process = process
        self.peer = peer
        self.factory = factory
        self.reactor = reactor
        self.timeout = timeout
        self.name = f"rpc-{peer.name}"
        self._policy = retry_policy
        self._endpoint = endpoint
        #: The link that took over from this one (L{relink}), if any.
        self.successor: RPCClientService | None = None
        #: Commands sent over this link and not answered yet.
        self.pending = 0
        self._relinking = None
        if not self.unix:
            endpoint = _TLSClientEndpoint(internal_client_options(config, process, peer), endpoint)
        self._connector = ClientService(
            endpoint,
            factory,
            retryPolicy=self._retry_delay,
            clock=reactor,
        )

    def _retry_delay(self, attempt: int) -> float:
        # ClientService counts failures since the last TCP connection; a
        # connection the server refuses at the TLS layer would reset that
        # count and pin the delay at its minimum.  Count since the last link
        # that was up instead.
        self.factory.failures += 1
        return self._policy(self.factory.failures)

    def startService(self) -> None:
        """Start connecting."""
        super().startService()
        self._connector.startService()

    def relink(self, timeout: float = 10.0) -> defer.Deferred:
        """
        Move to a new process of the peer's name on the same address (the
        old one handed over its work and stopped listening): open a second
        link, send new commands over it once it is up, and close this one
        once the commands sent over it are answered.  Nothing is lost: no
        command is sent while no link is up, none is cut off.

        @return: A L{Deferred} that fires with the new link's service once
            the new commands go to it, or with C{None} if it did not come up
            within C{timeout} seconds (this link then stays as it is).
        """
        if self.successor is not None:
            return self.successor.relink(timeout)
        if self._relinking is not None:
            return self._relinking
        successor = RPCClientService(
            self.config,
            self.process,
            self.peer,
            endpoint=None if self.unix else self._endpoint,
            factory=self.factory.fresh(),
            reactor=self.reactor,
            timeout=self.timeout,
            retry_policy=self._policy,
        )
        successor.startService()
        up = successor.factory.when_connected()
        up.addTimeout(timeout, self.reactor)

        def connected(_):
            self._relinking = None
            self.successor = successor
            self.log.info("link to {peer}: moved to a new connection", peer=self.peer.name)
            self._retire()
            return successor

        def failed(failure):
            self._relinking = None
            self.log.warn(
                "link to {peer}: relink failed: {why}",
                peer=self.peer.name,
                why=failure.getErrorMessage(),
            )
            successor.stopService()
            return None

        self._relinking = up.addCallbacks(connected, failed)
        return self._relinking

    def _retire(self) -> None:
        """Close this link (not the successor) once its commands are answered."""
        if self.successor is not None and self.pending == 0 and self._connector.running:
            # Stop this connection only: the service stays running and
            # hands every command to its successor.
            self._connector.stopService()

    def callRemote(self, command: type[amp.Command], **kwargs) -> defer.Deferred:
        """
        Send C{command} over the link, waiting up to L{timeout} seconds for
        one to be up.

        @return: A L{Deferred} with the response.  It fails with
            L{Unavailable} when no link came up in time or the service is not
            running: the command was not sent, and may be retried.  Once
            sent, it fails with the command's errors or, if the link drops
            before the answer, with the connection's failure: the command
            may or may not have been carried out.
        """
        if not self.running:
            return defer.fail(Unavailable(f"the link to {self.peer.name} is not running"))
        if self.successor is not None:
            return self.successor.callRemote(command, **kwargs)
        waiting = self.factory.when_connected()
        waiting.addTimeout(self.timeout, self.reactor, onTimeoutCancel=self._timed_out)
        waiting.addCallback(self._send, command, kwargs)
        return waiting

    def takes(self, command: type[amp.Command]) -> bool:
        """
        Whether a link is up now (the successor's, after a L{relink}) and
        its peer carries out C{command}, one without an answer
        (L{RPCProtocol.takes}): whether L{tell} may send it now.
        """
        if self.successor is not None:
            return self.successor.takes(command)
        link = self.factory.connection
        return self.running and link is not None and link.takes(command)

    def tell(self, command: type[amp.Command], **kwargs) -> defer.Deferred:
        """
        Send C{command}, one without an answer (C{requiresAnswer = False}),
        over the link that is up now, in order with the commands of
        L{callRemote}, if its peer L{takes} it.  It does not wait for a
        link: what is told while none is up is not sent, as on a link that
        drops.

        @return: A L{Deferred} that fires with C{None} once the command is
            written to the link, or fails with L{Unavailable} (not sent).
            Whether the peer carried it out is not known: a link that drops
            after the write may have lost it.
        """
        if self.successor is not None:
            return self.successor.tell(command, **kwargs)
        if not self.takes(command):
            return defer.fail(
                Unavailable(f"no link to {self.peer.name} that takes {command.__name__}")
            )
        self.factory.connection.callRemote(command, **kwargs)
        return defer.succeed(None)

    def _send(self, link, command, kwargs) -> defer.Deferred:
        self.pending += 1

        def answered(result):
            self.pending -= 1
            self._retire()
            return result

        return link.callRemote(command, **kwargs).addBoth(answered)

    def _timed_out(self, result, timeout: float):
        return Failure(Unavailable(f"no link to {self.peer.name} within {timeout} s"))

    def stopService(self) -> defer.Deferred:
        """Stop reconnecting, close the link and fail calls still waiting for one."""
        super().stopService()
        # Also when _retire stopped it already: waits for its link to close.
        stopped = self._connector.stopService()
        self.factory.fail_waiters(Unavailable(f"the link to {self.peer.name} was stopped"))
        if self.successor is not None:
            successor, self.successor = self.successor, None
            return defer.gatherResults([stopped, successor.stopService()], consumeErrors=True)
        return stopped
