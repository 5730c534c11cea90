"""
The lobby's rooms (C{room.*}): named groups of sessions with an owner,
ephemeral, in this process's memory; they disappear with their last member
or with the process.  Every change of a room's membership is told to the
other members (pushes) and to the other services (L{RoomEvent}s on the
bus), in the order the changes were made (L{mmo.lobby.sessions.Outbox}).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field

from mmo.game import checks
from mmo.game.service import Caller
from mmo.lobby.sessions import FIELD_LIMIT, LobbySession, Outbox
from mmo.store import new_id
from mmo.wire.codes import BAD_REQUEST, NOT_ALLOWED, NOT_FOUND, ROOM_FULL, WRONG_PASSWORD, WireError

#: Longest room name, characters.
ROOM_NAME_MAX_LENGTH = 32

#: Longest room password, characters.
ROOM_PASSWORD_MAX_LENGTH = 64


@dataclass
class Room:
    """
    A room: a named group of sessions with an owner.

    @ivar owner: The session id of the owner: the creator, then, each time
        the owner leaves, the member present longest (C{members[0]}).  It is
        kept apart from C{members} so that a game may hand ownership over.
    @ivar members: Session ids, longest present first.
    @ivar password: The password, or C{None} for an open room.
    @ivar realm: The realm of its creator; players of other realms neither
        see nor join it.
    @ivar match: For a ranked match's room (L{mmo.lobby.matches}): its
        C{ladder}, C{mode}, C{match} id and C{teams} (account ids, by team);
        nobody else joins it.
    """

    id: str
    name: str
    capacity: int
    password: str | None
    realm: str
    owner: str
    members: list[str] = field(default_factory=list)
    match: dict | None = None

    @property
    def full(self) -> bool:
        return len(self.members) >= self.capacity


class RoomRequests:
    """
    The lobby's C{room.*} requests and the rooms of ranked matches: a part
    of L{mmo.lobby.service.LobbyService}, over its C{rooms}, C{rules} and
    sessions.
    """

    def room_dict(self, room: Room) -> dict:
        """A room as C{room.list} shows it."""
        return {
            "id": room.id,
            "name": room.name,
            "members": len(room.members),
            "capacity": room.capacity,
            "has_password": room.password is not None,
            "owner": self._sessions[room.owner].caller.display_name,
            **({"match": room.match} if room.match is not None else {}),
        }

    def _members_reply(self, room: Room) -> dict:
        return {
            "room": self.room_dict(room),
            "members": [
                {"name": c.display_name, "owner": c.session == room.owner}
                for c in self._callers(room.members)
            ],
        }

    def _find_room(self, caller: Caller, message: dict) -> Room:
        room_id = checks.string(message, "room", FIELD_LIMIT)
        room = self.rooms.get(room_id)
        if room is None or room.realm != caller.realm:
            raise WireError(NOT_FOUND, f"no room {room_id!r}")
        return room

    def _my_room(self, caller: Caller) -> Room:
        state = self._session(caller)
        if state.room is None:
            raise WireError(NOT_ALLOWED, "you are not in a room")
        return self.rooms[state.room]

    def _join(self, state: LobbySession, room: Room, outbox: Outbox) -> None:
        """Put the session into C{room}, out of any other, and tell both."""
        self._leave_room(state, outbox)
        outbox.push(
            self._callers(room.members),
            "room.joined",
            room=room.id,
            name=state.caller.display_name,
        )
        room.members.append(state.caller.session)
        state.room = room.id
        outbox.event(room, "joined", state.caller)

    def _leave_room(
        self, state: LobbySession, outbox: Outbox, kicked_by: LobbySession | None = None
    ) -> None:
        """
        Take the session out of its room, if any: ownership passes to the
        longest-present member, an empty room closes, and the others are
        told (except C{kicked_by}, who knows).
        """
        if state.room is None:
            return
        room = self.rooms[state.room]
        session = state.caller.session
        room.members.remove(session)
        state.room = None
        outbox.event(room, "left", state.caller)
        if not room.members:
            self._close(room, state.caller, outbox)
            return
        if room.owner == session:
            room.owner = room.members[0]
        outbox.push(
            self._callers(room.members, exclude=kicked_by and kicked_by.caller.session),
            "room.left",
            room=room.id,
            name=state.caller.display_name,
            owner=self._sessions[room.owner].caller.display_name,
            kicked=kicked_by is not None,
        )

    def _close(
        self, room: Room, caller: Caller, outbox: Outbox, tell: Iterable[Caller] = ()
    ) -> None:
        del self.rooms[room.id]
        outbox.push(tell, "room.closed", room=room.id)
        outbox.event(room, "closed", caller)
        self.log.info("lobby: room {id} ({name}) closed", id=room.id, name=room.name)

    def room_of(self, caller: Caller) -> Room | None:
        """The room the caller is in, if any (for a game's rules)."""
        state = self._sessions.get(caller.session)
        return None if state is None or state.room is None else self.rooms[state.room]

    def members(self, room: Room) -> list[Caller]:
        """The room's members, longest present first."""
        return self._callers(room.members)

    async def open_match_room(self, match: dict, teams: list[list[Caller]]) -> Room:
        """
        Open the room of a ranked match (C{match}: its C{ladder}, C{mode}
        and C{match} id), move the teams' sessions into it out of their
        rooms, and push each of them C{ladder.matched} with the room.
        """
        callers = [caller for team in teams for caller in team]
        states = [await self._update(caller) for caller in callers]
        match = {**match, "teams": [[c.account_id for c in team] for team in teams]}
        name = f"{match['ladder']} {match['mode']}"[:ROOM_NAME_MAX_LENGTH]
        room = Room(
            new_id(), name, len(callers), None, callers[0].realm, callers[0].session, match=match
        )
        self.rooms[room.id] = room
        outbox = Outbox(self)
        for state in states:
            self._join(state, room, outbox)
        shown = [[{"player": c.account_id, "name": c.display_name} for c in team] for team in teams]
        outbox.push(
            callers,
            "ladder.matched",
            ladder=match["ladder"],
            mode=match["mode"],
            match=match["match"],
            teams=shown,
            room=self.room_dict(room),
        )
        await outbox.flush()
        self.log.info("lobby: room {id} for match {match}", id=room.id, match=match["match"])
        return room

    async def on_room_create(self, caller: Caller, message: dict) -> dict:
        name = checks.string(message, "name", FIELD_LIMIT)
        name = name.strip()
        if not name or len(name) > ROOM_NAME_MAX_LENGTH or not name.isprintable():
            raise WireError(
                BAD_REQUEST,
                f"a room name has 1 to {ROOM_NAME_MAX_LENGTH} printable characters",
            )
        maximum = self.rules.room_max_capacity
        capacity = message.get("capacity")
        if capacity is None:
            capacity = min(self.rules.room_capacity, maximum)
        elif not isinstance(capacity, int) or isinstance(capacity, bool):
            raise WireError(BAD_REQUEST, "'capacity' must be an integer")
        elif not 2 <= capacity <= maximum:
            raise WireError(BAD_REQUEST, f"'capacity' must be from 2 to {maximum}")
        password = message.get("password")
        if password == "":
            password = None
        if password is not None and (
            not isinstance(password, str) or len(password) > ROOM_PASSWORD_MAX_LENGTH
        ):
            raise WireError(
                BAD_REQUEST,
                f"'password' must be a string of at most {ROOM_PASSWORD_MAX_LENGTH} characters",
            )
        state = self._session(caller)
        # The caller's current room closes when it leaves it alone.
        closing = state.room is not None and len(self.rooms[state.room].members) == 1
        if len(self.rooms) - closing >= self.rules.rooms_max:
            raise WireError(NOT_ALLOWED, "the lobby has as many rooms as it may; join one")
        room = Room(new_id(), name, capacity, password, caller.realm, owner=caller.session)
        outbox = Outbox(self)
        self._leave_room(state, outbox)
        self.rooms[room.id] = room
        self._join(state, room, outbox)
        await outbox.flush()
        self.log.info(
            "lobby: {caller} opened room {id} ({name})",
            caller=caller.display_name,
            id=room.id,
            name=name,
        )
        return self._members_reply(room)

    async def on_room_list(self, caller: Caller, message: dict) -> dict:
        return {
            "rooms": [
                self.room_dict(room) for room in self.rooms.values() if room.realm == caller.realm
            ]
        }

    async def on_room_join(self, caller: Caller, message: dict) -> dict:
        room = self._find_room(caller, message)
        password = message.get("password")
        if password is not None and not isinstance(password, str):
            raise WireError(BAD_REQUEST, "'password' must be a string")
        state = self._session(caller)
        if state.room == room.id:
            return self._members_reply(room)
        if room.password is not None and not hmac.compare_digest(
            (password or "").encode(), room.password.encode()
        ):
            raise WireError(WRONG_PASSWORD, "wrong password for this room")
        if room.match is not None:
            raise WireError(NOT_ALLOWED, "a match's room takes only its players")
        if room.full:
            raise WireError(ROOM_FULL, f"the room is full ({room.capacity} members)")
        outbox = Outbox(self)
        self._join(state, room, outbox)
        await outbox.flush()
        return self._members_reply(room)

    async def on_room_leave(self, caller: Caller, message: dict) -> dict:
        room = self._my_room(caller)
        outbox = Outbox(self)
        self._leave_room(self._session(caller), outbox)
        await outbox.flush()
        return {"left": room.id}

    async def on_room_kick(self, caller: Caller, message: dict) -> dict:
        name = checks.string(message, "name", FIELD_LIMIT)
        room = self._my_room(caller)
        if room.owner != caller.session:
            raise WireError(NOT_ALLOWED, "only the room's owner may kick")
        members = self._callers(room.members)
        # Names are compared without regard to case; when that matches two
        # members (an account's name and a character's), the exact one wins.
        matches = [c for c in members if c.display_name.casefold() == name.casefold()]
        if not matches:
            raise WireError(NOT_FOUND, f"nobody called {name!r} is in the room")
        if len(matches) > 1:
            matches = [c for c in matches if c.display_name == name]
            if len(matches) != 1:
                raise WireError(BAD_REQUEST, f"several members are called {name!r}; give the case")
        target = matches[0]
        if target.session == caller.session:
            raise WireError(BAD_REQUEST, "you cannot kick yourself; use room.leave")
        owner = self._session(caller)
        outbox = Outbox(self)
        self._leave_room(self._sessions[target.session], outbox, kicked_by=owner)
        outbox.push([target], "room.kicked", room=room.id, by=caller.display_name)
        await outbox.flush()
        self.log.info(
            "lobby: {owner} kicked {name} from room {id}",
            owner=caller.display_name,
            name=target.display_name,
            id=room.id,
        )
        return {"kicked": target.display_name}

    async def on_room_members(self, caller: Caller, message: dict) -> dict:
        return self._members_reply(self._my_room(caller))
