"""
Tests for L{mmo.game.routes}: routes to game services in other
processes over AMP with mutual TLS (real links on the loopback interface,
to a real L{mmo.game.server.serve} listener), the commands and error
that carry them (L{mmo.rpc.commands}), the remote routes a gateway builds
from its config, and how L{mmo.gateway.tap} wires routes into a gateway
process.

The gateway's clients talk to it through C{StringTransport}s on a fake
clock; the RPC links run on the real reactor, so these tests wait (bounded)
for the answers to arrive.
"""

from __future__ import annotations

import dataclasses

from twisted.application.service import IService
from twisted.internet import defer, error, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.protocols import amp
from twisted.python.failure import Failure
from twisted.trial import unittest

from mmo import rpc
from mmo.bus import BusError
from mmo.bus.memory import MemoryBus
from mmo.config import ConfigError
from mmo.frontend.listener import ClientListener
from mmo.game import messages
from mmo.game import server as server_module
from mmo.game.messages import SESSIONS_CHANNEL, Switched, gateway_channel
from mmo.game.routes import CallTimeouts, LocalRoute, RemoteRoute, pack, unpack
from mmo.game.server import ServiceRPC, ServiceRPCFactory, serve
from mmo.game.service import Caller, GameService
from mmo.gateway import routing as routing_module
from mmo.gateway import tap as gateway_tap
from mmo.gateway.factory import GatewayFactory
from mmo.gateway.routing import Services
from mmo.gateway.tap import ROUTE_PREFIXES, gateway_routes
from mmo.lobby.service import LobbyService
from mmo.login.tickets import TicketSigner, load_key
from mmo.process.service import ProcessService
from mmo.rpc.commands import (
    LongBytes,
    Route,
    RouteBatch,
    RouteInputs,
    Send,
    ServiceError,
    SessionEvent,
)
from mmo.store import StoreUnavailable
from mmo.wire import codes
from mmo.wire.codes import WireError
from tests import support
from tests.redis import free_port
from tests.support import LogCapture, deployment
from tests.test_sessions import Lobby, Player

#: Seconds a route waits for a link in these tests, before "unavailable".
LINK_WAIT = 0.5

PROCESSES = """
[processes.gateway-1]
kind = "gateway"
client = "tcp:0:interface=127.0.0.1"
hosts = ["localhost", "127.0.0.1"]

[processes.lobby]
kind = "lobby"
rpc = "tcp:{lobby}:interface=127.0.0.1"
hosts = ["localhost", "127.0.0.1"]

[processes.chat]
kind = "chat"
rpc = "tcp:{chat}:interface=127.0.0.1"
hosts = ["localhost", "127.0.0.1"]
"""

#: Frames larger than one AMP value (65 535 bytes) must still be routed.
SETTINGS = "[wire]\nmax_frame_size = 262144\n"


class Harness(unittest.TestCase):
    """A lobby process served over RPC, and a gateway factory routing to it."""

    timeout = 60

    def setUp(self):
        self.config = deployment(
            self, PROCESSES.format(lobby=free_port(), chat=free_port()), extra=SETTINGS
        )
        self.lobby = Lobby()
        self.listener = serve(self.config, "lobby", self.lobby, reactor)
        self.listener.startService()
        self.addCleanup(self.stop_listener)
        process = self.config.process("gateway-1")
        # Only the lobby is up: route to it.
        self.routes = [
            r for r in gateway_routes(self.config, process, reactor, LINK_WAIT) if r.name == "lobby"
        ]
        for route in self.routes:
            for service in route.services():
                service.startService()
                self.addCleanup(service.stopService)
        self.clock = MemoryReactorClock()
        self.clock.advance(1_800_000_000)
        self.bus = MemoryBus(reactor=self.clock)
        self.signer = TicketSigner(load_key(self.config), 60.0, self.clock)
        self.gateway = support.gateway(
            self.config, "gateway-1", self.bus, self.signer, self.routes, self.clock
        )

    def stop_listener(self):
        if self.listener.running:
            return self.listener.stopService()

    def links(self):
        """The RPC links the lobby's listener has accepted."""
        return self.listener.factory.wrappedFactory.connections

    async def admitted(self) -> Player:
        player = Player(self.gateway)
        ticket = self.signer.issue("id-Alice", "Alice", "main")[0]
        player.send("auth", ticket=ticket)
        [reply] = await support.collect(player.frames)
        self.assertEqual(reply["t"], "reply", reply)
        self.session = reply["session"]
        return player

    async def ask(self, player: Player, kind: str, **fields) -> dict:
        player.send(kind, **fields)
        [answer] = await support.collect(player.frames)
        return answer


class RemoteRouteTests(Harness):
    async def test_messages_and_events(self):
        """
        Messages reach the lobby in its own process with the caller; its
        replies, its session updates and its errors come back as if local.
        """
        player = await self.admitted()
        [started] = self.lobby.seen("started")
        self.assertEqual(
            (started.session, started.gateway, started.name),
            (self.session, "gateway-1", "Alice"),
        )
        answer = await self.ask(player, "room.echo", text="hi")
        self.assertEqual(
            answer, {"t": "reply", "id": 3, "text": "hi", "who": "Alice", "via": "gateway-1"}
        )
        answer = await self.ask(player, "character.choose", name="Zorro")
        self.assertEqual(answer, {"t": "reply", "id": 4, "chosen": "Zorro"})
        [changed] = self.lobby.seen("changed")
        self.assertEqual(changed.character_name, "Zorro")
        self.assertEqual((await self.ask(player, "room.echo"))["who"], "Zorro")
        refused = await self.ask(player, "room.refuse")
        self.assertEqual(
            (refused["t"], refused["code"], refused["message"], refused["fatal"]),
            ("error", codes.ROOM_FULL, "the room is full", False),
        )
        unknown = await self.ask(player, "room.nothing")
        self.assertEqual(unknown["code"], codes.UNKNOWN_TYPE)
        broken = await self.ask(player, "room.broken")
        self.assertEqual(broken["code"], codes.INTERNAL)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        player.send_without_id("bye")
        await support.until(lambda: self.lobby.seen("ended"))
        self.assertEqual(self.lobby.seen("ended")[0].session, self.session)

    async def test_send(self):
        """
        A message of the bus vocabulary sent over the route reaches the
        service with the link's peer as its sender (not the name it claims);
        one the service does not take is refused.
        """
        received = []
        self.lobby.receive = lambda to, sender, message: received.append((to, sender, message))
        [route] = self.routes
        await route.send("r0c0", Switched("t-1", "s-1"), "someone-else")
        self.assertEqual(received, [("r0c0", "gateway-1", Switched("t-1", "s-1"))])
        del self.lobby.receive
        with self.assertRaises(rpc.BadRequest):
            await route.send("r0c0", Switched("t-2", "s-1"), "gateway-1")

    async def test_large_message(self):
        """A message larger than an AMP value is carried whole, both ways."""
        player = await self.admitted()
        text = "x" * 200_000
        answer = await self.ask(player, "room.echo", text=text)
        self.assertEqual(answer["text"], text)

    async def test_unavailable_when_down(self):
        """A service that is down gives the client 'unavailable'; the connection stays."""
        player = await self.admitted()
        self.assertEqual((await self.ask(player, "room.echo", text="up"))["text"], "up")
        await self.listener.stopService()
        for link in list(self.links()):
            link.transport.loseConnection()
        await support.until(
            lambda: not self.links() and self.routes[0].link.factory.connection is None
        )
        answer = await self.ask(player, "room.echo", text="down")
        self.assertEqual(
            (answer["t"], answer["code"], answer["fatal"]), ("error", codes.UNAVAILABLE, False)
        )
        self.assertTrue(player.open)

    async def test_batch(self):
        """
        Messages gathered in one reactor turn cross the real link in one
        RouteBatch, are handled in order, and each gets its own reply or
        error, as if it had come alone.
        """
        link = self.routes[0].link
        route = RemoteRoute(("room.",), link, batched=("room.echo", "room.refuse", "room.broken"))
        callers = [Caller(f"s{i}", "gateway-1", f"a{i}", f"P{i}") for i in range(3)]
        sent = []
        original = link.callRemote

        def recording(command, **arguments):
            sent.append(command)
            return original(command, **arguments)

        link.callRemote = recording
        results = [
            route.handle(callers[0], "room.echo", {"t": "room.echo", "text": "one"}),
            route.handle(callers[1], "room.refuse", {"t": "room.refuse"}),
            route.handle(callers[2], "room.echo", {"t": "room.echo", "text": "three"}),
            route.handle(callers[0], "room.broken", {"t": "room.broken"}),
        ]
        self.assertEqual(sent, [])
        outcomes = await defer.DeferredList(results, consumeErrors=True)
        self.assertEqual(sent, [RouteBatch])
        self.assertEqual(outcomes[0][1], {"text": "one", "who": "P0", "via": "gateway-1"})
        self.assertEqual(outcomes[2][1], {"text": "three", "who": "P2", "via": "gateway-1"})
        refused = outcomes[1][1].value
        self.assertIsInstance(refused, WireError)
        self.assertEqual((refused.code, refused.message), (codes.ROOM_FULL, "the room is full"))
        broken = outcomes[3][1].value
        self.assertEqual(broken.code, codes.INTERNAL)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    async def test_inputs(self):
        """
        Unanswered messages of one reactor turn cross the real link in one
        RouteInputs box, without an answer: the route answers each C{{}}
        itself, the service handles them in order, and a message sent after
        them arrives after them.
        """
        link = self.routes[0].link
        # The service said, answering the link's first Ping, that it takes them.
        await support.until(lambda: link.takes(RouteInputs))
        route = RemoteRoute(("room.",), link, unanswered=("room.echo", "room.refuse"))
        handled = []
        echo = self.lobby.on_room_echo

        async def recording(caller, message):
            handled.append(message["text"])
            return await echo(caller, message)

        async def last(caller, message):
            handled.append("last")
            return {"last": True}

        self.lobby.on_room_echo = recording
        self.lobby.on_room_quiet = last
        caller = Caller("s1", "gateway-1", "a1", "Alice")
        results = [
            route.handle(caller, "room.echo", {"t": "room.echo", "text": "one"}),
            route.handle(caller, "room.refuse", {"t": "room.refuse"}),
            route.handle(caller, "room.echo", {"t": "room.echo", "text": "two"}),
        ]
        # Answered by the route at once, without a Deferred.
        self.assertEqual(results, [{}, {}, {}])
        self.assertEqual(handled, [])
        # An answered message after them: handled after them.
        after = route.handle(caller, "room.quiet", {"t": "room.quiet"})
        self.assertEqual(await support.bounded(after), {"last": True})
        self.assertEqual(handled, ["one", "two", "last"])

    async def test_inputs_without_a_link(self):
        """
        No link up: an unanswered message is not answered by the route; it
        waits for a link and goes as an answered one, so the client is told
        what the service said.
        """
        await self.stop_listener()
        for link in self.links():
            link.transport.loseConnection()
        link = self.routes[0].link
        await support.until(lambda: not link.takes(RouteInputs))
        route = RemoteRoute(("room.",), link, unanswered=("room.echo",))
        caller = Caller("s1", "gateway-1", "a1", "Alice")
        echoed = route.handle(caller, "room.echo", {"t": "room.echo", "text": "hi"})
        self.assertNoResult(echoed)
        self.listener = serve(self.config, "lobby", self.lobby, reactor)
        self.listener.startService()
        self.assertEqual((await support.bounded(echoed))["text"], "hi")

    async def test_inputs_to_an_older_service(self):
        """
        A service of an older release (its Ping answer has no C{takes}, and
        it has no RouteInputs responder): the unanswered messages go in
        answered RouteBatches, and each gets the service's reply or error,
        as before; nothing reaches it as a box it cannot handle.
        """
        await self.stop_listener()
        for link in self.links():
            link.transport.loseConnection()
        factory = ServiceRPCFactory(self.config, self.config.process("lobby"), self.lobby, reactor)
        factory.protocol = OlderServiceRPC
        self.listener = serve(self.config, "lobby", self.lobby, reactor, factory)
        self.listener.startService()
        link = self.routes[0].link
        await support.until(lambda: link.factory.connection is not None)
        self.assertFalse(link.takes(RouteInputs))
        route = RemoteRoute(("room.",), link, unanswered=("room.echo", "room.refuse"))
        caller = Caller("s1", "gateway-1", "a1", "Alice")
        echoed = route.handle(caller, "room.echo", {"t": "room.echo", "text": "hi"})
        refused = route.handle(caller, "room.refuse", {"t": "room.refuse"})
        self.assertEqual((await support.bounded(echoed))["text"], "hi")
        failure = await support.bounded(self.assertFailure(refused, WireError))
        self.assertEqual(failure.code, codes.ROOM_FULL)
        self.assertEqual(OlderServiceRPC.unhandled, [])

    async def test_malformed_batch(self):
        """Each malformed call is refused on its own; the good ones are answered."""
        link = self.routes[0].link
        good = [Caller("s1", "gateway-1", "a1", "Alice").to_dict(), "room.echo", {"text": "x"}]
        calls = [good, "junk", [{"session": 7}, "room.echo", {}], [good[0], "room.echo", []], good]
        response = await link.callRemote(RouteBatch, calls=pack(calls))
        replies = unpack(response["replies"])
        self.assertEqual(len(replies), 5)
        self.assertEqual(replies[0], [0, {"text": "x", "who": "Alice", "via": "gateway-1"}])
        self.assertEqual(replies[4], replies[0])
        for reply in replies[1:4]:
            self.assertEqual(reply[:2], [1, codes.BAD_REQUEST])
        with self.assertRaises(rpc.BadRequest):
            await link.callRemote(RouteBatch, calls=pack({"not": "a list"}))


# -- the route, its commands and errors, without a network ---------------------------------


class FakeLink:
    """An RPC link double whose calls fail (or succeed) as told."""

    def __init__(self, result, clock=None):
        self.result = result
        self.reactor = clock or MemoryReactorClock()
        self.peer = type("Peer", (), {"name": "lobby"})()
        self.calls = []

    def callRemote(self, command, **arguments):
        self.calls.append((command, arguments))
        if isinstance(self.result, defer.Deferred):
            return self.result
        if isinstance(self.result, Exception):
            return defer.fail(self.result)
        return defer.succeed(self.result)


class RouteUnitTests(unittest.TestCase):
    caller = Caller("s1", "gateway-1", "a1", "Alice")

    def outcome(self, result) -> WireError:
        route = RemoteRoute(("room.",), FakeLink(result))
        return self.failureResultOf(
            route.handle(self.caller, "room.x", {"t": "room.x"}), WireError
        ).value

    def test_errors(self):
        """How each failure of the link reaches the client."""
        cases = [
            (rpc.Unavailable("no link"), codes.UNAVAILABLE),
            (error.ConnectionLost(), codes.UNAVAILABLE),
            (error.ConnectionDone(), codes.UNAVAILABLE),
            (amp.UnknownRemoteError("bug"), codes.INTERNAL),
            (ServiceError.of(WireError(codes.MUTED, "hush", fatal=True)), codes.MUTED),
        ]
        for failure, code in cases:
            self.assertEqual(self.outcome(failure).code, code, failure)
        wire = self.outcome(ServiceError.of(WireError(codes.MUTED, "hush", fatal=True)))
        self.assertEqual((wire.message, wire.fatal), ("hush", True))

    def test_no_answer(self):
        """A sent message that is never answered: 'unavailable' after the route's timeout."""
        clock = MemoryReactorClock()
        route = RemoteRoute(("room.",), FakeLink(defer.Deferred(), clock), timeout=7.0)
        d = route.handle(self.caller, "room.x", {})
        clock.advance(6.9)
        self.assertNoResult(d)
        clock.advance(0.1)
        self.assertEqual(self.failureResultOf(d, WireError).value.code, codes.UNAVAILABLE)

    def test_call(self):
        """The caller and the whole message travel as msgpack; the reply comes back."""
        link = FakeLink({"body": pack({"ok": 1})})
        route = RemoteRoute(("room.",), link)
        reply = self.successResultOf(route.handle(self.caller, "room.x", {"t": "room.x", "a": [1]}))
        self.assertEqual(reply, {"ok": 1})
        [(command, arguments)] = link.calls
        self.assertIs(command, Route)
        self.assertEqual(Caller.from_dict(unpack(arguments["caller"])), self.caller)
        self.assertEqual(unpack(arguments["body"]), {"t": "room.x", "a": [1]})
        self.successResultOf(route.session_event(self.caller, "ended"))
        self.assertIs(link.calls[-1][0], SessionEvent)
        self.assertTrue(route.owns("room.join"))
        self.assertFalse(route.owns("chat.send"))

    def test_local_route(self):
        lobby = Lobby()
        route = LocalRoute(lobby)
        self.assertTrue(route.owns("character.list"))
        self.assertEqual(route.services(), [])
        failure = self.failureResultOf(route.handle(self.caller, "room.refuse", {}), WireError)
        self.assertEqual(failure.value.code, codes.ROOM_FULL)


class CallTimeoutsTests(unittest.TestCase):
    """L{CallTimeouts}: every call given up at its own deadline, on one timer."""

    def setUp(self):
        self.clock = MemoryReactorClock()
        self.timeouts = CallTimeouts(7.0, self.clock)

    def test_each_at_its_deadline(self):
        """Calls made 3 s apart time out 3 s apart, each with a TimeoutError."""
        first = self.timeouts.watch(defer.Deferred())
        self.clock.advance(3)
        second = self.timeouts.watch(defer.Deferred())
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(3.9)
        self.assertNoResult(first)
        self.clock.advance(0.1)
        self.failureResultOf(first, defer.TimeoutError)
        self.assertNoResult(second)
        self.clock.advance(2.9)
        self.assertNoResult(second)
        self.clock.advance(0.1)
        self.failureResultOf(second, defer.TimeoutError)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_answered_in_time(self):
        """
        Answered calls are not given up, and once none waits no timer is
        left; an answered call ahead of one that waits is skipped.
        """
        first, second = defer.Deferred(), defer.Deferred()
        self.timeouts.watch(first)
        self.clock.advance(1)
        self.timeouts.watch(second)
        first.callback("one")
        self.assertEqual(self.successResultOf(first), "one")
        self.clock.advance(6.5)
        self.assertNoResult(second)
        self.clock.advance(0.5)
        self.failureResultOf(second, defer.TimeoutError)
        third = self.timeouts.watch(defer.Deferred())
        third.callback("three")
        self.assertEqual(self.successResultOf(third), "three")
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.successResultOf(self.timeouts.watch(defer.succeed(4))), 4)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_cancelled_by_its_caller(self):
        """A call its caller cancels fails as cancelled, not as timed out."""
        d = self.timeouts.watch(defer.Deferred())
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class BatchLink(FakeLink):
    """A link double that answers every RouteBatch with C{answer(calls)}, the rest as told."""

    def __init__(self, answer, result=None, clock=None):
        super().__init__(result, clock)
        self.answer = answer

    def callRemote(self, command, **arguments):
        if command is RouteBatch:
            self.calls.append((command, arguments))
            try:
                return defer.succeed({"replies": pack(self.answer(unpack(arguments["calls"])))})
            except Exception as e:
                return defer.fail(e)
        return super().callRemote(command, **arguments)


def echo(calls):
    """Every call answered with its message's text; C{"no"} refused."""
    return [
        [1, codes.ROOM_FULL, "full", True] if message.get("text") == "no" else [0, message]
        for _, _, message in calls
    ]


class OlderServiceRPC(ServiceRPC):
    """The service side of an older release: no RouteInputs, no C{takes} in its Ping answer."""

    #: The commands it was sent and could not handle.
    unhandled: list = []

    def locateResponder(self, name):
        if name == RouteInputs.commandName:
            self.unhandled.append(name)
            return None
        return super().locateResponder(name)

    @rpc.Ping.responder
    def ping(self, nonce):
        return {"nonce": nonce, "name": self.factory.process.name, "version": "0.1.0"}


class InputLink(BatchLink):
    """A link double that records what it is told (commands without an answer)."""

    def __init__(self, up=True):
        super().__init__(echo, {"body": pack({})})
        self.up = up

    def takes(self, command):
        return self.up and command is RouteInputs

    def tell(self, command, **arguments):
        self.calls.append((command, arguments))
        return defer.succeed(None)


class RouteMoves(unittest.TestCase):
    """C{zone.move}s through a route that sends them the way L{way} names."""

    caller = Caller("s1", "gateway-1", "a1", "Alice", zone="r0c0")
    #: The L{RemoteRoute} option the moves' type is given in.
    way = "batched"

    def route(self, link, **options) -> RemoteRoute:
        return RemoteRoute(("zone.",), link, **{self.way: ("zone.move",)}, **options)

    def moves(self, route, texts):
        return [route.handle(self.caller, "zone.move", {"text": t}) for t in texts]


class UnansweredTests(RouteMoves):
    """A route's unanswered messages (L{RemoteRoute.unanswered}), on a fake clock and link."""

    way = "unanswered"

    def test_one_box_per_turn(self):
        """Moves of one turn: answered C{{}} at once, sent in one RouteInputs at the turn's end."""
        link = InputLink()
        route = self.route(link)
        results = self.moves(route, ["a", "b"])
        self.assertEqual(results, [{}, {}])
        self.assertEqual(link.calls, [])
        link.reactor.advance(0)
        [(command, arguments)] = link.calls
        self.assertIs(command, RouteInputs)
        calls = unpack(arguments["calls"])
        self.assertEqual([c[2]["text"] for c in calls], ["a", "b"])
        self.assertEqual(Caller.from_dict(calls[0][0]), self.caller)

    def test_box_as_packed_whole(self):
        """
        A box is the msgpack of its list of C{[caller, kind, message]},
        byte for byte, though each call's caller is packed once per session
        (long boxes too: a header of its own past 15 calls).
        """
        link = InputLink()
        route = self.route(link)
        other = Caller("s2", "gateway-1", "a2", "Bob", zone="r0c0")
        sent = []
        for n in range(20):
            caller = self.caller if n % 3 else other
            message = {"t": "zone.move", "seq": n, "x": 1.5, "y": -2.0, "text": f"m{n}"}
            self.assertEqual(route.handle(caller, "zone.move", message), {})
            sent.append([caller.to_dict(), "zone.move", message])
        link.reactor.advance(0)
        [(_, arguments)] = link.calls
        self.assertEqual(arguments["calls"], pack(sent))

    def test_changed_caller_packed_again(self):
        """
        A session's caller changed (its zone, its character): its next
        inputs carry the new one; an ended session's packed caller is
        dropped.
        """
        link = InputLink()
        route = self.route(link)
        route.handle(self.caller, "zone.move", {"text": "a"})
        moved = self.caller.moved(zone="r0c1")
        route.handle(moved, "zone.move", {"text": "b"})
        # Equal but another object (read again from the session): the same fields.
        route.handle(self.caller.moved(), "zone.move", {"text": "c"})
        link.reactor.advance(0)
        calls = unpack(link.calls[0][1]["calls"])
        self.assertEqual([Caller.from_dict(c[0]) for c in calls], [self.caller, moved, self.caller])
        self.assertIn(self.caller.session, route._inputs)
        route.session_event(self.caller, "ended")
        self.assertNotIn(self.caller.session, route._inputs)

    def test_max_batch(self):
        link = InputLink()
        route = self.route(link, max_batch=2)
        self.moves(route, "abcde")
        link.reactor.advance(0)
        self.assertEqual([len(unpack(a["calls"])) for _, a in link.calls], [2, 2, 1])

    def test_order_kept(self):
        """Answered and unanswered messages, and a Send, reach the link in their order."""
        link = InputLink()
        route = RemoteRoute(("zone.",), link, batched=("zone.look",), unanswered=("zone.move",))
        route.handle(self.caller, "zone.look", {"text": "1"})
        self.moves(route, ["2", "3"])
        route.handle(self.caller, "zone.look", {"text": "4"})
        self.moves(route, ["5"])
        route.send("r0c0", Switched("t-1", "s1"), "gateway-1")
        self.assertEqual(
            [c for c, _ in link.calls], [RouteBatch, RouteInputs, RouteBatch, RouteInputs, Send]
        )
        texts = [[c[2]["text"] for c in unpack(a["calls"])] for _, a in link.calls[:4]]
        self.assertEqual(texts, [["1"], ["2", "3"], ["4"], ["5"]])

    def test_no_link(self):
        """
        No link up, or a service that does not take RouteInputs (an older
        version): the moves go answered, in a RouteBatch, and each gets the
        service's reply or error.
        """
        link = InputLink(up=False)
        route = self.route(link)
        results = self.moves(route, ["a", "no"])
        link.reactor.advance(0)
        self.assertEqual([c for c, _ in link.calls], [RouteBatch])
        self.assertEqual(self.successResultOf(results[0]), {"text": "a"})
        self.assertEqual(self.failureResultOf(results[1], WireError).value.code, codes.ROOM_FULL)


class BatchTests(RouteMoves):
    """A route's batches (L{RemoteRoute.batched}), on a fake clock and link."""

    def test_one_box_per_turn(self):
        """Moves of one reactor turn go in one box, in order, at the turn's end."""
        link = BatchLink(echo)
        route = self.route(link)
        results = self.moves(route, ["a", "no", "c"])
        self.assertEqual(link.calls, [])
        link.reactor.advance(0)
        [(command, arguments)] = link.calls
        self.assertIs(command, RouteBatch)
        calls = unpack(arguments["calls"])
        self.assertEqual([c[2]["text"] for c in calls], ["a", "no", "c"])
        self.assertEqual(Caller.from_dict(calls[0][0]), self.caller)
        self.assertEqual(self.successResultOf(results[0]), {"text": "a"})
        refused = self.failureResultOf(results[1], WireError).value
        self.assertEqual(
            (refused.code, refused.message, refused.fatal), (codes.ROOM_FULL, "full", True)
        )
        self.assertEqual(self.successResultOf(results[2]), {"text": "c"})
        # The next turn's moves make a new box.
        later = self.moves(route, ["d"])
        link.reactor.advance(0)
        self.assertEqual(len(link.calls), 2)
        self.assertEqual(self.successResultOf(later[0]), {"text": "d"})

    def test_max_batch(self):
        """A full box goes at once; the rest waits for the turn's end."""
        link = BatchLink(echo)
        route = self.route(link, max_batch=2)
        results = self.moves(route, "abcde")
        self.assertEqual([len(unpack(a["calls"])) for _, a in link.calls], [2, 2])
        link.reactor.advance(0)
        self.assertEqual([len(unpack(a["calls"])) for _, a in link.calls], [2, 2, 1])
        self.assertEqual([self.successResultOf(d)["text"] for d in results], list("abcde"))

    def test_send_after_the_moves(self):
        """A message sent over the route goes after the moves gathered before it."""
        link = BatchLink(echo)
        route = self.route(link)
        self.moves(route, ["a", "b"])
        sent = route.send("r0c0", Switched("t-1", "s1"), "gateway-1")
        self.assertEqual([c for c, _ in link.calls], [RouteBatch, Send])
        _, arguments = link.calls[1]
        self.assertEqual(arguments["to"], "r0c0")
        self.assertEqual(
            messages.decode(unpack(arguments["message"])), ("gateway-1", Switched("t-1", "s1"))
        )
        self.successResultOf(sent)

    def test_order_kept(self):
        """Any other message, or a session event, sends the gathered moves first."""
        link = BatchLink(echo, {"body": pack({"left": True})})
        route = self.route(link)
        self.moves(route, ["a"])
        left = route.handle(self.caller, "zone.leave", {})
        self.moves(route, ["b"])
        route.session_event(self.caller, "ended")
        self.assertEqual([c for c, _ in link.calls], [RouteBatch, Route, RouteBatch, SessionEvent])
        self.assertEqual(self.successResultOf(left), {"left": True})
        link.reactor.advance(0)
        self.assertEqual(len(link.calls), 4)

    def test_link_failures(self):
        """A box the link fails: every message in it gets the client's error for that failure."""
        for failure, code in [
            (error.ConnectionLost(), codes.UNAVAILABLE),
            (rpc.Unavailable("no link"), codes.UNAVAILABLE),
            (amp.UnknownRemoteError("bug"), codes.INTERNAL),
        ]:
            link = FakeLink(failure)
            results = self.moves(self.route(link), ["a", "b"])
            link.reactor.advance(0)
            for d in results:
                self.assertEqual(self.failureResultOf(d, WireError).value.code, code, failure)

    def test_no_answer(self):
        """A box never answered: every message in it is 'unavailable' after the timeout."""
        link = FakeLink(defer.Deferred())
        results = self.moves(self.route(link, timeout=7.0), ["a", "b"])
        link.reactor.advance(0)
        link.reactor.advance(6.9)
        for d in results:
            self.assertNoResult(d)
        link.reactor.advance(0.1)
        for d in results:
            self.assertEqual(self.failureResultOf(d, WireError).value.code, codes.UNAVAILABLE)

    def test_unreadable_answer(self):
        """Too few replies, or one that is no reply: 'internal' for those messages."""
        link = BatchLink(lambda calls: [[0, {}]])
        results = self.moves(self.route(link), ["a", "b"])
        link.reactor.advance(0)
        for d in results:
            self.assertEqual(self.failureResultOf(d, WireError).value.code, codes.INTERNAL)
        link = BatchLink(lambda calls: [[0, {"ok": 1}], "what"])
        results = self.moves(self.route(link), ["a", "b"])
        link.reactor.advance(0)
        self.assertEqual(self.successResultOf(results[0]), {"ok": 1})
        self.assertEqual(self.failureResultOf(results[1], WireError).value.code, codes.INTERNAL)

    def test_service_without_batches(self):
        """
        A service that does not know RouteBatch (an older version during an
        upgrade) left the box unhandled: each message goes again alone, and
        so do the next ones, until the route is relinked.
        """

        def unhandled(calls):
            raise amp.UnhandledCommand()

        link = BatchLink(unhandled, {"body": pack({"alone": True})})
        route = self.route(link)
        results = self.moves(route, ["a", "b"])
        link.reactor.advance(0)
        self.assertEqual([c for c, _ in link.calls], [RouteBatch, Route, Route])
        self.assertEqual(unpack(link.calls[1][1]["body"]), {"text": "a"})
        self.assertEqual(unpack(link.calls[2][1]["body"]), {"text": "b"})
        for d in results:
            self.assertEqual(self.successResultOf(d), {"alone": True})
        self.successResultOf(self.moves(route, ["c"])[0])
        self.assertEqual(link.calls[-1][0], Route)


class CommandTests(unittest.TestCase):
    def test_long_bytes(self):
        """Values over 65 535 bytes are split over several keys and joined again."""
        for size in (0, 10, amp.MAX_VALUE_LENGTH, amp.MAX_VALUE_LENGTH + 1, 200_000):
            value = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
            box = Route.makeArguments({"caller": b"c", "kind": "k", "body": value}, None)
            self.assertTrue(all(len(v) <= amp.MAX_VALUE_LENGTH for v in box.values()))
            self.assertEqual(Route.parseArguments(amp.AmpBox(box), None)["body"], value)

    def test_long_bytes_type(self):
        self.assertRaises(TypeError, LongBytes().toBox, b"x", amp.AmpBox(), {"x": "text"}, None)

    def test_service_error(self):
        error = ServiceError.of(WireError("custom_code", "why: ünïcode", fatal=False))
        again = ServiceError(str(error)).wire_error()
        self.assertEqual(
            (again.code, again.message, again.fatal), ("custom_code", "why: ünïcode", False)
        )
        self.assertEqual(ServiceError("garbage").wire_error().code, codes.INTERNAL)
        self.assertIs(Route.reverseErrors[ServiceError.code], ServiceError)


# -- configuration and wiring -------------------------------------------------------------


class WiringTests(unittest.TestCase):
    def setUp(self):
        self.config = deployment(
            self,
            PROCESSES.format(lobby=free_port(), chat=free_port()),
            extra='[bus]\nbackend = "redis"\n',
        )

    def test_gateway_routes(self):
        routes = gateway_routes(self.config, self.config.process("gateway-1"), MemoryReactorClock())
        self.assertEqual(
            [(r.name, r.prefixes) for r in routes],
            [("lobby", ROUTE_PREFIXES["lobby"]), ("chat", ROUTE_PREFIXES["chat"])],
        )
        [link] = routes[0].services()
        self.assertEqual((link.process.name, link.peer.name), ("gateway-1", "lobby"))

    def test_zone_changes_by_kind(self):
        """
        A remote route says whether its service hears zone changes, as the
        class of its kind says: the config's lobby class (a game's may
        follow the zone; one that cannot be loaded is told everything), the
        shipped class of every other kind.
        """
        from mmo.chat.service import ChatService
        from mmo.economy.service import EconomyService
        from mmo.ladder.service import LadderService
        from mmo.lobby.service import LobbyService

        classes = {
            "lobby": LobbyService,
            "chat": ChatService,
            "ladder": LadderService,
            "economy": EconomyService,
        }
        self.assertEqual(set(classes), set(ROUTE_PREFIXES))
        for kind, cls in classes.items():
            self.assertEqual(
                gateway_tap.hears_zone_changes(self.config, kind), cls.hears_zone_changes, kind
            )
        self.assertFalse(LobbyService.hears_zone_changes)
        self.assertTrue(ChatService.hears_zone_changes)
        routes = gateway_routes(self.config, self.config.process("gateway-1"), MemoryReactorClock())
        self.assertEqual(
            [(r.name, routing_module.hears_zone_changes(r)) for r in routes],
            [("lobby", False), ("chat", True)],
        )
        self.config.lobby.lobby_class = "tests.test_routing.ZoneLobby"
        self.assertTrue(gateway_tap.hears_zone_changes(self.config, "lobby"))
        self.config.lobby.lobby_class = "tests.no_such_module.Lobby"
        self.assertTrue(gateway_tap.hears_zone_changes(self.config, "lobby"))

    def test_serve_needs_rpc(self):
        self.assertRaises(ConfigError, serve, self.config, "gateway-1", Lobby(), reactor)
        self.assertTrue(IService.providedBy(serve(self.config, "lobby", Lobby(), reactor)))

    def test_gateway_plugin(self):
        """
        The gateway plugin routes to the lobby and chat of its config, runs
        their links as resources (so they outlive the sessions at stop) and
        hears its own delivery channel.
        """
        options = type("Options", (), {})()
        options.config = self.config
        options.process = self.config.process("gateway-1")
        top = gateway_tap.makeService(options, reactor=MemoryReactorClock())
        [listener] = [s for s in top if isinstance(s, ClientListener)]
        factory = listener.factory
        routes = factory.services.routes
        self.assertEqual([r.name for r in routes], ["lobby", "chat"])
        links = [r.service for r in top.resources if isinstance(r, gateway_tap.ServiceResource)]
        self.assertEqual(links, [route.link for route in routes])
        channels = [r.channel for r in top.resources if isinstance(r, gateway_tap.Subscription)]
        self.assertIn(gateway_channel("gateway-1"), channels)
        self.assertIn(SESSIONS_CHANNEL, channels)
        [stopping] = [r for r in top.resources if isinstance(r, gateway_tap.Stopping)]
        self.assertIs(stopping.factory, factory)
        order = [type(r).__name__ for r in top.resources]
        self.assertLess(order.index("ServiceResource"), order.index("Stopping"))

    def test_add_gateway_with_its_routes(self):
        """add_gateway builds a factory of the class given, on the routes given."""
        clock = MemoryReactorClock()
        config = deployment(self, "[processes.mmo]\nkind = 'mmo'\nclient = 'tcp:0'\n")
        process = config.process("mmo")
        lobby = LocalRoute(Lobby())

        class Mine(GatewayFactory):
            pass

        top = ProcessService(config, process, clock)
        factory = gateway_tap.add_gateway(top, MemoryBus(clock), [lobby], clock, Mine)
        self.assertIsInstance(factory, Mine)
        self.assertEqual(factory.services.routes, [lobby])


class ResponderTests(unittest.TestCase):
    """The service side's responder, fed AMP boxes without a network."""

    def test_round_trip(self):
        config = deployment(self, PROCESSES.format(lobby=free_port(), chat=free_port()))
        factory = ServiceRPCFactory(config, config.process("lobby"), Lobby(), MemoryReactorClock())
        link = factory.buildProtocol(None)
        self.assertIsInstance(link, ServiceRPC)
        link.peer = "gateway-1"
        caller = pack(Caller("s1", "gateway-1", "a1", "Alice").to_dict())
        responder = link.locateResponder(b"Route")
        box = Route.makeArguments({"caller": caller, "kind": "room.refuse", "body": pack({})}, link)
        result = self.failureResultOf(responder(box))
        self.assertIsInstance(result, Failure)
        self.assertEqual(result.value.errorCode, ServiceError.code)
        wire = ServiceError(result.value.description).wire_error()
        self.assertEqual((wire.code, wire.message), (codes.ROOM_FULL, "the room is full"))
        bad = Route.makeArguments({"caller": b"\xc1", "kind": "room.echo", "body": pack({})}, link)
        self.assertEqual(self.failureResultOf(responder(bad)).value.errorCode, b"BAD_REQUEST")


class Unreachable:
    """A game service whose store and bus are down."""

    async def handle(self, caller, kind, message):
        if kind == "room.store":
            raise StoreUnavailable("Redis at redis.lan:7380: Lost connection")
        raise BusError("publish on 'gateway:gateway-1': Redis did not answer within 5s")


class BackendFailureTests(unittest.TestCase):
    """
    A service whose store or bus fails answers C{unavailable} with a retry
    hint across the link, logged as a warning, not C{internal} with a
    traceback.
    """

    def setUp(self):
        config = deployment(self, PROCESSES.format(lobby=free_port(), chat=free_port()))
        factory = ServiceRPCFactory(
            config, config.process("lobby"), Unreachable(), MemoryReactorClock()
        )
        self.link = factory.buildProtocol(None)
        self.link.peer = "gateway-1"
        self.caller = Caller("s1", "gateway-1", "a1", "Alice")
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def assertWarned(self, count):
        levels = [e["log_level"] for e in self.events if "Redis" in formatEvent(e)]
        self.assertEqual(levels, [LogLevel.warn] * count)

    def test_route(self):
        responder = self.link.locateResponder(b"Route")
        for kind in ("room.store", "room.bus"):
            arguments = {"caller": pack(self.caller.to_dict()), "kind": kind, "body": pack({})}
            failure = self.failureResultOf(responder(Route.makeArguments(arguments, self.link)))
            self.assertEqual(failure.value.errorCode, ServiceError.code)
            wire = ServiceError(failure.value.description).wire_error()
            self.assertEqual(
                (wire.code, wire.fatal, wire.retry_after),
                (codes.UNAVAILABLE, False, codes.UNAVAILABLE_RETRY_AFTER),
            )
            self.assertNotIn("7380", wire.message)
        self.assertWarned(2)

    def test_route_batch(self):
        responder = self.link.locateResponder(b"RouteBatch")
        calls = [[self.caller.to_dict(), kind, {}] for kind in ("room.store", "room.bus")]
        box = self.successResultOf(
            responder(RouteBatch.makeArguments({"calls": pack(calls)}, self.link))
        )
        replies = unpack(box[b"replies"])
        self.assertEqual([r[:2] + r[3:] for r in replies], [[1, codes.UNAVAILABLE, False]] * 2)
        self.assertWarned(2)


class RouteInputsTests(unittest.TestCase):
    """The service side of L{RouteInputs}: handled in order, nothing answered, nothing raised."""

    def setUp(self):
        config = deployment(self, PROCESSES.format(lobby=free_port(), chat=free_port()))
        self.lobby = Lobby()
        self.handled = []

        async def echo(caller, message):
            self.handled.append(message.get("text"))
            return {}

        self.lobby.on_room_echo = echo
        factory = ServiceRPCFactory(
            config, config.process("lobby"), self.lobby, MemoryReactorClock()
        )
        self.link = factory.buildProtocol(None)
        self.link.peer = "gateway-1"
        self.caller = Caller("s1", "gateway-1", "a1", "Alice").to_dict()
        self.logged = LogCapture(self).lines

    def tell(self, calls) -> dict:
        responder = self.link.locateResponder(b"RouteInputs")
        return self.successResultOf(
            responder(RouteInputs.makeArguments({"calls": calls}, self.link))
        )

    def test_in_order(self):
        """
        Every input is handled in order; a refused one is told to the
        service (L{GameService.refused}: by default, logged), a malformed
        one logged, and the others go on.
        """
        refused = []
        self.lobby.refused = lambda *args: refused.append(args)
        calls = [
            [self.caller, "room.echo", {"text": "a"}],
            [self.caller, "room.refuse", {"why": 1}],
            "junk",
            [self.caller, "room.echo", {"text": "b"}],
        ]
        self.assertEqual(self.tell(pack(calls)), {})
        self.assertEqual(self.handled, ["a", "b"])
        [(caller, kind, message, error)] = refused
        self.assertEqual(caller, Caller.from_dict(self.caller))
        self.assertEqual((kind, message), ("room.refuse", {"why": 1}))
        self.assertEqual(error.code, codes.ROOM_FULL)
        malformed = [line for line in self.logged if "malformed input from gateway-1" in line]
        self.assertEqual(len(malformed), 1, self.logged)

    def test_boxes_heard_directly(self):
        """
        Off the wire, a gateway's first RouteInputs box goes AMP's way (the
        senders' check), and later ones straight from the box (no
        dispatch): handled in order, nothing answered.
        """
        transport = StringTransport()
        self.link.makeConnection(transport)
        dispatched = []
        dispatch = self.link.dispatchCommand
        self.link.dispatchCommand = lambda box: dispatched.append(box) or dispatch(box)
        boxes = [
            amp.AmpBox(
                RouteInputs.makeArguments(
                    {"calls": pack([[self.caller, "room.echo", {"text": text}]])}, self.link
                ),
                _command=b"RouteInputs",
            ).serialize()
            for text in "abc"
        ]
        self.link.dataReceived(b"".join(boxes))
        self.assertEqual(self.handled, ["a", "b", "c"])
        self.assertEqual(len(dispatched), 1)
        self.assertEqual(transport.value(), b"")

    def test_refusal_logged(self):
        """By default a game service logs what it refused (nobody else would know)."""
        self.tell(pack([[self.caller, "room.refuse", {}]]))
        refusals = [line for line in self.logged if "'room.refuse' of s1 refused" in line]
        self.assertEqual(len(refusals), 1, self.logged)
        self.assertIn(codes.ROOM_FULL, refusals[0])

    def test_refusal_that_fails(self):
        """A service whose refusal handler raises: logged, the link and the others go on."""
        self.lobby.refused = lambda *args: 1 / 0
        self.tell(pack([[self.caller, "room.refuse", {}], [self.caller, "room.echo", {}]]))
        self.assertEqual(self.handled, [None])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_malformed(self):
        """A box that is not a list of calls is logged and dropped, never an error."""
        for junk in (b"\xc1", pack({"not": "a list"})):
            self.assertEqual(self.tell(junk), {})
        self.assertEqual(self.handled, [])
        self.assertEqual(len([line for line in self.logged if "malformed inputs" in line]), 2)

    def test_caller_read_once_per_change(self):
        """
        A session's inputs carry its caller each time: read once while it
        stays the same (the same L{Caller}), read again as soon as any
        field changes (its zone after a handoff), and forgotten when the
        session ends.
        """
        seen = []

        async def echo(caller, message):
            seen.append(caller)
            return {}

        self.lobby.on_room_echo = echo
        moved = {**self.caller, "zone": "r0c1"}
        self.tell(pack([[self.caller, "room.echo", {}], [self.caller, "room.echo", {}]]))
        self.tell(pack([[moved, "room.echo", {}], [self.caller, "room.echo", {}]]))
        first, again, after_move, back = seen
        self.assertIs(again, first)
        self.assertEqual(after_move.zone, "r0c1")
        self.assertEqual(back, Caller.from_dict(self.caller))
        self.assertIsNot(back, first)
        factory = self.link.factory
        self.assertIs(factory.caller_of(self.caller), back)
        self.successResultOf(defer.ensureDeferred(factory.session_event(back, "ended")))
        self.assertIsNot(factory.caller_of(self.caller), back)

    def test_callers_kept_bounded(self):
        """The callers kept are bounded: past the bound they are read again from scratch."""
        self.patch(server_module, "MAX_CALLERS", 2)
        factory = self.link.factory
        callers = [{**self.caller, "session": f"s{i}"} for i in range(3)]
        first = [factory.caller_of(fields) for fields in callers]
        self.assertEqual(len(factory._callers), 1)
        self.assertIs(factory.caller_of(callers[2]), first[2])
        self.assertIsNot(factory.caller_of(callers[0]), first[0])

    def test_malformed_caller(self):
        """A caller that is not a map, or lacks a field, is refused, kept or not."""
        factory = self.link.factory
        factory.caller_of(self.caller)
        for junk in ("s1", [self.caller], {"session": "s1"}, {**self.caller, "session": 7}):
            self.assertRaises(rpc.BadRequest, factory.caller_of, junk)


class OwnerTests(unittest.TestCase):
    """L{Services.route_for}: the first route that owns a type, kept once found."""

    def setUp(self):
        self.asked = []
        self.lobby, self.chat = Lobby(), Lobby()
        self.chat.prefixes = ("chat.",)
        self.services = Services([self.counted(self.lobby), self.counted(self.chat)])

    def counted(self, service):
        route = LocalRoute(service)
        owns = route.owns

        def asked(kind):
            self.asked.append(kind)
            return owns(kind)

        route.owns = asked
        return route

    def test_kept(self):
        """The owner of a type is asked for once; a type nobody owns is asked every time."""
        for _ in range(3):
            self.assertIs(self.services.route_for("chat.say").service, self.chat)
            self.assertIsNone(self.services.route_for("nobody.owns"))
        self.assertEqual(self.asked.count("chat.say"), 2)
        self.assertEqual(self.asked.count("nobody.owns"), 6)

    def test_bounded(self):
        """Past L{KNOWN_KINDS} types, the owner is found by asking every time."""
        self.patch(routing_module, "KNOWN_KINDS", 1)
        for kind in ("room.a", "chat.b", "room.a", "chat.b"):
            self.services.route_for(kind)
        self.assertEqual(self.asked, ["room.a", "chat.b", "chat.b", "chat.b", "chat.b"])


class TellTests(unittest.TestCase):
    """L{Services.tell}: every route told, failures logged, done when all answered."""

    class Told:
        name = "told"

        def __init__(self, answer):
            self.answer = answer
            self.events = []

        def session_event(self, caller, event):
            self.events.append(event)
            return self.answer()

    def test_every_route_told(self):
        """
        A route that raises, one that fails at once and one that fails
        later are logged; the others are told all the same, and the result
        fires once the last has answered.
        """
        later = defer.Deferred()
        failing = defer.Deferred()
        routes = [
            self.Told(lambda: 1 / 0),
            self.Told(lambda: defer.fail(BusError("down"))),
            self.Told(lambda: later),
            self.Told(lambda: failing),
            self.Told(lambda: defer.succeed(None)),
        ]
        logged = LogCapture(self).lines
        told = Services(routes).tell(Caller("s1", "gateway-1", "a1", "Alice"), "changed")
        self.assertEqual([r.events for r in routes], [["changed"]] * 5)
        self.assertNoResult(told)
        failing.errback(BusError("gone"))
        self.assertNoResult(told)
        later.callback(None)
        self.assertIsNone(self.successResultOf(told))
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        warned = [line for line in logged if "that session s1 changed failed" in line]
        self.assertEqual(len(warned), 3, logged)

    def test_an_answer_still_on_its_way(self):
        """
        A route's Deferred that has fired but waits on another (an RPC
        link's call once the link is up: the link's readiness, then the
        service's answer) is waited for: the service has not answered yet.
        A gateway that did not wait admitted a player before chat had put
        him in his world channel, and he missed what was said next.
        """
        answer = defer.Deferred()
        routes = [self.Told(lambda: defer.succeed(None).addCallback(lambda _: answer))]
        told = Services(routes).tell(Caller("s1", "gateway-1", "a1", "Alice"), "started")
        self.assertNoResult(told)
        answer.callback({})
        self.assertIsNone(self.successResultOf(told))

    def test_zone_only(self):
        """
        A change of the zone alone is not told to a route that says its
        service does not hear zone changes, nor to a route whose service
        in this process says so; every route hears the other events.
        """
        deaf, hearing, plain = (self.Told(lambda: defer.succeed(None)) for _ in range(3))
        deaf.hears_zone_changes = False
        hearing.hears_zone_changes = True

        class Blind(GameService):
            hears_zone_changes = False

            async def session_event(self, caller, event):
                blind_events.append(event)

        blind_events = []
        routes = [deaf, hearing, plain, LocalRoute(Blind(None, None, None, None))]
        caller = Caller("s1", "gateway-1", "a1", "Alice", zone="r0c1")
        told = Services(routes).tell(caller, "changed", zone_only=True)
        self.assertIsNone(self.successResultOf(told))
        self.assertEqual([r.events for r in routes[:3]], [[], ["changed"], ["changed"]])
        self.assertEqual(blind_events, [])
        Services(routes).tell(caller, "changed")
        self.assertEqual(
            [r.events for r in routes[:3]], [["changed"], ["changed"] * 2, ["changed"] * 2]
        )
        self.assertEqual(blind_events, ["changed"])

    def test_all_at_once(self):
        """Routes that all answered at once: told is done at once."""
        routes = [self.Told(lambda: defer.succeed(None)) for _ in range(2)]
        told = Services(routes).tell(Caller("s1", "gateway-1", "a1", "Alice"), "moved")
        self.assertIsNone(self.successResultOf(told))


class CallerTests(unittest.TestCase):
    def test_round_trip(self):
        """A caller survives the trip to a service, every field and a moved one."""
        caller = Caller("s1", "gateway-1", "a1", "Alice", "eu", "c-1", "Alicia", "r0c0", True)
        self.assertEqual(dataclasses.asdict(caller), caller.to_dict())
        self.assertEqual(Caller.from_dict(unpack(pack(caller.to_dict()))), caller)
        moved = caller.moved(zone="r0c1")
        self.assertEqual((moved.zone, caller.zone), ("r0c1", "r0c0"))
        self.assertEqual(moved.to_dict(), {**caller.to_dict(), "zone": "r0c1"})


#: A lobby and a process of each kind that may or may not talk to it.
SENDERS = (("gateway-1", "gateway"), ("login", "login"), ("zone-1", "zone"), ("lobby", "lobby"))


class SenderKindTests(unittest.TestCase):
    """
    A game service carries out a command only from the process kinds that
    may send it: the kind of the process the link's certificate names, over
    real mutual TLS on the loopback interface.
    """

    timeout = 60

    async def asLobbyFrom(self, name: str):
        """A link from process C{name} to a lobby served on a free port."""
        self.config = deployment(self, support.process_tables(*SENDERS))
        self.lobby = Lobby()
        factory = ServiceRPCFactory(self.config, self.config.process("lobby"), self.lobby, reactor)
        listening = await rpc.listen_port(self.config, "lobby", factory, reactor)
        self.addCleanup(listening.stopListening)
        link = rpc.RPCClientService(
            self.config,
            name,
            "lobby",
            endpoint=TCP4ClientEndpoint(reactor, "127.0.0.1", listening.getHost().port),
            reactor=reactor,
        )
        link.startService()
        self.addCleanup(link.stopService)
        return link

    def route(self, link, **caller):
        fields = Caller("s1", "gateway-1", "id-Mallory", "Mallory").to_dict()
        return support.bounded(
            link.callRemote(
                Route,
                caller=pack({**fields, **caller}),
                kind="room.echo",
                body=pack({"t": "room.echo", "text": "hi"}),
            )
        )

    async def test_gateway_accepted(self):
        """A gateway's Route, RouteBatch and SessionEvent are carried out."""
        link = await self.asLobbyFrom("gateway-1")
        reply = await self.route(link)
        self.assertEqual(unpack(reply["body"])["who"], "Mallory")
        caller = Caller("s1", "gateway-1", "id-Mallory", "Mallory").to_dict()
        await support.bounded(link.callRemote(SessionEvent, caller=pack(caller), event="ended"))
        self.assertEqual([c.account_id for c in self.lobby.seen("ended")], ["id-Mallory"])

    async def assertRefused(self, name: str, kind: str):
        logged = LogCapture(self).lines
        link = await self.asLobbyFrom(name)
        caller = pack(Caller("s1", "gateway-1", "id-Alice", "Alice").to_dict())
        sends = {
            "Route": lambda: self.route(link),
            "SessionEvent": lambda: link.callRemote(SessionEvent, caller=caller, event="ended"),
            "Send": lambda: link.callRemote(Send, to="r0c0", message=pack({})),
            "RouteBatch": lambda: link.callRemote(
                RouteBatch, calls=pack([[unpack(caller), "room.echo", {"t": "room.echo"}]])
            ),
        }
        for command, send in sends.items():
            failure = await self.assertFailure(support.bounded(send()), rpc.Refused)
            self.assertIn(f"{name} ({kind}) may not send {command}", str(failure))
        self.assertEqual(self.lobby.events, [])
        # Ping is anyone's, and the link stays up.
        answer = await support.bounded(link.callRemote(rpc.Ping, nonce=7))
        self.assertEqual(answer["name"], "lobby")
        warnings = [line for line in logged if f"from {name} at" in line and "refused" in line]
        self.assertEqual(len(warnings), 4, logged)
        self.assertIn(f"a {kind} process may not send it (only gateway)", warnings[0])

    async def test_login_refused(self):
        """The login process's certificate cannot speak for players."""
        await self.assertRefused("login", "login")

    async def test_zone_refused(self):
        """Nor can a zone's."""
        await self.assertRefused("zone-1", "zone")


class ZoneLobby(LobbyService):
    """A game's lobby that follows its players' zones."""

    hears_zone_changes = True
