"""
What a zone's tick shows: to its players, what entered, changed in and left
their areas of interest (one C{world.update} each, after a C{world.correct}
for a player whose input was refused), batched per gateway, at every tick
or, with C{[world] update_rate}, at one in every few (the ticks between show
them nothing, and the next update all that changed since the last); to its
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

from mmo.zone.aoi import AreaOfInterest
from mmo.zone.entity import PLAYER, Entity
from mmo.zone.kernel import record
from mmo.zone.world import Region, WorldMap

#: A push: C{(kind, fields)}.
Event = tuple[str, dict]


class Publication:
    """
    What one zone's ticks show (see the module docstring).

    @param world_map: The L{WorldMap}.
    @param region: The zone's L{Region}.
    @param neighbours: The regions next to it (that get ghost views).
    @param world_config: The C{[world]} section (C{ghost_margin}, C{hysteresis}).
    @param aoi: The zone's L{AreaOfInterest}, refilled at every L{run}.
    @param entity_view: What others see of a real (the simulation's hook).
    @param plain_views: Whether C{entity_view} is the plain one, its
        L{Entity.view} and no more: a real's, if nothing of it changed
        since the last tick, is then the one it had (L{_view}).
    """

    def __init__(
        self,
        world_map: WorldMap,
        region: Region,
        neighbours: list[Region],
        world_config,
        aoi: AreaOfInterest,
        entity_view,
        plain_views: bool = False,
    ):
        self.map = world_map
        self.region = region
        self.neighbours = neighbours
        self.margin = world_config.ghost_margin
        # The box whose reals are too far from every neighbour to matter.
        self._inner = inner_box(region, neighbours, self.margin)
        self.hysteresis = world_config.hysteresis
        self.aoi = aoi
        self.entity_view = entity_view
        self.plain_views = plain_views
        # What observers were last shown of every visible entity (reals and
        # ghosts): [x, y, name, attrs, id, cell key], the entries of the AOI's
        # grid (mmo.zone.kernel.entry).  Survives a ghost becoming a real.
        self._published: dict[str, list] = {}
        # The tick's: full views and update entries (built once each), what
        # changed, and the entities they are of.
        self._views: dict[str, dict] = {}
        # The last tick's full views of reals, by id, when they are plain.
        self._kept: dict[str, dict] = {}
        self._entries = aoi.kernel.UpdateEntries
        self._updates: dict[str, dict] = self._entries({}, self._published)
        self._changed: dict[str, int] = {}
        self._reals: dict[str, Entity] = {}
        self._ghosts: dict[str, dict] = {}

    def run(
        self,
        result,
        reals: dict[str, Entity],
        ghosts: dict[str, dict],
        frozen,
        corrected,
        held=(),
        update: bool = True,
    ):
        """
        Fill C{result}'s (a L{mmo.zone.simulation.TickResult}) pushes,
        crossings and ghost views from the zone's C{reals} and C{ghosts}.
        Frozen reals are seen and ghosted, but neither see nor cross; the
        players in C{corrected} get a C{world.correct} first.  Held reals
        (arriving, their inputs held) are seen, ghosted and cross, but see
        nothing yet: they keep the view they came with, as frozen ones do.

        Without C{update} (a tick between two world updates, C{[world]
        update_rate}), nothing is pushed: the grid, what was published and
        every player's view stay as the last update left them, so that the
        next one shows all that changed since; the ghost views and the
        crossings are every tick's.
        """
        self._reals = reals
        self._ghosts = ghosts
        if update:
            # The players that see nothing this tick, and keep their views.
            blind = frozen | held if held else frozen
            observers, outer = self._fill(reals, ghosts, blind)
            self._border(result, outer, frozen)
            self._updates = self._entries(self._changed, self._published)
            self._publish(result, observers, blind, corrected)
        else:
            self._border(result, self.aoi.kernel.outer(reals, self._inner), frozen)
        # Nothing of the tick outlives its result, but the plain views of
        # reals, for the next tick's to reuse after an update (after a tick
        # between, what changed since is not known, nor at the next what
        # joined in between: no view is reused).
        self._kept = self._views if self.plain_views and update else {}
        self._views = {}
        self._updates = self._entries({}, self._published)
        self._changed = {}
        self._reals = {}
        self._ghosts = {}

    def _fill(self, reals, ghosts, blind) -> tuple[list, list]:
        """
        One pass over the reals and the ghosts: fill the AOI grid, note what
        changed since it was last published (a mask of
        L{mmo.zone.kernel.POSITION}, C{NAME}, C{ATTRS} by id), and list the
        observers and the reals outside L{inner_box}.
        """
        changed, observers, outer = self.aoi.fill(
            reals, ghosts, self._published, blind, self._inner, PLAYER, record
        )
        # What the views of the tick, from here on, are built knowing.
        self._changed = changed
        return observers, outer

    def _border(self, result, outer, frozen) -> None:
        """
        The crossings and the ghost views of the C{outer} reals: those near
        a neighbour are ghosted there, those past the border cross.
        """
        region = self.region
        margin = self.margin
        hysteresis = self.hysteresis
        neighbours = self.neighbours
        ghost_views = result.ghost_views = {n.name: [] for n in neighbours}
        # Each neighbour's box widened by the margin: what lies outside it
        # is farther than the margin, no distance needed (most of the reals
        # near one border are near no other).  Within it, a real level with
        # the box on one axis is as far as it is on the other, what
        # Region.distance then says, with the same comparisons; only one
        # by a corner needs the distance.
        reach = [
            (n, ghost_views[n.name], n.x0 - margin, n.y0 - margin, n.x1 + margin, n.y1 + margin)
            + (n.x0, n.y0, n.x1, n.y1)
            for n in neighbours
        ]
        x0, y0, x1, y1 = region.x0, region.y0, region.x1, region.y1
        for entity_id, x, y, entity in outer:
            view = None
            for neighbour, views, left, bottom, right, top, n_x0, n_y0, n_x1, n_y1 in reach:
                if not (left <= x <= right and bottom <= y <= top):
                    continue
                if n_y0 <= y <= n_y1:
                    near = n_x0 - x <= margin and x - n_x1 <= margin
                elif n_x0 <= x <= n_x1:
                    near = n_y0 - y <= margin and y - n_y1 <= margin
                else:
                    near = neighbour.distance(x, y) <= margin
                if near:
                    if view is None:
                        view = self._view(entity_id)
                    views.append(view)
            # Outside the region (Region.contains).
            if (
                not (x0 <= x <= x1 and y0 <= y <= y1)
                and region.distance(x, y) > hysteresis
                and entity_id not in frozen
            ):
                target = self.map.region_at(x, y)
                if target is not None and target.name != region.name:
                    result.crossings.append((entity, target))

    def _view(self, entity_id: str) -> dict:
        """
        The full view of a visible entity, built once per tick; a real's
        plain view (L{Entity.view}, whose fields are those published) the
        last tick's if none of them changed since: most of the reals by a
        border, ghosted every tick, stand still.
        """
        view = self._views.get(entity_id)
        if view is None:
            entity = self._reals.get(entity_id)
            if entity is None:
                # A ghost's is its neighbour's, kept out of the next tick's.
                return self._ghosts[entity_id]
            view = self._kept.get(entity_id)
            if (
                view is None
                or entity_id in self._changed
                or (type(entity) is not Entity and type(entity).view is not Entity.view)
                or view["kind"] != entity.kind
            ):
                view = self.entity_view(entity)
            self._views[entity_id] = view
        return view

    def _publish(self, result, observers, blind, corrected) -> None:
        """Each observer's events of the tick, batched by gateway and session."""
        aoi = self.aoi
        # Diffs in the grid's order, in one call; pushes in the observers' own.
        shown = aoi.diffs(observers, self._changed, self._updates, self._view)
        aoi.kernel.pushes(
            observers,
            shown,
            result.tick,
            corrected,
            aoi.restarting,
            aoi.started_over,
            _correction,
            result.pushes,
        )
        known = aoi.known
        if len(known) != len(observers):
            # Players that left, or lost their session: drop their views.  A
            # frozen player keeps its own: if its handoff is undone, its
            # client still has that view, and this zone goes on from it.
            watching = {o[0] for o in observers}
            for gone in [i for i in known if i not in watching and i not in blind]:
                aoi.forget(gone)


def inner_box(
    region: Region, neighbours: list[Region], margin: float
) -> tuple[float, float, float, float]:
    """
    C{(x0, y0, x1, y1)}: the box of C{region} whose reals are too far from
    every one of its C{neighbours} to matter, neither ghosted nor crossing:
    the region less C{margin} along each side a neighbour lies beyond (or
    touches at a corner).  The regions tile the map, so a side with none
    is on the map's edge: nothing crosses it, and the reals along it are
    in the box unless another neighbour is near.
    """
    left = any(n.x1 <= region.x0 for n in neighbours)
    bottom = any(n.y1 <= region.y0 for n in neighbours)
    right = any(n.x0 >= region.x1 for n in neighbours)
    top = any(n.y0 >= region.y1 for n in neighbours)
    return (
        region.x0 + margin if left else region.x0,
        region.y0 + margin if bottom else region.y0,
        region.x1 - margin if right else region.x1,
        region.y1 - margin if top else region.y1,
    )


def _correction(entity: Entity) -> dict:
    """The fields of a player's C{world.correct}: where it is, and its last input."""
    return {"x": entity.x, "y": entity.y, "input": entity.last_input}
