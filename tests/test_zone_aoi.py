"""
Tests for the area of interest's grid and diff (L{mmo.zone.aoi}): the
classes of cells taken whole or checked are exact, and over random walks
the enter / update / leave of every observer equal those of a brute-force
reference that checks every pair.  Each runs on both kernels, the
pure-Python one (L{mmo.zone.kernel}) and the compiled one
(C{mmo.zone._kernel}), and a zone's ticks are the same, in every detail
and order, on either.
"""

from __future__ import annotations

import math
import random
import sys

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from mmo.zone import aoi as aoi_module
from mmo.zone import kernel as pure_kernel
from mmo.zone.aoi import FINENESS, STRIDE, SUBCELLS, AreaOfInterest, cell_classes
from mmo.zone.entity import PLAYER, Entity
from tests import support
from tests.test_zone_sim import TICK, Zone, send

#: A test of the mixins below runs once per kernel, from a test case of each
#: (which Hypothesis otherwise takes for a mistake): same examples, either.
ONE_TEST_PER_KERNEL = [HealthCheck.differing_executors]


def compiled_kernel():
    """The compiled kernel (L{support.compiled_module})."""
    return support.compiled_module("mmo.zone._kernel")


class PureKernel:
    """Run a test case's tests on the pure-Python kernel."""

    def area(self, radius):
        return AreaOfInterest(radius, pure_kernel)


class CompiledKernel:
    """Run a test case's tests on the compiled kernel."""

    def area(self, radius):
        return AreaOfInterest(radius, compiled_kernel())


def _offset(i: int, j: int) -> int:
    return i * STRIDE + j


class CellClassTests(unittest.TestCase):
    """Which cells an observer takes whole, checks, or skips."""

    def test_classes_are_exact(self):
        """
        For every part of its cell, a cell taken whole has all its corners
        within the radius from every corner of the part; a cell left out has
        none of its points within it; every cell within reach is one or the
        other or checked.
        """
        q = SUBCELLS
        radius = FINENESS * q
        classes = cell_classes()
        self.assertEqual(len(classes), q * q)
        reach = FINENESS + 1
        for index, (inside, edge) in enumerate(classes):
            part_x, part_y = divmod(index, q)
            corners = [(part_x + a, part_y + b) for a in (0, 1) for b in (0, 1)]
            self.assertFalse(set(inside) & set(edge))
            for i in range(-reach - 1, reach + 2):
                for j in range(-reach - 1, reach + 2):
                    cell = [(i * q + a * q, j * q + b * q) for a in (0, 1) for b in (0, 1)]
                    far = max(
                        (cx - px) ** 2 + (cy - py) ** 2 for cx, cy in cell for px, py in corners
                    )
                    nearest_x = [max(0, i * q - px, px - (i + 1) * q) for px, _ in corners]
                    nearest_y = [max(0, j * q - py, py - (j + 1) * q) for _, py in corners]
                    near = min(
                        dx * dx + dy * dy for dx, dy in zip(nearest_x, nearest_y, strict=True)
                    )
                    offset = _offset(i, j)
                    if offset in inside:
                        self.assertLess(far, radius * radius)
                    elif offset not in edge:
                        self.assertGreater(near, radius * radius, (index, i, j))

    def test_edge_cells_fewer_than_a_block(self):
        """
        The point of the classes: an observer checks one by one the entities
        of fewer cells' area than the 3 x 3 block of radius-wide cells.
        """
        for inside, edge in cell_classes():
            self.assertLess(len(edge) / FINENESS**2, 9)
            self.assertGreater(len(inside), 0)


def _brute_visible(entries, x, y, r2):
    found = set()
    for eid, ex, ey in entries:
        dx = ex - x
        dy = ey - y
        if dx * dx + dy * dy <= r2:
            found.add(eid)
    return found


class VisibleTests:
    def test_points_on_cell_edges_and_negative(self):
        """Points on cell borders, at the radius and at negative coordinates."""
        aoi = self.area(10)
        size = aoi.cell_size
        entries = []
        for i in range(-12, 13):
            for j in range(-12, 13):
                entries.append((f"g{i},{j}", i * size / 2, j * size / 2))
        aoi.build(entries)
        for x, y in [(0.0, 0.0), (size, -size), (-10.0, 0.0), (3 * size, 2 * size), (-0.0, 7.5)]:
            self.assertEqual(set(aoi.visible(x, y)), _brute_visible(entries, x, y, 100.0))
            self.assertEqual(len(aoi.visible(x, y)), len(set(aoi.visible(x, y))))

    def test_far_from_the_origin(self):
        """
        Far out (cell keys past what C integers hold, observers the compiled
        kernel looks around with Python's integers), as near the origin.
        """
        aoi = self.area(10)
        bases = (1e7, 2.1e7, -3e9, 1e15, -1e20)
        entries = [
            (f"f{base},{i},{j}", base + i * 3.3, base / 2 + j * 3.3)
            for base in bases
            for i in range(-6, 7)
            for j in range(-6, 7)
        ]
        aoi.build(entries)
        for base in bases:
            for x, y in [(base, base / 2), (base + 4.1, base / 2 - 7.7)]:
                seen = aoi.visible(x, y)
                self.assertEqual(set(seen), _brute_visible(entries, x, y, 100.0))
                self.assertEqual(len(seen), len(set(seen)))

    def test_grid_order_at_cell_borders(self):
        """
        Observers on cell borders, an ulp either side of them, at negative
        and far coordinates are put in the order of their cells' keys as
        Python's floor division gives them (those of one cell in their own
        order), as the grid keys entries: with cells whose side is exact in
        binary, and with cells of 0.3, where C{floor(x / size)} is not
        Python's C{x // size} at many borders.
        """
        for radius in (10.0, 0.6):
            aoi = self.area(radius)
            size = aoi.cell_size
            places = [0.0, -0.0, 5e-324, -5e-324, -1e-300, 7.3, -7.3]
            for k in (-1995, -40, -3, -1, 1, 2, 3, 17, 400, 1998, 2**21):
                border = k * size
                places += [border, math.nextafter(border, -math.inf)]
                places.append(math.nextafter(border, math.inf))
            rng = random.Random(3)
            observers = [(f"o{i}", rng.choice(places), rng.choice(places)) for i in range(600)]
            keys = [int(x // size) * STRIDE + int(y // size) for _, x, y in observers]
            want = sorted(range(len(observers)), key=keys.__getitem__)
            self.assertEqual(aoi.grid_order(observers), want)
            # One far away: keys beyond a C long long, for all of them.
            observers.append(("far", 1e20, 5.0))
            keys.append(int(1e20 // size) * STRIDE + int(5.0 // size))
            want = sorted(range(len(observers)), key=keys.__getitem__)
            self.assertEqual(aoi.grid_order(observers), want)

    def test_grid_order_of_any_count(self):
        """
        However many observers there are (none, one, a few, not a power of
        two), in cells few or many, they are in the order of their cells'
        keys, those of one cell in their own order.
        """
        aoi = self.area(10.0)
        size = aoi.cell_size
        rng = random.Random(8)
        for count in [0, 1, 2, 7, 8, 9, 15, 16, 17, 31, 33, 64, 100, 257]:
            for span in (size, 20 * size):
                observers = [
                    (f"o{i}", rng.uniform(-span, span), rng.uniform(-span, span))
                    for i in range(count)
                ]
                keys = [int(x // size) * STRIDE + int(y // size) for _, x, y in observers]
                want = sorted(range(count), key=keys.__getitem__)
                self.assertEqual(aoi.grid_order(observers), want)

    def test_moves_across_cell_borders(self):
        """
        Entities moved an ulp across cell borders, back and forth, are seen
        from all around as a brute force sees them: each is in the cell its
        position is in.
        """
        for radius, origin in ((10.0, 0.0), (0.6, -600.0), (0.6, 597.0)):
            aoi = self.area(radius)
            size = aoi.cell_size
            borders = [origin + k * size for k in range(-3, 4)]
            ghosts = {}
            for i, bx in enumerate(borders):
                for j, by in enumerate(borders):
                    ghosts[f"g{i},{j}"] = {"x": bx, "y": by}
            published: dict = {}
            spacing = size / 2
            observers = [
                (origin + (x - 8) * spacing, origin + (y - 8) * spacing)
                for x in range(17)
                for y in range(17)
            ]
            for step in (-math.inf, math.inf, -math.inf, 0):
                for view in ghosts.values():
                    view["x"] = math.nextafter(round(view["x"] / size) * size, step)
                    view["y"] = math.nextafter(round(view["y"] / size) * size, -step)
                aoi.fill({}, ghosts, published, set(), (0, 0, 0, 0), PLAYER, pure_kernel.record)
                entries = [(gid, v["x"], v["y"]) for gid, v in ghosts.items()]
                for x, y in observers:
                    seen = set(aoi.visible(x, y))
                    self.assertEqual(seen, _brute_visible(entries, x, y, radius * radius))

    def test_fill_reads_attributes_as_python_does(self):
        """
        Reals of the entity class, of a subclass whose kind is a property,
        and of a class of its own (attributes in its dict), one after the
        other in one fill: each is read as its attribute look-up says, and
        walked by the NPCs' step; an attribute missing raises
        AttributeError.
        """

        class Told(Entity):
            __slots__ = ()

            @property
            def kind(self):
                return PLAYER

            @kind.setter
            def kind(self, value):
                pass

        class Plain:
            def __init__(self, **fields):
                self.__dict__.update(fields)

        reals = {
            "a": Entity("a", PLAYER, 1.0, 2.0, session="s1", gateway="g"),
            "b": Told("b", "npc", 3.0, 4.0, name="bee", session="s2", gateway="g"),
            "c": Plain(kind="npc", x=5.0, y=6.0, name="c", attrs={"hp": 3}),
            "d": Entity("d", PLAYER, 7.0, 8.0, session="s4", gateway="g"),
        }
        reals["c"].session = reals["c"].gateway = None
        aoi = self.area(10)
        published: dict = {}
        changed, observers, _ = aoi.fill(
            reals, {}, published, set(), (0, 0, 0, 0), PLAYER, pure_kernel.record
        )
        self.assertEqual([o[0] for o in observers], ["a", "b", "d"])
        self.assertEqual(
            {k: v[:4] for k, v in published.items()},
            {
                "a": [1.0, 2.0, "", {}],
                "b": [3.0, 4.0, "bee", {}],
                "c": [5.0, 6.0, "c", {"hp": 3}],
                "d": [7.0, 8.0, "", {}],
            },
        )
        walks = {eid: [0.6, 0.8, 99.0] for eid in reals}
        aoi.kernel.wander(walks, reals, {"d"}, 0.0, 0.5, (0.0, 100.0, 0.0, 100.0), None)
        self.assertEqual(
            [(e.x, e.y) for e in reals.values()],
            [(1.3, 2.4), (3.3, 4.4), (5.3, 6.4), (7.0, 8.0)],
        )
        missing = Entity("e", "npc", 1.0, 1.0)
        del missing.name
        self.assertRaises(
            AttributeError,
            aoi.fill,
            {"e": missing},
            {},
            published,
            set(),
            (0, 0, 0, 0),
            PLAYER,
            pure_kernel.record,
        )

    def test_fill_reads_slots_of_subclasses(self):
        """
        Entities of the entity class and of subclasses with slots of their
        own, one after the other: each read and walked in its own slots,
        whichever class came before it; the old positions let go.
        """

        class Tagged(Entity):
            __slots__ = ("tag",)

        class Wide(Tagged):
            __slots__ = ("more", "others")

        def tagged(cls, eid, x, y):
            entity = cls(eid, PLAYER, x, y, name=eid.upper(), session="s", gateway="g")
            entity.tag = "t"
            return entity

        reals = {
            "a": Entity("a", "npc", 1.0, 2.0, name="A"),
            "b": tagged(Tagged, "b", 3.0, 4.0),
            "c": Entity("c", "npc", 5.0, 6.0, name="C"),
            "d": tagged(Wide, "d", float("7"), 8.0),
            "e": tagged(Tagged, "e", 9.0, 10.0),
        }
        aoi = self.area(10)
        published: dict = {}
        _, observers, _ = aoi.fill(
            reals, {}, published, set(), (0, 0, 0, 0), PLAYER, pure_kernel.record
        )
        self.assertEqual([o[0] for o in observers], ["b", "d", "e"])
        self.assertEqual(
            {k: v[:3] for k, v in published.items()},
            {e.id: [e.x, e.y, e.id.upper()] for e in reals.values()},
        )
        walks = {eid: [0.6, 0.8, 99.0] for eid in reals}
        old = reals["d"].x
        held = sys.getrefcount(old)
        aoi.kernel.wander(walks, reals, set(), 0.0, 0.5, (0.0, 100.0, 0.0, 100.0), None)
        self.assertEqual(
            [(e.x, e.y, getattr(e, "tag", None)) for e in reals.values()],
            [
                (1.3, 2.4, None),
                (3.3, 4.4, "t"),
                (5.3, 6.4, None),
                (7.3, 8.4, "t"),
                (9.3, 10.4, "t"),
            ],
        )
        # The entity let its old position go.
        self.assertEqual(sys.getrefcount(old), held - 1)

    def test_not_a_number(self):
        """
        A position that is not a finite number is refused (ValueError), as
        Python's arithmetic refuses it, by either kernel: looked at from, or
        put in the grid.
        """
        aoi = self.area(10)
        aoi.build([("a", 1.0, 1.0)])
        for bad in (math.nan, math.inf, -math.inf):
            self.assertRaises(ValueError, aoi.visible, bad, 1.0)
            self.assertRaises(ValueError, aoi.visible, 1.0, bad)
            self.assertRaises(
                (ValueError, OverflowError),
                aoi.fill,
                {},
                {"g": {"x": bad, "y": 1.0}},
                {},
                set(),
                (0, 0, 0, 0),
                PLAYER,
                pure_kernel.record,
            )

    @settings(max_examples=60, deadline=None, suppress_health_check=ONE_TEST_PER_KERNEL)
    @given(
        radius=st.sampled_from([1.0, 7.3, 50.0, 100.0 / 3]),
        # 1e7 and -1e7: cells past what C integers hold, with radius 1.
        origin=st.sampled_from([0.0, -1000.0, 1e6, 1e7, -1e7]),
        seed=st.integers(0, 2**32 - 1),
    )
    def test_visible_matches_brute_force(self, radius, origin, seed):
        rng = random.Random(seed)
        aoi = self.area(radius)
        span = radius * 6
        entries = [
            (f"e{i}", origin + rng.uniform(0, span), origin + rng.uniform(0, span))
            for i in range(150)
        ]
        aoi.build(entries)
        r2 = radius * radius
        for x, y in [
            (origin + rng.uniform(0, span), origin + rng.uniform(0, span)) for _ in range(20)
        ]:
            seen = aoi.visible(x, y)
            self.assertEqual(len(seen), len(set(seen)))
            self.assertEqual(set(seen), _brute_visible(entries, x, y, r2))


class Reference:
    """
    The brute-force area of interest: every pair checked, views as sets, by
    the rules of C{world.update} (docs/world.md).
    """

    def __init__(self, radius):
        self.r2 = radius * radius
        self.known: dict[str, set] = {}
        self.refresh: set[str] = set()

    def diff(self, observer, x, y, entries, changed):
        visible = _brute_visible(entries, x, y, self.r2)
        known = self.known.get(observer)
        self.known[observer] = visible
        if not known:
            self.refresh.discard(observer)
            return visible, set(), set()
        if observer in self.refresh:
            self.refresh.discard(observer)
            update = visible & known
        else:
            update = visible & known & changed.keys()
        return visible - known, update, known - visible

    def seed(self, observer, ids):
        self.known[observer] = set(ids)
        self.refresh.add(observer)

    def forget(self, observer):
        self.known.pop(observer, None)
        self.refresh.discard(observer)


class LazyUpdates(dict):
    """Update entries built on first use, as the publication's are; counts them."""

    def __init__(self, positions):
        super().__init__()
        self.positions = positions
        self.built: set[str] = set()

    def __missing__(self, eid):
        if eid in self.built:
            raise AssertionError(f"{eid} built twice")
        self.built.add(eid)
        entry = self[eid] = {"id": eid, "x": self.positions[eid][0]}
        return entry


def churn(test, aoi, seed, reference=None) -> list:
    """
    A grid kept from tick to tick whose entities go and come back (the
    same ids, as new strings and new entries: meanwhile, the compiled
    kernel gives their slots to others), and observers that look only now
    and then (as frozen players do) or are handed a view: every diff's
    results and the view after it, each checked against the brute-force
    C{reference}'s if given.
    """
    rng = random.Random(seed)
    span = aoi.radius * 3
    positions = {f"e{i}": [rng.uniform(0, span), rng.uniform(0, span)] for i in range(80)}
    away: dict[int, list] = {}
    observers = ["e0", "e1", "e2", "e3"]
    published: dict = {}
    serial = 0
    out = []
    for tick in range(20):
        changed = {}
        for eid in list(positions):
            roll = rng.random()
            if roll < 0.15 and eid not in observers:
                away[int(eid[1:])] = positions.pop(eid)
            elif roll < 0.6:
                positions[eid][0] += rng.uniform(-3, 3)
                positions[eid][1] += rng.uniform(-3, 3)
                changed[eid] = 1
        for number in list(away):
            if rng.random() < 0.3:
                positions[f"e{number}"] = away.pop(number)
        for _ in range(rng.randrange(4)):
            serial += 1
            positions[f"n{serial}"] = [rng.uniform(0, span), rng.uniform(0, span)]
        ghosts = {eid: {"x": x, "y": y} for eid, (x, y) in positions.items()}
        aoi.fill({}, ghosts, published, set(), (0, 0, 0, 0), PLAYER, pure_kernel.record)
        entries = [(eid, x, y) for eid, (x, y) in positions.items()]
        updates = {eid: {"id": eid} for eid in changed}
        for observer in observers:
            roll = rng.random()
            if roll < 0.4:
                continue
            if roll < 0.5:
                ids = rng.sample(sorted(positions), 5) + [f"e{rng.randrange(80)}", "elsewhere"]
                aoi.seed(observer, ids)
                if reference is not None:
                    reference.seed(observer, ids)
            x, y = positions[observer]
            enter, update, leave = aoi.diff(
                observer, x, y, changed, updates, lambda e: {"id": e, "full": True}
            )
            out.append((tick, observer, enter, update, leave, list(aoi.known[observer])))
            if reference is not None:
                want_enter, want_update, want_leave = reference.diff(
                    observer, x, y, entries, changed
                )
                test.assertEqual({e["id"] for e in enter}, want_enter)
                test.assertEqual({e["id"] for e in update}, want_update)
                test.assertEqual(set(leave), want_leave)
                test.assertEqual(len(leave), len(set(leave)))
                test.assertEqual(set(aoi.known[observer]), reference.known[observer])
    return out


class RandomWalkTests:
    """
    Random walks (small steps, jumps, arrivals and departures, in a grid
    kept from tick to tick; observers seeded with a view, forgotten,
    started over): every observer's
    enter / update / leave equal the brute-force reference's, with no id
    twice, the entries those of the entity, and the known views equal.
    """

    @settings(max_examples=40, deadline=None, suppress_health_check=ONE_TEST_PER_KERNEL)
    @given(
        seed=st.integers(0, 2**32 - 1),
        radius=st.sampled_from([5.0, 12.5, 50.0]),
        count=st.integers(1, 120),
    )
    def test_matches_reference(self, seed, radius, count):
        rng = random.Random(seed)
        aoi = self.area(radius)
        reference = Reference(radius)
        span = radius * 5
        positions = {
            f"e{i}": [rng.uniform(-span, span), rng.uniform(-span, span)] for i in range(count)
        }
        serial = count
        published = {}
        observers = [eid for eid in positions if rng.random() < 0.3] or [next(iter(positions))]

        def view(eid):
            return {"id": eid, "full": True}

        for _tick in range(12):
            changed = {}
            for eid, pos in list(positions.items()):
                roll = rng.random()
                if roll < 0.05:
                    pos[0], pos[1] = rng.uniform(-span, span), rng.uniform(-span, span)
                    changed[eid] = 1
                elif roll < 0.08 and eid not in observers:
                    del positions[eid]
                elif roll < 0.7:
                    pos[0] += rng.uniform(-radius / 4, radius / 4)
                    pos[1] += rng.uniform(-radius / 4, radius / 4)
                    changed[eid] = 1
            for _ in range(rng.randrange(3)):
                serial += 1
                positions[f"e{serial}"] = [rng.uniform(-span, span), rng.uniform(-span, span)]
            for observer in observers:
                roll = rng.random()
                if roll < 0.05:
                    ids = [eid for eid in positions if rng.random() < 0.2] + ["elsewhere"]
                    aoi.seed(observer, ids)
                    reference.seed(observer, ids)
                elif roll < 0.1:
                    aoi.forget(observer)
                    reference.forget(observer)
            entries = [(eid, pos[0], pos[1]) for eid, pos in positions.items()]
            # The grid kept from tick to tick, as a zone's: what moved,
            # came and went (as ghosts: views, no entities).
            ghosts = {eid: {"x": x, "y": y} for eid, x, y in entries}
            aoi.fill({}, ghosts, published, set(), (0, 0, 0, 0), PLAYER, pure_kernel.record)
            updates = LazyUpdates(positions)
            reported = set()

            for observer in observers:
                x, y = positions[observer]
                enter, update, leave = aoi.diff(observer, x, y, changed, updates, view)
                want_enter, want_update, want_leave = reference.diff(
                    observer, x, y, entries, changed
                )
                for got in (enter, update):
                    self.assertEqual(len(got), len({e["id"] for e in got}))
                self.assertEqual(len(leave), len(set(leave)))
                self.assertEqual({e["id"] for e in enter}, want_enter)
                self.assertEqual({e["id"] for e in update}, want_update)
                self.assertEqual(set(leave), want_leave)
                self.assertTrue(all(e.get("full") for e in enter))
                refreshed = [e for e in update if e.get("full")]
                if refreshed:
                    self.assertEqual(len(refreshed), len(update))
                else:
                    self.assertEqual(update, [updates[e["id"]] for e in update])
                    reported.update(e["id"] for e in update)
                self.assertEqual(set(aoi.known[observer]), reference.known[observer])
            # Each entry built once, and only those of what someone saw change.
            self.assertEqual(updates.built, reported)

    @settings(max_examples=30, deadline=None, suppress_health_check=ONE_TEST_PER_KERNEL)
    @given(seed=st.integers(0, 2**32 - 1), radius=st.sampled_from([4.0, 10.0, 40.0]))
    def test_coming_back_while_not_looking(self, seed, radius):
        """
        An entity that left the grid and came back (a new entry) is still
        in the view of an observer that did not look meanwhile, and one
        that came in its place is not; views handed over are diffed by id.
        """
        churn(self, self.area(radius), seed, Reference(radius))

    def test_diffs_are_each_diff(self):
        """
        L{AreaOfInterest.diffs} does each observer's L{AreaOfInterest.diff},
        in the grid's order, and gives them in the observers' own.
        """
        rng = random.Random(9)
        positions = {f"e{i}": (rng.uniform(0, 80), rng.uniform(0, 80)) for i in range(300)}
        ghosts = {eid: {"x": x, "y": y} for eid, (x, y) in positions.items()}
        observers = [(eid, *positions[eid]) for eid in list(positions)[:40]]
        one, many = self.area(10), self.area(10)
        for aoi in (one, many):
            aoi.fill({}, ghosts, {}, set(), (0, 0, 0, 0), PLAYER, pure_kernel.record)
            aoi.seed("e3", ["e4", "elsewhere"])

        def view(eid):
            return {"id": eid}

        want = [None] * len(observers)
        for index in one.grid_order(observers):
            eid, x, y = observers[index]
            want[index] = one.diff(eid, x, y, {}, {}, view)
        self.assertEqual(many.diffs(observers, {}, {}, view), want)
        self.assertEqual(
            {k: list(v) for k, v in many.known.items()}, {k: list(v) for k, v in one.known.items()}
        )

    def test_views_asked_once(self):
        """
        L{AreaOfInterest.diffs} asks for an entity's full view once, however
        many observers it enters for or is refreshed for, and gives each of
        them that view.
        """
        rng = random.Random(4)
        positions = {f"e{i}": (rng.uniform(0, 40), rng.uniform(0, 40)) for i in range(200)}
        ghosts = {eid: {"x": x, "y": y} for eid, (x, y) in positions.items()}
        observers = [(eid, *positions[eid]) for eid in list(positions)[:60]]
        aoi = self.area(10)
        aoi.fill({}, ghosts, {}, set(), (0, 0, 0, 0), PLAYER, pure_kernel.record)
        # Handed a view: what it keeps seeing is refreshed in full.
        aoi.seed("e5", list(positions)[:100])
        asked = []

        def view(eid):
            asked.append(eid)
            return {"id": eid}

        shown = aoi.diffs(observers, {}, {}, view)
        given = [e for enter, update, _ in shown for e in enter + update]
        self.assertGreater(len(given), 2 * len(set(asked)))
        self.assertEqual(sorted(asked), sorted({e["id"] for e in given}))
        first: dict[str, dict] = {}
        for e in given:
            self.assertIs(first.setdefault(e["id"], e), e)

    def test_same_walk_same_order(self):
        """A seeded walk replays in the same order (the grid's, not a set's)."""

        def run():
            rng = random.Random(5)
            aoi = self.area(10)
            positions = {f"e{i}": [rng.uniform(0, 60), rng.uniform(0, 60)] for i in range(200)}
            out = []
            for _ in range(5):
                for pos in positions.values():
                    pos[0] += rng.uniform(-3, 3)
                    pos[1] += rng.uniform(-3, 3)
                aoi.build([(eid, p[0], p[1]) for eid, p in positions.items()])
                changed = dict.fromkeys(positions, 1)
                for observer in ("e0", "e1", "e2"):
                    x, y = positions[observer]
                    out.append(
                        aoi.diff(
                            observer, x, y, changed, LazyUpdates(positions), lambda e: {"id": e}
                        )
                    )
            return out

        self.assertEqual(run(), run())


class PureVisibleTests(PureKernel, VisibleTests, unittest.TestCase):
    pass


class CompiledVisibleTests(CompiledKernel, VisibleTests, unittest.TestCase):
    pass


class PureRandomWalkTests(PureKernel, RandomWalkTests, unittest.TestCase):
    pass


class CompiledRandomWalkTests(CompiledKernel, RandomWalkTests, unittest.TestCase):
    pass


class KernelsAgreeTests(unittest.TestCase):
    """The compiled kernel is the pure one, faster: the same ticks, to the order."""

    def run_zone(self, kernel) -> list:
        """
        A seeded zone's ticks on C{kernel}: players walking (some across
        the border), NPCs, ghosts coming and going, a renamed entity, a
        player starting over and one handed a view; everything each tick
        showed.
        """
        self.patch(aoi_module, "KERNEL", kernel)
        values = {"columns": 2, "rows": 2, "zones": ["zone-1"] * 4, "npcs": 0, "max_speed": 200}
        zone = Zone({**values, "aoi_radius": 30}, seed=7)
        sim = zone.sim
        rng = random.Random(11)
        players = []
        for i in range(12):
            player = Entity(
                id=f"p{i}",
                kind=PLAYER,
                x=rng.uniform(440, 500),
                y=rng.uniform(200, 300),
                session=f"s{i}",
                gateway=f"g{i % 2}",
            )
            sim.add(player, reset=i == 3)
            players.append(player)
        sim.spawn_npcs(600)
        out = []
        for tick in range(40):
            for seq, player in enumerate(players):
                send(
                    sim,
                    player,
                    tick * 100 + seq,
                    player.x + rng.uniform(-6, 6),
                    player.y + rng.uniform(-6, 6),
                )
            sim.set_ghosts(
                "r0c1",
                [
                    {"id": f"ghost-{i}", "kind": "npc", "x": 501.0 + i, "y": 200.0 + tick}
                    for i in range(tick % 7)
                ]
                # One that stays put: in view, unchanged; one whose
                # attributes change now and then.
                + [
                    {"id": "still", "kind": "npc", "x": 501.0, "y": 250.0},
                    {
                        "id": "armed",
                        "kind": "npc",
                        "x": 502.0,
                        "y": 251.0,
                        "name": "armed",
                        "attrs": {"hp": tick // 10},
                    },
                ],
            )
            if tick == 10:
                sim.reals["p1"].name = "renamed"
                sim.reals["p2"].attrs = {"hp": 3}
            if tick == 20:
                sim.aoi.seed("p4", ["p5", "elsewhere"])
            result = zone.tick(TICK)
            out.append((result.pushes, result.crossings, result.ghost_views, sorted(sim.aoi.known)))
            out.append([list(sim.aoi.known[k]) for k in sorted(sim.aoi.known)])
        return out

    def test_same_ticks(self):
        self.assertEqual(self.run_zone(pure_kernel), self.run_zone(compiled_kernel()))

    def test_same_churn(self):
        """
        Entities going and coming back under observers that look now and
        then: the same diffs and views, to the order, on both kernels.
        """
        for seed in range(5):
            self.assertEqual(
                churn(self, AreaOfInterest(8.0, pure_kernel), seed),
                churn(self, AreaOfInterest(8.0, compiled_kernel()), seed),
            )

    def test_same_walks(self):
        """The NPCs walk the same on both kernels: turns, edges, frozen ones."""

        def run(kernel) -> list:
            rng = random.Random(3)
            walks = {
                f"n{i}": [rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(0, 2)]
                for i in range(200)
            }
            reals = {
                eid: Entity(id=eid, kind="npc", x=rng.uniform(0, 10), y=rng.uniform(0, 10))
                for eid in walks
            }
            turns = random.Random(4)
            out = []
            for tick in range(30):
                now = tick * 0.1
                kernel.wander(
                    walks,
                    reals,
                    {"n0"},
                    now,
                    0.7,
                    (0.0, 9.9, 0.0, 9.9),
                    lambda now=now: [turns.uniform(-1, 1), turns.uniform(-1, 1), now + 1],
                )
                out.append([(type(e.x), e.x, e.y) for e in reals.values()])
            out.append(walks)
            return out

        self.assertEqual(run(pure_kernel), run(compiled_kernel()))

    def test_same_outer(self):
        """
        The reals outside a box, on both kernels: alone (a tick between
        updates) as the fill lists them (an update tick), in the reals'
        order, edges inside; alone, a position that is not a number
        outside.
        """

        def run(kernel) -> list:
            rng = random.Random(5)
            reals = {
                f"e{i}": Entity(
                    id=f"e{i}", kind="npc", x=rng.uniform(0, 100), y=rng.uniform(0, 100)
                )
                for i in range(300)
            }
            reals["edge"] = Entity(id="edge", kind="npc", x=10.0, y=90.0)
            inner = (10.0, 10.0, 90.0, 90.0)
            alone = kernel.outer(reals, inner)
            grid = AreaOfInterest(8.0, kernel)._grid
            _, _, filled = kernel.fill(
                grid, reals, {}, {}, set(), inner, PLAYER, pure_kernel.record
            )
            self.assertEqual(alone, filled)
            self.assertNotIn("edge", [o[0] for o in alone])
            lost = {"nan": Entity(id="nan", kind="npc", x=math.nan, y=50.0)}
            self.assertEqual([o[0] for o in kernel.outer(lost, inner)], ["nan"])
            return [(o[0], o[1], o[2], o[3].id) for o in alone]

        outer = run(pure_kernel)
        self.assertGreater(len(outer), 50)
        self.assertEqual(outer, run(compiled_kernel()))
