"""
Handoff: moving a real entity from the zone that owns it to a neighbour,
seamlessly and safely, whatever crashes or whatever the network does.

The protocol (see C{docs/handoff.md} for the full story and diagram)::

    old owner A                 new owner B                gateway G
    cross: freeze, buffer ---- Offer(T, state) ---------->
                                store.transfer(A->B, T)   (the commit point)
                                real added, holds G's inputs
             <--------------- Accept(T) ---------------
    real removed, forward entry
    Forward(T, buffered) ---------------------------->     (applied at once)
    SwitchRoute(T, B) -------------------------------------------------->
             <---------------------------------------------- Switched(T)
    Done(T) ---------------------------------------->     releases held inputs

Everything that decides who owns an entity goes through the store, in one
compare-and-set (L{mmo.store.IStore.transfer}) keyed by the entity's
version: B's commit moves the owner from A at the version A offered; A,
when it got no answer in time, I{fences} (a transfer from A to A at that
version), which either undoes the handoff (the offer can no longer commit)
or fails because B committed, in which case A completes as if accepted.  A
restarted zone bumps the version of everything it owns
(L{mmo.store.IStore.recover_zone}), which fences every offer its earlier
life sent.  So at any time an entity is simulated (not frozen) by at most
one zone, the one the store names, and it is never lost: the store always
names exactly one owner, which has it or loads it (an entity is in the
store from when it enters the world: L{ZoneHandoff.enter}).

Inputs carry a sequence number and are applied only above the entity's
C{last_input}, which travels with its state: in order, each at most once,
across handoffs and crashes.  Without crashes and with links that keep
order none is lost: A buffers them while it offers, forwards them after,
B holds those coming straight from the gateway until A's C{Done}.

This module is the zone's side of the protocol only: deterministic, with
the clock, the links and the zone's simulation injected (L{Link},
L{ZoneState}).  Its messages are those of L{mmo.game.messages}; the zone
service hands it every one it hears (L{ZoneHandoff.receive}) and sends
what it says over the bus.  The gateway's side is
L{mmo.zone.route.ZoneRoute}.
"""

from __future__ import annotations

import bisect
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from twisted.internet import defer
from twisted.logger import Logger

from mmo.game.messages import (
    Accept,
    Done,
    Forward,
    Input,
    Moved,
    Offer,
    Refuse,
    Switched,
    SwitchRoute,
)
from mmo.store import IStore, OwnershipConflict, StoredEntity
from mmo.zone.checkpoint import restore_zone
from mmo.zone.entity import Entity

log = Logger()

#: The messages a zone's handoff handles (L{ZoneHandoff.receive}).
HANDOFF_MESSAGES = (Offer, Accept, Refuse, Forward, Done, Switched, Input)

#: How many zones an input may be forwarded through before it is dropped
#: (a bound against forwarding loops on stale information).
MAX_HOPS = 4

# States of a real in its zone.
#: Simulated; inputs applied as they come.
ACTIVE = "active"
#: Just arrived by a handoff: simulated, inputs forwarded by the old owner
#: applied, those from the gateway held until the old owner's Done.
HOLDING = "holding"
#: Offered to a neighbour: frozen, inputs buffered, until accepted or undone.
OFFERING = "offering"
#: Leaving the world (being removed from the store): inputs dropped.
LEAVING = "leaving"
#: Not a real here, but handed over lately: inputs are forwarded.
FORWARDING = "forwarding"


# -- what the handoff needs from its surroundings --------------------------------


class Link(Protocol):
    """Sends messages to other processes (zones and gateways), by name."""

    def send(self, to: str, message: object) -> None:
        """
        Send C{message} to C{to}, without waiting: it may be lost (the peer
        is down), and the protocol copes.  Messages to one peer should
        arrive in the order sent (AMP over one connection does that) for
        inputs not to be lost; nothing breaks if they do not.
        """


class ZoneState(Protocol):
    """The part of a zone's simulation the handoff drives."""

    def add(self, entity: Entity) -> None:
        """Simulate C{entity} as a real of this zone from now on."""

    def remove(self, entity_id: str) -> Entity | None:
        """Stop simulating the real C{entity_id} and forget it."""

    def get(self, entity_id: str) -> Entity | None:
        """The real C{entity_id}, or C{None}."""

    def freeze(self, entity_id: str) -> None:
        """
        Keep the real as it is (no movement, no behaviour) but visible, while
        it is offered to a neighbour: its state was sent as it is.
        """

    def thaw(self, entity_id: str) -> None:
        """Simulate the frozen real again (its handoff was undone)."""

    def apply_input(self, entity: Entity, seq: int, payload: object) -> None:
        """
        Apply the player's input C{seq} to the real C{entity}, now.  The
        handoff calls it in order, at most once per C{seq}, and then sets
        C{entity.last_input = seq}: so it must not be queued for a later
        tick (a state offered to a neighbour, or checkpointed, must contain
        every input its C{last_input} counts).  An input refused by the
        game's rules (too fast) counts as applied: the client is corrected.
        """


# -- the zone's side -----------------------------------------------------------------


@dataclass
class _Outgoing:
    """A handoff this zone started."""

    transfer_id: str
    entity_id: str
    target: str
    record: dict
    #: Inputs that came while offering: (seq, payload), by seq.
    buffer: list = field(default_factory=list)
    #: "offered", "resolving" (asking the store) or "switching".
    phase: str = "offered"
    owner: str = ""
    version: int = 0
    retry: object = None
    deadline: object = None


@dataclass
class _Holding:
    """An arrived handoff whose gateway inputs are held until the old owner's Done."""

    transfer_id: str
    buffer: list = field(default_factory=list)
    timer: object = None


@dataclass
class _Forwarding:
    """Where an entity that was here went (by a handoff, or as the store said)."""

    target: str
    transfer_id: str | None
    timer: object = None


class ZoneHandoff:
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
    ):
        self.name = name
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

    def recover(self) -> defer.Deferred:
        """
        Take back the zone's entities: exactly those the store says it owns,
        fenced (L{restore_zone}).  Call it once, at start; messages received
        before it finishes are handled after.  Deferred[list[Entity]].
        """

        def restored(entities):
            if self._stopped:
                return entities
            for entity in entities:
                self._add_real(entity, ACTIVE)
            self._ready = True
            early, self._early = self._early, []
            for sender, message in early:
                self.receive(sender, message)
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
            self._add_real(entity, ACTIVE)
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

        return d.addBoth(removed)

    def cross(self, entity_id: str, to_zone: str) -> str | None:
        """
        Start handing the real over to C{to_zone}.  It is frozen and its
        inputs buffered until the handoff completes or is undone.

        @return: The transfer id, or C{None} if the entity is not an active
            real here (one handoff at a time: an entity that just arrived is
            not handed on before its arrival is complete).
        """
        if not self._ready or self._status.get(entity_id) != ACTIVE or to_zone == self.name:
            return None
        entity = self.zone.get(entity_id)
        if entity is None:
            return None
        self.zone.freeze(entity_id)
        self._status[entity_id] = OFFERING
        out = _Outgoing(self.new_transfer_id(), entity_id, to_zone, entity.to_dict())
        self._offers[entity_id] = out
        out.deadline = self._later(self.offer_timeout, self._resolve, out)
        self._send_offer(out)
        return out.transfer_id

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

    # The new owner's side.

    def _on_offer(self, sender: str, offer: Offer) -> None:
        entity_id = offer.entity_id
        if offer.to_zone != self.name:
            self.link.send(sender, Refuse(offer.transfer_id, entity_id, None))
            return
        if self.is_real(entity_id) and self._arrived.get(entity_id) == offer.transfer_id:
            # A repeated offer of the transfer that brought it: accepted already.
            entity = self.zone.get(entity_id)
            self.link.send(sender, Accept(offer.transfer_id, entity_id, entity.version))
            return
        # The store decides; it also answers a repeated offer idempotently
        # after a restart of this zone.
        d = self._store_call(
            entity_id,
            self.store.transfer,
            entity_id,
            offer.from_zone,
            self.name,
            offer.transfer_id,
            offer.record,
        )
        d.addCallbacks(self._committed, self._not_committed, (sender, offer), None, (sender, offer))

    def _committed(self, stored: StoredEntity, sender: str, offer: Offer) -> None:
        entity_id = offer.entity_id
        held: list = []
        out = self._offers.get(entity_id)
        if out is not None and stored.version > out.record["version"]:
            # Our own offer of it committed without our knowing (its accept
            # was lost and the store could not be asked), and it is handed
            # back: the stored state is newer than our frozen copy.
            del self._offers[entity_id]
            del self._status[entity_id]
            self._cancel(out.retry)
            self._cancel(out.deadline)
            self.zone.remove(entity_id)
            held = out.buffer
        if entity_id not in self._status:
            self._forget_forwarding(entity_id)
            self._add_real(Entity.from_dict(stored.data), HOLDING)
            self._arrived[entity_id] = offer.transfer_id
            hold = _Holding(offer.transfer_id, held)
            hold.timer = self._later(self.hold_timeout, self._release, entity_id, hold)
            self._holding[entity_id] = hold
        elif stored.transfer_id == offer.transfer_id:
            # Already here (loaded after a restart): this transfer brought it.
            self._arrived[entity_id] = offer.transfer_id
        self.link.send(sender, Accept(offer.transfer_id, entity_id, stored.version))

    def _not_committed(self, failure, sender: str, offer: Offer) -> None:
        if failure.check(OwnershipConflict):
            owner = failure.value.current.owner
            self.link.send(sender, Refuse(offer.transfer_id, offer.entity_id, owner))
        else:
            # The store is unreachable: say nothing; the old owner repeats
            # its offer or settles it through the store when it can.
            log.failure(
                "zone {zone}: cannot commit transfer {transfer}",
                failure,
                zone=self.name,
                transfer=offer.transfer_id,
            )

    def _on_done(self, sender: str, done: Done) -> None:
        hold = self._holding.get(done.entity_id)
        if hold is not None and hold.transfer_id == done.transfer_id:
            self._release(done.entity_id, hold)
        elif self.status(done.entity_id) is None:
            # The handoff completed but the entity is unknown here: this
            # zone restarted while the commit was in flight.  Adopt it if
            # the store says it is ours.
            self._locate(done.entity_id, [], 0, None, None)

    def _release(self, entity_id: str, hold: _Holding) -> None:
        if self._holding.get(entity_id) is not hold:
            return
        del self._holding[entity_id]
        self._cancel(hold.timer)
        self._status[entity_id] = ACTIVE
        for seq, payload in hold.buffer:
            self._apply(entity_id, seq, payload)

    # The old owner's side.

    def _send_offer(self, out: _Outgoing) -> None:
        if self._offers.get(out.entity_id) is not out or out.phase != "offered":
            return
        self.link.send(
            out.target,
            Offer(out.transfer_id, out.entity_id, self.name, out.target, out.record),
        )
        out.retry = self._later(self.offer_retry, self._send_offer, out)

    def _on_accept(self, sender: str, accept: Accept) -> None:
        out = self._offers.get(accept.entity_id)
        if out is None or out.transfer_id != accept.transfer_id:
            return  # a repeat, or of a handoff settled already
        self._complete(out, out.target, accept.version)

    def _on_refuse(self, sender: str, refuse: Refuse) -> None:
        out = self._offers.get(refuse.entity_id)
        if out is not None and out.transfer_id == refuse.transfer_id:
            self._resolve(out)

    def _resolve(self, out: _Outgoing) -> None:
        """
        No answer in time, or a refusal: settle the handoff through the
        store with a fence.  If it succeeds, the offer can no longer commit
        and the handoff is undone; if it fails because the neighbour owns
        the entity, the handoff committed and is completed.
        """
        if self._offers.get(out.entity_id) is not out or out.phase != "offered":
            return
        out.phase = "resolving"
        self._cancel(out.retry)
        self._cancel(out.deadline)
        d = self.store.transfer(out.entity_id, self.name, self.name, out.transfer_id, out.record)
        d.addCallbacks(self._undone, self._fence_failed, (out,), None, (out,))
        d.addErrback(self._bug)

    def _undone(self, stored: StoredEntity, out: _Outgoing) -> None:
        if self._stopped or self._offers.get(out.entity_id) is not out:
            return
        del self._offers[out.entity_id]
        entity = self.zone.get(out.entity_id)
        entity.version = stored.version
        self._status[out.entity_id] = ACTIVE
        self.zone.thaw(out.entity_id)
        for seq, payload in out.buffer:
            self._apply(out.entity_id, seq, payload)

    def _fence_failed(self, failure, out: _Outgoing) -> None:
        if self._stopped or self._offers.get(out.entity_id) is not out:
            return
        if not failure.check(OwnershipConflict):
            log.failure(
                "zone {zone}: cannot settle transfer {transfer}; trying again",
                failure,
                zone=self.name,
                transfer=out.transfer_id,
            )
            out.phase = "offered"
            out.deadline = self._later(self.offer_retry, self._resolve, out)
            return
        current = failure.value.current
        if current.owner != self.name:
            self._complete(out, current.owner, current.version)
            return
        # Ours, at another version: a newer life of this zone took it back
        # (this process should not be running).  Never keep a second copy.
        log.error(
            "zone {zone}: entity {entity} was fenced by another instance of this zone; "
            "dropping it here",
            zone=self.name,
            entity=out.entity_id,
        )
        del self._offers[out.entity_id]
        del self._status[out.entity_id]
        self.zone.remove(out.entity_id)

    def _complete(self, out: _Outgoing, owner: str, version: int) -> None:
        """The neighbour owns it: drop the real, forward, switch the route."""
        entity_id = out.entity_id
        del self._offers[entity_id]
        del self._status[entity_id]
        self._arrived.pop(entity_id, None)
        self._cancel(out.retry)
        self._cancel(out.deadline)
        self.zone.remove(entity_id)
        out.phase, out.owner, out.version = "switching", owner, version
        self._forwarding[entity_id] = _Forwarding(owner, out.transfer_id)
        if out.buffer:
            self.link.send(owner, Forward(out.transfer_id, entity_id, tuple(out.buffer)))
            out.buffer = []
        if out.record.get("session") and out.record.get("gateway"):
            self._switching[out.transfer_id] = out
            out.deadline = self._later(self.switch_timeout, self._finish, out)
            self._send_switch(out)
        else:
            self._finish(out)

    def _send_switch(self, out: _Outgoing) -> None:
        if self._switching.get(out.transfer_id) is not out:
            return
        self.link.send(
            out.record["gateway"],
            SwitchRoute(
                out.transfer_id, out.record["session"], out.entity_id, out.owner, out.version
            ),
        )
        out.retry = self._later(self.switch_retry, self._send_switch, out)

    def _on_switched(self, sender: str, switched: Switched) -> None:
        out = self._switching.get(switched.transfer_id)
        if out is not None:
            self._finish(out)

    def _finish(self, out: _Outgoing) -> None:
        """The gateway switched (or we stop waiting for it): tell the new owner."""
        self._switching.pop(out.transfer_id, None)
        self._cancel(out.retry)
        self._cancel(out.deadline)
        self.link.send(out.target, Done(out.transfer_id, out.entity_id))
        forwarding = self._forwarding.get(out.entity_id)
        if forwarding is not None and forwarding.transfer_id == out.transfer_id:
            forwarding.timer = self._later(
                self.forward_ttl, self._expire_forwarding, out.entity_id, forwarding
            )

    def _expire_forwarding(self, entity_id: str, forwarding: _Forwarding) -> None:
        if self._forwarding.get(entity_id) is forwarding:
            del self._forwarding[entity_id]

    def _forget_forwarding(self, entity_id: str) -> None:
        forwarding = self._forwarding.pop(entity_id, None)
        if forwarding is not None:
            self._cancel(forwarding.timer)

    # Inputs.

    def _on_input(self, sender: str, message: Input) -> None:
        entity_id, item = message.entity_id, (message.seq, message.payload)
        status = self._status.get(entity_id)
        if status == ACTIVE:
            self._apply(entity_id, message.seq, message.payload)
        elif status == HOLDING:
            self._buffer(self._holding[entity_id].buffer, item)
        elif status == OFFERING:
            self._buffer(self._offers[entity_id].buffer, item)
        elif status == LEAVING:
            pass
        elif entity_id in self._forwarding:
            forwarding = self._forwarding[entity_id]
            self.link.send(forwarding.target, Forward(forwarding.transfer_id, entity_id, (item,)))
        else:
            self._locate(entity_id, [item], 1, message.session, sender)

    def _on_forward(self, sender: str, forward: Forward) -> None:
        entity_id = forward.entity_id
        status = self._status.get(entity_id)
        if status in (ACTIVE, HOLDING):
            # Forwarded inputs were sent to the old owner, so before any the
            # gateway sends here: applied at once, even while holding.
            for seq, payload in forward.inputs:
                self._apply(entity_id, seq, payload)
        elif status == OFFERING:
            for item in forward.inputs:
                self._buffer(self._offers[entity_id].buffer, tuple(item))
        elif status == LEAVING:
            pass
        elif forward.hops >= MAX_HOPS:
            log.info(
                "zone {zone}: dropping inputs of {entity} forwarded {hops} times",
                zone=self.name,
                entity=entity_id,
                hops=forward.hops,
            )
        elif entity_id in self._forwarding:
            forwarding = self._forwarding[entity_id]
            self.link.send(
                forwarding.target,
                Forward(forwarding.transfer_id, entity_id, forward.inputs, forward.hops + 1),
            )
        else:
            self._locate(entity_id, list(forward.inputs), forward.hops + 1, None, None)

    def _buffer(self, buffer: list, item: tuple[int, object]) -> None:
        """Keep an input for later, in seq order, once."""
        seqs = [seq for seq, _ in buffer]
        index = bisect.bisect_left(seqs, item[0])
        if index < len(seqs) and seqs[index] == item[0]:
            return
        if len(buffer) >= self.max_buffered_inputs:
            log.info("zone {zone}: input buffer full, input dropped", zone=self.name)
            return
        buffer.insert(index, item)

    def _apply(self, entity_id: str, seq: int, payload: object) -> None:
        """Apply an input if it is newer than the last applied: in order, at most once."""
        entity = self.zone.get(entity_id)
        if entity is None or seq <= entity.last_input:
            return
        self.zone.apply_input(entity, seq, payload)
        entity.last_input = seq

    def _locate(
        self,
        entity_id: str,
        inputs: list,
        hops: int,
        session: str | None,
        gateway: str | None,
    ) -> None:
        """
        Something came for an entity unknown here: ask the store who owns
        it.  If this zone does (it restarted while a handoff to it was being
        committed), adopt it; if another zone does, forward the inputs there
        and tell the gateway its route is stale.
        """

        def found(stored: StoredEntity | None) -> None:
            if self.status(entity_id) is not None:
                # Known meanwhile (it entered): handle the inputs as usual.
                if gateway is not None:
                    for seq, payload in inputs:
                        self._on_input(gateway, Input(session, entity_id, seq, payload))
                elif inputs:
                    self._on_forward("", Forward(None, entity_id, tuple(inputs), hops))
            elif stored is None:
                log.info("zone {zone}: no entity {entity}", zone=self.name, entity=entity_id)
            elif stored.owner == self.name:
                log.info("zone {zone}: adopting {entity}", zone=self.name, entity=entity_id)
                self._add_real(Entity.from_dict(stored.data), ACTIVE)
                for seq, payload in inputs:
                    self._apply(entity_id, seq, payload)
            else:
                forwarding = _Forwarding(stored.owner, None)
                forwarding.timer = self._later(
                    self.forward_ttl, self._expire_forwarding, entity_id, forwarding
                )
                self._forwarding[entity_id] = forwarding
                if inputs:
                    self.link.send(stored.owner, Forward(None, entity_id, tuple(inputs), hops))
                if session is not None and gateway:
                    self.link.send(gateway, Moved(session, entity_id, stored.owner, stored.version))

        d = self._store_call(entity_id, self.store.load_entity, entity_id)
        d.addCallbacks(
            found,
            lambda failure: log.failure(
                "zone {zone}: cannot locate {entity}", failure, zone=self.name, entity=entity_id
            ),
        )

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

    def _add_real(self, entity: Entity, status: str) -> None:
        self.zone.add(entity)
        self._status[entity.id] = status
        if self.on_real_added is not None:
            self.on_real_added(entity.id)

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
        Offer: _on_offer,
        Accept: _on_accept,
        Refuse: _on_refuse,
        Done: _on_done,
        Switched: _on_switched,
        Input: _on_input,
        Forward: _on_forward,
    }
