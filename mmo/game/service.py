"""
Game services behind the gateway: the lobby, chat and the zones.

A gateway routes each admitted player's message to the service that owns
its type (by prefix: C{character.*}, C{room.*} and C{world.*} to the lobby,
C{chat.*} to chat, C{zone.*} to the zones), in the same process
(standalone) or over AMP (a cluster).  A service is a domain object: it gets
a L{Caller} and the message, returns the reply's fields (or a L{Reply} that
also changes the caller's session) or raises L{WireError}, and sends pushes
to players with L{deliver}, through the bus, to whichever gateway holds them.

Services also hear of session events (L{GameService.session_event}):
C{"started"} when a player is admitted, C{"changed"} when the session's
character or place changes, C{"moved"} when it resumed on another gateway and
C{"ended"} when it is gone for good (logout, replaced, or the resume window
ran out), at which point the service frees what the session held.  A
session whose gateway died (it restarted, or left the directory for good)
is ended the same way by the service's own process (L{mmo.game.gateways}).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from operator import attrgetter

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.reflect import namedAny

from mmo.config import ConfigError
from mmo.game.messages import Push, gateway_channel, publish
from mmo.wire import codes
from mmo.wire.codes import WireError


def named_subclass(name: str, base: type, key: tuple, file: str | None) -> type:
    """
    The class a config names by C{name} at C{key} (a game's subclass of
    C{base}, with its own messages and rules), or C{base} if C{name} is empty.

    @raise ConfigError: It cannot be imported or is no subclass of C{base}.
    """
    if not name:
        return base
    try:
        found = namedAny(name)
    except Exception as e:
        raise ConfigError(f"cannot import {name!r}: {e}", key, file)
    if not (isinstance(found, type) and issubclass(found, base)):
        qualified = f"{base.__module__}.{base.__qualname__}"
        raise ConfigError(f"{name!r} is not a subclass of {qualified}", key, file)
    return found


def owns(prefixes, kind: str) -> bool:
    """Whether C{kind} is one of C{prefixes} or starts with one that ends in "."."""
    # A loop, not any() of a generator: a service asks at every input.
    for prefix in prefixes:
        if kind == prefix or (prefix.endswith(".") and kind.startswith(prefix)):
            return True
    return False


@dataclass(frozen=True, slots=True)
class Caller:
    """
    Who sent a message: one admitted session.

    @ivar session: The session id (kept across a resume).
    @ivar gateway: The process name of the gateway holding the session now.
    @ivar account_id: The account.
    @ivar name: The account name.
    @ivar character_id: The chosen character, if any.
    @ivar character_name: Its name.
    @ivar realm: The realm of the session.
    @ivar in_world: Whether the session took its character into the world
        (C{world.enter}, until C{world.leave}): its character can then be
        neither changed nor deleted, and it may enter a zone.
    @ivar zone: The zone (world region) that holds the character, once it
        entered one (C{zone.enter}); switched by handoffs.  Only a session
        in the world is in a zone.
    @ivar incarnation: Which start of that gateway's process holds the
        session (a fresh id each start, told in
        L{mmo.game.messages.GatewayStarted}), or "" if unknown: services
        end the sessions of an earlier one (L{mmo.game.gateways}).

    The gateway holding the session keeps its caller: a service changes it
    only by answering with a L{Reply} that carries a L{SessionChange}.
    """

    session: str
    gateway: str
    account_id: str
    name: str
    realm: str = "main"
    character_id: str | None = None
    character_name: str | None = None
    zone: str | None = None
    in_world: bool = False
    incarnation: str = ""

    @property
    def display_name(self) -> str:
        """How other players see this one: the character's name, else the account's."""
        return self.character_name or self.name

    def to_dict(self) -> dict:
        # Every field is a plain value: the fields read at C level are what
        # asdict() would build, at a fraction of its cost (this goes with
        # every request a gateway routes).
        return dict(zip(_CALLER_FIELDS, _caller_values(self), strict=True))

    @classmethod
    def from_dict(cls, data: dict) -> Caller:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    def moved(self, **changes) -> Caller:
        return replace(self, **changes)


#: A caller's fields, in order, and all of their values at once.
_CALLER_FIELDS = tuple(Caller.__dataclass_fields__)
_caller_values = attrgetter(*_CALLER_FIELDS)


class SessionChange:
    """
    What a service changes of its caller's session, with its reply: the
    chosen character (C{character_id}, C{character_name}), whether it is in
    the world (C{in_world}) and its zone (C{zone}).  Fields not given stay
    as they are.  The gateway applies the change before the reply reaches
    the client, and tells every service (C{"changed"}).

    @raise ValueError: A field that is not one of L{FIELDS}, or of the wrong type.
    """

    __slots__ = ("changes",)

    #: What may change, and the types each may take.
    FIELDS: dict[str, tuple[type, ...]] = {
        "character_id": (str, type(None)),
        "character_name": (str, type(None)),
        "in_world": (bool,),
        "zone": (str, type(None)),
    }

    def __init__(self, **changes):
        for key, value in changes.items():
            kinds = self.FIELDS.get(key)
            if kinds is None:
                raise ValueError(f"a session has no {key!r} to change")
            if not isinstance(value, kinds):
                raise ValueError(f"{key!r} cannot be {value!r}")
        self.changes = changes

    def __repr__(self) -> str:
        return f"SessionChange({self.changes!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, SessionChange) and other.changes == self.changes

    def apply(self, caller: Caller) -> Caller:
        """C{caller} with the change."""
        return caller.moved(**self.changes)


@dataclass(frozen=True)
class Reply:
    """
    A service's answer that also changes the caller's session: C{fields} go
    to the client (C{None}: no reply), C{change} to the gateway.
    """

    fields: dict | None
    change: SessionChange


class GameService:
    """
    Base of the domain services.  A message of type C{a.b} is handled by the
    coroutine method C{on_a_b(caller, message)}.

    @cvar kind: The process kind that runs the service in a cluster.
    @cvar prefixes: The message types (or prefixes ending in ".") it owns.
    """

    kind = ""
    prefixes: tuple[str, ...] = ()
    #: Whether its process, once started, asks every gateway which sessions
    #: it holds, each told to L{session_found} (L{mmo.process.seeding}): a
    #: service that keeps who is online knows them after a restart.
    finds_sessions = False
    #: Whether it is told C{"changed"} when the session's zone is all that
    #: changed (a handoff: every border a walking player crosses, tens a
    #: second across a busy world).  A service that keeps nothing of a
    #: session's zone says no, and is spared them: the caller it keeps has
    #: the zone it had until the session's next event or request, which
    #: always carry the current one.
    hears_zone_changes = True
    log = Logger()

    def __init__(self, config, store, bus, reactor):
        self.config = config
        self.store = store
        self.bus = bus
        self.reactor = reactor

    def owns(self, kind: str) -> bool:
        return owns(self.prefixes, kind)

    async def start(self) -> None:
        """Start (subscribe, load...); called before any message."""

    async def stop(self) -> None:
        """Stop; called after the last message."""

    async def handle(self, caller: Caller, kind: str, message: dict) -> dict | None:
        handler = getattr(self, "on_" + kind.replace(".", "_"), None)
        if handler is None or not self.owns(kind):
            raise WireError(codes.UNKNOWN_TYPE, f"unknown message type {kind!r}")
        return await handler(caller, message)

    async def session_event(self, caller: Caller, event: str) -> None:
        """A session started, changed, moved or ended (see the module docstring)."""

    async def session_found(self, caller: Caller) -> None:
        """
        A gateway, asked after the process started, lists C{caller}'s
        session as held there (when L{finds_sessions}).  It is older news
        than anything heard since: a service keeps what it heard, and does
        not bring back a session that ended.  The default ignores it.
        """

    def refused(self, caller: Caller, kind: str, message: dict, error: WireError) -> None:
        """
        C{handle} refused (or failed) C{message}, one the caller's gateway
        sent without waiting for an answer (L{mmo.rpc.commands.RouteInputs}):
        the client was not told.  Tell it what became of the message, with
        a push.  The default logs the refusal.
        """
        self.log.info(
            "{kind!r} of {session} refused: {code}: {why}",
            kind=kind,
            session=caller.session,
            code=error.code,
            why=error.message,
        )

    def held_sessions(self) -> Iterable[Caller]:
        """
        Sessions the service holds something for that its process may not
        have heard of in a request or session event (a zone's players
        handed over to it, or restored from the store): they are ended too
        when their gateway dies (L{mmo.game.gateways}).  A L{Caller} here
        may have only C{session}, C{gateway} and what the service's
        C{"ended"} needs.  The default: none.
        """
        return ()

    def receive(self, to: str, sender: str, message) -> None:
        """
        A message of L{mmo.game.messages} from process C{sender} for
        instance C{to} of this service, sent over its route after the
        messages routed before it (L{mmo.game.routes.IRoute.send}).  The
        default takes none.

        @raise ValueError: The service takes no such message.
        """
        raise ValueError(f"{self.kind or type(self).__name__} takes no {type(message).__name__}")

    def jobs(self) -> Iterable:
        """
        The service's scheduled jobs (L{mmo.jobs.job.Job}s, such as a
        season's rollover), run by the scheduler of every process that runs
        the service, each run once across them (C{docs/jobs.md}).  Called
        once, when the process is built.  The default: none.
        """
        return ()

    def control_commands(self) -> dict:
        """
        The service's own control commands (L{mmo.process.control}), which
        operators reach through the manager: command name -> a callable
        taking the command's arguments as keyword arguments.  Called once,
        when the process is built.  The default: none.
        """
        return {}

    def directory_info(self) -> dict:
        """
        What the process's directory entry says of the service's load, renewed
        at every heartbeat: C{load} (a number, lower is better) and whatever
        else an operator wants in C{mmo-admin status} (entities, tick times).
        """
        return {"load": 0}

    async def deliver(self, targets: Iterable[Caller], kind: str, **fields) -> None:
        """Push C{kind} with C{fields} to every session of C{targets}."""
        await deliver(self.bus, map(_ADDRESS, targets), kind, fields)


#: Where a caller's pushes go: C{(gateway, session)}.
_ADDRESS = attrgetter("gateway", "session")


async def deliver(bus, targets: Iterable[tuple[str, str]], kind: str, fields: dict) -> None:
    """
    Push a message to sessions, given as C{(gateway, session)} pairs: one bus
    message per gateway, however many of its sessions are addressed.
    """
    await defer.gatherResults(
        [
            publish(bus, gateway_channel(gateway), Push(sessions, kind, fields))
            for gateway, sessions in by_gateway(targets).items()
        ],
        consumeErrors=True,
    )


def by_gateway(targets: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """The sessions of C{(gateway, session)} pairs, by gateway."""
    found: dict[str, list[str]] = defaultdict(list)
    for gateway, session in targets:
        found[gateway].append(session)
    return found
