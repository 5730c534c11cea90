"""
L{ResultRequests}: a match's result, reported by game code on the bus
(L{mmo.ladder.report}), applied once by match id (L{mmo.ladder.ladder}) by
the process serving the queue only; each player is pushed C{ladder.result}
and freed, and the reporter is answered on its reply channel.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.python.failure import Failure

from mmo.game import messages
from mmo.game.messages import MatchResult, MatchResultAnswer
from mmo.game.service import Caller
from mmo.ladder import checks
from mmo.ladder.ladder import Ladder
from mmo.ladder.queue import Matchmaker
from mmo.ladder.records import BadResult, Player
from mmo.unavailable import log_failure


class ResultRequests:
    """
    The results of matches, for the L{LadderService
    <mmo.ladder.service.LadderService>}: its C{ladders}, C{queue} (the
    matches), C{callers} (the players' sessions and names), pushes and
    state saves.
    """

    ladders: dict[str, Ladder]
    queue: Matchmaker
    callers: dict[str, Caller]

    def _result(self, sender: str, report: MatchResult) -> defer.Deferred | None:
        if not self.serving:
            return None  # the holder answers
        return defer.ensureDeferred(self.apply(sender, report))

    async def apply(self, sender: str, report: MatchResult) -> None:
        """Apply a reported result (once per match) and answer the reporter."""
        try:
            result = await self.result(report.ladder, report.match, report.ranks, report.scores)
            answer = MatchResultAnswer(report.request, True, result=result)
        except (ValueError, BadResult) as e:
            answer = MatchResultAnswer(report.request, False, error=str(e))
        except Exception:
            log_failure(
                Failure(), self.log, "ladder: the result of {match} failed", match=report.match
            )
            return  # Not answered: the reporter tries again.
        if isinstance(report.reply, str) and report.reply.startswith("ladder-reply:"):
            await messages.publish(self.bus, report.reply, answer, "ladder")

    async def result(self, name, match_id, ranks=None, scores=None) -> dict:
        """
        Apply the result of match C{match_id} of ladder C{name}; push each
        of its players C{ladder.result} and free them (the first time).

        @raise ValueError: No such match, or ranks or scores that do not fit it.
        """
        ladder = self.ladders.get(name) if isinstance(name, str) else None
        match = self.queue.known(match_id) if isinstance(match_id, str) else None
        if ladder is None or match is None or match.ladder != name:
            raise ValueError(f"no match {match_id!r} of ladder {name!r}")
        checks.check_outcome(ranks, scores, len(match.teams))
        teams = [[self._player(p) for p in team] for team in match.teams]
        outcome = await ladder.report(match.id, teams, ranks=ranks, scores=scores)
        finished = self.queue.finish(match.id, self.reactor.seconds())
        if finished is not None:
            self._changed = True
            changes = {change.player_id: change for change in outcome.changes}
            for player in match.players:
                entry = await ladder.rank(player)
                await self._push(
                    [player],
                    "ladder.result",
                    match,
                    outcome=checks.outcome_of(match, player, ranks, scores),
                    before=changes[player].rating_before,
                    after=changes[player].rating,
                    rank=entry.rank if entry is not None else None,
                    season=outcome.season,
                )
            self._forget(match.players)
            # Saved now, not at the next pass: a ladder that dies right
            # after answering must not hold the players again.
            try:
                if not await self.save():
                    self.log.warn("ladder: the result of {id} was not saved", id=match.id)
            except Exception:
                log_failure(Failure(), self.log, "ladder: the queue state was not saved")
        return checks.outcome_dict(match, outcome)

    def _player(self, account: str) -> Player:
        caller = self.callers.get(account)
        return Player(account, caller.name if caller is not None else account)
