"""
What the benchmarks share: a throw-away deployment, a real server process
started on loopback, percentiles, and the output (text, or one JSON object
with C{--json}).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from twisted.internet import task

from mmo import certs, config, stats

HERE = os.path.dirname(os.path.abspath(__file__))


def percentile(values: list[float], fraction: float) -> float:
    """
    The C{fraction} (0..1) percentile of C{values} (L{mmo.stats.percentile});
    NaN when there are none, so that a figure not measured never reads as a
    fast one.
    """
    return stats.percentile(values, fraction, empty=float("nan"))


def bare_loop(size: int, runs: int, rng, step: float) -> list[float]:
    """
    The wall-clock seconds of each of C{runs} passes of a bare Python loop
    moving C{size} entities (at positions drawn from C{rng}, a
    C{random.Random}) by C{step} seconds of their velocity: the yardstick of
    the machine's speed that figures measured in the same run are read
    against (a shared machine's speed drifts, and machines differ).
    """
    positions = [[rng.random() * 1000, rng.random() * 1000, 0.3, 0.4] for _ in range(size)]
    passes = []
    for _ in range(runs):
        started = time.perf_counter()
        for p in positions:
            p[0] += p[2] * step
            p[1] += p[3] * step
        passes.append(time.perf_counter() - started)
    return passes


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--json", action="store_true", help="print one JSON object of the figures")
    p.add_argument(
        "--profile",
        metavar="PATH",
        help="write a cProfile stats file (pstats, marshal format) of the hottest path to PATH",
    )
    return p


def react(main, arguments, profile: str | None = None) -> None:
    """
    Run C{main(reactor, arguments)} (a coroutine) under C{task.react}; with
    C{profile}, under cProfile, its stats written to that path on the way
    out (C{task.react} exits with C{SystemExit}).
    """
    from twisted.internet import defer

    def run():
        task.react(lambda reactor: defer.ensureDeferred(main(reactor, arguments)))

    if not profile:
        run()
        return
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        run()
    finally:
        profiler.disable()
        profiler.dump_stats(profile)


def rss_bytes(pid: int) -> int:
    """Resident memory of process C{pid}, from /proc."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of process C{pid}, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime: fields 14 and 15 of stat(5); 11 and 12 after the name.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def precise_cpu_seconds(pid: int) -> float:
    """
    The CPU time of process C{pid}'s threads to the nanosecond, from
    C{/proc/PID/task/*/schedstat}: for short windows, where L{cpu_seconds}
    counts in clock ticks (10 ms).  Threads that ended are not counted.
    """
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return cpu_seconds(pid)
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total / 1e9


def machine_cpu_seconds() -> float:
    """CPU time every core of the machine has spent busy (not idle or waiting), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal: all but idle and iowait.
    busy = sum(fields[:8]) - fields[3] - fields[4]
    return busy / os.sysconf("SC_CLK_TCK")


def raise_nofile() -> int:
    """Raise this process's soft limit of open files to the hard limit; the new soft limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


async def settle(reactor, seconds: float = 1.0) -> None:
    """Let the reactor run for C{seconds} (handshakes finish, memory settles)."""
    await task.deferLater(reactor, seconds, lambda: None)


def serve_bare(factory, backlog: int = 50) -> None:
    """
    All of a bare baseline server (C{_broadcast.py}, C{_hold.py}): serve
    C{factory} over TLS with the certificate and key files named by
    C{argv[1:3]} on a free loopback port, write the port to the file
    C{argv[3]}, and run until killed.
    """
    from twisted.internet import endpoints, reactor, ssl

    cert, key, portfile = sys.argv[1:4]
    with open(cert, "rb") as f:
        pem = f.read()
    with open(key, "rb") as f:
        pem += f.read()
    options = ssl.PrivateCertificate.loadPEM(pem).options()
    endpoint = endpoints.SSL4ServerEndpoint(
        reactor, 0, options, backlog=backlog, interface="127.0.0.1"
    )

    def listening(port):
        with open(portfile, "w") as f:
            f.write(str(port.getHost().port))

    endpoint.listen(factory).addCallback(listening)
    reactor.run()


def _read_port(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


async def start_bare(reactor, script: str, cert: str, key: str) -> tuple[subprocess.Popen, int]:
    """
    Start the baseline server C{bench/SCRIPT} (a L{serve_bare}) with C{cert}
    and C{key}; the child process and its port, once it listens.  Stop it
    with L{stop_bare}.
    """
    portfile = os.path.join(os.path.dirname(cert), script + ".port")
    child = subprocess.Popen([sys.executable, os.path.join(HERE, script), cert, key, portfile])
    deadline = time.monotonic() + 30
    while (port := _read_port(portfile)) is None:
        if time.monotonic() > deadline or child.poll() is not None:
            stop_bare(child)
            raise RuntimeError(f"the baseline server {script} did not start")
        await settle(reactor, 0.05)
    return child, port


def stop_bare(child: subprocess.Popen) -> None:
    child.terminate()
    child.wait(30)


def report(figures: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(figures, sort_keys=True))
        return
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        print(f"{key:<{width}}  {shown}")


class Server:
    """
    A standalone C{twistd -n mmo} on 127.0.0.1 in a temporary directory.

    @param client: The client listener's endpoint description.
    @param websocket: The secure WebSocket listener's, if any (its port is
        then C{websocket_port} once started).
    @param profile: A path: run twistd under cProfile and write its stats
        (marshal format) there when the server stops.
    """

    def __init__(
        self,
        extra_config: str = "",
        client: str = "tcp:0:interface=127.0.0.1",
        profile: str | None = None,
        websocket: str | None = None,
    ):
        self.directory = tempfile.mkdtemp(prefix="mmo-bench-")
        self.config_path = os.path.join(self.directory, "mmo.toml")
        with open(self.config_path, "w") as f:
            f.write(
                '[deployment]\nname = "bench"\ntls_dir = "certs"\n'
                '[logging]\nlevel = "info"\n'
                f"{extra_config}\n"
                f'[processes.mmo]\nkind = "mmo"\nclient = "{client}"\n'
                'hosts = ["localhost", "127.0.0.1"]\n'
                + (f'websocket = "{websocket}"\n' if websocket else "")
            )
        self.config = config.load(self.config_path)
        certs.generate(self.config)
        self.ca = os.path.join(self.config.deployment.tls_dir, "ca.crt")
        self.profile = os.path.abspath(profile) if profile else None
        self.process = None
        self.port = None
        self.websocket_port = None
        self.websocket = websocket

    def start(self, timeout: float = 60.0) -> None:
        code = "import sys; from twisted.scripts.twistd import run; sys.argv[0]='twistd'; run()"
        # The port and "ready" are read from the log file.
        self.log_path = os.path.join(self.directory, "server.log")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        # twistd's own profiler: the stats are written when the reactor stops.
        profiling = (
            ["--profile", self.profile, "--profiler", "cprofile", "--savestats"]
            if self.profile
            else []
        )
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                code,
                "-n",
                *profiling,
                "--pidfile",
                os.path.join(self.directory, "pid"),
                "--logfile",
                self.log_path,
                "mmo",
                "--config",
                self.config_path,
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.exists(self.log_path):
                with open(self.log_path) as f:
                    text = f.read()
                match = re.search(r"clients on TLS 127\.0\.0\.1:(\d+)", text)
                browsers = re.search(r"secure WebSocket 127\.0\.0\.1:(\d+)", text)
                if match and "ready" in text and (browsers or not self.websocket):
                    self.port = int(match.group(1))
                    self.websocket_port = int(browsers.group(1)) if browsers else None
                    return
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited; see {self.log_path}")
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("the server did not start in time")

    def stop(self) -> None:
        # SIGTERM stops the reactor cleanly (and writes the profile, if any).
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60 if self.profile else 30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        shutil.rmtree(self.directory, ignore_errors=True)
