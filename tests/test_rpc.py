"""
Tests for L{mmo.rpc}: commands and errors, the protocol's authentication and
dispatch, the client service's waiting and reconnecting, and real mutual TLS
links over the loopback interface.
"""

from __future__ import annotations

import os

from OpenSSL import SSL
from service_identity import VerificationError
from twisted.application.service import IService
from twisted.internet import defer, endpoints, error, protocol, reactor, ssl
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.protocols import amp
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.trial import unittest

import mmo
from mmo import tls
from mmo.compat import WriteThroughTLS
from mmo.config import ConfigError
from mmo.rpc import (
    ERRORS,
    Command,
    NotFound,
    Ping,
    RPCClientFactory,
    RPCClientService,
    RPCError,
    RPCProtocol,
    RPCServerFactory,
    Unavailable,
    listen,
    listen_port,
    peer_endpoint,
)
from mmo.rpc.commands import EVERY_KIND, SENDERS, LongBytes
from tests.support import WAIT, LogCapture, bounded, deployment, sleep, until


class Full(RPCError):
    """An error of the test command only."""

    code = b"TEST_FULL"


class Fail(Command):
    """A test command whose responder fails as C{kind} says."""

    arguments = [(b"kind", amp.Unicode())]
    response = [(b"ok", amp.Boolean())]
    errors = {Full: b"TEST_FULL"}


class RecordingProtocol(RPCProtocol):
    """An L{RPCProtocol} whose C{lost} fires when it closed, and C{reason} says why."""

    def __init__(self):
        super().__init__()
        self.lost = defer.Deferred()

    def connectionLost(self, reason):
        super().connectionLost(reason)
        self.reason = reason
        self.lost.callback(None)


class GatewaysOnly(Command):
    arguments = []
    response = []


class GatewaysOnlyProtocol(RPCProtocol):
    """Serves a command only gateways may send."""

    senders = {**SENDERS, GatewaysOnly: frozenset({"gateway"})}
    seen = 0

    @GatewaysOnly.responder
    def gateways_only(self) -> dict:
        self.seen += 1
        return {}


class Told(Command):
    """Without an answer: heard straight from its box once cleared."""

    arguments = [(b"text", amp.Unicode())]
    response = []
    requiresAnswer = False


class ToldProtocol(RPCProtocol):
    """Hears L{Told} from "mmo" processes (the kind of the default deployment's)."""

    senders = {**SENDERS, Told: frozenset({"mmo"})}
    heard_directly = {Told: "told"}

    def __init__(self):
        super().__init__()
        self.heard = []
        self.dispatched = []

    def dispatchCommand(self, box):
        self.dispatched.append(box[b"_command"])
        return super().dispatchCommand(box)

    @Told.responder
    def told(self, text: str) -> dict:
        if text == "bug":
            raise ZeroDivisionError(text)
        self.heard.append(text)
        return {}


class FailingProtocol(RecordingProtocol):
    """Serves L{Fail}: C{not-found} and C{full} fail, C{fine} answers, anything else is a bug."""

    senders = {**SENDERS, Fail: EVERY_KIND}

    @Fail.responder
    def fail(self, kind):
        if kind == "not-found":
            raise NotFound("x")
        if kind == "full":
            raise Full("room is full")
        if kind == "fine":
            return {"ok": True}
        raise ValueError("responder bug")


class Note(Command):
    """A test command without an answer."""

    arguments = [(b"text", amp.Unicode())]
    requiresAnswer = False


class NotingProtocol(RecordingProtocol):
    """Carries out L{Note}: its Ping answer says so (C{takes})."""

    senders = {**SENDERS, Note: EVERY_KIND}

    @Note.responder
    def note(self, text):
        self.factory.notes.append(text)
        return {}


class OlderProtocol(RecordingProtocol):
    """A peer of an older release: its Ping answer has no C{takes}."""

    @Ping.responder
    def ping(self, nonce):
        return {"nonce": nonce, "name": self.factory.process.name, "version": "0.1.0"}


class Echo(Command):
    """A test command answered with its argument, of any length."""

    arguments = [(b"data", LongBytes())]
    response = [(b"data", LongBytes())]


class EchoingProtocol(RecordingProtocol):
    """Carries out L{Echo}."""

    senders = {**SENDERS, Echo: EVERY_KIND}

    @Echo.responder
    def echo(self, data):
        return {"data": data}


class Hold(Command):
    """A test command answered only when the test says (L{HoldingProtocol})."""

    arguments = [(b"n", amp.Integer())]
    response = [(b"n", amp.Integer())]


class HoldingProtocol(RecordingProtocol):
    """Serves L{Hold}: each answer waits in C{factory.held} until it is fired."""

    senders = {**SENDERS, Hold: EVERY_KIND}

    @Hold.responder
    def hold(self, n):
        answer = defer.Deferred()
        self.factory.held.append(answer)
        return answer.addCallback(lambda _: {"n": n})


class Recording:
    """Mixin for factories: remember every protocol built and every link up."""

    protocol = RecordingProtocol

    def buildProtocol(self, addr):
        built = super().buildProtocol(addr)
        self.built.append(built)
        return built

    def peer_connected(self, link):
        self.linked.append(link.peer)
        super().peer_connected(link)

    def closed(self) -> defer.Deferred:
        """Fires when every protocol built so far has seen its connection close."""
        return bounded(defer.gatherResults([p.lost for p in self.built]))


class ServerFactory(Recording, RPCServerFactory):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.built, self.linked = [], []


class ClientFactory(Recording, RPCClientFactory):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.built, self.linked = [], []


class CommandTests(unittest.TestCase):
    """The command module's errors and commands."""

    def test_error_codes(self):
        """Every common error has its own code, which is also its C{code}."""
        self.assertEqual(len(set(ERRORS.values())), len(ERRORS))
        for cls, code in ERRORS.items():
            self.assertTrue(issubclass(cls, RPCError))
            self.assertEqual(cls.code, code)
        self.assertEqual(ERRORS[NotFound], b"NOT_FOUND")

    def test_errors_accumulate(self):
        """A command with errors of its own still maps every common error."""
        self.assertEqual(Fail.allErrors[Full], b"TEST_FULL")
        for cls, code in ERRORS.items():
            self.assertEqual(Fail.allErrors[cls], code)
            self.assertIs(Fail.reverseErrors[code], cls)
            self.assertIs(Ping.reverseErrors[code], cls)

    def test_ping(self):
        """Ping round-trips its arguments and response through AMP boxes."""
        box = Ping.makeArguments({"nonce": 42}, None)
        self.assertEqual(Ping.parseArguments(box, None), {"nonce": 42})
        self.assertTrue(Ping.requiresAnswer)

    def test_long_bytes_names(self):
        """
        A LongBytes argument has the Python name AMP gives its key (dashes
        become underscores), its chunks keys of their own; it may be optional.
        """

        class Carry(Command):
            arguments = [(b"long-body", LongBytes()), (b"extra", LongBytes(optional=True))]

        value = bytes(range(256)) * 600  # three AMP values
        box = Carry.makeArguments({"long_body": value, "extra": None}, None)
        self.assertEqual(sorted(box), [b"long-body", b"long-body.1", b"long-body.2"])
        self.assertEqual(
            Carry.parseArguments(amp.AmpBox(box), None), {"long_body": value, "extra": None}
        )
        box = Carry.makeArguments({"long_body": b"", "extra": b"x"}, None)
        self.assertEqual(box, {b"long-body": b"", b"extra": b"x"})
        self.assertEqual(
            Carry.parseArguments(amp.AmpBox(box), None), {"long_body": b"", "extra": b"x"}
        )


class FakeProtocolTests(unittest.TestCase):
    """The protocol over an in-memory transport, with a fake clock."""

    def setUp(self):
        self.conf = deployment(self)
        self.clock = MemoryReactorClock()
        self.transport = StringTransport()

    def client(self) -> RPCProtocol:
        factory = RPCClientFactory(
            self.conf, self.conf.process("zone-1"), self.conf.process("mmo"), self.clock
        )
        link = factory.buildProtocol(None)
        link.makeConnection(self.transport)
        return link

    def sent(self) -> list[amp.AmpBox]:
        boxes = amp.parseString(self.transport.value())
        self.transport.clear()
        return boxes

    def test_unauthenticated_refused(self):
        """A command that arrives before the peer is known is refused, not run."""
        texts = LogCapture(self).lines
        link = RPCServerFactory(self.conf, self.conf.process("mmo"), self.clock).buildProtocol(None)
        link.makeConnection(self.transport)
        link.dataReceived(amp.AmpBox(_command=b"Ping", _ask=b"1", nonce=b"5").serialize())
        [answer] = self.sent()
        self.assertEqual(answer[b"_error_code"], b"REFUSED")
        self.assertTrue(any("unauthenticated" in t for t in texts))

    def test_senders_checked_at_every_box(self):
        """
        A command the peer may send is carried out at every box; one it may
        not send is refused at every box, and logged the first time only.
        """
        texts = LogCapture(self).lines
        factory = RPCServerFactory(self.conf, self.conf.process("mmo"), self.clock)
        factory.protocol = GatewaysOnlyProtocol
        link = factory.buildProtocol(None)
        link.makeConnection(self.transport)
        link.peer = "mmo"
        for ask in (b"1", b"2"):
            link.dataReceived(amp.AmpBox(_command=b"Ping", _ask=ask, nonce=b"5").serialize())
            link.dataReceived(amp.AmpBox(_command=b"GatewaysOnly", _ask=ask).serialize())
        answers = self.sent()
        self.assertEqual([b"_error_code" in a for a in answers], [False, True, False, True])
        self.assertEqual({a[b"_error_code"] for a in answers[1::2]}, {b"REFUSED"})
        self.assertEqual(len([t for t in texts if "may not send it" in t]), 1)
        self.assertEqual(link.seen, 0)

    def told_link(self, peer: str) -> ToldProtocol:
        factory = RPCServerFactory(self.conf, self.conf.process("mmo"), self.clock)
        factory.protocol = ToldProtocol
        link = factory.buildProtocol(None)
        link.makeConnection(self.transport)
        link.peer = peer
        return link

    def test_heard_directly_once_cleared(self):
        """
        A command of C{heard_directly} goes AMP's whole way the first time
        (the senders' check), then straight from its box: in order, its
        arguments parsed, nothing answered; a box of it that asks for an
        answer still goes AMP's way, and is answered.
        """
        link = self.told_link("mmo")
        boxes = [amp.AmpBox(_command=b"Told", text=t.encode()).serialize() for t in "abc"]
        link.dataReceived(b"".join(boxes))
        self.assertEqual(link.heard, ["a", "b", "c"])
        self.assertEqual(link.dispatched, [b"Told"])
        link.dataReceived(amp.AmpBox(_command=b"Told", _ask=b"1", text=b"d").serialize())
        self.assertEqual(link.heard, ["a", "b", "c", "d"])
        self.assertEqual(link.dispatched, [b"Told", b"Told"])
        [answer] = self.sent()
        self.assertEqual(answer[b"_answer"], b"1")

    def test_heard_directly_refused_every_time(self):
        """From a peer that may not send it, every box is refused, none heard."""
        link = self.told_link("zone-1")
        box = amp.AmpBox(_command=b"Told", text=b"a").serialize()
        link.dataReceived(box)
        link.dataReceived(box)
        self.assertEqual(link.heard, [])
        self.assertEqual(link.dispatched, [b"Told", b"Told"])
        self.flushLoggedErrors(amp.RemoteAmpError)

    def test_heard_directly_failure_logged(self):
        """A responder heard directly that raises is logged; the link goes on."""
        texts = LogCapture(self).lines
        link = self.told_link("mmo")
        for text in (b"a", b"bug", b"b"):
            link.dataReceived(amp.AmpBox(_command=b"Told", text=text).serialize())
        self.assertEqual(link.heard, ["a", "b"])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertTrue(any("RPC responder for Told from mmo failed" in t for t in texts), texts)
        self.assertFalse(self.transport.disconnecting)

    def test_only_unanswered_commands_heard_directly(self):
        """A protocol that lists an answered command, or no method, is refused as it is made."""
        with self.assertRaises(TypeError) as caught:

            class Answered(RPCProtocol):
                heard_directly = {Ping: "ping"}

        self.assertIn("Ping is answered", str(caught.exception))
        with self.assertRaises(TypeError) as caught:

            class Missing(RPCProtocol):
                heard_directly = {Told: "nowhere"}

        self.assertIn("no method 'nowhere'", str(caught.exception))

    def test_start_tls_not_served(self):
        """AMP's built-in StartTLS is not served: the link is TLS already."""
        link = self.client()
        link.peer = "mmo"
        self.sent()
        link.dataReceived(amp.AmpBox(_command=b"StartTLS", _ask=b"1").serialize())
        [answer] = self.sent()
        self.assertEqual(answer[b"_error_code"], amp.UNHANDLED_ERROR_CODE)

    def test_client_up_after_ping(self):
        """The client link is announced once the server answered its first Ping."""
        link = self.client()
        link.handshakeCompleted()
        self.assertEqual(link.peer, "mmo")
        self.assertIsNone(link.factory.connection)
        [ping] = self.sent()
        self.assertEqual(ping[b"_command"], b"Ping")
        answer = amp.AmpBox(_answer=ping[b"_ask"], nonce=ping[b"nonce"], name=b"mmo", version=b"9")
        link.dataReceived(answer.serialize())
        self.assertIs(link.factory.connection, link)
        self.assertTrue(link.ready)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        link.connectionLost(Failure(error.ConnectionDone()))
        self.assertIsNone(link.factory.connection)

    def test_calls_fail_when_lost(self):
        """A call in flight when the link drops fails with the connection's failure."""
        link = self.client()
        link.handshakeCompleted()
        [ping] = self.sent()
        answer = amp.AmpBox(_answer=ping[b"_ask"], nonce=b"1", name=b"mmo", version=b"9")
        link.dataReceived(answer.serialize())
        call = link.callRemote(Fail, kind="fine")
        self.assertNoResult(call)
        link.connectionLost(Failure(error.ConnectionLost()))
        self.failureResultOf(call, error.ConnectionLost)
        self.assertIsNone(link.factory.connection)

    def test_client_wrong_name(self):
        """A server that answers Ping with another name is dropped."""
        texts = LogCapture(self).lines
        link = self.client()
        link.handshakeCompleted()
        [ping] = self.sent()
        answer = amp.AmpBox(_answer=ping[b"_ask"], nonce=b"1", name=b"zone-2", version=b"9")
        link.dataReceived(answer.serialize())
        self.assertTrue(self.transport.disconnecting)
        self.assertIsNone(link.factory.connection)
        self.assertTrue(any("zone-2" in t for t in texts))

    def test_handshake_timeout(self):
        """A connection that does not become a link in time is aborted."""
        texts = LogCapture(self).lines
        link = self.client()
        self.clock.advance(self.conf.wire.handshake_timeout - 0.1)
        self.assertFalse(self.transport.disconnecting)
        self.clock.advance(0.1)
        self.assertTrue(self.transport.disconnecting)
        self.assertTrue(any("not up after" in t for t in texts))
        link.connectionLost(Failure(error.ConnectionAborted()))


class ClosingTransport(StringTransport):
    """
    An in-memory transport that, like a real one, tells its protocol that the
    connection is lost soon (on the next turn of C{clock}) after it is closed.
    """

    def __init__(self, protocol, clock):
        super().__init__()
        self.protocol = protocol
        self.clock = clock
        self.lost = False

    def loseConnection(self):
        if not self.disconnecting:
            self.clock.callLater(0, self.drop, Failure(error.ConnectionDone()))
        super().loseConnection()

    abortConnection = loseConnection

    def drop(self, reason):
        """The connection is gone (closed here, or by the peer)."""
        if not self.lost:
            self.lost = True
            self.protocol.connectionLost(reason)


class FakeEndpoint:
    """A client endpoint whose connections the test drives by hand."""

    def __init__(self, clock, connect=True):
        self.clock = clock
        self.connect_ok = connect
        self.attempts = 0
        #: The (TLS) protocols of the connections made, in order.
        self.connections = []

    def connect(self, factory):
        self.attempts += 1
        if not self.connect_ok:
            return defer.fail(error.ConnectionRefusedError())
        built = factory.buildProtocol(None)
        built.makeConnection(ClosingTransport(built, self.clock))
        self.connections.append(built)
        return defer.succeed(built)


class ClientServiceTests(unittest.TestCase):
    """L{RPCClientService} with a fake clock and fake endpoints."""

    def setUp(self):
        self.conf = deployment(self)
        self.clock = MemoryReactorClock()
        self.delays = []

    def service(self, endpoint, **kwargs) -> RPCClientService:
        def policy(attempt):
            self.delays.append(attempt)
            return 1.0

        service = RPCClientService(
            self.conf,
            "zone-1",
            "mmo",
            endpoint=endpoint,
            reactor=self.clock,
            retry_policy=policy,
            **kwargs,
        )
        service.startService()

        def stop():
            stopped = service.stopService()
            self.clock.advance(0)
            self.successResultOf(stopped)
            self.assertEqual(self.clock.getDelayedCalls(), [])

        self.addCleanup(stop)
        return service

    def test_unavailable_after_timeout(self):
        """With no link, callRemote fails with Unavailable after its timeout."""
        service = self.service(FakeEndpoint(self.clock, connect=False), timeout=5.0)
        d = service.callRemote(Ping, nonce=1)
        self.clock.pump([0.1] * 48)
        self.assertNoResult(d)
        self.clock.pump([0.1] * 3)
        self.failureResultOf(d, Unavailable)
        # Meanwhile it kept trying, once a second (the policy's delay).
        self.assertGreaterEqual(len(self.delays), 5)
        self.assertEqual(self.delays, list(range(1, len(self.delays) + 1)))

    def test_unavailable_when_stopped(self):
        """Stopping the service fails waiting calls; a stopped one refuses calls."""
        service = self.service(FakeEndpoint(self.clock, connect=False))
        d = service.callRemote(Ping, nonce=1)
        service.stopService()
        self.failureResultOf(d, Unavailable)
        self.failureResultOf(service.callRemote(Ping, nonce=1), Unavailable)

    def test_backoff_counts_refused_links(self):
        """
        Connections that close before the link is up count as failures, so
        the reconnect delay keeps growing while the server refuses us.
        """
        endpoint = FakeEndpoint(self.clock)
        self.service(endpoint)
        for expected in (1, 2, 3):
            self.assertEqual(len(endpoint.connections), expected)
            endpoint.connections[-1].transport.drop(Failure(error.ConnectionLost()))
            self.assertEqual(self.delays[-1], expected)
            self.clock.advance(1.0)

    def test_backoff_resets_when_up(self):
        """Once a link was up, the next failure starts the backoff again."""
        endpoint = FakeEndpoint(self.clock)
        factory = ClientFactory(
            self.conf, self.conf.process("zone-1"), self.conf.process("mmo"), self.clock
        )
        self.service(endpoint, factory=factory)
        endpoint.connections[-1].transport.drop(Failure(error.ConnectionLost()))
        self.clock.advance(1.0)
        # What the protocol does once the server answered its first Ping:
        link = factory.built[-1]
        link.peer, link.ready = "mmo", True
        factory.peer_connected(link)
        endpoint.connections[-1].transport.drop(Failure(error.ConnectionLost()))
        self.assertEqual(self.delays, [1, 1])
        self.assertIsNone(factory.connection)

    def test_default_endpoint(self):
        """Without an endpoint, the service connects to the peer's host and rpc port."""
        conf = deployment(
            self,
            processes="""
            [processes.mmo]
            kind = "mmo"
            client = "tcp:0"
            rpc = "tcp:7123:interface=127.0.0.1"
            hosts = ["127.0.0.1", "localhost"]

            [processes.zone-1]
            kind = "zone"
            """,
        )
        service = RPCClientService(conf, "zone-1", "mmo", reactor=self.clock)
        service.startService()
        self.addCleanup(service.stopService)
        self.clock.advance(1)
        self.assertEqual(self.clock.tcpClients[0][:2], ("127.0.0.1", 7123))

    def test_endpoint_needs_a_port(self):
        """A peer listening on port 0, or not at all, gives a ConfigError."""
        conf = deployment(
            self,
            processes="""
            [processes.mmo]
            kind = "mmo"
            client = "tcp:0"
            rpc = "tcp:0"

            [processes.zone-1]
            kind = "zone"
            """,
        )
        e = self.assertRaises(ConfigError, peer_endpoint, conf, "mmo", self.clock)
        self.assertIn("any free port", str(e))
        e = self.assertRaises(ConfigError, peer_endpoint, conf, "zone-1", self.clock)
        self.assertEqual(e.path, ("processes", "zone-1", "rpc"))
        e = self.assertRaises(ConfigError, listen, conf, "zone-1", reactor=self.clock)
        self.assertEqual(e.path, ("processes", "zone-1", "rpc"))

    def test_unix_endpoint(self):
        """A UNIX listener is reached at its socket."""
        conf = deployment(
            self,
            processes="""
            [processes.mmo]
            kind = "mmo"
            client = "tcp:0"
            rpc = "unix:address=/tmp/mmo-rpc.sock"
            """,
        )
        endpoint = peer_endpoint(conf, "mmo", self.clock)
        self.assertIsInstance(endpoint, endpoints.UNIXClientEndpoint)
        self.assertEqual(endpoint._path, "/tmp/mmo-rpc.sock")


class ListenTests(unittest.TestCase):
    """L{listen} and L{listen_port} with an in-memory reactor."""

    def setUp(self):
        self.conf = deployment(self)
        self.clock = MemoryReactorClock()

    def test_listen_service(self):
        """listen() is a service that listens on the rpc endpoint with TLS around the factory."""
        factory = RPCServerFactory(self.conf, self.conf.process("mmo"), self.clock)
        service = listen(self.conf, "mmo", factory, reactor=self.clock)
        self.assertTrue(IService.providedBy(service))
        service.startService()
        self.addCleanup(service.stopService)
        [(port, wrapper, _, interface)] = self.clock.tcpServers
        self.assertEqual((port, interface), (0, "127.0.0.1"))
        self.assertIsInstance(wrapper, TLSMemoryBIOFactory)
        self.assertIs(wrapper.protocol, WriteThroughTLS)
        self.assertIs(wrapper.wrappedFactory, factory)

    def test_default_factory(self):
        """Without a factory, listen_port serves a plain RPCServerFactory for the process."""
        listen_port(self.conf, self.conf.process("zone-2"), reactor=self.clock)
        [(_, wrapper, _, _)] = self.clock.tcpServers
        factory = wrapper.wrappedFactory
        self.assertIsInstance(factory, RPCServerFactory)
        self.assertEqual(factory.process.name, "zone-2")
        self.assertEqual(factory.allowed, ("mmo", "zone-1", "zone-2"))

    def test_missing_certificate(self):
        """A missing certificate fails listen() at once, naming the key to fix."""
        os.remove(tls.server_paths(self.conf.deployment.tls_dir, "mmo")[1])
        e = self.assertRaises(ConfigError, listen, self.conf, "mmo", reactor=self.clock)
        self.assertEqual(e.path, ("deployment", "tls_dir"))
        self.assertEqual(self.clock.tcpServers, [])


class LinkTests(unittest.TestCase):
    """
    Real links: mutual TLS over the loopback interface with the real reactor.
    The listener is C{mmo}'s, on a free port of 127.0.0.1.
    """

    timeout = 60

    def setUp(self):
        self.conf = deployment(self)
        self.texts = LogCapture(self).lines

    async def listen(self, factory=None, **kwargs) -> ServerFactory:
        """Start C{mmo}'s listener; stop it and wait for its connections at cleanup."""
        if factory is None:
            factory = ServerFactory(self.conf, self.conf.process("mmo"), reactor, **kwargs)
        self.server = factory
        self.listening = await listen_port(self.conf, "mmo", factory, reactor)
        self.port = self.listening.getHost().port

        async def stop():
            if self.listening.connected:
                await self.listening.stopListening()
            await factory.closed()

        self.addCleanup(lambda: defer.ensureDeferred(stop()))
        return factory

    def client_service(self, peer="mmo", port=None, **kwargs) -> RPCClientService:
        """A started client service from zone-1 to C{peer}, at the listener's port."""
        endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port or self.port)
        factory = ClientFactory(
            self.conf, self.conf.process("zone-1"), self.conf.process(peer), reactor
        )
        service = RPCClientService(
            self.conf,
            "zone-1",
            peer,
            endpoint=endpoint,
            factory=factory,
            reactor=reactor,
            **kwargs,
        )
        service.startService()
        # Cleanups run last first: stop the service, then wait for its connections.
        self.addCleanup(factory.closed)
        self.addCleanup(lambda: bounded(service.stopService()))
        return service

    async def connect(self, options) -> RecordingProtocol:
        """
        One connection from zone-1 to the listener with the TLS C{options};
        returns the client protocol once both ends of it have closed.
        """
        factory = ClientFactory(
            self.conf, self.conf.process("zone-1"), self.conf.process("mmo"), reactor
        )
        endpoint = endpoints.wrapClientTLS(
            options, endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", self.port)
        )
        link = await bounded(endpoint.connect(factory))
        self.client_port = link.transport.getHost().port
        await bounded(link.lost)
        await self.server.closed()
        self.assertEqual(factory.linked, [])
        self.assertIsNone(factory.connection)
        return link

    def assertRefusalLogged(self, *words):
        """The server logged a refusal naming the client's address and C{words}."""
        address = f"127.0.0.1:{self.client_port}"
        found = [t for t in self.texts if "refused" in t and address in t]
        self.assertTrue(found, f"no refusal of {address} logged in {self.texts}")
        for word in words:
            self.assertTrue(any(word in t.lower() for t in found), f"{word!r} not in {found}")

    async def test_ping(self):
        """zone-1 pings mmo over mutual TLS; each side knows who the other is."""
        server = await self.listen()
        service = self.client_service()
        response = await bounded(service.callRemote(Ping, nonce=12345))
        self.assertEqual(
            response, {"nonce": 12345, "name": "mmo", "version": mmo.__version__, "takes": []}
        )
        self.assertEqual(server.linked, ["zone-1"])
        [link] = server.connections
        self.assertEqual(link.peer, "zone-1")
        self.assertEqual(service.factory.connection.peer, "mmo")
        self.assertTrue(any("RPC link from zone-1" in t for t in self.texts))

    async def test_takes(self):
        """
        The first Ping's answer says which commands without an answer the
        peer carries out: L{RPCClientService.takes} is true for those only,
        and only while a link is up; L{RPCClientService.tell} sends them
        then, and only then.
        """
        server = ServerFactory(self.conf, self.conf.process("mmo"), reactor)
        server.protocol = NotingProtocol
        server.notes = []
        await self.listen(server)
        service = self.client_service()
        self.assertFalse(service.takes(Note))
        await bounded(service.factory.when_connected())
        self.assertTrue(service.takes(Note))
        self.assertFalse(service.takes(Fail))
        # What a gateway's operator reads in its log, in a mixed-version deployment.
        self.assertTrue(any("RPC link to mmo" in t and "takes Note" in t for t in self.texts))
        await bounded(service.tell(Note, text="hello"))
        await until(lambda: server.notes == ["hello"])
        await self.listening.stopListening()
        service.factory.connection.transport.loseConnection()
        await until(lambda: not service.takes(Note))
        # No link up: not sent, and it does not wait for one.
        self.failureResultOf(service.tell(Note, text="lost"), Unavailable)

    async def test_write_through_both_ends(self):
        """
        Both ends of a link send and read as clients' connections do
        (L{WriteThroughTLS}, on a socket without Nagle's delay): calls and
        answers far over a TLS record and a socket's buffer, many at once,
        each answered whole and in order.
        """
        server = ServerFactory(self.conf, self.conf.process("mmo"), reactor)
        server.protocol = EchoingProtocol
        await self.listen(server)
        service = self.client_service()
        client = await bounded(service.factory.when_connected())
        [accepted] = server.connections
        for link in (client, accepted):
            self.assertIsInstance(link.transport, WriteThroughTLS)
            self.assertTrue(link.transport.transport.getTcpNoDelay())
        sent = [bytes([n]) * (100_000 + n * 7919) for n in range(20)]
        answers = await bounded(
            defer.gatherResults([service.callRemote(Echo, data=data) for data in sent])
        )
        self.assertEqual([a["data"] for a in answers], sent)

    async def test_older_peer_takes_nothing(self):
        """A peer whose Ping answer has no C{takes} (an older release) takes none."""
        server = ServerFactory(self.conf, self.conf.process("mmo"), reactor)
        server.protocol = OlderProtocol
        await self.listen(server)
        service = self.client_service()
        link = await bounded(service.factory.when_connected())
        self.assertEqual(link.peer_takes, frozenset())
        self.assertFalse(service.takes(Note))
        self.assertTrue(
            any("(mmo 0.1.0; takes no command without an answer)" in t for t in self.texts),
            self.texts,
        )

    async def test_errors(self):
        """
        Declared errors arrive as their class; an unexpected exception is
        logged, arrives as UnknownRemoteError, and the link keeps serving.
        """
        server = ServerFactory(self.conf, self.conf.process("mmo"), reactor)
        server.protocol = FailingProtocol
        await self.listen(server)
        service = self.client_service()
        failure = await bounded(
            self.assertFailure(service.callRemote(Fail, kind="not-found"), NotFound)
        )
        self.assertEqual(str(failure), "x")
        await bounded(self.assertFailure(service.callRemote(Fail, kind="full"), Full))
        link = service.factory.connection
        await bounded(
            self.assertFailure(service.callRemote(Fail, kind="bug"), amp.UnknownRemoteError)
        )
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertEqual(await bounded(service.callRemote(Fail, kind="fine")), {"ok": True})
        response = await bounded(service.callRemote(Ping, nonce=1))
        self.assertEqual(response["name"], "mmo")
        # Still the same link, on both sides.
        self.assertIs(service.factory.connection, link)
        self.assertEqual(len(server.built), 1)

    async def test_other_ca_refused(self):
        """A client certificate from another deployment's CA is refused by the server."""
        await self.listen()
        other = deployment(self, name="other")
        crt, key = tls.client_paths(other.deployment.tls_dir, "zone-1")
        with open(crt, "rb") as c, open(key, "rb") as k:
            foreign = ssl.PrivateCertificate.loadPEM(c.read() + k.read())
        options = ssl.optionsForClientTLS(
            "mmo", trustRoot=tls.load_ca(self.conf), clientCertificate=foreign
        )
        await self.connect(options)
        self.assertRefusalLogged("certificate verify failed")

    async def test_other_deployment_refused(self):
        """A process of another deployment cannot link to this one at all."""
        await self.listen()
        other = deployment(self, name="other")
        options = tls.internal_client_options(other, other.process("zone-1"), other.process("mmo"))
        link = await self.connect(options)
        self.assertTrue(link.reason.check(SSL.Error))
        self.assertRefusalLogged("unknown ca")

    async def test_no_client_certificate_refused(self):
        """A client without a certificate is refused by the server."""
        await self.listen()
        options = ssl.optionsForClientTLS("mmo", trustRoot=tls.load_ca(self.conf))
        await self.connect(options)
        self.assertRefusalLogged("certificate")

    async def test_identity_not_allowed(self):
        """A certificate of the CA for a process not allowed to connect is refused."""
        server = await self.listen(allowed=["mmo", "zone-2"])
        options = tls.internal_client_options(
            self.conf, self.conf.process("zone-1"), self.conf.process("mmo")
        )
        await self.connect(options)
        self.assertRefusalLogged("zone-1", "none of the processes allowed")
        self.assertEqual(server.linked, [])

    async def test_hostname_mismatch(self):
        """A client expecting zone-2 that reaches mmo refuses the link."""
        server = await self.listen()
        options = tls.internal_client_options(
            self.conf, self.conf.process("zone-1"), self.conf.process("zone-2")
        )
        link = await self.connect(options)
        self.assertTrue(link.reason.check(VerificationError), link.reason)
        self.assertEqual(server.linked, [])
        # The client service in the same situation never has a link to offer.
        service = self.client_service(peer="zone-2", timeout=1.0)
        await bounded(self.assertFailure(service.callRemote(Ping, nonce=1), Unavailable))

    async def test_plaintext_refused(self):
        """A client that does not speak TLS is disconnected, and the server says why."""
        await self.listen()
        lost = defer.Deferred()

        class Plain(protocol.Protocol):
            def connectionMade(self):
                self.transport.write(b"GET / HTTP/1.0\r\n\r\n" * 10)

            def connectionLost(self, reason):
                lost.callback(None)

        endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", self.port)
        plain = await bounded(endpoint.connect(protocol.Factory.forProtocol(Plain)))
        self.client_port = plain.transport.getHost().port
        await bounded(lost)
        await self.server.closed()
        self.assertRefusalLogged("tls refused")

    async def test_reconnect(self):
        """
        The client service reconnects when the listener comes back, and
        calls fail with Unavailable while it is away.
        """
        server = await self.listen()
        service = self.client_service(timeout=WAIT)
        await bounded(service.callRemote(Ping, nonce=1))
        first = service.factory.connection

        # Take the listener away, with its links.
        await self.listening.stopListening()
        for link in list(server.connections):
            link.transport.loseConnection()
        await server.closed()
        await until(lambda: service.factory.connection is None)

        service.timeout = 1.0
        await bounded(self.assertFailure(service.callRemote(Ping, nonce=2), Unavailable))

        # Bring it back on the same port: the service finds it by itself.
        self.conf.process("mmo").rpc = f"tcp:{self.port}:interface=127.0.0.1"
        self.listening = await listen_port(self.conf, "mmo", server, reactor)
        service.timeout = WAIT
        response = await bounded(service.callRemote(Ping, nonce=3))
        self.assertEqual(response["nonce"], 3)
        self.assertIsNot(service.factory.connection, first)
        self.assertEqual(server.linked, ["zone-1", "zone-1"])

    async def test_relink(self):
        """
        relink() opens a second link; new calls go over it at once, the
        calls under way on the old link are answered over it, and only then
        is the old link closed, for good (it does not reconnect).
        """
        server = ServerFactory(self.conf, self.conf.process("mmo"), reactor)
        server.protocol = HoldingProtocol
        server.held = []
        await self.listen(server)
        # Quick to reconnect, were it to try.
        service = self.client_service(timeout=WAIT, retry_policy=lambda attempt: 0.05)
        old = await bounded(service.factory.when_connected())
        under_way = service.callRemote(Hold, n=1)
        await until(lambda: len(server.held) == 1)

        successor = await bounded(service.relink())
        self.assertIs(service.successor, successor)
        self.assertEqual(server.linked, ["zone-1", "zone-1"])
        new = successor.factory.connection
        self.assertIsNot(new, old)
        response = await bounded(service.callRemote(Ping, nonce=2))
        self.assertEqual(response["nonce"], 2)
        later = service.callRemote(Hold, n=3)
        await until(lambda: len(server.held) == 2)
        self.assertEqual((service.pending, successor.pending), (1, 1))
        self.assertFalse(old.lost.called)

        server.held[0].callback(None)
        self.assertEqual(await bounded(under_way), {"n": 1})
        await bounded(old.lost)
        self.assertTrue(old.reason.check(error.ConnectionDone), old.reason)
        server.held[1].callback(None)
        self.assertEqual(await bounded(later), {"n": 3})
        self.assertIs(successor.factory.connection, new)
        self.assertTrue(service.running)
        await sleep(0.5)
        self.assertEqual(server.linked, ["zone-1", "zone-1"])
        self.assertEqual(len(service.factory.built), 1)
