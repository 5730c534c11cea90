"""
Reporting a ranked match's result, from game code (a zone's or a lobby
room's rule, in any process): never from a client.

    from mmo.ladder.report import report_result

    outcome = await report_result(self.bus, "duel", match_id, ranks=[0, 1], reactor=self.reactor)

The report is a L{mmo.game.messages.MatchResult} on the bus channel
L{mmo.game.messages.RESULTS_CHANNEL}, where the ladder process listens; it
answers on the report's reply channel.  An attempt that is not answered in
C{retry} seconds (the ladder restarts, moves, the bus is down) is sent
again, until C{give_up} seconds have passed.  The ladder applies a match's
result once by its match id, whatever the repeats: a report sent again,
by a retry or by a rule that runs twice, gets the first one's outcome.
"""

from __future__ import annotations

import uuid

from twisted.internet import defer, task
from twisted.logger import Logger

from mmo.game import messages
from mmo.game.messages import (
    RESULTS_CHANNEL,
    MatchResult,
    MatchResultAnswer,
    ladder_reply_channel,
)
from mmo.unavailable import BackendUnavailable

#: Seconds an attempt waits for the ladder's answer before the next.
RETRY = 2.0

#: Seconds after which L{report_result} stops trying.
GIVE_UP = 300.0

log = Logger()


class ReportError(Exception):
    """A result report failed: refused by the ladder, or never answered."""


class ReportRefused(ReportError):
    """The ladder refused the report (no such match, ranks that do not fit it)."""


class ReportNotAnswered(ReportError):
    """The ladder did not answer within C{give_up} seconds."""


async def report_result(
    bus,
    ladder: str,
    match: str,
    ranks: list | None = None,
    scores: list | None = None,
    *,
    sender: str = "",
    reactor=None,
    retry: float = RETRY,
    give_up: float = GIVE_UP,
):
    """
    Report the result of match C{match} of ladder C{ladder}, by team in the
    match's team order: C{ranks} (lower is better, equal ranks tie) or
    C{scores} (higher is better).  Retried until the ladder answers.

    @param sender: Who reports (the C{from} of the bus messages).
    @return: The ladder's outcome: C{{"match", "teams", "ratings"}}, the
        same for a repeated report.
    @raise ReportRefused: The ladder refused it.
    @raise ReportNotAnswered: No answer within C{give_up} seconds.
    """
    if (ranks is None) == (scores is None):
        raise ValueError("give either ranks or scores")
    if reactor is None:
        from twisted.internet import reactor
    requests = messages.Requests(reactor)
    dispatcher = messages.Dispatcher(f"result of {match}")
    dispatcher.on(MatchResultAnswer, lambda sender, answer: requests.answer(answer.request, answer))
    reply = ladder_reply_channel(uuid.uuid4().hex)
    subscription = await bus.subscribe(reply, dispatcher)
    deadline = reactor.seconds() + give_up
    try:
        while True:
            request, waiter = requests.new(retry)
            report = MatchResult(request, reply, ladder, match, ranks, scores)
            try:
                await messages.publish(bus, RESULTS_CHANNEL, report, sender)
                answer = await waiter
                break
            except defer.TimeoutError:
                pass
            except BackendUnavailable as e:
                # Not sent: this attempt's answer will not come.
                waiter.addErrback(lambda _: None)
                requests.fail(request, e)
                await task.deferLater(reactor, min(retry, 1.0), lambda: None)
            if reactor.seconds() >= deadline:
                raise ReportNotAnswered(
                    f"the ladder did not answer the result of {match} within {give_up:g}s"
                )
            log.info("result of {match} not answered yet: sent again", match=match)
    finally:
        await subscription.cancel()
    if not answer.ok:
        raise ReportRefused(answer.error or "refused")
    return answer.result
