"""
The cost of metrics: a zone's tick at 2,000 entities, and a gateway's CPU
per client message, with mmo's metrics on and off, in one run.

    python bench/metrics_cost.py [--entities 2000] [--ticks 300] [--messages 20000] [--json]

Zone: the zone of bench/zone_tick.py (BenchZone: a tenth of the entities
players sending a move every tick, the rest NPCs, the neighbour's ghosts),
its ticks measured one on, one off, in turn, so that both see the same
world and the same machine.  On, a tick is what the zone's Ticker does
with metrics: the tick, then its duration observed in
mmo_zone_tick_duration_seconds; and every --scrape-every ticks (300: a
scrape every 15 s at 20 Hz) Prometheus's scrape of the whole registry,
the zone's figures read then (ZoneService.metric_families), timed apart.
Off, the tick alone.  The overhead is the on/off ratio of the median
tick, with the scrape's time spread over the ticks between two scrapes
added.

Gateway: a client connection (ClientProtocol, its factory and a
StringTransport, no socket) sent --messages pings in chunks of 100
frames; the CPU time (time.thread_time) of handling them, replies
encoded, with the counters on, and off (the message counters and the
latency histogram replaced by children that do nothing), the chunks in
turn.  A gateway's scrape is timed too.

Times are time.perf_counter (tick) and time.thread_time (CPU); medians.
With --profile PATH, the gateway's chunks with metrics on are run once
more after the measurements, profiled.
"""

from __future__ import annotations

import cProfile
import gc
import os
import sys
import time
from types import SimpleNamespace

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import parser, percentile, report  # noqa: E402
from prometheus_client import generate_latest  # noqa: E402
from twisted.internet import task  # noqa: E402
from twisted.internet.testing import StringTransport  # noqa: E402
from zone_tick import WARMUP, BenchZone  # noqa: E402

from mmo.config import Config  # noqa: E402
from mmo.frontend import protocol as frontend  # noqa: E402
from mmo.frontend.factory import ClientFactory  # noqa: E402
from mmo.metrics.kinds import LabelCache  # noqa: E402
from mmo.metrics.registry import REGISTRY, STATE, ZONE_TICK  # noqa: E402
from mmo.process.service import settle_collector  # noqa: E402
from mmo.wire import codec  # noqa: E402
from mmo.zone.service import ZoneService  # noqa: E402

#: Frames fed to the connection at once: one read's worth.
CHUNK = 100


def scrape_seconds() -> float:
    """The time of one scrape of the whole registry, as Prometheus asks for it."""
    started = time.perf_counter()
    generate_latest(REGISTRY)
    return time.perf_counter() - started


def zone(entities: int, ticks: int, scrape_every: int, seed: int) -> dict:
    load = BenchZone(entities, seed)
    observe = ZONE_TICK.labels("r0c0").observe
    # What the zone service shows at a scrape, read from this zone.
    service = SimpleNamespace(
        name="r0c0",
        simulation=load.sim,
        ghosts=load.ghosts,
        ticker=SimpleNamespace(ticks=0, skipped=0),
    )
    STATE.register(zone, lambda: ZoneService.metric_families(service))
    gc.collect()
    settle_collector()
    on, off, scrapes = [], [], []
    for n in range(WARMUP + 2 * ticks):
        inputs = load.step()
        metrics = n % 2 == 0
        started = time.perf_counter()
        load.apply(inputs)
        load.sim.tick()
        if metrics:
            observe(time.perf_counter() - started)
        elapsed = time.perf_counter() - started
        if n < WARMUP:
            continue
        (on if metrics else off).append(elapsed)
        if metrics and len(on) % scrape_every == 0:
            scrapes.append(scrape_seconds())
    if not scrapes:
        scrapes.append(scrape_seconds())
    STATE.unregister(zone)
    gc.unfreeze()
    on_p50, off_p50 = percentile(on, 0.5), percentile(off, 0.5)
    scrape = percentile(scrapes, 0.5)
    return {
        "entities": entities,
        "zone_ticks": len(on) + len(off),
        "zone_tick_on_p50_ms": on_p50 * 1000,
        "zone_tick_off_p50_ms": off_p50 * 1000,
        "zone_tick_on_p99_ms": percentile(on, 0.99) * 1000,
        "zone_tick_off_p99_ms": percentile(off, 0.99) * 1000,
        "zone_scrape_ms": scrape * 1000,
        "zone_tick_ratio": (on_p50 + scrape / scrape_every) / off_p50,
    }


class Nothing:
    """A metric child that counts nothing: the metrics off."""

    def inc(self, amount=1) -> None:
        pass

    def observe(self, amount) -> None:
        pass

    def labels(self, *values):
        return self


def connection() -> tuple[frontend.ClientProtocol, StringTransport]:
    """A client connection, handshake done, on a transport in memory."""
    clock = task.Clock()
    factory = ClientFactory(
        Config({"processes": {"gateway-1": {"kind": "gateway", "client": "tcp:0"}}}),
        None,
        clock,
    )
    factory.doStart()
    client = factory.buildProtocol(None)
    transport = StringTransport()
    client.makeConnection(transport)
    client.dataReceived(frame({"t": "hello", "id": 0, "versions": [1]}))
    transport.clear()
    return client, transport


def frame(message: dict) -> bytes:
    body = codec.encode(message)
    return codec.HEADER.pack(len(body)) + body


def gateway(messages: int, profiler: cProfile.Profile | None = None) -> dict:
    """
    The CPU per message with metrics on and off; with C{profiler}, only
    chunks with metrics on, each profiled, and no figures.
    """
    client, transport = connection()
    chunks = max(2, messages // CHUNK)
    data = b"".join(frame({"t": "ping", "id": i}) for i in range(CHUNK))
    counting = (frontend.RECEIVED, frontend.SENT, frontend.LATENCY)
    nothing = tuple(LabelCache(Nothing()) for _ in counting)
    if profiler is not None:
        for _ in range(chunks):
            profiler.enable()
            client.dataReceived(data)
            profiler.disable()
            transport.clear()
        return {}
    on, off = [], []
    for n in range(2 * chunks):
        metrics = n % 2 == 0
        frontend.RECEIVED, frontend.SENT, frontend.LATENCY = counting if metrics else nothing
        started = time.thread_time()
        client.dataReceived(data)
        elapsed = time.thread_time() - started
        transport.clear()
        (on if metrics else off).append(elapsed / CHUNK)
    frontend.RECEIVED, frontend.SENT, frontend.LATENCY = counting
    scrapes = [scrape_seconds() for _ in range(20)]
    on_p50, off_p50 = percentile(on, 0.5), percentile(off, 0.5)
    return {
        "gateway_messages": chunks * CHUNK * 2,
        "gateway_cpu_on_us": on_p50 * 1e6,
        "gateway_cpu_off_us": off_p50 * 1e6,
        "gateway_cpu_ratio": on_p50 / off_p50,
        "gateway_scrape_ms": percentile(scrapes, 0.5) * 1000,
    }


def main() -> None:
    p = parser(__doc__.strip().splitlines()[0])
    p.add_argument("--entities", type=int, default=2000)
    p.add_argument("--ticks", type=int, default=300, help="ticks measured each way")
    p.add_argument("--scrape-every", type=int, default=300, help="ticks between two scrapes")
    p.add_argument("--messages", type=int, default=20000, help="messages measured each way")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    figures = zone(args.entities, args.ticks, args.scrape_every, args.seed)
    figures.update(gateway(args.messages))
    if args.profile:
        # A run of its own: the figures above stay unprofiled.
        profiler = cProfile.Profile()
        gateway(args.messages, profiler)
        profiler.dump_stats(args.profile)
    report(figures, args.json)


if __name__ == "__main__":
    main()
