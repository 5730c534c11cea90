"""
One zone's side of every handoff, in and out: L{ZoneHandoff}.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from twisted.internet import defer

from mmo.game.messages import Accept, Done, Forward, Input, Offer, Refuse, Switched
from mmo.metrics.registry import (
    ZONE_HANDOFFS_ABORTED,
    ZONE_HANDOFFS_COMPLETED,
    ZONE_HANDOFFS_STARTED,
)
from mmo.store import IStore
from mmo.zone.checkpoint import restore_zone
from mmo.zone.entity import Entity
from mmo.zone.handoff.arrivals import Arrivals
from mmo.zone.handoff.base import (
    ACTIVE,
    FORWARDING,
    HOLDING,
    LEAVING,
    OFFERING,
    Link,
    ZoneState,
    _Forwarding,
    _Holding,
    _Outgoing,
    client_view,
    log,
)
from mmo.zone.handoff.departures import Departures
from mmo.zone.handoff.inputs import InputGate


class HandoffCounts:
    """The counters of one zone's handoffs (as the old owner), taken once."""

    def __init__(self, zone: str):
        self.started = ZONE_HANDOFFS_STARTED.labels(zone)
        self.completed = ZONE_HANDOFFS_COMPLETED.labels(zone)
        self.aborted = ZONE_HANDOFFS_ABORTED.labels(zone)


class ZoneHandoff(Departures, Arrivals, InputGate):
    """
    One zone's side of every handoff, in and out, and the gate of its
    players' inputs.

    Every real of the zone enters through it (L{recover} at start, L{enter}
    for a new entity, or a handoff), so that it knows each real's state.
    Feed it every message from other zones and gateways (L{receive}); call
    L{cross} when the simulation reports that a real crossed into a
    neighbour's region (the simulation's hysteresis decides when).

    @param name: This zone's name (as the store and the links know it).
    @param store: An L{IStore}.
    @param zone: The simulation, a L{ZoneState}.
    @param link: A L{Link}.
    @param clock: Provides C{callLater} and C{seconds} (a reactor).
    @param offer_retry: Seconds between repeats of an unanswered offer (and
        between attempts to ask the store after a store error).
    @param offer_timeout: Seconds after which an unanswered offer is settled
        through the store: undone, or completed if the neighbour committed.
    @param switch_retry: Seconds between repeats of an unanswered route switch.
    @param switch_timeout: Seconds after which the old owner stops waiting
        for the gateway's C{Switched} and sends C{Done} anyway.
    @param hold_timeout: Seconds the new owner holds the gateway's inputs
        waiting for C{Done} (best above C{offer_timeout + switch_timeout}).
    @param forward_ttl: Seconds the old owner keeps forwarding inputs of an
        entity it handed over.
    @param max_buffered_inputs: Inputs kept per entity while offering or
        holding; more are dropped (at most once allows it; a client that
        floods gets corrected).
    @param new_transfer_id: Makes transfer ids, unique in the world
        (default: random UUIDs).
    @param on_real_added: Called with an entity id when it becomes a real
        here (for L{mmo.zone.ghosts.GhostTable.real_added}).
    @param on_handed_over: Called when a real of this zone was handed over
        and removed, with the entity (its last state here), the zone that
        owns it now, its version there, and the C{ghost_tick} of that
        zone's L{Accept} (or C{None}): for
        L{mmo.zone.ghosts.GhostTable.handed_over}.
    @param on_settled: Called with an entity id whenever a real becomes
        active here (it entered, was restored or adopted, arrived, or its
        handoff was undone): what the zone put off while it was not
        active (a session that ended meanwhile) it may do now, and the
        entity may leave from this call.
    @param on_view_lost: Called with the id of a player released at
        C{hold_timeout} (without the old owner's L{Done}), or by a L{Done}
        sent without the gateway's L{Switched}: what the old owner last
        showed it may not have reached it (the old owner crashed, or its
        stream to the gateway was down), so the player's view starts over.
    """

    def __init__(
        self,
        name: str,
        store: IStore,
        zone: ZoneState,
        link: Link,
        clock,
        *,
        offer_retry: float = 0.1,
        offer_timeout: float = 1.0,
        switch_retry: float = 0.1,
        switch_timeout: float = 1.0,
        hold_timeout: float = 2.5,
        forward_ttl: float = 10.0,
        max_buffered_inputs: int = 256,
        new_transfer_id: Callable[[], str] | None = None,
        on_real_added: Callable[[str], None] | None = None,
        on_handed_over: Callable[[Entity, str, int, int | None], None] | None = None,
        on_settled: Callable[[str], None] | None = None,
        on_view_lost: Callable[[str], None] | None = None,
    ):
        self.name = name
        #: The counts of this zone's handoffs: C{started}, C{completed}, C{aborted}.
        self.counts = HandoffCounts(name)
        self.store = store
        self.zone = zone
        self.link = link
        self.clock = clock
        self.offer_retry = offer_retry
        self.offer_timeout = offer_timeout
        self.switch_retry = switch_retry
        self.switch_timeout = switch_timeout
        self.hold_timeout = hold_timeout
        self.forward_ttl = forward_ttl
        self.max_buffered_inputs = max_buffered_inputs
        self.new_transfer_id = new_transfer_id or (lambda: uuid.uuid4().hex)
        self.on_real_added = on_real_added
        self.on_handed_over = on_handed_over
        self.on_settled = on_settled
        self.on_view_lost = on_view_lost
        #: The state of each real: ACTIVE, HOLDING, OFFERING or LEAVING.
        self._status: dict[str, str] = {}
        #: The transfer that brought each real here, if one did.
        self._arrived: dict[str, str] = {}
        self._offers: dict[str, _Outgoing] = {}
        self._switching: dict[str, _Outgoing] = {}
        self._holding: dict[str, _Holding] = {}
        self._forwarding: dict[str, _Forwarding] = {}
        #: Messages about an entity waiting for a store call about it.
        self._waiting: dict[str, list[tuple[str, object]]] = {}
        self._ready = False
        self._early: list[tuple[str, object]] = []
        self._timers: set = set()
        self._stopped = False

    # -- life cycle ----------------------------------------------------------

    def recover(self, seen: dict | None = None) -> defer.Deferred:
        """
        Take back the zone's entities: exactly those the store says it owns,
        fenced (L{restore_zone}).  Call it once, at start; messages received
        before it finishes are handled after.  Deferred[list[Entity]].

        @param seen: What the clients of players have in view, by entity
            id, if known (a takeover: the process it replaces said it); the
            views of the others start over.
        """
        seen = seen if isinstance(seen, dict) else {}

        def restored(entities):
            if self._stopped:
                return entities
            for entity in entities:
                self._add_real(entity, ACTIVE, client_view(seen.get(entity.id)))
            self._ready = True
            early, self._early = self._early, []
            for sender, message in early:
                self.receive(sender, message)
            for entity in entities:
                self._settled(entity.id)
            return entities

        return restore_zone(self.store, self.name).addCallback(restored)

    def stop(self) -> None:
        """Cancel every timer and ignore what comes after (the process stops)."""
        self._stopped = True
        for call in list(self._timers):
            if call.active():
                call.cancel()
        self._timers.clear()

    # -- what the zone asks ------------------------------------------------------

    def enter(self, entity: Entity) -> defer.Deferred:
        """
        A new entity enters the world here (a player logs in, an NPC
        spawns): it is checkpointed first, so that it survives a crash, then
        simulated.  Deferred[bool]: False if it is already here or the store
        says another zone owns it.
        """
        if entity.id in self._status:
            return defer.succeed(False)
        d = self.store.checkpoint(self.name, [entity.to_dict()])

        def written(refused):
            if self._stopped or refused or entity.id in self._status:
                return False
            self._forget_forwarding(entity.id)
            # New in the world: its client has nothing in view.
            self._add_real(entity, ACTIVE, [])
            self._settled(entity.id)
            return True

        return d.addCallback(written)

    def leave(self, entity_id: str, before=None) -> defer.Deferred:
        """
        The real leaves the world (a player logs out, an NPC dies): removed
        from the simulation and from the store.  Deferred[bool]: False if it
        is not an active real here.

        @param before: If given, called with the removed entity (its last
            state) before its record is removed from the store; the removal
            waits for the Deferred it may return (a failure is the
            caller's to handle: it fails the leave, the record stays).
        """
        if self._status.get(entity_id) != ACTIVE:
            return defer.succeed(False)
        self._status[entity_id] = LEAVING
        entity = self.zone.remove(entity_id)
        if before is not None:
            d = defer.maybeDeferred(before, entity)
            d.addCallback(lambda _: self.store.remove_entity(self.name, entity_id))
        else:
            d = self.store.remove_entity(self.name, entity_id)

        def removed(result):
            if self._status.get(entity_id) == LEAVING:
                del self._status[entity_id]
                self._arrived.pop(entity_id, None)
            return result

        return d.addBoth(removed).addCallback(lambda _: True)

    # -- what the zone can see -------------------------------------------------------

    def status(self, entity_id: str) -> str | None:
        """ACTIVE, HOLDING, OFFERING, LEAVING, FORWARDING, or C{None} (unknown here)."""
        status = self._status.get(entity_id)
        if status is None and entity_id in self._forwarding:
            return FORWARDING
        return status

    def is_real(self, entity_id: str) -> bool:
        """Whether the entity is a real here (frozen or not)."""
        return self._status.get(entity_id) in (ACTIVE, HOLDING, OFFERING)

    def reals(self) -> list[str]:
        """The ids of the reals here, sorted."""
        return sorted(key for key in self._status if self.is_real(key))

    def checkpoint_records(self) -> list[dict]:
        """
        The records a checkpoint writes: the reals that are not being handed
        over (the state of an offered one is written by the handoff itself).
        """
        records = []
        for entity_id in sorted(self._status):
            if self._status[entity_id] in (ACTIVE, HOLDING):
                entity = self.zone.get(entity_id)
                if entity is not None:
                    records.append(entity.to_dict())
        return records

    # -- replacing the zone's process (see docs/world.md) -----------------------------

    def in_flight(self) -> int:
        """Handoffs this zone started that are not settled yet (offered or switching)."""
        return len(self._offers) + len(self._switching)

    def outgoing(self) -> list[tuple[str, str]]:
        """C{(entity id, target zone)} of each handoff counted by L{in_flight}."""
        return [
            (o.entity_id, o.target) for o in (*self._offers.values(), *self._switching.values())
        ]

    def final_records(self) -> list[dict]:
        """
        The records of I{every} real here, those being offered included (a
        process handing its zone to its successor writes them all: the
        store refuses those a neighbour committed meanwhile).
        """
        records = []
        for entity_id in sorted(self._status):
            if self.is_real(entity_id):
                entity = self.zone.get(entity_id)
                if entity is not None:
                    records.append(entity.to_dict())
        return records

    def pending_inputs(self) -> list[Input]:
        """
        The gateway inputs buffered here (held for a C{Done}, or buffered
        while offering), in order, as L{Input}s, for the successor process.
        """
        pending = []
        buffers = [(k, h.buffer) for k, h in self._holding.items()]
        buffers += [(k, o.buffer) for k, o in self._offers.items()]
        for entity_id, buffer in sorted(buffers, key=lambda item: item[0]):
            entity = self.zone.get(entity_id)
            session = entity.session if entity is not None else None
            for seq, payload in buffer:
                pending.append(Input(session, entity_id, seq, payload))
        return pending

    # -- messages ----------------------------------------------------------------------

    def receive(self, sender: str, message: object) -> None:
        """Handle a message from another zone or a gateway called C{sender}."""
        if self._stopped:
            return
        if not self._ready:
            self._early.append((sender, message))
            return
        entity_id = getattr(message, "entity_id", None)
        if entity_id in self._waiting:
            self._waiting[entity_id].append((sender, message))
            return
        handler = self._handlers.get(type(message))
        if handler is None:
            log.warn(
                "zone {zone}: unexpected message {message!r} from {sender}",
                zone=self.name,
                message=message,
                sender=sender,
            )
            return
        handler(self, sender, message)

    # -- helpers ------------------------------------------------------------------------

    def _store_call(self, entity_id: str, method, *args) -> defer.Deferred:
        """
        Call the store about C{entity_id}; messages about it that come
        meanwhile wait, and are handled once the callbacks added to the
        result have run.  The result never fires after L{stop}.
        """
        self._waiting[entity_id] = []
        result: defer.Deferred = defer.Deferred()

        def answered(outcome):
            if self._stopped:
                return
            result.callback(outcome)
            result.addErrback(self._bug)
            waiting = self._waiting.pop(entity_id, [])
            for sender, message in waiting:
                self.receive(sender, message)

        method(*args).addBoth(answered)
        return result

    def _add_real(self, entity: Entity, status: str, seen: list[str] | None) -> None:
        self.zone.add(entity, seen)
        self._status[entity.id] = status
        if self.on_real_added is not None:
            self.on_real_added(entity.id)

    def _settled(self, entity_id: str) -> None:
        """The real became active here: tell the zone (L{on_settled})."""
        if self.on_settled is not None and self._status.get(entity_id) == ACTIVE:
            self.on_settled(entity_id)

    def _later(self, delay: float, function, *args):
        def run():
            self._timers.discard(call)
            if not self._stopped:
                function(*args)

        call = self.clock.callLater(delay, run)
        self._timers.add(call)
        return call

    def _cancel(self, call) -> None:
        if call is not None:
            self._timers.discard(call)
            if call.active():
                call.cancel()

    def _bug(self, failure) -> None:
        log.failure("zone {zone}: handoff error", failure, zone=self.name)

    _handlers: dict = {
        Offer: Arrivals._on_offer,
        Accept: Departures._on_accept,
        Refuse: Departures._on_refuse,
        Done: Arrivals._on_done,
        Switched: Departures._on_switched,
        Input: InputGate._on_input,
        Forward: InputGate._on_forward,
    }
