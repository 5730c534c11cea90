"""
The seamless world end to end in the real standalone twistd process, with a
world of two regions (two zones in the process), and players over TLS with
the Python client: the border walk of L{tests.world_walk}; a player whose
connection drops stays in the world through the resume window, and finds
its entity where it left it when it resumes; after the window, it leaves.
"""

from __future__ import annotations

from twisted.internet import reactor
from twisted.trial import unittest

from mmo.client import Client, ServerError, connect
from tests.support import sleep, until
from tests.world_walk import STEP, BorderWalk, start_standalone, tcp_player


class WalkTests(BorderWalk, unittest.TestCase):
    """The border walk in the standalone process, the walker on TCP."""

    async def start(self):
        return await start_standalone(self)

    async def walker(self, servers, name):
        return await self.tcp_player(servers, name)


class ResumeTests(unittest.TestCase):
    """A dropped player's entity through the resume window, and after it."""

    timeout = 120

    async def test_resume_keeps_the_entity(self):
        """
        A player whose connection drops without a goodbye keeps its entity
        in the world through the resume window: the others still see it,
        and on resume it is replayed what it missed, finds its entity where
        it left it and goes on moving with its next input.
        """
        servers = await start_standalone(self, "[gateway]\nresume_window = 30.0\n")
        ca, port = servers.ca, servers.login

        alice = await tcp_player(self, ca, port, "Alice")
        bob = await tcp_player(self, ca, port, "Bob")
        # Alice walks away from the spawn, to P; Bob stays near it.
        await alice.walk_to(88.0)
        await alice.caught_up(0)
        here = (alice.x, alice.y)
        await until(
            lambda: bob.seen.get(alice.id) == here,
            what=lambda: f"Bob sees Alice at {here}: he sees her at {bob.seen.get(alice.id)}",
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
        await until(
            lambda: alice.seen.get(bob.id) == (93.5, 50.0),
            what=lambda: f"Alice sees Bob at 93.5 after resuming: at {alice.seen.get(bob.id)}",
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
        await alice.caught_up(0)
        await until(
            lambda: bob.seen.get(alice.id) == (alice.x, alice.y),
            what=lambda: f"Bob sees Alice's move: he sees her at {bob.seen.get(alice.id)}",
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
        servers = await start_standalone(self, f"[gateway]\nresume_window = {window}\n")
        ca, port = servers.ca, servers.login

        alice = await tcp_player(self, ca, port, "Alice")
        bob = await tcp_player(self, ca, port, "Bob")
        await until(lambda: alice.id in bob.seen, what="Bob sees Alice")
        resumption = alice.client.resumption()
        closed = alice.client.whenClosed()
        alice.client.transport.abortConnection()
        await closed
        dropped = reactor.seconds()

        await until(
            lambda: alice.id in bob.left, timeout=2 * window, what="Alice leaves Bob's view"
        )
        self.assertGreaterEqual(reactor.seconds() - dropped, window * 0.8)
        self.assertNotIn(alice.id, bob.seen)
        with self.assertRaises(ServerError) as caught:
            await connect(
                reactor, "127.0.0.1", port, ca=ca, hostname="localhost", resume=resumption
            )
        self.assertEqual(caught.exception.code, "resume_refused")
