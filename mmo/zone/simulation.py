"""
The authoritative simulation of one region of the world: one zone.

A L{ZoneSimulation} holds the zone's I{reals} (the entities it owns), the
I{ghosts} its neighbours mirror into it, and the players' queued inputs.
Every L{ZoneSimulation.tick} (driven by a L{mmo.zone.ticker.Ticker}):

 1. applies each player's queued inputs in sequence order, each at most
    once, refusing moves that are too fast or off the map (the player gets a
    C{world.correct});
 2. moves the NPCs (a random walk inside the region);
 3. calls L{ZoneSimulation.on_tick} for every real (game rules);
 4. works out, for every player, what entered, changed in and left its area
    of interest (L{mmo.zone.aoi}), as one C{world.update} push per player,
    batched per gateway;
 5. lists the reals that went past the region's border by more than the
    hysteresis (to be handed off) and the views of the reals within the
    ghost margin of each neighbouring region (to be mirrored there).

The simulation knows no bytes, no bus and no reactor beyond the injected
clock: the zone service delivers the pushes, sends the ghost views and runs
the handoffs (L{mmo.zone.handoff}).  See C{docs/world.md}.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from mmo.zone.aoi import STRIDE, AreaOfInterest
from mmo.zone.entity import NPC, PLAYER, Entity
from mmo.zone.world import Region, WorldMap

#: A push of the simulation: C{(kind, fields)}.
Event = tuple[str, dict]

#: How much a move may exceed its allowance, world units: float rounding.
_EPSILON = 1e-6


@dataclass(frozen=True, slots=True)
class Input:
    """
    One input of a player: where it wants to be, with its sequence number.

    @ivar extra: Game-defined fields of the input message, for subclasses
        that override L{ZoneSimulation.apply_input}; else C{None}.
    """

    seq: int
    x: float
    y: float
    extra: dict | None = None


@dataclass
class TickResult:
    """
    What one tick produced.

    @ivar tick: The zone's tick number (1 for its first tick).
    @ivar time: The clock's time at the start of the tick.
    @ivar pushes: By gateway, by session: the session's events of the tick,
        in order (a C{world.correct}, then one C{world.update}), each
        C{(kind, fields)}.  One entry per gateway, for one bus message.
    @ivar crossings: C{(entity, region)} for each real that went past the
        zone's border by more than the hysteresis, and the region it is in.
        Listed on every tick until it is handed off (or comes back).
    @ivar ghost_views: By neighbouring region name, the views of the reals
        within the ghost margin of that region (every neighbour is listed,
        with an empty list when none is: its ghosts from here are gone).
    @ivar duration: How long the tick took, seconds, by the simulation's timer.
    """

    tick: int
    time: float
    pushes: dict[str, dict[str, list[Event]]] = field(default_factory=dict)
    crossings: list[tuple[Entity, Region]] = field(default_factory=list)
    ghost_views: dict[str, list[dict]] = field(default_factory=dict)
    duration: float = 0.0


class ZoneSimulation:
    """
    One zone's world: see the module docstring.

    Game teams subclass it and override L{apply_input} (their own inputs and
    movement rules), L{on_tick} (rules run on every real every tick) and
    L{entity_view} (what others see).

    @ivar map: The L{WorldMap}.
    @ivar region: The L{Region} this zone simulates.
    @ivar config: The C{[world]} section (L{mmo.config.WorldSection}).
    @ivar clock: Provides C{seconds()}: the only source of time.
    @ivar rng: The random generator NPCs wander by (seed it for tests).
    @ivar reals: The entities this zone owns, by id.
    @ivar tick_count: Ticks run so far.
    @ivar aoi: The L{AreaOfInterest}.
    """

    #: Inputs queued for one entity at most; more are dropped until a tick.
    max_queued_inputs = 64
    #: Longest step of time one tick simulates (after a stall), seconds.
    max_step = 0.25
    #: Seconds an NPC walks one way before it picks a new heading: (min, max).
    wander_turn = (1.0, 4.0)

    def __init__(
        self,
        world_map: WorldMap,
        region: Region | str,
        world_config,
        clock,
        rng: random.Random | None = None,
        timer=None,
    ):
        """
        @param timer: A callable returning seconds, to measure tick
            durations with (a benchmark passes C{time.perf_counter});
            default: C{clock.seconds}.
        """
        self.map = world_map
        self.region = world_map.region(region) if isinstance(region, str) else region
        self.config = world_config
        self.clock = clock
        self.rng = rng if rng is not None else random.Random()
        self._timer = timer if timer is not None else clock.seconds
        self.neighbours = world_map.neighbours(self.region)
        self.aoi = AreaOfInterest(world_config.aoi_radius)
        self.reals: dict[str, Entity] = {}
        self.tick_count = 0
        self.last_tick: float | None = None
        self._ghost_sources: dict[str, dict[str, dict]] = {}
        self._ghosts: dict[str, dict] | None = {}
        self._inputs: dict[str, dict[int, Input]] = {}
        # Movement allowance of each real: [units it may still move, as of when].
        self._allowance: dict[str, list[float]] = {}
        rate = world_config.max_speed * (1 + world_config.speed_tolerance)
        self._refill = rate
        self._allowance_cap = rate * world_config.move_burst
        # NPC walks: [dx, dy (unit heading), when to turn].
        self._walks: dict[str, list[float]] = {}
        # What observers were last shown of every visible entity (reals and
        # ghosts): [x, y, name, attrs].  Survives a ghost becoming a real.
        self._published: dict[str, list] = {}
        # The tick's caches: full views and update entries, built once each.
        self._views: dict[str, dict] = {}
        self._updates: dict[str, dict] = {}
        self._changed: dict[str, int] = {}
        self._npc_serial = 0
        self._has_on_tick = type(self).on_tick is not ZoneSimulation.on_tick
        # Reals being handed off: seen, but not simulated.
        self.frozen: set[str] = set()

    # -- entities -----------------------------------------------------------------------

    def add(self, entity: Entity, seen=None) -> None:
        """
        Make C{entity} a real of this zone (a new player or NPC, one restored
        from a checkpoint, or one handed over by a neighbour).

        A player's C{last_input} is kept: inputs up to it are never applied
        again.  Its movement allowance starts full, so that inputs forwarded
        during a handoff are not refused.

        @param seen: For a player handed over: the ids its client already
            has (L{seen} in the old zone), so that its view goes on without
            entering again what it sees already.
        @raise ValueError: The id is already a real here.
        """
        if entity.id in self.reals:
            raise ValueError(f"{entity.id!r} is already in zone {self.region.name!r}")
        self.reals[entity.id] = entity
        self._allowance[entity.id] = [self._allowance_cap, self.clock.seconds()]
        if entity.kind == NPC:
            self._walks[entity.id] = self._new_walk()
        if seen is not None:
            self.aoi.seed(entity.id, seen)

    def remove(self, entity_id: str, handed_to: str | None = None) -> Entity | None:
        """
        Stop simulating a real (it logged out, or was handed off); return it,
        or C{None} if it is not here.  Observers see it leave on the next
        tick, unless it is a ghost here by then.  Inputs still queued for it
        are dropped: take them first with L{take_inputs} to forward them.

        @param handed_to: The region it was handed to: it stays here as a
            ghost of that region's zone (its last view) until that zone's
            next L{set_ghosts} replaces it, so that players here do not see
            it leave and enter again in between.
        """
        entity = self.reals.pop(entity_id, None)
        if entity is None:
            return None
        self._inputs.pop(entity_id, None)
        self._allowance.pop(entity_id, None)
        self._walks.pop(entity_id, None)
        self.frozen.discard(entity_id)
        self.aoi.forget(entity_id)
        if handed_to is not None and handed_to != self.region.name:
            views = self._ghost_sources.setdefault(handed_to, {})
            views[entity_id] = self.entity_view(entity)
            self._ghosts = None
        return entity

    def get(self, entity_id: str) -> Entity | None:
        """The real C{entity_id}, or C{None}."""
        return self.reals.get(entity_id)

    def freeze(self, entity_id: str) -> None:
        """
        Keep a real as it is while it is offered to a neighbour (its state
        was sent as it is): no inputs applied (they stay queued), no NPC
        walk, no L{on_tick}, no crossing reported.  It is still seen and
        ghosted, but a frozen player sees nothing new: its view was sent
        along (L{seen}), and the zone that takes it goes on from there, so
        nothing enters or leaves its client's view twice; if the handoff
        is undone, this zone goes on from there instead.
        """
        if entity_id in self.reals:
            self.frozen.add(entity_id)

    def thaw(self, entity_id: str) -> None:
        """Simulate a frozen real again (its handoff was undone)."""
        self.frozen.discard(entity_id)

    def seen(self, entity_id: str) -> list[str]:
        """The ids a player's client has in view (to hand over with it)."""
        return list(self.aoi.known.get(entity_id, ()))

    def new_client(self, entity_id: str) -> None:
        """
        A new client watches the player C{entity_id} (a new session took
        it over): it has nothing in view, so everything in sight enters
        again at the next tick.
        """
        self.aoi.forget(entity_id)

    @property
    def npc_serial(self) -> int:
        """The serial number of the last NPC spawned here (ids are C{npc-REGION-N})."""
        return self._npc_serial

    def continue_from(self, tick_count: int, npc_serial: int) -> None:
        """
        Go on from where another process simulating this region stopped
        (a takeover): its tick count, and no NPC id it used.
        """
        self.tick_count = tick_count
        self._npc_serial = max(self._npc_serial, npc_serial)

    def spawn_npcs(self, count: int | None = None) -> list[Entity]:
        """
        Add C{count} NPCs (default: C{[world] npcs}) at random places in the
        region; ids are C{npc-REGION-N}, skipping those of reals already
        here (restored from a checkpoint).
        """
        if count is None:
            count = self.config.npcs
        r = self.region
        spawned = []
        for _ in range(count):
            self._npc_serial += 1
            # Skip ids in use (NPCs restored from a checkpoint).
            while f"npc-{r.name}-{self._npc_serial}" in self.reals:
                self._npc_serial += 1
            npc = Entity(
                id=f"npc-{r.name}-{self._npc_serial}",
                kind=NPC,
                x=self.rng.uniform(r.x0, math.nextafter(r.x1, r.x0)),
                y=self.rng.uniform(r.y0, math.nextafter(r.y1, r.y0)),
                name=f"wanderer {self._npc_serial}",
            )
            self.add(npc)
            spawned.append(npc)
        return spawned

    # -- ghosts -------------------------------------------------------------------------

    def set_ghosts(self, source: str, views: list[dict]) -> None:
        """
        Replace the ghosts mirrored from the zone of region C{source} by
        C{views} (its L{TickResult.ghost_views} for this region).  Read-only
        copies: they are seen, never simulated here.  A real with the same id
        (during a handoff) hides its ghost.
        """
        if source == self.region.name:
            raise ValueError("a zone does not ghost its own entities")
        self._ghost_sources[source] = {view["id"]: view for view in views}
        self._ghosts = None

    @property
    def ghosts(self) -> dict[str, dict]:
        """Every ghost's view, by id."""
        if self._ghosts is None:
            merged: dict[str, dict] = {}
            for views in self._ghost_sources.values():
                merged.update(views)
            self._ghosts = merged
        return self._ghosts

    # -- inputs -------------------------------------------------------------------------

    def input(self, entity_id: str, seq: int, x: float, y: float, extra=None) -> bool:
        """
        Queue a player's input (C{zone.move}): where it wants to be, and its
        sequence number.  It is applied at the next tick, in sequence order;
        an input whose sequence number was applied or queued already is
        dropped, so that each is applied at most once.

        @return: Whether it was queued (C{False}: an old or duplicate
            sequence number, an unknown entity, or too many queued).
        @raise ValueError: C{seq} is not a non-negative integer, or C{x} or
            C{y} not a finite number: a malformed message.
        """
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
            raise ValueError(f"seq must be a non-negative integer, got {seq!r}")
        for value in (x, y):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"x and y must be numbers, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"x and y must be finite, got {value!r}")
        entity = self.reals.get(entity_id)
        if entity is None or seq <= entity.last_input:
            return False
        queue = self._inputs.setdefault(entity_id, {})
        if seq in queue or len(queue) >= self.max_queued_inputs:
            return False
        queue[seq] = Input(seq, float(x), float(y), extra)
        return True

    def take_inputs(self, entity_id: str) -> list[Input]:
        """Remove and return the inputs queued for a real, in order (to forward them)."""
        queue = self._inputs.pop(entity_id, {})
        return [queue[seq] for seq in sorted(queue)]

    def apply_input(self, entity: Entity, move: Input) -> bool:
        """
        Apply one input to C{entity}; return C{False} to refuse it (the
        player is then sent a correction with its authoritative state).

        The default moves the entity to C{(move.x, move.y)} with L{move}.
        Override it for a game's own inputs (C{move.extra}); call this one
        for the movement.
        """
        return self.move(entity, move.x, move.y)

    def move(self, entity: Entity, x: float, y: float) -> bool:
        """
        Move C{entity} to C{(x, y)} if it may go there: on the map, and no
        faster than C{max_speed}.  Whether it moved.

        Speed is checked against an allowance that grows by C{max_speed x (1
        + speed_tolerance)} units per second since the last accepted move,
        up to C{move_burst} seconds' worth, and shrinks by the distance of
        each accepted move: a player may catch up on inputs that arrived
        late, but never go faster than the limit for longer than the burst,
        and never jump further than it at once.
        """
        if not self.map.in_bounds(x, y):
            return False
        allowance = self._allowance.get(entity.id)
        if allowance is None:
            return False
        now = self.clock.seconds()
        elapsed = max(0.0, now - allowance[1])
        budget = min(self._allowance_cap, allowance[0] + self._refill * elapsed)
        distance = math.hypot(x - entity.x, y - entity.y)
        allowance[1] = now
        if distance > budget + _EPSILON:
            allowance[0] = budget
            return False
        allowance[0] = max(0.0, budget - distance)
        entity.x = float(x)
        entity.y = float(y)
        return True

    # -- game rules ---------------------------------------------------------------------

    def on_tick(self, entity: Entity) -> None:
        """
        Called for every real on every tick, after inputs and NPC movement:
        a game's rules (regeneration, timers, pickups...).  Change
        C{entity.name} or C{entity.attrs} (replace a nested value rather
        than mutate it in place) and observers get the change.  The
        default does nothing and costs nothing.
        """

    def entity_view(self, entity: Entity) -> dict:
        """
        What others see of a real (C{enter} events and ghosts): its
        L{Entity.view}, with a copy of its attributes so that later changes
        do not alter a push already made.
        """
        view = entity.view()
        if "attrs" in view:
            view["attrs"] = dict(view["attrs"])
        return view

    # -- the tick -----------------------------------------------------------------------

    def tick(self) -> TickResult:
        """Run one tick: see the module docstring."""
        started = self._timer()
        now = self.clock.seconds()
        if self.last_tick is None:
            step = 1.0 / self.config.tick_rate
        else:
            step = min(self.max_step, max(0.0, now - self.last_tick))
        self.last_tick = now
        self.tick_count += 1
        result = TickResult(self.tick_count, now)

        corrections = self._apply_inputs() if self._inputs else {}
        if self._walks:
            self._wander(now, step)
        if self._has_on_tick:
            for entity in list(self.reals.values()):
                if entity.id not in self.frozen:
                    self.on_tick(entity)

        self._views = {}
        self._updates = {}
        changed, observers = self._scan(result)
        self._changed = changed
        self._publish(result, changed, observers, corrections)
        # Drop the tick's caches: nothing of it outlives the result.
        self._views = self._updates = self._changed = {}
        result.duration = self._timer() - started
        return result

    def _apply_inputs(self) -> dict[str, dict]:
        """Apply every queued input; the corrections owed, by entity id."""
        corrections = {}
        pending, self._inputs = self._inputs, {}
        for entity_id, queue in pending.items():
            entity = self.reals.get(entity_id)
            if entity is None:
                continue
            if entity_id in self.frozen:
                self._inputs[entity_id] = queue  # kept for after the thaw
                continue
            refused = False
            for seq in sorted(queue):
                if seq <= entity.last_input:
                    continue
                entity.last_input = seq
                if not self.apply_input(entity, queue[seq]):
                    refused = True
            if refused:
                corrections[entity_id] = {"x": entity.x, "y": entity.y, "seq": entity.last_input}
        return corrections

    def _new_walk(self) -> list[float]:
        angle = self.rng.uniform(0.0, 2 * math.pi)
        low, high = self.wander_turn
        turn = self.clock.seconds() + self.rng.uniform(low, high)
        return [math.cos(angle), math.sin(angle), turn]

    def _wander(self, now: float, step: float) -> None:
        """Move every NPC along its heading, turning at random and at the region's edges."""
        distance = self.config.npc_speed * step
        r = self.region
        left, right = r.x0, math.nextafter(r.x1, r.x0)
        bottom, top = r.y0, math.nextafter(r.y1, r.y0)
        reals = self.reals
        frozen = self.frozen
        for entity_id, walk in self._walks.items():
            if frozen and entity_id in frozen:
                continue
            if now >= walk[2]:
                walk[:] = self._new_walk()
            entity = reals[entity_id]
            x = entity.x + walk[0] * distance
            y = entity.y + walk[1] * distance
            if x < left:
                x, walk[0] = left, abs(walk[0])
            elif x > right:
                x, walk[0] = right, -abs(walk[0])
            if y < bottom:
                y, walk[1] = bottom, abs(walk[1])
            elif y > top:
                y, walk[1] = top, -abs(walk[1])
            entity.x = x
            entity.y = y

    def _scan(self, result: TickResult) -> tuple[dict[str, int], list]:
        """
        One pass over the reals and the ghosts: fill the AOI grid, note what
        changed since it was last published (a mask of L{_POSITION},
        L{_NAME}, L{_ATTRS} by id), and list the observers, the crossings
        and the ghost views.
        """
        published = self._published
        changed: dict[str, int] = {}
        observers: list[tuple[str, float, float, Entity]] = []
        cells = self.aoi.reset()
        cell_of = cells.get
        size = self.aoi.radius
        count = 0

        region = self.region
        margin = self.config.ghost_margin
        hysteresis = self.config.hysteresis
        # Reals inside this box are too far from every border to matter.
        inner_x0, inner_x1 = region.x0 + margin, region.x1 - margin
        inner_y0, inner_y1 = region.y0 + margin, region.y1 - margin
        neighbours = self.neighbours
        ghost_views = result.ghost_views = {n.name: [] for n in neighbours}

        reals = self.reals
        frozen = self.frozen
        for entity_id, entity in reals.items():
            x = entity.x
            y = entity.y
            key = int(x // size) * STRIDE + int(y // size)
            cell = cell_of(key)
            if cell is None:
                cells[key] = [(entity_id, x, y)]
            else:
                cell.append((entity_id, x, y))
            count += 1
            record = published.get(entity_id)
            if record is None:
                published[entity_id] = [x, y, entity.name, dict(entity.attrs)]
            else:
                mask = 0
                if record[0] != x or record[1] != y:
                    record[0] = x
                    record[1] = y
                    mask = _POSITION
                if record[2] != entity.name or record[3] != entity.attrs:
                    mask |= _record(record, entity.name, entity.attrs)
                if mask:
                    changed[entity_id] = mask
            if entity.kind == PLAYER and entity.session and entity.gateway:
                if entity_id not in frozen:
                    observers.append((entity_id, x, y, entity))
            if inner_x0 <= x <= inner_x1 and inner_y0 <= y <= inner_y1:
                continue
            view = None
            for neighbour in neighbours:
                if neighbour.distance(x, y) <= margin:
                    if view is None:
                        view = self._view(entity_id)
                    ghost_views[neighbour.name].append(view)
            if (
                not region.contains(x, y)
                and region.distance(x, y) > hysteresis
                and entity_id not in frozen
            ):
                target = self.map.region_at(x, y)
                if target is not None and target.name != region.name:
                    result.crossings.append((entity, target))

        for ghost_id, view in self.ghosts.items():
            if ghost_id in reals:
                continue
            x = view["x"]
            y = view["y"]
            key = int(x // size) * STRIDE + int(y // size)
            cell = cell_of(key)
            if cell is None:
                cells[key] = [(ghost_id, x, y)]
            else:
                cell.append((ghost_id, x, y))
            count += 1
            name = view.get("name", "")
            attrs = view.get("attrs", {})
            record = published.get(ghost_id)
            if record is None:
                published[ghost_id] = [x, y, name, dict(attrs)]
            else:
                mask = 0
                if record[0] != x or record[1] != y:
                    record[0] = x
                    record[1] = y
                    mask = _POSITION
                if record[2] != name or record[3] != attrs:
                    mask |= _record(record, name, attrs)
                if mask:
                    changed[ghost_id] = mask

        if len(published) != count:
            # Something left (removed, or no longer ghosted): forget it.
            ghosts = self.ghosts
            for gone in [i for i in published if i not in reals and i not in ghosts]:
                del published[gone]
        return changed, observers

    def _view(self, entity_id: str) -> dict:
        """The full view of a visible entity, built once per tick."""
        view = self._views.get(entity_id)
        if view is None:
            entity = self.reals.get(entity_id)
            view = self.entity_view(entity) if entity is not None else self.ghosts[entity_id]
            self._views[entity_id] = view
        return view

    def _update_of(self, entity_id: str) -> dict:
        """The C{update} entry of a changed entity, built once per tick."""
        update = self._updates.get(entity_id)
        if update is None:
            mask = self._changed[entity_id]
            record = self._published[entity_id]
            update = {"id": entity_id}
            if mask & _POSITION:
                update["x"] = record[0]
                update["y"] = record[1]
            if mask & _NAME:
                update["name"] = record[2]
            if mask & _ATTRS:
                update["attrs"] = record[3]
            self._updates[entity_id] = update
        return update

    def _publish(self, result, changed, observers, corrections) -> None:
        """Each observer's events of the tick, batched by gateway and session."""
        diff = self.aoi.diff
        pushes = result.pushes
        tick = result.tick
        update_of = self._update_of
        updates = self._updates
        view = self._view
        for entity_id, x, y, entity in observers:
            enter, update, leave = diff(entity_id, x, y, tick, changed, update_of, view, updates)
            events: list[Event] = []
            if enter or update or leave:
                fields = {"tick": tick, "enter": enter, "update": update, "leave": leave}
                events.append(("world.update", fields))
            correction = corrections.get(entity_id)
            if correction is not None:
                events.insert(0, ("world.correct", correction))
            if events:
                by_session = pushes.get(entity.gateway)
                if by_session is None:
                    by_session = pushes[entity.gateway] = {}
                by_session[entity.session] = events
        known = self.aoi.known
        if len(known) != len(observers):
            # Players that left, or lost their session: drop their views.  A
            # frozen player keeps its own: if its handoff is undone, its
            # client still has that view, and this zone goes on from it.
            watching = {o[0] for o in observers}
            frozen = self.frozen
            for gone in [i for i in known if i not in watching and i not in frozen]:
                self.aoi.forget(gone)


#: What changed of an entity this tick (a bit mask).
_POSITION, _NAME, _ATTRS = 1, 2, 4


def _record(record: list, name: str, attrs: dict) -> int:
    """Note a changed name or attributes in C{record}; what changed."""
    mask = 0
    if record[2] != name:
        record[2] = name
        mask |= _NAME
    if record[3] != attrs:
        # A copy: later changes in place must not alter what was published.
        record[3] = dict(attrs)
        mask |= _ATTRS
    return mask
