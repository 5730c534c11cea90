"""
Tests for the lobby service: characters (name rules, uniqueness, limit,
ownership, choice), rooms (capacity, password, ownership, kick, close),
pushes to the other members, room events on the bus, the step into the
world and the session events.

The store is a real SQLite file (its queries run on threads of the real
reactor); the bus is the in-process one on a L{task.Clock}, whose deliveries
are scheduled with C{callLater(0)}: L{LobbyTestCase.call} advances the clock
after each message, so every push the message caused has arrived when it
returns.  Pushes are captured as a gateway would get them, by subscribing to
the gateways' bus channels.
"""

from __future__ import annotations

import dataclasses
import os
from collections import defaultdict
from itertools import count

from twisted.internet import defer, task
from twisted.trial import unittest

from mmo.bus.memory import MemoryBus
from mmo.game import messages
from mmo.game.messages import ROOMS_CHANNEL, Push, gateway_channel
from mmo.game.service import Caller, Reply, SessionChange
from mmo.lobby.service import LobbyService
from mmo.store.sqlite import SQLiteStore
from mmo.wire import codes
from mmo.wire.codes import WireError
from tests.support import config_of

GATEWAYS = ("gw-1", "gw-2")


class LobbyTestCase(unittest.TestCase):
    """
    A lobby on a fresh store and bus, with helpers to make players and send
    their messages.

    @ivar pushes: Session id -> the pushes delivered to it, as
        C{(gateway, type, fields)}.
    @ivar room_events: The messages of the C{lobby.rooms} channel.
    """

    lobby_options: dict = {}

    def setUp(self):
        self.config = config_of(
            {"mmo": {"kind": "mmo", "client": "tcp:7000"}},
            lobby=self.lobby_options,
            realms={"main": {}, "east": {}},
        )
        self.clock = task.Clock()
        self.clock.advance(1_800_000_000)
        self.bus = MemoryBus(reactor=self.clock)
        self.store = SQLiteStore(os.path.abspath(self.mktemp()) + ".sqlite3", reactor=self.clock)
        self.lobby = self.make_lobby()
        self.pushes: dict[str, list[tuple[str, str, dict]]] = defaultdict(list)
        self.room_events: list[dict] = []
        self.sessions = count(1)
        self.request_ids = count(1)
        for gateway in GATEWAYS:
            self.bus.subscribe(gateway_channel(gateway), self.gateway_hears(gateway))
        self.bus.subscribe(ROOMS_CHANNEL, self.room_event)
        self.addCleanup(self.store.stop)
        return self.store.start()

    def make_lobby(self) -> LobbyService:
        return LobbyService(self.config, self.store, self.bus, self.clock)

    def gateway_hears(self, gateway):
        def hear(data):
            _, push = messages.decode(data)
            self.assertIsInstance(push, Push)
            self.assertEqual(set(push.fields) & {"t", "id", "seq"}, set())
            for session in push.sessions:
                self.pushes[session].append((gateway, push.kind, push.fields))

        return hear

    def room_event(self, data) -> None:
        """A room event on the bus, as its fields."""
        _, event = messages.decode(data)
        self.room_events.append(dataclasses.asdict(event))

    async def player(self, name: str, gateway: str = "gw-1", realm: str = "main") -> Caller:
        """A new account and a session of it, started on C{gateway}."""
        account = await self.store.create_account(name, "hash")
        return await self.session(account.id, name, gateway, realm)

    async def session(self, account_id, name, gateway="gw-1", realm="main") -> Caller:
        """Another session of an account."""
        caller = Caller(f"s{next(self.sessions)}", gateway, account_id, name, realm)
        await self.lobby.session_event(caller, "started")
        return caller

    async def call(self, caller: Caller, kind: str, **fields) -> dict:
        """
        Send a message as the gateway would (the whole client message, with
        its type and request id); deliver what it pushed.
        """
        message = {"t": kind, "id": next(self.request_ids), **fields}
        self.change = None
        try:
            reply = await self.lobby.handle(caller, kind, message)
        finally:
            self.clock.advance(0)
        if isinstance(reply, Reply):
            reply, self.change = reply.fields, reply.change
        # The frame's own keys are the gateway's to set.
        self.assertEqual(set(reply) & {"t", "id"}, set(), kind)
        return reply

    async def changed(self, caller: Caller) -> Caller:
        """The caller with the last call's session change, applied as the gateway does."""
        self.assertIsNotNone(self.change)
        caller = self.change.apply(caller)
        await self.event(caller, "changed")
        return caller

    async def error(self, caller: Caller, kind: str, **fields) -> str:
        """The code of the error C{kind} fails with."""
        try:
            await self.call(caller, kind, **fields)
        except WireError as e:
            self.assertFalse(e.fatal)
            return e.code
        self.fail(f"{kind} {fields} did not fail")

    async def event(self, caller: Caller, event: str) -> None:
        await self.lobby.session_event(caller, event)
        self.clock.advance(0)

    async def create(self, caller: Caller, name: str, **fields) -> dict:
        return (await self.call(caller, "character.create", name=name, **fields))["character"]

    async def choose(self, caller: Caller, character_id: str) -> Caller:
        """Choose a character and apply the session change as the gateway does."""
        await self.call(caller, "character.choose", character=character_id)
        caller = await self.changed(caller)
        return caller

    def pushed(self, caller: Caller) -> list[tuple[str, dict]]:
        """The pushes to C{caller}'s session since the last call, as C{(type, fields)}."""
        pushes = self.pushes.pop(caller.session, [])
        return [(kind, fields) for _, kind, fields in pushes]

    def clear(self) -> None:
        self.pushes.clear()
        del self.room_events[:]


class CharacterTests(LobbyTestCase):
    lobby_options = {"characters_per_account": 3}

    async def test_create_and_list(self):
        alice = await self.player("alice")
        first = await self.create(alice, "Hero")
        self.clock.advance(5)
        second = await self.create(alice, "Mage", data={"class": "mage", "level": 1})
        self.assertEqual(set(first), {"id", "name", "created", "data"})
        self.assertEqual((first["name"], first["data"]), ("Hero", {}))
        self.assertEqual(second["data"], {"class": "mage", "level": 1})
        self.assertEqual(second["created"], 1_800_000_005)
        listed = await self.call(alice, "character.list")
        self.assertEqual(listed, {"characters": [first, second], "chosen": None})
        bob = await self.player("bob")
        self.assertEqual(await self.call(bob, "character.list"), {"characters": [], "chosen": None})

    async def test_create_bad_fields(self):
        alice = await self.player("alice")
        self.assertEqual(await self.error(alice, "character.create"), codes.BAD_REQUEST)
        self.assertEqual(await self.error(alice, "character.create", name=7), codes.BAD_REQUEST)
        self.assertEqual(
            await self.error(alice, "character.create", name="Hero", data=[1]), codes.BAD_REQUEST
        )
        self.assertEqual((await self.call(alice, "character.list"))["characters"], [])

    async def test_unique_without_regard_to_case_across_accounts(self):
        alice = await self.player("alice")
        bob = await self.player("bob")
        await self.create(alice, "Hero")
        self.assertEqual(await self.error(bob, "character.create", name="hero"), codes.NAME_TAKEN)
        self.assertEqual(await self.error(alice, "character.create", name="HERO"), codes.NAME_TAKEN)
        self.assertEqual((await self.call(bob, "character.list"))["characters"], [])

    async def test_limit(self):
        alice = await self.player("alice")
        bob = await self.player("bob")
        made = [await self.create(alice, name) for name in ("One", "Two", "Three")]
        self.assertEqual(
            await self.error(alice, "character.create", name="Four"), codes.CHARACTER_LIMIT
        )
        # The limit is per account, and a deletion makes room.
        await self.create(bob, "Other")
        await self.call(alice, "character.delete", character=made[0]["id"])
        await self.create(alice, "Four")

    async def test_concurrent_creations_respect_the_limit(self):
        alice = await self.player("alice")
        await self.create(alice, "One")
        await self.create(alice, "Two")
        results = await defer.DeferredList(
            [
                defer.ensureDeferred(self.call(alice, "character.create", name=name))
                for name in ("Three", "Four")
            ],
            consumeErrors=True,
        )
        self.assertEqual([ok for ok, _ in results], [True, False])
        self.assertEqual(results[1][1].value.code, codes.CHARACTER_LIMIT)
        self.assertEqual(len((await self.call(alice, "character.list"))["characters"]), 3)

    async def test_choose(self):
        alice = await self.player("alice")
        hero = await self.create(alice, "Hero", data={"level": 3})
        reply = await self.call(alice, "character.choose", character=hero["id"])
        self.assertEqual(reply, {"character": hero})
        self.assertEqual(self.change, SessionChange(character_id=hero["id"], character_name="Hero"))
        alice = await self.changed(alice)
        self.assertEqual((await self.call(alice, "character.list"))["chosen"], hero["id"])

    async def test_choose_unknown_or_others(self):
        alice = await self.player("alice")
        bob = await self.player("bob")
        bobs = await self.create(bob, "Bobby")
        self.assertEqual(await self.error(alice, "character.choose"), codes.BAD_REQUEST)
        self.assertEqual(
            await self.error(alice, "character.choose", character=5), codes.BAD_REQUEST
        )
        self.assertEqual(
            await self.error(alice, "character.choose", character="nope"), codes.NOT_FOUND
        )
        self.assertEqual(
            await self.error(alice, "character.choose", character=bobs["id"]), codes.NOT_FOUND
        )

    async def test_delete(self):
        alice = await self.player("alice")
        hero = await self.create(alice, "Hero")
        mage = await self.create(alice, "Mage")
        reply = await self.call(alice, "character.delete", character=hero["id"])
        self.assertEqual(reply, {"deleted": hero["id"]})
        self.assertEqual((await self.call(alice, "character.list"))["characters"], [mage])
        self.assertEqual(
            await self.error(alice, "character.delete", character=hero["id"]), codes.NOT_FOUND
        )
        # The name is free again.
        bob = await self.player("bob")
        await self.create(bob, "hero")

    async def test_delete_bad_fields(self):
        alice = await self.player("alice")
        self.assertEqual(await self.error(alice, "character.delete"), codes.BAD_REQUEST)
        self.assertEqual(
            await self.error(alice, "character.delete", character=""), codes.BAD_REQUEST
        )

    async def test_delete_of_anothers_character_is_not_found(self):
        alice = await self.player("alice")
        bob = await self.player("bob")
        bobs = await self.create(bob, "Bobby")
        self.assertEqual(
            await self.error(alice, "character.delete", character=bobs["id"]), codes.NOT_FOUND
        )
        self.assertEqual((await self.call(bob, "character.list"))["characters"], [bobs])

    async def test_delete_of_the_chosen_one_unchooses_it(self):
        alice = await self.player("alice")
        hero = await self.create(alice, "Hero")
        mage = await self.create(alice, "Mage")
        alice = await self.choose(alice, hero["id"])
        await self.call(alice, "character.delete", character=mage["id"])
        self.assertIsNone(self.change)
        reply = await self.call(alice, "character.delete", character=hero["id"])
        self.assertEqual(reply, {"deleted": hero["id"]})
        self.assertEqual(self.change, SessionChange(character_id=None, character_name=None))

    async def test_in_play_in_another_session(self):
        alice = await self.player("alice")
        hero = await self.create(alice, "Hero")
        other = await self.session(alice.account_id, "alice", "gw-2")
        alice = await self.choose(alice, hero["id"])
        self.assertEqual(
            await self.error(other, "character.choose", character=hero["id"]), codes.NOT_ALLOWED
        )
        self.assertEqual(
            await self.error(other, "character.delete", character=hero["id"]), codes.NOT_ALLOWED
        )
        await self.event(alice, "ended")
        await self.choose(other, hero["id"])


class NameRuleTests(LobbyTestCase):
    lobby_options = {"character_name_min_length": 4, "character_name_max_length": 6}

    async def test_name_rules(self):
        alice = await self.player("alice")
        for name in ("Abc", "Abcdefg", "1abc", "_abc", "ab cd", "abc!", "Zoë1"):
            self.assertEqual(
                await self.error(alice, "character.create", name=name), codes.BAD_NAME, name
            )
        for name in ("Abcd", "Abcdef", "a_b-9"):
            await self.create(alice, name)
        names = [c["name"] for c in (await self.call(alice, "character.list"))["characters"]]
        self.assertEqual(sorted(names), ["Abcd", "Abcdef", "a_b-9"])


class WorldTests(LobbyTestCase):
    async def test_enter_needs_a_character(self):
        alice = await self.player("alice")
        self.assertEqual(await self.error(alice, "world.enter"), codes.NOT_ALLOWED)

    async def test_enter(self):
        alice = await self.player("alice", realm="east")
        hero = await self.create(alice, "Hero", data={"hp": 10})
        alice = await self.choose(alice, hero["id"])
        reply = await self.call(alice, "world.enter")
        self.assertEqual(reply, {"character": hero, "realm": "east"})
        self.assertEqual(self.change, SessionChange(in_world=True))

    async def test_in_the_world_the_character_stays(self):
        alice = await self.player("alice")
        hero = await self.create(alice, "Hero")
        mage = await self.create(alice, "Mage")
        alice = await self.choose(alice, hero["id"])
        await self.call(alice, "world.enter")
        alice = await self.changed(alice)
        self.assertTrue(alice.in_world)
        self.assertEqual(
            await self.error(alice, "character.delete", character=hero["id"]), codes.NOT_ALLOWED
        )
        # Choosing the same one again changes nothing, so it is allowed.
        await self.call(alice, "character.choose", character=hero["id"])
        self.assertEqual(
            await self.error(alice, "character.choose", character=mage["id"]), codes.NOT_ALLOWED
        )
        self.assertEqual(await self.call(alice, "world.leave"), {})
        alice = await self.changed(alice)
        self.assertFalse(alice.in_world)
        self.assertEqual(await self.error(alice, "world.leave"), codes.NOT_ALLOWED)
        await self.choose(alice, mage["id"])

    async def test_leave_the_zone_before_the_world(self):
        """A character in a zone leaves it (zone.leave) before the world."""
        alice = await self.player("alice")
        hero = await self.create(alice, "Hero")
        alice = await self.choose(alice, hero["id"])
        await self.call(alice, "world.enter")
        alice = await self.changed(alice)
        in_zone = alice.moved(zone="r0c0")
        self.assertEqual(await self.error(in_zone, "world.leave"), codes.NOT_ALLOWED)
        self.assertEqual(await self.call(alice, "world.leave"), {})

    async def test_enter_with_a_deleted_character(self):
        alice = await self.player("alice")
        hero = await self.create(alice, "Hero")
        chosen = await self.choose(alice, hero["id"])
        await self.store.delete_character(hero["id"])
        self.assertEqual(await self.error(chosen, "world.enter"), codes.NOT_FOUND)


class UnknownTypeTests(LobbyTestCase):
    async def test_unknown_and_foreign_types(self):
        alice = await self.player("alice")
        self.assertTrue(self.lobby.owns("room.join"))
        self.assertFalse(self.lobby.owns("chat.send"))
        for kind in ("room.dance", "chat.send", "world"):
            self.assertEqual(await self.error(alice, kind), codes.UNKNOWN_TYPE, kind)


class RoomTestCase(LobbyTestCase):
    lobby_options = {"room_capacity": 3, "room_max_capacity": 5, "rooms_max": 3}

    async def open_room(self, owner: Caller, name="Party", **fields) -> str:
        reply = await self.call(owner, "room.create", name=name, **fields)
        return reply["room"]["id"]

    def left(self, name, owner, room, kicked=False) -> dict:
        """The fields of a C{room.left} push."""
        return {"room": room, "name": name, "owner": owner, "kicked": kicked}

    def events(self) -> list[tuple[str, str, str]]:
        """The room events since the last call, as C{(room, event, session)}."""
        events = [(e["room"], e["event"], e["caller"]["session"]) for e in self.room_events]
        del self.room_events[:]
        return events


class RoomTests(RoomTestCase):
    async def test_create(self):
        alice = await self.player("alice")
        reply = await self.call(alice, "room.create", name="  Party  ")
        room = reply["room"]
        self.assertEqual(
            room,
            {
                "id": room["id"],
                "name": "Party",
                "members": 1,
                "capacity": 3,
                "has_password": False,
                "owner": "alice",
            },
        )
        self.assertEqual(reply["members"], [{"name": "alice", "owner": True}])
        self.assertEqual(await self.call(alice, "room.list"), {"rooms": [room]})
        self.assertEqual(
            self.room_events, [{"room": room["id"], "event": "joined", "caller": alice.to_dict()}]
        )
        self.assertEqual(self.pushed(alice), [])

    async def test_create_options(self):
        alice = await self.player("alice")
        reply = await self.call(alice, "room.create", name="Secret", capacity=5, password="pw")
        self.assertEqual(reply["room"]["capacity"], 5)
        self.assertTrue(reply["room"]["has_password"])
        # An empty password is none.
        bob = await self.player("bob")
        reply = await self.call(bob, "room.create", name="Open", capacity=2, password="")
        self.assertFalse(reply["room"]["has_password"])

    async def test_create_bad_fields(self):
        alice = await self.player("alice")
        for fields in (
            {},
            {"name": ""},
            {"name": "   "},
            {"name": 3},
            {"name": "x" * 33},
            {"name": "bad\nname"},
            {"name": "Party", "capacity": "4"},
            {"name": "Party", "capacity": True},
            {"name": "Party", "capacity": 1},
            {"name": "Party", "capacity": 6},
            {"name": "Party", "password": 1234},
            {"name": "Party", "password": "p" * 65},
        ):
            self.assertEqual(await self.error(alice, "room.create", **fields), codes.BAD_REQUEST)
        self.assertEqual(await self.call(alice, "room.list"), {"rooms": []})
        self.assertEqual(self.room_events, [])

    async def test_rooms_max(self):
        players = [await self.player(name) for name in ("alice", "bob", "carol", "dave")]
        for p in players[:3]:
            await self.open_room(p)
        self.assertEqual(
            await self.error(players[3], "room.create", name="Fourth"), codes.NOT_ALLOWED
        )
        # Alone in her room, alice may open another: hers closes.
        await self.open_room(players[0], "Again")
        names = [r["name"] for r in (await self.call(players[3], "room.list"))["rooms"]]
        self.assertEqual(names, ["Party", "Party", "Again"])

    async def test_create_leaves_the_room_before(self):
        alice = await self.player("alice")
        bob = await self.player("bob")
        first = await self.open_room(alice)
        await self.call(bob, "room.join", room=first)
        self.clear()
        second = await self.open_room(bob, "Mine")
        self.assertEqual(self.pushed(alice), [("room.left", self.left("bob", "alice", first))])
        self.assertEqual(
            self.events(), [(first, "left", bob.session), (second, "joined", bob.session)]
        )

    async def test_rooms_are_per_realm(self):
        alice = await self.player("alice")
        easterner = await self.player("erin", realm="east")
        room = await self.open_room(alice)
        self.assertEqual(await self.call(easterner, "room.list"), {"rooms": []})
        self.assertEqual(await self.error(easterner, "room.join", room=room), codes.NOT_FOUND)

    async def test_join_pushes_to_the_others(self):
        alice = await self.player("alice")
        bob = await self.player("bob", gateway="gw-2")
        carol = await self.player("carol")
        room = await self.open_room(alice)
        self.clear()
        reply = await self.call(bob, "room.join", room=room)
        self.assertEqual(
            reply["members"], [{"name": "alice", "owner": True}, {"name": "bob", "owner": False}]
        )
        self.assertEqual(reply["room"]["members"], 2)
        self.assertEqual(self.pushed(alice), [("room.joined", {"room": room, "name": "bob"})])
        self.assertEqual(self.pushed(bob), [])
        self.assertEqual(
            self.room_events, [{"room": room, "event": "joined", "caller": bob.to_dict()}]
        )
        await self.call(carol, "room.join", room=room)
        self.assertEqual(self.pushed(alice), [("room.joined", {"room": room, "name": "carol"})])
        self.assertEqual(self.pushed(bob), [("room.joined", {"room": room, "name": "carol"})])
        # Bob's went through his gateway.
        await self.call(alice, "room.leave")
        self.assertEqual([g for g, _, _ in self.pushes[bob.session]], ["gw-2"])

    async def test_join_errors(self):
        alice = await self.player("alice")
        bob = await self.player("bob")
        self.assertEqual(await self.error(bob, "room.join"), codes.BAD_REQUEST)
        self.assertEqual(await self.error(bob, "room.join", room=["x"]), codes.BAD_REQUEST)
        self.assertEqual(await self.error(bob, "room.join", room="nope"), codes.NOT_FOUND)
        room = await self.open_room(alice, password="sesame")
        self.clear()
        self.assertEqual(await self.error(bob, "room.join", room=room), codes.WRONG_PASSWORD)
        self.assertEqual(
            await self.error(bob, "room.join", room=room, password="open"), codes.WRONG_PASSWORD
        )
        self.assertEqual(
            await self.error(bob, "room.join", room=room, password=7), codes.BAD_REQUEST
        )
        self.assertEqual((self.pushed(alice), self.room_events), ([], []))
        await self.call(bob, "room.join", room=room, password="sesame")

    async def test_full(self):
        players = [await self.player(name) for name in ("alice", "bob", "carol", "dave")]
        room = await self.open_room(players[0])
        for p in players[1:3]:
            await self.call(p, "room.join", room=room)
        self.clear()
        self.assertEqual(await self.error(players[3], "room.join", room=room), codes.ROOM_FULL)
        self.assertEqual((self.pushed(players[0]), self.room_events), ([], []))
        self.assertEqual(len((await self.call(players[0], "room.members"))["members"]), 3)

    async def test_join_the_same_room_again(self):
        alice = await self.player("alice")
        bob = await self.player("bob")
        room = await self.open_room(alice)
        await self.call(bob, "room.join", room=room)
        self.clear()
        reply = await self.call(bob, "room.join", room=room)
        self.assertEqual(reply["room"]["members"], 2)
        self.assertEqual((self.pushed(alice), self.room_events), ([], []))

    async def test_a_session_is_in_one_room(self):
        alice = await self.player("alice")
        bob = await self.player("bob")
        carol = await self.player("carol")
        first = await self.open_room(alice)
        second = await self.open_room(bob, "Other")
        await self.call(carol, "room.join", room=first)
        self.clear()
        await self.call(carol, "room.join", room=second)
        self.assertEqual(self.pushed(alice), [("room.left", self.left("carol", "alice", first))])
        self.assertEqual(self.pushed(bob), [("room.joined", {"room": second, "name": "carol"})])
        self.assertEqual(
            self.events(), [(first, "left", carol.session), (second, "joined", carol.session)]
        )
        members = (await self.call(alice, "room.members"))["members"]
        self.assertEqual(members, [{"name": "alice", "owner": True}])

    async def test_leave(self):
        alice = await self.player("alice")
        bob = await self.player("bob")
        self.assertEqual(await self.error(bob, "room.leave"), codes.NOT_ALLOWED)
        room = await self.open_room(alice)
        await self.call(bob, "room.join", room=room)
        self.clear()
        self.assertEqual(await self.call(bob, "room.leave"), {"left": room})
        self.assertEqual(self.pushed(alice), [("room.left", self.left("bob", "alice", room))])
        self.assertEqual(self.pushed(bob), [])
        self.assertEqual(
            self.room_events, [{"room": room, "event": "left", "caller": bob.to_dict()}]
        )
        self.assertEqual(await self.error(bob, "room.leave"), codes.NOT_ALLOWED)
        self.assertEqual(await self.error(bob, "room.members"), codes.NOT_ALLOWED)

    async def test_ownership_passes_to_the_longest_present(self):
        alice, bob, carol = [await self.player(n) for n in ("alice", "bob", "carol")]
        room = await self.open_room(alice)
        await self.call(bob, "room.join", room=room)
        await self.call(carol, "room.join", room=room)
        self.clear()
        await self.call(alice, "room.leave")
        self.assertEqual(self.pushed(bob), [("room.left", self.left("alice", "bob", room))])
        self.assertEqual(self.pushed(carol), [("room.left", self.left("alice", "bob", room))])
        self.assertEqual((await self.call(carol, "room.list"))["rooms"][0]["owner"], "bob")
        self.assertEqual(
            (await self.call(carol, "room.members"))["members"],
            [{"name": "bob", "owner": True}, {"name": "carol", "owner": False}],
        )
        self.assertEqual(await self.error(carol, "room.kick", name="bob"), codes.NOT_ALLOWED)
        await self.call(bob, "room.kick", name="carol")

    async def test_ownership_stays_when_another_leaves(self):
        alice, bob, carol = [await self.player(n) for n in ("alice", "bob", "carol")]
        room = await self.open_room(alice)
        await self.call(bob, "room.join", room=room)
        await self.call(carol, "room.join", room=room)
        await self.call(bob, "room.leave")
        await self.call(alice, "room.leave")
        self.assertEqual((await self.call(carol, "room.list"))["rooms"][0]["owner"], "carol")

    async def test_the_last_to_leave_closes_the_room(self):
        alice = await self.player("alice")
        bob = await self.player("bob")
        room = await self.open_room(alice)
        self.clear()
        await self.call(alice, "room.leave")
        self.assertEqual(
            self.room_events,
            [
                {"room": room, "event": "left", "caller": alice.to_dict()},
                {"room": room, "event": "closed", "caller": alice.to_dict()},
            ],
        )
        self.assertEqual(await self.call(bob, "room.list"), {"rooms": []})
        self.assertEqual(await self.error(bob, "room.join", room=room), codes.NOT_FOUND)

    async def test_kick(self):
        alice, bob, carol = [await self.player(n) for n in ("alice", "bob", "carol")]
        room = await self.open_room(alice)
        await self.call(bob, "room.join", room=room)
        await self.call(carol, "room.join", room=room)
        self.clear()
        self.assertEqual(await self.call(alice, "room.kick", name="BOB"), {"kicked": "bob"})
        self.assertEqual(self.pushed(bob), [("room.kicked", {"room": room, "by": "alice"})])
        self.assertEqual(
            self.pushed(carol), [("room.left", self.left("bob", "alice", room, kicked=True))]
        )
        self.assertEqual(self.pushed(alice), [])
        self.assertEqual(self.events(), [(room, "left", bob.session)])
        self.assertEqual(await self.error(bob, "room.members"), codes.NOT_ALLOWED)
        self.assertEqual(
            [m["name"] for m in (await self.call(alice, "room.members"))["members"]],
            ["alice", "carol"],
        )

    async def test_kick_errors(self):
        alice, bob, carol = [await self.player(n) for n in ("alice", "bob", "carol")]
        self.assertEqual(await self.error(alice, "room.kick", name="bob"), codes.NOT_ALLOWED)
        room = await self.open_room(alice)
        await self.call(bob, "room.join", room=room)
        self.clear()
        self.assertEqual(await self.error(alice, "room.kick"), codes.BAD_REQUEST)
        self.assertEqual(await self.error(alice, "room.kick", name="carol"), codes.NOT_FOUND)
        self.assertEqual(await self.error(alice, "room.kick", name="alice"), codes.BAD_REQUEST)
        self.assertEqual(await self.error(bob, "room.kick", name="alice"), codes.NOT_ALLOWED)
        self.assertEqual(await self.error(carol, "room.kick", name="bob"), codes.NOT_ALLOWED)
        self.assertEqual(self.room_events, [])
        self.assertEqual((await self.call(alice, "room.members"))["room"]["members"], 2)

    async def test_kick_by_exact_name_when_names_differ_only_in_case(self):
        alice = await self.player("alice")
        lower = await self.player("robin")
        # A character may bear another account's name in another case.
        other = await self.player("other")
        robin = await self.create(other, "Robin")
        other = await self.choose(other, robin["id"])
        room = await self.open_room(alice)
        await self.call(lower, "room.join", room=room)
        await self.call(other, "room.join", room=room)
        self.clear()
        self.assertEqual(await self.error(alice, "room.kick", name="ROBIN"), codes.BAD_REQUEST)
        await self.call(alice, "room.kick", name="Robin")
        self.assertEqual(self.pushed(other), [("room.kicked", {"room": room, "by": "alice"})])
        self.assertEqual(
            self.pushed(lower), [("room.left", self.left("Robin", "alice", room, True))]
        )
        members = [m["name"] for m in (await self.call(alice, "room.members"))["members"]]
        self.assertEqual(members, ["alice", "robin"])

    async def test_members_show_the_character(self):
        alice = await self.player("alice")
        bob = await self.player("bob")
        hero = await self.create(bob, "Hero")
        room = await self.open_room(alice)
        await self.call(bob, "room.join", room=room)
        self.clear()
        bob = await self.choose(bob, hero["id"])
        self.assertEqual(
            self.pushed(alice), [("room.renamed", {"room": room, "old": "bob", "name": "Hero"})]
        )
        self.assertEqual(self.pushed(bob), [])
        self.assertEqual(
            (await self.call(alice, "room.members"))["members"],
            [{"name": "alice", "owner": True}, {"name": "Hero", "owner": False}],
        )
        self.assertEqual(self.room_events, [])

    async def test_publish_failure_is_logged_not_replied(self):
        alice = await self.player("alice")

        def broken(channel, message):
            return defer.fail(ConnectionError("the bus is down"))

        self.patch(self.bus, "publish", broken)
        reply = await self.call(alice, "room.create", name="Party")
        self.assertEqual(reply["room"]["members"], 1)
        self.assertEqual(len(self.flushLoggedErrors(ConnectionError)), 1)


class SessionEventTests(RoomTestCase):
    async def test_ended_frees_the_place(self):
        alice, bob, carol, dave = [await self.player(n) for n in ("alice", "bob", "carol", "dave")]
        room = await self.open_room(alice)
        await self.call(bob, "room.join", room=room)
        await self.call(carol, "room.join", room=room)
        self.assertEqual(await self.error(dave, "room.join", room=room), codes.ROOM_FULL)
        self.clear()
        await self.event(bob, "ended")
        self.assertEqual(self.pushed(alice), [("room.left", self.left("bob", "alice", room))])
        self.assertEqual(self.pushed(carol), [("room.left", self.left("bob", "alice", room))])
        self.assertEqual(self.events(), [(room, "left", bob.session)])
        await self.call(dave, "room.join", room=room)
        # Bob is forgotten: he gets nothing more.
        self.assertEqual(self.pushed(bob), [])

    async def test_ended_owner_alone_closes(self):
        alice = await self.player("alice")
        room = await self.open_room(alice)
        self.clear()
        await self.event(alice, "ended")
        self.assertEqual(
            self.events(), [(room, "left", alice.session), (room, "closed", alice.session)]
        )
        self.assertEqual(self.lobby.rooms, {})

    async def test_ended_owner_passes_ownership(self):
        alice, bob = [await self.player(n) for n in ("alice", "bob")]
        room = await self.open_room(alice)
        await self.call(bob, "room.join", room=room)
        self.clear()
        await self.event(alice, "ended")
        self.assertEqual(self.pushed(bob), [("room.left", self.left("alice", "bob", room))])

    async def test_ended_unknown_session_is_ignored(self):
        alice = await self.player("alice")
        await self.event(alice, "ended")
        await self.event(alice, "ended")
        self.assertEqual(self.room_events, [])

    async def test_moved_redirects_deliveries(self):
        alice, bob, carol = [await self.player(n) for n in ("alice", "bob", "carol")]
        room = await self.open_room(alice)
        await self.call(bob, "room.join", room=room)
        self.clear()
        await self.event(bob.moved(gateway="gw-2"), "moved")
        await self.call(carol, "room.join", room=room)
        self.assertEqual(
            self.pushes[bob.session], [("gw-2", "room.joined", {"room": room, "name": "carol"})]
        )
        self.assertEqual(
            self.pushes[alice.session], [("gw-1", "room.joined", {"room": room, "name": "carol"})]
        )

    async def test_a_message_from_another_gateway_redirects_too(self):
        # A lobby that missed the "moved" event (it restarted) learns from
        # the caller of the next message.
        alice, bob = [await self.player(n) for n in ("alice", "bob")]
        room = await self.open_room(alice)
        await self.call(bob, "room.join", room=room)
        self.clear()
        await self.call(alice.moved(gateway="gw-2"), "room.list")
        await self.call(bob, "room.leave")
        self.assertEqual([g for g, _, _ in self.pushes[alice.session]], ["gw-2"])

    async def test_stop_closes_the_rooms(self):
        alice, bob, carol = [await self.player(n) for n in ("alice", "bob", "carol")]
        room = await self.open_room(alice)
        await self.call(bob, "room.join", room=room)
        other = await self.open_room(carol, "Other")
        self.clear()
        await self.lobby.stop()
        self.clock.advance(0)
        for caller, room_id in ((alice, room), (bob, room), (carol, other)):
            self.assertEqual(self.pushed(caller), [("room.closed", {"room": room_id})])
        self.assertEqual(
            sorted(e[:2] for e in self.events()), sorted([(room, "closed"), (other, "closed")])
        )
        self.assertEqual(self.lobby.rooms, {})
