"""
A private C{redis-server} for tests: started on a free loopback port in a
temporary directory, stopped after the test.  A server the tests did not
start (such as one on 6379) is never used.

Without C{redis-server} on the PATH the tests that need it are skipped with
the reason, except under C{MMO_REQUIRE_REDIS=1} (set by C{.ci/run}), where
they fail instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

from twisted.trial.unittest import SkipTest

#: Seconds a server may take to start or stop.
START_TIMEOUT = 10.0


def redis_server_path() -> str:
    """The redis-server binary, or skip (fail under MMO_REQUIRE_REDIS=1)."""
    path = shutil.which("redis-server")
    if path is None:
        reason = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("MMO_REQUIRE_REDIS") == "1":
            raise AssertionError(f"MMO_REQUIRE_REDIS=1 but {reason}")
        raise SkipTest(reason)
    return path


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """
    One private redis-server process.

    @ivar port: Its port on 127.0.0.1.
    @ivar directory: Its working directory (data and append-only files).
    """

    def __init__(self, directory: str, appendonly: bool = False, password: str | None = None):
        self.binary = redis_server_path()
        self.directory = os.path.abspath(directory)
        os.makedirs(self.directory, exist_ok=True)
        self.port = free_port()
        self.appendonly = appendonly
        self.password = password
        self.process: subprocess.Popen | None = None

    def args(self) -> list[str]:
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            self.directory,
            "--save",
            "",
            "--daemonize",
            "no",
            "--logfile",
            os.path.join(self.directory, "redis.log"),
            "--protected-mode",
            "yes",
        ]
        if self.appendonly:
            # Every acknowledged write is on disk before the reply.
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        return args

    def start(self) -> None:
        """Start it and wait until it answers PING."""
        self.process = subprocess.Popen(
            self.args(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited: see {self.directory}/redis.log")
            if self._ping():
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("redis-server did not start in time")

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                if self.password:
                    s.sendall(f"AUTH {self.password}\r\n".encode())
                    s.recv(64)
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """Kill it at once (SIGKILL): what a crash looks like."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(START_TIMEOUT)

    def stop(self) -> None:
        """Stop it (SIGTERM) and wait."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(START_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(START_TIMEOUT)

    def restart(self) -> None:
        """Start it again on the same port and directory."""
        self.stop()
        self.start()


def start_redis(testcase, **kwargs) -> RedisServer:
    """A started private server, stopped when C{testcase} ends."""
    server = RedisServer(os.path.abspath(testcase.mktemp()), **kwargs)
    server.start()
    testcase.addCleanup(server.stop)
    return server


def redis_config_text(server: RedisServer, prefix: str = "test") -> str:
    """A C{[redis]} section pointing at C{server}."""
    text = f'[redis]\nhost = "127.0.0.1"\nport = {server.port}\nprefix = "{prefix}"\n'
    if server.password:
        text += f'password = "{server.password}"\n'
    return text
