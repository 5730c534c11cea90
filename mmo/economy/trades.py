"""
Trades between two players with escrow: L{Trade}, one trade's offers,
confirmations and state, and L{Trades}, which runs them over the ledger's
escrow (see C{docs/economy.md}, I{Trades}).

Each side's confirmation deposits its offer into the trade's escrow
(C{trade:ID:deposit:SIDE:VERSION}); both confirmed at one version, one
posting settles (C{trade:ID:settle}); a cancel, an expiry or a refused
settlement gives each deposit back (C{trade:ID:refund}), and a changed
offer gives its side's deposit back first
(C{trade:ID:refund:SIDE:VERSION}).  The escrow is in the ledger, the
trades in memory: after a crash L{Trades.recover} refunds every escrow
left holding value, so a trade happens whole or not at all.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable

from twisted.internet import defer
from twisted.logger import Logger

from mmo.economy.errors import BadRequest, EconomyError
from mmo.economy.holdings import Holding, event_key
from mmo.store.common_economy import MAX_READ

#: A trade's two sides: the player who opened it, and the other.
SIDES = ("a", "b")

#: Seconds without an offer or a confirmation before an open trade expires.
IDLE_TIMEOUT = 120.0

#: The prefix of the escrow accounts (C{escrow:TRADE}).
ESCROW = "escrow:"


class TradeError(EconomyError):
    """A trade request refused: no such trade, not a party, not open."""


class Busy(TradeError):
    """A player already has an open trade."""


class StaleVersion(TradeError):
    """A confirmation of offers that have changed since."""


class State(enum.Enum):
    OPEN = "open"
    #: Both sides confirmed; the settlement is being posted.
    SETTLING = "settling"
    SETTLED = "settled"
    CANCELLED = "cancelled"


class Trade:
    """
    One trade between two players: each side's offer, its confirmations
    and its state.  Any change of an offer bumps L{version} and clears
    both confirmations, so that nobody confirms what he did not see.

    @ivar id: The trade id (its escrow is C{escrow:ID}).
    @ivar players: C{{side: player id}}.
    @ivar offers: C{{side: L{Holding}}}.
    @ivar version: Of the offers, from 0.
    @ivar state: A L{State}.
    @ivar active: When an offer or a confirmation was last made.
    """

    def __init__(self, trade_id: str, opener: str, other: str, now: float):
        if not isinstance(opener, str) or not isinstance(other, str) or not opener or not other:
            raise BadRequest(f"a trade is between two player ids, got {opener!r}, {other!r}")
        if opener == other:
            raise BadRequest(f"player {opener!r} cannot trade with himself")
        self.id = trade_id
        self.players = dict(zip(SIDES, (opener, other), strict=True))
        self.offers = {side: Holding() for side in SIDES}
        self._confirmed = dict.fromkeys(SIDES, False)
        self.version = 0
        self.state = State.OPEN
        self.active = now

    def __repr__(self) -> str:
        return f"<Trade {self.id} {self.players} v{self.version} {self.state.value}>"

    def side_of(self, player_id: object) -> str:
        """
        The side of C{player_id}.

        @raise TradeError: He is not a party.
        """
        for side, party in self.players.items():
            if party == player_id:
                return side
        raise TradeError(f"player {player_id!r} is not a party to trade {self.id}")

    def _open_side(self, player_id: object) -> str:
        side = self.side_of(player_id)
        if self.state is not State.OPEN:
            raise TradeError(f"trade {self.id} is {self.state.value}")
        return side

    def check_offer(self, player_id: object, holding: object) -> str:
        """
        The side of C{player_id}, who may offer C{holding}.

        @raise EconomyError: He is not a party, the trade is not open, or
            C{holding} is not a L{Holding}.
        """
        side = self._open_side(player_id)
        if not isinstance(holding, Holding):
            raise BadRequest(f"an offer is a Holding, got {holding!r}")
        return side

    def offer(self, player_id: str, holding: Holding, now: float) -> int:
        """
        Replace C{player_id}'s offer.

        @return: The new version.
        """
        side = self.check_offer(player_id, holding)
        self.active = now
        self.offers[side] = holding
        self.version += 1
        self._confirmed = dict.fromkeys(SIDES, False)
        return self.version

    def confirm(self, player_id: str, version: object, now: float) -> str:
        """
        Confirm the offers as of C{version}.

        @return: C{player_id}'s side.
        @raise StaleVersion: The offers have changed since C{version}.
        """
        side = self._open_side(player_id)
        self.active = now
        if version != self.version:
            raise StaleVersion(
                f"trade {self.id}'s offers are at version {self.version}, not {version!r}"
            )
        self._confirmed[side] = True
        return side

    def unconfirm(self, side: str) -> None:
        """Take back a confirmation whose deposit failed."""
        self._confirmed[side] = False

    def confirmed(self, side: str) -> bool:
        return self._confirmed[side]

    def ready(self) -> bool:
        """Whether both sides confirmed the current offers."""
        return self.state is State.OPEN and all(self._confirmed.values())

    def idle(self, now: float, timeout: float) -> bool:
        """Whether the trade is open and nothing happened for C{timeout} seconds."""
        return self.state is State.OPEN and now - self.active >= timeout

    def settling(self) -> None:
        self.state = State.SETTLING

    def settled(self) -> None:
        self.state = State.SETTLED

    def cancelled(self) -> None:
        self.state = State.CANCELLED


class Trades:
    """
    The open trades of one process, over the economy's escrow: at most
    one open trade per player.

    @param economy: The L{mmo.economy.economy.Economy}.
    @param clock: An C{IReactorTime} (expiries).
    @param timeout: L{IDLE_TIMEOUT}, seconds.
    @param expired: Called with a trade that expired once its deposits
        were given back (no request closed it: whoever serves trades tells
        its players), or C{None}.
    """

    log = Logger()

    def __init__(
        self,
        economy,
        clock,
        timeout: float = IDLE_TIMEOUT,
        expired: Callable[[Trade], object] | None = None,
    ):
        self._ledger = economy.ledger
        self._rules = economy.ledger.rules
        self._transfers = economy.transfers
        self._clock = clock
        self._timeout = timeout
        self._trades: dict[str, Trade] = {}
        self._by_player: dict[str, str] = {}
        # {trade id: {side: (version, holding)}}: what each side has in escrow.
        self._deposits: dict[str, dict[str, tuple[int, Holding]]] = {}
        # {trade id: {side: (version, holding)}}: a deposit whose posting got
        # no answer (the store out of reach): it may have been applied.
        self._unseen: dict[str, dict[str, tuple[int, Holding]]] = {}
        self._locks: dict[str, defer.DeferredLock] = {}
        self._expiries = {}
        self._expired_callback = expired

    def __repr__(self) -> str:
        return f"<Trades: {len(self._trades)} open>"

    def __len__(self) -> int:
        """How many trades are open (or settling)."""
        return len(self._trades)

    def get(self, trade_id: object) -> Trade:
        """
        The open (or settling) trade C{trade_id}.

        @raise TradeError: None such.
        """
        trade = self._trades.get(trade_id) if isinstance(trade_id, str) else None
        if trade is None:
            raise TradeError(f"no open trade {trade_id!r}")
        return trade

    def of(self, player_id: str) -> Trade | None:
        """C{player_id}'s open trade, if any."""
        trade_id = self._by_player.get(player_id)
        return None if trade_id is None else self._trades[trade_id]

    def open(self, opener: str, other: str, trade_id: str | None = None) -> Trade:
        """
        Open a trade of C{opener} with C{other}.

        @param trade_id: Its id (a new one if C{None}).
        @raise Busy: One of them has an open trade.
        """
        trade = Trade(trade_id or uuid.uuid4().hex, opener, other, self._clock.seconds())
        self._transfers.escrow_account(trade.id)
        if trade.id in self._trades:
            raise TradeError(f"trade {trade.id} is open")
        for player_id in (opener, other):
            if player_id in self._by_player:
                raise Busy(f"player {player_id!r} has an open trade")
        self._trades[trade.id] = trade
        self._deposits[trade.id] = {}
        self._unseen[trade.id] = {}
        self._locks[trade.id] = defer.DeferredLock()
        for player_id in trade.players.values():
            self._by_player[player_id] = trade.id
        self._expiries[trade.id] = self._clock.callLater(self._timeout, self._expire, trade.id)
        return trade

    async def offer(self, trade_id: str, player_id: str, holding: Holding) -> int:
        """
        Replace C{player_id}'s offer; a deposit of his earlier offer is
        given back first.

        @return: The offers' new version.
        """
        trade = self.get(trade_id)
        async with self._locks[trade.id]:
            # Checked under the lock: the trade may have ended meanwhile.
            side = trade.check_offer(player_id, holding)
            await self._resolve(trade)
            deposit = self._deposits[trade.id].get(side)
            if deposit is not None:
                version, given = deposit
                await self._escrow(trade, "refund", side, version, given)
                del self._deposits[trade.id][side]
            version = trade.offer(player_id, holding, self._clock.seconds())
            self._expiries[trade.id].reset(self._timeout)
            return version

    async def confirm(self, trade_id: str, player_id: str, version: int) -> Trade:
        """
        Confirm the offers as of C{version}, depositing C{player_id}'s
        offer into escrow; the second confirmation settles the trade.

        @return: The trade (L{State.SETTLED} if this settled it).
        @raise EconomyError: A stale version (L{StaleVersion}), a deposit
            refused (the player lacks his offer: he is not confirmed), a
            settlement refused (the trade is cancelled and each deposit
            given back).  A settlement the store did not answer leaves the
            trade settling: the next confirmation of either party tries it
            again (under the same key: it is posted once).
        """
        trade = self.get(trade_id)
        async with self._locks[trade.id]:
            if trade.state is State.SETTLING:
                trade.side_of(player_id)
                await self._settle(trade)
                return trade
            await self._resolve(trade)
            side = trade.confirm(player_id, version, self._clock.seconds())
            self._expiries[trade.id].reset(self._timeout)
            offer = trade.offers[side]
            if offer and self._deposits[trade.id].get(side, (0, None))[1] != offer:
                try:
                    await self._escrow(trade, "deposit", side, trade.version, offer)
                except Exception as e:
                    # Refused, or the store out of reach: not confirmed, so
                    # that no settlement pays out what was not deposited.  A
                    # deposit the store did not answer may have gone through:
                    # the next step of the trade looks for it (_resolve).
                    trade.unconfirm(side)
                    if not isinstance(e, EconomyError):
                        self._unseen[trade.id][side] = (trade.version, offer)
                    raise
                self._deposits[trade.id][side] = (trade.version, offer)
            if trade.ready():
                await self._settle(trade)
            return trade

    async def cancel(self, trade_id: str, player_id: str) -> Trade:
        """Cancel the trade; each deposit is given back."""
        trade = self.get(trade_id)
        async with self._locks[trade.id]:
            trade.side_of(player_id)
            if trade.state is not State.OPEN:
                raise TradeError(f"trade {trade.id} is {trade.state.value}")
            await self._resolve(trade)
            await self._refund(trade)
            return trade

    def _expire(self, trade_id: str) -> None:
        trade = self._trades.get(trade_id)
        if trade is None or not trade.idle(self._clock.seconds(), self._timeout):
            return
        d = defer.Deferred.fromCoroutine(self._expired(trade))
        d.addErrback(lambda f: self.log.failure("trade {trade} expired", f, trade=trade_id))

    async def _expired(self, trade: Trade) -> None:
        async with self._locks[trade.id]:
            if trade.state is not State.OPEN:
                return
            await self._resolve(trade)
            await self._refund(trade)
        if self._expired_callback is not None:
            await defer.maybeDeferred(self._expired_callback, trade)

    def forget(self) -> None:
        """
        Drop every trade from memory, as a process that stops serving
        trades does: what their escrows hold stays there, with one owner,
        until the next L{recover}.
        """
        for expiry in self._expiries.values():
            if expiry.active():
                expiry.cancel()
        self._trades.clear()
        self._by_player.clear()
        self._deposits.clear()
        self._unseen.clear()
        self._locks.clear()
        self._expiries.clear()

    async def _resolve(self, trade: Trade) -> None:
        """
        Find out whether each deposit the store did not answer went through:
        one that did is a deposit like any other (given back if its offer
        changes or the trade is cancelled, paid out at the settlement), one
        that did not is forgotten.  Before any other step of the trade, so
        that none leaves a deposit in escrow unaccounted for.

        @raise BackendUnavailable: The store is still out of reach (the
            step is not taken).
        """
        unseen = self._unseen[trade.id]
        for side, (version, holding) in list(unseen.items()):
            if await self._ledger.posted(event_key("trade", trade.id, "deposit", side, version)):
                self._deposits[trade.id][side] = (version, holding)
            del unseen[side]

    async def _escrow(self, trade, step: str, side: str, version: int, holding: Holding):
        """Deposit C{holding} of C{side}, or give it back, keyed by the side and version."""
        account = self._rules.account(trade.players[side])
        escrow = self._transfers.escrow_account(trade.id)
        source, target = (account, escrow) if step == "deposit" else (escrow, account)
        legs = self._rules.transfer(source, target, holding)
        key = event_key("trade", trade.id, step, side, version)
        return await self._ledger.post(key, f"trade.{step}", legs, returning=step != "deposit")

    def _sides(self, trade: Trade) -> dict[str, tuple[str, Holding]]:
        deposits = self._deposits[trade.id]
        return {
            side: (player_id, deposits[side][1] if side in deposits else Holding())
            for side, player_id in trade.players.items()
        }

    async def _settle(self, trade: Trade) -> None:
        trade.settling()
        sides = self._sides(trade)
        if any(holding for _, holding in sides.values()):
            try:
                await self._transfers.settle(trade.id, sides)
            except EconomyError:
                await self._refund(trade)
                raise
        trade.settled()
        self._close(trade)

    async def _refund(self, trade: Trade) -> None:
        sides = self._sides(trade)
        if any(holding for _, holding in sides.values()):
            await self._transfers.refund(trade.id, sides)
        trade.cancelled()
        self._close(trade)

    def _close(self, trade: Trade) -> None:
        del self._trades[trade.id], self._deposits[trade.id], self._locks[trade.id]
        del self._unseen[trade.id]
        for player_id in trade.players.values():
            del self._by_player[player_id]
        expiry = self._expiries.pop(trade.id)
        if expiry.active():
            expiry.cancel()

    async def recover(self) -> list[str]:
        """
        At start, before any trade: give back what every escrow left
        holding value by a crash holds, to whoever deposited it (an
        escrow whose settlement was posted is left).

        @return: The ids of the trades refunded (one the ledger refuses,
            say for want of room in an inventory, stays in escrow, logged).
        """
        refunded, after = [], None
        while True:
            page = await self._ledger.store.economy_accounts("escrow", MAX_READ, after)
            for escrow in page:
                trade_id = escrow[len(ESCROW) :]
                if await self._ledger.posted(event_key("trade", trade_id, "settle")):
                    continue
                try:
                    await self._give_back(trade_id, escrow)
                except EconomyError:
                    # Still in escrow, with one owner: the next start retries.
                    self.log.failure("trade {trade} not refunded", trade=trade_id)
                else:
                    refunded.append(trade_id)
            if len(page) < MAX_READ:
                return refunded
            after = page[-1]

    async def _give_back(self, trade_id: str, escrow: str) -> None:
        """
        Refund C{escrow} to its depositors: each player's net of the
        postings of the escrow (his deposits less what it gave him back).
        """
        store = self._ledger.store
        owed: dict[tuple[str, str], int] = {}
        last, before = 0, None
        while True:
            page = await store.economy_history(escrow, MAX_READ, before)
            for entry in page:
                last = max(last, entry.seq)
                posting = await store.economy_posting(entry.key)
                for leg in posting.legs:
                    if leg.account != escrow:
                        held = owed.get((leg.account, leg.asset), 0)
                        owed[leg.account, leg.asset] = held - leg.amount
            if len(page) < MAX_READ:
                break
            before = page[-1].seq
        legs = []
        for (account, asset), amount in owed.items():
            if amount > 0:
                legs += [
                    self._rules.leg(escrow, asset, -amount),
                    self._rules.leg(account, asset, amount),
                ]
        # Keyed by the escrow's last posting: a retry of this recovery is
        # applied once.
        key = event_key("trade", trade_id, "recover", last)
        await self._ledger.post(key, "trade.refund", legs, returning=True)
