"""
What a zone sends other processes: each tick's pushes to its players'
gateways (one L{PushStems} per gateway, each push encoded here once as its
client's frame; one L{PushBatch} to an older gateway) and ghost views to its neighbours
(L{GhostUpdate}: whole, or deltas to a neighbour that asks for them,
L{GhostSender}), and the handoff's messages (L{ZoneLink}).  To a gateway,
everything goes one way, in the order the zone produced it: the gateway's
stream from the zone's process (L{mmo.zone.streams.GatewayStreams}), or
the bus where the zone has no process of its own
(L{mmo.zone.streams.BusGateways}); between zones, the bus.
"""

from __future__ import annotations

from dataclasses import replace

from twisted.internet import defer
from twisted.logger import Logger

from mmo.game.messages import (
    Accept,
    BusLink,
    Offer,
    PushBatch,
    PushStems,
    encode,
    zone_channel,
)
from mmo.unavailable import log_failure
from mmo.wire.codec import push_stem
from mmo.zone.aoi import KERNEL
from mmo.zone.ghosts import GhostSender
from mmo.zone.streams import BusGateways


class ZoneLink(BusLink):
    """
    The handoff's L{mmo.zone.handoff.Link} of a zone: to other zones over
    the bus, to gateways through the zone's L{Outbox}; each L{Offer} of a
    player carrying the view its client has (C{seen}), so that the new
    zone goes on with the same view (nothing enters again), and each
    L{Accept} the number of the zone's last ghost tick (C{ghost_tick}),
    so that the old zone ghosts the entity until the first update of ours
    that holds it (nothing leaves and enters again).
    """

    def __init__(self, bus, name: str, zones, seen, outbox: Outbox):
        super().__init__(bus, name, zones)
        self.seen = seen
        self.outbox = outbox

    def send(self, to: str, value) -> defer.Deferred:
        if to not in self.zones:
            # A SwitchRoute or a Moved: after the pushes sent before it.
            self.outbox.to_gateway(to, value)
            return defer.succeed(None)
        if isinstance(value, Offer) and value.seen is None:
            value = replace(value, seen=self.seen(value.entity_id))
        elif isinstance(value, Accept) and value.ghost_tick is None:
            value = replace(value, ghost_tick=self.outbox.ghost_tick)
        return super().send(to, value)


class Outbox:
    """
    What zone C{name} sends (see the module docstring).

    @ivar gateways: Where messages to gateways go: the bus until the
        zone's process gives its streams (L{stream_to}).
    @ivar ghost_tick: The number of the zone's last L{GhostUpdate}.
    """

    log = Logger()
    #: The module that encodes each session's stems (L{mmo.zone.kernel.stems}).
    kernel = KERNEL

    def __init__(self, bus, name: str, simulation):
        self.bus = bus
        self.name = name
        self.simulation = simulation
        self.gateways = BusGateways(bus)
        self.ghost_tick = 0
        #: Neighbour region -> what it is sent of the ghosts.
        self._ghost_senders: dict[str, GhostSender] = {}

    def stream_to(self, gateways) -> None:
        """Send gateways' messages through C{gateways} (L{mmo.zone.streams.GatewayStreams})."""
        self.gateways = gateways

    def continue_from(self, ghost_tick: int) -> None:
        """Number the ghost updates on from another process's (a takeover)."""
        self.ghost_tick = ghost_tick

    def to_gateway(self, gateway: str, value) -> None:
        """Send C{value} (a message) to C{gateway}, after what was sent it before."""
        self.gateways.send(gateway, value, self.name)

    def pushes(self, result) -> None:
        """
        A tick's pushes (of a L{mmo.zone.simulation.TickResult}): one batch
        per gateway, of stems where the gateway takes them.
        """
        # An entity's entry, in many of the tick's pushes, packed once.
        fragments = self.kernel.Fragments()
        for gateway, by_session in result.pushes.items():
            if gateway is None:
                continue
            if self.gateways.takes_stems(gateway):
                batch = self.kernel.stems(by_session, push_stem, fragments, self._dropped)
                if batch:
                    self.gateways.send(gateway, PushStems(batch), self.name)
                continue
            batch = {
                session: [[kind, fields] for kind, fields in events]
                for session, events in by_session.items()
                if session is not None
            }
            if batch:
                self.gateways.send(gateway, PushBatch(batch), self.name)

    def _dropped(self, session: str, kind: str) -> None:
        """A push that could not be encoded (its exception being handled): logged."""
        self.log.failure(
            "zone {zone}: push {kind!r} to {session} dropped",
            zone=self.name,
            kind=kind,
            session=session,
        )

    def ghosts(self, result) -> None:
        """
        A tick's ghost views, each with its real's version, to each
        neighbour: whole, or what changed since its last update where it
        takes deltas (L{GhostSender}; an empty delta only now and then).
        """
        # Tick numbers of ghost updates keep increasing across a restart.
        self.ghost_tick = max(self.ghost_tick + 1, int(result.time * 1000))
        reals = self.simulation.reals
        senders = self._ghost_senders
        for region, views in result.ghost_views.items():
            sender = senders.get(region)
            if sender is None:
                sender = senders[region] = GhostSender(self.name)
            update = sender.update(self.ghost_tick, views, reals, result.time)
            if update is not None:
                self.publish(zone_channel(region), encode(update, self.name))

    def ghosts_synced(self, region: str, full: bool) -> None:
        """Neighbour C{region} takes deltas (its L{GhostSync}); C{full}: a whole one next."""
        sender = self._ghost_senders.get(region)
        if sender is None:
            sender = self._ghost_senders[region] = GhostSender(self.name)
        sender.synced(full, self.simulation.clock.seconds())

    def publish(self, channel: str, data: dict) -> None:
        """Publish C{data} (an encoded message) without waiting; a failure is logged."""
        d = defer.maybeDeferred(self.bus.publish, channel, data)
        d.addErrback(log_failure, self.log, "zone {zone}: publish failed", zone=self.name)
