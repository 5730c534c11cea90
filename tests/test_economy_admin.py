"""
Tests of C{mmo-admin economy}: the manager's C{economy} command, which
asks the processes running the metrics job through their control
channels, its refusals, and the text and exit status of C{mmo-admin}.
"""

from __future__ import annotations

from twisted.internet import reactor
from twisted.trial import unittest

from mmo import config
from mmo.bus.memory import MemoryBus
from mmo.economy.supply import SupplyMetrics, economy_jobs
from mmo.jobs.scheduler import Scheduler
from mmo.manager import admin, formats
from mmo.manager.service import Manager, ManagerError
from mmo.process.control import ControlService
from mmo.store.common_economy import Leg, Posting
from tests.support import fake_clock_bus_store, write_config
from tests.test_manager import CLUSTER, supervisor

ECONOMY = """
[economy]
enabled = {enabled}
metrics_interval = 60.0

[economy.currencies.gold]
decimals = 2
supply_alarm = 0.25

[economy.currencies.gems]
[processes.lobby]
kind = "lobby"
"""


class ManagerEconomyTests(unittest.TestCase):
    """The manager's C{economy} command over a memory bus, with processes' control channels."""

    async def setUp(self):
        self.clock, _, self.store = await fake_clock_bus_store(self)
        self.clock.advance(1_800_000_000)
        self.bus = MemoryBus(reactor)
        self.addCleanup(self.bus.stop)
        self.conf = self.load(True)
        sup, _ = supervisor(("lobby", "lobby"))
        self.manager = Manager(self.conf, self.conf.processes["manager"], self.bus, sup, reactor)

    def load(self, enabled: bool):
        text = CLUSTER + ECONOMY.format(enabled="true" if enabled else "false")
        return config.load(write_config(self, text))

    async def process(self, name, kind, jobs):
        """A process of C{kind} on the bus, its scheduler answering on its control channel."""
        await self.bus.announce(name, {"kind": kind}, 60)
        control = ControlService(self.bus, name)
        Scheduler(jobs, self.store, self.bus, name, self.clock, self.conf).register(control)
        await control.start()
        self.addCleanup(control.stop)

    async def test_economy(self):
        """
        The zones, which do not run the metrics job, cannot answer; the
        lobby, which does, answers what the store holds; the alarm shows
        and makes mmo-admin exit 2.
        """
        metrics = SupplyMetrics(self.conf.economy, self.store, self.clock)
        await self.process("zone-1", "zone", [])
        await self.process("lobby", "lobby", economy_jobs(self.conf, self.store, None, self.clock))
        await self.bus.announce("gateway-1", {"kind": "gateway"}, 60)

        shown = await self.manager.run("economy", {})
        self.assertEqual(shown["process"], "lobby")
        self.assertEqual([c["figures"] for c in shown["currencies"]], [[], []])
        text = formats.format_economy(shown)
        self.assertIn("gold: no figures yet (the metrics job has not run)", text)
        self.assertEqual(formats.economy_alarms(shown), [])

        async def reward(key, amount):
            legs = (Leg("faucet:quest", "c:gold", -amount), Leg("player:p1", "c:gold", amount))
            await self.store.economy_post(Posting(key, "quest", legs, self.clock.seconds()))

        await reward("r0", 10_000)
        await metrics.compute()
        self.clock.advance(60)
        await reward("r1", 1_000)
        await metrics.compute()
        self.clock.advance(60)
        await metrics.compute()
        shown = await self.manager.run("economy", {"history": 2, "currency": "gold"})
        (gold,) = shown["currencies"]
        self.assertEqual([f["supply"] for f in gold["figures"]], [11_000, 11_000])
        self.assertEqual(formats.economy_alarms(shown), ["gold"])
        lines = formats.format_economy(shown).splitlines()
        self.assertIn(
            "supply        110.00 (from 110.00; growth +300.00% per hour; ALARM", lines[3]
        )
        self.assertIn("above its supply_alarm of 25.0%", lines[3])
        self.assertIn("inflow        0.00  (-)", lines[4])
        self.assertEqual(lines[10].split()[:3], ["interval", "end", "supply"])
        self.assertEqual(len(lines), 13, "the latest figures, then a row per interval")
        self.assertEqual((lines[11].split()[-2], lines[12].split()[-2]), ("+300.00%", "+600.00%"))

        for args, why in [
            ({"currency": "silver"}, "no currency 'silver' (currencies: gold, gems)"),
            ({"history": 0}, "history is a number of intervals, at least 1"),
            ({"colour": "red"}, "unexpected keyword argument 'colour'"),
        ]:
            with self.assertRaises(ManagerError) as caught:
                await self.manager.run("economy", args)
            self.assertIn(why, str(caught.exception))

    async def test_no_process_runs_it(self):
        """Without a process running the job, the operator is told which answered what."""
        await self.process("zone-1", "zone", [])
        with self.assertRaises(ManagerError) as caught:
            await self.manager.run("economy", {})
        self.assertIn("economy: no process answers", str(caught.exception))
        self.assertIn("zone-1 has no command 'economy'", str(caught.exception))

    async def test_disabled(self):
        """A deployment without an economy says so, naming its config file."""
        conf = self.load(False)
        sup, _ = supervisor(("lobby", "lobby"))
        manager = Manager(conf, conf.processes["manager"], self.bus, sup, reactor)
        with self.assertRaises(ManagerError) as caught:
            await manager.run("economy", {})
        self.assertEqual(
            str(caught.exception),
            f"the economy is disabled ([economy] enabled = false in {conf.file})",
        )


class AdminCommandLineTests(unittest.TestCase):
    def test_parser(self):
        """mmo-admin economy takes --history and --currency."""
        arguments = admin._parser().parse_args(
            ["-c", "x.toml", "--json", "economy", "--history", "5", "--currency", "gold"]
        )
        self.assertEqual(
            (arguments.command, arguments.history, arguments.currency, arguments.json),
            ("economy", 5, "gold", True),
        )
        self.assertEqual(admin._parser().parse_args(["-c", "x", "economy"]).history, 1)

    def test_infinite_growth(self):
        """A supply grown from nothing shows an infinite growth, not a number."""
        self.assertEqual(formats._rate(float("inf")), "+inf")
        self.assertEqual(formats._rate(0.125), "+12.50%")
