"""
What the lobby knows of each session, and how a handler's pushes and room
events leave in the order of its changes (L{Outbox}).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from twisted.internet import defer

from mmo.game import messages
from mmo.game.messages import ROOMS_CHANNEL, RoomEvent
from mmo.game.service import Caller
from mmo.unavailable import log_failure

if TYPE_CHECKING:
    from mmo.lobby.rooms import Room
    from mmo.lobby.service import LobbyService


#: The longest id or name a lobby request names a room, a character or a
#: member by (ids are 32 hex digits, names shorter; a room's new name is
#: checked again, stripped, against its own limit).
FIELD_LIMIT = 128


@dataclass
class LobbySession:
    """
    What the lobby knows of one session.

    @ivar caller: The latest L{Caller} (its gateway is where pushes go).
    @ivar room: The id of the room it is in, if any.
    """

    caller: Caller
    room: str | None = None


class Outbox:
    """
    Pushes and bus events queued by a handler while it changes the state,
    sent together by L{flush}: every publication is started at once, in the
    order queued, so that the order on each channel is the order of the
    changes even when handlers run concurrently.
    """

    def __init__(self, service: LobbyService):
        self.service = service
        self.sends: list = []

    def push(self, targets: Iterable[Caller], kind: str, **fields) -> None:
        targets = list(targets)
        if targets:
            self.sends.append(lambda: self.service.deliver(targets, kind, **fields))

    def event(self, room: Room, event: str, caller: Caller) -> None:
        message = RoomEvent(room.id, event, caller.to_dict())
        bus = self.service.bus
        self.sends.append(lambda: messages.publish(bus, ROOMS_CHANNEL, message, "lobby"))

    async def flush(self) -> None:
        """
        Send everything queued.  A failure (the bus is down) is logged, not
        raised: the change it announces has been made, and an error reply
        would tell the player otherwise.
        """
        sends, self.sends = self.sends, []
        started = [defer.ensureDeferred(defer.maybeDeferred(send)) for send in sends]
        results = await defer.DeferredList(started, consumeErrors=True)
        for ok, result in results:
            if not ok:
                log_failure(result, self.service.log, "lobby: a push or room event was not sent")
