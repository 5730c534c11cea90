"""
A gateway killed (SIGKILL) while its player is in the world, for real:
C{twistd mmo-manager} runs its own redis-server and a small cluster (login,
one gateway, the lobby, one zone), restarts the gateway, and the player,
whose session died with it, logs in again, chooses its character, enters
the world and walks, within seconds of the restart: the services ended the
dead sessions when the new gateway process said it started.
"""

from __future__ import annotations

import os
import signal

from twisted.internet import defer, reactor
from twisted.trial import unittest

from mmo.client import connect
from tests.redis import free_port
from tests.support import PASSWORD, bounded, sleep, spawn_managed, until
from tests.test_cluster import SETTINGS
from tests.test_manager_e2e import admin
from tests.world_walk import SPAWN, STEP, STEP_TIME, Player, tcp_player

#: The processes the manager runs.
CLUSTER = (
    ("manager", "manager"),
    ("login", "login"),
    ("gateway-1", "gateway"),
    ("lobby", "lobby"),
    ("zone-1", "zone"),
)

#: One region, served by zone-1, where players appear at L{SPAWN}.
WORLD = f"""
[world]
width = 100.0
height = 100.0
columns = 1
rows = 1
zones = ["zone-1"]
tick_rate = 20.0
aoi_radius = 20.0
ghost_margin = 25.0
max_speed = 8.0
npcs = 0
spawn = [{SPAWN[0]}, {SPAWN[1]}]
"""

#: Seconds from the gateway's restart until its player walks again.
BACK_IN_PLAY = 5.0


class GatewayCrashTests(unittest.TestCase):
    timeout = 180

    async def start(self):
        # The gateway's port is fixed: its next process listens where the
        # directory (and so the login's tickets) said it did.
        self.gateway_port = free_port()
        cluster = await spawn_managed(
            self, CLUSTER, SETTINGS + WORLD, ports={"gateway-1": self.gateway_port}
        )
        self.config, self.ca = cluster.config, cluster.ca
        self.manager = cluster.children["manager"]
        self.login_port = cluster.ports["login"]
        self.assertEqual(cluster.ports["gateway-1"], self.gateway_port)

    async def play_again(self, name: str, character: str) -> Player:
        """
        Log C{name} in again, choose C{character}, enter the world and its
        zone: the player, where the zone put it.
        """
        client = await connect(
            reactor, "127.0.0.1", self.login_port, ca=self.ca, hostname="localhost"
        )
        ticket = await client.request("login", name=name, password=PASSWORD)
        await client.close()
        gateway = ticket["gateway"]
        self.assertEqual(gateway["port"], self.gateway_port)
        client = await connect(
            reactor, gateway["host"], gateway["port"], ca=self.ca, hostname="localhost"
        )
        self.addCleanup(client.close)
        await client.request("auth", ticket=ticket["ticket"])
        chosen = await client.request("character.choose", character=character)
        self.assertEqual(chosen["character"]["id"], character)
        player = Player(client, gateway)
        await client.request("world.enter")
        player.placed(await client.request("zone.enter"))
        return player

    async def test_gateway_killed_and_restarted(self):
        await self.start()
        alice = await tcp_player(self, self.ca, self.login_port, "alice")
        for _ in range(10):
            await alice.move(round(alice.x - STEP, 6), alice.y)
            await sleep(STEP_TIME)
        await alice.caught_up(0)
        left_at = (alice.x, alice.y)
        [status] = await admin(self, self.config, "status")
        gateway_pid = status["processes"]["gateway-1"]["pid"]

        os.kill(gateway_pid, signal.SIGKILL)
        await alice.client.whenClosed()
        await self.manager.whenLogged(r"gateway-1: ended \(signal 9\) after [\d.]+s; restarting")
        await self.manager.whenLogged(r"(?s)gateway-1: ready.*gateway-1: ready")

        # Her session died with the process; she logs in again and plays.
        again = await bounded(
            defer.ensureDeferred(self.play_again("alice", alice.id)), BACK_IN_PLAY
        )
        self.assertEqual(again.id, alice.id)
        # The old entity was saved where she stopped, and replaced.
        self.assertEqual((again.x, again.y), left_at)
        await again.move(round(again.x - STEP, 6), again.y)
        await until(
            lambda: again.seen.get(again.id) == (again.x, again.y),
            timeout=BACK_IN_PLAY,
            what=lambda: f"alice walks again: seen at {again.seen.get(again.id)}",
        )
