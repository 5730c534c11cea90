"""
mmo-bot's C{trader} scenario against a fake economy on a fake clock: bots
shop and trade in pairs, purchases are sent again with the same request id
after C{unavailable} or a lost reply, stale versions and busy or absent
partners are played through, a trade's end is counted once, and an error
that play does not explain fails the run.  The real service is in
C{tests/test_economy_e2e.py}.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict

from twisted.internet import defer, task
from twisted.trial import unittest

from mmo.bot import scenario
from mmo.bot.stats import format_report, problems
from mmo.bot.swarm import PLAYS, Options, Swarm
from mmo.client import ServerError
from tests.support import write_config

#: Seconds the fake economy takes to answer.
LATENCY = 0.01

START = 1000
POTION, CAP = "health-potion", "leather-cap"
OFFERS = [
    {"item": POTION, "name": "Health potion", "price": 150, "sell": 50, "stock": None},
    {"item": CAP, "name": "Leather cap", "price": 400, "sell": 100, "stock": None},
]


def empty() -> dict:
    return {"currencies": {}, "items": {}, "uniques": []}


class FakeEconomy:
    """
    The economy's client messages (the contract of C{docs/economy.md})
    over a few dicts: one currency, one vendor selling a stackable item
    and a unique one, trades settled at the second confirmation.

    @ivar faults: Request type -> error codes its next requests get (a
        C{"lost"} is applied, and its reply never comes).
    """

    def __init__(self, clock):
        self.clock = clock
        self.clients: dict[str, FakeClient] = {}
        self.names: dict[str, str] = {}
        self.gold: dict[str, int] = defaultdict(lambda: START)
        self.items: dict[str, Counter] = defaultdict(Counter)
        self.uniques: dict[str, set] = defaultdict(set)
        self.till = 0
        self.applied: dict[tuple, dict] = {}
        self.trades: dict[str, dict] = {}
        self.faults: dict[str, list[str]] = defaultdict(list)
        self.requests: list[tuple[str, str, dict]] = []
        self._ids = itertools.count(1)

    def connect(self, player: str, name: str) -> FakeClient:
        client = self.clients[player] = FakeClient(self, player)
        self.names[name] = player
        return client

    # -- requests --------------------------------------------------------------

    def handle(self, player: str, kind: str, fields: dict) -> defer.Deferred:
        self.requests.append((player, kind, fields))
        d = defer.Deferred()
        fault = self.faults[kind].pop(0) if self.faults[kind] else None
        if fault is not None and fault != "lost":
            if fault == "stale_version":
                # The other side offered again meanwhile.
                trade = self.trades[fields["trade"]]
                self.clock.callLater(LATENCY, self.deliver, self.change(trade))
            error = ServerError(fault, f"{kind}: {fault}")
            self.clock.callLater(LATENCY, d.errback, error)
            return d
        try:
            reply, pushes = getattr(self, kind.replace(".", "_"))(player, **fields)
        except ServerError as e:
            self.clock.callLater(LATENCY, d.errback, e)
            return d
        if fault != "lost":
            self.clock.callLater(LATENCY, d.callback, reply)
        self.clock.callLater(LATENCY, self.deliver, pushes)
        return d

    def deliver(self, pushes) -> None:
        for player, kind, fields in pushes:
            self.clients[player].push(kind, fields)

    def wallet(self, player: str) -> dict:
        return {"currencies": {"gold": {"balance": self.gold[player], "shown": "", "decimals": 2}}}

    def wallet_get(self, player):
        return self.wallet(player), []

    def inventory_get(self, player):
        uniques = [
            {"id": u, "item": u.partition(".")[0], "props": {}} for u in self.uniques[player]
        ]
        items = {item: n for item, n in self.items[player].items() if n}
        return {"items": items, "uniques": uniques, "load": 0, "limit": 40, "mode": "slots"}, []

    def trade_status(self, player):
        trade = self.open_trade_of(player)
        return {"trade": self.view(trade, player) if trade else None}, []

    def shop_list(self, player):
        return {"shops": [{"shop": "smith", "name": "Smith", "currency": "gold"}]}, []

    def shop_offers(self, player, shop):
        return {"shop": shop, "name": "Smith", "currency": "gold", "offers": OFFERS}, []

    def shop_buy(self, player, request, shop, item, count=1):
        def buy():
            [offer] = [o for o in OFFERS if o["item"] == item]
            if self.gold[player] < offer["price"] * count:
                raise ServerError("insufficient_funds", "not enough gold")
            if item == CAP:
                self.uniques[player].add(f"{CAP}.{next(self._ids)}")
            else:
                self.items[player][item] += count
            return -offer["price"] * count

        return self.once(("buy", player, request), player, shop, item, count, buy)

    def shop_sell(self, player, request, shop, item, count=1):
        def sell():
            [offer] = [o for o in OFFERS if o["item"] == item.partition(".")[0]]
            if item in self.uniques[player]:
                self.uniques[player].discard(item)
            elif self.items[player][item] >= count:
                self.items[player][item] -= count
            else:
                raise ServerError("insufficient_funds", "not held")
            return offer["sell"] * count

        return self.once(("sell", player, request), player, shop, item, count, sell)

    def once(self, key, player, shop, item, count, apply):
        """A purchase or sale, applied once per request id: C{apply()} gives the player's gain."""
        if key not in self.applied:
            paid = apply()
            self.gold[player] += paid
            self.till -= paid
            reply = {"shop": shop, "item": item, "count": count, "seq": len(self.applied)}
            self.applied[key] = reply
        return {**self.applied[key], **self.wallet(player)}, []

    # -- trades --------------------------------------------------------------------

    def open_trade_of(self, player):
        for trade in self.trades.values():
            if trade["state"] == "open" and player in trade["players"]:
                return trade
        return None

    @staticmethod
    def other(trade, player):
        a, b = trade["players"]
        return b if player == a else a

    def view(self, trade, player) -> dict:
        other = self.other(trade, player)
        names = {p: n for n, p in self.names.items()}

        def side(who):
            return {
                "player": who,
                "name": names[who],
                "offer": trade["offers"][who],
                "confirmed": who in trade["confirmed"],
            }

        return {
            "id": trade["id"],
            "state": trade["state"],
            "version": trade["version"],
            "you": side(player),
            "them": side(other),
        }

    def both(self, trade, kind, **more):
        return [(p, kind, {"trade": self.view(trade, p), **more}) for p in trade["players"]]

    def party(self, player, trade_id):
        trade = self.trades.get(trade_id)
        if trade is None or trade["state"] != "open":
            raise ServerError("not_found", "no such trade")
        if player not in trade["players"]:
            raise ServerError("not_allowed", "not a party")
        return trade

    def trade_open(self, player, **fields):
        other = self.names.get(fields["with"])
        if other is None or other not in self.clients:
            raise ServerError("player_offline", "nobody of that name")
        if self.open_trade_of(player) or self.open_trade_of(other):
            raise ServerError("in_trade", "already trading")
        trade_id = f"t{next(self._ids)}"
        trade = self.trades[trade_id] = {
            "id": trade_id,
            "players": (player, other),
            "offers": {player: empty(), other: empty()},
            "confirmed": set(),
            "version": 0,
            "state": "open",
        }
        return {"trade": self.view(trade, player)}, self.both(trade, "trade.opened")

    def change(self, trade) -> list:
        trade["version"] += 1
        trade["confirmed"].clear()
        return self.both(trade, "trade.updated")

    def trade_offer(self, player, trade, currencies=None, items=None, uniques=None):
        trade = self.party(player, trade)
        offer = {"currencies": currencies or {}, "items": items or {}, "uniques": uniques or []}
        trade["offers"][player] = offer
        pushes = self.change(trade)
        return {"trade": self.view(trade, player)}, pushes

    def holds(self, player, offer) -> bool:
        return (
            self.gold[player] >= offer["currencies"].get("gold", 0)
            and all(self.items[player][i] >= n for i, n in offer["items"].items())
            and set(offer["uniques"]) <= self.uniques[player]
        )

    def trade_confirm(self, player, trade, version):
        trade = self.party(player, trade)
        if version != trade["version"]:
            raise ServerError("stale_version", "the offers changed")
        if not self.holds(player, trade["offers"][player]):
            raise ServerError("insufficient_funds", "cannot cover the offer")
        trade["confirmed"].add(player)
        if len(trade["confirmed"]) < 2:
            return {"trade": self.view(trade, player)}, self.both(trade, "trade.updated")
        a, b = trade["players"]
        for giver, taker in ((a, b), (b, a)):
            offer = trade["offers"][giver]
            gold = offer["currencies"].get("gold", 0)
            self.gold[giver] -= gold
            self.gold[taker] += gold
            for item, n in offer["items"].items():
                self.items[giver][item] -= n
                self.items[taker][item] += n
            for unique in offer["uniques"]:
                self.uniques[giver].discard(unique)
                self.uniques[taker].add(unique)
        trade["state"] = "settled"
        return {"trade": self.view(trade, player)}, self.both(trade, "trade.settled")

    def trade_cancel(self, player, trade):
        trade = self.party(player, trade)
        trade["state"] = "cancelled"
        pushes = self.both(trade, "trade.cancelled", why="cancelled")
        return {"trade": self.view(trade, player)}, pushes

    def leave(self, player) -> None:
        """The player's session ended: his trade is cancelled, the other told why."""
        trade = self.open_trade_of(player)
        if trade is not None:
            trade["state"] = "cancelled"
            other = self.other(trade, player)
            view = self.view(trade, other)
            self.clients[other].push("trade.cancelled", {"trade": view, "why": "left"})
        del self.clients[player]

    def crash(self) -> None:
        """The process serving trades dies: its open trades are gone, without a push."""
        for trade in self.trades.values():
            if trade["state"] == "open":
                trade["state"] = "gone"

    def total_gold(self) -> int:
        return sum(self.gold.values()) + self.till


class FakeClient:
    """What a bot's play uses of its client: requests and pushes."""

    def __init__(self, economy: FakeEconomy, player: str):
        self.economy = economy
        self.player = player
        self.closing = False
        self.handlers = defaultdict(list)

    def request(self, kind, **fields):
        return self.economy.handle(self.player, kind, fields)

    def on(self, kind, handler):
        self.handlers[kind].append(handler)

    def push(self, kind, fields):
        for handler in self.handlers[kind]:
            handler({"t": kind, **fields})


class TraderTests(unittest.TestCase):
    def start(self, bots: int = 4, online=None, **params) -> Swarm:
        """
        A swarm of C{bots} trader bots on a fake clock, each in (the first
        C{online} of them connected to the fake economy), playing.
        """
        self.clock = task.Clock()
        values = {"shop": "smith", "think": 0.2, "trade_every": 1.0, "shop_every": 0.5, **params}
        options = Options("127.0.0.1", 7000, bots=bots, seed=7, progress=None)
        swarm = Swarm(self.clock, options, scenario.make("trader", values))
        self.economy = FakeEconomy(self.clock)
        self.addCleanup(self.stop, swarm)
        for bot in swarm.bots:
            bot.state, bot.display = "in", f"{bot.name}-c"
            if online is not None and bot.index >= online:
                # In, as far as the other bots know, but not at the economy.
                bot.client = FakeClient(self.economy, bot.name)
                continue
            bot.client = self.economy.connect(bot.name, bot.display)
            bot.play.attach(bot.client)
        for bot in swarm.bots[:online]:
            bot.start_scenario()
        return swarm

    def stop(self, swarm: Swarm) -> None:
        """As the run's end does: the bots stop playing and their connections close."""
        swarm.stopping = True
        for bot in swarm.bots:
            bot.stop_scenario()
            if bot.client is not None:
                bot.client.closing = True

    def run_for(self, seconds: float) -> None:
        self.clock.pump([0.05] * int(seconds / 0.05))

    def test_scenario_keys(self):
        chosen = scenario.make("trader")
        self.assertEqual(
            (chosen.shop, chosen.shop_every, chosen.sell_chance, chosen.trade_every, chosen.think),
            ("*", 2.0, 0.25, 3.0, 0.5),
        )
        path = write_config(self, 'scenario = "trader"\nshop = "smith"\nsell_chance = 1.0\n')
        self.assertEqual((scenario.load(path).shop, scenario.load(path).sell_chance), ("smith", 1))
        # Every scenario played in the lobby has its play.
        self.assertEqual(set(PLAYS), set(scenario.LOBBY))

    def test_shop_and_trade_in_pairs(self):
        swarm = self.start(bots=5, sell_chance=0.3)
        self.run_for(30)
        economy, counts = self.economy, swarm.stats.trades
        self.assertGreater(counts.purchases, 10)
        self.assertGreater(counts.sales, 0)
        # Two pairs, a trade every second or so each; the fifth bot only shops.
        self.assertGreaterEqual(counts.settled, 20)
        self.assertEqual(counts.opened, len(economy.trades))
        openers = {trade["players"][0] for trade in economy.trades.values()}
        self.assertEqual(openers, {"bot00000", "bot00002"})
        self.assertNotIn("bot00004", {p for t in economy.trades.values() for p in t["players"]})
        self.assertEqual(counts.unexplained_count(), 0)
        self.assertEqual(dict(counts.cancelled), {})
        # Each side gave something it held, currency and items.
        settled = [t for t in economy.trades.values() if t["state"] == "settled"]
        self.assertEqual(len(settled), counts.settled)
        for trade in settled:
            for offer in trade["offers"].values():
                self.assertGreater(offer["currencies"]["gold"], 0)
        self.assertTrue(
            any(o["items"] or o["uniques"] for t in settled for o in t["offers"].values())
        )
        # Only the economy's own rules moved money: none made or lost.
        self.assertEqual(economy.total_gold(), 5 * START)
        # Each purchase had its own request id.
        buys = [f["request"] for _, kind, f in economy.requests if kind == "shop.buy"]
        self.assertEqual(len(buys), len(set(buys)))
        self.assertEqual(len(buys), counts.purchases)
        report = swarm.stats.report(scenario="trader")
        trader = report["trader"]
        self.assertEqual(trader["trades"]["settled"], counts.settled)
        self.assertEqual(trader["latency"]["trade.settled"]["count"], counts.settled)
        self.assertGreater(trader["latency"]["trade.settled"]["p50_ms"], 0)
        self.assertEqual(trader["latency"]["shop.buy"]["count"], counts.purchases)
        self.assertIn(f"{counts.purchases} bought", format_report(report))
        self.assertEqual(problems(5, 5, swarm.stats), [])

    def test_purchase_retried_with_the_same_id_after_unavailable(self):
        swarm = self.start(bots=1, sell_chance=0.0, shop_every=5.0)
        self.economy.faults["shop.buy"].append("unavailable")
        self.run_for(8)
        buys = [f["request"] for _, kind, f in self.economy.requests if kind == "shop.buy"]
        self.assertGreaterEqual(len(buys), 2)
        self.assertEqual(buys[0], buys[1])
        counts = swarm.stats.trades
        self.assertEqual(counts.purchases, len(set(buys)))
        self.assertEqual((counts.retries, dict(counts.errors)), (1, {"unavailable": 1}))
        self.assertEqual(counts.unexplained_count(), 0)

    def test_lost_reply_retried_with_the_same_id_buys_once(self):
        swarm = self.start(bots=1, sell_chance=0.0, shop_every=30.0, request_timeout=1.0)
        self.economy.faults["shop.buy"].append("lost")
        self.run_for(29)
        buys = [f["request"] for _, kind, f in self.economy.requests if kind == "shop.buy"]
        self.assertEqual(len(buys), 2)
        self.assertEqual(buys[0], buys[1])
        counts = swarm.stats.trades
        self.assertEqual((counts.purchases, dict(counts.errors)), (1, {"timeout": 1}))
        self.assertEqual(counts.unexplained_count(), 0)
        # Charged once.
        [(player, wallet)] = self.economy.gold.items()
        self.assertIn(START - wallet, (150, 400))

    def test_stale_version_confirms_the_newer_one(self):
        swarm = self.start(bots=2, shop_every=100.0)
        self.economy.faults["trade.confirm"].append("stale_version")
        self.run_for(5)
        counts = swarm.stats.trades
        self.assertGreaterEqual(counts.settled, 1)
        # The other side may have confirmed the old version too, meanwhile.
        self.assertIn(counts.errors["stale_version"], (1, 2))
        self.assertEqual(counts.unexplained_count(), 0)
        [first, *_] = self.economy.trades.values()
        self.assertEqual(first["state"], "settled")
        self.assertEqual(first["version"], 3)

    def test_busy_or_absent_partner_is_tried_again(self):
        # The partner is in the swarm, not online at the economy.
        swarm = self.start(bots=2, online=1, shop_every=100.0)
        self.run_for(3.5)
        opens = [kind for _, kind, _ in self.economy.requests if kind == "trade.open"]
        self.assertGreaterEqual(len(opens), 3)
        counts = swarm.stats.trades
        self.assertEqual(counts.errors["player_offline"], len(opens))
        self.assertEqual(counts.unexplained_count(), 0)
        # Online, but busy at first: the next try opens.
        partner = swarm.bots[1]
        partner.client = self.economy.connect(partner.name, partner.display)
        partner.play.attach(partner.client)
        partner.start_scenario()
        self.economy.faults["trade.open"].append("in_trade")
        self.run_for(6)
        self.assertEqual(counts.errors["in_trade"], 1)
        self.assertGreaterEqual(counts.settled, 1)
        self.assertEqual(counts.unexplained_count(), 0)

    def test_a_partner_who_leaves_cancels_once(self):
        swarm = self.start(bots=2, shop_every=100.0, think=5.0)
        self.run_for(1.2)
        [trade] = self.economy.trades.values()
        self.assertEqual(trade["state"], "open")
        opener, partner = swarm.bots
        partner.stop_scenario()
        self.economy.leave(partner.name)
        self.assertIsNone(opener.play.trade)
        counts = swarm.stats.trades
        self.assertEqual((counts.settled, dict(counts.cancelled)), (0, {"left": 1}))
        # Its own push of the same end (had it come) does not count again.
        partner.play.cancelled({"trade": {"id": trade["id"]}, "why": "left"})
        self.assertEqual(dict(counts.cancelled), {"left": 1})
        # The opener reads its wallet again before it buys.
        self.assertIsNone(opener.play.wallet)

    def test_resumed_bot_plays_its_trade_on(self):
        """Pushes replayed before the play starts again, then its trade's status."""
        swarm = self.start(bots=2, shop_every=100.0)
        opener, partner = swarm.bots
        partner.stop_scenario()
        self.run_for(1.5)
        [trade] = self.economy.trades.values()
        # Its pushes came (replayed, say) while it was not playing: nothing scheduled.
        self.assertEqual(partner.play.trade["id"], trade["id"])
        self.assertEqual(
            trade["offers"][partner.name], {"currencies": {}, "items": {}, "uniques": []}
        )
        partner.start_scenario()
        self.run_for(2)
        self.assertEqual(trade["state"], "settled")
        self.assertEqual(swarm.stats.trades.settled, 1)

    def test_a_trade_gone_without_a_push(self):
        """The process serving trades died: the bots ask, forget it, and trade again."""
        swarm = self.start(bots=2, shop_every=0.5, think=5.0)
        self.run_for(1.2)
        [trade] = self.economy.trades.values()
        self.economy.crash()
        self.run_for(60)
        counts = swarm.stats.trades
        self.assertEqual(dict(counts.cancelled), {"gone": 1})
        self.assertGreaterEqual(counts.settled, 1)
        self.assertEqual(counts.unexplained_count(), 0)
        statuses = [player for player, kind, _ in self.economy.requests if kind == "trade.status"]
        # Once each at the start, once each for the trade that stalled.
        self.assertEqual(sorted(statuses), ["bot00000"] * 2 + ["bot00001"] * 2)

    def test_unexplained_errors_fail_the_run(self):
        swarm = self.start(bots=1, sell_chance=0.0, shop_every=5.0)
        self.economy.faults["wallet.get"].append("lost")
        self.economy.shop_offers = lambda player, shop: ({"shop": shop}, [])
        self.run_for(30)
        counts = swarm.stats.trades
        self.assertEqual(counts.purchases, 0)
        self.assertEqual(counts.unexplained["trader"]["KeyError"], counts.unexplained_count())
        # Logged, with its traceback, for whoever reads the run's output.
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), counts.unexplained_count())
        found = problems(1, 1, swarm.stats)
        self.assertEqual(len(found), 1)
        self.assertIn("unexplained errors of economy requests (trader KeyError", found[0])
        report = swarm.stats.report(scenario="trader", problems=found)
        self.assertFalse(report["ok"])
        # A lost reply of a read is sent again, and explained.
        self.assertEqual(counts.errors["timeout"], 1)

    def test_insufficient_funds_is_unexplained(self):
        swarm = self.start(bots=1, sell_chance=0.0, shop_every=5.0)
        self.economy.faults["shop.buy"].append("insufficient_funds")
        self.run_for(6)
        counts = swarm.stats.trades
        self.assertEqual(dict(counts.unexplained), {"shop.buy": Counter({"insufficient_funds": 1})})
        self.assertEqual(counts.retries, 0)
        self.assertIn("shop.buy insufficient_funds 1", problems(1, 1, swarm.stats)[0])

    def test_stopping_cancels_every_timer(self):
        swarm = self.start(bots=2)
        self.run_for(2.3)
        self.stop(swarm)
        self.run_for(1)
        pending = [c for c in self.clock.getDelayedCalls() if c.active()]
        # Only the requests in flight, answered within the latency.
        self.clock.advance(LATENCY * 2)
        self.clock.advance(swarm.scenario.request_timeout)
        self.assertEqual([c for c in self.clock.getDelayedCalls() if c.active()], [], pending)
