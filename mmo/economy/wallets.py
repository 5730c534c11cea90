"""
L{Wallets}: a player's balances per configured currency, the start credit
paid once per player, and L{format_amount}, how an amount is shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

from mmo.economy.errors import BadRequest
from mmo.economy.holdings import event_key
from mmo.economy.ledger import OnLedger
from mmo.store.common_economy import currency, faucet

#: The faucet of the start credit.
START_FAUCET = faucet("start")


def format_amount(amount: int, decimals: int) -> str:
    """
    An integer amount of minor units as shown: C{format_amount(1234, 2)}
    is C{"12.34"}, C{format_amount(-5, 2)} is C{"-0.05"}.
    """
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise BadRequest(f"an amount is an integer of minor units, got {amount!r}")
    if decimals <= 0:
        return str(amount)
    sign = "-" if amount < 0 else ""
    whole, fraction = divmod(abs(amount), 10**decimals)
    return f"{sign}{whole}.{fraction:0{decimals}d}"


@dataclass(frozen=True)
class Wallet:
    """
    A player's balances, one per configured currency (0 included).

    @ivar balances: Currency name to amount, minor units.
    @ivar decimals: Currency name to its C{decimals}.
    """

    balances: MappingProxyType
    decimals: MappingProxyType

    def shown(self, name: str) -> str:
        """The balance of currency C{name} as shown to a player."""
        return format_amount(self.balances[name], self.decimals[name])


class Wallets(OnLedger):
    """
    Players' wallets on the L{mmo.economy.ledger.Ledger}.

    """

    async def wallet(self, player_id: str) -> Wallet:
        """The player's L{Wallet}."""
        held = await self._ledger.store.economy_balances(self._rules.account(player_id))
        currencies = self._rules.currencies
        return Wallet(
            MappingProxyType({name: held.get(currency(name), 0) for name in currencies}),
            MappingProxyType({name: c.decimals for name, c in currencies.items()}),
        )

    def start_key(self, player_id: str) -> str:
        return event_key("start", player_id)

    async def start(self, player_id: str) -> bool:
        """
        Credit the player's wallet with each currency's C{start}, once per
        player for ever: called again (at every login, or after a crash),
        it pays nothing.  A start changed in the config later applies to
        players credited after the change.

        @return: Whether this call credited it.
        """
        account = self._rules.account(player_id)
        key = self.start_key(player_id)
        legs = []
        for name, configured in self._rules.currencies.items():
            if configured.start:
                asset = currency(name)
                legs += [
                    self._rules.leg(START_FAUCET, asset, -configured.start),
                    self._rules.leg(account, asset, configured.start),
                ]
        # Read first: a start changed since the player's first credit must
        # not make the key look reused.
        if not legs or await self._ledger.posted(key):
            return False
        await self._ledger.post(key, "start", legs)
        return True
