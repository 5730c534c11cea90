"""
Tests of C{mmo-store} with the ladders and the jobs: a dump of either
backend restored into the other (and into its own) gives the same ladders
(seasons, boards, logs, replays, the outcome of a repeated result) and the
same job states; a bad ladder or job in a dump is refused with nothing
written.
"""

from __future__ import annotations

import io
import json
import os
import textwrap

from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from mmo.config.ladder import LadderSection
from mmo.ladder import Ladder, Player
from mmo.store import StoreError
from mmo.store.backup import main
from mmo.store.common_ladder import LadderRow
from mmo.store.jobs import JobRun
from tests.redis import redis_config_text, start_redis
from tests.support import started_store, write_config

PROCESSES = '[processes.zone-1]\nkind = "zone"\n'

#: The ladders the tests fill, and the seasons each has.
LADDERS = {"ranked": 2, "imported": 1}


def players(*ids) -> list[Player]:
    return [Player(i, f"name-{i}") for i in ids]


class LadderBackupTests(unittest.TestCase):
    def setUp(self):
        self.server = start_redis(self)
        self.prefixes = 0
        self.clock = task.Clock()
        self.clock.advance(1_700_000_000)

    def new_config(self, backend: str) -> str:
        """A config file for a new, empty store of C{backend}; its path."""
        if backend == "sqlite":
            path = os.path.abspath(os.path.join(self.mktemp(), "mmo.sqlite3"))
            store = f'[store]\nbackend = "sqlite"\npath = "{path}"\n'
        else:
            self.prefixes += 1
            store = '[store]\nbackend = "redis"\n' + redis_config_text(
                self.server, f"ladders{self.prefixes}"
            )
        return write_config(self, textwrap.dedent(store) + PROCESSES)

    def open_store(self, path):
        return defer.ensureDeferred(started_store(self, path))

    def ladder(self, store, name="ranked") -> Ladder:
        return Ladder(LadderSection({}, ("ladders", name), name=name), store, self.clock)

    @defer.inlineCallbacks
    def populate(self, store):
        """Two seasons of results, an imported board, and jobs in every state."""
        ranked = self.ladder(store)
        for n, (winner, loser) in enumerate(["ab", "cd", "ac", "bd", "da"]):
            yield ranked.report(f"m{n}", [players(winner), players(loser)])
        self.clock.advance(3600)
        yield ranked.rollover(1, run_id="ranked@2026-12-01")
        yield ranked.report("s2-1", [players("a"), players("e"), players("b")], ranks=[1, 0, 1])
        yield ranked.report("s2-2", [players("e", "b"), players("c", "d")])
        yield store.ladder_fill(
            "imported",
            1,
            [
                LadderRow(f"p{i}", f"P{i}", 1, 25.0 + i / 3, 8.25, i, 1, float(i % 4))
                for i in range(9)
            ],
        )

        now = self.clock.seconds()
        yield store.claim_job("daily", 3, now - 86400)
        for day in range(3):
            run = JobRun(f"daily@{day}", now - 86400 + day, 3, now + day, now + day + 0.5)
            yield store.record_job_run("daily", 3, run, 2)
        yield store.trigger_job("daily", "daily@manual-1")
        yield store.record_job_run(
            "daily", 3, JobRun("daily@manual-0", None, 3, now, now + 1, "error: boom"), 2
        )
        yield store.pause_job("weekly", True)
        yield store.claim_job("hourly", 7, now)
        yield store.skip_job_times("hourly", 7, now + 7200.25)

    @defer.inlineCallbacks
    def state(self, store):
        """What the store's interface shows of its ladders and jobs."""
        found = {}
        for name, seasons in LADDERS.items():
            ladder = self.ladder(store, name)
            found[name] = {
                "season": (yield store.ladder_season(name)),
                "seasons": (yield store.ladder_seasons(name)),
            }
            for season in range(1, seasons + 1):
                found[name][season] = {
                    "top": (yield store.ladder_top(name, season, 0, 100)),
                    "log": (yield store.ladder_matches(name, season)),
                    "replay": (yield ladder.replay(season)) if name == "ranked" else None,
                }
        # A result already applied gives its first outcome again.
        found["repeat"] = yield self.ladder(store).report("m2", [players("a"), players("c")])
        states = yield store.job_states()
        found["jobs"] = states
        found["runs"] = {}
        for name in states:
            found["runs"][name] = yield store.job_runs(name, 10)
        return found

    @defer.inlineCallbacks
    def run_main(self, *argv):
        stdout, stderr = io.StringIO(), io.StringIO()
        status = yield main(list(argv), reactor=reactor, stdout=stdout, stderr=stderr)
        self.assertEqual((status, stderr.getvalue()), (0, ""))
        return stdout.getvalue()

    @defer.inlineCallbacks
    def round_trip(self, source_backend, target_backend):
        """
        Dump a populated store of C{source_backend} and restore it into a new
        one of C{target_backend}: both show the same, and go on the same.
        """
        source = self.new_config(source_backend)
        store = yield self.open_store(source)
        yield self.populate(store)
        out = os.path.abspath(self.mktemp())
        stdout = yield self.run_main("dump", "--config", source, out)
        self.assertIn("(with 2 ladders and 3 jobs)", stdout)
        with open(out) as f:
            document = json.load(f)
        self.assertEqual([ladder["name"] for ladder in document["ladders"]], ["imported", "ranked"])
        self.assertEqual([job["name"] for job in document["jobs"]], ["daily", "hourly", "weekly"])

        target = self.new_config(target_backend)
        stdout = yield self.run_main("restore", "--config", target, out)
        self.assertIn("(with 2 ladders and 3 jobs)", stdout)
        restored = yield self.open_store(target)
        expected = yield self.state(store)
        self.assertEqual((yield self.state(restored)), expected)
        self.assertEqual(len(expected["ranked"][1]["top"]), 4)
        self.assertEqual(len(expected["jobs"]["daily"].triggers), 1)
        self.assertEqual(len(expected["runs"]["daily"]), 2)

        # Both go on alike: the same result rates the same, in the new season.
        outcomes = []
        for each in (store, restored):
            outcomes.append((yield self.ladder(each).report("s2-3", [players("b"), players("f")])))
        self.assertEqual(outcomes[0], outcomes[1])
        self.assertEqual(outcomes[0].season, 2)
        return store, restored

    def test_sqlite_to_redis(self):
        return self.round_trip("sqlite", "redis")

    def test_redis_to_sqlite(self):
        return self.round_trip("redis", "sqlite")

    @defer.inlineCallbacks
    def test_sqlite_to_sqlite_same_dump(self):
        """Within SQLite, the dump of a restored store is the dump it was restored from."""
        store, restored = yield self.round_trip("sqlite", "sqlite")
        self.assertEqual((yield restored.dump()), (yield store.dump()))

    @defer.inlineCallbacks
    def test_redis_to_redis_same_dump(self):
        store, restored = yield self.round_trip("redis", "redis")
        self.assertEqual((yield restored.dump()), (yield store.dump()))

    @defer.inlineCallbacks
    def test_restore_refuses_store_with_ladder_or_jobs(self):
        """A store that holds only a ladder or only a job is not empty."""
        for backend in ("sqlite", "redis"):
            for fill in (
                lambda store: store.ladder_fill(
                    "ranked", 1, [LadderRow("a", "A", 1, 1, 1, 0, 1, 0)]
                ),
                lambda store: store.pause_job("daily", True),
            ):
                store = yield self.open_store(self.new_config(backend))
                yield fill(store)
                dump = {"version": 1, "accounts": [], "characters": []}
                yield self.assertFailure(store.restore(dump), StoreError)

    @defer.inlineCallbacks
    def test_bad_ladders_and_jobs(self):
        """Each mistake is named, and nothing of the dump is written."""
        source = yield self.open_store(self.new_config("sqlite"))
        yield self.populate(source)
        good = yield source.dump()
        ranked = good["ladders"][1]
        daily = good["jobs"][0]

        def bad(**parts):
            return dict(good, **parts)

        cases = [
            (bad(ladders={}), "'ladders' is not a list"),
            (bad(ladders=[dict(ranked, name="Bad Name")]), "bad ladder name"),
            (bad(ladders=[ranked, ranked]), "two ladders named 'ranked'"),
            (bad(ladders=[dict(ranked, season=3)]), "seasons 2 to 3"),
            (bad(ladders=[dict(ranked, matches=ranked["matches"][1:])]), "each applied match"),
            (bad(ladders=[dict(ranked, rows=ranked["rows"] * 2)]), "same player"),
            (bad(ladders=[dict(ranked, rows=[{"player": "a"}])]), "rows[0] must be an object"),
            (
                bad(ladders=[dict(ranked, applied=[{"match": "m", "outcome": "x"}] * 7)]),
                "must be bytes",
            ),
            (bad(jobs=[dict(daily, token=-1)]), "token must be an integer"),
            (bad(jobs=[dict(daily, seq=1)]), "seq must be an integer"),
            (bad(jobs=[dict(daily, runs=[{"id": "x"}])]), "runs[0] must be an object"),
            (bad(jobs=[daily, daily]), "two jobs named 'daily'"),
            (bad(jobs=[dict(daily, triggers=[{"run_id": "", "requested": 1}])]), "run id"),
        ]
        for backend in ("sqlite", "redis"):
            target = yield self.open_store(self.new_config(backend))
            for dump, message in cases:
                failure = yield self.assertFailure(target.restore(dump), StoreError)
                self.assertIn(message, str(failure))
            self.assertEqual(
                (yield target.dump()), {"version": 1, "accounts": [], "characters": []}
            )
