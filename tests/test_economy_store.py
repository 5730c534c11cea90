"""
Tests of the economy's ledger (L{mmo.store.IEconomyStore}) on both stores
(SQLite on a temporary file, Redis on a private redis-server): postings
applied once per key, refusals that write nothing, floors and credit,
loads and their limits, unique items held once, the reads and their
pages, and, over random postings, every history summing to its balance
and every asset to zero (L{audit}, which the crash test uses too).
"""

from __future__ import annotations

import os
import sqlite3

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import defer, reactor, task, threads
from twisted.trial import unittest

from mmo import config
from mmo.store import IEconomyStore, StoreError, sqlite_economy
from mmo.store.common_economy import (
    Leg,
    Posted,
    Posting,
    Refusal,
    Refused,
    is_faucet,
    is_unique,
)
from mmo.store.redis import RedisStore
from mmo.store.sqlite import SQLiteStore
from tests.redis import redis_config_text
from tests.support import store_of_release_before, write_config
from tests.test_bench import quick_run
from tests.test_ladder_core import BOARD_RUNS, PROCESSES, RedisBackend, SQLiteBackend

GOLD = "c:gold"
GEM = "c:gem"
POTION = "i:potion"
LOOT = "faucet:loot"


def reward(key, who, amount, asset=GOLD, **extra) -> Posting:
    return Posting(key, "loot", (Leg(LOOT, asset, -amount), Leg(who, asset, amount)), 1.0, **extra)


def move(key, source, target, asset, amount, **extra) -> Posting:
    legs = (Leg(source, asset, -amount), Leg(target, asset, amount))
    return Posting(key, "move", legs, 2.0, **extra)


async def _pages(read, limit=1000):
    """Every item of a paged read: C{read(after)} gives a page, C{None} the first."""
    found, after = [], None
    while True:
        page = await read(after)
        found += page
        if len(page) < limit:
            return found
        after = page[-1]


async def audit(store, floors=None, acknowledged=()) -> list[str]:
    """
    The ledger's invariants, checked against a replay of every posting:
    sequence numbers 1 to n and each key once; each account's balances,
    its history's sum and each asset's holders equal to the replay; every
    asset summing to zero; no balance below its floor (C{floors}:
    C{{(account, asset): floor}}, 0 otherwise, none for faucets); each
    unique item with one holder of 1 besides its faucet's -1; each
    C{(key, seq)} of C{acknowledged} applied under that number.

    @return: The problems found (none: an empty list).
    """
    floors = floors or {}
    entries = []
    while True:
        page = await store.economy_postings(len(entries), 1000)
        entries += page
        if len(page) < 1000:
            break
    problems = []
    if [e.seq for e in entries] != list(range(1, len(entries) + 1)):
        problems.append("sequence numbers are not 1 to n")
    keys = [e.key for e in entries]
    if len(set(keys)) != len(keys):
        problems.append("a key applied twice")
    applied = {e.key: e.seq for e in entries}
    for key, seq in acknowledged:
        if applied.get(key) != seq:
            problems.append(f"{key} was acknowledged as {seq}, is {applied.get(key)}")
    replay: dict[str, dict[str, int]] = {}
    for entry in entries:
        for leg in entry.legs:
            held = replay.setdefault(leg.account, {})
            held[leg.asset] = held.get(leg.asset, 0) + leg.amount
    assets: dict[str, dict[str, int]] = {}
    for account, held in replay.items():
        held = {asset: amount for asset, amount in held.items() if amount}
        if await store.economy_balances(account) != held:
            problems.append(f"{account}'s balances are not its postings'")
        history: dict[str, int] = {}

        async def page(before, account=account):
            return await store.economy_history(account, 1000, before.seq if before else None)

        for entry in await _pages(page):
            for leg in entry.legs:
                if leg.account != account:
                    problems.append(f"{account}'s history has a leg of {leg.account}")
                history[leg.asset] = history.get(leg.asset, 0) + leg.amount
        if {asset: amount for asset, amount in history.items() if amount} != held:
            problems.append(f"{account}'s history does not sum to its balances")
        for asset, amount in held.items():
            assets.setdefault(asset, {})[account] = amount
            floor = floors.get((account, asset), -1 if is_unique(asset) else 0)
            if amount < floor and not (is_faucet(account) and not is_unique(asset)):
                problems.append(f"{account} holds {amount} of {asset}, below {floor}")
    for asset, holders in assets.items():
        if sum(holders.values()) != 0:
            problems.append(f"{asset} does not sum to zero")

        async def page(after, asset=asset):
            return await store.economy_holders(asset, 1000, after[0] if after else None)

        if dict(await _pages(page)) != holders:
            problems.append(f"{asset}'s holders are not its postings'")
        if is_unique(asset):
            owners = [a for a, amount in holders.items() if amount == 1 and not is_faucet(a)]
            issued = [a for a, amount in holders.items() if amount == -1 and is_faucet(a)]
            if len(holders) != 2 or len(owners) != 1 or len(issued) != 1:
                problems.append(f"unique {asset} is held as {holders}")
    return problems


class EconomyTestsMixin:
    """What the ledger does, whatever its store."""

    @defer.inlineCallbacks
    def setUp(self):
        self.clock = task.Clock()
        self.store = self.make_store()
        yield self.store.start()
        self.addCleanup(self.store.stop)

    async def post(self, posting, status=Posted.APPLIED):
        result = await self.store.economy_post(posting)
        self.assertEqual(result.status, status, result)
        return result

    async def refused(self, posting, refusal: Refusal):
        before = await self.store.economy_postings(0, 1000)
        result = await self.post(posting, Posted.REFUSED)
        self.assertEqual(result.refusal, refusal)
        self.assertEqual(await self.store.economy_postings(0, 1000), before)
        self.assertIsNone(await self.store.economy_posting(posting.key))

    async def test_provides(self):
        self.assertTrue(IEconomyStore.providedBy(self.store))

    async def test_post_and_read(self):
        """A posting moves value, gets the next number and is in each account's history."""
        first = await self.post(reward("r1", "player:a", 100))
        second = await self.post(move("m1", "player:a", "player:b", GOLD, 30))
        self.assertEqual((first.seq, second.seq), (1, 2))
        self.assertEqual(await self.store.economy_balances("player:a"), {GOLD: 70})
        self.assertEqual(await self.store.economy_balances("player:b"), {GOLD: 30})
        self.assertEqual(await self.store.economy_balances("player:c"), {})
        history = await self.store.economy_history("player:a", 10)
        self.assertEqual(
            [(e.seq, e.key, e.reason) for e in history], [(2, "m1", "move"), (1, "r1", "loot")]
        )
        self.assertEqual(history[0].legs, (Leg("player:a", GOLD, -30),))
        self.assertEqual(history[1].at, 1.0)
        self.assertEqual([e.seq for e in await self.store.economy_history("player:a", 1, 2)], [1])
        whole = await self.store.economy_posting("m1")
        self.assertEqual(whole.legs, move("m1", "player:a", "player:b", GOLD, 30).legs)
        self.assertIsNone(await self.store.economy_posting("nope"))
        self.assertEqual([e.key for e in await self.store.economy_postings(1, 10)], ["m1"])
        self.assertEqual(await self.store.economy_postings(2, 10), [])
        # Emptied: the balance is gone, and so is the holder.
        await self.post(move("m2", "player:b", "sink:tax", GOLD, 30))
        self.assertEqual(await self.store.economy_balances("player:b"), {})
        holders = await self.store.economy_holders(GOLD, 10)
        self.assertEqual(holders, [("faucet:loot", -100), ("player:a", 70), ("sink:tax", 30)])
        self.assertEqual(
            await self.store.economy_holders(GOLD, 1, "faucet:loot"), [("player:a", 70)]
        )
        self.assertEqual(await audit(self.store), [])

    async def test_once_per_key(self):
        """A retry is applied once and answers the first number; other legs under the key fail."""
        await self.post(reward("r1", "player:a", 100))
        await self.post(reward("r2", "player:a", 5))
        again = await self.post(reward("r1", "player:a", 100), Posted.DUPLICATE)
        self.assertEqual(again.seq, 1)
        self.assertEqual(await self.store.economy_balances("player:a"), {GOLD: 105})
        with self.assertRaisesRegex(StoreError, "'r1' was used before"):
            await self.store.economy_post(reward("r1", "player:a", 101))
        self.assertEqual(await self.store.economy_balances("player:a"), {GOLD: 105})
        self.assertEqual(len(await self.store.economy_postings(0, 10)), 2)

    async def test_floors(self):
        """No balance falls below 0 unless a floor says so; faucets have none."""
        await self.post(reward("r1", "player:a", 10))
        await self.refused(
            move("m1", "player:a", "player:b", GOLD, 11), Refusal(Refused.FLOOR, "player:a", GOLD)
        )
        credit = move("m2", "player:a", "player:b", GOLD, 60, floors=(("player:a", GOLD, -50),))
        await self.post(credit)
        self.assertEqual(await self.store.economy_balances("player:a"), {GOLD: -50})
        await self.refused(
            move("m3", "player:a", "player:b", GOLD, 1, floors=(("player:a", GOLD, -50),)),
            Refusal(Refused.FLOOR, "player:a", GOLD),
        )
        await self.post(reward("r2", "player:b", 10**12))
        self.assertEqual(await self.store.economy_balances(LOOT), {GOLD: -(10**12) - 10})
        self.assertEqual(await audit(self.store, {("player:a", GOLD): -50}), [])

    async def test_unbalanced(self):
        legs = (Leg(LOOT, GOLD, -10), Leg("player:a", GOLD, 9), Leg("player:a", GEM, 1))
        await self.refused(Posting("u1", "x", legs, 0.0), Refusal(Refused.UNBALANCED, asset=GOLD))

    async def test_unique_items(self):
        """A unique item is issued once, with its properties, and has one owner."""
        sword = "u:sword-1"
        props = {"def": "sword", "damage": 7, "tags": ["sharp"]}
        await self.post(reward("r1", "player:a", 1, sword, issue={sword: props}))
        self.assertEqual(await self.store.economy_item(sword), props)
        self.assertIsNone(await self.store.economy_item("u:none"))
        # Issued again: the faucet would be at -2, or its properties written twice.
        await self.refused(reward("r2", "player:b", 1, sword), Refusal(Refused.UNIQUE, LOOT, sword))
        await self.refused(
            reward("r3", "player:b", 1, sword, issue={sword: {}}),
            Refusal(Refused.UNIQUE, LOOT, sword),
        )
        await self.post(move("t1", "player:a", "player:b", sword, 1))
        # Given twice: the first owner no longer has it.
        await self.refused(
            move("t2", "player:a", "player:c", sword, 1), Refusal(Refused.UNIQUE, "player:a", sword)
        )
        # A second copy given to an owner: held twice.
        await self.refused(
            move("t3", "faucet:other", "player:b", sword, 1),
            Refusal(Refused.UNIQUE, "player:b", sword),
        )
        # Issued by another faucet, after its first was given back.
        await self.post(move("t4", "player:b", LOOT, sword, 1))
        await self.refused(
            move("t5", "faucet:other", "player:c", sword, 1),
            Refusal(Refused.UNIQUE, "faucet:other", sword),
        )
        # Issued without properties: they are {}.
        await self.post(reward("r4", "player:a", 1, "u:shield-1"))
        self.assertEqual(await self.store.economy_item("u:shield-1"), {})
        self.assertEqual(await audit(self.store), [])

    async def test_loads(self):
        """Weight and stacks count into a load; a limit refuses what would raise it past."""

        def potions(key, who, amount, **extra):
            legs = (Leg(LOOT, POTION, -amount), Leg(who, POTION, amount, weight=2, stack=10))
            return Posting(key, "loot", legs, 1.0, **extra)

        await self.post(potions("p1", "player:a", 5))  # 5 * 2 + 1 slot
        self.assertEqual(await self.store.economy_load("player:a"), 11)
        await self.post(potions("p2", "player:a", 6))  # 11 potions: 22 + 2 slots
        self.assertEqual(await self.store.economy_load("player:a"), 24)
        self.assertEqual(await self.store.economy_load("player:nobody"), 0)
        await self.refused(
            potions("p3", "player:a", 1, limits=(("player:a", 25),)),
            Refusal(Refused.LIMIT, "player:a"),
        )
        await self.post(potions("p4", "player:a", 1, limits=(("player:a", 26),)))
        self.assertEqual(await self.store.economy_load("player:a"), 26)
        # Lowering a load past its limit is not refused.
        legs = (Leg("player:a", POTION, -12, weight=2, stack=10), Leg("sink:use", POTION, 12))
        await self.post(Posting("p5", "use", legs, 1.0, limits=(("player:a", 1),)))
        self.assertEqual(await self.store.economy_load("player:a"), 0)

    async def test_malformed(self):
        """Malformed postings and reads fail with a StoreError; nothing is written."""
        bad = [
            "not a posting",
            Posting("", "loot", reward("k", "player:a", 1).legs, 1.0),
            Posting("k" * 129, "loot", reward("k", "player:a", 1).legs, 1.0),
            Posting("k", "", reward("k", "player:a", 1).legs, 1.0),
            Posting("k", "loot", (), 1.0),
            Posting("k", "loot", reward("k", "player:a", 1).legs, float("nan")),
            reward("k", "wallet:a", 1),
            reward("k", "player:", 1),
            reward("k", "player:a", 1, "gold"),
            reward("k", "player:a", 0),
            reward("k", "player:a", 1.5),
            reward("k", "player:a", 2**60),
            Posting("k", "x", (Leg("player:a", GOLD, 1), Leg("player:a", GOLD, -1)), 1.0),
            Posting("k", "x", (Leg("player:a", GOLD, 1, weight=-1), Leg(LOOT, GOLD, -1)), 1.0),
            reward("k", "player:a", 1, issue={"u:x": {}}),
            reward("k", "player:a", 1, "u:x", issue={"u:x": {1, 2}}),
            move("k", "player:a", "player:b", "u:x", 1, issue={"u:x": {}}),
            Posting(
                "k",
                "x",
                tuple(Leg(f"faucet:{n}", "u:x", -1) for n in "ab")
                + tuple(Leg(f"player:{n}", "u:x", 1) for n in "ab"),
                1.0,
            ),
            reward("k", "player:a", 1, "u:x", floors=(("player:a", "u:x", -1),)),
            reward("k", "player:a", 1, limits=(("player:a", -1),)),
            reward("k", "player:a", 1, limits=(("player:a",),)),
            reward("k", "player:a", 1, floors=(("player:a", GOLD),)),
        ]
        for posting in bad:
            with self.assertRaises(StoreError, msg=repr(posting)):
                await self.store.economy_post(posting)
        for read in [
            lambda: self.store.economy_balances("nobody"),
            lambda: self.store.economy_history("player:a", 0),
            lambda: self.store.economy_history("player:a", 1001),
            lambda: self.store.economy_history("player:a", 10, -1),
            lambda: self.store.economy_postings(-1, 10),
            lambda: self.store.economy_holders("gold", 10),
            lambda: self.store.economy_holders(GOLD, 10, "x"),
            lambda: self.store.economy_posting(""),
        ]:
            with self.assertRaises(StoreError):
                await read()
        self.assertEqual(await self.store.economy_postings(0, 10), [])

    async def test_concurrent_spends(self):
        """Many spends of one balance at once: the floor holds, none is lost."""
        await self.post(reward("r1", "player:a", 50))
        results = await defer.gatherResults(
            [
                defer.ensureDeferred(
                    self.store.economy_post(move(f"s{i}", "player:a", f"player:b{i}", GOLD, 3))
                )
                for i in range(40)
            ]
        )
        applied = [r for r in results if r.status is Posted.APPLIED]
        self.assertEqual(len(applied), 16)
        self.assertEqual(await self.store.economy_balances("player:a"), {GOLD: 2})
        self.assertEqual(await audit(self.store), [])

    def test_random_postings(self):
        """
        Over random postings (some refused, some retried): every history
        sums to its balance, every asset to zero, unique items held once.
        """
        players = [f"player:{n}" for n in range(4)] + ["escrow:t", "vendor:v", "sink:s"]
        sources = players + [LOOT]
        assets = [GOLD, GEM, POTION, "u:a", "u:b", "u:c"]
        leg_pairs = st.tuples(
            st.sampled_from(sources),
            st.sampled_from(players),
            st.sampled_from(assets),
            st.integers(1, 40),
        )
        runs = iter(range(10**6))

        @BOARD_RUNS
        @given(st.lists(st.lists(leg_pairs, min_size=1, max_size=3), max_size=25))
        def check(postings):
            run = next(runs)
            threads.blockingCallFromThread(
                reactor, lambda: defer.ensureDeferred(self.post_random(run, postings))
            )

        return threads.deferToThread(check)

    async def post_random(self, run, postings):
        store = self.make_fresh_store(run)
        await store.start()
        try:
            for n, pairs in enumerate(postings):
                legs, seen = [], set()
                for source, target, asset, amount in pairs:
                    if is_unique(asset):
                        amount = 1
                    if source == target or {(source, asset), (target, asset)} & seen:
                        continue
                    seen |= {(source, asset), (target, asset)}
                    legs += [Leg(source, asset, -amount), Leg(target, asset, amount)]
                if legs:
                    posting = Posting(f"k{n}", "random", tuple(legs), float(n))
                    first = await store.economy_post(posting)
                    again = await store.economy_post(posting)
                    if first.status is Posted.REFUSED:
                        self.assertEqual(again, first)
                    else:
                        self.assertEqual(again.seq, first.seq)
            self.assertEqual(await audit(store), [])
        finally:
            await store.stop()

    async def test_accounts(self):
        """The accounts of a kind holding something, paged in order; emptied ones leave."""
        await self.post(reward("r1", "player:a", 5))
        await self.post(reward("r2", "player:b", 5, asset=POTION))
        for n, who in enumerate("abc"):
            await self.post(reward(f"e{n}", "player:c", 1))
            await self.post(move(f"m{n}", "player:c", f"escrow:t{who}", GOLD, 1))
        self.assertEqual(
            await self.store.economy_accounts("escrow", 10), ["escrow:ta", "escrow:tb", "escrow:tc"]
        )
        self.assertEqual(await self.store.economy_accounts("escrow", 2), ["escrow:ta", "escrow:tb"])
        self.assertEqual(await self.store.economy_accounts("escrow", 2, "escrow:tb"), ["escrow:tc"])
        self.assertEqual(await self.store.economy_accounts("player", 10), ["player:a", "player:b"])
        await self.post(move("back", "escrow:tb", "player:c", GOLD, 1))
        await self.post(move("out", "player:b", "player:a", POTION, 5))
        escrows = await self.store.economy_accounts("escrow", 10)
        self.assertEqual(escrows, ["escrow:ta", "escrow:tc"])
        self.assertEqual(await self.store.economy_accounts("player", 10), ["player:a", "player:c"])
        self.assertEqual(await self.store.economy_accounts("vendor", 10), [])
        for bad in (("bank", 10), ("escrow", 0), ("escrow", 10, "t1")):
            with self.assertRaises(StoreError):
                await self.store.economy_accounts(*bad)


class SQLiteEconomyTests(SQLiteBackend, EconomyTestsMixin, unittest.TestCase):
    def make_fresh_store(self, run):
        path = os.path.abspath(os.path.join(self.mktemp(), "run.sqlite3"))
        os.makedirs(os.path.dirname(path))
        return SQLiteStore(path, reactor=self.clock)

    async def test_previous_release_file(self):
        """A file of the release before the ledger gains its tables at start."""
        store = await store_of_release_before(self, sqlite_economy.migration, self.clock)
        self.assertEqual((await store.economy_post(reward("r", "player:a", 1))).seq, 1)

    async def test_audit_finds_damage(self):
        """The audit the other tests rely on sees a balance changed outside postings."""
        await self.post(reward("r1", "player:a", 10))
        await self.post(reward("r2", "player:b", 1, "u:ring", issue={"u:ring": {}}))
        self.assertEqual(await audit(self.store, acknowledged=[("r1", 1)]), [])
        self.assertEqual(
            await audit(self.store, acknowledged=[("r1", 2), ("lost", 3)]),
            ["r1 was acknowledged as 2, is 1", "lost was acknowledged as 3, is None"],
        )
        with sqlite3.connect(self.path) as conn:
            conn.execute("UPDATE economy_balances SET balance = 11 WHERE account = 'player:a'")
            conn.execute("INSERT INTO economy_balances VALUES ('player:c', 'u:ring', 1)")
        problems = await audit(self.store)
        for expected in (
            "player:a's balances are not its postings'",
            "c:gold's holders are not its postings'",
            "u:ring's holders are not its postings'",
        ):
            self.assertIn(expected, problems)


class RedisEconomyTests(RedisBackend, EconomyTestsMixin, unittest.TestCase):
    def make_fresh_store(self, run):
        text = (
            f'[store]\nbackend = "redis"\n{redis_config_text(self.server, f"run{run}")}{PROCESSES}'
        )
        return RedisStore(config.load(write_config(self, text)), reactor=self.clock)


class EconomyBenchTests(unittest.TestCase):
    """bench/economy.py at the tiny size of its quick run, on both stores."""

    timeout = 120

    def test_quick_run(self):
        """Every figure is there, every posting applied (the script fails otherwise)."""
        outcome = quick_run("economy")
        self.assertTrue(outcome.ok, outcome.error)
        figures = outcome.figures
        for name in (
            "redis_postings_per_s",
            "redis_raw_evalsha_per_s",
            "sqlite_postings_per_s",
            "sqlite_raw_insert_per_s",
            "redis_trade_p99_ms",
            "redis_raw_posting_p99_ms",
            "sqlite_trade_p99_ms",
            "sqlite_raw_posting_p99_ms",
        ):
            self.assertGreater(figures[name], 0, name)
        self.assertEqual(figures["target_postings_per_s"], 5000.0)
