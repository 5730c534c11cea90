"""
Prices: the sales an interval's postings record, and a chained Fisher price
index over them (see C{docs/economy.md}, "Money-supply metrics").

A posting is read as a sale when the holders on one side of it (the buyers,
or failing any, the sellers) give currency for exactly one kind of item or
take currency for it: a shop purchase, a sale to a vendor, or a trade of
one kind of item against currency.  A trade of several kinds of item for
one sum has no unit price of its own and is left out, as are rewards and
loot (value from a faucet with nothing given back).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from mmo.economy.postings import PostingLike, is_system, legs_of


@dataclass(frozen=True)
class Sale:
    """
    Units of one item that changed hands for currency in one posting.

    @ivar item: The item's id.
    @ivar quantity: Units, at least 1.
    @ivar value: What they cost in all, minor units.
    """

    item: str
    quantity: int
    value: int

    @property
    def unit_price(self) -> float:
        return self.value / self.quantity


def stackable_item(asset: str) -> str | None:
    """
    The item id of a ledger asset: C{i:ID} is a stackable item's; a unique
    instance (C{u:...}) names no item by itself, so C{None}.
    """
    return asset[2:] if asset.startswith("i:") else None


def sales(
    postings: Iterable[PostingLike],
    currency: str,
    item_of: Callable[[str], str | None] = stackable_item,
) -> list[Sale]:
    """
    The sales of C{postings} priced in C{currency}.

    @param currency: The ledger asset of the currency (C{c:gold}).
    @param item_of: The item id of an asset, or C{None} for an asset that is
        not an item (a currency).  The default knows stackable items only;
        pass one that looks unique instances up to price them too.
    """
    found = []
    for posting in postings:
        sale = _sale(posting, currency, item_of)
        if sale is not None:
            found.append(sale)
    return found


def _sale(posting: PostingLike, currency: str, item_of) -> Sale | None:
    money: dict[str, int] = defaultdict(int)
    goods: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for account, asset, amount in legs_of(posting):
        if is_system(account):
            continue
        if asset == currency:
            money[account] += amount
        else:
            item = item_of(asset)
            if item is not None:
                goods[account][item] += amount
    # Buyers give currency and get items; sellers the other way round.  A
    # trade has both: its buyers alone count it once.
    for sign in (1, -1):
        paid = 0
        bought: dict[str, int] = defaultdict(int)
        for account, amount in money.items():
            gained = {item: n * sign for item, n in goods[account].items() if n * sign > 0}
            if amount * sign < 0 and gained:
                paid += -amount * sign
                for item, n in gained.items():
                    bought[item] += n
        if paid:
            if len(bought) != 1:
                return None
            ((item, quantity),) = bought.items()
            return Sale(item, quantity, paid)
    return None


def unit_values(found: Iterable[Sale]) -> dict[str, tuple[float, int]]:
    """
    Each item's unit value over C{found}: the volume-weighted mean price
    (all value over all units) and the units sold, by item.
    """
    value: dict[str, int] = defaultdict(int)
    units: dict[str, int] = defaultdict(int)
    for sale in found:
        value[sale.item] += sale.value
        units[sale.item] += sale.quantity
    return {item: (value[item] / units[item], units[item]) for item in units}


def fisher_link(
    before: Mapping[str, tuple[float, int]], after: Mapping[str, tuple[float, int]]
) -> float | None:
    """
    The Fisher index of C{after}'s prices relative to C{before}'s, over the
    items sold in both: the geometric mean of the Laspeyres index (weighted
    by the quantities of C{before}) and the Paasche index (those of
    C{after}).  C{None} when no item was sold in both.
    """
    common = [item for item in after if item in before]
    if not common:
        return None
    laspeyres = sum(after[i][0] * before[i][1] for i in common) / sum(
        before[i][0] * before[i][1] for i in common
    )
    paasche = sum(after[i][0] * after[i][1] for i in common) / sum(
        before[i][0] * after[i][1] for i in common
    )
    return math.sqrt(laspeyres * paasche)


class PriceIndex:
    """
    A chained Fisher price index: L{level} starts at 100 and each interval
    multiplies it by the L{fisher_link} of its unit values to the last
    interval with sales.

    Chained rather than fixed-base because what players buy changes as a
    game adds items and players outgrow them: a fixed basket of the first
    interval's items would soon be priced on items no longer traded, while
    adjacent intervals share most of their items.  Fisher because its links
    weigh both intervals' volumes, so neither the old basket (Laspeyres,
    which overstates a rise) nor the new one (Paasche, which understates it)
    biases the level.  An interval that shares no item with the last one
    leaves the level as it was.

    @ivar level: The index, 100 at the first interval with sales.
    """

    def __init__(self, level: float = 100.0):
        self.level = level
        self._last: dict[str, tuple[float, int]] | None = None

    def saved(self) -> dict:
        """
        What the index needs to go on in another process (L{resumed}):
        its level and the unit values of the last interval with sales,
        as plain data.
        """
        last = None if self._last is None else {i: list(v) for i, v in self._last.items()}
        return {"level": self.level, "last": last}

    @classmethod
    def resumed(cls, saved: Mapping) -> PriceIndex:
        """The index L{saved} gave C{saved}, to chain the next interval onto."""
        index = cls(float(saved["level"]))
        last = saved.get("last")
        if last is not None:
            index._last = {
                item: (float(value), int(units)) for item, (value, units) in last.items()
            }
        return index

    def step(self, found: Iterable[Sale]) -> float:
        """Chain in one interval's sales; the new L{level}."""
        values = unit_values(found)
        if not values:
            return self.level
        if self._last is not None:
            link = fisher_link(self._last, values)
            if link is not None:
                self.level *= link
        self._last = values
        return self.level
