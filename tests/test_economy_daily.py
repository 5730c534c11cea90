"""
Tests of the daily reward job (L{mmo.economy.daily}) on both stores: a run
pays every player once, a run done again (same run id) pays nobody twice,
the next day's run pays again; a player without room is skipped; wrong
C{args} fail the start naming the file and the key.
"""

from __future__ import annotations

import os

from twisted.trial import unittest

from mmo import config
from mmo.bus.memory import MemoryBus
from mmo.config import ConfigError
from mmo.economy import daily
from mmo.economy.economy import Economy
from mmo.jobs.build import config_jobs
from mmo.jobs.job import Run
from mmo.jobs.scheduler import Scheduler
from tests.support import write_config
from tests.test_bench import quick_run
from tests.test_economy_domain import ITEMS
from tests.test_economy_supply import ClockAndStore
from tests.test_ladder_core import RedisBackend, SQLiteBackend

DAY = 86400.0


def daily_config(testcase, args: str, enabled: str = "true"):
    """A config of gold, potions and swords, inventories of 2 slots, and C{[jobs.daily]}."""
    text = f"""
[economy]
enabled = {enabled}
items = "items.toml"
inventory_limit = 2

[economy.currencies.gold]
start = 500

[jobs.daily]
schedule = "@daily"
handler = "mmo.economy.daily:pay_daily"
kind = "lobby"
misfire = "catch_up"
args = {args}

[processes.lobby]
kind = "lobby"
"""
    path = write_config(testcase, text)
    with open(os.path.join(os.path.dirname(path), "items.toml"), "w") as f:
        f.write(ITEMS)
    return config.load(path)


class DailyTestsMixin(ClockAndStore):
    async def setUp(self):
        await super().setUp()
        self.conf = daily_config(self, "{ currencies = { gold = 100 }, items = { potion = 1 } }")
        self.economy = Economy(self.conf.economy, self.store, self.clock)
        self.players = [f"p{n}" for n in range(5)]
        for player in self.players:
            await self.economy.wallets.start(player)
        bus = MemoryBus(reactor=self.clock)
        self.addCleanup(bus.stop)
        (job,) = config_jobs(self.conf, "lobby")
        self.runner = Scheduler([job], self.store, bus, "lobby", self.clock, self.conf).runners[
            "daily"
        ]

    async def run_of(self, scheduled: float) -> dict:
        """Run the job's run of C{scheduled}, as its leader would."""
        job = self.runner.job
        return await job.handler(Run(job, job.run_id(scheduled), scheduled, None, self.runner))

    async def holdings(self) -> dict[str, tuple[int, int]]:
        found = {}
        for player in self.players:
            gold = (await self.economy.wallets.wallet(player)).balances["gold"]
            potions = (await self.store.economy_balances(f"player:{player}")).get("i:potion", 0)
            found[player] = (gold, potions)
        return found

    async def test_pays_once_per_run(self):
        """
        In pages of two: every player is paid once; the same run done again
        pays nobody; the next day's run pays everyone again, once.
        """
        self.patch(daily, "PAGE", 2)
        today = 1_800_000_000 // DAY * DAY
        self.assertEqual(await self.run_of(today), {"paid": 5, "unpaid": 0})
        self.assertEqual(await self.holdings(), {p: (600, 1) for p in self.players})
        self.assertEqual(await self.run_of(today), {"paid": 5, "unpaid": 0})
        self.assertEqual(await self.holdings(), {p: (600, 1) for p in self.players})
        await self.run_of(today + DAY)
        self.assertEqual(await self.holdings(), {p: (700, 2) for p in self.players})
        history = await self.store.economy_history("player:p3", 10)
        self.assertEqual([e.reason for e in history], ["daily", "daily", "start"])
        self.assertEqual(history[0].key, "reward:daily:daily@2027-01-16T00:00:00.000Z:p3")

    async def test_no_room(self):
        """A player whose two slots are full of swords is paid nothing; the others are."""
        await self.economy.rewards.reward("p1", "quest:1", "quest", items={"sword": 2})
        self.assertEqual(await self.run_of(0.0), {"paid": 4, "unpaid": 1})
        self.assertEqual((await self.holdings())["p1"], (500, 0))
        self.assertEqual((await self.holdings())["p2"], (600, 1))


class SQLiteDailyTests(SQLiteBackend, DailyTestsMixin, unittest.TestCase):
    pass


class RedisDailyTests(RedisBackend, DailyTestsMixin, unittest.TestCase):
    pass


class DailyArgsTests(unittest.TestCase):
    def test_wrong_args_fail_the_start(self):
        """Each wrong C{args} is refused when the process starts, naming the file and key."""
        for args, enabled, why in [
            ("{ currencies = { silver = 5 } }", "true", "currencies: no 'silver' in the economy"),
            ("{ currencies = { gold = 0 } }", "true", "currencies.gold: a positive integer"),
            ("{ items = { axe = 1 } }", "true", "items: no 'axe'"),
            ("{ items = { potion = 1.5 } }", "true", "items.potion: a positive integer"),
            ("{}", "true", "pays nothing"),
            ("{ currencies = { gold = 5 }, colour = 1 }", "true", "unknown args ['colour']"),
            ("{ currencies = { gold = 5 }, reason = '' }", "true", "reason is a non-empty"),
            ("{ currencies = { gold = 5 } }", "false", "the economy, which is disabled"),
        ]:
            conf = daily_config(self, args, enabled)
            with self.assertRaises(ConfigError, msg=args) as caught:
                config_jobs(conf, "lobby")
            self.assertIn(f"{conf.file}: jobs.daily.args: ", str(caught.exception))
            self.assertIn(why, str(caught.exception))


class EconomyJobsBenchTests(unittest.TestCase):
    """bench/economy_jobs.py at the tiny size of its quick run, on both stores."""

    timeout = 120

    def test_quick_run(self):
        """Every figure is there (the script fails when a player is not paid)."""
        outcome = quick_run("economy_jobs")
        self.assertTrue(outcome.ok, outcome.error)
        for backend in ("redis", "sqlite"):
            for name in ("daily_ms_per_player", "raw_reward_posting_ms", "metrics_run_s",
                         "metrics_raw_reads_s"):  # fmt: skip
                self.assertGreater(outcome.figures[f"{backend}_{name}"], 0, name)
