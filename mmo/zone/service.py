"""
The zone service: one region of the world, simulated and wired.

A L{ZoneService} owns a L{ZoneSimulation} of its region, the region's side
of every handoff (L{ZoneHandoff}), the ghosts its neighbours mirror into it
(L{GhostTable}), periodic checkpoints (L{Checkpointer}) and a L{Ticker} at
C{[world] tick_rate}.  Players reach it through the gateway's zone route
(L{mmo.zone.route.ZoneRoute}) with C{zone.enter}, C{zone.move} and
C{zone.leave}; it pushes C{world.update} and C{world.correct} back.

Game teams subclass it (name the subclass in C{[world] zone_class}) for
their own messages and rules; the process that serves its regions is
L{mmo.zone.host.ZoneHost}, and the replacement of that process is
L{mmo.zone.takeover}.

Everything between processes travels as the typed messages of
L{mmo.game.messages}: a zone hears handoffs, forwarded inputs and ghosts on
its bus channel (L{zone_channel}), and sends each tick's pushes as one
L{mmo.game.messages.PushBatch} per gateway, together with the handoff's
route switches, on the gateway's stream from the zone's process
(L{mmo.zone.outbox}, L{mmo.zone.streams}).  See C{docs/world.md}.
"""

from __future__ import annotations

from twisted.internet import defer

from mmo.game import messages
from mmo.game.messages import (
    GhostSync,
    GhostUpdate,
    Push,
    RelayedEvent,
    zone_channel,
)
from mmo.game.service import Caller, GameService, by_gateway
from mmo.metrics.registry import STATE, ZONE_TICK, state
from mmo.wire import codes
from mmo.wire.codes import WireError
from mmo.zone.checkpoint import Checkpointer
from mmo.zone.ended import SessionEnds
from mmo.zone.entity import PLAYER, Entity
from mmo.zone.ghosts import GhostTable
from mmo.zone.handoff import HANDOFF_MESSAGES, HOLDING, ZoneHandoff
from mmo.zone.mapfeed import MapFeed
from mmo.zone.movement import client_movement
from mmo.zone.outbox import Outbox, ZoneLink
from mmo.zone.players import ZonePlayers
from mmo.zone.simulation import ZoneSimulation
from mmo.zone.takeover import SERVING, Takeover
from mmo.zone.ticker import Ticker
from mmo.zone.world import WorldMap, client_world

#: Seconds between checkpoints of a zone's entities (what a crash may lose).
CHECKPOINT_INTERVAL = 5.0


class _State:
    """
    The simulation as the handoff's L{mmo.zone.handoff.ZoneState}: inputs
    applied at once (L{ZoneSimulation.input}), and each real added with
    the view its client has, as the handoff knows it: nothing, the view
    the offer that brought it carried, or unknown (the view starts over).
    """

    def __init__(self, simulation: ZoneSimulation):
        self.simulation = simulation

    def add(self, entity: Entity, seen: list[str] | None) -> None:
        self.simulation.add(entity, seen=seen or None, reset=seen is None)

    def remove(self, entity_id: str) -> Entity | None:
        return self.simulation.remove(entity_id)

    def get(self, entity_id: str) -> Entity | None:
        return self.simulation.get(entity_id)

    def freeze(self, entity_id: str) -> None:
        self.simulation.freeze(entity_id)

    def thaw(self, entity_id: str) -> None:
        self.simulation.thaw(entity_id)

    def apply_input(self, entity: Entity, seq: int, payload) -> None:
        self.simulation.input(entity, seq, payload)


class ZoneService(ZonePlayers, GameService):
    """
    One region of the world (see the module docstring).

    @ivar name: The region's name: the zone's name for the store, the bus
        and the handoffs.
    @ivar simulation: The L{ZoneSimulation} (C{simulation_class}).
    @ivar handoff: The L{ZoneHandoff}.
    @ivar ghosts: The L{GhostTable}.
    @ivar ticker: The L{Ticker} (running between L{start} and L{stop}).
    @ivar takeover: The L{Takeover}: replacing the zone's process.
    @ivar ends: The L{SessionEnds}: an entity whose session ended while it
        was not active here leaves the world when it settles.
    @ivar map_feed: The L{MapFeed}: the console's live map, while watched.
    """

    kind = "zone"
    prefixes = ("zone.",)
    #: The simulation class: a game's subclass of L{ZoneSimulation}.
    simulation_class = ZoneSimulation
    checkpoint_interval = CHECKPOINT_INTERVAL

    def __init__(self, config, store, bus, reactor, region_name: str, rng=None):
        super().__init__(config, store, bus, reactor)
        world = config.world
        self.map = WorldMap.from_config(world)
        self.name = region_name
        #: What a client needs of the map and of the movement rules, for
        #: the zone.enter reply: built once per process, shared by every reply.
        self.client_world = client_world(world)
        self.client_movement = client_movement(world)
        self.simulation = self.simulation_class(self.map, region_name, world, reactor, rng=rng)
        self.state = _State(self.simulation)
        self.outbox = Outbox(bus, region_name, self.simulation)
        self.link = ZoneLink(
            bus, region_name, list(self.map.regions), self.simulation.seen, self.outbox
        )
        self.ghosts = GhostTable(self._is_real, reactor, sync=self._sync_ghosts)
        self.ends = SessionEnds(region_name, self.simulation.get, self._leave, self.publish)
        self.handoff = ZoneHandoff(
            region_name,
            store,
            self.state,
            self.link,
            reactor,
            on_real_added=self._real_added,
            on_handed_over=self._handed_over,
            on_settled=self._settled,
            on_view_lost=self.simulation.start_over,
        )
        self.checkpointer = Checkpointer(
            region_name, store, self.handoff.checkpoint_records, reactor, self.checkpoint_interval
        )
        self.ticker = Ticker(
            reactor, world.tick_rate, self.tick, observe=ZONE_TICK.labels(region_name).observe
        )
        self.map_feed = MapFeed(
            bus,
            region_name,
            self.simulation,
            self.handoff.outgoing,
            self.publish,
            reactor,
            world.tick_rate,
        )
        self.takeover = Takeover(self)
        self._subscription = None
        #: When the last tick ran (the clock's time), for the takeover's pause.
        self.last_tick_at: float | None = None
        self._dispatcher = messages.Dispatcher(f"zone {region_name}")
        for cls in HANDOFF_MESSAGES:
            self._dispatcher.on(cls, self.handoff.receive)
        self._dispatcher.on(GhostUpdate, self._ghosts)
        self._dispatcher.on(GhostSync, self._ghost_sync)
        self._dispatcher.on(RelayedEvent, self._relayed)

    def _is_real(self, entity_id: str) -> bool:
        return self.handoff.is_real(entity_id) or entity_id in self.simulation.reals

    def _real_added(self, entity_id: str) -> None:
        """
        A real is new here: no longer a ghost; one arriving by a handoff is
        shown nothing until it settles (rule 2 of the zone -> gateway
        stream, docs/handoff.md).
        """
        self.ghosts.real_added(entity_id)
        if self.handoff.status(entity_id) == HOLDING:
            self.simulation.hold(entity_id)

    def _settled(self, entity_id: str) -> None:
        """A real became active here (L{ZoneHandoff}'s C{on_settled})."""
        self.simulation.release(entity_id)
        self.ends.settled(entity_id)

    def _handed_over(self, entity: Entity, owner: str, version: int, ghost_tick) -> None:
        """
        A real handed over to C{owner}: its last view stays here as a ghost
        of C{owner} until that zone's updates hold it (L{GhostTable.handed_over}).
        """
        view = {**self.simulation.entity_view(entity), "version": version}
        self.ghosts.handed_over(owner, view, ghost_tick)
        self.ends.handed_over(entity, owner)

    #: The zone's mode in a takeover (L{mmo.zone.takeover}): C{serving} as a rule.
    mode = property(lambda self: self.takeover.mode)
    #: Milliseconds between the old process's last tick and ours, once taken over.
    takeover_pause_ms = property(lambda self: self.takeover.pause_ms)

    # -- life cycle ------------------------------------------------------------------

    async def start(self, standby: str | None = None) -> None:
        """
        Subscribe and serve.  With C{standby} (a takeover's token), only
        subscribe: the zone waits for the process it replaces to hand it
        over (L{Takeover.hand_over} on that side), or for L{start_plain} if
        there is none.
        """
        self._subscription = await self.bus.subscribe(zone_channel(self.name), self.heard)
        STATE.register(self, self.metric_families)
        await self.map_feed.start()
        if standby is not None:
            self.takeover.wait(standby)
            return
        await self.start_plain()

    async def start_plain(self) -> None:
        """Recover the zone's entities from the store (fencing them) and start ticking."""
        self.takeover.serve()
        await self.handoff.recover()
        self.simulation.spawn_npcs()
        self.resume()
        self.log.info(
            "zone {zone}: {reals} entities, ticking at {rate:g}/s",
            zone=self.name,
            reals=len(self.simulation.reals),
            rate=self.ticker.rate,
        )

    async def stop(self) -> None:
        STATE.unregister(self)
        self.pause()
        if self._subscription is not None:
            await self._subscription.cancel()
            self._subscription = None
        await self.map_feed.stop()
        if self.takeover.serving:
            try:
                await self.checkpointer.checkpoint()
            except Exception:
                self.log.failure("zone {zone}: last checkpoint failed", zone=self.name)
        self.handoff.stop()

    def metric_families(self):
        """What Prometheus reads of the zone, at each scrape."""
        zone = (self.name,)
        reals = self.simulation.reals
        players = sum(1 for entity in reals.values() if entity.kind == PLAYER)
        yield state("mmo_zone_entities", (zone, len(reals)))
        yield state("mmo_zone_players", (zone, players))
        yield state("mmo_zone_ghosts", (zone, len(self.ghosts)))
        yield state("mmo_zone_ticks", (zone, self.ticker.ticks))
        yield state("mmo_zone_ticks_skipped", (zone, self.ticker.skipped))

    def pause(self) -> None:
        """Stop ticking and checkpointing."""
        self.ticker.stop()
        self.checkpointer.stop()

    def resume(self) -> None:
        """Tick and checkpoint (again)."""
        self.checkpointer.start()
        self.ticker.start()

    # -- the bus ---------------------------------------------------------------------

    def heard(self, data) -> None:
        """
        A message on this zone's channel: a handoff message, a neighbour's
        ghosts, or a step of replacing the zone's process.
        """
        if not self.takeover.heard(data):
            self._dispatcher(data)

    def _ghosts(self, sender: str, update: GhostUpdate) -> None:
        if update.zone != self.name:
            self.ghosts.apply(update)

    def _ghost_sync(self, sender: str, sync: GhostSync) -> None:
        """A neighbour asks for deltas of our ghosts (L{mmo.zone.ghosts.GhostSender})."""
        if sync.zone != self.name:
            self.outbox.ghosts_synced(sync.zone, bool(sync.full))

    def _sync_ghosts(self, zone: str, full: bool) -> None:
        """Ask C{zone} for deltas of its ghosts, or a whole update (L{GhostTable}'s C{sync})."""
        self.publish(zone_channel(zone), messages.encode(GhostSync(self.name, full), self.name))

    def _relayed(self, sender: str, relayed: RelayedEvent) -> None:
        """A session event the predecessor received after its marker."""
        try:
            caller = Caller.from_dict(relayed.caller)
        except Exception:
            return
        d = defer.ensureDeferred(self.session_event(caller, relayed.event))
        d.addErrback(lambda f: self.log.failure("zone {zone}: relayed event", f, zone=self.name))

    async def handle(self, caller: Caller, kind: str, message: dict) -> dict | None:
        """
        Messages, as usual; but a zone whose process handed it over (or
        not taken over yet) answers C{zone.enter} and C{zone.leave} with
        C{unavailable} ("retry": the gateway's link moves to the new process
        in a moment), and passes C{zone.move} on to its successor.
        """
        if not self.takeover.serving and kind != "zone.move":
            raise WireError(
                codes.UNAVAILABLE, f"zone {self.name} is moving to a new process; retry"
            )
        return await super().handle(caller, kind, message)

    # -- the tick --------------------------------------------------------------------

    def tick(self) -> None:
        """One tick: ghosts in, simulate, pushes and ghosts out, crossings handed off."""
        self.ghosts.expire()
        for region in self.simulation.neighbours:
            self.simulation.set_ghosts(region.name, self.ghosts.views_from(region.name))

        result = self.simulation.tick()
        self.last_tick_at = result.time

        self.outbox.pushes(result)
        self.outbox.ghosts(result)
        self.map_feed.tick(result.time)

        if self.takeover.mode == SERVING:
            # Handing the process over: no new crossings (reported again later).
            for entity, region in result.crossings:
                self.handoff.cross(entity.id, region.name)

    def publish(self, channel: str, data: dict) -> None:
        """Publish C{data} (an encoded message) without waiting (L{Outbox.publish})."""
        self.outbox.publish(channel, data)

    # -- the gateways ----------------------------------------------------------------

    def stream_to(self, gateways) -> None:
        """Send gateways their messages through C{gateways} (L{mmo.zone.streams})."""
        self.outbox.stream_to(gateways)

    def gateway_linked(self, gateway: str) -> None:
        """
        C{gateway}'s stream came up after it may have lost something: the
        view of each player of ours on it starts over (C{reset}).
        """
        for entity in self.simulation.reals.values():
            if entity.kind == PLAYER and entity.session and entity.gateway == gateway:
                self.simulation.start_over(entity.id)

    async def deliver(self, targets, kind: str, **fields) -> None:
        """
        Push C{kind} with C{fields} to every session of C{targets}: one
        L{Push} per gateway, in order with the ticks' pushes.
        """
        for gateway, sessions in by_gateway((c.gateway, c.session) for c in targets).items():
            self.outbox.to_gateway(gateway, Push(sessions, kind, fields))
