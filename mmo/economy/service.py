"""
The economy service: wallets, inventories, shops and trades, for clients
(C{wallet.*}, C{inventory.*}, C{shop.*}, C{trade.*}; C{docs/protocol.md},
I{The economy}).

Every economy process (kind C{"economy"}, or the standalone server)
answers the store's requests itself (L{mmo.economy.ledger_requests}):
each reads the ledger or posts once under a key of the request.  Trades
live in the memory of one process (L{mmo.economy.trade_requests}): the
holder of the bus lease L{TRADES_LEASE_KEY} (L{mmo.game.lease}).  On
taking it the process gives back what escrows left by a crash hold
(L{mmo.economy.trades.Trades.recover}) before it serves a trade; the
others stand by (their directory entry says C{standby}) and relay
C{trade.*} to it (L{mmo.game.relay}).  A holder that loses the lease
drops its trades from memory: their escrows keep every coin and item
with one owner, and the next holder's recovery gives them back.

Every economy process hears every session event: it keeps who is online
(L{mmo.game.presence}), so that a trade's partner is found by name, and
asks the gateways for the sessions online when it starts
(L{mmo.process.seeding}); the
holder pays each login's start credit (once per player for ever) and
cancels the trade of a session that ended.

The contract with clients is C{docs/protocol.md}; the design C{docs/economy.md}.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.python.failure import Failure

from mmo.economy.economy import Economy
from mmo.economy.errors import EconomyError
from mmo.economy.ledger_requests import LedgerRequests
from mmo.economy.supply import economy_jobs
from mmo.economy.trade_requests import TradeRequests
from mmo.economy.trades import Trades
from mmo.economy.views import wire_error
from mmo.game.lease import Lease
from mmo.game.presence import Presence
from mmo.game.relay import Relay
from mmo.game.service import Caller, GameService
from mmo.unavailable import log_failure
from mmo.wire.codes import UNAVAILABLE, WireError

#: The bus lease of the process serving trades.
TRADES_LEASE_KEY = "economy.trades"

#: The message types only the holder of the lease answers.
TRADE_PREFIX = "trade."


class EconomyService(LedgerRequests, TradeRequests, GameService):
    """
    The economy's client requests, and its trades while this process holds
    their lease.

    @ivar economy: The L{Economy} over the store's ledger.
    @ivar presence: The sessions online (L{Presence}).
    @ivar trades: The open trades (L{Trades}; none while standing by).
    @ivar parties: Account id -> the session of a party to an open trade.
    @ivar lease: The trades' lease (L{Lease}).
    @ivar relay: Sends C{trade.*} to the holder while standing by (L{Relay}).
    """

    kind = "economy"
    prefixes = ("wallet.", "inventory.", "shop.", TRADE_PREFIX)
    finds_sessions = True

    def __init__(self, config, store, bus, reactor, holder: str | None = None):
        super().__init__(config, store, bus, reactor)
        self.economy = Economy(config.economy, store, reactor)
        self.presence = Presence()
        self.lease = Lease(
            bus,
            TRADES_LEASE_KEY,
            "economy",
            config.economy.trade_lease,
            reactor,
            self._take,
            self._stand_by,
            holder=holder,
        )
        self.relay = Relay(
            bus, reactor, self.kind, self.lease.holder, busy="trades are being taken over"
        )
        self._reset()
        #: The start credits paid in the background since the lease was taken.
        self._start_credits: defer.Deferred | None = None

    def _reset(self) -> None:
        """No trade (a process standing by holds none)."""
        self.trades = Trades(self.economy, self.reactor, expired=self.trade_expired)
        self.parties: dict[str, Caller] = {}
        self._serving = False

    @property
    def serving(self) -> bool:
        """Whether this process serves trades: it holds their lease, and recovered the escrows."""
        return self._serving and self.lease.writable()

    # -- life cycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Give the vendors their first stock (once), listen, and contend for the trades."""
        await self.economy.start()
        await self.relay.start(lambda: self.serving, self._handle_here)
        await self.lease.start()

    async def stop(self) -> None:
        """Release the trades' lease (the next holder recovers their escrows)."""
        await self.lease.stop()
        if self._start_credits is not None:
            await self._start_credits
        await self.relay.stop()

    async def _take(self, token: int) -> None:
        """The lease is ours: give back what escrows hold, then serve trades."""
        self._reset()
        refunded = await self.trades.recover()
        self.log.info(
            "economy: serving trades (token {token}); {count} escrows given back",
            token=token,
            count=len(refunded),
        )
        self._serving = True
        # A login while no process held the lease was not paid its start
        # credit: the players online are, now (once per player for ever, so
        # a player paid before costs a duplicate posting, nothing more).
        # In the background: serving trades does not wait for it.
        online = list(self.presence.accounts())
        self._start_credits = defer.ensureDeferred(self._pay_starts(online))

    def _stand_by(self) -> None:
        """The lease is not ours (any more): its trades are dropped from memory."""
        if self._serving:
            self.log.info(
                "economy: standing by; {count} trades dropped (their escrows are kept)",
                count=len(self.trades),
            )
            self.trades.forget()
        self._reset()

    # -- sessions -------------------------------------------------------------------------

    async def session_event(self, caller: Caller, event: str) -> None:
        """
        Keep presence; the holder pays a login's start credit and cancels
        the trade of a session that ended (C{why: "left"}).
        """
        if event == "ended":
            self.presence.end(caller.session)
            if self.serving:
                await self.party_left(caller)
            return
        if event == "started":
            self.presence.restart(caller.session)
        self.presence.track(caller)
        party = self.parties.get(caller.account_id)
        if party is not None and party.session == caller.session:
            self.parties[caller.account_id] = caller
        if event == "started" and self.serving:
            await self._pay_starts([caller.account_id])

    async def session_found(self, caller: Caller) -> None:
        """
        Keep presence of a session a gateway listed, unless heard of since
        the start; the holder pays its start credit (its login may have come
        while no process held the lease).
        """
        if self.presence.unheard(caller.session):
            self.presence.track(caller)
            if self.serving:
                await self._pay_starts([caller.account_id])

    async def _pay_starts(self, accounts) -> None:
        """Pay each account's start credit (once per player for ever), failures logged."""
        for account in accounts:
            if not self.serving:
                return  # stopped, or the lease lost: the next holder pays
            try:
                await self.economy.wallets.start(account)
            except Exception:
                log_failure(
                    Failure(),
                    self.log,
                    "economy: the start credit of {account} was not paid",
                    account=account,
                )

    # -- client messages ------------------------------------------------------------------

    async def handle(self, caller: Caller, kind: str, message: dict) -> dict | None:
        """
        Answer a client's message; a trade's, on a process standing by, is
        relayed to the one serving trades (L{mmo.game.relay}).
        """
        if kind.startswith(TRADE_PREFIX) and self.owns(kind) and not self.serving:
            return await self.relay.call(caller, kind, message)
        return await self._handle_here(caller, kind, message)

    async def _handle_here(self, caller: Caller, kind: str, message: dict) -> dict | None:
        if kind.startswith(TRADE_PREFIX) and not self.serving:
            raise WireError(UNAVAILABLE, "trades are being taken over; retry")
        if not self.presence.ended(caller.session):
            self.presence.track(caller)
        try:
            return await super().handle(caller, kind, message)
        except EconomyError as e:
            raise wire_error(e) from None

    def held_sessions(self):
        """The sessions of the parties to open trades: a dead gateway's end theirs."""
        return list(self.parties.values())

    def jobs(self):
        """The money-supply metrics job (L{mmo.economy.supply}), run once across the deployment."""
        return economy_jobs(self.config, self.store, self.bus, self.reactor)

    def directory_info(self) -> dict:
        info = {"load": len(self.trades), "trades": len(self.trades)}
        if not self.serving:
            info["standby"] = True
        return info
