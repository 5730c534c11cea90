"""
Node.js for the tests of the project's TypeScript packages (the SDK in
C{clients/js}, the browser demo in C{clients/demo}): finding C{node} and
C{npm}, installing a package's dependencies from its lock file, running a
command with a deadline.

Without C{node} and C{npm} on the PATH a test is skipped with the reason,
except under C{MMO_REQUIRE_BROWSER=1} (set by C{.ci/run}), where it fails.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import tempfile

from twisted.internet import defer, protocol, reactor, task
from twisted.trial import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: Seconds an npm install may take.
INSTALL_TIMEOUT = 240.0


def require(what: str, reason: str) -> None:
    """Skip for C{reason} (C{what} is missing); fail instead under MMO_REQUIRE_BROWSER=1."""
    if os.environ.get("MMO_REQUIRE_BROWSER") == "1":
        raise AssertionError(f"MMO_REQUIRE_BROWSER=1 but {what}: {reason}")
    raise unittest.SkipTest(f"{what}: {reason}")


def node_tools() -> tuple[str, str]:
    """The C{node} and C{npm} binaries, or skip (fail under MMO_REQUIRE_BROWSER=1)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        require("node and npm are not installed", "the TypeScript packages need Node 18 or newer")
    return node, npm


class Step(protocol.ProcessProtocol):
    """One command's output (both streams, interleaved) and exit status."""

    def __init__(self):
        self.output = b""
        self.ended = defer.Deferred()

    def outReceived(self, data):
        self.output += data

    errReceived = outReceived

    def processEnded(self, reason):
        self.ended.callback(reason.value.exitCode)


async def run(argv: list[str], cwd: str, timeout: float) -> tuple[int | None, str]:
    """
    Run C{argv} in C{cwd}: its status and output, killed after C{timeout}.
    Servers it starts use this repository's C{.venv} (first on the PATH)
    and the installed package, never the sources (no C{PYTHONPATH}).
    """
    env = dict(os.environ, MMO_ROOT=ROOT)
    env.pop("PYTHONPATH", None)
    env["PATH"] = os.path.join(ROOT, ".venv", "bin") + os.pathsep + env.get("PATH", "")
    step = Step()
    transport = reactor.spawnProcess(step, argv[0], argv, env=env, path=cwd)
    timer = reactor.callLater(timeout, transport.signalProcess, "KILL")
    try:
        status = await step.ended
    finally:
        if timer.active():
            timer.cancel()
    return status, step.output.decode("utf-8", "replace")


async def succeed(testcase, argv: list[str], cwd: str, timeout: float) -> str:
    """L{run}'s output; C{testcase} fails with it if the command does."""
    status, output = await run(argv, cwd, timeout)
    if status != 0:
        testcase.fail(f"{' '.join(argv)} exited with {status}:\n{output[-20000:]}")
    return output


async def install(testcase, npm: str, package: str) -> None:
    """
    C{npm ci} in C{package} unless its C{node_modules} was installed from
    the lock file as it is now (a digest of the lock kept beside it).
    Trial's workers (C{-j}) install one at a time: two C{npm ci} in one
    folder remove each other's files.
    """
    with open(os.path.join(package, "package-lock.json"), "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    stamp = os.path.join(package, "node_modules", ".mmo-lock.sha256")
    lock = await _locked(testcase, package)
    try:
        if os.path.exists(stamp):
            with open(stamp) as f:
                if f.read().strip() == digest:
                    return
        await succeed(testcase, [npm, "ci", "--no-audit", "--no-fund"], package, INSTALL_TIMEOUT)
        with open(stamp, "w") as f:
            f.write(digest)
    finally:
        os.close(lock)


async def _locked(testcase, package: str) -> int:
    """An open lock file of C{package}'s installs, held (the reactor runs meanwhile)."""
    name = hashlib.sha256(os.path.abspath(package).encode()).hexdigest()[:16]
    lock = os.open(
        os.path.join(tempfile.gettempdir(), f"mmo-npm-{name}.lock"), os.O_RDWR | os.O_CREAT, 0o600
    )
    deadline = reactor.seconds() + INSTALL_TIMEOUT
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return lock
        except BlockingIOError:
            if reactor.seconds() > deadline:
                os.close(lock)
                testcase.fail(f"another npm install in {package} held its lock too long")
            await task.deferLater(reactor, 0.2, lambda: None)
