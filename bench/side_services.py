"""
Side services: what the processes off the move path cost while players only walk.

The cluster of C{bench/capacity.py} (two gateways, two zones, lobby, chat,
ladder, login, a private redis-server), first with nobody online for
C{--window} seconds, then with C{--bots} border-walking bots (no chat, no
lobby, no ranked queue) for C{--window} seconds after their ramp.  For
each window: the cores of each process (C{utime + stime} from
C{/proc/PID/stat} at both ends) and the Redis commands per second by kind
(C{INFO commandstats} at both ends; a script's commands are counted too,
apart from the C{EVALSHA} that ran them).

    python bench/side_services.py [--bots 200] [--window 30] [--json]

To compare two checkouts, run each one's own C{python} (the processes
import C{mmo} from its environment) in turn, a few rounds each, and take
the medians.  See bench/README.md.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from bench._common import parser, report  # noqa: E402
from bench.capacity import Cluster, cpu_all, run_bots  # noqa: E402

#: The processes reported one by one; the others are summed as "zones and gateways".
SIDE = ("chat", "lobby", "ladder", "login", "redis-server")


def command_calls(port: int) -> dict[str, int]:
    """
    The calls of each Redis command so far, and the microseconds the
    server spent in them (C{INFO commandstats}: C{NAME} and C{NAME:us}), of
    the server on C{port}.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=5.0) as s:
        s.sendall(b"INFO commandstats\r\n")
        data = b""
        # A bulk string: "$<length>\r\n<text>\r\n".
        while b"\r\n" not in data:
            data += s.recv(65536)
        head, _, data = data.partition(b"\r\n")
        length = int(head[1:])
        while len(data) < length + 2:
            data += s.recv(65536)
    calls = {}
    for line in data[:length].decode().splitlines():
        if line.startswith("cmdstat_"):
            name, _, stats = line[len("cmdstat_") :].partition(":")
            fields = dict(field.split("=", 1) for field in stats.split(","))
            calls[name] = int(fields["calls"])
            calls[f"{name}:us"] = int(fields["usec"])
    return calls


def sampler(port: int):
    """What is read at both ends of a window: each process's CPU seconds and the Redis calls."""

    def sample(pids: dict) -> dict[str, float]:
        counts = {f"redis:{name}": n for name, n in command_calls(port).items()}
        return cpu_all(pids) | counts

    return sample


def figures_of(spent: dict[str, float], seconds: float, label: str) -> dict:
    figures = {}
    for name in SIDE:
        figures[f"{label}_{name}_cores"] = spent.get(name, 0.0) / seconds
    side = sum(spent.get(name, 0.0) for name in SIDE if name != "login")
    figures[f"{label}_side_cores"] = side / seconds
    others = sum(v for k, v in spent.items() if not k.startswith(("redis:", "_")) and k not in SIDE)
    figures[f"{label}_zones_gateways_cores"] = (others - spent.get("bots", 0.0)) / seconds
    counts = {k[len("redis:") :]: v for k, v in spent.items() if k.startswith("redis:")}
    # INFO itself is the bench's, not the cluster's.
    counts = {k: v for k, v in counts.items() if k.partition(":")[0] != "info"}
    calls = {k: v for k, v in counts.items() if not k.endswith(":us")}
    figures[f"{label}_redis_calls_per_s"] = sum(calls.values()) / seconds
    figures[f"{label}_redis_command_us_per_s"] = (
        sum(v for k, v in counts.items() if k.endswith(":us")) / seconds
    )
    for name, n in sorted(calls.items(), key=lambda item: -item[1]):
        if n:
            figures[f"{label}_redis_{name}_per_s"] = n / seconds
            figures[f"{label}_redis_{name}_us_per_s"] = counts.get(f"{name}:us", 0) / seconds
    return figures


def idle_window(cluster: Cluster, seconds: float, sample) -> dict[str, float]:
    pids = cluster.pids()
    start = sample(pids)
    began = time.monotonic()
    time.sleep(seconds)
    end = sample(pids)
    spent = {name: end[name] - start.get(name, 0) for name in end}
    spent["_wall"] = time.monotonic() - began
    return spent


def main(argv=None) -> int:
    p = parser(__doc__.strip().splitlines()[0])
    p.add_argument("--bots", type=int, default=200, help="walking bots (default 200)")
    p.add_argument("--window", type=float, default=30.0, help="seconds of each window (default 30)")
    p.add_argument("--ramp", type=float, default=20.0, help="bots started per second (default 20)")
    p.add_argument("--max-seconds", type=float, default=300.0, help="hard limit of the bots' run")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    args = p.parse_args(argv)
    args.scenario = "border-walk"
    if shutil.which("redis-server") is None:
        p.error("needs redis-server on the PATH (apt-get install redis-server)")
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(1))
    directory = tempfile.mkdtemp(prefix="mmo-side-")
    cluster = Cluster(directory)
    figures: dict = {"bots": args.bots, "window_s": args.window}
    try:
        cluster.start()
        sample = sampler(cluster.redis.port)
        print("side_services: nobody online", file=sys.stderr, flush=True)
        spent = idle_window(cluster, args.window, sample)
        figures.update(figures_of(spent, spent["_wall"], "idle"))
        print(f"side_services: {args.bots} bots", file=sys.stderr, flush=True)
        result, spent = run_bots(cluster, args.bots, args, "s", None, sample=sample)
        seconds = result["window"]["seconds"]
        figures["players"] = result["window"]["players"]
        figures["handoffs"] = result["handoffs"]
        figures.update(figures_of(spent, seconds, "walk"))
    finally:
        cluster.stop()
        if args.keep:
            print(f"side_services: kept {directory}", file=sys.stderr)
        else:
            shutil.rmtree(directory, ignore_errors=True)
    report(figures, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
