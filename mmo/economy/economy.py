"""
L{Economy}: the config's economy over the store's ledger, for game code:
wallets, inventories, shops, rewards and transfers (see C{docs/economy.md}).
"""

from __future__ import annotations

from mmo.economy.inventory import Inventories
from mmo.economy.ledger import Ledger, Rules
from mmo.economy.rewards import Rewards
from mmo.economy.shops import Shops
from mmo.economy.transfers import Transfers
from mmo.economy.wallets import Wallets


class Economy:
    """
    One deployment's economy.

    @param section: The L{mmo.config.economy.EconomySection}.
    @param store: An L{mmo.store.IEconomyStore}, started.
    @param clock: Gives each posting's time (C{seconds()}); the reactor if
        not given.
    @ivar wallets: L{Wallets}.
    @ivar inventories: L{Inventories}.
    @ivar shops: L{Shops}.
    @ivar rewards: L{Rewards}.
    @ivar transfers: L{Transfers}.
    """

    def __init__(self, section, store, clock=None):
        if clock is None:
            from twisted.internet import reactor as clock
        self.rules = Rules(section)
        self.ledger = Ledger(self.rules, store, clock)
        self.wallets = Wallets(self.ledger)
        self.inventories = Inventories(self.ledger)
        self.shops = Shops(self.ledger)
        self.rewards = Rewards(self.ledger)
        self.transfers = Transfers(self.ledger)

    def __repr__(self) -> str:
        return f"<Economy on {self.ledger.store!r}>"

    async def start(self) -> None:
        """Give the vendors their first stock (once for ever; call at every start)."""
        await self.shops.stock_up()
