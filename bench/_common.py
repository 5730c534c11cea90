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

from mmo import certs, config


def percentile(values: list[float], fraction: float) -> float:
    """The C{fraction} (0..1) percentile of C{values}, by nearest rank."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(fraction * len(ordered) + 0.5)) - 1))
    return ordered[index]


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--json", action="store_true", help="print one JSON object of the figures")
    return p


def report(figures: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(figures, sort_keys=True))
        return
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        print(f"{key:<{width}}  {shown}")


class Server:
    """A standalone C{twistd -n mmo} on 127.0.0.1 in a temporary directory."""

    def __init__(self, extra_config: str = ""):
        self.directory = tempfile.mkdtemp(prefix="mmo-bench-")
        self.config_path = os.path.join(self.directory, "mmo.toml")
        with open(self.config_path, "w") as f:
            f.write(
                '[deployment]\nname = "bench"\ntls_dir = "certs"\n'
                '[logging]\nlevel = "info"\n'
                f"{extra_config}\n"
                '[processes.mmo]\nkind = "mmo"\nclient = "tcp:0:interface=127.0.0.1"\n'
                'hosts = ["localhost", "127.0.0.1"]\n'
            )
        self.config = config.load(self.config_path)
        certs.generate(self.config)
        self.ca = os.path.join(self.config.deployment.tls_dir, "ca.crt")
        self.process = None
        self.port = None

    def start(self, timeout: float = 60.0) -> None:
        code = "import sys; from twisted.scripts.twistd import run; sys.argv[0]='twistd'; run()"
        # The port and "ready" are read from the log file.
        self.log_path = os.path.join(self.directory, "server.log")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                code,
                "-n",
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
                if match and "ready" in text:
                    self.port = int(match.group(1))
                    return
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited; see {self.log_path}")
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("the server did not start in time")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self.directory, ignore_errors=True)
