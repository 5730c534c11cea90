"""
Tests of the economy's domain (L{mmo.economy.economy.Economy}) on both
stores: wallets and their start credit, shops with prices, stock and
refusals, inventory limits in both modes, rewards paid once per event,
moves and trades' escrow, and, over random operations, the ledger's
invariants (L{tests.test_economy_store.audit}).
"""

from __future__ import annotations

import os

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import defer, reactor, task, threads
from twisted.trial import unittest

from mmo import config
from mmo.economy.economy import Economy
from mmo.economy.errors import (
    BadRequest,
    EconomyError,
    InsufficientFunds,
    NoRoom,
    NotHeld,
    NotTraded,
    OutOfStock,
    UnknownItem,
    UnknownVendor,
)
from mmo.economy.holdings import Holding, event_key, instance_id
from mmo.economy.wallets import format_amount
from mmo.store.common_economy import Leg
from tests.support import write_config
from tests.test_economy_store import audit
from tests.test_ladder_core import BOARD_RUNS, PROCESSES, RedisBackend, SQLiteBackend

ITEMS = """
[[items]]
id = "potion"
name = "Potion"
stackable = true
max_stack = 5
weight = 1
props = { heals = 50 }

[[items]]
id = "arrow"
name = "Arrow"
stackable = true
max_stack = 100

[[items]]
id = "sword"
name = "Sword"
weight = 8
props = { damage = 7 }
"""

SHOPS = """
[shops.smith]
name = "Smith"
currency = "gold"

[[shops.smith.stock]]
item = "sword"
price = 100
sell = 40
stock = 2

[[shops.smith.stock]]
item = "potion"
price = 10
sell = 4
stock = 6

[[shops.smith.stock]]
item = "arrow"
price = 1
"""


def economy_section(testcase, inventory="slots", limit=4):
    """An [economy] section of two currencies and the items and shops above."""
    return economy_config(testcase, inventory, limit).economy


def economy_config(
    testcase, inventory="slots", limit=4, processes=PROCESSES, enabled=True, extra=""
):
    """
    A config of C{processes} whose [economy] has two currencies and the
    items and shops above (C{extra}: more keys of [economy]).
    """
    text = f"""
[economy]
enabled = {str(enabled).lower()}
items = "items.toml"
shops = "shops.toml"
inventory = "{inventory}"
inventory_limit = {limit}
{extra}

[economy.currencies.gold]
decimals = 2
start = 500

[economy.currencies.gems]
credit = 20
{processes}"""
    path = write_config(testcase, text)
    for name, data in (("items.toml", ITEMS), ("shops.toml", SHOPS)):
        with open(os.path.join(os.path.dirname(path), name), "w") as f:
            f.write(data)
    return config.load(path)


class EconomyFixture:
    """An L{Economy} of C{inventory} mode and limit on a started store of the backend's."""

    inventory = "slots"
    limit = 4

    async def setUp(self):
        self.clock = task.Clock()
        self.store = self.make_store()
        await self.store.start()
        self.addCleanup(self.store.stop)
        section = economy_section(self, self.inventory, self.limit)
        self.economy = Economy(section, self.store, self.clock)
        await self.economy.start()


class DomainTestsMixin(EconomyFixture):
    """What the economy does for game code, whatever its store."""

    async def balances(self, player):
        return dict((await self.economy.wallets.wallet(player)).balances)

    async def items(self, player):
        inventory = await self.economy.inventories.inventory(player)
        return dict(inventory.items), sorted(inventory.uniques), inventory.load

    async def clean(self):
        self.assertEqual(await audit(self.store, self.floors()), [])

    def floors(self):
        return {(f"player:{p}", "c:gems"): -20 for p in "abc"}

    async def test_wallet_and_start(self):
        """Each player's start credit is paid once, however often it is asked for."""
        self.assertEqual(await self.balances("a"), {"gold": 0, "gems": 0})
        self.assertTrue(await self.economy.wallets.start("a"))
        self.assertFalse(await self.economy.wallets.start("a"))
        wallet = await self.economy.wallets.wallet("a")
        self.assertEqual(dict(wallet.balances), {"gold": 500, "gems": 0})
        self.assertEqual(wallet.shown("gold"), "5.00")
        self.assertEqual(await self.economy.wallets.start("b"), True)
        self.assertEqual(await self.store.economy_balances("faucet:start"), {"c:gold": -1000})
        with self.assertRaises(BadRequest):
            await self.economy.wallets.wallet("")
        await self.clean()

    def test_format_amount(self):
        self.assertEqual(
            [format_amount(a, d) for a, d in ((1234, 2), (-5, 2), (7, 0), (100, 3))],
            ["12.34", "-0.05", "7", "0.100"],
        )
        self.assertRaises(BadRequest, format_amount, 1.5, 2)

    async def test_buy_and_sell(self):
        """A purchase and a sale are one posting each, at the vendor's prices."""
        shops = self.economy.shops
        await self.economy.wallets.start("a")
        await shops.buy("r1", "a", "smith", "potion", 2)
        await shops.buy("r1", "a", "smith", "potion", 2)  # a retry buys once
        self.assertEqual(await self.balances("a"), {"gold": 480, "gems": 0})
        await shops.buy("r2", "a", "smith", "sword")
        items, uniques, _ = await self.items("a")
        self.assertEqual(items, {"potion": 2})
        self.assertEqual(uniques, [instance_id("sword", "buy:smith:a:r2", 0)])
        inventory = await self.economy.inventories.inventory("a")
        sword = inventory.uniques[uniques[0]]
        self.assertEqual((sword.item, dict(sword.props)), ("sword", {"damage": 7}))
        offers = {o.item: o for o in await shops.offers("smith")}
        self.assertEqual((offers["potion"].stock, offers["sword"].stock), (4, 1))
        self.assertIsNone(offers["arrow"].stock)
        await shops.sell("s1", "a", "smith", "potion", 2)
        await shops.sell("s2", "a", "smith", uniques[0])
        self.assertEqual(await self.items("a"), ({}, [], 0))
        self.assertEqual(await self.balances("a"), {"gold": 380 + 8 + 40, "gems": 0})
        # Sales do not refill a limited stock.
        self.assertEqual((await shops.offers("smith"))[1].stock, 4)
        await self.clean()

    async def test_shop_refusals(self):
        """Each refusal is its own error, and writes nothing."""
        shops = self.economy.shops
        await self.economy.wallets.start("a")
        count = len(await self.store.economy_postings(0, 1000))
        cases = [
            (UnknownVendor, shops.buy("r", "a", "baker", "potion")),
            (UnknownItem, shops.buy("r", "a", "smith", "shield")),
            (OutOfStock, shops.buy("r", "a", "smith", "potion", 7)),
            (InsufficientFunds, shops.buy("r", "a", "smith", "arrow", 501)),
            (NotTraded, shops.sell("r", "a", "smith", "arrow", 1)),
            (InsufficientFunds, shops.sell("r", "a", "smith", "potion", 1)),
            (NotHeld, shops.sell("r", "a", "smith", "sword.0000")),
            (BadRequest, shops.buy("r", "a", "smith", "potion", 0)),
            (BadRequest, shops.buy("r", "a", "smith", "potion", "2")),
            (BadRequest, shops.buy("r", None, "smith", "potion")),
            (BadRequest, shops.sell("r", "a", "smith", "sword.0000", 2)),
        ]
        for error, call in cases:
            with self.assertRaises(error):
                await call
        self.assertEqual(len(await self.store.economy_postings(0, 1000)), count)
        try:
            await shops.buy("r", "a", "smith", "arrow", 501)
        except InsufficientFunds as e:
            self.assertEqual((e.account, e.asset), ("player:a", "c:gold"))
            self.assertIn("too little currency gold", str(e))
        await shops.buy("r3", "a", "smith", "sword", 2)
        with self.assertRaises(OutOfStock):
            await shops.buy("r4", "a", "smith", "sword")
        await self.clean()

    async def test_rewards_once(self):
        """A replayed event pays once; its unique items are issued once."""
        rewards = self.economy.rewards
        key = event_key("loot", "zone-1", "wolf-7", 1200)
        self.assertEqual(key, "loot:zone-1:wolf-7:1200")
        first = await rewards.reward("a", key, "loot", {"gold": 25, "gems": 2}, {"sword": 1})
        again = await rewards.reward("a", key, "loot", {"gold": 25, "gems": 2}, {"sword": 1})
        self.assertEqual(first, again)
        self.assertEqual(await self.balances("a"), {"gold": 25, "gems": 2})
        _, uniques, _ = await self.items("a")
        self.assertEqual(uniques, [instance_id("sword", "reward:" + key, 0)])
        # Another event, other instances.
        await rewards.reward("a", event_key("quest", "q1", "a"), "quest", items={"sword": 2})
        self.assertEqual(len((await self.items("a"))[1]), 3)
        for bad in (
            lambda: rewards.reward("a", "", "loot", {"gold": 1}),
            lambda: rewards.reward("a", "k", "", {"gold": 1}),
            lambda: rewards.reward("a", "k", "loot", {"silver": 1}),
            lambda: rewards.reward("a", "k", "loot", {"gold": -1}),
            lambda: rewards.reward("a", "k", "loot", items=["sword"]),
            lambda: rewards.reward("a", "k", "loot"),
        ):
            with self.assertRaises(EconomyError):
                await bad()
        self.assertTrue(len(event_key("quest", "x" * 200)) <= 128)
        for parts in ((), ("loot", None), ("loot", True), ("loot", 1.5), ("loot", "")):
            self.assertRaises(BadRequest, event_key, *parts)
        with self.assertRaises(BadRequest):
            await rewards.reward("a", None, "loot", {"gold": 1})
        await self.clean()

    async def test_move_and_credit(self):
        """
        A move takes from one player and gives to another; credit is for
        paying the game, never another player (it would mint money).
        """
        rewards, transfers = self.economy.rewards, self.economy.transfers
        await rewards.reward("a", "k1", "loot", {"gold": 50, "gems": 5}, {"potion": 3, "sword": 1})
        sword = (await self.items("a"))[1][0]
        with self.assertRaises(InsufficientFunds):
            await transfers.move("m0", "gift", "a", "b", Holding({"gems": 6}))
        holding = Holding({"gold": 20, "gems": 5}, {"potion": 2}, {sword})
        await transfers.move("m1", "gift", "a", "b", holding)
        await transfers.move("m1", "gift", "a", "b", holding)
        self.assertEqual(await self.balances("a"), {"gold": 30, "gems": 0})
        self.assertEqual(await self.balances("b"), {"gold": 20, "gems": 5})
        self.assertEqual((await self.items("b"))[:2], ({"potion": 2}, [sword]))
        legs = [Leg("player:a", "c:gems", -15), Leg("sink:shop:x", "c:gems", 15)]
        self.assertEqual(self.economy.rules.floors(legs), (("player:a", "c:gems", -20),))
        with self.assertRaises(InsufficientFunds):
            await transfers.move("m2", "gift", "a", "b", Holding({"gems": 1}))
        with self.assertRaises(NotHeld):
            await transfers.move("m3", "gift", "a", "c", Holding(uniques={sword}))
        for bad in (
            lambda: Holding({"gold": 0}),
            lambda: Holding(items={"potion": True}),
            lambda: Holding(uniques="sword.1"),
            lambda: Holding(uniques={"sword"}),
        ):
            self.assertRaises(BadRequest, bad)
        with self.assertRaises(BadRequest):
            await transfers.move("m4", "gift", "a", "a", Holding({"gold": 1}))
        with self.assertRaises(BadRequest):
            await transfers.move("m4", "gift", "a", "b", {"gold": 1})
        await self.clean()

    async def owners(self, asset):
        return {a: n for a, n in await self.store.economy_holders(asset, 100) if n > 0}

    async def test_escrow(self):
        """Deposits, a settlement and retries: each item and coin with one owner at each step."""
        rewards, transfers = self.economy.rewards, self.economy.transfers
        await rewards.reward("a", "ka", "loot", items={"sword": 1})
        await rewards.reward("b", "kb", "loot", {"gold": 300})
        sword = (await self.items("a"))[1][0]
        sides = {"a": ("a", Holding(uniques={sword})), "b": ("b", Holding({"gold": 120}))}
        for _ in range(2):
            await transfers.deposit("t1", "a", "a", sides["a"][1])
            self.assertEqual(await self.owners("u:" + sword), {"escrow:t1": 1})
        for _ in range(2):
            await transfers.deposit("t1", "b", "b", sides["b"][1])
            self.assertEqual(await self.balances("b"), {"gold": 180, "gems": 0})
        for _ in range(2):
            await transfers.settle("t1", sides)
            self.assertEqual(await self.owners("u:" + sword), {"player:b": 1})
            self.assertEqual(await self.balances("a"), {"gold": 120, "gems": 0})
            self.assertEqual(await self.store.economy_balances("escrow:t1"), {})
        # Settled: the refund finds the escrow without the sword.
        with self.assertRaises(NotHeld):
            await transfers.refund("t1", sides)
        await self.clean()

    async def test_refund(self):
        """A refunded trade gives each deposit back, and cannot then settle."""
        rewards, transfers = self.economy.rewards, self.economy.transfers
        await rewards.reward("a", "ka", "loot", {"gold": 10}, {"potion": 3})
        sides = {"a": ("a", Holding({"gold": 10}, {"potion": 3})), "b": ("b", Holding())}
        await transfers.deposit("t2", "a", "a", sides["a"][1])
        for _ in range(2):
            await transfers.refund("t2", sides)
            self.assertEqual(await self.balances("a"), {"gold": 10, "gems": 0})
            self.assertEqual((await self.items("a"))[0], {"potion": 3})
        with self.assertRaises(InsufficientFunds):
            await transfers.settle("t2", sides)
        with self.assertRaises(BadRequest):
            await transfers.settle("t2", {"a": sides["a"]})
        with self.assertRaises(BadRequest):
            await transfers.deposit("", "a", "a", Holding({"gold": 1}))
        await self.clean()

    def test_random_operations(self):
        """Random rewards, purchases, sales, moves and trades, retried: the audit is clean."""
        players = ["a", "b", "c"]
        holding = st.builds(
            Holding,
            st.dictionaries(st.sampled_from(["gold", "gems"]), st.integers(1, 80), max_size=2),
            st.dictionaries(st.sampled_from(["potion", "arrow"]), st.integers(1, 8), max_size=2),
        )
        operation = st.one_of(
            st.tuples(st.just("reward"), st.sampled_from(players), st.integers(0, 5), holding),
            st.tuples(
                st.sampled_from(["buy", "sell"]),
                st.sampled_from(players),
                st.sampled_from(["potion", "arrow", "sword"]),
                st.integers(1, 4),
            ),
            st.tuples(st.just("move"), st.sampled_from(players), holding),
            st.tuples(st.just("trade"), st.sampled_from(players), holding, holding),
        )
        runs = iter(range(10**6))
        self.roomy = economy_section(self, "slots", 12)

        @BOARD_RUNS
        @given(st.lists(operation, max_size=20), st.booleans())
        def check(operations, settle):
            run = next(runs)
            threads.blockingCallFromThread(
                reactor, lambda: defer.ensureDeferred(self.run_random(run, operations, settle))
            )

        return threads.deferToThread(check)

    async def run_random(self, run, operations, settle):
        store = self.make_fresh_store(run)
        await store.start()
        economy = Economy(self.roomy, store, self.clock)
        try:
            await economy.start()
            for who in "abc":
                await economy.wallets.start(who)
            for n, operation in enumerate(operations):
                for _ in range(2):  # each retried once
                    try:
                        await self.operate(economy, n, operation, settle)
                    except EconomyError:
                        pass
            self.assertEqual(await audit(store, self.floors()), [])
        finally:
            await store.stop()

    async def operate(self, economy, n, operation, settle):
        kind = operation[0]
        if kind == "reward":
            _, who, sword, paid = operation
            items = dict(paid.items, **({"sword": sword} if sword else {}))
            await economy.rewards.reward(who, f"e{n}", "loot", paid.currencies, items)
        elif kind == "buy":
            await economy.shops.buy(f"r{n}", *operation[1:2], "smith", *operation[2:])
        elif kind == "sell":
            _, who, item, count = operation
            if item == "sword":
                held = await economy.inventories.inventory(who)
                item, count = (sorted(held.uniques) or ["sword.none"])[0], 1
            await economy.shops.sell(f"s{n}", who, "smith", item, count)
        elif kind == "move":
            _, source, given = operation
            target = "c" if source != "c" else "a"
            await economy.transfers.move(f"m{n}", "gift", source, target, given)
        else:
            _, first, given, taken = operation
            second = "c" if first != "c" else "a"
            sides = {"x": (first, given), "y": (second, taken)}
            for side, (who, what) in sides.items():
                if what:
                    try:
                        await economy.transfers.deposit(f"t{n}", side, who, what)
                    except EconomyError:
                        sides[side] = (who, Holding())
            done = economy.transfers.settle if settle else economy.transfers.refund
            await done(f"t{n}", sides)


class SQLiteDomainTests(SQLiteBackend, DomainTestsMixin, unittest.TestCase):
    def make_fresh_store(self, run):
        from tests.test_economy_store import SQLiteEconomyTests

        return SQLiteEconomyTests.make_fresh_store(self, run)


class RedisDomainTests(RedisBackend, DomainTestsMixin, unittest.TestCase):
    def make_fresh_store(self, run):
        from tests.test_economy_store import RedisEconomyTests

        return RedisEconomyTests.make_fresh_store(self, run)


class WeightInventoryTests(EconomyFixture, SQLiteBackend, unittest.TestCase):
    """Inventories limited by weight instead of slots."""

    inventory = "weight"
    limit = 20

    async def test_weight_limit(self):
        rewards = self.economy.rewards
        await rewards.reward("a", "k1", "loot", items={"potion": 4, "sword": 2})  # 4 + 16
        self.assertEqual((await self.economy.inventories.inventory("a")).load, 20)
        with self.assertRaises(NoRoom):
            await rewards.reward("a", "k2", "loot", items={"potion": 1})
        await rewards.reward("a", "k3", "loot", items={"arrow": 1000})  # weightless
        inventory = await self.economy.inventories.inventory("a")
        self.assertEqual((inventory.load, inventory.limit), (20, 20))


class SlotInventoryTests(EconomyFixture, SQLiteBackend, unittest.TestCase):
    """Inventories limited by slots: stacks of max_stack, a slot per unique item."""

    async def test_slot_limit(self):
        rewards = self.economy.rewards
        await rewards.reward("a", "k1", "loot", items={"potion": 6, "sword": 1})  # 2 + 1 slots
        self.assertEqual((await self.economy.inventories.inventory("a")).load, 3)
        await rewards.reward("a", "k2", "loot", items={"potion": 4})  # 10 potions: still 2 slots
        self.assertEqual((await self.economy.inventories.inventory("a")).load, 3)
        with self.assertRaises(NoRoom) as caught:
            await rewards.reward("a", "k3", "loot", items={"sword": 2})
        self.assertEqual(caught.exception.account, "player:a")
        await rewards.reward("a", "k4", "loot", items={"arrow": 100})
        await rewards.reward("b", "k5", "loot", items={"sword": 1})
        sword = list((await self.economy.inventories.inventory("b")).uniques)
        with self.assertRaises(NoRoom):
            await self.economy.transfers.move("m", "gift", "b", "a", Holding(uniques=sword))
        self.assertEqual((await self.economy.inventories.inventory("a")).load, 4)
