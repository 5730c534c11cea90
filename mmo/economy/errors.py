"""
The economy domain's errors: every refusal of the ledger surfaces as one of
these, with a message a player can be shown, and malformed input as
L{BadRequest}, never a crash.
"""

from __future__ import annotations

from mmo.store.common_economy import Refusal, Refused, is_player


class EconomyError(Exception):
    """A request the economy refused or could not read; nothing was written."""


class BadRequest(EconomyError):
    """Malformed input: a bad player id, count or amount."""


class UnknownItem(EconomyError):
    """No such item definition, or no such unique instance."""


class UnknownVendor(EconomyError):
    """No such vendor."""


class NotTraded(EconomyError):
    """The vendor does not sell (or does not buy) the item."""


class InsufficientFunds(EconomyError):
    """
    An account lacks the currency (or, when C{currency} is C{None}, the
    items) that a posting takes.

    @ivar account: The ledger account short of it.
    @ivar asset: The ledger asset it lacks.
    """

    def __init__(self, message, account, asset):
        super().__init__(message)
        self.account = account
        self.asset = asset


class OutOfStock(EconomyError):
    """A vendor's limited stock of the item is too low."""


class NoRoom(EconomyError):
    """
    A player's inventory would go past its limit.

    @ivar account: The ledger account of the player.
    """

    def __init__(self, message, account):
        super().__init__(message)
        self.account = account


class NotHeld(EconomyError):
    """A unique item is not held by the account giving it, or was issued before."""


def refusal_error(refusal: Refusal) -> EconomyError:
    """The domain error of a ledger L{Refusal}."""
    account, asset = refusal.account, refusal.asset
    if refusal.reason is Refused.LIMIT:
        return NoRoom(f"no room in the inventory of {account}", account)
    if refusal.reason is Refused.UNIQUE:
        return NotHeld(f"{account} cannot take or give {asset}: it has one owner")
    if refusal.reason is Refused.FLOOR:
        if account.startswith("vendor:"):
            return OutOfStock(f"{account} is out of {asset}")
        kind, _, name = asset.partition(":")
        what = f"currency {name}" if kind == "c" else f"item {name}"
        owner = "player" if is_player(account) else "account"
        return InsufficientFunds(f"{owner} {account} has too little {what}", account, asset)
    return EconomyError(f"the ledger refused an unbalanced posting of {asset}")
