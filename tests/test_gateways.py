"""
A gateway's death, as the game services see it (L{mmo.game.gateways}): the
sessions of a gateway that restarted, or that left the directory for good,
end in the lobby, chat and the zones as if the gateway had said so; a
session that moved to another gateway, or that the new process holds, is
kept.  And the gateway's side: its start is told on the bus, and its
sessions' callers carry its incarnation, across a handover too.
"""

from __future__ import annotations

import os

from twisted.internet import defer, task
from twisted.trial import unittest

from mmo.bus.memory import MemoryBus
from mmo.chat.channels import world_channel
from mmo.chat.service import ChatService
from mmo.game import messages
from mmo.game.gateways import GatewayWatch, KnownSessions
from mmo.game.messages import GATEWAYS_CHANNEL, GatewayStarted
from mmo.game.routes import pack, unpack
from mmo.game.server import ServiceRPCFactory
from mmo.game.service import Caller
from mmo.store.sqlite import SQLiteStore
from mmo.wire import codes
from mmo.zone.entity import NPC, PLAYER, Entity
from mmo.zone.host import ZoneHost
from tests.support import LogCapture, config_of
from tests.test_chat import HASH, NOW, load_config
from tests.test_lobby import LobbyTestCase
from tests.test_sessions import Player, SessionTestCase
from tests.test_zone_service import ZoneTestCase

#: Seconds between sweeps of the directory, and a gateway's absence that ends its sessions.
INTERVAL, GONE_AFTER = 1.0, 10.0


def on(caller: Caller, gateway: str, incarnation: str) -> Caller:
    """C{caller} as held by C{gateway} started as C{incarnation}."""
    return caller.moved(gateway=gateway, incarnation=incarnation)


class Watched:
    """
    A game service of a test case (C{self.service}, on C{self.clock} and
    C{self.bus}) with its process's L{GatewayWatch} and RPC listener's
    factory, which notes the callers of what it passes on as production's.
    """

    def watch(self, service, config) -> None:
        self.watcher = GatewayWatch(service, self.bus, self.clock, INTERVAL, GONE_AFTER)
        self.successResultOf(defer.ensureDeferred(self.watcher.start()))
        self.addCleanup(lambda: defer.ensureDeferred(self.watcher.stop()))
        process = next(iter(config.processes.values()))
        self.rpc = ServiceRPCFactory(config, process, service, self.clock, known=self.watcher.known)

    async def tell(self, caller: Caller, event: str) -> None:
        """A gateway's session event, through the RPC listener."""
        await self.rpc.session_event(caller, event)
        self.clock.advance(0)

    async def routed(self, caller: Caller, kind: str, **fields) -> dict:
        """A client's message, through the RPC listener: the reply's fields."""
        reply = await self.rpc.route(caller, kind, pack({"t": kind, "id": 1, **fields}))
        self.clock.advance(0)
        return unpack(reply["body"])

    async def restarted(self, gateway: str, incarnation: str) -> None:
        """Gateway C{gateway} starts again as C{incarnation} and says so."""
        await messages.publish(
            self.bus, GATEWAYS_CHANNEL, GatewayStarted(gateway, incarnation), gateway
        )
        self.clock.advance(0)
        await self.settled()

    async def settled(self) -> None:
        """Let the service finish what the watch started (the store answers from threads)."""

    def directory(self, incarnations: dict) -> None:
        """Gateways in the directory (for a long while), each with its incarnation."""
        for gateway, incarnation in incarnations.items():
            self.bus.announce(gateway, {"kind": "gateway", "incarnation": incarnation}, 3600.0)

    async def sweeps(self, seconds: float) -> None:
        """C{seconds} of sweeps."""
        for _ in range(int(seconds / INTERVAL)):
            self.clock.advance(INTERVAL)
            await self.settled()


class LobbyTests(Watched, LobbyTestCase):
    def setUp(self):
        d = super().setUp()
        self.watch(self.lobby, self.config)
        return d

    async def player_on(self, name: str, gateway: str, incarnation: str) -> Caller:
        account = await self.store.create_account(name, "hash")
        caller = Caller(f"s-{name}", gateway, account.id, name, incarnation=incarnation)
        await self.tell(caller, "started")
        return caller

    async def chosen(self, caller: Caller) -> Caller:
        """C{caller} with a new character chosen (as the gateway applies it)."""
        created = await self.routed(caller, "character.create", name=caller.name + "son")
        await self.routed(caller, "character.choose", character=created["character"]["id"])
        caller = caller.moved(
            character_id=created["character"]["id"], character_name=created["character"]["name"]
        )
        await self.tell(caller, "changed")
        return caller

    async def test_restart_ends_the_sessions_of_the_dead_process(self):
        """
        Gateway gw-1 restarts: its player, logged in again, can choose the
        character the dead session had chosen; the dead session left its
        room, and the room's other member was told.
        """
        alice = await self.chosen(await self.player_on("alice", "gw-1", "one"))
        bob = await self.player_on("bob", "gw-2", "b")
        room = await self.routed(alice, "room.create", name="hall")
        await self.routed(bob, "room.join", room=room["room"]["id"])
        again = Caller("s-alice-2", "gw-1", alice.account_id, "alice", incarnation="two")
        await self.tell(again, "started")
        # Before the restart is heard, the character is in play elsewhere.
        code = await self.error(again, "character.choose", character=alice.character_id)
        self.assertEqual(code, codes.NOT_ALLOWED)
        self.clear()

        await self.restarted("gw-1", "two")

        reply = await self.routed(again, "character.choose", character=alice.character_id)
        self.assertEqual(reply["character"]["id"], alice.character_id)
        self.assertEqual(
            [kind for kind, _ in self.pushed(bob)], ["room.left"], "bob is told alice left"
        )
        members = await self.routed(bob, "room.members")
        self.assertEqual([m["name"] for m in members["members"]], ["bob"])
        self.assertIsNone(self.watcher.known.get(alice.session))

    async def test_moved_and_new_sessions_are_kept(self):
        """
        A session that moved from gw-1 to gw-2, and one the new gw-1 holds
        (heard of before its start was), are not ended by gw-1's restart.
        """
        moved = await self.chosen(await self.player_on("alice", "gw-1", "one"))
        moved = on(moved, "gw-2", "b")
        await self.tell(moved, "moved")
        new = await self.chosen(await self.player_on("bob", "gw-1", "two"))

        await self.restarted("gw-1", "two")

        for caller in (moved, new):
            other = Caller("s-other", "gw-1", caller.account_id, caller.name, incarnation="two")
            code = await self.error(other, "character.choose", character=caller.character_id)
            self.assertEqual(code, codes.NOT_ALLOWED, f"{caller.name}'s session still plays")
            self.assertEqual(self.watcher.known.get(caller.session), caller)

    async def test_gateway_gone_from_the_directory(self):
        """
        A gateway missing from the directory for [gateway] gone_after
        seconds is gone: its sessions end; those of gateways in the
        directory with their incarnation are kept; one of another
        incarnation than the directory names ends at the next sweep.
        """
        gone = await self.chosen(await self.player_on("alice", "gw-1", "one"))
        kept = await self.chosen(await self.player_on("bob", "gw-2", "b"))
        restarted = await self.chosen(await self.player_on("carol", "gw-3", "old"))
        self.directory({"gw-2": "b", "gw-3": "new"})
        await self.sweeps(INTERVAL)
        self.assertIsNone(self.watcher.known.get(restarted.session))
        await self.sweeps(GONE_AFTER - 2 * INTERVAL)
        self.assertEqual(self.watcher.known.get(gone.session), gone)
        await self.sweeps(2 * INTERVAL)
        self.assertIsNone(self.watcher.known.get(gone.session))
        self.assertEqual(self.watcher.known.get(kept.session), kept)
        for caller in (gone, restarted):
            again = Caller("s-again", "gw-2", caller.account_id, caller.name, incarnation="b")
            reply = await self.routed(again, "character.choose", character=caller.character_id)
            self.assertEqual(reply["character"]["id"], caller.character_id)

    async def test_back_in_time_is_not_gone(self):
        """A gateway missing from one sweep and back at the next is not gone."""
        alice = await self.chosen(await self.player_on("alice", "gw-1", "one"))
        await self.sweeps(GONE_AFTER - INTERVAL)
        self.directory({"gw-1": "one"})
        await self.sweeps(INTERVAL)
        self.bus.withdraw("gw-1")
        await self.sweeps(GONE_AFTER - INTERVAL)
        self.assertEqual(self.watcher.known.get(alice.session), alice)

    async def test_directory_unreadable(self):
        """The bus failing a sweep ends nothing; it is logged."""
        alice = await self.chosen(await self.player_on("alice", "gw-1", "one"))
        logs = LogCapture(self)
        self.bus.services = lambda kind=None: defer.fail(RuntimeError("redis is down"))
        await self.sweeps(2 * GONE_AFTER)
        self.assertEqual(self.watcher.known.get(alice.session), alice)
        self.assertTrue(logs.matching("cannot read the directory", "redis is down"))


class ZoneTests(Watched, ZoneTestCase):
    async def setUp(self):
        await super().setUp()
        self.watch(self.west, self.config)

    async def settled(self) -> None:
        await self.settle(2)

    async def test_restart_saves_and_removes_the_entities(self):
        """
        gw-1 restarts: the entity of its dead session (heard of) and one
        handed over here (never heard of: the zone holds it) are saved
        where they were and leave the world; bob's, on gw-2, stays.  The
        player logs in again: its new entity is where the old one was, and
        walks.
        """
        alice = on(await self.character("alice", {"hp": 10}), "gw-1", "one")
        await self.routed(alice, "zone.enter")
        carol = on(await self.character("carol", {}), "gw-1", "one")
        await self.west.handle(carol, "zone.enter", {})
        bob = on(await self.character("bob", {}), "gw-2", "b")
        await self.routed(bob, "zone.enter")
        self.west.simulation.get(alice.character_id).x = 40.0

        await self.restarted("gw-1", "two")
        await self.tick_until(lambda: self.west.simulation.get(carol.character_id) is None)

        self.assertIsNone(self.west.simulation.get(alice.character_id))
        self.assertIsNone(await self.store.load_entity(alice.character_id))
        self.assertIsNotNone(self.west.simulation.get(bob.character_id))
        character = await self.store.character_by_id(alice.character_id)
        self.assertEqual(character.data["world"]["x"], 40.0)
        again = on(alice.moved(session="session-alice-2"), "gw-1", "two")
        reply = await self.routed(again, "zone.enter")
        self.assertEqual((reply["x"], reply["y"]), (40.0, 50.0))
        await self.routed(
            again.moved(zone="r0c0"), "zone.move", seq=reply["input"] + 1, x=40.5, y=50
        )
        self.assertEqual(self.west.simulation.get(alice.character_id).x, 40.5)
        self.assertEqual(self.west.simulation.get(alice.character_id).session, again.session)

    async def test_relogin_before_the_restart_is_heard(self):
        """
        The player's new session took its entity over before the old
        one's gateway restart was heard: the entity is the new session's
        and stays, once.
        """
        alice = on(await self.character("alice", {}), "gw-1", "one")
        await self.routed(alice, "zone.enter")
        again = on(alice.moved(session="session-alice-2"), "gw-2", "b")
        await self.routed(again, "zone.enter")
        await self.restarted("gw-1", "two")
        entity = self.west.simulation.get(alice.character_id)
        self.assertEqual(entity.session, again.session)
        self.assertEqual(list(self.west.simulation.reals), [alice.character_id])

    def test_zone_host_names_the_sessions_of_its_zones(self):
        """A zone process names the players' sessions of every zone it serves."""
        host = ZoneHost(self.config, self.store, self.bus, self.clock, "mmo")
        east = host.zones["r0c1"]
        east.simulation.add(Entity("c-alice", PLAYER, 150.0, 50.0, session="s1", gateway="gw-1"))
        east.simulation.add(Entity("npc-1", NPC, 150.0, 60.0))
        [alice] = host.held_sessions()
        self.assertEqual(
            (alice.session, alice.gateway, alice.character_id, alice.incarnation),
            ("s1", "gw-1", "c-alice", ""),
        )


class ChatTests(Watched, unittest.TestCase):
    async def setUp(self):
        self.clock = task.Clock()
        self.clock.advance(NOW)
        self.config = load_config(self)
        self.store = SQLiteStore(os.path.abspath(self.mktemp()) + ".sqlite3", reactor=self.clock)
        await self.store.start()
        self.addCleanup(self.store.stop)
        self.bus = MemoryBus(reactor=self.clock)
        self.addCleanup(self.bus.stop)
        self.chat = ChatService(self.config, self.store, self.bus, self.clock)
        await self.chat.start()
        self.addCleanup(self.chat.stop)
        self.watch(self.chat, self.config)

    async def test_restart_takes_the_player_offline(self):
        """gw-1 restarts: its dead session's player is offline, out of every channel."""
        account = await self.store.create_account("Alice", HASH)
        alice = Caller("session-alice", "gateway-1", account.id, "Alice", incarnation="one")
        await self.tell(alice, "started")
        self.assertEqual((await self.routed(alice, "chat.who", name="alice"))["online"], True)
        await self.restarted("gateway-1", "two")
        self.assertIsNone(self.chat.presence.get(alice.session))
        self.assertFalse(self.chat.presence.is_online(account.id))
        self.assertFalse(self.chat.channels.is_member(world_channel("main"), alice.session))


class KnownSessionsTests(unittest.TestCase):
    def test_ended_not_brought_back(self):
        """A request on its way when its session ended does not bring it back; "started" does."""
        known = KnownSessions(remember=2)
        alice = Caller("s1", "gw-1", "a1", "alice")
        known.event(alice, "started")
        known.event(alice, "ended")
        known.heard(alice)
        self.assertIsNone(known.get("s1"))
        known.event(alice, "started")
        self.assertEqual(known.get("s1"), alice)

    def test_bounded(self):
        """Only the last C{remember} ended sessions are remembered."""
        known = KnownSessions(remember=2)
        for session in ("s1", "s2", "s3"):
            known.ended(session)
        known.heard(Caller("s1", "gw-1", "a1", "alice"))
        known.heard(Caller("s3", "gw-1", "a3", "carol"))
        self.assertEqual([c.session for c in known], ["s1"])

    def test_rpc_listener_notes_callers(self):
        """The RPC listener notes the callers of requests and session events."""
        known = KnownSessions()
        config = config_of()
        factory = ServiceRPCFactory(config, config.process("mmo"), _Echo(), None, known=known)
        alice = Caller("s1", "gw-1", "a1", "alice", incarnation="one")
        self.successResultOf(defer.ensureDeferred(factory.route(alice, "echo.x", pack({}))))
        self.assertEqual(known.get("s1"), alice)
        batch = pack([[alice.moved(zone="z").to_dict(), "echo.x", {}]])
        self.successResultOf(defer.ensureDeferred(factory.route_batch(batch)))
        self.assertEqual(known.get("s1").zone, "z")
        self.successResultOf(defer.ensureDeferred(factory.session_event(alice, "ended")))
        self.assertIsNone(known.get("s1"))


class _Echo:
    """A game service answering C{echo.*} with nothing."""

    async def handle(self, caller, kind, message):
        return {}

    async def session_event(self, caller, event):
        pass


class GatewayStartTests(SessionTestCase):
    def test_start_told_and_callers_carry_the_incarnation(self):
        """
        A gateway's start is told on the bus with its incarnation, which
        the callers of its sessions carry; a session handed over to
        another gateway carries that one's.
        """
        heard = []
        self.bus.subscribe(GATEWAYS_CHANNEL, lambda data: heard.append(messages.decode(data)))
        self.successResultOf(self.a.sessions.announce())
        self.clock.advance(0)
        self.assertEqual(heard, [("gw-a", GatewayStarted("gw-a", self.a.sessions.incarnation))])
        b = self.gateway("gw-b")
        self.assertNotEqual(b.sessions.incarnation, self.a.sessions.incarnation)

        player, reply = self.admit(self.a)
        [started] = self.lobby.seen("started")
        self.assertEqual(started.incarnation, self.a.sessions.incarnation)
        player.drop()
        moved = Player(b)
        [resumed, *_] = moved.request("resume", token=reply["resume"], last_seq=0)
        self.assertEqual(resumed["t"], "reply", resumed)
        [caller] = self.lobby.seen("moved")
        self.assertEqual((caller.gateway, caller.incarnation), ("gw-b", b.sessions.incarnation))
