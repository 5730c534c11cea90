"""
mmo-bot: its pieces one by one (figures, scenario files, the border-walk
planner, the view checks) and, end to end, the installed command against
a real standalone server with a world of two regions.
"""

from __future__ import annotations

import io
import json
import math
import os
import random
import struct
import sys
from contextlib import redirect_stderr

import msgpack
from twisted.internet import defer, reactor, task, utils
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from mmo.bot import cli, geometry, scenario
from mmo.bot.client import BotClient
from mmo.bot.stats import Latencies, Stats, format_report, problems
from mmo.bot.swarm import Options, Swarm
from mmo.bot.timers import Deadlines, Metronome
from mmo.bot.views import ViewTracker, view_misses
from mmo.client import ConnectionClosed, ServerError
from tests.support import FAST_HASH, STANDALONE, deployment, write_config
from tests.test_login_e2e import started
from tests.test_twistd import spawn, subprocess_env
from tests.world_walk import TWO_REGIONS

TWO = geometry.World(
    width=200.0,
    height=100.0,
    regions=(("r0c0", 0.0, 0.0, 100.0, 100.0), ("r0c1", 100.0, 0.0, 200.0, 100.0)),
    max_speed=8.0,
    speed_tolerance=0.1,
    move_burst=0.5,
    hysteresis=2.0,
    aoi_radius=20.0,
    spawn=(100.0, 50.0),
)


def side_of(point, border: float, hysteresis: float) -> str | None:
    """Which side of the vertical C{border} C{point} is past the hysteresis, if any."""
    if point[0] < border - hysteresis:
        return "west"
    if point[0] > border + hysteresis:
        return "east"
    return None


def usage_error(testcase, scenario_file: str) -> str:
    """The usage error of the scenario file C{scenario_file} on a world of two regions."""
    conf = deployment(testcase, STANDALONE, extra=TWO_REGIONS)
    path = write_config(testcase, scenario_file)
    args = cli.parser().parse_args(
        ["--config", conf.file, "--login", "127.0.0.1:1", "--scenario-file", path]
    )
    with testcase.assertRaises(cli.UsageError) as caught:
        cli.options_from(args)
    return str(caught.exception)


class StatsTests(unittest.TestCase):
    def test_percentiles_nearest_rank(self):
        stats = Stats()
        for ms in range(1, 101):
            stats.latency("ping", ms / 1000.0)
        entry = stats.report()["requests"]["ping"]
        self.assertEqual(entry["count"], 100)
        self.assertEqual((entry["p50_ms"], entry["p90_ms"], entry["p99_ms"]), (50, 90, 99))
        self.assertEqual(entry["max_ms"], 100)
        self.assertEqual(entry["errors"], 0)

    def test_errors_by_type_and_code(self):
        stats = Stats()
        stats.error("login", "busy")
        stats.error("login", "busy")
        stats.error("zone.move", "timeout")
        stats.latency("login", 0.01)
        report = stats.report()
        self.assertEqual(report["errors"], {"login": {"busy": 2}, "zone.move": {"timeout": 1}})
        self.assertEqual(report["requests"]["login"]["errors"], 2)
        self.assertEqual(report["requests"]["zone.move"]["count"], 0)
        self.assertEqual(stats.error_count, 3)
        self.assertEqual(stats.requests, 4)

    def test_reservoir_is_bounded(self):
        latencies = Latencies(limit=10)
        for i in range(1000):
            latencies.add(i / 1000.0)
        self.assertEqual(latencies.count, 1000)
        self.assertEqual(len(latencies.samples), 10)
        self.assertEqual(latencies.max, 0.999)

    def test_problems_and_report(self):
        stats = Stats()
        self.assertEqual(problems(5, 5, stats), [])
        stats.disconnected("shutdown", unexplained=True)
        stats.disconnected(None, unexplained=True)
        stats.duplicated = 1
        found = problems(5, 4, stats)
        self.assertEqual(len(found), 3)
        report = stats.report(scenario="idle", asked=5, in_world=4, problems=found)
        self.assertFalse(report["ok"])
        self.assertEqual(report["disconnects"]["by_code"], {"none": 1, "shutdown": 1})
        self.assertEqual(report["disconnects"]["unexplained"], 2)
        self.assertIn("FAILED", format_report(report))
        # Every documented key is there.
        self.assertEqual(
            set(report),
            {
                "scenario", "stopped", "ok", "problems", "bots", "elapsed", "ramp_seconds",
                "duration", "requests", "errors", "disconnects", "moves_followed", "handoffs",
                "world", "chat", "window", "login_storm", "ranked", "trader",
            },
        )  # fmt: skip


class RequestAccountingTests(unittest.TestCase):
    """What a bot's requests add to the figures."""

    class Client:
        def __init__(self, outcome):
            self.outcome = outcome

        def request(self, kind, **fields):
            return self.outcome()

    def swarm(self) -> Swarm:
        options = Options("127.0.0.1", 7000, progress=None)
        return Swarm(task.Clock(), options, scenario.make("idle"))

    def test_latency_and_errors(self):
        swarm = self.swarm()
        swarm.request(self.Client(lambda: defer.succeed({})), "ping")
        failing = self.Client(lambda: defer.fail(ServerError("busy", "later", False)))
        swarm.request(failing, "ping").addErrback(lambda _: None)
        report = swarm.stats.report(scenario="idle")
        self.assertEqual(report["requests"]["ping"]["count"], 1)
        self.assertEqual(report["errors"], {"ping": {"busy": 1}})

    def test_cut_off_by_the_runs_own_goodbye(self):
        """A request the run's end closes is not an error; one closed before is."""
        swarm = self.swarm()
        closed = self.Client(lambda: defer.fail(ConnectionClosed(None, "gone")))
        swarm.request(closed, "zone.move").addErrback(lambda _: None)
        swarm.stop("interrupted")
        swarm.request(closed, "zone.move").addErrback(lambda _: None)
        report = swarm.stats.report(scenario="idle")
        self.assertEqual(report["errors"], {"zone.move": {"closed": 1}})


class BorderWalkFiguresTests(unittest.TestCase):
    def test_bots_handed_off_and_on_their_lanes(self):
        """The report counts the bots handed off at least once and those on their lanes."""
        options = Options("127.0.0.1", 7000, bots=3, world=TWO, progress=None)
        swarm = Swarm(task.Clock(), options, scenario.make("border-walk", {"span": 15.0}))
        first, second, third = swarm.bots
        for _ in range(2):
            first.zone_changed({"t": "zone.changed"})
        third.zone_changed({"t": "zone.changed"})
        step = TWO.max_step(0.5, 0.5)
        for bot in swarm.bots:
            bot.walker = geometry.BorderWalker(swarm.lanes[bot.index], step, TWO.spawn, None)
        while not second.walker.on_lane:
            second.walker.next()
        report = swarm.report()
        self.assertEqual(report["handoffs"], 3)
        self.assertEqual((report["world"]["handed_off"], report["world"]["on_lane"]), (2, 1))
        self.assertIn("handoffs: 3 (2 bots), on lane: 1", format_report(report))


class ScenarioTests(unittest.TestCase):
    def test_defaults(self):
        chosen = scenario.make("border-walk")
        self.assertEqual(chosen.span, 150.0)
        self.assertEqual(chosen.move_interval, 0.5)

    def test_file(self):
        path = write_config(self, 'scenario = "border-walk"\nspan = 40\nmove_interval = 0.25\n')
        chosen = scenario.load(path)
        self.assertEqual(
            (chosen.name, chosen.span, chosen.move_interval), ("border-walk", 40, 0.25)
        )
        self.assertIsInstance(chosen.span, float)

    def test_unknown_key_names_file_and_key(self):
        path = write_config(self, 'scenario = "border-walk"\nspeed = 4.0\n')
        with self.assertRaises(scenario.ScenarioError) as caught:
            scenario.load(path)
        self.assertIn(path, str(caught.exception))
        self.assertIn("speed:", str(caught.exception))

    def test_key_of_another_scenario(self):
        path = write_config(self, 'scenario = "idle"\nchat_interval = 2.0\n')
        with self.assertRaises(scenario.ScenarioError) as caught:
            scenario.load(path)
        self.assertIn(f"{path}: chat_interval: not a key of scenario 'idle'", str(caught.exception))

    def test_bad_values(self):
        for text, key in [
            ('scenario = "chat"\nchat_interval = -1\n', "chat_interval"),
            ('scenario = "chat"\nchat_interval = "often"\n', "chat_interval"),
            ('scenario = "login-storm"\nconcurrency = 2.5\n', "concurrency"),
            ('scenario = "trader"\nsell_chance = 1.5\n', "sell_chance"),
            ('scenario = "trader"\nrequeue_delay = 1.0\n', "requeue_delay"),
            ('scenario = "trader"\nshop = ""\n', "shop"),
            ('scenario = "dance"\n', "scenario"),
            ("span = 3\n", "scenario"),
        ]:
            path = write_config(self, text)
            with self.assertRaises(scenario.ScenarioError) as caught:
                scenario.load(path)
            self.assertTrue(str(caught.exception).startswith(f"{path}: {key}: "), caught.exception)

    def test_cli_exits_2_naming_file_and_key(self):
        path = write_config(self, 'scenario = "wander"\nspan = 12\n')
        err = io.StringIO()
        with redirect_stderr(err), self.assertRaises(SystemExit) as caught:
            cli.main(["--login", "127.0.0.1:7000", "--scenario-file", path])
        self.assertEqual(caught.exception.code, 2)
        self.assertIn(f"{path}: span:", err.getvalue())

    def test_cli_span_below_hysteresis(self):
        self.assertIn(
            "span: must be at least hysteresis + 10 (12)",
            usage_error(self, 'scenario = "border-walk"\nspan = 11\n'),
        )


class GeometryTests(unittest.TestCase):
    def test_max_step(self):
        # 90% of min(8 x 0.5, 8 x 1.1 x 0.5).
        self.assertAlmostEqual(TWO.max_step(0.5), 3.6)
        # A long interval: the largest jump (4.4) limits.
        self.assertAlmostEqual(TWO.max_step(2.0), 0.9 * 4.4)
        # Slower, but never faster than 90%.
        self.assertAlmostEqual(TWO.max_step(0.5, 0.5), 2.0)
        self.assertAlmostEqual(TWO.max_step(0.5, 1.0), 3.6)

    def test_borders(self):
        self.assertEqual(
            geometry.borders(TWO), [geometry.Border("x", 100.0, 0.0, 100.0, 100.0, 100.0)]
        )
        grid = geometry.World(
            100.0,
            100.0,
            (
                ("a", 0, 0, 50, 50),
                ("b", 50, 0, 100, 50),
                ("c", 0, 50, 50, 100),
                ("d", 50, 50, 100, 100),
            ),
        )
        found = geometry.borders(grid)
        self.assertEqual(len(found), 4)
        self.assertEqual(sum(b.length for b in found), 200.0)
        self.assertEqual({b.axis for b in found}, {"x", "y"})

    def test_lanes_spread_along_the_border(self):
        lanes = geometry.lanes(TWO, 4, 30.0)
        self.assertEqual([lane.cross for lane in lanes], [12.5, 37.5, 62.5, 87.5])
        for lane in lanes:
            self.assertEqual((lane.axis, lane.at, lane.low, lane.high), ("x", 100.0, 70.0, 130.0))

    def test_lanes_spaced_nearest_the_spawn(self):
        # TWO's spawn is at y = 50 on its one border, 100 long.
        lanes = geometry.lanes(TWO, 4, 30.0, spacing=5.0)
        self.assertEqual([lane.cross for lane in lanes], [42.5, 47.5, 52.5, 57.5])
        self.assertEqual({(lane.at, lane.low, lane.high) for lane in lanes}, {(100.0, 70.0, 130.0)})
        # Moved to fit in the border, and spread evenly where they cannot fit.
        low = geometry.World(200.0, 100.0, TWO.regions, spawn=(60.0, 1.0))
        self.assertEqual([lane.cross for lane in geometry.lanes(low, 3, 30.0, spacing=10.0)],
                         [5.0, 15.0, 25.0])  # fmt: skip
        self.assertEqual([lane.cross for lane in geometry.lanes(TWO, 4, 30.0, spacing=40.0)],
                         [12.5, 37.5, 62.5, 87.5])  # fmt: skip
        # Several borders end to end: the nearest one's stretch, the others' after it.
        four = geometry.World(200.0, 200.0, (("a", 0, 0, 100, 100), ("b", 100, 0, 200, 100),
                                             ("c", 0, 100, 100, 200), ("d", 100, 100, 200, 200)),
                              spawn=(150.0, 101.0))  # fmt: skip
        lanes = geometry.lanes(four, 2, 20.0, spacing=4.0)
        self.assertEqual([(lane.axis, lane.at, lane.cross) for lane in lanes],
                         [("y", 100.0, 148.0), ("y", 100.0, 152.0)])  # fmt: skip

    def test_lane_span_limited_by_region(self):
        lane = geometry.lanes(TWO, 1, 500.0)[0]
        self.assertEqual((lane.low, lane.high), (1.0, 199.0))

    def test_single_region(self):
        one = geometry.World(100.0, 100.0, (("a", 0, 0, 100, 100),))
        with self.assertRaises(ValueError):
            geometry.lanes(one, 3, 20.0)

    def test_path_crosses_the_border_at_legal_speed(self):
        """From the spawn to its lane, then back and forth past the hysteresis."""
        lane = geometry.lanes(TWO, 8, 15.0)[6]
        step = TWO.max_step(0.5)
        walker = geometry.BorderWalker(lane, step, TWO.spawn)
        here = TWO.spawn
        jump = TWO.max_speed * (1 + TWO.speed_tolerance) * TWO.move_burst
        sides = []
        for _ in range(200):
            point = walker.next()
            moved = math.dist(here, point)
            self.assertLessEqual(moved, step + 1e-9)
            self.assertLessEqual(moved, 0.9 * TWO.max_speed * 0.5 + 1e-9)
            self.assertLessEqual(moved, 0.9 * jump + 1e-9)
            self.assertTrue(TWO.inside(*point))
            here = point
            if walker.on_lane:
                self.assertAlmostEqual(point[1], lane.cross)
                side = side_of(point, 100.0, TWO.hysteresis)
                if side is None:
                    continue
                if not sides or sides[-1] != side:
                    sides.append(side)
        # On the lane within a few steps, then many crossings well past the hysteresis.
        self.assertGreaterEqual(len(sides), 10)
        self.assertEqual(min(p for p in (lane.low, lane.high)), 85.0)

    def test_bots_from_the_spawn_fan_out_to_both_sides(self):
        """
        From the spawn, on the border, every other bot heads into each
        region; a bot nearer one end of its lane goes there first.
        """
        step = TWO.max_step(0.5)
        firsts = [geometry.BorderWalker(lane, step, TWO.spawn).next()[0] for lane in
                  geometry.lanes(TWO, 10, 30.0)]  # fmt: skip
        self.assertEqual(sum(x < 100.0 for x in firsts), 5)
        self.assertEqual(sum(x > 100.0 for x in firsts), 5)
        lane = geometry.lanes(TWO, 2, 30.0)[1]
        self.assertTrue(lane.high_first)
        walker = geometry.BorderWalker(lane, step, (90.0, lane.cross))
        self.assertLess(walker.next()[0], 90.0)

    def test_walker_reset(self):
        lane = geometry.lanes(TWO, 1, 20.0)[0]
        walker = geometry.BorderWalker(lane, 3.0, (80.0, 50.0))
        walker.next()
        walker.reset((60.0, 50.0))
        self.assertEqual(walker.next(), (63.0, 50.0))

    def test_wanderer_stays_on_the_map(self):
        rng = random.Random(3)
        walker = geometry.Wanderer(TWO, 3.6, (2.0, 2.0), rng, turn_every=4)
        here = (2.0, 2.0)
        for _ in range(2000):
            point = walker.next()
            self.assertLessEqual(math.dist(here, point), 3.6 + 1e-9)
            self.assertTrue(TWO.inside(*point, margin=1.0))
            here = point


def update(enter=(), update=(), leave=()):
    return {
        "t": "world.update",
        "seq": 1,
        "tick": 1,
        "enter": list(enter),
        "update": list(update),
        "leave": list(leave),
    }


def view(entity, x=0.0, y=0.0):
    return {"id": entity, "kind": "player", "x": x, "y": y, "name": entity, "attrs": {}}


class ViewTrackerTests(unittest.TestCase):
    def test_own_position(self):
        tracker = ViewTracker("c-1")
        tracker.feed(update(enter=[view("c-1", 5.0, 6.0), view("npc-1")]))
        self.assertEqual(tracker.position, (5.0, 6.0))
        moved = [{"id": "c-1", "x": 7.0, "y": 6.5}, {"id": "npc-1", "x": 1.0, "y": 1.0}]
        tracker.feed(update(update=moved))
        self.assertEqual(tracker.position, (7.0, 6.5))
        self.assertEqual(tracker.view, {"c-1", "npc-1"})
        self.assertEqual((tracker.duplicated, tracker.lost, tracker.pushes), (0, 0, 2))

    def test_duplicate_enter(self):
        tracker = ViewTracker("c-1")
        tracker.feed(update(enter=[view("c-1"), view("c-2")]))
        tracker.feed(update(enter=[view("c-2")]))
        self.assertEqual(tracker.duplicated, 1)
        # One id twice in one push.
        tracker.feed(update(enter=[view("c-3"), view("c-3")]))
        self.assertEqual(tracker.duplicated, 2)
        # Leaving and coming back is no duplicate.
        tracker.feed(update(leave=["c-2"]))
        tracker.feed(update(enter=[view("c-2")]))
        self.assertEqual(tracker.duplicated, 2)
        self.assertEqual(tracker.lost, 0)
        self.assertEqual(
            [(e["what"], e["id"], e["own"]) for e in tracker.examples],
            [("duplicated", "c-2", False), ("duplicated", "c-3", False)],
        )

    def test_reset(self):
        """
        A push with C{reset} starts the view over (a zone restored after its
        process ended): what it enters again is no duplicate, and what it
        did not enter is no longer in view.
        """
        tracker = ViewTracker("c-1")
        tracker.feed(update(enter=[view("c-1"), view("c-2"), view("c-3")]))
        tracker.feed({**update(enter=[view("c-1", 4.0, 5.0), view("c-2")]), "reset": True})
        self.assertEqual(tracker.view, {"c-1", "c-2"})
        self.assertEqual(tracker.position, (4.0, 5.0))
        self.assertEqual((tracker.duplicated, tracker.lost, tracker.resets), (0, 0, 1))
        tracker.feed(update(enter=[view("c-3")]))
        self.assertEqual((tracker.duplicated, tracker.lost), (0, 0))

    def test_lost(self):
        tracker = ViewTracker("c-1")
        tracker.feed(update(enter=[view("c-1"), view("c-2")]))
        tracker.feed(update(leave=["c-9"]))
        self.assertEqual(tracker.lost, 1)
        tracker.feed(update(leave=["c-1"]))
        self.assertEqual(tracker.lost, 2)
        self.assertEqual(tracker.view, {"c-2"})


class ViewMissTests(unittest.TestCase):
    def test_close_pair_that_does_not_see(self):
        bots = [
            ("a", 10.0, 10.0, {"a", "b"}),
            ("b", 15.0, 10.0, {"b"}),  # does not see a
            ("c", 100.0, 100.0, {"c"}),  # far away: no pair
            ("d", 103.0, 96.0, {"d", "c"}),
        ]
        self.assertEqual(view_misses(bots, 10.0), (2, 2))
        bots[1][3].add("a")
        bots[2][3].add("d")
        self.assertEqual(view_misses(bots, 10.0), (2, 0))

    def test_grid_matches_every_pair(self):
        rng = random.Random(7)
        bots = []
        for i in range(300):
            bots.append((f"b{i}", rng.uniform(0, 200), rng.uniform(0, 200), set()))
        for _, x, y, seen in bots:
            for other, ox, oy, _ in bots:
                if math.dist((x, y), (ox, oy)) < 10.0 and rng.random() < 0.9:
                    seen.add(other)
        pairs = misses = 0
        for i in range(len(bots)):
            for j in range(i + 1, len(bots)):
                a, b = bots[i], bots[j]
                if (a[1] - b[1]) ** 2 + (a[2] - b[2]) ** 2 < 100.0:
                    pairs += 1
                    misses += b[0] not in a[3] or a[0] not in b[3]
        self.assertGreater(pairs, 50)
        self.assertEqual(view_misses(bots, 10.0), (pairs, misses))


MMO_BOT = os.path.join(os.path.dirname(sys.executable), "mmo-bot")


async def run_bots(
    testcase,
    config_file: str,
    login_port: int,
    scenario_text: str,
    bots: int,
    duration: float,
    max_seconds: float,
) -> dict:
    """
    The installed C{mmo-bot}, run with C{bots} bots for C{duration} seconds
    (C{max_seconds} at most) and the scenario file C{scenario_text} against
    the deployment of C{config_file}, whose login server listens on
    C{login_port}: its JSON report, once it exited 0 with a clean report
    (else C{testcase} fails, with what the command said).
    """
    scenario_file = write_config(testcase, scenario_text, "scenario.toml")
    out, err, code = await utils.getProcessOutputAndValue(
        MMO_BOT,
        [
            "--config", config_file,
            "--login", f"127.0.0.1:{login_port}",
            "--bots", str(bots),
            "--scenario-file", scenario_file,
            "--duration", str(duration),
            "--max-seconds", str(max_seconds),
            "--json",
        ],
        env=subprocess_env(),
        reactor=reactor,
    )  # fmt: skip
    testcase.assertEqual(code, 0, err.decode(errors="replace")[-4000:])
    report = json.loads(out)
    testcase.assertTrue(report["ok"], report["problems"])
    return report


class EndToEndTests(unittest.TestCase):
    timeout = 60

    async def test_border_walk(self):
        """Eight bots walk across the border of a real standalone server's two regions."""
        config = deployment(self, STANDALONE, extra=FAST_HASH + TWO_REGIONS)
        child, _ = spawn(self, config.file)
        port = await started(child, "mmo")
        walk = 'scenario = "border-walk"\nspan = 15.0\nmove_interval = 0.25\n'
        report = await run_bots(self, config.file, port, walk, bots=8, duration=8, max_seconds=30)
        self.assertEqual(report["bots"], {"asked": 8, "in_world": 8, "failed": 0, "failures": {}})
        self.assertEqual(report["stopped"], "completed")
        self.assertGreater(report["handoffs"], 0)
        self.assertEqual(report["world"]["duplicated"], 0)
        self.assertEqual(report["world"]["lost"], 0)
        self.assertEqual(report["disconnects"]["unexplained"], 0)
        self.assertGreater(report["world"]["pushes"], 0)
        moves = report["requests"]["zone.move"]
        self.assertGreater(moves["count"], 8 * 20)
        self.assertGreater(moves["p50_ms"], 0)
        self.assertEqual(report["requests"]["zone.enter"]["count"], 8)


class LazyUpdateTests(unittest.TestCase):
    """C{world.update} pushes read by the bots' client: the view exact, the update lazy."""

    def frames(self, *pushes):
        return [msgpack.packb(p, use_bin_type=True) for p in pushes]

    def test_view_and_position_from_frames(self):
        tracker = ViewTracker("c-1")
        client = BotClient(tracker.feed)
        for body in self.frames(
            update(enter=[view("c-1", 5.0, 6.0), view("npc-1")]),
            {**update(update=[{"id": "npc-1", "x": 1.0, "y": 1.0}]), "seq": 2},
            {**update(update=[{"id": "c-1", "x": 7.0, "y": 6.5}]), "seq": 3},
            {**update(update=[{"id": "c-1", "name": "renamed"}]), "seq": 4},
            {**update(enter=[view("c-2")], leave=["npc-1"]), "seq": 5},
            {**update(enter=[view("c-2")]), "seq": 6},
        ):
            client.stringReceived(body)
        self.assertEqual(tracker.view, {"c-1", "c-2"})
        self.assertEqual((tracker.duplicated, tracker.lost, tracker.pushes), (1, 0, 6))
        # The newest update with a position wins (not the rename after it).
        self.assertEqual(tracker.position, (7.0, 6.5))
        self.assertEqual(client.last_seq, 6)

    def test_unread_updates_are_bounded(self):
        tracker = ViewTracker("c-1")
        for i in range(ViewTracker.UNREAD * 3 + 1):
            moved = msgpack.packb([{"id": "c-1", "x": float(i), "y": 0.0}])
            tracker.feed(update(), moved)
            self.assertLess(len(tracker._unread), ViewTracker.UNREAD)
        self.assertEqual(tracker.position, (float(ViewTracker.UNREAD * 3), 0.0))

    def test_a_server_position_replaces_unread_updates(self):
        tracker = ViewTracker("c-1")
        tracker.feed(update(), msgpack.packb([{"id": "c-1", "x": 1.0, "y": 2.0}]))
        tracker.place(9.0, 9.0)
        self.assertEqual(tracker.position, (9.0, 9.0))

    def test_other_frames_as_the_sdk_reads_them(self):
        client = BotClient(lambda push, update: self.fail("not a world.update"))
        seen = []
        client.on("zone.changed", seen.append)
        client.stringReceived(
            msgpack.packb({"t": "zone.changed", "seq": 3, "update": [1, 2]}, use_bin_type=True)
        )
        self.assertEqual(seen, [{"t": "zone.changed", "seq": 3, "update": [1, 2]}])
        self.assertEqual(client.last_seq, 3)

    def test_bad_frames_are_wire_errors(self):
        errors = []
        for body in (b"\xc1", msgpack.packb([1, 2]), msgpack.packb({"seq": 1})):
            client = BotClient(lambda push, update: None)
            client.wireError = lambda error, request_id: errors.append(error.code)
            client.stringReceived(body)
        self.assertEqual(errors, ["bad_frame"] * 3)


class TimerTests(unittest.TestCase):
    def test_metronome_runs_each_job_once_per_interval(self):
        clock = task.Clock()
        metronome = Metronome(clock, 1.0, beats=4)
        calls = []
        keys = [metronome.add(lambda n=n: calls.append(n), phase) for n, phase in
                enumerate((0.1, 0.6, 0.9))]  # fmt: skip
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        clock.pump([0.25] * 4)
        self.assertEqual(calls, [0, 1, 2])
        # A late beat runs the slots it missed, each once.
        clock.advance(5.0)
        self.assertEqual(sorted(calls[3:]), [0, 1, 2])
        metronome.remove(keys[1])
        metronome.remove(keys[1])
        clock.pump([0.25] * 4)
        self.assertEqual(sorted(calls[6:]), [0, 2])
        metronome.remove(keys[0])
        metronome.remove(keys[2])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_deadlines_cancel_what_did_not_fire(self):
        clock = task.Clock()
        deadlines = Deadlines(clock, 10.0, resolution=0.5)
        answered, waiting = defer.Deferred(), defer.Deferred()
        deadlines.add(answered)
        clock.advance(3.0)
        deadlines.add(waiting)
        answered.callback("ok")
        failures = []
        waiting.addErrback(failures.append)
        clock.pump([0.5] * 19)
        self.assertEqual(failures, [])
        clock.pump([0.5] * 2)
        self.assertEqual(len(failures), 1)
        failures[0].trap(defer.CancelledError)
        self.assertEqual(len(deadlines), 0)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_fired_requests_time_out_as_timeout(self):
        swarm = Swarm(task.Clock(), Options("127.0.0.1", 7000, progress=None),
                      scenario.make("idle", {"request_timeout": 1.0}))  # fmt: skip

        class Silent:
            def request(self, kind, **fields):
                return defer.Deferred()

        swarm.fire(Silent(), "ping")
        swarm.reactor.pump([0.5] * 4)
        self.assertEqual(dict(swarm.stats.errors["ping"]), {"timeout": 1})


class BorderWalkTests(unittest.TestCase):
    """The documented command's geometry: conf/cluster.toml's world, 100 bots, 30 s."""

    def test_bots_cross_the_border_from_the_start(self):
        world = geometry.World(
            2000.0,
            2000.0,
            (("r0c0", 0.0, 0.0, 1000.0, 2000.0), ("r0c1", 1000.0, 0.0, 2000.0, 2000.0)),
            spawn=(1000.0, 1000.0),
        )
        chosen = scenario.make("border-walk")
        step = world.max_step(chosen.move_interval, chosen.speed)
        moves = int(30 / chosen.move_interval)
        crossings = []
        for lane in geometry.lanes(world, 100, chosen.span):
            walker = geometry.BorderWalker(lane, step, world.spawn, chosen.weave)
            side, count, first = None, 0, None
            here = world.spawn
            for move in range(moves):
                point = walker.next()
                self.assertLessEqual(math.dist(here, point), step + 1e-9)
                here = point
                now = side_of(point, 1000.0, world.hysteresis)
                if now is None:
                    continue
                if side is not None and now != side:
                    count += 1
                    first = move if first is None else first
                side = now
            crossings.append(count)
        # Past the first handoff (from the spawn, on the border), nearly every
        # bot hands off again and again in the command's 30 s, not only the
        # few whose lanes are next to the spawn: those walk to a lane end.
        self.assertGreaterEqual(sum(count > 0 for count in crossings), 90)
        self.assertGreaterEqual(sum(crossings), 250)

    def test_weave_zero_walks_straight_to_the_lane(self):
        lane = geometry.lanes(TWO, 8, 15.0)[7]
        walker = geometry.BorderWalker(lane, 2.0, TWO.spawn, None)
        first = walker.next()
        self.assertGreater(first[0], 100.0)
        self.assertGreater(first[1], TWO.spawn[1])

    def test_cli_weave_below_hysteresis(self):
        self.assertIn(
            "weave: must be 0 or at least hysteresis + 5 (7)",
            usage_error(self, 'scenario = "border-walk"\nweave = 6.0\n'),
        )


class LazyUpdateFramingTests(unittest.TestCase):
    def test_data_after_the_map_then_frames_read_again(self):
        tracker = ViewTracker("c-1")
        client = BotClient(tracker.feed)
        errors = []
        client.wireError = lambda error, request_id: errors.append(error.message)
        good = msgpack.packb(update(enter=[view("c-1", 1.0, 2.0)]), use_bin_type=True)
        client.stringReceived(good + b"\x01")
        self.assertEqual(errors, ["body has data after its map"])
        self.assertEqual(tracker.pushes, 0)
        client.stringReceived(good)
        client.stringReceived(msgpack.packb({**update(), "seq": 9}, use_bin_type=True))
        self.assertEqual((tracker.pushes, tracker.position, client.last_seq), (2, (1.0, 2.0), 9))


class ClientFramingTests(unittest.TestCase):
    """The SDK's reads: a whole frame goes straight on; any other split as Twisted's framing."""

    def client(self):
        tracker = ViewTracker("c-1")
        client = BotClient(tracker.feed)
        client.makeConnection(StringTransport())
        return client, tracker

    def framed(self, seq):
        body = msgpack.packb({**update(enter=[view(f"n-{seq}")]), "seq": seq}, use_bin_type=True)
        return struct.pack("!I", len(body)) + body

    def test_whole_split_and_joined_frames(self):
        client, tracker = self.client()
        one, two, three, four = (self.framed(seq) for seq in (1, 2, 3, 4))
        client.dataReceived(one)
        # A frame in pieces, then the end of one with the next whole, then two at once.
        client.dataReceived(two[:3])
        client.dataReceived(two[3:10])
        client.dataReceived(two[10:] + three)
        client.dataReceived(four + self.framed(5))
        self.assertEqual(tracker.pushes, 5)
        self.assertEqual(tracker.view, {f"n-{seq}" for seq in range(1, 6)})
        self.assertEqual(client.last_seq, 5)

    def test_a_whole_frame_after_a_partial_one_waits_its_turn(self):
        client, tracker = self.client()
        first, second = self.framed(1), self.framed(2)
        client.dataReceived(first[:6])
        # Exactly one frame long, but the rest of the first and the start of the second.
        rest = first[6:] + second[: len(first) - len(first[6:])]
        self.assertEqual(len(rest), len(first))
        client.dataReceived(rest)
        client.dataReceived(second[len(first) - len(first[6:]) :])
        self.assertEqual((tracker.pushes, client.last_seq), (2, 2))

    def test_too_large_frame_is_refused(self):
        client, tracker = self.client()
        errors = []
        client.wireError = lambda error, request_id: errors.append(error.code)
        client.MAX_LENGTH = 10
        client.dataReceived(self.framed(1))
        self.assertEqual((errors, tracker.pushes), (["frame_too_large"], 0))


class SwarmTLSTests(unittest.TestCase):
    def test_one_resuming_context_per_server(self):
        """The bots share one TLS context per server address, which keeps its session."""
        ca = os.path.join(deployment(self, STANDALONE).deployment.tls_dir, "ca.crt")
        swarm = Swarm(task.Clock(), Options("127.0.0.1", 7000, ca=ca, progress=None),
                      scenario.make("idle"))  # fmt: skip
        login = swarm.tls("127.0.0.1", 7000)
        self.assertIs(swarm.tls("127.0.0.1", 7000), login)
        self.assertIsNot(swarm.tls("127.0.0.1", 7001), login)
        self.assertIsNone(login.session)
