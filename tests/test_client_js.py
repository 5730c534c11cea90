"""
The TypeScript client SDK (C{clients/js}) under Node's test runner: its
own tests start real servers from this repository's C{.venv} (see
C{clients/js/test/}).  This module installs its packages (C{npm ci}, again
only when the lock file changed), builds it and runs them; a failure shows
Node's output.

Without C{node} and C{npm} on the PATH it is skipped with the reason,
except under C{MMO_REQUIRE_BROWSER=1} (set by C{.ci/run}), where it fails.
"""

from __future__ import annotations

import hashlib
import os
import shutil

from twisted.internet import defer, protocol, reactor
from twisted.trial import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "clients", "js")
#: Written into node_modules after an install: the lock file it was made from.
STAMP = os.path.join(PACKAGE, "node_modules", ".mmo-lock.sha256")
#: Seconds each npm step may take.
STEP_TIMEOUT = 240.0


def node_tools() -> tuple[str, str]:
    """The C{node} and C{npm} binaries, or skip (fail under MMO_REQUIRE_BROWSER=1)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        reason = "node and npm are not installed (the TypeScript SDK's tests need Node 18 or newer)"
        if os.environ.get("MMO_REQUIRE_BROWSER") == "1":
            raise AssertionError(f"MMO_REQUIRE_BROWSER=1 but {reason}")
        raise unittest.SkipTest(reason)
    return node, npm


def lock_digest() -> str:
    with open(os.path.join(PACKAGE, "package-lock.json"), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


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


async def run(npm: str, *args: str) -> tuple[int | None, str]:
    """Run C{npm ARGS} in the package; its status and output, killed after L{STEP_TIMEOUT}."""
    env = dict(os.environ, MMO_ROOT=ROOT)
    # The servers the tests start use the installed package, never the sources.
    env.pop("PYTHONPATH", None)
    env["PATH"] = os.path.join(ROOT, ".venv", "bin") + os.pathsep + env.get("PATH", "")
    step = Step()
    transport = reactor.spawnProcess(step, npm, [npm, *args], env=env, path=PACKAGE)
    timer = reactor.callLater(STEP_TIMEOUT, transport.signalProcess, "KILL")
    try:
        status = await step.ended
    finally:
        if timer.active():
            timer.cancel()
    return status, step.output.decode("utf-8", "replace")


class ClientJSTests(unittest.TestCase):
    timeout = 3 * STEP_TIMEOUT

    async def step(self, npm: str, *args: str) -> str:
        status, output = await run(npm, *args)
        if status != 0:
            self.fail(f"npm {' '.join(args)} exited with {status}:\n{output[-20000:]}")
        return output

    async def test_sdk(self):
        _node, npm = node_tools()
        if not os.path.exists(os.path.join(ROOT, ".venv", "bin", "twistd")):
            raise unittest.SkipTest("no .venv with twistd: run make venv")
        digest = lock_digest()
        installed = None
        if os.path.exists(STAMP):
            with open(STAMP) as f:
                installed = f.read().strip()
        if installed != digest:
            await self.step(npm, "ci", "--no-audit", "--no-fund")
            with open(STAMP, "w") as f:
                f.write(digest)
        await self.step(npm, "run", "build")
        await self.step(npm, "run", "bundle")
        with open(os.path.join(PACKAGE, "dist", "mmo-client.browser.js")) as f:
            bundle = f.read()
        # The browser bundle carries msgpack and none of Node's WebSocket package.
        self.assertNotIn("WebSocketServer", bundle)
        self.assertIn("session.move", bundle)
        output = await self.step(npm, "test")
        self.assertIn("# fail 0", output)
