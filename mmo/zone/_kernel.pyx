# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""
The zone's per-tick loops, compiled: L{wander}, L{positions}, and the area of interest's
L{fill} (and L{outer}), L{grid_order}, L{visible}, L{diff} and L{UpdateEntries}, each
observer's pushes (L{pushes}) and their stems (L{stems}, with the tick's
L{Fragments}), the same, with the same arguments, results and order, as
those of L{mmo.zone.kernel}, the pure-Python fallback when
this module is not built (or C{MMO_PURE_PYTHON=1}).  The grid, the cell
classes, the generic encoder and every constant are arguments: this module
imports nothing of mmo.  Its update entries are L{UpdateEntry} objects
where the pure kernel's are dicts: equal to them, and encoded the same.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.dict cimport PyDict_CheckExact, PyDict_GetItem
from cpython.list cimport PyList_GET_ITEM, PyList_New, PyList_SET_ITEM
from cpython.long cimport (
    PyLong_AsLongLong,
    PyLong_AsLongLongAndOverflow,
    PyLong_AsSsize_t,
    PyLong_FromLongLong,
)
from cpython.object cimport Py_TYPE
from cpython.ref cimport Py_INCREF, Py_XDECREF, PyObject
from cpython.unicode cimport PyUnicode_CheckExact
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.math cimport copysign, fabs, floor, fmod
from libc.string cimport memcmp, memcpy

from collections.abc import Mapping
from types import MemberDescriptorType

# mmo.zone.kernel's masks of what changed.
cdef enum:
    POSITION = 1
    NAME = 2
    ATTRS = 4

# What an update entry not read yet, and one of an entity that did not
# change, are in a Snapshot's updates (compared by address).
cdef object _NONE = None
cdef object _FALSE = False

# Cell coordinates beyond this (in cells) make keys a C long long may not
# hold: those keys are Python's integers.
cdef double _FAR = <double>(1 << 22)
# How near an integer (in cells) a quotient must be for _floordiv to work
# it out as Python does, step by step: far above its rounding error.
cdef double _NEAR = 1e-6


cdef inline double _floordiv(double vx, double wx):
    # Python's float floor division, so that every cell key is the one the
    # grid was filled with.  Away from a cell border, floor(vx / wx) is it:
    # the quotient's rounding error (under 2**-30 of a cell for quotients
    # below _FAR) cannot cross an integer more than _NEAR away.  Near one,
    # floor(vx / wx) differs at some borders: CPython's steps
    # (Objects/floatobject.c) then, fmod and all.
    cdef double quotient = vx / wx
    cdef double whole = floor(quotient)
    if -_FAR <= quotient <= _FAR and _NEAR < quotient - whole < 1.0 - _NEAR:
        return whole
    return _python_floordiv(vx, wx)


cdef double _python_floordiv(double vx, double wx):
    # Python's float floor division, step by step as CPython does it.
    cdef double mod = fmod(vx, wx)
    cdef double div = (vx - mod) / wx
    cdef double result
    if mod:
        if (wx < 0) != (mod < 0):
            div -= 1.0
    if div:
        result = floor(div)
        if div - result > 0.5:
            result += 1.0
    else:
        result = copysign(0.0, vx / wx)
    return result


cdef inline bint _far(double cx, double cy):
    # Not a number, or infinite, is far too: Python's int() then raises
    # what the pure-Python kernel does.
    return not (-_FAR <= cx <= _FAR and -_FAR <= cy <= _FAR)


cdef object _key(double x, double y, double size, long long stride):
    # The key of the cell of (x, y), equal to Python's.
    cdef double cx = _floordiv(x, size)
    cdef double cy = _floordiv(y, size)
    if _far(cx, cy):
        return int(cx) * stride + int(cy)
    return PyLong_FromLongLong(<long long>cx * stride + <long long>cy)


cdef inline size_t _bucket(long long key, int shift):
    # Fibonacci hashing: the top bits of the product, which every bit of
    # the key changes (its low bits would not depend on a cell's x, in the
    # key's high bits: a column's cells would all collide).
    return <size_t>((<unsigned long long>key * 0x9E3779B97F4A7C15ULL) >> shift)


cdef class Snapshot:
    """
    The grid as the diffs of a tick read it, built from its cells on first
    use after L{clear} (which the kernel's L{fill} calls: the cells do not
    change between a tick's fill and its diffs): every entry's position in
    C arrays, cell after cell, and its id, and the cells by key in a C hash
    table.  An observer's look at what it sees then reads contiguous
    memory instead of every entry's list and floats, and no Python integer
    is made for a cell's key.  Keys beyond a C long long are found through
    a dict, for the observers that far away.

    It also keeps, for the tick's update entries (L{UpdateEntries}) and
    what changed, each entry's update once a diff has read it: the next
    observer that sees the entity reads it there.

    And it numbers the grid's entries, from one tick to the next: each
    takes a slot (its last element) when it is made and gives it back when
    it leaves the grid, so that an observer's view (L{View}) is an array
    of slots, diffed with a mark per slot instead of a dict of ids.
    """

    cdef size_t mask
    cdef int shift
    cdef long long *keys
    # In the hash table: the cell's number + 1, or 0 where there is none.
    cdef Py_ssize_t *numbers
    # By cell number: where its entries start (and the next one's).
    cdef Py_ssize_t *starts
    cdef double *xs
    cdef double *ys
    cdef readonly Py_ssize_t size
    cdef bint ready
    cdef dict cells
    # By position: the entries (held while the arrays describe them), their ids.
    cdef list records
    cdef list ids
    # What the entries were published as, by id, when fill made them the
    # records of a zone's publication (None otherwise): an update entry
    # is then read from its record by position, not found by id.
    cdef dict published
    # Cell key (Python's integer) -> cell number, made for a far observer.
    cdef dict far
    # By position: the update entry from owner (or False: none) once read.
    cdef list updates
    cdef object owner
    cdef object owner_changed
    # By position: the full view from viewer (None: not asked yet) once asked.
    cdef list views
    cdef object viewer
    # By position: the entry's slot.
    cdef int *slot_at
    # By slot: its entry's id (None: free), a diff's mark.
    cdef list slot_ids
    cdef list free_slots
    cdef long long *marks
    cdef Py_ssize_t capacity
    cdef long long stamp
    # The cell classes' key offsets, in C (classes): for class c, those
    # taken whole from bounds[2c] and those of the edge from bounds[2c + 1]
    # to bounds[2c + 2].
    cdef object classes
    cdef long long *offsets
    cdef Py_ssize_t *bounds

    def __cinit__(self):
        self.slot_ids = []
        self.free_slots = []

    def __dealloc__(self):
        self._free()
        free(self.marks)
        free(self.offsets)
        free(self.bounds)

    cdef int read_classes(self, list classes) except -1:
        # The offsets of classes in C arrays.
        cdef Py_ssize_t total = 0, n = 0, c
        cdef tuple both
        for both in classes:
            total += len(<tuple>both[0]) + len(<tuple>both[1])
        free(self.offsets)
        free(self.bounds)
        self.classes = None
        self.offsets = <long long *>malloc((total + 1) * sizeof(long long))
        self.bounds = <Py_ssize_t *>malloc((2 * len(classes) + 1) * sizeof(Py_ssize_t))
        if self.offsets is NULL or self.bounds is NULL:
            raise MemoryError()
        for c in range(len(classes)):
            both = <tuple>classes[c]
            self.bounds[2 * c] = n
            for offset in <tuple>both[0]:
                self.offsets[n] = offset
                n += 1
            self.bounds[2 * c + 1] = n
            for offset in <tuple>both[1]:
                self.offsets[n] = offset
                n += 1
        self.bounds[2 * len(classes)] = n
        self.classes = classes
        return 0

    cdef void _free(self):
        free(self.keys)
        free(self.numbers)
        free(self.starts)
        free(self.xs)
        free(self.ys)
        free(self.slot_at)
        self.keys = NULL
        self.numbers = NULL
        self.starts = NULL
        self.xs = NULL
        self.ys = NULL
        self.slot_at = NULL

    def clear(self):
        """The cells changed: build the snapshot again on next use."""
        self.ready = False
        self.cells = None
        self.records = None
        self.ids = None
        self.published = None
        self.far = None
        self.updates = None
        self.owner = None
        self.owner_changed = None
        self.views = None
        self.viewer = None

    def empty(self):
        """The cells were emptied: every slot is free."""
        self.clear()
        self.slot_ids = []
        self.free_slots = []

    cdef int take(self, object entity_id) except -1:
        # A free slot for a new entry of entity_id.
        cdef Py_ssize_t slot, grown, i
        cdef long long *marks
        if self.free_slots:
            slot = self.free_slots.pop()
            self.slot_ids[slot] = entity_id
            return slot
        slot = len(self.slot_ids)
        if slot >= 0x7FFFFFFF:
            raise OverflowError("too many entries in the grid")
        if slot >= self.capacity:
            grown = self.capacity * 2 if self.capacity else 1024
            marks = <long long *>realloc(self.marks, grown * sizeof(long long))
            if marks is NULL:
                raise MemoryError()
            for i in range(self.capacity, grown):
                marks[i] = 0
            self.marks = marks
            self.capacity = grown
        self.slot_ids.append(entity_id)
        return slot

    cdef void give_back(self, list entry):
        # The entry left the grid: its slot is free.
        cdef Py_ssize_t slot = entry[6]
        self.slot_ids[slot] = None
        self.free_slots.append(slot)

    cdef int build(self, dict cells) except -1:
        cdef size_t table = 16
        cdef int shift = 60
        cdef Py_ssize_t total = 0, number = 0, p = 0
        cdef long long key
        cdef int overflow
        cdef size_t i
        cdef object k
        cdef list cell, entry
        for cell in cells.values():
            total += len(cell)
        while table < 2 * <size_t>len(cells):
            table *= 2
            shift -= 1
        self._free()
        self.keys = <long long *>calloc(table, sizeof(long long))
        self.numbers = <Py_ssize_t *>calloc(table, sizeof(Py_ssize_t))
        self.starts = <Py_ssize_t *>malloc((len(cells) + 1) * sizeof(Py_ssize_t))
        self.xs = <double *>malloc((total + 1) * sizeof(double))
        self.ys = <double *>malloc((total + 1) * sizeof(double))
        self.slot_at = <int *>malloc((total + 1) * sizeof(int))
        if (self.keys is NULL or self.numbers is NULL or self.starts is NULL
                or self.xs is NULL or self.ys is NULL or self.slot_at is NULL):
            self._free()
            raise MemoryError()
        self.mask = table - 1
        self.shift = shift
        self.cells = cells
        self.records = []
        self.ids = []
        for k, cell in cells.items():
            self.starts[number] = p
            key = PyLong_AsLongLongAndOverflow(k, &overflow)
            if not overflow:
                i = _bucket(key, self.shift)
                while self.numbers[i]:
                    i = (i + 1) & self.mask
                self.keys[i] = key
                self.numbers[i] = number + 1
            for entry in cell:
                self.xs[p] = entry[0]
                self.ys[p] = entry[1]
                self.slot_at[p] = entry[6]
                self.records.append(entry)
                self.ids.append(entry[4])
                p += 1
            number += 1
        self.starts[number] = p
        self.size = p
        self.far = None
        self.updates = None
        self.owner = None
        self.owner_changed = None
        self.views = None
        self.viewer = None
        self.ready = True
        return 0

    cdef Py_ssize_t number(self, long long key):
        cdef size_t i = _bucket(key, self.shift)
        while self.numbers[i]:
            if self.keys[i] == key:
                return self.numbers[i] - 1
            i = (i + 1) & self.mask
        return -1

    cdef Py_ssize_t far_number(self, object key) except -2:
        cdef PyObject *found
        cdef Py_ssize_t number = 0
        if self.far is None:
            self.far = {}
            for k in self.cells:
                self.far[k] = number
                number += 1
        found = PyDict_GetItem(self.far, key)
        if found is NULL:
            return -1
        return PyLong_AsSsize_t(<object>found)

    cdef list updates_of(self, object owner, object changed):
        # The update entries read so far from owner, for what changed.
        if self.updates is None or self.owner is not owner or self.owner_changed is not changed:
            self.updates = [None] * self.size
            self.owner = owner
            self.owner_changed = changed
        return self.updates

    cdef list views_of(self, object viewer):
        # The full views asked of viewer so far (held: its address is not
        # another's while they are kept).
        if self.views is None or self.viewer is not viewer:
            self.views = [None] * self.size
            self.viewer = viewer
        return self.views


cdef inline object _full_view(list views, list ids, Py_ssize_t p, object view):
    # The full view of the entry at position p: asked of view once per
    # snapshot (a tick), whoever sees it (view is the caller's cache, as
    # the pure kernel's diff calls it: what it says once, it says again).
    cdef PyObject *held = PyList_GET_ITEM(views, p)
    cdef object got
    if held != <PyObject *>_NONE:
        return <object>held
    got = view(<object>PyList_GET_ITEM(ids, p))
    views[p] = got
    return got


cdef inline void _set_new(list items, Py_ssize_t i, object value):
    # The i-th item of a list made by PyList_New, not set yet.
    Py_INCREF(value)
    PyList_SET_ITEM(items, i, value)


cdef list _picked(list read, Py_ssize_t *picked, Py_ssize_t count):
    # The items of read at the count positions picked, in a list of that size.
    cdef list items = PyList_New(count)
    cdef Py_ssize_t i
    for i in range(count):
        _set_new(items, i, <object>PyList_GET_ITEM(read, picked[i]))
    return items


cdef inline Snapshot _snapshot(tuple grid):
    cdef Snapshot snapshot = <Snapshot>grid[6]
    if not snapshot.ready:
        snapshot.build(<dict>grid[0])
    return snapshot


cdef inline Py_ssize_t _gather(
    Snapshot snapshot, Py_ssize_t cell, bint edge, double x, double y, double r2,
    Py_ssize_t *found, Py_ssize_t count
) noexcept:
    # The entries of grid cell number C{cell} (none if negative) appended to
    # C{found} from C{count}: all of them, or on an C{edge} cell those within
    # the radius; the new count.
    cdef Py_ssize_t p
    cdef double dx, dy
    if cell < 0:
        return count
    for p in range(snapshot.starts[cell], snapshot.starts[cell + 1]):
        if edge:
            dx = snapshot.xs[p] - x
            dy = snapshot.ys[p] - y
            if dx * dx + dy * dy > r2:
                continue
        found[count] = p
        count += 1
    return count


cdef Py_ssize_t _seen(tuple grid, Snapshot snapshot, double x, double y,
                      Py_ssize_t *found) except -1:
    # The positions (in the snapshot) of the entries within the radius of
    # (x, y), in the grid's order, written to found; how many.
    cdef list classes = <list>grid[1]
    cdef long long stride = grid[2]
    cdef long subcells = grid[3]
    cdef double size = grid[4]
    cdef double r2 = grid[5]
    cdef double cx = _floordiv(x, size)
    cdef double cy = _floordiv(y, size)
    cdef bint far = _far(cx, cy)
    cdef long long key = 0
    cdef object base = None
    if far:
        base = int(cx) * stride + int(cy)
    else:
        key = <long long>cx * stride + <long long>cy
    # Which part of its cell the point is in; a point a rounding error
    # outside the cell is as good as on its side (the classes' margin).
    cdef long part_x = <long>((x / size - cx) * subcells)
    cdef long part_y = <long>((y / size - cy) * subcells)
    if part_x >= subcells:
        part_x = subcells - 1
    elif part_x < 0:
        part_x = 0
    if part_y >= subcells:
        part_y = subcells - 1
    elif part_y < 0:
        part_y = 0
    cdef Py_ssize_t c = part_x * subcells + part_y
    cdef tuple both = <tuple>classes[c]
    cdef tuple inside = <tuple>both[0]
    cdef tuple edge = <tuple>both[1]
    cdef Py_ssize_t count = 0, i
    cdef long long *offsets
    if far:
        for i in range(len(inside)):
            count = _gather(snapshot, snapshot.far_number(base + inside[i]), False, x, y, r2, found, count)
        for i in range(len(edge)):
            count = _gather(snapshot, snapshot.far_number(base + edge[i]), True, x, y, r2, found, count)
        return count
    if snapshot.classes is not classes:
        snapshot.read_classes(classes)
    offsets = snapshot.offsets
    for i in range(snapshot.bounds[2 * c], snapshot.bounds[2 * c + 1]):
        count = _gather(snapshot, snapshot.number(key + offsets[i]), False, x, y, r2, found, count)
    for i in range(snapshot.bounds[2 * c + 1], snapshot.bounds[2 * c + 2]):
        count = _gather(snapshot, snapshot.number(key + offsets[i]), True, x, y, r2, found, count)
    return count


ctypedef struct _Placed:
    # An observer's cell key and its index, sorted by both (grid_order).
    long long key
    Py_ssize_t index


cdef inline bint _before(const _Placed *one, const _Placed *other) noexcept nogil:
    # By key, then by index: a total order (indices are unique).
    return one.key < other.key or (one.key == other.key and one.index < other.index)


cdef void _sort_placed(_Placed *items, _Placed *spare, Py_ssize_t n) noexcept nogil:
    # items sorted (_before), spare as long: runs of 8 by insertion, then
    # merged bottom-up, comparisons inline (qsort calls a function for each).
    cdef Py_ssize_t i, j, lo, mid, hi, a, b, k, width = 8
    cdef _Placed item
    cdef _Placed *source = items
    cdef _Placed *target = spare
    cdef _Placed *swap
    for lo in range(0, n, 8):
        hi = lo + 8 if lo + 8 < n else n
        for i in range(lo + 1, hi):
            item = items[i]
            j = i
            while j > lo and _before(&item, &items[j - 1]):
                items[j] = items[j - 1]
                j -= 1
            items[j] = item
    while width < n:
        lo = 0
        while lo < n:
            mid = lo + width if lo + width < n else n
            hi = lo + 2 * width if lo + 2 * width < n else n
            a, b, k = lo, mid, lo
            while a < mid and b < hi:
                if _before(&source[b], &source[a]):
                    target[k] = source[b]
                    b += 1
                else:
                    target[k] = source[a]
                    a += 1
                k += 1
            while a < mid:
                target[k] = source[a]
                a += 1
                k += 1
            while b < hi:
                target[k] = source[b]
                b += 1
                k += 1
            lo += 2 * width
        swap = source
        source = target
        target = swap
        width *= 2
    if source != items:
        memcpy(items, source, n * sizeof(_Placed))


def grid_order(tuple grid, list observers):
    """The indices of observers in the grid's order: as L{mmo.zone.kernel.grid_order}."""
    cdef long long stride = grid[2]
    cdef double size = grid[4]
    cdef Py_ssize_t n = len(observers), i
    cdef double cx, cy
    cdef tuple observer
    # The observers' places, and (from n + 1 on) room to merge them.
    cdef _Placed *placed = <_Placed *>malloc(2 * (n + 1) * sizeof(_Placed))
    if placed is NULL:
        raise MemoryError()
    try:
        for i in range(n):
            observer = <tuple>observers[i]
            cx = _floordiv(observer[1], size)
            cy = _floordiv(observer[2], size)
            if _far(cx, cy):
                # Keys beyond a C long long: Python's integers, and its sort.
                keys = [_key(o[1], o[2], size, stride) for o in observers]
                return sorted(range(n), key=keys.__getitem__)
            placed[i].key = <long long>cx * stride + <long long>cy
            placed[i].index = i
        _sort_placed(placed, placed + n + 1, n)
        return [placed[i].index for i in range(n)]
    finally:
        free(placed)


def visible(tuple grid, double x, double y):
    """The ids of the C{grid}'s entries within its radius of C{(x, y)}: as L{mmo.zone.kernel.visible}."""
    cdef Snapshot snapshot = _snapshot(grid)
    cdef Py_ssize_t *found = <Py_ssize_t *>malloc((snapshot.size + 1) * sizeof(Py_ssize_t))
    cdef Py_ssize_t i, count
    cdef list ids = snapshot.ids
    if found is NULL:
        raise MemoryError()
    try:
        count = _seen(grid, snapshot, x, y, found)
        return [<object>PyList_GET_ITEM(ids, found[i]) for i in range(count)]
    finally:
        free(found)


cdef class View:
    """
    What an observer's client has, as the compiled L{diff} keeps it: the
    slots of the grid's entries it saw (L{Snapshot}), and their ids, in the
    grid's order.  Iterated, it gives the ids, as the pure kernel's dict of
    ids does.
    """

    cdef int *slots
    cdef list ids

    def __dealloc__(self):
        free(self.slots)

    def __len__(self):
        return len(self.ids)

    def __iter__(self):
        return iter(self.ids)

    def __contains__(self, entity_id):
        return entity_id in self.ids

    def __repr__(self):
        return f"View({self.ids!r})"


cdef View _view_of(Snapshot snapshot, Py_ssize_t *found, Py_ssize_t count):
    # The view of the entries at the count positions found.
    cdef View now = View.__new__(View)
    cdef list all_ids = snapshot.ids
    # Made at its size: filled in place, not grown one append at a time.
    cdef list ids = PyList_New(count)
    cdef Py_ssize_t i, p
    now.ids = ids
    now.slots = <int *>malloc((count + 1) * sizeof(int))
    if now.slots is NULL:
        raise MemoryError()
    for i in range(count):
        p = found[i]
        now.slots[i] = snapshot.slot_at[p]
        _set_new(ids, i, <object>PyList_GET_ITEM(all_ids, p))
    return now


cdef inline bint _holds(Snapshot snapshot, View known, Py_ssize_t i):
    # Whether the slot of the i-th id of a view is still that id's entry's.
    cdef int slot = known.slots[i]
    return (slot < len(snapshot.slot_ids)
            and PyList_GET_ITEM(snapshot.slot_ids, slot) == PyList_GET_ITEM(known.ids, i))


def diff(tuple grid, double x, double y, known, bint refresh, changed, updates, view):
    """
    What changed in a view: as L{mmo.zone.kernel.diff}, but for the views,
    C{known} and C{now}: a L{View} (or C{known} any mapping of ids, as a
    view handed over is).
    """
    cdef Snapshot snapshot = _snapshot(grid)
    cdef Py_ssize_t room = snapshot.size + 1
    # What it sees, and (from room on) the updates it picks: see _diff.
    cdef Py_ssize_t *found = <Py_ssize_t *>malloc(2 * room * sizeof(Py_ssize_t))
    if found is NULL:
        raise MemoryError()
    try:
        return _diff(grid, snapshot, found, found + room, x, y, known, refresh, changed, updates,
                     view)
    finally:
        free(found)


cdef tuple _diff(tuple grid, Snapshot snapshot, Py_ssize_t *found, Py_ssize_t *picked,
                 double x, double y, known,
                 bint refresh, changed, updates, view):
    cdef Py_ssize_t count = _seen(grid, snapshot, x, y, found)
    # Held here: a view() called back may not drop them.
    cdef list all_ids = snapshot.ids
    cdef list slot_ids = snapshot.slot_ids
    cdef list read = None
    cdef list records = snapshot.records
    cdef bint own = False
    cdef bint direct = False
    cdef bint shared = False
    cdef list enter = []
    cdef list update = []
    cdef list leave = []
    # The positions of the update entries read from the snapshot (picked),
    # and how many: the update list is made at its size once they are known.
    cdef Py_ssize_t i, p, k, n = 0, u = 0
    cdef int slot
    cdef long long mark
    cdef object eid, got
    cdef View before = None
    cdef View now
    # The ids it had whose slots are not theirs any more (or all of those
    # of a mapping): found by id.
    cdef dict lost = None
    cdef PyObject *entry
    cdef PyObject *held
    cdef UpdateEntries compiled = None
    cdef bint built = False
    cdef bint kept
    cdef list views = snapshot.views_of(view)
    if not known:
        now = _view_of(snapshot, found, count)
        for i in range(count):
            enter.append(_full_view(views, all_ids, found[i], view))
        return now, enter, update, leave
    # Marks of this diff: what it had (mark), and saw again (mark + 1).
    snapshot.stamp += 2
    mark = snapshot.stamp
    if type(known) is View:
        before = <View>known
        k = len(before.ids)
        for i in range(k):
            if _holds(snapshot, before, i):
                snapshot.marks[before.slots[i]] = mark
            else:
                if lost is None:
                    lost = {}
                lost[<object>PyList_GET_ITEM(before.ids, i)] = None
    else:
        lost = dict.fromkeys(known)
        k = len(lost)
    if type(updates) is UpdateEntries:
        compiled = <UpdateEntries>updates
        read = snapshot.updates_of(compiled, changed)
        # What changed is the entries' own (a zone's publication): one
        # look-up says whether and what.
        own = changed is compiled.changed
        # And the grid's entries are their records (fill's): an entry is
        # built from its record at hand, and kept in read only (no other
        # diff of the tick looks for it by id).
        direct = own and snapshot.published is not None and compiled.published is snapshot.published
        # Entries built before (read by subscript) are the ones to send.
        shared = len(compiled) > 0
    else:
        # A dict of the changed ones' entries only, or a subclass that
        # builds them on first use (in __missing__): one read if built.
        built = isinstance(updates, dict) and type(updates).__getitem__ is dict.__getitem__
    # One pass, in the grid's order: what enters, and what stays (and is
    # refreshed, or updated if it changed).  An id is read (and its string
    # object touched) only where a mark does not say.
    for i in range(count):
        p = found[i]
        slot = snapshot.slot_at[p]
        kept = snapshot.marks[slot] == mark
        if kept:
            snapshot.marks[slot] = mark + 1
        elif lost:
            eid = <object>PyList_GET_ITEM(all_ids, p)
            kept = PyDict_GetItem(lost, eid) is not NULL
            if kept:
                del lost[eid]
        if not kept:
            enter.append(_full_view(views, all_ids, p, view))
            continue
        n += 1
        if refresh:
            update.append(_full_view(views, all_ids, p, view))
        elif compiled is not None:
            # What an earlier diff of the tick read for this entry, if any.
            held = PyList_GET_ITEM(read, p)
            if held == <PyObject *>_NONE:
                eid = <object>PyList_GET_ITEM(all_ids, p)
                entry = PyDict_GetItem(compiled, eid) if shared else NULL
                if entry is not NULL:
                    got = <object>entry
                elif own:
                    entry = PyDict_GetItem(compiled.changed, eid)
                    if entry is NULL:
                        got = False
                    elif direct:
                        got = _update_entry(eid, <list>PyList_GET_ITEM(records, p), <object>entry)
                    else:
                        got = compiled.build_from(eid, <object>entry)
                elif eid in changed:
                    got = compiled.build(eid)
                else:
                    got = False
                read[p] = got
                held = <PyObject *>got
            if held != <PyObject *>_FALSE:
                picked[u] = p
                u += 1
        else:
            eid = <object>PyList_GET_ITEM(all_ids, p)
            entry = PyDict_GetItem(updates, eid) if built else NULL
            if entry is not NULL:
                update.append(<object>entry)
            elif eid in changed:
                update.append(updates[eid])
    if u:
        update = _picked(read, picked, u)
    if n == k:
        # Everything it had is still in view: if nothing came either, its
        # view is the one it had (the same ids), kept as it is.
        if before is not None and not enter:
            return before, enter, update, leave
        return _view_of(snapshot, found, count), enter, update, leave
    now = _view_of(snapshot, found, count)
    if before is None:
        for eid in known:
            if eid in lost:
                leave.append(eid)
        return now, enter, update, leave
    for i in range(k):
        if _holds(snapshot, before, i):
            if snapshot.marks[before.slots[i]] == mark:
                leave.append(<object>PyList_GET_ITEM(before.ids, i))
        elif <object>PyList_GET_ITEM(before.ids, i) in lost:
            leave.append(<object>PyList_GET_ITEM(before.ids, i))
    return now, enter, update, leave


def diffs(tuple grid, list observers, list order, dict views, set fresh, changed, updates,
          view):
    """The diffs of observers, one after the other: as L{mmo.zone.kernel.diffs}."""
    cdef list results = [None] * len(observers)
    cdef Snapshot snapshot
    cdef Py_ssize_t *found = NULL
    cdef Py_ssize_t room = 0
    cdef Py_ssize_t index
    cdef tuple observer
    cdef object entity_id, known, now, enter, update, leave
    cdef bint refresh
    try:
        for index in order:
            observer = <tuple>observers[index]
            entity_id = observer[0]
            snapshot = _snapshot(grid)
            if snapshot.size + 1 > room:
                free(found)
                room = snapshot.size + 1
                # What an observer sees, and (from room on) its updates picked.
                found = <Py_ssize_t *>malloc(2 * room * sizeof(Py_ssize_t))
                if found is NULL:
                    raise MemoryError()
            known = views.get(entity_id)
            refresh = entity_id in fresh
            if refresh or not known:
                fresh.discard(entity_id)
            now, enter, update, leave = _diff(grid, snapshot, found, found + room, observer[1],
                                              observer[2], known, refresh, changed, updates, view)
            if now is not known:
                views[entity_id] = now
            results[index] = (enter, update, leave)
    finally:
        free(found)
    return results


cdef extern from "Python.h":
    # A slot's member (Include/descrobject.h): where in its objects it lies.
    ctypedef struct PyMemberDef:
        int type
        Py_ssize_t offset
        int flags
    ctypedef struct PyMemberDescrObject:
        PyMemberDef *d_member

# A member's type of an object held in a slot that may be unset (raising
# AttributeError): what __slots__ makes (Include/structmember.h).
cdef enum:
    _T_OBJECT_EX = 16
    _MAX_FIELDS = 8


cdef class _Fields:
    """
    Named attributes of objects read and written as Python would, and for
    the objects of a class whose instances keep them in slots (an entity's
    dataclass), straight in the slots, where the slots' member descriptors
    say they lie: what the attribute look-up would find, without looking
    up (the class's dictionaries, along its method resolution order), nor
    calling a descriptor, for each object.  An unset slot is read through
    its descriptor (which raises what Python does).  An object of any other
    class, whose attribute access is its own, or that keeps one of the
    attributes elsewhere, is read with getattr and written with setattr.
    The class last seen is kept: the objects of one tick are most often all
    of one.
    """

    cdef tuple names
    cdef object kind
    cdef list descriptors
    cdef bint gets
    cdef bint sets
    # Whether every field is a plain slot (no flags), and where each lies.
    cdef bint direct
    cdef Py_ssize_t offsets[_MAX_FIELDS]

    def __cinit__(self, tuple names):
        if len(names) > _MAX_FIELDS:
            raise ValueError("too many fields")
        self.names = names

    cdef int see(self, object obj) except -1:
        # Ready to read (and write) obj's attributes.
        cdef object kind = type(obj)
        cdef list descriptors
        cdef PyMemberDef *member
        cdef Py_ssize_t field
        if kind is self.kind:
            return 0
        descriptors = []
        for name in self.names:
            found = None
            for base in kind.__mro__:
                if name in base.__dict__:
                    found = base.__dict__[name]
                    break
            descriptors.append(found if type(found) is MemberDescriptorType else None)
        self.descriptors = descriptors
        self.gets = (kind.__getattribute__ is object.__getattribute__
                     and None not in descriptors)
        self.sets = self.gets and kind.__setattr__ is object.__setattr__
        self.direct = self.sets
        if self.direct:
            for field in range(len(descriptors)):
                member = (<PyMemberDescrObject *>(<PyObject *>descriptors[field])).d_member
                if member.type != _T_OBJECT_EX or member.flags != 0:
                    self.direct = False
                    break
                self.offsets[field] = member.offset
        self.kind = kind
        return 0

    cdef inline object get(self, object obj, Py_ssize_t field):
        # The field-th attribute of obj, once seen.
        cdef object descriptor
        cdef PyObject *value
        if self.direct:
            value = (<PyObject **>(<char *><PyObject *>obj + self.offsets[field]))[0]
            if value is not NULL:
                return <object>value
        if self.gets:
            descriptor = <object>PyList_GET_ITEM(self.descriptors, field)
            return Py_TYPE(descriptor).tp_descr_get(descriptor, obj, self.kind)
        return getattr(obj, <str>self.names[field])

    cdef inline int set(self, object obj, Py_ssize_t field, object value) except -1:
        # Set the field-th attribute of obj, once seen.
        cdef object descriptor
        cdef PyObject **slot
        cdef PyObject *old
        if self.direct:
            slot = <PyObject **>(<char *><PyObject *>obj + self.offsets[field])
            old = slot[0]
            Py_INCREF(value)
            slot[0] = <PyObject *>value
            Py_XDECREF(old)
            return 0
        if self.sets:
            descriptor = <object>PyList_GET_ITEM(self.descriptors, field)
            return Py_TYPE(descriptor).tp_descr_set(descriptor, obj, value)
        setattr(obj, <str>self.names[field], value)
        return 0


# An entity's attributes the tick reads, by their index in _ENTITY.
cdef enum:
    _X = 0
    _Y = 1
    _NAME = 2
    _ATTRS = 3
    _KIND = 4
    _SESSION = 5
    _GATEWAY = 6

cdef _Fields _ENTITY = _Fields(("x", "y", "name", "attrs", "kind", "session", "gateway"))
cdef _Fields _POSITION = _Fields(("x", "y"))


cdef inline double _bounce(double v, double low, double high, list walk, Py_ssize_t axis):
    # v kept within [low, high]; the walk's heading on that axis turned
    # back from the edge it went past.
    cdef double heading = walk[axis]
    if v < low:
        walk[axis] = fabs(heading)
        return low
    if v > high:
        walk[axis] = -fabs(heading)
        return high
    return v


def wander(dict walks, dict reals, frozen, double now, double distance, tuple bounds,
           new_walk):
    """Move the NPCs along their walks: as L{mmo.zone.kernel.wander}."""
    cdef double left = bounds[0], right = bounds[1], bottom = bounds[2], top = bounds[3]
    cdef double x, y
    cdef bint any_frozen = bool(frozen)
    cdef list walk
    cdef object entity_id, entity
    cdef PyObject *found
    cdef _Fields fields = _POSITION
    for entity_id, walk in walks.items():
        if any_frozen and entity_id in frozen:
            continue
        if now >= <double>walk[2]:
            walk[:] = new_walk()
        found = PyDict_GetItem(reals, entity_id)
        if found is NULL:
            raise KeyError(entity_id)
        entity = <object>found
        fields.see(entity)
        x = _bounce(<double>fields.get(entity, _X) + <double>walk[0] * distance, left, right,
                    walk, 0)
        y = _bounce(<double>fields.get(entity, _Y) + <double>walk[1] * distance, bottom, top,
                    walk, 1)
        fields.set(entity, _X, x)
        fields.set(entity, _Y, y)


cdef _Fields _PLACE = _Fields(("x", "y", "kind"))


def positions(dict reals, player):
    """The players' ids and every position, as float32s: as L{mmo.zone.kernel.positions}."""
    cdef Py_ssize_t count = len(reals), first = 0, last = count, i, j
    cdef bytes xs = PyBytes_FromStringAndSize(NULL, count * sizeof(float))
    cdef bytes ys = PyBytes_FromStringAndSize(NULL, count * sizeof(float))
    cdef float *px = <float *>PyBytes_AS_STRING(xs)
    cdef float *py = <float *>PyBytes_AS_STRING(ys)
    cdef float swap
    cdef list players = []
    cdef _Fields fields = _PLACE
    cdef object entity_id, entity, kind
    # The last kind found not to be the player's: most are one (the NPCs').
    cdef object other = None
    for entity_id, entity in reals.items():
        if first == last:
            raise RuntimeError("the reals changed while their positions were read")
        fields.see(entity)
        kind = fields.get(entity, 2)
        if kind is not other and (kind is player or kind == player):
            players.append(entity_id)
            px[first] = <double>fields.get(entity, _X)
            py[first] = <double>fields.get(entity, _Y)
            first += 1
        else:
            # The others from the end, put back in order below.
            other = kind
            last -= 1
            px[last] = <double>fields.get(entity, _X)
            py[last] = <double>fields.get(entity, _Y)
    i, j = first, count - 1
    while i < j:
        swap = px[i]; px[i] = px[j]; px[j] = swap
        swap = py[i]; py[i] = py[j]; py[j] = swap
        i += 1
        j -= 1
    return players, xs, ys


cdef inline void _put(dict cells, object key, list moving):
    cdef PyObject *cell = PyDict_GetItem(cells, key)
    if cell is NULL:
        cells[key] = [moving]
    else:
        (<list>cell).append(moving)


cdef void _move(dict cells, list moving, object key):
    # Out of its cell (found by identity), into the cell key unless None.
    cdef list cell = <list>cells[moving[5]]
    cdef Py_ssize_t i
    for i in range(len(cell)):
        if cell[i] is moving:
            del cell[i]
            break
    if not cell:
        del cells[moving[5]]
    if key is not None:
        moving[5] = key
        _put(cells, key, moving)


def entry(tuple grid, entity_id, double x, double y, name, attrs):
    """A new entry of the C{grid}, put in its cell: as L{mmo.zone.kernel.entry}."""
    return _entry(<dict>grid[0], <Snapshot>grid[6], entity_id, x, y, name, attrs, grid[4],
                  grid[2])


cdef list _entry(dict cells, Snapshot snapshot, entity_id, object xo, object yo, name, attrs,
                 double size, long long stride):
    # [x, y, name, attrs, id, key, slot]: the pure kernel's entry, and its slot.
    cdef object key = _key(xo, yo, size, stride)
    cdef list new = [xo, yo, name, attrs, entity_id, key, snapshot.take(entity_id)]
    _put(cells, key, new)
    return new


cdef inline int _moved(dict cells, list known, object xo, object yo, double size,
                       long long stride):
    # Note a new position in a grid entry; POSITION if it moved.
    cdef double x = xo
    cdef double y = yo
    cdef double cx, cy
    cdef int overflow
    cdef object key
    if <double>known[0] == x and <double>known[1] == y:
        return 0
    known[0] = xo
    known[1] = yo
    cx = _floordiv(x, size)
    cy = _floordiv(y, size)
    if not _far(cx, cy):
        # Still in its cell, as most are: no key made.
        if (PyLong_AsLongLongAndOverflow(known[5], &overflow)
                == <long long>cx * stride + <long long>cy and not overflow):
            return POSITION
    key = _key(x, y, size, stride)
    if key != known[5]:
        _move(cells, known, key)
    return POSITION


cdef inline bint _same(object before, object now):
    # The same string object: equal, without a comparison.
    return before is now and PyUnicode_CheckExact(now)


cdef inline bint _both_empty(object before, object now):
    # Two empty dicts (what most entities' attributes are): equal.
    return (PyDict_CheckExact(before) and PyDict_CheckExact(now)
            and len(<dict>before) == 0 and len(<dict>now) == 0)


cdef inline int _note(dict cells, Snapshot snapshot, dict published, dict changed, entity_id,
                      xo, yo, name, attrs, double size, long long stride, record) except -1:
    # An entity's entry in the grid and what was published of it brought
    # up to date, what changed noted (a new one is in the grid, unchanged).
    cdef PyObject *found = PyDict_GetItem(published, entity_id)
    cdef list known
    cdef int mask
    if found is NULL:
        published[entity_id] = _entry(cells, snapshot, entity_id, xo, yo, name, dict(attrs),
                                      size, stride)
        return 0
    known = <list>found
    mask = _moved(cells, known, xo, yo, size, stride)
    if not (_same(known[2], name) and _both_empty(known[3], attrs)) and (
            known[2] != name or known[3] != attrs):
        mask |= <int>record(known, name, attrs)
    if mask:
        changed[entity_id] = mask
    return 0


# No entity's kind (compared by identity).
cdef object _NO_KIND = object()
# A ghost's attributes when its view has none: read, never changed (what
# is published of them is a copy).
cdef dict _NO_ATTRS = {}


cdef inline bint _outside(double x, double y, double x0, double y0, double x1, double y1):
    # Outside the box (x0, y0, x1, y1), or not a number.
    return not (x0 <= x <= x1 and y0 <= y <= y1)


def outer(dict reals, tuple inner):
    """The reals outside the box C{inner}: as L{mmo.zone.kernel.outer}."""
    cdef double x0 = inner[0], y0 = inner[1], x1 = inner[2], y1 = inner[3]
    cdef list found = []
    cdef object entity_id, entity, xo, yo
    cdef _Fields fields = _POSITION
    for entity_id, entity in reals.items():
        fields.see(entity)
        xo = fields.get(entity, _X)
        yo = fields.get(entity, _Y)
        if _outside(xo, yo, x0, y0, x1, y1):
            found.append((entity_id, xo, yo, entity))
    return found


def fill(tuple grid, dict reals, dict ghosts, dict published, frozen, tuple inner, player,
         record):
    """Bring the grid up to date from the reals and the ghosts: as L{mmo.zone.kernel.fill}."""
    cdef dict cells = <dict>grid[0]
    cdef long long stride = grid[2]
    cdef double size = grid[4]
    cdef dict changed = {}
    cdef list observers = []
    cdef list outer = []
    cdef Py_ssize_t count = 0
    cdef double x0 = inner[0], y0 = inner[1], x1 = inner[2], y1 = inner[3]
    cdef object xo, yo, name, attrs, entity_id, entity, view, kind
    # The last kind found not to be the player's: most are one (the NPCs').
    cdef object other = _NO_KIND
    cdef Snapshot snapshot = <Snapshot>grid[6]
    cdef list gone
    cdef PyObject *found
    cdef _Fields fields = _ENTITY
    # The cells change from here on.
    snapshot.clear()
    snapshot.published = published
    for entity_id, entity in reals.items():
        fields.see(entity)
        xo = fields.get(entity, _X)
        yo = fields.get(entity, _Y)
        count += 1
        name = fields.get(entity, _NAME)
        attrs = fields.get(entity, _ATTRS)
        _note(cells, snapshot, published, changed, entity_id, xo, yo, name, attrs, size, stride,
              record)
        kind = fields.get(entity, _KIND)
        if kind is other:
            pass
        elif (kind is player or kind == player) and fields.get(entity, _SESSION) and (
                fields.get(entity, _GATEWAY)):
            if entity_id not in frozen:
                observers.append((entity_id, xo, yo, entity))
        elif kind != player:
            other = kind
        if _outside(xo, yo, x0, y0, x1, y1):
            outer.append((entity_id, xo, yo, entity))

    for entity_id, view in ghosts.items():
        if entity_id in reals:
            continue
        if PyDict_CheckExact(view):
            # As a neighbour's views are: read in place, and no empty
            # attributes made for one without.
            xo = (<dict>view)["x"]
            yo = (<dict>view)["y"]
            found = PyDict_GetItem(<dict>view, "name")
            name = <object>found if found is not NULL else ""
            found = PyDict_GetItem(<dict>view, "attrs")
            attrs = <object>found if found is not NULL else _NO_ATTRS
        else:
            xo = view["x"]
            yo = view["y"]
            name = view.get("name", "")
            attrs = view.get("attrs", {})
        count += 1
        _note(cells, snapshot, published, changed, entity_id, xo, yo, name, attrs, size, stride,
              record)

    if len(published) != count:
        # Something left (removed, or no longer ghosted): forget it.
        for entity_id in [i for i in published if i not in reals and i not in ghosts]:
            gone = <list>published.pop(entity_id)
            _move(cells, gone, None)
            snapshot.give_back(gone)
    return changed, observers, outer


cdef inline Py_ssize_t _fields_of(int mask) noexcept:
    # How many fields an update entry of what mask says changed has.
    return (1 + (2 if mask & POSITION else 0) + (1 if mask & NAME else 0)
            + (1 if mask & ATTRS else 0))


@cython.final
@cython.no_gc
@cython.freelist(64)
cdef class UpdateEntry:
    """
    An entity's C{update} entry of a tick, as this kernel makes it: what
    the pure kernel's dict holds (C{id}, then C{x} and C{y}, C{name},
    C{attrs}, as they changed), a read-only mapping equal to that dict,
    packed by the stems' encoder as that dict is.  A tick makes one for
    every entity that changed in someone's view (every moving one); a
    dict of three keys costs several times as much to make and free.

    Copied or pickled, it is that dict.
    """

    cdef readonly object id
    # As published: the values its fields hold (None where it has no such field).
    cdef object x, y, name, attrs
    cdef int mask

    def __getitem__(self, key):
        if key == "id":
            return self.id
        if self.mask & POSITION:
            if key == "x":
                return self.x
            if key == "y":
                return self.y
        if key == "name" and self.mask & NAME:
            return self.name
        if key == "attrs" and self.mask & ATTRS:
            return self.attrs
        raise KeyError(key)

    def keys(self):
        return [key for key, _ in self.items()]

    def values(self):
        return [value for _, value in self.items()]

    def items(self):
        cdef list items = [("id", self.id)]
        if self.mask & POSITION:
            items.append(("x", self.x))
            items.append(("y", self.y))
        if self.mask & NAME:
            items.append(("name", self.name))
        if self.mask & ATTRS:
            items.append(("attrs", self.attrs))
        return items

    def get(self, key, default=None):
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key):
        return key in self.keys()

    def __iter__(self):
        return iter(self.keys())

    def __len__(self):
        return _fields_of(self.mask)

    def __eq__(self, other):
        if isinstance(other, Mapping):
            return dict(self.items()) == dict(other.items())
        return NotImplemented

    def __repr__(self):
        return repr(dict(self.items()))

    def __reduce__(self):
        return dict, (self.items(),)


Mapping.register(UpdateEntry)


cdef class UpdateEntries(dict):
    """
    The C{update} entries of one tick's changed entities: as
    L{mmo.zone.kernel.UpdateEntries}, each an L{UpdateEntry}.
    """

    cdef readonly dict changed
    cdef dict published

    def __init__(self, dict changed, dict published):
        self.changed = changed
        self.published = published

    def __missing__(self, entity_id):
        return self.build(entity_id)

    cdef UpdateEntry build(self, entity_id):
        return self.build_from(entity_id, self.changed[entity_id])

    cdef UpdateEntry build_from(self, entity_id, int mask):
        cdef UpdateEntry update = _update_entry(entity_id, <list>self.published[entity_id], mask)
        self[entity_id] = update
        return update


cdef UpdateEntry _update_entry(entity_id, list record, int mask):
    # The update entry of what the mask says changed, from a published record.
    cdef UpdateEntry update = UpdateEntry.__new__(UpdateEntry)
    update.id = entity_id
    update.mask = mask & (POSITION | NAME | ATTRS)
    if mask & POSITION:
        update.x = record[0]
        update.y = record[1]
    if mask & NAME:
        update.name = record[2]
    if mask & ATTRS:
        update.attrs = record[3]
    return update


# -- the stems of a tick's pushes ----------------------------------------------------------
#
# msgpack as mmo.wire.codec's packer writes it (use_bin_type), for the values
# of exact built-in types a tick's pushes are made of: None, bool, int (64
# bits signed), float (64 bits), str, bytes, list, tuple and dict.  Any other
# value (a subclass, an int past 63 bits, a str that is not UTF-8, nesting
# deeper than _DEEPEST), a key "t" or "seq" among a push's fields, and a push
# that is not a (str, dict) pair: the push's stem is the generic encoder's.

cdef extern from "Python.h":
    # On objects held by their containers while a push is packed (nothing
    # of Python runs meanwhile): no reference taken, no error to check
    # but where said.
    int _is_float "PyFloat_CheckExact"(PyObject *)
    int _is_int "PyLong_CheckExact"(PyObject *)
    int _is_str "PyUnicode_CheckExact"(PyObject *)
    int _is_dict "PyDict_CheckExact"(PyObject *)
    int _is_list "PyList_CheckExact"(PyObject *)
    int _is_tuple "PyTuple_CheckExact"(PyObject *)
    int _is_bytes "PyBytes_CheckExact"(PyObject *)
    double _float_value "PyFloat_AS_DOUBLE"(PyObject *)
    long long _int_value "PyLong_AsLongLongAndOverflow"(PyObject *, int *)
    # NULL, with an error set, for a str that is not UTF-8 (a lone surrogate).
    const char *_utf8 "PyUnicode_AsUTF8AndSize"(PyObject *, Py_ssize_t *)
    # An ASCII str's characters are its UTF-8, where they lie.
    int _is_ascii "PyUnicode_IS_COMPACT_ASCII"(PyObject *)
    Py_ssize_t _str_length "PyUnicode_GET_LENGTH"(PyObject *)
    const char *_str_data "PyUnicode_DATA"(PyObject *)
    Py_ssize_t _list_size "PyList_GET_SIZE"(PyObject *)
    PyObject *_list_item "PyList_GET_ITEM"(PyObject *, Py_ssize_t)
    Py_ssize_t _tuple_size "PyTuple_GET_SIZE"(PyObject *)
    PyObject *_tuple_item "PyTuple_GET_ITEM"(PyObject *, Py_ssize_t)
    Py_ssize_t _bytes_size "PyBytes_GET_SIZE"(PyObject *)
    char *_bytes_data "PyBytes_AS_STRING"(PyObject *)
    Py_ssize_t _dict_size "PyDict_Size"(PyObject *)
    void *_type_of "Py_TYPE"(PyObject *)
    int _dict_next "PyDict_Next"(PyObject *, Py_ssize_t *, PyObject **, PyObject **)
    void PyErr_Clear()


# What packing a value comes to: done, or not for this packer.
cdef enum:
    _PACKED = 0
    _CANNOT = 1

# Nesting past this is the generic encoder's (which has msgpack's limit).
cdef enum:
    _DEEPEST = 32

# msgpack's longest str, bin, array or map (a length in 32 bits).
cdef Py_ssize_t _LONGEST = 0xFFFFFFFF


ctypedef struct _Buffer:
    unsigned char *data
    Py_ssize_t length
    Py_ssize_t capacity


cdef int _grow(_Buffer *b, Py_ssize_t more) except -1:
    # Room for more bytes at the end.
    cdef Py_ssize_t capacity = b.capacity if b.capacity else 1024
    cdef unsigned char *data
    while capacity < b.length + more:
        capacity *= 2
    data = <unsigned char *>realloc(b.data, capacity)
    if data is NULL:
        raise MemoryError()
    b.data = data
    b.capacity = capacity
    return 0


cdef inline int _room(_Buffer *b, Py_ssize_t more) except -1:
    if b.length + more > b.capacity:
        return _grow(b, more)
    return 0


cdef inline void _byte(_Buffer *b, unsigned char value) noexcept:
    b.data[b.length] = value
    b.length += 1


cdef inline void _big_endian(_Buffer *b, unsigned long long value, int size) noexcept:
    # The low size bytes of value, most significant first.
    cdef int i
    for i in range(size):
        b.data[b.length + i] = <unsigned char>(value >> (8 * (size - 1 - i)))
    b.length += size


cdef inline int _header(_Buffer *b, Py_ssize_t size, unsigned char fixed, Py_ssize_t fix_below,
                        unsigned char eight, unsigned char sixteen,
                        unsigned char thirty_two) except -1:
    # The shortest header of a container or a raw value of size: its fix
    # form below fix_below (none if 0), its 8-bit form if it has one (not 0),
    # else its 16 or 32-bit one.
    _room(b, 5)
    if size < fix_below:
        _byte(b, fixed | <unsigned char>size)
    elif eight and size <= 0xFF:
        _byte(b, eight)
        _byte(b, <unsigned char>size)
    elif size <= 0xFFFF:
        _byte(b, sixteen)
        _big_endian(b, size, 2)
    else:
        _byte(b, thirty_two)
        _big_endian(b, size, 4)
    return 0


cdef inline int _raw(_Buffer *b, const char *data, Py_ssize_t size) except -1:
    _room(b, size)
    memcpy(b.data + b.length, data, size)
    b.length += size
    return 0


cdef int _pack_int(_Buffer *b, long long value) except -1:
    # The shortest of msgpack's forms.
    _room(b, 9)
    if value >= 0:
        if value < 0x80:
            _byte(b, <unsigned char>value)
        elif value <= 0xFF:
            _byte(b, 0xCC)
            _big_endian(b, value, 1)
        elif value <= 0xFFFF:
            _byte(b, 0xCD)
            _big_endian(b, value, 2)
        elif value <= 0xFFFFFFFF:
            _byte(b, 0xCE)
            _big_endian(b, value, 4)
        else:
            _byte(b, 0xCF)
            _big_endian(b, value, 8)
    elif value >= -0x20:
        _byte(b, <unsigned char>value)
    elif value >= -0x80:
        _byte(b, 0xD0)
        _big_endian(b, <unsigned long long>value, 1)
    elif value >= -0x8000:
        _byte(b, 0xD1)
        _big_endian(b, <unsigned long long>value, 2)
    elif value >= -0x80000000LL:
        _byte(b, 0xD2)
        _big_endian(b, <unsigned long long>value, 4)
    else:
        _byte(b, 0xD3)
        _big_endian(b, <unsigned long long>value, 8)
    return 0


cdef inline int _pack_str(_Buffer *b, PyObject *value) except -1:
    cdef Py_ssize_t size
    cdef const char *data
    if _is_ascii(value):
        size = _str_length(value)
        data = _str_data(value)
    else:
        data = _utf8(value, &size)
        if data is NULL:
            PyErr_Clear()
            return _CANNOT
    return _put_str(b, data, size)


cdef inline int _put_str(_Buffer *b, const char *data, Py_ssize_t size) except -1:
    # A str's msgpack from its UTF-8.
    if size > _LONGEST:
        return _CANNOT
    if size < 32:
        # A fixstr, as most are (keys, ids): its header and bytes at once.
        _room(b, size + 1)
        _byte(b, 0xA0 | <unsigned char>size)
        memcpy(b.data + b.length, data, size)
        b.length += size
        return _PACKED
    _header(b, size, 0xA0, 32, 0xD9, 0xDA, 0xDB)
    _raw(b, data, size)
    return _PACKED


cdef int _pack(_Buffer *b, PyObject *value, int depth) except -1:
    # value's msgpack at the end of b, or _CANNOT (b then holds part of it).
    cdef int overflow = 0
    cdef long long number
    cdef double real
    cdef unsigned long long bits
    cdef Py_ssize_t size, i, position = 0
    cdef PyObject *key
    cdef PyObject *item
    if value == <PyObject *>None:
        _room(b, 1)
        _byte(b, 0xC0)
    elif value == <PyObject *>True:
        _room(b, 1)
        _byte(b, 0xC3)
    elif value == <PyObject *>False:
        _room(b, 1)
        _byte(b, 0xC2)
    elif _is_float(value):
        real = _float_value(value)
        memcpy(&bits, &real, 8)
        _room(b, 9)
        _byte(b, 0xCB)
        _big_endian(b, bits, 8)
    elif _is_str(value):
        return _pack_str(b, value)
    elif _is_int(value):
        number = _int_value(value, &overflow)
        if overflow:
            return _CANNOT
        _pack_int(b, number)
    elif depth >= _DEEPEST:
        return _CANNOT
    elif _type_of(value) == <void *>UpdateEntry:
        return _pack_update(b, <UpdateEntry>value, depth)
    elif _is_dict(value):
        size = _dict_size(value)
        if size > _LONGEST:
            return _CANNOT
        _header(b, size, 0x80, 16, 0, 0xDE, 0xDF)
        while _dict_next(value, &position, &key, &item):
            if _pack(b, key, depth + 1) or _pack(b, item, depth + 1):
                return _CANNOT
    elif _is_list(value):
        size = _list_size(value)
        if size > _LONGEST:
            return _CANNOT
        _header(b, size, 0x90, 16, 0, 0xDC, 0xDD)
        for i in range(size):
            if _pack(b, _list_item(value, i), depth + 1):
                return _CANNOT
    elif _is_tuple(value):
        size = _tuple_size(value)
        if size > _LONGEST:
            return _CANNOT
        _header(b, size, 0x90, 16, 0, 0xDC, 0xDD)
        for i in range(size):
            if _pack(b, _tuple_item(value, i), depth + 1):
                return _CANNOT
    elif _is_bytes(value):
        size = _bytes_size(value)
        if size > _LONGEST:
            return _CANNOT
        _header(b, size, 0, 0, 0xC4, 0xC5, 0xC6)
        _raw(b, _bytes_data(value), size)
    else:
        return _CANNOT
    return _PACKED


cdef inline int _pack_entry(_Buffer *b, const char *key, Py_ssize_t size, object value,
                            int depth) except -1:
    # A map's entry: its key, packed already (size bytes), and its value.
    _raw(b, key, size)
    return _pack(b, <PyObject *>value, depth)


cdef int _pack_update(_Buffer *b, UpdateEntry entry, int depth) except -1:
    # An update entry's msgpack: its dict's, in that order.
    cdef int mask = entry.mask
    depth += 1
    _header(b, _fields_of(mask), 0x80, 16, 0, 0xDE, 0xDF)
    if (_pack_entry(b, b"\xa2id", 3, entry.id, depth)
            or (mask & POSITION and (_pack_entry(b, b"\xa1x", 2, entry.x, depth)
                                     or _pack_entry(b, b"\xa1y", 2, entry.y, depth)))
            or (mask & NAME and _pack_entry(b, b"\xa4name", 5, entry.name, depth))
            or (mask & ATTRS and _pack_entry(b, b"\xa5attrs", 6, entry.attrs, depth))):
        return _CANNOT
    return _PACKED


ctypedef struct _Slot:
    # An item's packing in a Fragments' bytes: the item (NULL: a free
    # slot), where its packing starts, and how long it is.
    PyObject *item
    Py_ssize_t start
    Py_ssize_t length


cdef class Fragments(dict):
    """
    The tick's fragments: the msgpack of the maps in the list fields of
    its pushes, each packed once (an entity's view or update entry is in
    the pushes of everyone who sees it) and copied into every stem that
    has it, found by the map's address (the map is held here, so that no
    other takes its address while this lives).  The dictionary itself is
    what the generic encoder (C{push_stem}) keeps its own fragments in.
    Only for maps that stay alive and unchanged as long as it is used: a
    tick's.
    """

    cdef _Buffer packed
    cdef _Slot *slots
    cdef size_t mask
    cdef int shift
    cdef Py_ssize_t used
    cdef list held

    def __cinit__(self):
        self.held = []

    def __dealloc__(self):
        free(self.packed.data)
        free(self.slots)

    cdef _Slot *find(self, PyObject *item) except NULL:
        # The slot of item: its own, or the free one where it goes.
        cdef size_t i
        if self.slots is NULL or 2 * (self.used + 1) > <Py_ssize_t>(self.mask + 1):
            self.grow()
        i = _bucket(<long long><size_t>item, self.shift)
        while self.slots[i].item is not NULL and self.slots[i].item != item:
            i = (i + 1) & self.mask
        return &self.slots[i]

    cdef int grow(self) except -1:
        cdef size_t size = 2 * (self.mask + 1) if self.slots is not NULL else 1024
        cdef int shift = 64
        cdef size_t n = size, i, j
        cdef _Slot *old = self.slots
        cdef size_t old_size = self.mask + 1 if old is not NULL else 0
        cdef _Slot *slots = <_Slot *>calloc(size, sizeof(_Slot))
        if slots is NULL:
            raise MemoryError()
        while n > 1:
            n >>= 1
            shift -= 1
        for i in range(old_size):
            if old[i].item is not NULL:
                j = _bucket(<long long><size_t>old[i].item, shift)
                while slots[j].item is not NULL:
                    j = (j + 1) & (size - 1)
                slots[j] = old[i]
        free(old)
        self.slots = slots
        self.mask = size - 1
        self.shift = shift
        return 0

    cdef int pack(self, _Buffer *b, PyObject *item, int depth) except -1:
        # An item's msgpack at the end of b: from its fragment if it has
        # one (the item itself not read: most are, and are all over memory),
        # else packed, and kept as a fragment if a map.
        cdef _Slot *slot = self.find(item)
        cdef Py_ssize_t start
        if slot.item is not NULL:
            return _raw(b, <char *>self.packed.data + slot.start, slot.length)
        start = b.length
        if _pack(b, item, depth):
            return _CANNOT
        if not _is_dict(item) and _type_of(item) != <void *>UpdateEntry:
            return _PACKED
        # (Packing a map looks nothing up here: the slot found is still it.)
        _raw(&self.packed, <char *>b.data + start, b.length - start)
        slot.item = item
        slot.start = self.packed.length - (b.length - start)
        slot.length = b.length - start
        self.used += 1
        self.held.append(<object>item)
        return _PACKED


cdef int _pack_field(_Buffer *b, PyObject *value, Fragments fragments) except -1:
    # A push's field: the maps of a list from their fragments.
    cdef Py_ssize_t size, i
    if not _is_list(value):
        return _pack(b, value, 1)
    size = _list_size(value)
    if size > _LONGEST:
        return _CANNOT
    _header(b, size, 0x90, 16, 0, 0xDC, 0xDD)
    for i in range(size):
        if fragments.pack(b, _list_item(value, i), 2):
            return _CANNOT
    return _PACKED


cdef object _stem(_Buffer *b, object kind, object fields, Fragments fragments):
    # push_stem's bytes of a push (the frame's length, the map of its
    # fields, "t" and its kind, "seq" and the marker of its number), or
    # None where this packer cannot make them.
    cdef Py_ssize_t position = 0, size
    cdef PyObject *key
    cdef PyObject *item
    cdef const char *name
    if not (PyUnicode_CheckExact(kind) and PyDict_CheckExact(fields)):
        return None
    size = len(<dict>fields) + 2
    if size > _LONGEST:
        return None
    b.length = 0
    _room(b, 4)
    b.length = 4
    _header(b, size, 0x80, 16, 0, 0xDE, 0xDF)
    while _dict_next(<PyObject *>fields, &position, &key, &item):
        if not _is_str(key):
            return None
        if _is_ascii(key):
            size = _str_length(key)
            name = _str_data(key)
        else:
            name = _utf8(key, &size)
            if name is NULL:
                PyErr_Clear()
                return None
        # The number goes last, and "t" after the fields: the generic
        # encoder's, where a field says otherwise.
        if (size == 1 and name[0] == 116) or (size == 3 and memcmp(name, b"seq", 3) == 0):
            return None
        if _put_str(b, name, size):
            return None
        if _pack_field(b, item, fragments):
            return None
    _raw(b, b"\xa1t", 2)
    if _pack_str(b, <PyObject *>kind):
        return None
    _raw(b, b"\xa3seq\xce", 5)
    if b.length > _LONGEST:
        return None
    # The frame's length: the stem's and its number's, less the header's.
    size = b.length
    b.length = 0
    _big_endian(b, size, 4)
    return PyBytes_FromStringAndSize(<char *>b.data, size)


def stems(dict by_session, push_stem, Fragments fragments, dropped):
    """
    Each session's pushes as the stems of their frames: as
    L{mmo.zone.kernel.stems}, packed here where their values allow it,
    with the tick's L{Fragments}.
    """
    cdef dict batch = {}
    cdef list made
    cdef object session, events, kind, fields, stem
    cdef _Buffer b
    b.data = NULL
    b.length = 0
    b.capacity = 0
    try:
        for session, events in by_session.items():
            if session is None:
                continue
            made = []
            for kind, fields in events:
                stem = _stem(&b, kind, fields, fragments)
                if stem is None:
                    try:
                        stem = push_stem(kind, fields, fragments)
                    except Exception:
                        dropped(session, kind)
                        continue
                made.append(stem)
            if made:
                batch[session] = made
    finally:
        free(b.data)
    return batch

cdef _Fields _DELIVERY = _Fields(("gateway", "session"))


def pushes(list observers, list shown, tick, corrected, restarting, started_over, correction,
           dict batches):
    """Each observer's pushes of a tick, by gateway and session: as L{mmo.zone.kernel.pushes}."""
    cdef Py_ssize_t i, count = len(observers)
    cdef object entity_id, entity, enter, update, leave, gateway, by_session, reset
    cdef list events
    cdef dict fields
    cdef PyObject *found
    cdef _Fields delivery = _DELIVERY
    if count != len(shown):
        raise ValueError("an observer's view is missing, or one too many")
    for i in range(count):
        entity_id, _, _, entity = observers[i]
        enter, update, leave = shown[i]
        events = None
        if corrected and entity_id in corrected:
            events = [("world.correct", correction(entity))]
        reset = started_over(entity_id) if restarting else False
        if enter or update or leave or reset:
            fields = {"tick": tick, "enter": enter, "update": update, "leave": leave}
            if reset:
                # Its client keeps a view this zone does not know: it
                # drops it, and this update enters everything in sight.
                fields["reset"] = True
            if events is None:
                events = [("world.update", fields)]
            else:
                events.append(("world.update", fields))
        if events is not None:
            delivery.see(entity)
            gateway = delivery.get(entity, 0)
            found = PyDict_GetItem(batches, gateway)
            if found is NULL:
                by_session = batches[gateway] = {}
            else:
                by_session = <object>found
            by_session[delivery.get(entity, 1)] = events
