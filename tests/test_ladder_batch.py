"""
Tests of results applied in batches, on both stores: the store's
C{ladder_apply_many} (each result in order, as if applied alone after those
before it) and L{mmo.ladder.Ladder}'s batches of the results reported while
one is applied (results on a player rated in order, duplicates, a batch
straddling a rollover, a conflict that blocks no other result).
"""

from __future__ import annotations

import msgpack
from twisted.internet import defer
from twisted.trial import unittest

from mmo.ladder import Ladder, LadderBusy
from mmo.ladder.batch import MAX_ATTEMPTS
from mmo.store import StoreError
from mmo.store.common_ladder import (
    MAX_APPLY_BATCH,
    Applied,
    ApplyItem,
    ApplyResult,
    LadderRow,
    SeasonRecord,
)
from tests.support import bounded
from tests.test_ladder_core import (
    LadderFixture,
    RedisBackend,
    SQLiteBackend,
    players,
    section,
)


def row(player: str, version: int, mu: float = 25.0, season: int = 1) -> LadderRow:
    return LadderRow(player, f"name-{player}", season, mu, 8.0, version, version, mu * 10)


def item(match_id: str, *rows: LadderRow) -> ApplyItem:
    return ApplyItem(match_id, rows, match_id.encode() + b"-record", match_id.encode() + b"-out")


class StoreBatchTestsMixin(LadderFixture):
    """C{ladder_apply_many}, whatever the store."""

    def apply(self, *items, season=1):
        return self.store.ladder_apply_many("ranked", season, list(items))

    @defer.inlineCallbacks
    def stored(self, player, season=1):
        return (yield self.store.ladder_ratings("ranked", season, [player])).get(player)

    @defer.inlineCallbacks
    def test_in_order(self):
        """Results on one player apply in order, each checked against what the one before wrote."""
        results = yield self.apply(
            item("m1", row("a", 1), row("b", 1)),
            item("m2", row("a", 2, mu=30.0), row("c", 1)),
            item("m3", row("c", 2), row("b", 2, mu=20.0)),
        )
        self.assertEqual(results, [ApplyResult(Applied.APPLIED)] * 3)
        self.assertEqual((yield self.stored("a")), row("a", 2, mu=30.0))
        self.assertEqual((yield self.stored("b")), row("b", 2, mu=20.0))
        log = yield self.store.ladder_matches("ranked", 1)
        self.assertEqual(log, [b"m1-record", b"m2-record", b"m3-record"])
        self.assertEqual(
            [place[1] for place in (yield self.store.ladder_top("ranked", 1, 0, 5))],
            [row("a", 2, mu=30.0), row("c", 2), row("b", 2, mu=20.0)],
        )

    @defer.inlineCallbacks
    def test_duplicate_in_batch(self):
        """A match id twice in one batch: the second is a duplicate with the first's outcome."""
        results = yield self.apply(
            item("m1", row("a", 1), row("b", 1)), item("m1", row("a", 2), row("b", 2))
        )
        self.assertEqual(
            results,
            [ApplyResult(Applied.APPLIED), ApplyResult(Applied.DUPLICATE, outcome=b"m1-out")],
        )
        self.assertEqual((yield self.stored("a")).version, 1)
        self.assertEqual((yield self.store.ladder_matches("ranked", 1)), [b"m1-record"])

    @defer.inlineCallbacks
    def test_conflict_blocks_no_other(self):
        """
        A result whose row changed writes nothing; the others in its batch
        apply, but those after it on one of its players, which expect the
        rows it would have written: their versions do not tell (another
        result reached them), the refusal does.
        """
        yield self.apply(item("m0", row("a", 1)))
        results = yield self.apply(
            item("m1", row("c", 1), row("a", 1)),
            item("m2", row("d", 1)),
            item("m3", row("a", 2), row("e", 1)),
            item("m4", row("d", 2)),
        )
        self.assertEqual(
            [r.status for r in results],
            [Applied.CONFLICT, Applied.APPLIED, Applied.CONFLICT, Applied.APPLIED],
        )
        self.assertIsNone((yield self.stored("c")))
        self.assertIsNone((yield self.stored("e")))
        self.assertEqual((yield self.stored("a")), row("a", 1))
        self.assertEqual((yield self.stored("d")), row("d", 2))
        self.assertEqual(
            (yield self.store.ladder_matches("ranked", 1)),
            [b"m0-record", b"m2-record", b"m4-record"],
        )

    @defer.inlineCallbacks
    def test_other_season(self):
        """After a rollover a batch of the old season writes nothing; a duplicate still answers."""
        yield self.apply(item("m1", row("a", 1)))
        record = SeasonRecord(2, 1.0, "soften", 0.5, "")
        self.assertEqual((yield self.store.ladder_rollover("ranked", 1, record)), 2)
        results = yield self.apply(item("m2", row("b", 1)), item("m1", row("a", 2)))
        self.assertEqual(
            results,
            [
                ApplyResult(Applied.SEASON, season=2),
                ApplyResult(Applied.DUPLICATE, outcome=b"m1-out"),
            ],
        )
        self.assertIsNone((yield self.stored("b")))
        self.assertEqual((yield self.store.ladder_matches("ranked", 1)), [b"m1-record"])
        self.assertEqual((yield self.store.ladder_matches("ranked", 2)), [])

    @defer.inlineCallbacks
    def test_bad_batches(self):
        """Malformed batches are refused, and nothing is written."""
        for items in (
            [],
            [item(f"m{n}", row(f"p{n}", 1)) for n in range(MAX_APPLY_BATCH + 1)],
            ["m1"],
            [item("m1")],
            [item("m1", row("a", 1), row("a", 1))],
            [item("m1", row("a", 0))],
            [item("m1", row("a", 1, season=2))],
            [item("m1", row("a", 1)), item("", row("b", 1))],
            [ApplyItem("m1", (row("a", 1),), "record", b"out")],
        ):
            with self.assertRaises(StoreError, msg=repr(items)[:200]):
                yield self.store.ladder_apply_many("ranked", 1, items)
        self.assertEqual((yield self.store.ladder_matches("ranked", 1)), [])


class LadderBatchTestsMixin(LadderFixture):
    """L{Ladder}'s batches, whatever the store."""

    def report_all(self, ladder, matches: str):
        """
        Report 1v1 results at once, C{matches} as C{"match winner loser,
        ..."}.  Deferred[their outcomes].
        """
        reports = []
        for match in matches.split(","):
            match_id, winner, loser = match.split()
            reports.append(ladder.report(match_id, [players(winner), players(loser)]))
        return bounded(defer.gatherResults(reports))

    def count_batches(self, store):
        """The results of each C{ladder_apply_many} of C{store}, as their match ids."""
        batches = []
        apply_many = store.ladder_apply_many

        def counted(ladder, season, items):
            batches.append([i.match_id for i in items])
            return apply_many(ladder, season, items)

        self.patch(store, "ladder_apply_many", counted)
        return batches

    @defer.inlineCallbacks
    def test_reported_while_applying(self):
        """
        Results reported while a batch is applied go together as the next
        batch, those on one player rated in order: the outcomes chain and
        replay equals the stored ratings.
        """
        batches = self.count_batches(self.store)
        m1, m2, m3, m4 = yield self.report_all(self.ladder, "m1 a b, m2 a c, m3 c a, m4 d e")
        self.assertEqual(batches, [["m1"], ["m2", "m3", "m4"]])
        self.assertEqual(m2.changes[0].mu_before, m1.changes[0].mu)
        self.assertEqual(m3.changes[1].mu_before, m2.changes[0].mu)
        self.assertEqual(m3.changes[0].mu_before, m2.changes[1].mu)
        self.assertEqual((yield self.ladder.rating("a")).games, 3)
        yield self.assertReplayExact(self.ladder, 1)

    @defer.inlineCallbacks
    def test_duplicate_in_batch(self):
        """A match id reported twice in one batch is applied once; the repeat gets its outcome."""
        batches = self.count_batches(self.store)
        _, first, again, m2 = yield self.report_all(self.ladder, "m0 x y, m1 a b, m1 b c, m2 b a")
        self.assertEqual(batches, [["m0"], ["m1", "m2"]])
        self.assertFalse(first.already_applied)
        self.assertTrue(again.already_applied)
        self.assertEqual(again.changes, first.changes)
        self.assertEqual(m2.changes[0].mu_before, first.changes[1].mu)
        self.assertEqual(len((yield self.store.ladder_matches("ranked", 1))), 3)
        yield self.assertReplayExact(self.ladder, 1)

    @defer.inlineCallbacks
    def test_conflict_blocks_no_other(self):
        """
        A result of a batch whose player another process rated since is
        retried alone; the others of its batch are applied at the first try.
        """
        other = Ladder(section(), (yield self.open_store()), self.clock)
        yield self.ladder.report("m1", [players("a"), players("b")])
        yield other.report("m2", [players("a"), players("c")])
        batches = self.count_batches(self.store)
        # m6 is rated on m4's rows: refused with it, though the version of
        # "a" it expects is the one the other ladder wrote.
        yield self.report_all(self.ladder, "m3 x y, m4 b a, m5 d e, m6 a c")
        self.assertEqual(batches, [["m3"], ["m4", "m5", "m6"], ["m4", "m6"]])
        log = [msgpack.unpackb(b)["match"] for b in (yield self.store.ladder_matches("ranked", 1))]
        self.assertEqual(log, ["m1", "m2", "m3", "m5", "m4", "m6"])
        self.assertEqual((yield self.ladder.rating("a")).games, 4)
        yield self.assertReplayExact(self.ladder, 1)

    @defer.inlineCallbacks
    def test_batch_straddling_rollover(self):
        """
        A batch of a season another process ended: its new results land in
        the new season, a repeat of one applied in the old season gets that
        outcome; each result is in exactly one season's log.
        """
        other = Ladder(section(), (yield self.open_store()), self.clock)
        old = yield self.ladder.report("m1", [players("a"), players("b")])
        self.assertEqual((yield other.rollover(from_season=1)), 2)
        m2, m3, again, m4 = yield self.report_all(self.ladder, "m2 a c, m3 b a, m1 a b, m4 c d")
        self.assertEqual((m2.season, m3.season, m4.season), (2, 2, 2))
        self.assertEqual(
            (again.season, again.changes, again.already_applied), (1, old.changes, True)
        )
        logs = {}
        for season in (1, 2):
            blobs = yield self.store.ladder_matches("ranked", season)
            logs[season] = [msgpack.unpackb(b)["match"] for b in blobs]
        self.assertEqual(logs, {1: ["m1"], 2: ["m2", "m3", "m4"]})
        self.assertEqual(m3.changes[1].mu_before, m2.changes[0].mu)
        yield self.assertReplayExact(self.ladder, 1)
        yield self.assertReplayExact(self.ladder, 2)

    @defer.inlineCallbacks
    def test_cancelled(self):
        """A report its caller cancelled is still applied; the others of its batch answered."""
        reports = [
            self.ladder.report("m1", [players("a"), players("b")]),
            self.ladder.report("m2", [players("a"), players("c")]),
            self.ladder.report("m3", [players("c"), players("d")]),
        ]
        reports[1].cancel()
        yield self.assertFailure(reports[1], defer.CancelledError)
        _, m3 = yield bounded(defer.gatherResults([reports[0], reports[2]]))
        self.assertEqual((yield self.ladder.rating("c")).games, 2)
        # m3 rated c from where the cancelled m2 left it.
        self.assertNotEqual(m3.changes[0].mu_before, self.ladder.rater.initial()[0])
        yield self.assertReplayExact(self.ladder, 1)

    @defer.inlineCallbacks
    def test_busy(self):
        """
        A result refused L{MAX_ATTEMPTS} times fails with L{LadderBusy}; the
        others of its batches are applied.
        """
        apply_many = self.store.ladder_apply_many
        tries = []

        def conflicting(ladder, season, items):
            tries.append([i.match_id for i in items])
            if any(i.match_id == "m1" for i in items):
                # Another process rates "a" before each try of m1.
                bump = self.store.ladder_fill(ladder, season, [row("a", 100 + len(tries))])
                return bump.addCallback(lambda _: apply_many(ladder, season, items))
            return apply_many(ladder, season, items)

        self.patch(self.store, "ladder_apply_many", conflicting)
        reports = [
            self.ladder.report("m0", [players("x"), players("y")]),
            self.ladder.report("m1", [players("a"), players("b")]),
            self.ladder.report("m2", [players("c"), players("d")]),
        ]
        busy = self.assertFailure(reports[1], LadderBusy)
        yield bounded(defer.gatherResults([reports[0], busy, reports[2]]))
        self.assertEqual(tries, [["m0"], ["m1", "m2"]] + [["m1"]] * (MAX_ATTEMPTS - 1))
        self.assertEqual((yield self.ladder.rating("c")).games, 1)

    @defer.inlineCallbacks
    def test_store_error(self):
        """A store's error fails each result of its batch; the ladder goes on with the next."""
        apply_many = self.store.ladder_apply_many
        failing = [True]

        def fails_once(ladder, season, items):
            if failing.pop() if failing else False:
                return defer.fail(StoreError("the store is gone"))
            return apply_many(ladder, season, items)

        self.patch(self.store, "ladder_apply_many", fails_once)
        failed = self.ladder.report("m1", [players("a"), players("b")])
        yield bounded(self.assertFailure(failed, StoreError))
        outcome = yield self.ladder.report("m1", [players("a"), players("b")])
        self.assertFalse(outcome.already_applied)
        yield self.assertReplayExact(self.ladder, 1)


class SQLiteStoreBatchTests(SQLiteBackend, StoreBatchTestsMixin, unittest.TestCase):
    pass


class RedisStoreBatchTests(RedisBackend, StoreBatchTestsMixin, unittest.TestCase):
    pass


class SQLiteLadderBatchTests(SQLiteBackend, LadderBatchTestsMixin, unittest.TestCase):
    pass


class RedisLadderBatchTests(RedisBackend, LadderBatchTestsMixin, unittest.TestCase):
    pass
