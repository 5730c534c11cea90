"""
Area of interest: which entities each player sees, and what changed in its
view since the last tick.

A uniform grid of square cells, half the AOI radius wide
(L{FINENESS}), holds every visible entity (the zone's reals and the ghosts
mirrored from its neighbours).  It is kept from tick to tick and brought up
to date in one pass over them: an entity changes cells only when it moves
to another one, so the grid's cost grows with what moved across a cell
border, came or went, and its entries are allocated once.  An
observer's circle of radius covers whole cells and cuts others: the cells
certain to lie inside the circle wherever the observer stands in (an
eighth by an eighth of) its own cell are taken whole, without a distance check; only
those the circle's edge may cut are checked entity by entity, and those
certain to lie outside are not looked at.  Which cells are which depends
only on where in its cell the observer stands, so it is worked out once,
for each of L{SUBCELLS} x L{SUBCELLS} parts of a cell, in exact integer
arithmetic: the per-tick cost is a look at each entity (did it move, or
change) plus, per observer, 23 cell look-ups, the squared-distance checks
of the entities in the edge cells (about 4.5 r^2 of area, against the
9 r^2 of a 3 x 3 block of radius-wide cells) and the entities it sees.  Nothing is
done per pair of entities beyond that, and nothing is sent per entity; the
caller batches each observer's events into one push.

Each observer's view is diffed against what its client already has
(L{AreaOfInterest.known}): C{enter} (full views of what came into view),
C{update} (the changes of what stayed in view and changed this tick) and
C{leave} (ids).  The pure kernel keeps a view as a dict of ids and diffs
with dictionary look-ups in bulk; the compiled one numbers the grid's
entries (each keeps its slot for as long as it is in the grid), keeps a
view as an array of slots and diffs with a mark per slot, touching no id.
Results are the same on both, in a deterministic order (the grid's, then
the previous view's for C{leave}), so a seeded simulation replays exactly.

What a client has is known from the observer's start: nothing (a new
client), the view it took along from another zone (L{AreaOfInterest.seed}),
or unknown (L{AreaOfInterest.start_over}: the zone was restored after a
crash, and its client keeps what the zone's earlier life showed it), in
which case its next update starts the view over (C{reset}).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from types import ModuleType

from mmo.zone import kernel

#: Cells are keyed by one integer, C{cx * STRIDE + cy}: cheaper to hash than
#: a tuple, and unique for any map of fewer than 2**39 cells a side.
STRIDE = 1 << 40

#: Cells per AOI radius.  Finer cells leave fewer entities to check one by
#: one but cost more look-ups per observer; 2 (with L{SUBCELLS} 8) was the
#: cheapest at the densities of C{bench/zone_tick.py}.
FINENESS = 2

#: Parts of a cell, per side, that an observer's position is rounded to when
#: choosing which cells to take whole and which to check.
SUBCELLS = 8


def cell_classes(fineness: int = FINENESS, subcells: int = SUBCELLS) -> list[tuple]:
    """
    For an observer in each part C{(i, j)} of its cell (index C{i *
    subcells + j}), the key offsets of the cells wholly within its radius
    and of those its radius's edge may cut: C{(inside, edge)}.

    Distances are in units of a part of a cell, as integers, so the
    classification is exact: a cell is inside when its farthest point from
    the observer's part is nearer than the radius (strictly, which leaves
    a margin far above rounding error for the float positions), outside
    when its nearest point is farther, and an edge cell otherwise.  The
    radius is C{fineness} cells.
    """
    q = subcells
    limit = (fineness * q) ** 2
    reach = fineness + 1
    classes = []
    for part_x in range(q):
        for part_y in range(q):
            # The observer's part: [a0, a1] x [b0, b1], in parts of a cell.
            a0, a1, b0, b1 = part_x, part_x + 1, part_y, part_y + 1
            inside = []
            edge = []
            for i in range(-reach, reach + 1):
                for j in range(-reach, reach + 1):
                    # The cell at offset (i, j): [i q, (i + 1) q] x [j q, (j + 1) q].
                    c0, c1, d0, d1 = i * q, (i + 1) * q, j * q, (j + 1) * q
                    far_x = max(abs(c1 - a0), abs(a1 - c0))
                    far_y = max(abs(d1 - b0), abs(b1 - d0))
                    near_x = max(0, c0 - a1, a0 - c1)
                    near_y = max(0, d0 - b1, b0 - d1)
                    offset = i * STRIDE + j
                    if far_x * far_x + far_y * far_y < limit:
                        inside.append(offset)
                    elif near_x * near_x + near_y * near_y <= limit:
                        edge.append(offset)
            classes.append((tuple(inside), tuple(edge)))
    return classes


_CLASSES = cell_classes()


#: The module of the per-tick loops the area of interest runs by default
#: (L{mmo.zone.kernel.load}).
KERNEL = kernel.load()


class AreaOfInterest:
    """
    The spatial grid and every observer's view.

    @param kernel: The module of the per-tick loops (L{mmo.zone.kernel},
        or the compiled C{mmo.zone._kernel}); default: L{KERNEL}.
    @ivar radius: The AOI radius, world units.
    @ivar cell_size: The grid's cell side, world units (C{radius / FINENESS}).
    @ivar known: For each observer, the ids its client has: its view, which
        iterates over them in the grid's order of the last diff that
        changed them (a dict of ids, or the compiled kernel's C{View}).
    @ivar restarting: The observers whose next update starts their client's
        view over (L{start_over}); read it, change it through the methods.
    """

    def __init__(self, radius: float, kernel: ModuleType | None = None):
        if radius <= 0:
            raise ValueError("the AOI radius must be positive")
        self.radius = float(radius)
        self.cell_size = self.radius / FINENESS
        self._r2 = self.radius * self.radius
        self.kernel = kernel if kernel is not None else KERNEL
        # Entries (L{mmo.zone.kernel.entry}) in lists, by cell key.
        self._cells: dict[int, list[list]] = {}
        # What the kernel's functions take of the grid.
        self._grid = (
            self._cells,
            _CLASSES,
            STRIDE,
            SUBCELLS,
            self.cell_size,
            self._r2,
            self.kernel.Snapshot(),
        )
        self.known: dict[str, Collection[str]] = {}
        # Observers whose client was handed a view by another zone: their
        # first diff refreshes everything they keep seeing.
        self._refresh: set[str] = set()
        self.restarting: set[str] = set()

    # -- the grid -----------------------------------------------------------------------

    def build(self, entries: Iterable[tuple[str, float, float]]) -> None:
        """
        Replace the grid's contents by C{entries}: C{(id, x, y)} each, one
        per id (a grid of given points; a zone's is kept by L{fill}).
        """
        self._grid[6].empty()
        self._cells.clear()
        entry = self.kernel.entry
        for entity_id, x, y in entries:
            entry(self._grid, entity_id, x, y, None, None)

    def fill(
        self,
        reals: Mapping,
        ghosts: Mapping[str, dict],
        published: dict[str, list],
        frozen: set[str],
        inner: tuple[float, float, float, float],
        player: str,
        record: Callable[[list, str, dict], int],
    ) -> tuple[dict[str, int], list, list]:
        """
        Bring the grid up to date for a new tick from the C{reals} and the
        C{ghosts}, noting what changed since it was C{published} (whose
        records are the grid's entries), in one pass: see
        L{mmo.zone.kernel.fill}, which says what the arguments and the
        result are.  The grid is kept between ticks: only what moved to
        another cell, came or left changes cells.
        """
        return self.kernel.fill(self._grid, reals, ghosts, published, frozen, inner, player, record)

    def grid_order(self, observers: list[tuple]) -> list[int]:
        """
        The indices of C{observers} (C{(id, x, y, ...)} each) in the grid's
        order, cell by cell: one after the other, neighbours look at the
        same cells while these are in the processor's caches.  Those of
        one cell keep their order (L{mmo.zone.kernel.grid_order}).
        """
        return self.kernel.grid_order(self._grid, observers)

    def visible(self, x: float, y: float) -> list[str]:
        """The ids of the grid's entries within the radius of C{(x, y)}, in the grid's order."""
        return self.kernel.visible(self._grid, x, y)

    # -- views --------------------------------------------------------------------------

    def diff(
        self,
        observer: str,
        x: float,
        y: float,
        changed: dict,
        updates: Mapping[str, dict],
        view: Callable[[str], dict],
    ) -> tuple[list[dict], list[dict], list[str]]:
        """
        What changed for C{observer} at C{(x, y)} since its last diff, and
        remember its new view.

        @param changed: The ids of the entities that changed this tick.
        @param updates: The C{update} entry of each changed entity, by id
            and of those only (read with subscripts in bulk: a mapping that
            builds an entry on first use, as L{mmo.zone.kernel.UpdateEntries}
            does, builds only those seen).
        @param view: The full view of an entity, by id, for C{enter}.  (The
            caller caches both: each is built once per tick at most.)
        @return: C{(enter, update, leave)}: full views, changes, ids.
        """
        [result] = self.kernel.diffs(
            self._grid, [(observer, x, y)], [0], self.known, self._refresh, changed, updates, view
        )
        return result

    def diffs(
        self,
        observers: list[tuple],
        changed: dict,
        updates: Mapping[str, dict],
        view: Callable[[str], dict],
    ) -> list[tuple[list[dict], list[dict], list[str]]]:
        """
        L{diff} for each of C{observers}, C{(id, x, y, ...)} each, in one
        call, done in the grid's order (L{grid_order}); their C{(enter,
        update, leave)} in the observers' own order.
        """
        return self.kernel.diffs(
            self._grid,
            observers,
            self.grid_order(observers),
            self.known,
            self._refresh,
            changed,
            updates,
            view,
        )

    def seed(self, observer: str, ids: Iterable[str]) -> None:
        """
        Start C{observer} from a view its client already has (handed over by
        another zone): its next diff enters only what is new to it, leaves
        only what it had, and refreshes in full what it keeps.
        """
        self.known[observer] = dict.fromkeys(ids)
        self._refresh.add(observer)

    def start_over(self, observer: str) -> None:
        """
        The client of C{observer} has a view this zone does not know (the
        zone was restored from the store after its process ended, and the
        client kept what the earlier process showed it): its next diff
        enters everything it sees, and L{started_over} says so, for the
        update to tell the client to drop what it has first.
        """
        self.known.pop(observer, None)
        self._refresh.discard(observer)
        self.restarting.add(observer)

    def started_over(self, observer: str) -> bool:
        """
        Whether C{observer}'s view starts over at this diff (L{start_over});
        true once, for the diff that does.
        """
        if observer in self.restarting:
            self.restarting.discard(observer)
            return True
        return False

    def forget(self, observer: str) -> None:
        """
        Drop C{observer}'s view (it left, or has no client, or a new client
        with nothing in view watches it).
        """
        self.known.pop(observer, None)
        self._refresh.discard(observer)
        self.restarting.discard(observer)
