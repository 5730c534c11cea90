"""
The seamless world end to end: the real standalone twistd process, with a
world of two regions (two zones in the process), and players over TLS with
the Python client.  A player walks across the border and back several
times, without reconnecting: it is told each zone change, its position and
inputs survive each handoff, it sees a player on the other side of the
border before crossing, and a speed hack is corrected.  A player whose
connection drops stays in the world through the resume window, and finds
its entity where it left it when it resumes; after the window, it leaves.
"""

from __future__ import annotations

from twisted.internet import reactor, task
from twisted.trial import unittest

from mmo import tls
from mmo.client import Client, ServerError, connect
from tests.support import FAST_HASH, PASSWORD, STANDALONE, deployment
from tests.test_login_e2e import started
from tests.test_twistd import spawn

#: Two regions side by side, the border at x = 100 (new players appear on it).
TWO_REGIONS = """
[world]
width = 200.0
height = 100.0
columns = 2
rows = 1
tick_rate = 20.0
aoi_radius = 20.0
ghost_margin = 25.0
hysteresis = 2.0
max_speed = 8.0
npcs = 2
"""
WORLD = TWO_REGIONS + "spawn = [92.0, 50.0]\n"

#: Seconds between inputs, and units per input: 6 units/s, below max_speed.
STEP_TIME = 0.05
STEP = 0.3


def sleep(seconds: float):
    return task.deferLater(reactor, seconds, lambda: None)


class Player:
    """A client in the world: what it was pushed, and its own entity's position."""

    def __init__(self, client, entity_id: str, seq: int, x: float, y: float):
        self.id = entity_id
        self.seq = seq
        self.x, self.y = x, y
        self.zones: list[str] = []
        self.corrections: list[dict] = []
        self.entered: set[str] = set()
        self.left: list[str] = []
        self.received: list[dict] = []
        self.seen: dict[str, tuple[float, float]] = {}
        self.attach(client)

    def attach(self, client) -> None:
        """Receive C{client}'s pushes (a new connection, before it resumes)."""
        self.client = client
        client.on("world.update", self.updated)
        client.on("world.correct", self.corrections.append)
        client.on("zone.changed", lambda message: self.zones.append(message["zone"]))

    def updated(self, message: dict) -> None:
        self.received.append(message)
        self.left.extend(message["leave"])
        for view in message["enter"]:
            self.entered.add(view["id"])
            self.seen[view["id"]] = (view["x"], view["y"])
        for change in message["update"]:
            if "x" in change:
                self.seen[change["id"]] = (change["x"], change["y"])
        for gone in message["leave"]:
            self.seen.pop(gone, None)

    async def move(self, x: float, y: float) -> None:
        self.seq += 1
        await self.client.request("zone.move", seq=self.seq, x=x, y=y)
        self.x, self.y = x, y

    async def walk_to(self, x: float) -> None:
        """Walk along y to C{x} at a legal speed."""
        while abs(x - self.x) > 1e-9:
            step = max(-STEP, min(STEP, x - self.x))
            await self.move(round(self.x + step, 6), self.y)
            await sleep(STEP_TIME)


class WorldTests(unittest.TestCase):
    timeout = 120

    async def waitFor(self, condition, why: str, tries: int = 200) -> None:
        """Wait until C{condition()} is true (20 ms between looks), or fail with C{why}."""
        for _ in range(tries):
            if condition():
                return
            await sleep(0.02)
        self.fail(why)

    async def player(self, ca, login_port, name) -> Player:
        """Register, log in, be admitted, create and choose a character, enter the world."""
        client = await connect(reactor, "127.0.0.1", login_port, ca=ca, hostname="localhost")
        await client.request("register", name=name, password=PASSWORD)
        ticket = await client.request("login", name=name, password=PASSWORD)
        await client.close()
        gateway = ticket["gateway"]
        client = await connect(
            reactor, gateway["host"], gateway["port"], ca=ca, hostname="localhost"
        )
        self.addCleanup(client.close)
        await client.request("auth", ticket=ticket["ticket"])
        character = (await client.request("character.create", name=name + "son"))["character"]
        await client.request("character.choose", character=character["id"])
        await client.request("world.enter")
        entered = await client.request("zone.enter")
        self.assertEqual(entered["entity"], character["id"])
        self.assertEqual(entered["zone"], "r0c0")
        self.assertEqual((entered["x"], entered["y"]), (92.0, 50.0))
        return Player(client, entered["entity"], entered["input"], entered["x"], entered["y"])

    async def settled(self, player: Player, zones: int) -> None:
        """Wait until C{player} was told of C{zones} zone changes and its position is current."""
        for _ in range(200):
            if len(player.zones) >= zones and player.seen.get(player.id) == (player.x, player.y):
                return
            await sleep(0.02)
        self.fail(
            f"{player.id}: zones {player.zones}, seen at {player.seen.get(player.id)}, "
            f"walked to {(player.x, player.y)}"
        )

    async def test_walk_across_the_border(self):
        config = deployment(self, STANDALONE, extra=FAST_HASH + WORLD)
        child, _ = spawn(self, config.file)
        port = await started(child, "mmo")
        ca = tls.ca_path(config.deployment.tls_dir)

        # Bob stands on the east side, near the border.
        bob = await self.player(ca, port, "Bob")
        await bob.walk_to(106.0)
        await self.settled(bob, 1)
        self.assertEqual(bob.zones, ["r0c1"])

        alice = await self.player(ca, port, "Alice")
        closed = alice.client.whenClosed()
        await sleep(0.3)
        # Seen across the border, before crossing it.
        self.assertIn(bob.id, alice.entered)
        self.assertEqual(alice.seen[bob.id], (106.0, 50.0))
        self.assertEqual(alice.zones, [])

        expected = []
        for _ in range(3):
            await alice.walk_to(104.0)
            expected.append("r0c1")
            await self.settled(alice, len(expected))
            await alice.walk_to(96.0)
            expected.append("r0c0")
            await self.settled(alice, len(expected))
        self.assertEqual(alice.zones, expected)
        self.assertEqual(alice.corrections, [])
        self.assertFalse(closed.called, "the client was disconnected")

        # A speed hack: refused, and corrected to where it is.
        await alice.move(alice.x + 40.0, alice.y)
        for _ in range(100):
            if alice.corrections:
                break
            await sleep(0.02)
        self.assertEqual(alice.corrections[0]["x"], 96.0)
        self.assertEqual(alice.corrections[0]["input"], alice.seq)
        self.assertFalse(closed.called)

    async def test_resume_keeps_the_entity(self):
        """
        A player whose connection drops without a goodbye keeps its entity
        in the world through the resume window: the others still see it,
        and on resume it is replayed what it missed, finds its entity where
        it left it and goes on moving with its next input.
        """
        gateway = "[gateway]\nresume_window = 30.0\n"
        config = deployment(self, STANDALONE, extra=FAST_HASH + WORLD + gateway)
        child, _ = spawn(self, config.file)
        port = await started(child, "mmo")
        ca = tls.ca_path(config.deployment.tls_dir)

        alice = await self.player(ca, port, "Alice")
        bob = await self.player(ca, port, "Bob")
        # Alice walks away from the spawn, to P; Bob stays near it.
        await alice.walk_to(88.0)
        await self.settled(alice, 0)
        here = (alice.x, alice.y)
        await self.waitFor(
            lambda: bob.seen.get(alice.id) == here, f"Bob sees Alice at {bob.seen.get(alice.id)}"
        )
        last_input = alice.seq
        token, last_seq = alice.client.resumption()
        dropped = alice.client
        closed = dropped.whenClosed()

        # Cut, no goodbye.
        dropped.transport.abortConnection()
        await closed
        self.assertIsNone(dropped.goodbye)
        updates = len(bob.received)
        # While she is away Bob still has her in view, where she was, and moves.
        await bob.walk_to(93.5)
        await sleep(1.0)
        self.assertGreater(len(bob.received), updates)
        self.assertNotIn(alice.id, bob.left)
        self.assertEqual(bob.seen.get(alice.id), here)

        # Alice comes back with a new connection and the token.
        missed = len(alice.received)
        again = Client()
        alice.attach(again)
        await connect(
            reactor,
            "127.0.0.1",
            port,
            ca=ca,
            hostname="localhost",
            client=again,
            resume=(token, last_seq),
        )
        self.addCleanup(again.close)
        # Replayed: what she missed, Bob's walk included.
        await self.waitFor(
            lambda: alice.seen.get(bob.id) == (93.5, 50.0),
            f"Alice sees Bob at {alice.seen.get(bob.id)} after resuming",
        )
        self.assertGreater(len(alice.received), missed)
        self.assertGreater(again.last_seq, last_seq)
        # Her own entity is where she left it.
        self.assertEqual(alice.seen.get(alice.id), here)
        self.assertNotIn(alice.id, alice.left)

        # And she goes on from there, with the next input after her last.
        self.assertEqual(alice.seq, last_input)
        await alice.move(round(alice.x - STEP, 6), alice.y)
        self.assertEqual(alice.seq, last_input + 1)
        await self.settled(alice, 0)
        await self.waitFor(
            lambda: bob.seen.get(alice.id) == (alice.x, alice.y),
            f"Bob sees Alice at {bob.seen.get(alice.id)} after her move",
        )
        await sleep(0.2)
        self.assertEqual(alice.corrections, [])
        self.assertEqual(alice.zones, [])
        self.assertNotIn(alice.id, bob.left)

    async def test_entity_leaves_after_the_resume_window(self):
        """
        A dropped player's entity stays through the resume window and
        leaves the world when it runs out; the token is no good after it.
        """
        window = 2.0
        gateway = f"[gateway]\nresume_window = {window}\n"
        config = deployment(self, STANDALONE, extra=FAST_HASH + WORLD + gateway)
        child, _ = spawn(self, config.file)
        port = await started(child, "mmo")
        ca = tls.ca_path(config.deployment.tls_dir)

        alice = await self.player(ca, port, "Alice")
        bob = await self.player(ca, port, "Bob")
        await self.waitFor(lambda: alice.id in bob.seen, "Bob does not see Alice")
        resumption = alice.client.resumption()
        closed = alice.client.whenClosed()
        alice.client.transport.abortConnection()
        await closed
        dropped = reactor.seconds()

        await self.waitFor(
            lambda: alice.id in bob.left, "Alice never left Bob's view", tries=int(window * 100)
        )
        self.assertGreaterEqual(reactor.seconds() - dropped, window * 0.8)
        self.assertNotIn(alice.id, bob.seen)
        with self.assertRaises(ServerError) as caught:
            await connect(
                reactor, "127.0.0.1", port, ca=ca, hostname="localhost", resume=resumption
            )
        self.assertEqual(caught.exception.code, "resume_refused")
