"""
Players of a real deployment's economy, driven at random for its
service-level crash test (C{tests/test_economy_service_crash.py}): each
logs in through the login server and the gateway and trades, buys and
sells with the client's messages (C{wallet.*}, C{inventory.*},
C{shop.*}, C{trade.*}); a game rule's rewards are posted from this
process on the same store, as a zone's rule would post them.  A request
refused C{unavailable}, or cut with its connection, is asked again (a
purchase or a sale with the same request id, a reward with the same
event key) after logging in again if need be, so that what the players
were told can be checked against the ledger: L{Record}.

Operation C{n} is drawn from C{random.Random(f"{seed}-{n}")}; several
workers run operations at once, so their interleaving is the
deployment's own.
"""

from __future__ import annotations

import random

from OpenSSL import SSL
from twisted.internet import defer, error, reactor

from mmo.client import ConnectionClosed, ServerError, connect
from mmo.economy.errors import EconomyError
from mmo.economy.holdings import event_key
from mmo.unavailable import BackendUnavailable
from tests.support import PASSWORD, bounded, sleep, until

#: The economy the players trade in: its config section, items and vendors.
ECONOMY = """
[economy]
enabled = true
items = "{items}"
shops = "{shops}"
inventory = "slots"
inventory_limit = 30
# A restarted economy process serves trades once its last lease expired.
trade_lease = 3.0

[economy.currencies.gold]
decimals = 2
start = 2000
"""

ITEMS = """
[[items]]
id = "herb"
name = "Herb"
stackable = true
max_stack = 20

[[items]]
id = "potion"
name = "Potion"
stackable = true
max_stack = 10

[[items]]
id = "sword"
name = "Sword"

[[items]]
id = "ring"
name = "Ring"
"""

SHOPS = """
[shops.smith]
name = "The smith"
currency = "gold"

[[shops.smith.stock]]
item = "sword"
price = 300
sell = 100
stock = 60

[[shops.smith.stock]]
item = "ring"
price = 200
sell = 80

[shops.apothecary]
name = "The apothecary"
currency = "gold"

[[shops.apothecary.stock]]
item = "potion"
price = 20
sell = 8

[[shops.apothecary.stock]]
item = "herb"
price = 5
sell = 2
stock = 2000
"""

#: An offer of nothing, as the wire shows it.
EMPTY = {"currencies": {}, "items": {}, "uniques": []}

#: Item -> the vendor that sells it and buys it back.
VENDORS = {"sword": "smith", "ring": "smith", "potion": "apothecary", "herb": "apothecary"}
STACKABLE = ("herb", "potion")

#: What ends a connection, or a connection attempt, while a process is down.
CUT = (
    ConnectionClosed,
    error.ConnectError,
    error.ConnectionLost,
    error.ConnectionDone,
    defer.TimeoutError,
    TimeoutError,
    SSL.Error,
)

#: Seconds a request waits for its reply before its connection is given up.
REQUEST_TIMEOUT = 15.0
#: Seconds one request is asked again for (a process restarting, a lease
#: expiring), and the pause between two tries.
RETRY_FOR, RETRY_EVERY = 60.0, 0.1


class Stopped(Exception):
    """The players were stopped (the test ends) while a request was asked again."""


class Record:
    """
    What the players were told, to check against the ledger.

    @ivar acknowledged: C{(key, seq)} of every purchase, sale and reward
        whose reply (or return) gave its sequence number.
    @ivar asked: The keys of every purchase, sale and reward asked for.
    @ivar trades: The ids of every trade a player was told of.
    @ivar settled: Trade id -> the trade as its last confirmer saw it settle.
    @ivar outcomes: C{(operation kind, outcome)} -> how many.
    """

    def __init__(self):
        self.acknowledged: list[tuple[str, int]] = []
        self.asked: set[str] = set()
        self.trades: set[str] = set()
        self.settled: dict[str, dict] = {}
        self.outcomes: dict[tuple[str, str], int] = {}

    def count(self, kind: str, outcome: str) -> None:
        self.outcomes[kind, outcome] = self.outcomes.get((kind, outcome), 0) + 1

    def summary(self) -> str:
        return ", ".join(f"{k} {o}: {n}" for (k, o), n in sorted(self.outcomes.items()))


class Player:
    """
    One player's session: logged in again whenever its connection is cut.

    @ivar account: His account id (the ledger's C{player:ACCOUNT}).
    """

    def __init__(self, deployment, name: str, record: Record):
        self.deployment = deployment
        self.name = name
        self.record = record
        self.account: str | None = None
        self.stopped = False
        self._client = None
        # One login at a time: workers sharing the player share his session.
        self._login = defer.DeferredLock()

    def __repr__(self) -> str:
        return f"<Player {self.name}>"

    async def register(self) -> None:
        login = await self._connect_login()
        try:
            self.account = (await login.request("register", name=self.name, password=PASSWORD))[
                "account"
            ]
        finally:
            await login.close()

    async def _connect_login(self):
        host, port = self.deployment.login_address()
        return await connect(reactor, host, port, ca=self.deployment.ca, hostname="localhost")

    async def _connected(self):
        await self._login.acquire()
        try:
            if self._client is None:
                self._client = await self._log_in()
            return self._client
        finally:
            self._login.release()

    async def _log_in(self):
        login = await self._connect_login()
        try:
            ticket = await login.request("login", name=self.name, password=PASSWORD)
        finally:
            login.transport.abortConnection()
        gateway = ticket["gateway"]
        client = await connect(
            reactor, gateway["host"], gateway["port"], ca=self.deployment.ca, hostname="localhost"
        )
        client.on("trade.settled", self._settled)
        client.on("trade.opened", lambda push: self.record.trades.add(push["trade"]["id"]))
        try:
            await client.request("auth", ticket=ticket["ticket"])
        except BaseException:
            client.transport.abortConnection()
            raise
        client.whenClosed().addBoth(lambda _, client=client: self._closed(client))
        return client

    def _closed(self, client) -> None:
        if self._client is client:
            self._client = None

    def _settled(self, push: dict) -> None:
        trade = push["trade"]
        self.record.settled.setdefault(trade["id"], trade)

    async def call(self, kind: str, **fields) -> dict:
        """
        C{kind}'s reply, asked again (logged in again if need be) while the
        deployment answers C{unavailable} or cuts the connection.

        @raise ServerError: Any other refusal.
        """
        deadline = reactor.seconds() + RETRY_FOR
        while True:
            client = None
            try:
                client = await self._connected()
                return await client.request(kind, **fields).addTimeout(REQUEST_TIMEOUT, reactor)
            except ServerError as e:
                if e.code != "unavailable":
                    raise
            except CUT:
                if client is not None:
                    client.transport.abortConnection()
                    self._closed(client)
            if reactor.seconds() > deadline:
                raise AssertionError(f"{self.name}: {kind} unanswered for {RETRY_FOR} s")
            await sleep(RETRY_EVERY)
            if self.stopped:
                raise Stopped(kind)

    def stop(self) -> None:
        """Ask nothing again, and end the session."""
        self.stopped = True
        if self._client is not None:
            self._client.transport.abortConnection()


class Players:
    """
    The players, their workers and the seeded operations they run.

    @param deployment: Gives C{login_address()} and C{ca}.
    @param economy: An L{mmo.economy.economy.Economy} on the deployment's
        store, for the rewards.
    """

    def __init__(self, deployment, economy, seed: int, operations: int, names, workers: int):
        self.record = Record()
        self.players = [Player(deployment, name, self.record) for name in names]
        self.economy = economy
        self.seed = seed
        self.operations = operations
        self.workers = workers
        self.started = 0
        self.done = 0
        self._busy: set[Player] = set()
        self._paused = False
        self._stopped = False
        self._working = 0
        self._runs: list[defer.Deferred] = []
        self._deposits: list[defer.Deferred] = []

    async def start(self) -> None:
        for player in self.players:
            await player.register()
        self._runs = [defer.ensureDeferred(self._work()) for _ in range(self.workers)]

    def finished(self) -> defer.Deferred:
        """Fires once every operation ran (failing with the first worker's failure)."""
        return defer.gatherResults(self._runs, consumeErrors=True)

    async def pause(self) -> None:
        """Let the operations under way end, and start no more until L{resume}."""
        self._paused = True
        await until(lambda: self._working == 0, timeout=2 * RETRY_FOR, what="the workers' pause")

    def resume(self) -> None:
        self._paused = False

    def deposited(self) -> defer.Deferred:
        """Fires as soon as a trade has a deposit in escrow, its settlement to come."""
        d = defer.Deferred(lambda d: self._deposits.remove(d))
        self._deposits.append(d)
        return d

    def _deposited(self) -> None:
        waiting, self._deposits = self._deposits, []
        for d in waiting:
            d.callback(None)

    async def stop(self) -> None:
        """End the sessions and the operations under way."""
        self._stopped = True
        for player in self.players:
            player.stop()
        await bounded(defer.DeferredList(self._runs, consumeErrors=True))

    async def _work(self) -> None:
        while self.started < self.operations and not self._stopped:
            if self._paused:
                await sleep(0.02)
                continue
            n = self.started
            self.started += 1
            self._working += 1
            try:
                await self._run(n)
            finally:
                self._working -= 1
            self.done += 1

    async def _run(self, n: int) -> None:
        rng = random.Random(f"{self.seed}-{n}")
        [kind] = rng.choices(["reward", "buy", "sell", "trade"], [3, 3, 2, 3])
        free = [p for p in self.players if p not in self._busy]
        if kind == "trade" and len(free) < 2:
            kind = "buy"
        if kind == "trade":
            pair = rng.sample(free, 2)
            self._busy.update(pair)
            try:
                outcome = await Trading(self.record, *pair, rng, self._deposited).run()
            finally:
                self._busy.difference_update(pair)
        else:
            player = rng.choice(self.players)
            outcome = await getattr(self, kind)(n, player, rng)
        self.record.count(kind, outcome)

    async def reward(self, n: int, player: Player, rng: random.Random) -> str:
        """A game rule's reward, from this process, retried under its event key."""
        key = event_key("crash", n)
        items = {}
        if rng.random() < 0.4:
            items[rng.choice(STACKABLE)] = rng.randrange(1, 15)
        if rng.random() < 0.3:
            items[rng.choice(("sword", "ring"))] = 1
        gold = {"gold": rng.randrange(1, 300)}
        self.record.asked.add(event_key("reward", key))
        deadline = reactor.seconds() + RETRY_FOR
        while True:
            try:
                seq = await self.economy.rewards.reward(player.account, key, "quest", gold, items)
            except EconomyError as e:
                return type(e).__name__
            except BackendUnavailable:
                if reactor.seconds() > deadline or self._stopped:
                    raise
                await sleep(RETRY_EVERY)
                continue
            self.record.acknowledged.append((event_key("reward", key), seq))
            return "paid"

    async def buy(self, n: int, player: Player, rng: random.Random) -> str:
        item = rng.choice(sorted(VENDORS))
        count = rng.randrange(1, 8) if item in STACKABLE else rng.randrange(1, 3)
        return await self._deal("buy", n, player, VENDORS[item], item, count)

    async def sell(self, n: int, player: Player, rng: random.Random) -> str:
        inventory = await player.call("inventory.get")
        goods = [(item, count) for item, count in sorted(inventory["items"].items())]
        goods += [(unique["id"], 1) for unique in inventory["uniques"]]
        if not goods:
            return "nothing"
        item, held = rng.choice(goods)
        count = rng.randrange(1, held + 1)
        return await self._deal("sell", n, player, VENDORS[item.partition(".")[0]], item, count)

    async def _deal(self, kind, n, player, shop, item, count) -> str:
        request = f"op{n}"
        key = event_key(kind, shop, player.account, request)
        self.record.asked.add(key)
        try:
            reply = await player.call(
                f"shop.{kind}", request=request, shop=shop, item=item, count=count
            )
        except ServerError as e:
            return e.code
        self.record.acknowledged.append((key, reply["seq"]))
        return "done"


class Trading:
    """
    One trade between two players, at random: offers (some changed, some
    more than a player holds), confirmations (some of a stale version),
    a cancel sometimes; whatever refuses it, it ends with no trade open.
    """

    def __init__(self, record: Record, opener: Player, other: Player, rng, deposited):
        """
        @param deposited: Called when the first side's confirmation put
            his offer in escrow, the other's still to come.
        """
        self.record = record
        self.parties = (opener, other)
        self.rng = rng
        self.deposited = deposited
        self.trade: dict | None = None

    async def run(self) -> str:
        opener, other = self.parties
        rng = self.rng
        try:
            self.trade = (await opener.call("trade.open", **{"with": other.name}))["trade"]
            self.record.trades.add(self.trade["id"])
            for _ in range(rng.randrange(2, 5)):
                await self.offer(rng.choice(self.parties))
            if rng.random() < 0.1:
                await self.step(rng.choice(self.parties), "trade.cancel")
                return "cancelled"
            first, second = rng.sample(self.parties, 2)
            seen = self.trade["version"]
            await self.confirm(first)
            if self.trade["you"]["offer"] != EMPTY:
                self.deposited()
            if rng.random() < 0.2:
                # The other side changes his offer after the first confirmed:
                # the first's confirmation is of a stale version now.
                await self.offer(second)
                try:
                    await self.step(first, "trade.confirm", version=seen)
                except ServerError as e:
                    if e.code != "stale_version":
                        raise
                else:
                    raise AssertionError(f"a confirmation of stale version {seen} was taken")
                await self.confirm(first)
            await self.confirm(second)
            return self.trade["state"]
        except ServerError as e:
            return e.code
        finally:
            await self.end()

    async def step(self, player: Player, kind: str, **fields) -> dict:
        self.trade = (await player.call(kind, trade=self.trade["id"], **fields))["trade"]
        return self.trade

    async def confirm(self, player: Player) -> None:
        trade = await self.step(player, "trade.confirm", version=self.trade["version"])
        if trade["state"] == "settled":
            self.record.settled[trade["id"]] = trade

    async def offer(self, player: Player) -> None:
        """A new offer of some of what C{player} holds (sometimes more)."""
        rng = self.rng
        wallet = await player.call("wallet.get")
        inventory = await player.call("inventory.get")
        gold = wallet["currencies"]["gold"]["balance"]
        offer: dict = {"currencies": {}, "items": {}, "uniques": []}
        if gold > 0 and rng.random() < 0.8:
            offer["currencies"]["gold"] = rng.randrange(1, min(gold, 400) + 1)
        for item, count in sorted(inventory["items"].items()):
            if rng.random() < 0.4:
                offer["items"][item] = rng.randrange(1, count + 1)
        uniques = [unique["id"] for unique in inventory["uniques"]]
        if uniques and rng.random() < 0.5:
            offer["uniques"] = rng.sample(
                sorted(uniques), rng.randrange(1, min(3, len(uniques)) + 1)
            )
        if rng.random() < 0.1:
            # More than he holds: his confirmation's deposit is refused.
            offer["currencies"]["gold"] = gold + 1
        await self.step(player, "trade.offer", **offer)

    async def end(self) -> None:
        """No trade of either party left open or settling, whatever happened."""
        for player in self.parties:
            for _ in range(100):
                trade = (await player.call("trade.status"))["trade"]
                if trade is not None:
                    self.record.trades.add(trade["id"])
                if trade is None or trade["state"] in ("settled", "cancelled"):
                    break
                if trade["state"] == "open":
                    try:
                        await player.call("trade.cancel", trade=trade["id"])
                    except ServerError as e:
                        if e.code not in ("not_found", "not_allowed"):
                            raise
                else:
                    await sleep(0.05)
            else:
                raise AssertionError(f"{player.name}'s trade {trade} does not end")
