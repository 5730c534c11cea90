"""
The C{ranked} scenario: a bot's ranked play, in the lobby (no world).

It queues (C{ladder.queue.join} on the scenario's C{ladder} and C{mode});
when the ladder matches it (C{ladder.matched}, in the match's lobby room),
it throws rock, paper or scissors after up to C{think} seconds
(C{room.duel.throw}, the rule of C{examples/ranked_duel.py}); when the
result comes (C{ladder.result}) it leaves the room and queues again after
C{requeue_delay} seconds.  A match the ladder gave up on
(C{ladder.match.ended}) or a queue it was taken out of
(C{ladder.queue.left}) sends it back to the queue too.

The report's C{ranked} counts queue joins, matches, results (wins, losses,
ties) and timeouts; C{ladder.matched} is the time from the queue's answer
to the match, C{ladder.result} from the bot's throw to its result.
"""

from __future__ import annotations

from mmo.bot.play import Play

#: What a bot may throw.
THROWS = ("rock", "paper", "scissors")


class RankedPlay(Play):
    """
    One bot's ranked play.

    @ivar queued_at: When its last join was answered (C{None}: not queued).
    @ivar thrown_at: When it threw in its current match (C{None}: not yet).
    """

    def __init__(self, bot):
        super().__init__(bot)
        self.queued_at: float | None = None
        self.thrown_at: float | None = None

    def attach(self, client) -> None:
        client.on("ladder.matched", self.matched)
        client.on("ladder.result", self.result)
        client.on("ladder.match.ended", self.ended)
        client.on("ladder.queue.left", self.left)

    def play(self) -> None:
        self.queue()

    def queue(self) -> None:
        bot, swarm = self.bot, self.bot.swarm
        if not bot.usable() or swarm.stopping:
            return
        scenario = swarm.scenario
        d = swarm.request(
            bot.client, "ladder.queue.join", ladder=scenario.ladder, mode=scenario.mode
        )

        def queued(_):
            self.stats.ranked["queued"] += 1
            self.queued_at = swarm.reactor.seconds()

        def refused(_):
            # Counted as an error of the request; try again later.
            self.later(scenario.requeue_delay, self.queue)

        d.addCallbacks(queued, refused)

    def matched(self, push: dict) -> None:
        swarm = self.bot.swarm
        self.stats.ranked["matched"] += 1
        if self.queued_at is not None:
            self.stats.latency("ladder.matched", swarm.reactor.seconds() - self.queued_at)
        self.queued_at = None
        self.thrown_at = None
        self.later(self.bot.rng.uniform(0, swarm.scenario.think), self.throw)

    def throw(self) -> None:
        bot = self.bot
        if not bot.usable():
            return
        self.thrown_at = bot.swarm.reactor.seconds()
        bot.swarm.fire(bot.client, "room.duel.throw", throw=bot.rng.choice(THROWS))

    def result(self, push: dict) -> None:
        ranked = self.stats.ranked
        ranked["results"] += 1
        outcome = push.get("outcome") or {}
        if outcome.get("tie"):
            ranked["ties"] += 1
        elif outcome.get("place") == 1:
            ranked["wins"] += 1
        else:
            ranked["losses"] += 1
        if self.thrown_at is not None:
            self.stats.latency("ladder.result", self.bot.swarm.reactor.seconds() - self.thrown_at)
        self.again()

    def ended(self, push: dict) -> None:
        self.stats.ranked["timeouts"] += 1
        self.again()

    def left(self, push: dict) -> None:
        self.queued_at = None
        self.later(self.bot.swarm.scenario.requeue_delay, self.queue)

    def again(self) -> None:
        """Out of the match's room, and back to the queue after a while."""
        bot = self.bot
        self.thrown_at = None
        if bot.usable():
            bot.swarm.fire(bot.client, "room.leave")
        self.later(bot.swarm.scenario.requeue_delay, self.queue)
