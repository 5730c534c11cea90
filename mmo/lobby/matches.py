"""
The rooms of ranked matches: the ladder (L{mmo.ladder.service}) forms a
match and asks the lobby, with a L{mmo.game.messages.MatchRoom} on the bus
channel L{mmo.game.messages.MATCHES_CHANNEL}, to open its room; the lobby
moves the players' sessions into it (out of their rooms, as C{room.leave}
does), marks the room with the match (L{mmo.lobby.rooms.Room.match}) and
pushes each player C{ladder.matched} with the room.  It answers each
L{mmo.game.messages.MatchRoom} on L{mmo.game.messages.MATCH_ROOMS_CHANNEL}:
L{mmo.game.messages.MatchRoomOpened} with the room, or
L{mmo.game.messages.MatchRoomFailed} with why not.  The ladder asks again
when it hears no answer; a match asked for again gets the room opened the
first time, never a second room.  A game's rules in
the room (a L{mmo.lobby.service.LobbyService} subclass) then play the match
and report its result (L{mmo.ladder.report}).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from mmo.game import messages
from mmo.game.messages import (
    MATCH_ROOMS_CHANNEL,
    MATCHES_CHANNEL,
    MatchRoom,
    MatchRoomFailed,
    MatchRoomOpened,
)
from mmo.game.service import Caller
from mmo.unavailable import log_failure

#: How many matches' rooms are remembered, to answer a match asked for
#: again with its room (the oldest are forgotten first).  The ladder asks
#: again within seconds: this covers far more matches than open that fast.
REMEMBERED = 10_000

if TYPE_CHECKING:
    from mmo.lobby.service import LobbyService


class MatchRooms:
    """
    The lobby's subscription to the ladder's matches.

    @ivar opened: Match id -> the id of the room opened for it, the
        L{REMEMBERED} latest.
    """

    log = Logger()

    def __init__(self, lobby: LobbyService, remembered: int = REMEMBERED):
        self.lobby = lobby
        self.remembered = remembered
        self.opened: OrderedDict[str, str] = OrderedDict()
        #: Match id -> the opening of its room under way (a second ask waits for it).
        self._opening: dict[str, defer.Deferred] = {}
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
        """
        Open the match's room (once) and answer; a malformed message is
        logged, and answered as failed when it names a match.
        """
        if not isinstance(match.match, str):
            self.log.warn("lobby: dropped a match without an id from {sender}", sender=sender)
            return None
        d = defer.ensureDeferred(self._open(sender, match))
        return d.addErrback(log_failure, self.log, "lobby: a match's room was not answered")

    async def _open(self, sender: str, match: MatchRoom) -> None:
        room = self.opened.get(match.match)
        if room is None and match.match in self._opening:
            await self._opening[match.match]
            room = self.opened.get(match.match)
        if room is not None:
            await self._answer(MatchRoomOpened(match.match, room))
            return
        try:
            teams = _teams(match)
        except (TypeError, ValueError, AttributeError) as e:
            self.log.warn(
                "lobby: dropped the room of a match from {sender}: {why}", sender=sender, why=e
            )
            await self._answer(MatchRoomFailed(match.match, f"malformed match: {e}"))
            return
        described = {"ladder": match.ladder, "mode": match.mode, "match": match.match}
        opening = self._opening[match.match] = defer.Deferred()
        try:
            opened = await self.lobby.open_match_room(described, teams)
        except Exception as e:
            log_failure(Failure(), self.log, "lobby: the room of a match was not opened")
            answer = MatchRoomFailed(match.match, f"{type(e).__name__}: {e}")
        else:
            self._remember(match.match, opened.id)
            answer = MatchRoomOpened(match.match, opened.id)
        finally:
            del self._opening[match.match]
            opening.callback(None)
        await self._answer(answer)

    def _remember(self, match: str, room: str) -> None:
        self.opened[match] = room
        while len(self.opened) > self.remembered:
            self.opened.popitem(last=False)

    def _answer(self, answer) -> defer.Deferred:
        return messages.publish(self.lobby.bus, MATCH_ROOMS_CHANNEL, answer, "lobby")


def _teams(match: MatchRoom) -> list[list[Caller]]:
    """
    The match's teams of callers.

    @raise ValueError: No players, or names that are not strings.
    """
    teams = [[Caller.from_dict(caller) for caller in team] for team in match.teams]
    if (
        not teams
        or not all(teams)
        or not all(isinstance(v, str) for v in (match.ladder, match.mode))
    ):
        raise ValueError("no players, or names that are not strings")
    return teams
