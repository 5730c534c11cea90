"""
The per-tick loops of the zone, its hot path: the NPCs' walk (L{wander}),
and the area of interest's: bringing the grid up to date (and noting what
changed) from every visible entity (L{fill}, which also lists the reals
the border's checks look at, as L{outer} does alone), the observers in the grid's
order (L{grid_order}), what an observer sees (L{visible}), what changed in
its view (L{diff}) and the update entries it is sent (L{UpdateEntries});
each observer's pushes (L{pushes}), and their stems, the frames each
session is sent (L{stems}).

These are the pure-Python functions.  The same functions, with the same
arguments, results and order, are compiled by Cython from C{_kernel.pyx}
when the package is installed (C{mmo.zone._kernel}); L{load} chooses the
compiled module when it is built, unless C{MMO_PURE_PYTHON=1} is set.  The
grid, the cell classes and every constant are arguments: neither module
imports the rest of mmo.
"""

from __future__ import annotations

import os
import sys
from array import array
from collections.abc import Callable, Collection, Mapping
from operator import itemgetter
from types import ModuleType

_id = itemgetter(4)

#: What changed of an entity this tick (a bit mask).
POSITION, NAME, ATTRS = 1, 2, 4


def load() -> ModuleType:
    """
    The compiled kernel (C{mmo.zone._kernel}) if it is built and
    C{MMO_PURE_PYTHON} is not C{1} in the environment, else this module.
    """
    if os.environ.get("MMO_PURE_PYTHON") == "1":
        return sys.modules[__name__]
    try:
        from mmo.zone import _kernel
    except ImportError:
        return sys.modules[__name__]
    return _kernel


def wander(
    walks: dict[str, list[float]],
    reals: dict,
    frozen: set[str],
    now: float,
    distance: float,
    bounds: tuple[float, float, float, float],
    new_walk: Callable[[], list[float]],
) -> None:
    """
    Move the entities of C{reals} that have a walk (C{[dx, dy, when to
    turn]} by id, a unit heading), but the C{frozen}, C{distance} along
    their heading: a new walk (C{new_walk()}) once its time to turn has
    come, and back from the edges of C{bounds}, C{(left, right, bottom,
    top)}, inclusive (L{mmo.zone.wander.Wanderers.step}).
    """
    left, right, bottom, top = bounds
    for entity_id, walk in walks.items():
        if frozen and entity_id in frozen:
            continue
        if now >= walk[2]:
            walk[:] = new_walk()
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


def positions(reals: dict, player: str) -> tuple[list, bytes, bytes]:
    """
    The ids of the C{reals} (entities by id) of kind C{player}, and the
    positions of all of them, players first, each group in C{reals}' order:
    C{(ids, xs, ys)}, the positions as native float32s
    (L{mmo.zone.mapfeed.MapFeed.frame}).
    """
    players: list = []
    player_xs: list = []
    player_ys: list = []
    xs: list = []
    ys: list = []
    for entity_id, entity in reals.items():
        if entity.kind == player:
            players.append(entity_id)
            player_xs.append(entity.x)
            player_ys.append(entity.y)
        else:
            xs.append(entity.x)
            ys.append(entity.y)
    return players, array("f", player_xs + xs).tobytes(), array("f", player_ys + ys).tobytes()


def outer(reals: dict, inner: tuple[float, float, float, float]) -> list[tuple]:
    """
    C{(id, x, y, entity)} of the C{reals} outside the box C{inner}, C{(x0,
    y0, x1, y1)}, in C{reals}' order: the C{outer} of L{fill}, on its own
    (a tick that does not fill the grid).
    """
    return [
        (entity_id, entity.x, entity.y, entity)
        for entity_id, entity in reals.items()
        if _outside(entity.x, entity.y, inner)
    ]


def _outside(x: float, y: float, inner: tuple[float, float, float, float]) -> bool:
    """Whether C{(x, y)} is outside the box C{inner} (or not a number)."""
    x0, y0, x1, y1 = inner
    return not (x0 <= x <= x1 and y0 <= y <= y1)


def fill(
    grid: tuple,
    reals: dict,
    ghosts: dict[str, dict],
    published: dict[str, list],
    frozen: set[str],
    inner: tuple[float, float, float, float],
    player: str,
    record: Callable[[list, str, dict], int],
) -> tuple[dict[str, int], list, list]:
    """
    One pass over the C{reals} (entities) and the C{ghosts} (views; those
    that are reals too are skipped): bring the C{grid} (as L{visible}'s)
    and what was C{published} of each up to date, and note what changed.

    The grid is kept from tick to tick: its entries are the C{published}
    records themselves, C{[x, y, name, attrs, id, key]} by id (L{entry}),
    and only an entity that moved to another cell changes cells (appended
    to its new one); those that are neither real nor ghost any more leave
    both.  A position is noted here, a name or attributes through
    C{record(entry, name, attrs)}, which returns its mask.

    @param inner: C{(x0, y0, x1, y1)}: reals inside it are listed in no
        C{outer}.
    @param player: The kind of the entities that observe (with a session
        and a gateway, and not C{frozen}).
    @return: C{(changed, observers, outer)}: the mask of what changed by
        id (L{POSITION}, L{NAME}, L{ATTRS}; nothing for what is new), and
        C{(id, x, y, entity)} of the observers and of the reals outside
        C{inner}, in C{reals}' order.
    """
    cells, _, stride, _, size, _, _ = grid
    changed: dict[str, int] = {}
    observers: list = []
    outer: list = []
    count = 0
    for entity_id, entity in reals.items():
        x = entity.x
        y = entity.y
        count += 1
        _note(
            cells,
            published,
            changed,
            entity_id,
            x,
            y,
            entity.name,
            entity.attrs,
            size,
            stride,
            record,
        )
        if entity.kind == player and entity.session and entity.gateway:
            if entity_id not in frozen:
                observers.append((entity_id, x, y, entity))
        if _outside(x, y, inner):
            outer.append((entity_id, x, y, entity))

    for ghost_id, view in ghosts.items():
        if ghost_id in reals:
            continue
        x = view["x"]
        y = view["y"]
        count += 1
        name = view.get("name", "")
        attrs = view.get("attrs", {})
        _note(cells, published, changed, ghost_id, x, y, name, attrs, size, stride, record)

    if len(published) != count:
        # Something left (removed, or no longer ghosted): forget it.
        for gone in [i for i in published if i not in reals and i not in ghosts]:
            _move(cells, published.pop(gone), None)
    return changed, observers, outer


def _note(
    cells: dict,
    published: dict[str, list],
    changed: dict[str, int],
    entity_id: str,
    x: float,
    y: float,
    name,
    attrs,
    size: float,
    stride: int,
    record: Callable[[list, str, dict], int],
) -> None:
    """
    Bring an entity's entry in the grid, what was C{published} of it, up
    to date, and note in C{changed} what changed (a new one is put in the
    grid, and is not changed).
    """
    known = published.get(entity_id)
    if known is None:
        published[entity_id] = _entry(cells, entity_id, x, y, name, dict(attrs), size, stride)
        return
    mask = 0
    if known[0] != x or known[1] != y:
        known[0] = x
        known[1] = y
        mask = POSITION
        key = int(x // size) * stride + int(y // size)
        if key != known[5]:
            _move(cells, known, key)
    if known[2] != name or known[3] != attrs:
        mask |= record(known, name, attrs)
    if mask:
        changed[entity_id] = mask


def entry(grid: tuple, entity_id: str, x: float, y: float, name, attrs) -> list:
    """
    A new entry of the C{grid} (as L{visible}'s), put in its cell: C{[x, y,
    name, attrs, id, key]}.  (The compiled kernel's have one more element,
    their slot.)
    """
    cells, _, stride, _, size, _, _ = grid
    return _entry(cells, entity_id, x, y, name, attrs, size, stride)


def _entry(
    cells: dict, entity_id: str, x: float, y: float, name, attrs, size: float, stride: int
) -> list:
    key = int(x // size) * stride + int(y // size)
    new = [x, y, name, attrs, entity_id, key]
    cell = cells.get(key)
    if cell is None:
        cells[key] = [new]
    else:
        cell.append(new)
    return new


def _move(cells: dict, moving: list, key: int | None) -> None:
    """Take an entry out of its cell, into the cell C{key} (at its end) unless C{None}."""
    cell = cells[moving[5]]
    # By identity: entries of different ids never compare equal, but the
    # comparison would look at their contents.
    del cell[next(i for i, e in enumerate(cell) if e is moving)]
    if not cell:
        del cells[moving[5]]
    if key is not None:
        moving[5] = key
        cell = cells.get(key)
        if cell is None:
            cells[key] = [moving]
        else:
            cell.append(moving)


class Snapshot:
    """
    The grid's last element: what the compiled kernel's diffs read of it
    in a tick (its entries' positions in C arrays, cell after cell, and
    each one's update entry once read), built again after L{clear}.  The
    pure kernel reads the cells themselves: nothing to keep.  L{fill}, and
    whoever else changes the cells, clears it.
    """

    def clear(self) -> None:
        """The cells changed."""

    def empty(self) -> None:
        """The cells were emptied."""


def grid_order(grid: tuple, observers: list[tuple]) -> list[int]:
    """
    The indices of C{observers} (C{(id, x, y, ...)} each) in the order of
    the cells of the C{grid} (as L{visible}'s) they are in, by key; those
    of one cell in their own order.
    """
    _, _, stride, _, size, _, _ = grid
    keys = [int(o[1] // size) * stride + int(o[2] // size) for o in observers]
    return sorted(range(len(keys)), key=keys.__getitem__)


def visible(grid: tuple, x: float, y: float) -> list[str]:
    """
    The ids of the entries of the C{grid} within its radius of C{(x, y)},
    in the grid's order: the cells its classes say are inside whole, then
    those of the edge, checked one by one.

    @param grid: C{(cells, classes, stride, subcells, size, r2, snapshot)}: the
        cells, lists of entries (L{entry}: C{[x, y, name, attrs, id, key]})
        by key (C{cx * stride + cy}), C{size} wide; the classes of
        L{mmo.zone.aoi.cell_classes} for C{subcells} parts a side; the
        radius squared; the kernel's L{Snapshot}.
    """
    cells, classes, stride, subcells, size, r2, _ = grid
    cx = x // size
    cy = y // size
    # Which part of its cell the point is in; a point a rounding error
    # outside the cell is as good as on its side (the classes' margin).
    part_x = int((x / size - cx) * subcells)
    part_y = int((y / size - cy) * subcells)
    if part_x >= subcells:
        part_x = subcells - 1
    elif part_x < 0:
        part_x = 0
    if part_y >= subcells:
        part_y = subcells - 1
    elif part_y < 0:
        part_y = 0
    inside, edge = classes[part_x * subcells + part_y]
    key = int(cx) * stride + int(cy)
    get = cells.get
    found: list[str] = []
    extend = found.extend
    for offset in inside:
        cell = get(key + offset)
        if cell:
            extend(map(_id, cell))
    append = found.append
    for offset in edge:
        cell = get(key + offset)
        if cell:
            for e in cell:
                dx = e[0] - x
                dy = e[1] - y
                if dx * dx + dy * dy <= r2:
                    append(e[4])
    return found


def diff(
    grid: tuple,
    x: float,
    y: float,
    known: dict[str, None] | None,
    refresh: bool,
    changed: dict,
    updates: Mapping[str, dict],
    view: Callable[[str], dict],
) -> tuple[dict[str, None], list[dict], list[dict], list[str]]:
    """
    What changed in a view that was C{known} (C{None} or empty: its client
    has nothing) and now is what is L{visible} in C{grid} from C{(x, y)}:
    C{(now, enter, update, leave)}, C{now} the new view (those ids as a
    dict's keys: in the grid's order, or C{known} itself when nothing
    entered or left; the compiled kernel's are its C{View}s, of the same
    ids in the same order, and its C{known} a C{View} or any mapping of
    ids).  With C{refresh}, what stays in view is updated in
    full (C{view}) rather than by its C{updates} entry if C{changed}.
    C{updates} holds the entries of changed ids only: an entry found there
    is not looked for in C{changed}.
    """
    seen = visible(grid, x, y)
    if not known:
        return dict.fromkeys(seen), list(map(view, seen)), [], []
    # What it keeps seeing, in the grid's order: filters in C, as the
    # tick's other loops over what an observer sees.
    kept = list(filter(known.__contains__, seen))
    if len(kept) == len(seen):
        enter = []
    else:
        enter = [view(eid) for eid in seen if eid not in known]
    if refresh:
        update = list(map(view, kept))
    else:
        update = list(map(updates.__getitem__, filter(changed.__contains__, kept)))
    if len(kept) == len(known):
        # Everything it had is still in view: if nothing came either, its
        # view is the one it had (the same ids), kept as it is.
        return known if not enter else dict.fromkeys(seen), enter, update, []
    now = dict.fromkeys(seen)
    return now, enter, update, [eid for eid in known if eid not in now]


def diffs(
    grid: tuple,
    observers: list[tuple],
    order: list[int],
    views: dict,
    fresh: set,
    changed: dict,
    updates: Mapping[str, dict],
    view: Callable[[str], dict],
) -> list[tuple[list[dict], list[dict], list[str]]]:
    """
    The L{diff}s of C{observers} (C{(id, x, y, ...)} each), one after the
    other in C{order} (their indices): each against its view in C{views}
    (by id; none: its client has nothing), which its new view replaces,
    refreshed if its id is in C{fresh} (and then no more).  Their C{(enter,
    update, leave)} by index.  An entity's full view is asked of C{view}
    once, whoever it enters for (L{Asked}).
    """
    view = Asked(view).__getitem__
    results: list = [None] * len(observers)
    for index in order:
        observer = observers[index]
        entity_id = observer[0]
        known = views.get(entity_id)
        refresh = entity_id in fresh
        if refresh or not known:
            fresh.discard(entity_id)
        now, enter, update, leave = diff(
            grid, observer[1], observer[2], known, refresh, changed, updates, view
        )
        if now is not known:
            views[entity_id] = now
        results[index] = (enter, update, leave)
    return results


class Asked(dict):
    """
    The full views of one tick's diffs, by id, each asked of the caller's
    C{view} on first use and given to every observer it enters for (the
    compiled kernel keeps them by position in its snapshot): most of what
    enters one observer's view enters its neighbours' too.
    """

    def __init__(self, view: Callable[[str], dict]):
        super().__init__()
        self._view = view

    def __missing__(self, entity_id: str) -> dict:
        made = self[entity_id] = self._view(entity_id)
        return made


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
        if mask & POSITION:
            update["x"] = record[0]
            update["y"] = record[1]
        if mask & NAME:
            update["name"] = record[2]
        if mask & ATTRS:
            update["attrs"] = record[3]
        self[entity_id] = update
        return update


def record(entry: list, name: str, attrs: dict) -> int:
    """Note a changed name or attributes in a published C{entry}; what changed."""
    mask = 0
    if entry[2] != name:
        entry[2] = name
        mask |= NAME
    if entry[3] != attrs:
        # A copy: later changes in place must not alter what was published.
        entry[3] = dict(attrs)
        mask |= ATTRS
    return mask


class Fragments(dict):
    """
    The fragments of a tick's stems (L{stems}): what the generic encoder
    packs once of them, by C{id} (L{mmo.wire.codec.push_stem}).  The
    compiled kernel's keeps its own packing of the maps in the pushes' list
    fields too.  Only for a tick's pushes, alive and unchanged while it is
    used.
    """


def stems(
    by_session: dict,
    push_stem: Callable[[str, dict, dict[int, bytes]], bytes],
    fragments: Fragments,
    dropped: Callable[[str, str], None],
) -> dict[str, list[bytes]]:
    """
    Each session's pushes, C{(kind, fields)} each in C{by_session} (those
    of session C{None} skipped), as the stems of their frames, by session
    (those left with none, left out): C{push_stem(kind, fields,
    fragments)}, the tick's L{Fragments} shared by every call
    (L{mmo.wire.codec.push_stem}).  A push it cannot encode is left out,
    and C{dropped(session, kind)} called while its exception is handled.
    (The compiled kernel packs most pushes itself, to the same bytes.)
    """
    batch = {}
    for session, events in by_session.items():
        if session is None:
            continue
        made = []
        for kind, fields in events:
            try:
                made.append(push_stem(kind, fields, fragments))
            except Exception:
                dropped(session, kind)
        if made:
            batch[session] = made
    return batch


def pushes(
    observers: list[tuple],
    shown: list[tuple[list, list, list]],
    tick: int,
    corrected: Collection[str],
    restarting: Collection[str],
    started_over: Callable[[str], bool],
    correction: Callable[[object], dict],
    batches: dict[str, dict[str, list[tuple[str, dict]]]],
) -> None:
    """
    Each of the C{observers}' (C{(id, x, y, entity)}) pushes of a tick, in
    C{batches} by its entity's gateway and session: a C{world.correct} of
    C{correction(entity)} first if its id is in C{corrected}, then a
    C{world.update} of C{tick} and what C{shown} says entered, was updated
    and left (its C{(enter, update, leave)}, one per observer, in the same
    order), with C{reset} if C{started_over(id)} (asked while
    C{restarting} is not empty), unless all are empty and there is no
    reset.  (L{mmo.zone.publication.Publication}.)
    """
    if len(observers) != len(shown):
        raise ValueError("an observer's view is missing, or one too many")
    for (entity_id, _x, _y, entity), (enter, update, leave) in zip(observers, shown, strict=True):
        events = []
        if corrected and entity_id in corrected:
            events.append(("world.correct", correction(entity)))
        reset = started_over(entity_id) if restarting else False
        if enter or update or leave or reset:
            fields = {"tick": tick, "enter": enter, "update": update, "leave": leave}
            if reset:
                # Its client keeps a view this zone does not know: it
                # drops it, and this update enters everything in sight.
                fields["reset"] = True
            events.append(("world.update", fields))
        if events:
            by_session = batches.get(entity.gateway)
            if by_session is None:
                by_session = batches[entity.gateway] = {}
            by_session[entity.session] = events
