"""
The authoritative simulation of one region of the world: one zone.

A L{ZoneSimulation} holds the zone's I{reals} (the entities it owns) and
the I{ghosts} its neighbours mirror into it.  A player's input is applied
when it comes (L{ZoneSimulation.input}, called by the zone's handoff, which
keeps inputs in order, each at most once), within the speed limit
(L{mmo.zone.movement}); a refused one is corrected at the next tick.  Every
L{ZoneSimulation.tick} (driven by a L{mmo.zone.ticker.Ticker}):

 1. moves the NPCs (a random walk inside the region, L{mmo.zone.wander});
 2. calls L{ZoneSimulation.on_tick} for every real (game rules);
 3. works out, for every player, what entered, changed in and left its area
    of interest (L{mmo.zone.aoi}), as one C{world.update} push per player
    (after a C{world.correct} for a refused input), batched per gateway:
    every tick, or every few with C{[world] update_rate};
 4. lists the reals that went past the region's border by more than the
    hysteresis (to be handed off) and the views of the reals within the
    ghost margin of each neighbouring region (to be mirrored there).

Steps 3 and 4 are one pass, L{mmo.zone.publication}.  The simulation knows
no bytes, no bus and no reactor beyond the injected clock: the zone service
delivers the pushes, sends the ghost views and runs the handoffs
(L{mmo.zone.handoff}).  See C{docs/world.md}.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from mmo.metrics.kinds import LabelCache
from mmo.metrics.registry import ZONE_CORRECTIONS
from mmo.zone.aoi import AreaOfInterest
from mmo.zone.entity import NPC, PLAYER, Entity
from mmo.zone.movement import Allowance
from mmo.zone.publication import Event, Publication
from mmo.zone.wander import Wanderers
from mmo.zone.world import Region, WorldMap

#: Reasons of a correction: an input that did not parse, or one the
#: movement rules (or the game's own) refused.
MALFORMED = "malformed"
REFUSED = "refused"

__all__ = ["Event", "Input", "TickResult", "ZoneSimulation", "parse_input"]


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


def parse_input(seq: int, payload) -> Input | None:
    """
    The L{Input} numbered C{seq} of a C{zone.move}'s payload, C{{"x", "y"}}
    (finite numbers) and optionally the game's C{"extra"}; C{None} if it is
    malformed.
    """
    coordinates = _coordinates(payload)
    if coordinates is None:
        return None
    x, y = coordinates
    return Input(seq, x, y, payload.get("extra"))


def _coordinates(payload) -> tuple[float, float] | None:
    """
    Where a C{zone.move}'s payload goes, C{(x, y)} as floats, or C{None} if
    it is malformed (L{parse_input}).
    """
    if not isinstance(payload, dict):
        return None
    x, y = payload.get("x"), payload.get("y")
    if type(x) is float and type(y) is float:
        # What a client's move holds: finite unless the difference of a
        # value with itself is not 0 (infinities and NaN).
        if x - x == 0.0 and y - y == 0.0:
            return x, y
        return None
    for value in (x, y):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        if not math.isfinite(value):
            return None
    return float(x), float(y)


@dataclass
class TickResult:
    """
    What one tick produced.

    @ivar tick: The zone's tick number (1 for its first tick).
    @ivar time: The clock's time at the start of the tick.
    @ivar pushes: By gateway, by session: the session's events of the tick,
        in order (a C{world.correct}, then one C{world.update}), each
        C{(kind, fields)}.  One entry per gateway, for one bus message.
        Read them, do not change them: the entries of a C{world.update}'s
        C{update} are read-only mappings where the compiled kernel made
        them (L{mmo.zone._kernel.UpdateEntry}, equal to the dicts the
        pure-Python one makes).
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
        self._update_every = world_config.update_every
        self.reals: dict[str, Entity] = {}
        self.tick_count = 0
        self.last_tick: float | None = None
        self._ghost_sources: dict[str, dict[str, dict]] = {}
        self._ghosts: dict[str, dict] | None = {}
        self._allowance = Allowance(world_map, world_config, clock)
        self._wanderers = Wanderers(
            self.region,
            world_config.npc_speed,
            clock,
            self.rng,
            self.wander_turn,
            self.aoi.kernel,
        )
        self._publication = Publication(
            world_map,
            self.region,
            self.neighbours,
            world_config,
            self.aoi,
            self.entity_view,
            type(self).entity_view is ZoneSimulation.entity_view,
        )
        # Players whose input was refused since the last tick: corrected then.
        self._corrected: set[str] = set()
        #: The count of corrections of this zone, by reason.
        self.corrections = LabelCache(
            ZONE_CORRECTIONS, limit=64, fixed=(MALFORMED, REFUSED), first=(self.region.name,)
        )
        self._npc_serial = 0
        self._has_on_tick = type(self).on_tick is not ZoneSimulation.on_tick
        # Without a game's own apply_input, an input is a move: no Input made.
        self._moves_only = type(self).apply_input is ZoneSimulation.apply_input
        # Reals being handed off: seen, but not simulated.
        self.frozen: set[str] = set()
        # Players arriving (their inputs held): simulated and seen, not shown
        # anything until released.
        self.held: set[str] = set()

    # -- entities -----------------------------------------------------------------------

    def add(self, entity: Entity, seen=None, reset: bool = False) -> None:
        """
        Make C{entity} a real of this zone (a new player or NPC, one restored
        from a checkpoint, or one handed over by a neighbour).

        A player's C{last_input} is kept.  Its movement allowance starts
        full, so that inputs forwarded during a handoff are not refused.
        Without C{seen} or C{reset}, a player's client has nothing in view:
        everything in sight enters at the next tick.

        @param seen: For a player handed over: the ids its client already
            has (L{seen} in the old zone), so that its view goes on without
            entering again what it sees already.
        @param reset: For a player restored from the store after this
            zone's process ended: its client has a view this zone does not
            know, so its next C{world.update} starts it over (C{reset}).
        @raise ValueError: The id is already a real here.
        """
        if entity.id in self.reals:
            raise ValueError(f"{entity.id!r} is already in zone {self.region.name!r}")
        self.reals[entity.id] = entity
        self._allowance.start(entity.id)
        if entity.kind == NPC:
            self._wanderers.add(entity.id)
        if seen is not None:
            self.aoi.seed(entity.id, seen)
        elif reset and entity.kind == PLAYER:
            self.aoi.start_over(entity.id)

    def remove(self, entity_id: str) -> Entity | None:
        """
        Stop simulating a real (it logged out, or was handed off); return it,
        or C{None} if it is not here.  Observers see it leave on the next
        tick, unless it is a ghost here by then (the zone service keeps a
        handed-over one as a ghost of its new zone:
        L{mmo.zone.ghosts.GhostTable.handed_over}).
        """
        entity = self.reals.pop(entity_id, None)
        if entity is None:
            return None
        self._allowance.stop(entity_id)
        self._wanderers.remove(entity_id)
        self._corrected.discard(entity_id)
        self.frozen.discard(entity_id)
        self.held.discard(entity_id)
        self.aoi.forget(entity_id)
        return entity

    def get(self, entity_id: str) -> Entity | None:
        """The real C{entity_id}, or C{None}."""
        return self.reals.get(entity_id)

    def freeze(self, entity_id: str) -> None:
        """
        Keep a real as it is while it is offered to a neighbour (its state
        was sent as it is): no NPC walk, no L{on_tick}, no crossing
        reported (and the handoff buffers its inputs).  It is still seen and
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

    def hold(self, entity_id: str) -> None:
        """
        Show a player arriving by a handoff nothing until L{release}: the
        old zone may still be showing it its last updates, on another link
        than ours, and its client must have them all before ours (the
        release comes after the gateway switched, which it did after it
        delivered them).  It is simulated and seen meanwhile, and its
        first update after the release is the diff from the view it came
        with.
        """
        if entity_id in self.reals:
            self.held.add(entity_id)

    def release(self, entity_id: str) -> None:
        """Show a held player its view again, from the next tick (L{hold})."""
        self.held.discard(entity_id)

    def seen(self, entity_id: str) -> list[str] | None:
        """
        The ids a player's client has in view (to hand over with it), or
        C{None} if that is not known (its view starts over at its next
        update, L{start_over}): then so does the zone's that takes it.
        """
        if entity_id in self.aoi.restarting:
            return None
        return list(self.aoi.known.get(entity_id, ()))

    def start_over(self, entity_id: str) -> None:
        """
        The client of the player C{entity_id} may have missed updates (they
        were lost on their way): its next C{world.update} starts its view
        over (C{reset}, and everything in sight enters).
        """
        if entity_id in self.reals:
            self.aoi.start_over(entity_id)

    def new_client(self, entity_id: str) -> None:
        """
        A new client watches the player C{entity_id} (a new session took
        it over): it has nothing in view, so everything in sight enters
        again at the next tick.  Nothing the old client was shown reaches
        it: it is not held (L{hold}).
        """
        self.aoi.forget(entity_id)
        self.held.discard(entity_id)

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

    def set_ghosts(self, source: str, views: list[dict] | dict[str, dict]) -> None:
        """
        Replace the ghosts mirrored from the zone of region C{source} by
        C{views} (its L{TickResult.ghost_views} for this region), a list or
        a dict by id.  Read-only copies: they are seen, never simulated
        here.  A real with the same id (during a handoff) hides its ghost.
        """
        if source == self.region.name:
            raise ValueError("a zone does not ghost its own entities")
        if isinstance(views, dict):
            self._ghost_sources[source] = views.copy()
        else:
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

    def input(self, entity: Entity, seq: int, payload) -> bool:
        """
        Apply the input C{seq} of the player's real C{entity} now: the
        C{zone.move}'s payload (L{parse_input}), through L{apply_input}.
        The zone's handoff calls it (L{mmo.zone.handoff.ZoneState.apply_input}),
        in order and at most once per C{seq}, and counts it in the entity's
        C{last_input}.  A malformed or refused input is corrected at the
        next tick: the player gets C{world.correct {x, y, input}}, its
        state then and its last input.

        @return: Whether it was applied.
        """
        if self._moves_only:
            coordinates = _coordinates(payload)
            if coordinates is None:
                self.correct(entity.id, MALFORMED)
                return False
            if self.move(entity, *coordinates):
                return True
            self.correct(entity.id)
            return False
        move = parse_input(seq, payload)
        if move is None:
            self.correct(entity.id, MALFORMED)
            return False
        if self.apply_input(entity, move):
            return True
        self.correct(entity.id)
        return False

    def correct(self, entity_id: str, reason: str = REFUSED) -> None:
        """
        Send the player of the real C{entity_id} its authoritative state at
        the next tick (C{world.correct {x, y, input}}), before that tick's
        C{world.update}: a refused input, whatever refused it.

        @param reason: Why, for the count of corrections: L{MALFORMED},
            L{REFUSED} (by the movement rules or the game's own), or the
            error code of an input refused before it reached the zone.
        """
        if entity_id in self.reals:
            self._corrected.add(entity_id)
            self.corrections.child(reason).inc()

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
        faster than C{max_speed} (L{mmo.zone.movement.Allowance}).  Whether
        it moved.
        """
        return self._allowance.move(entity, x, y)

    # -- game rules ---------------------------------------------------------------------

    def on_tick(self, entity: Entity) -> None:
        """
        Called for every real on every tick, after NPC movement: a game's
        rules (regeneration, timers, pickups...).  Change C{entity.name} or
        C{entity.attrs} (replace a nested value rather than mutate it in
        place) and observers get the change.  The default does nothing and
        costs nothing.
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

        if self._wanderers:
            self._wanderers.step(self.reals, self.frozen, now, step)
        if self._has_on_tick:
            for entity in list(self.reals.values()):
                if entity.id not in self.frozen:
                    self.on_tick(entity)

        corrected = self._corrected
        held = self.held
        # Players are sent what changed every update_every ticks (the
        # zone's first update is its tick update_every).
        update = self.tick_count % self._update_every == 0
        self._publication.run(result, self.reals, self.ghosts, self.frozen, corrected, held, update)
        if corrected and update:
            # A held player's correction waits for its release.
            corrected.intersection_update(held)
        result.duration = self._timer() - started
        return result
