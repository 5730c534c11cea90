"""
The rooms of ranked matches: the ladder (L{mmo.ladder.service}) forms a
match and asks the lobby, with a L{mmo.game.messages.MatchRoom} on the bus
channel L{mmo.game.messages.MATCHES_CHANNEL}, to open its room; the lobby
moves the players' sessions into it (out of their rooms, as C{room.leave}
does), marks the room with the match (L{mmo.lobby.service.Room.match}) and
pushes each player C{ladder.matched} with the room.  A game's rules in
the room (a L{mmo.lobby.service.LobbyService} subclass) then play the match
and report its result (L{mmo.ladder.report}).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet import defer
from twisted.logger import Logger

from mmo.game import messages
from mmo.game.messages import MATCHES_CHANNEL, MatchRoom
from mmo.game.service import Caller
from mmo.unavailable import log_failure

if TYPE_CHECKING:
    from mmo.lobby.service import LobbyService


class MatchRooms:
    """The lobby's subscription to the ladder's matches."""

    log = Logger()

    def __init__(self, lobby: LobbyService):
        self.lobby = lobby
        self._subscription = None

    async def start(self) -> None:
        dispatcher = messages.Dispatcher("lobby matches")
        dispatcher.on(MatchRoom, self.received)
        self._subscription = await self.lobby.bus.subscribe(MATCHES_CHANNEL, dispatcher)

    async def stop(self) -> None:
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            await subscription.cancel()

    def received(self, sender: str, match: MatchRoom) -> defer.Deferred | None:
        """Open the match's room; a malformed message is logged and dropped."""
        try:
            teams = [[Caller.from_dict(caller) for caller in team] for team in match.teams]
            if (
                not teams
                or not all(teams)
                or not all(isinstance(v, str) for v in (match.ladder, match.mode, match.match))
            ):
                raise ValueError("no players, or names that are not strings")
        except (TypeError, ValueError, AttributeError) as e:
            self.log.warn(
                "lobby: dropped the room of a match from {sender}: {why}", sender=sender, why=e
            )
            return None
        described = {"ladder": match.ladder, "mode": match.mode, "match": match.match}
        d = defer.ensureDeferred(self.lobby.open_match_room(described, teams))
        return d.addErrback(log_failure, self.log, "lobby: the room of a match was not opened")
