"""
What a zone's tick shows: to its players, what entered, changed in and left
their areas of interest (one C{world.update} each, after a C{world.correct}
for a player whose input was refused), batched per gateway; to its
neighbours, the views of the reals within their ghost margin; and, for the
handoff, the reals that went past the region's border by more than the
hysteresis.

All of it comes from one pass over the reals and the ghosts (L{Publication.run}),
which also refills the area-of-interest grid: this is the hot path of the
zone's tick.  What observers were last shown of each visible entity is
remembered, so that an update carries only what changed, and each entity's
full view and update entry are built once per tick whoever sees it.  A
player whose client's view the zone does not know (it was restored after a
crash) gets an update with C{reset} first: everything in sight enters, and
the client drops what it had.
"""

from __future__ import annotations

from mmo.zone.aoi import STRIDE, AreaOfInterest
from mmo.zone.entity import PLAYER, Entity
from mmo.zone.world import Region, WorldMap

#: A push: C{(kind, fields)}.
Event = tuple[str, dict]

#: What changed of an entity this tick (a bit mask).
_POSITION, _NAME, _ATTRS = 1, 2, 4


class Publication:
    """
    What one zone's ticks show (see the module docstring).

    @param world_map: The L{WorldMap}.
    @param region: The zone's L{Region}.
    @param neighbours: The regions next to it (that get ghost views).
    @param world_config: The C{[world]} section (C{ghost_margin}, C{hysteresis}).
    @param aoi: The zone's L{AreaOfInterest}, refilled at every L{run}.
    @param entity_view: What others see of a real (the simulation's hook).
    """

    def __init__(
        self,
        world_map: WorldMap,
        region: Region,
        neighbours: list[Region],
        world_config,
        aoi: AreaOfInterest,
        entity_view,
    ):
        self.map = world_map
        self.region = region
        self.neighbours = neighbours
        self.margin = world_config.ghost_margin
        self.hysteresis = world_config.hysteresis
        self.aoi = aoi
        self.entity_view = entity_view
        # What observers were last shown of every visible entity (reals and
        # ghosts): [x, y, name, attrs].  Survives a ghost becoming a real.
        self._published: dict[str, list] = {}
        # The tick's: full views and update entries (built once each), what
        # changed, and the entities they are of.
        self._views: dict[str, dict] = {}
        self._updates: dict[str, dict] = UpdateEntries({}, self._published)
        self._changed: dict[str, int] = {}
        self._reals: dict[str, Entity] = {}
        self._ghosts: dict[str, dict] = {}

    def run(
        self, result, reals: dict[str, Entity], ghosts: dict[str, dict], frozen, corrected, held=()
    ):
        """
        Fill C{result}'s (a L{mmo.zone.simulation.TickResult}) pushes,
        crossings and ghost views from the zone's C{reals} and C{ghosts}.
        Frozen reals are seen and ghosted, but neither see nor cross; the
        players in C{corrected} get a C{world.correct} first.  Held reals
        (arriving, their inputs held) are seen, ghosted and cross, but see
        nothing yet: they keep the view they came with.
        """
        self._reals = reals
        self._ghosts = ghosts
        changed, observers = self._scan(result, reals, ghosts, frozen, held)
        self._changed = changed
        self._updates = UpdateEntries(changed, self._published)
        self._publish(result, observers, frozen, corrected, held)
        # Nothing of the tick outlives its result.
        self._views = {}
        self._updates = UpdateEntries({}, self._published)
        self._changed = {}
        self._reals = {}
        self._ghosts = {}

    def _scan(self, result, reals, ghosts, frozen, held) -> tuple[dict[str, int], list]:
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
        size = self.aoi.cell_size
        count = 0

        region = self.region
        margin = self.margin
        hysteresis = self.hysteresis
        # Reals inside this box are too far from every border to matter.
        inner_x0, inner_x1 = region.x0 + margin, region.x1 - margin
        inner_y0, inner_y1 = region.y0 + margin, region.y1 - margin
        neighbours = self.neighbours
        ghost_views = result.ghost_views = {n.name: [] for n in neighbours}

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
                if entity_id not in frozen and entity_id not in held:
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

        # The ghosts, as the reals above: inlined again, for a call per
        # entity would cost the tick more than the lines.
        for ghost_id, view in ghosts.items():
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
            for gone in [i for i in published if i not in reals and i not in ghosts]:
                del published[gone]
        return changed, observers

    def _view(self, entity_id: str) -> dict:
        """The full view of a visible entity, built once per tick."""
        view = self._views.get(entity_id)
        if view is None:
            entity = self._reals.get(entity_id)
            view = self.entity_view(entity) if entity is not None else self._ghosts[entity_id]
            self._views[entity_id] = view
        return view

    def _publish(self, result, observers, frozen, corrected, held) -> None:
        """Each observer's events of the tick, batched by gateway and session."""
        diff = self.aoi.diff
        pushes = result.pushes
        tick = result.tick
        changed = self._changed
        updates = self._updates
        view = self._view
        restarting = self.aoi.restarting
        started_over = self.aoi.started_over
        for entity_id, x, y, entity in observers:
            reset = started_over(entity_id) if restarting else False
            enter, update, leave = diff(entity_id, x, y, changed, updates, view)
            events: list[Event] = []
            if enter or update or leave or reset:
                fields = {"tick": tick, "enter": enter, "update": update, "leave": leave}
                if reset:
                    # Its client keeps a view this zone does not know: it
                    # drops it, and this update enters everything in sight.
                    fields["reset"] = True
                events.append(("world.update", fields))
            if corrected and entity_id in corrected:
                correction = {"x": entity.x, "y": entity.y, "input": entity.last_input}
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
            # client still has that view, and this zone goes on from it.  A
            # held one keeps the view its offer carried, to go on from.
            watching = {o[0] for o in observers}
            for gone in [
                i for i in known if i not in watching and i not in frozen and i not in held
            ]:
                self.aoi.forget(gone)


class UpdateEntries(dict):
    """
    The C{update} entries of one tick's changed entities, by id, each built
    on first use from what was published (so once per tick, whoever sees
    it): a dictionary, so that the area of interest reads them with
    subscripts in bulk, from C.
    """

    def __init__(self, changed: dict[str, int], published: dict[str, list]):
        super().__init__()
        self._changed = changed
        self._published = published

    def __missing__(self, entity_id: str) -> dict:
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
        self[entity_id] = update
        return update


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
