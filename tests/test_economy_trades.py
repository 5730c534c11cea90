"""
Tests of trades between players with escrow (L{mmo.economy.trades}) on
both stores: the whole flow, offers changed after a confirmation, stale
confirmations, cancels, expiries and refused settlements given back, one
open trade per player, and a crash after each posting of a trade followed
by L{Trades.recover}: each item and coin with one owner, the ledger's
invariants (L{tests.test_economy_store.audit}), the trade whole or not at
all.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.trial import unittest

from mmo.economy.economy import Economy
from mmo.economy.errors import BadRequest, InsufficientFunds, NoRoom
from mmo.economy.holdings import Holding
from mmo.economy.trades import IDLE_TIMEOUT, Busy, StaleVersion, State, TradeError, Trades
from mmo.unavailable import BackendUnavailable
from tests.support import until
from tests.test_economy_domain import EconomyFixture, economy_section
from tests.test_economy_store import audit
from tests.test_ladder_core import RedisBackend, SQLiteBackend


class Crash(Exception):
    """The process died right after a posting."""


class CrashingStore:
    """A store whose process dies right after its C{after}th posting applied."""

    def __init__(self, store, after: int):
        self._store = store
        self._left = after

    def __getattr__(self, name):
        return getattr(self._store, name)

    async def economy_post(self, posting):
        result = await self._store.economy_post(posting)
        self._left -= 1
        if self._left == 0:
            raise Crash(posting.key)
        return result


class LostReplyStore:
    """A store that applies the next posting whose key has C{part} but loses its reply."""

    def __init__(self, store, part: str):
        self._store = store
        self._part = part

    def __getattr__(self, name):
        return getattr(self._store, name)

    async def economy_post(self, posting):
        result = await self._store.economy_post(posting)
        if self._part is not None and self._part in posting.key:
            self._part = None
            raise BackendUnavailable("the store's reply was lost")
        return result


class TradesTestsMixin(EconomyFixture):
    """What trades do, whatever the store."""

    async def setUp(self):
        await super().setUp()
        self.trades = Trades(self.economy, self.clock)
        rewards = self.economy.rewards
        for who in "ab":
            await rewards.reward(who, f"start-{who}", "loot", {"gold": 300}, {"potion": 5})
        await rewards.reward("a", "sword-a", "loot", items={"sword": 1})
        self.sword = (await self.holdings("a"))[2][0]

    async def holdings(self, player):
        """C{(gold, {item: count}, [unique])} of a player."""
        wallet = await self.economy.wallets.wallet(player)
        inventory = await self.economy.inventories.inventory(player)
        return wallet.balances["gold"], dict(inventory.items), sorted(inventory.uniques)

    async def escrow(self, trade):
        return await self.store.economy_balances(f"escrow:{trade.id}")

    async def clean(self):
        self.assertEqual(await audit(self.store, self.floors()), [])
        self.assertEqual(await self.store.economy_accounts("escrow", 10), [])

    def floors(self):
        return {(f"player:{p}", "c:gems"): -20 for p in "ab"}

    async def trade_sword(self, trades=None):
        """A trade of a's sword for 120 of b's gold, offered and confirmed by a."""
        trades = trades or self.trades
        trade = trades.open("a", "b")
        await trades.offer(trade.id, "a", Holding(uniques={self.sword}))
        version = await trades.offer(trade.id, "b", Holding({"gold": 120}))
        await trades.confirm(trade.id, "a", version)
        return trade, version

    async def test_whole_flow(self):
        """Two offers, two confirmations: one settlement pays each side the other's."""
        trade, version = await self.trade_sword()
        self.assertEqual(await self.escrow(trade), {f"u:{self.sword}": 1})
        self.assertEqual(trade.state, State.OPEN)
        await self.trades.confirm(trade.id, "b", version)
        self.assertEqual(trade.state, State.SETTLED)
        self.assertEqual(await self.holdings("a"), (420, {"potion": 5}, []))
        self.assertEqual(await self.holdings("b"), (180, {"potion": 5}, [self.sword]))
        self.assertIsNone(self.trades.of("a"))
        with self.assertRaises(TradeError):
            self.trades.get(trade.id)
        await self.clean()

    async def test_offer_changed_after_confirm(self):
        """A changed offer clears both confirmations and gives its deposit back first."""
        trade, version = await self.trade_sword()
        # b changes his offer: a's deposit stays, but he must confirm again.
        version = await self.trades.offer(trade.id, "b", Holding({"gold": 150}))
        self.assertFalse(trade.ready())
        self.assertEqual(await self.escrow(trade), {f"u:{self.sword}": 1})
        await self.trades.confirm(trade.id, "b", version)
        self.assertEqual(await self.escrow(trade), {f"u:{self.sword}": 1, "c:gold": 150})
        # a changes his: his sword comes back before the potions go in.
        version = await self.trades.offer(trade.id, "a", Holding(items={"potion": 2}))
        self.assertEqual(await self.escrow(trade), {"c:gold": 150})
        self.assertEqual((await self.holdings("a"))[2], [self.sword])
        await self.trades.confirm(trade.id, "a", version)
        self.assertEqual(trade.state, State.OPEN)
        await self.trades.confirm(trade.id, "b", version)
        self.assertEqual(trade.state, State.SETTLED)
        self.assertEqual(await self.holdings("a"), (450, {"potion": 3}, [self.sword]))
        self.assertEqual(await self.holdings("b"), (150, {"potion": 7}, []))
        await self.clean()

    async def test_stale_confirm(self):
        """A confirmation of offers that changed since is refused; nothing deposited."""
        trade = self.trades.open("a", "b")
        seen = await self.trades.offer(trade.id, "a", Holding({"gold": 10}))
        await self.trades.offer(trade.id, "b", Holding({"gold": 20}))
        with self.assertRaises(StaleVersion):
            await self.trades.confirm(trade.id, "b", seen)
        with self.assertRaises(StaleVersion):
            await self.trades.confirm(trade.id, "a", "2")
        self.assertEqual(await self.escrow(trade), {})
        with self.assertRaises(TradeError):
            await self.trades.confirm(trade.id, "c", trade.version)

    async def test_deposit_refused(self):
        """A side that lacks his offer is not confirmed."""
        trade = self.trades.open("a", "b")
        version = await self.trades.offer(trade.id, "a", Holding({"gold": 301}))
        with self.assertRaises(InsufficientFunds):
            await self.trades.confirm(trade.id, "a", version)
        self.assertFalse(trade.confirmed("a"))
        await self.trades.confirm(trade.id, "b", version)
        self.assertEqual(trade.state, State.OPEN)

    async def unseen_deposit(self):
        """A trade of a's sword for b's gold whose deposit of the sword went through unseen."""
        store = LostReplyStore(self.store, ":deposit:a:")
        section = economy_section(self, self.inventory, self.limit)
        self.trades = Trades(Economy(section, store, self.clock), self.clock)
        trade = self.trades.open("a", "b")
        await self.trades.offer(trade.id, "a", Holding(uniques={self.sword}))
        version = await self.trades.offer(trade.id, "b", Holding({"gold": 120}))
        with self.assertRaises(BackendUnavailable):
            await self.trades.confirm(trade.id, "a", version)
        self.assertFalse(trade.confirmed("a"))
        self.assertEqual(await self.escrow(trade), {f"u:{self.sword}": 1})
        return trade

    async def test_a_deposit_gone_through_unseen_is_given_back(self):
        """A cancel gives back a deposit whose reply was lost, as any other."""
        trade = await self.unseen_deposit()
        await self.trades.cancel(trade.id, "b")
        self.assertEqual(await self.holdings("a"), (300, {"potion": 5}, [self.sword]))
        await self.clean()

    async def test_a_deposit_gone_through_unseen_is_traded(self):
        """After offers changed, the deposit whose reply was lost counts as made."""
        trade = await self.unseen_deposit()
        version = await self.trades.offer(trade.id, "b", Holding({"gold": 150}))
        await self.trades.confirm(trade.id, "a", version)
        await self.trades.confirm(trade.id, "b", version)
        self.assertEqual(trade.state, State.SETTLED)
        self.assertEqual(await self.holdings("a"), (450, {"potion": 5}, []))
        self.assertEqual(await self.holdings("b"), (150, {"potion": 5}, [self.sword]))
        await self.clean()

    async def test_cancel(self):
        """A cancel gives each deposit back and frees both players."""
        trade, version = await self.trade_sword()
        # An offer queued behind the cancel finds the trade ended.
        cancelled = defer.ensureDeferred(self.trades.cancel(trade.id, "b"))
        late = defer.ensureDeferred(self.trades.offer(trade.id, "a", Holding({"gold": 1})))
        await cancelled
        with self.assertRaises(TradeError):
            await late
        self.assertEqual(trade.state, State.CANCELLED)
        self.assertEqual(await self.holdings("a"), (300, {"potion": 5}, [self.sword]))
        self.assertIsNone(self.trades.of("b"))
        with self.assertRaises(TradeError):
            await self.trades.cancel(trade.id, "b")
        await self.clean()

    async def test_expiry(self):
        """An idle trade expires and gives each deposit back; activity postpones it."""
        trade, version = await self.trade_sword()
        self.clock.advance(IDLE_TIMEOUT - 1)
        await self.trades.offer(trade.id, "b", Holding({"gold": 100}))
        self.clock.advance(IDLE_TIMEOUT - 1)
        self.assertEqual(trade.state, State.OPEN)
        self.clock.advance(1)
        await until(lambda: trade.state is State.CANCELLED)
        await until(lambda: self.trades.of("a") is None)
        self.assertEqual(await self.holdings("a"), (300, {"potion": 5}, [self.sword]))
        await self.clean()

    async def test_settle_refused_for_room(self):
        """A settlement with no room in an inventory is refused: both deposits come back."""
        rewards = self.economy.rewards
        await rewards.reward("b", "full", "loot", items={"arrow": 300})  # 2 + 3 slots: 4 is full
        trade, version = await self.trade_sword()
        with self.assertRaises(NoRoom):
            await self.trades.confirm(trade.id, "b", version)
        self.assertEqual(trade.state, State.CANCELLED)
        self.assertEqual(await self.holdings("a"), (300, {"potion": 5}, [self.sword]))
        self.assertEqual((await self.holdings("b"))[0], 300)
        await self.clean()

    async def test_refund_into_a_full_inventory(self):
        """What a player put in escrow comes back even if his inventory filled up since."""
        trade, _ = await self.trade_sword()
        rewards = self.economy.rewards
        for n in range(10):
            try:
                await rewards.reward("a", f"fill-{n}", "loot", items={"arrow": 100})
            except NoRoom:
                break
        else:
            self.fail("a's inventory never filled")
        await self.trades.cancel(trade.id, "a")
        self.assertEqual(trade.state, State.CANCELLED)
        self.assertEqual((await self.holdings("a"))[2], [self.sword])
        self.assertEqual(await self.escrow(trade), {})
        await self.clean()

    async def test_one_open_trade_per_player(self):
        trade = self.trades.open("a", "b")
        for pair in (("a", "c"), ("c", "b")):
            with self.assertRaises(Busy):
                self.trades.open(*pair)
        self.assertIs(self.trades.of("b"), trade)
        with self.assertRaises(BadRequest):
            self.trades.open("a", "a")
        await self.trades.cancel(trade.id, "a")
        self.trades.open("c", "b")

    async def test_crash_at_each_step(self):
        """
        A crash right after each posting of a trade (a's deposit, given
        back on his changed offer, his new deposit, b's deposit, the
        settlement), then a recovery on a fresh L{Trades}: the trade whole
        or not at all, a recovery retried changes nothing.
        """
        section = self.economy.ledger.rules.section
        step = 0
        while True:
            step += 1
            a, b = f"a{step}", f"b{step}"
            for who in (a, b):
                await self.economy.rewards.reward(
                    who, f"start-{who}", "loot", {"gold": 300}, {"potion": 5}
                )
            await self.economy.rewards.reward(a, f"sword-{a}", "loot", items={"sword": 1})
            sword = (await self.holdings(a))[2]
            crashing = Trades(
                Economy(section, CrashingStore(self.store, step), self.clock), self.clock
            )
            try:
                await self.run_trade(crashing, a, b, sword)
            except Crash:
                pass
            else:
                break
            for _ in range(2):
                await Trades(self.economy, self.clock).recover()
                settled = step >= 5
                self.assertEqual(
                    await self.holdings(a),
                    (420, {"potion": 3}, sword) if settled else (300, {"potion": 5}, sword),
                )
                self.assertEqual(
                    await self.holdings(b),
                    (180, {"potion": 7}, []) if settled else (300, {"potion": 5}, []),
                )
                await self.clean()
        self.assertEqual(step, 6)

    async def run_trade(self, trades, a, b, sword):
        """a's sword, then 2 potions instead, for 120 of b's gold: five postings."""
        trade = trades.open(a, b)
        await trades.offer(trade.id, a, Holding(uniques=sword))
        version = await trades.offer(trade.id, b, Holding({"gold": 120}))
        await trades.confirm(trade.id, a, version)
        version = await trades.offer(trade.id, a, Holding(items={"potion": 2}))
        await trades.confirm(trade.id, a, version)
        await trades.confirm(trade.id, b, version)
        self.assertEqual(trade.state, State.SETTLED)


class SQLiteTradesTests(SQLiteBackend, TradesTestsMixin, unittest.TestCase):
    pass


class RedisTradesTests(RedisBackend, TradesTestsMixin, unittest.TestCase):
    pass
