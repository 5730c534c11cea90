"""
The economy end to end, on a real cluster of twistd processes: a login
server, two gateways, the lobby and an economy process, sharing a private
Redis (the bus; the store on SQLite, then on Redis).

Two players, one admitted on each gateway, get their start credit; one
buys an item, they open a trade and offer the item against currency; one
of them drops (his connection cut, no goodbye) after the offers and before
confirming, resumes on the other gateway, gets the pushes he missed, and
the trade settles: each holds the other's offer, nothing doubled, nothing
lost.  A player who logs out mid-trade cancels it, and the other gets
C{trade.cancelled} (C{why: "left"}) and his deposit back.  The trader bots
shop and trade.  After each, the ledger's invariants hold (the audit of
C{tests/test_economy_crash.py}) and no escrow holds anything.
"""

from __future__ import annotations

import os

from twisted.trial import unittest

from tests.support import FAST_HASH, spawn_cluster, started_store, until, write_config
from tests.test_bot import run_bots
from tests.test_cluster import Player
from tests.test_economy_domain import ITEMS, SHOPS
from tests.test_economy_store import audit

CLUSTER = (
    ("login", "login"),
    ("gateway-1", "gateway"),
    ("gateway-2", "gateway"),
    ("lobby", "lobby"),
    ("economy", "economy"),
)

#: Every player's start credit, in minor units of gold.
START = 1000
SWORD_PRICE = 100

SETTINGS = (
    FAST_HASH
    + """
[bus]
backend = "redis"
heartbeat_interval = 0.5
heartbeat_timeout = 2.0

[gateway]
resume_window = 30.0

[economy.currencies.gold]
decimals = 2
start = 1000
"""
)

TRADE_PUSHES = ("trade.opened", "trade.updated", "trade.settled", "trade.cancelled")


def economy_settings(testcase) -> str:
    """
    The C{[economy]} section, with the item and shop files of the domain's
    tests (L{tests.test_economy_domain}) in a new directory.
    """
    items = write_config(testcase, ITEMS, "items.toml")
    shops = write_config(testcase, SHOPS, "shops.toml")
    return f'[economy]\nenabled = true\nitems = "{os.path.abspath(items)}"\n' + (
        f'shops = "{os.path.abspath(shops)}"\ninventory_limit = 40\n'
    )


class Trader(Player):
    """A player of L{tests.test_cluster} who keeps his trade pushes, in order."""

    def __init__(self, test, name):
        super().__init__(test, name)
        self.pushes: list[dict] = []

    async def connect(self, port):
        client = await super().connect(port)
        for kind in TRADE_PUSHES:
            client.on(kind, self.pushes.append)
        return client

    def request(self, kind: str, **fields):
        return self.client.request(kind, **fields)

    def seen(self, kind: str) -> list[dict]:
        return [push for push in self.pushes if push["t"] == kind]

    async def balance(self) -> int:
        wallet = await self.request("wallet.get")
        return wallet["currencies"]["gold"]["balance"]

    async def drop(self) -> tuple[str, int]:
        """Cut the connection without a goodbye; what resumes the session."""
        resumption = self.client.resumption()
        self.client.transport.abortConnection()
        await self.client.whenClosed()
        return resumption

    async def resume(self, port: int, resumption: tuple[str, int]) -> dict:
        """Resume the session on the gateway of C{port}: the resume reply."""
        client = await self.connect(port)
        token, last_seq = resumption
        reply = await client.request("resume", token=token, last_seq=last_seq)
        self.client = client
        return reply


class EconomyTestsMixin:
    timeout = 180

    #: The C{[store]} section of the cluster.
    store = ""

    async def setUp(self):
        self.cluster = await spawn_cluster(
            self, CLUSTER, SETTINGS + self.store + economy_settings(self)
        )
        self.ca, self.ports = self.cluster.ca, self.cluster.ports

    async def player(self, name: str, gateway: str) -> Trader:
        """C{name}, admitted on C{gateway}, once his start credit is paid."""
        player = await Trader(self, name).join(self.ports[gateway])
        self.addCleanup(lambda: player.client.close())

        async def credited() -> bool:
            return await player.balance() == START

        # Paid as his session starts, beside his first requests.
        await until(credited, what=f"{name}'s start credit")
        return player

    async def check_ledger(self) -> None:
        """
        No escrow holds anything (once the trades that sessions left as they
        ended are refunded), and the ledger's invariants hold.
        """
        store = await started_store(self, self.cluster.config.file)

        async def escrows_empty() -> bool:
            return not await store.economy_accounts("escrow", 1000)

        await until(escrows_empty, what="every escrow empty")
        self.assertEqual(await audit(store), [])

    async def test_trade_across_gateways_with_a_drop_and_resume(self):
        alice = await self.player("Alice", "gateway-1")
        bob = await self.player("Bobby", "gateway-2")

        # Alice buys a sword; the same request again buys nothing more.
        bought = await alice.request("shop.buy", request="alice-1", shop="smith", item="sword")
        self.assertEqual(bought["currencies"]["gold"]["balance"], START - SWORD_PRICE)
        again = await alice.request("shop.buy", request="alice-1", shop="smith", item="sword")
        self.assertEqual(
            (again["seq"], await alice.balance()), (bought["seq"], START - SWORD_PRICE)
        )
        [sword] = (await alice.request("inventory.get"))["uniques"]
        self.assertEqual(sword["item"], "sword")

        # A trade across the two gateways: the sword against 450 gold.
        opened = (await alice.request("trade.open", **{"with": "Bobby"}))["trade"]
        trade = opened["id"]
        self.assertEqual((opened["state"], opened["them"]["name"]), ("open", "Bobby"))
        await until(lambda: bob.seen("trade.opened"))
        self.assertEqual(bob.seen("trade.opened")[0]["trade"]["them"]["name"], "Alice")
        await alice.request("trade.offer", trade=trade, uniques=[sword["id"]])
        offered = (await bob.request("trade.offer", trade=trade, currencies={"gold": 450}))["trade"]
        version = offered["version"]
        self.assertEqual(offered["them"]["offer"]["uniques"], [sword["id"]])
        await until(
            lambda: [p for p in bob.seen("trade.updated") if p["trade"]["version"] == version]
        )

        # Bob drops before confirming; Alice confirms meanwhile.
        resumption = await bob.drop()
        confirmed = (await alice.request("trade.confirm", trade=trade, version=version))["trade"]
        self.assertEqual((confirmed["state"], confirmed["you"]["confirmed"]), ("open", True))

        # Bob resumes on the other gateway and is told what he missed, once.
        before = len(bob.pushes)
        resumed = await bob.resume(self.ports["gateway-1"], resumption)
        self.assertGreaterEqual(resumed["replayed"], 1)
        await until(lambda: any(p["trade"]["them"]["confirmed"] for p in bob.pushes[before:]))
        status = (await bob.request("trade.status"))["trade"]
        self.assertEqual((status["id"], status["version"]), (trade, version))
        self.assertEqual((status["them"]["confirmed"], status["you"]["confirmed"]), (True, False))

        # He confirms what he saw: the trade settles.
        settled = (await bob.request("trade.confirm", trade=trade, version=version))["trade"]
        self.assertEqual(settled["state"], "settled")
        await until(lambda: alice.seen("trade.settled") and bob.seen("trade.settled"))
        for player in (alice, bob):
            self.assertEqual(len(player.seen("trade.settled")), 1)
            self.assertEqual(len(player.seen("trade.opened")), 1)
            self.assertEqual(player.seen("trade.cancelled"), [])
        self.assertEqual(await alice.balance(), START - SWORD_PRICE + 450)
        self.assertEqual(await bob.balance(), START - 450)
        self.assertEqual((await alice.request("inventory.get"))["uniques"], [])
        [held] = (await bob.request("inventory.get"))["uniques"]
        self.assertEqual(held["id"], sword["id"])
        self.assertIsNone((await bob.request("trade.status"))["trade"])
        await self.check_ledger()


class SQLiteEconomyTests(EconomyTestsMixin, unittest.TestCase):
    store = '[store]\nbackend = "sqlite"\n'

    async def test_logout_mid_trade_cancels_it(self):
        alice = await self.player("Alice", "gateway-1")
        bob = await self.player("Bobby", "gateway-2")
        trade = (await alice.request("trade.open", **{"with": "Bobby"}))["trade"]["id"]
        offered = await alice.request("trade.offer", trade=trade, currencies={"gold": 250})
        # Her confirmation puts her 250 gold in escrow.
        await alice.request("trade.confirm", trade=trade, version=offered["trade"]["version"])
        self.assertEqual(await alice.balance(), START - 250)

        await bob.request("logout")
        await until(lambda: alice.seen("trade.cancelled"))
        [cancelled] = alice.seen("trade.cancelled")
        self.assertEqual((cancelled["why"], cancelled["trade"]["id"]), ("left", trade))
        self.assertEqual(cancelled["trade"]["state"], "cancelled")
        self.assertEqual(await alice.balance(), START)
        self.assertIsNone((await alice.request("trade.status"))["trade"])
        await self.check_ledger()


class RedisEconomyTests(EconomyTestsMixin, unittest.TestCase):
    store = '[store]\nbackend = "redis"\n'

    async def test_trader_bots(self):
        report = await run_bots(
            self,
            self.cluster.config.file,
            self.ports["login"],
            'scenario = "trader"\nshop_every = 0.3\ntrade_every = 0.3\nthink = 0.1\n',
            bots=4,
            duration=6,
            max_seconds=60,
        )
        trader = report["trader"]
        self.assertGreater(trader["purchases"], 0)
        self.assertGreater(trader["trades"]["settled"], 0)
        self.assertEqual(trader["unexplained"], {})
        self.assertEqual(trader["latency"]["trade.settled"]["count"], trader["trades"]["settled"])
        self.assertEqual(report["disconnects"]["unexplained"], 0)
        await self.check_ledger()
