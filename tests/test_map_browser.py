"""
The live map (L{mmo.console.map}) in a real, headless Chromium, driven by
C{playwright-core} from Node (C{clients/console/test/map.mjs}), on the admin
console of a real cluster run by C{twistd mmo-manager} (login, a gateway,
the lobby, chat and two zone processes on the manager's redis-server):
C{mmo-admin console} gives a one-time login link, the page opens it and
then the console's Map view; a player walks from one zone process's region
into the other's, and the map shows it past the border, then owned by the
other zone, each from an update that reached the page within a second of
the zone's tick that made it.

Needs C{node}, C{npm} and Chromium, as L{tests.test_console_browser} does
(whose C{clients/console} packages it uses); without them it is skipped
with the reason, except under C{MMO_REQUIRE_BROWSER=1}.  C{MMO_MAP_SCREENSHOT=FILE}
saves a screenshot of the map once the player crossed (relative to the
repository; C{docs/map.png} is one).
"""

from __future__ import annotations

import json
import os
from urllib.parse import urlsplit

from twisted.internet import defer
from twisted.trial import unittest

from mmo import tls
from tests.node import INSTALL_TIMEOUT, ROOT, run
from tests.support import spawn_managed, until
from tests.test_browser import spki
from tests.test_cluster import SETTINGS
from tests.test_console_browser import CONSOLE, SCENARIO_TIMEOUT, console_listener, console_tools
from tests.test_manager_e2e import CLUSTER, admin
from tests.world_walk import CLUSTER_WORLD, SPAWN, tcp_player

#: Seconds from a zone's tick to the page that shows it: the issue's bound.
SHOWN_WITHIN = 1.0

#: The managed cluster of the manager's tests, with one gateway.
PROCESSES = tuple((name, kind) for name, kind in CLUSTER if name != "gateway-2")


class MapBrowserTests(unittest.TestCase):
    timeout = INSTALL_TIMEOUT + SCENARIO_TIMEOUT + 120

    async def test_border_crossing_shown(self):
        """
        A player walking east across the border of zone-1's region (r0c0)
        into zone-2's (r0c1) is shown past it, then in r0c1, on the map.
        """
        executable, node = await console_tools(self)
        cluster = await spawn_managed(
            self, PROCESSES, SETTINGS + CLUSTER_WORLD, manager_keys=console_listener()
        )
        walker = await tcp_player(self, cluster.ca, cluster.ports["login"], "walker")
        link = await admin(self, cluster.config, "console")
        console = urlsplit(link["url"])
        ready = os.path.join(os.path.abspath(self.mktemp()), "ready")
        os.makedirs(os.path.dirname(ready))
        certificate = tls.server_paths(cluster.config.deployment.tls_dir, "manager")[0]
        argv = [
            node, "test/map.mjs",
            "--login", link["url"],
            "--url", f"{console.scheme}://{console.netloc}/#map",
            "--spki", spki(certificate),
            "--entity", walker.id, "--from", "r0c0", "--to", "r0c1",
            "--border", "100", "--ready", ready,
            "--chromium", executable,
        ]  # fmt: skip
        if os.environ.get("MMO_MAP_SCREENSHOT"):
            argv += ["--screenshot", os.path.join(ROOT, os.environ["MMO_MAP_SCREENSHOT"])]
        browser = defer.ensureDeferred(run(argv, CONSOLE, SCENARIO_TIMEOUT))
        await until(lambda: os.path.exists(ready) or browser.called, timeout=SCENARIO_TIMEOUT)
        if not browser.called:
            await walker.walk_to(SPAWN[0] + 14.0)
        status, output = await browser
        self.assertEqual(status, 0, output)
        self.assertIn("map: passed", output)
        events = {
            e["event"]: e
            for e in (json.loads(line) for line in output.splitlines() if line[:1] == "{")
        }
        self.assertEqual(events["world"]["regions"], [["r0c0", "zone-1"], ["r0c1", "zone-2"]])
        self.assertEqual(events["handed"]["zone"], "r0c1")
        for event in ("crossed", "handed"):
            self.assertLess(events[event]["lag"], SHOWN_WITHIN, events[event])
