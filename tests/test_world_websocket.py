"""
The border walk of L{tests.world_walk} in the real standalone twistd
process, the walker a browser-style player on secure WebSocket that
registers, logs in and plays on one connection.
"""

from __future__ import annotations

from twisted.trial import unittest

from tests.world_walk import BorderWalk, browser_player, start_standalone


class BrowserWalkTests(BorderWalk, unittest.TestCase):
    """The border walk in the standalone process, the walker on secure WebSocket."""

    #: Fewer than over TCP: what this walk adds is a WebSocket connection
    #: that lives through handoffs, which two round trips show.
    round_trips = 2

    async def start(self):
        return await start_standalone(self, browsers=True)

    async def walker(self, servers, name):
        return await browser_player(self, servers.ca, servers.browsers, name)
