"""
Tests of the money-supply metrics job (L{mmo.economy.supply}) on both
stores: over random postings and runs, some failing and some in another
process, the figures saved equal those computed from scratch from the
postings made; the first run starts from the ledger as it is; a late
record of a leader that lost the job is left out; the alarm's log line;
the C{economy} control command; the job as a scheduler runs it.
"""

from __future__ import annotations

import random

from twisted.internet import defer, task
from twisted.trial import unittest

from mmo import config
from mmo.economy import supply
from mmo.economy.metrics import IntervalFigures, SupplyTracker
from mmo.economy.supply import LOG, SupplyMetrics, chain, economy_jobs, priced_item
from mmo.jobs.scheduler import Scheduler
from mmo.process.control import ControlService
from mmo.process.control import call as control_call
from mmo.store import StoreUnavailable
from mmo.store.common_economy import Leg, Posted, Posting
from tests.support import LogCapture, write_config
from tests.test_jobs import SchedulerHarness
from tests.test_ladder_core import PROCESSES, RedisBackend, SQLiteBackend

CURRENCIES = ("gold", "gems")
PLAYERS = tuple(f"player:p{n}" for n in range(6))
INTERVAL = 60.0


def economy_config(testcase, history=100, alarm=0.10, enabled=True):
    """A config of two currencies, gold with C{alarm} as its supply_alarm."""
    text = f"""
[economy]
enabled = {"true" if enabled else "false"}
metrics_interval = {INTERVAL}
metrics_history = {history}

[economy.currencies.gold]
decimals = 2
supply_alarm = {alarm}

[economy.currencies.gems]
{PROCESSES}"""
    return config.load(write_config(testcase, text))


def random_posting(rng: random.Random, key: str, at: float) -> Posting:
    """
    One of the postings an economy makes, between random players: a
    reward, a fee, a gift, a shop purchase or sale of potions, a trade of
    potions or of a unique sword against gold.
    """
    a, b = rng.sample(PLAYERS, 2)
    cash = rng.choice(CURRENCIES)
    amount, count = rng.randint(1, 300), rng.randint(1, 4)
    kind = rng.choice(("reward", "reward", "fee", "gift", "buy", "sell", "trade", "sword"))
    if kind == "reward":
        legs = [Leg("faucet:quest", f"c:{cash}", -amount), Leg(a, f"c:{cash}", amount)]
    elif kind == "fee":
        legs = [Leg(a, f"c:{cash}", -amount), Leg("sink:fee", f"c:{cash}", amount)]
    elif kind == "gift":
        legs = [Leg(a, f"c:{cash}", -amount), Leg(b, f"c:{cash}", amount)]
    elif kind == "buy":
        legs = [Leg(a, "c:gold", -amount), Leg("sink:shop:smith", "c:gold", amount),
                Leg("faucet:shop:smith", "i:potion", -count),
                Leg(a, "i:potion", count)]  # fmt: skip
    elif kind == "sell":
        legs = [Leg(a, "i:potion", -count), Leg("sink:shop:smith", "i:potion", count),
                Leg("faucet:shop:smith", "c:gold", -amount), Leg(a, "c:gold", amount)]  # fmt: skip
    elif kind == "trade":
        legs = [Leg(a, "c:gold", -amount), Leg(b, "c:gold", amount),
                Leg(b, "i:potion", -count), Leg(a, "i:potion", count)]  # fmt: skip
    else:
        sword = f"u:sword.{key}"
        legs = [Leg("faucet:loot", sword, -1), Leg(a, sword, 1),
                Leg(a, "c:gems", -amount), Leg("sink:forge", "c:gems", amount)]  # fmt: skip
    return Posting(key, kind, tuple(legs), at)


def balances_of(postings, asset: str) -> dict[str, int]:
    """Every account's balance of C{asset} after C{postings}, from scratch."""
    held: dict[str, int] = {}
    for posting in postings:
        for leg in posting.legs:
            if leg.asset == asset:
                held[leg.account] = held.get(leg.account, 0) + leg.amount
    return {account: amount for account, amount in held.items() if amount}


class FlakyStore:
    """A store whose holders cannot be read while C{down} (a store outage mid-run)."""

    def __init__(self, store):
        self._store = store
        self.down = False

    def __getattr__(self, name):
        return getattr(self._store, name)

    def economy_holders(self, *args):
        if self.down:
            return defer.fail(StoreUnavailable("the store is down"))
        return self._store.economy_holders(*args)


class ClockAndStore:
    """A task clock and a started store of the backend's (L{open_store} opens another)."""

    async def setUp(self):
        self.clock = task.Clock()
        self.clock.advance(1_800_000_000)
        self.store = await self.open_store()

    async def open_store(self):
        store = self.make_store()
        await store.start()
        self.addCleanup(store.stop)
        return store


class SupplyJobTestsMixin(ClockAndStore):
    """The metrics job on a store of the backend's, on a task clock."""

    async def setUp(self):
        await super().setUp()
        self.config = economy_config(self)
        self.applied: list[Posting] = []
        self.keys = 0

    async def post_some(self, rng: random.Random, count: int) -> None:
        """Post C{count} random postings over the next interval; keep those applied."""
        for _ in range(count):
            self.clock.advance(rng.uniform(0, INTERVAL / count))
            self.keys += 1
            posting = random_posting(rng, f"k{self.keys}", self.clock.seconds())
            result = await self.store.economy_post(posting)
            if result.status is Posted.APPLIED:
                self.applied.append(posting)

    def expected(self, intervals, done: int = 0) -> dict[str, list[dict]]:
        """
        The figures of C{intervals} (C{(start, end, postings applied by
        then)}), computed from scratch from the postings made, by currency:
        the first interval starts after the first C{done} postings.
        """
        trackers = {c: SupplyTracker(c, 0.10 if c == "gold" else 0.10, 100, priced_item)
                    for c in CURRENCIES}  # fmt: skip
        found = {c: [] for c in CURRENCIES}
        for start, end, upto in intervals:
            postings = self.applied[done:upto]
            for name, tracker in trackers.items():
                balances = balances_of(self.applied[:upto], f"c:{name}")
                found[name].append(tracker.record(start, end, postings, balances).as_dict())
            done = upto
        return found

    async def saved_figures(self, metrics) -> dict[str, list[dict]]:
        records = await metrics.saved(1000)
        return {
            c: [r["currencies"][c]["figures"] for r in records if c in r["currencies"]]
            for c in CURRENCIES
        }

    async def test_random_runs_equal_figures_from_scratch(self):
        """
        Over random postings, runs by two processes in turn (a takeover at
        each change), with pages of three and some runs failing, the figures
        saved are those computed from scratch over the same intervals: the
        postings read run by run are the postings made, a failed run's
        interval is covered by the next one, a takeover goes on from what
        the last run saved.
        """
        self.patch(supply, "PAGE", 3)
        seed = random.randrange(2**32)
        rng = random.Random(seed)
        other = FlakyStore(await self.open_store())
        stores = [FlakyStore(self.store), other]
        processes = [SupplyMetrics(self.config.economy, s, self.clock) for s in stores]
        await self.post_some(rng, 7)
        assert await processes[0].compute() == {}, "the first run computes nothing"
        before = len(self.applied)
        start = self.clock.seconds()
        intervals, failed = [], 0
        for _ in range(12):
            await self.post_some(rng, rng.randint(0, 9))
            self.clock.advance(1)
            which = rng.randrange(2)
            if rng.random() < 0.25:
                stores[which].down = True
                with self.assertRaises(StoreUnavailable):
                    await processes[which].compute()
                stores[which].down = False
                failed += 1
                continue
            computed = await processes[which].compute()
            self.assertEqual(set(computed), set(CURRENCIES))
            intervals.append((start, self.clock.seconds(), len(self.applied)))
            start = self.clock.seconds()
        # The first run started after the postings made before it.
        self.assertEqual(
            await self.saved_figures(processes[1]), self.expected(intervals, before), f"seed {seed}"
        )

    async def test_first_run_starts_from_the_ledger_as_it_is(self):
        """The first run saves the last sequence number, found in a few reads, for any length."""
        rng = random.Random(7)
        metrics = SupplyMetrics(self.config.economy, self.store, self.clock)
        for count in (0, 1, 1, 1, 2, 3, 9):
            await self.post_some(rng, count)
            last = len(await self.store.economy_postings(0, 1000))
            self.assertEqual(await metrics._last_seq(), last)
        await metrics.compute()
        (record,) = await self.store.read_log(LOG, 10)
        self.assertEqual((record["start"], record["seq"], record["currencies"]), (None, last, {}))

    async def test_a_late_record_is_left_out(self):
        """
        A record appended by a leader that lost the job (a lower token),
        after its successor's, is left out, and the next run goes on from
        the successor's.
        """
        rng = random.Random(3)
        metrics = SupplyMetrics(self.config.economy, self.store, self.clock)
        await metrics.compute(token=7)
        self.clock.advance(INTERVAL)
        await metrics.compute(token=7)
        (first, second) = await self.store.read_log(LOG, 10)
        late = dict(second, end=second["end"] - 1, seq=second["seq"] + 99, token=6)
        await self.store.append_log(LOG, late, 10)
        self.assertEqual(await metrics.saved(10), [first, second])
        self.assertEqual(await metrics.saved(2), [second], "read from the late record on")
        await self.post_some(rng, 5)
        self.clock.advance(1)
        computed = await metrics.compute(token=8)
        *_, third = await metrics.saved(10)
        self.assertEqual((third["start"], third["seq"]), (second["end"], len(self.applied)))
        self.assertEqual(computed["gold"].start, second["end"])

    async def test_describe(self):
        """The economy command: each currency's last intervals, newest first, or one currency's."""
        rng = random.Random(5)
        metrics = SupplyMetrics(self.config.economy, self.store, self.clock)
        shown = await metrics.describe()
        self.assertEqual(shown["currencies"][0]["figures"], [])
        await metrics.compute()
        for _ in range(3):
            await self.post_some(rng, 4)
            self.clock.advance(1)
            await metrics.compute()
        shown = await metrics.describe(history=2, currency="gold")
        (gold,) = shown["currencies"]
        self.assertEqual(
            (gold["currency"], gold["decimals"], gold["supply_alarm"]), ("gold", 2, 0.1)
        )
        saved = (await self.saved_figures(metrics))["gold"]
        self.assertEqual(gold["figures"], [saved[-1], saved[-2]])
        self.assertEqual(shown["interval"], INTERVAL)
        both = await metrics.describe(history=100)
        self.assertEqual([c["currency"] for c in both["currencies"]], ["gold", "gems"])
        self.assertEqual(len(both["currencies"][1]["figures"]), 3)
        with self.assertRaises(ValueError):
            await metrics.describe(currency="silver")
        with self.assertRaises(ValueError):
            await metrics.describe(history=0)


class SQLiteSupplyJobTests(SQLiteBackend, SupplyJobTestsMixin, unittest.TestCase):
    pass


class RedisSupplyJobTests(RedisBackend, SupplyJobTestsMixin, unittest.TestCase):
    pass


class AlarmTests(SQLiteBackend, ClockAndStore, unittest.TestCase):
    """The alarm's log line, and C{history} kept."""

    async def reward(self, key, amount):
        legs = (Leg("faucet:quest", "c:gold", -amount), Leg("player:p1", "c:gold", amount))
        result = await self.store.economy_post(Posting(key, "quest", legs, self.clock.seconds()))
        self.assertIs(result.status, Posted.APPLIED)

    async def test_alarm_logged_once_per_interval_that_alarms(self):
        """
        The supply of gold grows 1% a minute (60% an hour, above its 10%):
        each interval logs one warning naming gold, the growth and the
        alarm; gems, which do not grow, none.  A quiet interval later,
        within the same hour, still alarms (growth is over the hour).
        """
        section = economy_config(self, history=2).economy
        metrics = SupplyMetrics(section, self.store, self.clock)
        await self.reward("start", 10_000)
        await metrics.compute()
        logged = LogCapture(self)
        for n in range(3):
            self.clock.advance(INTERVAL)
            await self.reward(f"r{n}", 100)
            computed = await metrics.compute()
            self.assertTrue(computed["gold"].alarm)
            self.assertFalse(computed["gems"].alarm)
        lines = logged.matching("supply alarm")
        self.assertEqual(len(lines), 3, lines)
        self.assertIn("gold grows 60.0% per hour", lines[0])
        self.assertIn("supply_alarm of 10.0%", lines[0])
        self.assertEqual(logged.matching("supply alarm", "gems"), [])
        saved = await self.store.read_log(LOG, 100)
        self.assertEqual(len(saved), 3, "metrics_history + 1 records kept")


class JobUnderSchedulersTests(SchedulerHarness, unittest.TestCase):
    """The job as the schedulers of two processes run it."""

    async def test_one_run_per_interval(self):
        """
        Two processes' schedulers run the job on one bus and one store: one
        run per interval, the figures chained without discrepancy, and the
        economy command answered on either process's control channel.
        """
        conf = economy_config(self)
        self.assertEqual(economy_jobs(economy_config(self, enabled=False), self.store), [])
        for name in ("lobby-1", "lobby-2"):
            jobs = economy_jobs(conf, self.store, self.bus, self.clock)
            self.assertEqual([(j.name, j.misfire, list(j.commands)) for j in jobs],
                             [("economy.metrics", "skip", ["economy"])])  # fmt: skip
            scheduler = Scheduler(jobs, self.store, self.bus, name, self.clock, conf)
            scheduler.start()
            self.schedulers.append(scheduler)
            self.addCleanup(self.stop, scheduler)
            control = ControlService(self.bus, name)
            scheduler.register(control)
            await control.start()
            self.addCleanup(control.stop)
        await self.settle()
        for n in range(5):
            legs = (Leg("faucet:quest", "c:gold", -100), Leg("player:p1", "c:gold", 100))
            await self.store.economy_post(Posting(f"r{n}", "quest", legs, self.clock.seconds()))
            await self.advance(INTERVAL, step=2.0)
        saved = await self.store.read_log(LOG, 100)
        records = chain(saved)
        self.assertEqual(records, saved)
        self.assertEqual(len(records), 5, "the first run, then one per interval")
        # The first run, a minute after the first reward, starts after it.
        self.assertEqual((records[0]["start"], records[0]["seq"]), (None, 1))
        figures = [
            IntervalFigures.from_dict(r["currencies"]["gold"]["figures"]) for r in records[1:]
        ]
        self.assertEqual([f.supply for f in figures], [200, 300, 400, 500])
        self.assertEqual([f.discrepancy for f in figures], [0, 0, 0, 0])
        answer = defer.ensureDeferred(
            control_call(self.bus, "lobby-2", "economy", {"history": 2}, reactor=self.clock)
        )
        await self.settle()
        shown = await answer
        self.assertEqual(shown["currencies"][0]["figures"][0]["supply"], 500)


class PricedItemTests(unittest.TestCase):
    def test_priced_item(self):
        """A stackable item is its id, a unique instance its definition, a currency none."""
        self.assertEqual(priced_item("i:potion"), "potion")
        self.assertEqual(priced_item("u:iron-sword.3f2a"), "iron-sword")
        self.assertIsNone(priced_item("c:gold"))

    def test_chain(self):
        """
        Back from the last record of the highest token, the records that
        end where the next starts: a late record of a lower token is left
        out, however far back the reader reads.
        """
        a = {"start": None, "end": 1.0, "token": 1}
        b = {"start": 1.0, "end": 2.0, "token": 2}
        late = {"start": 1.0, "end": 1.5, "token": 1}
        c = {"start": 2.0, "end": 3.0, "token": 2}
        d = {"start": 3.0, "end": 4.0, "token": None}
        self.assertEqual(chain([a, b, late, c]), [a, b, c])
        self.assertEqual(chain([a, b, c, late]), [a, b, c])
        self.assertEqual(chain([late, c]), [c])
        self.assertEqual(chain([b, late, c]), [b, c])
        self.assertEqual(chain([a, b, c, d]), [a, b, c], "no token counts as the lowest")
        self.assertEqual(chain([]), [])
