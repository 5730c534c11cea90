"""
The gate of a zone's players' inputs: applied in order and at most once
by the real's owner, buffered while it is offered or held, forwarded
after it left, and its owner looked up in the store when it is unknown.
"""

from __future__ import annotations

import bisect

from mmo.game.messages import Forward, Input, Moved
from mmo.store import StoredEntity
from mmo.zone.entity import Entity
from mmo.zone.handoff.base import (
    ACTIVE,
    HOLDING,
    LEAVING,
    MAX_HOPS,
    OFFERING,
    _Forwarding,
    log,
)


class InputGate:
    """
    The gate of a zone's players' inputs: applied in order and at most once
    by the real's owner, buffered while it is offered or held, forwarded
    after it left, and its owner looked up in the store when it is unknown.

    A part of L{mmo.zone.handoff.zone.ZoneHandoff}, whose state it shares.
    """

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
                # What its client was shown, this zone cannot know.
                self._add_real(Entity.from_dict(stored.data), ACTIVE, None)
                for seq, payload in inputs:
                    self._apply(entity_id, seq, payload)
                self._settled(entity_id)
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
