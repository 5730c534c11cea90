"""
The money-supply metrics of one currency (see C{docs/economy.md},
"Money-supply metrics"): from one interval's postings and the holders'
balances at its end, the supply, the flows from faucets and into sinks,
the velocity of circulation, the distribution of players' balances and a
price index; L{SupplyTracker} keeps them over successive intervals and
raises the alarm when the supply grows faster than the currency allows.

Pure: plain data in, frozen records out, no store and no clock.
"""

from __future__ import annotations

import math
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

from mmo.economy.postings import PostingLike, is_faucet, is_player, is_sink, is_system, legs_of
from mmo.economy.prices import PriceIndex, sales, stackable_item
from mmo.stats import nearest_rank

#: Seconds in the hour that growth and velocity are given per.
HOUR = 3600.0

#: The percentiles of players' balances reported, by name.
PERCENTILES = (("p10", 0.10), ("p50", 0.50), ("p90", 0.90), ("p99", 0.99))


@dataclass(frozen=True)
class Flows:
    """
    What one interval's postings moved of one currency.

    @ivar inflow: Created by faucets (what they gave, less what came back).
    @ivar outflow: Destroyed in sinks.
    @ivar inflow_by_reason: C{inflow} by the postings' reasons.
    @ivar outflow_by_reason: C{outflow} by the postings' reasons.
    @ivar volume: Circulation: what players received from holders other
        than faucets (other players, escrow at a trade's commit, vendors).
    @ivar changes: C{(at, change of the supply)} of each posting that
        changed the supply, in the postings' order.
    """

    inflow: int
    outflow: int
    inflow_by_reason: dict[str, int]
    outflow_by_reason: dict[str, int]
    volume: int
    changes: tuple[tuple[float, int], ...]

    @property
    def net(self) -> int:
        """The change of the supply: inflow less outflow."""
        return self.inflow - self.outflow


def flows(postings: Iterable[PostingLike], currency: str) -> Flows:
    """
    The L{Flows} of C{currency} (its ledger asset, C{c:gold}) in C{postings}.
    """
    inflow = outflow = volume = 0
    by_inflow: dict[str, int] = defaultdict(int)
    by_outflow: dict[str, int] = defaultdict(int)
    changes = []
    for posting in postings:
        created = destroyed = received = 0
        for account, asset, amount in legs_of(posting):
            if asset != currency:
                continue
            if is_faucet(account):
                created -= amount
            elif is_sink(account):
                destroyed += amount
            elif is_player(account) and amount > 0:
                received += amount
        # What players received, less what a faucet gave in the same posting,
        # is what reached them from other holders.
        volume += max(0, received - max(0, created))
        if created or destroyed:
            inflow += created
            outflow += destroyed
            if created:
                by_inflow[posting.reason] += created
            if destroyed:
                by_outflow[posting.reason] += destroyed
            if created != destroyed:
                changes.append((posting.at, created - destroyed))
    return Flows(inflow, outflow, dict(by_inflow), dict(by_outflow), volume, tuple(changes))


def supply(balances: Mapping[str, int]) -> int:
    """The supply: what every account but faucets and sinks holds."""
    return sum(amount for account, amount in balances.items() if not is_system(account))


def average_supply(
    start_supply: int, changes: Sequence[tuple[float, int]], start: float, end: float
) -> float:
    """
    The supply averaged over the time of C{[start, end)}: it is
    C{start_supply} at C{start} and steps by each of C{changes} (L{Flows})
    at its time (clamped into the interval).
    """
    length = end - start
    if length <= 0:
        raise ValueError(f"an interval must end after it starts: [{start}, {end})")
    weighted = sum(change * (end - min(max(at, start), end)) for at, change in changes)
    return start_supply + weighted / length


def velocity(volume: int, average: float, seconds: float) -> float:
    """
    Circulation per hour: the times the average supply changed hands
    between holders, C{volume / average * 3600 / seconds}; 0 without supply.
    """
    if average <= 0:
        return 0.0
    return volume / average * HOUR / seconds


def gini(values: Iterable[int]) -> float:
    """
    The Gini coefficient of C{values}: the mean absolute difference between
    two of them over twice their mean; 0 when all are equal, C{(n - 1) / n}
    when one holds everything.  Negative values (credit) count as 0: a debt
    is no share of the wealth.  0 for no values or a zero total.
    """
    ordered = sorted(max(0, value) for value in values)
    count, total = len(ordered), sum(ordered)
    if not count or not total:
        return 0.0
    # With ascending x_1..x_n: G = (2 sum(i x_i) - (n + 1) sum(x)) / (n sum(x)),
    # exact in integers until the last division.
    ranked = sum(rank * value for rank, value in enumerate(ordered, 1))
    return (2 * ranked - (count + 1) * total) / (count * total)


@dataclass(frozen=True)
class Distribution:
    """
    How players' balances of a currency are spread.

    @ivar players: Balances counted.
    @ivar gini: Their L{gini} coefficient.
    @ivar percentiles: C{p10}, C{p50}, C{p90}, C{p99} of the balances
        (nearest rank), by name.
    """

    players: int
    gini: float
    percentiles: dict[str, int]


def distribution(balances: Mapping[str, int]) -> Distribution:
    """The L{Distribution} of the C{player:} accounts' balances in C{balances}."""
    ordered = sorted(amount for account, amount in balances.items() if is_player(account))
    return Distribution(
        len(ordered),
        gini(ordered),
        {name: nearest_rank(ordered, fraction, 0) for name, fraction in PERCENTILES},
    )


def growth_per_hour(before: int, after: int, seconds: float) -> float:
    """
    The supply's growth from C{before} to C{after} over C{seconds}, as a
    fraction per hour, scaled linearly; infinite when it grew from nothing.
    """
    if before <= 0:
        return math.inf if after > before else 0.0
    return (after - before) / before * HOUR / seconds


@dataclass(frozen=True)
class IntervalFigures:
    """
    The figures of one currency over one interval C{[start, end)}.

    @ivar supply: At the end.
    @ivar supply_start: At the start: C{supply} less the interval's net flow.
    @ivar average_supply: Over the interval's time.
    @ivar discrepancy: What the supply at the start differs from the last
        interval's at its end, when this one follows it directly: 0 when
        every change of the supply went through a posting.
    @ivar velocity: L{velocity} per hour.
    @ivar price_index: The L{PriceIndex} level after this interval.
    @ivar sales: Sales priced in this interval.
    @ivar growth_per_hour: The supply's growth per hour over the kept
        intervals of the last hour (L{SupplyTracker}).
    @ivar alarm: Whether C{growth_per_hour} is above the currency's
        C{supply_alarm}.
    """

    currency: str
    start: float
    end: float
    supply: int
    supply_start: int
    average_supply: float
    discrepancy: int
    inflow: int
    outflow: int
    inflow_by_reason: dict[str, int]
    outflow_by_reason: dict[str, int]
    volume: int
    velocity: float
    distribution: Distribution
    price_index: float
    sales: int
    growth_per_hour: float
    alarm: bool

    def as_dict(self) -> dict:
        """The figures as plain data (for C{mmo-admin economy} and JSON)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> IntervalFigures:
        """The figures L{as_dict} gave C{data}."""
        fields = dict(data)
        fields["distribution"] = Distribution(**fields["distribution"])
        return cls(**fields)


class SupplyTracker:
    """
    One currency's figures over successive intervals: the last C{keep} of
    them, and the price index chained across them.

    @ivar history: The L{IntervalFigures} kept, oldest first.
    """

    def __init__(
        self,
        currency: str,
        supply_alarm: float,
        keep: int = 60,
        item_of: Callable[[str], str | None] = stackable_item,
    ):
        """
        @param currency: The currency's name (C{gold}, not C{c:gold}).
        @param supply_alarm: The largest growth of the supply per hour, a
            fraction, before the alarm.
        @param keep: Intervals kept, at least 1.
        @param item_of: The item id of a ledger asset (L{sales}).
        """
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        self.currency = currency
        self.asset = f"c:{currency}"
        self.supply_alarm = supply_alarm
        self.history: deque[IntervalFigures] = deque(maxlen=keep)
        self._prices = PriceIndex()
        self._item_of = item_of

    @property
    def latest(self) -> IntervalFigures | None:
        return self.history[-1] if self.history else None

    def saved(self) -> dict:
        """
        What the price index needs to go on in another process, as plain
        data (L{resume}); the figures themselves are L{IntervalFigures.as_dict}.
        """
        return self._prices.saved()

    def resume(self, history: Iterable[IntervalFigures], prices: Mapping | None) -> None:
        """
        Go on from figures computed before (oldest first), by this process
        or another: keep them as L{history} and chain the price index from
        C{prices} (what L{saved} gave after the last of them).

        @raise ValueError: Figures are kept already, or of another currency.
        """
        if self.history:
            raise ValueError(f"{self.currency}: resume a tracker before it records")
        for figures in history:
            if figures.currency != self.currency:
                raise ValueError(f"figures of {figures.currency!r} given to {self.currency!r}")
            self.history.append(figures)
        if prices is not None:
            self._prices = PriceIndex.resumed(prices)

    def record(
        self,
        start: float,
        end: float,
        postings: Sequence[PostingLike],
        balances: Mapping[str, int],
    ) -> IntervalFigures:
        """
        Compute and keep the figures of the interval C{[start, end)}.

        @param postings: Every posting of the interval (any asset).
        @param balances: Every holder's balance of the currency at C{end}
            (C{player:}, C{escrow:}, C{vendor:} accounts; faucets and sinks
            are left out of the supply wherever they are given).
        @raise ValueError: The interval is empty or before the last one.
        """
        if not end > start:
            raise ValueError(f"an interval must end after it starts: [{start}, {end})")
        last = self.latest
        if last is not None and start < last.end:
            raise ValueError(f"interval [{start}, {end}) starts before the last ended ({last.end})")
        moved = flows(postings, self.asset)
        now = supply(balances)
        before = now - moved.net
        average = average_supply(before, moved.changes, start, end)
        found = sales(postings, self.asset, self._item_of)
        discrepancy = before - last.supply if last is not None and last.end == start else 0
        growth = self._growth(start, end, before, now)
        figures = IntervalFigures(
            currency=self.currency,
            start=start,
            end=end,
            supply=now,
            supply_start=before,
            average_supply=average,
            discrepancy=discrepancy,
            inflow=moved.inflow,
            outflow=moved.outflow,
            inflow_by_reason=moved.inflow_by_reason,
            outflow_by_reason=moved.outflow_by_reason,
            volume=moved.volume,
            velocity=velocity(moved.volume, average, end - start),
            distribution=distribution(balances),
            price_index=self._prices.step(found),
            sales=len(found),
            growth_per_hour=growth,
            alarm=growth > self.supply_alarm,
        )
        self.history.append(figures)
        return figures

    def _growth(self, start: float, end: float, before: int, now: int) -> float:
        """
        The growth per hour from the supply at the start of the oldest kept
        interval of the last hour (this one's if none) to C{now}.
        """
        since, then = start, before
        for kept in self.history:
            if kept.start >= end - HOUR:
                since, then = kept.start, kept.supply_start
                break
        return growth_per_hour(then, now, end - since)
