"""
Area of interest: which entities each player sees, and what changed in its
view since the last tick.

A uniform grid of square cells, as wide as the AOI radius, is refilled every
tick from the positions of every visible entity (the zone's reals and the
ghosts mirrored from its neighbours).  An observer sees the entities of the
3 x 3 cells around its own within the radius, so a tick costs
O(entities + observers x entities in 3 x 3 cells): there is no work per pair
of entities beyond that, and nothing is sent per entity; the caller batches
each observer's events into one push.

Each observer's view is diffed against what its client already has
(L{AreaOfInterest.known}): C{enter} (full views of what came into view),
C{update} (the changes of what stayed in view and changed this tick) and
C{leave} (ids).  Results are in a deterministic order (grid insertion order),
so a seeded simulation replays exactly.

What a client has is known from the observer's start: nothing (a new
client), the view it took along from another zone (L{AreaOfInterest.seed}),
or unknown (L{AreaOfInterest.start_over}: the zone was restored after a
crash, and its client keeps what the zone's earlier life showed it), in
which case its next update starts the view over (C{reset}).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

#: Cells are keyed by one integer, C{cx * STRIDE + cy}: cheaper to hash than
#: a tuple, and unique for any map of fewer than 2**39 cells a side.
STRIDE = 1 << 40


class AreaOfInterest:
    """
    The spatial grid and every observer's view.

    @ivar radius: The AOI radius, world units.
    @ivar known: For each observer, the ids its client has (the keys of a
        dict, in the order they entered; the values mark the last diff that
        saw them).
    @ivar restarting: The observers whose next update starts their client's
        view over (L{start_over}); read it, change it through the methods.
    """

    def __init__(self, radius: float):
        if radius <= 0:
            raise ValueError("the AOI radius must be positive")
        self.radius = float(radius)
        self._r2 = self.radius * self.radius
        self._cells: dict[int, list[tuple[str, float, float]]] = {}
        self._resets = 0
        self.known: dict[str, dict[str, int | None]] = {}
        # Observers whose client was handed a view by another zone: their
        # first diff refreshes everything they keep seeing.
        self._refresh: set[str] = set()
        self.restarting: set[str] = set()

    # -- the grid -----------------------------------------------------------------------

    def reset(self) -> dict[int, list[tuple[str, float, float]]]:
        """
        Empty the grid for a new tick and return its cells, for a caller
        that fills them in a loop of its own (saving L{build}'s): C{(id, x,
        y)} entries in lists keyed by L{cell_key}.  The lists are reused
        from tick to tick (less garbage to collect); those of cells nobody
        is in any more are dropped now and then.
        """
        self._resets += 1
        if self._resets % 256 == 0:
            self._cells = {}
        else:
            for cell in self._cells.values():
                cell.clear()
        return self._cells

    def build(self, entries: Iterable[tuple[str, float, float]]) -> None:
        """Replace the grid's contents by C{entries}: C{(id, x, y)} each."""
        size = self.radius
        cells = self.reset()
        get = cells.get
        for entry in entries:
            key = int(entry[1] // size) * STRIDE + int(entry[2] // size)
            cell = get(key)
            if cell is None:
                cells[key] = [entry]
            else:
                cell.append(entry)

    def cell_key(self, x: float, y: float) -> int:
        """The key of the cell of C{(x, y)} in the grid."""
        return int(x // self.radius) * STRIDE + int(y // self.radius)

    def visible(self, x: float, y: float) -> list[str]:
        """The ids of the grid's entries within the radius of C{(x, y)}."""
        size = self.radius
        r2 = self._r2
        key = int(x // size) * STRIDE + int(y // size)
        get = self._cells.get
        found = []
        append = found.append
        for base in (key - STRIDE, key, key + STRIDE):
            for k in (base - 1, base, base + 1):
                cell = get(k)
                if not cell:
                    continue
                for eid, ex, ey in cell:
                    dx = ex - x
                    dy = ey - y
                    if dx * dx + dy * dy <= r2:
                        append(eid)
        return found

    # -- views --------------------------------------------------------------------------

    def diff(
        self,
        observer: str,
        x: float,
        y: float,
        stamp: int,
        changed: dict,
        update_of: Callable[[str], dict],
        view: Callable[[str], dict],
        updates: dict | None = None,
    ) -> tuple[list[dict], list[dict], list[str]]:
        """
        What changed for C{observer} at C{(x, y)} since its last diff, and
        remember its new view.

        @param stamp: Marks this diff; must differ from the previous one's
            (the tick number).
        @param changed: The ids of the entities that changed this tick.
        @param update_of: The C{update} entry of a changed entity, by id.
        @param view: The full view of an entity, by id, for C{enter}.  (The
            caller caches both: each is built once per tick at most.)
        @param updates: The cache of C{update_of}, if it has one, read here
            first to save a call per entity in view.
        @return: C{(enter, update, leave)}: full views, changes, ids.
        """
        if updates is None:
            updates = {}
        known = self.known.get(observer)
        if known is None:
            known = self.known[observer] = {}
        refresh = observer in self._refresh
        if refresh:
            self._refresh.discard(observer)
        enter: list[dict] = []
        update: list[dict] = []
        seen = 0
        size = self.radius
        r2 = self._r2
        key = int(x // size) * STRIDE + int(y // size)
        get = self._cells.get
        for base in (key - STRIDE, key, key + STRIDE):
            for k in (base - 1, base, base + 1):
                cell = get(k)
                if not cell:
                    continue
                for eid, ex, ey in cell:
                    dx = ex - x
                    dy = ey - y
                    if dx * dx + dy * dy <= r2:
                        seen += 1
                        if eid in known:
                            if refresh:
                                update.append(view(eid))
                            elif eid in changed:
                                entry = updates.get(eid)
                                update.append(entry if entry is not None else update_of(eid))
                        else:
                            enter.append(view(eid))
                        known[eid] = stamp
        if len(known) == seen:
            return enter, update, []
        leave = [eid for eid, mark in known.items() if mark != stamp]
        for eid in leave:
            del known[eid]
        return enter, update, leave

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
