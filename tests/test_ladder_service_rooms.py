"""
The room of a ranked match, asked of the lobby until it answers: a lobby
that missed the ask opens the room when asked again, one room however many
times it is asked; a match whose room never opens (or fails) is cancelled
and its players queued again as they were, unless their session ended.
"""

from __future__ import annotations

from twisted.internet import defer

from mmo.game import messages
from mmo.game.messages import (
    MATCH_ROOMS_CHANNEL,
    MATCHES_CHANNEL,
    MatchRoom,
    MatchRoomFailed,
    MatchRoomOpened,
)
from mmo.ladder.rooms import ROOM_TRIES
from mmo.ladder.service import PASS_INTERVAL
from tests.support import GatewayInbox
from tests.test_ladder_service import LADDERS, LadderTestCase, player

ROOM_TIMEOUT = 2.0


class RoomTestCase(LadderTestCase):
    ladders = {"duel": {**LADDERS["duel"], "room_timeout": ROOM_TIMEOUT}}

    async def setUp(self):
        await super().setUp()
        self.asked = GatewayInbox()
        await self.bus.subscribe(MATCHES_CHANNEL, self.asked)
        self.answers = GatewayInbox()
        await self.bus.subscribe(MATCH_ROOMS_CHANNEL, self.answers)

    def entry(self, account: str):
        """The player's entry, queued, or in the match he was matched into again."""
        found = self.ladder.queue.entry_of(account)
        if found is not None:
            return found[2]
        match = self.ladder.queue.match_of(account)
        return next(e for e in match.entries if account in e.players) if match else None

    def match_rooms(self, match: str) -> list:
        return [r for r in self.lobby.rooms.values() if r.match and r.match["match"] == match]


class HandshakeTests(RoomTestCase):
    async def test_the_lobby_answers(self):
        _, match = await self.matched("alice", "bob")
        [room] = self.match_rooms(match)
        self.assertEqual(self.answers.of_type(MatchRoomOpened), [MatchRoomOpened(match, room.id)])
        self.assertEqual(self.ladder.rooms.waiting, {})
        self.turn(ROOM_TIMEOUT * ROOM_TRIES * 2)
        self.assertEqual(len(self.asked.of_type(MatchRoom)), 1)

    async def test_a_missed_ask_is_sent_again(self):
        await self.lobby.matches.stop()
        (alice, bob), match = await self.matched("alice", "bob")
        self.assertEqual(self.match_rooms(match), [])
        await self.lobby.matches.start()
        self.turn(ROOM_TIMEOUT)
        [room] = self.match_rooms(match)
        self.assertEqual(len(self.asked.of_type(MatchRoom)), 2)
        self.assertEqual(self.ladder.rooms.waiting, {})
        for caller in (alice, bob):
            [matched] = self.pushes("ladder.matched", caller.session)
            self.assertEqual(matched["room"]["id"], room.id)
        self.assertIn(match, self.ladder.queue.matches)

    async def test_asked_again_the_lobby_opens_one_room(self):
        ask = MatchRoom(
            "duel", "1v1", "m-1", [[player("alice").to_dict()], [player("bob").to_dict()]]
        )
        # Twice at once (the second while the first is opening), then later.
        both = defer.gatherResults(
            [self.lobby.matches.received("ladder", ask), self.lobby.matches.received("ladder", ask)]
        )
        await self.settle(lambda: both.called)
        await self.lobby.matches.received("ladder", ask)
        self.turn()
        [room] = self.match_rooms("m-1")
        self.assertEqual(
            self.answers.of_type(MatchRoomOpened), [MatchRoomOpened("m-1", room.id)] * 3
        )
        self.assertEqual(len(self.pushes("ladder.matched", "s-alice")), 1)

    async def test_the_lobby_remembers_a_bounded_number_of_rooms(self):
        self.lobby.matches.remembered = 2
        for n in range(4):
            team = [[player(f"a{n}").to_dict()], [player(f"b{n}").to_dict()]]
            await self.lobby.matches.received("ladder", MatchRoom("duel", "1v1", f"m-{n}", team))
        self.assertEqual(list(self.lobby.matches.opened), ["m-2", "m-3"])

    async def test_a_malformed_ask_is_answered_failed(self):
        await self.lobby.matches.received("ladder", MatchRoom("duel", "1v1", "m-1", [[], [7]]))
        self.turn()
        [failed] = self.answers.of_type(MatchRoomFailed)
        self.assertEqual(failed.match, "m-1")
        self.assertIn("malformed", failed.reason)
        self.assertEqual(self.match_rooms("m-1"), [])


class CancelTests(RoomTestCase):
    def answer(self, answer):
        """Answer as a lobby would."""
        return messages.publish(self.bus, MATCH_ROOMS_CHANNEL, answer, "lobby")

    async def no_room(self, *names: str):
        """The players matched by a ladder no lobby answers."""
        await self.lobby.matches.stop()
        return await self.matched(*names)

    async def test_no_answer_cancels_and_queues_again(self):
        joined = self.clock.seconds()
        (alice, bob), match = await self.no_room("alice", "bob")
        self.turn(ROOM_TIMEOUT * (ROOM_TRIES - 1))
        self.assertIn(match, self.ladder.queue.matches)
        self.turn(ROOM_TIMEOUT)
        asked = [m for m in self.asked.of_type(MatchRoom) if m.match == match]
        self.assertEqual(len(asked), ROOM_TRIES)
        self.assertNotIn(match, self.ladder.queue.matches)
        for caller in (alice, bob):
            [ended] = self.pushes("ladder.match.ended", caller.session)
            self.assertEqual(
                (ended["match"], ended["why"], ended["queued"]), (match, "room_failed", True)
            )
            # Queued again since they first joined.
            self.assertEqual(self.entry(caller.account_id).joined, joined)
            self.assertEqual(self.ladder.callers[caller.account_id], caller)
        # Its result is refused; with the lobby back, a new match and its room.
        with self.assertRaises(ValueError):
            await self.ladder.result("duel", match, ranks=[0, 1])
        await self.lobby.matches.start()
        self.turn(ROOM_TIMEOUT)
        [again] = self.ladder.queue.matches
        self.assertNotEqual(again, match)
        self.assertEqual(len(self.match_rooms(again)), 1)
        self.assertEqual(self.match_rooms(match), [])

    async def test_a_failed_room_cancels_at_once(self):
        (alice, _), match = await self.no_room("alice", "bob")
        await messages.publish(
            self.bus, MATCH_ROOMS_CHANNEL, MatchRoomFailed(match, "full"), "lobby"
        )
        self.turn()
        self.assertNotIn(match, self.ladder.queue.matches)
        [ended] = self.pushes("ladder.match.ended", alice.session)
        self.assertEqual(ended["why"], "room_failed")
        self.assertIsNotNone(self.entry(alice.account_id))

    async def test_a_late_failure_changes_nothing(self):
        _, match = await self.matched("alice", "bob")
        await messages.publish(
            self.bus, MATCH_ROOMS_CHANNEL, MatchRoomFailed(match, "late"), "lobby"
        )
        self.turn()
        self.assertIn(match, self.ladder.queue.matches)
        self.assertEqual(self.pushes("ladder.match.ended"), [])

    async def test_who_left_is_not_queued_again(self):
        (alice, bob), match = await self.no_room("alice", "bob")
        await self.ladder.session_event(alice, "ended")
        self.assertIn(match, self.ladder.queue.matches)  # a match goes on without him
        self.turn(ROOM_TIMEOUT * ROOM_TRIES)
        self.assertIsNone(self.ladder.queue.entry_of(alice.account_id))
        self.assertNotIn(alice.account_id, self.ladder.callers)
        [ended] = self.pushes("ladder.match.ended", bob.session)
        self.assertTrue(ended["queued"])
        self.assertEqual(self.ladder.queue.entry_of(bob.account_id)[2].players, ("a-bob",))

    async def test_a_party_stays_a_party(self):
        await self.lobby.matches.stop()
        alice, bob = player("alice"), player("bob")
        await self.send(alice, "room.create", name="team")
        room = self.lobby.room_of(alice).id
        await self.send(bob, "room.join", room=room)
        self.turn()
        await self.send(alice, "ladder.queue.join", ladder="duel", mode="2v2", party=True)
        for name in ("carol", "dave"):
            await self.send(player(name), "ladder.queue.join", ladder="duel", mode="2v2")
        self.turn(PASS_INTERVAL)
        [match] = self.ladder.queue.matches
        self.turn(ROOM_TIMEOUT * ROOM_TRIES)
        self.assertNotIn(match, self.ladder.queue.matches)
        self.assertEqual(sorted(self.entry(bob.account_id).players), ["a-alice", "a-bob"])

    async def test_the_wait_for_a_room_survives_a_new_holder(self):
        _, match = await self.no_room("alice", "bob")
        await self.ladder.stop()
        self.ladder = await self.start_ladder()
        self.assertIn(match, self.ladder.rooms.waiting)
        await self.lobby.matches.start()
        self.turn(ROOM_TIMEOUT)
        self.assertEqual(len(self.match_rooms(match)), 1)
        self.assertEqual(self.ladder.rooms.waiting, {})
