"""
A player logs out while its zone process cannot answer, for real: the
gateway's C{"ended"} is lost with the zone process (SIGSTOPped, then
SIGKILLed), the manager restarts it from its checkpoint with the entity,
and the gateway tells the restored zone again: the entity leaves the
world.  C{twistd mmo-manager} runs its own redis-server and a small
cluster (login, one gateway, the lobby, one zone).
"""

from __future__ import annotations

import os
import signal

from twisted.trial import unittest

from tests.support import sleep, spawn_managed, until
from tests.test_cluster import SETTINGS
from tests.test_gateway_crash_e2e import CLUSTER, WORLD
from tests.test_manager_e2e import admin
from tests.world_walk import tcp_player


class ZoneDownAtLogoutTests(unittest.TestCase):
    timeout = 120

    async def players(self) -> int | None:
        """The players zone-1 says it has (the directory), or C{None} if it is not in it."""
        [status] = await admin(self, self.config, "status")
        self.directory = status["directory"]
        zone = self.directory.get("zone-1")
        return zone.get("players") if zone else None

    async def test_logout_while_the_zone_is_down(self):
        cluster = await spawn_managed(self, CLUSTER, SETTINGS + WORLD)
        self.config, manager = cluster.config, cluster.children["manager"]
        alice = await tcp_player(self, cluster.ca, cluster.ports["login"], "alice")
        await until(self._one_player, 10, 0.25, what=lambda: f"alice in zone-1: {self.directory}")
        pid = self.directory["zone-1"]["pid"]

        # The zone takes the "ended" but never answers: it dies.
        os.kill(pid, signal.SIGSTOP)
        self.assertEqual(await alice.client.request("logout"), {})
        await sleep(0.5)
        os.kill(pid, signal.SIGKILL)
        await manager.whenLogged(r"zone-1: ended \(signal 9\) after [\d.]+s; restarting")
        await manager.whenLogged(r"(?s)zone-1: ready.*zone-1: ready")
        # Restored from its checkpoint with alice; the gateway told it again.
        await until(self._no_player, 15, 0.25, what=lambda: f"alice left: {self.directory}")
        await manager.whenLogged(r"\[gateway-1\] .*session .* ended; telling .* again")

    async def _one_player(self) -> bool:
        return await self.players() == 1

    async def _no_player(self) -> bool:
        return await self.players() == 0
