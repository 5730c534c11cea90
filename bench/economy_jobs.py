"""
The economy's jobs on both stores: what a daily reward run and a
money-supply metrics run cost, next to the raw store operations they are
made of, measured in the same run.

    python bench/economy_jobs.py [--players 2000] [--postings 20000] [--quick] [--json]

Each backend (a private redis-server with C{appendonly yes} and
C{appendfsync always}; a SQLite file in a temporary directory,
C{synchronous = FULL}) gets C{--players} players, each given gold (not
timed), then:

  - C{daily}: one run of L{mmo.economy.daily.pay_daily} paying every
    player 1 gold (one posting each, one after the other); the baseline:
    as many reward postings of the same legs straight to
    C{economy_post}, one after the other.  Milliseconds per player.
  - C{metrics}: C{--postings} trades between the players (not timed),
    then one run of L{mmo.economy.supply.SupplyMetrics.compute} over them
    and the players' balances; the baseline: reading the same postings
    and holders page by page, without computing.  Seconds per run.
"""

from __future__ import annotations

import os
import random
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _common import parser, react, report  # noqa: E402
from twisted.internet import task  # noqa: E402

from mmo import config as mmo_config  # noqa: E402
from mmo.bus.memory import MemoryBus  # noqa: E402
from mmo.economy import supply  # noqa: E402
from mmo.economy.economy import Economy  # noqa: E402
from mmo.jobs.build import config_jobs  # noqa: E402
from mmo.jobs.job import Run  # noqa: E402
from mmo.jobs.scheduler import Scheduler  # noqa: E402
from mmo.store.common_economy import Leg, Posted, Posting  # noqa: E402
from mmo.store.redis import RedisStore  # noqa: E402
from mmo.store.sqlite import SQLiteStore  # noqa: E402
from tests.redis import RedisServer  # noqa: E402

CONFIG = """[deployment]
name = "bench"
{store}
[economy]
enabled = true
metrics_interval = 60.0

[economy.currencies.gold]
start = 1000000

[jobs.daily]
schedule = "@daily"
handler = "mmo.economy.daily:pay_daily"
kind = "lobby"
args = {{ currencies = {{ gold = 1 }} }}

[processes.lobby]
kind = "lobby"
"""


def write_config(directory: str, port: int | None) -> str:
    store = (
        f'[redis]\nhost = "127.0.0.1"\nport = {port}\nprefix = "bench"\n[store]\nbackend = "redis"'
        if port
        else ""
    )
    path = os.path.join(directory, "redis.toml" if port else "sqlite.toml")
    with open(path, "w") as f:
        f.write(CONFIG.format(store=store))
    return path


def progress(message: str) -> None:
    print(f"economy_jobs: {message}", file=sys.stderr, flush=True)


async def posted(store, posting: Posting) -> None:
    result = await store.economy_post(posting)
    if result.status is not Posted.APPLIED:
        raise SystemExit(f"posting not applied: {result}")


async def daily(backend, conf, store, reactor, players, figures) -> None:
    """A daily run, and as many raw reward postings: milliseconds per player."""
    (job,) = config_jobs(conf, "lobby")
    bus = MemoryBus(reactor=reactor)
    runner = Scheduler([job], store, bus, "lobby", reactor, conf).runners["daily"]
    started = time.perf_counter()
    counts = await job.handler(Run(job, job.run_id(0.0), 0.0, None, runner))
    run_seconds = time.perf_counter() - started
    if counts != {"paid": players, "unpaid": 0}:
        raise SystemExit(f"the daily run paid {counts}, not {players} players")
    started = time.perf_counter()
    for n in range(players):
        legs = (Leg("faucet:daily", "c:gold", -1), Leg(f"player:p{n}", "c:gold", 1))
        await posted(store, Posting(f"raw-daily-{n}", "daily", legs, 0.0))
    raw_seconds = time.perf_counter() - started
    await bus.stop()
    figures[f"{backend}_daily_ms_per_player"] = run_seconds / players * 1000
    figures[f"{backend}_raw_reward_posting_ms"] = raw_seconds / players * 1000
    progress(f"{backend}: daily {run_seconds / players * 1000:.3f} ms per player")


async def metrics(backend, conf, store, players, count, figures) -> None:
    """A metrics run over C{count} postings, and reading them raw: seconds."""
    clock = task.Clock()
    job = supply.SupplyMetrics(conf.economy, store, clock)
    await job.compute()
    rng = random.Random(1)
    for n in range(count):
        a, b = rng.sample(range(players), 2)
        legs = (Leg(f"player:p{a}", "c:gold", -1), Leg(f"player:p{b}", "c:gold", 1))
        await posted(store, Posting(f"trade-{n}", "trade", legs, float(n)))
    clock.advance(60)
    started = time.perf_counter()
    await job.compute()
    run_seconds = time.perf_counter() - started
    started = time.perf_counter()
    baseline = (await store.read_log(supply.LOG, 2))[0]["seq"]
    read = await job.read_postings(baseline)
    holders = await job.read_balances("gold")
    raw_seconds = time.perf_counter() - started
    if len(read) != count or len(holders) < players:
        raise SystemExit(f"read {len(read)} postings and {len(holders)} holders")
    figures[f"{backend}_metrics_run_s"] = run_seconds
    figures[f"{backend}_metrics_raw_reads_s"] = raw_seconds
    progress(f"{backend}: metrics run {run_seconds:.3f} s, its reads {raw_seconds:.3f} s")


async def bench(backend, path, store, reactor, args, figures) -> None:
    conf = mmo_config.load(path)
    economy = Economy(conf.economy, store, reactor)
    for n in range(args.players):
        await economy.wallets.start(f"p{n}")
    await daily(backend, conf, store, reactor, args.players, figures)
    await metrics(backend, conf, store, args.players, args.postings, figures)


async def main(reactor, args) -> None:
    if shutil.which("redis-server") is None:
        raise SystemExit("bench/economy_jobs.py needs redis-server on the PATH")
    directory = tempfile.mkdtemp(prefix="mmo-bench-economy-jobs-")
    figures = {"players": args.players, "postings": args.postings}
    try:
        redis = RedisServer(os.path.join(directory, "redis"), appendonly=True)
        redis.start()
        try:
            path = write_config(directory, redis.port)
            store = RedisStore(mmo_config.load(path), reactor)
            await store.start()
            try:
                await bench("redis", path, store, reactor, args, figures)
            finally:
                await store.stop()
        finally:
            redis.stop()
        path = write_config(directory, None)
        store = SQLiteStore(os.path.join(directory, "economy.sqlite3"), reactor)
        await store.start()
        try:
            await bench("sqlite", path, store, reactor, args, figures)
        finally:
            await store.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    report(figures, args.json)


if __name__ == "__main__":
    p = parser(__doc__.strip().splitlines()[0])
    p.add_argument("--players", type=int, default=2000, help="players paid and holding gold")
    p.add_argument("--postings", type=int, default=20_000, help="postings of one metrics run")
    p.add_argument("--quick", action="store_true", help="a tiny run (for the tests)")
    arguments = p.parse_args()
    if arguments.quick:
        arguments.players, arguments.postings = 30, 100
    react(main, arguments, arguments.profile)
