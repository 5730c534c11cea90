"""
The lobby service: characters, rooms and the step into the world.

Characters are durable: they live in the store, belong to an account and
have names unique across the deployment without regard to case.  Rooms are
ephemeral: they live in this process's memory, hold sessions (not accounts
or characters) and disappear with their last member or with the process.

Every change of a room's membership is told twice: to the other members,
as pushes through their gateways (L{GameService.deliver}), and to the other
services, as L{RoomEvent}s on the bus channel L{ROOMS_CHANNEL}, so that chat can keep a
channel per room without asking the lobby.  Both are sent in the order the
changes were made: a handler changes the state without waiting on anything
and only then sends what it queued (L{_Outbox}).

The contract with clients is C{docs/lobby.md}.  Request and reply fields
never use the keys C{t} and C{id}, which are the frame's type and request id
(a character or room is named by C{character} or C{room}).
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from twisted.internet import defer

from mmo.game import messages
from mmo.game.messages import ROOMS_CHANNEL, RoomEvent
from mmo.game.service import Caller, GameService, Reply, SessionChange, named_subclass
from mmo.lobby.matches import MatchRooms
from mmo.store import AlreadyExists, Character, NotFound, new_id
from mmo.unavailable import log_failure
from mmo.wire.codes import (
    BAD_NAME,
    BAD_REQUEST,
    CHARACTER_LIMIT,
    NAME_TAKEN,
    NOT_ALLOWED,
    NOT_FOUND,
    ROOM_FULL,
    WRONG_PASSWORD,
    WireError,
)

#: Character names: a letter, then letters, digits, '_' and '-' (the
#: lengths come from the config).
CHARACTER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")

#: Longest room name, characters.
ROOM_NAME_MAX_LENGTH = 32

#: Longest room password, characters.
ROOM_PASSWORD_MAX_LENGTH = 64


def character_dict(character: Character) -> dict:
    """A character as clients see it."""
    return {
        "id": character.id,
        "name": character.name,
        "created": character.created,
        "data": character.data,
    }


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


@dataclass
class _Session:
    """
    What the lobby knows of one session.

    @ivar caller: The latest L{Caller} (its gateway is where pushes go).
    @ivar room: The id of the room it is in, if any.
    """

    caller: Caller
    room: str | None = None


class _Outbox:
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


class LobbyService(GameService):
    """
    Characters, rooms and the step into the world.

    Subclass it to add messages (C{async def on_room_ready(self, caller,
    message)}...) or to change the rules (L{check_character_name},
    L{check_character_data}).

    @ivar rooms: Open rooms by id, oldest first.
    """

    kind = "lobby"
    prefixes = ("character.", "room.", "world.")

    def __init__(self, config, store, bus, reactor):
        super().__init__(config, store, bus, reactor)
        self.rules = config.lobby
        self.rooms: dict[str, Room] = {}
        self._sessions: dict[str, _Session] = {}
        self._account_locks: dict[str, defer.DeferredLock] = {}
        self.matches = MatchRooms(self)

    # -- life cycle -----------------------------------------------------------

    async def start(self) -> None:
        await self.matches.start()

    async def stop(self) -> None:
        """Close every room, telling its members (C{room.closed}) and the bus."""
        await self.matches.stop()
        outbox = _Outbox(self)
        for room in list(self.rooms.values()):
            members = self._callers(room.members)
            for session in room.members:
                self._sessions[session].room = None
            room.members.clear()
            self._close(room, members[0], outbox, tell=members)
        await outbox.flush()

    # -- sessions -------------------------------------------------------------

    async def handle(self, caller: Caller, kind: str, message: dict) -> dict | None:
        # The caller of a message is the gateway's current view of the
        # session: remember it, so that a lobby that missed the session's
        # events (it restarted) still knows where to push.
        await self._update(caller)
        return await super().handle(caller, kind, message)

    async def session_event(self, caller: Caller, event: str) -> None:
        """
        C{"started"}, C{"changed"} and C{"moved"} update the session's
        L{Caller}; C{"ended"} takes it out of its room and forgets it.
        """
        if event == "ended":
            state = self._sessions.get(caller.session)
            if state is None:
                return
            outbox = _Outbox(self)
            self._leave_room(state, outbox)
            del self._sessions[caller.session]
            await outbox.flush()
        elif event in ("started", "changed", "moved"):
            await self._update(caller)
        else:
            self.log.warn("lobby: unknown session event {event!r}", event=event)

    async def _update(self, caller: Caller) -> _Session:
        """
        Remember C{caller} as the session's current view.  A member whose
        shown name changed (a character was chosen) is announced to the
        rest of its room (C{room.renamed}).
        """
        state = self._sessions.get(caller.session)
        if state is None:
            state = self._sessions[caller.session] = _Session(caller)
            return state
        old, state.caller = state.caller, caller
        if old.display_name != caller.display_name and state.room is not None:
            room = self.rooms[state.room]
            outbox = _Outbox(self)
            outbox.push(
                self._callers(room.members, exclude=caller.session),
                "room.renamed",
                room=room.id,
                old=old.display_name,
                name=caller.display_name,
            )
            await outbox.flush()
        return state

    def _session(self, caller: Caller) -> _Session:
        state = self._sessions.get(caller.session)
        if state is None:  # a handler called without handle(), as in tests
            state = self._sessions[caller.session] = _Session(caller)
        return state

    def _callers(self, sessions: Iterable[str], exclude: str | None = None) -> list[Caller]:
        return [self._sessions[s].caller for s in sessions if s != exclude]

    # -- fields ----------------------------------------------------------------

    @staticmethod
    def _string(message: dict, key: str, optional: bool = False) -> str | None:
        value = message.get(key)
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value:
            raise WireError(BAD_REQUEST, f"{key!r} must be a non-empty string")
        return value

    # -- characters ------------------------------------------------------------

    def check_character_name(self, name) -> str:
        """C{name} if it follows the naming rules, else C{bad_request}/C{bad_name}."""
        if not isinstance(name, str):
            raise WireError(BAD_REQUEST, "'name' must be a string")
        low, high = self.rules.character_name_min_length, self.rules.character_name_max_length
        if not low <= len(name) <= high:
            raise WireError(BAD_NAME, f"a character name has {low} to {high} characters")
        if not CHARACTER_NAME.match(name):
            raise WireError(
                BAD_NAME,
                "a character name starts with a letter and has only letters, digits, '_' and '-'",
            )
        return name

    def check_character_data(self, data) -> dict:
        """The game attributes of a new character: a map, C{{}} if absent."""
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise WireError(BAD_REQUEST, "'data' must be a map")
        return data

    @asynccontextmanager
    async def _account_lock(self, account_id: str):
        """
        Run one character creation of an account at a time, so that two
        concurrent ones cannot both pass the limit.
        """
        lock = self._account_locks.setdefault(account_id, defer.DeferredLock())
        await lock.acquire()
        try:
            yield
        finally:
            lock.release()
            if not lock.locked and not lock.waiting:
                self._account_locks.pop(account_id, None)

    async def _own_character(self, caller: Caller, message: dict) -> Character:
        """The character C{message["character"]} of the caller's account, else C{not_found}."""
        character_id = self._string(message, "character")
        character = await self.store.character_by_id(character_id)
        # Another account's character is as unknown as a missing one.
        if character is None or character.account_id != caller.account_id:
            raise WireError(NOT_FOUND, f"you have no character {character_id!r}")
        return character

    def _chosen_elsewhere(self, caller: Caller, character_id: str) -> bool:
        """Whether another session (of the same account) has this character chosen."""
        return any(
            s.caller.character_id == character_id and s.caller.session != caller.session
            for s in self._sessions.values()
        )

    async def on_character_create(self, caller: Caller, message: dict) -> dict:
        name = self.check_character_name(message.get("name"))
        data = self.check_character_data(message.get("data"))
        limit = self.rules.characters_per_account
        async with self._account_lock(caller.account_id):
            if len(await self.store.characters(caller.account_id)) >= limit:
                raise WireError(CHARACTER_LIMIT, f"an account has at most {limit} characters")
            try:
                character = await self.store.create_character(caller.account_id, name, data)
            except AlreadyExists:
                raise WireError(NAME_TAKEN, f"the character name {name!r} is taken")
            except NotFound:
                raise WireError(NOT_FOUND, "your account no longer exists")
        self.log.info("lobby: {account} created character {name}", account=caller.name, name=name)
        return {"character": character_dict(character)}

    async def on_character_list(self, caller: Caller, message: dict) -> dict:
        characters = await self.store.characters(caller.account_id)
        return {
            "characters": [character_dict(c) for c in characters],
            "chosen": caller.character_id,
        }

    async def on_character_delete(self, caller: Caller, message: dict) -> dict | Reply:
        character = await self._own_character(caller, message)
        chosen = caller.character_id == character.id
        if chosen and caller.in_world:
            raise WireError(NOT_ALLOWED, "leave the world before deleting your character")
        if self._chosen_elsewhere(caller, character.id):
            raise WireError(NOT_ALLOWED, "the character is in play in another session")
        if not await self.store.delete_character(character.id):
            raise WireError(NOT_FOUND, f"you have no character {character.id!r}")
        self.log.info(
            "lobby: {account} deleted character {name}", account=caller.name, name=character.name
        )
        reply = {"deleted": character.id}
        if chosen:
            return Reply(reply, SessionChange(character_id=None, character_name=None))
        return reply

    async def on_character_choose(self, caller: Caller, message: dict) -> Reply:
        character = await self._own_character(caller, message)
        if caller.in_world and caller.character_id != character.id:
            raise WireError(NOT_ALLOWED, "leave the world before choosing another character")
        if self._chosen_elsewhere(caller, character.id):
            raise WireError(NOT_ALLOWED, "the character is in play in another session")
        return Reply(
            {"character": character_dict(character)},
            SessionChange(character_id=character.id, character_name=character.name),
        )

    # -- rooms -------------------------------------------------------------------

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
        room_id = self._string(message, "room")
        room = self.rooms.get(room_id)
        if room is None or room.realm != caller.realm:
            raise WireError(NOT_FOUND, f"no room {room_id!r}")
        return room

    def _my_room(self, caller: Caller) -> Room:
        state = self._session(caller)
        if state.room is None:
            raise WireError(NOT_ALLOWED, "you are not in a room")
        return self.rooms[state.room]

    def _join(self, state: _Session, room: Room, outbox: _Outbox) -> None:
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
        self, state: _Session, outbox: _Outbox, kicked_by: _Session | None = None
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
        self, room: Room, caller: Caller, outbox: _Outbox, tell: Iterable[Caller] = ()
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
        outbox = _Outbox(self)
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
        name = self._string(message, "name")
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
        outbox = _Outbox(self)
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
        outbox = _Outbox(self)
        self._join(state, room, outbox)
        await outbox.flush()
        return self._members_reply(room)

    async def on_room_leave(self, caller: Caller, message: dict) -> dict:
        room = self._my_room(caller)
        outbox = _Outbox(self)
        self._leave_room(self._session(caller), outbox)
        await outbox.flush()
        return {"left": room.id}

    async def on_room_kick(self, caller: Caller, message: dict) -> dict:
        name = self._string(message, "name")
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
        outbox = _Outbox(self)
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

    # -- the world -------------------------------------------------------------------

    async def on_world_enter(self, caller: Caller, message: dict) -> Reply:
        """
        Into the world with the chosen character: the session is in the
        world from then on (L{Caller.in_world}), so it may enter a zone.
        """
        if caller.character_id is None:
            raise WireError(NOT_ALLOWED, "choose a character first")
        character = await self.store.character_by_id(caller.character_id)
        if character is None or character.account_id != caller.account_id:
            raise WireError(NOT_FOUND, "your character no longer exists")
        return Reply(
            {"character": character_dict(character), "realm": caller.realm},
            SessionChange(in_world=True),
        )

    async def on_world_leave(self, caller: Caller, message: dict) -> Reply:
        """Back to the lobby; a character still in a zone must leave it first."""
        if not caller.in_world:
            raise WireError(NOT_ALLOWED, "you are not in the world")
        if caller.zone is not None:
            raise WireError(NOT_ALLOWED, "leave your zone first (zone.leave)")
        return Reply({}, SessionChange(in_world=False))


def lobby_service_class(config) -> type[LobbyService]:
    """
    The lobby service class named by C{[lobby] lobby_class} (a game's
    subclass with its own messages and rules), or L{LobbyService}.

    @raise ConfigError: It cannot be imported or is no L{LobbyService}.
    """
    return named_subclass(
        config.lobby.lobby_class, LobbyService, ("lobby", "lobby_class"), config.file
    )
