"""
A zone process SIGKILLed while bots walk across its border, restarted by
its manager: C{mmo-bot}'s view check sees no duplicated and no lost entity
(the restored zone starts its players' views over with C{reset}) and the
run exits 0.  Real processes: C{twistd mmo-manager} with its own
redis-server and a cluster (login, a gateway, lobby, chat, two zones), and
the installed C{mmo-bot}.
"""

from __future__ import annotations

import json
import os
import signal

from twisted.internet import reactor, utils
from twisted.trial import unittest

from tests.support import spawn_managed, until, write_config
from tests.test_bot import MMO_BOT
from tests.test_cluster import SETTINGS
from tests.test_manager_e2e import admin
from tests.test_twistd import subprocess_env
from tests.world_walk import CLUSTER, CLUSTER_WORLD

#: Bots, and how long they walk (seconds): long enough for the zone to be
#: killed, restarted and walked in again.
BOTS = 8
DURATION = 16.0


class ZoneRestartTests(unittest.TestCase):
    timeout = 180

    async def test_bots_across_a_zone_kill(self):
        # The cluster of the border walks (login, a gateway, lobby, chat,
        # two zones), run by a manager.
        cluster = await spawn_managed(
            self, (("manager", "manager"), *CLUSTER), SETTINGS + CLUSTER_WORLD
        )
        self.config, self.manager = cluster.config, cluster.children["manager"]
        self.login = cluster.ports["login"]
        walk = write_config(
            self, 'scenario = "border-walk"\nspan = 15.0\nmove_interval = 0.25\n', "walk.toml"
        )
        run = utils.getProcessOutputAndValue(
            MMO_BOT,
            [
                "--config", self.config.file,
                "--login", f"127.0.0.1:{self.login}",
                "--bots", str(BOTS),
                "--scenario-file", walk,
                "--duration", str(DURATION),
                "--max-seconds", "90",
                "--json",
            ],
            env=subprocess_env(),
            reactor=reactor,
        )  # fmt: skip
        # Every bot enters at the spawn, in zone-1's region; kill it once
        # they are all in, and walking in both zones.
        for index in range(BOTS):
            await self.manager.whenLogged(rf"\[zone-1\] .*r0c0: bot{index:05d}-c entered")
        directory = {}

        async def in_both_zones():
            [status] = await admin(self, self.config, "status")
            directory.update(status["directory"])
            return all(directory[zone]["players"] > 0 for zone in ("zone-1", "zone-2"))

        await until(in_both_zones, 30, 0.5, what=lambda: f"bots in both zones: {directory}")
        os.kill(directory["zone-1"]["pid"], signal.SIGKILL)
        await self.manager.whenLogged(r"zone-1: ended \(signal 9\) after [\d.]+s; restarting")
        await self.manager.whenLogged(r"(?s)zone-1: ready.*zone-1: ready")

        out, err, code = await run
        why = err.decode(errors="replace")[-3000:]
        self.assertEqual(code, 0, why)
        report = json.loads(out)
        self.assertTrue(report["ok"], report["problems"])
        self.assertEqual(report["stopped"], "completed")
        self.assertEqual(report["bots"]["in_world"], BOTS)
        world = report["world"]
        self.assertEqual((world["duplicated"], world["lost"]), (0, 0), world["examples"])
        # Players of the restored zone were told to start their views over.
        self.assertGreater(world["resets"], 0)
        self.assertGreater(report["handoffs"], 0)
        self.assertEqual(report["disconnects"]["unexplained"], 0)
