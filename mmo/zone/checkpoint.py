"""
Checkpoints of a zone's entities in the store.

A zone writes the state of its reals to the store every C{interval}
seconds (L{Checkpointer}); the store keeps each entity with the one zone that
owns it and refuses a write of an entity the zone does not own (any more),
so a checkpoint can never undo a handoff.  Handoffs write the entity's state
too, at their commit point (L{mmo.store.IStore.transfer}).

A restarted zone takes its region back with L{restore_zone}: exactly the
entities the store says it owns, as of their last checkpoint or the
handoff that brought them (whichever is later); an entity that left for
another zone before the crash is not brought back.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet import defer, task
from twisted.logger import Logger

from mmo.store import IStore
from mmo.unavailable import log_failure
from mmo.zone.entity import Entity

log = Logger()


def restore_zone(store: IStore, zone: str) -> defer.Deferred:
    """
    The entities C{zone} owns, from the store, for a zone (re)starting.

    Their versions are bumped first (L{mmo.store.IStore.recover_zone}), so
    that what this zone's earlier life may still have in flight (a handoff
    offered, a checkpoint) can no longer succeed: without it an offer sent
    just before a crash could move an entity the restarted zone has
    already taken back, and the entity would be real twice.

    @return: Deferred[list[Entity]], by id.
    """
    d = store.recover_zone(zone)
    d.addCallback(lambda stored: [Entity.from_dict(entity.data) for entity in stored])
    return d


class Checkpointer:
    """
    Writes a zone's reals to the store every C{interval} seconds.

    @param zone: The zone's name: the owner the store checks.
    @param store: An L{IStore}.
    @param records: Gives the records to write (dicts of entities,
        L{Entity.to_dict}): the zone's reals, without those being handed
        over (see L{mmo.zone.handoff.ZoneHandoff.checkpoint_records}).
    @param clock: Provides C{callLater} and C{seconds}.
    @param interval: Seconds between checkpoints.
    """

    def __init__(
        self,
        zone: str,
        store: IStore,
        records: Callable[[], list[dict]],
        clock,
        interval: float,
    ):
        if interval <= 0:
            raise ValueError(f"the checkpoint interval must be positive, got {interval!r}")
        self.zone = zone
        self.store = store
        self.records = records
        self.clock = clock
        self.interval = interval
        self._loop: task.LoopingCall | None = None
        self._in_flight: defer.Deferred | None = None

    def start(self) -> None:
        """Checkpoint every C{interval} seconds from now on (the first after one interval)."""
        if self._loop is not None:
            return
        self._loop = task.LoopingCall(self._tick)
        self._loop.clock = self.clock
        self._loop.start(self.interval, now=False)

    def stop(self) -> None:
        """No more periodic checkpoints (one in flight still completes)."""
        loop, self._loop = self._loop, None
        if loop is not None and loop.running:
            loop.stop()

    def checkpoint(self) -> defer.Deferred:
        """
        Write the records now.  One checkpoint at a time: while one is in
        flight, this does nothing (so an older state can never land after a
        newer one).

        @return: Deferred[list[str] | None]: the ids the store refused
            (entities another zone took meanwhile: normal around a handoff),
            or C{None} if a checkpoint was already in flight.
        """
        if self._in_flight is not None:
            return defer.succeed(None)
        records = self.records()
        d = self.store.checkpoint(self.zone, records)
        self._in_flight = d

        def done(result):
            self._in_flight = None
            return result

        def refused(ids):
            if ids:
                log.info(
                    "zone {zone}: checkpoint refused for {ids} (owned elsewhere now)",
                    zone=self.zone,
                    ids=ids,
                )
            return ids

        return d.addBoth(done).addCallback(refused)

    def _tick(self) -> defer.Deferred:
        # An error must not stop the loop: log it, checkpoint again next time.
        d = self.checkpoint()
        d.addErrback(log_failure, log, "zone {zone}: checkpoint failed", zone=self.zone)
        return d
