"""
The seamless world walk of L{tests.test_world_e2e}, over secure WebSocket
with a client library the project does not use itself (C{websockets}): the
real standalone twistd process with a world of two regions, a browser-style
player that walks across the border and back twice without reconnecting, and
a player on TCP (L{mmo.client}) standing on the other side, seen before the
browser crosses.
"""

from __future__ import annotations

import websockets.exceptions
from twisted.internet import defer
from twisted.trial import unittest

from mmo import tls
from tests import test_world_e2e
from tests.support import FAST_HASH, PASSWORD, STANDALONE, WEBSOCKET, deployment
from tests.test_login_e2e import started
from tests.test_twistd import spawn
from tests.test_websocket import Browser
from tests.test_world_e2e import WORLD, Player, sleep


class BrowserClient:
    """
    The little a game's browser code needs on top of a L{Browser}: requests
    matched to their replies by id, pushes handed to handlers by type, and
    the server's heartbeats answered.  It has the part of
    L{mmo.client.ClientProtocol}'s interface that L{Player} uses
    (C{request}, C{on}).

    @ivar disconnected: Whether the server closed the connection (rather
        than this client, in the test's cleanup).
    @ivar unexpected: Replies and errors to no pending request.
    """

    def __init__(self, browser: Browser):
        self.browser = browser
        self.disconnected = False
        self._next_id = 0
        self._pending: dict[int, defer.Deferred] = {}
        self._handlers: dict[str, list] = {}
        self._closing = False
        self.unexpected: list[dict] = []
        self._reading = defer.ensureDeferred(self._read())

    def on(self, kind: str, handler) -> None:
        """Call C{handler(message)} for every push of type C{kind}."""
        self._handlers.setdefault(kind, []).append(handler)

    def request(self, kind: str, **fields) -> defer.Deferred:
        """
        Send C{kind} with C{fields}; fires with the reply's fields, or fails
        with an C{AssertionError} naming the server's error.
        """
        self._next_id += 1
        request_id = self._next_id
        d = self._pending[request_id] = defer.Deferred()

        def unsent(failure):
            if self._pending.pop(request_id, None) is d:
                d.errback(failure)

        self.browser.send({**fields, "t": kind, "id": request_id}).addErrback(unsent)
        return d

    async def close(self) -> None:
        """Close the connection, then wait for the reader to stop."""
        self._closing = True
        await self.browser.close()
        await self._reading

    async def _read(self) -> None:
        """Read and dispatch messages until the connection closes."""
        while True:
            try:
                message = await self.browser.recv()
            except TimeoutError:
                continue  # A quiet moment only: keep reading.
            except websockets.exceptions.ConnectionClosed:
                self.disconnected = not self._closing
                break
            except BaseException:
                # The browser loop was stopped under us (the test is over).
                break
            self._received(message)
        for d in self._pending.values():
            d.errback(AssertionError("the connection closed before the reply"))
        self._pending.clear()

    def _received(self, message: dict) -> None:
        kind = message["t"]
        if kind in ("reply", "error"):
            d = self._pending.pop(message.get("id"), None)
            if d is None:
                self.unexpected.append(message)
            elif kind == "reply":
                d.callback({k: v for k, v in message.items() if k not in ("t", "id")})
            else:
                d.errback(AssertionError(f"server error: {message!r}"))
        elif kind == "heartbeat" and "seq" not in message:
            self.browser.send({"t": "pong"}).addErrback(lambda failure: None)
        else:
            for handler in self._handlers.get(kind, ()):
                handler(message)


class BrowserWorldTests(unittest.TestCase):
    timeout = 120

    # The TCP player's way in, and the wait for a player's zone changes, of
    # the end-to-end world test (its test case is not imported here, or
    # trial would run its test again as one of this module's).
    tcp_player = test_world_e2e.WorldTests.player
    settled = test_world_e2e.WorldTests.settled

    async def browser_player(self, ca, port: int, name: str) -> Player:
        """
        Over wss://, on one connection: register, log in, present the
        ticket, create and choose a character, enter the world and the zone.
        """
        browser = await Browser(self, port, ca, server_hostname="localhost").connect()
        client = BrowserClient(browser)
        self.addCleanup(client.close)
        await client.request("hello", versions=[1])
        await client.request("register", name=name, password=PASSWORD)
        ticket = await client.request("login", name=name, password=PASSWORD)
        admitted = await client.request("auth", ticket=ticket["ticket"])
        self.assertEqual(admitted["name"], name)
        character = (await client.request("character.create", name=name + "son"))["character"]
        await client.request("character.choose", character=character["id"])
        await client.request("world.enter")
        entered = await client.request("zone.enter")
        self.assertEqual(entered["entity"], character["id"])
        self.assertEqual(entered["zone"], "r0c0")
        self.assertEqual((entered["x"], entered["y"]), (92.0, 50.0))
        return Player(client, entered["entity"], entered["input"], entered["x"], entered["y"])

    async def test_browser_walks_across_the_border(self):
        config = deployment(self, STANDALONE + WEBSOCKET, extra=FAST_HASH + WORLD)
        ca = tls.ca_path(config.deployment.tls_dir)
        child, _ = spawn(self, config.file)
        match = await child.whenLogged(r"secure WebSocket 127\.0\.0\.1:(\d+)")
        wss_port = int(match.group(1))
        tcp_port = await started(child, "mmo")

        # Bob, on TCP, stands on the east side, near the border.
        bob = await self.tcp_player(ca, tcp_port, "Bob")
        await bob.walk_to(106.0)
        await self.settled(bob, 1)
        self.assertEqual(bob.zones, ["r0c1"])

        walker = await self.browser_player(ca, wss_port, "Surfer")
        await sleep(0.3)
        # Seen across the border, before crossing it.
        self.assertIn(bob.id, walker.entered)
        self.assertEqual(walker.seen[bob.id], (106.0, 50.0))
        self.assertEqual(walker.zones, [])

        expected = []
        for _ in range(2):
            await walker.walk_to(104.0)
            expected.append("r0c1")
            await self.settled(walker, len(expected))
            self.assertEqual(walker.seen[walker.id], (104.0, 50.0))
            await walker.walk_to(96.0)
            expected.append("r0c0")
            await self.settled(walker, len(expected))
            self.assertEqual(walker.seen[walker.id], (96.0, 50.0))
        self.assertEqual(walker.zones, expected)
        self.assertEqual(walker.corrections, [])
        self.assertFalse(walker.client.disconnected, "the browser was disconnected")
        self.assertEqual(walker.client.unexpected, [])
        # Bob sees the walker where it stopped, a tick or so later.
        for _ in range(100):
            if bob.seen.get(walker.id) == (96.0, 50.0):
                break
            await sleep(0.02)
        self.assertEqual(bob.seen.get(walker.id), (96.0, 50.0))
