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

from mmo.config.ladder import ROOM_TRIES
from mmo.game import messages
from mmo.game.messages import MATCHES_CHANNEL, MatchRoom
from mmo.ladder.queue import Match, QueueRules

__all__ = ["ROOM_TRIES", "RoomHandshake"]


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
