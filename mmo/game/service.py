"""
Game services behind the gateway: the lobby, chat and the zones.

A gateway routes each admitted player's message to the service that owns
its type (by prefix: C{character.*}, C{room.*} and C{world.*} to the lobby,
C{chat.*} to
chat...), in the same process (standalone) or over AMP (a cluster).  A
service is a domain object: it gets a L{Caller} and the message, returns the
reply's fields or raises L{WireError}, and sends pushes to players with
L{deliver}, through the bus, to whichever gateway holds them.

Services also hear of session events (L{GameService.session_event}):
C{"started"} when a player is admitted, C{"changed"} when the session's
character changes, C{"moved"} when it resumed on another gateway and
C{"ended"} when it is gone for good (logout, replaced, or the resume window
ran out), at which point the service frees what the session held.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace

from twisted.internet import defer
from twisted.logger import Logger

from mmo.wire import codes
from mmo.wire.codes import WireError

#: The reply key a service uses to change the caller's session (the lobby's
#: character choice); the gateway applies it and strips it from the reply.
SESSION_UPDATE = "_session"

#: The reply key with which a zone sends C{zone.enter} on to the zone that
#: owns the character (the gateway's zone route follows it, once).
ZONE_REDIRECT = "_zone"


def owns(prefixes, kind: str) -> bool:
    """Whether C{kind} is one of C{prefixes} or starts with one that ends in "."."""
    return any(
        kind == prefix or (prefix.endswith(".") and kind.startswith(prefix)) for prefix in prefixes
    )


def gateway_channel(gateway: str) -> str:
    """The bus channel a gateway hears deliveries for its sessions on."""
    return f"gateway:{gateway}"


@dataclass(frozen=True)
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
    @ivar zone: The zone (world region) that holds the character in the
        world, if it entered it (C{zone.enter}); switched by handoffs.
    """

    session: str
    gateway: str
    account_id: str
    name: str
    realm: str = "main"
    character_id: str | None = None
    character_name: str | None = None
    zone: str | None = None

    @property
    def display_name(self) -> str:
        """How other players see this one: the character's name, else the account's."""
        return self.character_name or self.name

    def to_dict(self) -> dict:
        # Every field is a string or None: a copy of the instance's own
        # dict is what asdict() would build, at a tenth of its cost (this
        # goes with every request a gateway routes).
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict) -> Caller:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    def moved(self, **changes) -> Caller:
        return replace(self, **changes)


class GameService:
    """
    Base of the domain services.  A message of type C{a.b} is handled by the
    coroutine method C{on_a_b(caller, message)}.

    @cvar kind: The process kind that runs the service in a cluster.
    @cvar prefixes: The message types (or prefixes ending in ".") it owns.
    """

    kind = ""
    prefixes: tuple[str, ...] = ()
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

    def directory_info(self) -> dict:
        """
        What the process's directory entry says of the service's load, renewed
        at every heartbeat: C{load} (a number, lower is better) and whatever
        else an operator wants in C{mmo-admin status} (entities, tick times).
        """
        return {"load": 0}

    async def deliver(self, targets: Iterable[Caller], kind: str, **fields) -> None:
        """Push C{kind} with C{fields} to every session of C{targets}."""
        await deliver(self.bus, ((c.gateway, c.session) for c in targets), kind, fields)


async def deliver(bus, targets: Iterable[tuple[str, str]], kind: str, fields: dict) -> None:
    """
    Push a message to sessions, given as C{(gateway, session)} pairs: one bus
    message per gateway, however many of its sessions are addressed.
    """
    by_gateway: dict[str, list[str]] = defaultdict(list)
    for gateway, session in targets:
        by_gateway[gateway].append(session)
    await defer.gatherResults(
        [
            defer.ensureDeferred(
                bus.publish(gateway_channel(gateway), {"to": sessions, "t": kind, "fields": fields})
            )
            for gateway, sessions in by_gateway.items()
        ],
        consumeErrors=True,
    )
