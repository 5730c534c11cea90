"""
The zone service: one region of the world, simulated and wired.

A L{ZoneService} owns a L{ZoneSimulation} of its region, the region's side
of every handoff (L{ZoneHandoff}), the ghosts its neighbours mirror into it
(L{GhostTable}), periodic checkpoints (L{Checkpointer}) and a L{Ticker} at
C{[world] tick_rate}.  Players reach it through the gateway's zone route
(L{mmo.gateway.router.ZoneRoute}) with C{zone.enter}, C{zone.move} and
C{zone.leave}; it pushes C{world.update} and C{world.correct} back.

Everything between processes travels on the bus (L{mmo.zone.messages}): a
zone hears handoffs, forwarded inputs and ghosts on C{zone:REGION}, and
sends each tick's pushes as one message per gateway (C{{"batch": {session:
[[kind, fields], ...]}}}) on the gateway's channel, together with the
handoff's route switches.  See C{docs/world.md}.
"""

from __future__ import annotations

import math

from twisted.internet import defer
from twisted.logger import Logger

from mmo.services import SESSION_UPDATE, ZONE_REDIRECT, Caller, GameService, gateway_channel
from mmo.wire import codes
from mmo.wire.codes import WireError
from mmo.zone import messages
from mmo.zone.checkpoint import Checkpointer
from mmo.zone.entity import PLAYER, WORLD_KEY, Entity, saved_position
from mmo.zone.ghosts import GhostTable, GhostUpdate
from mmo.zone.handoff import Input, Offer, ZoneHandoff
from mmo.zone.simulation import Input as Move
from mmo.zone.simulation import ZoneSimulation
from mmo.zone.ticker import Ticker
from mmo.zone.world import WorldMap

#: Seconds between checkpoints of a zone's entities (what a crash may lose).
CHECKPOINT_INTERVAL = 5.0


class BusLink:
    """
    The handoff's L{mmo.zone.handoff.Link} over the bus: a message to a
    zone goes on its L{messages.zone_channel}, anything else to the gateway
    of that name.  One bus keeps the order of one sender's messages.
    """

    log = Logger()

    def __init__(self, bus, name: str, zones, seen=None):
        self.bus = bus
        self.name = name
        self.zones = frozenset(zones)
        #: C{seen(entity_id)}: the ids a player's client has in view, sent
        #: along with an L{Offer} (as its C{"seen"}) so that the new zone
        #: goes on with the same view (nothing enters again).
        self.seen = seen

    def channel(self, to: str) -> str:
        return messages.zone_channel(to) if to in self.zones else gateway_channel(to)

    def send(self, to: str, message) -> None:
        body = messages.encode(self.name, message)
        if isinstance(message, Offer) and self.seen is not None:
            body[messages.KEY]["seen"] = self.seen(message.entity_id)
        d = defer.maybeDeferred(self.bus.publish, self.channel(to), body)
        d.addErrback(
            lambda failure: self.log.failure(
                "zone {zone}: sending {message!r} to {to} failed",
                failure,
                zone=self.name,
                message=message,
                to=to,
            )
        )


class _State:
    """
    The simulation as the handoff's L{mmo.zone.handoff.ZoneState}.

    The handoff applies an input I{now} and then sets the entity's
    C{last_input} itself, so inputs are applied here at once with the
    simulation's own movement rules (L{ZoneSimulation.apply_input}), never
    queued for the tick (where the simulation would skip them, their
    C{seq} being counted already).  Refused ones are noted, for a
    C{world.correct} with the tick's pushes.
    """

    def __init__(self, simulation: ZoneSimulation):
        self.simulation = simulation
        self.corrected: set[str] = set()
        #: Entity id -> the view its client has, from the offer handing it here.
        self.arriving: dict[str, list[str]] = {}

    def add(self, entity: Entity) -> None:
        self.simulation.add(entity, seen=self.arriving.pop(entity.id, None))

    def remove(self, entity_id: str) -> Entity | None:
        self.corrected.discard(entity_id)
        return self.simulation.remove(entity_id)

    def get(self, entity_id: str) -> Entity | None:
        return self.simulation.get(entity_id)

    def freeze(self, entity_id: str) -> None:
        self.simulation.freeze(entity_id)

    def thaw(self, entity_id: str) -> None:
        self.simulation.thaw(entity_id)

    def apply_input(self, entity: Entity, seq: int, payload) -> None:
        move = _move(seq, payload)
        if move is None or not self.simulation.apply_input(entity, move):
            self.corrected.add(entity.id)


def _move(seq: int, payload) -> Move | None:
    """The simulation's input from a C{zone.move}'s payload, or C{None} if malformed."""
    if not isinstance(payload, dict):
        return None
    x, y = payload.get("x"), payload.get("y")
    for value in (x, y):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        if not math.isfinite(value):
            return None
    return Move(seq, float(x), float(y), payload.get("extra"))


class ZoneService(GameService):
    """
    One region of the world (see the module docstring).

    @ivar name: The region's name: the zone's name for the store, the bus
        and the handoffs.
    @ivar simulation: The L{ZoneSimulation} (C{simulation_class}).
    @ivar handoff: The L{ZoneHandoff}.
    @ivar ghosts: The L{GhostTable}.
    @ivar ticker: The L{Ticker} (running between L{start} and L{stop}).
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
        self.simulation = self.simulation_class(self.map, region_name, world, reactor, rng=rng)
        self.state = _State(self.simulation)
        self.link = BusLink(bus, region_name, list(self.map.regions), self.simulation.seen)
        self.ghosts = GhostTable(self._is_real, reactor)
        self.handoff = ZoneHandoff(
            region_name,
            store,
            self.state,
            self.link,
            reactor,
            on_real_added=self.ghosts.real_added,
        )
        self.checkpointer = Checkpointer(
            region_name, store, self.handoff.checkpoint_records, reactor, self.checkpoint_interval
        )
        self.ticker = Ticker(reactor, world.tick_rate, self.tick)
        self._subscription = None
        self._ghost_tick = 0

    def _is_real(self, entity_id: str) -> bool:
        return self.handoff.is_real(entity_id) or entity_id in self.simulation.reals

    # -- life cycle ------------------------------------------------------------------

    async def start(self) -> None:
        self._subscription = await self.bus.subscribe(
            messages.zone_channel(self.name), self.zoneMessage
        )
        await self.handoff.recover()
        self.simulation.spawn_npcs()
        self.checkpointer.start()
        self.ticker.start()
        self.log.info(
            "zone {zone}: {reals} entities, ticking at {rate:g}/s",
            zone=self.name,
            reals=len(self.simulation.reals),
            rate=self.ticker.rate,
        )

    async def stop(self) -> None:
        self.ticker.stop()
        self.checkpointer.stop()
        if self._subscription is not None:
            await self._subscription.cancel()
            self._subscription = None
        try:
            await self.checkpointer.checkpoint()
        except Exception:
            self.log.failure("zone {zone}: last checkpoint failed", zone=self.name)
        self.handoff.stop()

    # -- the bus ---------------------------------------------------------------------

    def zoneMessage(self, message) -> None:
        """A message on this zone's channel: a handoff message or a neighbour's ghosts."""
        try:
            sender, body = messages.decode(
                message.get(messages.KEY) if isinstance(message, dict) else None
            )
        except ValueError as e:
            self.log.warn("zone {zone}: dropped a message: {why}", zone=self.name, why=str(e))
            return
        if isinstance(body, GhostUpdate):
            if body.zone != self.name:
                self.ghosts.apply(body)
        else:
            if isinstance(body, Offer):
                seen = message[messages.KEY].get("seen")
                if isinstance(seen, list) and all(isinstance(i, str) for i in seen):
                    self.state.arriving[body.entity_id] = seen
                else:
                    self.state.arriving.pop(body.entity_id, None)
            self.handoff.receive(sender, body)

    # -- the tick --------------------------------------------------------------------

    def tick(self) -> None:
        """One tick: ghosts in, simulate, pushes and ghosts out, crossings handed off."""
        self.ghosts.expire()
        by_source: dict[str, list[dict]] = {r.name: [] for r in self.simulation.neighbours}
        for view in self.ghosts.views():
            ghost = self.ghosts.get(view["id"])
            if ghost.source in by_source:
                by_source[ghost.source].append({k: v for k, v in view.items() if k != "version"})
        for source, views in by_source.items():
            self.simulation.set_ghosts(source, views)

        result = self.simulation.tick()

        pushes = result.pushes
        corrected, self.state.corrected = self.state.corrected, set()
        for entity_id in sorted(corrected):
            entity = self.simulation.get(entity_id)
            if entity is None or entity.session is None or entity.gateway is None:
                continue
            events = pushes.setdefault(entity.gateway, {}).setdefault(entity.session, [])
            if not (events and events[0][0] == "world.correct"):
                correction = {"x": entity.x, "y": entity.y, "input": entity.last_input}
                events.insert(0, ("world.correct", correction))
        for gateway, by_session in pushes.items():
            if gateway is None:
                continue
            batch = {
                session: [[kind, fields] for kind, fields in events]
                for session, events in by_session.items()
                if session is not None
            }
            if batch:
                self._publish(gateway_channel(gateway), {"batch": batch})

        # Tick numbers of ghost updates keep increasing across a restart.
        self._ghost_tick = max(self._ghost_tick + 1, int(result.time * 1000))
        for region, views in result.ghost_views.items():
            versioned = []
            for view in views:
                real = self.simulation.get(view["id"])
                versioned.append({**view, "version": real.version if real is not None else 0})
            update = GhostUpdate(self.name, self._ghost_tick, tuple(versioned))
            self._publish(messages.zone_channel(region), messages.encode(self.name, update))

        for entity, region in result.crossings:
            self.handoff.cross(entity.id, region.name)

    def _publish(self, channel: str, message: dict) -> None:
        d = defer.maybeDeferred(self.bus.publish, channel, message)
        d.addErrback(lambda f: self.log.failure("zone {zone}: publish failed", f, zone=self.name))

    # -- players ---------------------------------------------------------------------

    def _player_id(self, caller: Caller) -> str:
        if caller.character_id is None:
            raise WireError(codes.NOT_ALLOWED, "choose a character first")
        return caller.character_id

    def _reply(self, entity: Entity, **extra) -> dict:
        return {
            "entity": entity.id,
            "zone": self.name,
            "x": entity.x,
            "y": entity.y,
            "input": entity.last_input,
            "tick": self.simulation.tick_count,
            **extra,
        }

    async def on_zone_enter(self, caller: Caller, message: dict) -> dict:
        """
        Put the caller's character in the world, here: the real it has here
        already (a new session of it takes it over), else its checkpoint
        from the store, else a new entity where the character last left the
        world (L{WORLD_KEY} of its data, with the attrs it had then) if that
        is on the map, else at C{[world] spawn} (with the saved attrs all
        the same).  A saved position in
        another region is redirected to that region's zone.
        """
        entity_id = self._player_id(caller)
        entity = self.simulation.get(entity_id) if self.handoff.is_real(entity_id) else None
        if entity is None:
            stored = await self.store.load_entity(entity_id)
            if stored is not None and stored.owner != self.name:
                # Another zone owns it: the gateway's zone route goes there.
                return {ZONE_REDIRECT: stored.owner}
            if stored is not None:
                entity = Entity.from_dict(stored.data)
                entity.version = stored.version
            else:
                x, y = self.config.world.spawn
                attrs = None
                # A new entity starts with its character's data as its
                # attributes (the game's: hp, class...), or with the attrs
                # it had when it last left the world, where it was then;
                # from then on the entity's own attrs travel with it
                # (handoffs, checkpoints).
                character = await self.store.character_by_id(entity_id)
                data = character.data if character is not None else None
                if isinstance(data, dict):
                    attrs = {k: v for k, v in data.items() if k != WORLD_KEY}
                saved = saved_position(data)
                if saved is not None:
                    region = self.map.region_at(saved[0], saved[1])
                    if region is not None and region.name != self.name:
                        return {ZONE_REDIRECT: region.name}
                    if region is not None:
                        x, y = saved[0], saved[1]
                    if saved[2] is not None:
                        attrs = saved[2]
                entity = Entity(entity_id, PLAYER, x, y, name=caller.display_name)
                if attrs is not None:
                    entity.attrs = attrs
            entity.session, entity.gateway = caller.session, caller.gateway
            if not await self.handoff.enter(entity):
                if not self.handoff.is_real(entity_id):
                    raise WireError(codes.UNAVAILABLE, "your character is busy; retry")
            entity = self.simulation.get(entity_id)
        entity.session, entity.gateway = caller.session, caller.gateway
        self.log.info(
            "zone {zone}: {name} entered at ({x:.1f}, {y:.1f})",
            zone=self.name,
            name=caller.display_name,
            x=entity.x,
            y=entity.y,
        )
        return self._reply(entity, **{SESSION_UPDATE: {"zone": self.name}})

    async def on_zone_move(self, caller: Caller, message: dict) -> dict:
        """
        A movement input: through the handoff's gate (which forwards it if
        the entity moved on, and applies it in order, at most once).
        """
        entity_id = self._player_id(caller)
        seq, x, y = message.get("seq"), message.get("x"), message.get("y")
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
            raise WireError(codes.BAD_REQUEST, "seq must be a non-negative integer")
        payload = {"x": x, "y": y}
        if _move(seq, payload) is None:
            raise WireError(codes.BAD_REQUEST, "x and y must be finite numbers")
        if self.handoff.status(entity_id) is None and caller.zone is None:
            raise WireError(codes.NOT_ALLOWED, "enter the zone first")
        self.handoff.receive(caller.gateway, Input(caller.session, entity_id, seq, payload))
        return {}

    async def on_zone_leave(self, caller: Caller, message: dict) -> dict:
        """Take the caller's character out of the world."""
        entity_id = self._player_id(caller)
        entity = self.simulation.get(entity_id)
        if entity is None or entity.session != caller.session:
            raise WireError(codes.NOT_ALLOWED, "you are not in this zone")
        await self._leave(entity)
        return {SESSION_UPDATE: {"zone": None}}

    async def _leave(self, entity: Entity) -> None:
        """
        A player's entity leaves the world: taken out of the simulation
        (so what is saved is its last state), where it is with its attrs
        saved into its character's data (L{WORLD_KEY}), then its record
        removed from the store.  A failed save is logged and the entity
        leaves all the same (its next C{zone.enter} finds an older saved
        position, or none: the spawn).
        """
        await self.handoff.leave(entity.id, before=self._save_where)

    async def _save_where(self, entity: Entity) -> None:
        try:
            character = await self.store.character_by_id(entity.id)
            if character is None:
                return
            data = dict(character.data) if isinstance(character.data, dict) else {}
            data[WORLD_KEY] = {"x": entity.x, "y": entity.y, "attrs": entity.attrs}
            await self.store.update_character(entity.id, data)
        except Exception:
            self.log.failure(
                "zone {zone}: saving where {id} left the world failed",
                zone=self.name,
                id=entity.id,
            )

    async def session_event(self, caller: Caller, event: str) -> None:
        """
        C{"moved"}: the session's pushes go to its new gateway.  C{"ended"}:
        the session is gone for good (not merely dropped: a session waiting
        for a resume keeps its entity), so its entity leaves the world.
        """
        entity_id = caller.character_id
        if entity_id is None:
            return
        entity = self.simulation.get(entity_id)
        if entity is None or entity.session != caller.session:
            return
        if event == "moved":
            entity.gateway = caller.gateway
        elif event == "ended":
            await self._leave(entity)


class ZoneHost(GameService):
    """
    The zones of one process: a L{ZoneService} for every region of
    C{[world]} whose C{process} is C{process_name}, as one game service for
    the gateways (L{mmo.gateway.router.serve} serves one).  A message goes
    to the zone named by its caller's C{zone} (the gateway's
    L{mmo.gateway.router.ZoneRoute} sets it); session events go to all.

    @ivar zones: Region name -> its L{ZoneService}.
    """

    kind = "zone"
    prefixes = ("zone.",)
    zone_class = None

    def __init__(self, config, store, bus, reactor, process_name: str):
        super().__init__(config, store, bus, reactor)
        if self.zone_class is None:
            self.zone_class = zone_service_class(config)
        world = config.world
        self.zones = {
            name: self.zone_class(config, store, bus, reactor, name)
            for name, *_box, process in world.layout
            if process == process_name
        }
        if not self.zones:
            from mmo.config import ConfigError

            raise ConfigError(
                f"no region of the world is served by process {process_name!r}",
                ("world", "zones" if not world.regions else "regions"),
                config.file,
            )

    async def start(self) -> None:
        for zone in self.zones.values():
            await zone.start()

    async def stop(self) -> None:
        for zone in self.zones.values():
            await zone.stop()

    async def handle(self, caller: Caller, kind: str, message: dict) -> dict | None:
        zone = self.zones.get(caller.zone)
        if zone is None:
            raise WireError(codes.UNAVAILABLE, f"zone {caller.zone!r} is not served here; retry")
        return await zone.handle(caller, kind, message)

    async def session_event(self, caller: Caller, event: str) -> None:
        for zone in self.zones.values():
            await zone.session_event(caller, event)


def zone_service_class(config) -> type[ZoneService]:
    """
    The zone service class named by C{[world] zone_class} (a game's
    subclass with its own messages and rules), or L{ZoneService}.

    @raise ConfigError: It cannot be imported or is no L{ZoneService}.
    """
    from twisted.python.reflect import namedAny

    from mmo.config import ConfigError

    name = config.world.zone_class
    if not name:
        return ZoneService
    key = ("world", "zone_class")
    try:
        found = namedAny(name)
    except Exception as e:
        raise ConfigError(f"cannot import {name!r}: {e}", key, config.file)
    if not (isinstance(found, type) and issubclass(found, ZoneService)):
        raise ConfigError(
            f"{name!r} is not a subclass of mmo.zone.service.ZoneService", key, config.file
        )
    return found
