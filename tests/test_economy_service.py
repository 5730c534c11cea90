"""
The economy service (L{mmo.economy.service}) on a fake clock, the
in-memory bus and a SQLite store: every request of the client contract and
its errors, the start credit paid once per player, trades pushed to both
parties on their gateways, expired, cancelled when a party leaves, and
served by the one process holding the trades' lease: a standby relays
C{trade.*} and takes over when the holder stops or dies, giving back what
its escrows held.
"""

from __future__ import annotations

from types import SimpleNamespace

from twisted.internet import defer, reactor
from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest

from mmo import certs
from mmo.bus import BusError
from mmo.client import ServerError, connect
from mmo.config import ConfigError
from mmo.economy import tap as economy_tap
from mmo.economy.service import TRADES_LEASE_KEY, EconomyService
from mmo.economy.trades import IDLE_TIMEOUT
from mmo.game.messages import Push, gateway_channel
from mmo.game.relay import RELAY_TIMEOUT
from mmo.game.service import Caller
from mmo.gateway.tap import gateway_routes
from mmo.manager.supervisor import PLUGINS
from mmo.process.seeding import SessionSeeding
from mmo.standalone import tap as standalone_tap
from mmo.store import StoreUnavailable
from mmo.unavailable import BackendUnavailable
from mmo.wire import codes
from mmo.wire.codes import WireError
from tests.support import (
    PASSWORD,
    GatewayInbox,
    fake_clock_bus_store,
    spawn_cluster,
    turn,
    until,
)
from tests.test_cluster import SETTINGS as CLUSTER_SETTINGS
from tests.test_economy_domain import economy_config

#: The start credit of gold (the config of L{economy_config}).
START = 500


def player(name: str, gateway: str = "gw-1", session: str | None = None) -> Caller:
    return Caller(
        session=session or f"s-{name}",
        gateway=gateway,
        account_id=f"a-{name}",
        name=name,
        character_name=name.title(),
    )


class EconomyTestCase(unittest.TestCase):
    """An economy service (or two) on one clock, bus and store; alice on gw-1, bob on gw-2."""

    timeout = 30

    async def setUp(self):
        self.clock, self.bus, self.store = await fake_clock_bus_store(self)
        self.config = economy_config(self)
        self.inboxes = {gateway: GatewayInbox() for gateway in ("gw-1", "gw-2")}
        for gateway, inbox in self.inboxes.items():
            await self.bus.subscribe(gateway_channel(gateway), inbox)
        self.alice, self.bob = player("alice"), player("bob", "gw-2")
        self.economy = await self.start_economy()
        self.ttl = self.config.economy.trade_lease

    async def start_economy(self) -> EconomyService:
        service = EconomyService(self.config, self.store, self.bus, self.clock)
        d = defer.ensureDeferred(service.start())
        await self.settle(lambda: d.called)
        await d
        self.addCleanup(self.stop, service)
        return service

    async def stop(self, service) -> None:
        d = defer.ensureDeferred(service.stop())
        await self.settle(lambda: d.called)
        await d

    def turn(self, seconds: float = 0.0) -> None:
        """Let C{seconds} pass (L{tests.support.turn})."""
        turn(self.clock, seconds)

    async def settle(self, done, step: float = 0.0) -> None:
        """
        Turn the clock, C{step} seconds at a time (the store's work runs on
        the real reactor meanwhile), until C{done()}.
        """
        await until(lambda: done() or self.turn(step), what="the economy to settle")

    async def ask(self, caller: Caller, kind: str, service=None, wait: float = 0.0, **message):
        """What C{service} (the first) answers C{caller}'s message, C{wait} clock seconds later."""
        service = service or self.economy
        d = defer.ensureDeferred(service.handle(caller, kind, message))
        self.turn(wait)
        await self.settle(lambda: d.called)
        try:
            return await d
        finally:
            self.turn()  # its pushes reach the gateways

    async def refused(
        self, code: str, caller: Caller, kind: str, service=None, wait: float = 0.0, **message
    ):
        try:
            await self.ask(caller, kind, service, wait, **message)
        except WireError as e:
            self.assertEqual(e.code, code, e.message)
            return e
        self.fail(f"{kind} {message} was not refused")

    async def event(self, caller: Caller, event: str, *services) -> None:
        for service in services or (self.economy,):
            d = defer.ensureDeferred(service.session_event(caller, event))
            await self.settle(lambda d=d: d.called)
            await d
        self.turn()

    async def online(self, *callers: Caller, services=()) -> None:
        for caller in callers:
            await self.event(caller, "started", *services)

    def pushes(self, kind: str, session: str | None = None, gateway: str | None = None):
        """The fields of every push of C{kind} (to C{session}, through C{gateway}) so far."""
        return [
            m.fields
            for name, inbox in self.inboxes.items()
            if gateway is None or name == gateway
            for m in inbox.of_type(Push)
            if m.kind == kind and (session is None or session in m.sessions)
        ]

    async def gold(self, caller: Caller) -> int:
        wallet = await self.ask(caller, "wallet.get")
        return wallet["currencies"]["gold"]["balance"]

    async def buy(self, caller: Caller, item: str, count: int = 1, request: str | None = None):
        return await self.ask(
            caller,
            "shop.buy",
            request=request or f"r-{item}-{count}",
            shop="smith",
            item=item,
            count=count,
        )


class LedgerRequestTests(EconomyTestCase):
    async def test_start_credit_once_per_player(self):
        """A login pays the start credit once, however often the player logs in."""
        await self.online(self.alice)
        await self.event(player("alice", session="s-again"), "started")
        wallet = await self.ask(self.alice, "wallet.get")
        self.assertEqual(
            wallet,
            {
                "currencies": {
                    "gold": {"balance": START, "shown": "5.00", "decimals": 2},
                    "gems": {"balance": 0, "shown": "0", "decimals": 0},
                }
            },
        )

    async def test_start_credit_paid_by_the_holder_only(self):
        """Every economy process hears the login; only the one serving trades pays."""
        standby = await self.start_economy()
        posted = []
        real = self.store.economy_post

        def counted(posting):
            posted.append(posting.key)
            return real(posting)

        self.patch(self.store, "economy_post", counted)
        await self.online(self.alice, services=(standby, self.economy))
        self.assertEqual(posted, ["start:a-alice"])
        self.assertEqual(await self.gold(self.alice), START)

    async def test_shops_and_inventory(self):
        await self.online(self.alice)
        shops = await self.ask(self.alice, "shop.list")
        self.assertEqual(shops, {"shops": [{"shop": "smith", "name": "Smith", "currency": "gold"}]})
        offers = await self.ask(self.alice, "shop.offers", shop="smith")
        self.assertEqual(
            offers["offers"][0],
            {"item": "sword", "name": "Sword", "price": 100, "sell": 40, "stock": 2},
        )
        self.assertEqual(offers["offers"][2]["stock"], None)
        bought = await self.buy(self.alice, "potion", 3)
        self.assertEqual((bought["shop"], bought["item"], bought["count"]), ("smith", "potion", 3))
        self.assertEqual(bought["currencies"]["gold"]["balance"], START - 30)
        # The same request again buys once.
        again = await self.buy(self.alice, "potion", 3)
        self.assertEqual((again["seq"], again["currencies"]), (bought["seq"], bought["currencies"]))
        await self.buy(self.alice, "sword")
        inventory = await self.ask(self.alice, "inventory.get")
        self.assertEqual(inventory["items"], {"potion": 3})
        [sword] = inventory["uniques"]
        self.assertEqual((sword["item"], sword["props"]), ("sword", {"damage": 7}))
        self.assertEqual(
            (inventory["load"], inventory["limit"], inventory["mode"]), (2, 4, "slots")
        )
        sold = await self.ask(
            self.alice, "shop.sell", request="s-1", shop="smith", item=sword["id"]
        )
        self.assertEqual(sold["currencies"]["gold"]["balance"], START - 30 - 100 + 40)
        offers = await self.ask(self.alice, "shop.offers", shop="smith")
        self.assertEqual(offers["offers"][0]["stock"], 1)

    async def test_history_pages(self):
        await self.online(self.alice)
        for count in (1, 2):
            await self.buy(self.alice, "potion", count)
        page = await self.ask(self.alice, "wallet.history", limit=2)
        self.assertEqual([e["reason"] for e in page["entries"]], ["shop.buy", "shop.buy"])
        newest = page["entries"][0]
        self.assertEqual((newest["currencies"], newest["items"]), ({"gold": -20}, {"potion": 2}))
        self.assertEqual(newest["uniques"], {})
        rest = await self.ask(self.alice, "wallet.history", limit=2, before=page["next"])
        self.assertEqual([e["reason"] for e in rest["entries"]], ["start"])
        self.assertEqual(rest["entries"][0]["currencies"], {"gold": START})
        self.assertIsNone(rest["next"])
        everything = await self.ask(self.alice, "wallet.history")
        self.assertEqual(len(everything["entries"]), 3)

    async def test_errors(self):
        await self.online(self.alice)
        buy = {"request": "r", "shop": "smith", "item": "potion"}
        for code, kind, message in (
            (codes.BAD_REQUEST, "wallet.history", {"limit": 0}),
            (codes.BAD_REQUEST, "wallet.history", {"limit": 101}),
            (codes.BAD_REQUEST, "wallet.history", {"before": "x"}),
            (codes.BAD_REQUEST, "shop.offers", {}),
            (codes.BAD_REQUEST, "shop.buy", {**buy, "request": "no spaces"}),
            (codes.BAD_REQUEST, "shop.buy", {**buy, "request": "r" * 65}),
            (codes.BAD_REQUEST, "shop.buy", {**buy, "count": 0}),
            (codes.BAD_REQUEST, "shop.buy", {**buy, "count": True}),
            (codes.BAD_REQUEST, "shop.buy", {**buy, "item": 7}),
            (codes.NOT_FOUND, "shop.offers", {"shop": "baker"}),
            (codes.NOT_FOUND, "shop.buy", {**buy, "shop": "baker"}),
            (codes.NOT_FOUND, "shop.buy", {**buy, "item": "shield"}),
            (codes.NOT_ALLOWED, "shop.sell", {**buy, "item": "arrow"}),
            (codes.INSUFFICIENT_FUNDS, "shop.sell", {**buy, "count": 1}),
            (codes.OUT_OF_STOCK, "shop.buy", {**buy, "count": 7}),
            (codes.NO_ROOM, "shop.buy", {**buy, "item": "arrow", "count": 401}),
            (codes.UNKNOWN_TYPE, "shop.steal", {}),
        ):
            await self.refused(code, self.alice, kind, **message)
        # Nobody paid dave a start credit.
        await self.refused(codes.INSUFFICIENT_FUNDS, player("dave"), "shop.buy", **buy)
        self.assertEqual(await self.gold(self.alice), START)

    async def test_a_store_out_of_reach_is_unavailable(self):
        """Not a refusal: the client is told to retry (the RPC's one mapping, C{unavailable})."""
        await self.online(self.alice)
        self.patch(self.store, "economy_post", unreachable)
        with self.assertRaises(BackendUnavailable):
            await self.buy(self.alice, "potion")
        self.patch(self.store, "economy_balances", unreachable)
        with self.assertRaises(BackendUnavailable):
            await self.ask(self.alice, "wallet.get")


def unreachable(*args):
    return defer.fail(StoreUnavailable("the store is not reachable"))


class UnreachableBus:
    """A bus whose server cannot be reached, for a lease."""

    def lease(self, *args):
        return defer.fail(BusError("the bus is not reachable"))

    release_lease = lease


class TradeTestCase(EconomyTestCase):
    async def setUp(self):
        await super().setUp()
        await self.online(self.alice, self.bob)
        await self.buy(self.alice, "sword")
        self.sword = (await self.ask(self.alice, "inventory.get"))["uniques"][0]["id"]

    async def open(self, service=None) -> dict:
        opened = await self.ask(self.alice, "trade.open", service, **{"with": "BOB"})
        return opened["trade"]

    async def holdings(self, caller: Caller):
        inventory = await self.ask(caller, "inventory.get")
        return await self.gold(caller), [u["id"] for u in inventory["uniques"]]


class TradeTests(TradeTestCase):
    async def test_a_trade_settled_across_two_gateways(self):
        """Every step is pushed to both parties, each on his gateway, as he sees it."""
        trade = await self.open()
        self.assertEqual((trade["state"], trade["version"]), ("open", 0))
        self.assertEqual(trade["you"]["player"], "a-alice")
        self.assertEqual((trade["them"]["player"], trade["them"]["name"]), ("a-bob", "Bob"))
        held = {caller.session for caller in self.economy.held_sessions()}
        self.assertEqual(held, {self.alice.session, self.bob.session})
        [to_bob] = self.pushes("trade.opened", self.bob.session)
        self.assertEqual(to_bob["trade"]["you"]["name"], "Bob")
        self.assertEqual(len(self.pushes("trade.opened", self.alice.session)), 1)
        tid = trade["id"]
        offered = await self.ask(self.alice, "trade.offer", trade=tid, uniques=[self.sword])
        self.assertEqual(offered["trade"]["you"]["offer"]["uniques"], [self.sword])
        got = await self.ask(self.bob, "trade.offer", trade=tid, currencies={"gold": 120})
        self.assertEqual(got["trade"]["version"], 2)
        self.assertEqual(
            got["trade"]["them"]["offer"], {"currencies": {}, "items": {}, "uniques": [self.sword]}
        )
        await self.refused(codes.STALE_VERSION, self.alice, "trade.confirm", trade=tid, version=1)
        one = await self.ask(self.alice, "trade.confirm", trade=tid, version=2)
        self.assertEqual((one["trade"]["state"], one["trade"]["you"]["confirmed"]), ("open", True))
        both = await self.ask(self.bob, "trade.confirm", trade=tid, version=2)
        self.assertEqual(both["trade"]["state"], "settled")
        for caller in (self.alice, self.bob):
            [settled] = self.pushes("trade.settled", caller.session)
            self.assertEqual(settled["trade"]["state"], "settled")
            self.assertEqual(len(self.pushes("trade.updated", caller.session)), 3)
        self.assertEqual(await self.holdings(self.alice), (START - 100 + 120, []))
        self.assertEqual(await self.holdings(self.bob), (START - 120, [self.sword]))
        self.assertEqual(await self.ask(self.bob, "trade.status"), {"trade": None})
        self.assertEqual(self.economy.parties, {})

    async def test_errors(self):
        carol = player("carol")
        await self.online(carol)
        await self.refused(codes.PLAYER_OFFLINE, self.alice, "trade.open", **{"with": "Dave"})
        await self.refused(codes.NOT_ALLOWED, self.alice, "trade.open", **{"with": "alice"})
        await self.refused(codes.BAD_REQUEST, self.alice, "trade.open")
        tid = (await self.open())["id"]
        status = await self.ask(self.bob, "trade.status")
        self.assertEqual(status["trade"]["id"], tid)
        await self.refused(codes.IN_TRADE, carol, "trade.open", **{"with": "Bob"})
        await self.refused(codes.IN_TRADE, self.alice, "trade.open", **{"with": "Carol"})
        await self.refused(codes.NOT_FOUND, self.alice, "trade.offer", trade="nope")
        await self.refused(codes.NOT_ALLOWED, carol, "trade.cancel", trade=tid)
        for bad in (
            {"currencies": {"gold": -1}},
            {"currencies": {"silver": 1}},
            {"items": {"potion": "1"}},
            {"uniques": "sword"},
        ):
            await self.refused(codes.BAD_REQUEST, self.alice, "trade.offer", trade=tid, **bad)
        await self.refused(codes.NOT_FOUND, self.alice, "trade.offer", trade=tid, items={"x": 1})
        await self.refused(codes.BAD_REQUEST, self.alice, "trade.confirm", trade=tid)
        await self.ask(self.bob, "trade.offer", trade=tid, currencies={"gold": START + 1})
        await self.refused(
            codes.INSUFFICIENT_FUNDS, self.bob, "trade.confirm", trade=tid, version=1
        )
        self.assertEqual(await self.gold(self.bob), START)

    async def test_cancel_gives_back(self):
        tid = (await self.open())["id"]
        await self.ask(self.alice, "trade.offer", trade=tid, uniques=[self.sword])
        await self.ask(self.alice, "trade.confirm", trade=tid, version=1)
        self.assertEqual(await self.holdings(self.alice), (START - 100, []))
        cancelled = await self.ask(self.bob, "trade.cancel", trade=tid)
        self.assertEqual(cancelled["trade"]["state"], "cancelled")
        for caller in (self.alice, self.bob):
            [pushed] = self.pushes("trade.cancelled", caller.session)
            self.assertEqual(pushed["why"], "cancelled")
        self.assertEqual(await self.holdings(self.alice), (START - 100, [self.sword]))
        await self.refused(codes.NOT_FOUND, self.bob, "trade.cancel", trade=tid)

    async def test_expiry_pushes_expired(self):
        tid = (await self.open())["id"]
        await self.ask(self.alice, "trade.offer", trade=tid, uniques=[self.sword])
        await self.ask(self.alice, "trade.confirm", trade=tid, version=1)
        self.turn(IDLE_TIMEOUT)
        await self.settle(lambda: self.pushes("trade.cancelled", self.bob.session))
        for caller in (self.alice, self.bob):
            [pushed] = self.pushes("trade.cancelled", caller.session)
            self.assertEqual((pushed["why"], pushed["trade"]["state"]), ("expired", "cancelled"))
        self.assertEqual(await self.holdings(self.alice), (START - 100, [self.sword]))
        self.assertEqual(self.economy.parties, {})

    async def test_a_session_that_ends_cancels_its_trade(self):
        tid = (await self.open())["id"]
        await self.ask(self.alice, "trade.offer", trade=tid, uniques=[self.sword])
        await self.ask(self.alice, "trade.confirm", trade=tid, version=1)
        # A drop and a resume on another gateway keep the trade; pushes follow the session.
        moved = self.alice.moved(gateway="gw-2")
        await self.event(moved, "moved")
        await self.ask(self.bob, "trade.offer", trade=tid, currencies={"gold": 5})
        [pushed] = self.pushes("trade.updated", self.alice.session, "gw-2")
        self.assertEqual(pushed["trade"]["them"]["offer"]["currencies"], {"gold": 5})
        await self.event(moved, "ended")
        for caller in (self.alice, self.bob):
            [pushed] = self.pushes("trade.cancelled", caller.session)
            self.assertEqual(pushed["why"], "left")
        self.assertEqual(await self.holdings(self.alice), (START - 100, [self.sword]))
        self.assertEqual(await self.ask(self.bob, "trade.status"), {"trade": None})
        await self.refused(codes.PLAYER_OFFLINE, self.bob, "trade.open", **{"with": "alice"})

    async def test_a_refused_settlement_pushes_refused(self):
        """Bob's inventory fills up after he confirmed: the settlement is refused, given back."""
        tid = (await self.open())["id"]
        await self.ask(self.alice, "trade.offer", trade=tid, uniques=[self.sword])
        await self.ask(self.bob, "trade.confirm", trade=tid, version=1)
        await self.buy(self.bob, "arrow", 400)
        await self.refused(codes.NO_ROOM, self.alice, "trade.confirm", trade=tid, version=1)
        for caller in (self.alice, self.bob):
            [pushed] = self.pushes("trade.cancelled", caller.session)
            self.assertEqual(pushed["why"], "refused")
        self.assertEqual((await self.holdings(self.alice))[1], [self.sword])

    async def test_a_settlement_the_store_did_not_answer_is_tried_again(self):
        tid = (await self.open())["id"]
        await self.ask(self.alice, "trade.offer", trade=tid, uniques=[self.sword])
        await self.ask(self.alice, "trade.confirm", trade=tid, version=1)
        real = self.store.economy_post

        def settlement_lost(posting):
            if posting.key.endswith(":settle"):
                return unreachable()
            return real(posting)

        self.patch(self.store, "economy_post", settlement_lost)
        with self.assertRaises(BackendUnavailable):
            await self.ask(self.bob, "trade.confirm", trade=tid, version=1)
        status = await self.ask(self.bob, "trade.status")
        self.assertEqual(status["trade"]["state"], "settling")
        await self.refused(codes.NOT_ALLOWED, self.alice, "trade.cancel", trade=tid)
        self.patch(self.store, "economy_post", real)
        settled = await self.ask(self.bob, "trade.confirm", trade=tid, version=1)
        self.assertEqual(settled["trade"]["state"], "settled")
        self.assertEqual((await self.holdings(self.bob))[1], [self.sword])


class FoundSessionTests(EconomyTestCase):
    """A process that started while players were connected learns them from the gateways."""

    async def test_a_partner_found_on_a_gateway(self):
        await self.refused(codes.PLAYER_OFFLINE, self.alice, "trade.open", **{"with": "Bob"})
        await self.economy.session_found(self.bob)
        opened = await self.ask(self.alice, "trade.open", **{"with": "Bob"})
        self.assertEqual(opened["trade"]["them"]["name"], "Bob")
        self.assertEqual(len(self.pushes("trade.opened", self.bob.session)), 1)

    async def test_what_was_heard_since_wins(self):
        renamed = self.bob.moved(character_name="Robert")
        await self.event(renamed, "changed")
        await self.economy.session_found(self.bob)
        self.assertEqual(self.economy.presence.get(self.bob.session), renamed)
        await self.event(self.alice, "ended")
        await self.economy.session_found(self.alice)
        self.assertIsNone(self.economy.presence.find("Alice"))
        await self.refused(codes.PLAYER_OFFLINE, renamed, "trade.open", **{"with": "Alice"})


class LeaseTests(TradeTestCase):
    async def setUp(self):
        await super().setUp()
        self.standby = await self.start_economy()
        await self.online(self.alice, self.bob, services=(self.standby,))

    async def test_one_serves_the_other_relays(self):
        self.assertTrue(self.economy.serving)
        self.assertFalse(self.standby.serving)
        self.assertEqual(self.standby.directory_info(), {"load": 0, "trades": 0, "standby": True})
        trade = await self.open(self.standby)
        self.assertEqual(self.economy.directory_info(), {"load": 1, "trades": 1})
        self.assertEqual(len(self.standby.trades), 0)
        # Errors come back through the relay; the store's requests are answered in place.
        await self.refused(
            codes.IN_TRADE, self.bob, "trade.open", self.standby, **{"with": "alice"}
        )
        self.assertEqual(await self.gold(self.bob), START)
        status = await self.ask(self.bob, "trade.status", self.standby)
        self.assertEqual(status["trade"]["id"], trade["id"])

    async def test_the_standby_takes_over_and_gives_escrows_back(self):
        tid = (await self.open(self.standby))["id"]
        await self.ask(self.alice, "trade.offer", self.standby, trade=tid, uniques=[self.sword])
        await self.ask(self.alice, "trade.confirm", self.standby, trade=tid, version=1)
        self.assertEqual(await self.holdings(self.alice), (START - 100, []))
        # The holder dies: nothing is released; a trade's request waits in vain.
        self.economy.lease._loop.stop()
        self.turn(self.ttl * 2 / 3)
        self.assertFalse(self.economy.serving)
        await self.refused(
            codes.UNAVAILABLE, self.alice, "trade.status", self.standby, wait=RELAY_TIMEOUT
        )
        # The clock goes on as a reactor's would, while the store recovers.
        await self.settle(lambda: self.standby.serving, step=0.1)
        self.assertEqual(await self.holdings(self.alice), (START - 100, [self.sword]))
        self.assertEqual(await self.ask(self.alice, "trade.status", self.standby), {"trade": None})
        holder = await self.bus.lease_holder(TRADES_LEASE_KEY)
        self.assertEqual(holder[0], self.standby.lease.holder)
        # The new holder serves trades, with the old one's escrow closed.
        again = await self.open(self.standby)
        self.assertNotEqual(again["id"], tid)

    async def test_a_login_while_nobody_serves_is_paid_by_the_next_holder(self):
        """The start credit of a login that came while no process held the lease."""
        carol = player("carol")
        self.economy.lease._loop.stop()
        self.turn(self.ttl * 2 / 3)
        self.assertFalse(self.economy.serving or self.standby.serving)
        await self.online(carol, services=(self.standby,))
        self.assertEqual(await self.gold(carol), 0)
        await self.settle(lambda: self.standby.serving, step=0.1)

        async def paid():
            return await self.gold(carol) == START

        await until(paid, what="carol's start credit, paid by the new holder")
        # A session a gateway lists to the holder is paid too.
        await self.standby.session_found(player("erin"))
        self.assertEqual(await self.gold(player("erin")), START)

    async def test_a_relayed_request_on_a_store_out_of_reach(self):
        tid = (await self.open(self.standby))["id"]
        await self.ask(self.alice, "trade.offer", self.standby, trade=tid, uniques=[self.sword])
        self.patch(self.store, "economy_post", unreachable)
        await self.refused(
            codes.UNAVAILABLE, self.alice, "trade.confirm", self.standby, trade=tid, version=1
        )
        self.assertTrue(self.economy.serving)
        # Not confirmed: nothing was deposited, so nothing may be paid out.
        status = await self.ask(self.alice, "trade.status", self.standby)
        self.assertFalse(status["trade"]["you"]["confirmed"])

    async def test_a_holder_that_cannot_renew_drops_its_trades(self):
        tid = (await self.open())["id"]
        await self.ask(self.alice, "trade.offer", trade=tid, uniques=[self.sword])
        await self.ask(self.alice, "trade.confirm", trade=tid, version=1)
        self.patch(self.economy.lease, "bus", UnreachableBus())
        self.turn(self.ttl / 3)
        self.assertFalse(self.economy.serving)
        self.assertEqual((len(self.economy.trades), self.economy.parties), (0, {}))
        self.assertTrue(self.economy.directory_info()["standby"])
        # The sword stays in escrow until the next holder gives it back.
        self.assertEqual(await self.holdings(self.alice), (START - 100, []))
        await self.settle(lambda: self.standby.serving, step=0.1)
        self.assertEqual(await self.holdings(self.alice), (START - 100, [self.sword]))

    async def test_a_stopping_holder_hands_over_at_once(self):
        await self.stop(self.economy)
        self.turn(self.ttl / 3)
        await self.settle(lambda: self.standby.serving)
        self.assertEqual((await self.open(self.standby))["state"], "open")

    async def test_a_call_to_nobody_is_unavailable(self):
        self.economy.lease._loop.stop()
        self.turn(self.ttl * 2 / 3)
        e = await self.refused(
            codes.UNAVAILABLE, self.alice, "trade.status", self.standby, wait=RELAY_TIMEOUT
        )
        self.assertIsNotNone(e.retry_after)


class ProcessTests(unittest.TestCase):
    """The economy's process kind, its plugin, the gateway's routes and the standalone server."""

    CLUSTER = """
[bus]
backend = "redis"

[processes.gateway-1]
kind = "gateway"
client = "tcp:0"

[processes.economy]
kind = "economy"
rpc = "tcp:7999:interface=127.0.0.1"
"""

    def test_an_economy_process_needs_the_economy(self):
        with self.assertRaises(ConfigError) as caught:
            economy_config(self, processes=self.CLUSTER, enabled=False)
        self.assertEqual(caught.exception.path, ("economy", "enabled"))
        self.assertIn("'economy' is an economy process", str(caught.exception))
        self.assertTrue(caught.exception.file.endswith("mmo.toml"))

    def test_a_cluster_without_an_economy_process(self):
        """Game code may use the ledger with no economy process: no route to one."""
        config = economy_config(self, processes=self.CLUSTER.split("[processes.economy]")[0])
        routes = gateway_routes(config, config.process("gateway-1"), MemoryReactorClock())
        self.assertEqual(routes, [])

    def test_the_plugin_builds_a_cluster_process(self):
        config = economy_config(self, processes=self.CLUSTER)
        certs.generate(config)
        routes = gateway_routes(config, config.process("gateway-1"), MemoryReactorClock())
        self.assertEqual(
            [(r.name, r.prefixes) for r in routes], [("economy", EconomyService.prefixes)]
        )
        options = SimpleNamespace(config=config, process=config.process("economy"))
        top = economy_tap.makeService(options, reactor=MemoryReactorClock())
        [service] = [r for r in top.resources if isinstance(r, EconomyService)]
        self.assertEqual(service.lease.ttl, 10.0)
        self.assertEqual(PLUGINS["economy"], "mmo-economy")
        # It learns who is online from the gateways once started.
        [seeding] = [r for r in top.resources if isinstance(r, SessionSeeding)]
        self.assertIs(seeding.service, service)

    def standalone(self, enabled: bool):
        config = economy_config(
            self,
            processes='[processes.mmo]\nkind = "mmo"\nclient = "tcp:0"\n',
            enabled=enabled,
            extra="trade_lease = 4.0",
        )
        certs.generate(config)
        options = SimpleNamespace(config=config, process=config.process("mmo"))
        top = standalone_tap.makeService(options, reactor=MemoryReactorClock())
        # One process holds the gateway too: there is nobody to ask.
        self.assertFalse([r for r in top.resources if isinstance(r, SessionSeeding)])
        return [r for r in top.resources if isinstance(r, EconomyService)]

    def test_the_standalone_runs_the_economy_when_enabled(self):
        [service] = self.standalone(True)
        self.assertEqual(service.lease.ttl, 4.0)
        self.assertEqual(self.standalone(False), [])


class TwistdTests(unittest.TestCase):
    """A cluster's economy process, started by twistd, answers through a gateway."""

    timeout = 120

    async def test_wallet_through_a_gateway(self):
        processes = (("login", "login"), ("gateway-1", "gateway"), ("economy", "economy"))
        cluster = await spawn_cluster(self, processes, TWISTD_SETTINGS)
        ports = cluster.ports

        def client_of(name: str):
            return connect(reactor, "127.0.0.1", ports[name], ca=cluster.ca, hostname="localhost")

        login = await client_of("login")
        await login.request("register", name="Alice", password=PASSWORD)
        ticket = await login.request("login", name="Alice", password=PASSWORD)
        await login.close()
        client = await client_of("gateway-1")
        self.addCleanup(client.close)
        await client.request("auth", ticket=ticket["ticket"])

        async def paid():
            wallet = await client.request("wallet.get")
            return wallet["currencies"]["gold"]["balance"] == 1000

        # The start credit is paid on the session's start, beside the request.
        await until(paid)
        wallet = await client.request("wallet.get")
        self.assertEqual(wallet["currencies"]["gold"]["shown"], "10.00")
        status = await client.request("trade.status")
        self.assertEqual(status, {"trade": None})
        with self.assertRaises(ServerError) as caught:
            await client.request("trade.open", **{"with": "Nobody"})
        self.assertEqual(caught.exception.code, codes.PLAYER_OFFLINE)


#: The twistd cluster's settings: the cluster tests' (a quick login, Redis), an economy.
TWISTD_SETTINGS = (
    CLUSTER_SETTINGS
    + """
[economy]
enabled = true

[economy.currencies.gold]
decimals = 2
start = 1000
"""
)
