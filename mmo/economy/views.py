"""
What the economy's clients see (C{docs/protocol.md}, I{The economy}): the
shapes of wallets, holdings, inventories and trades in replies and pushes,
the offers and holdings read from requests, and the client's error code
of each domain error.
"""

from __future__ import annotations

from mmo.economy import errors
from mmo.economy.holdings import Holding
from mmo.economy.trades import SIDES, Busy, StaleVersion, TradeError
from mmo.wire import codes
from mmo.wire.codes import WireError

#: The client's code of each domain error, the most specific first.
ERROR_CODES: tuple[tuple[type[errors.EconomyError], str], ...] = (
    (errors.BadRequest, codes.BAD_REQUEST),
    (errors.UnknownItem, codes.NOT_FOUND),
    (errors.UnknownVendor, codes.NOT_FOUND),
    (errors.NotTraded, codes.NOT_ALLOWED),
    (errors.NotHeld, codes.NOT_ALLOWED),
    (errors.InsufficientFunds, codes.INSUFFICIENT_FUNDS),
    (errors.NoRoom, codes.NO_ROOM),
    (errors.OutOfStock, codes.OUT_OF_STOCK),
    (StaleVersion, codes.STALE_VERSION),
    (Busy, codes.IN_TRADE),
    # Not a party to the trade, or the trade not open.
    (TradeError, codes.NOT_ALLOWED),
)


def wire_error(error: errors.EconomyError, default: str = codes.BAD_REQUEST) -> WireError:
    """
    The client's error for C{error}: its code and message; C{default} for
    any other refusal (a request id used before for another deal).
    """
    for kind, code in ERROR_CODES:
        if isinstance(error, kind):
            return WireError(code, str(error))
    return WireError(default, str(error))


def wallet_fields(wallet) -> dict:
    """The C{wallet} shape of a L{mmo.economy.wallets.Wallet}."""
    return {
        "currencies": {
            name: {
                "balance": balance,
                "shown": wallet.shown(name),
                "decimals": wallet.decimals[name],
            }
            for name, balance in wallet.balances.items()
        }
    }


def inventory_fields(inventory, mode: str) -> dict:
    """The reply of C{inventory.get} for an L{mmo.economy.inventory.Inventory}."""
    return {
        "items": dict(inventory.items),
        "uniques": [
            {"id": instance.id, "item": instance.item, "props": dict(instance.props)}
            for instance in inventory.uniques.values()
        ],
        "load": inventory.load,
        "limit": inventory.limit,
        "mode": mode,
    }


#: The reply's key of each kind of ledger asset (C{c:}, C{i:}, C{u:}).
ASSET_KINDS = {"c": "currencies", "i": "items", "u": "uniques"}


def history_fields(entries, limit: int) -> dict:
    """
    The reply of C{wallet.history}: a player's ledger entries (his legs
    only, newest first), and C{next}, the C{before} of the next page
    (C{None} when this one is the last).
    """
    shown = []
    for entry in entries:
        moved: dict[str, dict[str, int]] = {key: {} for key in ASSET_KINDS.values()}
        for leg in entry.legs:
            kind, _, name = leg.asset.partition(":")
            if kind in ASSET_KINDS:
                held = moved[ASSET_KINDS[kind]]
                held[name] = held.get(name, 0) + leg.amount
        shown.append({"seq": entry.seq, "reason": entry.reason, "at": entry.at, **moved})
    full = len(entries) == limit and entries
    return {"entries": shown, "next": entries[-1].seq if full else None}


def holding_fields(holding: Holding) -> dict:
    """The C{offer} shape of a L{Holding}: every key present."""
    return {
        "currencies": dict(holding.currencies),
        "items": dict(holding.items),
        "uniques": sorted(holding.uniques),
    }


def holding_of(message: dict) -> Holding:
    """
    The offer of a request: its C{currencies}, C{items} and C{uniques}
    (each optional).

    @raise WireError: C{bad_request}, one of them malformed.
    """
    uniques = message.get("uniques", [])
    if not isinstance(uniques, list):
        raise WireError(codes.BAD_REQUEST, f"uniques is a list of instance ids, got {uniques!r}")
    try:
        return Holding(message.get("currencies", {}), message.get("items", {}), uniques)
    except errors.BadRequest as e:
        raise WireError(codes.BAD_REQUEST, str(e)) from None


def trade_fields(trade, player: str, names: dict[str, str]) -> dict:
    """
    The C{trade} shape of L{mmo.economy.trades.Trade} C{trade} as party
    C{player} sees it; C{names}: each party's display name by account.
    """
    mine = trade.side_of(player)
    theirs = SIDES[1 - SIDES.index(mine)]

    def party(side: str) -> dict:
        account = trade.players[side]
        return {
            "player": account,
            "name": names.get(account, account),
            "offer": holding_fields(trade.offers[side]),
            "confirmed": trade.confirmed(side),
        }

    return {
        "id": trade.id,
        "state": trade.state.value,
        "version": trade.version,
        "you": party(mine),
        "them": party(theirs),
    }
