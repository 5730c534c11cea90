"""
Ghosts in and out: the CPU two zones spend on each other's ghosts, per tick,
in process, in the shape of mmo-bot's border walk.

    python bench/ghosts.py [--players 400] [--ticks 400] [--seed 1] [--whole] [--json]
                           [--profile PATH]

Two zones side by side on conf/cluster.toml's world (2000 x 2000, two
columns), PLAYERS players on lanes spread along the border, 150 units each
side of it, each moving the bots' step every tenth tick (two moves a
second at 20 Hz), back and forth between its lane's ends.  A player is a
real of the zone of its side, handed over past the hysteresis as the zone
service hands it over: its version bumped, the new zone dropping its ghost,
the old one keeping it as a ghost of the new one until the new one's
updates hold it.  Every tick, each zone runs L{ZoneService.tick} (without
players' sessions: nothing is pushed) and its parts are timed with
C{time.thread_time}:

  - out: L{Outbox.ghosts}, each L{GhostUpdate} packed as the bus packs it
    (C{mmo.bus.memory.pack}, as the Redis bus does);
  - in: each update from the neighbour unpacked as the bus delivers it
    (C{mmo.bus.memory.unpack}), decoded and applied as the zone's channel
    does (its dispatcher, L{GhostTable.apply}), and the tick's ghosts given
    to the simulation (the rest of L{ZoneService.tick}: the tick without
    the simulation's own tick and without L{Outbox.ghosts}).

The zones ask each other for deltas (L{GhostSync}) as zone services do;
with --whole they do not, and send whole updates, as zones of the release
before did.  The bus's share of both, packing and unpacking the updates, is
also reported on its own: what the zone's own code costs is the rest; and
the bytes of an update, the views it stands for and those it carries.  Time is
a fake clock advanced 50 ms per tick; the cyclic collector is set up as a
process's (C{settle_collector}).  The figures are per zone and tick.

With --profile PATH, the same world and ticks run once more after the
measurements, with cProfile enabled around each measured tick only; its
stats go to PATH.
"""

from __future__ import annotations

import cProfile
import gc
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import parser, percentile, report  # noqa: E402
from twisted.internet import task  # noqa: E402

from mmo.bot.geometry import World, lanes  # noqa: E402
from mmo.bus.memory import pack, unpack  # noqa: E402
from mmo.config import WorldSection  # noqa: E402
from mmo.game import messages  # noqa: E402
from mmo.game.messages import GhostSync, GhostUpdate, zone_channel  # noqa: E402
from mmo.process.service import settle_collector  # noqa: E402
from mmo.zone.entity import PLAYER, Entity  # noqa: E402
from mmo.zone.ghosts import GhostTable  # noqa: E402
from mmo.zone.outbox import Outbox  # noqa: E402
from mmo.zone.service import ZoneService  # noqa: E402
from mmo.zone.simulation import ZoneSimulation  # noqa: E402
from mmo.zone.world import WorldMap  # noqa: E402

WARMUP = 20
#: How far each side of the border the lanes reach (mmo-bot's default span).
SPAN = 150.0


class PackingBus:
    """A bus that packs what is published, as the Redis bus does, and keeps it."""

    def __init__(self):
        self.sent: list[tuple[str, bytes]] = []
        #: CPU seconds spent packing.
        self.spent = 0.0

    def publish(self, channel: str, message) -> None:
        started = time.thread_time()
        data = pack(message)
        self.spent += time.thread_time() - started
        self.sent.append((channel, data))


class _Nothing:
    """What the bench's zones leave out of the tick: pushes, the map feed."""

    def pushes(self, result) -> None:
        pass

    def tick(self, now) -> None:
        pass


class TimedSimulation:
    """A zone's simulation, its own tick timed (to take out of the zone's tick)."""

    def __init__(self, simulation: ZoneSimulation):
        self.simulation = simulation
        self.spent = 0.0

    def __getattr__(self, name):
        return getattr(self.simulation, name)

    def tick(self):
        started = time.thread_time()
        result = self.simulation.tick()
        self.spent += time.thread_time() - started
        return result


class TimedOutbox:
    """A zone's outbox: its ghosts timed, its pushes left out."""

    def __init__(self, outbox: Outbox):
        self.outbox = outbox
        self.spent = 0.0

    def __getattr__(self, name):
        return getattr(self.outbox, name)

    def pushes(self, result) -> None:
        pass

    def ghosts(self, result) -> None:
        started = time.thread_time()
        self.outbox.ghosts(result)
        self.spent += time.thread_time() - started


class BenchZone:
    """
    One zone of the bench: what L{ZoneService.tick} and its channel use of
    a zone service (its simulation, outbox and ghost table), the rest left
    out; the service's own methods run on it.
    """

    def __init__(self, world: WorldMap, region: str, conf, clock, seed: int, whole: bool):
        self.name = region
        self.clock = clock
        self.bus = PackingBus()
        simulation = ZoneSimulation(world, region, conf, clock, rng=random.Random(seed))
        self.real_simulation = simulation
        self.simulation = TimedSimulation(simulation)
        self.outbox = TimedOutbox(Outbox(self.bus, region, simulation))
        sync = None if whole else self._sync_ghosts
        self.ghosts = GhostTable(simulation.reals.__contains__, clock, sync=sync)
        self.map_feed = _Nothing()
        self.takeover = self
        # Not serving: the bench hands the crossings over itself.
        self.mode = "bench"
        self.last_tick_at = None
        self.dispatcher = messages.Dispatcher(f"zone {region}")
        self.dispatcher.on(GhostUpdate, self._ghosts)
        self.dispatcher.on(GhostSync, self._ghost_sync)

    def __getattr__(self, name):
        # The zone service's own methods, on this zone.
        return getattr(ZoneService, name).__get__(self)

    def tick(self) -> tuple[float, float, object]:
        """One L{ZoneService.tick}: (its ghosts in, its ghosts out), CPU seconds."""
        self.simulation.spent = self.outbox.spent = 0.0
        results = []
        original = self.simulation.tick
        self.simulation.tick = lambda: results.append(original()) or results[-1]
        started = time.thread_time()
        ZoneService.tick(self)
        total = time.thread_time() - started
        del self.simulation.tick
        return total - self.simulation.spent - self.outbox.spent, self.outbox.spent, results[0]

    def heard(self, data: bytes) -> tuple[float, float, int | None]:
        """
        A neighbour's message as the bus delivers it: CPU seconds, and of
        them unpacking's; and the views it carries if it is an update.
        """
        started = time.thread_time()
        message = unpack(data)
        unpacked = time.thread_time()
        self.dispatcher(message)
        carried = len(message["views"]) if message["type"] == GhostUpdate.__name__ else None
        return time.thread_time() - started, unpacked - started, carried


class BorderWalk:
    """Two zones and the players walking across their border (see the module docstring)."""

    def __init__(self, players: int, seed: int, whole: bool = False):
        self.conf = conf = WorldSection(
            {"width": 2000, "height": 2000, "columns": 2, "zones": ["zone-1", "zone-2"]},
            ("world",),
        )
        world = WorldMap.from_config(conf)
        self.clock = task.Clock()
        self.interval = 1.0 / conf.tick_rate
        self.zones = [
            BenchZone(world, region.name, conf, self.clock, seed + i, whole)
            for i, region in enumerate(world.regions.values())
        ]
        self.by_channel = {zone_channel(z.name): z for z in self.zones}
        geometry = World.from_config(conf)
        self.step_size = geometry.max_step(0.5)
        rng = random.Random(seed)
        self.ticks = 0
        # [entity, lane, heading (+1 or -1), the tick of ten it moves on]
        self.walkers = []
        for i, lane in enumerate(lanes(geometry, players, SPAN)):
            entity = Entity(
                id=f"character-{i:08d}",
                kind=PLAYER,
                x=rng.uniform(lane.low, lane.high),
                y=lane.cross,
                name=f"bot {i}",
            )
            self.walkers.append([entity, lane, rng.choice((-1, 1)), rng.randrange(10)])
            self.zone_at(entity.x, entity.y).real_simulation.add(entity)

    def zone_at(self, x: float, y: float) -> BenchZone:
        region = self.zones[0].real_simulation.map.region_at(x, y)
        return next(z for z in self.zones if z.name == region.name)

    def step(self) -> dict:
        """One tick of both zones, then the updates delivered: CPU seconds by part."""
        self.clock.advance(self.interval)
        self.ticks += 1
        for walker in self.walkers:
            entity, lane, heading, phase = walker
            if self.ticks % 10 == phase:
                x = entity.x + heading * self.step_size
                if not lane.low <= x <= lane.high:
                    walker[2] = heading = -heading
                    x = entity.x + heading * self.step_size
                entity.x = x
        spent = {
            "in": 0.0,
            "out": 0.0,
            "codec": 0.0,
            "updates": 0,
            "views": 0,
            "carried": 0,
            "bytes": 0,
        }
        crossings = []
        for zone in self.zones:
            zone.bus.spent = 0.0
            ghosts_in, ghosts_out, result = zone.tick()
            spent["codec"] += zone.bus.spent
            spent["in"] += ghosts_in
            spent["out"] += ghosts_out
            crossings += [(zone, entity, region.name) for entity, region in result.crossings]
            spent["views"] += sum(len(views) for views in result.ghost_views.values())
        for old, entity, region in crossings:
            self.hand_over(old, entity, region)
        for zone in self.zones:
            for channel, data in zone.bus.sent:
                heard, unpacking, carried = self.by_channel[channel].heard(data)
                spent["in"] += heard
                spent["codec"] += unpacking
                if carried is not None:
                    spent["updates"] += 1
                    spent["carried"] += carried
                    spent["bytes"] += len(data)
            zone.bus.sent.clear()
        return spent

    def hand_over(self, old: BenchZone, entity: Entity, region: str) -> None:
        """As two zone services hand a real over (ZoneHandoff's ends of it)."""
        new = next(z for z in self.zones if z.name == region)
        old.real_simulation.remove(entity.id)
        entity.version += 1
        new.real_simulation.add(entity, seen=None)
        new.ghosts.real_added(entity.id)
        view = {**old.real_simulation.entity_view(entity), "version": entity.version}
        old.ghosts.handed_over(new.name, view, new.outbox.ghost_tick)


def run(
    players: int,
    ticks: int,
    seed: int,
    settle: bool = True,
    profiler: cProfile.Profile | None = None,
    whole: bool = False,
) -> dict:
    """
    Measure C{ticks} ticks of a L{BorderWalk} of C{players} players (with
    C{whole}, whole updates only); with C{profiler}, it is enabled around
    each measured tick (and nothing else).
    """
    walk = BorderWalk(players, seed, whole)
    gc.collect()
    if settle:
        settle_collector()
    spent_in, spent_out, codec, views, carried, sizes = [], [], [], [], [], []
    zones = len(walk.zones)
    for n in range(WARMUP + ticks):
        profiling = profiler is not None and n >= WARMUP
        if profiling:
            profiler.enable()
        spent = walk.step()
        if profiling:
            profiler.disable()
        if n >= WARMUP:
            spent_in.append(spent["in"] / zones)
            spent_out.append(spent["out"] / zones)
            codec.append(spent["codec"] / zones)
            views.append(spent["views"] / max(1, spent["updates"]))
            carried.append(spent["carried"] / max(1, spent["updates"]))
            sizes.append(spent["bytes"] / max(1, spent["updates"]))
    both = [a + b for a, b in zip(spent_in, spent_out, strict=True)]
    own = [a - b for a, b in zip(both, codec, strict=True)]
    return {
        f"ghosts_ticks_{players}": len(spent_in),
        f"ghosts_in_p50_us_{players}": percentile(spent_in, 0.50) * 1e6,
        f"ghosts_out_p50_us_{players}": percentile(spent_out, 0.50) * 1e6,
        f"ghosts_p50_us_{players}": percentile(both, 0.50) * 1e6,
        f"ghosts_p90_us_{players}": percentile(both, 0.90) * 1e6,
        f"ghosts_bus_codec_p50_us_{players}": percentile(codec, 0.50) * 1e6,
        f"ghosts_own_p50_us_{players}": percentile(own, 0.50) * 1e6,
        f"ghosts_views_per_update_{players}": sum(views) / len(views),
        f"ghosts_views_carried_per_update_{players}": sum(carried) / len(carried),
        f"ghosts_bytes_per_update_{players}": sum(sizes) / len(sizes),
    }


def main() -> None:
    p = parser(__doc__.strip().splitlines()[0])
    p.add_argument("--players", type=int, default=400)
    p.add_argument("--ticks", type=int, default=400, help="ticks measured")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--whole", action="store_true", help="whole updates only, as before deltas")
    args = p.parse_args()
    figures = run(args.players, args.ticks, args.seed, whole=args.whole)
    if args.profile:
        # A separate run: the figures above stay unprofiled.
        gc.unfreeze()
        profiler = cProfile.Profile()
        run(args.players, args.ticks, args.seed, profiler=profiler, whole=args.whole)
        profiler.dump_stats(args.profile)
    report(figures, args.json)


if __name__ == "__main__":
    main()
