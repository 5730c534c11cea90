"""
The new owner's side of a handoff: committing an offer through the
store, holding the gateway's inputs until the old owner's C{Done}, then
releasing them.
"""

from __future__ import annotations

from mmo.game.messages import Accept, Done, Offer, Refuse
from mmo.store import OwnershipConflict, StoredEntity
from mmo.unavailable import log_failure
from mmo.zone.entity import Entity
from mmo.zone.handoff.base import ACTIVE, HOLDING, _Holding, client_view, log


class Arrivals:
    """
    The new owner's side of a handoff: committing an offer through the
    store, holding the gateway's inputs until the old owner's C{Done}, then
    releasing them.

    A part of L{mmo.zone.handoff.zone.ZoneHandoff}, whose state it shares.
    """

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
            self._add_real(Entity.from_dict(stored.data), HOLDING, client_view(offer.seen))
            self._arrived[entity_id] = offer.transfer_id
            hold = _Holding(offer.transfer_id, held)
            hold.timer = self._later(self.hold_timeout, self._hold_expired, entity_id, hold)
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
            log_failure(
                failure,
                log,
                "zone {zone}: cannot commit transfer {transfer}",
                zone=self.name,
                transfer=offer.transfer_id,
            )

    def _on_done(self, sender: str, done: Done) -> None:
        hold = self._holding.get(done.entity_id)
        if hold is not None and hold.transfer_id == done.transfer_id:
            if done.unswitched and self.on_view_lost is not None:
                # What the old owner last showed the player may be lost.
                self.on_view_lost(done.entity_id)
            self._release(done.entity_id, hold)
        elif self.status(done.entity_id) is None:
            # The handoff completed but the entity is unknown here: this
            # zone restarted while the commit was in flight.  Adopt it if
            # the store says it is ours.
            self._locate(done.entity_id, [], 0, None, None)

    def _hold_expired(self, entity_id: str, hold: _Holding) -> None:
        """No L{Done} within C{hold_timeout}: release, the player's view starting over."""
        if self._holding.get(entity_id) is not hold:
            return
        if self.on_view_lost is not None:
            self.on_view_lost(entity_id)
        self._release(entity_id, hold)

    def _release(self, entity_id: str, hold: _Holding) -> None:
        if self._holding.get(entity_id) is not hold:
            return
        del self._holding[entity_id]
        self._cancel(hold.timer)
        self._status[entity_id] = ACTIVE
        for seq, payload in hold.buffer:
            self._apply(entity_id, seq, payload)
        self._settled(entity_id)
