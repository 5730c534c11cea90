"""
The C{trader} scenario: bots in the lobby (no world) that shop and trade
with each other over the economy's messages (C{docs/economy.md}).

Shopping: every C{shop_every} seconds a bot visits a vendor (C{shop}, or
one of C{shop.list} at random), reads its offers (C{shop.offers}) and buys
one of an item it can afford (C{shop.buy}), or, with the chance
C{sell_chance}, sells back one of an item it holds that the vendor buys
(C{shop.sell}).  Each purchase and sale has a fresh C{request} id, and is
sent again with the same id after C{unavailable} or a lost reply: the
economy applies it once.

Trading: bots trade in pairs, bot 2k with bot 2k+1.  Bot 2k opens a trade
(C{trade.open} with the other's name) C{trade_every} seconds after the
pair's last trade ended.  Once it is open each side reads what it holds
(C{wallet.get}, C{inventory.get}), offers part of it, currency and items
(C{trade.offer}), and confirms the version it saw once the other side has
offered too (C{trade.confirm}).  The pushes (C{trade.opened},
C{trade.updated}, C{trade.settled}, C{trade.cancelled}) drive it, as they
would a player's client.  A bot does not shop while it trades.

The report's C{trader} counts purchases, sales, trades opened, settled and
cancelled (by C{why}), and the economy requests' errors by code; an error
that the play does not explain (L{EXPLAINED}) fails the run.
C{trade.settled} is the time from the C{trade.open} request to the
C{trade.settled} push, at the bot that opened the trade.
"""

from __future__ import annotations

import uuid
from collections import deque
from typing import TYPE_CHECKING

from twisted.internet import defer, task
from twisted.logger import Logger

from mmo.bot.play import Play
from mmo.bot.stats import error_code

if TYPE_CHECKING:
    from mmo.bot.swarm import Bot

#: Error codes that normal play explains, by request type: another bot
#: bought the vendor's last one, an inventory is full, the other party is
#: busy or gone, an offer changed before a confirmation arrived, the trade
#: ended meanwhile.
EXPLAINED = {
    "shop.buy": frozenset({"out_of_stock", "no_room"}),
    "trade.open": frozenset({"in_trade", "player_offline"}),
    "trade.offer": frozenset({"not_found", "not_allowed"}),
    "trade.confirm": frozenset({"stale_version", "not_found", "not_allowed"}),
    "trade.cancel": frozenset({"not_found", "not_allowed"}),
}

#: Explained whatever the request: a service not reachable now (the
#: request is sent again), a connection that ended first (the disconnect
#: itself is judged by the bot's rules).
ALWAYS = frozenset({"unavailable", "closed"})

#: Requests sent again after a lost reply (a timeout): reads, and the
#: purchases and sales, whose request id makes the economy apply them once.
AGAIN = frozenset(
    {"wallet.get", "inventory.get", "shop.list", "shop.offers", "trade.status"}
    | {"shop.buy", "shop.sell"}
)

#: Times a request is sent again, at most.
RETRIES = 3

#: Seconds an offer waits for the bot's visit to the shop to end, between looks.
WAIT = 0.2

#: Ended trades a bot remembers, so that a late reply does not bring one back.
REMEMBERED = 8

#: Seconds (plus three times C{think}) a trade may go unchanged before the
#: bot asks for its status: the process serving trades may have died, and
#: its trades with it, with no push (C{docs/economy.md}, I{The service}).
STALL = 10.0

log = Logger()


class Refused(Exception):
    """
    A request of the play failed, and its error was counted: the step
    gives up.

    @ivar code: Its error code.
    """

    def __init__(self, kind: str, code: str):
        super().__init__(kind, code)
        self.code = code


def holds_something(offer: dict) -> bool:
    """Whether an C{offer} of the protocol gives anything."""
    return any(offer.get(key) for key in ("currencies", "items", "uniques"))


class TraderPlay(Play):
    """
    One bot's shopping and trading.

    @ivar wallet: Balances by currency as last told (C{None}: read it
        before buying).
    @ivar trade: The open trade as last seen (the protocol's C{trade}), or
        C{None}.
    @ivar offered: The id of the trade this bot has made its offer in.
    @ivar confirmed: C{(trade id, version)} of the last confirmation sent.
    @ivar visiting: Whether a visit to the shop is under way.
    @ivar changed_at: When the bot last saw its trade change.
    """

    def __init__(self, bot: Bot):
        super().__init__(bot)
        self.wallet: dict[str, int] | None = None
        self.trade: dict | None = None
        self.offered: str | None = None
        self.confirmed: tuple[str, int] | None = None
        self.visiting = False
        self.changed_at = 0.0
        self.shops: list[str] | None = None
        self._offering: str | None = None
        self._confirming = False
        self._asked: dict[str, float] = {}
        self._ended: deque[str] = deque(maxlen=REMEMBERED)
        self._prefix = uuid.uuid4().hex[:16]
        self._requests = 0

    @property
    def partner(self) -> Bot | None:
        """The bot this one trades with (C{None}: the odd one out)."""
        bots = self.bot.swarm.bots
        index = self.bot.index ^ 1
        return bots[index] if index < len(bots) else None

    @property
    def opener(self) -> bool:
        """Whether this bot opens its pair's trades."""
        return self.bot.index % 2 == 0 and self.partner is not None

    def attach(self, client) -> None:
        client.on("trade.opened", self.seen)
        client.on("trade.updated", self.seen)
        client.on("trade.settled", self.settled)
        client.on("trade.cancelled", self.cancelled)

    def play(self) -> None:
        scenario = self.bot.swarm.scenario
        self.wallet = None
        # What was scheduled before a drop is gone: the trade's status
        # (catch_up) schedules the steps still to come.
        self._offering = self.offered
        self._confirming = False
        self.changed_at = self.bot.swarm.reactor.seconds()
        self.bot.every(scenario.shop_every, self.visit)
        if self.opener:
            self.later(self.bot.rng.uniform(0, scenario.trade_every), self.open_trade)
        self.run(self.catch_up())

    # -- requests ------------------------------------------------------------------

    async def ask(self, kind: str, **fields) -> dict:
        """
        C{kind}'s reply, sent again after C{unavailable} (and after a lost
        reply, for the requests of L{AGAIN}) up to L{RETRIES} times.

        @raise Refused: It failed; the error is counted.
        """
        bot, swarm = self.bot, self.bot.swarm
        counts = self.stats.trades
        for attempt in range(RETRIES + 1):
            if not bot.usable() or swarm.stopping:
                raise Refused(kind, "closed")
            try:
                return await swarm.request(bot.client, kind, **fields)
            except Exception as e:
                code, retry_after = error_code(e), getattr(e, "retry_after", None)
            if swarm.stopping:
                # Cut off by the run's own end: not an error of the play.
                raise Refused(kind, code)
            again = code == "unavailable" or (code == "timeout" and kind in AGAIN)
            counts.failed(kind, code, explained=again or code in ALWAYS | EXPLAINED.get(kind, ()))
            if not again or attempt == RETRIES:
                raise Refused(kind, code)
            counts.retried()
            await task.deferLater(swarm.reactor, retry_after or 1.0, lambda: None)
        raise AssertionError("not reached")

    def request_id(self) -> str:
        """A fresh C{request} id of a purchase or sale, unique across runs."""
        self._requests += 1
        return f"{self._prefix}-{self._requests}"

    def run(self, steps) -> defer.Deferred:
        """Run the coroutine C{steps}; a failure other than L{Refused} is a bug of the play."""
        return defer.ensureDeferred(steps).addErrback(self.gave_up)

    def gave_up(self, failure) -> None:
        if failure.check(Refused):
            return None
        # A reply of another shape than the protocol's, say: it fails the run.
        self.stats.trades.failed("trader", type(failure.value).__name__, explained=False)
        log.failure("trader bot {bot}: a step failed", failure, bot=self.bot.name)

    def read_wallet(self, reply: dict) -> None:
        """The balances of a reply's C{currencies} (C{wallet.get}, C{shop.buy}...)."""
        self.wallet = {name: c["balance"] for name, c in reply["currencies"].items()}

    # -- the shop ------------------------------------------------------------------

    def visit(self) -> None:
        """Every C{shop_every} seconds: buy or sell something, unless trading."""
        bot = self.bot
        if self.visiting or not bot.usable() or bot.swarm.stopping:
            return
        if self.trade is not None:
            stalled = bot.swarm.reactor.seconds() - self.changed_at
            if stalled > STALL + 3 * bot.swarm.scenario.think:
                self.changed_at = bot.swarm.reactor.seconds()
                self.run(self.check_trade(self.trade["id"]))
            return
        self.visiting = True
        self.run(self.shop()).addBoth(self._visited)

    def _visited(self, _) -> None:
        self.visiting = False

    async def shop(self) -> None:
        scenario, rng = self.bot.swarm.scenario, self.bot.rng
        if self.wallet is None:
            self.read_wallet(await self.ask("wallet.get"))
        name = scenario.shop
        if name == "*":
            if self.shops is None:
                listed = await self.ask("shop.list")
                self.shops = sorted(entry["shop"] for entry in listed["shops"])
            if not self.shops:
                return
            name = rng.choice(self.shops)
        shop = await self.ask("shop.offers", shop=name)
        if rng.random() < scenario.sell_chance and await self.sell(shop):
            return
        await self.buy(shop)

    async def buy(self, shop: dict) -> bool:
        """Buy one of an item of C{shop}'s offers that the bot can afford, if any."""
        balance = self.wallet.get(shop["currency"], 0)
        affordable = [
            offer
            for offer in shop["offers"]
            if offer["price"] <= balance and (offer["stock"] is None or offer["stock"] > 0)
        ]
        if not affordable:
            return False
        item = self.bot.rng.choice(affordable)["item"]
        reply = await self.ask(
            "shop.buy", request=self.request_id(), shop=shop["shop"], item=item, count=1
        )
        self.stats.trades.bought()
        self.read_wallet(reply)
        return True

    async def sell(self, shop: dict) -> bool:
        """Sell one of an item the bot holds that C{shop} buys, if any."""
        buys = {offer["item"] for offer in shop["offers"] if offer["sell"] is not None}
        held = await self.ask("inventory.get")
        choices = sorted(
            item for item, count in held["items"].items() if count > 0 and item in buys
        )
        choices += sorted(unique["id"] for unique in held["uniques"] if unique["item"] in buys)
        if not choices:
            return False
        reply = await self.ask(
            "shop.sell",
            request=self.request_id(),
            shop=shop["shop"],
            item=self.bot.rng.choice(choices),
            count=1,
        )
        self.stats.trades.sold()
        self.read_wallet(reply)
        return True

    # -- trades --------------------------------------------------------------------

    async def catch_up(self) -> None:
        """A trade open from before (a resumed session): play it on."""
        status = await self.ask("trade.status")
        if status["trade"] is not None:
            self.seen(status)

    async def check_trade(self, trade_id: str) -> None:
        """A trade that stalled: still there, or gone with the process that served it."""
        trade = (await self.ask("trade.status"))["trade"]
        if not self.current(trade_id):
            return
        if trade is None or trade["id"] != trade_id:
            self.forget(trade_id, False, "gone")
        if trade is not None:
            self.seen({"trade": trade})

    def open_trade(self) -> None:
        bot, swarm = self.bot, self.bot.swarm
        if not bot.usable() or swarm.stopping or self.trade is not None:
            # A trade open now schedules the next when it ends.
            return
        partner = self.partner
        if partner.state != "in" or not partner.usable():
            self.later(swarm.scenario.trade_every, self.open_trade)
            return
        self.run(self.open_with(partner.display or partner.name))

    async def open_with(self, name: str) -> None:
        swarm = self.bot.swarm
        asked = swarm.reactor.seconds()
        try:
            reply = await self.ask("trade.open", **{"with": name})
        except Refused:
            self.later(swarm.scenario.trade_every, self.open_trade)
            raise
        self.stats.trades.trade_opened()
        self._asked[reply["trade"]["id"]] = asked
        self.seen(reply)

    def seen(self, message: dict) -> None:
        """A view of the bot's trade (a push, or a reply): play on from it."""
        trade = message["trade"]
        if trade["state"] in ("settled", "cancelled") or trade["id"] in self._ended:
            # Its end push says so; a late view of an ended trade changes nothing.
            return
        current = self.trade
        if current is not None and current["id"] == trade["id"]:
            if trade["version"] < current["version"]:
                return
        self.trade = trade
        self.changed_at = self.bot.swarm.reactor.seconds()
        if self._offering != trade["id"]:
            self._offering = trade["id"]
            think = self.bot.swarm.scenario.think
            self.later(self.bot.rng.uniform(0, think), self.make_offer, trade["id"])
        self.consider()

    def current(self, trade_id: str) -> bool:
        """Whether trade C{trade_id} is the bot's open trade, and the bot can play it."""
        trade = self.trade
        return trade is not None and trade["id"] == trade_id and self.bot.usable()

    def make_offer(self, trade_id: str) -> None:
        if not self.current(trade_id) or self.offered == trade_id:
            return
        if self.visiting:
            self.later(WAIT, self.make_offer, trade_id)
            return
        self.run(self.offer(trade_id))

    async def offer(self, trade_id: str) -> None:
        """Offer part of what the bot holds: currency and items; nothing held: cancel."""
        self.read_wallet(await self.ask("wallet.get"))
        held = await self.ask("inventory.get")
        if not self.current(trade_id):
            return
        offer = self.choose_offer(held)
        if not holds_something(offer):
            await self.ask("trade.cancel", trade=trade_id)
            return
        reply = await self.ask("trade.offer", trade=trade_id, **offer)
        self.offered = trade_id
        self.seen(reply)

    def choose_offer(self, held: dict) -> dict:
        """A part of what the bot holds (its wallet, and the inventory C{held})."""
        rng = self.bot.rng
        currencies = {
            name: rng.randint(1, max(1, balance // 10))
            for name, balance in sorted(self.wallet.items())
            if balance > 0
        }
        items = {}
        stacks = sorted((item, count) for item, count in held["items"].items() if count > 0)
        if stacks:
            item, count = rng.choice(stacks)
            items[item] = rng.randint(1, max(1, count // 2))
        uniques = sorted(unique["id"] for unique in held["uniques"])
        chosen = [rng.choice(uniques)] if uniques and rng.random() < 0.5 else []
        return {"currencies": currencies, "items": items, "uniques": chosen}

    def ready(self) -> bool:
        """Whether the bot would confirm its trade as last seen."""
        trade = self.trade
        return (
            trade is not None
            and trade["state"] == "open"
            and self.offered == trade["id"]
            and not trade["you"]["confirmed"]
            and holds_something(trade["them"]["offer"])
            and self.confirmed != (trade["id"], trade["version"])
        )

    def consider(self) -> None:
        """Confirm, after a while, once both sides have offered."""
        if self.ready() and not self._confirming:
            self._confirming = True
            think = self.bot.swarm.scenario.think
            self.later(self.bot.rng.uniform(0, think), self.confirm)

    def confirm(self) -> None:
        """Confirm the version last seen (a newer push may have come meanwhile)."""
        self._confirming = False
        if not self.ready() or not self.bot.usable():
            return
        trade = self.trade
        self.confirmed = (trade["id"], trade["version"])
        # A stale_version: the push of the newer offers comes, and is considered.
        self.run(self._confirm(trade["id"], trade["version"]))

    async def _confirm(self, trade_id: str, version: int) -> None:
        self.seen(await self.ask("trade.confirm", trade=trade_id, version=version))

    def settled(self, push: dict) -> None:
        self.ended(push, True)

    def cancelled(self, push: dict) -> None:
        self.ended(push, False)

    def ended(self, push: dict, settled: bool) -> None:
        self.forget(push["trade"]["id"], settled, None if settled else push["why"])

    def forget(self, trade_id: str, settled: bool, why: str | None) -> None:
        """
        The trade settled, or ended because of C{why}: count it, read the
        wallet again, trade on.
        """
        swarm = self.bot.swarm
        self.stats.trades.trade_ended(trade_id, settled, why)
        asked = self._asked.pop(trade_id, None)
        if settled and asked is not None:
            self.stats.latency("trade.settled", swarm.reactor.seconds() - asked)
        self._ended.append(trade_id)
        if self.trade is not None and self.trade["id"] == trade_id:
            self.trade = None
        # What the trade moved is in no reply: the next visit reads the wallet.
        self.wallet = None
        if self.opener:
            self.later(swarm.scenario.trade_every, self.open_trade)
