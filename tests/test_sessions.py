"""
Tests for gateway sessions (L{mmo.gateway.session}, L{mmo.gateway.factory},
L{mmo.gateway.protocol}): numbering and keeping pushes, detaching and
resuming (on the same gateway and on another one, through the bus),
heartbeats, flood limits and routing to in-process game services; and the
SDK's side of heartbeats and resume.

Everything runs on a L{MemoryReactorClock} with the in-process bus and
C{StringTransport}s (or linked fake transports for the SDK): no network,
no real time.  The game service is a test double of the callee; the
gateways under test are real, two of them sharing one bus when a session
moves between them.
"""

from __future__ import annotations

import sys
from collections import deque
from itertools import count

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionLost
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.trial import unittest

from mmo import client as sdk
from mmo.bus.memory import MemoryBus
from mmo.config import Config
from mmo.game import messages
from mmo.game.messages import PushStems, gateway_channel, online_key, session_key
from mmo.game.routes import LocalRoute
from mmo.game.service import Caller, GameService, Reply, SessionChange, deliver
from mmo.gateway.admission import FloodLimits
from mmo.gateway.factory import GatewayFactory
from mmo.gateway.session import ResumeRefused, Session, token_hash
from mmo.login.tickets import Ticket, TicketSigner
from mmo.ratelimit import TokenBucket
from mmo.wire import codec, codes
from mmo.wire.codes import WireError
from tests import support

PEER = IPv4Address("TCP", "192.0.2.7", 51000)
KEY = b"k" * 64
WINDOW = 60.0
INTERVAL = 10.0
TIMEOUT = 30.0


def make_config(flood=None, **gateway) -> Config:
    """Two gateways of one realm, with C{[gateway]} settings C{gateway}."""
    settings = {
        "heartbeat_interval": INTERVAL,
        "heartbeat_timeout": TIMEOUT,
        "resume_window": WINDOW,
        "resume_buffer": 100,
        "flood_rate": 1000.0,
        "flood_burst": 1000,
        **gateway,
    }
    if flood:
        settings["flood"] = flood
    return support.config_of(
        {
            "gw-a": {"kind": "gateway", "client": "tcp:7001"},
            "gw-b": {"kind": "gateway", "client": "tcp:7002"},
        },
        gateway=settings,
        wire={"idle_timeout": 3600.0, "handshake_timeout": 3600.0},
    )


class Lobby(GameService):
    """A game service standing in for the lobby: records what the gateways tell it."""

    kind = "lobby"
    prefixes = ("room.", "character.")

    def __init__(self):
        super().__init__(None, None, None, None)
        self.events: list[tuple[str, Caller]] = []

    async def session_event(self, caller, event):
        self.events.append((event, caller))

    def seen(self, event: str) -> list[Caller]:
        return [caller for name, caller in self.events if name == event]

    async def on_room_echo(self, caller, message):
        return {"text": message.get("text"), "who": caller.display_name, "via": caller.gateway}

    async def on_room_refuse(self, caller, message):
        raise WireError(codes.ROOM_FULL, "the room is full")

    async def on_room_broken(self, caller, message):
        raise ZeroDivisionError("a bug in the service")

    async def on_room_quiet(self, caller, message):
        return None

    async def on_character_choose(self, caller, message):
        name = message["name"]
        return Reply({"chosen": name}, SessionChange(character_id=f"c-{name}", character_name=name))


class Player:
    """One client connection to a gateway factory, over a C{StringTransport}."""

    def __init__(self, factory: GatewayFactory):
        self.factory = factory
        self.protocol = factory.buildProtocol(PEER)
        self.transport = StringTransport(peerAddress=PEER)
        self.protocol.makeConnection(self.transport)
        self.ids = count(1)
        [welcome] = self.request("hello", versions=[1])
        assert welcome["t"] == "reply", welcome

    def send(self, kind: str, **fields) -> int:
        request_id = next(self.ids)
        self.protocol.dataReceived(codec.frame({**fields, "t": kind, "id": request_id}))
        return request_id

    def send_without_id(self, kind: str, **fields) -> None:
        self.protocol.dataReceived(codec.frame({**fields, "t": kind}))

    def frames(self) -> list[dict]:
        """What the gateway sent since the last call (after running what is due)."""
        self.factory.reactor.advance(0)
        return support.written_frames(self.transport)

    def request(self, kind: str, **fields) -> list[dict]:
        self.send(kind, **fields)
        return self.frames()

    def pushes(self) -> list[tuple[int, str]]:
        """The pushes received since the last call, as (seq, text)."""
        return [(f["seq"], f.get("text")) for f in self.frames()]

    def drop(self) -> None:
        """The connection is gone, without a goodbye (as when the network fails)."""
        self.protocol.connectionLost(Failure(ConnectionLost("cable cut")))

    @property
    def open(self) -> bool:
        return not self.transport.disconnecting


class SessionTestCase(unittest.TestCase):
    """Gateways on a fake clock sharing an in-process bus, with a fake lobby."""

    settings: dict = {}
    flood: dict | None = None

    def setUp(self):
        self.config = make_config(self.flood, **self.settings)
        self.clock = MemoryReactorClock()
        self.clock.advance(1_800_000_000)
        self.bus = MemoryBus(reactor=self.clock)
        self.signer = TicketSigner(KEY, 60.0, self.clock)
        self.lobby = Lobby()
        self.a = self.gateway("gw-a")

    def gateway(self, name: str) -> GatewayFactory:
        """A gateway factory wired as L{mmo.gateway.tap.add_gateway} wires one."""
        return support.gateway(
            self.config, name, self.bus, self.signer, [LocalRoute(self.lobby)], self.clock
        )

    def admit(self, factory: GatewayFactory, name: str = "Alice") -> tuple[Player, dict]:
        """A player admitted on C{factory} with a fresh ticket, and the auth reply."""
        player = Player(factory)
        ticket = self.signer.issue(f"id-{name}", name, "main")[0]
        [reply] = player.request("auth", ticket=ticket)
        self.assertEqual(reply["t"], "reply", reply)
        return player, reply

    def deliver(self, gateway: str, session: str, *texts: str) -> None:
        """Game services push C{texts} to C{session} through the bus, as they do."""
        for text in texts:
            self.successResultOf(
                defer.ensureDeferred(
                    deliver(self.bus, [(gateway, session)], "news", {"text": text})
                )
            )
        self.clock.advance(0)

    def assertRefused(self, frames, request_id, fragment=""):
        [error] = frames
        self.assertEqual(
            (error["t"], error["code"], error["id"], error["fatal"]),
            ("error", codes.RESUME_REFUSED, request_id, False),
        )
        self.assertIn(fragment, error["message"])


# -- the session's life on one gateway ------------------------------------------------


class LifecycleTests(SessionTestCase):
    def test_connection_keeps_no_clock_method(self):
        """
        A connection schedules on the factory's clock without keeping a
        bound method of it (one per connection); its idle timeout still
        runs on that clock.
        """
        player = Player(self.a)
        self.assertNotIn("callLater", vars(player.protocol))
        self.clock.advance(self.config.wire.idle_timeout)
        [bye] = player.frames()
        self.assertEqual(bye["code"], codes.IDLE_TIMEOUT)

    def test_connection_attributes_all_made_at_once(self):
        """
        A connection sets no attribute that its constructor did not make
        first (so that connections share one table of attribute names).
        """
        player, reply = self.admit(self.a)
        self.deliver("gw-a", reply["session"], "news")
        player.request("ping")
        player.drop()
        made = self.a.protocol()
        self.assertEqual(list(vars(player.protocol)), list(vars(made)))

    def test_auth_gives_resume_token(self):
        """
        The auth reply carries the session id and a random resume token;
        the services hear the session started, as a caller of this gateway.
        """
        player, reply = self.admit(self.a)
        other, second = self.admit(self.a, "Bob")
        self.assertIsInstance(reply["resume"], str)
        self.assertGreaterEqual(len(reply["resume"]), 43)
        self.assertNotEqual(reply["resume"], second["resume"])
        [alice, bob] = self.lobby.seen("started")
        self.assertEqual(
            (alice.session, alice.gateway, alice.account_id, alice.name),
            (reply["session"], "gw-a", "id-Alice", "Alice"),
        )
        self.assertEqual(bob.session, second["session"])
        self.assertIsInstance(player.protocol.session, Session)

    def test_seq_continues_across_reattach(self):
        """
        Pushes are numbered by the session: a push made while detached is
        numbered and kept, and the numbering goes on after the resume.
        """
        player, reply = self.admit(self.a)
        self.assertEqual(player.protocol.push("news", text="one"), 1)
        self.deliver("gw-a", reply["session"], "two")
        self.assertEqual(player.pushes(), [(1, "one"), (2, "two")])
        player.drop()
        self.deliver("gw-a", reply["session"], "three", "four")
        self.assertEqual(player.frames(), [])
        session = self.a.sessions.registry.by_id[reply["session"]]
        self.assertEqual((session.state, session.seq, len(session.outbox)), ("detached", 4, 4))
        again = Player(self.a)
        [resumed, *replayed] = again.request("resume", token=reply["resume"], last_seq=2)
        self.assertEqual(
            (resumed["t"], resumed["session"], resumed["seq"], resumed["replayed"]),
            ("reply", reply["session"], 4, 2),
        )
        self.assertEqual([(p["seq"], p["text"]) for p in replayed], [(3, "three"), (4, "four")])
        self.assertEqual(again.protocol.push("news", text="five"), 5)
        self.deliver("gw-a", reply["session"], "six")
        self.assertEqual(again.pushes(), [(5, "five"), (6, "six")])
        self.assertEqual(self.lobby.seen("ended"), [])

    def test_push_to_many_encoded_once(self):
        """
        A service's push to several sessions is encoded once: every session
        keeps the same stem, and each client gets it with its own number.
        """
        alice, one = self.admit(self.a)
        bob, two = self.admit(self.a, "Bob")
        alice.protocol.push("news", text="first")
        alice.frames()
        self.successResultOf(
            defer.ensureDeferred(
                deliver(
                    self.bus,
                    [("gw-a", one["session"]), ("gw-a", two["session"])],
                    "news",
                    {"text": "all"},
                )
            )
        )
        self.clock.advance(0)
        self.assertEqual(alice.frames(), [{"t": "news", "text": "all", "seq": 2}])
        self.assertEqual(bob.frames(), [{"t": "news", "text": "all", "seq": 1}])
        held = self.a.sessions.registry.by_id
        self.assertIs(
            held[one["session"]].outbox.newest(1)[0], held[two["session"]].outbox.newest(1)[0]
        )

    def writes(self, player: Player) -> list[list[tuple[int, str]]]:
        """Each write to C{player}'s connection from now on, as its pushes' (seq, text)."""
        writes = []

        def write(data: bytes) -> None:
            writes.append([(f["seq"], f.get("text")) for f in support.decode_frames(data)])
            StringTransport.write(player.transport, data)

        self.patch(player.transport, "write", write)
        return writes

    def publish(self, *pushes) -> None:
        """Services push C{(targets, text)} each, one after another on the bus."""
        for targets, text in pushes:
            self.successResultOf(
                defer.ensureDeferred(deliver(self.bus, targets, "news", {"text": text}))
            )

    def test_push_run_one_write_per_connection(self):
        """
        Pushes that reach the gateway one after another on the bus (a chat
        channel's burst) are sent as one write per connection, each
        session's frames numbered in the order the pushes came.
        """
        alice, one = self.admit(self.a)
        bob, two = self.admit(self.a, "Bob")
        alice.protocol.push("news", text="before")
        alice.frames()
        writes = [self.writes(alice), self.writes(bob)]
        both = [("gw-a", one["session"]), ("gw-a", two["session"])]
        self.publish((both, "one"), (both[1:], "two"), (both, "three"))
        self.clock.advance(0)
        self.assertEqual(writes[0], [[(2, "one"), (3, "three")]])
        self.assertEqual(writes[1], [[(1, "one"), (2, "two"), (3, "three")]])
        held = self.a.sessions.registry.by_id
        self.assertEqual(
            [codec.decode(body)["text"] for body in held[two["session"]].missed(0)],
            ["one", "two", "three"],
        )

    def test_push_run_cut_by_other_messages(self):
        """
        A gateway message of another kind between pushes (a zone's tick)
        is handled in its place: every frame of a connection in the order
        the messages came, the pushes before it and after it each written
        together.
        """
        alice, one = self.admit(self.a)
        writes = self.writes(alice)
        me = [("gw-a", one["session"])]
        self.publish((me, "one"), (me, "two"))
        stem = codec.push_stem("news", {"text": "tick"})
        self.bus.publish(
            gateway_channel("gw-a"),
            messages.encode(PushStems({one["session"]: [stem]}), "r0c0"),
        )
        self.publish((me, "three"))
        self.clock.advance(0)
        self.assertEqual(writes, [[(1, "one"), (2, "two")], [(3, "tick")], [(4, "three")]])

    def test_push_run_backlog(self):
        """A run's write counts against the bound on unread output like any other."""
        alice, one = self.admit(self.a)
        backlog = alice.protocol.backlog
        backlog.pauseProducing()
        me = [("gw-a", one["session"])]
        self.publish((me, "one"), (me, "two"))
        self.clock.advance(0)
        frames = alice.transport.value()
        self.assertEqual(len(support.decode_frames(frames)), 2)
        self.assertEqual(backlog.unsent, len(frames))

    def test_push_to_many_one_failing(self):
        """
        A service's push that one session's connection fails to send is
        logged for that session; the sessions after it are pushed still,
        and the failing one keeps it for a resume.
        """
        alice, one = self.admit(self.a)
        bob, two = self.admit(self.a, "Bob")
        carol, three = self.admit(self.a, "Carol")

        def broken(frame):
            raise RuntimeError("socket gone")

        self.patch(bob.protocol, "sendFramesNow", broken)
        targets = [("gw-a", reply["session"]) for reply in (one, two, three)]
        self.successResultOf(
            defer.ensureDeferred(deliver(self.bus, targets, "news", {"text": "all"}))
        )
        self.clock.advance(0)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        for player in (alice, carol):
            self.assertEqual(player.frames(), [{"t": "news", "text": "all", "seq": 1}])
        session = self.a.sessions.get(two["session"])
        self.assertEqual([codec.decode(body)["text"] for body in session.missed(0)], ["all"])

    def test_resume_replays_missed_once_in_order(self):
        """
        What the client says it saw decides the replay: pushes sent before
        the drop but not seen are replayed too; nothing is sent twice.
        """
        player, reply = self.admit(self.a)
        self.deliver("gw-a", reply["session"], "a", "b", "c", "d", "e")
        self.assertEqual([seq for seq, _ in player.pushes()], [1, 2, 3, 4, 5])
        player.drop()
        self.deliver("gw-a", reply["session"], "f", "g")
        again = Player(self.a)
        [_, *replayed] = again.request("resume", token=reply["resume"], last_seq=3)
        self.assertEqual(
            [(p["seq"], p["text"]) for p in replayed],
            [(4, "d"), (5, "e"), (6, "f"), (7, "g")],
        )
        self.deliver("gw-a", reply["session"], "h")
        self.assertEqual(again.pushes(), [(8, "h")])

    def test_nothing_missed(self):
        player, reply = self.admit(self.a)
        self.deliver("gw-a", reply["session"], "a")
        player.drop()
        [resumed] = Player(self.a).request("resume", token=reply["resume"], last_seq=1)
        self.assertEqual((resumed["seq"], resumed["replayed"]), (1, 0))

    def test_window_runs_out(self):
        """
        After the resume window the session ends: the services hear it, the
        presence is cleared, and the token is refused.
        """
        player, reply = self.admit(self.a)
        player.drop()
        self.clock.advance(WINDOW - 1)
        self.assertEqual(self.lobby.seen("ended"), [])
        self.successResultOf(self.a.sessions.refresh())
        self.assertIsNotNone(self.successResultOf(self.bus.get(online_key("id-Alice"))))
        self.clock.advance(1)
        [ended] = self.lobby.seen("ended")
        self.assertEqual(ended.session, reply["session"])
        self.assertIsNone(self.successResultOf(self.bus.get(online_key("id-Alice"))))
        self.assertEqual(len(self.a.sessions.registry), 0)
        late = Player(self.a)
        request_id = late.send("resume", token=reply["resume"], last_seq=0)
        self.assertRefused(late.frames(), request_id, "unknown")
        self.assertTrue(late.open)

    def test_token_used_once(self):
        """A token resumes once; the reply's new token resumes the next time."""
        player, reply = self.admit(self.a)
        player.drop()
        first = Player(self.a)
        [resumed] = first.request("resume", token=reply["resume"], last_seq=0)
        self.assertNotEqual(resumed["resume"], reply["resume"])
        first.drop()
        second = Player(self.a)
        request_id = second.send("resume", token=reply["resume"], last_seq=0)
        self.assertRefused(second.frames(), request_id)
        [again] = second.request("resume", token=resumed["resume"], last_seq=0)
        self.assertEqual((again["t"], again["session"]), ("reply", reply["session"]))

    def test_missed_more_than_the_buffer(self):
        """
        A client that missed more pushes than are kept is refused with a
        clear message, and the session ends (it can never be resumed).
        """
        self.config.gateway.resume_buffer = 3
        player, reply = self.admit(self.a)
        player.drop()
        self.deliver("gw-a", reply["session"], "1", "2", "3", "4", "5")
        again = Player(self.a)
        request_id = again.send("resume", token=reply["resume"], last_seq=1)
        self.assertRefused(again.frames(), request_id, "missed too much")
        [ended] = self.lobby.seen("ended")
        self.assertEqual(ended.session, reply["session"])
        # Exactly as much as the buffer holds is fine.
        player, reply = self.admit(self.a, "Bob")
        player.drop()
        self.deliver("gw-a", reply["session"], "1", "2", "3", "4", "5")
        [resumed, *replayed] = again.request("resume", token=reply["resume"], last_seq=2)
        self.assertEqual([p["seq"] for p in replayed], [3, 4, 5])

    def test_missed_more_than_the_buffer_holds_in_bytes(self):
        """
        The byte bound of C{resume_buffer_bytes} applies like the count:
        a resume that needs a push no longer kept is refused, and the
        session ends.
        """
        self.config.gateway.resume_buffer_bytes = 64 * 1024
        player, reply = self.admit(self.a)
        player.drop()
        self.deliver("gw-a", reply["session"], *[str(i) + "x" * 10000 for i in range(10)])
        session = self.a.sessions.get(reply["session"])
        self.assertLessEqual(session.outbox_bytes, 64 * 1024)
        again = Player(self.a)
        request_id = again.send("resume", token=reply["resume"], last_seq=0)
        self.assertRefused(again.frames(), request_id, "missed too much")
        [ended] = self.lobby.seen("ended")
        self.assertEqual(ended.session, reply["session"])

    def test_last_seq_ahead(self):
        """A last_seq the session never reached is refused; the token stays good."""
        player, reply = self.admit(self.a)
        player.drop()
        again = Player(self.a)
        request_id = again.send("resume", token=reply["resume"], last_seq=7)
        self.assertRefused(again.frames(), request_id, "ahead")
        [resumed] = again.request("resume", token=reply["resume"], last_seq=0)
        self.assertEqual(resumed["t"], "reply")

    def test_resume_while_still_attached(self):
        """
        A resume while the old connection is still attached (a half-open
        connection) takes the session; the old one is told why and closed.
        """
        old, reply = self.admit(self.a)
        self.deliver("gw-a", reply["session"], "a")
        self.assertEqual(old.pushes(), [(1, "a")])
        new = Player(self.a)
        [resumed] = new.request("resume", token=reply["resume"], last_seq=1)
        self.assertEqual(resumed["t"], "reply")
        [bye] = old.frames()
        self.assertEqual((bye["t"], bye["code"]), ("bye", codes.RESUMED_ELSEWHERE))
        self.assertFalse(old.open)
        old.drop()
        self.deliver("gw-a", reply["session"], "b")
        self.assertEqual(new.pushes(), [(2, "b")])
        self.assertEqual(old.frames(), [])
        self.assertEqual(self.a.sessions.registry.by_id[reply["session"]].connection, new.protocol)

    def test_bye_ends_at_once(self):
        player, reply = self.admit(self.a)
        player.send_without_id("bye")
        self.assertFalse(player.open)
        [ended] = self.lobby.seen("ended")
        self.assertEqual(ended.session, reply["session"])
        player.drop()
        self.assertEqual(len(self.lobby.seen("ended")), 1)
        late = Player(self.a)
        request_id = late.send("resume", token=reply["resume"], last_seq=0)
        self.assertRefused(late.frames(), request_id)

    def test_logout_ends_at_once(self):
        player, reply = self.admit(self.a)
        answer, bye = player.request("logout")
        self.assertEqual(answer["t"], "reply")
        self.assertEqual([c.session for c in self.lobby.seen("ended")], [reply["session"]])
        self.assertEqual(bye["code"], codes.LOGGED_OUT)
        self.assertIsNone(
            self.successResultOf(self.bus.get(session_key(token_hash(reply["resume"]))))
        )

    def test_replaced(self):
        """
        A second login replaces the session, attached or detached: the old
        one ends (services told), its token is refused, the presence stays
        the new one's.
        """
        first, reply = self.admit(self.a)
        first.drop()
        second, newer = self.admit(self.a)
        self.assertEqual([c.session for c in self.lobby.seen("ended")], [reply["session"]])
        self.assertEqual(
            self.successResultOf(self.bus.get(online_key("id-Alice")))["session"],
            newer["session"],
        )
        late = Player(self.a)
        request_id = late.send("resume", token=reply["resume"], last_seq=0)
        self.assertRefused(late.frames(), request_id)
        # Attached: told why.
        third, _ = self.admit(self.a)
        [bye] = second.frames()
        self.assertEqual(bye["code"], codes.REPLACED)
        self.assertIs(self.a.sessions.registry.by_account["id-Alice"].connection, third.protocol)

    def test_no_resume_window(self):
        """With a window of 0 a dropped session ends at once."""
        self.config.gateway.resume_window = 0
        player, reply = self.admit(self.a)
        player.drop()
        self.assertEqual([c.session for c in self.lobby.seen("ended")], [reply["session"]])

    def test_resume_checks(self):
        """resume needs an id, a string token and a non-negative last_seq, before auth."""
        player = Player(self.a)
        player.send_without_id("resume", token="x", last_seq=0)
        [error] = player.frames()
        self.assertEqual((error["code"], error["id"]), (codes.BAD_REQUEST, None))
        for fields in (
            {"last_seq": 0},
            {"token": 5, "last_seq": 0},
            {"token": "x", "last_seq": -1},
        ):
            request_id = player.send("resume", **fields)
            [error] = player.frames()
            self.assertEqual((error["code"], error["id"]), (codes.BAD_REQUEST, request_id))
        admitted, reply = self.admit(self.a)
        request_id = admitted.send("resume", token=reply["resume"], last_seq=0)
        [error] = admitted.frames()
        self.assertEqual((error["code"], error["id"]), (codes.BAD_REQUEST, request_id))

    def test_shutdown_ends_sessions(self):
        """A stopping gateway ends every session it holds, attached or not."""
        first, one = self.admit(self.a)
        second, two = self.admit(self.a, "Bob")
        first.drop()
        self.successResultOf(self.a.stop())
        self.assertEqual(
            sorted(c.session for c in self.lobby.seen("ended")),
            sorted([one["session"], two["session"]]),
        )
        self.assertFalse(second.open)

    def test_push_too_large(self):
        """A push that could never be sent takes no number."""
        player, reply = self.admit(self.a)
        error = self.assertRaises(WireError, player.protocol.push, "news", text="x" * 70000)
        self.assertEqual(error.code, codes.FRAME_TOO_LARGE)
        self.assertEqual(player.protocol.push("news", text="ok"), 1)


class PresenceTests(SessionTestCase):
    """The presence and token keys of the sessions a gateway holds."""

    def test_refresh_in_bulk(self):
        """
        One refresh renews both keys of every session held, attached or
        not, in one bus call.
        """
        self.admit(self.a, "Alice")
        dropped, _ = self.admit(self.a, "Bob")
        self.admit(self.a, "Carol")
        dropped.drop()
        calls = []
        self.patch(self.bus, "put", lambda *a, **kw: calls.append(("put", a)))
        put_many = self.bus.put_many

        def counted(items, ttl=None):
            items = list(items)
            calls.append(("put_many", len(items), ttl))
            return put_many(items, ttl)

        self.patch(self.bus, "put_many", counted)
        self.clock.advance(self.config.bus.heartbeat_timeout - 1)
        self.successResultOf(self.a.sessions.refresh())
        self.assertEqual(calls, [("put_many", 6, self.config.bus.heartbeat_timeout)])
        self.clock.advance(2)
        for name in ("Alice", "Bob", "Carol"):
            held = self.successResultOf(self.bus.get(online_key(f"id-{name}")))
            self.assertEqual(held["gateway"], "gw-a", name)
        for session in self.a.sessions.registry:
            self.assertEqual(
                self.successResultOf(self.bus.get(session_key(session.token_hash))), "gw-a"
            )

    def test_refresh_failure_logged(self):
        """A failed renewal is logged; the refresh itself does not fail (its timer goes on)."""
        self.admit(self.a)
        self.patch(self.bus, "put_many", lambda items, ttl=None: defer.fail(RuntimeError("down")))
        self.assertIsNone(self.successResultOf(self.a.sessions.refresh()))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_refresh_nothing_held(self):
        """With no session, a refresh sends nothing."""
        self.patch(self.bus, "put_many", lambda items, ttl=None: self.fail("sent"))
        self.assertIsNone(self.successResultOf(self.a.sessions.refresh()))


class Frames:
    """
    What a session's connection is sent, as frames; or, given an
    exception, a connection whose every send raises it.
    """

    def __init__(self, failure: Exception | None = None):
        self.sent: list[bytes] = []
        self.failure = failure

    def canSend(self) -> bool:
        return True

    def sendFrame(self, frame: bytes) -> None:
        if self.failure is not None:
            raise self.failure
        self.sent.append(frame)


class SessionUnitTests(unittest.TestCase):
    def session(self, buffer=3):
        caller = Caller("s1", "gw", "a1", "Alice")
        return Session(caller, None, "token", buffer, 1000)

    def test_missed(self):
        session = self.session()
        for i in range(5):
            session.push("n", {"i": i})
        missed = [codec.decode(body) for body in session.missed(2)]
        self.assertEqual([(m["seq"], m["i"]) for m in missed], [(3, 2), (4, 3), (5, 4)])
        self.assertEqual(session.missed(5), [])
        self.assertTrue(self.assertRaises(ResumeRefused, session.missed, 1).final)
        self.assertFalse(self.assertRaises(ResumeRefused, session.missed, 6).final)

    def test_missed_nothing_kept(self):
        session = self.session()
        self.assertEqual(session.missed(0), [])

    def test_idle_session_small(self):
        """
        A session holds no per-instance dict, and no outbox storage until
        its first push (a gateway holds one per player, most of them idle).
        """
        session = self.session()
        self.assertFalse(hasattr(session, "__dict__"))
        self.assertEqual(sys.getsizeof(session.outbox), sys.getsizeof(()))
        session.push("n", {"i": 1})
        self.assertEqual((session.oldest_kept, len(session.outbox)), (1, 1))
        self.assertEqual(session.missed(0), [codec.numbered_body(session.outbox.newest(1)[0], 1)])

    def test_outbox_small_and_bounded(self):
        """
        One push costs an idle session a small list, not a deque's block;
        a full outbox drops the oldest, and the slots of what it dropped
        do not pile up.
        """
        session = self.session(buffer=100)
        session.push("n", {"i": 0})
        self.assertLess(sys.getsizeof(session.outbox._stems), sys.getsizeof(deque()) // 4)
        for i in range(1, 1000):
            session.push("n", {"i": i})
            self.assertLessEqual(len(session.outbox._stems), 2 * 100)
        self.assertEqual((len(session.outbox), session.oldest_kept), (100, 901))
        self.assertEqual(
            [codec.decode(body)["i"] for body in session.missed(900)], list(range(900, 1000))
        )

    def test_buffer_bounded_in_bytes(self):
        """
        The outbox keeps at most C{buffer_bytes} of bodies: the oldest go
        first, and a resume that needs them is refused for good.
        """
        caller = Caller("s1", "gw", "a1", "Alice")
        session = Session(caller, None, "token", 1000, 10000, buffer_bytes=1000)
        for i in range(20):
            session.push("n", {"i": i, "pad": "x" * 90})
        size = len(session.missed(19)[0])
        self.assertEqual(len(session.outbox), 1000 // size)
        self.assertLessEqual(session.outbox_bytes, 1000)
        oldest = session.oldest_kept
        self.assertEqual(
            session.outbox_bytes, sum(len(body) for body in session.missed(oldest - 1))
        )
        self.assertEqual(len(session.missed(oldest - 1)), 20 - oldest + 1)
        refused = self.assertRaises(ResumeRefused, session.missed, oldest - 2)
        self.assertTrue(refused.final)
        self.assertIn("1000 bytes", refused.reason)

    def test_one_push_over_the_byte_bound_is_kept(self):
        """A push larger than the byte bound is kept alone: the newest is always replayable."""
        caller = Caller("s1", "gw", "a1", "Alice")
        session = Session(caller, None, "token", 1000, 10000, buffer_bytes=100)
        session.push("n", {"i": 1})
        session.push("n", {"pad": "x" * 500})
        self.assertEqual((session.oldest_kept, len(session.outbox)), (2, 1))
        self.assertEqual(len(session.missed(1)), 1)

    def test_handed_over_keeps_the_byte_bound(self):
        caller = Caller("s1", "gw", "a1", "Alice")
        ticket = Ticket("a1", "Alice", "eu", 1.0, 2.0, "nonce")
        session = Session(caller, ticket, "token", 1000, 10000)
        for i in range(20):
            session.push("n", {"i": i, "pad": "x" * 90})
        state = codec.decode(codec.encode({"t": "state", **session.state_for(0)}))
        moved = Session.from_state(state, "gw-b", 1000, 10000, buffer_bytes=1000)
        self.assertLessEqual(moved.outbox_bytes, 1000)
        self.assertEqual(moved.seq, 20)
        self.assertEqual(codec.decode(moved.missed(19)[0])["seq"], 20)

    def test_handed_over(self):
        """
        A session carried to another gateway keeps its numbering and its
        kept pushes, from this version's state or an earlier one's (whose
        pushes are messages, not encoded bodies).
        """
        caller = Caller("s1", "gw", "a1", "Alice")
        ticket = Ticket("a1", "Alice", "eu", 1.0, 2.0, "nonce")
        session = Session(caller, ticket, "token", 4, 1000)
        for i in range(5):
            session.push("n", {"i": i})
        state = codec.decode(codec.encode({"t": "state", **session.state_for(2)}))
        older = {**state, "pushes": [codec.decode(body) for body in state["pushes"]]}
        for handed in (state, older):
            moved = Session.from_state(handed, "gw-b", 4, 1000)
            self.assertEqual((moved.seq, moved.ticket, moved.caller.gateway), (5, ticket, "gw-b"))
            self.assertEqual(moved.missed(2), session.missed(2))
            self.assertTrue(self.assertRaises(ResumeRefused, moved.missed, 1).final)
            self.assertEqual(moved.push("n", {"i": 5}), 6)

    def test_push_stem_to(self):
        """
        One stem pushed to many sessions: each numbers it in its own
        sequence, keeps the one shared stem and, if attached, is sent its
        frame; a detached one keeps it for a resume.
        """
        stem = codec.push_stem("chat.message", {"text": "hi"})
        first, second, away = (
            Session(Caller(f"s{i}", "gw", f"a{i}", f"P{i}"), None, "token", 10, 1000)
            for i in range(3)
        )
        first.attach(Frames())
        second.attach(Frames())
        second.push("n", {"i": 0})
        failed = Session.push_stem_to([first, second, away], stem)
        self.assertEqual(failed, [])
        self.assertEqual([s.seq for s in (first, second, away)], [1, 2, 1])
        for session in (first, second):
            self.assertEqual(session.connection.sent[-1], codec.numbered(stem, session.seq))
            self.assertIs(session.outbox.newest(1)[0], stem)
        self.assertEqual(
            codec.decode(away.missed(0)[0]), {"t": "chat.message", "text": "hi", "seq": 1}
        )

    def test_push_stem_to_failures(self):
        """
        A session whose frame limit the stem is over is not numbered; one
        whose connection fails to send has it numbered and kept (a resume
        replays it); both are returned with why, and the others are pushed.
        """
        stem = codec.push_stem("chat.message", {"text": "x" * 200})
        small = Session(Caller("s1", "gw", "a1", "Small"), None, "token", 10, 100)
        broken = Session(Caller("s2", "gw", "a2", "Broken"), None, "token", 10, 1000)
        fine = Session(Caller("s3", "gw", "a3", "Fine"), None, "token", 10, 1000)
        small.attach(Frames())
        broken.attach(Frames(RuntimeError("socket gone")))
        fine.attach(Frames())
        failed = Session.push_stem_to([small, broken, fine], stem)
        self.assertEqual([session for session, _ in failed], [small, broken])
        self.assertEqual(failed[0][1].code, codes.FRAME_TOO_LARGE)
        self.assertIsInstance(failed[1][1], RuntimeError)
        self.assertEqual((small.seq, len(small.outbox), small.connection.sent), (0, 0, []))
        self.assertEqual((broken.seq, broken.missed(0)), (1, [codec.numbered_body(stem, 1)]))
        self.assertEqual(fine.connection.sent, [codec.numbered(stem, 1)])
        self.assertEqual(
            self.assertRaises(WireError, small.push_stem, stem).code, codes.FRAME_TOO_LARGE
        )

    def test_token_hash(self):
        self.assertEqual(len(token_hash("abc")), 64)
        self.assertNotEqual(token_hash("abc"), token_hash("abd"))


# -- moving to another gateway --------------------------------------------------------


class CrossGatewayTests(SessionTestCase):
    def setUp(self):
        super().setUp()
        self.b = self.gateway("gw-b")

    def test_resume_on_another_gateway(self):
        """
        The session moves from A to B: what was delivered to A while it was
        detached, and what is delivered to A during and after the handover,
        reaches the client on B in order, exactly once; the services hear
        that it moved, with B as its gateway.
        """
        player, reply = self.admit(self.a)
        session_id = reply["session"]
        self.deliver("gw-a", session_id, "seen")
        self.assertEqual(player.pushes(), [(1, "seen")])
        player.drop()
        self.deliver("gw-a", session_id, "missed 1", "missed 2")
        moved = Player(self.b)
        request_id = moved.send("resume", token=reply["resume"], last_seq=1)
        # Published while the handover is under way, to the old gateway.
        self.deliver("gw-a", session_id, "during")
        [resumed, *replayed] = moved.frames()
        self.assertEqual(
            (resumed["t"], resumed["id"], resumed["session"], resumed["seq"], resumed["replayed"]),
            ("reply", request_id, session_id, 3, 2),
        )
        self.assertEqual(
            [(p["seq"], p["text"]) for p in replayed],
            [(2, "missed 1"), (3, "missed 2"), (4, "during")],
        )
        [caller] = self.lobby.seen("moved")
        self.assertEqual((caller.session, caller.gateway), (session_id, "gw-b"))
        # Services that have not heard yet still deliver to A: forwarded.
        self.deliver("gw-a", session_id, "late")
        self.deliver("gw-b", session_id, "direct")
        self.assertEqual(moved.pushes(), [(5, "late"), (6, "direct")])
        self.assertEqual(len(self.a.sessions.registry), 0)
        self.assertEqual(self.lobby.seen("ended"), [])
        self.assertEqual(
            self.successResultOf(self.bus.get(online_key("id-Alice"))),
            {"gateway": "gw-b", "session": session_id},
        )
        self.assertEqual(
            self.successResultOf(self.bus.get(session_key(token_hash(resumed["resume"])))), "gw-b"
        )
        # The next drop and resume happen on B; the old token is spent everywhere.
        moved.drop()
        for gateway in (self.a, self.b):
            late = Player(gateway)
            request_id = late.send("resume", token=reply["resume"], last_seq=0)
            self.assertRefused(late.frames(), request_id)
        back = Player(self.a)
        [again, *replayed] = back.request("resume", token=resumed["resume"], last_seq=5)
        self.assertEqual([(p["seq"], p["text"]) for p in replayed], [(6, "direct")])
        self.assertEqual(self.lobby.seen("moved")[-1].gateway, "gw-a")

    def test_attached_elsewhere(self):
        """The old connection, still attached on A, is told the session went elsewhere."""
        old, reply = self.admit(self.a)
        moved = Player(self.b)
        [resumed] = moved.request("resume", token=reply["resume"], last_seq=0)
        self.assertEqual(resumed["t"], "reply")
        [bye] = old.frames()
        self.assertEqual(bye["code"], codes.RESUMED_ELSEWHERE)
        old.drop()
        self.assertEqual(self.lobby.seen("ended"), [])
        self.assertIs(self.b.sessions.registry.by_account["id-Alice"].connection, moved.protocol)

    def test_unknown_token(self):
        player = Player(self.b)
        request_id = player.send("resume", token="no such token", last_seq=0)
        self.assertRefused(player.frames(), request_id, "unknown")

    def test_too_much_missed(self):
        self.config.gateway.resume_buffer = 2
        player, reply = self.admit(self.a)
        player.drop()
        self.deliver("gw-a", reply["session"], "1", "2", "3")
        moved = Player(self.b)
        request_id = moved.send("resume", token=reply["resume"], last_seq=0)
        self.assertRefused(moved.frames(), request_id, "missed too much")
        self.assertEqual([c.session for c in self.lobby.seen("ended")], [reply["session"]])
        self.assertEqual(len(self.a.sessions.registry) + len(self.b.sessions.registry), 0)

    def test_holder_silent(self):
        """The gateway named on the bus does not answer: refused after the handover timeout."""
        player = Player(self.b)
        self.bus.put(session_key(token_hash("orphan")), "gw-gone")
        request_id = player.send("resume", token="orphan", last_seq=0)
        self.assertEqual(player.frames(), [])
        self.clock.advance(self.b.handover.timeout)
        self.assertRefused(player.frames(), request_id, "did not answer")

    def test_client_gone_during_handover(self):
        """
        The client went away before the handover was done: the session waits
        on the new gateway, and the same token resumes it there.
        """
        player, reply = self.admit(self.a)
        player.drop()
        moved = Player(self.b)
        moved.send("resume", token=reply["resume"], last_seq=0)
        moved.drop()
        self.clock.advance(0)
        self.assertEqual(len(self.b.sessions.registry), 1)
        again = Player(self.b)
        [resumed] = again.request("resume", token=reply["resume"], last_seq=0)
        self.assertEqual((resumed["t"], resumed["session"]), ("reply", reply["session"]))

    def test_replaced_across_gateways(self):
        """A login on B ends the account's detached session on A."""
        player, reply = self.admit(self.a)
        player.drop()
        self.admit(self.b)
        self.clock.advance(0)
        self.assertEqual([c.session for c in self.lobby.seen("ended")], [reply["session"]])
        self.assertEqual(len(self.a.sessions.registry), 0)


# -- heartbeat -------------------------------------------------------------------------


class HeartbeatTests(SessionTestCase):
    def test_heartbeat_when_quiet(self):
        """A quiet admitted connection gets heartbeats, not numbered, never replayed."""
        player, reply = self.admit(self.a)
        self.clock.advance(INTERVAL - 0.5)
        self.assertEqual(player.frames(), [])
        self.clock.advance(0.5)
        [beat] = player.frames()
        self.assertEqual(beat, {"t": "heartbeat", "time": self.clock.seconds()})
        self.clock.advance(INTERVAL)
        [beat] = player.frames()
        self.assertEqual(beat["t"], "heartbeat")
        # pong: no reply without an id; an empty one with.
        player.send_without_id("pong")
        self.assertEqual(player.frames(), [])
        [answer] = player.request("pong")
        self.assertEqual(answer["t"], "reply")
        self.assertEqual(self.a.sessions.registry.by_id[reply["session"]].seq, 0)
        # Heard from: the next heartbeat is an interval after the pong.
        self.clock.advance(INTERVAL - 0.5)
        self.assertEqual(player.frames(), [])
        self.clock.advance(0.5)
        self.assertEqual([f["t"] for f in player.frames()], ["heartbeat"])

    def test_traffic_delays_heartbeat(self):
        player, _ = self.admit(self.a)
        self.clock.advance(INTERVAL / 2)
        player.request("ping")
        self.clock.advance(INTERVAL / 2)
        self.assertEqual(player.frames(), [])
        self.clock.advance(INTERVAL / 2)
        self.assertEqual([f["t"] for f in player.frames()], ["heartbeat"])

    def test_timeout_closes_and_detaches(self):
        """
        A client silent for the heartbeat timeout is told goodbye and
        closed; its session is kept for a resume.
        """
        player, reply = self.admit(self.a)
        for _ in range(2):
            self.clock.advance(INTERVAL)
            self.assertEqual([f["t"] for f in player.frames()], ["heartbeat"])
        self.assertTrue(player.open)
        self.clock.advance(INTERVAL)
        [bye] = player.frames()
        self.assertEqual((bye["t"], bye["code"]), ("bye", codes.HEARTBEAT_TIMEOUT))
        self.assertFalse(player.open)
        player.drop()
        self.assertEqual(self.a.sessions.registry.by_id[reply["session"]].state, "detached")
        self.assertEqual(self.lobby.seen("ended"), [])
        [resumed] = Player(self.a).request("resume", token=reply["resume"], last_seq=0)
        self.assertEqual(resumed["t"], "reply")

    def test_none_before_admission(self):
        player = Player(self.a)
        self.clock.advance(TIMEOUT * 2)
        self.assertEqual(player.frames(), [])
        self.assertTrue(player.open)

    def test_none_after_close(self):
        player, _ = self.admit(self.a)
        player.drop()
        self.assertEqual(self.clock.getDelayedCalls()[0].getTime(), self.clock.seconds() + WINDOW)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)


# -- flood limits -----------------------------------------------------------------------


class FloodTests(SessionTestCase):
    settings = {"flood_rate": 1.0, "flood_burst": 3, "flood_strikes": 3}
    flood = {"chat": {"types": ["chat.", "room.echo"], "rate": 0.5, "burst": 1}}

    def test_flooding_client_cut_off_others_served(self):
        """
        Over its limit a client's messages are dropped with 'flooding' (with
        their ids); after the strikes it is told goodbye.  Another client's
        messages, in the same run, are all served.
        """
        noisy = Player(self.a)
        calm = Player(self.a)
        self.clock.advance(2)  # both buckets full again after their hellos
        answers, calm_answers = [], []
        for turn in range(6):
            request_id = noisy.send("ping")
            answers.append((request_id, noisy.frames()))
            if turn % 2:
                calm_answers.extend(calm.request("ping"))
            self.clock.advance(0.1)
        self.assertEqual([frames[0]["t"] for _, frames in answers[:3]], ["reply"] * 3)
        for request_id, frames in answers[3:5]:
            self.assertEqual(
                [(f["t"], f["code"], f["id"], f["fatal"]) for f in frames],
                [("error", codes.FLOODING, request_id, False)],
            )
        request_id, last = answers[5]
        self.assertEqual(
            [(f["t"], f["code"]) for f in last], [("error", codes.FLOODING), ("bye", codes.FLOOD)]
        )
        self.assertEqual(last[0]["id"], request_id)
        self.assertFalse(noisy.open)
        self.assertEqual([f["t"] for f in calm_answers], ["reply"] * 3)
        self.assertTrue(calm.open)

    def test_refill(self):
        """A client that slows down is served again, its strikes forgiven."""
        player = Player(self.a)
        self.clock.advance(3)
        for _ in range(4):
            player.send_without_id("ping")
        [error] = player.frames()
        self.assertEqual((error["code"], error["id"]), (codes.FLOODING, None))
        self.clock.advance(3)
        for _ in range(2):
            for _ in range(4):
                player.send_without_id("ping")
            self.clock.advance(3)
        self.assertEqual(len(player.frames()), 2)
        self.assertTrue(player.open)

    def test_class_limit(self):
        """A class has its own bucket; other types are not affected by it."""
        player, _ = self.admit(self.a)
        self.clock.advance(3)
        [first] = player.request("room.echo", text="a")
        self.assertEqual(first["t"], "reply")
        [second] = player.request("room.echo", text="b")
        self.assertEqual(second["code"], codes.FLOODING)
        self.assertIn("chat", second["message"])
        [other] = player.request("character.choose", name="Zed")
        self.assertEqual(other["t"], "reply")

    def test_bye_always_honoured(self):
        player = Player(self.a)
        for _ in range(5):
            player.send_without_id("ping")
        player.frames()
        player.send_without_id("bye")
        self.assertFalse(player.open)
        self.assertEqual(player.frames(), [])

    def test_classes(self):
        limits = FloodLimits(
            make_config(
                {
                    "chat": {"types": ["chat."], "rate": 1.0, "burst": 1},
                    "party": {"types": ["chat.party.", "pong", "hello"], "rate": 1.0, "burst": 1},
                    "move": {"types": ["move"], "rate": 1.0, "burst": 1},
                }
            ).gateway,
            MemoryReactorClock(),
        )
        self.assertEqual(limits.class_of("chat.say"), "chat")
        self.assertEqual(limits.class_of("chat.party.say"), "party")
        self.assertEqual(limits.class_of("move"), "move")
        self.assertIsNone(limits.class_of("move.fast"))
        self.assertIsNone(limits.class_of("chatter"))
        self.assertIsNone(limits.class_of("pong"))
        self.assertIsNone(limits.class_of("hello"))

    def test_bucket(self):
        clock = MemoryReactorClock()
        bucket = TokenBucket(2.0, 2, clock)
        self.assertEqual([bucket.take() for _ in range(3)], [True, True, False])
        clock.advance(0.5)
        self.assertEqual([bucket.take(), bucket.take()], [True, False])
        clock.advance(10)
        self.assertTrue(bucket.full())


# -- routing to services in this process ----------------------------------------------------


class OtherLobby(Lobby):
    async def on_room_echo(self, caller, message):
        return {"other": True}


class Walker(Lobby):
    """A service that moves the caller's zone, and keeps nothing of it itself."""

    prefixes = ("walk.",)
    hears_zone_changes = False

    async def on_walk_to(self, caller, message):
        return Reply({}, SessionChange(zone=message["zone"]))

    async def on_walk_rename(self, caller, message):
        return Reply({}, SessionChange(character_name=message["name"], zone=message["zone"]))


class RoutingTests(SessionTestCase):
    def test_local_reply(self):
        player, reply = self.admit(self.a)
        [answer] = player.request("room.echo", text="hi")
        self.assertEqual(
            answer, {"t": "reply", "id": 3, "text": "hi", "who": "Alice", "via": "gw-a"}
        )
        player.send("room.quiet")
        self.assertEqual(player.frames(), [])

    def test_not_before_admission(self):
        player = Player(self.a)
        [error] = player.request("room.echo", text="hi")
        self.assertEqual(error["code"], codes.AUTH_REQUIRED)

    def test_session_update(self):
        """
        A reply's session update changes the caller (services hear
        "changed") and is not passed on to the client.
        """
        player, reply = self.admit(self.a)
        [answer] = player.request("character.choose", name="Zorro")
        self.assertEqual(answer, {"t": "reply", "id": 3, "chosen": "Zorro"})
        [changed] = self.lobby.seen("changed")
        self.assertEqual(
            (changed.session, changed.character_id, changed.character_name),
            (reply["session"], "c-Zorro", "Zorro"),
        )
        [answer] = player.request("room.echo", text="hi")
        self.assertEqual(answer["who"], "Zorro")
        # It survives a resume.
        player.drop()
        again = Player(self.a)
        again.request("resume", token=reply["resume"], last_seq=0)
        [answer] = again.request("room.echo", text="hi")
        self.assertEqual(answer["who"], "Zorro")

    def test_unknown_type(self):
        player, _ = self.admit(self.a)
        for kind in ("dance", "room.nothing"):
            request_id = player.send(kind)
            [error] = player.frames()
            self.assertEqual((error["code"], error["id"]), (codes.UNKNOWN_TYPE, request_id))

    def test_service_error_passes_through(self):
        player, _ = self.admit(self.a)
        [error] = player.request("room.refuse")
        self.assertEqual(
            (error["code"], error["message"], error["fatal"]),
            (codes.ROOM_FULL, "the room is full", False),
        )
        self.assertTrue(player.open)

    def test_service_bug(self):
        player, _ = self.admit(self.a)
        [error] = player.request("room.broken")
        self.assertEqual(error["code"], codes.INTERNAL)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_zone_changes_only_to_those_that_hear_them(self):
        """
        A change of the session's zone alone (a handoff) is told only to
        the services that hear zone changes; any other change is told to
        every service, and the next request carries the current zone.
        """
        walker = Walker()
        self.a.services.routes.append(LocalRoute(walker))
        player, reply = self.admit(self.a)
        player.request("walk.to", zone="r0c1")
        [changed] = self.lobby.seen("changed")
        self.assertEqual((changed.session, changed.zone), (reply["session"], "r0c1"))
        self.assertEqual(walker.seen("changed"), [])
        player.request("walk.rename", name="Zorro", zone="r0c0")
        self.assertEqual([c.zone for c in self.lobby.seen("changed")], ["r0c1", "r0c0"])
        [changed] = walker.seen("changed")
        self.assertEqual((changed.character_name, changed.zone), ("Zorro", "r0c0"))
        # Every other event still reaches every service.
        self.assertEqual(len(walker.seen("started")), 1)

    def test_first_route_wins(self):
        other = OtherLobby()
        self.a.services.routes.insert(0, LocalRoute(other))
        player, _ = self.admit(self.a)
        [answer] = player.request("room.echo", text="hi")
        self.assertTrue(answer["other"])
        # Every route hears every session event.
        self.assertEqual(len(other.seen("started")), 1)
        self.assertEqual(len(self.lobby.seen("started")), 1)


# -- the SDK -------------------------------------------------------------------------------


class SDKTests(SessionTestCase):
    """The SDK client against a real gateway, over linked fake transports."""

    def connect(self, client=None):
        client = client or sdk.Client()
        server = self.a.buildProtocol(PEER)
        pump = iosim.connect(
            server,
            iosim.makeFakeServer(server),
            client,
            iosim.makeFakeClient(client),
            clock=self.clock,
        )
        self.successResultOf(client.whenReady())
        return client, pump

    def test_answers_heartbeats(self):
        client, pump = self.connect()
        ticket = self.signer.issue("id-Alice", "Alice", "main")[0]
        auth = client.request("auth", ticket=ticket)
        pump.flush()
        reply = self.successResultOf(auth)
        self.assertEqual((client.resume_token, client.session), (reply["resume"], reply["session"]))
        beats = []
        client.on("heartbeat", beats.append)
        for _ in range(5):
            self.clock.advance(INTERVAL)
            pump.flush()
        self.assertEqual(len(beats), 5)
        self.assertFalse(client.closing)
        # A client that does not answer is cut off.
        client.answer_heartbeats = False
        for _ in range(3):
            self.clock.advance(INTERVAL)
            pump.flush()
        self.assertEqual(self.successResultOf(client.whenClosed()).code, codes.HEARTBEAT_TIMEOUT)

    def test_resume(self):
        """resumption() after a drop, then resume() on a new connection: the missed pushes."""
        client, pump = self.connect()
        ticket = self.signer.issue("id-Alice", "Alice", "main")[0]
        auth = client.request("auth", ticket=ticket)
        pump.flush()
        session = self.successResultOf(auth)["session"]
        self.deliver("gw-a", session, "one")
        pump.flush()
        self.assertEqual(client.last_seq, 1)
        token, last_seq = client.resumption()
        client.transport.abortConnection()
        pump.flush()
        self.deliver("gw-a", session, "two", "three")
        fresh = sdk.Client()
        seen = []
        fresh.on("news", seen.append)
        self.assertIsNone(fresh.resumption())
        fresh, pump = self.connect(fresh)
        resumed = fresh.resume(token, last_seq)
        pump.flush()
        reply = self.successResultOf(resumed)
        self.assertEqual((reply["session"], reply["replayed"]), (session, 2))
        self.assertEqual([(m["seq"], m["text"]) for m in seen], [(2, "two"), (3, "three")])
        self.assertEqual(fresh.resumption(), (reply["resume"], 3))
        refused = sdk.Client()
        refused, pump = self.connect(refused)
        d = refused.resume(token, 0)
        pump.flush()
        self.assertEqual(self.failureResultOf(d, sdk.ServerError).value.code, codes.RESUME_REFUSED)


class SDKUnitTests(unittest.TestCase):
    def test_heartbeat_answered_not_numbered(self):
        client = sdk.Client()
        transport = StringTransport()
        client.makeConnection(transport)
        transport.clear()
        client.dataReceived(codec.frame({"t": "heartbeat", "time": 1.0}))
        self.assertEqual(support.written_frames(transport), [{"t": "pong"}])
        self.assertEqual(client.last_seq, 0)
