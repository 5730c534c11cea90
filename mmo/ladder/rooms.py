"""
The ladder's side of opening a match's room: for each match it forms,
the ladder asks the lobby (L{mmo.game.messages.MatchRoom} on
L{mmo.game.messages.MATCHES_CHANNEL}) and waits for its answer on
L{mmo.game.messages.MATCH_ROOMS_CHANNEL}.  Unanswered after the ladder's
C{room_timeout}, it asks again, up to L{ROOM_TRIES} times in all; then
(or when the lobby answers L{mmo.game.messages.MatchRoomFailed}) the
match is cancelled and its players queued again (L{mmo.ladder.service}).
The lobby opens one room per match however many times it is asked
(L{mmo.lobby.matches}).
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet import defer

from mmo.config.ladder import ROOM_TRIES
from mmo.game import messages
from mmo.game.messages import MATCHES_CHANNEL, MatchRoom, MatchRoomFailed, MatchRoomOpened
from mmo.game.service import Caller
from mmo.ladder.queue import Match, Matchmaker, QueueRules

__all__ = ["ROOM_TRIES", "MatchRoomRequests", "RoomHandshake"]


class RoomHandshake:
    """
    The matches whose room the lobby has not confirmed yet.

    @ivar waiting: Match id -> C{(when it was last asked, how many times)}.
    """

    def __init__(self, bus, sender: str = "ladder"):
        self.bus = bus
        self.sender = sender
        self.waiting: dict[str, tuple[float, int]] = {}

    async def ask(self, match: Match, teams: list, now: float) -> None:
        """
        Ask the lobby (again) to open the room of C{match}; C{teams}: the
        players' callers as dicts, by team.
        """
        tries = self.waiting.get(match.id, (now, 0))[1]
        self.waiting[match.id] = (now, tries + 1)
        await messages.publish(
            self.bus,
            MATCHES_CHANNEL,
            MatchRoom(match.ladder, match.mode, match.id, teams),
            self.sender,
        )

    def answered(self, match_id: str) -> bool:
        """The lobby answered for C{match_id}: whether it was waiting for one."""
        return self.waiting.pop(match_id, None) is not None

    def due(
        self, now: float, matches: dict[str, Match], rules_of: Callable[[Match], QueueRules]
    ) -> tuple[list[Match], list[Match]]:
        """
        The open matches to ask for again, and those asked L{ROOM_TRIES}
        times without an answer (no longer waited for).  A match no longer
        open is forgotten.
        """
        again, given_up = [], []
        for match_id, (asked, tries) in list(self.waiting.items()):
            match = matches.get(match_id)
            if match is None:
                del self.waiting[match_id]
            elif now - asked >= rules_of(match).room_timeout:
                if tries >= ROOM_TRIES:
                    del self.waiting[match_id]
                    given_up.append(match)
                else:
                    again.append(match)
        return again, given_up

    def snapshot(self) -> dict:
        """Match id -> how many times asked, for the queue's state."""
        return {match_id: tries for match_id, (_, tries) in self.waiting.items()}

    def restore(self, state: dict, now: float) -> None:
        """Wait again for the matches of a L{snapshot}, from C{now}."""
        for match_id, tries in state.items():
            if isinstance(match_id, str) and isinstance(tries, int):
                self.waiting[match_id] = (now, min(max(tries, 1), ROOM_TRIES))


class MatchRoomRequests:
    """
    The ladder service's side of its matches' rooms: asking for one,
    hearing the lobby's answers, cancelling a match whose room never
    opened.  Mixed into L{mmo.ladder.service.LadderService}, whose queue,
    sessions and pushes it works with.

    @ivar rooms: The matches whose room the lobby has not confirmed.
    """

    rooms: RoomHandshake
    queue: Matchmaker
    callers: dict[str, Caller]

    async def _ask_room(self, match: Match) -> None:
        self._changed = True
        teams = [[self.callers[p].to_dict() for p in team] for team in match.teams]
        await self.rooms.ask(match, teams, self.reactor.seconds())

    async def _cancel(self, match_id: str, why: str) -> None:
        """
        Cancel open match C{match_id}, whose room never opened: its players
        are told, and queued again as they were (those whose session ended
        are freed, and so is the rest of their party).
        """
        cancelled = self.queue.cancel(match_id, self._gone)
        if cancelled is None:
            return
        match, back = cancelled
        self._changed = True
        self.log.warn("ladder: match {id} cancelled: {why}", id=match.id, why=why)
        again = {p for entry in back for p in entry.players}
        await self._push(
            [p for p in match.players if p in again],
            "ladder.match.ended",
            match,
            why="room_failed",
            queued=True,
        )
        await self._push(
            [p for p in match.players if p not in again],
            "ladder.match.ended",
            match,
            why="room_failed",
            queued=False,
        )
        self._forget(match.players)

    def _room_opened(self, sender: str, answer: MatchRoomOpened) -> None:
        if not self.serving or not isinstance(answer.match, str):
            return
        if self.rooms.answered(answer.match):
            self._changed = True
            self.log.info("ladder: match {id} is in room {room}", id=answer.match, room=answer.room)
        elif answer.match not in self.queue.matches:
            self.log.warn(
                "ladder: {sender} opened room {room} for match {id}, which is not open",
                sender=sender,
                room=answer.room,
                id=answer.match,
            )

    def _room_failed(self, sender: str, answer: MatchRoomFailed) -> defer.Deferred | None:
        if not self.serving or not isinstance(answer.match, str):
            return None
        if not self.rooms.answered(answer.match):
            return None  # a room confirmed already, or a match not open
        why = f"{sender} could not open its room: {answer.reason}"
        return defer.ensureDeferred(self._cancel(answer.match, why))
