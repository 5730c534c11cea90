"""
Replacing a zone process in a real cluster (C{mmo-zone --takeover}): players
walk in zone-1's region and across the border while a second zone-1 takes
over; the old one exits by itself, nobody is disconnected, no request fails,
and the world goes on (updates, border crossings).
"""

from __future__ import annotations

import re

from twisted.internet import defer, reactor
from twisted.trial import unittest

from tests.support import sleep, until
from tests.test_twistd import spawn
from tests.world_walk import start_cluster, tcp_player


class ZoneUpgradeTests(unittest.TestCase):
    timeout = 120

    async def test_takeover_while_walking(self):
        servers = await start_cluster(self)
        bob = await tcp_player(self, servers.ca, servers.login, "Bob")
        await bob.walk_to(106.0)
        await bob.caught_up(1)
        alice = await tcp_player(self, servers.ca, servers.login, "Alice")
        closed = [p.client.whenClosed() for p in (alice, bob)]
        await until(lambda: bob.id in alice.entered, what="Alice sees Bob across the border")
        errors = []
        walking = True

        async def walk():
            while walking:
                for x in (85.0, 95.0):
                    try:
                        await alice.walk_to(x)
                    except Exception as e:
                        errors.append(e)
                        return

        walker = defer.ensureDeferred(walk())
        await sleep(0.5)
        before = len(alice.received)
        old = servers.children["zone-1"]
        new, _ = spawn(self, servers.config_file, "mmo-zone", "--process", "zone-1", "--takeover")
        await new.whenLogged(r"zone-1: took over, ready")
        status = await old.whenExited().addTimeout(20, reactor)
        self.assertEqual(status, 0, old.output()[-3000:])
        await sleep(1.0)
        walking = False
        await walker
        self.assertEqual(errors, [])
        self.assertGreater(len(alice.received), before + 10)
        for d in closed:
            self.assertFalse(d.called, "a client was disconnected")
        # Nothing entered again and nothing unseen left (the new process
        # went on with the same views; what it sent before the gateway's
        # link to it was up is lost, and its first update after starts the
        # view over, once).  The NPCs wander in and out of view, so the view
        # is followed from the first push on.
        in_view: set[str] = set()
        resets = 0
        for index, message in enumerate(alice.received):
            if message.get("reset"):
                resets += 1
                in_view.clear()
            for view in message["enter"]:
                if index >= before:
                    self.assertNotIn(view["id"], in_view, f"entered again: {message}")
                in_view.add(view["id"])
            for gone in message["leave"]:
                if index >= before:
                    self.assertIn(gone, in_view, f"left unseen: {message}")
                in_view.discard(gone)
        self.assertLessEqual(resets, 1)
        self.assertEqual(alice.seen[bob.id], (106.0, 50.0))
        # Still crossing the border, both ways, over the new process.
        zones = len(alice.zones)
        await alice.walk_to(104.0)
        await alice.caught_up(zones + 1)
        await alice.walk_to(96.0)
        await alice.caught_up(zones + 2)
        self.assertEqual(alice.zones[-2:], ["r0c1", "r0c0"])
        self.assertEqual(alice.corrections, [])
        pauses = re.findall(r"pause (\d+) ms", new.output())
        print("takeover pauses (ms):", pauses)
