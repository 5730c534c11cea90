"""
The live map: the zones' feed (L{mmo.zone.mapfeed}) on a fake clock and the
in-memory bus, what a browser is sent of it (L{mmo.console.mapview}), the
console's hub of watchers (L{mmo.console.map.MapHub}), and the resource and
its WebSocket stream on a loopback site.
"""

from __future__ import annotations

import json
import struct
from array import array

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import defer, reactor, task
from twisted.trial import unittest
from twisted.web import server
from twisted.web.resource import Resource
from twisted.web.test.requesthelper import DummyRequest

from mmo.bus.memory import MemoryBus
from mmo.config.world_geometry import Region
from mmo.console import map as console_map
from mmo.console.map import MapHub, map_resource
from mmo.console.mapview import HEAT_CELLS, STALE, Frames, View, encode_update, world_message
from mmo.game import messages
from mmo.game.messages import MAP_FEED_CHANNEL, MAP_WATCH_CHANNEL, MapFrame, MapWatch
from mmo.zone.entity import NPC, PLAYER, Entity
from mmo.zone.mapfeed import MapFeed
from tests.support import bounded, config_of, until
from tests.test_zone_service import ZoneTestCase, caller

WORLD = {
    "width": 200.0,
    "height": 100.0,
    "columns": 2,
    "zones": ["zone-1", "zone-2"],
    "aoi_radius": 20.0,
    "ghost_margin": 25.0,
    "hysteresis": 2.0,
    "npcs": 0,
}


def decode_update(data: bytes) -> tuple[dict, list[tuple[float, float]], list[int]]:
    """An update's header, its dots' positions and its heat layer (the page's decodeUpdate)."""
    (length,) = struct.unpack_from("<I", data)
    header = json.loads(data[4 : 4 + length])
    dots = header["count"] if header["dots"] else 0
    offset = 4 + length
    xs = array("f", data[offset : offset + 4 * dots])
    ys = array("f", data[offset + 4 * dots : offset + 8 * dots])
    heat = array("H", data[offset + 8 * dots :])
    return header, list(zip(xs, ys, strict=True)), list(heat)


def float32s(values) -> bytes:
    """C{values} as a frame's positions: little-endian float32s."""
    return struct.pack(f"<{len(values)}f", *values)


def frame(zone: str, time: float, players, npcs, handoffs=()) -> MapFrame:
    """A L{MapFrame} of C{players} (id -> (x, y)) and C{npcs} ((x, y) each)."""
    positions = list(players.values()) + list(npcs)
    return MapFrame(
        zone,
        time,
        list(players),
        float32s([x for x, _ in positions]),
        float32s([y for _, y in positions]),
        handoffs,
    )


class Published:
    """A zone's C{publish}: keeps what is published, decoded."""

    def __init__(self):
        self.messages: list = []

    def __call__(self, channel: str, data: dict) -> None:
        self.messages.append((channel, messages.decode(data)[1]))


class Reals:
    """What a L{MapFeed} reads of a simulation: its region, its reals."""

    region = Region("r0c0", 0.0, 0.0, 100.0, 100.0, "zone-1")

    def __init__(self, *entities: Entity):
        self.reals = {e.id: e for e in entities}

    def get(self, entity_id):
        return self.reals.get(entity_id)


class MapFeedTests(unittest.TestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.bus = MemoryBus(reactor=self.clock)
        self.published = Published()
        self.reals = Reals(
            Entity("npc-1", NPC, 10.0, 20.0),
            Entity("c-alice", PLAYER, 30.5, 40.25),
            Entity("npc-2", NPC, 50.0, 60.0),
        )
        self.outgoing: list = []
        self.feed = MapFeed(
            self.bus, "r0c0", self.reals, lambda: self.outgoing, self.published, self.clock, 10.0
        )

    def watch(self, ttl: float = 3.0) -> None:
        messages.publish(self.bus, MAP_WATCH_CHANNEL, MapWatch(ttl), "console")
        self.clock.advance(0)

    def test_nothing_while_nobody_watches(self):
        """Unwatched, a tick builds and publishes nothing."""
        self.successResultOf(defer.ensureDeferred(self.feed.start()))
        for _ in range(10):
            self.feed.tick(self.clock.seconds())
        self.assertEqual(self.published.messages, [])
        self.assertFalse(self.feed.watching)

    def test_frames_while_watched(self):
        """
        Watched, each tick publishes the zone's reals, players first with
        their ids, and its handoffs in flight, until the watch runs out.
        """
        self.successResultOf(defer.ensureDeferred(self.feed.start()))
        self.watch(ttl=1.0)
        self.outgoing[:] = [("c-alice", "r0c1"), ("gone", "r0c1")]
        self.feed.tick(7.0)
        [(channel, sent)] = self.published.messages
        self.assertEqual(channel, MAP_FEED_CHANNEL)
        self.assertEqual((sent.zone, sent.time, sent.players), ("r0c0", 7.0, ("c-alice",)))
        self.assertEqual(list(array("f", sent.xs)), [30.5, 10.0, 50.0])
        self.assertEqual(list(array("f", sent.ys)), [40.25, 20.0, 60.0])
        self.assertEqual(sent.handoffs, (("c-alice", "r0c1", 30.5, 40.25),))
        self.clock.advance(1.0)
        self.feed.tick(8.0)
        self.assertEqual(len(self.published.messages), 1)

    def test_rate(self):
        """At six times L{MAP_RATE}, every sixth tick is published."""
        feed = MapFeed(self.bus, "r0c0", self.reals, list, self.published, self.clock, 60.0)
        self.assertEqual(feed.every, 6)
        feed._watched("console", MapWatch(5.0))
        for tick in range(12):
            feed.tick(float(tick))
        self.assertEqual([m.time for _, m in self.published.messages], [5.0, 11.0])

    def test_bad_watch(self):
        """A watch without a positive ttl is ignored; a long one is cut to MAX_WATCH."""
        self.feed._watched("console", MapWatch("soon"))
        self.feed._watched("console", MapWatch(-1.0))
        self.assertFalse(self.feed.watching)
        self.feed._watched("console", MapWatch(1e9))
        self.clock.advance(31)
        self.assertFalse(self.feed.watching)

    def test_view(self):
        """
        A console whose view leaves the zone's region out has no frame of
        it; another console's watch counts on its own, each until its
        watch runs out or leaves the region.
        """
        self.feed._watched("console-a", MapWatch(3.0, [150.0, 0.0, 200.0, 100.0]))
        self.assertFalse(self.feed.watching)
        self.feed._watched("console-a", MapWatch(3.0, [90.0, 0.0, 200.0, 100.0]))
        self.assertTrue(self.feed.watching)
        self.feed._watched("console-b", MapWatch(1.0))
        self.feed._watched("console-a", MapWatch(3.0, [150.0, 0.0, 200.0, 100.0]))
        self.assertTrue(self.feed.watching)
        self.clock.advance(1.0)
        self.assertFalse(self.feed.watching)
        self.feed.tick(1.0)
        self.assertEqual(self.published.messages, [])
        for bad in ([1.0, 2.0], [5.0, 0.0, 1.0, 1.0], "all", [0.0, 0.0, float("nan"), 1.0]):
            self.feed._watched("console-c", MapWatch(3.0, bad))
        self.assertFalse(self.feed.watching)

    def test_stop(self):
        """A stopped feed hears no watch."""
        self.successResultOf(defer.ensureDeferred(self.feed.start()))
        self.successResultOf(defer.ensureDeferred(self.feed.stop()))
        self.watch()
        self.assertFalse(self.feed.watching)


class PositionsTests(unittest.TestCase):
    """The kernels' positions of a frame: the same on both."""

    def test_kernels(self):
        from mmo.zone import kernel

        kernels = [kernel]
        try:
            from mmo.zone import _kernel
        except ImportError:
            pass
        else:
            kernels.append(_kernel)
        reals = {
            "npc-1": Entity("npc-1", NPC, 1.0, 2.0),
            "c-a": Entity("c-a", PLAYER, 3.0, 4.0),
            "npc-2": Entity("npc-2", NPC, 5.0, 6.0),
            "c-b": Entity("c-b", PLAYER, 7.0, 8.5),
            "npc-3": Entity("npc-3", NPC, 9.0, 10.0),
        }
        for module in kernels:
            players, xs, ys = module.positions(reals, PLAYER)
            self.assertEqual(players, ["c-a", "c-b"], module)
            self.assertEqual(list(array("f", xs)), [3.0, 7.0, 1.0, 5.0, 9.0], module)
            self.assertEqual(list(array("f", ys)), [4.0, 8.5, 2.0, 6.0, 10.0], module)
            self.assertEqual(module.positions({}, PLAYER), ([], b"", b""))


class ZoneFeedTests(ZoneTestCase):
    """The feed of a real zone service, from its tick."""

    async def test_zone_publishes_only_while_watched(self):
        frames: list = []
        await self.bus.subscribe(
            MAP_FEED_CHANNEL, lambda data: frames.append(messages.decode(data)[1])
        )
        await self.west.handle(caller("alice"), "zone.enter", {})
        self.tick(5)
        self.assertEqual(frames, [])
        await messages.publish(self.bus, MAP_WATCH_CHANNEL, MapWatch(1.0), "console")
        self.clock.advance(0)
        before = self.west.simulation.tick_count
        self.tick(5)
        ticks = self.west.simulation.tick_count - before
        self.assertGreater(ticks, 0)
        west = [f for f in frames if f.zone == "r0c0"]
        east = [f for f in frames if f.zone == "r0c1"]
        # Tick rate 10: every tick, while the watch lasts.
        self.assertEqual(len(west), ticks)
        self.assertEqual(len(east), ticks)
        self.assertEqual(west[-1].players, ("c-alice",))
        self.assertEqual(list(array("f", west[-1].xs)), [50.0])
        self.assertEqual(east[-1].players, ())
        self.tick(10)
        self.assertLessEqual(len(frames), 20)
        count = len(frames)
        self.tick(3)
        self.assertEqual(len(frames), count)


class MapViewTests(unittest.TestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.clock.advance(100)
        self.frames = Frames(self.clock)

    def test_view_filter(self):
        """
        Only what is in the view is sent, players first with their ids,
        zone by zone; handoffs of entities in view; the heat counts
        everything in view, by cell.
        """
        self.frames.take(
            frame(
                "r0c1",
                99.5,
                {"c-bob": (150.0, 50.0), "c-far": (190.0, 90.0)},
                [(120.0, 10.0)],
                [("c-bob", "r0c0", 150.0, 50.0), ("c-far", "r0c0", 190.0, 90.0)],
            )
        )
        self.frames.take(
            frame("r0c0", 99.6, {"c-alice": (90.0, 50.0)}, [(10.0, 10.0), (80.0, 40.0)])
        )
        header, dots, heat = decode_update(
            encode_update(self.frames.current(), View(50.0, 0.0, 170.0, 60.0))
        )
        self.assertEqual(list(header["zones"]), ["r0c0", "r0c1"])
        self.assertEqual(header["players"], ["c-alice", "c-bob"])
        self.assertEqual(header["zones"]["r0c0"]["players"], 1)
        self.assertEqual(header["zones"]["r0c1"]["players"], 1)
        self.assertEqual(header["zones"]["r0c1"]["entities"], 3)
        self.assertEqual(header["count"], 4)
        self.assertEqual(dots, [(90.0, 50.0), (150.0, 50.0), (80.0, 40.0), (120.0, 10.0)])
        self.assertEqual(header["handoffs"], [["c-bob", "r0c1", "r0c0", 150.0, 50.0]])
        self.assertEqual(len(heat), HEAT_CELLS * HEAT_CELLS)
        self.assertEqual(sum(heat), 4)
        # (90, 50): a third of the way across 120 units, 50/60 up.
        column, row = int(40 / 120 * HEAT_CELLS), int(50 / 60 * HEAT_CELLS)
        self.assertEqual(heat[row * HEAT_CELLS + column], 1)

    def test_too_many_dots(self):
        """Past the most dots, the update has the heat layer alone."""
        self.frames.take(frame("r0c0", 99.0, {"c-a": (1.0, 1.0)}, [(2.0, 2.0), (3.0, 3.0)]))
        data = encode_update(self.frames.current(), View(0.0, 0.0, 200.0, 100.0), max_dots=2)
        header, dots, heat = decode_update(data)
        self.assertEqual((header["count"], header["dots"], header["players"]), (3, False, []))
        self.assertEqual(dots, [])
        self.assertEqual(heat[0], 3)

    def test_frames(self):
        """An older frame of a zone is dropped, a stale zone is forgotten, a bad frame refused."""
        self.frames.take(frame("r0c0", 99.0, {"c-a": (1.0, 1.0)}, []))
        self.frames.take(frame("r0c0", 98.0, {}, []))
        [current] = self.frames.current()
        self.assertEqual(current.players, ("c-a",))
        self.assertEqual(self.frames.serial, 1)
        self.clock.advance(STALE + 0.1)
        self.assertEqual(self.frames.current(), [])
        bad = MapFrame("r0c0", 101.0, ["a", "b"], float32s([1.0]), float32s([1.0]), [])
        self.assertRaises(ValueError, self.frames.take, bad)
        uneven = MapFrame("r0c0", 101.0, [], float32s([1.0]), b"\0\0", [])
        self.assertRaises(ValueError, self.frames.take, uneven)
        for players, handoffs in (([7], []), ([], [["c-a", "r0c1", "x", 1.0]]), ([], [["c-a"]])):
            odd = MapFrame("r0c0", 101.0, players, float32s([1.0]), float32s([1.0]), handoffs)
            self.assertRaises(ValueError, self.frames.take, odd)

    def test_view_parse(self):
        self.assertEqual(View.parse([0, 1, 2, 3.5]), View(0.0, 1.0, 2.0, 3.5))
        for bad in ([0, 0, 0, 1], [0, 1, 2], "all", [0, 0, float("inf"), 1], [True, 0, 1, 1]):
            self.assertRaises(ValueError, View.parse, bad)

    def test_world(self):
        """The world message: the map, each region with its process."""
        world = config_of(world=WORLD).world
        message = world_message(world)
        self.assertEqual((message["width"], message["height"]), (200.0, 100.0))
        self.assertEqual(
            [(r["name"], r["x0"], r["x1"], r["process"]) for r in message["regions"]],
            [("r0c0", 0.0, 100.0, "zone-1"), ("r0c1", 100.0, 200.0, "zone-2")],
        )


class Watcher:
    def __init__(self, view: View | None = None):
        self.view = view
        self.updates: list = []

    def update(self, frames):
        self.updates.append(frames)

    def fail(self, reason):
        self.failed = reason


class MapHubTests(unittest.TestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.bus = MemoryBus(reactor=self.clock)
        self.hub = MapHub(config_of(world=WORLD).world, self.bus, self.clock)
        self.watches: list = []
        self.bus.subscribe(MAP_WATCH_CHANNEL, self.watches.append)

    def publish(self, value) -> None:
        messages.publish(self.bus, MAP_FEED_CHANNEL, value, "zone-1")
        self.clock.advance(0)

    def test_watch_while_watched(self):
        """
        The first watcher starts the watch (renewed every second) and the
        updates, sent when a frame came; after the last one, nothing.
        """
        self.publish(frame("r0c0", 1.0, {}, [(1.0, 1.0)]))
        self.assertEqual(self.hub.frames.serial, 0)
        one, two = Watcher(), Watcher()
        self.hub.join(one)
        self.hub.join(two)
        self.clock.advance(0)
        self.assertEqual(len(self.watches), 1)
        self.publish(frame("r0c0", 1.0, {"c-a": (5.0, 5.0)}, []))
        self.clock.advance(1 / console_map.SEND_RATE)
        self.assertEqual([f.players for f in one.updates[0]], [("c-a",)])
        self.assertEqual(len(two.updates), 1)
        # Nothing new: nothing sent.
        self.clock.advance(1 / console_map.SEND_RATE)
        self.assertEqual(len(one.updates), 1)
        self.clock.advance(console_map.WATCH_EVERY)
        self.assertEqual(len(self.watches), 2)
        self.hub.leave(one)
        self.hub.leave(two)
        self.clock.advance(0)
        self.publish(frame("r0c0", 2.0, {}, []))
        self.clock.advance(5)
        self.assertEqual(len(self.watches), 2)
        self.assertEqual(self.hub.frames.serial, 1)
        self.assertEqual(len(one.updates), 1)

    def test_watch_covers_the_views(self):
        """
        The watch names the rectangle the watchers' views cover; one that
        grows it is sent at once, one that shrinks it with the next renewal.
        """
        one = Watcher(View(10.0, 10.0, 20.0, 20.0))
        self.hub.join(one)
        self.clock.advance(0)
        views = [messages.decode(w)[1].view for w in self.watches]
        self.assertEqual(views, [[10.0, 10.0, 20.0, 20.0]])
        two = Watcher(View(150.0, 0.0, 160.0, 5.0))
        self.hub.join(two)
        self.clock.advance(0)
        self.assertEqual(messages.decode(self.watches[-1])[1].view, [10.0, 0.0, 160.0, 20.0])
        two.view = View(12.0, 12.0, 13.0, 13.0)
        self.hub.view_changed()
        self.clock.advance(0)
        self.assertEqual(len(self.watches), 2)
        self.clock.advance(console_map.WATCH_EVERY)
        self.assertEqual(messages.decode(self.watches[-1])[1].view, [10.0, 10.0, 20.0, 20.0])
        senders = {messages.decode(w)[0] for w in self.watches}
        self.assertEqual(senders, {self.hub.sender})
        self.assertTrue(self.hub.sender.startswith("console-"))
        self.hub.leave(one)
        self.hub.leave(two)

    def test_bad_frame(self):
        """A frame that is not one is logged and dropped; the hub goes on."""
        watcher = Watcher()
        self.hub.join(watcher)
        self.publish(MapFrame("r0c0", 1.0, ["a"], b"", b"", []))
        self.publish(frame("r0c1", 1.0, {}, [(150.0, 5.0)]))
        self.clock.advance(1 / console_map.SEND_RATE)
        self.assertEqual([f.zone for f in watcher.updates[-1]], ["r0c1"])
        self.assertEqual(len(self.flushLoggedErrors()), 0)
        self.hub.leave(watcher)


class Auth:
    """The console's session check, stubbed: whoever has the header."""

    def authorized(self, request) -> bool:
        return request.getHeader(b"x-admin") == b"yes"


class StreamClient(WebSocketClientProtocol):
    def onOpen(self):
        self.factory.opened.callback(self)

    def onMessage(self, payload, isBinary):
        self.factory.received.append((payload, isBinary))

    def onClose(self, wasClean, code, reason):
        self.factory.closed.append((code, reason))
        if not self.factory.opened.called:
            self.factory.opened.errback(ConnectionError(reason))


class MapResourceTests(unittest.TestCase):
    """The resource on a loopback site (plain HTTP: TLS is the console's listener's)."""

    def setUp(self):
        self.bus = MemoryBus(reactor=reactor)
        self.config = config_of(world=WORLD)
        root = Resource()
        root.putChild(b"map", map_resource(self.config, self.bus, reactor, Auth()))
        self.root = root
        self.port = reactor.listenTCP(0, server.Site(root), interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)

    def render(self, path: bytes, admin: bool):
        request = DummyRequest(path.split(b"/")[1:])
        if admin:
            request.requestHeaders.setRawHeaders(b"x-admin", [b"yes"])
        child = self.root
        for segment in path.split(b"/")[1:]:
            child = child.getChildWithDefault(segment, request)
        return child, request

    def test_refused(self):
        """Everything under /map is refused to whoever auth refuses."""
        for path in (b"/map/map.js", b"/map/stream", b"/map/"):
            child, request = self.render(path, admin=False)
            body = child.render(request)
            self.assertEqual(request.responseCode, 403, path)
            self.assertNotIn(b"canvas", body if isinstance(body, bytes) else b"")

    def test_script(self):
        """The map's script, as JavaScript, to those let in."""
        child, request = self.render(b"/map/map.js", admin=True)
        body = child.render(request)
        self.assertEqual(
            request.responseHeaders.getRawHeaders(b"content-type"),
            [b"text/javascript; charset=utf-8"],
        )
        self.assertIn(b'getElementById("world-map")', body)

    async def connect(self, admin: bool = True, origin: str | None = None):
        url = f"ws://127.0.0.1:{self.port.getHost().port}/map/stream"
        headers = {"x-admin": "yes"} if admin else {}
        factory = WebSocketClientFactory(url, headers=headers, origin=origin)
        factory.protocol = StreamClient
        factory.opened = defer.Deferred()
        factory.received = []
        factory.closed = []
        connector = reactor.connectTCP("127.0.0.1", self.port.getHost().port, factory)
        self.addCleanup(connector.disconnect)
        return await bounded(factory.opened), factory

    async def test_stream(self):
        """
        The stream sends the world, then updates of the view the browser
        says it shows; a bad view is answered with an error.
        """
        client, factory = await self.connect()
        await until(lambda: factory.received)
        world = json.loads(factory.received[0][0])
        self.assertEqual(world["type"], "world")
        self.assertEqual(len(world["regions"]), 2)
        client.sendMessage(json.dumps({"view": [100, 0, 200, 100]}).encode())
        client.sendMessage(b'{"view": [1, 1, 0, 0]}')
        await until(lambda: len(factory.received) >= 2)
        self.assertEqual(json.loads(factory.received[1][0])["type"], "error")
        messages.publish(
            self.bus,
            MAP_FEED_CHANNEL,
            frame("r0c1", reactor.seconds(), {"c-bob": (150.0, 50.0)}, [(20.0, 20.0)]),
        )
        await until(lambda: any(binary for _, binary in factory.received))
        data = next(payload for payload, binary in factory.received if binary)
        header, dots, _ = decode_update(data)
        self.assertEqual(header["players"], ["c-bob"])
        self.assertEqual(dots, [(150.0, 50.0)])
        client.sendClose()
        await until(lambda: factory.closed)

    async def test_stream_refused(self):
        """No stream without the console's credential, nor from another site's page."""
        with self.assertRaises(ConnectionError):
            await self.connect(admin=False)
        with self.assertRaises(ConnectionError):
            await self.connect(origin="https://evil.example")
