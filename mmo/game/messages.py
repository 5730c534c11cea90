"""
Every message between mmo's processes on the bus, and every channel and
shared key name: one typed vocabulary.

A message is a frozen dataclass registered here by its class name (the
I{type} on the wire).  On the bus it travels as a map: C{{"type": NAME,
"from": SENDER, ...fields}}, the fields as they are (plain values, lists and
maps: what msgpack carries), so encoding costs one shallow copy
(L{encode}); L{decode} gives back C{(sender, message)} or raises
C{ValueError} for what is not a message of this vocabulary.  A subscriber
hands what it hears to a L{Dispatcher}, which calls the handler registered
for the message's type.

    channel                 who listens      what travels on it
    gateway:NAME            gateway NAME     L{Push}, L{PushBatch}, L{PushStems},
                                             L{HandoverRequest},
                                             L{HandoverAnswer}, L{Relink}, L{SwitchRoute},
                                             L{Moved}
    zone:REGION             the zone         L{Offer}, L{Accept}, L{Refuse}, L{Forward},
                                             L{Done}, L{Switched}, L{Input}, L{GhostUpdate},
                                             L{GhostSync},
                                             L{TakeoverMarker}, L{HandedOver},
                                             L{HandoverAborted}, L{RelayedEvent}
    takeover:PROCESS        a new zone host  L{Released}
    control:PROCESS         process PROCESS  L{Command}
    control-reply:ID        who sent ID      L{CommandReply}
    sessions                every gateway    L{AccountSession}
    gateways                every game       L{GatewayStarted}
                            service
    lobby.rooms             chat, ladder     L{RoomEvent}
    lobby.matches           the lobby        L{MatchRoom}
    ladder.rooms            the ladder       L{MatchRoomOpened}, L{MatchRoomFailed}
    ladder.results          the ladder       L{MatchResult}
    KIND.calls              the processes    L{ServiceCall}
                            of kind KIND
    ladder-reply:ID         who sent ID      L{MatchResultAnswer}
    service-reply:PROCESS   process PROCESS  L{ServiceCallAnswer}
    map.watch               every zone       L{MapWatch}
    map.feed                the consoles     L{MapFrame}
                            with a map open

Requests and their answers (control commands, the gateways' handover of a
session) are matched by id with one L{Requests} table.

Wire compatibility: the types and field names here are what processes of
one deployment exchange; a rolling upgrade works between versions that
share them (C{docs/architecture.md}).
"""

from __future__ import annotations

import inspect
import uuid
from dataclasses import dataclass, fields
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from mmo.unavailable import log_failure

# -- channels and shared keys ----------------------------------------------------------

#: Where login tells the gateways that an account logged out or in again.
SESSIONS_CHANNEL = "sessions"

#: Where the lobby tells chat of its rooms' members.
ROOMS_CHANNEL = "lobby.rooms"

#: Where a gateway says it started, so that game services end the sessions
#: an earlier process of its name held (L{mmo.game.gateways}).
GATEWAYS_CHANNEL = "gateways"


#: Where the ladder asks the lobby to open a match's room (L{MatchRoom}).
MATCHES_CHANNEL = "lobby.matches"

#: Where the lobby answers each L{MatchRoom} (L{MatchRoomOpened}, L{MatchRoomFailed}).
MATCH_ROOMS_CHANNEL = "ladder.rooms"

#: Where game code reports match results to the ladder (L{MatchResult}).
RESULTS_CHANNEL = "ladder.results"

#: The start of a process's reply channel for relayed calls (L{service_reply_channel}).
SERVICE_REPLY_PREFIX = "service-reply:"

#: Where a console with the live map open says so, again and again (L{MapWatch}).
MAP_WATCH_CHANNEL = "map.watch"

#: Where each zone publishes its map snapshots while someone watches (L{MapFrame}).
MAP_FEED_CHANNEL = "map.feed"

#: The bus key of the ladder's queues and open matches (L{mmo.ladder.service}).
LADDER_STATE_KEY = "ladder:queue"


def ladder_reply_channel(request: str) -> str:
    """Where the ladder answers the result report C{request} (L{MatchResultAnswer})."""
    return f"ladder-reply:{request}"


def service_calls_channel(kind: str) -> str:
    """
    Where a process of kind C{kind} standing by relays the client messages
    only the holder of the kind's lease serves (L{ServiceCall}; the
    ladder's queue, the economy's trades).
    """
    return f"{kind}.calls"


def service_reply_channel(process: str) -> str:
    """Where the relaying process C{process} hears the answers (L{ServiceCallAnswer})."""
    return f"{SERVICE_REPLY_PREFIX}{process}"


def gateway_channel(gateway: str) -> str:
    """What gateway C{gateway} hears: pushes for its sessions, handovers, route switches."""
    return f"gateway:{gateway}"


def zone_channel(zone: str) -> str:
    """What zone C{zone} hears: handoffs, inputs, ghosts, the replacement of its process."""
    return f"zone:{zone}"


def takeover_channel(process: str) -> str:
    """Where the old process of C{process} says it released its name (L{Released})."""
    return f"takeover:{process}"


def control_channel(process: str) -> str:
    """Where process C{process} takes control commands (L{Command})."""
    return f"control:{process}"


def reply_channel(request: str) -> str:
    """Where the answer to the control command C{request} goes (L{CommandReply})."""
    return f"control-reply:{request}"


def online_key(account_id: str) -> str:
    """The bus key of an account's presence: which gateway holds its session."""
    return f"online:{account_id}"


def session_key(token_hash: str) -> str:
    """The bus key naming the gateway that holds the session of a resume token's hash."""
    return f"session:{token_hash}"


def revoked_key(account_id: str) -> str:
    """The bus key of the time up to which an account's tickets are revoked."""
    return f"revoked:{account_id}"


def ticket_key(nonce: str) -> str:
    """The bus key claimed when the ticket of C{nonce} is used (once)."""
    return f"ticket:{nonce}"


def job_lease_key(job: str) -> str:
    """The bus lease held by the process that runs the scheduled job C{job} (L{mmo.jobs})."""
    return f"job:{job}"


# -- the registry ----------------------------------------------------------------------

#: Every message type, by its name on the wire.
TYPES: dict[str, type] = {}

#: The field names of each type, in order.
_FIELDS: dict[type, tuple[str, ...]] = {}

#: The fields of each type whose default is C{None}: left out while C{None}.
_OPTIONAL: dict[type, frozenset[str]] = {}


def message(cls):
    """Make C{cls} a frozen dataclass and register it as a message type."""
    cls = dataclass(frozen=True)(cls)
    name = cls.__name__
    if name in TYPES:
        raise TypeError(f"two message types are called {name!r}")
    TYPES[name] = cls
    _FIELDS[cls] = tuple(f.name for f in fields(cls))
    _OPTIONAL[cls] = frozenset(f.name for f in fields(cls) if f.default is None)
    return cls


def encode(value, sender: str = "") -> dict:
    """
    The bus message carrying C{value} (a registered message) from
    C{sender}.  A field whose default is C{None} is left out while it is
    C{None}: a release that adds such a field still talks to one that does
    not know it, as long as it is not set.
    """
    cls = type(value)
    names = _FIELDS.get(cls)
    if names is None:
        raise TypeError(f"not a message: {value!r}")
    optional = _OPTIONAL[cls]
    body = {"type": cls.__name__, "from": sender}
    for name in names:
        field = getattr(value, name)
        if field is None and name in optional:
            continue
        body[name] = field
    return body


def decode(data) -> tuple[str, Any]:
    """
    C{(sender, message)} of a bus message made by L{encode}.

    @raise ValueError: It is not one (not a map, an unknown type, missing or
        unknown fields).
    """
    if not isinstance(data, dict):
        raise ValueError("a message is a map")
    cls = TYPES.get(data.get("type"))
    sender = data.get("from", "")
    if cls is None or not isinstance(sender, str):
        raise ValueError(f"unknown message type {data.get('type')!r}")
    values = {k: v for k, v in data.items() if k != "type" and k != "from"}
    try:
        return sender, cls(**values)
    except TypeError as e:
        raise ValueError(f"malformed {cls.__name__}: {e}") from None


def publish(bus, channel: str, value, sender: str = "") -> defer.Deferred:
    """Publish message C{value} from C{sender} on C{channel}: Deferred[None]."""
    return defer.maybeDeferred(bus.publish, channel, encode(value, sender))


class Dispatcher:
    """
    A channel's subscriber: decodes each message and calls the handler
    registered for its type with C{(sender, message)}; what it returns (a
    Deferred, or nothing) is returned.  Malformed messages and types nobody
    handles here are logged and dropped: a bus message never breaks a process.

    A run of messages from the bus (L{run}) is handled in order, and the
    consecutive messages of a type with a run handler (L{on}'s C{runs}) in
    one call of it.

    @ivar handlers: Message class -> handler.
    @ivar runs: Message class -> run handler.
    """

    log = Logger()

    def __init__(self, name: str):
        self.name = name
        self.handlers: dict[type, Any] = {}
        self.runs: dict[type, Any] = {}

    def on(self, cls: type, handler, runs=None) -> None:
        """
        Have C{handler(sender, message)} handle messages of type C{cls}; and,
        given C{runs}, C{runs([(sender, message), ...])} several of them
        that come one after another in a run (L{run}), in order: what
        C{handler} would do with each in turn, the order of each session's
        frames included.
        """
        if cls not in _FIELDS:
            raise TypeError(f"not a message type: {cls!r}")
        self.handlers[cls] = handler
        if runs is None:
            self.runs.pop(cls, None)
        else:
            self.runs[cls] = runs

    def __call__(self, data):
        try:
            sender, value = decode(data)
        except ValueError as e:
            self.log.warn("{name}: dropped a bus message: {why}", name=self.name, why=str(e))
            return None
        return self._handle(sender, value)

    def run(self, datas: list) -> None:
        """
        Handle a run of messages (L{mmo.bus.memory.deliver_run}), in order:
        each as L{__call__} does, but the consecutive messages of a type
        with a run handler in one call of it.  What a handler raises, or
        fails with later, is logged, each failure apart, and does not stop
        the others.
        """
        cls, together = None, []
        for data in datas:
            try:
                sender, value = decode(data)
            except ValueError as e:
                self.log.warn("{name}: dropped a bus message: {why}", name=self.name, why=str(e))
                continue
            if type(value) is not cls and together:
                self._call(cls, self.runs[cls], together)
                together = []
            cls = type(value)
            if cls in self.runs:
                together.append((sender, value))
            else:
                self._call(cls, self._handle, sender, value)
        if together:
            self._call(cls, self.runs[cls], together)

    def _call(self, cls: type, handler, *args) -> None:
        try:
            result = handler(*args)
        except Exception:
            self._failed(Failure(), cls)
            return
        if inspect.iscoroutine(result):
            result = defer.ensureDeferred(result)
        if isinstance(result, defer.Deferred):
            result.addErrback(self._failed, cls)

    def _failed(self, failure: Failure, cls: type) -> None:
        self.log.failure(
            "{name}: handling {type} failed", failure, name=self.name, type=cls.__name__
        )

    def _handle(self, sender: str, value):
        handler = self.handlers.get(type(value))
        if handler is None:
            self.log.warn(
                "{name}: unexpected {type} from {sender}",
                name=self.name,
                type=type(value).__name__,
                sender=sender or "?",
            )
            return None
        return handler(sender, value)


class BusLink:
    """
    Sends messages to other processes by name over the bus: to a zone's
    channel (L{zone_channel}) when the name is one of C{zones}, else to the
    gateway of that name (L{gateway_channel}).  One bus keeps the order of
    one sender's messages on a channel.  (The handoff's C{Link}:
    L{mmo.zone.handoff.Link}.)

    @ivar name: Who sends (the C{from} of every message).
    """

    log = Logger()

    def __init__(self, bus, name: str, zones):
        self.bus = bus
        self.name = name
        self.zones = frozenset(zones)

    def channel(self, to: str) -> str:
        return zone_channel(to) if to in self.zones else gateway_channel(to)

    def send(self, to: str, value) -> defer.Deferred:
        """Send C{value} to C{to} without waiting; a failure is logged."""
        d = publish(self.bus, self.channel(to), value, self.name)
        return d.addErrback(
            log_failure,
            self.log,
            "{name}: sending {message!r} to {to} failed",
            name=self.name,
            message=value,
            to=to,
        )


class Requests:
    """
    Requests sent on the bus that wait for an answer, by id: each waits at
    most its timeout, then fails with L{defer.TimeoutError}.

    @param clock: Provides C{callLater} (a reactor).
    """

    def __init__(self, clock):
        self.clock = clock
        self._waiting: dict[str, defer.Deferred] = {}

    def new(self, timeout: float) -> tuple[str, defer.Deferred]:
        """A fresh request id and the Deferred its answer fires."""
        request = uuid.uuid4().hex
        waiter: defer.Deferred = defer.Deferred()
        waiter.addTimeout(timeout, self.clock)
        self._waiting[request] = waiter

        def done(result):
            self._waiting.pop(request, None)
            return result

        waiter.addBoth(done)
        return request, waiter

    def answer(self, request, result) -> bool:
        """Fire request C{request} with C{result}; whether it was waiting."""
        waiter = self._waiting.get(request) if isinstance(request, str) else None
        if waiter is None or waiter.called:
            return False
        waiter.callback(result)
        return True

    def fail(self, request, error: Exception) -> bool:
        """Fail request C{request} with C{error}; whether it was waiting."""
        waiter = self._waiting.get(request) if isinstance(request, str) else None
        if waiter is None or waiter.called:
            return False
        waiter.errback(error)
        return True

    def fail_all(self, error: Exception) -> None:
        """Fail every request still waiting (the process stops)."""
        for request in list(self._waiting):
            self.fail(request, error)


# -- pushes and sessions (gateway:NAME, sessions, gateways, lobby.rooms) -----------------


@message
class Push:
    """A service's push C{kind} with C{fields} to sessions held by the gateway."""

    sessions: list
    kind: str
    fields: dict


@message
class PushBatch:
    """A zone's pushes of one tick: C{{session: [[kind, fields], ...]}}, in order."""

    pushes: dict


@message
class PushStems:
    """
    A zone's pushes of one tick, each encoded once, by the zone, as its
    client frame up to the sequence number (L{mmo.wire.codec.push_stem}):
    C{{session: [stem, ...]}}, in order.  A gateway numbers each stem and
    sends it as it is (nothing decoded, nothing encoded again).  Only for a
    gateway that knows it: one whose link takes
    L{mmo.rpc.commands.StreamStems}, or the same process's (the standalone
    server); an older gateway is sent the L{PushBatch}.
    """

    pushes: dict


@message
class HandoverRequest:
    """A gateway asks the holder of a session for it (a client resumes on C{to})."""

    request: str
    token: str
    last_seq: int
    to: str


@message
class HandoverAnswer:
    """The holder's answer: the session's C{state}, or why it C{refused}."""

    request: str
    state: dict | None = None
    refused: str | None = None


@message
class Relink:
    """Zone process C{process} was replaced: gateways move their link to the new one."""

    process: str


@message
class AccountSession:
    """
    An account's session C{session} began (C{reason} "replaced": any other
    session of the account ends) or the account logged out ("logout": all
    but C{session} end).
    """

    account: str
    session: str | None
    reason: str


@message
class GatewayStarted:
    """
    Gateway C{gateway} started, as its C{incarnation} (a fresh id each start,
    the L{mmo.game.service.Caller.incarnation} of its sessions): the sessions
    that an earlier process of that name held died with it.
    """

    gateway: str
    incarnation: str


@message
class RoomEvent:
    """A lobby room's membership changed: C{event} "joined", "left" or "closed"."""

    room: str
    event: str
    caller: dict


# -- ranked matches (lobby.matches, ladder.results, ladder-reply:ID; see mmo.ladder) ------


@message
class MatchRoom:
    """
    The ladder formed match C{match} of ladder C{ladder}, mode C{mode}: the
    lobby opens a room for it, moves the players' sessions into it and
    pushes each of them C{ladder.matched}.  C{teams}: by team, the players'
    callers (L{mmo.game.service.Caller.to_dict}).
    """

    ladder: str
    mode: str
    match: str
    teams: list


@message
class MatchRoomOpened:
    """
    The lobby's answer to a L{MatchRoom}: the room of match C{match} is
    C{room}.  A L{MatchRoom} sent again gets the same room.
    """

    match: str
    room: str


@message
class MatchRoomFailed:
    """
    The lobby's answer to a L{MatchRoom} whose room it could not open
    (C{reason}): the ladder cancels the match.
    """

    match: str
    reason: str


@message
class MatchResult:
    """
    Game code reports the result of match C{match} of ladder C{ladder}:
    C{ranks} (one per team, in the match's team order, lower is better,
    equal for a tie) or C{scores} (one per team, higher is better).
    Answered on C{reply} with a L{MatchResultAnswer} for C{request}.
    """

    request: str
    reply: str
    ladder: str
    match: str
    ranks: list | None = None
    scores: list | None = None


@message
class MatchResultAnswer:
    """
    The ladder's answer to result report C{request}: applied (C{ok}, with
    the C{result}; a report repeated gives the first one's) or refused
    (C{error}: no such match, ranks that do not fit it).
    """

    request: str
    ok: bool
    result: Any = None
    error: str | None = None


@message
class ServiceCall:
    """
    A client's message that reached a process standing by (the ladder's
    C{ladder.queue.*}, the economy's C{trade.*}), relayed to the one
    holding its kind's lease (L{mmo.game.relay}): C{caller}
    (L{mmo.game.service.Caller.to_dict}) sent C{kind} with C{message}.
    Answered on C{reply} with a L{ServiceCallAnswer} for C{request}.
    """

    request: str
    reply: str
    caller: dict
    kind: str
    message: dict


@message
class ServiceCallAnswer:
    """
    The serving process's answer to L{ServiceCall} C{request}: its reply's
    fields, or the error (C{code}, C{error}) the client is told.
    """

    request: str
    reply: dict | None = None
    code: str | None = None
    error: str | None = None


# -- the handoff (zone:REGION, gateway:NAME; see mmo.zone.handoff) ------------------------


@message
class Offer:
    """
    Old owner to new: take this entity (its full state, C{record}); C{seen}
    is what its player's client has in view, so that the view goes on.
    """

    transfer_id: str
    entity_id: str
    from_zone: str
    to_zone: str
    record: dict
    seen: list | None = None


@message
class Accept:
    """
    New owner to old: the store names me owner by this transfer, at
    C{version}; C{ghost_tick} is the number of my last ghost tick before
    that: every L{GhostUpdate} numbered up to it was sent before (an empty
    delta of a tick is not sent at all), and the old owner ghosts the
    entity until a later one.
    """

    transfer_id: str
    entity_id: str
    version: int
    ghost_tick: int | None = None


@message
class Refuse:
    """New owner to old: this transfer cannot commit (the store names C{owner})."""

    transfer_id: str
    entity_id: str
    owner: str | None


@message
class Forward:
    """
    Inputs that reached a zone that no longer owns the entity, to the zone
    it was handed to (C{transfer_id}: that handoff, or C{None} when found
    in the store), in order: C{((seq, payload), ...)}.
    """

    transfer_id: str | None
    entity_id: str
    inputs: tuple
    hops: int = 1

    def __post_init__(self):
        # Lists on the wire: the pairs as tuples, comparable and hashable.
        object.__setattr__(self, "inputs", tuple(tuple(item) for item in self.inputs))


@message
class Done:
    """
    Old owner to new: the gateway switched, I forward nothing more of mine.
    C{unswitched}: the gateway never said it switched (I stopped waiting):
    what I last showed its player may not have reached it.
    """

    transfer_id: str
    entity_id: str
    unswitched: bool | None = None


@message
class SwitchRoute:
    """Old owner to gateway: send the session's inputs to C{zone} now."""

    transfer_id: str
    session: str
    entity_id: str
    zone: str
    version: int


@message
class Switched:
    """
    Gateway to old owner: the route is switched; every input sent to you
    before was sent before this (same link, so it arrived before this).
    """

    transfer_id: str
    session: str


@message
class Input:
    """Gateway to zone: a player's input, numbered by the client."""

    session: str | None
    entity_id: str
    seq: int
    payload: object


@message
class Moved:
    """Zone to gateway: the session's entity is owned by C{zone} (at C{version})."""

    session: str
    entity_id: str
    zone: str
    version: int


@message
class GhostUpdate:
    """
    One zone's ghosts for one neighbour, for one tick (see L{mmo.zone.ghosts}).

    @ivar zone: The sending zone.
    @ivar tick: Its tick number: increasing, and best not restarting from 0
        when the zone restarts (derive it from the time), since a zone's
        updates numbered below its last one are ignored until its ghosts
        expire.
    @ivar views: Ghost views (an entity's view and version) of its reals
        within the neighbour's margin: all of them (a whole update, which
        every release reads), or, with C{base}, those that changed since.
    @ivar base: A delta's: the tick of the update to the same neighbour
        just before it, which it changes (the views it does not list are
        as they were there).  Sent only to a zone that asked for deltas
        (L{GhostSync}).
    @ivar gone: A delta's: the ids of the views of C{base} no longer listed.
    """

    zone: str
    tick: int
    views: tuple
    base: int | None = None
    gone: tuple | None = None

    def __post_init__(self):
        object.__setattr__(self, "views", tuple(self.views))
        if self.gone is not None:
            object.__setattr__(self, "gone", tuple(self.gone))


@message
class GhostSync:
    """
    A zone to a neighbour whose L{GhostUpdate}s it hears: it takes them as
    deltas for a while (L{mmo.zone.ghosts.LEASE}); C{full}: it lacks the
    base of the last one (it missed one, or it is new), send the next whole.
    """

    zone: str
    full: bool = False


# -- replacing a zone's process (zone:REGION, takeover:PROCESS; docs/world.md) -------------


@message
class TakeoverMarker:
    """The old process's marker: what comes after it on the channel is the new one's."""

    token: str


@message
class HandedOver:
    """
    The old process handed the zone over: what the new one needs to go on
    (the tick count, its players' views, NPCs, ghosts, and the records the
    store refused in the final checkpoint).
    """

    token: str
    tick: int
    ghost_tick: int
    last_tick: float | None
    seen: dict
    npcs: list
    npc_serial: int
    ghosts: dict
    refused: list


@message
class HandoverAborted:
    """The old process could not hand the zone over: it goes on serving it."""

    token: str


@message
class RelayedEvent:
    """
    A session event for a zone, passed on by another process: one that
    reached a zone's old process after its takeover marker, for the new
    one (C{token}: the takeover's); or the end of a session whose entity
    a zone handed over while it was offered, for the new owner (C{token}
    empty).
    """

    token: str
    caller: dict
    event: str


@message
class Released:
    """The old process released its name (port, directory, control) for the new one."""

    token: str


# -- the live map (map.watch, map.feed; docs/map.md) -------------------------------------


@message
class MapWatch:
    """
    A console has the live map open: every zone publishes L{MapFrame}s for
    C{ttl} seconds from now (the console says it again before then).

    @ivar view: C{[x0, y0, x1, y1]}, what the console's browsers show
        between them: a zone whose region is outside it publishes nothing
        for this console; C{None}, the whole world.
    """

    ttl: float
    view: list | None = None


@message
class MapFrame:
    """
    One zone's entities and handoffs in flight at one tick, packed for the map.

    @ivar zone: The region's name.
    @ivar time: The zone's clock at the tick (wall-clock seconds).
    @ivar players: The ids of the players, in order: the first
        C{len(players)} positions are theirs, the rest are NPCs'.
    @ivar xs: The positions across, little-endian float32s.
    @ivar ys: The positions up, little-endian float32s, in the same order.
    @ivar handoffs: C{[entity id, to zone, x, y]} of each handoff this zone
        started that is not settled yet.
    """

    zone: str
    time: float
    players: tuple
    xs: bytes
    ys: bytes
    handoffs: tuple

    def __post_init__(self):
        object.__setattr__(self, "players", tuple(self.players))
        object.__setattr__(self, "handoffs", tuple(tuple(h) for h in self.handoffs))


# -- control commands (control:PROCESS, control-reply:ID; see mmo.process.control) --------


@message
class Command:
    """An operator's command C{command} with its keyword C{args}; answer on C{reply}."""

    command: str
    args: dict
    id: str
    reply: str


@message
class CommandReply:
    """The outcome of command C{id}: C{result}, or why it failed (C{error})."""

    id: str
    ok: bool
    result: Any = None
    error: str | None = None
