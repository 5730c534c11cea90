"""
Every AMP command between mmo's services, and the errors they may raise.

All commands live in this one module so that both ends of a link always agree
on names, arguments and error codes: a service that needs a new command adds
it here (see C{docs/rpc.md}) and implements its responder in its own protocol.

Errors
======

A responder signals an expected failure by raising one of the L{RPCError}
subclasses below.  It crosses the link as its stable code from L{ERRORS} plus
the exception's message, and the caller's L{Deferred} fails with the same
class.  Subclasses of these exceptions travel as their parent's code (a
responder may raise C{NoSuchZone(NotFound)}; the caller sees L{NotFound}).
Any other exception is a bug in the responder: the RPC protocol logs it and
the caller sees L{twisted.protocols.amp.UnknownRemoteError}.
"""

from __future__ import annotations

import json
from typing import ClassVar

from twisted.protocols import amp

from mmo.config import PROCESS_KINDS, RESERVED_NAMES
from mmo.wire.codes import INTERNAL, WireError


class RPCError(Exception):
    """
    A failure a responder reports on purpose; raise one of the subclasses.

    @cvar code: The stable AMP error code the failure crosses the link as.
    """

    code: ClassVar[bytes]


class NotFound(RPCError):
    """The thing the request names (entity, player, zone...) does not exist here."""

    code = b"NOT_FOUND"


class Refused(RPCError):
    """The caller is not allowed to do this, or the service declines to."""

    code = b"REFUSED"


class Unavailable(RPCError):
    """
    The service cannot do it now (not connected, draining, overloaded); the
    request was not carried out and may be retried later.
    """

    code = b"UNAVAILABLE"


class BadRequest(RPCError):
    """The arguments are well-formed AMP but make no sense."""

    code = b"BAD_REQUEST"


class Conflict(RPCError):
    """The request contradicts the current state (already owned, stale transfer id...)."""

    code = b"CONFLICT"


#: Every error a command may raise, by class, with its code on the wire.
ERRORS: dict[type[Exception], bytes] = {
    cls: cls.code for cls in (NotFound, Refused, Unavailable, BadRequest, Conflict)
}


class Command(amp.Command):
    """
    Base class of every mmo command: it may raise any of L{ERRORS}.

    AMP's command metaclass gathers C{errors} from the whole class hierarchy
    into C{allErrors} (used by the responder) and C{reverseErrors} (used by the
    caller), so a command with errors of its own lists only the new ones; the
    common ones stay mapped::

        class Full(RPCError):
            code = b"FULL"

        class JoinRoom(Command):
            arguments = [(b"room", amp.Unicode())]
            response = [(b"members", amp.Integer())]
            errors = {Full: b"FULL"}

    C{JoinRoom.allErrors} then holds L{NotFound}, L{Refused}... and C{Full}.
    The codes must stay distinct from those in L{ERRORS} (a repeated code
    would map back to only one of the classes), and the new classes must not
    subclass the common ones: the responder maps an exception to the first
    class in C{allErrors} it is an instance of, and the common ones come first.
    C{JoinRoom.errors} itself is just C{{Full: b"FULL"}}; write
    C{errors = {**Command.errors, Full: b"FULL"}} if code inspects C{errors}
    directly.
    """

    errors = ERRORS
    requiresAnswer = True


class Ping(Command):
    """
    Is the peer there, and what is it?  Both ends of every link answer it.

    The responder echoes C{nonce} and tells its process name and mmo version,
    and in C{takes} the commands without an answer it carries out (those
    of L{SENDERS} with C{requiresAnswer = False} it has a responder for).
    A peer cannot refuse such a command (AMP drops the link over a box it
    cannot handle when no answer is asked), so a sender uses one only with
    a peer that said it takes it.  An older peer's answer has no C{takes}
    (C{None}): it takes none; an older caller ignores the key.
    """

    arguments = [(b"nonce", amp.Integer())]
    response = [
        (b"nonce", amp.Integer()),
        (b"name", amp.Unicode()),
        (b"version", amp.Unicode()),
        (b"takes", amp.ListOf(amp.Unicode(), optional=True)),
    ]


class Identify(Command):
    """
    The first command of a Unix-socket link (L{mmo.rpc.unix}), where no
    certificate names the client: the client gives its process name, the
    server answers with its own, its mmo version and, as a L{Ping}'s
    answer does, the commands without an answer it takes (an older
    server's answer has no C{takes}: it takes none).  Over TLS it is
    refused: the certificates already named both ends.
    """

    arguments = [(b"name", amp.Unicode())]
    response = [
        (b"name", amp.Unicode()),
        (b"version", amp.Unicode()),
        (b"takes", amp.ListOf(amp.Unicode(), optional=True)),
    ]


class LongBytes(amp.Argument):
    """
    Bytes of any length.  An AMP value holds at most 65 535 bytes, and a
    client frame (which a routed message or its reply must carry) may be
    larger: the value is split over the keys C{name}, C{name.1}, C{name.2}...

    AMP's own L{amp.Argument.toBox} and L{amp.Argument.fromBox} move the
    value between the box and the Python arguments (they know the Python
    name of a key); this splits and joins around them.
    """

    def toString(self, value) -> bytes:
        if not isinstance(value, bytes):
            raise TypeError(f"must be bytes, not {type(value).__name__}")
        return value

    def fromString(self, value: bytes) -> bytes:
        return value

    def toBox(self, name, strings, objects, proto):
        try:
            super().toBox(name, strings, objects, proto)
        except TypeError as e:
            raise TypeError(f"{name!r} {e}") from None
        value = strings.get(name)
        size = amp.MAX_VALUE_LENGTH
        if value is None or len(value) <= size:
            return
        strings[name] = value[:size]
        for index, start in enumerate(range(size, len(value), size), 1):
            strings[b"%s.%d" % (name, index)] = value[start : start + size]

    def fromBox(self, name, strings, objects, proto):
        chunks, index = [], 1
        while (chunk := strings.pop(b"%s.%d" % (name, index), None)) is not None:
            chunks.append(chunk)
            index += 1
        if chunks and name in strings:
            strings[name] = b"".join([strings[name], *chunks])
        super().fromBox(name, strings, objects, proto)


class ServiceError(RPCError):
    """
    A game service refused a routed message with a L{mmo.wire.codes.WireError}:
    it crosses the link with the client error code, message and fatality
    (as JSON in the AMP error description), and the gateway raises the same
    L{WireError} to its client.  Make one with L{of}; get the L{WireError}
    back with L{wire_error}.
    """

    code = b"WIRE_ERROR"

    @classmethod
    def of(cls, error: WireError) -> ServiceError:
        """The L{ServiceError} that carries the L{WireError} C{error}."""
        return cls(
            json.dumps({"code": error.code, "message": error.message[:4096], "fatal": error.fatal})
        )

    def wire_error(self) -> WireError:
        """The L{WireError} this carries (an C{internal} one if it cannot be read)."""
        try:
            data = json.loads(self.args[0])
            return WireError(str(data["code"]), str(data["message"]), bool(data["fatal"]))
        except (IndexError, TypeError, ValueError, KeyError):
            return WireError(INTERNAL, "the service sent an unreadable error")


class Redirect(RPCError):
    """
    The message belongs to another instance of the service: the zone named
    by the error's message (C{zone.enter} in a zone that does not own the
    character).  The route sends it there.
    """

    code = b"REDIRECT"

    @property
    def target(self) -> str:
        return str(self.args[0]) if self.args else ""


class Route(Command):
    """
    A gateway routes a client's message to the game service that owns its
    type (see C{mmo.game.routes}).

    C{caller} is the msgpack of the sender's L{mmo.game.service.Caller} (as
    C{Caller.to_dict()}), C{kind} the message type, C{body} the msgpack of
    the whole message as the client sent it.  The response's C{body} is the
    msgpack of the reply's fields, or of nil for no reply; C{change}, when
    the service changes the caller's session, the msgpack of the
    L{mmo.game.service.SessionChange}'s fields.  A service that refuses
    raises L{ServiceError} (the responder makes it from the service's
    L{WireError}); one that is not the right instance raises L{Redirect}.
    """

    arguments = [(b"caller", LongBytes()), (b"kind", amp.Unicode()), (b"body", LongBytes())]
    response = [(b"body", LongBytes()), (b"change", LongBytes(optional=True))]
    errors = {ServiceError: ServiceError.code, Redirect: Redirect.code}


class RouteBatch(Command):
    """
    Several routed messages in one box: what a gateway gathered in one
    reactor turn for a service that answers them at once (a zone's
    C{zone.move}), so that a thousand players' inputs cost one AMP round
    trip rather than a thousand.

    C{calls} is the msgpack of a list of C{[caller, kind, message]} (the
    caller as C{Caller.to_dict()}, the whole client message as a map).  The
    response's C{replies} is the msgpack of a list with one entry per call,
    in order: C{[0, reply]} (the reply's fields, or nil for none),
    C{[0, reply, change]} (a reply that changes the caller's session, as in
    L{Route}) or C{[1, code, message, fatal]} for a
    L{mmo.wire.codes.WireError}.  The
    service handles the calls in their order, as if each had come in its
    own L{Route}; one call's refusal is its own and the others go on.
    """

    arguments = [(b"calls", LongBytes())]
    response = [(b"replies", LongBytes())]


class RouteInputs(Command):
    """
    A gateway's players' inputs of one reactor turn (a zone's C{zone.move}),
    without an answer: C{calls} as in L{RouteBatch}, handled by the service
    in their order, as if each had come in its own L{Route}.  Nothing comes
    back, so the inputs cost the service no reply: what was applied reaches
    the player in the zone's pushes (C{world.update}, C{world.correct}), and
    a refusal of an input for a player it holds is answered with a
    correction (C{world.correct}: the player's position and last input).
    Later commands on the same link (a L{Send} of C{Switched}) arrive after
    them.

    A service that does not know it cannot say so (AMP drops the link over a
    box it cannot handle when no answer is asked): it is sent only to a
    peer whose L{Ping} answer lists it in C{takes}; to an older one the
    inputs go in L{RouteBatch}es, answered.
    """

    arguments = [(b"calls", LongBytes())]
    response = []
    requiresAnswer = False


class Stream(Command):
    """
    One message a zone process sends a gateway about the gateway's
    players (a L{mmo.game.messages.PushBatch}, L{mmo.game.messages.Push},
    L{mmo.game.messages.SwitchRoute} or L{mmo.game.messages.Moved}):
    C{message}, the msgpack of the message as L{mmo.game.messages.encode}
    makes it, without an answer.  The zone sends them over the link the
    gateway opened to its process, in the order it produced them, so that
    a gateway hears one zone process's messages in order
    (C{docs/handoff.md}, "A direct zone -> gateway stream").

    A gateway that does not know it cannot say so: a zone sends it only to
    a gateway whose L{Ping} answer lists it in C{takes}; an older gateway
    gets these messages on the bus.
    """

    arguments = [(b"message", LongBytes())]
    response = []
    requiresAnswer = False


class StreamStems(Command):
    """
    A L{Stream} of a L{mmo.game.messages.PushStems} (a zone's tick of
    pushes encoded as their clients' frames): the same argument, on the
    same link, in the same order as the L{Stream}s around it.  A command
    of its own so that a gateway that knows L{mmo.game.messages.PushStems}
    says so, listing it in its L{Ping} answer's C{takes}: a zone sends
    stems only to such a gateway, and an older one gets the tick's
    L{mmo.game.messages.PushBatch} in a L{Stream}.
    """

    arguments = [(b"message", LongBytes())]
    response = []
    requiresAnswer = False


class Send(Command):
    """
    A message of the bus vocabulary (L{mmo.game.messages}) for instance
    C{to} of a game service (a zone's region), sent over the link the
    gateway routes its players' messages on, so that it comes after every
    message routed before it (a gateway's L{mmo.game.messages.Switched}
    after the inputs it sent the old zone).  C{message} is the msgpack of
    the message as L{mmo.game.messages.encode} makes it, with its sender.
    """

    arguments = [(b"to", amp.Unicode()), (b"message", LongBytes())]
    response = []


class SessionEvent(Command):
    """
    A gateway tells a game service that a session C{"started"},
    C{"changed"}, C{"moved"} or C{"ended"} (see L{mmo.game.service}); C{caller}
    is the msgpack of the session's L{mmo.game.service.Caller} after the event.
    """

    arguments = [(b"caller", LongBytes()), (b"event", amp.Unicode())]
    response = []


class Admin(Command):
    """
    An operator's command to a manager (C{mmo-admin}; see C{docs/manager.md}):
    C{command} is C{status}, C{drain}, C{upgrade}, C{kick} or C{broadcast},
    C{args} and the response's C{result} are JSON.  Only a client presenting
    the deployment's C{admin} certificate may send it.
    """

    arguments = [(b"command", amp.Unicode()), (b"args", LongBytes())]
    response = [(b"result", LongBytes())]


#: The identity of the operators' certificate (C{mmo-admin}), which names no
#: process: the "kind" its commands come from.
ADMIN = RESERVED_NAMES[0]

#: Every kind of peer: each process kind, and the operators.
EVERY_KIND = frozenset((*PROCESS_KINDS, ADMIN))

#: Who may send each command: the kinds of the peers (the process kind of
#: the process the link's certificate names, or L{ADMIN}) whose commands a
#: responder carries out.  Any other peer's command is refused (L{Refused})
#: before its responder runs, so that a process cannot do what only another
#: kind may: a login process that speaks for players, a zone that routes
#: for a gateway.  A command missing here is refused from everyone: a game
#: team's protocol that serves a command of its own extends the table
#: (C{senders = {**SENDERS, MoveEntity: frozenset({"zone"})}}; see
#: C{docs/rpc.md}).
SENDERS: dict[type[amp.Command], frozenset[str]] = {
    Ping: EVERY_KIND,
    Identify: EVERY_KIND,
    # Players' messages and their sessions' events come from their gateway.
    Route: frozenset({"gateway"}),
    RouteBatch: frozenset({"gateway"}),
    RouteInputs: frozenset({"gateway"}),
    SessionEvent: frozenset({"gateway"}),
    # A gateway's Switched after the inputs it routed to the old zone.
    Send: frozenset({"gateway"}),
    # What a zone process tells a gateway of its players, on the gateway's link.
    Stream: frozenset({"zone"}),
    StreamStems: frozenset({"zone"}),
    Admin: frozenset({ADMIN}),
}


__all__ = [
    "RPCError",
    "NotFound",
    "Refused",
    "Unavailable",
    "BadRequest",
    "Conflict",
    "ERRORS",
    "Command",
    "Ping",
    "Identify",
    "LongBytes",
    "ServiceError",
    "Redirect",
    "Route",
    "RouteBatch",
    "RouteInputs",
    "Send",
    "Stream",
    "StreamStems",
    "SessionEvent",
    "Admin",
    "ADMIN",
    "EVERY_KIND",
    "SENDERS",
]
