"""
The live map (L{mmo.console.map}) in a real, headless Chromium, driven by
C{playwright-core} from Node (C{clients/demo/test/map.mjs}), against a real
cluster: login, a gateway, the lobby, chat and two zone processes on a
private redis-server.  The map's resource is mounted at C{/map} of a plain
C{twisted.web} site over TLS in the test's process (with the deployment's
certificate, a stub of the console's C{auth}), on the cluster's bus; a
player walks from one zone process's region into the other's, and the page
shows it past the border, then owned by the other zone, each from an update
that reached it within a second of the zone's tick that made it.

Needs C{node}, C{npm} and Chromium, as L{tests.test_browser} does (whose
C{clients/demo} packages it uses); without them it is skipped with the
reason, except under C{MMO_REQUIRE_BROWSER=1}.
"""

from __future__ import annotations

import json
import os

from twisted.internet import defer, reactor
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.web import server
from twisted.web.resource import Resource

from mmo import config, tls
from mmo.bus import make_bus
from mmo.console.map import map_resource
from tests.node import run
from tests.support import until
from tests.test_browser import DEMO, SCENARIO_TIMEOUT, DemoTestCase, chromium, spki
from tests.world_walk import SPAWN, start_cluster, tcp_player

#: Seconds from a zone's tick to the page that shows it: the issue's bound.
SHOWN_WITHIN = 1.0


class Everyone:
    """The console's C{auth}, stubbed: the console's own tests check its login."""

    def authorized(self, request) -> bool:
        return True


class MapBrowserTests(DemoTestCase):
    async def serve_map(self, config_file: str) -> int:
        """The map at C{/map} over TLS on the cluster's bus: the port."""
        conf = config.load(config_file)
        bus = make_bus(conf, reactor)
        await bus.start()
        self.addCleanup(bus.stop)
        root = Resource()
        root.putChild(b"map", map_resource(conf, bus, reactor, Everyone()))
        creator = tls.client_facing_tls(conf, conf.processes["login"], [b"http/1.1"])
        port = reactor.listenTCP(
            0, TLSMemoryBIOFactory(creator, False, server.Site(root)), interface="127.0.0.1"
        )
        self.addCleanup(port.stopListening)
        return port.getHost().port

    async def test_border_crossing_shown(self):
        """
        A player walking east across the border of zone-1's region (r0c0)
        into zone-2's (r0c1) is shown past it, then in r0c1, on the map.
        """
        chromium()
        node = await self.setUpTools()
        servers = await start_cluster(self)
        port = await self.serve_map(servers.config_file)
        walker = await tcp_player(self, servers.ca, servers.login, "walker")
        ready = os.path.join(os.path.abspath(self.mktemp()), "ready")
        os.makedirs(os.path.dirname(ready))
        argv = [node, "test/map.mjs", "--url", f"https://localhost:{port}/map/"]
        argv += ["--spki", spki(tls.server_paths(os.path.dirname(servers.ca), "login")[0])]
        argv += ["--entity", walker.id, "--from", "r0c0", "--to", "r0c1"]
        argv += ["--border", "100", "--ready", ready, "--chromium", chromium()]
        browser = defer.ensureDeferred(run(argv, DEMO, SCENARIO_TIMEOUT))
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
