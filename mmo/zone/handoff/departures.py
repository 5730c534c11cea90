"""
The old owner's side of a handoff: offering a real to a neighbour,
settling the offer through the store, switching the gateway's route and
forwarding what still comes for the entity.
"""

from __future__ import annotations

from mmo.game.messages import Accept, Done, Forward, Offer, Refuse, Switched, SwitchRoute
from mmo.store import OwnershipConflict, StoredEntity
from mmo.unavailable import log_failure
from mmo.zone.handoff.base import ACTIVE, OFFERING, _Forwarding, _Outgoing, log


class Departures:
    """
    The old owner's side of a handoff: offering a real to a neighbour,
    settling the offer through the store, switching the gateway's route and
    forwarding what still comes for the entity.

    A part of L{mmo.zone.handoff.zone.ZoneHandoff}, whose state it shares.
    """

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
        self.counts.started.inc()
        self._send_offer(out)
        return out.transfer_id

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
        self._complete(out, out.target, accept.version, accept.ghost_tick)

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
        self.counts.aborted.inc()
        entity = self.zone.get(out.entity_id)
        entity.version = stored.version
        self._status[out.entity_id] = ACTIVE
        self.zone.thaw(out.entity_id)
        for seq, payload in out.buffer:
            self._apply(out.entity_id, seq, payload)
        self._settled(out.entity_id)

    def _fence_failed(self, failure, out: _Outgoing) -> None:
        if self._stopped or self._offers.get(out.entity_id) is not out:
            return
        if not failure.check(OwnershipConflict):
            log_failure(
                failure,
                log,
                "zone {zone}: cannot settle transfer {transfer}; trying again",
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
        self.counts.aborted.inc()
        self.zone.remove(out.entity_id)

    def _complete(
        self, out: _Outgoing, owner: str, version: int, ghost_tick: int | None = None
    ) -> None:
        """
        The neighbour owns it: drop the real, forward, switch the route.

        @param ghost_tick: From the neighbour's L{Accept}, if that is how
            this zone learnt it: the number of its last ghost update sent
            before it owned the entity.
        """
        entity_id = out.entity_id
        del self._offers[entity_id]
        del self._status[entity_id]
        self.counts.completed.inc()
        self._arrived.pop(entity_id, None)
        self._cancel(out.retry)
        self._cancel(out.deadline)
        entity = self.zone.remove(entity_id)
        if entity is not None and self.on_handed_over is not None:
            self.on_handed_over(entity, owner, version, ghost_tick)
        out.phase, out.owner, out.version = "switching", owner, version
        self._forwarding[entity_id] = _Forwarding(owner, out.transfer_id)
        if out.buffer:
            self.link.send(owner, Forward(out.transfer_id, entity_id, tuple(out.buffer)))
            out.buffer = []
        if out.record.get("session") and out.record.get("gateway"):
            self._switching[out.transfer_id] = out
            out.deadline = self._later(self.switch_timeout, self._finish, out, False)
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

    def _finish(self, out: _Outgoing, switched: bool = True) -> None:
        """
        The gateway switched (or we stop waiting for it, C{switched} false):
        tell the new owner.
        """
        self._switching.pop(out.transfer_id, None)
        self._cancel(out.retry)
        self._cancel(out.deadline)
        self.link.send(out.target, Done(out.transfer_id, out.entity_id, None if switched else True))
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
