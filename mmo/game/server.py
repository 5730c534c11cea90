"""
The service side of the game RPC: how a game-service process (lobby, chat,
zones) answers the gateways' L{mmo.rpc.commands.Route},
L{mmo.rpc.commands.RouteBatch}, L{mmo.rpc.commands.Send} and
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


class ServiceRPC(rpc.RPCProtocol):
    """
    Answers gateways' L{commands.Route}, L{commands.RouteBatch},
    L{commands.Send} and L{commands.SessionEvent} for the factory's game
    service.
    """

    @commands.Route.responder
    def route(self, caller: bytes, kind: str, body: bytes) -> defer.Deferred:
        return defer.ensureDeferred(self.factory.route(_caller(caller), kind, body))

    @commands.RouteBatch.responder
    def route_batch(self, calls: bytes) -> defer.Deferred:
        return defer.ensureDeferred(self.factory.route_batch(calls))

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
    ):
        super().__init__(config, process, reactor)
        self.service = service
        self.known = known if known is not None else KnownSessions()

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

    async def session_event(self, caller: Caller, event: str) -> None:
        """A gateway's session event, noted (L{known}) and told to the service."""
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

    async def _routed(self, call) -> list:
        try:
            fields, kind, message = call
            caller = _caller_of(fields)
            if not isinstance(kind, str) or not isinstance(message, dict):
                raise TypeError(kind)
        except (TypeError, ValueError, rpc.BadRequest):
            return [1, codes.BAD_REQUEST, "malformed routed message", False]
        self.known.heard(caller)
        try:
            reply = await self.service.handle(caller, kind, message)
        except WireError as e:
            return [1, e.code, e.message[:4096], e.fatal]
        except Exception as e:
            unavailable = self._unavailable(e, caller, kind)
            if unavailable is not None:
                return [1, unavailable.code, unavailable.message, False]
            self.log.failure("{kind!r} from {session} failed", kind=kind, session=caller.session)
            return [1, codes.INTERNAL, f"the service failed to handle {kind!r}", False]
        if isinstance(reply, Reply):
            return [0, reply.fields, reply.change.changes]
        return [0, reply]

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
