"""
Capacity: how many walking players a core of server CPU carries.

A cluster of the shape of C{conf/cluster.toml} (a login server, two
gateways, a lobby, a chat and two zones, each its own C{twistd} process,
on a private redis-server) on free loopback ports, loaded by C{mmo-bot}
(one more process) with C{--bots} counts one after the other.  For each
count: the ramp, then a fixed window of C{--window} seconds (the bot
prints C{window start} and C{window end} on its progress output); each
process's CPU time (C{utime + stime} from C{/proc/PID/stat}) is read at
both ends of the window.  The bot's own CPU is reported apart.  A
least-squares fit over the counts splits each process kind's cores into
a fixed part, a part per player-second and a part per push.

    python bench/capacity.py [--bots 100,200,400] [--window 60] [--repeat N]
                             [--update-rate HZ] [--calls] [--json]

With --calls, the server processes also time their entry points
(bench/calls/sitecustomize.py: each call's thread CPU time), and each
kind's figures say where its CPU went over the window, per entry point:
microseconds per player-second, per call, and calls per second.  The
timing costs about a microsecond a call: the other figures of such a run
are not those of a run without it.

See bench/README.md for every figure.
"""

from __future__ import annotations

import json
import os
import random
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
#: The directory of the sitecustomize module that times the entry points (--calls).
CALLS = os.path.join(HERE, "calls")
#: The machine's yardstick: a bare loop moving this many entities (zone_tick's
#: move_p50_ms at this size), this many passes, before and after the cluster runs.
LOOP_ENTITIES = 10_000
LOOP_PASSES = 200
sys.path.insert(0, ROOT)

from bench._common import bare_loop, cpu_seconds, parser, percentile, report  # noqa: E402
from tests.redis import RedisServer, free_port  # noqa: E402

#: The shipped cluster whose shape is copied.
CLUSTER_CONFIG = os.path.join(ROOT, "conf", "cluster.toml")
CLIENT_KINDS = ("login", "gateway")
#: Process kinds reported apart; every other server process (redis-server included) is "other".
KINDS = ("gateway", "zone", "other")
#: mmo-bot under cProfile timed by the process's CPU time, not the wall
#: clock (on a shared machine a wall-clock profile counts the time the
#: process waited for a core): C{python -c PROFILED_BOT PATH ARGS...}.
PROFILED_BOT = """
import cProfile, sys, time
from mmo.bot.cli import main
path = sys.argv.pop(1)
profile = cProfile.Profile(time.process_time)
profile.enable()
try:
    main(sys.argv[1:])
except SystemExit:
    pass
finally:
    profile.disable()
    profile.dump_stats(path)
"""


def cluster_shape(
    path: str = CLUSTER_CONFIG,
) -> tuple[list[tuple[str, str]], dict, dict, bool]:
    """
    The C{(name, kind)} processes of the cluster config C{path} (the
    manager aside: it only supervises; the economy aside: walking players
    never reach it), its C{[world]}, its C{[login]}, and
    whether its processes link on Unix sockets (C{[deployment]
    rpc_unix_dir}).
    """
    with open(path, "rb") as f:
        data = tomllib.load(f)
    # The economy's processes are left out with its section (its data files
    # are the config's): walking players never reach it.
    processes = [
        (name, table["kind"])
        for name, table in data["processes"].items()
        if table["kind"] not in ("manager", "economy")
    ]
    unix = bool(data.get("deployment", {}).get("rpc_unix_dir"))
    return processes, data.get("world", {}), data.get("login", {}), unix


def toml_table(name: str, values: dict) -> str:
    """C{values} (numbers and lists of strings) as the TOML table C{name}."""
    lines = [f"[{name}]"]
    for key, value in values.items():
        lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def fit(rows: list[tuple[float, ...]], values: list[float]) -> list[float] | None:
    """
    Least squares: the C{x} minimising |A x - values| for the rows of A,
    by the normal equations (a handful of unknowns); None if singular.
    """
    n = len(rows[0])
    if len(rows) < n:
        return None
    a = [[sum(r[i] * r[j] for r in rows) for j in range(n)] for i in range(n)]
    b = [sum(r[i] * v for r, v in zip(rows, values, strict=True)) for i in range(n)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(a[r][col]))
        if abs(a[pivot][col]) < 1e-12 * max(1.0, max(abs(x) for row in a for x in row)):
            return None
        a[col], a[pivot] = a[pivot], a[col]
        b[col], b[pivot] = b[pivot], b[col]
        for r in range(n):
            if r != col:
                k = a[r][col] / a[col][col]
                a[r] = [x - k * y for x, y in zip(a[r], a[col], strict=True)]
                b[r] -= k * b[col]
    return [b[i] / a[i][i] for i in range(n)]


class Cluster:
    """The processes of a C{conf/cluster.toml}-shaped deployment, in C{directory}."""

    def __init__(
        self,
        directory: str,
        links: str = "config",
        update_rate: float | None = None,
        calls: bool = False,
    ):
        self.directory = directory
        #: Where the processes write their entry points' CPU time (--calls), or None.
        self.calls = os.path.join(directory, "calls") if calls else None
        self.redis = RedisServer(os.path.join(directory, "redis"))
        self.processes, self.world, self.login, unix = cluster_shape()
        if update_rate is not None:
            self.world = {**self.world, "update_rate": update_rate}
        #: Links between the processes on Unix sockets (else mutual TLS).
        self.unix = unix if links == "config" else links == "unix"
        self.ports = {name: free_port() for name, _ in self.processes}
        #: Each zone's metrics listener (plain HTTP on loopback): its ticks' time.
        self.metrics_ports = {name: free_port() for name, kind in self.processes if kind == "zone"}
        self.children: dict[str, subprocess.Popen] = {}
        self.kinds = dict(self.processes)
        self.config_path = os.path.join(directory, "mmo.toml")

    def write_config(self) -> None:
        tables = []
        for name, kind in self.processes:
            listener = "client" if kind in CLIENT_KINDS else "rpc"
            tables.append(
                f'[processes.{name}]\nkind = "{kind}"\n'
                f'{listener} = "tcp:{self.ports[name]}:interface=127.0.0.1"\n'
                'hosts = ["localhost", "127.0.0.1"]\n'
                + (
                    f'metrics = "tcp:{self.metrics_ports[name]}:interface=127.0.0.1"\n'
                    "metrics_tls = false\n"
                    if name in self.metrics_ports
                    else ""
                )
            )
        with open(self.config_path, "w") as f:
            f.write(
                '[deployment]\nname = "capacity"\ntls_dir = "certs"\n'
                + ('rpc_unix_dir = "run"\n' if self.unix else "")
                + '[logging]\nlevel = "info"\n'
                '[store]\nbackend = "redis"\n[bus]\nbackend = "redis"\n'
                f'[redis]\nhost = "127.0.0.1"\nport = {self.redis.port}\nprefix = "capacity"\n'
                # conf/cluster.toml's world and its lifted per-address throttles.
                + toml_table("world", self.world)
                + toml_table("login", self.login)
                + '[realms.main]\ntitle = "Main"\n'
                + "\n".join(tables)
            )

    def start(self, timeout: float = 120.0) -> None:
        from mmo import certs, config

        self.redis.start()
        self.write_config()
        certs.generate(config.load(self.config_path))
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        if self.calls is not None:
            os.makedirs(self.calls, exist_ok=True)
            env |= {"PYTHONPATH": CALLS, "MMO_BENCH_CALLS": self.calls}
        code = "import sys; from twisted.scripts.twistd import run; sys.argv[0]='twistd'; run()"
        # Services first, so that the login server and the gateways find them.
        order = sorted(self.kinds, key=lambda n: self.kinds[n] in CLIENT_KINDS)
        for name in order:
            log = os.path.join(self.directory, f"{name}.log")
            self.children[name] = subprocess.Popen(
                [sys.executable, "-c", code, "-n", "--pidfile", "", "--logfile", log]
                + [f"mmo-{self.kinds[name]}", "--config", self.config_path]
                + ["--process", name],
                env=env,
                cwd=self.directory,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        for name in order:
            log = os.path.join(self.directory, f"{name}.log")
            while True:
                if os.path.exists(log):
                    with open(log) as f:
                        if f"{name}: ready" in f.read():
                            break
                if self.children[name].poll() is not None:
                    raise RuntimeError(f"{name} exited at start: see {log}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not start in {timeout:g} s: see {log}")
                time.sleep(0.1)

    def pids(self) -> dict[str, tuple[str, int]]:
        """Process name to (kind for the report, pid), the redis-server included."""
        found = {name: (self.kind_of(name), p.pid) for name, p in self.children.items()}
        found["redis-server"] = ("other", self.redis.process.pid)
        return found

    def zone_ticks(self) -> dict[str, float]:
        """
        Each zone's ticks so far and the seconds they took (wall clock,
        C{mmo_zone_tick_duration_seconds}), read from its metrics:
        C{{"ticks:NAME": count, "tick_s:NAME": seconds}}.
        """
        figures = {}
        for name, port in self.metrics_ports.items():
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
                text = reply.read().decode()
            figures[f"ticks:{name}"] = _metric(text, "mmo_zone_tick_duration_seconds_count")
            figures[f"tick_s:{name}"] = _metric(text, "mmo_zone_tick_duration_seconds_sum")
        return figures

    def sample(self, pids: dict[str, tuple[str, int]]) -> dict[str, float]:
        """
        What L{run_bots} reads at both ends of a window: CPU seconds, the
        zones' ticks and, with --calls, the entry points' CPU time.
        """
        found = cpu_all(pids) | self.zone_ticks()
        if self.calls is not None:
            found |= call_times(self.calls, pids)
        return found

    def kind_of(self, name: str) -> str:
        kind = self.kinds[name]
        return kind if kind in KINDS else "other"

    def stop(self) -> None:
        for child in self.children.values():
            if child.poll() is None:
                child.terminate()
        for child in self.children.values():
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(10)
        self.redis.stop()


def cpu_all(pids: dict[str, tuple[str, int]]) -> dict[str, float]:
    return {name: cpu_seconds(pid) for name, (_, pid) in pids.items()}


def yardstick_ms() -> float:
    """
    The machine's speed now, with nothing of the cluster running: the
    median milliseconds of a bare loop moving L{LOOP_ENTITIES} entities
    (as zone_tick's C{move_p50_ms} at that size), for reading players per
    core across machines and runs.
    """
    return percentile(bare_loop(LOOP_ENTITIES, LOOP_PASSES, random.Random(1), 0.05), 0.5) * 1000


def call_times(directory: str, pids: dict[str, tuple[str, int]]) -> dict[str, float]:
    """
    What each process last wrote of its entry points' CPU time
    (L{CALLS}'s C{PID.json} in C{directory}, at most a fifth of a second
    old): C{{"call_s:NAME:ENTRY": seconds, "call_n:NAME:ENTRY": calls}}.
    """
    found = {}
    for name, (_, pid) in pids.items():
        try:
            with open(os.path.join(directory, f"{pid}.json")) as f:
                state = json.load(f)
        except FileNotFoundError:
            continue
        for entry, seconds in state["seconds"].items():
            found[f"call_s:{name}:{entry}"] = seconds
            found[f"call_n:{name}:{entry}"] = state["calls"][entry]
    return found


def call_figures(spent: dict, kinds: dict, player_seconds: float, seconds: float, n: int) -> dict:
    """
    Each kind's entry points over a window (C{spent}, L{call_times}'
    differences; C{kinds}, process name to C{(kind, pid)}): microseconds
    of CPU per player-second and per call, and calls per second.
    """
    totals: dict[tuple[str, str], list[float]] = {}
    for key, value in spent.items():
        if not key.startswith(("call_s:", "call_n:")):
            continue
        what, name, entry = key.split(":", 2)
        total = totals.setdefault((kinds[name][0], entry), [0.0, 0.0])
        total[what == "call_n"] += value
    figures = {}
    for (kind, entry), (cpu, calls) in sorted(totals.items()):
        if not calls:
            continue
        figures[f"calls_{kind}_{entry}_us_per_player_s_{n}"] = (
            1e6 * cpu / player_seconds if player_seconds else 0.0
        )
        figures[f"calls_{kind}_{entry}_us_{n}"] = 1e6 * cpu / calls
        figures[f"calls_{kind}_{entry}_per_s_{n}"] = calls / seconds
    return figures


def _metric(text: str, name: str) -> float:
    """The sum of metric C{name}'s samples (every label) in a Prometheus text page."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def run_bots(
    cluster: Cluster,
    bots: int,
    args,
    prefix: str,
    profile: str | None,
    source: str = ROOT,
    sample=cpu_all,
) -> tuple[dict, dict]:
    """
    One bot count: the bot's report and the CPU seconds each process
    (and C{"bots"}) spent over the window.  The bots run from the C{mmo}
    package in the directory C{source}.  C{sample(pids)} is read at both
    ends of the window (the CPU seconds of each process, and any other
    count the caller wants over the window); the result has each of its
    keys' differences.
    """
    ca = os.path.join(cluster.directory, "certs", "ca.crt")
    report_path = os.path.join(cluster.directory, f"bots-{bots}.json")
    command = [sys.executable]
    if profile:
        command += ["-c", PROFILED_BOT, profile]
    else:
        command += ["-m", "mmo.bot.cli"]
    command += [
        "--config",
        cluster.config_path,
        "--ca",
        ca,
        "--bots",
        str(bots),
        "--scenario",
        args.scenario,
        "--duration",
        str(args.window),
        "--ramp",
        str(args.ramp),
        "--prefix",
        prefix,
        "--seed",
        "1",
        "--max-seconds",
        str(args.max_seconds),
        "--output",
        report_path,
    ]
    pids = cluster.pids()
    bot = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=source,
        env={**os.environ, "PYTHONPATH": source},
    )
    pids["bots"] = ("bots", bot.pid)
    start = end = None
    deadline = time.monotonic() + args.max_seconds + 60
    lines = []
    while time.monotonic() < deadline:
        ready, _, _ = select.select([bot.stderr], [], [], 1.0)
        if not ready:
            if bot.poll() is not None:
                break
            continue
        line = bot.stderr.readline()
        if not line:
            break
        lines.append(line)
        if "window start" in line and start is None:
            start = (time.monotonic(), sample(pids))
        elif "window end" in line and start is not None and end is None:
            end = (time.monotonic(), sample(pids))
    try:
        bot.wait(60)
    except subprocess.TimeoutExpired:
        bot.kill()
        bot.wait(10)
    if start is None or end is None:
        raise RuntimeError(
            f"the bots ({bots}) never finished their window:\n" + "".join(lines[-20:])
        )
    with open(report_path) as f:
        result = json.load(f)
    if result["stopped"] != "completed" or not result["window"]["seconds"]:
        raise RuntimeError(
            f"the bots ({bots}) stopped early ({result['stopped']}): "
            + "; ".join(result["problems"])
        )
    spent = {name: end[1][name] - start[1].get(name, 0) for name in end[1]}
    spent["_wall"] = end[0] - start[0]
    return result, spent


def measure_baseline_bot(cluster: Cluster, bots: int, args, index: int) -> dict:
    """The bot's own cost with the bots of C{--baseline-bot}, on the same cluster."""
    result, spent = run_bots(cluster, bots, args, f"c{index}a", None, args.baseline_bot)
    window = result["window"]
    pushes = window["pushes"]
    player_seconds = window["players"] * window["seconds"]
    return {
        f"baseline_bot_cores_{bots}": spent["bots"] / window["seconds"],
        f"baseline_bot_us_per_push_{bots}": 1e6 * spent["bots"] / pushes if pushes else 0.0,
        f"baseline_bot_us_per_player_s_{bots}": (
            1e6 * spent["bots"] / player_seconds if player_seconds else 0.0
        ),
        f"baseline_pushes_per_player_s_{bots}": pushes / player_seconds if player_seconds else 0.0,
    }


def measure(cluster: Cluster, bots: int, args, index: int, profile: str | None) -> dict:
    result, spent = run_bots(cluster, bots, args, f"c{index}b", profile, sample=cluster.sample)
    window = result["window"]
    seconds = window["seconds"]
    players = window["players"]
    player_seconds = players * seconds
    pushes = window["pushes"]
    kinds = dict(cluster.pids())
    cpu = {kind: 0.0 for kind in KINDS}
    for name, (kind, _) in kinds.items():
        cpu[kind] += spent[name]
    server = sum(cpu.values())
    move = window["requests"].get("zone.move", {})
    n = bots
    figures = {
        f"bots_{n}": bots,
        f"players_{n}": players,
        f"window_s_{n}": round(seconds, 3),
        f"server_cores_{n}": server / seconds,
        f"server_us_per_player_s_{n}": 1e6 * server / player_seconds if player_seconds else 0.0,
        f"players_per_core_{n}": player_seconds / server if server else 0.0,
        f"move_p50_ms_{n}": move.get("p50_ms", float("nan")),
        f"move_p99_ms_{n}": move.get("p99_ms", float("nan")),
        f"moves_per_player_s_{n}": move.get("count", 0) / player_seconds if player_seconds else 0,
        f"pushes_per_player_s_{n}": pushes / player_seconds if player_seconds else 0.0,
        f"bot_cores_{n}": spent["bots"] / seconds,
        f"bot_us_per_push_{n}": 1e6 * spent["bots"] / pushes if pushes else 0.0,
        f"bot_us_per_player_s_{n}": (
            1e6 * spent["bots"] / player_seconds if player_seconds else 0.0
        ),
        f"handoffs_{n}": result["handoffs"],
        f"errors_{n}": sum(e["errors"] for e in window["requests"].values()),
        f"duplicated_{n}": result["world"]["duplicated"],
        f"lost_{n}": result["world"]["lost"],
    }
    # How long the zones' ticks took at this load, against their budget.
    ticks = sum(v for k, v in spent.items() if k.startswith("ticks:"))
    tick_seconds = sum(v for k, v in spent.items() if k.startswith("tick_s:"))
    figures[f"zone_tick_mean_ms_{n}"] = 1e3 * tick_seconds / ticks if ticks else float("nan")
    figures |= call_figures(spent, kinds, player_seconds, seconds, n)
    for kind in KINDS:
        figures[f"{kind}_cores_{n}"] = cpu[kind] / seconds
        figures[f"{kind}_us_per_player_s_{n}"] = (
            1e6 * cpu[kind] / player_seconds if player_seconds else 0.0
        )
    # For the fit: cores against players and pushes per second.
    figures["_fit"] = {
        "players": players,
        "pushes_per_s": pushes / seconds,
        "cores": {kind: cpu[kind] / seconds for kind in KINDS} | {"server": server / seconds},
    }
    return figures


#: Figures that must be 0: their total over a count's windows, so that one in any shows.
_TOTALLED = ("errors_", "lost_", "duplicated_")


def combined(runs: list[dict], bots: int) -> dict:
    """
    The figures of C{bots} bots from one or more windows (C{runs}, each
    L{measure}'s): each its median, but errors, lost and duplicated
    their total; with more than one, the least and most players per core
    too.
    """
    figures = {}
    for key, first in runs[0].items():
        values = [run[key] for run in runs]
        if key.startswith(_TOTALLED):
            figures[key] = sum(values)
        elif isinstance(first, (int, float)) and not isinstance(first, bool):
            figures[key] = statistics.median(values)
        else:
            figures[key] = first
    if len(runs) > 1:
        per_core = [run[f"players_per_core_{bots}"] for run in runs]
        figures[f"windows_{bots}"] = len(runs)
        figures[f"players_per_core_min_{bots}"] = min(per_core)
        figures[f"players_per_core_max_{bots}"] = max(per_core)
    return figures


def fit_figures(points: list[dict]) -> dict:
    """The least-squares split of each kind's cores: fixed, per player-second, per push."""
    figures = {}
    for kind in ("server", *KINDS):
        values = [p["cores"][kind] for p in points]
        three = fit([(1.0, p["players"], p["pushes_per_s"]) for p in points], values)
        if three is not None and len(points) >= 3:
            fixed, per_player, per_push = three
            figures[f"fit_{kind}_us_per_push"] = 1e6 * per_push
        else:
            two = fit([(1.0, p["players"]) for p in points], values)
            if two is None:
                continue
            fixed, per_player = two
        figures[f"fit_{kind}_fixed_cores"] = fixed
        figures[f"fit_{kind}_us_per_player_s"] = 1e6 * per_player
    return figures


def main(argv=None) -> int:
    p = parser(__doc__.strip().splitlines()[0])
    p.add_argument(
        "--bots", default="100,200,400", help="bot counts, comma-separated (default 100,200,400)"
    )
    p.add_argument(
        "--window", type=float, default=60.0, help="seconds measured after the ramp (default 60)"
    )
    p.add_argument("--ramp", type=float, default=20.0, help="bots started per second (default 20)")
    p.add_argument(
        "--scenario",
        default="border-walk",
        choices=("border-walk", "wander"),
        help="(default %(default)s)",
    )
    p.add_argument(
        "--max-seconds",
        type=float,
        default=600.0,
        help="hard limit for each bot count's run (default 600)",
    )
    p.add_argument(
        "--baseline-bot",
        metavar="DIR",
        help="also run each count's bots from the mmo package in DIR (another checkout), "
        "just before, for their own CPU (baseline_bot_*)",
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    p.add_argument(
        "--links",
        default="config",
        choices=("config", "tls", "unix"),
        help="links between the processes: as conf/cluster.toml says (rpc_unix_dir), "
        "mutual TLS, or Unix sockets (default %(default)s)",
    )
    p.add_argument(
        "--update-rate",
        type=float,
        metavar="HZ",
        help="[world] update_rate for the cluster (default: conf/cluster.toml's)",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="windows measured per bot count, one after the other; "
        "each figure their median (default 1)",
    )
    p.add_argument(
        "--calls",
        action="store_true",
        help="time the server processes' entry points (about a microsecond a call): "
        "each kind's CPU per entry point",
    )
    args = p.parse_args(argv)
    if args.repeat < 1:
        p.error("--repeat: at least 1")
    counts = sorted(int(n) for n in args.bots.split(",") if n.strip())
    if not counts or min(counts) < 1:
        p.error("--bots: one or more positive counts")
    if shutil.which("redis-server") is None:
        p.error("needs redis-server on the PATH (apt-get install redis-server)")
    if args.baseline_bot:
        args.baseline_bot = os.path.abspath(args.baseline_bot)
        if not os.path.isfile(os.path.join(args.baseline_bot, "mmo", "bot", "cli.py")):
            p.error(f"--baseline-bot: no mmo/bot/cli.py in {args.baseline_bot}")
    # Stopped by SIGTERM (bench/run.py's time limit): stop the cluster first.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(1))
    directory = tempfile.mkdtemp(prefix="mmo-capacity-")
    cluster = Cluster(directory, args.links, args.update_rate, args.calls)
    figures: dict = {
        "scenario": args.scenario,
        "links": "unix" if cluster.unix else "tls",
        "update_rate": cluster.world.get("update_rate", 0.0),
        "window_s": args.window,
        "goal_players_per_core": 2000,
        "goal_move_p99_ms": 50.0,
        "cores": os.cpu_count(),
    }
    points = []
    figures["loop_ms_before"] = yardstick_ms()
    try:
        cluster.start()
        for index, bots in enumerate(counts):
            profile = args.profile if args.profile and bots == counts[-1] else None
            if args.baseline_bot:
                print(f"capacity: {bots} bots (baseline bot)", file=sys.stderr, flush=True)
                figures.update(measure_baseline_bot(cluster, bots, args, index))
                time.sleep(2.0)
            runs = []
            for repeat in range(args.repeat):
                print(f"capacity: {bots} bots", file=sys.stderr, flush=True)
                last = repeat == args.repeat - 1
                run = index * args.repeat + repeat
                runs.append(measure(cluster, bots, args, run, profile if last else None))
                points.append(runs[-1].pop("_fit"))
                if not last:
                    # The last run's sessions end before the next one starts.
                    time.sleep(2.0)
            figures.update(combined(runs, bots))
            # Each count's figures as they come: a run cut short keeps them.
            print(
                "capacity: "
                + ", ".join(
                    f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                    for k, v in figures.items()
                    if k.endswith(f"_{bots}")
                ),
                file=sys.stderr,
                flush=True,
            )
            # The last run's sessions end before the next one starts.
            time.sleep(2.0)
    finally:
        cluster.stop()
        if args.keep:
            print(f"capacity: kept {directory}", file=sys.stderr)
        else:
            shutil.rmtree(directory, ignore_errors=True)
    figures["loop_ms_after"] = yardstick_ms()
    figures.update(fit_figures(points))
    top = counts[-1]
    figures["players_per_core"] = figures[f"players_per_core_{top}"]
    figures["move_p99_ms"] = figures[f"move_p99_ms_{top}"]
    report(figures, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
