"""
Zone tick cost: the time one zone's simulation tick takes for 500, 1,000,
2,000, 5,000 and 10,000 moving entities, in process, against the 50 ms budget of a
20 Hz tick.

    python bench/zone_tick.py [--sizes 500,1000,2000,5000,10000] [--ticks 400]
                              [--update-rate HZ] [--cold] [--json]

The zone is the left half (1000 x 1000 units) of a 2000 x 1000 world of two
regions, with the shipped [world] defaults otherwise (AOI radius 50, ghost
margin 60).  A tenth of the entities are players with sessions on four
gateways, each sending one move input per tick (a random walk at the speed
limit), applied as the zone's handoff applies them (ZoneSimulation.input,
then last_input) and timed with the tick that follows; the rest are NPCs
wandering.  The neighbouring zone's entities within the ghost margin (the
same density) are mirrored in as ghosts every tick, as fresh views, as they
would arrive from another process.  Time is the fake
clock's, advanced one interval per tick; tick durations are measured with
time.perf_counter, and the CPU time they took with time.thread_time (on a
shared machine, a tick the scheduler paused is long, not costly).  The
baseline: a bare loop moving the same number of entities, measured in the
same run, as a yardstick of the machine's speed.  Every fifth measured
tick's pushes are then encoded (untimed by the tick) as the zone's outbox
encodes them (its kernel's stems: in the compiled kernel, packed there,
each entity's entry packed once and copied into every stem), and, as their
baselines, as the generic encoder does (codec.push_stem with fragments:
each entry packed once and joined, the pure kernel's way) and each push
packed whole: the same bytes (each way first in turn).

With --update-rate HZ, the zones run with that [world] update_rate: their
players are updated every tick_rate / HZ ticks, and the ticks between only
simulate (the figures are the same names, their percentiles over both
kinds of tick, and update_rate says which ran).

Once a size's world is set up, the benchmark sets the cyclic collector up
as every mmo process does once it has started
(mmo.process.service.settle_collector): gc.freeze(), so that CPython's full
collections scan only what was allocated since, instead of the whole process
(tens of milliseconds here, in the middle of a tick), and young collections
every 100,000 allocations rather than 700.  --default-gc measures with
CPython's defaults instead.

With --border-walk PLAYERS, the zone ticks once more in the shape of
mmo-bot's border-walk on conf/cluster.toml's world (two zones side by side,
2000 x 2000; L{BorderWalkZone}): PLAYERS players on lanes across the
border (150 units each side), two moves a second each of the bots' step,
the left zone's ten NPCs; a player is a real of the left zone on its side
of the border and a ghost mirrored from the right one on the other, handed
over past the hysteresis.  Its figures are named border_walk_*; every
measured tick's pushes are encoded, the three ways.

With --count TICKS, nothing is measured: each zone (of --sizes, and the
border walk's with --border-walk) runs TICKS ticks after its warm-up, each
one's pushes sent through a zone's outbox (L{mmo.zone.outbox.Outbox}) to
gateways that take stems, for an instruction count of the ticks and their
encoding that does not vary from run to run: the difference between the
counts of two runs (PYTHONHASHSEED=0) under valgrind --tool=callgrind, of
TICKS and of 0, divided by TICKS, is a tick's.
Each counted tick runs inside a call of functools.reduce of its own,
so that --toggle-collect=functools_reduce counts them alone; with --cold,
the caches are swept before each, outside it: with --cache-sim=yes,
callgrind then counts the cache misses of ticks that start cold.

With --cold, the CPU's caches are swept before each measured tick
(L{CacheSweep}: a buffer of twice the last-level cache written, a byte a
cache line, untimed): a zone process on a machine it shares with others
(the gateways, the other zones, Redis) finds its data gone from the
caches at each tick, as they ran since the last one.  Without it the
ticks run back to back, their data still in the caches.  cold_caches_mb
says which ran (0: warm).

With --profile PATH, the largest size is run once more after the
measurements, the same world and ticks, with cProfile enabled around each
measured tick only; its stats go to PATH.  The figures come from the
unprofiled runs.
"""

from __future__ import annotations

import cProfile
import functools
import gc
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import bare_loop, parser, percentile, report  # noqa: E402
from twisted.internet import task  # noqa: E402

from mmo.bot.geometry import World, lanes  # noqa: E402
from mmo.config import WorldSection  # noqa: E402
from mmo.process.service import settle_collector  # noqa: E402
from mmo.wire.codec import push_stem  # noqa: E402
from mmo.zone.entity import NPC, PLAYER, Entity  # noqa: E402
from mmo.zone.outbox import Outbox  # noqa: E402
from mmo.zone.simulation import ZoneSimulation  # noqa: E402
from mmo.zone.world import WorldMap  # noqa: E402

BUDGET = 0.050
WARMUP = 20
#: Every how many measured ticks the pushes are encoded (encode_pushes).
ENCODE_EVERY = 5
GATEWAYS = 4
#: How far each side of the border a border walk's lanes reach: mmo-bot's
#: default (its border-walk scenario's span).
SPAN = 150.0


def world_config(update_rate: float = 0.0) -> WorldSection:
    return WorldSection(
        {
            "width": 2000,
            "height": 1000,
            "columns": 2,
            "zones": ["zone-1", "zone-2"],
            "update_rate": update_rate,
        },
        ("world",),
    )


class Walker:
    """A player bot: walks at the speed limit, turning now and then, inside its region."""

    def __init__(self, entity: Entity, rng: random.Random, speed: float, region):
        self.entity = entity
        self.rng = rng
        self.step = speed
        self.region = region
        self.seq = 0
        self.turn()

    def turn(self) -> None:
        angle = self.rng.uniform(0, 2 * math.pi)
        self.dx, self.dy = math.cos(angle), math.sin(angle)

    def next_input(self, interval: float) -> tuple[int, float, float]:
        if self.rng.random() < 0.02:
            self.turn()
        r, e = self.region, self.entity
        x = e.x + self.dx * self.step * interval
        y = e.y + self.dy * self.step * interval
        if not (r.x0 + 1 <= x <= r.x1 - 1):
            self.dx = -self.dx
            x = e.x
        if not (r.y0 + 1 <= y <= r.y1 - 1):
            self.dy = -self.dy
            y = e.y
        self.seq += 1
        return self.seq, x, y


def encode_pushes(result, turn: int) -> tuple[float, float, float]:
    """
    The CPU time (s) of encoding a tick's pushes as the zone's outbox does
    (its kernel's stems, per gateway, with one tick's fragments), as the
    generic encoder does (L{push_stem} with one tick's fragments: the pure
    kernel's way), and as each push packed whole (the same stems); the one
    that goes first reads the pushes from memory for the others, so the
    order turns (C{turn}).
    """
    kernel = Outbox.kernel
    batches = list(result.pushes.values())

    def outbox() -> float:
        started = time.thread_time()
        fragments = kernel.Fragments()
        for by_session in batches:
            kernel.stems(by_session, push_stem, fragments, _dropped)
        return time.thread_time() - started

    def generic() -> float:
        started = time.thread_time()
        fragments: dict[int, bytes] = {}
        for by_session in batches:
            for pushes in by_session.values():
                for kind, fields in pushes:
                    push_stem(kind, fields, fragments)
        return time.thread_time() - started

    def whole() -> float:
        started = time.thread_time()
        for by_session in batches:
            for pushes in by_session.values():
                for kind, fields in pushes:
                    push_stem(kind, fields)
        return time.thread_time() - started

    ways = [outbox, generic, whole]
    times = {}
    for i in range(len(ways)):
        way = ways[(turn + i) % len(ways)]
        times[way] = way()
    return times[outbox], times[generic], times[whole]


class CacheSweep:
    """
    Sweeps the CPU's caches when called: writes a byte of every cache line
    of a buffer of C{size} bytes, which pushes out whatever else they held.
    """

    LINE = 64

    def __init__(self, size: int):
        self.buffer = bytearray(size)
        self._bytes = b"\x01" * len(range(0, size, self.LINE))

    def __call__(self) -> None:
        self.buffer[:: self.LINE] = self._bytes

    @staticmethod
    def size_for_this_machine(default: int = 64 << 20) -> int:
        """Twice the largest CPU cache this machine reports (sysfs), else C{default}."""
        largest = 0
        directory = "/sys/devices/system/cpu/cpu0/cache"
        try:
            names = os.listdir(directory)
        except OSError:
            return default
        for name in names:
            try:
                with open(os.path.join(directory, name, "size")) as f:
                    text = f.read().strip()
            except OSError:
                continue
            units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
            if text and text[-1] in units and text[:-1].isdigit():
                largest = max(largest, int(text[:-1]) * units[text[-1]])
        return 2 * largest if largest else default


def _dropped(session: str, kind: str) -> None:
    raise AssertionError(f"push {kind!r} to {session} could not be encoded")


class _Simulated:
    """The left zone's simulation of a bench world, on a fake clock, seeded."""

    def _simulate(self, conf, seed: int, clock: task.Clock | None):
        world = WorldMap.from_config(conf)
        self.region = region = world.region("r0c0")
        self.clock = clock if clock is not None else task.Clock()
        self.rng = rng = random.Random(seed)
        self.sim = ZoneSimulation(world, region, conf, self.clock, rng=random.Random(seed + 1))
        self.interval = 1.0 / conf.tick_rate
        return region, rng


class BenchZone(_Simulated):
    """
    The zone this benchmark times, and those that build on it: C{size}
    entities in the left region of L{world_config}'s world, a tenth of them
    players walking (L{Walker}), the rest NPCs, and the neighbour's entities
    within the ghost margin (at the same density) mirrored in as ghosts.

    @ivar sim: The L{ZoneSimulation}, on the fake C{clock}.
    """

    def __init__(
        self, size: int, seed: int, clock: task.Clock | None = None, update_rate: float = 0.0
    ):
        self.conf = conf = world_config(update_rate)
        region, rng = self._simulate(conf, seed, clock)
        players = max(1, size // 10)
        self.walkers = []
        for i in range(players):
            entity = Entity(
                id=f"player-{i}",
                kind=PLAYER,
                x=rng.uniform(region.x0 + 1, region.x1 - 1),
                y=rng.uniform(region.y0 + 1, region.y1 - 1),
                name=f"player {i}",
                session=f"session-{i}",
                gateway=f"gateway-{i % GATEWAYS}",
            )
            self.sim.add(entity)
            self.walkers.append(Walker(entity, rng, conf.max_speed, region))
        self.sim.spawn_npcs(size - players)
        self.margin = margin = conf.ghost_margin
        self.ghosts = [
            [f"ghost-{i}", rng.uniform(region.x1, region.x1 + margin), rng.uniform(0, 1000)]
            for i in range(round(size * margin / region.width))
        ]

    def step(self) -> list[tuple]:
        """
        Advance the clock one tick and move the ghosts (mirrored in as fresh
        views, as from another process); the tick's inputs, not applied.
        """
        self.clock.advance(self.interval)
        inputs = [(walker.entity, *walker.next_input(self.interval)) for walker in self.walkers]
        region, margin, rng = self.region, self.margin, self.rng
        for ghost in self.ghosts:
            ghost[1] = min(region.x1 + margin, max(region.x1, ghost[1] + rng.uniform(-0.1, 0.1)))
            ghost[2] = min(1000.0, max(0.0, ghost[2] + rng.uniform(-0.1, 0.1)))
        self.sim.set_ghosts(
            "r0c1",
            [
                {"id": g[0], "kind": NPC, "x": g[1], "y": g[2], "name": g[0], "attrs": {}}
                for g in self.ghosts
            ],
        )
        return inputs

    def apply(self, inputs: list[tuple]) -> None:
        """Apply the inputs as the zone's handoff applies them."""
        for entity, seq, x, y in inputs:
            self.sim.input(entity, seq, {"x": x, "y": y})
            entity.last_input = seq


class BorderWalkZone(_Simulated):
    """
    The left zone of a border walk (see the module docstring): C{players}
    players on lanes across the border at x = 1000, each moving every
    tenth tick (two moves a second at 20 Hz) by the bots' step, back and
    forth between its lane's ends.  Those on the left are reals of this
    zone, moved by their inputs; those on the right belong to the other
    zone, and those of them within the ghost margin are mirrored in as
    ghosts every tick.  A real past the border by more than the
    hysteresis (a crossing) leaves this zone; a player of the other zone
    as deep on this side comes in with what it sees (as a handoff brings
    its view).

    @ivar sim: The left zone's L{ZoneSimulation}, on the fake C{clock}.
    """

    def __init__(self, players: int, seed: int, clock: task.Clock | None = None):
        self.conf = conf = WorldSection(
            {"width": 2000, "height": 2000, "columns": 2, "zones": ["zone-1", "zone-2"]},
            ("world",),
        )
        region, rng = self._simulate(conf, seed, clock)
        geometry = World.from_config(conf)
        self.step_size = geometry.max_step(0.5)
        self.margin = conf.ghost_margin
        self.hysteresis = conf.hysteresis
        self.border = region.x1
        self.ticks = 0
        # [entity, lane, heading (+1 or -1), the tick of ten it moves on, seq]
        self.walkers = []
        for i, lane in enumerate(lanes(geometry, players, SPAN)):
            entity = Entity(
                id=f"player-{i}",
                kind=PLAYER,
                x=rng.uniform(lane.low, lane.high),
                y=lane.cross,
                name=f"player {i}",
                session=f"session-{i}",
                gateway=f"gateway-{i % 2}",
            )
            self.walkers.append([entity, lane, rng.choice((-1, 1)), rng.randrange(10), 0])
            if entity.x <= self.border:
                self.sim.add(entity)
        self.sim.spawn_npcs()

    def step(self) -> list[tuple]:
        """
        Advance the clock one tick, move the other zone's players and
        mirror those within the margin in; this zone's players' inputs,
        not applied.
        """
        self.clock.advance(self.interval)
        self.ticks += 1
        inputs = []
        ghosts = []
        reals = self.sim.reals
        for walker in self.walkers:
            entity, lane, heading, phase, seq = walker
            if self.ticks % 10 == phase:
                x = entity.x + heading * self.step_size
                if not lane.low <= x <= lane.high:
                    walker[2] = heading = -heading
                    x = entity.x + heading * self.step_size
                walker[4] = seq = seq + 1
                if entity.id in reals:
                    inputs.append((entity, seq, x, entity.y))
                else:
                    entity.x = x
                    entity.last_input = seq
            if entity.id not in reals and entity.x <= self.border + self.margin:
                ghosts.append(self.sim.entity_view(entity))
        self.sim.set_ghosts("r0c1", ghosts)
        return inputs

    def apply(self, inputs: list[tuple]) -> None:
        """Apply the inputs as the zone's handoff applies them."""
        for entity, seq, x, y in inputs:
            self.sim.input(entity, seq, {"x": x, "y": y})
            entity.last_input = seq

    def hand_over(self, result) -> int:
        """
        The handoffs after a tick, both ways (L{BorderWalkZone}); how many.
        """
        sim = self.sim
        for entity, _region in result.crossings:
            sim.remove(entity.id)
        arriving = [
            w[0]
            for w in self.walkers
            if w[0].id not in sim.reals and w[0].x < self.border - self.hysteresis
        ]
        for entity in arriving:
            sim.add(entity, seen=sim.aoi.visible(entity.x, entity.y))
        return len(result.crossings) + len(arriving)


def encode_figures(encoded: tuple[list, list, list], suffix: str, prefix: str = "") -> dict:
    """The medians of L{encode_pushes}' times, ms."""
    outbox, generic, whole = encoded
    return {
        f"{prefix}encode_p50_ms{suffix}": percentile(outbox, 0.50) * 1000,
        f"{prefix}encode_generic_p50_ms{suffix}": percentile(generic, 0.50) * 1000,
        f"{prefix}encode_whole_p50_ms{suffix}": percentile(whole, 0.50) * 1000,
    }


def run_border_walk(
    players: int,
    ticks: int,
    max_seconds: float,
    seed: int,
    settle: bool = True,
    sweep: Callable[[], None] | None = None,
) -> dict:
    """
    Measure C{ticks} ticks of a L{BorderWalkZone} of C{players} players
    (with C{sweep}, called before each).
    """
    zone = BorderWalkZone(players, seed)
    gc.collect()
    if settle:
        settle_collector()
    durations = []
    cpu_durations = []
    encoded: tuple[list, list, list] = ([], [], [])
    pushes = handoffs = 0
    deadline = time.perf_counter() + max_seconds
    for n in range(WARMUP + ticks):
        inputs = zone.step()
        if sweep is not None:
            sweep()
        started = time.perf_counter()
        cpu_started = time.thread_time()
        zone.apply(inputs)
        result = zone.sim.tick()
        elapsed = time.perf_counter() - started
        cpu = time.thread_time() - cpu_started
        if n >= WARMUP:
            durations.append(elapsed)
            cpu_durations.append(cpu)
            pushes += sum(len(sessions) for sessions in result.pushes.values())
            # Every tick's: a border walk's are few and small.
            for times, spent in zip(encoded, encode_pushes(result, n), strict=True):
                times.append(spent)
        moved = zone.hand_over(result)
        if n >= WARMUP:
            handoffs += moved
        if time.perf_counter() > deadline and len(durations) >= 10:
            break
    measured = len(durations)
    return {
        f"border_walk_ticks_{players}": measured,
        f"border_walk_tick_p50_ms_{players}": percentile(durations, 0.50) * 1000,
        f"border_walk_tick_p99_ms_{players}": percentile(durations, 0.99) * 1000,
        f"border_walk_tick_cpu_p50_ms_{players}": percentile(cpu_durations, 0.50) * 1000,
        f"border_walk_pushes_per_tick_{players}": pushes / measured,
        f"border_walk_handoffs_per_tick_{players}": handoffs / measured,
        **encode_figures(encoded, f"_{players}", "border_walk_"),
        f"border_walk_reals_{players}": len(zone.sim.reals),
    }


def run_size(
    size: int,
    ticks: int,
    max_seconds: float,
    seed: int,
    settle: bool = True,
    profiler: cProfile.Profile | None = None,
    update_rate: float = 0.0,
    sweep: Callable[[], None] | None = None,
) -> dict:
    """
    Measure C{ticks} ticks of a zone of C{size} entities (its C{[world]
    update_rate} C{update_rate}); with C{profiler}, it is enabled around
    each measured tick (and nothing else); with C{sweep}, called before
    each tick.
    """
    zone = BenchZone(size, seed, update_rate=update_rate)
    sim, rng, interval = zone.sim, zone.rng, zone.interval

    gc.collect()
    if settle:
        settle_collector()
    durations = []
    cpu_durations = []
    # With an update_rate: the CPU of the ticks that update the players, and
    # of those between, which only simulate.
    every = zone.conf.update_every
    update_cpu: list[float] = []
    between_cpu: list[float] = []
    encoded: tuple[list, list, list] = ([], [], [])
    pushes = 0
    deadline = time.perf_counter() + max_seconds
    for n in range(WARMUP + ticks):
        inputs = zone.step()
        if sweep is not None:
            sweep()
        profiling = profiler is not None and n >= WARMUP
        if profiling:
            profiler.enable()
        started = time.perf_counter()
        cpu_started = time.thread_time()
        zone.apply(inputs)
        result = sim.tick()
        elapsed = time.perf_counter() - started
        cpu = time.thread_time() - cpu_started
        if profiling:
            profiler.disable()
        if n >= WARMUP:
            durations.append(elapsed)
            cpu_durations.append(cpu)
            (update_cpu if sim.tick_count % every == 0 else between_cpu).append(cpu)
            pushes += sum(len(sessions) for sessions in result.pushes.values())
            if (n - WARMUP) % ENCODE_EVERY == 0:
                for times, spent in zip(encoded, encode_pushes(result, n), strict=True):
                    times.append(spent)
        if time.perf_counter() > deadline and len(durations) >= 10:
            break
    visible = sum(len(v) for v in sim.aoi.known.values()) / max(1, len(sim.aoi.known))

    # The yardstick: the same number of entities moved by a bare loop.
    baseline = bare_loop(size, len(durations), rng, interval)

    measured = len(durations)
    p50 = percentile(durations, 0.50) * 1000
    move_p50 = percentile(baseline, 0.50) * 1000
    kinds = {}
    if every > 1 and update_cpu and between_cpu:
        for kind, spent in (("update", update_cpu), ("between", between_cpu)):
            kinds[f"{kind}_tick_cpu_p50_ms_{size}"] = percentile(spent, 0.50) * 1000
            kinds[f"{kind}_tick_cpu_p99_ms_{size}"] = percentile(spent, 0.99) * 1000
    return {
        f"ticks_{size}": measured,
        f"tick_p50_ms_{size}": p50,
        f"tick_p99_ms_{size}": percentile(durations, 0.99) * 1000,
        f"tick_max_ms_{size}": max(durations) * 1000,
        f"tick_cpu_p50_ms_{size}": percentile(cpu_durations, 0.50) * 1000,
        f"tick_cpu_p99_ms_{size}": percentile(cpu_durations, 0.99) * 1000,
        # What the zone's ticks cost on average: with an update_rate, its
        # update ticks and the lighter ones between.
        f"tick_cpu_mean_ms_{size}": statistics.fmean(cpu_durations) * 1000,
        **kinds,
        f"over_budget_{size}": sum(d > BUDGET for d in durations) / measured,
        f"pushes_per_tick_{size}": pushes / measured,
        **encode_figures(encoded, f"_{size}"),
        f"visible_per_player_{size}": visible,
        f"move_p50_ms_{size}": move_p50,
        f"move_ratio_{size}": p50 / move_p50 if move_p50 else float("nan"),
    }


class _Dropping:
    """A zone's gateways that take stems and keep none (L{count_ticks})."""

    def takes_stems(self, gateway: str) -> bool:
        return True

    def send(self, gateway: str, value, sender: str) -> None:
        pass


def count_ticks(
    zone, ticks: int, settle: bool = True, sweep: Callable[[], None] | None = None
) -> None:
    """
    C{ticks} ticks of C{zone} (a L{BenchZone} or L{BorderWalkZone}) after
    the warm-up, each one's pushes sent through the zone's outbox (every
    push encoded as the zone encodes it), nothing timed: what --count runs.
    Each counted tick (its inputs, the tick, its pushes) runs inside a call
    of C{functools.reduce} of its own, and nothing else does, for
    C{valgrind --tool=callgrind --toggle-collect=functools_reduce}; with
    C{sweep}, called before each, outside that call.
    """
    outbox = Outbox(None, "r0c0", zone.sim)
    outbox.stream_to(_Dropping())

    def one(_, inputs):
        zone.apply(inputs)
        result = zone.sim.tick()
        outbox.pushes(result)
        return result

    gc.collect()
    if settle:
        settle_collector()
    for n in range(WARMUP + ticks):
        inputs = zone.step()
        if n < WARMUP:
            result = one(None, inputs)
        else:
            if sweep is not None:
                sweep()
            result = functools.reduce(one, [inputs], None)
        if isinstance(zone, BorderWalkZone):
            zone.hand_over(result)


def main() -> None:
    p = parser(__doc__.strip().splitlines()[0])
    p.add_argument(
        "--sizes", default="500,1000,2000,5000,10000", help="entity counts, comma-separated"
    )
    p.add_argument("--ticks", type=int, default=400, help="ticks measured per size")
    p.add_argument("--max-seconds", type=float, default=30.0, help="time limit per size")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--default-gc",
        dest="settle",
        action="store_false",
        help="CPython's collector as it is by default: nothing frozen, thresholds 700, 10, 10",
    )
    p.add_argument(
        "--border-walk",
        type=int,
        default=0,
        metavar="PLAYERS",
        help="also tick a zone in border-walk shape with PLAYERS players (0: not)",
    )
    p.add_argument(
        "--count",
        type=int,
        metavar="TICKS",
        help="only run TICKS ticks of each zone (after the warm-up), their pushes encoded "
        "by the outbox, and measure nothing: for valgrind --tool=callgrind",
    )
    p.add_argument(
        "--update-rate",
        type=float,
        default=0.0,
        metavar="HZ",
        help="the zones' [world] update_rate (default 0: every player every tick)",
    )
    p.add_argument(
        "--cold",
        action="store_true",
        help="sweep the CPU's caches before each measured tick (a machine shared with others)",
    )
    args = p.parse_args()
    sweep = CacheSweep(CacheSweep.size_for_this_machine()) if args.cold else None
    figures: dict = {
        "budget_ms": BUDGET * 1000,
        "settled_gc": args.settle,
        "update_rate": args.update_rate,
        "cold_caches_mb": len(sweep.buffer) / (1 << 20) if sweep is not None else 0,
    }
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if args.count is not None:
        for size in sizes:
            count_ticks(BenchZone(size, args.seed), args.count, args.settle, sweep)
        if args.border_walk:
            count_ticks(BorderWalkZone(args.border_walk, args.seed), args.count, args.settle, sweep)
        return
    defaults = gc.get_threshold()
    for size in sizes:
        figures.update(
            run_size(
                size,
                args.ticks,
                args.max_seconds,
                args.seed,
                args.settle,
                update_rate=args.update_rate,
                sweep=sweep,
            )
        )
        gc.unfreeze()
        gc.set_threshold(*defaults)
    if args.border_walk:
        figures.update(
            run_border_walk(
                args.border_walk, args.ticks, args.max_seconds, args.seed, args.settle, sweep
            )
        )
        gc.unfreeze()
        gc.set_threshold(*defaults)
    if args.profile and sizes:
        # A separate run of the largest size: the figures above stay unprofiled.
        profiler = cProfile.Profile()
        run_size(
            max(sizes),
            args.ticks,
            args.max_seconds,
            args.seed,
            args.settle,
            profiler,
            args.update_rate,
            sweep,
        )
        gc.unfreeze()
        gc.set_threshold(*defaults)
        profiler.dump_stats(args.profile)
    report(figures, args.json)


if __name__ == "__main__":
    main()
