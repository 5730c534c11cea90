"""
The process the economy's crash test kills: it drives the real store
through a fixed, seeded sequence of rewards, purchases, sales and trades
through escrow, and journals what the store acknowledged, so that when
started again it resumes where it was killed.

    python tests/economy_crash_child.py sqlite PATH SEED OPS JOURNAL
    python tests/economy_crash_child.py redis CONFIG SEED OPS JOURNAL

Operation C{n} is drawn from C{random.Random(f"{seed}-{n}")} and its
postings' keys from C{n}, so a retried operation posts the same postings
under the same keys.  A trade's terms depend on what its players hold, so
they are journaled before its first posting and read back on a retry.
The journal's lines (each written and synced before going on):

  - C{terms N JSON}: trade N's terms;
  - C{ack KEY SEQ}: the store applied KEY (now or before) as SEQ;
  - C{done N}: operation N is over (the next start begins at N + 1).
"""

from __future__ import annotations

import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import defer, task  # noqa: E402

from mmo.store.common_economy import Leg, Posted, Posting, merged  # noqa: E402

PLAYERS = [f"player:p{n}" for n in range(8)]
GOLD = "c:gold"
POTION = "i:potion"
HERB = "i:herb"
VENDOR = "vendor:smith"
#: A potion's weight and stack, and a player's load limit.
POTION_WEIGHT, POTION_STACK, MAX_LOAD = 1, 20, 120
#: The players' credit in gold.
CREDIT = -50
FLOORS = tuple((account, GOLD, CREDIT) for account in PLAYERS)
LIMITS = tuple((account, MAX_LOAD) for account in PLAYERS)


def potions(account: str, amount: int) -> Leg:
    return Leg(account, POTION, amount, POTION_WEIGHT, POTION_STACK)


class Journal:
    """The child's journal: read at start, appended and synced after."""

    def __init__(self, path: str):
        self.terms: dict[int, dict] = {}
        self.done = -1
        if os.path.exists(path):
            with open(path) as f:
                for line in f:
                    if not line.endswith("\n"):
                        break
                    kind, _, rest = line.rstrip("\n").partition(" ")
                    if kind == "terms":
                        n, _, terms = rest.partition(" ")
                        self.terms[int(n)] = json.loads(terms)
                    elif kind == "done":
                        self.done = int(rest)
        self.file = open(path, "a")

    def write(self, line: str) -> None:
        self.file.write(line + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())


class Driver:
    def __init__(self, store, seed: str, journal: Journal):
        self.store = store
        self.seed = seed
        self.journal = journal

    async def post(self, key, reason, legs, at, **extra) -> bool:
        posting = Posting(key, reason, merged(legs), at, floors=FLOORS, limits=LIMITS, **extra)
        result = await self.store.economy_post(posting)
        if result.status is Posted.REFUSED:
            return False
        self.journal.write(f"ack {key} {result.seq}")
        return True

    async def run(self, n: int) -> None:
        rng = random.Random(f"{self.seed}-{n}")
        kind = rng.choices(
            ["reward", "item", "buy", "sell", "restock", "trade"], [3, 2, 3, 1, 1, 3]
        )
        await getattr(self, kind[0])(n, rng)
        self.journal.write(f"done {n}")

    async def reward(self, n, rng):
        who, amount = rng.choice(PLAYERS), rng.randrange(1, 60)
        legs = [Leg("faucet:quest", GOLD, -amount), Leg(who, GOLD, amount)]
        if rng.random() < 0.5:
            legs += [Leg("faucet:quest", HERB, -3), Leg(who, HERB, 3)]
        await self.post(f"reward-{n}", "quest", legs, float(n))

    async def item(self, n, rng):
        who, asset = rng.choice(PLAYERS), f"u:drop-{n}"
        props = {"def": rng.choice(["sword", "shield", "ring"]), "level": rng.randrange(1, 50)}
        legs = [Leg("faucet:loot", asset, -1), Leg(who, asset, 1)]
        await self.post(f"loot-{n}", "loot", legs, float(n), issue={asset: props})

    async def buy(self, n, rng):
        who, count = rng.choice(PLAYERS), rng.randrange(1, 30)
        price, tax = 2 * count, count // 5 + 1
        legs = [
            Leg(who, GOLD, -price - tax),
            Leg(VENDOR, GOLD, price),
            Leg("sink:tax", GOLD, tax),
            potions(VENDOR, -count),
            potions(who, count),
        ]
        await self.post(f"buy-{n}", "shop.buy", legs, float(n))

    async def sell(self, n, rng):
        who, count = rng.choice(PLAYERS), rng.randrange(1, 10)
        legs = [
            potions(who, -count),
            potions("sink:shop", count),
            Leg("faucet:shop", GOLD, -count),
            Leg(who, GOLD, count),
        ]
        await self.post(f"sell-{n}", "shop.sell", legs, float(n))

    async def restock(self, n, rng):
        count = rng.randrange(50, 200)
        legs = [potions("faucet:stock", -count), potions(VENDOR, count)]
        await self.post(f"restock-{n}", "shop.restock", legs, float(n))

    async def terms(self, n, rng) -> dict:
        """Trade n's terms: journaled first, so that a retry offers the same."""
        if n in self.journal.terms:
            return self.journal.terms[n]
        a, b = rng.sample(PLAYERS, 2)
        sides = {}
        for who in (a, b):
            held = await self.store.economy_balances(who)
            items = sorted(asset for asset in held if asset.startswith("u:"))
            offer = {GOLD: rng.randrange(0, 40)}
            if items and rng.random() < 0.7:
                offer[rng.choice(items)] = 1
            if held.get(POTION, 0) > 0 and rng.random() < 0.3:
                offer[POTION] = rng.randrange(1, held[POTION] + 1)
            sides[who] = {asset: amount for asset, amount in offer.items() if amount}
        terms = {"sides": sides, "cancel": rng.random() < 0.15}
        self.journal.write(f"terms {n} {json.dumps(terms)}")
        return terms

    def moves(self, source, target, offer) -> list[Leg]:
        legs = []
        for asset, amount in sorted(offer.items()):
            if asset == POTION:
                legs += [potions(source, -amount), potions(target, amount)]
            else:
                legs += [Leg(source, asset, -amount), Leg(target, asset, amount)]
        return legs

    async def trade(self, n, rng):
        terms = await self.terms(n, rng)
        escrow = f"escrow:trade-{n}"
        (a, offer_a), (b, offer_b) = terms["sides"].items()
        deposited = []
        for who, offer in ((a, offer_a), (b, offer_b)):
            if offer and await self.post(
                f"trade-{n}-in-{who}", "trade.escrow", self.moves(who, escrow, offer), float(n)
            ):
                deposited.append((who, offer))
        everyone = len(deposited) == sum(1 for offer in (offer_a, offer_b) if offer)
        if everyone and not terms["cancel"]:
            legs = self.moves(escrow, b, offer_a) + self.moves(escrow, a, offer_b)
            if legs and await self.post(f"trade-{n}-settle", "trade", legs, float(n)):
                return
        # Cancelled, or one side could not put in its offer (or the other
        # could not take it): each gets back what it put in.
        legs = []
        for who, offer in deposited:
            legs += self.moves(escrow, who, offer)
        if legs and not await self.post(f"trade-{n}-back", "trade.cancel", legs, float(n)):
            raise SystemExit(f"trade {n}: escrow could not give back {deposited}")


def open_store(backend: str, target: str, reactor):
    if backend == "sqlite":
        from mmo.store.sqlite import SQLiteStore

        return SQLiteStore(target, reactor)
    from mmo import config
    from mmo.store.redis import RedisStore

    return RedisStore(config.load(target), reactor)


async def main(reactor, backend, target, seed, ops, journal_path):
    journal = Journal(journal_path)
    store = open_store(backend, target, reactor)
    await store.start()
    driver = Driver(store, seed, journal)
    for n in range(journal.done + 1, int(ops)):
        await driver.run(n)
    journal.write("finished")
    await store.stop()


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, *sys.argv[1:])))
