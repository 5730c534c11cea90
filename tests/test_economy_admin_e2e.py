"""
C{mmo-admin economy} for real: a manager runs its redis-server and an
economy process, whose service runs the money-supply metrics job every
second; a game rule's reward posted meanwhile shows in the figures
C{mmo-admin economy} prints, with the alarm its growth raises (exit
status 2).
"""

from __future__ import annotations

import json
import sys

from twisted.internet import reactor, utils
from twisted.trial import unittest

from mmo.economy.economy import Economy
from mmo.economy.holdings import event_key
from mmo.store import make_store
from tests.support import spawn_managed, until
from tests.test_cluster import SETTINGS
from tests.test_twistd import subprocess_env

ECONOMY = """
[economy]
enabled = true
metrics_interval = 1.0

[economy.currencies.gold]
decimals = 2
supply_alarm = 0.5
"""


async def admin_economy(config, *args) -> tuple[int, dict | None, str]:
    """C{mmo-admin --config FILE --json economy ARGS}: its status, JSON output and error."""
    code = "import sys; from mmo.manager.admin import main; sys.exit(main())"
    out, err, status = await utils.getProcessOutputAndValue(
        sys.executable,
        ["-c", code, "--config", config.file, "--json", "economy", *args],
        env=subprocess_env(),
    )
    return status, json.loads(out) if out.strip() else None, err.decode()


class AdminEconomyTests(unittest.TestCase):
    timeout = 90

    async def test_figures_and_alarm(self):
        processes = (("manager", "manager"), ("economy", "economy"))
        cluster = await spawn_managed(self, processes, SETTINGS + ECONOMY)
        conf = cluster.config
        store = make_store(conf, reactor)
        await store.start()
        self.addCleanup(store.stop)

        async def started():
            # The first run only marks where the first interval starts.
            status, shown, _ = await admin_economy(conf)
            return status == 0 and shown["last_run"] is not None

        await until(started, what="the metrics job's first run")
        economy = Economy(conf.economy, store, reactor)
        key = event_key("quest", "e2e", "first")
        await economy.rewards.reward("player-1", key, "quest", currencies={"gold": 2500})

        found = {}

        async def counted():
            found["status"], found["shown"], _ = await admin_economy(conf, "--history", "10")
            figures = found["shown"] and found["shown"]["currencies"][0]["figures"]
            return figures and figures[0]["supply"] == 2500

        await until(counted, what=lambda: f"figures that count the reward: {found}")
        status, shown = found["status"], found["shown"]
        (gold,) = shown["currencies"]
        self.assertEqual(gold["currency"], "gold")
        # Newest first: the interval of the reward is the oldest with an inflow.
        (paid,) = [f for f in gold["figures"] if f["inflow"]]
        self.assertEqual(paid["inflow"], 2500)
        self.assertEqual(paid["inflow_by_reason"], {"quest": 2500})
        self.assertEqual(paid["discrepancy"], 0)
        self.assertEqual(shown["process"], "economy")
        # A supply grown from nothing grows faster than any supply_alarm.
        self.assertTrue(gold["figures"][0]["alarm"])
        self.assertEqual(status, 2)
