"""
Tests of the money-supply metrics (L{mmo.economy.metrics}) and of the
price index (L{mmo.economy.prices}): cases checked by hand, and properties
against brute-force formulas.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from mmo.economy import metrics, prices
from mmo.stats import nearest_rank, percentile
from mmo.store.common_economy import Leg, Posting

BOUNDED = settings(max_examples=200, deadline=None)

GOLD = "c:gold"

KEYS = itertools.count()


def posting(legs, reason="", at=0.0):
    """A ledger posting of C{legs} (L{Leg}s or C{(account, asset, amount)} triples)."""
    legs = tuple(leg if isinstance(leg, Leg) else Leg(*leg) for leg in legs)
    return Posting(f"k{next(KEYS)}", reason, legs, at)


def reward(player, amount, at=0.0, reason="quest"):
    """A faucet pays C{player}."""
    return posting(((f"faucet:{reason}", GOLD, -amount), (player, GOLD, amount)), reason, at)


def buy(player, item, count, price, at=0.0):
    """C{player} buys C{count} of stackable C{item} from the smith for C{price} in all."""
    return posting(
        (
            (player, GOLD, -price),
            ("sink:smith", GOLD, price),
            ("faucet:smith", f"i:{item}", -count),
            (player, f"i:{item}", count),
        ),
        "shop.buy",
        at,
    )


def sell(player, item, count, price, at=0.0):
    """C{player} sells C{count} of C{item} to the smith for C{price} in all."""
    return posting(
        (
            (player, f"i:{item}", -count),
            ("sink:smith", f"i:{item}", count),
            ("faucet:smith", GOLD, -price),
            (player, GOLD, price),
        ),
        "shop.sell",
        at,
    )


def trade(buyer, seller, item, count, price, at=0.0):
    """C{buyer} pays C{seller} C{price} for C{count} of C{item}."""
    return posting(
        (
            (buyer, GOLD, -price),
            (seller, GOLD, price),
            (seller, f"i:{item}", -count),
            (buyer, f"i:{item}", count),
        ),
        "trade",
        at,
    )


def brute_gini(values):
    """The Gini coefficient by its definition: sum |x_i - x_j| / (2 n^2 mean)."""
    values = [max(0, v) for v in values]
    total = sum(values)
    if not values or not total:
        return 0.0
    return sum(abs(a - b) for a in values for b in values) / (2 * len(values) * total)


class GiniTests(unittest.TestCase):
    def test_equal_balances(self):
        self.assertEqual(metrics.gini([50] * 7), 0.0)

    def test_one_holds_everything(self):
        for n in (1, 2, 5, 100):
            self.assertAlmostEqual(metrics.gini([0] * (n - 1) + [1000]), (n - 1) / n)

    def test_by_hand(self):
        # |1 - 3| twice, over 2 * 2 * 4.
        self.assertAlmostEqual(metrics.gini([3, 1]), 0.25)

    def test_nothing_to_share(self):
        self.assertEqual(metrics.gini([]), 0.0)
        self.assertEqual(metrics.gini([0, 0, 0]), 0.0)

    def test_debts_count_as_nothing(self):
        self.assertAlmostEqual(metrics.gini([-500, 0, 100]), metrics.gini([0, 0, 100]))

    @BOUNDED
    @given(st.lists(st.integers(-1000, 10**12), max_size=60))
    def test_against_definition(self, values):
        self.assertAlmostEqual(metrics.gini(values), brute_gini(values), places=9)
        self.assertTrue(0.0 <= metrics.gini(values) < 1.0)


class PercentileTests(unittest.TestCase):
    def test_by_hand(self):
        self.assertEqual([percentile(range(1, 101), f) for f in (0.1, 0.5, 0.99)], [10, 50, 99])
        self.assertEqual(percentile([7], 0.5), 7)
        self.assertEqual(percentile([], 0.5), 0.0)
        self.assertTrue(math.isnan(percentile([], 0.5, empty=float("nan"))))

    @BOUNDED
    @given(st.lists(st.integers(-(10**9), 10**9), min_size=1, max_size=60), st.floats(0.0, 1.0))
    def test_against_definition(self, values, fraction):
        """The smallest value with at least C{fraction} of the values at or below it."""
        expected = min(
            v for v in values if sum(1 for w in values if w <= v) >= fraction * len(values)
        )
        self.assertEqual(nearest_rank(sorted(values), fraction), expected)


class DistributionTests(unittest.TestCase):
    def test_players_only(self):
        balances = {f"player:{i}": i for i in range(1, 101)}
        balances.update({"escrow:t1": 10**6, "faucet:quest": -(10**6), "vendor:smith": 5})
        found = metrics.distribution(balances)
        self.assertEqual(found.players, 100)
        self.assertEqual(found.percentiles, {"p10": 10, "p50": 50, "p90": 90, "p99": 99})
        self.assertAlmostEqual(found.gini, brute_gini(range(1, 101)))

    def test_no_players(self):
        found = metrics.distribution({})
        self.assertEqual((found.players, found.gini), (0, 0.0))
        self.assertEqual(set(found.percentiles.values()), {0})


class FlowTests(unittest.TestCase):
    def test_faucets_and_sinks_by_reason(self):
        moved = metrics.flows(
            [
                reward("player:a", 100),
                reward("player:b", 40, reason="daily"),
                buy("player:a", "potion", 2, 30),
                sell("player:b", "pelt", 1, 5),
            ],
            GOLD,
        )
        self.assertEqual((moved.inflow, moved.outflow, moved.net), (145, 30, 115))
        self.assertEqual(moved.inflow_by_reason, {"quest": 100, "daily": 40, "shop.sell": 5})
        self.assertEqual(moved.outflow_by_reason, {"shop.buy": 30})
        self.assertEqual(moved.volume, 0)

    def test_volume_between_holders(self):
        """A trade circulates its price; so does escrow's payout, not the deposit."""
        deposit = posting((("player:a", GOLD, -70), ("escrow:t1", GOLD, 70)), "trade.offer")
        payout = posting((("escrow:t1", GOLD, -70), ("player:b", GOLD, 70)), "trade.commit")
        moved = metrics.flows(
            [trade("player:a", "player:b", "sword", 1, 100), deposit, payout], GOLD
        )
        self.assertEqual((moved.volume, moved.inflow, moved.outflow), (170, 0, 0))
        self.assertEqual(moved.changes, ())

    def test_other_assets_ignored(self):
        gems = posting((("faucet:quest", "c:gems", -5), ("player:a", "c:gems", 5)), "quest")
        self.assertEqual(metrics.flows([gems], GOLD).inflow, 0)

    def test_supply_leaves_faucets_and_sinks_out(self):
        balances = {
            "player:a": 100,
            "escrow:t": 20,
            "vendor:smith": 3,
            "faucet:q": -150,
            "sink:s": 27,
        }
        self.assertEqual(metrics.supply(balances), 123)

    def test_average_supply_weighs_by_time(self):
        # 1000 for the first half of [0, 60), 1100 for the second.
        self.assertEqual(metrics.average_supply(1000, [(30.0, 100)], 0.0, 60.0), 1050.0)
        # Changes stamped outside the interval count at its edges.
        self.assertEqual(metrics.average_supply(1000, [(-5.0, 60)], 0.0, 60.0), 1060.0)
        self.assertEqual(metrics.average_supply(1000, [(99.0, 60)], 0.0, 60.0), 1000.0)
        self.assertRaises(ValueError, metrics.average_supply, 1, [], 5.0, 5.0)

    def test_velocity(self):
        # 500 changed hands over a minute on a supply of 1000: half of it a
        # minute, 30 times an hour.
        self.assertEqual(metrics.velocity(500, 1000.0, 60.0), 30.0)
        self.assertEqual(metrics.velocity(500, 0.0, 60.0), 0.0)

    def test_growth_per_hour(self):
        self.assertAlmostEqual(metrics.growth_per_hour(1000, 1010, 60.0), 0.6)
        self.assertAlmostEqual(metrics.growth_per_hour(1000, 900, 3600.0), -0.1)
        self.assertEqual(metrics.growth_per_hour(0, 10, 60.0), math.inf)
        self.assertEqual(metrics.growth_per_hour(0, 0, 60.0), 0.0)

    @BOUNDED
    @given(st.data())
    def test_supply_moves_by_the_net_flow(self, data):
        """
        Random balanced postings: the supply after them differs from the one
        before by inflow less outflow; the average lies between the extremes
        the supply went through.
        """
        accounts = ["player:a", "player:b", "escrow:t", "vendor:v", "faucet:f", "sink:s"]
        balances = Counter({"player:a": 500, "player:b": 300})
        start = metrics.supply(balances)
        postings, seen = [], [start]
        for at in sorted(data.draw(st.lists(st.floats(0, 60), max_size=20))):
            source, target = data.draw(st.permutations(accounts))[:2]
            amount = data.draw(st.integers(1, 1000))
            postings.append(posting(((source, GOLD, -amount), (target, GOLD, amount)), "r", at))
            balances[source] -= amount
            balances[target] += amount
            seen.append(metrics.supply(balances))
        moved = metrics.flows(postings, GOLD)
        self.assertEqual(metrics.supply(balances) - start, moved.net)
        self.assertEqual(sum(change for _, change in moved.changes), moved.net)
        self.assertGreaterEqual(moved.volume, 0)
        average = metrics.average_supply(start, moved.changes, 0.0, 60.0)
        self.assertTrue(min(seen) - 1e-6 <= average <= max(seen) + 1e-6)


class SalesTests(unittest.TestCase):
    def test_shop_and_trade_prices(self):
        found = prices.sales(
            [
                buy("player:a", "potion", 2, 30),
                sell("player:b", "pelt", 3, 15),
                trade("player:a", "player:b", "potion", 1, 12),
            ],
            GOLD,
        )
        self.assertEqual(
            found,
            [
                prices.Sale("potion", 2, 30),
                prices.Sale("pelt", 3, 15),
                prices.Sale("potion", 1, 12),
            ],
        )
        self.assertEqual(found[0].unit_price, 15.0)

    def test_not_sales(self):
        """Rewards, loot, gifts and bundles of several items have no unit price."""
        loot = posting((("faucet:loot", "i:pelt", -1), ("player:a", "i:pelt", 1)), "loot")
        quest = posting(reward("player:a", 50).legs + loot.legs, "quest")
        gift = posting((("player:a", GOLD, -5), ("player:b", GOLD, 5)), "gift")
        bundle = posting(
            trade("player:a", "player:b", "potion", 1, 40).legs
            + (("player:b", "i:pelt", -1), ("player:a", "i:pelt", 1)),
            "trade",
        )
        other = posting(buy("player:a", "potion", 1, 5).legs, "shop.buy")
        found = prices.sales([reward("player:a", 9), loot, quest, gift, bundle], GOLD)
        self.assertEqual(found, [])
        self.assertEqual(prices.sales([other], "c:gems"), [])

    def test_unique_items(self):
        """Unique instances are priced when C{item_of} names their item."""
        sword = posting(
            (
                ("player:a", GOLD, -100),
                ("sink:smith", GOLD, 100),
                ("vendor:smith", "u:7f3a", -1),
                ("player:a", "u:7f3a", 1),
            ),
            "shop.buy",
        )
        self.assertEqual(prices.sales([sword], GOLD), [])

        def item_of(asset):
            return {"u:7f3a": "iron-sword"}.get(asset) or prices.stackable_item(asset)

        self.assertEqual(prices.sales([sword], GOLD, item_of), [prices.Sale("iron-sword", 1, 100)])


class PriceIndexTests(unittest.TestCase):
    def test_one_item(self):
        index = prices.PriceIndex()
        self.assertEqual(index.step([prices.Sale("potion", 2, 20)]), 100.0)
        self.assertEqual(index.step([prices.Sale("potion", 1, 20)]), 200.0)
        self.assertEqual(index.step([]), 200.0)
        self.assertEqual(index.step([prices.Sale("potion", 4, 40)]), 100.0)

    def test_fisher_by_hand(self):
        before = {"a": (10.0, 1), "b": (20.0, 1)}
        after = {"a": (20.0, 1), "b": (20.0, 3), "c": (5.0, 9)}
        # Laspeyres (20 + 20) / (10 + 20), Paasche (20 + 60) / (10 + 60); c is new.
        self.assertAlmostEqual(prices.fisher_link(before, after), math.sqrt(40 / 30 * 80 / 70))
        self.assertIsNone(prices.fisher_link(before, {"c": (5.0, 1)}))

    def test_chained_over_a_changing_basket(self):
        """Each link compares items sold in both intervals; a new item joins at its next link."""
        index = prices.PriceIndex()
        index.step([prices.Sale("a", 1, 10)])
        index.step([prices.Sale("a", 1, 20), prices.Sale("b", 1, 50)])
        self.assertEqual(index.level, 200.0)
        index.step([prices.Sale("b", 1, 25)])
        self.assertEqual(index.level, 100.0)
        index.step([prices.Sale("c", 1, 999)])
        self.assertEqual(index.level, 100.0)

    def test_unit_values_weigh_by_volume(self):
        values = prices.unit_values([prices.Sale("a", 1, 10), prices.Sale("a", 3, 90)])
        self.assertEqual(values, {"a": (25.0, 4)})

    @BOUNDED
    @given(
        st.dictionaries(
            st.sampled_from("abcdef"),
            st.tuples(st.integers(1, 10**6), st.integers(1, 1000)),
            min_size=1,
        ),
        st.integers(1, 1000),
        st.integers(1, 1000),
    )
    def test_proportional_prices(self, basket, numerator, denominator):
        """Every price scaled by k, whatever the volumes: the link is k."""
        factor = numerator / denominator
        before = {item: (float(p), q) for item, (p, q) in basket.items()}
        after = {item: (p * factor, (q * 7) % 13 + 1) for item, (p, q) in before.items()}
        self.assertAlmostEqual(prices.fisher_link(before, after), factor)


class SupplyTrackerTests(unittest.TestCase):
    def tracker(self, **kwargs):
        return metrics.SupplyTracker("gold", supply_alarm=0.10, **kwargs)

    def test_one_interval(self):
        tracker = self.tracker()
        postings = [
            reward("player:a", 100, at=30.0),
            buy("player:b", "potion", 2, 20, at=45.0),
            buy("player:a", "potion", 1, 20, at=50.0),
            trade("player:a", "player:b", "potion", 1, 15, at=55.0),
        ]
        balances = {"player:a": 565, "player:b": 515, "faucet:quest": -100, "sink:smith": 40}
        figures = tracker.record(0.0, 60.0, postings, balances)
        self.assertEqual((figures.supply, figures.supply_start), (1080, 1020))
        self.assertEqual((figures.inflow, figures.outflow), (100, 40))
        self.assertEqual(figures.inflow_by_reason, {"quest": 100})
        self.assertEqual(figures.outflow_by_reason, {"shop.buy": 40})
        # 1020 for 30 s, 1120 for 15 s, 1100 for 5 s, 1080 for 10 s.
        self.assertAlmostEqual(
            figures.average_supply, (1020 * 30 + 1120 * 15 + 1100 * 5 + 1080 * 10) / 60
        )
        self.assertEqual(figures.volume, 15)
        self.assertAlmostEqual(figures.velocity, 15 / figures.average_supply * 60)
        self.assertEqual(figures.distribution.players, 2)
        self.assertEqual((figures.sales, figures.price_index), (3, 100.0))
        self.assertAlmostEqual(figures.growth_per_hour, 60 / 1020 * 60)
        self.assertTrue(figures.alarm)
        self.assertEqual(figures.discrepancy, 0)
        self.assertEqual(tracker.latest, figures)
        self.assertEqual(figures.as_dict()["distribution"]["percentiles"]["p50"], 515)

    def test_history_is_bounded(self):
        tracker = self.tracker(keep=3)
        for minute in range(10):
            tracker.record(minute * 60.0, (minute + 1) * 60.0, [], {"player:a": 100})
        self.assertEqual([f.start for f in tracker.history], [420.0, 480.0, 540.0])
        self.assertRaises(ValueError, self.tracker, keep=0)

    def test_steady_supply_raises_no_alarm(self):
        tracker = self.tracker()
        figures = tracker.record(0.0, 60.0, [], {"player:a": 100})
        self.assertEqual((figures.growth_per_hour, figures.alarm), (0.0, False))

    def test_growth_over_the_last_hour(self):
        """
        A supply growing by 5 a minute: the growth is measured from the
        start of the oldest interval of the last hour (1150) to now (1450),
        26%, under this currency's limit of 50%.
        """
        tracker = metrics.SupplyTracker("gold", supply_alarm=0.5, keep=120)
        supply = 1000
        for minute in range(90):
            supply += 5
            postings = [reward("player:a", 5, at=minute * 60.0 + 1)]
            figures = tracker.record(
                minute * 60.0, (minute + 1) * 60.0, postings, {"player:a": supply}
            )
        # The oldest interval of the last hour starts at minute 30, at 1150.
        self.assertAlmostEqual(figures.growth_per_hour, (1450 - 1150) / 1150)
        self.assertFalse(figures.alarm)

    def test_discrepancy_shows_value_made_outside_postings(self):
        tracker = self.tracker()
        tracker.record(0.0, 60.0, [], {"player:a": 100})
        figures = tracker.record(60.0, 120.0, [reward("player:a", 10, at=70.0)], {"player:a": 125})
        self.assertEqual(figures.discrepancy, 15)
        after_a_gap = tracker.record(300.0, 360.0, [], {"player:a": 999})
        self.assertEqual(after_a_gap.discrepancy, 0)

    def test_bad_intervals(self):
        tracker = self.tracker()
        self.assertRaises(ValueError, tracker.record, 60.0, 60.0, [], {})
        tracker.record(60.0, 120.0, [], {})
        self.assertRaises(ValueError, tracker.record, 100.0, 180.0, [], {})
        self.assertEqual(len(tracker.history), 1)

    def test_resumed_tracker_goes_on_as_the_first_would(self):
        """
        A tracker resumed (in another process) from the first's figures and
        price chain, as plain data, records the next interval as the first
        one does: growth, discrepancy and price index alike.
        """
        first = self.tracker()
        first.record(0.0, 60.0, [buy("player:a", "potion", 2, 20, at=10.0)], {"player:a": 100})
        first.record(60.0, 120.0, [reward("player:a", 10, at=70.0)], {"player:a": 110})
        resumed = self.tracker()
        resumed.resume(
            [metrics.IntervalFigures.from_dict(f.as_dict()) for f in first.history],
            first.saved(),
        )
        step = ([buy("player:a", "potion", 1, 15, at=130.0)], {"player:a": 95})
        self.assertEqual(resumed.record(120.0, 180.0, *step), first.record(120.0, 180.0, *step))
        self.assertEqual(list(resumed.history), list(first.history))
        with self.assertRaises(ValueError):
            resumed.resume([], None)
        with self.assertRaises(ValueError):
            metrics.SupplyTracker("gems", 0.1).resume(list(first.history), None)
