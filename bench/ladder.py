"""
The ladder on both stores: the board's rank, top-N and around-me with a
million entries, rated results applied per second, and the rollover of a
season of a million entries under a stream of results.

    python bench/ladder.py [--entries 1000000] [--queries 2000] [--results 4000]
                           [--quick] [--json]

Each backend (a private redis-server; a SQLite file in a temporary
directory) gets one ladder's board filled with C{--entries} rows (pipelined
commands; C{executemany}), then:

  - C{rank}, C{around} (5 each side) and C{top} (a page of 10 at a random
    place), each C{--queries} times one after the other through
    L{mmo.ladder.Ladder}, p50 and p99, next to the raw reads on the same
    data measured in the same run: C{ZREVRANK}, C{ZREVRANK} then
    C{ZREVRANGE}, C{ZREVRANGE} on the same Redis; the same indexed queries
    on the same SQLite file, run directly (no store, no thread);
  - C{--results} rated 1v1 results between random players, 64 in flight,
    per second (the ladder applies those reported while a batch is applied
    as the next batch), next to the rating alone (openskill, in process)
    per second;
  - the rollover of that season while 16 reporters keep reporting: its
    time, next to a raw round trip (C{GET}; a one-row query), and every
    result reported checked in the seasons' logs: lost and doubled ones.
"""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import msgpack  # noqa: E402
from _common import parser, percentile, react, report  # noqa: E402
from twisted.internet import defer, task  # noqa: E402

from mmo import config as mmo_config  # noqa: E402
from mmo.ladder import Ladder, Player, Rater  # noqa: E402
from mmo.redis import connect_redis  # noqa: E402
from mmo.store.common_ladder import LadderRow  # noqa: E402
from mmo.store.redis import RedisStore  # noqa: E402
from mmo.store.sqlite import SQLiteStore  # noqa: E402
from tests.redis import RedisServer  # noqa: E402

LADDER = "bench"
#: Rows per fill call, and fill calls in flight.
FILL_ROWS = {"redis": 20_000, "sqlite": 100_000}
FILL_IN_FLIGHT = 4
#: Results in flight while measuring the rate, and reporters during the rollover.
IN_FLIGHT = 64
REPORTERS = 16

#: The targets on a 2-core machine.
TARGET_P99_MS = 5.0
TARGET_RESULTS_PER_S = 2000.0
TARGET_ROLLOVER_S = 10.0


def player_id(n: int) -> str:
    return f"p{n:07d}"


def filled_rows(ladder: Ladder, start: int, stop: int, rng: random.Random) -> list[LadderRow]:
    """Rows as a played season leaves them: spread ratings, some ties, some provisional."""
    rows = []
    for n in range(start, stop):
        mu = round(rng.gauss(25.0, 6.0), 2)
        sigma = round(rng.uniform(2.0, 8.3), 2)
        score = ladder.rater.display(mu, sigma)
        rows.append(LadderRow(player_id(n), f"player {n}", 1, mu, sigma, 10, 1, score))
    return rows


async def fill(ladder: Ladder, store, backend: str, entries: int) -> float:
    """Fill season 1's board with C{entries} rows; the seconds it took."""
    rng = random.Random(1)
    chunk = FILL_ROWS[backend]
    started = time.perf_counter()
    pending = []
    for start in range(0, entries, chunk):
        rows = filled_rows(ladder, start, min(entries, start + chunk), rng)
        pending.append(store.ladder_fill(LADDER, 1, rows))
        if len(pending) >= FILL_IN_FLIGHT:
            await pending.pop(0)
    for d in pending:
        await d
    return time.perf_counter() - started


async def timed(calls) -> list[float]:
    """The seconds each of C{calls} (functions giving a Deferred) took, one after the other."""
    times = []
    for call in calls:
        started = time.perf_counter()
        await call()
        times.append(time.perf_counter() - started)
    return times


def summary(figures: dict, name: str, times: list[float]) -> None:
    figures[f"{name}_p50_ms"] = percentile(times, 0.50) * 1000
    figures[f"{name}_p99_ms"] = percentile(times, 0.99) * 1000


async def board_reads(ladder: Ladder, entries: int, queries: int, rng) -> dict:
    """rank, around and top through the ladder: their latencies."""
    players = [player_id(rng.randrange(entries)) for _ in range(queries)]
    starts = [rng.randrange(max(1, entries - 10)) for _ in range(queries)]
    return {
        "rank": await timed([lambda p=p: ladder.rank(p) for p in players]),
        "around": await timed([lambda p=p: ladder.around(p, 5) for p in players]),
        "top": await timed([lambda s=s: ladder.top(s, 10) for s in starts]),
    }


async def redis_raw_reads(redis, entries: int, queries: int, rng, prefix: str) -> dict:
    board = f"{prefix}:ladder:{LADDER}:board:1"
    players = [player_id(rng.randrange(entries)) for _ in range(queries)]
    starts = [rng.randrange(max(1, entries - 10)) for _ in range(queries)]

    async def around(p):
        rank = await redis.zrevrank(board, p)
        await redis.zrevrange(board, max(0, rank - 5), rank + 5)

    return {
        "rank": await timed([lambda p=p: redis.zrevrank(board, p) for p in players]),
        "around": await timed([lambda p=p: defer.ensureDeferred(around(p)) for p in players]),
        "top": await timed([lambda s=s: redis.zrevrange(board, s, s + 9) for s in starts]),
        "roundtrip": await timed([lambda: redis.get(f"{prefix}:ladder:{LADDER}:season")] * 200),
    }


def sqlite_raw_reads(path: str, entries: int, queries: int, rng) -> dict:
    """The same indexed queries as the store's, on the same file, run directly."""
    conn = sqlite3.connect(path)
    where = "ladder = ? AND season = 1"

    def rank(p):
        score, player = conn.execute(
            f"SELECT score, player FROM ladder_ratings WHERE {where} AND player = ?", (LADDER, p)
        ).fetchone()
        conn.execute(
            f"SELECT COUNT(*) FROM ladder_ratings WHERE {where} AND (score, player) > (?, ?)",
            (LADDER, score, player),
        ).fetchone()
        return score, player

    def around(p):
        score, player = rank(p)
        for order, compare in (("", ">"), (" DESC", "<")):
            conn.execute(
                f"SELECT * FROM ladder_ratings WHERE {where} AND (score, player) {compare} (?, ?) "
                f"ORDER BY score{order}, player{order} LIMIT 5",
                (LADDER, score, player),
            ).fetchall()

    def top(s):
        conn.execute(
            f"SELECT player FROM ladder_ratings WHERE {where} ORDER BY score DESC, player DESC "
            "LIMIT 10 OFFSET ?",
            (LADDER, s),
        ).fetchall()

    def each(function, values):
        times = []
        for value in values:
            started = time.perf_counter()
            function(value)
            times.append(time.perf_counter() - started)
        return times

    players = [player_id(rng.randrange(entries)) for _ in range(queries)]
    starts = [rng.randrange(max(1, entries - 10)) for _ in range(queries)]
    figures = {
        "rank": each(rank, players),
        "around": each(around, players),
        "top": each(top, starts),
        "roundtrip": each(
            lambda _: conn.execute("SELECT MAX(season) FROM ladder_seasons").fetchone(),
            range(200),
        ),
    }
    conn.close()
    return figures


class Reporters:
    """Rated 1v1 results between random players, a number of them in flight."""

    def __init__(self, ladder: Ladder, entries: int, tag: str, seed: int):
        self.ladder = ladder
        self.entries = entries
        self.tag = tag
        self.rng = random.Random(seed)
        self.reported: list[str] = []
        self.outcomes = []
        self.running = True

    def match(self):
        a, b = self.rng.sample(range(self.entries), 2)
        match_id = f"{self.tag}-{len(self.reported)}"
        self.reported.append(match_id)
        teams = [[Player(player_id(a), "a")], [Player(player_id(b), "b")]]
        return match_id, teams

    async def reporter(self, budget: list[int]) -> None:
        while self.running and budget[0] > 0:
            budget[0] -= 1
            match_id, teams = self.match()
            self.outcomes.append(await self.ladder.report(match_id, teams))

    async def run(self, count: int, in_flight: int) -> float:
        """Report C{count} results, C{in_flight} at a time; the seconds it took."""
        budget = [count]
        started = time.perf_counter()
        await defer.gatherResults(
            [defer.ensureDeferred(self.reporter(budget)) for _ in range(in_flight)]
        )
        return time.perf_counter() - started


def rate_only_per_s(rater: Rater, count: int) -> float:
    """Ratings computed per second by openskill alone, in process: the ceiling of results/s."""
    rng = random.Random(2)
    pairs = [
        ((rng.gauss(25, 6), rng.uniform(2, 8)), (rng.gauss(25, 6), rng.uniform(2, 8)))
        for _ in range(count)
    ]
    started = time.perf_counter()
    for a, b in pairs:
        rater.rate([[a], [b]])
    return count / (time.perf_counter() - started)


async def rollover_under_results(
    reactor, ladder: Ladder, store, entries: int, results: int
) -> dict:
    """Roll the season over while results stream in; its time and what became of them."""
    stream = Reporters(ladder, entries, "roll", 3)
    budget = [max(results, 200)]
    reporters = [defer.ensureDeferred(stream.reporter(budget)) for _ in range(REPORTERS)]
    while len(stream.outcomes) < budget[0] // 4 + 20:
        await task.deferLater(reactor, 0.005, lambda: None)
    season = await ladder.season()
    started = time.perf_counter()
    new_season = await ladder.rollover(season)
    seconds = time.perf_counter() - started
    await defer.gatherResults(reporters)
    logged = []
    for s in (season, new_season):
        logged += [msgpack.unpackb(b)["match"] for b in await store.ladder_matches(LADDER, s)]
    seen = set(logged)
    in_new = sum(1 for o in stream.outcomes if o.season == new_season)
    return {
        "rollover_s": seconds,
        "rollover_results": len(stream.reported),
        "rollover_results_after": in_new,
        "rollover_lost": len(set(stream.reported) - seen),
        "rollover_doubled": len(logged) - len(seen),
    }


def progress(message: str) -> None:
    print(f"ladder: {message}", file=sys.stderr, flush=True)


async def bench_backend(reactor, backend: str, store, ladder: Ladder, raw, args, figures) -> None:
    entries = args.entries
    rng = random.Random(4)
    figures[f"{backend}_fill_s"] = await fill(ladder, store, backend, entries)
    progress(f"{backend}: {entries} entries filled in {figures[f'{backend}_fill_s']:.1f} s")
    if backend == "redis":
        queries = args.queries
        reads = await board_reads(ladder, entries, queries, rng)
        baseline = await redis_raw_reads(raw, entries, queries, rng, store.prefix)
    else:
        queries = args.sqlite_queries
        reads = await board_reads(ladder, entries, queries, rng)
        baseline = sqlite_raw_reads(store.path, entries, queries, rng)
    figures[f"{backend}_queries"] = queries
    progress(f"{backend}: board reads done")
    for name in ("rank", "around", "top"):
        summary(figures, f"{backend}_{name}", reads[name])
        summary(figures, f"{backend}_raw_{name}", baseline[name])
    summary(figures, f"{backend}_raw_roundtrip", baseline["roundtrip"])
    count = args.results if backend == "redis" else args.sqlite_results
    figures[f"{backend}_results"] = count
    results = Reporters(ladder, entries, "rate", 5)
    seconds = await results.run(count, IN_FLIGHT)
    figures[f"{backend}_results_per_s"] = count / seconds
    progress(f"{backend}: {count} results in {seconds:.1f} s")
    rollover = await rollover_under_results(reactor, ladder, store, entries, count)
    for key, value in rollover.items():
        figures[f"{backend}_{key}"] = value
    figures[f"{backend}_rollover_ms"] = figures.pop(f"{backend}_rollover_s") * 1000


def write_config(directory: str, port: int) -> str:
    path = os.path.join(directory, "mmo.toml")
    with open(path, "w") as f:
        f.write(
            '[deployment]\nname = "bench"\n'
            f'[redis]\nhost = "127.0.0.1"\nport = {port}\nprefix = "bench"\n'
            f'[store]\nbackend = "redis"\n[ladders.{LADDER}]\n'
            '[processes.zone-1]\nkind = "zone"\n'
        )
    return path


async def main(reactor, args) -> None:
    if shutil.which("redis-server") is None:
        raise SystemExit(
            "bench/ladder.py needs redis-server on the PATH (apt-get install redis-server)"
        )
    directory = tempfile.mkdtemp(prefix="mmo-bench-ladder-")
    redis = RedisServer(os.path.join(directory, "redis"))
    figures = {"entries": args.entries}
    try:
        redis.start()
        conf = mmo_config.load(write_config(directory, redis.port))
        section = conf.ladders[LADDER]
        if "redis" in args.backends:
            store = RedisStore(conf, reactor)
            await store.start()
            raw = await connect_redis(
                conf, reactor, pool=False, charset=None, convert_numbers=False
            )
            try:
                ladder = Ladder(section, store, reactor)
                await bench_backend(reactor, "redis", store, ladder, raw, args, figures)
            finally:
                await raw.disconnect()
                await store.stop()
        if "sqlite" in args.backends:
            store = SQLiteStore(os.path.join(directory, "ladder.sqlite3"), reactor)
            await store.start()
            try:
                ladder = Ladder(section, store, reactor)
                await bench_backend(reactor, "sqlite", store, ladder, None, args, figures)
            finally:
                await store.stop()
    finally:
        redis.stop()
        shutil.rmtree(directory, ignore_errors=True)
    figures["rate_only_per_s"] = rate_only_per_s(Rater.from_section(section), 20_000)
    figures["target_p99_ms"] = TARGET_P99_MS
    figures["target_results_per_s"] = TARGET_RESULTS_PER_S
    figures["target_rollover_ms"] = TARGET_ROLLOVER_S * 1000
    if "redis" not in args.backends:
        report(figures, args.json)
        return
    figures["redis_meets_targets"] = (
        figures["redis_rank_p99_ms"] < TARGET_P99_MS
        and figures["redis_around_p99_ms"] < TARGET_P99_MS
        and figures["redis_results_per_s"] >= TARGET_RESULTS_PER_S
        and figures["redis_rollover_ms"] < TARGET_ROLLOVER_S * 1000
        and figures["redis_rollover_lost"] == 0
    )
    report(figures, args.json)


if __name__ == "__main__":
    p = parser(__doc__.strip().splitlines()[0])
    p.add_argument("--entries", type=int, default=1_000_000, help="rows on the board")
    p.add_argument("--queries", type=int, default=2000, help="reads of each kind, on Redis")
    p.add_argument(
        "--sqlite-queries",
        type=int,
        default=50,
        help="reads of each kind on SQLite (a rank there counts the entries ahead: slower)",
    )
    p.add_argument("--results", type=int, default=4000, help="results to apply, on Redis")
    p.add_argument(
        "--sqlite-results",
        type=int,
        default=1000,
        help="results to apply on SQLite (each a transaction synced to disk: slower)",
    )
    p.add_argument(
        "--backends",
        type=lambda text: text.split(","),
        default=["redis", "sqlite"],
        help="the stores to measure: redis,sqlite",
    )
    p.add_argument("--quick", action="store_true", help="a tiny run (for the tests)")
    arguments = p.parse_args()
    if arguments.quick:
        arguments.entries, arguments.queries, arguments.results = 2000, 100, 200
        arguments.sqlite_queries, arguments.sqlite_results = 100, 200
    react(main, arguments, arguments.profile)
