"""
Sessions whose gateway died: a game service's process ends them itself.

Only a gateway says that one of its sessions ended (C{"ended"},
L{GameService.session_event}), and a gateway that crashes says nothing:
what the services hold for its sessions (the lobby's chosen characters and
rooms, chat's presence, the zones' entities) would stay as long as they
run, and its players, logging in again, would find their characters "in
play in another session".  So every game-service process runs a
L{GatewayWatch}, which ends such sessions exactly as the gateway's
C{"ended"} would have:

  - A gateway that starts says so on the bus (L{GatewayStarted} on
    L{GATEWAYS_CHANNEL}) with a fresh incarnation id, which the callers of
    its sessions carry (L{Caller.incarnation}).  On hearing it the watch
    ends every session held with that gateway's name and another
    incarnation: those died with the earlier process.  A session resumed
    on the new process carries the new id and is kept; one that moved to
    another gateway (a resume elsewhere, a drain) carries that gateway's
    name and is kept.
  - While sessions are held, every C{[bus] heartbeat_interval} seconds, it
    reads the directory: a gateway missing from it for C{[gateway]
    gone_after} seconds (it did not come back) is gone and its sessions
    end; a gateway whose entry names another incarnation than a session's
    restarted (its announcement was missed) and that session ends.

The sessions held are those the process heard of in requests and session
events, or from the gateways' lists at its start (L{KnownSessions}), and
those the service says it holds (L{GameService.held_sessions}: a zone's
players handed over to it).  See
C{docs/sessions.md}, "When a gateway dies".
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Iterator

from twisted.internet import defer, task
from twisted.logger import Logger

from mmo.game import messages
from mmo.game.messages import GATEWAYS_CHANNEL, GatewayStarted
from mmo.game.service import Caller

#: Ended sessions remembered, so that a request of one that was on its way
#: when it ended does not bring it back (L{KnownSessions}).
ENDED_REMEMBERED = 10000


class KnownSessions:
    """
    The sessions a game-service process heard of (requests and session
    events), each as its latest L{Caller}, until it ends.  What is kept is
    bounded by the live sessions: one that ended is not brought back by a
    request that was on its way meanwhile (the last C{remember} ended ones
    are known as such).
    """

    def __init__(self, remember: int = ENDED_REMEMBERED):
        self.remember = remember
        self._callers: dict[str, Caller] = {}
        self._ended: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._callers)

    def __iter__(self) -> Iterator[Caller]:
        return iter(list(self._callers.values()))

    def get(self, session: str) -> Caller | None:
        """The latest caller of C{session}, if it is live."""
        return self._callers.get(session)

    def heard(self, caller: Caller) -> None:
        """A request of C{caller}'s session: it is live, as C{caller} says."""
        if caller.session not in self._ended:
            self._callers[caller.session] = caller

    def found(self, caller: Caller) -> bool:
        """
        A session a gateway lists as held there: it is live, unless it was
        heard of (or ended) already, which wins.  Whether it was news.
        """
        if caller.session in self._callers or caller.session in self._ended:
            return False
        self._callers[caller.session] = caller
        return True

    def event(self, caller: Caller, event: str) -> None:
        """A session event (L{GameService.session_event}) of C{caller}'s session."""
        if event == "ended":
            self.ended(caller.session)
            return
        if event == "started":
            self._ended.pop(caller.session, None)
        self.heard(caller)

    def ended(self, session: str) -> None:
        """The session ended: forgotten, and remembered as ended."""
        self._callers.pop(session, None)
        self._ended[session] = None
        self._ended.move_to_end(session)
        while len(self._ended) > self.remember:
            self._ended.popitem(last=False)


class GatewayWatch:
    """
    Ends a game service's sessions whose gateway restarted or is gone (see
    the module docstring).  A process resource: L{start} subscribes to
    L{GATEWAYS_CHANNEL} and starts the sweeps, L{stop} stops both.

    @ivar service: The L{GameService}.
    @ivar known: The L{KnownSessions} of the process, which its RPC
        listener feeds (L{mmo.game.server.ServiceRPCFactory}).
    @ivar interval: Seconds between sweeps of the directory.
    @ivar gone_after: Seconds a gateway may be missing from the directory
        before its sessions end.
    """

    log = Logger()

    def __init__(
        self,
        service,
        bus,
        clock,
        interval: float,
        gone_after: float,
        known: KnownSessions | None = None,
    ):
        self.service = service
        self.bus = bus
        self.clock = clock
        self.interval = interval
        self.gone_after = gone_after
        self.known = known if known is not None else KnownSessions()
        #: Gateway name -> when a sweep first found it missing from the directory.
        self._missing: dict[str, float] = {}
        self._subscription = None
        self._loop: task.LoopingCall | None = None
        self._sweeping: defer.Deferred | None = None

    @classmethod
    def from_config(cls, config, service, bus, clock) -> GatewayWatch:
        """One sweeping every C{[bus] heartbeat_interval}, with C{[gateway] gone_after}."""
        return cls(service, bus, clock, config.bus.heartbeat_interval, config.gateway.gone_after)

    # -- life cycle ------------------------------------------------------------------

    async def start(self) -> None:
        dispatcher = messages.Dispatcher("gateway watch")
        dispatcher.on(GatewayStarted, self.gateway_started)
        self._subscription = await self.bus.subscribe(GATEWAYS_CHANNEL, dispatcher)
        self._loop = task.LoopingCall(self._tick)
        self._loop.clock = self.clock
        self._loop.start(self.interval, now=False)

    async def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            await subscription.cancel()

    # -- what is held ----------------------------------------------------------------

    def held(self) -> dict[str, list[Caller]]:
        """
        The sessions held, by gateway name: those heard of, and those the
        service holds that were not (as it gives them).
        """
        by_session = {c.session: c for c in self.service.held_sessions()}
        by_session.update((c.session, c) for c in self.known)
        by_gateway: dict[str, list[Caller]] = defaultdict(list)
        for caller in by_session.values():
            if isinstance(caller.gateway, str) and caller.gateway:
                by_gateway[caller.gateway].append(caller)
        return by_gateway

    def _holds_any(self) -> bool:
        return len(self.known) > 0 or any(True for _ in self.service.held_sessions())

    # -- a gateway started -----------------------------------------------------------

    def gateway_started(self, sender: str, message: GatewayStarted) -> defer.Deferred | None:
        """
        Gateway C{message.gateway} started as C{message.incarnation}: the
        sessions held of another incarnation of it died with that one.
        """
        gateway, incarnation = message.gateway, message.incarnation
        if not (isinstance(gateway, str) and isinstance(incarnation, str) and incarnation):
            self.log.warn("malformed gateway start from {sender}", sender=sender or "?")
            return None
        self._missing.pop(gateway, None)
        dead = [c for c in self.held().get(gateway, ()) if c.incarnation != incarnation]
        return self.end(dead, f"gateway {gateway} restarted")

    # -- the sweep ---------------------------------------------------------------------

    def _tick(self) -> None:
        # One sweep at a time; a slow one (the bus is slow) makes this tick a no-op.
        if self._sweeping is not None:
            return
        self._sweeping = defer.ensureDeferred(self.sweep())

        def done(result):
            self._sweeping = None
            return result

        self._sweeping.addBoth(done).addErrback(
            lambda f: self.log.failure("sweeping the sessions of dead gateways failed", f)
        )

    async def sweep(self) -> None:
        """
        Read the directory (if any session is held): end the sessions of
        the gateways missing from it for L{gone_after} seconds, and those
        of an incarnation other than the one its entry names.
        """
        if not self._holds_any():
            self._missing.clear()
            return
        try:
            entries = await self.bus.services()
        except Exception as e:
            self.log.warn("cannot read the directory to find dead gateways: {why}", why=str(e))
            return
        now = self.clock.seconds()
        held = self.held()
        for gateway in set(self._missing) - set(held):
            del self._missing[gateway]
        ending: list[defer.Deferred] = []
        for gateway, callers in held.items():
            info = entries.get(gateway)
            if not isinstance(info, dict):
                since = self._missing.setdefault(gateway, now)
                if now - since >= self.gone_after:
                    del self._missing[gateway]
                    ending.append(self.end(callers, f"gateway {gateway} is gone"))
                continue
            self._missing.pop(gateway, None)
            current = info.get("incarnation")
            if isinstance(current, str) and current:
                dead = [c for c in callers if c.incarnation and c.incarnation != current]
                ending.append(self.end(dead, f"gateway {gateway} restarted"))
        await defer.gatherResults(ending)

    # -- ending ------------------------------------------------------------------------

    def end(self, callers: Iterable[Caller], why: str) -> defer.Deferred:
        """
        End the sessions of C{callers} as their gateway's C{"ended"} would
        have.  Fires once the service handled every one; a failure is
        logged.
        """
        calls = []
        for caller in callers:
            self.known.ended(caller.session)
            d = defer.ensureDeferred(self.service.session_event(caller, "ended"))
            d.addErrback(
                lambda f, session=caller.session: self.log.failure(
                    "ending session {session} failed", f, session=session
                )
            )
            calls.append(d)
        if calls:
            self.log.info("{count} sessions ended: {why}", count=len(calls), why=why)
        return defer.gatherResults(calls).addCallback(lambda _: None)
