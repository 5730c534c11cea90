"""
The lobby service: characters (L{mmo.lobby.characters}), rooms
(L{mmo.lobby.rooms}) and the step into the world.

Characters are durable: they live in the store, belong to an account and
have names unique across the deployment without regard to case.  Rooms are
ephemeral: they live in this process's memory, hold sessions (not accounts
or characters) and disappear with their last member or with the process.

Every change of a room's membership is told twice: to the other members,
as pushes through their gateways (L{GameService.deliver}), and to the other
services, as L{mmo.game.messages.RoomEvent}s on the bus channel
L{mmo.game.messages.ROOMS_CHANNEL}, so that chat can keep a channel per room
without asking the lobby.  Both are sent in the order the changes were
made: a handler changes the state without waiting on anything and only then
sends what it queued (L{mmo.lobby.sessions.Outbox}).

The contract with clients is C{docs/lobby.md}.  Request and reply fields
never use the keys C{t} and C{id}, which are the frame's type and request id
(a character or room is named by C{character} or C{room}).
"""

from __future__ import annotations

from collections.abc import Iterable

from twisted.internet import defer

from mmo.game.service import Caller, GameService, Reply, SessionChange, named_subclass
from mmo.lobby.characters import CharacterRequests, character_dict
from mmo.lobby.matches import MatchRooms
from mmo.lobby.rooms import Room, RoomRequests
from mmo.lobby.sessions import LobbySession, Outbox
from mmo.wire.codes import NOT_ALLOWED, NOT_FOUND, WireError


class LobbyService(CharacterRequests, RoomRequests, GameService):
    """
    Characters, rooms and the step into the world.

    Subclass it to add messages (C{async def on_room_ready(self, caller,
    message)}...) or to change the rules (L{check_character_name},
    L{check_character_data}).

    @ivar rooms: Open rooms by id, oldest first.
    """

    kind = "lobby"
    prefixes = ("character.", "room.", "world.")
    #: Nothing here follows the zone: a request's caller says where it is.
    hears_zone_changes = False

    def __init__(self, config, store, bus, reactor):
        super().__init__(config, store, bus, reactor)
        self.rules = config.lobby
        self.rooms: dict[str, Room] = {}
        self._sessions: dict[str, LobbySession] = {}
        self._account_locks: dict[str, defer.DeferredLock] = {}
        self.matches = MatchRooms(self)

    # -- life cycle -----------------------------------------------------------

    async def start(self) -> None:
        await self.matches.start()

    async def stop(self) -> None:
        """Close every room, telling its members (C{room.closed}) and the bus."""
        await self.matches.stop()
        outbox = Outbox(self)
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
            outbox = Outbox(self)
            self._leave_room(state, outbox)
            del self._sessions[caller.session]
            await outbox.flush()
        elif event in ("started", "changed", "moved"):
            await self._update(caller)
        else:
            self.log.warn("lobby: unknown session event {event!r}", event=event)

    async def _update(self, caller: Caller) -> LobbySession:
        """
        Remember C{caller} as the session's current view.  A member whose
        shown name changed (a character was chosen) is announced to the
        rest of its room (C{room.renamed}).
        """
        state = self._sessions.get(caller.session)
        if state is None:
            state = self._sessions[caller.session] = LobbySession(caller)
            return state
        old, state.caller = state.caller, caller
        if old.display_name != caller.display_name and state.room is not None:
            room = self.rooms[state.room]
            outbox = Outbox(self)
            outbox.push(
                self._callers(room.members, exclude=caller.session),
                "room.renamed",
                room=room.id,
                old=old.display_name,
                name=caller.display_name,
            )
            await outbox.flush()
        return state

    def _session(self, caller: Caller) -> LobbySession:
        state = self._sessions.get(caller.session)
        if state is None:  # a handler called without handle(), as in tests
            state = self._sessions[caller.session] = LobbySession(caller)
        return state

    def _callers(self, sessions: Iterable[str], exclude: str | None = None) -> list[Caller]:
        return [self._sessions[s].caller for s in sessions if s != exclude]

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
