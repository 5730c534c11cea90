"""
The pieces of bench/run.py, without servers: the profile table, the
figures as markdown, the report, and a failing benchmark script.
"""

import cProfile
import functools
import json
import os
import shutil
import tempfile
import time

from twisted.trial import unittest

from tests import support
from tests.support import load_bench

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


run = load_bench("run")


def busy(n):
    """Something to profile."""
    return sum(i * i for i in range(n))


def outer():
    for _ in range(5):
        busy(20000)


class ProfileTableTests(unittest.TestCase):
    def stats_file(self):
        profiler = cProfile.Profile()
        profiler.runcall(outer)
        path = self.mktemp()
        profiler.dump_stats(path)
        return path

    def test_rows_by_internal_time(self):
        rows = run.profile_rows(self.stats_file(), top=12)
        self.assertLessEqual(len(rows), 12)
        self.assertTrue(rows)
        tottimes = [row["tottime"] for row in rows]
        self.assertEqual(tottimes, sorted(tottimes, reverse=True))
        functions = {row["function"]: row for row in rows}
        # This file, relative to the project: file:line(name).
        busy_row = next(r for f, r in functions.items() if f.endswith("(busy)"))
        self.assertRegex(busy_row["function"], r"^tests/test_bench\.py:\d+\(busy\)$")
        self.assertEqual(busy_row["calls"], "5")
        self.assertGreaterEqual(busy_row["cumtime"], busy_row["tottime"])

    def test_top_limits_rows(self):
        self.assertEqual(len(run.profile_rows(self.stats_file(), top=2)), 2)

    def test_table_markdown(self):
        table = run.profile_table(run.profile_rows(self.stats_file(), top=3))
        lines = table.splitlines()
        self.assertEqual(lines[0], "| calls | tottime (s) | cumtime (s) | function |")
        self.assertEqual(len(lines), 2 + 3)
        self.assertEqual(lines[1], "|---:|---:|---:|---|")
        for line in lines[2:]:
            self.assertRegex(line, r"^\| \d+(/\d+)? \| [\d.]+ \| [\d.]+ \| `.+` \|$")

    def test_idle_poll_left_out(self):
        """The reactor's wait for events is idle time: not a row, counted apart."""
        import select

        if not hasattr(select, "epoll"):
            raise unittest.SkipTest("no epoll on this platform")
        poller = select.epoll()
        self.addCleanup(poller.close)
        profiler = cProfile.Profile()
        profiler.runcall(lambda: [poller.poll(0.02) for _ in range(3)])
        path = self.mktemp()
        profiler.dump_stats(path)
        functions = [row["function"] for row in run.profile_rows(path)]
        self.assertNotIn("<method 'poll' of 'select.epoll' objects>", functions)
        self.assertGreater(run.profile_idle(path), 0.03)

    def test_short_paths(self):
        self.assertEqual(run.short_path(os.path.join(ROOT, "mmo", "wire.py")), "mmo/wire.py")
        self.assertEqual(
            run.short_path("/x/lib/python3.11/site-packages/twisted/internet/base.py"),
            "twisted/internet/base.py",
        )
        self.assertEqual(
            run.function_name(("~", 0, "<built-in method len>")), "<built-in method len>"
        )


FIGURES = {
    "members": 100,
    "deliveries_per_s": 5000.0,
    "baseline_deliveries_per_s": 20000.0,
    "delivery_p99_ms": 12.5,
    "baseline_p99_ms": 2.5,
    "rate_ratio": 4.0,
    "settled": True,
    "transport": "a | b",
    "idle_bytes": 4096,
    "baseline_idle_bytes": 1024,
}


class FiguresTableTests(unittest.TestCase):
    def test_pairs_with_ratio(self):
        table = run.figures_table(
            FIGURES,
            [("deliveries_per_s", "baseline_deliveries_per_s"), ("missing", "baseline_missing")],
        )
        self.assertIn(
            "| `deliveries_per_s` | 5,000 | `baseline_deliveries_per_s` | 20,000 | 0.25 |", table
        )
        # Paired by name without being listed; a pair whose figures are missing is left out.
        self.assertIn("| `idle_bytes` | 4,096 | `baseline_idle_bytes` | 1,024 | 4 |", table)
        self.assertNotIn("missing", table)

    def test_every_figure_shown_once(self):
        table = run.figures_table(FIGURES, [("delivery_p99_ms", "baseline_p99_ms")])
        for key in FIGURES:
            self.assertIn(f"`{key}`", table)
        # A baseline appears beside its figure, not again in a row of its own.
        self.assertNotIn("\n| `baseline_p99_ms` |", table)
        self.assertIn("\n| `delivery_p99_ms` | 12.5 | `baseline_p99_ms` | 2.5 | 5 |", table)
        self.assertIn("| `settled` | yes | | | |", table)
        self.assertIn("a \\| b", table)

    def test_sizes_expand(self):
        figures = {
            "budget_ms": 50.0,
            "ticks_500": 10,
            "ticks_1000": 10,
            "tick_p50_ms_500": 5.0,
            "tick_p50_ms_1000": 10.0,
            "move_p50_ms_500": 0.1,
            "move_p50_ms_1000": 0.2,
            "tick_p99_ms_500": 25.0,
            "tick_p99_ms_1000": 30.0,
        }
        pairs = run.expand_pairs(
            [("tick_p50_ms_{n}", "move_p50_ms_{n}"), ("tick_p99_ms_{n}", "budget_ms")], figures
        )
        self.assertEqual(
            pairs,
            [
                ("tick_p50_ms_500", "move_p50_ms_500"),
                ("tick_p50_ms_1000", "move_p50_ms_1000"),
                ("tick_p99_ms_500", "budget_ms"),
                ("tick_p99_ms_1000", "budget_ms"),
            ],
        )
        table = run.figures_table(figures, [("tick_p99_ms_{n}", "budget_ms")])
        self.assertIn("| `tick_p99_ms_500` | 25.0 | `budget_ms` | 50.0 | 0.5 |", table)
        # A reference shared by several figures still gets its own row.
        self.assertIn("| `budget_ms` | 50.0 | | | |", table)

    def test_capacity_sizes_are_bot_counts(self):
        figures = {
            "goal_players_per_core": 2000,
            "bots_100": 100,
            "bots_400": 400,
            "players_per_core_100": 500.0,
            "players_per_core_400": 800.0,
        }
        pairs = run.expand_pairs([("players_per_core_{n}", "goal_players_per_core")], figures)
        self.assertEqual(
            pairs,
            [
                ("players_per_core_100", "goal_players_per_core"),
                ("players_per_core_400", "goal_players_per_core"),
            ],
        )

    def test_show(self):
        self.assertEqual(run.show(float("nan")), "n/a")
        self.assertEqual(run.show(False), "no")
        self.assertEqual(run.show(1234567), "1,234,567")
        self.assertEqual(run.show(0.012345), "0.0123")
        self.assertEqual(run.show(run.ratio(1, 0)), "n/a")


class ReportTests(unittest.TestCase):
    def results(self, ok=True):
        outcome = run.Outcome(
            "",
            ok,
            1.5,
            dict(FIGURES) if ok else {},
            "" if ok else "exit 1\nboom",
            args=["--members", "100"],
        )
        return {"chat_fanout": {"outcomes": [outcome.__dict__], "seconds": 1.5}}

    def test_render(self):
        info = run.machine()
        self.assertEqual(info["cpus"], os.cpu_count())
        text = run.render(self.results(), info, {}, 12.0, quick=True)
        self.assertIn("## Machine", text)
        self.assertIn("## Chat fan-out (`bench/chat_fanout.py`)", text)
        self.assertIn("`bench/chat_fanout.py --members 100`", text)
        self.assertIn("| `deliveries_per_s` | 5,000 |", text)
        self.assertNotIn("benchmarks/fanout.png", text)

    def test_render_profile_run(self):
        """A run for the profile only: its figures are not shown, its command is."""
        results = self.results()
        profiled = run.Outcome("profiled", True, 2.0, {"deliveries_per_s": 1.0}, args=["--x"])
        profiled.measure = False
        results["chat_fanout"]["outcomes"].append(profiled.__dict__)
        results["chat_fanout"].update(
            profile=[{"calls": "1", "tottime": 0.5, "cumtime": 0.5, "function": "f.py:1(f)"}],
            profile_total=3.0,
            profile_idle=2.0,
        )
        text = run.render(results, run.machine(), {}, 5.0, quick=False)
        self.assertIn("in a separate run (`bench/chat_fanout.py --x --profile PATH`", text)
        self.assertIn("3.00 s in all, of which 2.00 s waiting for events", text)
        self.assertIn("| 1 | 0.500 | 0.500 | `f.py:1(f)` |", text)
        self.assertNotIn("| `deliveries_per_s` | 1 |", text)
        self.assertEqual(text.count("| `deliveries_per_s` |"), 1)

    def test_render_failure(self):
        text = run.render(self.results(ok=False), run.machine(), {}, 1.0, quick=False)
        self.assertIn("**Failed:**", text)
        self.assertIn("boom", text)

    def test_write_report_without_plots(self):
        """figures.json and benchmarks.md are written; plots only with matplotlib."""
        output = self.mktemp()
        written = run.write_report(self.results(ok=False), output, 3.0, quick=True)
        with open(os.path.join(output, "benchmarks", "figures.json")) as f:
            raw = json.load(f)
        self.assertFalse(raw["benchmarks"]["chat_fanout"]["runs"][0]["ok"])
        self.assertIn("boom", raw["benchmarks"]["chat_fanout"]["runs"][0]["error"])
        self.assertIn(os.path.join(output, "benchmarks.md"), written)

    def test_plots(self):
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise unittest.SkipTest("matplotlib is not installed (pip install '.[bench]')")
        directory = self.mktemp()
        os.makedirs(directory)
        figures = {
            "budget_ms": 50.0,
            **{f"ticks_{n}": 10 for n in (250, 500)},
            **{f"tick_p50_ms_{n}": n / 100 for n in (250, 500)},
            **{f"tick_p99_ms_{n}": n / 50 for n in (250, 500)},
            **{f"move_p50_ms_{n}": n / 10000 for n in (250, 500)},
        }
        self.assertTrue(run.plot_tick(figures, os.path.join(directory, "tick.png")))
        series = [
            {
                "members": m,
                "deliveries_per_s": 1000.0 * m,
                "baseline_deliveries_per_s": 3000.0 * m,
                "delivery_p99_ms": m / 10,
                "baseline_p99_ms": m / 30,
            }
            for m in (100, 250)
        ]
        self.assertTrue(run.plot_fanout(series, os.path.join(directory, "fanout.png")))
        for name in ("tick.png", "fanout.png"):
            with open(os.path.join(directory, name), "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")


class FailureTests(unittest.TestCase):
    def script(self, text):
        directory = tempfile.mkdtemp(prefix="test-bench-")
        self.addCleanup(shutil.rmtree, directory, True)
        path = os.path.join(directory, "script.py")
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_exit_1_reported(self):
        path = self.script("import sys\nprint('some progress', file=sys.stderr)\nsys.exit(1)\n")
        outcome = run.run_script(path, [], timeout=30, profile=None)
        self.assertFalse(outcome.ok)
        self.assertIn("exit 1", outcome.error)
        self.assertIn("some progress", outcome.error)

    def test_no_json(self):
        outcome = run.run_script(self.script("print('hello')\n"), [], timeout=30, profile=None)
        self.assertFalse(outcome.ok)
        self.assertIn("no JSON figures", outcome.error)

    def test_timeout(self):
        path = self.script("import time\ntime.sleep(30)\n")
        outcome = run.run_script(path, [], timeout=0.5, profile=None)
        self.assertFalse(outcome.ok)
        self.assertIn("timed out", outcome.error)
        self.assertLess(outcome.seconds, 10)

    def test_figures_and_profile(self):
        path = self.script(
            "import argparse, cProfile, json\n"
            "p = argparse.ArgumentParser()\n"
            "p.add_argument('--json', action='store_true')\n"
            "p.add_argument('--profile')\n"
            "p.add_argument('--n', type=int)\n"
            "a = p.parse_args()\n"
            "cProfile.Profile().dump_stats(a.profile)\n"
            "print(json.dumps({'n': a.n}))\n"
        )
        profile = os.path.join(os.path.dirname(path), "x.prof")
        outcome = run.run_script(path, ["--n", "3"], timeout=30, profile=profile)
        self.assertTrue(outcome.ok, outcome.error)
        self.assertEqual(outcome.figures, {"n": 3})
        self.assertEqual(outcome.profile, profile)

    def test_failed_script_fails_the_run(self):
        """One failing benchmark: reported, the others still run, the exit status is 1."""
        failing = self.script("import sys\nsys.stderr.write('it broke\\n')\nsys.exit(1)\n")
        passing = os.path.join(os.path.dirname(failing), "ok.py")
        with open(passing, "w") as f:
            f.write("import json\nprint(json.dumps({'x': 1.0}))\n")
        benchmarks = [
            run.Benchmark("login", failing, "Failing", [], [run.Run("", [])], timeout=30),
            run.Benchmark("handoff", passing, "Passing", [], [run.Run("", [])], timeout=30),
        ]
        self.patch(run, "BENCHMARKS", benchmarks)
        self.patch(run, "log", lambda message: None)
        output = self.mktemp()
        status = run.main(["--quick", "--output", output])
        self.assertEqual(status, 1)
        with open(os.path.join(output, "benchmarks.md")) as f:
            text = f.read()
        self.assertIn("it broke", text)
        self.assertIn("| `x` | 1 | | | |", text)
        with open(os.path.join(output, "benchmarks", "figures.json")) as f:
            raw = json.load(f)
        self.assertTrue(raw["benchmarks"]["handoff"]["runs"][0]["ok"])
        self.assertFalse(raw["benchmarks"]["login"]["runs"][0]["ok"])


class CapacityFitTests(unittest.TestCase):
    """bench/capacity.py's least-squares split of the cores, and its CPU reading."""

    def setUp(self):
        self.capacity = load_bench("capacity")

    def point(self, players, pushes_per_s, fixed=0.1, per_player=0.0005, per_push=0.00002):
        cores = fixed + per_player * players + per_push * pushes_per_s
        return {
            "players": players,
            "pushes_per_s": pushes_per_s,
            "cores": {"server": cores, "gateway": cores / 2, "zone": cores / 2, "other": 0.0},
        }

    def test_its_deployment_starts(self):
        """The config it writes in the shape of conf/cluster.toml is one mmo starts with."""
        from mmo import config

        directory = self.mktemp()
        os.makedirs(directory)
        cluster = self.capacity.Cluster(directory)
        cluster.write_config()
        processes = config.load(cluster.config_path).processes.values()
        kinds = {p.kind for p in processes}
        self.assertLessEqual({"login", "gateway", "lobby", "zone"}, kinds)
        # Each zone serves its metrics (its ticks' time) on loopback, plain.
        for process in processes:
            if process.kind == "zone":
                self.assertIn(":interface=127.0.0.1", process.metrics)
                self.assertFalse(process.metrics_tls)

    def test_windows_combined(self):
        """Each figure the median of a count's windows, what must be 0 their total, the spread."""
        runs = [
            {"players_per_core_400": v, "lost_400": lost, "errors_400": 0, "bots_400": 400}
            for v, lost in ((700.0, 0), (820.0, 1), (760.0, 0))
        ]
        figures = self.capacity.combined(runs, 400)
        self.assertEqual(figures["players_per_core_400"], 760.0)
        self.assertEqual(figures["lost_400"], 1)
        self.assertEqual(figures["errors_400"], 0)
        self.assertEqual(figures["bots_400"], 400)
        self.assertEqual(figures["windows_400"], 3)
        self.assertEqual(figures["players_per_core_min_400"], 700.0)
        self.assertEqual(figures["players_per_core_max_400"], 820.0)
        # One window: its figures as they are, no spread.
        self.assertEqual(self.capacity.combined(runs[:1], 400), runs[0])

    def test_entry_points_timed(self):
        """
        A process started with --calls's module on its path times its entry
        points and writes their CPU and calls, which the bench reads.
        """
        import subprocess
        import sys

        directory = self.mktemp()
        os.makedirs(directory)
        code = (
            "from twisted.internet import reactor\n"
            "for i in range(5): reactor.callLater(0.05 * i, sum, range(1000))\n"
            "reactor.callLater(0.6, reactor.stop)\n"
            "reactor.run()\n"
        )
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([self.capacity.CALLS, self.capacity.ROOT])
        env["MMO_BENCH_CALLS"] = directory
        child = subprocess.Popen([sys.executable, "-c", code], env=env)
        self.assertEqual(child.wait(timeout=60), 0)
        found = self.capacity.call_times(directory, {"gw": ("gateway", child.pid)})
        self.assertGreaterEqual(found["call_n:gw:timers"], 5)
        self.assertGreater(found["call_s:gw:timers"], 0.0)
        # Every entry point that imports is there, called or not.
        self.assertEqual(found["call_n:gw:client_reads"], 0)
        # Without the variable, nothing is timed nor written.
        del env["MMO_BENCH_CALLS"]
        subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
        self.assertEqual(os.listdir(directory), [f"{child.pid}.json"])

    def test_yardstick(self):
        """The bare loop's passes, each timed; the yardstick their median, in milliseconds."""
        import random

        common = load_bench("_common")
        passes = common.bare_loop(500, 7, random.Random(1), 0.05)
        self.assertEqual(len(passes), 7)
        self.assertTrue(all(seconds > 0 for seconds in passes))
        # The yardstick: the median pass of LOOP_PASSES over LOOP_ENTITIES, in ms.
        asked = []

        def timed(size, runs, rng, step):
            asked.append((size, runs))
            return [0.004, 0.001, 0.003, 0.002, 0.005]

        self.patch(self.capacity, "bare_loop", timed)
        self.assertAlmostEqual(self.capacity.yardstick_ms(), 3.0)
        self.assertEqual(asked, [(self.capacity.LOOP_ENTITIES, self.capacity.LOOP_PASSES)])

    def test_call_figures(self):
        """Each kind's entry points over a window: per player-second, per call, per second."""
        spent = {
            "gateway-1": 3.0,
            "call_s:gateway-1:client_reads": 0.2,
            "call_n:gateway-1:client_reads": 4000,
            "call_s:gateway-2:client_reads": 0.1,
            "call_n:gateway-2:client_reads": 2000,
            "call_s:zone-1:ticks": 0.5,
            "call_n:zone-1:ticks": 200,
            "call_s:zone-1:client_reads": 0.0,
            "call_n:zone-1:client_reads": 0,
        }
        kinds = {"gateway-1": ("gateway", 1), "gateway-2": ("gateway", 2), "zone-1": ("zone", 3)}
        figures = self.capacity.call_figures(spent, kinds, 1000.0, 10.0, 400)
        self.assertAlmostEqual(figures["calls_gateway_client_reads_us_per_player_s_400"], 300.0)
        self.assertAlmostEqual(figures["calls_gateway_client_reads_us_400"], 50.0)
        self.assertAlmostEqual(figures["calls_gateway_client_reads_per_s_400"], 600.0)
        self.assertAlmostEqual(figures["calls_zone_ticks_us_400"], 2500.0)
        # An entry point never called in the window says nothing.
        self.assertNotIn("calls_zone_client_reads_us_400", figures)
        self.assertEqual(len(figures), 6)

    def test_metric_summed_over_labels(self):
        """A metric's samples, every label's, summed; another metric's left out."""
        page = (
            "# HELP mmo_zone_tick_duration_seconds Time a zone's tick takes.\n"
            'mmo_zone_tick_duration_seconds_bucket{zone="r0c0",le="0.001"} 3.0\n'
            'mmo_zone_tick_duration_seconds_count{zone="r0c0"} 40.0\n'
            'mmo_zone_tick_duration_seconds_count{zone="r1c0"} 2.0\n'
            'mmo_zone_tick_duration_seconds_sum{zone="r0c0"} 0.25\n'
            "mmo_zone_tick_duration_seconds_sum 0.5\n"
        )
        metric = self.capacity._metric
        self.assertEqual(metric(page, "mmo_zone_tick_duration_seconds_count"), 42.0)
        self.assertEqual(metric(page, "mmo_zone_tick_duration_seconds_sum"), 0.75)
        self.assertEqual(metric(page, "mmo_zone_tick_duration_seconds"), 0.0)

    def test_three_counts_give_fixed_player_and_push(self):
        points = [self.point(100, 1500), self.point(200, 3600), self.point(400, 9000)]
        figures = self.capacity.fit_figures(points)
        self.assertAlmostEqual(figures["fit_server_fixed_cores"], 0.1)
        self.assertAlmostEqual(figures["fit_server_us_per_player_s"], 500.0)
        self.assertAlmostEqual(figures["fit_server_us_per_push"], 20.0)
        self.assertAlmostEqual(figures["fit_gateway_us_per_push"], 10.0)
        self.assertAlmostEqual(figures["fit_other_fixed_cores"], 0.0)

    def test_two_counts_give_fixed_and_player_only(self):
        points = [self.point(100, 0, per_push=0), self.point(200, 0, per_push=0)]
        figures = self.capacity.fit_figures(points)
        self.assertAlmostEqual(figures["fit_server_fixed_cores"], 0.1)
        self.assertAlmostEqual(figures["fit_server_us_per_player_s"], 500.0)
        self.assertNotIn("fit_server_us_per_push", figures)

    def test_one_count_gives_no_fit(self):
        self.assertEqual(self.capacity.fit_figures([self.point(100, 1000)]), {})

    def test_links_as_the_cluster_config_says(self):
        """Unix-socket links when the cluster's config sets rpc_unix_dir, else TLS."""
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        path = os.path.join(directory, "cluster.toml")
        processes = '[processes.gateway-1]\nkind = "gateway"\n'
        for deployment, unix in (("", False), ('rpc_unix_dir = "run"\n', True)):
            with open(path, "w") as f:
                f.write('[deployment]\nname = "x"\n' + deployment + processes)
            shape = self.capacity.cluster_shape(path)
            self.assertEqual(shape, ([("gateway-1", "gateway")], {}, {}, unix))

    def test_cpu_seconds_of_a_process(self):
        spent = self.capacity.cpu_seconds(os.getpid())
        self.assertGreater(spent, 0.0)
        self.assertLessEqual(spent, time.process_time() + 0.02)


class RouteSmokeTests(unittest.TestCase):
    """bench/route.py at a tiny size, in each of the ways a gateway routes a move."""

    timeout = 240

    def test_answered_and_unanswered(self):
        script = os.path.join(ROOT, "bench", "route.py")
        for mode in ([], ["--unanswered"]):
            args = ["--requests", "2000", "--window", "100", *mode]
            outcome = run.run_script(script, args, timeout=200, profile=None)
            self.assertTrue(outcome.ok, outcome.error)
            figures = outcome.figures
            self.assertGreaterEqual(figures["requests"], 2000, mode)
            for name in ("route_per_s", "gateway_cpu_us", "baseline_client_cpu_us"):
                self.assertGreater(figures[name], 0, (mode, name))


class GatewayInputSmokeTests(unittest.TestCase):
    """bench/gateway_input.py at a tiny size, against this very checkout."""

    timeout = 240

    def test_figures(self):
        script = os.path.join(ROOT, "bench", "gateway_input.py")
        args = ["--players", "3", "--rounds", "1", "--against", ROOT]
        outcome = run.run_script(script, args, timeout=200, profile=None)
        self.assertTrue(outcome.ok, outcome.error)
        figures = outcome.figures
        names = ("move_us", "handoff_us", "zone_input_us", "zone_box_us", "ping_us")
        for name in (*names, "against_move_us", "against_zone_box_us"):
            self.assertGreater(figures[name], 0, name)
        self.assertGreater(figures["move_ratio"], 0)


def quick_run(name: str, profile: str | None = None):
    """The outcome of benchmark C{name}'s quick run (as C{bench/run.py --quick} runs it)."""
    [benchmark] = [b for b in run.BENCHMARKS if b.name == name]
    [quick] = benchmark.quick_runs
    return run.run_script(
        os.path.join(ROOT, "bench", benchmark.script),
        quick.args,
        timeout=benchmark.timeout,
        profile=profile,
    )


class TLSBenchSmokeTests(unittest.TestCase):
    """bench/tls.py at the tiny sizes of its quick run: every mode gives its figures."""

    timeout = 240

    def test_quick_run(self):
        profile = os.path.join(os.path.abspath(self.mktemp()), "tls.prof")
        os.makedirs(os.path.dirname(profile))
        outcome = quick_run("tls", profile)
        self.assertTrue(outcome.ok, outcome.error)
        figures = outcome.figures
        modes = ["twisted", "ssl_socket", "plain"]
        if "haproxy_skipped" in figures:
            if os.environ.get("MMO_REQUIRE_HAPROXY") == "1":
                self.fail("MMO_REQUIRE_HAPROXY=1 but bench/tls.py skipped the haproxy row")
        else:
            modes.append("haproxy")
            self.assertGreater(figures["haproxy_delivery_server_cpu_us"], -1)
        for mode in modes:
            self.assertGreater(figures[f"{mode}_deliveries_per_s"], 0, mode)
            self.assertGreater(figures[f"{mode}_echoes_per_s"], 0, mode)
            self.assertGreater(figures[f"{mode}_echo_p99_ms"], 0, mode)
        # The profile is of mmo's TLS server, which read through Twisted's TLS.
        self.assertTrue(os.path.exists(profile))
        self.assertTrue(any("tls.py" in row["function"] for row in run.profile_rows(profile, 50)))


class LiveMapBenchTests(unittest.TestCase):
    """bench/live_map.py at the tiny sizes of its quick run."""

    timeout = 120

    def test_quick_run(self):
        """Both sides of the tick are measured, frames are made, and the browser gets updates."""
        outcome = quick_run("live_map")
        self.assertTrue(outcome.ok, outcome.error)
        figures = outcome.figures
        self.assertEqual(figures["ticks_watched"], figures["ticks_unwatched"])
        self.assertGreater(figures["frames"], 0)
        self.assertGreater(figures["frame_bytes"], 200 * 8)
        self.assertEqual(figures["streamed_entities"], 500)
        self.assertGreater(figures["updates_per_s"], 0)
        # A zoomed view holds fewer dots than the whole world.
        self.assertLess(figures["zoomed_update_bytes"], figures["update_bytes"])
        # Everything on costs something over everything off, and a scrape was timed.
        self.assertGreater(figures["share_map_and_metrics"], 0)
        self.assertGreater(figures["scrape_p50_ms"], 0)


class TLSSessionsBenchTests(unittest.TestCase):
    """bench/tls_sessions.py at the tiny size of its quick run."""

    def test_quick_run(self):
        outcome = quick_run("tls_sessions")
        self.assertTrue(outcome.ok, outcome.error)
        figures = outcome.figures
        for mode in ("no_tickets", "tickets", "resumed"):
            self.assertGreater(figures[f"{mode}_server_cpu_us"], 0, mode)
        # Only the client that offers its session resumes; a resumed
        # handshake sends no certificate.
        self.assertEqual((figures["no_tickets_resumed"], figures["tickets_resumed"]), (0, 0))
        self.assertEqual(figures["resumed_resumed"], 1)
        self.assertLess(figures["resumed_server_bytes"], figures["no_tickets_server_bytes"])


class ChatFanoutBenchTests(unittest.TestCase):
    """bench/chat_fanout.py at tiny sizes against a real standalone server."""

    timeout = 240

    def test_tiny_run(self):
        """Every delivery arrives on both sides; the bare server relays frames as large."""
        outcome = run.run_script(
            os.path.join(ROOT, "bench", "chat_fanout.py"),
            ["--members", "4", "--messages", "3", "--max-seconds", "60"],
            timeout=180,
            profile=None,
        )
        self.assertTrue(outcome.ok, outcome.error)
        figures = outcome.figures
        # {"channel": "world:main", "from": ..., "text": ..., "time": ..., "t": ..., "seq": ...}
        self.assertGreater(figures["frame_bytes"], 60)
        for side in ("", "baseline_"):
            self.assertGreater(figures[f"{side}deliveries_per_s"], 0)
            self.assertGreater(figures[f"{side}server_cpu_us_per_delivery"], 0)
        self.assertAlmostEqual(
            figures["idle_bytes_over_baseline"],
            figures["idle_bytes_per_added_client"]
            - figures["baseline_idle_bytes_per_added_client"],
        )

    def test_idle_steps(self):
        """
        The clients join in steps; one more client costs the median growth
        per client of the steps after the first, which pays for what is
        made once.
        """
        chat_fanout = load_bench("chat_fanout")
        steps = chat_fanout.parts(10, 3)
        self.assertEqual(steps, [(0, 3), (3, 6), (6, 10)])
        self.assertEqual(chat_fanout.parts(3, 5), [(0, 1), (1, 2), (2, 3)])
        # Before, then after each step: the first step made 900 once; the
        # others cost 100, 50 (a step that reused free memory) and 100.
        steps = chat_fanout.parts(8, 4)
        rss = [0, 1100, 1300, 1400, 1600]
        total, added = chat_fanout.idle_per_client(8, steps, rss)
        self.assertEqual(total, 200)
        self.assertEqual(added, 100)


class StreamPushBenchTests(unittest.TestCase):
    """bench/stream_push.py at the tiny size of its quick run, profiled as make bench runs it."""

    timeout = 120

    def test_quick_run(self):
        """Both ways give every figure (every push delivered, or the script fails)."""
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        profile = os.path.join(directory, "stream_push.prof")
        outcome = quick_run("stream_push", profile=profile)
        self.assertTrue(outcome.ok, outcome.error)
        figures = outcome.figures
        self.assertEqual(figures["pushes"], 5 * 22)
        for way in ("stems", "batch"):
            self.assertGreater(figures[f"{way}_gateway_us_per_push"], 0)
            self.assertGreater(figures[f"{way}_zone_us_per_push"], 0)
            self.assertGreater(figures[f"{way}_box_bytes_per_push"], 100)
        self.assertTrue(os.path.exists(profile))

    def test_link_boxes(self):
        """
        With --link, every message reaches the gateway as its link's AMP
        box (every push delivered, or the script fails); with --tls-link,
        every box of the run crosses a real mutual-TLS link and is heard.
        """
        script = os.path.join(ROOT, "bench", "stream_push.py")
        tiny = ["--players", "5", "--ticks", "4", "--repeat", "1"]
        outcome = run.run_script(script, [*tiny, "--link"], timeout=100, profile=None)
        self.assertTrue(outcome.ok, outcome.error)
        self.assertEqual(outcome.figures["pushes"], 4 * 6)
        self.assertGreater(outcome.figures["stems_gateway_us_per_push"], 0)
        outcome = run.run_script(script, [*tiny, "--tls-link"], timeout=100, profile=None)
        self.assertTrue(outcome.ok, outcome.error)
        self.assertEqual(outcome.figures["tls_link_boxes"], 4)
        self.assertGreater(outcome.figures["tls_link_us_per_box"], 0)


class LoginBenchTests(unittest.TestCase):
    """bench/login.py at tiny sizes against a real standalone server."""

    def test_tiny_run(self):
        outcome = run.run_script(
            os.path.join(ROOT, "bench", "login.py"),
            ["--logins", "4", "--concurrency", "2", "--repeats", "1", "--max-seconds", "60"],
            timeout=180,
            profile=None,
        )
        self.assertTrue(outcome.ok, outcome.error)
        figures = outcome.figures
        for count in ("logins", "kept_logins", "token_logins"):
            self.assertEqual(figures[count], 4)
        for kind in ("login", "kept_login", "token", "handshake"):
            self.assertGreater(figures[f"{kind}_per_s"], 0)
            self.assertGreater(figures[f"{kind}_client_cpu_ms"], 0)
        # A password login costs the server at least the hash it checks.
        self.assertGreater(figures["kept_login_server_cpu_ms"], figures["hash_ms"] * 0.5)
        # What the server and the client spend bounds what the rates can reach.
        # (Its figure is a ratio of two times measured apart: its size is
        # the machine's to say, not a test's.)
        for bound in ("login", "kept_login", "token"):
            self.assertGreater(figures[f"{bound}_shared_bound_ratio"], 0)
        self.assertAlmostEqual(
            figures["login_shared_bound_ratio"],
            figures["hash_ms"] / (figures["login_server_cpu_ms"] + figures["login_client_cpu_ms"]),
        )
        self.assertGreaterEqual(figures["other_cpu_per_s"], 0)
        self.assertEqual(figures["hash_threads"], figures["cores"])
        # The client keeps the login listener's session: every login resumes.
        self.assertEqual((figures["resume"], figures["login_resumed"]), (1, 1.0))
        self.assertEqual(figures["token_resumed"], 1.0)
        # The hash runs off the reactor thread: most of a kept login's CPU is elsewhere.
        self.assertGreater(figures["kept_login_reactor_cpu_ms"], 0)
        self.assertLess(
            figures["kept_login_reactor_cpu_ms"], figures["kept_login_server_cpu_ms"] * 0.5
        )
        # The ceiling of every core checking at once, beside the one of a check alone.
        self.assertGreater(figures["hash_parallel_ms"], 0)
        self.assertAlmostEqual(
            figures["parallel_ceiling_per_s"], figures["cores"] / figures["hash_parallel_ms"] * 1000
        )
        self.assertAlmostEqual(
            figures["hash_parallel_ratio"], figures["hash_parallel_ms"] / figures["hash_ms"]
        )
        self.assertAlmostEqual(
            figures["login_parallel_ceiling_ratio"],
            figures["login_per_s"] / figures["parallel_ceiling_per_s"],
        )
        # The hashing threads' CPU per login is about a check's; their idle share is a share.
        for kind in ("login", "kept_login"):
            self.assertGreater(figures[f"{kind}_hash_cpu_ms"], figures["hash_ms"] * 0.5)
            self.assertGreaterEqual(figures[f"{kind}_hash_idle"], 0)
            self.assertLessEqual(figures[f"{kind}_hash_idle"], 1)

    def test_checks_timed_on_every_thread(self):
        timed_checks = load_bench("login").timed_checks
        login = support.config_of(login={"argon2_memory_kib": 64, "argon2_time_cost": 1}).login
        for threads in (1, 3):
            times = timed_checks(login, 4, threads)
            self.assertEqual(len(times), 4 * threads)
            self.assertTrue(all(0 < seconds < 1 for seconds in times))

    def test_no_resume(self):
        outcome = run.run_script(
            os.path.join(ROOT, "bench", "login.py"),
            ["--logins", "4", "--concurrency", "2", "--repeats", "1", "--kinds", "token",
             "--no-resume"],
            timeout=180,
            profile=None,
        )  # fmt: skip
        self.assertTrue(outcome.ok, outcome.error)
        figures = outcome.figures
        self.assertEqual((figures["resume"], figures["token_resumed"]), (0, 0.0))
        self.assertEqual(figures["token_logins"], 4)

    def test_machine_cpu_counts_this_process(self):
        machine_cpu_seconds = load_bench("_common").machine_cpu_seconds
        before, mine = machine_cpu_seconds(), time.process_time()
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:
            busy(1000)
        self.assertGreater(machine_cpu_seconds() - before, (time.process_time() - mine) * 0.5)


class ZoneTickSmokeTests(unittest.TestCase):
    """bench/zone_tick.py at a tiny size: every figure, for the ticks asked."""

    def test_tiny_run(self):
        zone_tick = load_bench("zone_tick")
        figures = zone_tick.run_size(100, ticks=5, max_seconds=5.0, seed=1, settle=False)
        self.assertEqual(figures["ticks_100"], 5)
        self.assertEqual(figures["pushes_per_tick_100"], 10)
        self.assertGreater(figures["visible_per_player_100"], 0)
        for name in ("tick_p50_ms", "tick_p99_ms", "tick_cpu_p50_ms", "tick_cpu_p99_ms"):
            self.assertGreater(figures[f"{name}_100"], 0, name)
        for name in ("encode_p50_ms", "encode_whole_p50_ms"):
            self.assertGreater(figures[f"{name}_100"], 0, name)

    def test_cold_caches(self):
        """--cold: a sweep of the buffer before each tick, every cache line of it written."""
        zone_tick = load_bench("zone_tick")
        self.assertGreaterEqual(zone_tick.CacheSweep.size_for_this_machine(), 1 << 20)
        sweep = zone_tick.CacheSweep(4096)
        calls = []
        buffer = sweep.buffer

        def counted():
            calls.append(None)
            sweep()

        figures = zone_tick.run_size(
            100, ticks=5, max_seconds=5.0, seed=1, settle=False, sweep=counted
        )
        self.assertEqual(figures["ticks_100"], 5)
        self.assertEqual(len(calls), zone_tick.WARMUP + 5)
        self.assertEqual(bytes(buffer[::64]), b"\x01" * 64)
        self.assertEqual(buffer.count(1), 64)

    def test_count_ticks(self):
        """
        --count: each counted tick in a functools.reduce call of its own,
        the warm-up's in none; with --cold, a sweep before each, outside it.
        """
        zone_tick = load_bench("zone_tick")
        reduced = []

        class Counting:
            @staticmethod
            def reduce(function, items, start):
                reduced.append(len(items))
                return functools.reduce(function, items, start)

        self.patch(zone_tick, "functools", Counting)
        swept = []
        zone = zone_tick.BorderWalkZone(40, seed=1)
        zone_tick.count_ticks(zone, 5, settle=False, sweep=lambda: swept.append(len(reduced)))
        self.assertEqual(reduced, [1] * 5)
        self.assertEqual(swept, [0, 1, 2, 3, 4])
        self.assertEqual(zone.sim.tick_count, zone_tick.WARMUP + 5)

    def test_border_walk(self):
        """
        The border-walk shape: players on both sides of the border, handed
        over both ways, each one a real of the left zone or not, never
        lost; those in sight of one another are shown their moves.
        """
        zone_tick = load_bench("zone_tick")
        figures = zone_tick.run_border_walk(40, ticks=200, max_seconds=10.0, seed=1, settle=False)
        self.assertEqual(figures["border_walk_ticks_40"], 200)
        self.assertGreater(figures["border_walk_handoffs_per_tick_40"], 0)
        self.assertGreater(figures["border_walk_pushes_per_tick_40"], 0)
        self.assertGreater(figures["border_walk_tick_p50_ms_40"], 0)
        self.assertTrue(0 < figures["border_walk_reals_40"] < 40 + 10)
        zone = zone_tick.BorderWalkZone(40, seed=1)
        for _ in range(200):
            zone.apply(zone.step())
            zone.hand_over(zone.sim.tick())
            for entity, *_ in zone.walkers:
                # Within the hysteresis of the border, either zone's.
                if abs(entity.x - zone.border) > zone.hysteresis:
                    real = entity.id in zone.sim.reals
                    self.assertEqual(real, entity.x < zone.border, entity)


class GhostsBenchTests(unittest.TestCase):
    """bench/ghosts.py at a tiny size: every figure, and the two zones it measures."""

    def test_tiny_run(self):
        ghosts = load_bench("ghosts")
        figures = ghosts.run(40, ticks=20, seed=1, settle=False)
        self.assertEqual(figures["ghosts_ticks_40"], 20)
        for name in ("in_p50_us", "out_p50_us", "bus_codec_p50_us", "bytes_per_update"):
            self.assertGreater(figures[f"ghosts_{name}_40"], 0, name)
        self.assertGreater(figures["ghosts_views_per_update_40"], 1)

    def test_border_walk(self):
        """
        Every player is a real of exactly one zone, handed over both ways;
        each zone's ghosts are reals of the other, shown as they are (their
        views without their versions), at their versions.
        """
        ghosts = load_bench("ghosts")
        walk = ghosts.BorderWalk(40, seed=1)
        everyone = {w[0].id for w in walk.walkers}
        west, east = walk.zones
        for _ in range(200):
            walk.step()
            self.assertFalse(west.real_simulation.reals.keys() & east.real_simulation.reals.keys())
            self.assertEqual(
                west.real_simulation.reals.keys() | east.real_simulation.reals.keys(), everyone
            )
            for zone, other in ((west, east), (east, west)):
                reals = other.real_simulation.reals
                for entity_id, view in zone.ghosts.views_from(other.name).items():
                    self.assertEqual(view, reals[entity_id].view())
                    self.assertEqual(zone.ghosts.get(entity_id).version, reals[entity_id].version)
        handed = {w[0].id for w in walk.walkers if w[0].version}
        self.assertTrue(handed & west.real_simulation.reals.keys())
        self.assertTrue(handed & east.real_simulation.reals.keys())


class MetricsCostBenchTests(unittest.TestCase):
    """bench/metrics_cost.py at a tiny size: every figure, each way."""

    def test_tiny_run(self):
        profile = os.path.abspath(self.mktemp())
        outcome = run.run_script(
            os.path.join(ROOT, "bench", "metrics_cost.py"),
            ["--entities", "100", "--ticks", "10", "--messages", "400", "--scrape-every", "5"],
            timeout=120,
            profile=profile,
        )
        self.assertTrue(outcome.ok, outcome.error)
        figures = outcome.figures
        self.assertEqual(figures["entities"], 100)
        self.assertEqual(figures["zone_ticks"], 20)
        self.assertEqual(figures["gateway_messages"], 800)
        for name in ("zone_tick", "gateway_cpu"):
            self.assertGreater(figures[f"{name}_ratio"], 0, name)
        for name in ("zone_tick_on_p50_ms", "zone_tick_off_p50_ms", "zone_scrape_ms"):
            self.assertGreater(figures[name], 0, name)
        for name in ("gateway_cpu_on_us", "gateway_cpu_off_us", "gateway_scrape_ms"):
            self.assertGreater(figures[name], 0, name)
        self.assertTrue(os.path.getsize(profile))


class BotReadsBenchTests(unittest.TestCase):
    def test_tiny_run(self):
        outcome = run.run_script(
            os.path.join(ROOT, "bench", "bot_reads.py"),
            ["--pushes", "200", "--repeats", "1"],
            timeout=120,
            profile=None,
        )
        self.assertTrue(outcome.ok, outcome.error)
        figures = outcome.figures
        self.assertEqual(figures["pushes"], 200)
        self.assertGreater(figures["sdk_us_per_push"], 0)
        # The bot skips most of a push in msgpack's C code: cheaper than a full decode.
        self.assertLess(figures["bot_us_per_push"], figures["sdk_us_per_push"])


class LadderQueueBenchTests(unittest.TestCase):
    def test_tiny_run(self):
        outcome = run.run_script(
            os.path.join(ROOT, "bench", "ladder_queue.py"),
            ["--queued", "200", "--large", "400", "--repeats", "1"],
            timeout=120,
            profile=None,
        )
        self.assertTrue(outcome.ok, outcome.error)
        figures = outcome.figures
        self.assertEqual((figures["queued"], figures["large"]), (200, 400))
        for mode, teams in (("1v1", 2), ("5v5", 10)):
            # Most of a queue this dense is matched; both passes formed the same.
            self.assertGreater(figures[f"matches_{mode}"] * teams, 200 * 0.8, mode)
            for name in (f"pass_{mode}_ms", f"baseline_pass_{mode}_ms", f"pass_{mode}_ms_large"):
                self.assertGreater(figures[name], 0, name)
        self.assertIn(("pass_1v1_ms", "baseline_pass_1v1_ms"), run.expand_pairs([], figures))


class LadderBenchTests(unittest.TestCase):
    """bench/ladder.py at the tiny size of its quick run, on both stores."""

    timeout = 120

    def test_quick_run(self):
        """Every figure is there; the rollover under results lost and doubled none."""
        outcome = quick_run("ladder")
        self.assertTrue(outcome.ok, outcome.error)
        figures = outcome.figures
        for backend in ("redis", "sqlite"):
            for read in ("rank", "around", "top"):
                self.assertGreater(figures[f"{backend}_{read}_p99_ms"], 0, (backend, read))
                self.assertGreater(figures[f"{backend}_raw_{read}_p99_ms"], 0, (backend, read))
            self.assertGreater(figures[f"{backend}_results_per_s"], 0, backend)
            self.assertGreater(figures[f"{backend}_rollover_ms"], 0, backend)
            self.assertEqual(figures[f"{backend}_rollover_lost"], 0, backend)
            self.assertEqual(figures[f"{backend}_rollover_doubled"], 0, backend)
            # The rollover happened with results still coming: some landed after it.
            self.assertGreater(figures[f"{backend}_rollover_results_after"], 0, backend)
            self.assertLess(
                figures[f"{backend}_rollover_results_after"],
                figures[f"{backend}_rollover_results"],
                backend,
            )
