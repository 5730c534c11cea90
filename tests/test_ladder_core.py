"""
Tests of L{mmo.ladder.Ladder} on both stores (SQLite on a temporary file,
Redis on a private redis-server): results applied once, concurrent results
that lose nothing, replay equal to the stored ratings, seasons rolled over
atomically under a stream of results, and the board (rank, top, page and
around-me) against a brute-force sort, ties included.
"""

from __future__ import annotations

import itertools
import os
import sqlite3

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import defer, reactor, task, threads
from twisted.trial import unittest

from mmo import config
from mmo.config.ladder import LadderSection
from mmo.ladder import BadResult, Ladder, LadderError, Player
from mmo.store import StoreError, sqlite_ladder
from mmo.store.common_ladder import LadderRow
from mmo.store.redis import RedisStore
from mmo.store.sqlite import SQLiteStore
from tests.redis import redis_config_text, start_redis
from tests.support import bounded, store_of_release_before, write_config

#: Bounded hypothesis runs: each backend's board checks run in seconds.
BOARD_RUNS = settings(
    max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None
)


PROCESSES = '[processes.zone-1]\nkind = "zone"\n'


def section(name="ranked", **keys) -> LadderSection:
    return LadderSection(keys, ("ladders", name), name=name)


def players(*ids) -> list[Player]:
    return [Player(i, f"name-{i}") for i in ids]


class SQLiteBackend:
    """The SQLite store on a file of the test's, shared by every store made."""

    def make_store(self):
        if not hasattr(self, "path"):
            self.path = os.path.abspath(os.path.join(self.mktemp(), "mmo.sqlite3"))
        return SQLiteStore(self.path, reactor=self.clock)


class RedisBackend:
    """The Redis store on a private redis-server, shared by every store made."""

    def make_store(self):
        if not hasattr(self, "server"):
            self.server = start_redis(self)
        text = f'[store]\nbackend = "redis"\n{redis_config_text(self.server)}{PROCESSES}'
        return RedisStore(config.load(write_config(self, text)), reactor=self.clock)


class LadderFixture:
    """A L{Ladder} on a store of the backend's, a task clock, and the check of a replay."""

    @defer.inlineCallbacks
    def setUp(self):
        self.clock = task.Clock()
        self.clock.advance(1_700_000_000)
        self.store = yield self.open_store()
        self.ladder = Ladder(section(), self.store, self.clock)

    @defer.inlineCallbacks
    def open_store(self):
        store = self.make_store()
        yield store.start()
        self.addCleanup(store.stop)
        return store

    @defer.inlineCallbacks
    def assertReplayExact(self, ladder, season):
        """Replaying C{season} gives every stored rating of it exactly (and only those)."""
        replayed = yield ladder.replay(season)
        size = yield self.store.ladder_size(ladder.name, season)
        stored = {}
        for start in range(0, size, 1000):
            for _, row in (yield self.store.ladder_top(ladder.name, season, start, 1000)):
                stored[row.player] = (row.mu, row.sigma)
        self.assertEqual(replayed, stored)


class LadderTestsMixin(LadderFixture):
    """What a L{Ladder} does, whatever its store."""

    # -- results ------------------------------------------------------------------

    @defer.inlineCallbacks
    def test_report(self):
        """A win raises the winner's rating and lowers the loser's; both are on the board."""
        self.assertEqual((yield self.ladder.season()), 1)
        outcome = yield self.ladder.report("m1", [players("a"), players("b")])
        self.assertFalse(outcome.already_applied)
        self.assertEqual(outcome.season, 1)
        winner, loser = outcome.changes
        self.assertEqual((winner.player_id, loser.player_id), ("a", "b"))
        self.assertGreater(winner.mu, winner.mu_before)
        self.assertLess(loser.mu, loser.mu_before)
        self.assertGreater(winner.rating, loser.rating)
        a = yield self.ladder.rating("a")
        self.assertEqual((a.mu, a.sigma, a.games, a.rank), (winner.mu, winner.sigma, 1, 1))
        self.assertEqual(a.rating, self.ladder.rater.display(a.mu, a.sigma))
        self.assertTrue(a.provisional)
        b = yield self.ladder.rank("b")
        self.assertEqual((b.rank, b.player_id, b.name), (2, "b", "name-b"))
        # A player with no result has a new player's rating and no rank.
        c = yield self.ladder.rating("c")
        self.assertEqual(((c.mu, c.sigma), c.games, c.rank), (self.ladder.rater.initial(), 0, None))
        self.assertIsNone((yield self.ladder.rank("c")))

    @defer.inlineCallbacks
    def test_ranks_and_scores(self):
        """Ranks (lower is better) and scores (higher is better) place the teams."""
        by_rank = yield self.ladder.report("m1", [players("a"), players("b")], ranks=[2, 1])
        self.assertLess(by_rank.changes[0].mu, by_rank.changes[0].mu_before)
        by_score = yield self.ladder.report("m2", [players("c"), players("d")], scores=[1, 5])
        self.assertLess(by_score.changes[0].mu, by_score.changes[0].mu_before)
        teams = yield self.ladder.report(
            "m3", [players("a", "c"), players("b", "d"), players("e")], ranks=[1, 2, 2]
        )
        self.assertEqual([c.player_id for c in teams.changes], ["a", "c", "b", "d", "e"])
        yield self.assertReplayExact(self.ladder, 1)

    @defer.inlineCallbacks
    def test_bad_results(self):
        """Malformed results are refused before anything is read or written."""
        bad = [
            ("", [players("a"), players("b")], None, None),
            ("m" * 129, [players("a"), players("b")], None, None),
            ("m", [players("a")], None, None),
            ("m", [players("a"), []], None, None),
            ("m", [players("a"), players("a")], None, None),
            ("m", [players("a"), ["b"]], None, None),
            ("m", [players("a"), [Player("", "x")]], None, None),
            ("m", [players("a"), players("b")], [1], None),
            ("m", [players("a"), players("b")], [1, "2"], None),
            ("m", [players("a"), players("b")], None, [1, float("nan")]),
            ("m", [players("a"), players("b")], [1, 2], [1, 2]),
        ]
        for match_id, teams, ranks, scores in bad:
            with self.assertRaises(BadResult, msg=repr((match_id, teams, ranks, scores))):
                yield self.ladder.report(match_id, teams, ranks, scores)
        self.assertEqual((yield self.store.ladder_matches("ranked", 1)), [])

    @defer.inlineCallbacks
    def test_once(self):
        """A repeat of a match id changes nothing and gives the first outcome."""
        first = yield self.ladder.report("m1", [players("a"), players("b")])
        again = yield self.ladder.report("m1", [players("a"), players("b")])
        self.assertTrue(again.already_applied)
        self.assertEqual(again.changes, first.changes)
        # Even with other teams: the id is what counts.
        other = yield self.ladder.report("m1", [players("b"), players("c")])
        self.assertEqual(other.changes, first.changes)
        a = yield self.ladder.rating("a")
        self.assertEqual((a.games, a.mu), (1, first.changes[0].mu))
        self.assertEqual(len((yield self.store.ladder_matches("ranked", 1))), 1)

    @defer.inlineCallbacks
    def test_once_concurrently(self):
        """The same match reported at once by two processes is applied once."""
        other = Ladder(section(), (yield self.open_store()), self.clock)
        teams = [players("a"), players("b")]
        outcomes = yield bounded(
            defer.gatherResults(
                [ladder.report("m1", teams) for ladder in (self.ladder, other, self.ladder, other)]
            )
        )
        self.assertEqual(sum(not o.already_applied for o in outcomes), 1)
        self.assertEqual({o.changes for o in outcomes}, {outcomes[0].changes})
        self.assertEqual((yield self.ladder.rating("a")).games, 1)
        self.assertEqual(len((yield self.store.ladder_matches("ranked", 1))), 1)

    @defer.inlineCallbacks
    def test_concurrent_results_lose_nothing(self):
        """
        Results on the same few players from two ladders on two connections,
        interleaved: every one is applied, each on the ratings the others
        left, and replaying them gives the stored ratings exactly.
        """
        other = Ladder(section(), (yield self.open_store()), self.clock)
        ids = ["p0", "p1", "p2", "p3"]
        pairs = list(itertools.permutations(ids, 2))
        reports = [
            (self.ladder if n % 2 else other).report(f"m{n}", [players(a), players(b)])
            for n, (a, b) in enumerate(pairs * 3)
        ]
        outcomes = yield bounded(defer.gatherResults(reports))
        self.assertFalse(any(o.already_applied for o in outcomes))
        for player in ids:
            rating = yield self.ladder.rating(player)
            self.assertEqual(rating.games, 3 * 2 * (len(ids) - 1))
        self.assertEqual(len((yield self.store.ladder_matches("ranked", 1))), len(reports))
        yield self.assertReplayExact(self.ladder, 1)

    @defer.inlineCallbacks
    def test_rows_it_wrote(self):
        """
        A ladder rates players it rated last from the rows it wrote, without
        reading them; once another ladder (another process) rated one of them
        since, the store refuses the stale row and the ladder rates from the
        stored one: nothing is lost.
        """
        reads = []
        read = self.store.ladder_ratings

        def counted(*args):
            reads.append(args)
            return read(*args)

        self.patch(self.store, "ladder_ratings", counted)
        other = Ladder(section(), (yield self.open_store()), self.clock)
        yield self.ladder.report("m1", [players("a"), players("b")])
        self.assertEqual(len(reads), 1)
        yield self.ladder.report("m2", [players("b"), players("a")])
        self.assertEqual(len(reads), 1)
        yield other.report("m3", [players("a"), players("b")])
        yield self.ladder.report("m4", [players("b"), players("a")])
        self.assertEqual(len(reads), 2)
        for player in ("a", "b"):
            self.assertEqual((yield self.ladder.rating(player)).games, 4)
        yield self.assertReplayExact(self.ladder, 1)

    # -- seasons --------------------------------------------------------------------

    @defer.inlineCallbacks
    def test_rollover(self):
        """
        A rollover begins the next season once; the ended board stays
        readable; ratings carry into the new season softened, when first
        needed, and replay of each season is exact.
        """
        yield self.ladder.report("m1", [players("a"), players("b")])
        yield self.ladder.report("m2", [players("a"), players("c")])
        ended = yield self.ladder.top(0, 10)
        a1 = yield self.ladder.rating("a")
        self.assertEqual((yield self.ladder.rollover()), 2)
        self.assertEqual((yield self.ladder.season()), 2)
        # A repeat of the same rollover (from season 1) changes nothing.
        self.assertEqual((yield self.ladder.rollover(from_season=1)), 2)
        self.assertEqual((yield self.ladder.season()), 2)
        self.assertEqual((yield self.ladder.top(0, 10, season=1)), ended)
        self.assertEqual((yield self.ladder.top(0, 10)), [])
        a2 = yield self.ladder.rating("a")
        mu0, sigma0 = self.ladder.rater.initial()
        self.assertEqual((a2.season, a2.games, a2.rank), (2, 0, None))
        self.assertEqual(a2.mu, a1.mu + (mu0 - a1.mu) * 0.5)
        self.assertEqual(a2.sigma, a1.sigma + (sigma0 - a1.sigma) * 0.5)
        outcome = yield self.ladder.report("m3", [players("b"), players("a")])
        self.assertEqual(outcome.season, 2)
        self.assertEqual(outcome.changes[1].mu_before, a2.mu)
        self.assertEqual((yield self.ladder.rank("a", season=1)).rank, 1)
        yield self.assertReplayExact(self.ladder, 1)
        yield self.assertReplayExact(self.ladder, 2)
        with self.assertRaises(LadderError):
            yield self.ladder.top(0, 10, season=3)

    @defer.inlineCallbacks
    def test_rollover_run_id(self):
        """A rollover run id is done once, however often it is repeated."""
        self.assertEqual((yield self.ladder.rollover(run_id="r1")), 2)
        self.assertEqual((yield self.ladder.rollover(run_id="r1")), 2)
        self.assertEqual((yield self.ladder.rollover(run_id="r2")), 3)
        self.assertEqual((yield self.ladder.rollover(from_season=1, run_id="r1")), 2)
        self.assertEqual((yield self.ladder.season()), 3)

    @defer.inlineCallbacks
    def test_reset_rules(self):
        """The rule recorded at each rollover carries ratings, whatever the config says later."""
        reset = Ladder(section(season_reset="reset"), self.store, self.clock)
        keep = Ladder(section(season_reset="keep"), self.store, self.clock)
        outcome = yield keep.report("m1", [players("a"), players("b")])
        yield keep.rollover()
        yield reset.rollover()
        # Season 2 kept, season 3 reset: a's season-1 rating, carried twice.
        self.assertEqual(
            ((yield reset.rating("a")).mu, (yield keep.rating("a")).mu),
            (reset.rater.initial()[0],) * 2,
        )
        row = LadderRow("a", "", 1, 30.0, 5.0, 1, 1, 0.0)
        at_2 = yield keep._starts({"a": row}, ["a"], 2)
        self.assertEqual(at_2, {"a": ((30.0, 5.0), 0, 0)})
        self.assertNotEqual(outcome.changes[0].mu, reset.rater.initial()[0])

    @defer.inlineCallbacks
    def test_rollover_under_results(self):
        """
        Results streaming in from two processes while the season rolls over:
        each lands in exactly one season's log, none lost or doubled, and
        each season replays exactly.
        """
        other = Ladder(section(), (yield self.open_store()), self.clock)
        count = 60
        ids = [f"p{i}" for i in range(8)]
        # A stream: a few results in flight at any time; the rollover is
        # asked for when a third of them are done, the rest still coming.
        stream = defer.DeferredSemaphore(6)
        rolled = []

        def done(outcome, n):
            if n == count // 3:
                rolled.append(other.rollover(from_season=1))
            return outcome

        reports = []
        for n in range(count):
            a, b = ids[n % 8], ids[(n * 3 + 1) % 8]
            if a == b:
                b = ids[(n + 1) % 8]
            ladder = self.ladder if n % 2 else other
            report = stream.run(ladder.report, f"m{n}", [players(a), players(b)])
            reports.append(report.addCallback(done, n))
        outcomes = yield bounded(defer.gatherResults(reports))
        self.assertEqual((yield rolled[0]), 2)
        logs = {}
        for season in (1, 2):
            blobs = yield self.store.ladder_matches("ranked", season)
            logs[season] = [msgpack.unpackb(b)["match"] for b in blobs]
        applied = logs[1] + logs[2]
        self.assertEqual(sorted(applied), sorted(f"m{n}" for n in range(count)))
        for outcome in outcomes:
            self.assertIn(outcome.match_id, logs[outcome.season])
        self.assertTrue(logs[1] and logs[2], logs)
        yield self.assertReplayExact(self.ladder, 1)
        yield self.assertReplayExact(self.ladder, 2)

    # -- the board ------------------------------------------------------------------

    @defer.inlineCallbacks
    def test_board_arguments(self):
        """Board reads with bad arguments are refused."""
        for call in (
            lambda: self.ladder.top(-1, 10),
            lambda: self.ladder.top(0, 0),
            lambda: self.ladder.top(0, 101),
            lambda: self.ladder.top(0, 10, season=0),
            lambda: self.ladder.around("a", -1),
            lambda: self.ladder.around("a", True),
        ):
            with self.assertRaises(LadderError):
                yield call()
        with self.assertRaises(StoreError):
            yield self.ladder.rank("")

    def test_board_against_brute_force(self):
        """
        Rank, top, pages and around-me equal a brute-force sort of the
        board (score descending, then player id descending), ties included.
        """
        names = itertools.count()
        ids = st.text(alphabet="abcAB0é", min_size=1, max_size=4)
        scores = st.sampled_from([900.0, 1000.0, 1000.0000000000001, 1234.5, -3.0])
        boards = st.dictionaries(ids, scores, max_size=30)

        @BOARD_RUNS
        @given(boards, st.integers(0, 6), st.integers(1, 7))
        def check(board, around, page):
            ladder = Ladder(section(f"b{next(names)}"), self.store, self.clock)
            threads.blockingCallFromThread(reactor, self.check_board, ladder, board, around, page)

        return threads.deferToThread(check)

    @defer.inlineCallbacks
    def check_board(self, ladder, board, around, page):
        rows = [
            LadderRow(player, f"n{player}", 1, 25.0, 8.0 - i % 5, 1, 1, score)
            for i, (player, score) in enumerate(board.items())
        ]
        yield self.store.ladder_fill(ladder.name, 1, rows)
        expected = sorted(rows, key=lambda r: (r.score, r.player), reverse=True)
        ranked = [(i + 1, r) for i, r in enumerate(expected)]
        entries = [
            (rank, r.player, r.name, r.score, ladder.rater.provisional(r.sigma))
            for rank, r in ranked
        ]

        def plain(found):
            return [(e.rank, e.player_id, e.name, e.rating, e.provisional) for e in found]

        for start in range(0, len(rows) + 1, page):
            self.assertEqual(plain((yield ladder.top(start, page))), entries[start : start + page])
        for index, row in enumerate(expected):
            self.assertEqual(plain([(yield ladder.rank(row.player))]), [entries[index]])
            window = entries[max(0, index - around) : index + around + 1]
            self.assertEqual(plain((yield ladder.around(row.player, around))), window)
        self.assertEqual((yield ladder.around("nobody", around)), [])
        self.assertEqual((yield self.store.ladder_size(ladder.name, 1)), len(rows))


class SQLiteLadderTests(SQLiteBackend, LadderTestsMixin, unittest.TestCase):
    @defer.inlineCallbacks
    def test_previous_release_file(self):
        """A file of the release before the ladder gains its tables at start."""
        store = yield defer.ensureDeferred(
            store_of_release_before(self, sqlite_ladder.migration, self.clock)
        )
        ladder = Ladder(section(), store, self.clock)
        yield ladder.report("m1", [players("a"), players("b")])
        self.assertEqual((yield ladder.rank("a")).rank, 1)

    def test_rank_uses_the_index(self):
        """The rank's count and a page's offset read the board index only, never the table."""
        conn = sqlite3.connect(self.path)
        self.addCleanup(conn.close)
        plans = [
            conn.execute(
                "EXPLAIN QUERY PLAN SELECT COUNT(*) FROM ladder_ratings WHERE ladder = ? "
                "AND season = ? AND (score, player) > (?, ?)",
                ("r", 1, 1.0, "p"),
            ).fetchall(),
            conn.execute(
                "EXPLAIN QUERY PLAN SELECT player FROM ladder_ratings WHERE ladder = ? "
                "AND season = ? ORDER BY score DESC, player DESC LIMIT 10 OFFSET 5",
                ("r", 1),
            ).fetchall(),
        ]
        for plan in plans:
            text = " ".join(str(step) for step in plan)
            self.assertIn("COVERING INDEX ladder_board", text)
            self.assertNotIn("TEMP B-TREE", text)


class RedisLadderTests(RedisBackend, LadderTestsMixin, unittest.TestCase):
    pass
