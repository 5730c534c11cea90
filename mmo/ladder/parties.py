"""
Parties: the members of the lobby's rooms, as the lobby tells every
service on the bus (L{mmo.game.messages.RoomEvent} on
L{mmo.game.messages.ROOMS_CHANNEL}).  A player queues his room's members
as one party (C{ladder.queue.join} with C{party}); a party whose room
changes while it is queued leaves the queue.

Only what was heard since the ladder process started is known: after a
restart, a room is a party again once someone joins or leaves it.
"""

from __future__ import annotations

from mmo.game.messages import RoomEvent
from mmo.game.service import Caller


class Parties:
    """
    The rooms' members, by room.

    @ivar rooms: Room id -> its members' callers, by session, in the order
        they joined.
    """

    def __init__(self):
        self.rooms: dict[str, dict[str, Caller]] = {}
        self._room_of: dict[str, str] = {}

    def heard(self, event: RoomEvent) -> str | None:
        """
        Take in one room event; the room whose members changed, or C{None}
        for an event that changes nothing (malformed, or already known).
        """
        if not isinstance(event.caller, dict) or not isinstance(event.room, str):
            return None
        try:
            caller = Caller.from_dict(event.caller)
        except TypeError:
            return None
        if event.event == "joined":
            self.leave(caller.session)
            self.rooms.setdefault(event.room, {})[caller.session] = caller
            self._room_of[caller.session] = event.room
        elif event.event == "left":
            if self._room_of.get(caller.session) != event.room:
                return None
            self.leave(caller.session)
        elif event.event == "closed":
            for session in self.rooms.pop(event.room, {}):
                self._room_of.pop(session, None)
        else:
            return None
        return event.room

    def leave(self, session: str) -> str | None:
        """Take the session out of its room (its session ended); the room, if any."""
        room = self._room_of.pop(session, None)
        if room is not None:
            members = self.rooms[room]
            del members[session]
            if not members:
                del self.rooms[room]
        return room

    def room_of(self, session: str) -> str | None:
        return self._room_of.get(session)

    def members(self, room: str) -> list[Caller]:
        """The room's members, longest present first."""
        return list(self.rooms.get(room, {}).values())
