"""
L{Shops}: vendors' stock and prices from the shop file, and buying and
selling as single postings.

A purchase moves the player's currency to the vendor's sink
(C{sink:shop:NAME}) and items from its faucet (C{faucet:shop:NAME}); a
sale moves items into the sink and currency from the faucet at the sell
price.  A limited stock is a balance of the vendor's account
(C{vendor:NAME}) of the item's stackable asset (C{i:ITEM}, for a unique
item too, as a count of the instances it may still issue), given once by
L{Shops.stock_up} (a posting keyed by the vendor and item, so the
configured stock is the vendor's first stock, not a refill at every
start); a purchase takes from it in the same posting, and a sale does not
add to it.
"""

from __future__ import annotations

from dataclasses import dataclass

from mmo.economy.errors import BadRequest, NotTraded, UnknownVendor
from mmo.economy.holdings import check_count, event_key, item_of
from mmo.economy.ledger import OnLedger
from mmo.economy.rewards import issue_legs
from mmo.store.common_economy import faucet, sink, stackable, vendor


@dataclass(frozen=True)
class Offer:
    """
    One item a vendor deals in, as a player sees it.

    @ivar price: What one costs, minor units of the vendor's currency.
    @ivar sell: What the vendor pays for one, or C{None}: it does not buy it.
    @ivar stock: How many it has left, or C{None}: unlimited.
    """

    item: str
    price: int
    sell: int | None
    stock: int | None


class Shops(OnLedger):
    """
    The vendors of the shop file on the L{mmo.economy.ledger.Ledger}.

    """

    def _vendor(self, name: object):
        found = self._rules.vendors.get(name) if isinstance(name, str) else None
        if found is None:
            raise UnknownVendor(f"no vendor {name!r}")
        return found

    def _line(self, shop, item: str):
        line = shop.line(item)
        if line is None:
            raise NotTraded(f"{shop.id} does not deal in {item!r}")
        return line

    async def stock_up(self) -> int:
        """
        Give each vendor its configured limited stock, once per vendor and
        item for ever (call it at every start).

        @return: How many stock lines were given now.
        """
        given = 0
        for shop in self._rules.vendors.values():
            for line in shop.stock:
                if not line.stock:
                    continue
                key = event_key("stock", shop.id, line.item)
                if await self._ledger.posted(key):
                    continue
                asset = stackable(line.item)
                legs = [
                    self._rules.leg(faucet(f"shop:{shop.id}"), asset, -line.stock),
                    self._rules.leg(vendor(shop.id), asset, line.stock),
                ]
                await self._ledger.post(key, "shop.stock", legs)
                given += 1
        return given

    async def offers(self, vendor_name: str) -> list[Offer]:
        """What the vendor deals in, with its stock left."""
        shop = self._vendor(vendor_name)
        held = await self._ledger.store.economy_balances(vendor(shop.id))
        return [
            Offer(
                line.item,
                line.price,
                line.sell,
                None if line.stock is None else max(0, held.get(stackable(line.item), 0)),
            )
            for line in shop.stock
        ]

    async def buy(self, request: str, player_id: str, vendor_name: str, item: str, count: int = 1):
        """
        The player buys C{count} of C{item} at the vendor's price, in one
        posting keyed by the player's C{request} (a retry buys once).

        @return: The posting's sequence number.
        @raise EconomyError: Unknown vendor or item, not sold there, out of
            stock, too little currency, no room.
        """
        player = self._rules.account(player_id)
        shop = self._vendor(vendor_name)
        self._rules.item_def(item)
        line = self._line(shop, item)
        count = check_count(count, "a count")
        key = event_key("buy", shop.id, player_id, request)
        money = self._rules.currency_asset(shop.currency)
        source = faucet(f"shop:{shop.id}")
        legs = [
            self._rules.leg(player, money, -line.price * count),
            self._rules.leg(sink(f"shop:{shop.id}"), money, line.price * count),
        ]
        if line.stock is not None:
            stock = stackable(item)
            legs.append(self._rules.leg(vendor(shop.id), stock, -count))
            if self._rules.item_def(item).stackable:
                source = vendor(shop.id)
            else:
                legs.append(self._rules.leg(sink(f"shop:{shop.id}"), stock, count))
        if source.startswith("vendor:"):
            legs.append(self._rules.leg(player, stackable(item), count))
            issue = {}
        else:
            more, issue = issue_legs(self._rules, source, player, key, item, count)
            legs += more
        return await self._ledger.post(key, "shop.buy", legs, issue)

    async def sell(self, request: str, player_id: str, vendor_name: str, item: str, count=1):
        """
        The player sells C{count} of the stackable C{item}, or the unique
        instance C{item} (C{ITEM.HASH}, count 1), to the vendor at its sell
        price, in one posting keyed by C{request}.

        @return: The posting's sequence number.
        @raise EconomyError: Unknown vendor or item, not bought there, not
            held.
        """
        player = self._rules.account(player_id)
        shop = self._vendor(vendor_name)
        count = check_count(count, "a count")
        if isinstance(item, str) and "." in item:
            if count != 1:
                raise BadRequest(f"a unique instance is sold alone, got a count of {count}")
            asset = self._rules.unique_asset(item)
        else:
            asset = self._rules.stackable_asset(item)
        line = self._line(shop, item_of(item))
        if line.sell is None:
            raise NotTraded(f"{shop.id} does not buy {item_of(item)!r}")
        money = self._rules.currency_asset(shop.currency)
        key = event_key("sell", shop.id, player_id, request)
        legs = [
            self._rules.leg(player, asset, -count),
            self._rules.leg(sink(f"shop:{shop.id}"), asset, count),
        ]
        if line.sell:
            legs += [
                self._rules.leg(faucet(f"shop:{shop.id}"), money, -line.sell * count),
                self._rules.leg(player, money, line.sell * count),
            ]
        return await self._ledger.post(key, "shop.sell", legs)
