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

from mmo import tls
from tests.redis import free_port, redis_server_path
from tests.support import deployment, process_tables, until, write_config
from tests.test_bot import MMO_BOT
from tests.test_cluster import SETTINGS
from tests.test_login_e2e import started
from tests.test_manager_e2e import admin
from tests.test_twistd import spawn, subprocess_env
from tests.world_walk import CLUSTER_WORLD

#: The processes the manager runs.
CLUSTER = (
    ("manager", "manager"),
    ("login", "login"),
    ("gateway-1", "gateway"),
    ("lobby", "lobby"),
    ("chat", "chat"),
    ("zone-1", "zone"),
    ("zone-2", "zone"),
)

#: Bots, and how long they walk (seconds): long enough for the zone to be
#: killed, restarted and walked in again.
BOTS = 8
DURATION = 16.0


class ZoneRestartTests(unittest.TestCase):
    timeout = 180

    async def start(self):
        redis_server_path()
        extra = (
            SETTINGS
            + CLUSTER_WORLD
            + f'[redis]\nport = {free_port()}\nprefix = "test"\n'
            + '[manager]\nredis_dir = "redis"\nrestart_delay = 0.2\nstop_timeout = 5.0\n'
        )
        processes = process_tables(*CLUSTER).replace(
            'kind = "manager"', 'kind = "manager"\nredis_server = true'
        )
        self.config = deployment(self, processes, extra=extra)
        self.ca = tls.ca_path(self.config.deployment.tls_dir)
        self.manager, _ = spawn(self, self.config.file, "mmo-manager", "--process", "manager")
        self.login = await started(self.manager, "login")
        await started(self.manager, "gateway-1")
        for name in ("lobby", "chat", "zone-1", "zone-2"):
            await self.manager.whenLogged(rf"\[{name}\] .*{name}: ready")

    async def test_bots_across_a_zone_kill(self):
        await self.start()
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
