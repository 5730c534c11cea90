"""
Tests for the zone simulation: the C{[world]} config, the world map, areas
of interest, movement input, crossings, ghost views, NPCs and the ticker.

Everything runs on a L{task.Clock} with seeded random generators: no real
time, no timed assertions.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from itertools import pairwise

from twisted.internet import task
from twisted.trial import unittest

from mmo import config
from mmo.client import WorldView
from mmo.config import ConfigError, WorldSection
from mmo.zone.aoi import AreaOfInterest
from mmo.zone.entity import NPC, PLAYER, Entity
from mmo.zone.publication import inner_box
from mmo.zone.simulation import Input, ZoneSimulation, parse_input
from mmo.zone.ticker import Ticker
from mmo.zone.world import Region, WorldMap, client_world
from tests.support import write_config

PROCESSES = """
[processes.mmo]
kind = "mmo"
client = "tcp:7000:interface=127.0.0.1"

[processes.zone-1]
kind = "zone"

[processes.zone-2]
kind = "zone"

[processes.login]
kind = "login"
client = "tcp:7001:interface=127.0.0.1"
"""

TICK = 0.05


def world(**values) -> WorldSection:
    """A C{[world]} section read from C{values}."""
    return WorldSection(values, ("world",))


def player(entity_id: str, x: float, y: float, gateway: str = "gw-1") -> Entity:
    """A player with a session on C{gateway}."""
    return Entity(
        entity_id, PLAYER, x, y, name=entity_id, session=f"s-{entity_id}", gateway=gateway
    )


#: zone.move payloads that are malformed, floats and not.
MALFORMED_MOVES = [
    None,
    [1, 2],
    {"x": 1},
    {"x": "a", "y": 1},
    {"x": True, "y": 1},
    {"x": 1, "y": math.nan},
    {"x": 1, "y": math.inf},
    {"x": 1.0, "y": math.nan},
    {"x": math.inf, "y": 2.0},
    {"x": -math.inf, "y": 2.0},
    {"x": math.nan, "y": math.nan},
]


class Zone:
    """A simulation on a fake clock, and helpers to drive it."""

    def __init__(self, values=None, region="r0c0", seed=1, cls=ZoneSimulation, conf=None):
        self.conf = conf if conf is not None else world(**(values or {}))
        self.map = WorldMap.from_config(self.conf)
        self.clock = task.Clock()
        self.sim = cls(self.map, region, self.conf, self.clock, rng=random.Random(seed))

    def tick(self, dt: float = TICK):
        self.clock.advance(dt)
        return self.sim.tick()


def send(sim, entity: Entity, seq: int, x: float, y: float, extra=None) -> bool:
    """
    The input C{seq} of C{entity}'s player, as the zone's handoff gives it
    to the simulation: applied now, then counted in C{last_input}.
    Whether it was applied.
    """
    payload = {"x": x, "y": y} if extra is None else {"x": x, "y": y, "extra": extra}
    applied = sim.input(entity, seq, payload)
    entity.last_input = seq
    return applied


def events_of(result, entity: Entity) -> dict:
    """The events of C{entity}'s session in C{result}, by kind."""
    events = result.pushes.get(entity.gateway, {}).get(entity.session, [])
    kinds = [kind for kind, _fields in events]
    assert len(kinds) == len(set(kinds)), f"several events of one kind: {kinds}"
    return dict(events)


def ids(views) -> set:
    return {view["id"] for view in views}


# -- config ---------------------------------------------------------------------------


class WorldConfigTests(unittest.TestCase):
    def load(self, world_text: str):
        return config.load(write_config(self, PROCESSES + world_text))

    def assertConfigError(self, world_text: str, key: str, *fragments: str) -> str:
        """Loading a file with C{world_text} fails naming the file, C{key} and C{fragments}."""
        path = write_config(self, PROCESSES + world_text)
        error = self.assertRaises(ConfigError, config.load, path)
        message = str(error)
        self.assertTrue(message.startswith(f"{path}: {key}: "), message)
        for fragment in fragments:
            self.assertIn(fragment, message)
        return message

    def test_defaults(self):
        """Without [world]: one region over a 1000 x 1000 map, served by 'mmo'."""
        conf = self.load("")
        w = conf.world
        self.assertEqual(w.layout, [("r0c0", 0.0, 0.0, 1000.0, 1000.0, "mmo")])
        self.assertEqual(w.tick_rate, 20.0)
        self.assertEqual(w.spawn, (500.0, 500.0))
        self.assertEqual(w.npcs, 10)
        self.assertLessEqual(w.aoi_radius, w.ghost_margin)

    def test_grid(self):
        """Grid cells are named r<row>c<column>, row-major from y = 0."""
        conf = self.load(
            "[world]\nwidth = 200\nheight = 100\ncolumns = 2\nrows = 2\n"
            'zones = ["zone-1", "zone-2", "zone-2", "zone-1"]\nspawn = [10, 20]\n'
            "aoi_radius = 10\nghost_margin = 20\n"
        )
        self.assertEqual(
            conf.world.layout,
            [
                ("r0c0", 0.0, 0.0, 100.0, 50.0, "zone-1"),
                ("r0c1", 100.0, 0.0, 200.0, 50.0, "zone-2"),
                ("r1c0", 0.0, 50.0, 100.0, 100.0, "zone-2"),
                ("r1c1", 100.0, 50.0, 200.0, 100.0, "zone-1"),
            ],
        )
        self.assertEqual(conf.world.spawn, (10.0, 20.0))

    def test_grid_zone_count(self):
        self.assertConfigError(
            '[world]\ncolumns = 2\nrows = 2\nzones = ["zone-1", "zone-2", "zone-1"]\n',
            "world.zones",
            "needs 4 zone names, got 3",
        )

    def test_bad_grid(self):
        self.assertConfigError("[world]\ncolumns = 0\n", "world.columns", "at least 1")
        self.assertConfigError('[world]\nzones = ["Zone 1"]\n', "world.zones", "process name")

    def test_regions(self):
        conf = self.load(
            "[world]\nwidth = 300\nheight = 100\n"
            '[world.regions.west]\nx0 = 0\ny0 = 0\nx1 = 100\ny1 = 100\nprocess = "zone-1"\n'
            '[world.regions.east]\nx0 = 100\ny0 = 0\nx1 = 300\ny1 = 100\nprocess = "zone-2"\n'
        )
        self.assertEqual(
            conf.world.layout,
            [
                ("west", 0.0, 0.0, 100.0, 100.0, "zone-1"),
                ("east", 100.0, 0.0, 300.0, 100.0, "zone-2"),
            ],
        )

    def test_gap(self):
        """A gap is named, with where it is."""
        self.assertConfigError(
            "[world]\nwidth = 300\nheight = 100\n"
            '[world.regions.west]\nx0 = 0\ny0 = 0\nx1 = 100\ny1 = 100\nprocess = "zone-1"\n'
            '[world.regions.east]\nx0 = 120\ny0 = 0\nx1 = 300\ny1 = 100\nprocess = "zone-2"\n',
            "world.regions",
            "gap",
            "(100, 0)-(120, 100)",
        )

    def test_overlap(self):
        self.assertConfigError(
            "[world]\nwidth = 300\nheight = 100\n"
            '[world.regions.west]\nx0 = 0\ny0 = 0\nx1 = 150\ny1 = 100\nprocess = "zone-1"\n'
            '[world.regions.east]\nx0 = 100\ny0 = 0\nx1 = 300\ny1 = 100\nprocess = "zone-2"\n',
            "world.regions.east",
            "overlaps world.regions.west",
            "(100, 0)-(150, 100)",
        )

    def test_overlap_with_equal_total_area(self):
        """An overlap is found even where it makes up for a gap of the same area."""
        self.assertConfigError(
            "[world]\nwidth = 200\nheight = 100\n"
            '[world.regions.a]\nx0 = 0\ny0 = 0\nx1 = 100\ny1 = 100\nprocess = "zone-1"\n'
            '[world.regions.b]\nx0 = 50\ny0 = 0\nx1 = 150\ny1 = 100\nprocess = "zone-2"\n',
            "world.regions.b",
            "overlaps world.regions.a",
        )

    def test_region_off_the_map(self):
        self.assertConfigError(
            "[world]\nwidth = 100\nheight = 100\n"
            '[world.regions.a]\nx0 = 0\ny0 = 0\nx1 = 120\ny1 = 100\nprocess = "zone-1"\n',
            "world.regions.a.x1",
            "at most the map's width (100)",
        )

    def test_empty_region(self):
        self.assertConfigError(
            "[world]\nwidth = 100\nheight = 100\n"
            '[world.regions.a]\nx0 = 50\ny0 = 0\nx1 = 50\ny1 = 100\nprocess = "zone-1"\n',
            "world.regions.a.x1",
            "greater than x0",
        )

    def test_region_needs_a_process(self):
        self.assertConfigError(
            "[world]\nwidth = 100\nheight = 100\n"
            "[world.regions.a]\nx0 = 0\ny0 = 0\nx1 = 100\ny1 = 100\n",
            "world.regions.a.process",
            "is required",
        )

    def test_grid_and_regions(self):
        self.assertConfigError(
            "[world]\nwidth = 100\nheight = 100\ncolumns = 2\n"
            '[world.regions.a]\nx0 = 0\ny0 = 0\nx1 = 100\ny1 = 100\nprocess = "zone-1"\n',
            "world.columns",
            "not both",
        )

    def test_ghost_margin_too_big(self):
        self.assertConfigError(
            "[world]\nwidth = 200\nheight = 100\ncolumns = 4\n"
            'zones = ["mmo", "mmo", "mmo", "mmo"]\n'
            "aoi_radius = 30\nghost_margin = 48\nhysteresis = 2\n",
            "world.ghost_margin",
            "smaller than every region's width and height",
            "'r0c0' is 50 x 100",
        )

    def test_aoi_radius_beyond_margin(self):
        self.assertConfigError(
            "[world]\naoi_radius = 70\nghost_margin = 60\n",
            "world.aoi_radius",
            "must not exceed ghost_margin (60)",
        )

    def test_spawn(self):
        self.assertConfigError("[world]\nspawn = [1001, 5]\n", "world.spawn", "outside the map")
        self.assertConfigError('[world]\nspawn = [1, "a"]\n', "world.spawn", "two numbers")
        self.assertConfigError("[world]\nspawn = [1]\n", "world.spawn", "two numbers")

    def test_move_burst(self):
        self.assertConfigError(
            "[world]\nmove_burst = 0.05\n", "world.move_burst", "at least two ticks"
        )

    def test_update_rate(self):
        """A world update every tick unless update_rate says every how many."""
        self.assertEqual(self.load("").world.update_every, 1)
        halved = self.load("[world]\nupdate_rate = 10\n").world
        self.assertEqual(halved.update_every, 2)
        # What clients are told.
        self.assertEqual(client_world(halved)["update_rate"], 10.0)
        self.assertEqual(client_world(self.load("").world)["update_rate"], 20.0)
        self.assertEqual(
            self.load("[world]\ntick_rate = 30\nupdate_rate = 7.5\n").world.update_every, 4
        )
        self.assertEqual(self.load("[world]\nupdate_rate = 20\n").world.update_every, 1)
        for rate in ("7", "40", "0.3"):
            self.assertConfigError(
                f"[world]\nupdate_rate = {rate}\n",
                "world.update_rate",
                "must divide tick_rate (20) into a whole number of ticks",
            )

    def test_unknown_key(self):
        self.assertConfigError("[world]\nwidht = 5\n", "world.widht", "unknown key")

    def test_check_processes(self):
        """Regions must be served by zone (or standalone) processes of the deployment."""
        conf = self.load('[world]\ncolumns = 2\nzones = ["zone-1", "mmo"]\n')
        conf.world.check_processes(conf.processes, conf.file)
        conf = self.load('[world]\ncolumns = 2\nzones = ["zone-1", "zone-9"]\n')
        error = self.assertRaises(
            ConfigError, conf.world.check_processes, conf.processes, conf.file
        )
        self.assertEqual(
            str(error),
            f"{conf.file}: world.zones: region 'r0c1' is served by 'zone-9': "
            "no such process, not a zone",
        )
        conf = self.load(
            "[world]\nwidth = 100\nheight = 100\n"
            '[world.regions.a]\nx0 = 0\ny0 = 0\nx1 = 100\ny1 = 100\nprocess = "login"\n'
        )
        error = self.assertRaises(ConfigError, conf.world.check_processes, conf.processes)
        self.assertEqual(
            str(error),
            "world.regions.a.process: region 'a' is served by 'login': "
            "a 'login' process, not a zone",
        )


# -- the map --------------------------------------------------------------------------


class WorldMapTests(unittest.TestCase):
    def setUp(self):
        self.map = WorldMap.from_config(
            world(
                columns=3,
                rows=3,
                zones=["mmo"] * 9,
                width=300,
                height=300,
                aoi_radius=20,
                ghost_margin=30,
            )
        )

    def test_region_at(self):
        m = self.map
        self.assertEqual(m.region_at(50, 50).name, "r0c0")
        self.assertEqual(m.region_at(150, 250).name, "r2c1")
        # A border belongs to the region that starts there.
        self.assertEqual(m.region_at(100, 50).name, "r0c1")
        self.assertEqual(m.region_at(math.nextafter(100, 0), 50).name, "r0c0")
        self.assertEqual(m.region_at(100, 100).name, "r1c1")
        # The map's own edges belong to the regions along them.
        self.assertEqual(m.region_at(0, 0).name, "r0c0")
        self.assertEqual(m.region_at(300, 300).name, "r2c2")
        self.assertEqual(m.region_at(300, 0).name, "r0c2")
        self.assertIsNone(m.region_at(-0.001, 5))
        self.assertIsNone(m.region_at(5, 300.001))

    def test_in_bounds(self):
        self.assertTrue(self.map.in_bounds(0, 300))
        self.assertFalse(self.map.in_bounds(300.5, 10))
        self.assertFalse(self.map.in_bounds(10, -1))

    def test_neighbours(self):
        m = self.map
        self.assertEqual(len(m.neighbours("r1c1")), 8)
        self.assertEqual({r.name for r in m.neighbours("r0c0")}, {"r0c1", "r1c0", "r1c1"})
        self.assertEqual(len(m.neighbours(m.region("r0c1"))), 5)

    def test_distance_to_region(self):
        m = self.map
        self.assertEqual(m.distance_to_region("r1c1", 150, 150), 0)
        self.assertEqual(m.distance_to_region("r1c1", 100, 150), 0)
        self.assertEqual(m.distance_to_region("r1c1", 90, 150), 10)
        self.assertAlmostEqual(m.distance_to_region("r1c1", 97, 96), 5)

    def test_regions_within(self):
        m = self.map
        near = m.regions_within(95, 95, 10, exclude="r0c0")
        self.assertEqual({r.name for r in near}, {"r0c1", "r1c0", "r1c1"})
        self.assertEqual({r.name for r in m.regions_within(50, 50, 10)}, {"r0c0"})
        self.assertEqual(m.regions_within(50, 50, 10, exclude="r0c0"), [])

    def test_irregular_regions(self):
        """Explicit rectangles: one wide region above two narrow ones."""
        m = WorldMap(
            100,
            100,
            [
                Region("top", 0, 60, 100, 100, "zone-1"),
                Region("left", 0, 0, 30, 60, "zone-2"),
                Region("right", 30, 0, 100, 60, "zone-2"),
            ],
        )
        self.assertEqual(m.region_at(29.9, 59.9).name, "left")
        self.assertEqual(m.region_at(30, 59.9).name, "right")
        self.assertEqual(m.region_at(30, 60).name, "top")
        self.assertEqual({r.name for r in m.neighbours("left")}, {"top", "right"})
        self.assertEqual({r.name for r in m.neighbours("top")}, {"left", "right"})


# -- area of interest -----------------------------------------------------------------


class AreaOfInterestTests(unittest.TestCase):
    """The grid itself: exactly the entities within the radius, across cells."""

    def test_visible_matches_brute_force(self):
        rng = random.Random(3)
        aoi = AreaOfInterest(10)
        entries = [(f"e{i}", rng.uniform(0, 100), rng.uniform(0, 100)) for i in range(400)]
        aoi.build(entries)
        for x, y in [(rng.uniform(0, 100), rng.uniform(0, 100)) for _ in range(50)] + [(0, 0)]:
            expected = {i for i, ex, ey in entries if (ex - x) ** 2 + (ey - y) ** 2 <= 100}
            self.assertEqual(set(aoi.visible(x, y)), expected)

    def test_radius_edge(self):
        aoi = AreaOfInterest(10)
        aoi.build([("on", 10.0, 0.0), ("beyond", 10.001, 0.0), ("far", 25.0, 0.0)])
        self.assertEqual(aoi.visible(0.0, 0.0), ["on"])


class AOIEventTests(unittest.TestCase):
    """enter / update / leave through the simulation, reals and ghosts alike."""

    def setUp(self):
        # NPCs stand still here: the tests move them.
        self.zone = Zone({"columns": 2, "zones": ["zone-1", "zone-2"], "npc_speed": 0})
        self.sim = self.zone.sim
        self.watcher = player("watcher", 200, 500)
        self.sim.add(self.watcher)

    def test_enter_update_leave(self):
        near = Entity("near", NPC, 230, 500, name="near")
        far = Entity("far", NPC, 300, 500, name="far")
        self.sim.add(near)
        self.sim.add(far)
        events = events_of(self.zone.tick(), self.watcher)
        update = events["world.update"]
        # Its own entity is part of a player's view.
        self.assertEqual(ids(update["enter"]), {"watcher", "near"})
        self.assertEqual(update["tick"], 1)
        entered = {v["id"]: v for v in update["enter"]}
        self.assertEqual(entered["near"], near.view())
        self.assertEqual((update["update"], update["leave"]), ([], []))

        # Nothing changed: nothing is pushed.
        self.assertEqual(events_of(self.zone.tick(), self.watcher), {})

        # A move: only what changed, only of what changed.
        near.x = 231
        update = events_of(self.zone.tick(), self.watcher)["world.update"]
        self.assertEqual(update["update"], [{"id": "near", "x": 231, "y": 500}])
        self.assertEqual((update["enter"], update["leave"]), ([], []))

        near.attrs = {"hp": 3}
        update = events_of(self.zone.tick(), self.watcher)["world.update"]
        self.assertEqual(update["update"], [{"id": "near", "attrs": {"hp": 3}}])

        # Out of range, and the far one comes in.
        near.x, far.x = 260, 249
        update = events_of(self.zone.tick(), self.watcher)["world.update"]
        self.assertEqual(update["leave"], ["near"])
        self.assertEqual(ids(update["enter"]), {"far"})
        self.assertEqual(update["update"], [])

        # Removed from the zone: it leaves.
        self.sim.remove("far")
        update = events_of(self.zone.tick(), self.watcher)["world.update"]
        self.assertEqual(update["leave"], ["far"])

    def test_radius_edge(self):
        """Exactly at the radius is in view; just beyond is not."""
        self.sim.add(Entity("on", NPC, 250, 500))
        self.sim.add(Entity("beyond", NPC, 200, 550.001))
        update = events_of(self.zone.tick(), self.watcher)["world.update"]
        self.assertEqual(ids(update["enter"]), {"watcher", "on"})

    def test_real_hides_its_ghost(self):
        """During a handoff an entity may be both: the real is what is seen."""
        self.sim.add(Entity("dup", NPC, 400, 500))
        self.sim.set_ghosts("r0c1", [{"id": "dup", "kind": NPC, "x": 210, "y": 500}])
        update = events_of(self.zone.tick(), self.watcher)["world.update"]
        self.assertEqual([v["id"] for v in update["enter"]], ["watcher"])

    def test_pushed_views_do_not_change_afterwards(self):
        npc = Entity("npc", NPC, 210, 500, attrs={"hp": 1})
        self.sim.add(npc)
        update = events_of(self.zone.tick(), self.watcher)["world.update"]
        npc.attrs["hp"] = 2
        npc.x = 211
        update2 = events_of(self.zone.tick(), self.watcher)["world.update"]
        self.assertEqual({v["id"]: v for v in update["enter"]}["npc"]["attrs"], {"hp": 1})
        self.assertEqual(update2["update"], [{"id": "npc", "x": 211, "y": 500, "attrs": {"hp": 2}}])

    def test_ghosts(self):
        """Ghosts are seen like reals, and leave when their zone stops sending them."""
        watcher = player("edge", 480, 500)
        self.sim.add(watcher)
        ghost = {"id": "other", "kind": PLAYER, "x": 520, "y": 500, "name": "o", "attrs": {}}
        self.sim.set_ghosts("r0c1", [ghost])
        self.assertEqual(self.sim.ghosts, {"other": ghost})
        update = events_of(self.zone.tick(), watcher)["world.update"]
        self.assertEqual(ids(update["enter"]), {"edge", "other"})
        self.assertIn(ghost, update["enter"])

        self.sim.set_ghosts("r0c1", [dict(ghost, x=515)])
        update = events_of(self.zone.tick(), watcher)["world.update"]
        self.assertEqual(update["update"], [{"id": "other", "x": 515, "y": 500}])

        self.sim.set_ghosts("r0c1", [])
        update = events_of(self.zone.tick(), watcher)["world.update"]
        self.assertEqual(update["leave"], ["other"])
        self.assertEqual(self.sim.ghosts, {})

    def test_ghosts_by_id(self):
        """Ghosts given as a dict by id are those; the dict is not kept (its owner changes it)."""
        ghost = {"id": "other", "kind": PLAYER, "x": 520, "y": 500, "name": "o", "attrs": {}}
        by_id = {"other": ghost}
        self.sim.set_ghosts("r0c1", by_id)
        del by_id["other"]
        self.assertEqual(self.sim.ghosts, {"other": ghost})
        self.sim.set_ghosts("r0c1", by_id)
        self.assertEqual(self.sim.ghosts, {})

    def test_own_region_is_not_a_ghost_source(self):
        self.assertRaises(ValueError, self.sim.set_ghosts, "r0c0", [])

    def test_ghost_becomes_real(self):
        """A ghost handed over as a real (same id) neither leaves nor enters again."""
        watcher = player("edge", 480, 500)
        self.sim.add(watcher)
        self.sim.set_ghosts("r0c1", [{"id": "walker", "kind": PLAYER, "x": 504, "y": 500}])
        self.zone.tick()
        self.sim.set_ghosts("r0c1", [])
        self.sim.add(Entity("walker", PLAYER, 499, 500))
        update = events_of(self.zone.tick(), watcher)["world.update"]
        self.assertEqual(update["enter"], [])
        self.assertEqual(update["leave"], [])
        self.assertEqual(update["update"], [{"id": "walker", "x": 499, "y": 500}])

    def test_player_arriving_with_its_view(self):
        """A player handed over with what its client sees gets no second enter."""
        self.sim.add(Entity("npc", NPC, 470, 500))
        self.sim.add(Entity("npc2", NPC, 440, 500))
        arriving = player("arriving", 480, 500)
        self.sim.add(arriving, seen=["arriving", "npc", "gone"])
        update = events_of(self.zone.tick(), arriving)["world.update"]
        self.assertEqual(ids(update["enter"]), {"npc2"})
        self.assertEqual(update["leave"], ["gone"])
        # What it keeps is refreshed in full, once.
        self.assertEqual(ids(update["update"]), {"arriving", "npc"})
        self.assertEqual(events_of(self.zone.tick(), arriving), {})
        self.assertEqual(set(self.sim.seen("arriving")), {"arriving", "npc", "npc2"})

    def test_player_restored_starts_its_view_over(self):
        """
        A player restored after the zone's process ended (its client's view
        unknown) gets one update with reset, entering everything in sight;
        a new client of it (a new session) before that tick gets none.
        """
        self.sim.add(Entity("npc", NPC, 470, 500), reset=True)
        restored = player("restored", 480, 500)
        self.sim.add(restored, reset=True)
        self.assertEqual(self.sim.aoi.restarting, {"restored"})
        update = events_of(self.zone.tick(), restored)["world.update"]
        self.assertIs(update["reset"], True)
        self.assertEqual(ids(update["enter"]), {"restored", "npc"})
        self.assertEqual((update["update"], update["leave"]), ([], []))
        restored.x += 1
        update = events_of(self.zone.tick(), restored)["world.update"]
        self.assertNotIn("reset", update)
        self.assertEqual(update["enter"], [])
        again = player("again", 480, 500)
        self.sim.add(again, reset=True)
        self.sim.new_client("again")
        update = events_of(self.zone.tick(), again)["world.update"]
        self.assertNotIn("reset", update)
        self.assertEqual(ids(update["enter"]), {"restored", "npc", "again"})


class BatchingTests(unittest.TestCase):
    def test_one_entry_per_gateway(self):
        """
        40 players in sight of each other on two gateways: one entry per
        gateway, one world.update per session, whatever the pairs.
        """
        zone = Zone()
        players = [player(f"p{i}", 500 + i % 7, 500 + i // 7, f"gw-{i % 2}") for i in range(40)]
        for p in players:
            zone.sim.add(p)
        zone.sim.spawn_npcs(30)
        for tick in range(3):
            result = zone.tick()
            self.assertEqual(set(result.pushes), {"gw-0", "gw-1"})
            sessions = {s for by_session in result.pushes.values() for s in by_session}
            self.assertEqual(sessions, {p.session for p in players})
            for p in players:
                pushes = result.pushes[p.gateway][p.session]
                self.assertEqual([kind for kind, _ in pushes], ["world.update"])
                fields = pushes[0][1]
                if tick == 0:
                    self.assertEqual(ids(fields["enter"]) >= {q.id for q in players}, True)
            for p in players:
                p.x += 0.1
        # Each moved player's update is one shared object, not one per observer.
        updates = [
            entry
            for by_session in result.pushes.values()
            for events in by_session.values()
            for entry in events[0][1]["update"]
            if entry["id"] == "p0"
        ]
        self.assertEqual(len(updates), 40)
        self.assertTrue(all(entry is updates[0] for entry in updates))

    def test_pushes_in_the_players_order(self):
        """
        Views are worked out cell by cell, but each gateway's entry lists
        its sessions in the order the players came, as ever.
        """
        zone = Zone()
        # Far from each other, and in no cell order.
        places = [(900, 100), (100, 900), (500, 500), (100, 100), (900, 900), (300, 700)]
        players = [player(f"p{i}", x, y) for i, (x, y) in enumerate(places)]
        for p in players:
            zone.sim.add(p)
        self.assertNotEqual(
            zone.sim.aoi.grid_order([(p.id, p.x, p.y) for p in players]), list(range(6))
        )
        for _tick in range(2):
            result = zone.tick()
            self.assertEqual(list(result.pushes["gw-1"]), [p.session for p in players])
            for p in players:
                p.x += 0.1

    def test_no_push_without_session(self):
        zone = Zone()
        offline = Entity("offline", PLAYER, 500, 500)
        zone.sim.add(offline)
        zone.sim.add(player("online", 510, 500))
        result = zone.tick()
        self.assertEqual(list(result.pushes["gw-1"]), ["s-online"])


# -- movement input -------------------------------------------------------------------


class InputTests(unittest.TestCase):
    def setUp(self):
        self.zone = Zone()
        self.sim = self.zone.sim
        self.p = player("p", 500, 500)
        self.sim.add(self.p)
        self.zone.tick()

    def test_applied_at_once(self):
        """An input moves its entity when it comes; the next tick shows it."""
        self.assertTrue(send(self.sim, self.p, 1, 500.3, 500))
        self.assertEqual((self.p.x, self.p.y), (500.3, 500))
        events = events_of(self.zone.tick(), self.p)
        self.assertNotIn("world.correct", events)
        self.assertEqual(events["world.update"]["update"], [{"id": "p", "x": 500.3, "y": 500.0}])

    def test_the_game_gets_each_input(self):
        """apply_input gets every input given, with the game's fields."""
        applied = []

        class Recording(ZoneSimulation):
            def apply_input(self, entity, move):
                applied.append(move)
                return super().apply_input(entity, move)

        zone = Zone(cls=Recording)
        p = player("p", 500, 500)
        zone.sim.add(p)
        send(zone.sim, p, 1, 500.1, 500, extra={"run": True})
        send(zone.sim, p, 2, 500.2, 500)
        self.assertEqual(applied, [Input(1, 500.1, 500.0, {"run": True}), Input(2, 500.2, 500.0)])
        self.assertEqual((p.x, p.last_input), (500.2, 2))

    def test_parse_input(self):
        self.assertEqual(parse_input(3, {"x": 1, "y": 2.5}), Input(3, 1.0, 2.5))
        self.assertEqual(
            parse_input(4, {"x": 1, "y": 2, "extra": {"a": 1}}), Input(4, 1.0, 2.0, {"a": 1})
        )
        for payload in MALFORMED_MOVES:
            self.assertIsNone(parse_input(1, payload), payload)

    def test_malformed_corrected(self):
        """A malformed input is not applied, and corrected."""
        self.assertFalse(self.sim.input(self.p, 1, {"x": 500.1, "y": math.nan}))
        self.p.last_input = 1
        events = events_of(self.zone.tick(), self.p)
        self.assertEqual(events["world.correct"], {"x": 500, "y": 500, "input": 1})
        self.assertEqual((self.p.x, self.p.y), (500, 500))

    def test_malformed_moves_refused(self):
        """
        Without a game's own apply_input, the moves are read without an
        Input made: every malformed payload is refused and corrected there
        too, and numbers of any kind are taken as floats.
        """
        for seq, payload in enumerate(MALFORMED_MOVES, 1):
            self.assertFalse(self.sim.input(self.p, seq, payload), payload)
            self.p.last_input = seq
            events = events_of(self.zone.tick(), self.p)
            self.assertEqual(events["world.correct"], {"x": 500, "y": 500, "input": seq})
        self.assertTrue(self.sim.input(self.p, 50, {"x": 500, "y": 500.5}))
        self.assertEqual((self.p.x, self.p.y), (500.0, 500.5))
        self.assertIs(type(self.p.x), float)

    def test_teleport_refused(self):
        self.assertFalse(send(self.sim, self.p, 1, 600, 500))
        events = events_of(self.zone.tick(), self.p)
        self.assertEqual(events["world.correct"], {"x": 500, "y": 500, "input": 1})
        self.assertEqual((self.p.x, self.p.y, self.p.last_input), (500, 500, 1))
        self.assertNotIn("world.update", events)
        # Once.
        self.assertEqual(events_of(self.zone.tick(), self.p), {})

    def test_off_the_map_refused(self):
        edge = player("edge", 0.1, 500)
        self.sim.add(edge)
        send(self.sim, edge, 1, -0.1, 500)
        events = events_of(self.zone.tick(), edge)
        self.assertEqual(events["world.correct"], {"x": 0.1, "y": 500, "input": 1})
        self.assertEqual(edge.x, 0.1)

    def test_correction_after_accepted_inputs(self):
        """One correction a tick, with the state after the last input."""
        send(self.sim, self.p, 1, 500.2, 500)
        send(self.sim, self.p, 2, 900, 500)
        send(self.sim, self.p, 3, 500.4, 500)
        events = events_of(self.zone.tick(), self.p)
        self.assertEqual(events["world.correct"], {"x": 500.4, "y": 500, "input": 3})

    def test_no_correction_once_removed(self):
        send(self.sim, self.p, 1, 900, 500)
        self.sim.remove("p")
        self.sim.add(self.p)
        self.assertNotIn("world.correct", events_of(self.zone.tick(), self.p))

    def test_full_speed_is_accepted(self):
        """Walking at max_speed, one input a tick, is never corrected."""
        speed = self.zone.conf.max_speed
        for seq in range(1, 201):
            send(self.sim, self.p, seq, 500 + seq * speed * TICK, 500)
            self.assertNotIn("world.correct", events_of(self.zone.tick(), self.p))
        self.assertAlmostEqual(self.p.x, 500 + 200 * speed * TICK)

    def test_late_inputs_are_caught_up(self):
        """Inputs that arrive bunched (network jitter) are accepted."""
        speed = self.zone.conf.max_speed
        seq = 0
        for _round in range(20):
            self.zone.tick()
            self.zone.tick()
            for _ in range(3):
                seq += 1
                send(self.sim, self.p, seq, 500 + seq * speed * TICK, 500)
            self.assertNotIn("world.correct", events_of(self.zone.tick(), self.p))
        self.assertAlmostEqual(self.p.x, 500 + seq * speed * TICK)

    def test_speed_hack_refused(self):
        """Twice the speed limit: corrected, and no faster than the limit overall."""
        conf = self.zone.conf
        corrections = []
        x = self.p.x
        for seq in range(1, 101):
            x += 2 * conf.max_speed * TICK
            send(self.sim, self.p, seq, x, 500)
            events = events_of(self.zone.tick(), self.p)
            if "world.correct" in events:
                correction = events["world.correct"]
                self.assertEqual(correction, {"x": self.p.x, "y": 500, "input": seq})
                corrections.append(correction)
                x = correction["x"]  # the client takes the correction
        self.assertGreater(len(corrections), 10)
        elapsed = 100 * TICK
        limit = conf.max_speed * (1 + conf.speed_tolerance) * (elapsed + conf.move_burst)
        self.assertLessEqual(self.p.x - 500, limit)
        self.assertGreater(self.p.x - 500, conf.max_speed * elapsed * 0.5)


class FreezeTests(unittest.TestCase):
    """A real being offered to a neighbour is kept as it is, but seen."""

    def test_freeze_and_thaw(self):
        class Counting(ZoneSimulation):
            def on_tick(self, entity):
                entity.attrs = {"ticks": entity.attrs.get("ticks", 0) + 1}

        zone = Zone({"columns": 2, "zones": ["zone-1", "zone-2"]}, cls=Counting)
        sim = zone.sim
        p = player("p", 506, 500)  # past the border and the hysteresis
        watcher = player("w", 480, 500)
        (npc,) = sim.spawn_npcs(1)
        for e in (p, watcher):
            sim.add(e)
        self.assertIs(sim.get("p"), p)
        self.assertIsNone(sim.get("nobody"))
        self.assertEqual(len(zone.tick().crossings), 1)

        sim.freeze("p")
        sim.freeze(npc.id)
        where = (npc.x, npc.y)
        result = zone.tick()
        self.assertEqual(result.crossings, [])
        self.assertEqual((p.x, p.attrs), (506, {"ticks": 1}))
        self.assertEqual((npc.x, npc.y), where)
        self.assertIn("p", ids(result.ghost_views["r0c1"]))
        self.assertIn("p", sim.seen("w"))
        # A frozen player sees nothing new: its view went with its offer.
        seen = sim.seen("p")
        sim.add(Entity("newcomer", NPC, 505, 501))
        result = zone.tick()
        self.assertEqual(events_of(result, p), {})
        self.assertIn("newcomer", ids(events_of(result, watcher)["world.update"]["enter"]))
        self.assertEqual(sim.seen("p"), seen)

        sim.thaw("p")
        sim.thaw(npc.id)
        send(sim, p, 1, 506.2, 500)
        result = zone.tick()
        # Undone: this zone goes on from the view the client has.
        self.assertEqual(ids(events_of(result, p)["world.update"]["enter"]), {"newcomer"})
        self.assertEqual((p.x, p.last_input, p.attrs), (506.2, 1, {"ticks": 2}))
        self.assertNotEqual((npc.x, npc.y), where)
        self.assertEqual(len(result.crossings), 1)


class ExtensionTests(unittest.TestCase):
    def test_game_rules(self):
        """apply_input with extra fields, and on_tick, in a subclass."""

        class Game(ZoneSimulation):
            def apply_input(self, entity, move):
                if move.extra and move.extra.get("emote"):
                    entity.attrs = dict(entity.attrs, emote=move.extra["emote"])
                return super().apply_input(entity, move)

            def on_tick(self, entity):
                if entity.kind == PLAYER:
                    entity.attrs = dict(entity.attrs, ticks=entity.attrs.get("ticks", 0) + 1)

        zone = Zone(cls=Game)
        a, b = player("a", 500, 500), player("b", 510, 500)
        zone.sim.add(a)
        zone.sim.add(b)
        zone.tick()
        send(zone.sim, a, 1, 500, 500, extra={"emote": "wave"})
        update = events_of(zone.tick(), b)["world.update"]
        entries = {entry["id"]: entry for entry in update["update"]}
        self.assertEqual(entries["a"], {"id": "a", "attrs": {"ticks": 2, "emote": "wave"}})
        self.assertEqual(entries["b"], {"id": "b", "attrs": {"ticks": 2}})


class UpdateRateTests(unittest.TestCase):
    """
    With C{[world] update_rate}, players are sent what changed every few
    ticks: everything that changed since the last update, nothing between.
    """

    def test_every_other_tick(self):
        zone = Zone({"update_rate": 10, "npc_speed": 0})
        sim = zone.sim
        watcher = player("watcher", 200, 500)
        npc = Entity("npc", NPC, 210, 500)
        sim.add(watcher)
        sim.add(npc)
        self.assertEqual(zone.tick().pushes, {})
        update = events_of(zone.tick(), watcher)["world.update"]
        self.assertEqual(update["tick"], 2)
        self.assertEqual(ids(update["enter"]), {"watcher", "npc"})

        # Moved between two updates, then still: the next one shows it.
        npc.x = 211
        self.assertEqual(zone.tick().pushes, {})
        update = events_of(zone.tick(), watcher)["world.update"]
        self.assertEqual(update["update"], [{"id": "npc", "x": 211, "y": 500}])

        # Gone and back between two updates, elsewhere and renamed: what
        # the client has of it is updated, not entered again.
        sim.remove("npc")
        self.assertEqual(zone.tick().pushes, {})
        sim.add(Entity("npc", NPC, 215, 505, name="back"))
        update = events_of(zone.tick(), watcher)["world.update"]
        self.assertEqual(update["update"], [{"id": "npc", "x": 215, "y": 505, "name": "back"}])
        self.assertEqual((update["enter"], update["leave"]), ([], []))

        sim.remove("npc")
        self.assertEqual(zone.tick().pushes, {})
        update = events_of(zone.tick(), watcher)["world.update"]
        self.assertEqual((update["tick"], update["leave"]), (8, ["npc"]))

    def test_correction_at_the_next_update(self):
        zone = Zone({"update_rate": 10})
        walker = player("walker", 200, 500)
        zone.sim.add(walker)
        zone.tick()
        zone.tick()
        self.assertFalse(send(zone.sim, walker, 1, 900, 500))
        self.assertEqual(zone.tick().pushes, {})
        events = events_of(zone.tick(), walker)
        self.assertEqual(events["world.correct"], {"x": 200, "y": 500, "input": 1})
        zone.tick()
        self.assertEqual(events_of(zone.tick(), walker), {})

    def test_ghosts_and_crossings_every_tick(self):
        """The neighbours and the handoff hear of the border every tick."""
        zone = Zone({"columns": 2, "zones": ["zone-1", "zone-2"], "update_rate": 5})
        near = player("near", 480, 500)
        zone.sim.add(near)
        for _ in range(4):
            result = zone.tick()
            self.assertEqual(ids(result.ghost_views["r0c1"]), {"near"})
        near.x = 520
        result = zone.tick()
        self.assertEqual(result.pushes, {})
        self.assertEqual([(e.id, r.name) for e, r in result.crossings], [("near", "r0c1")])

    def test_clients_hold_what_is_in_view(self):
        """
        Random walks with arrivals, departures, renames and new attributes
        at every tick, ghosts too: at every update, each player's client,
        fed all its pushes, holds exactly the views of what is within its
        radius, and nothing is pushed between two updates.
        """
        for every in (2, 3):
            for seed in range(4):
                self.random_walk(every, seed)

    def random_walk(self, every: int, seed: int) -> None:
        rng = random.Random(seed)
        zone = Zone(
            {"columns": 2, "zones": ["zone-1", "zone-2"], "update_rate": 20 / every},
            seed=seed,
        )
        sim = zone.sim
        radius = zone.conf.aoi_radius

        def somewhere() -> tuple[float, float]:
            # A corner by the border: everyone sees someone, ghosts too.
            return rng.uniform(380, 500), rng.uniform(380, 500)

        players = [player(f"p{i}", *somewhere()) for i in range(5)]
        for p in players:
            sim.add(p)
        clients = {p.session: WorldView() for p in players}
        npcs = [f"n{i}" for i in range(15)]
        ghosts = {}
        for tick in range(1, 60):
            for p in players:
                if rng.random() < 0.5:
                    p.x, p.y = somewhere()
            for npc_id in npcs:
                npc = sim.get(npc_id)
                roll = rng.random()
                if npc is None:
                    if roll < 0.3:
                        sim.add(Entity(npc_id, NPC, *somewhere(), name=f"{npc_id}-{tick}"))
                elif roll < 0.1:
                    sim.remove(npc_id)
                elif roll < 0.2:
                    npc.attrs = {"hp": rng.randrange(3)}
                elif roll < 0.25:
                    npc.name = rng.choice(("a", "b"))
                elif roll < 0.6:
                    npc.x, npc.y = somewhere()
            for g in range(8):
                ghost_id = rng.choice((f"g{g}", npcs[g]))
                if rng.random() < 0.3:
                    ghosts.pop(ghost_id, None)
                elif rng.random() < 0.5:
                    x, y = somewhere()
                    ghosts[ghost_id] = {
                        "id": ghost_id,
                        "kind": NPC,
                        "x": x + 100,
                        "y": y,
                        "name": ghost_id,
                        "attrs": {"g": tick},
                    }
            sim.set_ghosts("r0c1", list(ghosts.values()))
            result = zone.tick()
            if tick % every:
                self.assertEqual(result.pushes, {}, (every, seed, tick))
                continue
            for session, events in result.pushes.get("gw-1", {}).items():
                for kind, fields in events:
                    self.assertEqual(kind, "world.update")
                    clients[session].apply(fields)
            everything = {**sim.ghosts, **{i: e.view() for i, e in sim.reals.items()}}
            for p in players:
                expected = {
                    i: view
                    for i, view in everything.items()
                    if (view["x"] - p.x) ** 2 + (view["y"] - p.y) ** 2 <= radius * radius
                }
                self.assertEqual(clients[p.session].entities, expected, (every, seed, tick, p.id))


# -- borders --------------------------------------------------------------------------


class BorderTests(unittest.TestCase):
    """A 2 x 2 map of 500 x 500 regions; ghost margin 60, hysteresis 5."""

    def setUp(self):
        self.zone = Zone({"columns": 2, "rows": 2, "zones": ["zone-1"] * 4})
        self.sim = self.zone.sim
        self.conf = self.zone.conf
        self.assertEqual((self.conf.ghost_margin, self.conf.hysteresis), (60, 5))

    def test_crossing_only_past_hysteresis(self):
        p = player("p", 499, 100)
        self.sim.add(p)
        self.assertEqual(self.zone.tick().crossings, [])
        p.x = 505  # 5 past: not yet
        self.assertEqual(self.zone.tick().crossings, [])
        p.x = 505.5
        crossings = self.zone.tick().crossings
        self.assertEqual([(e.id, r.name) for e, r in crossings], [("p", "r0c1")])
        # Listed again until it is handed off (or comes back).
        self.assertEqual(len(self.zone.tick().crossings), 1)
        p.x = 504
        self.assertEqual(self.zone.tick().crossings, [])

    def test_diagonal_crossing(self):
        p = player("p", 503, 503)  # hypot(3, 3) from its region: within 5
        self.sim.add(p)
        self.assertEqual(self.zone.tick().crossings, [])
        p.x, p.y = 503, 506  # hypot(3, 6): beyond
        crossings = self.zone.tick().crossings
        self.assertEqual([(e.id, r.name) for e, r in crossings], [("p", "r1c1")])

    def test_walking_along_the_border(self):
        """A player zig-zagging across the border, within the hysteresis: no handoff."""
        p = player("p", 498, 100)
        self.sim.add(p)
        self.zone.tick()
        step = self.conf.max_speed * TICK
        seq = 0
        xs = []
        for i in range(400):
            seq += 1
            # Along the border, weaving between 497 and 503.
            x = 500 + 3 * math.sin(i / 5)
            y = min(p.y + step * 0.5, 499)
            x = p.x + max(-step * 0.8, min(step * 0.8, x - p.x))
            send(self.sim, p, seq, x, y)
            result = self.zone.tick()
            self.assertNotIn("world.correct", events_of(result, p))
            self.assertEqual(result.crossings, [])
            xs.append(p.x)
        # It did go across, many times.
        self.assertGreater(max(xs), 502)
        self.assertLess(min(xs), 498)
        self.assertGreater(sum(1 for a, b in pairwise(xs) if (a < 500) != (b < 500)), 10)

    def test_inner_box(self):
        """
        The box of reals a tick neither ghosts nor checks for a crossing:
        the region less the margin where a neighbour lies beyond a side,
        and to the region's edge where the map ends.
        """
        world_map = self.zone.map
        boxes = {
            name: inner_box(region, list(world_map.neighbours(region)), 60)
            for name, region in world_map.regions.items()
        }
        self.assertEqual(
            boxes,
            {
                "r0c0": (0, 0, 440, 440),
                "r0c1": (560, 0, 1000, 440),
                "r1c0": (0, 560, 440, 1000),
                "r1c1": (560, 560, 1000, 1000),
            },
        )
        # A middle column has neighbours on both sides, a single region none.
        middle = Zone({"columns": 3, "zones": ["zone-1"] * 3}).map
        region = middle.region("r0c1")
        self.assertEqual(
            inner_box(region, list(middle.neighbours(region)), 60),
            (region.x0 + 60, 0, region.x1 - 60, 1000),
        )
        whole = Zone({"columns": 1, "zones": ["zone-1"]}).map.region("r0c0")
        self.assertEqual(inner_box(whole, [], 60), (0, 0, 1000, 1000))

    def test_by_the_map_edge(self):
        """
        Reals along the map's edge, far from the neighbours: in the box,
        neither ghosted nor crossing.
        """
        edge = [Entity("west", NPC, 0.5, 250), Entity("south", NPC, 250, 0.0)]
        for entity in edge:
            self.sim.add(entity)
        result = self.zone.tick()
        self.assertEqual(result.crossings, [])
        self.assertEqual(
            {region: ids(views) for region, views in result.ghost_views.items()},
            {"r0c1": set(), "r1c0": set(), "r1c1": set()},
        )
        # One near a neighbour too is ghosted there, wherever it is along the edge.
        edge[1].x = 470
        result = self.zone.tick()
        self.assertEqual(ids(result.ghost_views["r0c1"]), {"south"})

    def test_ghost_views_within_margin(self):
        inside = Entity("inside", NPC, 440, 100)  # 60 from r0c1
        outside = Entity("outside", NPC, 439.9, 200)  # just beyond it
        corner = Entity("corner", NPC, 480, 480)  # near three neighbours
        # 55 from two neighbours, but hypot(55, 55) from the diagonal one.
        diagonal = Entity("diagonal", NPC, 445, 445)
        deep = Entity("deep", NPC, 200, 200)
        for e in (inside, outside, corner, diagonal, deep):
            self.sim.add(e)
        views = self.zone.tick().ghost_views
        self.assertEqual(set(views), {"r0c1", "r1c0", "r1c1"})
        self.assertEqual(ids(views["r0c1"]), {"inside", "corner", "diagonal"})
        self.assertEqual(ids(views["r1c0"]), {"corner", "diagonal"})
        self.assertEqual(ids(views["r1c1"]), {"corner"})
        self.assertEqual(views["r0c1"][0], inside.view())
        # Moving away empties the list (the neighbour drops the ghost).
        inside.x = 300
        corner.x, corner.y = 300, 300
        diagonal.x = diagonal.y = 300
        views = self.zone.tick().ghost_views
        self.assertEqual(views, {"r0c1": [], "r1c0": [], "r1c1": []})

    def test_ghost_views_of_an_entity_past_the_border(self):
        """Still owned here while within the hysteresis: ghosted where it stands."""
        p = player("p", 503, 100)
        self.sim.add(p)
        result = self.zone.tick()
        self.assertEqual(ids(result.ghost_views["r0c1"]), {"p"})
        self.assertEqual(result.crossings, [])

    def test_ghost_views_of_reals_standing_still(self):
        """
        A real by a border that stands still is ghosted with the view it
        had at the last tick, not a new one; one that moved, was renamed,
        or whose attributes changed (in place too), with a new one.
        """
        still = player("still", 480, 100)
        moving = player("moving", 470, 150)
        renamed = player("renamed", 470, 200)
        changed = player("changed", 470, 250)
        changed.attrs = {"hp": 1}
        for e in (still, moving, renamed, changed):
            self.sim.add(e)
        self.zone.tick()
        first = {v["id"]: v for v in self.zone.tick().ghost_views["r0c1"]}
        moving.x += 1
        renamed.name = "new"
        changed.attrs["hp"] = 2
        second = {v["id"]: v for v in self.zone.tick().ghost_views["r0c1"]}
        self.assertIs(second["still"], first["still"])
        for e in (still, moving, renamed, changed):
            self.assertEqual(second[e.id], e.view())
        for e in (moving, renamed, changed):
            self.assertIsNot(second[e.id], first[e.id])

    def test_ghost_views_of_a_game_made_every_tick(self):
        """
        A game's own views (its simulation's C{entity_view}, or its
        entities' C{view}) are made again at every tick: they may show
        what changes unseen.
        """

        class Counted(ZoneSimulation):
            def entity_view(self, entity):
                return {**super().entity_view(entity), "ticks": self.tick_count}

        @dataclass(slots=True)
        class Aged(Entity):
            age: int = 0

            def view(self):
                return {**Entity.view(self), "age": self.age}

        zone = Zone({"columns": 2, "rows": 2, "zones": ["zone-1"] * 4}, cls=Counted)
        zone.sim.add(player("p", 480, 100))
        self.assertEqual([v["ticks"] for v in zone.tick().ghost_views["r0c1"]], [1])
        self.assertEqual([v["ticks"] for v in zone.tick().ghost_views["r0c1"]], [2])
        aged = Aged("aged", PLAYER, 480, 100, session="s-aged", gateway="gw-1")
        self.sim.add(aged)
        self.zone.tick()
        aged.age = 7
        self.assertEqual([v["age"] for v in self.zone.tick().ghost_views["r0c1"]], [7])


class TwoZoneTests(unittest.TestCase):
    """Two zones side by side, exchanging ghost views each tick, as the service will."""

    #: More of their [world] section.
    values: dict = {}

    def setUp(self):
        self.conf = world(columns=2, zones=["zone-1", "zone-2"], **self.values)
        self.map = WorldMap.from_config(self.conf)
        self.clock = task.Clock()
        self.west = ZoneSimulation(self.map, "r0c0", self.conf, self.clock, random.Random(1))
        self.east = ZoneSimulation(self.map, "r0c1", self.conf, self.clock, random.Random(2))

    def tick(self):
        self.clock.advance(TICK)
        west, east = self.west.tick(), self.east.tick()
        self.east.set_ghosts("r0c0", west.ghost_views["r0c1"])
        self.west.set_ghosts("r0c1", east.ghost_views["r0c0"])
        return west, east

    def test_seen_across_the_border_then_handed_over(self):
        walker = player("walker", 480, 500, "gw-1")
        other = player("other", 520, 500, "gw-2")
        stayer = player("stayer", 470, 500, "gw-1")
        self.west.add(walker)
        self.west.add(stayer)
        self.east.add(other)
        self.tick()
        # Each sees the other before anyone crosses (ghosts lag one tick).
        west, east = self.tick()
        self.assertIn("other", ids(events_of(west, walker)["world.update"]["enter"]))
        self.assertIn("walker", ids(events_of(east, other)["world.update"]["enter"]))

        # The walker walks east until it must be handed over.
        step = self.conf.max_speed * TICK
        seq = 0
        while True:
            seq += 1
            send(self.west, walker, seq, walker.x + step, 500)
            west, east = self.tick()
            for result, who in ((west, walker), (west, stayer), (east, other)):
                update = events_of(result, who).get("world.update", {"enter": [], "leave": []})
                self.assertEqual(update["leave"], [])
                self.assertNotIn("walker", ids(update["enter"]))
            if west.crossings:
                break
        self.assertEqual([(e.id, r.name) for e, r in west.crossings], [("walker", "r0c1")])

        # The handoff, as the zone service does it: the state and its
        # client's view go over, the old zone keeps the walker as a ghost
        # of the new one (its GhostTable does) until the new one's views
        # hold it, and the next input is applied in the new zone.
        seen = self.west.seen("walker")
        self.west.set_ghosts("r0c1", [*self.west.ghosts.values(), self.west.entity_view(walker)])
        moved = Entity.from_dict(self.west.remove("walker").to_dict())
        self.east.add(moved, seen=seen)
        seq += 1
        self.assertTrue(send(self.east, moved, seq, moved.x + step, 500))
        # The west zone ticks before the east one's ghost views of it arrive.
        for _ in range(3):
            west, east = self.tick()
            self.assertEqual(moved.last_input, seq)
            for result, who in ((east, moved), (east, other), (west, stayer)):
                update = events_of(result, who).get("world.update", {"enter": [], "leave": []})
                self.assertEqual(update["leave"], [])
                self.assertNotIn("walker", ids(update["enter"]))
                self.assertNotIn("other", ids(update["enter"]))
        self.assertNotIn("walker", self.west.reals)
        self.assertIn("walker", self.west.ghosts)
        self.assertIn("walker", self.west.seen("stayer"))


class TwoZoneUpdateRateTests(TwoZoneTests):
    """The same, with a world update every other tick: no flicker either."""

    values = {"update_rate": 10}


# -- NPCs -----------------------------------------------------------------------------


class EntityRecordTests(unittest.TestCase):
    """An entity's record (C{to_dict}), what handoffs and checkpoints carry."""

    def hero(self, attrs) -> Entity:
        return Entity(
            "hero",
            PLAYER,
            12.5,
            7.25,
            name="Hero",
            attrs=attrs,
            last_input=9,
            session="s1",
            gateway="gateway-1",
            version=3,
        )

    def test_as_asdict(self):
        """Every field, in the dataclass's order, equal to what asdict makes of it."""
        for attrs in ({}, {"hp": 10, "bag": [1, {"gem": 2}], "pos": (1, 2)}):
            hero = self.hero(attrs)
            record = hero.to_dict()
            self.assertEqual(list(record), list(asdict(hero)))
            self.assertEqual(record, asdict(hero))
            self.assertEqual(Entity.from_dict(record), hero)

    def test_subclass(self):
        """A subclass's record has its own fields, and none of what only its view shows."""

        @dataclass(slots=True)
        class Ranked(Entity):
            rank: int = 0

            def view(self):
                return {**Entity.view(self), "title": f"rank {self.rank}"}

        ranked = Ranked("r", PLAYER, 1.0, 2.0, attrs={"bag": [1]}, rank=4)
        record = ranked.to_dict()
        self.assertEqual(record, asdict(ranked))
        self.assertEqual(record["rank"], 4)
        self.assertNotIn("title", record)
        self.assertEqual(Ranked.from_dict(record), ranked)

    def test_attrs_copied(self):
        """Changing the entity's attrs afterwards leaves a record as it was made, and back."""
        hero = self.hero({"bag": [1]})
        record = hero.to_dict()
        hero.attrs["bag"].append(2)
        hero.attrs["hp"] = 1
        self.assertEqual(record["attrs"], {"bag": [1]})
        empty = self.hero({})
        kept = empty.to_dict()
        kept["attrs"]["x"] = 1
        self.assertEqual(empty.attrs, {})


class NPCTests(unittest.TestCase):
    def test_stay_in_their_region(self):
        zone = Zone({"columns": 2, "rows": 2, "zones": ["zone-1"] * 4, "npc_speed": 40}, "r1c0")
        npcs = zone.sim.spawn_npcs()
        self.assertEqual(len(npcs), zone.conf.npcs)
        self.assertEqual(len({n.id for n in npcs}), len(npcs))
        start = [(n.x, n.y) for n in npcs]
        for _ in range(2000):
            result = zone.tick()
            for npc in npcs:
                self.assertEqual(zone.map.region_at(npc.x, npc.y).name, "r1c0")
            self.assertEqual(result.crossings, [])
        self.assertNotEqual(start, [(n.x, n.y) for n in npcs])

    def test_ids_after_a_restore(self):
        """NPCs restored from a checkpoint keep their ids; new ones get others."""
        zone = Zone()
        zone.sim.add(Entity("npc-r0c0-2", NPC, 10, 10))
        spawned = zone.sim.spawn_npcs(2)
        self.assertEqual([n.id for n in spawned], ["npc-r0c0-1", "npc-r0c0-3"])

    def test_walk_at_their_speed(self):
        class Straight(ZoneSimulation):
            wander_turn = (1e9, 1e9)

        zone = Zone({"npc_speed": 3}, cls=Straight)
        (npc,) = zone.sim.spawn_npcs(1)
        npc.x = npc.y = 500
        zone.tick()
        before = (npc.x, npc.y)
        zone.tick()
        self.assertAlmostEqual(math.dist(before, (npc.x, npc.y)), 3 * TICK)

    def test_seeded(self):
        """The same seed, the same walks."""

        def run(seed):
            zone = Zone(seed=seed)
            npcs = zone.sim.spawn_npcs(5)
            for _ in range(100):
                zone.tick()
            return [(n.x, n.y) for n in npcs]

        self.assertEqual(run(4), run(4))
        self.assertNotEqual(run(4), run(5))


# -- the ticker -----------------------------------------------------------------------


class TickerTests(unittest.TestCase):
    def test_no_drift(self):
        """
        1000 ticks whose callbacks take a random time, some longer than the
        interval: every tick starts on the fixed schedule; overruns skip
        ticks and are counted.
        """
        clock = task.Clock()
        rng = random.Random(7)
        starts = []
        durations = []

        def work():
            starts.append(clock.seconds())
            duration = rng.uniform(0.08, 0.13) if rng.random() < 0.05 else rng.uniform(0, 0.045)
            durations.append(duration)
            clock.advance(duration)

        ticker = Ticker(clock, 20, work)
        clock.advance(3.3)
        origin = clock.seconds()
        ticker.start()
        while ticker.ticks < 1000:
            (call,) = clock.getDelayedCalls()
            clock.advance(call.getTime() - clock.seconds())
        ticker.stop()

        slots = [(start - origin) * 20 for start in starts]
        for slot in slots:
            self.assertAlmostEqual(slot, round(slot), places=6)
        slots = [round(slot) for slot in slots]
        self.assertEqual(slots, sorted(set(slots)))
        self.assertEqual(ticker.ticks, 1000)
        self.assertEqual(ticker.ticks + ticker.skipped, slots[-1] + 1)
        overruns = sum(d > 0.05 for d in durations)
        self.assertGreater(overruns, 20)
        self.assertEqual(ticker.overruns, overruns)
        self.assertEqual(ticker.overrun_share, overruns / 1000)
        # An overrun of k intervals skips exactly the ticks it ran over.
        expected_skips = sum(math.ceil(d * 20 - 1e-9) - 1 for d in durations[:-1] if d > 0.05)
        self.assertEqual(ticker.skipped, expected_skips)
        # The schedule did not slip by the time the ticks took.
        self.assertAlmostEqual(starts[-1], origin + slots[-1] * 0.05)
        self.assertLess(starts[-1] - origin, sum(durations) + 1000 * 0.05)
        self.assertAlmostEqual(ticker.percentile(1.0), max(durations))
        self.assertAlmostEqual(ticker.percentile(0.5), sorted(durations)[499])

    def test_stop_and_start(self):
        clock = task.Clock()
        calls = []
        ticker = Ticker(clock, 10, lambda: calls.append(clock.seconds()))
        ticker.start()
        clock.pump([0.1] * 5)
        self.assertEqual(len(calls), 6)
        ticker.stop()
        self.assertFalse(ticker.running)
        self.assertEqual(clock.getDelayedCalls(), [])
        clock.pump([0.1] * 5)
        self.assertEqual(len(calls), 6)
        clock.advance(0.03)
        ticker.start()
        clock.advance(0.1)
        self.assertAlmostEqual(calls[-1] - calls[-2], 0.1)
        self.assertAlmostEqual(calls[-2], 1.03)
        self.assertRaises(RuntimeError, ticker.start)
        ticker.stop()

    def test_stop_from_the_callback(self):
        clock = task.Clock()
        ticker = Ticker(clock, 10, lambda: ticker.stop())
        ticker.start()
        self.assertEqual((ticker.ticks, clock.getDelayedCalls()), (1, []))

    def test_errors_are_logged(self):
        clock = task.Clock()
        calls = []

        def fail():
            calls.append(1)
            raise ZeroDivisionError()

        ticker = Ticker(clock, 10, fail)
        ticker.start()
        clock.advance(0.1)
        ticker.stop()
        self.assertEqual((len(calls), ticker.errors), (2, 2))
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 2)

    def test_drives_a_simulation(self):
        zone = Zone()
        zone.sim.spawn_npcs(3)
        ticker = Ticker(zone.clock, zone.conf.tick_rate, zone.sim.tick)
        ticker.start()
        zone.clock.pump([TICK] * 20)
        ticker.stop()
        self.assertEqual(zone.sim.tick_count, 21)
        self.assertEqual(ticker.skipped, 0)
