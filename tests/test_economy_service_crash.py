"""
The economy's service under crashes, on both backends: players connected
through the gateway of a real deployment trade (offers of currency,
stackable and unique items, confirmations, cancels), buy and sell (each
request asked again with its id after C{unavailable} or a cut connection),
and are paid a game rule's rewards (posted from this process on the same
store under an event key, asked again after a failure)
(C{tests/economy_players.py}), while the process that owns the trades is
SIGKILLed at random moments (seeded) and started again, as the manager
would, recovering the escrows; on Redis, redis-server is SIGKILLed too at
some of them (C{appendonly yes}, C{appendfsync always}) and started again
from its append-only file.

After every recovery, with the players paused: the ledger's invariants
(L{tests.test_economy_store.audit}: no unique item doubled or lost, every
asset summing to zero, so that each currency's supply is what its faucets
gave less what its sinks took, every acknowledged purchase, sale and reward
applied once under the number the player was given), no escrow holding
anything, no posting that no player asked for, and every trade a player
was told was settled settled in the ledger as he saw it.

C{MMO_ECONOMY_SEED} runs a seed again; C{MMO_ECONOMY_CRASH_LONG=1} runs
many more kills and operations.
"""

from __future__ import annotations

import os
import random

from twisted.internet import defer, reactor
from twisted.trial import unittest

from mmo import tls
from mmo.economy.economy import Economy
from mmo.economy.holdings import event_key
from mmo.store import make_store
from mmo.store.common_economy import MAX_READ
from mmo.unavailable import BackendUnavailable
from tests import economy_players
from tests.economy_players import ECONOMY, ITEMS, SHOPS, Players
from tests.support import (
    FAST_HASH,
    ON_REDIS,
    STANDALONE,
    bounded,
    deployment,
    sleep,
    spawn_cluster,
    until,
)
from tests.test_economy_store import audit
from tests.test_login_e2e import started
from tests.test_twistd import spawn

LONG = os.environ.get("MMO_ECONOMY_CRASH_LONG") == "1"
#: Kills per backend, and operations in all.
KILLS = 30 if LONG else 5
OPERATIONS = 3000 if LONG else 500
#: Players, and operations run at once.
NAMES = tuple(f"trader{n}" for n in range(6))
WORKERS = 3

#: Players who ask as fast as the deployment answers: no flood limit in the way.
UNLIMITED = "[gateway]\nflood_rate = 10000.0\nflood_burst = 10000\n"

#: What the process serving trades logs once it recovered the escrows.
SERVING = r"economy: serving trades \(token \d+\); (\d+) escrows given back"

#: The posting keys' first parts, and which come from a player's request.
REQUESTED = ("buy", "sell", "reward")
GIVEN = ("start", "stock")


def economy_settings(testcase) -> str:
    """The C{[economy]} section of the players' economy, its data files written."""
    directory = os.path.abspath(testcase.mktemp())
    os.makedirs(directory)
    paths = {}
    for name, text in (("items", ITEMS), ("shops", SHOPS)):
        paths[name] = os.path.join(directory, f"{name}.toml")
        with open(paths[name], "w") as f:
            f.write(text)
    return ECONOMY.format(**paths)


def assets_of(offer: dict) -> dict[str, int]:
    """The ledger's assets and amounts of a trade's offer (as the wire shows it)."""
    assets = {f"c:{name}": amount for name, amount in offer["currencies"].items()}
    assets.update({f"i:{name}": count for name, count in offer["items"].items()})
    assets.update({f"u:{instance}": 1 for instance in offer["uniques"]})
    return {asset: amount for asset, amount in assets.items() if amount}


async def everything(read) -> list:
    """Every row of a paged read, C{read(after)} giving a page after the last row."""
    rows: list = []
    while True:
        page = await read(rows[-1] if rows else None)
        rows += page
        if len(page) < MAX_READ:
            return rows


async def audit_service(store, record) -> list[str]:
    """
    The problems of the ledger after a recovery, with no trade under way:
    L{audit}'s, escrows holding value, postings nobody asked for, settled
    trades not settled as their players saw them.
    """
    problems = await audit(store, acknowledged=record.acknowledged)
    escrows = await store.economy_accounts("escrow", MAX_READ)
    if escrows:
        problems.append(f"escrows hold value after recovery: {escrows}")
    entries = await everything(
        lambda last: store.economy_postings(last.seq if last else 0, MAX_READ)
    )
    for entry in entries:
        family, _, rest = entry.key.partition(":")
        if family in REQUESTED:
            known = entry.key in record.asked
        elif family == "trade":
            known = rest.partition(":")[0] in record.trades
        else:
            known = family in GIVEN
        if not known:
            problems.append(f"posting {entry.seq} {entry.key!r}: nobody asked for it")
    for trade_id, trade in sorted(record.settled.items()):
        expected = {
            f"player:{trade['you']['player']}": assets_of(trade["them"]["offer"]),
            f"player:{trade['them']['player']}": assets_of(trade["you"]["offer"]),
        }
        expected = {account: held for account, held in expected.items() if held}
        if not expected:
            # Nothing offered on either side: nothing to post.
            continue
        settlement = await store.economy_posting(event_key("trade", trade_id, "settle"))
        if settlement is None:
            problems.append(f"trade {trade_id} was said settled; its settlement is not posted")
            continue
        paid: dict[str, dict[str, int]] = {}
        for leg in settlement.legs:
            if leg.account.startswith("player:"):
                paid.setdefault(leg.account, {})[leg.asset] = leg.amount
        if paid != expected:
            problems.append(f"trade {trade_id} settled as {paid}, its players saw {expected}")
    return problems


async def supply(store, currency: str) -> tuple[int, int, int]:
    """C{(supply, given by faucets, taken by sinks)} of C{currency}."""
    holders = await everything(
        lambda last: store.economy_holders(f"c:{currency}", MAX_READ, last[0] if last else None)
    )
    given = -sum(amount for account, amount in holders if account.startswith("faucet:"))
    taken = sum(amount for account, amount in holders if account.startswith("sink:"))
    held = sum(
        amount for account, amount in holders if account.split(":")[0] not in ("faucet", "sink")
    )
    return held, given, taken


async def reachable(store) -> bool:
    """Whether C{store} answers (its connection is up again after a restart of its server)."""
    try:
        await store.economy_balances("faucet:quest")
    except BackendUnavailable:
        return False
    return True


class Standalone:
    """
    The standalone C{mmo} on SQLite and the memory bus: the login server,
    the gateway and the economy are one process, killed whole; its players
    log in again once it is back.
    """

    redis = None

    def __init__(self, testcase):
        self.testcase = testcase

    async def start(self) -> None:
        self.config = deployment(
            self.testcase, STANDALONE, extra=FAST_HASH + UNLIMITED + economy_settings(self.testcase)
        )
        self.ca = tls.ca_path(self.config.deployment.tls_dir)
        await self.recover()

    async def recover(self):
        """Start it again; the process that serves trades again."""
        self.child, self.transport = spawn(self.testcase, self.config.file, "mmo")
        self.port = await started(self.child, "mmo")
        return self.child

    def login_address(self) -> tuple[str, int]:
        return "127.0.0.1", self.port

    async def kill(self, chance: random.Random) -> str:
        """Kill it; what was killed."""
        self.transport.signalProcess("KILL")
        await self.child.whenExited()
        return "mmo"


class RedisCluster:
    """
    A cluster on a private Redis (store and bus, C{appendfsync always}):
    the login server, a gateway and the economy process.  The economy
    process is killed, or redis-server, or both.
    """

    PROCESSES = (
        ("login", "login"),
        ("gateway-1", "gateway"),
        ("economy", "economy"),
    )

    def __init__(self, testcase):
        self.testcase = testcase

    async def start(self) -> None:
        settings = FAST_HASH + UNLIMITED + ON_REDIS + economy_settings(self.testcase)
        self.cluster = await spawn_cluster(self.testcase, self.PROCESSES, settings, appendonly=True)
        self.config, self.ca, self.redis = self.cluster.config, self.cluster.ca, self.cluster.redis
        self.killed: list[str] = []

    def login_address(self) -> tuple[str, int]:
        return "127.0.0.1", self.cluster.ports["login"]

    async def kill(self, chance: random.Random) -> str:
        """
        Kill the economy process, redis-server or both (a moment apart, in
        either order); what was killed.
        """
        self.killed = chance.choice(
            [["economy"], ["economy"], ["redis"], ["redis", "economy"], ["economy", "redis"]]
        )
        for victim in self.killed:
            if victim == "redis":
                self.redis.kill()
                await sleep(chance.uniform(0, 0.2))
            else:
                self.cluster.transports["economy"].signalProcess("KILL")
                await self.cluster.children["economy"].whenExited()
        return " then ".join(self.killed)

    async def recover(self):
        """
        Start again what was killed (redis-server from its append-only
        file); the economy process started again, if it was killed.
        """
        if "redis" in self.killed:
            self.redis.start()
        if "economy" not in self.killed:
            return None
        child, transport = spawn(
            self.testcase, self.config.file, "mmo-economy", "--process", "economy"
        )
        self.cluster.children["economy"], self.cluster.transports["economy"] = child, transport
        await child.whenLogged(r"economy: ready")
        return child


class CrashTestsMixin:
    timeout = 1200 if LONG else 150

    async def test_killed_during_trades(self):
        seed = int(os.environ.get("MMO_ECONOMY_SEED", random.randrange(2**32)))
        chance = random.Random(seed)
        print(f"\nseed {seed} (MMO_ECONOMY_SEED={seed} to run it again)")
        deployed = self.Deployment(self)
        await deployed.start()
        store = make_store(deployed.config, reactor)
        await store.start()
        self.addCleanup(store.stop)
        economy = Economy(deployed.config.economy, store, reactor)
        players = Players(deployed, economy, seed, OPERATIONS, NAMES, WORKERS)
        await players.start()
        self.addCleanup(players.stop)
        finished = players.finished()
        kills = given_back = 0
        killed: dict[str, int] = {}
        for target in sorted(chance.sample(range(OPERATIONS // 20, OPERATIONS * 9 // 10), KILLS)):
            await until(
                lambda target=target: finished.called or players.done >= target,
                timeout=economy_players.RETRY_FOR,
                what=lambda target=target: f"{target} operations done; {players.record.summary()}",
            )
            if finished.called:
                break
            if chance.random() < 0.7:
                # As a trade's first deposit is in escrow, or just after.
                waited = players.deposited().addTimeout(economy_players.RETRY_FOR / 10, reactor)
                await waited.addErrback(lambda failure: failure.trap(defer.TimeoutError))
                await sleep(chance.uniform(0, 0.01))
            else:
                # At a random moment of the operations under way.
                await sleep(chance.uniform(0, 0.3))
            victims = await deployed.kill(chance)
            killed[victims] = killed.get(victims, 0) + 1
            kills += 1
            restarted = await deployed.recover()
            if restarted is not None:
                served = await restarted.whenLogged(SERVING)
                given_back += int(served.group(1))
            await players.pause()
            # Trades served again (after a recovery, if the lease was lost),
            # and this process's store connected again.
            await players.players[0].call("trade.status")
            await until(lambda: reachable(store), what="the store reachable again")
            why = f"seed {seed}, after kill {kills} ({victims})"
            self.assertEqual(await audit_service(store, players.record), [], why)
            players.resume()
        await bounded(finished, 2 * economy_players.RETRY_FOR)
        await players.pause()
        self.assertEqual(await audit_service(store, players.record), [], f"seed {seed}, at the end")
        self.assertGreaterEqual(kills, KILLS, f"seed {seed}: the operations ended first")
        held, given, taken = await supply(store, "gold")
        self.assertEqual(held, given - taken, f"seed {seed}")
        record = players.record
        print(
            f"{kills} kills ({killed}); {given_back} escrows given back by recoveries; "
            f"{len(record.acknowledged)} postings acknowledged, "
            f"{len(record.settled)} trades settled; gold: {held} = {given} given - {taken} "
            f"taken\n{record.summary()}"
        )


class SQLiteStandaloneCrashTests(CrashTestsMixin, unittest.TestCase):
    Deployment = Standalone


class RedisClusterCrashTests(CrashTestsMixin, unittest.TestCase):
    Deployment = RedisCluster
