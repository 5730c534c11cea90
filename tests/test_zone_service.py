"""
The zone service (L{mmo.zone.service}) on a fake clock, the in-memory bus
and SQLite: entering, moving, the batched deliveries, session events, a
handoff between two zones over the bus; and the gateway's side of it
(L{mmo.zone.route.ZoneRoute}, batched deliveries).
"""

from __future__ import annotations

from twisted.internet import defer, task
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial import unittest

from mmo import config
from mmo.bus import BusError
from mmo.bus.memory import MemoryBus
from mmo.game import messages
from mmo.game.messages import (
    BusLink,
    GhostUpdate,
    Moved,
    PushBatch,
    Switched,
    SwitchRoute,
    gateway_channel,
    zone_channel,
)
from mmo.game.routes import pack
from mmo.game.server import ServiceRPCFactory
from mmo.game.service import Caller, Reply, SessionChange
from mmo.gateway.delivery import Delivery
from mmo.gateway.handover import Forwards
from mmo.gateway.routing import Services
from mmo.gateway.sessions import Sessions
from mmo.wire import codes
from mmo.wire.codes import WireError
from mmo.zone.ghosts import HEARTBEAT, LEASE
from mmo.zone.route import ZoneRoute, move_input
from mmo.zone.service import ZoneService
from mmo.zone.simulation import parse_input
from mmo.zone.world import WorldMap
from tests.support import GatewayInbox, fake_clock_bus_store, sleep, until, write_config

WORLD = """
[processes.mmo]
kind = "mmo"
client = "tcp:0"

[world]
width = 200.0
height = 100.0
columns = 2
rows = 1
tick_rate = 10.0
aoi_radius = 20.0
ghost_margin = 25.0
hysteresis = 2.0
max_speed = 8.0
npcs = 0
spawn = [50.0, 50.0]
"""

TICK = 0.1


def caller(name: str, gateway: str = "gw-1", zone: str | None = None) -> Caller:
    """A session in the world (C{world.enter}) with its character, in C{zone} if given."""
    return Caller(
        session=f"session-{name}",
        gateway=gateway,
        account_id=f"account-{name}",
        name=name,
        character_id=f"c-{name}",
        character_name=name.title(),
        zone=zone,
        in_world=True,
    )


class RecordingRoute:
    """A route to a zone that keeps what the zone route sends it (route switches)."""

    def __init__(self):
        self.sent: list = []

    def send(self, to, message, sender):
        self.sent.append((to, message, sender))
        return defer.succeed(None)


class ZoneTicks:
    """
    Zone time for a test case whose C{clock} is the zones' C{task.Clock}:
    ticks, and ticks that let the store answer (its threads report on the
    real reactor).
    """

    def tick(self, count: int = 1) -> None:
        """Run C{count} ticks, and deliver what the bus holds."""
        for _ in range(count):
            self.clock.advance(TICK)
            self.clock.advance(0)

    async def settle(self, ticks: int = 1):
        """
        Tick, letting the store's threads answer in between: after each
        tick, until the store (C{self.store}, if any) has nothing in flight,
        so that how many ticks an answer takes does not depend on how busy
        the machine is.
        """
        store = getattr(self, "store", None)
        for _ in range(ticks):
            self.tick()
            for _ in range(3):
                await sleep(0.01)
            if store is not None:
                await until(lambda: not len(store.in_flight), what="the store's answers")

    async def tick_until(self, condition, ticks: int = 30):
        """Tick until C{condition()} holds (the store answers from threads)."""
        for _ in range(ticks):
            if condition():
                return
            await self.settle()
        self.fail("never happened")


class ZoneTestCase(ZoneTicks, unittest.TestCase):
    """Two zones (the map's two regions) on one fake clock, bus and store."""

    async def setUp(self):
        self.config = config.load(write_config(self, WORLD))
        self.clock, self.bus, self.store = await fake_clock_bus_store(self)
        self.delivered = {"gw-1": GatewayInbox(), "gw-2": GatewayInbox()}
        for gateway, inbox in self.delivered.items():
            await self.bus.subscribe(gateway_channel(gateway), inbox)
        self.zones = {}
        for region in ("r0c0", "r0c1"):
            zone = ZoneService(self.config, self.store, self.bus, self.clock, region)
            await zone.start()
            self.addCleanup(zone.stop)
            self.zones[region] = zone
        self.west, self.east = self.zones["r0c0"], self.zones["r0c1"]

    def batches(self, gateway: str = "gw-1") -> list[dict]:
        """The batched deliveries to C{gateway} since the last call."""
        return self.delivered[gateway].batches()

    async def character(self, name: str, data: dict) -> Caller:
        """A caller playing a new character of the store, with C{data}."""
        account = await self.store.create_account(name, "hash-" + name)
        character = await self.store.create_character(account.id, name.title(), data)
        return caller(name).moved(account_id=account.id, character_id=character.id)


class ZoneServiceTests(ZoneTestCase):
    async def test_enter_spawns_and_checkpoints(self):
        alice = caller("alice")
        reply = await self.west.handle(alice, "zone.enter", {})
        self.assertEqual(reply["zone"], "r0c0")
        self.assertEqual((reply["entity"], reply["x"], reply["y"]), ("c-alice", 50.0, 50.0))
        entity = self.west.simulation.get("c-alice")
        self.assertEqual((entity.session, entity.gateway), ("session-alice", "gw-1"))
        stored = await self.store.load_entity("c-alice")
        self.assertEqual(stored.owner, "r0c0")

    async def test_enter_tells_the_map_and_the_movement_rules(self):
        """
        The zone.enter reply carries the map (every region and the zone
        process serving it) and the movement rules, built once for every
        zone of the process.
        """
        reply = await self.west.handle(caller("alice"), "zone.enter", {})
        self.assertEqual(
            reply["world"],
            {
                "width": 200.0,
                "height": 100.0,
                "tick_rate": 10.0,
                "update_rate": 10.0,
                "aoi_radius": 20.0,
                "regions": [
                    {"name": "r0c0", "x0": 0.0, "y0": 0.0, "x1": 100.0, "y1": 100.0, "zone": "mmo"},
                    {
                        "name": "r0c1",
                        "x0": 100.0,
                        "y0": 0.0,
                        "x1": 200.0,
                        "y1": 100.0,
                        "zone": "mmo",
                    },
                ],
            },
        )
        self.assertEqual(
            reply["movement"],
            {"max_speed": 8.0, "tolerance": 0.1, "burst": 0.5, "tick_rate": 10.0},
        )
        self.assertIs(self.east.client_world, self.west.client_world)
        self.assertIs(self.east.client_movement, self.west.client_movement)
        again = await self.west.handle(caller("bob"), "zone.enter", {})
        self.assertIs(again["world"], reply["world"])

    async def test_bus_down_is_a_warning(self):
        """
        A tick's publications and the handoff's messages that the bus cannot
        send (Redis down) are one warning line each, not a traceback.
        """
        await self.west.handle(caller("alice"), "zone.enter", {})
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)

        def down(channel, message):
            return defer.fail(BusError(f"publish on {channel!r}: Redis did not answer"))

        self.patch(self.bus, "publish", down)
        self.tick()
        BusLink(self.bus, "r0c0", ["r0c1"]).send("r0c1", Switched("t-1", "session-alice"))
        failed = [e for e in events if "did not answer" in formatEvent(e)]
        self.assertTrue(failed)
        self.assertEqual({e["log_level"] for e in failed}, {LogLevel.warn})

    async def test_enter_needs_a_character(self):
        alice = Caller(session="s", gateway="gw-1", account_id="a", name="alice")
        with self.assertRaises(WireError) as caught:
            await self.west.handle(alice, "zone.enter", {})
        self.assertEqual(caught.exception.code, codes.NOT_ALLOWED)

    async def test_enter_restores_the_checkpoint(self):
        alice = caller("alice")
        await self.west.handle(alice, "zone.enter", {})
        self.west.simulation.get("c-alice").x = 60.0
        await self.west.checkpointer.checkpoint()
        # The zone restarts: the entity is taken back from the store.
        await self.west.stop()
        again = ZoneService(self.config, self.store, self.bus, self.clock, "r0c0")
        await again.start()
        self.addCleanup(again.stop)
        reply = await again.handle(caller("alice", "gw-2"), "zone.enter", {})
        self.assertEqual(reply["x"], 60.0)
        self.assertEqual(again.simulation.get("c-alice").gateway, "gw-2")

    async def test_move_and_batched_delivery(self):
        alice, bob = caller("alice"), caller("bob")
        await self.west.handle(alice, "zone.enter", {})
        await self.west.handle(bob, "zone.enter", {})
        self.batches()
        self.tick()
        [batch] = self.batches()
        # One bus message for the gateway, with each session's events.
        self.assertEqual(sorted(batch), ["session-alice", "session-bob"])
        [[kind, fields]] = batch["session-alice"]
        self.assertEqual(kind, "world.update")
        self.assertEqual(sorted(v["id"] for v in fields["enter"]), ["c-alice", "c-bob"])

        alice = alice.moved(zone="r0c0")
        self.assertEqual(
            await self.west.handle(alice, "zone.move", {"seq": 1, "x": 50.5, "y": 50}), {}
        )
        entity = self.west.simulation.get("c-alice")
        self.assertEqual((entity.x, entity.last_input), (50.5, 1))
        # A repeat is applied at most once.
        await self.west.handle(alice, "zone.move", {"seq": 1, "x": 51.0, "y": 50})
        self.assertEqual(entity.x, 50.5)
        self.tick()
        [batch] = self.batches()
        [[kind, fields]] = batch["session-alice"]
        self.assertEqual(fields["update"], [{"id": "c-alice", "x": 50.5, "y": 50.0}])

    async def test_speed_hack_corrected(self):
        alice = caller("alice", zone="r0c0")
        await self.west.handle(alice, "zone.enter", {})
        self.tick()
        self.batches()
        await self.west.handle(alice, "zone.move", {"seq": 5, "x": 90.0, "y": 50.0})
        self.tick()
        [batch] = self.batches()
        kind, fields = batch["session-alice"][0]
        self.assertEqual((kind, fields), ("world.correct", {"x": 50.0, "y": 50.0, "input": 5}))

    async def test_refused_input_corrected(self):
        """
        An input its gateway did not wait for (L{mmo.rpc.commands.RouteInputs})
        that the zone refuses is answered with a correction at the next
        tick: the player's position and last input, so its client knows
        what became of it.  A refusal for a player not here pushes nothing.
        """
        alice = caller("alice", zone="r0c0")
        await self.west.handle(alice, "zone.enter", {})
        await self.west.handle(alice, "zone.move", {"seq": 3, "x": 50.5, "y": 50.0})
        self.tick()
        self.batches()
        inputs = ServiceRPCFactory(self.config, self.config.process("mmo"), self.west, self.clock)
        bob = caller("bob", zone="r0c0")
        refused = [
            [alice.to_dict(), "zone.move", {"seq": 4, "x": "east", "y": 50.0}],
            [bob.to_dict(), "zone.move", {"seq": 1, "x": 1.0, "y": 1.0}],
        ]
        inputs.route_inputs(pack(refused), "gw-1")
        await self.settle()
        [batch] = self.batches()
        self.assertEqual(list(batch), ["session-alice"])
        kind, fields = batch["session-alice"][0]
        self.assertEqual((kind, fields), ("world.correct", {"x": 50.5, "y": 50.0, "input": 3}))

    async def test_malformed_move(self):
        alice = caller("alice", zone="r0c0")
        await self.west.handle(alice, "zone.enter", {})
        for message in ({"seq": -1, "x": 1, "y": 1}, {"seq": 1, "x": "a", "y": 1}, {}):
            with self.assertRaises(WireError) as caught:
                await self.west.handle(alice, "zone.move", message)
            self.assertEqual(caught.exception.code, codes.BAD_REQUEST)

    async def test_ended_removes_the_entity(self):
        alice = caller("alice")
        await self.west.handle(alice, "zone.enter", {})
        await self.west.session_event(alice, "ended")
        self.assertIsNone(self.west.simulation.get("c-alice"))
        self.assertIsNone(await self.store.load_entity("c-alice"))

    async def test_dropped_session_keeps_its_entity(self):
        """
        A dropped connection detaches the session (no event); a resume on
        another gateway is "moved"; only "ended" of the session that holds
        the entity removes it.
        """
        alice = caller("alice")
        await self.west.handle(alice, "zone.enter", {})
        await self.west.session_event(alice.moved(gateway="gw-2"), "moved")
        entity = self.west.simulation.get("c-alice")
        self.assertEqual(entity.gateway, "gw-2")
        self.tick()
        self.assertEqual(len(self.batches("gw-2")), 1)
        # A new session took the character over; the old one's end leaves it.
        newer = alice.moved(session="session-alice-2")
        await self.west.handle(newer, "zone.enter", {})
        await self.west.session_event(alice, "ended")
        self.assertIs(self.west.simulation.get("c-alice"), entity)
        self.assertEqual(entity.session, "session-alice-2")
        # The new session's client has nothing in view yet: all of it enters.
        self.batches(newer.gateway)
        self.tick()
        (batch,) = self.batches(newer.gateway)
        ((kind, update),) = batch[newer.session]
        self.assertEqual(kind, "world.update")
        self.assertIn("c-alice", [view["id"] for view in update["enter"]])
        self.assertEqual((update["update"], update["leave"]), ([], []))

    async def test_leave(self):
        alice = caller("alice", zone="r0c0")
        await self.west.handle(alice, "zone.enter", {})
        reply = await self.west.handle(alice, "zone.leave", {})
        self.assertEqual(reply, {})
        self.assertIsNone(self.west.simulation.get("c-alice"))

    async def test_leave_keeps_the_position(self):
        """
        zone.leave saves where the entity was, with its attrs, into the
        character; the next zone.enter puts it back there.
        """
        alice = await self.character("alice", {"hp": 10})
        await self.west.handle(alice, "zone.enter", {})
        entity = self.west.simulation.get(alice.character_id)
        self.assertEqual(entity.attrs, {"hp": 10})
        entity.x, entity.y, entity.attrs["hp"] = 70.0, 30.0, 7
        await self.west.handle(alice.moved(zone="r0c0"), "zone.leave", {})
        self.assertIsNone(await self.store.load_entity(alice.character_id))
        character = await self.store.character_by_id(alice.character_id)
        self.assertEqual(
            character.data, {"hp": 10, "world": {"x": 70.0, "y": 30.0, "attrs": {"hp": 7}}}
        )
        reply = await self.west.handle(alice, "zone.enter", {})
        self.assertEqual((reply["x"], reply["y"]), (70.0, 30.0))
        self.assertEqual(self.west.simulation.get(alice.character_id).attrs, {"hp": 7})

    async def test_ended_keeps_the_position(self):
        alice = await self.character("alice", {"hp": 10})
        await self.west.handle(alice, "zone.enter", {})
        entity = self.west.simulation.get(alice.character_id)
        entity.x, entity.attrs["hp"] = 20.0, 3
        await self.west.session_event(alice, "ended")
        self.assertIsNone(await self.store.load_entity(alice.character_id))
        again = alice.moved(session="session-alice-2")
        reply = await self.west.handle(again, "zone.enter", {})
        self.assertEqual((reply["x"], reply["y"]), (20.0, 50.0))
        self.assertEqual(self.west.simulation.get(alice.character_id).attrs, {"hp": 3})

    async def test_saved_position_off_the_map(self):
        """A saved position off the map (the map shrank): the spawn, with the saved attrs."""
        world = {"x": 500.0, "y": 30.0, "attrs": {"hp": 4}}
        alice = await self.character("alice", {"hp": 10, "world": world})
        reply = await self.west.handle(alice, "zone.enter", {})
        self.assertEqual((reply["zone"], reply["x"], reply["y"]), ("r0c0", 50.0, 50.0))
        self.assertEqual(self.west.simulation.get(alice.character_id).attrs, {"hp": 4})

    async def test_ghosts_and_handoff_over_the_bus(self):
        """
        A player near the border is ghosted into the neighbour; walking
        across hands it over: the gateway is asked to switch the route, and
        the entity is real only in the new zone, where its inputs go on.
        """
        alice, bob = caller("alice", zone="r0c0"), caller("bob")
        await self.west.handle(alice, "zone.enter", {})
        self.west.simulation.get("c-alice").x = 96.0
        await self.east.handle(bob, "zone.enter", {})
        bob_entity = self.east.simulation.get("c-bob")
        bob_entity.x = 104.0
        await self.settle(3)
        entered = [
            view
            for batch in self.batches()
            for kind, fields in batch.get("session-alice", [])
            if kind == "world.update"
            for view in fields["enter"]
        ]
        # Bob's ghost enters as his real shows him: without his version.
        self.assertIn(bob_entity.view(), entered)

        seq = 0
        for step in range(12):
            seq += 1
            await self.west.handle(
                alice, "zone.move", {"seq": seq, "x": 96.0 + (step + 1) * 0.6, "y": 50.0}
            )
            await self.settle()
            switches = self.delivered["gw-1"].of_type(SwitchRoute)
            if switches:
                break
        self.assertTrue(switches, "no route switch")
        switch = switches[0]
        self.assertEqual((switch.session, switch.zone), ("session-alice", "r0c1"))
        # The gateway answers over the route its inputs take.
        self.west.receive("r0c0", "gw-1", Switched(switch.transfer_id, switch.session))
        await self.tick_until(lambda: self.east.handoff.status("c-alice") == "active")
        self.assertIsNone(self.west.simulation.get("c-alice"))
        arrived = self.east.simulation.get("c-alice")
        await self.tick_until(lambda: arrived.last_input == seq)
        self.assertEqual(arrived.x, 96.0 + seq * 0.6)
        # Inputs go on in the new zone (and a late one to the old is forwarded).
        x = arrived.x
        await self.east.handle(
            alice.moved(zone="r0c1"), "zone.move", {"seq": seq + 1, "x": x + 0.5, "y": 50.0}
        )
        await self.west.handle(alice, "zone.move", {"seq": seq + 2, "x": x + 1.0, "y": 50.0})
        await self.tick_until(lambda: arrived.last_input == seq + 2)
        self.assertEqual(arrived.x, x + 1.0)
        self.assertEqual((await self.store.load_entity("c-alice")).owner, "r0c1")


class GhostDeltaTests(ZoneTestCase):
    """Ghost updates between zone services: deltas once asked, else whole ones."""

    async def updates(self, region: str) -> list:
        """Record the L{GhostUpdate}s published to C{region} from now on."""
        heard = []

        def hear(data):
            if data.get("type") == GhostUpdate.__name__:
                heard.append(messages.decode(data)[1])

        await self.bus.subscribe(zone_channel(region), hear)
        return heard

    async def test_deltas(self):
        """
        The east zone asks the west for deltas: after the first whole
        update, only what changed travels, and the east's ghost follows;
        while nothing changes, an empty delta goes every HEARTBEAT only.
        """
        heard = await self.updates("r0c1")
        alice = caller("alice", zone="r0c0")
        await self.west.handle(alice, "zone.enter", {})
        real = self.west.simulation.get("c-alice")
        real.x = 96.0
        self.tick(3)
        self.assertIsNone(heard[0].base)
        self.assertIsNone(heard[-1].base)
        del heard[:]
        self.tick(int(HEARTBEAT / TICK) + 1)
        [heartbeat] = heard
        self.assertEqual(heartbeat.views, ())
        del heard[:]
        real.x = 97.0
        self.tick(2)
        [moved] = heard
        self.assertEqual(moved.base, heartbeat.tick)
        self.assertEqual([v["x"] for v in moved.views], [97.0])
        self.assertEqual(self.east.ghosts.get("c-alice").view["x"], 97.0)
        del heard[:]
        real.x = 50.0
        self.tick(2)
        self.assertEqual((heard[0].views, heard[0].gone), ((), ("c-alice",)))
        self.assertNotIn("c-alice", self.east.ghosts)

    async def test_zone_of_the_release_before(self):
        """
        A zone that never asks (a release before deltas) is sent whole
        updates, in the form it reads; so is one that stops asking (its
        process replaced by such a one), once its lease is over.
        """
        heard = await self.updates("r0c1")
        self.east.ghosts.sync = None
        alice = caller("alice", zone="r0c0")
        await self.west.handle(alice, "zone.enter", {})
        self.west.simulation.get("c-alice").x = 96.0
        self.tick(int(LEASE / TICK) + 2)
        self.assertEqual({u.base for u in heard}, {None})
        self.assertEqual({len(u.views) for u in heard[1:]}, {1})

        self.east.ghosts.sync = self.east._sync_ghosts
        self.tick(3 + int(HEARTBEAT / TICK))
        self.assertIsNotNone(heard[-1].base)
        self.east.ghosts.sync = None
        del heard[:]
        self.tick(int(LEASE / TICK) + 2)
        self.assertIsNotNone(heard[0].base)
        self.assertIsNone(heard[-1].base)
        self.assertIn("c-alice", self.east.ghosts)


class FakeSession:
    """A session held by a gateway, as deliveries see it."""

    def __init__(self, caller):
        self.caller = caller
        self.pushes = []

    id = property(lambda self: self.caller.session)
    account = property(lambda self: self.caller.account_id)
    token_hash = property(lambda self: "hash-" + self.caller.session)

    def push(self, kind, fields):
        self.pushes.append((kind, fields))


class FakePort:
    """A session as the zone route sees it in a message about it."""

    def __init__(self, caller):
        self.caller = caller
        self.pushes = []

    def change(self, change):
        self.caller = change.apply(self.caller)
        return defer.succeed(None)

    def push(self, kind, fields):
        self.pushes.append((kind, fields))


class GatewaySideTests(unittest.TestCase):
    """The gateway's side: batched deliveries and the zone route."""

    def setUp(self):
        self.config = config.load(write_config(self, WORLD))
        self.clock = task.Clock()
        self.bus = MemoryBus(reactor=self.clock)
        self.addCleanup(self.bus.stop)
        self.sessions = Sessions(self.config, "mmo", self.bus, Services(), self.clock)
        self.alice = FakeSession(caller("alice", "mmo", zone="r0c0"))
        self.sessions.registry.add(self.alice)

    def test_batch_delivered_in_order_and_forwarded(self):
        forwards = Forwards(self.clock)
        forwards.add("session-gone", "gw-2")
        self.addCleanup(forwards.stop)
        forwarded = []
        self.bus.subscribe(gateway_channel("gw-2"), forwarded.append)
        delivery = Delivery(self.sessions, forwards, self.bus)
        delivery.push_batch(
            "r0c0",
            PushBatch(
                {
                    "session-alice": [["world.correct", {"x": 1}], ["world.update", {"tick": 3}]],
                    "session-gone": [["world.update", {"tick": 3}]],
                    "session-unknown": [["world.update", {"tick": 3}]],
                }
            ),
        )
        self.clock.advance(0)
        self.assertEqual(
            self.alice.pushes, [("world.correct", {"x": 1}), ("world.update", {"tick": 3})]
        )
        self.assertEqual(
            [messages.decode(data)[1] for data in forwarded],
            [PushBatch({"session-gone": [["world.update", {"tick": 3}]]})],
        )

    def test_route_switch(self):
        """A SwitchRoute moves the session's zone forwards only, and is always answered."""
        link = RecordingRoute()
        world = WorldMap.from_config(self.config)
        route = ZoneRoute({"r0c0": link, "r0c1": link}, world, "mmo", None, (50.0, 50.0))
        alice = FakePort(caller("alice", "mmo", zone="r0c0"))
        switch = SwitchRoute("t-1", "session-alice", "c-alice", "r0c1", 3)
        route.switch("r0c0", switch, alice)
        route.switch("r0c0", switch, alice)
        self.assertEqual(alice.caller.zone, "r0c1")
        self.assertEqual(alice.pushes, [("zone.changed", {"zone": "r0c1"})])
        self.assertEqual(link.sent, [("r0c0", Switched("t-1", "session-alice"), "mmo")] * 2)
        # An older route never wins.
        route.switch("r0c1", Moved("session-alice", "c-alice", "r0c0", 2), alice)
        self.assertEqual(alice.caller.zone, "r0c1")
        # A session not held here: still answered.
        route.switch("r0c1", SwitchRoute("t-2", "session-gone", "c-x", "r0c0", 1), None)
        self.assertEqual(link.sent[-1], ("r0c1", Switched("t-2", "session-gone"), "mmo"))

    def test_zone_messages_need_zone_enter(self):
        route = ZoneRoute({}, WorldMap.from_config(self.config), "mmo", None, (50, 50))
        d = route.handle(caller("bob"), "zone.move", {"seq": 1, "x": 1, "y": 1})
        failure = self.failureResultOf(d, WireError)
        self.assertEqual(failure.value.code, codes.NOT_ALLOWED)

    def test_malformed_move_refused_by_the_gateway(self):
        """
        The zone does not answer moves: the gateway's route refuses a
        malformed one itself (C{bad_request}), and sends only good ones on.
        """
        link = RecordingRoute()
        handled = []
        link.handle = lambda caller, kind, message: handled.append(message) or defer.succeed({})
        route = ZoneRoute({"r0c0": link}, WorldMap.from_config(self.config), "mmo", None, (50, 50))
        alice = caller("alice", "mmo", zone="r0c0")
        for bad in (
            {"seq": -1, "x": 1, "y": 1},
            {"seq": True, "x": 1, "y": 1},
            {"seq": 1, "x": float("nan"), "y": 1},
            {"seq": 1, "x": "1", "y": 1},
        ):
            failure = self.failureResultOf(route.handle(alice, "zone.move", bad), WireError)
            self.assertEqual(failure.value.code, codes.BAD_REQUEST, bad)
        good = {"seq": 1, "x": 1.5, "y": 2, "emote": "wave"}
        self.assertEqual(self.successResultOf(route.handle(alice, "zone.move", good)), {})
        self.assertEqual(handled, [good])

    def test_move_check_is_the_simulations(self):
        """
        What the gateway and the zone take as a move (L{check_move}) is
        what the simulation takes (L{parse_input}): the same values refused.
        """
        values = (0, -3, 2.5, True, False, None, "1", float("nan"), float("inf"), -float("inf"))
        values += (2**64 - 1, -(2**63), 1e308, [1], {"x": 1})
        for x in values:
            for y in (1.5, x):
                message = {"seq": 3, "x": x, "y": y}
                taken = parse_input(3, {"x": x, "y": y}) is not None
                try:
                    seq, payload = move_input(message)
                except WireError:
                    self.assertFalse(taken, message)
                else:
                    self.assertTrue(taken, message)
                    self.assertEqual((seq, payload), (3, {"x": x, "y": y}))

    def test_zone_enter_needs_world_enter(self):
        """One truth about the player's place: no zone without world.enter first."""
        route = ZoneRoute({}, WorldMap.from_config(self.config), "mmo", None, (50, 50))
        outside = caller("bob").moved(in_world=False)
        failure = self.failureResultOf(route.handle(outside, "zone.enter", {}), WireError)
        self.assertEqual(failure.value.code, codes.NOT_ALLOWED)
        self.assertIn("world.enter", failure.value.message)


CLUSTER = """
[processes.gateway-1]
kind = "gateway"
client = "tcp:0:interface=127.0.0.1"
hosts = ["localhost", "127.0.0.1"]

[processes.zone-1]
kind = "zone"
rpc = "tcp:17301:interface=127.0.0.1"
hosts = ["localhost", "127.0.0.1"]

[processes.zone-2]
kind = "zone"
rpc = "tcp:17302:interface=127.0.0.1"
hosts = ["localhost", "127.0.0.1"]
"""

CLUSTER_WORLD = WORLD.split("[world]")[1].replace(
    "rows = 1\n", 'rows = 1\nzones = ["zone-1", "zone-2"]\n'
)


class RoutingTests(ZoneTestCase):
    """The gateway's zone route over zones in this process, and the zones of a process."""

    def route(self, store=None) -> ZoneRoute:
        from mmo.game.routes import LocalRoute

        return ZoneRoute(
            {name: LocalRoute(zone) for name, zone in self.zones.items()},
            WorldMap.from_config(self.config),
            "gw-1",
            store,
            self.config.world.spawn,
        )

    async def test_enter_follows_the_owner(self):
        """Without a store, the spawn's zone redirects to the zone that owns the character."""
        alice = caller("alice")
        await self.east.handle(alice, "zone.enter", {})
        again = alice.moved(session="session-alice-2")
        reply = await self.route().handle(again, "zone.enter", {})
        self.assertIsInstance(reply, Reply)
        self.assertEqual(reply.change, SessionChange(zone="r0c1"))
        reply = reply.fields
        self.assertEqual(reply["zone"], "r0c1")
        self.assertEqual(self.east.simulation.get("c-alice").session, "session-alice-2")
        # With the store, the route goes there at once.
        reply = await self.route(self.store).handle(alice, "zone.enter", {})
        self.assertEqual(reply.fields["zone"], "r0c1")

    async def test_enter_where_it_left(self):
        """
        A character that left the world in the other region enters there:
        the route sends it there with the store, else the spawn's zone
        redirects it.
        """
        alice = await self.character("alice", {"hp": 10})
        await self.east.handle(alice, "zone.enter", {})
        self.east.simulation.get(alice.character_id).x = 150.0
        await self.east.session_event(alice, "ended")
        for store in (self.store, None):
            again = alice.moved(session=f"session-alice-{store is None}")
            reply = (await self.route(store).handle(again, "zone.enter", {})).fields
            self.assertEqual((reply["zone"], reply["x"], reply["y"]), ("r0c1", 150.0, 50.0))
            self.assertIsNone(self.west.simulation.get(alice.character_id))
            await self.east.session_event(again, "ended")

    async def test_route_events_to_every_zone(self):
        alice = caller("alice")
        await self.east.handle(alice, "zone.enter", {})
        await self.route().session_event(alice, "ended")
        self.assertIsNone(self.east.simulation.get("c-alice"))

    async def test_zone_host_and_remote_routes(self):
        from mmo.gateway.tap import gateway_routes
        from mmo.zone.host import ZoneHost
        from tests.support import deployment

        conf = deployment(self, CLUSTER, extra="[world]" + CLUSTER_WORLD)
        host = ZoneHost(conf, self.store, self.bus, self.clock, "zone-2")
        self.assertEqual(list(host.zones), ["r0c1"])
        with self.assertRaises(WireError) as caught:
            await host.handle(caller("alice", zone="r0c0"), "zone.enter", {})
        self.assertEqual(caught.exception.code, codes.UNAVAILABLE)
        # A gateway's route switch answer: for a zone served here, and only that.
        self.assertRaises(ValueError, host.receive, "r0c0", "gateway-1", Switched("t", "s"))
        zone = host.zones["r0c1"]
        self.assertRaises(ValueError, zone.receive, "r0c1", "gateway-1", Moved("s", "c", "z", 1))
        [route] = gateway_routes(conf, conf.process("gateway-1"), self.clock)
        self.assertIsInstance(route, ZoneRoute)
        self.assertEqual(
            {zone: r.name for zone, r in route.routes.items()},
            {"r0c0": "zone-1", "r0c1": "zone-2"},
        )
        # A link per zone process, and the resends of "ended" to them.
        self.assertEqual(len(route.services()), 3)
        self.assertIs(route.services()[-1], route.resends)
