"""
The admin console in a real, headless Chromium (C{clients/console/test/console.mjs},
driven by C{playwright-core}) against a real cluster run by C{twistd
mmo-manager}: C{mmo-admin console} gives a one-time login link, the page
opens it, shows the processes, drains a gateway with a click and a
confirmation, and shows its players (L{mmo.client} sessions) on the other
gateway, where they resumed.

Needs C{node}, C{npm} and Chromium; skipped with the reason without them,
except under C{MMO_REQUIRE_BROWSER=1}.
"""

from __future__ import annotations

import os

from twisted.trial import unittest

from mmo import tls
from tests.node import INSTALL_TIMEOUT, ROOT, install, node_tools, succeed
from tests.redis import free_port
from tests.support import spawn_managed, until
from tests.test_browser import chromium, spki
from tests.test_cluster import SETTINGS, Player
from tests.test_manager_e2e import CLUSTER, admin

CONSOLE = os.path.join(ROOT, "clients", "console")
#: Seconds the browser scenario may take.
SCENARIO_TIMEOUT = 120.0

#: The managed cluster of the manager's tests, without its zones (no one walks here).
PROCESSES = tuple((name, kind) for name, kind in CLUSTER if kind != "zone")


async def console_tools(testcase) -> tuple[str, str]:
    """Chromium and Node with the console's packages installed (else skip): their binaries."""
    executable = chromium()
    node, npm = node_tools()
    await install(testcase, npm, CONSOLE)
    return executable, node


def console_listener() -> str:
    """The manager's table key of a console on a free loopback port."""
    return f'console = "tcp:{free_port()}:interface=127.0.0.1"'


class ConsoleBrowserTests(unittest.TestCase):
    timeout = INSTALL_TIMEOUT + SCENARIO_TIMEOUT + 120

    async def test_drain_a_gateway_with_a_click(self):
        executable, node = await console_tools(self)
        cluster = await spawn_managed(self, PROCESSES, SETTINGS, manager_keys=console_listener())
        self.ca, self.ports, config = cluster.ca, cluster.ports, cluster.config
        players = [await Player(self, f"Walker{i}").join(self.ports["gateway-1"]) for i in range(3)]
        for player in players:
            self.addCleanup(lambda p=player: p.client.close())
        link = await admin(self, config, "console")
        certificate = tls.server_paths(config.deployment.tls_dir, "manager")[0]
        argv = [
            node, "test/console.mjs",
            "--url", link["url"],
            "--spki", spki(certificate),
            "--processes", ",".join(name for name, kind in PROCESSES if kind != "manager"),
            "--drain", "gateway-1",
            "--to", "gateway-2",
            "--players", ",".join(p.name for p in players),
            "--chromium", executable,
        ]  # fmt: skip
        if os.environ.get("MMO_CONSOLE_SCREENSHOT"):
            argv += ["--screenshot", os.path.join(ROOT, os.environ["MMO_CONSOLE_SCREENSHOT"])]
        output = await succeed(self, argv, CONSOLE, SCENARIO_TIMEOUT)
        self.assertIn("browser console: passed", output)
        # The players' own connections are to the other gateway now.
        await until(
            lambda: all(
                p.client.transport.getPeer().port == self.ports["gateway-2"] for p in players
            )
        )
