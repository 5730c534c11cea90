"""
Replacing the process of a zone while players walk in it: the old process
hands the zone over to a new one of the same name (C{mmo-zone --takeover},
a rolling upgrade), cut at a marker on the zone's own bus channel.  See
C{docs/world.md}, "Replacing a zone process".

    old process                          zone:REGION                 new process
    no new crossings; settle handoffs                                 (standby: subscribed,
    TakeoverMarker(token) -------------->  ... -------------------->  buffers what follows)
    its own marker back: stop ticking,
    final checkpoint
    HandedOver(token, tick, views...) -->  ... -------------------->  recover (fenced), replay
    inputs/events still coming: relayed ->  ... -------------------->  the buffered, tick on

Redis pub/sub and the memory bus deliver one channel to every subscriber in
the same order, so the old process handled exactly what came before the
marker and the new one handles exactly what comes after it.
"""

from __future__ import annotations

from twisted.internet import defer, task
from twisted.logger import Logger

from mmo.game import messages
from mmo.game.messages import (
    HandedOver,
    HandoverAborted,
    RelayedEvent,
    TakeoverMarker,
    zone_channel,
)
from mmo.zone.entity import Entity

#: The zone's modes: serving (the usual), standby (a new process waiting
#: for the old one's marker), handing (the old one settling its handoffs
#: before its marker), handed (the old one, after its marker: it serves
#: nothing of the region any more).
SERVING, STANDBY, HANDING, HANDED = "serving", "standby", "handing", "handed"

#: Seconds the old process waits for its handoffs in flight to settle
#: before its marker, and for its marker to come back.
SETTLE_TIMEOUT = 2.0
MARKER_TIMEOUT = 5.0

#: The steps of a takeover on the zone's channel (everything else on it is
#: the zone's own traffic).
STEPS = (TakeoverMarker, HandedOver, HandoverAborted)


class TakeoverFailed(Exception):
    """The zone could not be handed over: the old process goes on serving it."""


class Takeover:
    """
    One zone's side of replacing its process, old or new.

    @ivar zone: The L{mmo.zone.service.ZoneService}.
    @ivar mode: L{SERVING}, L{STANDBY}, L{HANDING} or L{HANDED}.
    @ivar took_over: Standby: fires when this zone took over.
    @ivar pause_ms: Milliseconds between the old process's last tick and
        this one's first, once taken over.
    """

    log = Logger()

    def __init__(self, zone):
        self.zone = zone
        self.mode = SERVING
        self.took_over: defer.Deferred | None = None
        self.pause_ms: float | None = None
        self._token: str | None = None
        #: Standby: the messages after our predecessor's marker, in order.
        self._standby: list | None = None
        self._marker: defer.Deferred | None = None
        #: Handed: what comes for the region before the successor was told
        #: to go on (published after L{HandedOver}), else C{None}.
        self._relay: list | None = None

    @property
    def serving(self) -> bool:
        """Whether this process serves the zone's players (not standby, not handed)."""
        return self.mode == SERVING or self.mode == HANDING

    def wait(self, token: str) -> None:
        """
        The new process: stand by for the takeover of C{token} (before asking
        for it); L{took_over} fires once done.
        """
        self.mode = STANDBY
        self._token = token
        self.took_over = defer.Deferred()

    def serve(self) -> None:
        """Serve the zone as usual (a plain start, or no predecessor answered)."""
        self.mode = SERVING
        self._standby = None

    # -- the channel -------------------------------------------------------------------

    def heard(self, data) -> bool:
        """
        A message on the zone's channel, before the zone handles it: whether
        the takeover took it (a step of its own, or what a standby zone
        keeps for later, or what a handed zone no longer handles).
        """
        if isinstance(data, dict) and data.get("type") in _STEP_NAMES:
            try:
                _, step = messages.decode(data)
            except ValueError as e:
                self.log.warn(
                    "zone {zone}: dropped a takeover step: {why}", zone=self.zone.name, why=e
                )
                return True
            self._step(step)
            return True
        if self.mode == STANDBY:
            if self._standby is not None:
                self._standby.append(data)
            return True
        return self.mode == HANDED

    def relay(self, value, sender: str = "") -> bool:
        """
        After the marker, what still reaches this process for the zone (an
        input, a session event) goes to its successor, on the zone's
        channel, in order: whether it was relayed.
        """
        if self.mode != HANDED:
            return False
        data = messages.encode(value, sender)
        if self._relay is not None:
            self._relay.append(data)
        else:
            self.zone.publish(zone_channel(self.zone.name), data)
        return True

    def relay_event(self, caller, event: str) -> bool:
        """A session event after the marker, for the successor: whether it was relayed."""
        return self.relay(RelayedEvent(self._token or "", caller.to_dict(), event))

    def _step(self, step) -> None:
        token = step.token
        if isinstance(step, TakeoverMarker):
            if self.mode == HANDING and token == self._token and self._marker is not None:
                # Our own marker: everything before it was handled here.
                self.mode = HANDED
                self._relay = []
                self.zone.pause()
                marker, self._marker = self._marker, None
                marker.callback(None)
            elif self.mode == STANDBY and token == self._token:
                # Our predecessor's: what follows is ours.
                self._standby = []
        elif isinstance(step, HandedOver) and self.mode == STANDBY and token == self._token:
            d = defer.ensureDeferred(self._take_over(step))
            d.addErrback(
                lambda f: self.log.failure("zone {zone}: takeover", f, zone=self.zone.name)
            )
        elif isinstance(step, HandoverAborted) and self.mode == STANDBY and token == self._token:
            self._standby = None
            if self.took_over is not None and not self.took_over.called:
                self.took_over.errback(TakeoverFailed(f"zone {self.zone.name}: aborted"))

    # -- the old process ---------------------------------------------------------------

    async def hand_over(
        self, token: str, settle: float = SETTLE_TIMEOUT, marker_timeout: float = MARKER_TIMEOUT
    ) -> None:
        """
        The old process's side: hand the zone over to the process waiting
        in standby with C{token}.  No new crossings; the handoffs in flight
        settle (at most C{settle} seconds); then the marker goes on the
        zone's channel.  When it comes back (everything before it was
        handled here), the ticks stop, every real is written to the store
        and L{HandedOver} tells the successor what it needs to go on; inputs
        that still come here follow it on the channel.

        @raise TakeoverFailed: The marker did not come back in
            C{marker_timeout} seconds, or the last checkpoint failed: the
            zone goes on serving here (and the successor is told it aborted).
        """
        zone = self.zone
        if self.mode != SERVING:
            raise TakeoverFailed(f"zone {zone.name} is {self.mode}")
        self.mode, self._token = HANDING, token
        waited = 0.0
        while zone.handoff.in_flight() and waited < settle:
            await task.deferLater(zone.reactor, 0.05, lambda: None)
            waited += 0.05
        self._marker = defer.Deferred()
        channel = zone_channel(zone.name)
        zone.publish(channel, messages.encode(TakeoverMarker(token), zone.name))
        marker = self._marker.addTimeout(marker_timeout, zone.reactor)
        try:
            await marker
        except defer.TimeoutError:
            self._abort("the marker did not come back")
            raise TakeoverFailed(f"zone {zone.name}: marker lost") from None
        # From here on (our own marker handled, ticks stopped) nothing is ours.
        try:
            handed = await self._final_state(token)
        except Exception as e:
            self.log.failure("zone {zone}: final checkpoint failed", zone=zone.name)
            self._abort(f"final checkpoint failed: {e}")
            raise TakeoverFailed(f"zone {zone.name}: final checkpoint failed") from None
        zone.publish(channel, messages.encode(handed, zone.name))
        for message in zone.handoff.pending_inputs():
            zone.publish(channel, messages.encode(message, self._gateway_of(message.entity_id)))
        relay, self._relay = self._relay or [], None
        for data in relay:
            zone.publish(channel, data)
        zone.handoff.stop()
        self.log.info(
            "zone {zone}: handed over ({reals} entities, tick {tick})",
            zone=zone.name,
            reals=len(zone.simulation.reals),
            tick=zone.simulation.tick_count,
        )

    def _gateway_of(self, entity_id: str) -> str:
        """The gateway of the player whose entity is C{entity_id}, or ""."""
        entity = self.zone.simulation.get(entity_id)
        return entity.gateway if entity is not None and entity.gateway else ""

    async def _final_state(self, token: str) -> HandedOver:
        """
        The old process, its ticks stopped: every real written to the store,
        and what the successor needs to go on.
        """
        zone = self.zone
        refused = await zone.store.checkpoint(zone.name, zone.handoff.final_records())
        sim = zone.simulation
        players = [e for e in sim.reals.values() if e.session is not None]
        return HandedOver(
            token=token,
            tick=sim.tick_count,
            ghost_tick=zone.outbox.ghost_tick,
            last_tick=zone.last_tick_at,
            seen={e.id: sim.seen(e.id) for e in players},
            npcs=[e.to_dict() for e in sim.reals.values() if not zone.handoff.is_real(e.id)],
            npc_serial=sim.npc_serial,
            ghosts=zone.ghosts.snapshot(),
            refused=list(refused or ()),
        )

    def _abort(self, why: str) -> None:
        """The takeover failed here: serve on, and tell the successor."""
        zone = self.zone
        self.log.warn("zone {zone}: handover aborted: {why}", zone=zone.name, why=why)
        was_handed = self.mode == HANDED
        self.mode = SERVING
        relay, self._relay = self._relay or [], None
        zone.publish(
            zone_channel(zone.name), messages.encode(HandoverAborted(self._token or ""), zone.name)
        )
        if was_handed:
            zone.resume()
        for data in relay:
            zone.heard(data)

    # -- the new process ---------------------------------------------------------------

    async def _go_on(self, handed: HandedOver, buffered: list) -> None:
        """
        Go on from the predecessor's L{HandedOver} (views, NPCs, ghosts, tick
        count), handle what came after the marker (C{buffered}), recover the
        zone from the store and tick.
        """
        zone = self.zone
        sim = zone.simulation
        sim.continue_from(int(handed.tick or 0), int(handed.npc_serial or 0))
        zone.outbox.continue_from(int(handed.ghost_tick or 0))
        for data in handed.npcs or ():
            sim.add(Entity.from_dict(data))
        zone.ghosts.restore(handed.ghosts or {})
        for data in buffered:
            # Handoff messages wait in the handoff until it recovered.
            zone.heard(data)
        await zone.handoff.recover(handed.seen)
        zone.resume()

    async def _take_over(self, handed: HandedOver) -> None:
        """
        The new process's side, on L{HandedOver}: recover the zone from the
        store (fencing what the old process may still have in flight), with
        its players' views, NPCs, ghosts and tick count, then the messages
        that came after the marker, and start ticking.
        """
        zone = self.zone
        self.mode = SERVING
        buffered, self._standby = self._standby or [], None
        await self._go_on(handed, buffered)
        last = handed.last_tick
        now = zone.last_tick_at
        pause = (now - last) * 1000 if isinstance(last, (int, float)) and now is not None else None
        self.pause_ms = pause
        self.log.info(
            "zone {zone}: took over {reals} entities at tick {tick} (pause {pause} ms)",
            zone=zone.name,
            reals=len(zone.simulation.reals),
            tick=zone.simulation.tick_count,
            pause=f"{pause:.0f}" if pause is not None else "?",
        )
        if self.took_over is not None and not self.took_over.called:
            self.took_over.callback(None)


_STEP_NAMES = frozenset(cls.__name__ for cls in STEPS)
