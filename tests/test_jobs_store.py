"""
Tests of the store's scheduled jobs (L{mmo.store.jobs}): one suite run on
both backends (SQLite on a temporary file, Redis on a private
redis-server): fencing tokens, runs recorded once, times done, pause and
manual triggers.
"""

from __future__ import annotations

import os

from twisted.internet import defer, task
from twisted.trial import unittest

from mmo.store import StoreError
from mmo.store.jobs import MAX_TRIGGERS, JobRun, JobState, StaleToken
from mmo.store.redis import RedisStore
from mmo.store.sqlite import SQLiteStore
from tests.redis import redis_config_text, start_redis
from tests.test_store import NOW, load_config


def run(run_id: str, token: int, scheduled: float | None, outcome: str = "ok") -> JobRun:
    return JobRun(run_id, scheduled, token, NOW, NOW + 0.5, outcome)


class JobStoreTestsMixin:
    def make_store(self):
        raise NotImplementedError()

    @defer.inlineCallbacks
    def setUp(self):
        self.clock = task.Clock()
        self.clock.advance(NOW)
        self.store = self.make_store()
        yield self.store.start()
        self.addCleanup(self.store.stop)

    @defer.inlineCallbacks
    def test_claim(self):
        """A first claim makes the job done up to now; a later one keeps that."""
        self.assertIsNone((yield self.store.job_state("daily")))
        state = yield self.store.claim_job("daily", 3, NOW)
        self.assertEqual(state, JobState("daily", 3, NOW, False, [], None))
        state = yield self.store.claim_job("daily", 5, NOW + 100)
        self.assertEqual((state.token, state.last_scheduled), (5, NOW))
        self.assertEqual(list((yield self.store.job_states())), ["daily"])

    @defer.inlineCallbacks
    def test_stale_token_refused(self):
        """Once a higher token is seen, every write of a lower one is refused, and does nothing."""
        yield self.store.claim_job("j", 7, NOW)
        yield self.store.claim_job("j", 8, NOW)
        for write in (
            lambda: self.store.claim_job("j", 7, NOW),
            lambda: self.store.record_job_run("j", 7, run("j@1", 7, NOW + 10), 100),
            lambda: self.store.skip_job_times("j", 7, NOW + 50),
        ):
            with self.assertRaises(StaleToken) as caught:
                yield write()
            self.assertEqual((caught.exception.token, caught.exception.current), (7, 8))
        state = yield self.store.job_state("j")
        self.assertEqual((state.token, state.last_scheduled, state.last_run), (8, NOW, None))
        self.assertEqual((yield self.store.job_runs("j", 10)), [])
        # The holder of the current token writes.
        self.assertTrue((yield self.store.record_job_run("j", 8, run("j@1", 8, NOW + 10), 100)))

    @defer.inlineCallbacks
    def test_record_once(self):
        """A run id is recorded once; its scheduled time becomes the time done up to."""
        yield self.store.claim_job("j", 1, NOW)
        first = run("j@a", 1, NOW + 10)
        self.assertTrue((yield self.store.record_job_run("j", 1, first, 100)))
        self.assertFalse(
            (yield self.store.record_job_run("j", 1, run("j@a", 1, NOW + 10, "x"), 100))
        )
        # An earlier time recorded late does not move the mark back.
        self.assertTrue((yield self.store.record_job_run("j", 1, run("j@b", 1, NOW + 5), 100)))
        state = yield self.store.job_state("j")
        self.assertEqual(state.last_scheduled, NOW + 10)
        self.assertEqual(state.last_run, run("j@b", 1, NOW + 5))
        self.assertEqual([r.id for r in (yield self.store.job_runs("j", 10))], ["j@a", "j@b"])

    @defer.inlineCallbacks
    def test_runs_kept(self):
        """Only the last C{keep} runs are kept, oldest first."""
        yield self.store.claim_job("j", 1, NOW)
        for n in range(7):
            yield self.store.record_job_run("j", 1, run(f"j@{n}", 1, NOW + n), 3)
        runs = yield self.store.job_runs("j", 10)
        self.assertEqual([r.id for r in runs], ["j@4", "j@5", "j@6"])
        self.assertEqual([r.id for r in (yield self.store.job_runs("j", 2))], ["j@5", "j@6"])

    @defer.inlineCallbacks
    def test_skip(self):
        yield self.store.claim_job("j", 2, NOW)
        yield self.store.skip_job_times("j", 2, NOW + 300)
        yield self.store.skip_job_times("j", 2, NOW + 100)
        self.assertEqual((yield self.store.job_state("j")).last_scheduled, NOW + 300)

    @defer.inlineCallbacks
    def test_pause(self):
        """Pausing needs no claim (any process may do it) and is seen by all."""
        state = yield self.store.pause_job("j", True)
        self.assertEqual((state.paused, state.token, state.last_scheduled), (True, 0, None))
        state = yield self.store.claim_job("j", 1, NOW)
        self.assertTrue(state.paused)
        self.assertFalse((yield self.store.pause_job("j", False)).paused)

    @defer.inlineCallbacks
    def test_triggers(self):
        """Manual runs wait in order until recorded; their number is bounded."""
        yield self.store.trigger_job("j", "j@manual-1")
        self.clock.advance(1)
        yield self.store.trigger_job("j", "j@manual-2")
        yield self.store.trigger_job("j", "j@manual-1")  # once only
        state = yield self.store.claim_job("j", 1, NOW)
        self.assertEqual(state.triggers, ["j@manual-1", "j@manual-2"])
        yield self.store.record_job_run("j", 1, run("j@manual-1", 1, None), 100)
        state = yield self.store.job_state("j")
        self.assertEqual(state.triggers, ["j@manual-2"])
        # A manual run leaves the scheduled mark alone.
        self.assertEqual(state.last_scheduled, NOW)
        for n in range(MAX_TRIGGERS - 1):
            yield self.store.trigger_job("j", f"j@manual-x{n}")
        with self.assertRaises(StoreError):
            yield self.store.trigger_job("j", "j@manual-too-many")

    @defer.inlineCallbacks
    def test_concurrent_claims(self):
        """Of claims racing with tokens 1..20, the writes of all but the highest end refused."""
        yield defer.DeferredList(
            [self.store.claim_job("j", t, NOW) for t in range(1, 21)], consumeErrors=True
        )
        results = yield defer.DeferredList(
            [self.store.record_job_run("j", t, run(f"j@{t}", t, NOW + t), 100)
             for t in range(1, 21)],
            consumeErrors=True,
        )  # fmt: skip
        recorded = [t for t, (ok, _) in zip(range(1, 21), results, strict=True) if ok]
        self.assertEqual(recorded, [20])

    @defer.inlineCallbacks
    def test_bad_arguments(self):
        for write in (
            lambda: self.store.claim_job("", 1, NOW),
            lambda: self.store.claim_job("j", 0, NOW),
            lambda: self.store.claim_job("j", "1", NOW),
            lambda: self.store.record_job_run("j", 1, {"id": "x"}, 10),
            lambda: self.store.record_job_run("j", 1, run("x" * 500, 1, None), 10),
            lambda: self.store.trigger_job("j", 5),
            lambda: self.store.job_runs("j", 0),
        ):
            with self.assertRaises(StoreError):
                yield write()


class SQLiteJobStoreTests(JobStoreTestsMixin, unittest.TestCase):
    def make_store(self):
        return SQLiteStore(os.path.abspath(self.mktemp()) + ".sqlite3", reactor=self.clock)


class RedisJobStoreTests(JobStoreTestsMixin, unittest.TestCase):
    def make_store(self):
        server = start_redis(self)
        text = f'[store]\nbackend = "redis"\n{redis_config_text(server, "test")}'
        return RedisStore(load_config(self, text), reactor=self.clock)
