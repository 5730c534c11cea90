"""
The economy's ledger on both stores: postings applied per second, next to
the raw store operation measured in the same run.

    python bench/economy.py [--postings 20000] [--sqlite-postings 2000]
                            [--trades 1000] [--sqlite-trades 200]
                            [--players 1000] [--quick] [--json]

Each backend (a private redis-server with C{appendonly yes} and
C{appendfsync always}, as the store's docs ask for no loss; a SQLite file
in a temporary directory, C{synchronous = FULL}) gets C{--players}
players, each given gold and potions by a faucet (not timed), then:

  - C{--postings} trades of 1 gold against 1 potion between two random
    players (four legs, loads counted, both players' load limits
    checked), through L{mmo.store.IEconomyStore.economy_post}: 64 in
    flight on Redis, one after the other on SQLite (one writer);
  - the baseline: on Redis, as many C{EVALSHA}s of a script that returns
    1 at once, 64 in flight, on a connection like the store's; on
    SQLite, as many transactions of one C{INSERT} each, on a connection
    with the store's pragmas, run directly (no store, no thread).

Then trades' latency: C{--trades} (C{--sqlite-trades}) trades of 1 gold
against 1 potion between random players of L{TRADERS}, through
L{mmo.economy.trades.Trades} (open, two offers, two confirmations: two
deposits into escrow and the settlement), one at a time, each timed whole;
the baseline: as many raw postings like the above, one at a time, each
timed.  Both alternated, their p50 and p99 in milliseconds.

Every posting must be applied and every trade settled (none refused): the
script fails otherwise.
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

from _common import parser, percentile, react, report  # noqa: E402
from twisted.internet import defer  # noqa: E402

from mmo import config as mmo_config  # noqa: E402
from mmo.economy.economy import Economy  # noqa: E402
from mmo.economy.holdings import Holding  # noqa: E402
from mmo.economy.trades import State, Trades  # noqa: E402
from mmo.redis import connect_redis  # noqa: E402
from mmo.store.common_economy import Leg, Posted, Posting  # noqa: E402
from mmo.store.redis import RedisStore  # noqa: E402
from mmo.store.sqlite import SQLiteStore  # noqa: E402
from tests.redis import RedisServer  # noqa: E402

#: Postings in flight on Redis.
IN_FLIGHT = 64
#: The target on a 2-core machine, Redis.
TARGET_POSTINGS_PER_S = 5000.0
#: The target of a trade's p99 on a 2-core machine, Redis, milliseconds.
TARGET_TRADE_P99_MS = 20.0
#: Players the trades are between (given gold and potions by the economy).
TRADERS = 100

GOLD, POTION = "c:gold", "i:potion"
#: What each player starts with, and the load limit each posting checks.
START_GOLD, START_POTIONS, MAX_LOAD = 10**9, 10**6, 10**9


def player(n: int) -> str:
    return f"player:p{n:06d}"


def potions(account: str, amount: int) -> Leg:
    return Leg(account, POTION, amount, weight=1, stack=20)


def start_posting(n: int) -> Posting:
    who = player(n)
    legs = (
        Leg("faucet:start", GOLD, -START_GOLD),
        Leg(who, GOLD, START_GOLD),
        potions("faucet:start", -START_POTIONS),
        potions(who, START_POTIONS),
    )
    return Posting(f"start-{n}", "start", legs, 0.0)


def trades(players: int, count: int, seed: int) -> list[Posting]:
    """C{count} trades of 1 gold for 1 potion between random players."""
    rng = random.Random(seed)
    postings = []
    for n in range(count):
        a, b = (player(i) for i in rng.sample(range(players), 2))
        legs = (Leg(a, GOLD, -1), Leg(b, GOLD, 1), potions(b, -1), potions(a, 1))
        limits = ((a, MAX_LOAD), (b, MAX_LOAD))
        postings.append(Posting(f"trade-{seed}-{n}", "trade", legs, float(n), limits=limits))
    return postings


async def in_flight(calls, width: int) -> tuple[float, list]:
    """Run C{calls} (functions giving a Deferred), C{width} at a time: the seconds, the results."""
    pending = iter(calls)
    results = []

    async def worker():
        for call in pending:
            results.append(await call())

    started = time.perf_counter()
    await defer.gatherResults([defer.ensureDeferred(worker()) for _ in range(width)])
    return time.perf_counter() - started, results


async def postings_per_s(store, postings, width: int) -> float:
    seconds, results = await in_flight([lambda p=p: store.economy_post(p) for p in postings], width)
    refused = [r for r in results if r.status is not Posted.APPLIED]
    if refused:
        raise SystemExit(f"{len(refused)} postings not applied, e.g. {refused[0]}")
    return len(postings) / seconds


async def fill(store, players: int, width: int) -> None:
    calls = [lambda n=n: store.economy_post(start_posting(n)) for n in range(players)]
    await in_flight(calls, width)


def economy_section(directory: str):
    """An economy of gold and potions, for the trades."""
    with open(os.path.join(directory, "items.toml"), "w") as f:
        f.write('[[items]]\nid = "potion"\nname = "Potion"\nstackable = true\nmax_stack = 20\n')
    economy = (
        f'[economy]\nenabled = true\nitems = "items.toml"\ninventory_limit = {MAX_LOAD}\n'
        "[economy.currencies.gold]\n"
    )
    return mmo_config.load(write_config(directory, extra=economy)).economy


async def traders(store, reactor, directory: str) -> Trades:
    """The trades over the store, their players given gold and potions (not timed)."""
    economy = Economy(economy_section(directory), store, reactor)
    for n in range(TRADERS):
        await economy.rewards.reward(
            f"t{n}", f"trader-{n}", "start", {"gold": START_GOLD}, {"potion": 10**5}
        )
    return Trades(economy, reactor)


async def trade_ms(trades: Trades, count: int, seed: int) -> list[float]:
    """Each of C{count} trades' milliseconds, one at a time."""
    rng = random.Random(seed)
    times = []
    for _ in range(count):
        a, b = (f"t{n}" for n in rng.sample(range(TRADERS), 2))
        started = time.perf_counter()
        trade = trades.open(a, b)
        await trades.offer(trade.id, a, Holding({"gold": 1}))
        version = await trades.offer(trade.id, b, Holding(items={"potion": 1}))
        await trades.confirm(trade.id, a, version)
        await trades.confirm(trade.id, b, version)
        times.append((time.perf_counter() - started) * 1000)
        if trade.state is not State.SETTLED:
            raise SystemExit(f"trade {trade.id} not settled: {trade.state}")
    return times


async def posting_ms(store, postings) -> list[float]:
    """Each posting's milliseconds, one at a time."""
    times = []
    for posting in postings:
        started = time.perf_counter()
        result = await store.economy_post(posting)
        times.append((time.perf_counter() - started) * 1000)
        if result.status is not Posted.APPLIED:
            raise SystemExit(f"posting not applied: {result}")
    return times


async def trade_latency(backend, store, reactor, directory, args, figures) -> None:
    """Trades and raw postings, alternated: their p50 and p99, milliseconds."""
    manager = await traders(store, reactor, directory)
    count = args.trades if backend == "redis" else args.sqlite_trades
    trade_times, posting_times = [], []
    for repeat in range(args.repeats):
        trade_times += await trade_ms(manager, count, repeat)
        # Seeds apart from the postings' runs: new keys.
        posting_times += await posting_ms(store, trades(args.players, count, 1000 + repeat))
    figures[f"{backend}_trades"] = count
    for name, times in (("trade", trade_times), ("raw_posting", posting_times)):
        for label, fraction in (("p50", 0.5), ("p99", 0.99)):
            figures[f"{backend}_{name}_{label}_ms"] = percentile(times, fraction)
    progress(f"{backend}: trade p99 {figures[f'{backend}_trade_p99_ms']:.2f} ms")


async def redis_raw_per_s(raw, count: int) -> float:
    await raw.eval("return 1", [], [])
    seconds, _ = await in_flight([lambda: raw.eval("return 1", [], [])] * count, IN_FLIGHT)
    return count / seconds


def sqlite_raw_per_s(path: str, count: int) -> float:
    """Transactions of one INSERT each, on the store's pragmas, directly."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE raw (n INTEGER PRIMARY KEY, data BLOB NOT NULL)")
    started = time.perf_counter()
    for n in range(count):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO raw (n, data) VALUES (?, ?)", (n, b"x" * 64))
        conn.execute("COMMIT")
    seconds = time.perf_counter() - started
    conn.close()
    return count / seconds


def progress(message: str) -> None:
    print(f"economy: {message}", file=sys.stderr, flush=True)


def write_config(directory: str, port: int | None = None, extra: str = "") -> str:
    """A config of the Redis store on C{port} (none if C{None}), and C{extra}."""
    store = (
        f'[redis]\nhost = "127.0.0.1"\nport = {port}\nprefix = "bench"\n'
        '[store]\nbackend = "redis"\n'
        if port
        else ""
    )
    path = os.path.join(directory, "mmo.toml" if port else "economy.toml")
    with open(path, "w") as f:
        f.write(f'[deployment]\nname = "bench"\n{store}[processes.zone-1]\nkind = "zone"\n{extra}')
    return path


async def alternated(backend, baseline, args, figures, measure, raw) -> None:
    """
    C{measure(repeat)} and C{raw(repeat)} (coroutines giving a rate),
    alternated C{args.repeats} times, the medians of each kept: the
    machine is shared.
    """
    runs, raws = [], []
    for repeat in range(args.repeats):
        runs.append(await measure(repeat))
        raws.append(await raw(repeat))
    count = args.postings if backend == "redis" else args.sqlite_postings
    figures[f"{backend}_postings"] = count
    figures[f"{backend}_postings_per_s"] = percentile(runs, 0.5)
    figures[baseline] = percentile(raws, 0.5)
    progress(f"{backend}: {figures[f'{backend}_postings_per_s']:.0f} postings/s")


async def bench_redis(reactor, directory, args, figures) -> None:
    redis = RedisServer(os.path.join(directory, "redis"), appendonly=True)
    redis.start()
    try:
        conf = mmo_config.load(write_config(directory, redis.port))
        store = RedisStore(conf, reactor)
        await store.start()
        raw = await connect_redis(conf, reactor, pool=True, charset=None, convert_numbers=False)
        try:
            await fill(store, args.players, IN_FLIGHT)
            await alternated(
                "redis",
                "redis_raw_evalsha_per_s",
                args,
                figures,
                lambda repeat: postings_per_s(
                    store, trades(args.players, args.postings, repeat), IN_FLIGHT
                ),
                lambda repeat: redis_raw_per_s(raw, args.postings),
            )
            await trade_latency("redis", store, reactor, directory, args, figures)
        finally:
            await raw.disconnect()
            await store.stop()
    finally:
        redis.stop()


async def bench_sqlite(reactor, directory, args, figures) -> None:
    store = SQLiteStore(os.path.join(directory, "economy.sqlite3"), reactor)
    await store.start()
    try:
        await fill(store, args.players, 1)
        count = args.sqlite_postings

        async def raw_run(repeat):
            return sqlite_raw_per_s(os.path.join(directory, f"raw-{repeat}.sqlite3"), count)

        await alternated(
            "sqlite",
            "sqlite_raw_insert_per_s",
            args,
            figures,
            lambda repeat: postings_per_s(store, trades(args.players, count, repeat), 1),
            raw_run,
        )
        await trade_latency("sqlite", store, reactor, directory, args, figures)
    finally:
        await store.stop()


async def main(reactor, args) -> None:
    if shutil.which("redis-server") is None:
        raise SystemExit(
            "bench/economy.py needs redis-server on the PATH (apt-get install redis-server)"
        )
    directory = tempfile.mkdtemp(prefix="mmo-bench-economy-")
    figures = {"players": args.players, "repeats": args.repeats}
    try:
        await bench_redis(reactor, directory, args, figures)
        await bench_sqlite(reactor, directory, args, figures)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    figures["target_postings_per_s"] = TARGET_POSTINGS_PER_S
    figures["redis_meets_target"] = figures["redis_postings_per_s"] >= TARGET_POSTINGS_PER_S
    figures["target_trade_p99_ms"] = TARGET_TRADE_P99_MS
    figures["redis_trade_meets_target"] = figures["redis_trade_p99_ms"] < TARGET_TRADE_P99_MS
    report(figures, args.json)


if __name__ == "__main__":
    p = parser(__doc__.strip().splitlines()[0])
    p.add_argument("--postings", type=int, default=20_000, help="postings timed, on Redis")
    p.add_argument(
        "--sqlite-postings",
        type=int,
        default=2000,
        help="postings timed on SQLite (each a transaction synced to disk: slower)",
    )
    p.add_argument("--trades", type=int, default=1000, help="trades timed per run, on Redis")
    p.add_argument("--sqlite-trades", type=int, default=200, help="trades timed per run, SQLite")
    p.add_argument("--players", type=int, default=1000, help="players trading")
    p.add_argument("--repeats", type=int, default=3, help="alternated runs; medians reported")
    p.add_argument("--quick", action="store_true", help="a tiny run (for the tests)")
    arguments = p.parse_args()
    if arguments.quick:
        arguments.postings, arguments.sqlite_postings, arguments.players = 500, 100, 50
        arguments.trades, arguments.sqlite_trades = 30, 10
        arguments.repeats = 1
    react(main, arguments, arguments.profile)
