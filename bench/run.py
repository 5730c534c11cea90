"""
Run every benchmark and write the report: docs/benchmarks.md, its plots
(docs/benchmarks/tick.png, fanout.png) and the raw figures
(docs/benchmarks/figures.json).

    python bench/run.py [--quick] [--output DIR] [--only NAME[,NAME]]

Each benchmark runs as a subprocess (C{--json --profile PATH}) with a time
limit of its own; one that fails is reported with the tail of its standard
error, the others still run, and this script then exits 1.  Progress goes to
standard error.  The whole run takes a few minutes on two cores.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import pstats
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

#: Profile entries shown per benchmark.
PROFILE_TOP = 12
#: Lines of a failed script's standard error shown in the report.
STDERR_TAIL = 20


@dataclass
class Run:
    """One invocation of a benchmark script."""

    label: str
    args: list[str]
    #: This run's profile is the one reported for the benchmark.
    profile: bool = False
    #: Its figures are reported; False: a run for the profile only, so that
    #: the profiler's overhead is in none of the figures shown.
    measure: bool = True


def profiled(run: Run, label: str = "profiled") -> Run:
    """A separate run with C{run}'s parameters, for the profile only."""
    return Run(label, list(run.args), profile=True, measure=False)


@dataclass
class Benchmark:
    name: str
    script: str
    title: str
    runs: list[Run]
    quick_runs: list[Run]
    timeout: float
    #: (figure, baseline figure) pairs shown side by side; "{n}" is each size.
    pairs: list[tuple[str, str]] = field(default_factory=list)
    profiled: str = ""


def _fanout_runs(
    members: list[int], messages: int, rate: tuple[int, int], quick: bool = False
) -> list[Run]:
    """
    A run per member count; the largest is profiled (in a run of its own
    unless quick), and run once more at C{rate}: C{(deliveries/s, messages)}.
    """
    top = max(members)
    runs = [
        Run(f"{m} members", ["--members", str(m), "--messages", str(messages)], quick and m == top)
        for m in members
    ]
    per_s, paced = rate
    at_rate = Run(
        f"{top} members at {per_s:,} deliveries/s",
        ["--members", str(top), "--messages", str(paced), "--rate", str(per_s)],
    )
    return (
        runs + [at_rate]
        if quick
        else runs + [at_rate, profiled(runs[-1], f"{top} members, profiled")]
    )


LOGIN = Run("", ["--logins", "200", "--concurrency", "8"])
HANDOFF = Run("", ["--handoffs", "300"])
CONNECTIONS = Run("", ["--connections", "2000"])
ROUTE = Run("over mutual TLS", ["--requests", "100000"])
ROUTE_UNIX = Run("over a Unix-socket link, then TLS again", ["--requests", "100000", "--unix"])
CAPACITY = Run("", ["--bots", "100,200,400", "--window", "30"])
ABUSE = Run("", ["--seconds", "6"])
TLS_TICK = Run("1 frame per client per burst", ["--connections", "200", "--rounds", "500"])
TLS_BURST = Run(
    "10 frames per client per burst", ["--connections", "200", "--rounds", "100", "--burst", "10"]
)


BENCHMARKS = [
    Benchmark(
        "login",
        "login.py",
        "Login over TLS",
        [LOGIN, profiled(LOGIN)],
        [Run("", ["--logins", "10", "--concurrency", "2", "--repeats", "1"], True)],
        timeout=240,
        pairs=[
            ("login_per_s", "hash_ceiling_per_s"),
            ("kept_login_per_s", "hash_ceiling_per_s"),
            ("login_server_cpu_ms", "hash_ms"),
            ("kept_login_server_cpu_ms", "hash_ms"),
            ("token_per_s", "handshake_per_s"),
            ("token_p50_ms", "handshake_p50_ms"),
            ("token_p99_ms", "handshake_p99_ms"),
            ("token_server_cpu_ms", "handshake_server_cpu_ms"),
        ],
        profiled="the standalone server (twistd under cProfile)",
    ),
    Benchmark(
        "chat_fanout",
        "chat_fanout.py",
        "Chat fan-out",
        _fanout_runs([100, 250, 500], 40, (100_000, 200)),
        _fanout_runs([10, 20], 5, (1_000, 5), quick=True),
        timeout=300,
        pairs=[
            ("deliveries_per_s", "baseline_deliveries_per_s"),
            ("delivery_p50_ms", "baseline_p50_ms"),
            ("delivery_p99_ms", "baseline_p99_ms"),
            ("server_cpu_us_per_delivery", "baseline_server_cpu_us_per_delivery"),
            ("idle_bytes_per_client", "baseline_idle_bytes_per_client"),
            ("idle_bytes_per_added_client", "baseline_idle_bytes_per_added_client"),
        ],
        profiled="the standalone server (twistd under cProfile), at the largest member count",
    ),
    Benchmark(
        "zone_tick",
        "zone_tick.py",
        "Zone tick",
        [
            Run(
                "the ticks back to back (their data still in the caches)",
                ["--sizes", "250,500,1000,2000,5000,10000", "--ticks", "300"]
                + ["--border-walk", "400"],
                True,
            ),
            Run(
                "the caches swept before each tick (a machine shared with other processes)",
                ["--sizes", "500,2000", "--ticks", "300", "--border-walk", "400", "--cold"],
            ),
        ],
        [
            Run("warm", ["--sizes", "100,200", "--ticks", "20", "--max-seconds", "5"], True),
            Run("cold", ["--sizes", "100", "--ticks", "5", "--max-seconds", "5", "--cold"]),
        ],
        timeout=300,
        pairs=[
            ("tick_p50_ms_{n}", "move_p50_ms_{n}"),
            ("tick_p99_ms_{n}", "budget_ms"),
            ("tick_max_ms_{n}", "budget_ms"),
        ],
        profiled="the measured ticks of the largest size, in process (a separate, profiled run)",
    ),
    Benchmark(
        "metrics_cost",
        "metrics_cost.py",
        "The cost of metrics: a zone's tick and a gateway's CPU, metrics on and off",
        [Run("", ["--entities", "2000", "--ticks", "300", "--messages", "20000"], True)],
        [Run("", ["--entities", "200", "--ticks", "20", "--messages", "2000"], True)],
        timeout=180,
        pairs=[
            ("zone_tick_on_p50_ms", "zone_tick_off_p50_ms"),
            ("zone_tick_on_p99_ms", "zone_tick_off_p99_ms"),
            ("gateway_cpu_on_us", "gateway_cpu_off_us"),
        ],
        profiled="a client connection's messages with metrics on, in process (a run of its own)",
    ),
    Benchmark(
        "live_map",
        "live_map.py",
        "Live map: its cost on the zone tick, and the stream to a browser",
        [Run("", ["--entities", "2000", "--ticks", "400", "--streamed", "5000"], True)],
        [
            Run(
                "",
                ["--entities", "200", "--ticks", "20", "--streamed", "500", "--seconds", "1"],
                True,
            )
        ],
        timeout=300,
        pairs=[
            ("tick_p50_ms_watched", "tick_p50_ms_unwatched"),
            ("tick_cpu_p50_ms_watched", "tick_cpu_p50_ms_unwatched"),
            ("updates_per_s", "zoomed_updates_per_s"),
            ("update_bytes", "zoomed_update_bytes"),
            ("encode_p50_ms", "zoomed_encode_p50_ms"),
        ],
        profiled="the whole script: the timed ticks, then the stream (in process)",
    ),
    Benchmark(
        "handoff",
        "handoff.py",
        "Handoff between two zone processes",
        [HANDOFF, profiled(HANDOFF)],
        [Run("", ["--handoffs", "10", "--pings", "20", "--max-seconds", "30"], True)],
        timeout=300,
        pairs=[
            ("handoff_p50_ms", "bus_rtt_p50_ms"),
            ("handoff_p99_ms", "bus_rtt_p99_ms"),
            ("handoff_max_ms", "budget_ms"),
        ],
        profiled="zone-a, one of the two zone processes",
    ),
    Benchmark(
        "connections",
        "connections.py",
        "Connections held per gateway process",
        [CONNECTIONS, profiled(CONNECTIONS)],
        [Run("", ["--connections", "40", "--concurrency", "10"], True)],
        timeout=240,
        pairs=[
            ("held", "baseline_held"),
            ("failed", "baseline_failed"),
            ("connect_per_s", "baseline_connect_per_s"),
            ("connect_p50_ms", "baseline_connect_p50_ms"),
            ("connect_p99_ms", "baseline_connect_p99_ms"),
            ("bytes_per_connection", "baseline_bytes_per_connection"),
        ],
        profiled="the standalone server (twistd under cProfile)",
    ),
    Benchmark(
        "session_memory",
        "session_memory.py",
        "Gateway memory per session under world traffic",
        [Run("", ["--sessions", "200"], True)],
        [Run("", ["--sessions", "5", "--buffer", "50"], True)],
        timeout=120,
        pairs=[
            ("bytes_per_session", "baseline_bytes_per_session"),
            ("idle_bytes_per_session", "baseline_idle_bytes_per_connection"),
        ],
        profiled="the pushes of 50 sessions, in process",
    ),
    Benchmark(
        "route",
        "route.py",
        "Routing zone.move from a gateway to a zone process",
        [ROUTE, Run("unanswered", [*ROUTE.args, "--unanswered"]), ROUTE_UNIX, profiled(ROUTE)],
        [
            Run("", ["--requests", "20000"], True),
            Run("unanswered", ["--requests", "20000", "--unanswered"]),
        ],
        timeout=240,
        pairs=[
            ("route_per_s", "baseline_per_s"),
            ("route_p50_ms", "baseline_p50_ms"),
            ("route_p99_ms", "baseline_p99_ms"),
            ("gateway_cpu_us", "baseline_client_cpu_us"),
            ("service_cpu_us", "baseline_server_cpu_us"),
            # --unix: the route over a Unix socket next to the same over TLS.
            ("route_per_s", "tls_route_per_s"),
            ("gateway_cpu_us", "tls_gateway_cpu_us"),
            ("service_cpu_us", "tls_service_cpu_us"),
        ],
        profiled="the gateway (the benchmark's own process) during the measured routed requests",
    ),
    Benchmark(
        "stream_push",
        "stream_push.py",
        "A zone's pushes to a gateway's players: stems, or a batch encoded again",
        [Run("", ["--players", "400", "--ticks", "200", "--tls"], True)],
        [Run("", ["--players", "20", "--ticks", "5", "--repeat", "1"], True)],
        timeout=180,
        pairs=[
            ("stems_gateway_us_per_push", "batch_gateway_us_per_push"),
            ("tls_stems_gateway_us_per_push", "tls_gathered_gateway_us_per_push"),
            ("stems_zone_us_per_push", "batch_zone_us_per_push"),
            ("stems_box_bytes_per_push", "batch_box_bytes_per_push"),
        ],
        profiled="the gateway's side of the stems, in process (a run of its own)",
    ),
    Benchmark(
        "tls",
        "tls.py",
        "The cheapest TLS: Twisted's, TLS in C on the socket, HAProxy in front, plain TCP",
        [TLS_TICK, TLS_BURST, profiled(TLS_TICK)],
        [
            Run(
                "",
                ["--connections", "10", "--rounds", "5", "--requests", "200", "--repeats", "1"],
                True,
            )
        ],
        timeout=600,
        pairs=[
            (f"{mode}_{figure}", f"plain_{figure}")
            for figure in (
                "delivery_cpu_us",
                "echo_cpu_us",
                "deliveries_per_s",
                "delivery_p99_ms",
                "echoes_per_s",
                "echo_p99_ms",
            )
            for mode in ("twisted", "ssl_socket", "haproxy")
        ]
        + [
            ("haproxy_delivery_server_cpu_us", "plain_delivery_cpu_us"),
            ("haproxy_echo_server_cpu_us", "plain_echo_cpu_us"),
        ],
        profiled="the server of the twisted mode (mmo's TLS listener stack), in its first run",
    ),
    Benchmark(
        "tls_sessions",
        "tls_sessions.py",
        "TLS session tickets and resumption: a client listener's handshake",
        [Run("", ["--handshakes", "400"]), profiled(Run("", ["--handshakes", "400"]))],
        [Run("", ["--handshakes", "10", "--repeats", "1"], True)],
        timeout=120,
        pairs=[
            ("tickets_server_cpu_us", "no_tickets_server_cpu_us"),
            ("resumed_server_cpu_us", "no_tickets_server_cpu_us"),
            ("resumed_client_cpu_us", "no_tickets_client_cpu_us"),
            ("tickets_server_bytes", "no_tickets_server_bytes"),
        ],
        profiled="the handshakes of the listener as it runs (no tickets), in process",
    ),
    Benchmark(
        "abuse",
        "abuse.py",
        "Abusive clients: the server's memory and an honest player's latency",
        [ABUSE, profiled(ABUSE)],
        [Run("", ["--seconds", "1", "--connections", "100"], True)],
        timeout=240,
        pairs=[
            ("ping_flood_p99_ms", "idle_p99_ms"),
            ("ping_flood_rss_growth_mb", "idle_rss_growth_mb"),
            ("slow_reader_p99_ms", "flow_p99_ms"),
            ("slow_reader_rss_growth_mb", "flow_rss_growth_mb"),
            ("per_address_p99_ms", "idle_p99_ms"),
            ("per_address_rss_growth_mb", "idle_rss_growth_mb"),
        ],
        profiled="the standalone server (twistd under cProfile)",
    ),
    Benchmark(
        "ladder_queue",
        "ladder_queue.py",
        "The ranked queue's pass: each waiting player's neighbours by rating, or a scan",
        [Run("", ["--queued", "3000", "--large", "20000"], True)],
        [Run("", ["--queued", "200", "--large", "400", "--repeats", "1"], True)],
        timeout=300,
        profiled="one more pass over the large queue, five-on-five, in process",
    ),
    Benchmark(
        "ladder",
        "ladder.py",
        "The ladder: the board with 1,000,000 entries, rated results, the rollover",
        [
            Run("", ["--entries", "1000000"]),
            Run(
                "100,000 entries, profiled",
                ["--entries", "100000", "--queries", "200", "--results", "2000"],
                profile=True,
                measure=False,
            ),
        ],
        [Run("", ["--quick"], True)],
        timeout=900,
        pairs=[
            (f"{backend}_{read}_{q}_ms", f"{backend}_raw_{read}_{q}_ms")
            for backend in ("redis", "sqlite")
            for read in ("rank", "around", "top")
            for q in ("p50", "p99")
        ]
        + [
            ("redis_rank_p99_ms", "target_p99_ms"),
            ("redis_around_p99_ms", "target_p99_ms"),
            ("redis_results_per_s", "rate_only_per_s"),
            ("sqlite_results_per_s", "rate_only_per_s"),
            ("redis_results_per_s", "target_results_per_s"),
            ("redis_rollover_ms", "redis_raw_roundtrip_p50_ms"),
            ("sqlite_rollover_ms", "sqlite_raw_roundtrip_p50_ms"),
            ("redis_rollover_ms", "target_rollover_ms"),
            ("sqlite_rollover_ms", "target_rollover_ms"),
        ],
        profiled="the whole run, in process (store clients and the ladder)",
    ),
    Benchmark(
        "economy",
        "economy.py",
        "The economy's ledger: postings per second on Redis and on SQLite",
        [
            Run("", []),
            Run(
                "5,000 postings, profiled",
                ["--postings", "5000", "--sqlite-postings", "200", "--repeats", "1"],
                profile=True,
                measure=False,
            ),
        ],
        [Run("", ["--quick"], True)],
        timeout=600,
        pairs=[
            ("redis_postings_per_s", "redis_raw_evalsha_per_s"),
            ("sqlite_postings_per_s", "sqlite_raw_insert_per_s"),
            ("redis_postings_per_s", "target_postings_per_s"),
        ],
        profiled="the whole run, in process (store clients and the ledger's checks)",
    ),
    Benchmark(
        "economy_jobs",
        "economy_jobs.py",
        "The economy's jobs: a daily reward per player, a money-supply metrics run",
        [Run("", [], profile=True)],
        [Run("", ["--quick"], True)],
        timeout=600,
        pairs=[
            ("redis_daily_ms_per_player", "redis_raw_reward_posting_ms"),
            ("sqlite_daily_ms_per_player", "sqlite_raw_reward_posting_ms"),
            ("redis_metrics_run_s", "redis_metrics_raw_reads_s"),
            ("sqlite_metrics_run_s", "sqlite_metrics_raw_reads_s"),
        ],
        profiled="the whole run, in process (store clients, the handler, the metrics)",
    ),
    Benchmark(
        "capacity",
        "capacity.py",
        "Capacity: walking players per core of server CPU",
        [CAPACITY],
        [Run("", ["--bots", "10,20", "--window", "5", "--max-seconds", "60"])],
        timeout=600,
        pairs=[
            ("players_per_core_{n}", "goal_players_per_core"),
            ("move_p99_ms_{n}", "goal_move_p99_ms"),
            ("bot_us_per_push_{n}", "baseline_bot_us_per_push_{n}"),
            ("bot_us_per_player_s_{n}", "baseline_bot_us_per_player_s_{n}"),
            ("pushes_per_player_s_{n}", "baseline_pushes_per_player_s_{n}"),
        ],
    ),
]
NAMES = [b.name for b in BENCHMARKS]


# -- running -----------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one run of a benchmark script gave."""

    label: str
    ok: bool
    seconds: float
    figures: dict = field(default_factory=dict)
    error: str = ""
    profile: str | None = None
    #: The script's arguments (besides --json and --profile).
    args: list[str] = field(default_factory=list)
    #: Its figures are reported (not a run for the profile only).
    measure: bool = True


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _stop_group(process: subprocess.Popen) -> None:
    """End the script and whatever it started (its own process group): TERM, then KILL."""
    for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue


def tail(text: str, lines: int = STDERR_TAIL) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def run_script(
    script: str, args: list[str], timeout: float, profile: str | None, label: str = ""
) -> Outcome:
    """Run C{script} with C{--json} (and C{--profile}); its figures, or why it failed."""
    command = [sys.executable, script, "--json", *args]
    if profile:
        command += ["--profile", profile]
    started = time.monotonic()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(
            command, stdout=out, stderr=err, cwd=ROOT, start_new_session=True
        )
        try:
            process.wait(timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            _stop_group(process)
            timed_out = True
        seconds = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if timed_out:
        error = f"timed out after {timeout:g} s\n{tail(stderr)}"
        return Outcome(label, False, seconds, error=error)
    if process.returncode != 0:
        return Outcome(label, False, seconds, error=f"exit {process.returncode}\n{tail(stderr)}")
    lines = [line for line in stdout.splitlines() if line.strip()]
    try:
        figures = json.loads(lines[-1])
        if not isinstance(figures, dict):
            raise ValueError("not a JSON object")
    except (IndexError, ValueError) as e:
        return Outcome(label, False, seconds, error=f"no JSON figures ({e})\n{tail(stderr)}")
    if profile and not os.path.exists(profile):
        return Outcome(label, False, seconds, figures, f"no profile was written\n{tail(stderr)}")
    return Outcome(label, True, seconds, figures, profile=profile)


def run_benchmark(benchmark: Benchmark, quick: bool, profiles: str) -> list[Outcome]:
    outcomes = []
    for index, run in enumerate(benchmark.quick_runs if quick else benchmark.runs):
        profile = os.path.join(profiles, f"{benchmark.name}.prof") if run.profile else None
        name = f"{benchmark.name} ({run.label})" if run.label else benchmark.name
        log(f"bench: {name}: start")
        outcome = run_script(
            os.path.join(HERE, benchmark.script),
            run.args,
            benchmark.timeout,
            profile,
            run.label or str(index),
        )
        outcome.args = list(run.args)
        outcome.measure = run.measure
        state = "done" if outcome.ok else "FAILED"
        log(f"bench: {name}: {state} in {outcome.seconds:.1f} s")
        if not outcome.ok:
            log(outcome.error)
        outcomes.append(outcome)
    return outcomes


# -- the profile table -------------------------------------------------------------------


def short_path(path: str) -> str:
    """C{path} relative to the project, site-packages or the standard library."""
    if path == "~" or not os.path.isabs(path):
        return path
    real = os.path.realpath(path)
    marker = os.sep + "site-packages" + os.sep
    if marker in real:
        return real.split(marker, 1)[1]
    for base in (ROOT, sysconfig.get_paths()["stdlib"]):
        base = os.path.realpath(base)
        if real.startswith(base + os.sep):
            return os.path.relpath(real, base)
    return path


def function_name(key: tuple[str, int, str]) -> str:
    path, line, name = key
    if path == "~" and line == 0:
        return name
    return f"{short_path(path)}:{line}({name})"


#: The reactor waiting for events: idle time, not a cost; left out of the table.
IDLE = {
    "<method 'poll' of 'select.epoll' objects>",
    "<method 'poll' of 'select.poll' objects>",
    "<built-in method select.select>",
}


def profile_rows(path: str, top: int = PROFILE_TOP) -> list[dict]:
    """The C{top} entries of a cProfile stats file by internal time (idle waits left out)."""
    stats = pstats.Stats(path).stats
    entries = sorted(stats.items(), key=lambda item: item[1][2], reverse=True)
    rows = []
    for key, (primitive, calls, tottime, cumtime, _callers) in entries:
        if key[0] == "~" and key[2] in IDLE:
            continue
        rows.append(
            {
                "calls": str(calls) if calls == primitive else f"{calls}/{primitive}",
                "tottime": tottime,
                "cumtime": cumtime,
                "function": function_name(key),
            }
        )
        if len(rows) == top:
            break
    return rows


def profile_idle(path: str) -> float:
    """Seconds the profiled process spent waiting in the reactor's poll."""
    stats = pstats.Stats(path).stats
    return sum(v[2] for k, v in stats.items() if k[0] == "~" and k[2] in IDLE)


def profile_total(path: str) -> float:
    return pstats.Stats(path).total_tt


def profile_table(rows: list[dict]) -> str:
    lines = [
        "| calls | tottime (s) | cumtime (s) | function |",
        "|---:|---:|---:|---|",
    ]
    for row in rows:
        function = row["function"].replace("|", "\\|").replace("`", "'")
        lines.append(
            f"| {row['calls']} | {row['tottime']:.3f} | {row['cumtime']:.3f} | `{function}` |"
        )
    return "\n".join(lines)


# -- figures as markdown -------------------------------------------------------------------


def show(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3g}" if value else "0"
    if isinstance(value, int):
        return f"{value:,}"
    if value == "":
        return "—"
    return str(value).replace("|", "\\|")


def sizes_of(figures: dict) -> list[str]:
    """The sizes N of figures named C{..._N} (zone_tick's entity counts, capacity's bots)."""
    pattern = r"(?:ticks|bots)_(\d+)"
    return sorted({m.group(1) for k in figures if (m := re.fullmatch(pattern, k))}, key=int)


def expand_pairs(pairs: list[tuple[str, str]], figures: dict) -> list[tuple[str, str]]:
    expanded = []
    for figure, baseline in pairs:
        if "{n}" in figure:
            for n in sizes_of(figures):
                expanded.append((figure.format(n=n), baseline.format(n=n)))
        else:
            expanded.append((figure, baseline))
    seen = {f for f, _ in expanded}
    # Any other figure with a "baseline_" twin is paired too.
    for key in figures:
        if key not in seen and f"baseline_{key}" in figures:
            expanded.append((key, f"baseline_{key}"))
    return [(f, b) for f, b in expanded if f in figures and b in figures]


def ratio(value, baseline) -> float:
    numbers = (int, float)
    if not (isinstance(value, numbers) and isinstance(baseline, numbers)):
        return float("nan")
    if isinstance(value, bool) or isinstance(baseline, bool) or not baseline:
        return float("nan")
    return value / baseline


def natural(key: str) -> tuple:
    """Sort key: C{tick_p50_ms_250} before C{tick_p50_ms_1000}."""
    match = re.fullmatch(r"(.*?)(\d+)", key)
    return (match.group(1), int(match.group(2))) if match else (key, -1)


def figures_table(figures: dict, pairs: list[tuple[str, str]]) -> str:
    """Every figure: the paired ones next to their baseline and the ratio, then the rest."""
    paired = expand_pairs(pairs, figures)
    used = {f for f, _ in paired} | {b for _, b in paired}
    lines = [
        "| figure | value | baseline | baseline value | ratio (value / baseline) |",
        "|---|---:|---|---:|---:|",
    ]
    for figure, baseline in paired:
        lines.append(
            f"| `{figure}` | {show(figures[figure])} | `{baseline}` | "
            f"{show(figures[baseline])} | {show(ratio(figures[figure], figures[baseline]))} |"
        )
    for key in sorted(figures, key=natural):
        if key in used and not any(key == f for f, _ in paired):
            # A baseline shown beside its figure: not again on its own, unless
            # it is a reference for several (budget_ms).
            if key != "budget_ms":
                continue
        if key in {f for f, _ in paired}:
            continue
        lines.append(f"| `{key}` | {show(figures[key])} | | | |")
    return "\n".join(lines)


# -- plots -------------------------------------------------------------------------------


def plot_tick(figures: dict, path: str) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    sizes = [int(n) for n in sizes_of(figures)]
    if not sizes:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    ax.plot(sizes, [figures[f"tick_p50_ms_{n}"] for n in sizes], "o-", label="tick p50")
    ax.plot(sizes, [figures[f"tick_p99_ms_{n}"] for n in sizes], "s-", label="tick p99")
    ax.plot(
        sizes,
        [figures[f"move_p50_ms_{n}"] for n in sizes],
        "^--",
        color="grey",
        label="baseline: bare loop moving N entities (p50)",
    )
    budget = figures.get("budget_ms", 50.0)
    ax.axhline(budget, color="red", linestyle=":", label=f"budget {budget:g} ms (20 Hz)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(sizes)
    ax.set_xticklabels([str(n) for n in sizes])
    ax.set_xlabel("entities in the zone")
    ax.set_ylabel("ms per tick")
    ax.set_title("Zone tick duration against entity count")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small", loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def plot_fanout(series: list[dict], path: str) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = sorted(
        (f for f in series if "members" in f and not f.get("target_deliveries_per_s")),
        key=lambda f: f["members"],
    )
    if not series:
        return False
    members = [f["members"] for f in series]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2), dpi=110)
    left.plot(members, [f["deliveries_per_s"] for f in series], "o-", label="mmo chat")
    left.plot(
        members,
        [f["baseline_deliveries_per_s"] for f in series],
        "^--",
        color="grey",
        label="baseline: bare broadcast",
    )
    left.set_xlabel("members in the channel")
    left.set_ylabel("deliveries per second")
    left.set_title("Fan-out rate")
    right.plot(members, [f["delivery_p99_ms"] for f in series], "o-", label="mmo chat p99")
    right.plot(
        members,
        [f["baseline_p99_ms"] for f in series],
        "^--",
        color="grey",
        label="baseline: bare broadcast p99",
    )
    right.set_xlabel("members in the channel")
    right.set_ylabel("delivery latency p99, ms")
    right.set_title("Fan-out latency")
    for ax in (left, right):
        ax.set_xticks(members)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


# -- the report --------------------------------------------------------------------------


def machine() -> dict:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import twisted

        twisted_version = twisted.__version__
    except ImportError:
        twisted_version = "unknown"
    with open(os.path.join(ROOT, "mmo", "__init__.py")) as f:
        match = re.search(r'^__version__ = "([^"]+)"', f.read(), re.M)
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "system": platform.platform(),
        "python": platform.python_version(),
        "twisted": twisted_version,
        "mmo": match.group(1) if match else "unknown",
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def command_of(benchmark: Benchmark, outcome: dict) -> str:
    return " ".join(["bench/" + benchmark.script, *outcome.get("args", [])])


def failure(outcome: dict) -> list[str]:
    return ["**Failed:**", "", "```", outcome["error"], "```", ""]


def render(results: dict, info: dict, plots: dict[str, str], total: float, quick: bool) -> str:
    """docs/benchmarks.md from C{results}: name -> {"outcomes": [...], "profile": rows}."""
    out = [
        "# Benchmark results",
        "",
        "Written by `make bench` (`bench/run.py`); what each benchmark measures and",
        "what its figures mean: [bench/README.md](../bench/README.md). Every figure",
        "is shown next to the baseline measured in the same run, with the ratio",
        "value / baseline. The machine is shared and noisy: compare ratios, not",
        "single absolute numbers. Raw figures:",
        "[benchmarks/figures.json](benchmarks/figures.json).",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        f"| CPUs | {info['cpus']} × {info['cpu_model']} |",
        f"| system | {info['system']} |",
        f"| Python | {info['python']} |",
        f"| Twisted | {info['twisted']} |",
        f"| mmo | {info['mmo']} |",
        f"| date | {info['date']} |",
        f"| whole run | {total:.0f} s{' (quick parameters)' if quick else ''} |",
        "",
    ]
    by_name = {b.name: b for b in BENCHMARKS}
    for name, result in results.items():
        benchmark = by_name[name]
        out += [f"## {benchmark.title} (`bench/{benchmark.script}`)", ""]
        measured = [o for o in result["outcomes"] if o.get("measure", True)]
        profile_runs = [o for o in result["outcomes"] if not o.get("measure", True)]
        for outcome in measured:
            if len(measured) > 1:
                out += [f"### {outcome['label']}", ""]
            out += [f"`{command_of(benchmark, outcome)}`, {outcome['seconds']:.0f} s.", ""]
            if not outcome["ok"]:
                out += failure(outcome)
                continue
            out += [figures_table(outcome["figures"], benchmark.pairs), ""]
        if name in plots:
            out += [f"![{benchmark.title}](benchmarks/{plots[name]})", ""]
        rows = result.get("profile")
        if rows or profile_runs:
            out += [f"### Profile: top {PROFILE_TOP} by internal time", ""]
        where = ""
        for outcome in profile_runs:
            where = (
                f", in a separate run (`{command_of(benchmark, outcome)} --profile PATH`, "
                f"{outcome['seconds']:.0f} s) so that no figure above carries the "
                "profiler's overhead"
            )
            if not outcome["ok"]:
                out += [f"The profiled run `{command_of(benchmark, outcome)}`:", ""]
                out += failure(outcome)
        if rows:
            idle = result.get("profile_idle") or 0.0
            waiting = (
                f", of which {idle:.2f} s waiting for events (the reactor's poll, left out below)"
                if idle
                else ""
            )
            out += [
                f"Profiled: {benchmark.profiled}{where}; "
                f"{result['profile_total']:.2f} s in all{waiting}.",
                "",
                profile_table(rows),
                "",
            ]
    return "\n".join(out).rstrip() + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--quick", action="store_true", help="much smaller parameters (a smoke test)")
    p.add_argument(
        "--output",
        default=os.path.join(ROOT, "docs"),
        help="write DIR/benchmarks.md and DIR/benchmarks/ (default: docs)",
    )
    p.add_argument("--only", help=f"comma-separated benchmarks to run, of {','.join(NAMES)}")
    p.add_argument("--profiles", help="keep the cProfile stats files in this directory")
    args = p.parse_args(argv)
    selected = NAMES
    if args.only:
        selected = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(selected) - set(NAMES))
        if unknown:
            p.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(NAMES)}")

    profiles = args.profiles or tempfile.mkdtemp(prefix="mmo-bench-profiles-")
    os.makedirs(profiles, exist_ok=True)
    started = time.monotonic()
    results: dict = {}
    failed = []
    try:
        for benchmark in BENCHMARKS:
            if benchmark.name not in selected:
                continue
            begun = time.monotonic()
            outcomes = run_benchmark(benchmark, args.quick, profiles)
            result = {
                "outcomes": [o.__dict__ for o in outcomes],
                "seconds": time.monotonic() - begun,
            }
            profile = next((o.profile for o in outcomes if o.profile and o.ok), None)
            if profile:
                result["profile"] = profile_rows(profile)
                result["profile_total"] = profile_total(profile)
                result["profile_idle"] = profile_idle(profile)
            if not all(o.ok for o in outcomes):
                failed.append(benchmark.name)
            results[benchmark.name] = result
    finally:
        if not args.profiles:
            shutil.rmtree(profiles, ignore_errors=True)
    total = time.monotonic() - started

    written = write_report(results, args.output, total, args.quick)
    log(f"bench: wrote {', '.join(written)}")
    log(f"bench: total {total:.1f} s" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def write_report(results: dict, output: str, total: float, quick: bool) -> list[str]:
    """Write the plots, figures.json and benchmarks.md under C{output}; the paths."""
    directory = os.path.join(output, "benchmarks")
    os.makedirs(directory, exist_ok=True)
    plots: dict[str, str] = {}
    written = []

    def good(name):
        outcomes = results.get(name, {}).get("outcomes", [])
        return [o["figures"] for o in outcomes if o["ok"] and o.get("measure", True)]

    try:
        tick = good("zone_tick")
        if tick and plot_tick(tick[0], os.path.join(directory, "tick.png")):
            plots["zone_tick"] = "tick.png"
        if good("chat_fanout") and plot_fanout(
            good("chat_fanout"), os.path.join(directory, "fanout.png")
        ):
            plots["chat_fanout"] = "fanout.png"
    except ImportError:
        log("bench: matplotlib is not installed (pip install '.[bench]'): no plots")
    written += [os.path.join(directory, f) for f in plots.values()]

    info = machine()
    raw = {
        "machine": info,
        "quick": quick,
        "seconds": total,
        "benchmarks": {
            name: {
                "seconds": r["seconds"],
                "runs": [
                    {
                        "label": o["label"],
                        "args": o["args"],
                        "measured": o.get("measure", True),
                        "ok": o["ok"],
                        "seconds": o["seconds"],
                        "figures": o["figures"],
                        **({"error": o["error"]} if o["error"] else {}),
                    }
                    for o in r["outcomes"]
                ],
                "profile": r.get("profile", []),
                "profile_seconds": r.get("profile_total"),
                "profile_idle_seconds": r.get("profile_idle"),
            }
            for name, r in results.items()
        },
    }
    path = os.path.join(directory, "figures.json")
    with open(path, "w") as f:
        json.dump(raw, f, indent=2, sort_keys=True, default=str)
        f.write("\n")
    written.append(path)
    path = os.path.join(output, "benchmarks.md")
    with open(path, "w") as f:
        f.write(render(results, info, plots, total, quick))
    written.append(path)
    return written


if __name__ == "__main__":
    sys.exit(main())
