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

import os

from twisted.trial import unittest

from tests.node import ROOT, install, node_tools, succeed

PACKAGE = os.path.join(ROOT, "clients", "js")
#: Seconds each npm step may take.
STEP_TIMEOUT = 240.0


class ClientJSTests(unittest.TestCase):
    timeout = 3 * STEP_TIMEOUT

    async def step(self, npm: str, *args: str) -> str:
        return await succeed(self, [npm, *args], PACKAGE, STEP_TIMEOUT)

    async def test_sdk(self):
        _node, npm = node_tools()
        if not os.path.exists(os.path.join(ROOT, ".venv", "bin", "twistd")):
            raise unittest.SkipTest("no .venv with twistd: run make venv")
        await install(self, npm, PACKAGE)
        await self.step(npm, "run", "build")
        await self.step(npm, "run", "bundle")
        with open(os.path.join(PACKAGE, "dist", "mmo-client.browser.js")) as f:
            bundle = f.read()
        # The browser bundle carries msgpack and none of Node's WebSocket package.
        self.assertNotIn("WebSocketServer", bundle)
        self.assertIn("session.move", bundle)
        output = await self.step(npm, "test")
        self.assertIn("# fail 0", output)
