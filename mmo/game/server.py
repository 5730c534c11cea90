"""
The service side of the game RPC: how a game-service process (lobby, chat,
zones) answers the gateways' L{mmo.rpc.commands.Route},
L{mmo.rpc.commands.RouteBatch}, L{mmo.rpc.commands.RouteInputs},
L{mmo.rpc.commands.Send} and
L{mmo.rpc.commands.SessionEvent} for its
L{mmo.game.service.GameService}, over AMP with mutual TLS.  The gateway's
side is L{mmo.game.routes.RemoteRoute}.
"""

from __future__ import annotations

from twisted.application.service import IService
from twisted.internet import defer
from twisted.logger import Logger

from mmo import rpc
from mmo.config import Config, ProcessSection
from mmo.game import messages
from mmo.game.gateways import KnownSessions
from mmo.game.routes import pack, unpack
from mmo.game.service import Caller, Reply
from mmo.rpc import commands
from mmo.unavailable import client_error
from mmo.wire import codes
from mmo.wire.codes import WireError


def _caller(data: bytes) -> Caller:
    try:
        fields = unpack(data)
    except Exception:
        raise rpc.BadRequest("malformed caller")
    return _caller_of(fields)


def _caller_of(fields) -> Caller:
    try:
        caller = Caller.from_dict(fields)
    except Exception:
        raise rpc.BadRequest("malformed caller")
    if not all(isinstance(v, str) for v in (caller.session, caller.gateway, caller.account_id)):
        raise rpc.BadRequest("malformed caller")
    return caller


#: Callers a service process keeps read (L{ServiceRPCFactory.caller_of}), at most.
MAX_CALLERS = 100_000


#: The kinds of process that hold players' sessions (gateways, the standalone server).
GATEWAY_KINDS = frozenset({"gateway", "mmo"})


class ServiceRPC(rpc.RPCProtocol):
    """
    Answers gateways' L{commands.Route}, L{commands.RouteBatch},
    L{commands.Send} and L{commands.SessionEvent} for the factory's game
    service, and carries out their L{commands.RouteInputs} (heard straight
    from their boxes once cleared: a gateway's turn with a move often
    carries that one alone).
    """

    heard_directly = {commands.RouteInputs: "route_inputs"}

    @commands.Route.responder
    def route(self, caller: bytes, kind: str, body: bytes) -> defer.Deferred:
        return defer.ensureDeferred(self.factory.route(_caller(caller), kind, body))

    @commands.RouteBatch.responder
    def route_batch(self, calls: bytes) -> defer.Deferred:
        return defer.ensureDeferred(self.factory.route_batch(calls))

    @commands.RouteInputs.responder
    def route_inputs(self, calls: bytes) -> dict:
        # Nothing is answered, and a failure here would drop the link (AMP's
        # end for an unanswered box's error): route_inputs never raises.
        self.factory.route_inputs(calls, self.peer)
        return {}

    @commands.Send.responder
    def send(self, to: str, message: bytes) -> dict:
        # The sender is who the link's certificate names, not what it says.
        try:
            data = unpack(message)
        except Exception:
            raise rpc.BadRequest("malformed message")
        try:
            _, value = messages.decode(data)
            self.factory.service.receive(to, self.peer, value)
        except ValueError as e:
            raise rpc.BadRequest(str(e))
        return {}

    @commands.SessionEvent.responder
    def session_event(self, caller: bytes, event: str) -> defer.Deferred:
        d = defer.ensureDeferred(self.factory.session_event(_caller(caller), event))
        return d.addCallback(lambda _: {})


class ServiceRPCFactory(rpc.RPCServerFactory):
    """
    The RPC listener's factory of a game-service process.

    @ivar service: The L{GameService} it serves.
    @ivar known: The L{KnownSessions}: every caller of a request or session
        event is noted there, so that the process can end the sessions of a
        gateway that died (L{mmo.game.gateways.GatewayWatch}).
    @ivar streams: What follows the gateways' links to send them messages
        over them (a zone process's L{mmo.zone.streams.GatewayStreams}):
        told of each once it said what it takes, and when it closes; or
        C{None}.
    """

    protocol = ServiceRPC
    log = Logger()

    def __init__(
        self,
        config: Config,
        process: ProcessSection,
        service,
        reactor=None,
        known: KnownSessions | None = None,
        streams=None,
    ):
        super().__init__(config, process, reactor)
        self.service = service
        self.known = known if known is not None else KnownSessions()
        self.streams = streams
        #: Session -> its caller's fields as last sent, and the L{Caller}
        #: read from them.
        self._callers: dict[str, tuple[dict, Caller]] = {}

    def peer_connected(self, link: rpc.RPCProtocol) -> None:
        super().peer_connected(link)
        if self.streams is not None and link.peer_kind() in GATEWAY_KINDS:
            link.ask_takes().addCallbacks(self._linked, self._not_asked, errbackArgs=(link,))

    def _linked(self, link: rpc.RPCProtocol) -> None:
        if link in self.connections:
            self.streams.linked(link)

    def _not_asked(self, failure, link: rpc.RPCProtocol) -> None:
        self.log.warn(
            "{peer} did not say what it takes: {why}", peer=link.peer, why=failure.getErrorMessage()
        )

    def peer_disconnected(self, link: rpc.RPCProtocol, reason) -> None:
        super().peer_disconnected(link, reason)
        if self.streams is not None:
            self.streams.unlinked(link)

    async def route(self, caller: Caller, kind: str, body: bytes) -> dict:
        try:
            message = unpack(body)
        except Exception:
            raise rpc.BadRequest("malformed message body")
        if not isinstance(message, dict):
            raise rpc.BadRequest("the message body is not a map")
        self.known.heard(caller)
        try:
            reply = await self.service.handle(caller, kind, message)
        except WireError as e:
            raise commands.ServiceError.of(e)
        except Exception as e:
            unavailable = self._unavailable(e, caller, kind)
            if unavailable is None:
                raise
            raise commands.ServiceError.of(unavailable)
        if isinstance(reply, Reply):
            return {"body": pack(reply.fields), "change": pack(reply.change.changes)}
        return {"body": pack(reply)}

    def routed_call(self, call) -> tuple[Caller, str, dict]:
        """
        The caller, type and message of a call of a batch (C{[caller, kind, message]}).

        @raise rpc.BadRequest: Malformed.
        """
        try:
            fields, kind, message = call
        except (TypeError, ValueError):
            raise rpc.BadRequest("malformed routed message") from None
        caller = self.caller_of(fields)
        if not isinstance(kind, str) or not isinstance(message, dict):
            raise rpc.BadRequest("malformed routed message")
        return caller, kind, message

    def caller_of(self, fields) -> Caller:
        """
        The L{Caller} of C{fields} (a batch's call's caller).

        @raise rpc.BadRequest: Malformed.
        """
        # Every input of a player carries its caller, the same until its
        # session changes: it is read once, not at every input.
        session = fields.get("session") if isinstance(fields, dict) else None
        if isinstance(session, str):
            known = self._callers.get(session)
            if known is not None and known[0] == fields:
                return known[1]
        caller = _caller_of(fields)
        if len(self._callers) >= MAX_CALLERS:
            self._callers.clear()
        self._callers[caller.session] = (fields, caller)
        return caller

    async def session_event(self, caller: Caller, event: str) -> None:
        """A gateway's session event, noted (L{known}) and told to the service."""
        if event == "ended":
            self._callers.pop(caller.session, None)
        self.known.event(caller, event)
        await self.service.session_event(caller, event)

    async def route_batch(self, data: bytes) -> dict:
        """
        A L{commands.RouteBatch}: every call handled in order (each started
        before the next, as separate L{commands.Route}s would be), one reply
        each.  A malformed call is refused on its own (C{bad_request}); a
        handler's unexpected exception is logged and answered C{internal}.
        """
        try:
            calls = unpack(data)
        except Exception:
            raise rpc.BadRequest("malformed batch")
        if not isinstance(calls, list):
            raise rpc.BadRequest("the batch is not a list")
        handled = [defer.ensureDeferred(self._routed(call)) for call in calls]
        return {"replies": pack([await d for d in handled])}

    def route_inputs(self, data: bytes, peer: str | None) -> None:
        """
        A L{commands.RouteInputs}: every call handled in order (each started
        before the next), as in L{route_batch}, and nothing answered.  The
        client learns what became of a refused call from the service
        (L{GameService.refused}); a malformed box is logged and dropped.
        """
        try:
            calls = unpack(data)
        except Exception:
            calls = None
        if not isinstance(calls, list):
            self.log.warn("malformed inputs from {peer} dropped", peer=peer)
            return
        for call in calls:
            defer.ensureDeferred(self._input(call, peer))

    async def _input(self, call, peer: str | None) -> None:
        """One call of a L{commands.RouteInputs}: handled; a refusal told to the service."""
        try:
            caller, kind, message = self.routed_call(call)
        except rpc.BadRequest:
            self.log.warn("a malformed input from {peer} dropped", peer=peer)
            return
        self.known.heard(caller)
        try:
            await self.service.handle(caller, kind, message)
            return
        except Exception as e:
            error = self._refusal(e, caller, kind)
        try:
            self.service.refused(caller, kind, message, error)
        except Exception:
            self.log.failure("telling {session} of a refusal failed", session=caller.session)

    async def _routed(self, call) -> list:
        try:
            caller, kind, message = self.routed_call(call)
        except rpc.BadRequest:
            return [1, codes.BAD_REQUEST, "malformed routed message", False]
        return await self._answer(caller, kind, message)

    async def _answer(self, caller: Caller, kind: str, message: dict) -> list:
        """The reply of a call of a batch: C{[0, reply]}, C{[0, reply, change]} or C{[1, ...]}."""
        self.known.heard(caller)
        try:
            reply = await self.service.handle(caller, kind, message)
        except Exception as e:
            error = self._refusal(e, caller, kind)
            return [1, error.code, error.message, error.fatal]
        if isinstance(reply, Reply):
            return [0, reply.fields, reply.change.changes]
        return [0, reply]

    def _refusal(self, e: Exception, caller: Caller, kind: str) -> WireError:
        """
        What a call of a batch that failed with C{e} (the exception being
        handled) is refused with: its L{WireError}, C{unavailable} for a
        backend failure, else C{internal} (the failure logged).
        """
        if isinstance(e, WireError):
            return WireError(e.code, e.message[:4096], e.fatal)
        unavailable = self._unavailable(e, caller, kind)
        if unavailable is not None:
            return WireError(unavailable.code, unavailable.message, False)
        self.log.failure("{kind!r} from {session} failed", kind=kind, session=caller.session)
        return WireError(codes.INTERNAL, f"the service failed to handle {kind!r}", False)

    def _unavailable(self, e: Exception, caller: Caller, kind: str) -> WireError | None:
        """The client's C{unavailable} if C{e} is a backend failure (logged as a warning)."""
        return client_error(
            e, self.log, "{kind!r} from {session}", kind=kind, session=caller.session
        )


def serve(
    config: Config,
    process: ProcessSection | str,
    service,
    reactor=None,
    factory: ServiceRPCFactory | None = None,
) -> IService:
    """
    The RPC listener (on C{processes.NAME.rpc}, mutual TLS) through which
    gateways reach C{service}, a L{GameService} of this process: it answers
    L{commands.Route} and L{commands.SessionEvent} (with C{factory}, if
    given: its C{connections} are the gateways' links).

    @raise mmo.config.ConfigError: The process has no C{rpc} listener, or a
        certificate is missing.
    """
    if not isinstance(process, ProcessSection):
        process = config.process(process)
    if factory is None:
        factory = ServiceRPCFactory(config, process, service, reactor)
    return rpc.listen(config, process, factory=factory, reactor=reactor)
