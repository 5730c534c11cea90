"""
The examples work: the emote example's factory is loaded by name from its
config and its message reaches the other players; the pickup example's zone
service lays out its items, and a player picks one up within reach, for
everyone to see; the README's Python client runs, again and again, against a
real standalone server.
"""

import importlib
import os
import re
import sys

from twisted.internet import task, utils
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial import unittest

from mmo import config
from mmo.bus.memory import MemoryBus
from mmo.frontend.listener import factory_class
from mmo.game.service import gateway_channel
from mmo.login.tickets import TicketSigner
from mmo.standalone.protocol import StandaloneFactory
from mmo.wire import codec, codes
from mmo.wire.codes import WireError
from mmo.zone.host import zone_service_class
from tests import support
from tests.support import GatewayInbox, fake_clock_bus_store, write_config, written_frames
from tests.test_zone_service import WORLD, ZoneTicks, caller

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")


def readme_client_example() -> str:
    """The README's Python block that talks to the server (the one that connects)."""
    with open(os.path.join(ROOT, "README.md")) as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
    [example] = [block for block in blocks if "connect(reactor" in block]
    return example


class ReadmeClientExampleTests(unittest.TestCase):
    timeout = 120

    async def test_runs_twice(self):
        """
        The README's client example, run twice against the same server,
        registers, is admitted and walks both times (no C{name_taken}).
        """
        from tests.test_login_e2e import started
        from tests.test_twistd import spawn, subprocess_env

        conf = support.deployment(self, support.STANDALONE, extra=support.FAST_HASH)
        child, _ = spawn(self, conf.file)
        port = await started(child, "mmo")
        example = readme_client_example()
        self.assertEqual(example.count("7000"), 1)
        # Where the README's server listens, here: its port, and the
        # certificates beside the config, as in the source tree.
        directory = os.path.dirname(os.path.abspath(conf.file))
        path = os.path.join(directory, "readme_client.py")
        with open(path, "w") as f:
            f.write(example.replace("7000", str(port)))
        for run in (1, 2):
            out, err, code = await utils.getProcessOutputAndValue(
                sys.executable, [path], env=subprocess_env(), path=directory
            )
            self.assertEqual(code, 0, (run, err))
            self.assertIn(b"'name': 'Hero", out, run)


class EmoteExampleTests(unittest.TestCase):
    def setUp(self):
        sys.path.insert(0, EXAMPLES)
        self.addCleanup(sys.path.remove, EXAMPLES)
        conf = config.load(os.path.join(EXAMPLES, "emote.toml"))
        process = conf.process(kind="mmo")
        cls = factory_class(conf, process, StandaloneFactory)
        self.assertEqual(cls.__name__, "EmoteFactory")
        clock = MemoryReactorClock()
        self.signer = TicketSigner(b"k" * 64, 60, clock)
        bus = MemoryBus(reactor=task.Clock())
        self.factory = support.gateway(
            conf, process.name, bus, self.signer, (), clock, cls, login=None
        )

    def connect(self, port, name):
        """A connection, handshaken and admitted as C{name} with a real ticket."""
        proto = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", port))
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", port))
        proto.makeConnection(transport)
        proto.dataReceived(codec.frame({"t": "hello", "id": 1, "versions": [1]}))
        self.assertEqual(written_frames(transport)[0]["t"], "reply")
        ticket = self.signer.issue(f"id-{name}", name, "main")[0]
        proto.dataReceived(codec.frame({"t": "auth", "id": 2, "ticket": ticket}))
        self.assertEqual(written_frames(transport)[0]["name"], name)
        return proto, transport

    def test_emote_reaches_others(self):
        alice, alice_wire = self.connect(5001, "Alice")
        bob, bob_wire = self.connect(5002, "Bob")
        alice.dataReceived(codec.frame({"t": "emote", "id": 3, "name": "wave"}))
        self.assertEqual(written_frames(alice_wire), [{"t": "reply", "id": 3, "count": 1}])
        pushed = written_frames(bob_wire)
        self.assertEqual(len(pushed), 1)
        self.assertEqual(pushed[0]["t"], "emote")
        self.assertEqual(pushed[0]["name"], "wave")
        self.assertEqual(pushed[0]["by"], "Alice")
        self.assertEqual(pushed[0]["seq"], 1)

    def test_emote_needs_a_session(self):
        proto = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5003))
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 5003))
        proto.makeConnection(transport)
        proto.dataReceived(codec.frame({"t": "hello", "id": 1, "versions": [1]}))
        proto.dataReceived(codec.frame({"t": "emote", "id": 2, "name": "wave"}))
        self.assertEqual(written_frames(transport)[-1]["code"], "auth_required")

    def test_unknown_emote_refused(self):
        alice, alice_wire = self.connect(5001, "Alice")
        alice.dataReceived(codec.frame({"t": "emote", "id": 3, "name": "moonwalk"}))
        (error,) = written_frames(alice_wire)
        self.assertEqual(error["code"], "bad_request")
        self.assertEqual(error["id"], 3)
        self.assertFalse(alice_wire.disconnecting)


PICKUP_ECONOMY = """
[economy]
enabled = true

[economy.currencies.gold]
"""


class PickupExampleTests(ZoneTicks, unittest.TestCase):
    """
    The pickup example's zone service, both regions of a two-region world,
    on a fake clock, the in-memory bus and SQLite, the way
    C{tests/test_zone_service.py} builds the stock one.
    """

    async def setUp(self):
        sys.path.insert(0, EXAMPLES)
        self.addCleanup(sys.path.remove, EXAMPLES)
        pickup = self.pickup = importlib.import_module("pickup")
        self.conf = config.load(write_config(self, WORLD))
        # Named in the config, the example is the class every zone uses.
        named = config.load(os.path.join(EXAMPLES, "pickup.toml"))
        self.assertIs(zone_service_class(named), pickup.PickupZone)
        self.clock, self.bus, self.store = await fake_clock_bus_store(self)
        self.delivered = GatewayInbox()
        await self.bus.subscribe(gateway_channel("gw-1"), self.delivered)
        self.zones = {}
        for region in ("r0c0", "r0c1"):
            zone = pickup.PickupZone(self.conf, self.store, self.bus, self.clock, region)
            await zone.start()
            self.addCleanup(zone.stop)
            self.zones[region] = zone
        self.west = self.zones["r0c0"]

    def events(self, session):
        """The events pushed to C{session} since the last call, as C{(kind, fields)}."""
        return self.delivered.events(session)

    async def enter(self, name, x, y):
        """C{name}'s character enters the west zone and stands at C{(x, y)}."""
        who = caller(name)
        await self.west.handle(who, "zone.enter", {})
        entity = self.west.simulation.get(who.character_id)
        entity.x, entity.y = x, y
        return who

    async def refused(self, who, item, code):
        with self.assertRaises(WireError) as caught:
            await self.west.handle(who, "zone.pickup", {"item": item})
        self.assertEqual(caught.exception.code, code)

    def test_items_laid_out_in_their_regions(self):
        apple = self.west.simulation.get("item-0")
        self.assertEqual((apple.kind, apple.name, apple.x, apple.y), ("item", "apple", 95.0, 50.0))
        self.assertIsNone(self.west.simulation.get("item-1"))
        self.assertEqual(self.zones["r0c1"].simulation.get("item-1").name, "lantern")

    async def test_pickup_within_reach(self):
        alice = await self.enter("alice", 94.0, 50.0)
        bob = await self.enter("bob", 90.0, 50.0)
        self.tick()
        entered = [v["id"] for kind, f in self.events("session-bob") for v in f["enter"]]
        self.assertIn("item-0", entered)

        reply = await self.west.handle(alice, "zone.pickup", {"item": "item-0"})
        self.assertEqual(reply, {"bag": ["apple"]})
        self.assertIsNone(self.west.simulation.get("item-0"))
        self.assertEqual(self.west.simulation.get("c-alice").attrs, {"bag": ["apple"]})
        self.tick()
        # Bob sees the apple go, and Alice with it in her bag.
        [(kind, update)] = self.events("session-bob")
        self.assertEqual(kind, "world.update")
        self.assertEqual(update["leave"], ["item-0"])
        self.assertIn({"id": "c-alice", "attrs": {"bag": ["apple"]}}, update["update"])
        # Taken already: for Bob too, wherever he stands.
        self.west.simulation.get("c-bob").x = 95.0
        await self.refused(bob, "item-0", codes.NOT_FOUND)

        # The bag is an attribute like any: in the checkpoint.
        await self.west.checkpointer.checkpoint()
        stored = await self.store.load_entity("c-alice")
        self.assertEqual(stored.data["attrs"], {"bag": ["apple"]})

    async def test_pickup_pays_once(self):
        """With an economy, a pickup pays the item's gold, once per event."""
        economy_conf = config.load(write_config(self, WORLD + PICKUP_ECONOMY))
        zone = self.pickup.PickupZone(economy_conf, self.store, self.bus, self.clock, "r0c0")
        await zone.start()
        self.addCleanup(zone.stop)
        alice = caller("alice")
        await zone.handle(alice, "zone.enter", {})
        entity = zone.simulation.get(alice.character_id)
        entity.x, entity.y = 94.0, 50.0
        reply = await zone.handle(alice, "zone.pickup", {"item": "item-0"})
        self.assertEqual(reply, {"bag": ["apple"], "gold": 5})
        # The same event again (a zone that laid the apple out anew): no more gold.
        zone.lay_out_items()
        reply = await zone.handle(alice, "zone.pickup", {"item": "item-0"})
        self.assertEqual(reply, {"bag": ["apple", "apple"], "gold": 5})
        balances = await self.store.economy_balances("player:account-alice")
        self.assertEqual(balances, {"c:gold": 5})

    async def test_pickup_refused(self):
        alice = await self.enter("alice", 80.0, 50.0)
        await self.refused(alice, "item-0", codes.NOT_ALLOWED)
        self.assertIsNotNone(self.west.simulation.get("item-0"))
        # Another zone's item, a player, no item at all.
        await self.refused(alice, "item-1", codes.NOT_FOUND)
        await self.refused(alice, "c-alice", codes.NOT_FOUND)
        await self.refused(alice, 7, codes.BAD_REQUEST)
        # Not in the world.
        await self.refused(caller("carol"), "item-0", codes.NOT_ALLOWED)
        self.assertEqual(self.west.simulation.get("c-alice").attrs, {})


class ZoneClassTests(unittest.TestCase):
    def test_bad_zone_class(self):
        """A zone class that cannot be imported, or is no ZoneService, fails the start."""
        for name, reason in (("nowhere.Zone", "cannot import"), ("mmo.config.Config", "subclass")):
            path = write_config(
                self,
                f'[world]\nzone_class = "{name}"\n'
                '[processes.mmo]\nkind = "mmo"\nclient = "tcp:0"\n',
            )
            error = self.assertRaises(config.ConfigError, zone_service_class, config.load(path))
            self.assertIn(f"{path}: world.zone_class: ", str(error))
            self.assertIn(reason, str(error))
