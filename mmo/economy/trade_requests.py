"""
L{TradeRequests}: the economy's C{trade.*} requests and pushes, served by
the one economy process that holds the trades' lease (L{mmo.economy.service}).

Every change of a trade is pushed to both parties, the one who acted too
(C{trade.opened}, C{trade.updated}, C{trade.settled}, C{trade.cancelled}
with its C{why}), so that a client can drive its view from pushes alone.
"""

from __future__ import annotations

from twisted.python.failure import Failure

from mmo.economy.errors import EconomyError
from mmo.economy.trades import State, Trade, TradeError
from mmo.economy.views import holding_of, trade_fields
from mmo.game import checks
from mmo.game.service import Caller
from mmo.unavailable import log_failure
from mmo.wire.codes import NOT_ALLOWED, NOT_FOUND, PLAYER_OFFLINE, WireError

#: Longest display name or trade id a client may name.
MAX_NAME = 64

#: Why a trade was cancelled, as its C{trade.cancelled} push says.
CANCELLED, EXPIRED, REFUSED, LEFT = "cancelled", "expired", "refused", "left"


class TradeRequests:
    """
    The trade requests, for the L{EconomyService
    <mmo.economy.service.EconomyService>}: its C{trades}
    (L{mmo.economy.trades.Trades}), C{presence} (who is online, by name)
    and C{parties} (the session of each party to an open trade, by account).
    """

    # -- requests ------------------------------------------------------------------------

    async def on_trade_open(self, caller: Caller, message: dict) -> dict:
        name = checks.string(message, "with", MAX_NAME)
        other = self.presence.find(name)
        if other is None:
            raise WireError(PLAYER_OFFLINE, f"no player {name!r} is online")
        if other.account_id == caller.account_id:
            raise WireError(NOT_ALLOWED, "a trade is with another player")
        trade = self.trades.open(caller.account_id, other.account_id)
        self.parties[caller.account_id] = caller
        self.parties[other.account_id] = other
        await self._push(trade, "trade.opened")
        return self._seen(trade, caller)

    async def on_trade_offer(self, caller: Caller, message: dict) -> dict:
        trade = self._trade_of(caller, message)
        holding = holding_of(message)
        rules = self.economy.rules
        # Every currency, item and instance named is one of the config's.
        rules.transfer(rules.account(caller.account_id), rules.account(caller.account_id), holding)
        await self.trades.offer(trade.id, caller.account_id, holding)
        await self._push(trade, "trade.updated")
        return self._seen(trade, caller)

    async def on_trade_confirm(self, caller: Caller, message: dict) -> dict:
        trade = self._trade_of(caller, message)
        version = checks.integer(message, "version", -1, 0, 2**53)
        try:
            await self.trades.confirm(trade.id, caller.account_id, version)
        except EconomyError:
            if trade.state is State.CANCELLED:
                await self._closed(trade, "trade.cancelled", why=REFUSED)
            raise
        if trade.state is State.SETTLED:
            await self._closed(trade, "trade.settled")
        else:
            await self._push(trade, "trade.updated")
        return self._seen(trade, caller)

    async def on_trade_cancel(self, caller: Caller, message: dict) -> dict:
        trade = self._trade_of(caller, message)
        await self.trades.cancel(trade.id, caller.account_id)
        await self._closed(trade, "trade.cancelled", why=CANCELLED)
        return self._seen(trade, caller)

    async def on_trade_status(self, caller: Caller, message: dict) -> dict:
        trade = self.trades.of(caller.account_id)
        return {"trade": None if trade is None else self._seen(trade, caller)["trade"]}

    def _trade_of(self, caller: Caller, message: dict) -> Trade:
        """The open trade C{message} names, of which the caller is a party."""
        trade_id = checks.string(message, "trade", MAX_NAME)
        try:
            trade = self.trades.get(trade_id)
        except TradeError:
            raise WireError(NOT_FOUND, f"no open trade {trade_id!r}") from None
        trade.side_of(caller.account_id)
        return trade

    # -- what closes a trade without a request of its own ---------------------------------

    async def trade_expired(self, trade: Trade) -> None:
        """Tell the parties of C{trade} that it expired (its deposits are back)."""
        await self._closed(trade, "trade.cancelled", why=EXPIRED)

    async def party_left(self, caller: Caller) -> None:
        """C{caller}'s session ended: a trade it is a party to is cancelled."""
        party = self.parties.get(caller.account_id)
        trade = self.trades.of(caller.account_id)
        if party is None or party.session != caller.session or trade is None:
            return
        try:
            await self.trades.cancel(trade.id, caller.account_id)
        except TradeError:
            return  # settled or cancelled meanwhile: told already
        await self._closed(trade, "trade.cancelled", why=LEFT)

    # -- pushes --------------------------------------------------------------------------

    def _names(self, trade: Trade) -> dict[str, str]:
        return {
            account: self.parties[account].display_name
            for account in trade.players.values()
            if account in self.parties
        }

    def _seen(self, trade: Trade, caller: Caller) -> dict:
        return {"trade": trade_fields(trade, caller.account_id, self._names(trade))}

    async def _push(self, trade: Trade, kind: str, **fields) -> None:
        """Push C{kind} to both parties, each with the trade as he sees it."""
        names = self._names(trade)
        for account in trade.players.values():
            party = self.parties.get(account)
            if party is None:
                continue
            try:
                await self.deliver(
                    [party], kind, trade=trade_fields(trade, account, names), **fields
                )
            except Exception:
                log_failure(Failure(), self.log, "economy: a trade push was not sent")

    async def _closed(self, trade: Trade, kind: str, **fields) -> None:
        await self._push(trade, kind, **fields)
        for account in trade.players.values():
            if self.trades.of(account) is None:
                self.parties.pop(account, None)
