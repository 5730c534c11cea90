"""
The live map's cost and speed: what a watched map adds to a zone's tick,
and the updates per second a browser receives with thousands of entities
in view.

    python bench/live_map.py [--entities 2000] [--ticks 400] [--streamed 5000]
                             [--seconds 5] [--json]

The tick: the zone of bench/zone_tick.py (the left half of a 2000 x 1000
world of two regions, a tenth of its entities players sending one move per
tick, the rest NPCs, the neighbour's ghosts mirrored in), at --entities.
Each measured tick is the inputs, ZoneSimulation.tick and the zone's map
feed (MapFeed.tick) after it, timed with time.perf_counter, in blocks of 10
ticks watched (a MapWatch on the bus: the feed builds a MapFrame of every
real and packs it as the bus does, msgpack) and 10 not, alternating, so
that both sides see the same world and the same machine.  Figures: the
medians of both sides and their ratio, the feed's own time per frame it
published (a frame every other tick at 20 Hz), the median frame's time
spread over the watched ticks, as a share of the unwatched median tick
(steadier than the ratio of two medians on a shared machine) and the frame's size.
The same ticks are then measured with everything on against everything
off: the watched blocks also do what metrics add to a tick (its duration
observed in mmo_zone_tick_duration_seconds, and Prometheus's scrape of the
registry every 300 ticks, timed apart and spread over them), the issue's
budget being under 5% for the two together: the ratio of the medians
(tick_ratio_map_and_metrics) and, steadier, the mean time the feed and the
metrics add to a watched tick as a share of the median tick off
(share_map_and_metrics).

The stream: --streamed entities in two zones' feeds (half each, moving
every tick at 20 Hz on the real reactor, one tick apart, as two processes'
ticks may fall; each zone publishes a frame every other tick) on
the in-process bus, the map's
resource (mmo.console.map.map_resource) on a loopback twisted.web site,
and one WebSocket client (autobahn) that shows the whole world, then a
tenth of it (the baseline: a zoomed-in view), for --seconds each: updates
received per second, their mean size, and the console's time to make one
update of each view (encode_update, the median of 50).  Plain WebSocket on
loopback: TLS, on the console's listener, costs the same per byte as any
HTTPS stream.
"""

from __future__ import annotations

import gc
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import parser, percentile, react, report  # noqa: E402
from autobahn.twisted.websocket import (  # noqa: E402
    WebSocketClientFactory,
    WebSocketClientProtocol,
)
from metrics_cost import scrape_seconds  # noqa: E402
from twisted.internet import defer, task  # noqa: E402
from twisted.web import server  # noqa: E402
from twisted.web.resource import Resource  # noqa: E402
from zone_tick import WARMUP, BenchZone  # noqa: E402

from mmo import config  # noqa: E402
from mmo.bus.memory import MemoryBus, pack  # noqa: E402
from mmo.config.world_geometry import Region  # noqa: E402
from mmo.console.map import map_resource  # noqa: E402
from mmo.console.mapview import View, encode_update  # noqa: E402
from mmo.game import messages  # noqa: E402
from mmo.game.messages import MAP_WATCH_CHANNEL, MapWatch  # noqa: E402
from mmo.metrics.registry import ZONE_TICK  # noqa: E402
from mmo.process.service import settle_collector  # noqa: E402
from mmo.zone.entity import NPC, PLAYER, Entity  # noqa: E402
from mmo.zone.mapfeed import MapFeed  # noqa: E402

#: Ticks in a block, watched or not.
BLOCK = 10

#: Ticks between two scrapes with metrics on: one every 15 s at 20 Hz.
SCRAPE_EVERY = 300


class Packed:
    """A feed's C{publish}: packs each message as the bus does, and keeps its size."""

    def __init__(self):
        self.sizes: list[int] = []

    def __call__(self, channel: str, data: dict) -> None:
        self.sizes.append(len(pack(data)))


def tick_cost(size: int, ticks: int, seed: int, metrics: bool = False) -> dict:
    """
    The zone tick with the map watched and not (see the module docstring);
    with C{metrics}, the watched ticks also do what metrics add to a tick
    (its duration observed, and a scrape every L{SCRAPE_EVERY} of them,
    timed apart and spread over them): everything on against everything off.
    """
    clock = task.Clock()
    clock.advance(1000.0)
    zone = BenchZone(size, seed, clock)
    sim, interval = zone.sim, zone.interval
    bus = MemoryBus(reactor=clock)
    published = Packed()
    feed = MapFeed(bus, "r0c0", sim, list, published, clock, zone.conf.tick_rate)
    defer.ensureDeferred(feed.start())
    clock.advance(0)
    gc.collect()
    settle_collector()
    timings: dict[bool, list[float]] = {True: [], False: []}
    cpu: dict[bool, list[float]] = {True: [], False: []}
    feed_times: list[float] = []
    scrapes: list[float] = []
    # What a watched tick did after the simulation's tick: the feed, and
    # with metrics the duration observed.
    added: list[float] = []
    observe = ZONE_TICK.labels("r0c0").observe
    for n in range(WARMUP + 2 * ticks):
        watched = (n // BLOCK) % 2 == 0
        if n % BLOCK == 0 and watched:
            # Watched for this block's ticks only.
            feed_watch = MapWatch(BLOCK * interval + interval / 2)
            messages.publish(bus, MAP_WATCH_CHANNEL, feed_watch, "console")
            clock.advance(0)
        inputs = zone.step()
        started = time.perf_counter()
        cpu_started = time.thread_time()
        zone.apply(inputs)
        result = sim.tick()
        fed = time.perf_counter()
        frames = len(published.sizes)
        feed.tick(result.time)
        if metrics and watched:
            observe(time.perf_counter() - started)
        ended = time.perf_counter()
        cpu_ended = time.thread_time()
        if metrics and watched and n >= WARMUP and len(timings[True]) % SCRAPE_EVERY == 0:
            scrapes.append(scrape_seconds())
        if n >= WARMUP:
            timings[watched].append(ended - started)
            cpu[watched].append(cpu_ended - cpu_started)
            if watched:
                added.append(ended - fed)
            if len(published.sizes) > frames:
                feed_times.append(ended - fed)
    on = percentile(timings[True], 0.5) * 1000
    off = percentile(timings[False], 0.5) * 1000
    if metrics:
        scrape = percentile(scrapes or [scrape_seconds()], 0.5) * 1000
        return {
            "tick_p50_ms_all_on": on,
            "tick_p50_ms_all_off": off,
            "scrape_p50_ms": scrape,
            # A scrape every SCRAPE_EVERY ticks, spread over them.
            "tick_ratio_map_and_metrics": (
                (on + scrape / SCRAPE_EVERY) / off if off else float("nan")
            ),
            # Steadier than the ratio of two medians on a shared machine:
            # the mean time the two add to a tick, as a share of the median.
            "share_map_and_metrics": (
                (sum(added) / len(added) * 1000 + scrape / SCRAPE_EVERY) / off
                if off and added
                else float("nan")
            ),
        }
    return {
        "entities": size,
        "ticks_watched": len(timings[True]),
        "ticks_unwatched": len(timings[False]),
        "frames": len(published.sizes),
        "tick_p50_ms_watched": on,
        "tick_p50_ms_unwatched": off,
        "tick_ratio_watched": on / off if off else float("nan"),
        "tick_cpu_p50_ms_watched": percentile(cpu[True], 0.5) * 1000,
        "tick_cpu_p50_ms_unwatched": percentile(cpu[False], 0.5) * 1000,
        "frame_p50_ms": percentile(feed_times, 0.5) * 1000,
        # The median frame's time, spread over the watched ticks.
        "feed_share_of_tick": (
            percentile(feed_times, 0.5) * len(feed_times) / len(timings[True]) / (off / 1000)
            if off
            else float("nan")
        ),
        "frame_bytes": sum(published.sizes) / max(1, len(published.sizes)),
    }


class Zone:
    """A zone's reals, wandering, for a L{MapFeed} (the stream's part)."""

    def __init__(self, name: str, count: int, x0: float, x1: float, rng: random.Random):
        self.rng = rng
        self.x0, self.x1 = x0, x1
        self.region = Region(name, x0, 0.0, x1, 1000.0, name)
        self.reals = {}
        for i in range(count):
            kind = PLAYER if i % 10 == 0 else NPC
            entity_id = f"{name}-{i}"
            self.reals[entity_id] = Entity(
                entity_id, kind, rng.uniform(x0, x1), rng.uniform(0, 1000)
            )

    def get(self, entity_id):
        return self.reals.get(entity_id)

    def step(self) -> None:
        uniform = self.rng.uniform
        for e in self.reals.values():
            e.x = min(self.x1, max(self.x0, e.x + uniform(-0.3, 0.3)))
            e.y = min(1000.0, max(0.0, e.y + uniform(-0.3, 0.3)))


class Counter(WebSocketClientProtocol):
    def onOpen(self):
        self.factory.opened.callback(self)

    def onMessage(self, payload, isBinary):
        if isBinary:
            self.factory.updates.append((time.perf_counter(), len(payload)))


async def measure_view(client, factory, view: list[float], seconds: float) -> tuple[float, float]:
    """Updates per second and their mean size, over C{seconds}, for C{view}."""
    from twisted.internet import reactor

    client.sendMessage(json.dumps({"view": view}).encode())
    # Let what was in flight for the last view arrive first.
    await task.deferLater(reactor, 0.5)
    factory.updates.clear()
    await task.deferLater(reactor, seconds)
    received = list(factory.updates)
    if len(received) < 2:
        return 0.0, float("nan")
    span = received[-1][0] - received[0][0]
    return (len(received) - 1) / span, sum(size for _, size in received) / len(received)


async def stream(reactor, count: int, seconds: float, seed: int) -> dict:
    """The stream of C{count} entities to one browser (see the module docstring)."""
    conf = config.Config(
        {
            "processes": {
                "zone-1": {"kind": "zone"},
                "zone-2": {"kind": "zone"},
            },
            "world": {"width": 2000, "height": 1000, "columns": 2, "zones": ["zone-1", "zone-2"]},
        }
    )
    bus = MemoryBus(reactor=reactor)
    rng = random.Random(seed)
    zones = [
        Zone("r0c0", count // 2, 0.0, 999.0, rng),
        Zone("r0c1", count - count // 2, 1000.0, 2000.0, rng),
    ]
    feeds = []
    for zone, name in zip(zones, ("r0c0", "r0c1"), strict=True):
        feed = MapFeed(bus, name, zone, list, bus.publish, reactor, conf.world.tick_rate)
        await feed.start()
        feeds.append(feed)

    def tick(zone, feed):
        zone.step()
        feed.tick(reactor.seconds())

    # Each zone ticks on its own, as its process would: the second a tick
    # after the first, so that their frames (every other tick) alternate.
    interval = 1.0 / conf.world.tick_rate
    tickers = []
    for zone, feed in zip(zones, feeds, strict=True):
        ticker = task.LoopingCall(tick, zone, feed)
        ticker.start(interval)
        tickers.append(ticker)
        await task.deferLater(reactor, interval)

    class Everyone:
        def authorized(self, request):
            return True

    root = Resource()
    live_map = map_resource(conf, bus, reactor, Everyone())
    root.putChild(b"map", live_map)
    port = reactor.listenTCP(0, server.Site(root), interface="127.0.0.1")
    number = port.getHost().port
    factory = WebSocketClientFactory(f"ws://127.0.0.1:{number}/map/stream")
    factory.protocol = Counter
    factory.opened = defer.Deferred()
    factory.updates = []
    reactor.connectTCP("127.0.0.1", number, factory)
    client = await factory.opened.addTimeout(10, reactor)
    whole = [0.0, 0.0, 2000.0, 1000.0]
    zoomed = [800.0, 300.0, 1200.0, 700.0]
    rate, size = await measure_view(client, factory, whole, seconds)
    zoomed_rate, zoomed_size = await measure_view(client, factory, zoomed, seconds)
    frames = live_map.hub.frames.current()
    encodes = {}
    for name, view in (("whole", whole), ("zoomed", zoomed)):
        durations = []
        for _ in range(50):
            started = time.perf_counter()
            encode_update(frames, View(*view))
            durations.append(time.perf_counter() - started)
        encodes[name] = percentile(durations, 0.5) * 1000
    in_view = sum(len(f.xs) for f in frames)
    client.sendClose()
    for ticker in tickers:
        ticker.stop()
    for feed in feeds:
        await feed.stop()
    await task.deferLater(reactor, 0.2)
    await port.stopListening()
    return {
        "streamed_entities": in_view,
        "updates_per_s": rate,
        "update_bytes": size,
        "encode_p50_ms": encodes["whole"],
        "zoomed_updates_per_s": zoomed_rate,
        "zoomed_update_bytes": zoomed_size,
        "zoomed_encode_p50_ms": encodes["zoomed"],
    }


async def main(reactor, args) -> None:
    figures = tick_cost(args.entities, args.ticks, args.seed)
    figures.update(tick_cost(args.entities, args.ticks, args.seed, metrics=True))
    gc.unfreeze()
    figures.update(await stream(reactor, args.streamed, args.seconds, args.seed))
    report(figures, args.json)


if __name__ == "__main__":
    p = parser(__doc__.strip().splitlines()[0])
    p.add_argument(
        "--entities", type=int, default=2000, help="entities of the zone whose tick is timed"
    )
    p.add_argument("--ticks", type=int, default=400, help="ticks measured, watched and not, each")
    p.add_argument("--streamed", type=int, default=5000, help="entities in the streamed view")
    p.add_argument("--seconds", type=float, default=5.0, help="seconds each view is streamed")
    p.add_argument("--seed", type=int, default=1)
    arguments = p.parse_args()
    react(main, arguments, arguments.profile)
