"""
L{LedgerRequests}: the economy's client requests that are the store's
(C{wallet.*}, C{inventory.*}, C{shop.*}), answered by any economy process:
each reads the ledger, or posts once under a key of the player's request.
"""

from __future__ import annotations

import re

from mmo.economy.views import history_fields, inventory_fields, wallet_fields
from mmo.game import checks
from mmo.game.service import Caller
from mmo.wire.codes import BAD_REQUEST, WireError

#: A client's idempotency id of a purchase or sale.
REQUEST_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

#: Most history entries one C{wallet.history} reads, and how many by default.
HISTORY_MAX, HISTORY_DEFAULT = 100, 20

#: Longest shop, item or instance id a client may name (the config's are shorter).
MAX_ID = 128

#: The largest count a request may name.
MAX_COUNT = 2**50


def request_id(message: dict) -> str:
    value = message.get("request")
    if not isinstance(value, str) or not REQUEST_ID.match(value):
        raise WireError(BAD_REQUEST, "'request' must be 1 to 64 of A-Z, a-z, 0-9, '_' and '-'")
    return value


class LedgerRequests:
    """
    The requests of the store's economy, for a L{GameService
    <mmo.game.service.GameService>} with an C{economy}
    (L{mmo.economy.economy.Economy}); each answers the caller's account.
    """

    async def on_wallet_get(self, caller: Caller, message: dict) -> dict:
        return wallet_fields(await self.economy.wallets.wallet(caller.account_id))

    async def on_wallet_history(self, caller: Caller, message: dict) -> dict:
        limit = checks.integer(message, "limit", HISTORY_DEFAULT, 1, HISTORY_MAX)
        before = message.get("before")
        if before is not None:
            before = checks.integer(message, "before", 0, 1, 2**62)
        ledger = self.economy.ledger
        account = ledger.rules.account(caller.account_id)
        return history_fields(await ledger.store.economy_history(account, limit, before), limit)

    async def on_inventory_get(self, caller: Caller, message: dict) -> dict:
        inventory = await self.economy.inventories.inventory(caller.account_id)
        return inventory_fields(inventory, self.economy.rules.section.inventory)

    async def on_shop_list(self, caller: Caller, message: dict) -> dict:
        return {
            "shops": [
                {"shop": vendor.id, "name": vendor.name, "currency": vendor.currency}
                for vendor in self.economy.rules.vendors.values()
            ]
        }

    async def on_shop_offers(self, caller: Caller, message: dict) -> dict:
        name = checks.string(message, "shop", MAX_ID)
        offers = await self.economy.shops.offers(name)
        vendor = self.economy.rules.vendors[name]
        items = self.economy.rules.item_defs
        return {
            "shop": vendor.id,
            "name": vendor.name,
            "currency": vendor.currency,
            "offers": [
                {
                    "item": offer.item,
                    "name": items[offer.item].name,
                    "price": offer.price,
                    "sell": offer.sell,
                    "stock": offer.stock,
                }
                for offer in offers
            ],
        }

    async def on_shop_buy(self, caller: Caller, message: dict) -> dict:
        return await self._deal(self.economy.shops.buy, caller, message)

    async def on_shop_sell(self, caller: Caller, message: dict) -> dict:
        return await self._deal(self.economy.shops.sell, caller, message)

    async def _deal(self, deal, caller: Caller, message: dict) -> dict:
        request = request_id(message)
        shop = checks.string(message, "shop", MAX_ID)
        item = checks.string(message, "item", MAX_ID)
        count = checks.integer(message, "count", 1, 1, MAX_COUNT)
        seq = await deal(request, caller.account_id, shop, item, count)
        wallet = await self.economy.wallets.wallet(caller.account_id)
        return {"shop": shop, "item": item, "count": count, "seq": seq, **wallet_fields(wallet)}
