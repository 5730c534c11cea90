"""
Tests of C{mmo-store} with the economy's ledger: a dump of either backend
restored into the other (and into its own) holds the same postings (with
their numbers, keys and digests), balances, loads and unique items, and
goes on alike; a bad ledger in a dump is refused with nothing written.
"""

from __future__ import annotations

import json
import os

from twisted.internet import defer
from twisted.trial import unittest

from mmo.economy.economy import Economy
from mmo.economy.holdings import Holding
from mmo.store import StoreError
from mmo.store.common_economy import Leg, Posted, Posting
from tests import test_backup_ladder as ladder_backup
from tests.test_economy_domain import economy_section
from tests.test_economy_store import audit


class EconomyBackupTests(unittest.TestCase):
    setUp = ladder_backup.LadderBackupTests.setUp
    new_config = ladder_backup.LadderBackupTests.new_config
    open_store = ladder_backup.LadderBackupTests.open_store
    run_main = ladder_backup.LadderBackupTests.run_main

    async def populate(self, store):
        """Start credits, shopping, loot with unique items, and a settled trade."""
        economy = Economy(economy_section(self, "slots", 10), store, self.clock)
        await economy.start()
        for player in "ab":
            await economy.wallets.start(player)
        await economy.shops.buy("r1", "a", "smith", "potion", 3)
        await economy.shops.buy("r2", "b", "smith", "sword")
        await economy.rewards.reward("a", "loot:z:wolf:1", "loot", {"gems": 4}, {"sword": 2})
        swords = sorted((await economy.inventories.inventory("a")).uniques)
        sides = {
            "a": ("a", Holding({"gems": 4}, uniques={swords[0]})),
            "b": ("b", Holding({"gold": 150})),
        }
        for side, (player, holding) in sides.items():
            await economy.transfers.deposit("t1", side, player, holding)
        await economy.transfers.settle("t1", sides)

    async def state(self, store):
        """What the ledger's reads show: postings, balances, loads, unique items."""
        postings = await store.economy_postings(0, 1000)
        accounts = sorted({leg.account for entry in postings for leg in entry.legs})
        balances = {a: await store.economy_balances(a) for a in accounts}
        loads = {a: await store.economy_load(a) for a in accounts}
        uniques = sorted({leg.asset for e in postings for leg in e.legs if leg.asset[0] == "u"})
        items = {asset: await store.economy_item(asset) for asset in uniques}
        histories = {a: await store.economy_history(a, 1000) for a in accounts}
        return postings, balances, loads, items, histories

    async def round_trip(self, source_backend, target_backend):
        source = self.new_config(source_backend)
        store = await self.open_store(source)
        await self.populate(store)
        out = os.path.abspath(self.mktemp())
        stdout = await self.run_main("dump", "--config", source, out)
        self.assertIn("a ledger of 10 postings", stdout)
        with open(out) as f:
            document = json.load(f)
        self.assertEqual(len(document["economy"]["items"]), 3)

        target = self.new_config(target_backend)
        stdout = await self.run_main("restore", "--config", target, out)
        self.assertIn("a ledger of 10 postings", stdout)
        restored = await self.open_store(target)
        expected = await self.state(store)
        self.assertEqual(await self.state(restored), expected)
        self.assertEqual(await audit(restored), [])
        self.assertEqual(expected[2]["player:a"], 2)  # a stack of potions, a sword

        # Both go on alike: a retried key is a duplicate, a new posting numbered next.
        first = expected[0][0]
        for each in (store, restored):
            again = await each.economy_post(Posting(first.key, first.reason, first.legs, 0.0))
            self.assertEqual((again.status, again.seq), (Posted.DUPLICATE, 1))
            legs = (Leg("player:a", "c:gold", -5), Leg("player:b", "c:gold", 5))
            posted = await each.economy_post(Posting("next", "gift", legs, 1.0))
            self.assertEqual((posted.status, posted.seq), (Posted.APPLIED, 11))
        return store, restored

    def test_sqlite_to_redis(self):
        return defer.ensureDeferred(self.round_trip("sqlite", "redis"))

    def test_redis_to_sqlite(self):
        return defer.ensureDeferred(self.round_trip("redis", "sqlite"))

    async def check_same_dump(self, backend):
        store, restored = await self.round_trip(backend, backend)
        self.assertEqual(await restored.dump(), await store.dump())

    def test_sqlite_same_dump(self):
        """Within a backend, the dump of a restored store is the dump it was restored from."""
        return defer.ensureDeferred(self.check_same_dump("sqlite"))

    def test_redis_same_dump(self):
        return defer.ensureDeferred(self.check_same_dump("redis"))

    async def check_bad_ledgers(self):
        source = await self.open_store(self.new_config("sqlite"))
        await self.populate(source)
        good = await source.dump()

        def changed(change):
            dump = json.loads(json.dumps({**good, "economy": dict(good["economy"], items=[])}))
            dump["economy"]["items"] = [dict(i) for i in good["economy"]["items"]]
            change(dump["economy"])
            return dump

        def set_item(field, value):
            return lambda ledger: ledger["items"][0].__setitem__(field, value)

        cases = {
            "balances are not": lambda e: e["balances"][0].__setitem__(2, 1),
            "loads are not": lambda e: e["loads"].pop(),
            "digest is not": lambda e: e["postings"][1].__setitem__("digest", "0" * 32),
            "numbered 1 to n": lambda e: e["postings"].pop(0),
            "applied twice": lambda e: e["postings"][2].__setitem__("key", e["postings"][1]["key"]),
            "do not sum to zero": lambda e: e["postings"][1]["legs"][0].__setitem__(2, 1),
            "leave out items": lambda e: e["items"].pop(),
            "not issued by": set_item("seq", 1),
            "not msgpack": set_item("props", b"\xc1"),
            "exactly": lambda e: e.pop("loads"),
        }
        for backend in ("sqlite", "redis"):
            for fragment, change in cases.items():
                target = await self.open_store(self.new_config(backend))
                with self.assertRaisesRegex(StoreError, fragment):
                    await target.restore(changed(change))
                self.assertEqual(await target.economy_postings(0, 10), [])
                self.assertEqual(await target.economy_balances("player:a"), {})
            # A store with only a ledger is not empty.
            target = await self.open_store(self.new_config(backend))
            await target.restore(good)
            with self.assertRaisesRegex(StoreError, "not empty"):
                await target.restore(good)

    def test_bad_ledgers(self):
        """Each mistake is named, and nothing of the dump is written."""
        return defer.ensureDeferred(self.check_bad_ledgers())
