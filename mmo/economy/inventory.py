"""
L{Inventories}: what a player holds of the item definitions (stackable
counts and unique instances with their properties), its load and its limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

from mmo.economy.ledger import OnLedger


@dataclass(frozen=True)
class Instance:
    """
    One unique item held.

    @ivar id: Its instance id (C{ITEM.HASH}).
    @ivar item: Its item definition's id.
    @ivar props: The properties it was issued with.
    """

    id: str
    item: str
    props: MappingProxyType


@dataclass(frozen=True)
class Inventory:
    """
    A player's items.

    @ivar items: Stackable item id to count held.
    @ivar uniques: Instance id to L{Instance}.
    @ivar load: Slots or weight units used (the config's C{inventory}).
    @ivar limit: The most it may use (C{inventory_limit}).
    """

    items: MappingProxyType
    uniques: MappingProxyType
    load: int
    limit: int


class Inventories(OnLedger):
    """
    Players' inventories on the L{mmo.economy.ledger.Ledger}.

    """

    async def inventory(self, player_id: str) -> Inventory:
        """The player's L{Inventory}; unique items' properties read from the ledger."""
        account = self._rules.account(player_id)
        store = self._ledger.store
        held = await store.economy_balances(account)
        items, uniques = {}, {}
        for asset, count in sorted(held.items()):
            kind, _, name = asset.partition(":")
            if kind == "i" and count > 0:
                items[name] = count
            elif kind == "u" and count > 0:
                props = await store.economy_item(asset) or {}
                item = props.pop("item", name.partition(".")[0])
                uniques[name] = Instance(name, item, MappingProxyType(props))
        return Inventory(
            MappingProxyType(items),
            MappingProxyType(uniques),
            await store.economy_load(account),
            self._rules.limit,
        )
