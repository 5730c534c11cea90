"""
The economy's ledger under crashes, on both stores: a child process
(C{tests/economy_crash_child.py}) posts a seeded sequence of rewards,
unique drops, purchases, sales and trades through escrow, and is SIGKILLed
at random moments (on Redis, redis-server too, sometimes: it runs with
C{appendonly yes} and C{appendfsync always} and starts again from its
append-only file), then started again, resuming from its journal with the
same keys.  After every recovery: no unique item doubled or lost, every
asset summing to zero (the currency's faucets' minus its sinks'), no
balance below its floor, every history summing to its balance, every key
applied once and every posting the child saw acknowledged present under
the sequence number it was given.

C{MMO_ECONOMY_SEED} runs a seed again; C{MMO_ECONOMY_CRASH_LONG=1} runs
many more kills and operations.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys

from twisted.internet import reactor
from twisted.trial import unittest

from mmo import config
from mmo.store.redis import RedisStore
from mmo.store.sqlite import SQLiteStore
from tests import economy_crash_child as child_script
from tests.redis import redis_config_text, start_redis
from tests.support import sleep, until, write_config
from tests.test_economy_store import audit

LONG = os.environ.get("MMO_ECONOMY_CRASH_LONG") == "1"
#: Kills per backend, and operations in the child's whole sequence.
KILLS = 60 if LONG else 10
OPERATIONS = 8000 if LONG else 1000
#: The most journal lines a child writes before it is killed.
SPACING = 200

FLOORS = {(account, asset): floor for account, asset, floor in child_script.FLOORS}


def journal_lines(path: str) -> list[str]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [line.rstrip("\n") for line in f if line.endswith("\n")]


class CrashTestsMixin:
    timeout = 300 if LONG else 90

    def setUp(self):
        self.seed = int(os.environ.get("MMO_ECONOMY_SEED", random.randrange(2**32)))
        self.chance = random.Random(self.seed)
        print(f"\nseed {self.seed} (MMO_ECONOMY_SEED={self.seed} to run it again)")
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.journal = os.path.join(self.directory, "journal")
        self.children = 0

    def spawn(self) -> subprocess.Popen:
        self.children += 1
        errors = open(os.path.join(self.directory, f"child-{self.children}.err"), "w")
        self.addCleanup(errors.close)
        child = subprocess.Popen(
            [
                sys.executable,
                child_script.__file__,
                self.backend,
                self.target,
                str(self.seed),
                str(OPERATIONS),
                self.journal,
            ],
            stdout=errors,
            stderr=errors,
        )
        self.addCleanup(lambda: child.poll() is None and child.kill())
        return child

    def errors(self) -> str:
        with open(os.path.join(self.directory, f"child-{self.children}.err")) as f:
            return f.read()[-3000:]

    async def check(self, why: str) -> None:
        store = self.open_store()
        await store.start()
        acks = [line.split(" ") for line in journal_lines(self.journal) if line[:4] == "ack "]
        try:
            problems = await audit(store, FLOORS, [(key, int(seq)) for _, key, seq in acks])
            self.assertEqual(problems, [], why)
        finally:
            await store.stop()

    async def test_killed_many_times(self):
        kills = server_kills = 0
        while kills < KILLS:
            child = self.spawn()
            # Killed once it posted a few (a random number of) more.
            start = len(journal_lines(self.journal))
            wanted = start + self.chance.randrange(1, SPACING)
            await until(
                lambda child=child, wanted=wanted: (
                    child.poll() is not None or len(journal_lines(self.journal)) >= wanted
                ),
                what=lambda: f"the child's progress; it said {self.errors()}",
            )
            if child.poll() is not None:
                break
            await sleep(self.chance.uniform(0, 0.02))
            server = self.chance.random() < self.server_kill_chance
            if server:
                self.server.kill()
                server_kills += 1
            child.kill()
            child.wait()
            if server:
                self.server.start()
            kills += 1
            await self.check(f"seed {self.seed}, after kill {kills}")
        child = self.spawn()
        await until(lambda: child.poll() is not None, timeout=60, what="the child's last run")
        self.assertEqual(child.returncode, 0, self.errors())
        lines = journal_lines(self.journal)
        self.assertEqual(lines[-1], "finished")
        await self.check(f"seed {self.seed}, at the end")
        acks = sum(1 for line in lines if line[:4] == "ack ")
        self.assertGreaterEqual(kills, KILLS, f"seed {self.seed}: the child ended too soon")
        print(f"{kills} kills ({server_kills} of the server too); {acks} postings acknowledged")


class SQLiteCrashTests(CrashTestsMixin, unittest.TestCase):
    backend = "sqlite"
    server_kill_chance = 0.0

    def setUp(self):
        super().setUp()
        self.target = os.path.join(self.directory, "economy.sqlite3")

    def open_store(self):
        return SQLiteStore(self.target, reactor)


class RedisCrashTests(CrashTestsMixin, unittest.TestCase):
    backend = "redis"
    server_kill_chance = 0.35

    def setUp(self):
        super().setUp()
        self.server = start_redis(self, appendonly=True)
        text = f'[store]\nbackend = "redis"\n{redis_config_text(self.server)}'
        text += '[processes.zone-1]\nkind = "zone"\n'
        self.target = write_config(self, text)

    def open_store(self):
        return RedisStore(config.load(self.target), reactor)
