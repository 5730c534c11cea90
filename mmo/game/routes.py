"""
Routes: how a gateway reaches the game service that owns a message type.

A gateway holds a list of routes (L{mmo.gateway.factory.GatewayFactory.routes}).
An admitted client's message that the gateway protocol does not handle
itself goes to the first route that L{owns <IRoute.owns>} its type; every
route hears of every session event.  Two kinds:

  - L{LocalRoute} calls a L{mmo.game.service.GameService} in this process (the
    standalone server);
  - L{RemoteRoute} calls one in another process over AMP with mutual TLS,
    with the L{mmo.rpc.commands.Route} and L{mmo.rpc.commands.SessionEvent}
    commands, which L{mmo.game.server.serve} answers on the service's side.

The zones' route, which follows a player's character from zone to zone, is
L{mmo.zone.route.ZoneRoute}.

A L{WireError} the service raises reaches the client unchanged (code,
message, fatality), whichever kind of route carried it; a service that
cannot be reached gives the client C{unavailable}.
"""

from __future__ import annotations

from collections import deque

import msgpack
from twisted.application.service import IService
from twisted.internet import defer, error
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure
from zope.interface import Attribute, Interface, implementer

from mmo import rpc
from mmo.frontend.deadlines import EPSILON
from mmo.game import messages
from mmo.game.service import Caller, GameService, Reply, SessionChange, owns
from mmo.rpc import commands
from mmo.wire import codec, codes
from mmo.wire.codes import WireError

#: Seconds a remote route waits for a link to its service before the client
#: is told C{unavailable}.
LINK_TIMEOUT = 5.0

#: Seconds a remote route waits for the answer to a message it sent.
CALL_TIMEOUT = 30.0

#: Messages at most in one L{commands.RouteBatch} box (a box of 500
#: C{zone.move}s is about 100 KB).
MAX_BATCH = 500

#: Sessions whose packed caller a remote route keeps (L{RemoteRoute}), at most.
MAX_CALLERS = 100_000

#: Packs the headers of the arrays of unanswered boxes (L{RemoteRoute._send_inputs}).
_headers = msgpack.Packer()

#: The msgpack header of a call of a box: an array of three.
_CALL = _headers.pack_array_header(3)


def pack(value) -> bytes:
    # The wire's msgpack (mmo.wire.codec.encode): the same bytes, one packer.
    return codec.encode(value)


def unpack(data: bytes):
    return msgpack.unpackb(data, raw=False)


class IRoute(Interface):
    """A way to the game service that owns some message types."""

    name = Attribute("What the route leads to, for logs and error messages.")

    def owns(kind):
        """Whether the service handles messages of type C{kind}."""

    def handle(caller, kind, message):
        """
        The reply's fields (a dict), C{None} for no reply, or a L{Reply},
        for the message C{message} (the whole client message) of type
        C{kind} from C{caller}: at once when the route answers without
        waiting (an input it sends unanswered), else a Deferred of it,
        which fails with a L{WireError} for the client.
        """

    def session_event(caller, event):
        """Deferred: tell the service that C{caller}'s session had C{event}."""

    def send(to, message, sender):
        """
        Deferred: give the service's instance C{to} the message C{message}
        of L{mmo.game.messages} from process C{sender}, after every message
        this route carried before it.
        """

    def services():
        """The Twisted services the route needs running (an RPC link), if any."""


class CallTimeouts:
    """
    The calls of one route waiting for their answers, each given up
    (cancelled, failing with L{defer.TimeoutError}) C{timeout} seconds
    after it was made, on one timer.  Every call has the same timeout, so
    they fall due in the order they were made; a timer per call (what
    L{defer.Deferred.addTimeout} sets) would cost every session event and
    every handoff's answer a timer set and cancelled.
    """

    def __init__(self, timeout: float, reactor):
        self.timeout = timeout
        self.reactor = reactor
        #: C{[deadline, deferred or None once answered, timed out]} per
        #: call, oldest first; answered ones leave when they reach the front.
        self._calls: deque[list] = deque()
        self._waiting = 0
        self._timer = None

    def watch(self, d: defer.Deferred) -> defer.Deferred:
        """Give C{d} up if it has no result in L{timeout} seconds; returns C{d}."""
        if d.called:
            return d
        calls = self._calls
        while calls and calls[0][1] is None:
            calls.popleft()
        entry = [self.reactor.seconds() + self.timeout, d, False]
        calls.append(entry)
        self._waiting += 1
        if self._timer is None:
            self._timer = self.reactor.callLater(self.timeout, self._due)
        return d.addBoth(self._answered, entry)

    def _answered(self, result, entry: list):
        entry[1] = None
        self._waiting -= 1
        if not self._waiting:
            # Nothing left to give up: no timer (nor calls) kept.
            self._calls.clear()
            if self._timer is not None:
                if self._timer.active():
                    self._timer.cancel()
                self._timer = None
        if entry[2] and isinstance(result, Failure) and result.check(defer.CancelledError):
            return Failure(defer.TimeoutError(self.timeout, "Deferred"))
        return result

    def _due(self) -> None:
        self._timer = None
        calls = self._calls
        now = self.reactor.seconds()
        while calls and (calls[0][1] is None or calls[0][0] <= now + EPSILON):
            entry = calls.popleft()
            if entry[1] is not None:
                entry[2] = True
                entry[1].cancel()
        if calls and self._timer is None:
            self._timer = self.reactor.callLater(max(0.0, calls[0][0] - now), self._due)


@implementer(IRoute)
class LocalRoute:
    """
    A route to a L{GameService} in this process.  The service's own start
    and stop are its owner's business (the standalone process makes it a
    resource).
    """

    def __init__(self, service: GameService):
        self.service = service
        self.name = service.kind or type(service).__name__

    def __repr__(self) -> str:
        return f"<LocalRoute to {self.name}>"

    def owns(self, kind: str) -> bool:
        return self.service.owns(kind)

    def handle(self, caller: Caller, kind: str, message: dict) -> defer.Deferred:
        return defer.ensureDeferred(self.service.handle(caller, kind, message))

    def session_event(self, caller: Caller, event: str) -> defer.Deferred:
        return defer.ensureDeferred(self.service.session_event(caller, event))

    def send(self, to: str, message, sender: str) -> defer.Deferred:
        return defer.maybeDeferred(self.service.receive, to, sender, message)

    def services(self) -> list[IService]:
        return []


@implementer(IRoute)
class RemoteRoute:
    """
    A route to a game service in another process, over an
    L{mmo.rpc.RPCClientService} link.

    Messages of the types in C{batched} (those the service answers at once,
    like a zone's C{zone.move}) are gathered for the rest of the reactor
    turn and go together in one L{commands.RouteBatch} (at most
    C{max_batch} to a box); each still gets its own reply or error.
    Messages of the types in C{unanswered} (a zone's C{zone.move}: the
    zone's pushes say what became of it) are gathered the same way and go
    in L{commands.RouteInputs} boxes, which the service does not answer:
    the route answers each C{{}} itself, at once (no Deferred).  That
    needs a link that is up to a service that takes them
    (L{rpc.RPCClientService.takes}); without one (no link now, or an
    older service) they go as C{batched} ones,
    answered by the service, so that a client waiting for a link or
    talking to an older zone is told what the service said.  Any other
    message first sends the gathered ones, so that the service gets a
    session's messages in the order they came.

    @ivar prefixes: The message types (or prefixes ending in ".") it owns.
    @ivar link: The L{mmo.rpc.RPCClientService} to the service's process.
    @ivar timeout: Seconds to wait for an answer once a message is sent.
    @ivar batched: The message types sent in batches.
    @ivar unanswered: The message types sent in batches without an answer.
    """

    log = Logger()

    def __init__(
        self,
        prefixes,
        link: rpc.RPCClientService,
        timeout: float = CALL_TIMEOUT,
        batched=(),
        max_batch: int = MAX_BATCH,
        unanswered=(),
    ):
        self.prefixes = tuple(prefixes)
        self.link = link
        self.timeout = timeout
        self.name = link.peer.name
        self.batched = frozenset(batched)
        self.unanswered = frozenset(unanswered)
        self.max_batch = max_batch
        self._timeouts = CallTimeouts(timeout, link.reactor)
        #: The gathered messages of this reactor turn, in order: ([caller,
        #: kind, message] and the Deferred of its reply), or (the msgpack of
        #: the call, None) if unanswered.
        self._batch: list[tuple[list | bytes, defer.Deferred | None]] = []
        self._flush_call = None
        #: The service does not take L{commands.RouteBatch} (an older
        #: version, during a rolling upgrade): one L{commands.Route} each.
        self._unbatched = False
        #: Session -> (its caller, the type of its inputs, the msgpack of
        #: an input's call up to its message), as last sent unanswered.
        self._inputs: dict[str, tuple[Caller, str, bytes]] = {}

    def __repr__(self) -> str:
        return f"<RemoteRoute to {self.name} for {', '.join(self.prefixes)}>"

    def owns(self, kind: str) -> bool:
        return owns(self.prefixes, kind)

    def services(self) -> list[IService]:
        return [self.link]

    def _call(self, command, **arguments) -> defer.Deferred:
        return self._timeouts.watch(self.link.callRemote(command, **arguments))

    def handle(self, caller: Caller, kind: str, message: dict) -> dict | defer.Deferred:
        if kind in self.unanswered and self.link.takes(commands.RouteInputs):
            # Answered here and now: no Deferred (every move of every player).
            self._gather(self._input_call(caller, kind) + codec.encode(message), None)
            return {}
        if (kind in self.batched or kind in self.unanswered) and not self._unbatched:
            d = defer.Deferred()
            self._gather([caller.to_dict(), kind, message], d)
            return d
        if self._batch:
            self.flush()
        return defer.ensureDeferred(self._handle(caller, kind, message))

    def _input_call(self, caller: Caller, kind: str) -> bytes:
        """
        The msgpack of C{[caller, kind]} opening an unanswered call: packed
        once per session and caller, not at every input (the caller is the
        same until the session changes, which makes a new L{Caller}).
        """
        known = self._inputs.get(caller.session)
        if known is not None and known[0] is caller and known[1] == kind:
            return known[2]
        opening = _CALL + codec.encode(caller.to_dict()) + codec.encode(kind)
        if len(self._inputs) >= MAX_CALLERS:
            self._inputs.clear()
        self._inputs[caller.session] = (caller, kind, opening)
        return opening

    def _gather(self, call: list | bytes, d: defer.Deferred | None) -> None:
        """Add a call to this turn's batch; send it when full, else at the turn's end."""
        self._batch.append((call, d))
        if len(self._batch) >= self.max_batch:
            self.flush()
        elif self._flush_call is None:
            self._flush_call = self.link.reactor.callLater(0, self.flush)

    async def _handle(self, caller: Caller, kind: str, message: dict):
        try:
            response = await self._call(
                commands.Route, caller=pack(caller.to_dict()), kind=kind, body=pack(message)
            )
        except Exception as e:
            raise self._client_error(e, kind) from None
        return self._reply(unpack(response["body"]), response.get("change"))

    def _reply(self, fields, change) -> dict | Reply | None:
        """The reply to a routed message, with the session change it carries, if any."""
        if change is None:
            return fields
        try:
            changes = unpack(change) if isinstance(change, bytes) else change
            return Reply(fields, SessionChange(**changes))
        except (TypeError, ValueError) as e:
            self.log.warn(
                "{service} sent a malformed session change: {why}", service=self.name, why=e
            )
            raise WireError(codes.INTERNAL, "the service sent a malformed session change")

    def _client_error(self, e: Exception, kind: str) -> Exception:
        """What the client is told of a call of C{kind} that failed with C{e}."""
        if isinstance(e, commands.ServiceError):
            return e.wire_error()
        if isinstance(e, commands.Redirect):
            return e
        if isinstance(e, rpc.Unavailable):
            return WireError(
                codes.UNAVAILABLE, f"the {self.name} service is not reachable now; retry"
            )
        if isinstance(e, (error.ConnectionLost, error.ConnectionDone, defer.TimeoutError)):
            self.log.warn("{kind!r} to {service}: {why}", kind=kind, service=self.name, why=str(e))
            return WireError(
                codes.UNAVAILABLE,
                f"the {self.name} service did not answer; the request may or may not "
                "have taken effect",
            )
        if isinstance(e, amp.UnknownRemoteError):
            return WireError(codes.INTERNAL, f"the {self.name} service failed to handle {kind!r}")
        return e

    def flush(self) -> None:
        """
        Send the gathered messages now, in order: each run of answered ones
        in L{commands.RouteBatch} boxes, each run of unanswered ones in
        L{commands.RouteInputs} boxes, C{max_batch} to a box.
        """
        if self._flush_call is not None:
            if self._flush_call.active():
                self._flush_call.cancel()
            self._flush_call = None
        batch, self._batch = self._batch, []
        start = 0
        while start < len(batch):
            answered = batch[start][1] is not None
            end = start + 1
            while (
                end < len(batch)
                and end - start < self.max_batch
                and (batch[end][1] is not None) == answered
            ):
                end += 1
            if answered:
                self._send_batch(batch[start:end])
            else:
                self._send_inputs([call for call, _ in batch[start:end]])
            start = end

    def _send_inputs(self, calls: list[bytes]) -> None:
        """Send a L{commands.RouteInputs} of C{calls}, each already msgpack."""
        box = _headers.pack_array_header(len(calls)) + b"".join(calls)
        d = self.link.tell(commands.RouteInputs, calls=box)
        d.addErrback(
            lambda f: self.log.warn(
                "{count} input(s) to {service} not sent: {why}",
                count=len(calls),
                service=self.name,
                why=f.getErrorMessage(),
            )
        )

    def _send_batch(self, batch: list) -> None:
        d = self._call(commands.RouteBatch, calls=pack([call for call, _ in batch]))
        d.addCallbacks(self._answered, self._batch_failed, (batch,), None, (batch,))

    def _answered(self, response: dict, batch: list) -> None:
        try:
            replies = unpack(response["replies"])
            if not isinstance(replies, list) or len(replies) != len(batch):
                raise ValueError("not one reply per call")
        except Exception:
            self.log.warn("{service} sent an unreadable batch answer", service=self.name)
            replies = [None] * len(batch)
        for reply, (_, d) in zip(replies, batch, strict=True):
            if isinstance(reply, list) and len(reply) in (2, 3) and reply[0] == 0:
                try:
                    d.callback(self._reply(reply[1], reply[2] if len(reply) == 3 else None))
                except WireError as e:
                    d.errback(e)
            elif isinstance(reply, list) and len(reply) == 4 and reply[0] == 1:
                d.errback(WireError(str(reply[1]), str(reply[2]), bool(reply[3])))
            else:
                d.errback(
                    WireError(codes.INTERNAL, f"the {self.name} service sent an unreadable answer")
                )

    def _batch_failed(self, failure, batch: list) -> None:
        if failure.check(amp.UnhandledCommand):
            # Not handled, so not carried out: each goes again on its own.
            self.log.info(
                "the {service} service takes no batches (an older version): one message per call",
                service=self.name,
            )
            self._unbatched = True
            for (caller, kind, message), d in batch:
                routed = defer.ensureDeferred(self._handle(Caller.from_dict(caller), kind, message))
                routed.chainDeferred(d)
            return
        for (_, kind, _), d in batch:
            d.errback(self._client_error(failure.value, kind))

    def session_event(self, caller: Caller, event: str) -> defer.Deferred:
        if event == "ended":
            self._inputs.pop(caller.session, None)
        if self._batch:
            self.flush()
        d = self._call(commands.SessionEvent, caller=pack(caller.to_dict()), event=event)
        return d.addCallback(lambda _: None)

    def send(self, to: str, message, sender: str) -> defer.Deferred:
        if self._batch:
            self.flush()
        d = self._call(commands.Send, to=to, message=pack(messages.encode(message, sender)))
        return d.addCallback(lambda _: None)

    def relink(self) -> defer.Deferred:
        """
        The service's process was replaced by a new one at the same address
        (a zone's takeover): move the link to it without losing a call
        (L{mmo.rpc.RPCClientService.relink}).  Calls go straight to the new
        link from then on (the old one still passes on what others send it,
        and stops the new one with itself when the process stops).
        """

        def moved(successor):
            if successor is not None:
                self.link = successor
                self._unbatched = False
            return successor

        return self.link.relink().addCallback(moved)
