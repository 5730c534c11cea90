"""
The ladder service with the lobby in one process, on a fake clock, the
in-memory bus and a SQLite store: queueing, matches becoming lobby rooms,
results reported by game code (once per match, whatever the retries), a
client's result refused, parties, timeouts, and the queue's state taken
over by a new ladder process.
"""

from __future__ import annotations

from types import SimpleNamespace

from twisted.internet import defer
from twisted.trial import unittest

from mmo.config import ConfigError
from mmo.game.messages import Push, gateway_channel
from mmo.game.service import Caller
from mmo.jobs.job import Run
from mmo.ladder.report import ReportNotAnswered, ReportRefused, report_result
from mmo.ladder.service import PASS_INTERVAL, LadderService
from mmo.lobby.service import LobbyService
from mmo.wire import codes
from mmo.wire.codes import WireError
from tests.support import GatewayInbox, config_of, fake_clock_bus_store, turn, until

LADDERS = {
    "duel": {
        "modes": {"1v1": [1, 1], "2v2": [2, 2]},
        "queue_gap": 50.0,
        "queue_gap_growth": 10.0,
        "queue_gap_max": 400.0,
        "match_timeout": 60.0,
    }
}


def player(name: str, gateway: str = "gw") -> Caller:
    return Caller(session=f"s-{name}", gateway=gateway, account_id=f"a-{name}", name=name)


class LadderTestCase(unittest.TestCase):
    """A lobby and a ladder sharing a clock, a bus and a store."""

    ladders = LADDERS
    timeout = 20

    async def setUp(self):
        self.clock, self.bus, self.store = await fake_clock_bus_store(self)
        self.config = config_of(ladders=self.ladders)
        self.inbox = GatewayInbox()
        await self.bus.subscribe(gateway_channel("gw"), self.inbox)
        self.lobby = LobbyService(self.config, self.store, self.bus, self.clock)
        await self.lobby.start()
        self.addCleanup(self.lobby.stop)
        self.ladder = await self.start_ladder()

    async def start_ladder(self) -> LadderService:
        ladder = LadderService(self.config, self.store, self.bus, self.clock)
        await ladder.start()
        self.addCleanup(ladder.stop)
        return ladder

    def turn(self, seconds: float = 0.0) -> None:
        """Let C{seconds} pass (L{tests.support.turn})."""
        turn(self.clock, seconds)

    def pushes(self, kind: str, session: str | None = None) -> list[dict]:
        """The fields of every push of C{kind} (to C{session}) so far."""
        return [
            m.fields
            for m in self.inbox.of_type(Push)
            if m.kind == kind and (session is None or session in m.sessions)
        ]

    async def send(self, caller: Caller, kind: str, **message):
        service = self.ladder if kind.startswith("ladder.") else self.lobby
        return await service.handle(caller, kind, message)

    async def refused(self, code: str, caller: Caller, kind: str, **message) -> WireError:
        try:
            await self.send(caller, kind, **message)
        except WireError as e:
            self.assertEqual(e.code, code, e.message)
            return e
        self.fail(f"{kind} {message} was not refused")

    async def matched(self, *names: str, mode: str = "1v1") -> tuple[list[Caller], str]:
        """Queue the players, pass: their callers and the match id."""
        callers = [player(name) for name in names]
        for caller in callers:
            await self.send(caller, "ladder.queue.join", ladder="duel", mode=mode)
        self.turn(PASS_INTERVAL)
        match = self.ladder.queue.match_of(callers[0].account_id)
        return callers, match.id

    async def settle(self, done) -> None:
        """
        Deliver what the bus holds, with the real reactor turning in
        between (the store's work), until C{done()}.
        """
        await until(lambda: done() or self.turn(), what="the ladder to settle")

    async def report(self, match: str, ranks=None, scores=None, **kwargs) -> dict:
        d = defer.ensureDeferred(
            report_result(
                self.bus, "duel", match, ranks=ranks, scores=scores, reactor=self.clock, **kwargs
            )
        )
        await self.settle(lambda: d.called)
        return await d


class QueueTests(LadderTestCase):
    async def test_matched_into_a_lobby_room(self):
        alice, bob = player("alice"), player("bob")
        joined = await self.send(alice, "ladder.queue.join", ladder="duel", mode="1v1")
        self.assertTrue(joined["queued"])
        self.assertEqual((joined["ladder"], joined["mode"], joined["gap"]), ("duel", "1v1", 50.0))
        # A new player's displayed rating is the ladder's offset.
        self.assertEqual(joined["rating"], 1000.0)
        await self.send(bob, "ladder.queue.join", ladder="duel", mode="1v1")
        self.turn(PASS_INTERVAL)
        [match] = self.ladder.queue.matches.values()
        for caller in (alice, bob):
            [pushed] = self.pushes("ladder.matched", caller.session)
            self.assertEqual(pushed["match"], match.id)
            self.assertEqual((pushed["ladder"], pushed["mode"]), ("duel", "1v1"))
            self.assertEqual(
                sorted(p["name"] for team in pushed["teams"] for p in team), ["alice", "bob"]
            )
            room = self.lobby.room_of(caller)
            self.assertEqual(pushed["room"]["id"], room.id)
            self.assertEqual(room.match["match"], match.id)
            self.assertEqual(pushed["room"]["match"]["teams"], [list(t) for t in match.teams])
        status = await self.send(alice, "ladder.queue.status")
        self.assertEqual(
            status, {"queued": False, "match": match.id, "ladder": "duel", "mode": "1v1"}
        )
        # Nobody else joins a match's room; its players are in no queue.
        e = await self.refused(codes.NOT_ALLOWED, player("carol"), "room.join", room=room.id)
        self.assertIn("match", e.message)
        await self.refused(codes.NOT_ALLOWED, alice, "ladder.queue.join", ladder="duel", mode="1v1")

    async def test_match_moves_players_out_of_their_rooms(self):
        alice = player("alice")
        await self.send(alice, "room.create", name="tavern")
        old = self.lobby.room_of(alice).id
        await self.matched("alice", "bob")
        self.assertNotEqual(self.lobby.room_of(alice).id, old)
        self.assertNotIn(old, self.lobby.rooms)  # it closed, empty

    async def test_far_ratings_wait_for_the_gap(self):
        # Ratings far apart: matched only once the gap has widened.
        for name in ("alice", "bob"):
            await self.send(player(name), "ladder.queue.join", ladder="duel", mode="1v1")
        self.ladder.queue.leave("a-bob")
        self.ladder.queue.join("duel", "1v1", ["a-bob"], [1200.0], self.clock.seconds())
        self.turn(PASS_INTERVAL)
        self.assertEqual(self.ladder.queue.matches, {})
        status = await self.send(player("alice"), "ladder.queue.status")
        self.assertTrue(status["queued"])
        self.assertEqual(status["gap"], 50.0 + 10.0 * PASS_INTERVAL)
        for _ in range(40):
            self.turn(PASS_INTERVAL)
        self.assertEqual(len(self.ladder.queue.matches), 1)

    async def test_leave(self):
        alice = player("alice")
        await self.send(alice, "ladder.queue.join", ladder="duel", mode="1v1")
        left = await self.send(alice, "ladder.queue.leave")
        self.assertEqual(left, {"left": {"ladder": "duel", "mode": "1v1"}})
        self.assertEqual(await self.send(alice, "ladder.queue.status"), {"queued": False})
        await self.refused(codes.NOT_ALLOWED, alice, "ladder.queue.leave")
        self.assertEqual(self.ladder.callers, {})

    async def test_queued_twice_refused(self):
        alice = player("alice")
        await self.send(alice, "ladder.queue.join", ladder="duel", mode="1v1")
        e = await self.refused(
            codes.NOT_ALLOWED, alice, "ladder.queue.join", ladder="duel", mode="2v2"
        )
        self.assertIn("queued already", e.message)

    async def test_session_end_leaves_the_queue(self):
        alice = player("alice")
        await self.send(alice, "ladder.queue.join", ladder="duel", mode="1v1")
        await self.ladder.session_event(alice, "ended")
        self.assertIsNone(self.ladder.queue.entry_of(alice.account_id))
        self.assertEqual(self.ladder.callers, {})

    async def test_bad_requests(self):
        alice = player("alice")
        await self.refused(codes.NOT_FOUND, alice, "ladder.queue.join", ladder="chess", mode="1v1")
        await self.refused(codes.NOT_FOUND, alice, "ladder.queue.join", ladder="duel", mode="9v9")
        for message in (
            {"mode": "1v1"},
            {"ladder": 7, "mode": "1v1"},
            {"ladder": "duel", "mode": ["1v1"]},
            {"ladder": "duel", "mode": "1v1", "party": "yes"},
            {"ladder": "x" * 1000, "mode": "1v1"},
        ):
            await self.refused(codes.BAD_REQUEST, alice, "ladder.queue.join", **message)
        await self.refused(codes.BAD_REQUEST, alice, "ladder.top", ladder="duel", count=0)
        await self.refused(codes.BAD_REQUEST, alice, "ladder.top", ladder="duel", count=101)
        await self.refused(codes.BAD_REQUEST, alice, "ladder.top", ladder="duel", start=-1)
        await self.refused(codes.BAD_REQUEST, alice, "ladder.top", ladder="duel", season=9)
        await self.refused(codes.BAD_REQUEST, alice, "ladder.around", ladder="duel", count=True)
        await self.refused(codes.BAD_REQUEST, alice, "ladder.rating", ladder="duel", player=3)
        await self.refused(codes.UNKNOWN_TYPE, alice, "ladder.nothing", ladder="duel")

    async def test_a_client_cannot_report_a_result(self):
        alice, bob = player("alice"), player("bob")
        _, match = await self.matched("alice", "bob")
        for kind in ("ladder.report", "ladder.result", "ladder.match.result"):
            e = await self.refused(codes.NOT_ALLOWED, alice, kind, match=match, ranks=[0, 1])
            self.assertIn("never from a client", e.message)
        self.assertIn(match, self.ladder.queue.matches)
        rating = await self.send(bob, "ladder.rating", ladder="duel")
        self.assertEqual(rating["games"], 0)


class PartyTests(LadderTestCase):
    async def friends(self) -> tuple[Caller, Caller, str]:
        """Alice and Bob in a lobby room (which the ladder heard of): them and the room."""
        alice, bob = player("alice"), player("bob")
        created = await self.send(alice, "room.create", name="friends")
        await self.send(bob, "room.join", room=created["room"]["id"])
        self.turn()
        return alice, bob, created["room"]["id"]

    async def test_a_room_queues_as_a_party(self):
        alice, bob, room = await self.friends()
        joined = await self.send(bob, "ladder.queue.join", ladder="duel", mode="2v2", party=True)
        self.assertEqual(joined["players"], 2)
        self.turn()
        [told] = self.pushes("ladder.queue.joined", alice.session)
        self.assertEqual(told["by"], "bob")
        self.assertEqual(self.ladder.queue.entry_of("a-alice")[2].players, ("a-alice", "a-bob"))
        # A party is refused where it fits in no team.
        await self.send(bob, "ladder.queue.leave")
        self.turn()
        [left] = self.pushes("ladder.queue.left", alice.session)
        self.assertEqual(left["why"], "party_left")
        self.assertEqual(self.pushes("ladder.queue.left", bob.session), [])
        await self.refused(
            codes.BAD_REQUEST, bob, "ladder.queue.join", ladder="duel", mode="1v1", party=True
        )

    async def test_a_party_whose_room_changes_leaves(self):
        alice, bob, room = await self.friends()
        await self.send(alice, "ladder.queue.join", ladder="duel", mode="2v2", party=True)
        await self.send(player("carol"), "room.join", room=room)
        self.turn()
        for caller in (alice, bob):
            [left] = self.pushes("ladder.queue.left", caller.session)
            self.assertEqual(left["why"], "party_changed")
        self.assertEqual(self.ladder.queue.queued(), 0)

    async def test_no_room_no_party(self):
        await self.refused(
            codes.NOT_ALLOWED,
            player("alice"),
            "ladder.queue.join",
            ladder="duel",
            mode="2v2",
            party=True,
        )

    async def test_party_matched_together(self):
        alice, bob, room = await self.friends()
        await self.send(alice, "ladder.queue.join", ladder="duel", mode="2v2", party=True)
        for name in ("carol", "dave"):
            await self.send(player(name), "ladder.queue.join", ladder="duel", mode="2v2")
        self.turn(PASS_INTERVAL)
        [match] = self.ladder.queue.matches.values()
        self.assertIn(("a-alice", "a-bob"), match.teams)
        room = self.lobby.room_of(alice)
        self.assertEqual(room.match["match"], match.id)
        self.assertEqual(len(room.members), 4)


class ResultTests(LadderTestCase):
    async def test_result_moves_ratings_once(self):
        (alice, bob), match = await self.matched("alice", "bob")
        teams = self.ladder.queue.matches[match].teams
        winner = 0 if teams[0] == (alice.account_id,) else 1
        ranks = [0, 1] if winner == 0 else [1, 0]
        outcome = await self.report(match, ranks=ranks)
        self.assertFalse(outcome["already_applied"])
        self.assertEqual(outcome["match"], match)
        self.assertNotIn(match, self.ladder.queue.matches)
        [pushed] = self.pushes("ladder.result", alice.session)
        self.assertEqual(pushed["match"], match)
        self.assertEqual(pushed["outcome"], {"team": winner, "place": 1, "tie": False})
        self.assertGreater(pushed["after"], pushed["before"])
        self.assertEqual(pushed["rank"], 1)
        [lost] = self.pushes("ladder.result", bob.session)
        self.assertLess(lost["after"], lost["before"])
        self.assertEqual(lost["rank"], 2)
        rating = await self.send(alice, "ladder.rating", ladder="duel")
        self.assertEqual((rating["games"], rating["rating"]), (1, pushed["after"]))

        # Reported again (a retry, a rule run twice): nothing changes.
        again = await self.report(match, ranks=ranks)
        self.assertTrue(again["already_applied"])
        self.assertEqual(again["changes"], outcome["changes"])
        self.assertEqual(len(self.pushes("ladder.result", alice.session)), 1)
        self.assertEqual(await self.send(alice, "ladder.rating", ladder="duel"), rating)

        # Free again, both queue.
        await self.send(alice, "ladder.queue.join", ladder="duel", mode="1v1")

    async def test_board(self):
        (alice, bob), match = await self.matched("alice", "bob")
        teams = self.ladder.queue.matches[match].teams
        await self.report(match, scores=[3, 1])
        best = teams[0][0]
        top = await self.send(alice, "ladder.top", ladder="duel", start=0, count=10)
        self.assertEqual([e["player"] for e in top["entries"]], [best, teams[1][0]])
        self.assertEqual([e["rank"] for e in top["entries"]], [1, 2])
        rank = await self.send(bob, "ladder.rank", ladder="duel", player=best)
        self.assertEqual((rank["rank"], rank["player"]), (1, best))
        around = await self.send(bob, "ladder.around", ladder="duel", count=1)
        self.assertEqual(len(around["entries"]), 2)
        nobody = await self.send(player("zed"), "ladder.rank", ladder="duel")
        self.assertIsNone(nobody["rank"])
        seasons = await self.send(alice, "ladder.seasons", ladder="duel")
        self.assertEqual(seasons, {"ladder": "duel", "season": 1, "seasons": [1]})

    async def test_a_tie(self):
        (alice, _), match = await self.matched("alice", "bob")
        await self.report(match, ranks=[0, 0])
        [pushed] = self.pushes("ladder.result", alice.session)
        self.assertTrue(pushed["outcome"]["tie"])
        self.assertEqual(pushed["outcome"]["place"], 1)

    async def test_refused_reports(self):
        _, match = await self.matched("alice", "bob")
        for args in (
            {"match": "nope", "ranks": [0, 1]},
            {"match": match, "ranks": [0, 1, 2]},
            {"match": match, "scores": ["a", "b"]},
        ):
            with self.assertRaises(ReportRefused):
                await self.report(**args)
        self.assertIn(match, self.ladder.queue.matches)

    async def test_not_answered_is_retried_then_given_up(self):
        _, match = await self.matched("alice", "bob")
        await self.ladder.stop()
        d = defer.ensureDeferred(
            report_result(
                self.bus, "duel", match, ranks=[0, 1], reactor=self.clock, retry=1, give_up=5
            )
        )
        for _ in range(8):
            self.turn(1)
        with self.assertRaises(ReportNotAnswered):
            await d

    async def test_a_retry_reaches_a_restarted_ladder(self):
        _, match = await self.matched("alice", "bob")
        await self.ladder.stop()
        d = defer.ensureDeferred(
            report_result(self.bus, "duel", match, ranks=[1, 0], reactor=self.clock, retry=1)
        )
        self.turn(1.5)
        self.assertFalse(d.called)
        self.ladder = await self.start_ladder()
        self.turn(1)
        await self.settle(lambda: d.called)
        outcome = await d
        self.assertFalse(outcome["already_applied"])
        self.assertEqual(len(self.pushes("ladder.result")), 2)

    async def test_timeout_frees_the_players(self):
        (alice, _), match = await self.matched("alice", "bob")
        self.turn(60)
        [ended] = self.pushes("ladder.match.ended", alice.session)
        self.assertEqual((ended["match"], ended["why"]), (match, "timeout"))
        self.assertEqual(self.ladder.queue.matches, {})
        await self.send(alice, "ladder.queue.join", ladder="duel", mode="1v1")
        # A late result still counts, once.
        outcome = await self.report(match, ranks=[0, 1])
        self.assertFalse(outcome["already_applied"])


class RestartTests(LadderTestCase):
    async def test_state_survives_a_new_ladder_process(self):
        _, match = await self.matched("alice", "bob")
        carol = player("carol")
        await self.send(carol, "ladder.queue.join", ladder="duel", mode="1v1")
        joined = self.ladder.queue.entry_of(carol.account_id)[2].joined
        await self.ladder.stop()
        self.turn(3)
        self.ladder = await self.start_ladder()
        # Carol is queued since she joined; the match is open.
        self.assertEqual(self.ladder.queue.entry_of(carol.account_id)[2].joined, joined)
        self.assertIn(match, self.ladder.queue.matches)
        self.assertEqual(self.ladder.callers[carol.account_id], carol)
        status = await self.send(carol, "ladder.queue.status")
        self.assertEqual(status["waited"], 3.0)
        await self.refused(
            codes.NOT_ALLOWED, player("alice"), "ladder.queue.join", ladder="duel", mode="1v1"
        )
        await self.send(player("dave"), "ladder.queue.join", ladder="duel", mode="1v1")
        self.turn(PASS_INTERVAL)
        self.assertEqual(len(self.ladder.queue.matches), 2)
        outcome = await self.report(match, ranks=[0, 1])
        self.assertFalse(outcome["already_applied"])

    async def test_each_pass_saves_what_changed(self):
        await self.send(player("carol"), "ladder.queue.join", ladder="duel", mode="1v1")
        self.turn(PASS_INTERVAL)
        # Saved by the pass, without a stop: a crash loses nothing since.
        other = LadderService(self.config, self.store, self.bus, self.clock)
        other.restore(await self.bus.get("ladder:queue"))
        self.assertIsNotNone(other.queue.entry_of("a-carol"))


class NoLadderTests(LadderTestCase):
    ladders = {}

    async def test_no_such_ladder(self):
        e = await self.refused(
            codes.NOT_FOUND, player("alice"), "ladder.queue.join", ladder="duel", mode="1v1"
        )
        self.assertIn("no such ladder", e.message)
        await self.refused(codes.NOT_FOUND, player("alice"), "ladder.top", ladder="duel")
        # Nothing to match: no timer runs.
        self.assertEqual(self.clock.getDelayedCalls(), [])


class RolloverJobTests(LadderTestCase):
    ladders = {"duel": {**LADDERS["duel"], "season_schedule": "0 0 1 * *"}}

    async def test_a_season_rollover_job(self):
        [job] = self.ladder.jobs()
        self.assertEqual(job.name, "ladder.duel.rollover")
        self.assertEqual((job.misfire, job.max_catch_up), ("catch_up", 1))
        runner = SimpleNamespace(store=self.store, bus=self.bus, reactor=self.clock)
        run = Run(job, job.run_id(0.0), 0.0, 1, runner)
        await job.handler(run)
        seasons = await self.send(player("alice"), "ladder.seasons", ladder="duel")
        self.assertEqual(seasons["season"], 2)
        # The same run again (a retry after a lost lease): nothing more.
        await job.handler(run)
        self.assertEqual((await self.ladder.ladders["duel"].season()), 2)

    async def test_a_schedule_the_scheduler_cannot_read(self):
        bad = {"duel": {**LADDERS["duel"], "season_schedule": "99 0 1 * *"}}
        service = LadderService(config_of(ladders=bad), self.store, self.bus, self.clock)
        e = self.assertRaises(ConfigError, service.jobs)
        self.assertIn("ladders.duel.season_schedule", str(e))

    async def test_no_schedule_no_job(self):
        self.assertEqual(
            LadderService(config_of(ladders=LADDERS), self.store, self.bus, self.clock).jobs(), []
        )
