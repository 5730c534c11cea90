"""
Tests of mmo.chat: the chat service on a SQLite store in a temporary file and
the in-process bus on a L{task.Clock}, with players on two gateways whose
deliveries are caught on their bus channels; and cross-gateway delivery again
over the Redis bus, on a private redis-server.
"""

from __future__ import annotations

import os
import textwrap

from twisted.internet import defer, reactor, task
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial import unittest

from mmo import config
from mmo.bus import BusError
from mmo.bus.memory import MemoryBus
from mmo.chat.channels import Channel, Channels
from mmo.chat.flood import FloodLimit
from mmo.chat.logs import LogWriter, StoreLogs
from mmo.chat.moderation import mute_key
from mmo.chat.service import ChatService
from mmo.game import keyed, messages
from mmo.game.messages import ROOMS_CHANNEL, Push, RoomEvent, gateway_channel
from mmo.game.presence import Presence
from mmo.game.service import Caller
from mmo.store import StoreUnavailable
from mmo.store.sqlite import SQLiteStore
from mmo.unavailable import client_error
from mmo.wire import codes
from mmo.wire.codes import WireError
from tests.redis import redis_config_text, start_redis
from tests.support import write_config

#: The clock's time when a test starts.
NOW = 1_700_000_000.0

HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"

GATEWAYS = ("gateway-1", "gateway-2")

PROCESSES = """
[processes.mmo]
kind = "mmo"
client = "tcp:0:interface=127.0.0.1"
rpc = "tcp:0:interface=127.0.0.1"
"""

CHAT = """
[chat]
history = 3
max_length = 20
rate = 1.0
burst = 3
moderators = ["MOD"]
channel_max_members = 3
"""


def load_config(testcase, text: str = CHAT) -> config.Config:
    return config.load(write_config(testcase, textwrap.dedent(text) + PROCESSES))


class Deliveries:
    """What the chat service published to the gateways, as each gateway hears it."""

    def __init__(self):
        #: (gateway, L{Push}) in order of arrival.
        self.messages: list[tuple[str, Push]] = []
        self._waiters: list[tuple[int, defer.Deferred]] = []

    async def subscribe(self, bus, gateways=GATEWAYS):
        for gateway in gateways:
            await bus.subscribe(gateway_channel(gateway), self._catcher(gateway))

    def _catcher(self, gateway):
        def caught(data):
            _, push = messages.decode(data)
            self.messages.append((gateway, push))
            ready = [d for n, d in self._waiters if len(self.messages) >= n]
            self._waiters = [(n, d) for n, d in self._waiters if len(self.messages) < n]
            for d in ready:
                d.callback(None)

        return caught

    def when(self, count: int) -> defer.Deferred:
        """Fires once C{count} bus messages have arrived in all."""
        if len(self.messages) >= count:
            return defer.succeed(None)
        d: defer.Deferred = defer.Deferred()
        self._waiters.append((count, d))
        return d

    def to(self, caller: Caller, kind: str | None = None) -> list[dict]:
        """The fields of the pushes for C{caller}'s session that reached its gateway."""
        return [
            push.fields
            for gateway, push in self.messages
            if gateway == caller.gateway
            and caller.session in push.sessions
            and (kind is None or push.kind == kind)
        ]

    def sessions(self, kind: str | None = None) -> set[str]:
        """Every session that any push (of C{kind}) was addressed to."""
        return {
            session
            for _, push in self.messages
            if kind is None or push.kind == kind
            for session in push.sessions
        }

    def clear(self):
        self.messages.clear()


class ChatTestCase(unittest.TestCase):
    """The chat service with the in-process bus, and three players online."""

    def setUp(self):
        return defer.ensureDeferred(self.set_up())

    async def set_up(self, text: str = CHAT):
        self.clock = task.Clock()
        self.clock.advance(NOW)
        self.config = load_config(self, text)
        self.path = os.path.join(os.path.abspath(self.mktemp()), "chat.sqlite3")
        self.store = await self.open_store()
        self.bus = MemoryBus(reactor=self.clock)
        self.addCleanup(self.bus.stop)
        self.deliveries = Deliveries()
        await self.deliveries.subscribe(self.bus)
        self.chat = await self.start_chat()
        self.alice = await self.player("Alice", "gateway-1")
        self.bob = await self.player("Bob", "gateway-2")
        self.carol = await self.player("Carol", "gateway-1")

    async def open_store(self) -> SQLiteStore:
        store = SQLiteStore(self.path, reactor=self.clock)
        await store.start()
        self.addCleanup(store.stop)
        return store

    async def start_chat(self, store=None) -> ChatService:
        chat = ChatService(self.config, store or self.store, self.bus, self.clock)
        await chat.start()
        self.addCleanup(chat.stop)
        return chat

    async def player(self, name, gateway, realm="main", start=True) -> Caller:
        """A player with an account, on C{gateway}; its session started unless told."""
        account = await self.store.create_account(name, HASH)
        caller = Caller(
            session=f"session-{name.lower()}",
            gateway=gateway,
            account_id=account.id,
            name=name,
            realm=realm,
        )
        if start:
            await self.chat.session_event(caller, "started")
        return caller

    def flush(self):
        """Let the in-process bus deliver what was published."""
        self.clock.advance(0)

    async def request(self, caller, kind, **fields):
        reply = await self.chat.handle(caller, kind, fields)
        self.flush()
        return reply

    async def refused(self, code, caller, kind, **fields) -> WireError:
        """The request fails with C{code}; the error."""
        try:
            reply = await self.chat.handle(caller, kind, fields)
        except WireError as e:
            self.assertEqual(e.code, code, e.message)
            self.assertTrue(e.message)
            self.flush()
            return e
        self.fail(f"{kind} {fields} was not refused with {code}: {reply}")

    async def lobby(self, event, room, caller=None):
        """The lobby publishes a room event; wait until chat has handled it."""
        message = RoomEvent(room, event, caller.to_dict() if caller is not None else {})
        await messages.publish(self.bus, ROOMS_CHANNEL, message, "lobby")
        self.flush()
        await self.chat.settled()
        self.flush()

    def texts(self, caller):
        return [m["text"] for m in self.deliveries.to(caller, "chat.message")]


class ChatTests(ChatTestCase):
    """The chat service's messages, pushes and rules."""

    # -- world -----------------------------------------------------------------

    async def test_world_auto_join(self):
        """A started session is in its realm's world channel, and told so."""
        self.flush()
        for caller in (self.alice, self.bob, self.carol):
            self.assertEqual(
                self.deliveries.to(caller, "chat.joined"),
                [{"channel": "world:main", "history": []}],
            )
            reply = await self.request(caller, "chat.channels")
            self.assertEqual(reply, {"channels": ["world:main"]})

    async def test_world_delivery_across_gateways(self):
        """
        A world message reaches every member, the sender too, with one bus
        message per gateway; players of another realm do not get it.
        """
        dave = await self.player("Dave", "gateway-2", realm="other")
        self.flush()
        self.deliveries.clear()
        reply = await self.request(self.alice, "chat.send", channel="world:main", text="hello")
        self.assertEqual(reply, {"channel": "world:main", "time": NOW})
        expected = {"channel": "world:main", "from": "Alice", "text": "hello", "time": NOW}
        self.assertEqual(len(self.deliveries.messages), 2)
        by_gateway = {gateway: message for gateway, message in self.deliveries.messages}
        self.assertEqual(
            sorted(by_gateway["gateway-1"].sessions), [self.alice.session, self.carol.session]
        )
        self.assertEqual(by_gateway["gateway-2"].sessions, [self.bob.session])
        for push in by_gateway.values():
            self.assertEqual(push.kind, "chat.message")
            self.assertEqual(push.fields, expected)
        self.assertEqual(self.deliveries.to(dave), [])
        # "world" is short for the caller's realm's world.
        self.clock.advance(1)
        await self.request(dave, "chat.send", channel="world", text="other realm")
        self.assertEqual(self.texts(dave), ["other realm"])
        self.assertEqual(self.texts(self.bob), ["hello"])
        await self.refused(codes.NOT_ALLOWED, dave, "chat.send", channel="world:main", text="x")

    async def test_send_checks(self):
        for fields in (
            {"channel": "world:main", "text": ""},
            {"channel": "world:main", "text": "   "},
            {"channel": "world:main", "text": "x" * 21},
            {"channel": "world:main", "text": 7},
            {"channel": "world:main"},
            {"text": "hi"},
            {"channel": "", "text": "hi"},
            {"channel": "guild:x", "text": "hi"},
            {"channel": "party:", "text": "hi"},
            {"channel": "party:no spaces", "text": "hi"},
        ):
            await self.refused(codes.BAD_REQUEST, self.alice, "chat.send", **fields)
        await self.refused(codes.NOT_ALLOWED, self.alice, "chat.send", channel="party:x", text="hi")
        await self.refused(codes.NOT_ALLOWED, self.alice, "chat.send", channel="room:1", text="hi")
        # At the limit is fine.
        await self.request(self.alice, "chat.send", channel="world:main", text="x" * 20)
        self.assertEqual(self.texts(self.bob), ["x" * 20])

    async def test_unshowable_text_refused(self):
        """
        Text with a character that changes how the rest of a line or of the
        screen is shown is refused (bad_request naming it), in messages,
        whispers and mute reasons, and reaches nobody.
        """
        mod = await self.player("Mod", "gateway-1")
        unshowable = {
            "NUL": "a\x00b",
            "ANSI escape": "\x1b[2J\x1b[31mred",
            "CR": "hi\rsystem: ban",
            "LF": "hi\nServer: ban",
            "CR LF": "hi\r\n",
            "tab": "a\tb",
            "DEL": "a\x7f",
            "C1 NEL": "a\x85b",
            "C1 CSI": "\x9b31m",
            "line separator": "a\u2028b",
            "paragraph separator": "a\u2029b",
            "LRE": "\u202aabc",
            "RLO": "abc\u202edcba",
            "PDF": "abc\u202c",
            "LRI": "\u2066abc",
            "RLI": "\u2067abc",
            "FSI": "\u2068abc",
            "PDI": "abc\u2069",
            "deprecated format": "\u206aabc",
            "interlinear annotation": "\ufff9abc\ufffb",
        }
        for what, text in unshowable.items():
            error = await self.refused(
                codes.BAD_REQUEST, self.alice, "chat.send", channel="world:main", text=text
            )
            self.assertIn("U+", error.message, what)
            await self.refused(codes.BAD_REQUEST, self.alice, "chat.whisper", to="Bob", text=text)
            await self.refused(codes.BAD_REQUEST, mod, "chat.mute", name="Bob", reason=text)
        self.assertEqual(self.texts(self.bob), [])
        self.assertEqual(self.deliveries.to(self.bob, "chat.whisper"), [])
        self.assertEqual(self.deliveries.to(self.bob, "chat.muted"), [])

    async def test_every_script_and_emoji_delivered_unchanged(self):
        """
        Ordinary text of any script is delivered exactly as sent: accents,
        emoji with skin tones, joined families and flags, CJK, right-to-left
        writing with its marks, non-breaking and ideographic spaces.
        """
        texts = [
            "Zoë, ça va? ñ ß",
            "👋🏽 👨\u200d👩\u200d👧 🇫🇷",
            "🏴" + "".join(chr(0xE0000 + ord(c)) for c in "gbeng") + "\U000e007f",
            "你好，世界\u3000こんにちは 안녕",
            "שלום עולם 123",
            "مرحبا\u200f 42 \u200e!",
            "می\u200cخواهم\u00a0ok",
            "❤\ufe0f 1\ufe0f\u20e3",
        ]
        for text in texts:
            self.assertLessEqual(len(text), 20, text)
            self.clock.advance(1)
            await self.request(self.alice, "chat.send", channel="world:main", text=text)
        self.assertEqual(self.texts(self.bob), texts)
        self.clock.advance(1)
        await self.request(self.alice, "chat.whisper", to="Bob", text=texts[4])
        [whisper] = self.deliveries.to(self.bob, "chat.whisper")
        self.assertEqual(whisper["text"], texts[4])

    async def test_backends_down(self):
        """
        A request that meets the bus or the store unreachable fails with
        their own error, which the client is told as unavailable (the one
        mapping, L{mmo.unavailable.client_error}) without the backend's
        address.
        """
        where = "Redis at redis.lan:7380"

        def down(*args, **kwargs):
            return defer.fail(BusError(f"get: {where} did not answer within 5s"))

        self.bus.get = down
        with self.assertRaises(BusError):
            await self.chat.handle(self.alice, "chat.send", {"channel": "world", "text": "hi"})
        self.store.account_by_name = lambda name: defer.fail(StoreUnavailable(where))
        with self.assertRaises(StoreUnavailable):
            await self.chat.handle(self.alice, "chat.ignore", {"name": "Nobody"})
        for error in (BusError(where), StoreUnavailable(where)):
            told = client_error(error, self.chat.log, "test")
            self.assertEqual(told.code, codes.UNAVAILABLE)
            self.assertNotIn("7380", told.message)
        self.assertEqual(self.texts(self.bob), [])

    # -- rooms ------------------------------------------------------------------

    async def test_room_channel_from_lobby_events(self):
        await self.lobby("joined", 7, self.alice)
        await self.lobby("joined", 7, self.bob)
        for caller in (self.alice, self.bob):
            self.assertIn(
                {"channel": "room:7", "history": []}, self.deliveries.to(caller, "chat.joined")
            )
        await self.request(self.alice, "chat.send", channel="room:7", text="in the room")
        self.assertEqual(self.texts(self.bob), ["in the room"])
        self.assertEqual(self.texts(self.carol), [])
        # Room channels are the lobby's to join and leave.
        await self.refused(codes.NOT_ALLOWED, self.carol, "chat.join", channel="room:7")
        await self.refused(codes.NOT_ALLOWED, self.bob, "chat.leave", channel="room:7")

        await self.lobby("left", 7, self.bob)
        self.assertEqual(
            self.deliveries.to(self.bob, "chat.left"), [{"channel": "room:7", "reason": "left"}]
        )
        await self.request(self.alice, "chat.send", channel="room:7", text="bob left")
        self.assertEqual(self.texts(self.bob), ["in the room"])
        await self.refused(codes.NOT_ALLOWED, self.bob, "chat.send", channel="room:7", text="x")

        await self.lobby("closed", 7)
        self.assertEqual(
            self.deliveries.to(self.alice, "chat.left"),
            [{"channel": "room:7", "reason": "closed"}],
        )
        await self.refused(codes.NOT_ALLOWED, self.alice, "chat.send", channel="room:7", text="x")
        self.assertEqual(
            (await self.request(self.alice, "chat.channels"))["channels"], ["world:main"]
        )

    async def test_room_member_at_once_while_a_history_is_read(self):
        """
        A room's new member hears what is said right after he joined, even
        while the history of an earlier join is still being read; his own
        history stops where he joined (what came after reached him live).
        """
        gate = defer.Deferred()
        self.addCleanup(lambda: None if gate.called else gate.callback(None))
        read = self.chat._history

        def room_joined(caller):
            joined = self.deliveries.to(caller, "chat.joined")
            return [m for m in joined if m["channel"] == "room:5"]

        async def slow(caller, channel, upto=None):
            if caller.session == self.alice.session:
                await gate
            return await read(caller, channel, upto)

        self.patch(self.chat, "_history", slow)
        for caller in (self.alice, self.bob):
            message = RoomEvent(5, "joined", caller.to_dict())
            await messages.publish(self.bus, ROOMS_CHANNEL, message, "lobby")
            self.flush()
        await self.request(self.alice, "chat.send", channel="room:5", text="right after")
        self.assertEqual(self.texts(self.bob), ["right after"])
        self.assertEqual(room_joined(self.bob), [])
        gate.callback(None)
        await self.chat.settled()
        self.flush()
        for caller in (self.alice, self.bob):
            self.assertEqual(room_joined(caller), [{"channel": "room:5", "history": []}])

    async def test_room_history_on_join(self):
        """Who joins a room later is pushed what was said in it."""
        await self.lobby("joined", "abc", self.alice)
        await self.request(self.alice, "chat.send", channel="room:abc", text="before")
        await self.lobby("joined", "abc", self.bob)
        self.assertIn(
            {
                "channel": "room:abc",
                "history": [
                    {"channel": "room:abc", "from": "Alice", "text": "before", "time": NOW}
                ],
            },
            self.deliveries.to(self.bob, "chat.joined"),
        )

    async def test_room_member_unknown_to_chat(self):
        """A lobby event about a session chat has not heard of uses the lobby's caller."""
        stranger = Caller("session-x", "gateway-2", "0" * 32, "Stranger")
        await self.lobby("joined", 9, self.alice)
        await self.lobby("joined", 9, stranger)
        await self.request(self.alice, "chat.send", channel="room:9", text="hi")
        self.assertEqual(self.texts(stranger), ["hi"])

    async def test_bad_lobby_message(self):
        """A malformed lobby event is logged and skipped; the next ones are handled."""
        # No caller: not a room event at all, dropped with a warning.
        malformed = {"type": "RoomEvent", "from": "lobby", "room": 1, "event": "joined"}
        await self.bus.publish(ROOMS_CHANNEL, malformed)
        await self.lobby("exploded", 1, self.alice)
        self.assertEqual(len(self.flushLoggedErrors(KeyError, ValueError)), 1)
        await self.lobby("joined", 1, self.alice)
        self.assertIn("room:1", (await self.request(self.alice, "chat.channels"))["channels"])

    # -- parties ----------------------------------------------------------------

    async def test_party_join_leave(self):
        reply = await self.request(self.alice, "chat.join", channel="party:Raiders")
        self.assertEqual(reply, {"channel": "party:raiders", "history": []})
        await self.request(self.bob, "chat.join", channel="party:RAIDERS")
        await self.request(self.alice, "chat.send", channel="party:raiders", text="go")
        self.assertEqual(self.texts(self.alice), ["go"])
        self.assertEqual(self.texts(self.bob), ["go"])
        self.assertEqual(self.texts(self.carol), [])
        self.assertEqual(
            (await self.request(self.bob, "chat.channels"))["channels"],
            ["party:raiders", "world:main"],
        )

        reply = await self.request(self.bob, "chat.leave", channel="party:Raiders")
        self.assertEqual(reply, {"channel": "party:raiders"})
        await self.request(self.alice, "chat.send", channel="party:raiders", text="alone")
        self.assertEqual(self.texts(self.bob), ["go"])
        self.assertEqual(self.texts(self.alice), ["go", "alone"])
        await self.refused(codes.NOT_ALLOWED, self.bob, "chat.leave", channel="party:raiders")
        await self.refused(codes.NOT_ALLOWED, self.bob, "chat.leave", channel="world:main")
        await self.refused(codes.NOT_ALLOWED, self.bob, "chat.join", channel="world:other")
        for name in ("", "a b", "x" * 33, "semi;colon"):
            await self.refused(codes.BAD_REQUEST, self.bob, "chat.join", channel=f"party:{name}")

    async def test_party_full(self):
        """A party channel has at most [chat] channel_max_members members."""
        dave = await self.player("Dave", "gateway-2")
        for caller in (self.alice, self.bob, self.carol):
            await self.request(caller, "chat.join", channel="party:p")
        await self.refused(codes.NOT_ALLOWED, dave, "chat.join", channel="party:p")
        # Joining again is no new member: it gives the history.
        await self.request(self.alice, "chat.join", channel="party:p")
        await self.request(self.carol, "chat.leave", channel="party:p")
        await self.request(dave, "chat.join", channel="party:p")

    # -- zones ---------------------------------------------------------------------

    async def zone_change(self, caller: Caller, zone: str | None) -> Caller:
        """The gateway tells chat that C{caller}'s zone changed (zone.enter, a handoff, leave)."""
        changed = caller.moved(zone=zone, in_world=zone is not None)
        await self.chat.session_event(changed, "changed")
        self.flush()
        return changed

    def zone_pushes(self, caller: Caller) -> list[tuple[str, dict]]:
        """The pushes about the zone channel that reached C{caller}'s session, in order."""
        return [
            (push.kind, push.fields)
            for gateway, push in self.deliveries.messages
            if gateway == caller.gateway
            and caller.session in push.sessions
            and push.fields.get("channel") == "zone"
        ]

    async def test_zone_channel_follows_the_zone(self):
        """
        A player in the world is in the channel of the zone that holds its
        character, called "zone": it follows the session's zone across
        handoffs, reaches only the players of that zone (and realm), and
        is left when the player leaves the world.
        """
        dave = await self.player("Dave", "gateway-2", realm="other")
        await self.refused(codes.NOT_ALLOWED, self.alice, "chat.send", channel="zone", text="x")
        alice = await self.zone_change(self.alice, "r0c0")
        carol = await self.zone_change(self.carol, "r0c0")
        bob = await self.zone_change(self.bob, "r0c1")
        dave = await self.zone_change(dave, "r0c1")
        self.assertEqual(
            self.zone_pushes(alice), [("chat.joined", {"channel": "zone", "history": []})]
        )
        self.assertEqual(
            await self.request(alice, "chat.channels"), {"channels": ["world:main", "zone"]}
        )
        reply = await self.request(alice, "chat.send", channel="zone", text="west")
        self.assertEqual(reply, {"channel": "zone", "time": NOW})
        await self.request(bob, "chat.send", channel="zone", text="east")
        self.assertEqual(self.texts(carol), ["west"])
        self.assertEqual(self.texts(bob), ["east"])
        self.assertEqual(self.texts(dave), [])
        self.assertEqual((await self.request(carol, "chat.who", name="Alice"))["zone"], "r0c0")

        # A handoff: Alice is in the east's channel now, given its history.
        self.deliveries.clear()
        self.clock.advance(1)
        alice = await self.zone_change(alice, "r0c1")
        east = {"channel": "zone", "from": "Bob", "text": "east", "time": NOW}
        self.assertEqual(
            self.zone_pushes(alice), [("chat.joined", {"channel": "zone", "history": [east]})]
        )
        await self.request(alice, "chat.send", channel="zone", text="crossed")
        self.assertEqual(self.texts(bob), ["crossed"])
        self.assertEqual(self.texts(alice), ["crossed"])
        self.assertEqual(self.texts(carol), [])
        self.assertEqual(self.texts(dave), [])
        self.assertEqual((await self.request(carol, "chat.who", name="alice"))["zone"], "r0c1")
        history = await self.request(alice, "chat.history", channel="zone")
        self.assertEqual(history["channel"], "zone")
        self.assertEqual([m["text"] for m in history["messages"]], ["east", "crossed"])

        # The gateway's caller is the truth: a request that says Carol is
        # east now (its event still on its way) moves her channel too.
        self.deliveries.clear()
        self.clock.advance(1)
        carol = carol.moved(zone="r0c1")
        await self.request(carol, "chat.send", channel="zone", text="me too")
        self.assertEqual(self.texts(alice), ["me too"])
        self.assertEqual(self.texts(bob), ["me too"])

        # The zone channel is neither joined nor left by hand.
        self.assertEqual(
            (await self.request(alice, "chat.join", channel="zone"))["channel"], "zone"
        )
        await self.refused(codes.NOT_ALLOWED, alice, "chat.leave", channel="zone")
        await self.refused(
            codes.BAD_REQUEST, alice, "chat.send", channel="zone:main:r0c0", text="x"
        )

        # Out of the world: out of the zone channel, and told so.
        self.deliveries.clear()
        alice = await self.zone_change(alice, None)
        self.assertEqual(
            self.zone_pushes(alice), [("chat.left", {"channel": "zone", "reason": "left"})]
        )
        await self.refused(codes.NOT_ALLOWED, alice, "chat.send", channel="zone", text="x")
        self.assertEqual(await self.request(alice, "chat.channels"), {"channels": ["world:main"]})
        self.assertIsNone((await self.request(bob, "chat.who", name="alice"))["zone"])
        self.clock.advance(1)
        await self.request(bob, "chat.send", channel="zone", text="gone")
        self.assertEqual(self.texts(alice), [])
        self.assertEqual(self.texts(carol), ["gone"])

        # An ended session leaves its zone's channel too.
        await self.chat.session_event(carol, "ended")
        self.clock.advance(1)
        await self.request(bob, "chat.send", channel="zone", text="bye")
        self.assertEqual(self.texts(carol), ["gone"])

    # -- history ------------------------------------------------------------------

    async def test_history(self):
        """The last [chat] history messages, given on join and on request."""
        await self.request(self.alice, "chat.join", channel="party:p")
        for i in range(4):
            self.clock.advance(10)
            await self.request(self.alice, "chat.send", channel="party:p", text=f"m{i}")
        reply = await self.request(self.bob, "chat.join", channel="party:p")
        self.assertEqual(
            reply["history"],
            [
                {"channel": "party:p", "from": "Alice", "text": f"m{i}", "time": NOW + 10 * (i + 1)}
                for i in (1, 2, 3)
            ],
        )
        reply = await self.request(self.bob, "chat.history", channel="party:p", limit=2)
        self.assertEqual(reply["channel"], "party:p")
        self.assertEqual([m["text"] for m in reply["messages"]], ["m2", "m3"])
        reply = await self.request(self.bob, "chat.history", channel="party:p")
        self.assertEqual([m["text"] for m in reply["messages"]], ["m1", "m2", "m3"])
        await self.refused(codes.NOT_ALLOWED, self.carol, "chat.history", channel="party:p")
        await self.refused(codes.BAD_REQUEST, self.bob, "chat.history", channel="party:p", limit=-1)

    async def test_history_survives_restart(self):
        """History is in the store: a new chat service (and store) gives it on join."""
        for i in range(4):
            await self.request(self.alice, "chat.send", channel="world:main", text=f"w{i}")
            self.clock.advance(1)
        await self.request(self.alice, "chat.join", channel="party:p")
        await self.request(self.alice, "chat.send", channel="party:p", text="p0")
        await self.chat.stop()
        await self.store.stop()

        store = await self.open_store()
        self.chat = await self.start_chat(store)
        self.deliveries.clear()
        await self.chat.session_event(self.bob, "started")
        self.flush()
        (joined,) = self.deliveries.to(self.bob, "chat.joined")
        self.assertEqual(joined["channel"], "world:main")
        self.assertEqual([m["text"] for m in joined["history"]], ["w1", "w2", "w3"])
        self.assertEqual(
            joined["history"][0],
            {"channel": "world:main", "from": "Alice", "text": "w1", "time": NOW + 1},
        )
        reply = await self.request(self.bob, "chat.join", channel="party:p")
        self.assertEqual([m["text"] for m in reply["history"]], ["p0"])
        # And it goes on from there.
        await self.request(self.bob, "chat.send", channel="world:main", text="w4")
        reply = await self.request(self.bob, "chat.history", channel="world:main")
        self.assertEqual([m["text"] for m in reply["messages"]], ["w2", "w3", "w4"])
        await self.chat.settled()
        self.assertEqual(
            [r["text"] for r in await store.read_log("chat:world:main", 10)], ["w2", "w3", "w4"]
        )

    async def test_joined_history_excludes_later_messages(self):
        """
        A join while the channel's stored history is still being read shows
        what was said before the join, and nothing twice.
        """
        await self.request(self.alice, "chat.join", channel="party:p")
        await self.request(self.alice, "chat.send", channel="party:p", text="old")
        await self.request(self.alice, "chat.leave", channel="party:p")
        await self.chat.settled()
        # The channel is gone from memory; joining reads the store.
        joining = defer.ensureDeferred(
            self.chat.handle(self.bob, "chat.join", {"channel": "party:p"})
        )
        self.assertFalse(joining.called)
        self.clock.advance(1)
        await self.request(self.bob, "chat.send", channel="party:p", text="new")
        reply = await joining
        self.assertEqual([m["text"] for m in reply["history"]], ["old"])
        reply = await self.request(self.bob, "chat.history", channel="party:p")
        self.assertEqual([m["text"] for m in reply["messages"]], ["old", "new"])
        await self.chat.settled()
        self.assertEqual(
            [r["text"] for r in await self.store.read_log("chat:party:p", 10)], ["old", "new"]
        )

    # -- whispers -----------------------------------------------------------------

    async def test_whisper(self):
        reply = await self.request(self.alice, "chat.whisper", to="bob", text="psst")
        self.assertEqual(reply, {"to": "Bob", "text": "psst", "time": NOW})
        self.assertEqual(
            self.deliveries.to(self.bob, "chat.whisper"),
            [{"from": "Alice", "text": "psst", "time": NOW}],
        )
        self.assertEqual(self.deliveries.to(self.alice, "chat.whisper"), [])
        self.assertEqual(self.deliveries.sessions("chat.whisper"), {self.bob.session})

    async def test_whisper_after_a_restart(self):
        """A chat that restarted learns the players online from their gateways."""
        chat = await self.start_chat()
        with self.assertRaises(WireError) as caught:
            await chat.handle(self.alice, "chat.whisper", {"to": "Bob", "text": "psst"})
        self.assertEqual(caught.exception.code, codes.PLAYER_OFFLINE)
        self.flush()
        self.deliveries.clear()
        await chat.session_found(self.bob)
        self.flush()
        self.assertEqual(
            [j["channel"] for j in self.deliveries.to(self.bob, "chat.joined")], ["world:main"]
        )
        await chat.handle(self.alice, "chat.whisper", {"to": "Bob", "text": "psst"})
        self.flush()
        self.assertEqual(
            [w["text"] for w in self.deliveries.to(self.bob, "chat.whisper")], ["psst"]
        )

    async def test_found_is_older_news(self):
        """What chat heard since it started wins over what a gateway lists."""
        chat = await self.start_chat()
        renamed = self.bob.moved(character_name="Robert")
        await chat.session_event(renamed, "started")
        await chat.session_found(self.bob)
        self.assertEqual(chat.presence.get(self.bob.session), renamed)
        await chat.session_event(self.carol, "ended")
        await chat.session_found(self.carol)
        self.assertIsNone(chat.presence.find("Carol"))

    async def test_whisper_offline(self):
        error = await self.refused(
            codes.PLAYER_OFFLINE, self.alice, "chat.whisper", to="Nobody", text="psst"
        )
        self.assertIn("Nobody is not online", error.message)
        await self.chat.session_event(self.bob, "ended")
        error = await self.refused(
            codes.PLAYER_OFFLINE, self.alice, "chat.whisper", to="Bob", text="psst"
        )
        self.assertIn("Bob", error.message)
        await self.refused(codes.BAD_REQUEST, self.alice, "chat.whisper", to="Alice", text="me")
        await self.refused(codes.BAD_REQUEST, self.alice, "chat.whisper", to="Carol", text="")
        await self.refused(codes.BAD_REQUEST, self.alice, "chat.whisper", text="who?")
        self.assertEqual(self.deliveries.sessions("chat.whisper"), set())

    # -- presence -------------------------------------------------------------------

    async def test_who(self):
        reply = await self.request(self.alice, "chat.who", name="BOB")
        self.assertEqual(reply, {"name": "Bob", "online": True, "zone": None})
        reply = await self.request(self.alice, "chat.who", name="Nobody")
        self.assertEqual(reply, {"name": "Nobody", "online": False, "zone": None})
        await self.refused(codes.BAD_REQUEST, self.alice, "chat.who", name="")

    async def test_ended(self):
        """An ended session is offline, in no channel, and sent nothing more."""
        await self.lobby("joined", 5, self.bob)
        await self.lobby("joined", 5, self.alice)
        await self.request(self.bob, "chat.join", channel="party:p")
        await self.request(self.alice, "chat.join", channel="party:p")
        await self.chat.session_event(self.bob, "ended")
        self.deliveries.clear()
        for channel in ("world:main", "room:5", "party:p"):
            await self.request(self.alice, "chat.send", channel=channel, text=channel)
            self.clock.advance(1)
        self.assertEqual(self.texts(self.alice), ["world:main", "room:5", "party:p"])
        self.assertNotIn(self.bob.session, self.deliveries.sessions())
        self.assertEqual(self.deliveries.to(self.bob), [])
        reply = await self.request(self.alice, "chat.who", name="Bob")
        self.assertFalse(reply["online"])
        # A request of the ended session that was on its way does not bring it
        # back, nor does a lobby event about it.
        self.assertEqual(await self.request(self.bob, "chat.channels"), {"channels": []})
        await self.lobby("joined", 6, self.bob)
        await self.lobby("joined", 6, self.alice)
        await self.request(self.alice, "chat.send", channel="room:6", text="room:6")
        self.assertEqual(self.deliveries.to(self.bob), [])
        self.assertFalse((await self.request(self.alice, "chat.who", name="Bob"))["online"])
        # A new session of the account is welcome.
        bob2 = self.bob.moved(session="session-bob-2")
        await self.chat.session_event(bob2, "started")
        self.assertTrue((await self.request(self.alice, "chat.who", name="Bob"))["online"])

    async def test_moved(self):
        """A session resumed on another gateway gets its deliveries there."""
        for caller in (self.alice, self.bob):
            await self.request(caller, "chat.join", channel="party:p")
            await self.lobby("joined", 5, caller)
        moved = self.bob.moved(gateway="gateway-1")
        await self.chat.session_event(moved, "moved")
        self.deliveries.clear()
        for channel in ("world:main", "party:p", "room:5"):
            await self.request(self.alice, "chat.send", channel=channel, text=channel)
            self.clock.advance(1)
        await self.request(self.alice, "chat.whisper", to="Bob", text="whisper")
        self.assertEqual(self.texts(moved), ["world:main", "party:p", "room:5"])
        self.assertEqual(
            [m["text"] for m in self.deliveries.to(moved, "chat.whisper")], ["whisper"]
        )
        self.assertEqual([g for g, _ in self.deliveries.messages], ["gateway-1"] * 4)
        # Moving does not join the world again.
        self.assertEqual(self.deliveries.to(moved, "chat.joined"), [])

    async def test_changed(self):
        """A session that chose a character is known, and speaks, by its name."""
        knight = self.bob.moved(character_id="c" * 32, character_name="Knight")
        await self.chat.session_event(knight, "changed")
        self.assertTrue((await self.request(self.alice, "chat.who", name="knight"))["online"])
        self.assertFalse((await self.request(self.alice, "chat.who", name="Bob"))["online"])
        await self.request(self.alice, "chat.whisper", to="KNIGHT", text="hail")
        self.assertEqual(len(self.deliveries.to(knight, "chat.whisper")), 1)
        await self.request(knight, "chat.send", channel="world:main", text="hi")
        self.assertEqual(self.deliveries.to(self.alice, "chat.message")[-1]["from"], "Knight")

    async def test_unknown_session_joins(self):
        """A session chat has not heard of (chat restarted) is taken in at its first request."""
        dave = await self.player("Dave", "gateway-2", start=False)
        await self.request(dave, "chat.send", channel="world:main", text="back")
        self.assertEqual(self.texts(self.alice), ["back"])
        self.assertTrue((await self.request(self.alice, "chat.who", name="Dave"))["online"])

    # -- moderation -------------------------------------------------------------------

    async def test_mute_and_unmute(self):
        mod = await self.player("Mod", "gateway-1")
        reply = await self.request(mod, "chat.mute", name="bob", seconds=60, reason="spamming")
        self.assertEqual(reply, {"name": "Bob", "until": NOW + 60, "seconds": 60})
        self.assertEqual(
            self.deliveries.to(self.bob, "chat.muted"),
            [{"reason": "spamming", "until": NOW + 60, "seconds": 60}],
        )
        error = await self.refused(
            codes.MUTED, self.bob, "chat.send", channel="world:main", text="let me talk"
        )
        self.assertIn("spamming", error.message)
        self.assertIn("60 s", error.message)
        self.clock.advance(45)
        error = await self.refused(codes.MUTED, self.bob, "chat.whisper", to="Alice", text="hi")
        self.assertIn("15 s", error.message)
        self.assertEqual(self.texts(self.alice), [])

        reply = await self.request(mod, "chat.unmute", name="Bob")
        self.assertEqual(reply, {"name": "Bob", "was_muted": True})
        self.assertEqual(self.deliveries.to(self.bob, "chat.unmuted"), [{}])
        await self.request(self.bob, "chat.send", channel="world:main", text="thanks")
        self.assertEqual(self.texts(self.alice), ["thanks"])
        reply = await self.request(mod, "chat.unmute", name="Bob")
        self.assertEqual(reply, {"name": "Bob", "was_muted": False})

    async def test_mute_expires(self):
        mod = await self.player("Mod", "gateway-1")
        await self.request(mod, "chat.mute", name="Bob", seconds=10)
        await self.refused(codes.MUTED, self.bob, "chat.send", channel="world:main", text="x")
        self.clock.advance(10)
        await self.request(self.bob, "chat.send", channel="world:main", text="free")

    async def test_mute_offline_account(self):
        """An offline player is muted by account name; the mute is there when they come."""
        mod = await self.player("Mod", "gateway-1")
        dave = await self.player("Dave", "gateway-2", start=False)
        reply = await self.request(mod, "chat.mute", name="DAVE")
        self.assertEqual(reply["name"], "Dave")
        self.assertEqual(reply["seconds"], ChatService.mute_default)
        await self.chat.session_event(dave, "started")
        await self.refused(codes.MUTED, dave, "chat.send", channel="world:main", text="x")
        await self.refused(codes.NOT_FOUND, mod, "chat.mute", name="Nobody")

    async def test_mute_checks(self):
        mod = await self.player("Mod", "gateway-1")
        for fields in (
            {"seconds": 0},
            {"seconds": -5},
            {"seconds": "long"},
            {"seconds": True},
            {"seconds": 10**9},
            {"reason": 5},
            {"reason": "x" * 201},
        ):
            await self.refused(codes.BAD_REQUEST, mod, "chat.mute", name="Bob", **fields)
        await self.refused(codes.BAD_REQUEST, mod, "chat.mute")
        await self.request(self.bob, "chat.send", channel="world:main", text="not muted")

    async def test_operator_mute(self):
        """The control command C{mute} (mmo-admin, the console): a mute by an operator."""
        self.assertIn("mute", self.chat.control_commands())
        mute = self.chat.control_commands()["mute"]
        reply = await mute(name="bob", seconds=60, reason="spamming")
        self.flush()
        self.assertEqual(reply, {"name": "Bob", "until": NOW + 60, "seconds": 60})
        [muted] = self.deliveries.to(self.bob, "chat.muted")
        self.assertEqual(muted["reason"], "spamming")
        stored = await self.chat.bus.get(mute_key(self.bob.account_id))
        self.assertEqual(stored["by"], "an operator")
        await self.refused(codes.MUTED, self.bob, "chat.send", channel="world:main", text="x")
        # Refusals are the command's errors, told as chat.mute's would be.
        with self.assertRaises(ValueError) as caught:
            await mute(name="Nobody")
        self.assertIn("no player called 'Nobody'", str(caught.exception))
        with self.assertRaises(ValueError):
            await mute(name="Bob", seconds=0)

    async def test_only_moderators_mute(self):
        await self.refused(codes.NOT_ALLOWED, self.alice, "chat.mute", name="Bob", seconds=60)
        await self.refused(codes.NOT_ALLOWED, self.alice, "chat.unmute", name="Bob")
        await self.request(self.bob, "chat.send", channel="world:main", text="still free")
        self.assertEqual(self.deliveries.to(self.bob, "chat.muted"), [])

    async def test_mute_survives_chat_restart(self):
        """Mutes are on the bus: a new chat service still refuses the muted."""
        mod = await self.player("Mod", "gateway-1")
        await self.request(mod, "chat.mute", name="Bob", seconds=60, reason="rude")
        await self.chat.stop()
        self.chat = await self.start_chat()
        error = await self.refused(
            codes.MUTED, self.bob, "chat.send", channel="world:main", text="x"
        )
        self.assertIn("rude", error.message)

    # -- ignore lists -----------------------------------------------------------------------

    async def test_ignore(self):
        """What an ignored player says (in channels, whispers, history) is not delivered."""
        reply = await self.request(self.bob, "chat.ignore", name="alice")
        self.assertEqual(reply, {"ignored": ["Alice"]})
        self.assertEqual(await self.request(self.bob, "chat.ignored"), {"ignored": ["Alice"]})
        await self.request(self.alice, "chat.send", channel="world:main", text="hello")
        self.assertEqual(self.texts(self.carol), ["hello"])
        self.assertEqual(self.texts(self.alice), ["hello"])
        self.assertEqual(self.texts(self.bob), [])
        # The whisper seems to go; it is dropped.
        reply = await self.request(self.alice, "chat.whisper", to="Bob", text="psst")
        self.assertEqual(reply["to"], "Bob")
        self.assertEqual(self.deliveries.to(self.bob, "chat.whisper"), [])
        # Others still reach Bob.
        await self.request(self.carol, "chat.whisper", to="Bob", text="hey")
        self.assertEqual(len(self.deliveries.to(self.bob, "chat.whisper")), 1)
        # History leaves the ignored out.
        reply = await self.request(self.bob, "chat.history", channel="world:main")
        self.assertEqual(reply["messages"], [])
        reply = await self.request(self.carol, "chat.history", channel="world:main")
        self.assertEqual([m["text"] for m in reply["messages"]], ["hello"])

        self.clock.advance(1)
        reply = await self.request(self.bob, "chat.unignore", name="ALICE")
        self.assertEqual(reply, {"ignored": []})
        await self.request(self.alice, "chat.send", channel="world:main", text="again")
        self.assertEqual(self.texts(self.bob), ["again"])

    async def test_ignore_persists(self):
        """Ignore lists are per account, in the store: they outlive sessions and chat."""
        await self.request(self.bob, "chat.ignore", name="Alice")
        await self.chat.session_event(self.bob, "ended")
        await self.chat.stop()
        self.chat = await self.start_chat()
        bob = self.bob.moved(session="session-bob-2")
        await self.chat.session_event(bob, "started")
        for caller in (self.alice, self.carol):
            await self.chat.session_event(caller, "started")
        self.assertEqual(await self.request(bob, "chat.ignored"), {"ignored": ["Alice"]})
        await self.request(self.alice, "chat.send", channel="world:main", text="hello")
        self.assertEqual(self.texts(self.carol), ["hello"])
        self.assertEqual(self.texts(bob), [])

    async def test_ignore_offline_and_checks(self):
        """An offline player is ignored by account name; bad names are refused."""
        dave = await self.player("Dave", "gateway-2", start=False)
        await self.request(self.bob, "chat.ignore", name="dave")
        await self.chat.session_event(dave, "started")
        await self.request(dave, "chat.send", channel="world:main", text="hi")
        self.assertEqual(self.texts(self.bob), [])
        await self.refused(codes.NOT_FOUND, self.bob, "chat.ignore", name="Nobody")
        await self.refused(codes.BAD_REQUEST, self.bob, "chat.ignore", name="Bob")
        await self.refused(codes.NOT_FOUND, self.bob, "chat.unignore", name="Carol")
        self.patch(ChatService, "ignore_max", 1)
        await self.refused(codes.NOT_ALLOWED, self.bob, "chat.ignore", name="Carol")
        # Ignoring someone twice is not a second entry.
        self.assertEqual(
            await self.request(self.bob, "chat.ignore", name="Dave"), {"ignored": ["Dave"]}
        )

    # -- failures ---------------------------------------------------------------------------

    async def test_store_failures(self):
        """
        Without the store, chat still delivers (the history misses what could
        not be written), and ignore lists are refused rather than overwritten.
        """
        from mmo.store import StoreError

        await self.without_store(StoreError("disk on fire"))
        # Two appends, Dave's list at his start and at his request, the party's history.
        self.assertEqual(len(self.flushLoggedErrors(StoreError)), 5)

    async def test_store_unreachable(self):
        """
        The same with the store unreachable (Redis down): each failure is one
        warning line, not a traceback.
        """
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        await self.without_store(StoreUnavailable("Redis at redis.lan:7380: Lost connection"))
        warned = [e for e in events if "Lost connection" in formatEvent(e)]
        self.assertEqual([e["log_level"] for e in warned], [LogLevel.warn] * 5)

    async def without_store(self, error):
        def broken(*args):
            return defer.fail(error)

        await self.request(self.bob, "chat.ignore", name="Carol")
        self.patch(self.store, "append_logs", broken)
        self.patch(self.store, "read_log", broken)
        await self.request(self.alice, "chat.send", channel="world:main", text="still here")
        self.assertEqual(self.texts(self.bob), ["still here"])
        dave = await self.player("Dave", "gateway-2")
        await self.refused(codes.UNAVAILABLE, dave, "chat.ignore", name="Alice")
        await self.request(dave, "chat.join", channel="party:new")
        # Bob's list, loaded before, still works.
        await self.request(self.carol, "chat.send", channel="world:main", text="ignored")
        self.assertEqual(self.texts(self.bob), ["still here"])
        await self.chat.settled()

    async def test_news_after_the_end(self):
        """A "moved" or "changed" that crossed "ended" does not bring the session back."""
        await self.chat.session_event(self.bob, "ended")
        await self.chat.session_event(self.bob.moved(gateway="gateway-1"), "moved")
        await self.chat.session_event(self.bob.moved(character_name="Knight"), "changed")
        for name in ("Bob", "Knight"):
            self.assertFalse((await self.request(self.alice, "chat.who", name=name))["online"])
        self.deliveries.clear()
        await self.request(self.alice, "chat.send", channel="world:main", text="hi")
        self.assertNotIn(self.bob.session, self.deliveries.sessions())

    # -- flood ---------------------------------------------------------------------------

    async def test_flood(self):
        """A token bucket per account: [chat] burst at once, then [chat] rate a second."""
        for i in range(3):
            await self.request(self.alice, "chat.send", channel="world:main", text=f"m{i}")
        error = await self.refused(
            codes.FLOODING, self.alice, "chat.send", channel="world:main", text="m3"
        )
        self.assertIn("wait 1.0 s", error.message)
        await self.refused(codes.FLOODING, self.alice, "chat.whisper", to="Bob", text="w")
        # Others are not slowed down.
        await self.request(self.bob, "chat.send", channel="world:main", text="bob")
        self.clock.advance(0.5)
        await self.refused(codes.FLOODING, self.alice, "chat.send", channel="world:main", text="x")
        self.clock.advance(0.5)
        await self.request(self.alice, "chat.send", channel="world:main", text="m4")
        await self.refused(codes.FLOODING, self.alice, "chat.send", channel="world:main", text="x")
        self.assertEqual(self.texts(self.carol), ["m0", "m1", "m2", "bob", "m4"])

    async def test_flood_bucket_per_account(self):
        """A second session of the account shares the bucket."""
        for i in range(3):
            await self.request(self.alice, "chat.send", channel="world:main", text=f"m{i}")
        second = self.alice.moved(session="session-alice-2", gateway="gateway-2")
        await self.chat.session_event(second, "started")
        await self.refused(codes.FLOODING, second, "chat.send", channel="world:main", text="x")

    # -- life cycle ------------------------------------------------------------------------

    async def test_stop_unsubscribes(self):
        await self.chat.stop()
        await messages.publish(
            self.bus, ROOMS_CHANNEL, RoomEvent(1, "joined", self.alice.to_dict()), "lobby"
        )
        self.flush()
        self.assertNotIn(
            "room:1", (await self.chat.handle(self.alice, "chat.channels", {}))["channels"]
        )

    async def test_unknown_type(self):
        await self.refused(codes.UNKNOWN_TYPE, self.alice, "chat.dance")


class LogWriterTests(unittest.TestCase):
    """The writer behind history: one append at a time, in order, dropping what would go."""

    class Store:
        def __init__(self):
            self.calls: list[tuple[str, dict, int, defer.Deferred]] = []

        def append_logs(self, key, records, keep):
            d = defer.Deferred()
            self.calls.append((key, records, keep, d))
            return d

    def test_one_at_a_time_in_order(self):
        """
        One append at a time, in order; what was added meanwhile goes in
        the next append, together.
        """
        store = self.Store()
        idle = []
        writer = LogWriter(store, "log", 10, idle.append)
        for i in range(3):
            writer.add({"i": i})
        flushed = writer.flushed()
        self.assertEqual([c[1] for c in store.calls], [[{"i": 0}]])
        store.calls[0][3].callback(None)
        self.assertEqual([c[1] for c in store.calls], [[{"i": 0}], [{"i": 1}, {"i": 2}]])
        self.assertFalse(flushed.called)
        writer.add({"i": 3})
        store.calls[1][3].errback(RuntimeError("store down"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertTrue(flushed.called)
        self.assertEqual(idle, [])
        store.calls[2][3].callback(None)
        self.assertEqual([[r["i"] for r in c[1]] for c in store.calls], [[0], [1, 2], [3]])
        self.assertEqual({c[2] for c in store.calls}, {10})
        self.assertEqual(idle, [writer])
        self.assertTrue(writer.flushed().called)

    def test_drops_what_the_log_would_trim(self):
        """With the store behind, only the last C{keep} waiting records are kept."""
        store = self.Store()
        writer = LogWriter(store, "log", 2, None)
        for i in range(6):
            writer.add({"i": i})
        flushed = writer.flushed()
        for n in range(2):
            store.calls[n][3].callback(None)
        self.assertEqual([[r["i"] for r in c[1]] for c in store.calls], [[0], [4, 5]])
        self.assertTrue(flushed.called)


class StoreLogsTests(unittest.TestCase):
    """The writers of chat's store logs, and reads that wait for them."""

    class Store(LogWriterTests.Store):
        def __init__(self):
            super().__init__()
            self.reads: list[tuple[str, int]] = []

        def read_log(self, key, limit):
            self.reads.append((key, limit))
            return defer.succeed(
                [r for k, records, _, d in self.calls if k == key for r in records]
            )

    def test_read_after_the_writes(self):
        """A read of a log is sent once the records appended to it before are written."""
        store = self.Store()
        logs = StoreLogs(store)
        logs.append("a", {"i": 0}, 5)
        logs.append("b", {"i": 1}, 5)
        reading = defer.ensureDeferred(logs.read("a", 5))
        self.assertEqual(store.reads, [])
        store.calls[1][3].callback(None)  # "b" is no concern of the read
        self.assertEqual(store.reads, [])
        store.calls[0][3].callback(None)
        self.assertEqual(store.reads, [("a", 5)])
        self.assertEqual(self.successResultOf(reading), [{"i": 0}])

    def test_writers_go_when_idle(self):
        """A log's writer is kept while it has work: later appends start a new one."""
        store = self.Store()
        logs = StoreLogs(store)
        logs.append("a", {"i": 0}, 1)
        settled = logs.settled()
        self.assertNoResult(settled)
        store.calls[0][3].callback(None)
        self.successResultOf(settled)
        self.successResultOf(logs.flushed("a"))
        logs.append("a", {"i": 1}, 1)
        flushed = logs.flushed("a")
        self.assertNoResult(flushed)
        store.calls[1][3].callback(None)
        self.successResultOf(flushed)
        self.assertEqual([[r["i"] for r in c[1]] for c in store.calls], [[0], [1]])


def caller(name: str, session: str | None = None, account: str | None = None, realm="main"):
    return Caller(
        session=session or f"session-{name.lower()}",
        gateway="gateway-1",
        account_id=account or f"account-{name.lower()}",
        name=name,
        realm=realm,
    )


class PresenceTests(unittest.TestCase):
    """Who is online, found by session, name and account."""

    def setUp(self):
        self.offline: list[str] = []
        self.presence = Presence(offline=self.offline.append, remember=2)

    def test_find_by_name(self):
        """Names are found in any case; of two sessions of one name, the latest."""
        alice = caller("Alice")
        self.assertIsNone(self.presence.track(alice))
        self.assertEqual(self.presence.find("ALICE"), alice)
        other = caller("alice", session="session-other", account="account-other")
        self.presence.track(other)
        self.assertEqual(self.presence.find("Alice"), other)
        self.presence.end(other.session)
        self.assertEqual(self.presence.find("alice"), alice)
        self.assertIsNone(self.presence.find("Bob"))

    def test_changed_name(self):
        """A session that changes its display name is found by the new name only."""
        alice = caller("Alice")
        self.presence.track(alice)
        knight = alice.moved(character_name="Knight")
        self.assertEqual(self.presence.track(knight), alice)
        self.assertIsNone(self.presence.find("Alice"))
        self.assertEqual(self.presence.find("knight"), knight)
        self.assertEqual(self.presence.get(alice.session), knight)
        self.assertEqual(self.offline, [])

    def test_accounts_and_offline(self):
        """An account is online while any of its sessions is; told when it goes."""
        first = caller("Alice")
        second = caller("Alice", session="session-alice-2")
        self.presence.track(first)
        self.presence.track(second)
        sessions = self.presence.sessions_of("account-alice")
        self.assertEqual(sorted(sessions, key=lambda c: c.session), [first, second])
        self.presence.end(first.session)
        self.assertTrue(self.presence.is_online("account-alice"))
        self.assertEqual(self.offline, [])
        # A session that becomes another account's leaves the first.
        self.presence.track(second.moved(account_id="account-x"))
        self.assertEqual(self.offline, ["account-alice"])
        self.assertFalse(self.presence.is_online("account-alice"))
        self.assertEqual(list(self.presence.accounts()), ["account-x"])
        self.presence.end(second.session)
        self.assertEqual(self.offline, ["account-alice", "account-x"])
        self.assertEqual(self.presence.sessions_of("account-x"), [])

    def test_ended_remembered(self):
        """The last C{remember} ended sessions are known as ended, until they start again."""
        for name in ("A", "B", "C"):
            self.presence.track(caller(name))
            self.presence.end(f"session-{name.lower()}")
        self.assertEqual(
            [self.presence.ended(s) for s in ("session-a", "session-b", "session-c")],
            [False, True, True],
        )
        self.assertIsNone(self.presence.get("session-c"))
        self.presence.restart("session-c")
        self.assertFalse(self.presence.ended("session-c"))


class ChannelTests(unittest.TestCase):
    """One channel's members and history, and the channels of each session."""

    def test_history_numbering(self):
        """
        Messages sent before the stored history is read come after it, are
        saved once it is read (in order), and a joiner's C{upto} shows what
        was sent before the join.
        """
        channel = Channel("party:p", 3)
        self.assertTrue(channel.add(caller("Alice")))
        self.assertFalse(channel.add(caller("Alice")))
        self.assertFalse(channel.add_message({"text": "a"}))
        upto = channel.count
        self.assertFalse(channel.add_message({"text": "b"}))
        waiting = defer.ensureDeferred(channel.history(upto))
        self.assertNoResult(waiting)
        saved = []
        channel.load([{"text": "old"}], saved.append)
        self.assertEqual(saved, [{"text": "a"}, {"text": "b"}])
        self.assertEqual([r["text"] for r in self.successResultOf(waiting)], ["old", "a"])
        self.assertTrue(channel.add_message({"text": "c"}))
        history = self.successResultOf(defer.ensureDeferred(channel.history()))
        self.assertEqual([r["text"] for r in history], ["a", "b", "c"])

    def test_members(self):
        """Sessions join and leave; an empty channel is gone; a member's state follows it."""
        channels = Channels(StoreLogs(None), keep=0)
        alice, bob = caller("Alice"), caller("Bob")
        channel, new = channels.add(alice, "party:p")
        self.assertTrue(new)
        self.assertEqual(channels.add(alice, "party:p"), (channel, False))
        channels.add(bob, "party:p")
        channels.add(alice, "world:main")
        self.assertEqual(channels.joined(alice.session), {"party:p", "world:main"})
        self.assertEqual(channels.size("party:p"), 2)
        moved = alice.moved(gateway="gateway-2")
        channels.update(moved)
        self.assertEqual(channels.member("world:main", alice.session), moved)
        self.assertEqual(channels.member("party:p", alice.session), moved)
        self.assertIsNone(channels.member("party:p", "session-nobody"))

        channels.leave_all(alice.session)
        self.assertEqual(channels.joined(alice.session), frozenset())
        self.assertIsNone(channels.get("world:main"))
        self.assertEqual(channels.close("party:p"), [bob])
        self.assertIsNone(channels.get("party:p"))
        self.assertEqual(channels.size("party:p"), 0)
        self.assertIsNone(channels.remove("party:p", bob.session))
        with self.assertRaises(WireError) as raised:
            channels.require_member(bob, "party:p")
        self.assertEqual(raised.exception.code, codes.NOT_ALLOWED)

    def test_no_history_kept(self):
        """With C{keep} 0 a channel is ready at once and records nothing."""
        channels = Channels(StoreLogs(None), keep=0)
        channel, _ = channels.add(caller("Alice"), "party:p")
        channels.record(channel, {"text": "gone"})
        self.assertEqual(self.successResultOf(defer.ensureDeferred(channel.history())), [])
        self.successResultOf(channels.settled())


class FloodLimitTests(unittest.TestCase):
    """Chat's token bucket per account."""

    def setUp(self):
        self.clock = task.Clock()
        self.clock.advance(NOW)

    def test_refusal_says_how_long(self):
        flood = FloodLimit(2.0, 1, self.clock)
        flood.take("a")
        flood.take("b")
        with self.assertRaises(WireError) as raised:
            flood.take("a")
        self.assertEqual(raised.exception.code, codes.FLOODING)
        self.assertEqual(
            raised.exception.message,
            "you are sending chat messages too fast (at most 2 a second, 1 at once); wait 0.5 s",
        )
        self.clock.advance(0.2)
        with self.assertRaises(WireError) as raised:
            flood.take("a")
        self.assertIn("wait 0.3 s", raised.exception.message)
        self.clock.advance(0.3)
        flood.take("a")

    def test_prune(self):
        """
        Once buckets far outnumber the accounts online, the full ones of
        accounts offline are dropped; the others are kept.
        """
        flood = FloodLimit(1.0, 1, self.clock)
        for i in range(70):
            flood.take(f"account-{i}")
        flood.prune(set())
        self.assertEqual(flood.bucket_count(), 70)  # none is full yet
        self.clock.advance(1)
        flood.take("account-1")
        flood.prune({"account-0"})
        self.assertEqual(flood.bucket_count(), 2)
        # An online account's bucket is kept, and so is an empty one.
        with self.assertRaises(WireError):
            flood.take("account-1")

    def test_few_buckets_kept(self):
        """With few buckets more than accounts online, none is dropped."""
        flood = FloodLimit(1.0, 1, self.clock)
        for i in range(64):
            flood.take(f"account-{i}")
        self.clock.advance(1)
        flood.prune(set())
        self.assertEqual(flood.bucket_count(), 64)


class RedisBusChatTests(unittest.TestCase):
    """Cross-gateway delivery over the Redis bus, between two processes' buses."""

    timeout = 60

    async def make_bus(self, conf):
        from mmo.bus.redis import RedisBus

        bus = RedisBus(conf, reactor=reactor)
        await bus.start()
        self.addCleanup(bus.stop)
        return bus

    def test_cross_gateway_delivery(self):
        return defer.ensureDeferred(self.cross_gateway_delivery())

    async def cross_gateway_delivery(self):
        server = start_redis(self)
        conf = load_config(self, CHAT + redis_config_text(server) + '[bus]\nbackend = "redis"\n')
        store = SQLiteStore(os.path.join(os.path.abspath(self.mktemp()), "chat.sqlite3"), reactor)
        await store.start()
        self.addCleanup(store.stop)
        chat_bus = await self.make_bus(conf)
        # The gateways listen on a bus (a connection) of their own.
        gateway_bus = await self.make_bus(conf)
        deliveries = Deliveries()
        await deliveries.subscribe(gateway_bus)
        chat = ChatService(conf, store, chat_bus, reactor)
        await chat.start()
        self.addCleanup(chat.stop)
        callers = []
        for name, gateway in (("Alice", "gateway-1"), ("Bob", "gateway-2"), ("Carol", "gateway-1")):
            account = await store.create_account(name, HASH)
            caller = Caller(f"session-{name}", gateway, account.id, name)
            await chat.session_event(caller, "started")
            callers.append(caller)
        alice, bob, carol = callers
        await deliveries.when(3)  # chat.joined, one per session
        await chat.handle(alice, "chat.send", {"channel": "world:main", "text": "over redis"})
        await deliveries.when(5)
        sent = [(g, m) for g, m in deliveries.messages if m.kind == "chat.message"]
        self.assertEqual(sorted(g for g, _ in sent), ["gateway-1", "gateway-2"])
        for caller in callers:
            self.assertEqual(
                [m["text"] for m in deliveries.to(caller, "chat.message")], ["over redis"]
            )
        # A room event published by the lobby (its own bus) reaches chat too.
        await messages.publish(
            gateway_bus, ROOMS_CHANNEL, RoomEvent(3, "joined", bob.to_dict()), "lobby"
        )
        await deliveries.when(6)
        self.assertEqual(
            deliveries.to(bob, "chat.joined")[-1], {"channel": "room:3", "history": []}
        )


class KeyedTests(unittest.TestCase):
    """Small sets per key, as tuples (the channels of a session, the sessions of an account)."""

    def test_add_once_and_discard(self):
        table: dict[str, tuple[str, ...]] = {}
        keyed.add(table, "s1", "world:main")
        keyed.add(table, "s1", "zone:a")
        keyed.add(table, "s1", "world:main")
        self.assertEqual(table, {"s1": ("world:main", "zone:a")})
        self.assertFalse(keyed.discard(table, "s1", "world:main"))
        self.assertEqual(table, {"s1": ("zone:a",)})
        self.assertTrue(keyed.discard(table, "s1", "zone:a"))
        self.assertEqual(table, {})
        # An absent key is empty: discarding from it says so and adds nothing.
        self.assertTrue(keyed.discard(table, "s2", "x"))
        self.assertEqual(table, {})
