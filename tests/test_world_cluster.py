"""
The border walk of L{tests.world_walk} against a real cluster of twistd
processes sharing a private Redis: a login server, one gateway, the lobby,
chat and two C{mmo-zone} processes, each serving one of the world's two
regions, so that each crossing is a handoff between processes.  The walker
comes over TCP, or as a browser-style player on the gateway's secure
WebSocket (having logged in over TCP).
"""

from __future__ import annotations

from twisted.trial import unittest

from tests.world_walk import BorderWalk, browser_player, start_cluster


class WalkTests(BorderWalk, unittest.TestCase):
    """The border walk in a cluster, the walker on TCP."""

    async def start(self):
        servers = await start_cluster(self)
        # The zones take moves without an answer: the walk's moves go so.
        gateway = servers.children["gateway-1"]
        for zone in ("zone-1", "zone-2"):
            await gateway.whenLogged(rf"RPC link to {zone} at .* up \(.*takes [^)]*RouteInputs")
        # And stream their players' pushes to the gateway over those links.
        for zone in ("zone-1", "zone-2"):
            await servers.children[zone].whenLogged(r"stream to gateway-1 up")
        return servers

    async def walker(self, servers, name):
        return await self.tcp_player(servers, name)


class BrowserWalkTests(BorderWalk, unittest.TestCase):
    """The border walk in a cluster, the walker on the gateway's secure WebSocket."""

    #: Fewer than over TCP: what this walk adds is a WebSocket connection
    #: that lives through handoffs, which two round trips show.
    round_trips = 2

    async def start(self):
        return await start_cluster(self, browsers=True)

    async def walker(self, servers, name):
        return await browser_player(self, servers.ca, servers.browsers, name, servers.login)
