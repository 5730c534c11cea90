"""
Replacing a zone's process (L{mmo.zone.service.ZoneHost} with C{takeover}):
an old and a new host of the same regions on one fake clock, memory bus and
SQLite store; players move while the old one hands over.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.trial import unittest

from mmo import config
from mmo.game.service import gateway_channel
from mmo.process.control import ControlService
from mmo.wire import codes
from mmo.wire.codes import WireError
from mmo.zone.host import ZoneHost
from mmo.zone.takeover import HANDED, SERVING, TakeoverFailed
from tests.support import GatewayInbox, fake_clock_bus_store, write_config
from tests.test_zone_service import TICK, ZoneTicks, caller

WORLD = """
[processes.zone-1]
kind = "zone"
rpc = "tcp:0"

[world]
width = 200.0
height = 100.0
columns = 2
rows = 1
zones = ["zone-1", "zone-1"]
tick_rate = 10.0
aoi_radius = 20.0
ghost_margin = 25.0
hysteresis = 2.0
max_speed = 8.0
npcs = 2
spawn = [50.0, 50.0]
"""


class FakeHooks:
    """The process's pieces, as L{ZoneHost.attach} uses them."""

    #: No RPC listener: the zones keep sending their gateways on the bus.
    factory = None

    def __init__(self, control):
        self.control = control
        self.events = []

    async def go_live(self, attempts):
        self.events.append("live")

    async def release(self):
        self.events.append("released")
        await self.control.stop()

    def exit_when_idle(self, timeout):
        self.events.append("exit")

    def fail(self):
        self.events.append("fail")


class TakeoverTests(ZoneTicks, unittest.TestCase):
    async def setUp(self):
        self.config = config.load(write_config(self, WORLD))
        self.clock, self.bus, self.store = await fake_clock_bus_store(self)
        self.delivered = GatewayInbox()
        await self.bus.subscribe(gateway_channel("gw-1"), self.delivered)

    async def host(self, takeover=False) -> tuple[ZoneHost, FakeHooks]:
        host = ZoneHost(self.config, self.store, self.bus, self.clock, "zone-1", takeover=takeover)
        control = ControlService(self.bus, "zone-1")
        hooks = FakeHooks(control)
        host.attach(hooks)
        if not takeover:
            await control.start()
        await host.start()
        self.addCleanup(host.stop)
        self.addCleanup(control.stop)
        return host, hooks

    def updates(self, session="session-alice"):
        """The world.update events of C{session} since the last call."""
        return [fields for _, fields in self.delivered.events(session, "world.update")]

    async def test_hand_over_while_moving(self):
        """
        Players move before, during and after the marker: afterwards the new
        host alone simulates them, every input was applied once and in
        order, the store names the region, nothing enters anyone's view again.
        """
        old, old_hooks = await self.host()
        alice, bob = caller("alice", zone="r0c0"), caller("bob", zone="r0c0")
        await old.handle(alice, "zone.enter", {})
        await old.handle(bob, "zone.enter", {})
        await self.settle(3)
        first = self.updates()
        seen_before = {v["id"] for u in first for v in u["enter"]}
        self.assertIn("c-bob", seen_before)
        npcs = sorted(i for i in old.zones["r0c0"].simulation.reals if i.startswith("npc"))

        new, new_hooks = await self.host(takeover=True)
        seq, x = 0, 50.0
        applied = []

        async def move():
            nonlocal seq, x
            seq += 1
            x += 0.5
            applied.append((seq, x))
            await old.handle(alice, "zone.move", {"seq": seq, "x": x, "y": 50.0})

        await move()
        # The handover is asked for (control), the marker goes out...
        for _ in range(40):
            await move()
            await self.settle()
            if new.state == "serving":
                break
        self.assertEqual(new.state, "serving")
        self.assertEqual(old.state, "handed")
        self.assertEqual(old.zones["r0c0"].mode, HANDED)
        self.assertEqual(new_hooks.events, ["live"])
        self.assertEqual(old_hooks.events, ["released", "exit"])
        # Inputs still reaching the old process go on to the new one.
        for _ in range(3):
            await move()
        # zone.enter at the old one: unavailable, retry.
        with self.assertRaises(WireError) as e:
            await old.handle(caller("carol", zone="r0c0"), "zone.enter", {})
        self.assertEqual(e.exception.code, codes.UNAVAILABLE)
        await self.settle(3)
        zone = new.zones["r0c0"]
        entity = zone.simulation.get("c-alice")
        self.assertEqual(entity.last_input, seq)
        self.assertEqual(entity.x, x)
        self.assertEqual(zone.handoff.status("c-alice"), "active")
        self.assertEqual(sorted(i for i in zone.simulation.reals if i.startswith("npc")), npcs)
        self.assertFalse(old.zones["r0c0"].ticker.running)
        self.assertTrue(zone.ticker.running)
        for player in ("c-alice", "c-bob"):
            stored = await self.store.load_entity(player)
            self.assertEqual(stored.owner, "r0c0")
        # No second enter of what alice still has in view (an NPC that
        # wandered out and back enters again after its leave, as it should);
        # ticks go on, not back.
        later = self.updates()
        in_view: set = set()
        for update in first + later:
            entered = {v["id"] for v in update["enter"]}
            self.assertFalse(entered & in_view, update)
            in_view = (in_view | entered) - set(update["leave"])
        self.assertTrue(any(u["update"] for u in later))
        ticks = [u["tick"] for u in first + later]
        self.assertEqual(ticks, sorted(ticks))
        self.assertIsNotNone(zone.takeover_pause_ms)
        self.assertLessEqual(zone.takeover_pause_ms, 1000 * TICK * 3)
        # The other region moved too.
        self.assertEqual(new.zones["r0c1"].mode, SERVING)
        self.assertEqual(old.zones["r0c1"].mode, HANDED)

    async def test_no_old_process(self):
        """With no process to take over from, the new one recovers from the store."""
        old, old_hooks = await self.host()
        await old.handle(caller("alice", zone="r0c0"), "zone.enter", {})
        await old.stop()
        await old_hooks.control.stop()
        new, hooks = await self.host(takeover=True)
        for _ in range(40):
            await self.settle(1)
            if new.state == "serving":
                break
        self.assertEqual(new.state, "serving")
        self.assertEqual(hooks.events, ["live"])
        self.assertIsNotNone(new.zones["r0c0"].simulation.get("c-alice"))
        self.assertTrue(new.zones["r0c0"].ticker.running)

    async def test_abort_when_the_last_checkpoint_fails(self):
        """The old process cannot write its last checkpoint: it serves on, the new one gives up."""
        old, old_hooks = await self.host()
        alice = caller("alice", zone="r0c0")
        await old.handle(alice, "zone.enter", {})
        await self.settle(2)
        checkpoint = self.store.checkpoint
        self.store.checkpoint = lambda zone, records: defer.fail(OSError("disk full"))
        new, new_hooks = await self.host(takeover=True)
        for _ in range(40):
            await self.settle(1)
            if new.state == "aborted":
                break
        self.store.checkpoint = checkpoint
        self.assertEqual(new.state, "aborted")
        self.assertEqual(new_hooks.events, ["fail"])
        self.assertEqual(old.state, "serving")
        self.assertNotIn("released", old_hooks.events)
        zone = old.zones["r0c0"]
        self.assertEqual(zone.mode, SERVING)
        self.assertTrue(zone.ticker.running)
        await old.handle(alice, "zone.move", {"seq": 1, "x": 51.0, "y": 50.0})
        await self.settle(1)
        self.assertEqual(zone.simulation.get("c-alice").last_input, 1)
        self.flushLoggedErrors(OSError, TakeoverFailed)

    async def test_directory_info(self):
        """The load figures: players, entities, regions, tick times."""
        host, _ = await self.host()
        await host.handle(caller("alice", zone="r0c0"), "zone.enter", {})
        await self.settle(5)
        info = host.directory_info()
        self.assertEqual(info["load"], 1)
        self.assertEqual(info["players"], 1)
        self.assertEqual(info["entities"], 1 + 2 * 2)
        self.assertEqual(info["regions"], ["r0c0", "r0c1"])
        self.assertEqual(set(info["tick_ms"]), {"p50", "p99", "max"})
        self.assertLessEqual(info["tick_ms"]["p50"], info["tick_ms"]["max"])
        self.assertEqual(info["overruns"], 0)
