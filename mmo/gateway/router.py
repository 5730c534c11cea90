"""
Routes: how a gateway reaches the game service that owns a message type.

A gateway holds a list of routes (L{mmo.gateway.factory.GatewayFactory.routes}).
An admitted client's message that the gateway protocol does not handle
itself goes to the first route that L{owns <IRoute.owns>} its type; every
route hears of every session event.  Two kinds:

  - L{LocalRoute} calls a L{mmo.services.GameService} in this process (the
    standalone server);
  - L{RemoteRoute} calls one in another process over AMP with mutual TLS,
    with the L{mmo.rpc.commands.Route} and L{mmo.rpc.commands.SessionEvent}
    commands, which L{serve} answers on the service's side.

A L{WireError} the service raises reaches the client unchanged (code,
message, fatality), whichever kind of route carried it; a service that
cannot be reached gives the client C{unavailable}.
"""

from __future__ import annotations

import msgpack
from twisted.application.service import IService
from twisted.internet import defer, error
from twisted.logger import Logger
from twisted.protocols import amp
from zope.interface import Attribute, Interface, implementer

from mmo import rpc
from mmo.config import Config, ProcessSection
from mmo.rpc import commands
from mmo.services import Caller, GameService
from mmo.wire import codes
from mmo.wire.codes import WireError

#: The message types each kind of remote service owns (prefixes end in ".").
ROUTE_PREFIXES: dict[str, tuple[str, ...]] = {
    "lobby": ("character.", "room.", "world."),
    "chat": ("chat.",),
}

#: Seconds a remote route waits for a link to its service before the client
#: is told C{unavailable}.
LINK_TIMEOUT = 5.0

#: Seconds a remote route waits for the answer to a message it sent.
CALL_TIMEOUT = 30.0


def pack(value) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def unpack(data: bytes):
    return msgpack.unpackb(data, raw=False)


def owns(prefixes, kind: str) -> bool:
    """Whether C{kind} is one of C{prefixes} or starts with one that ends in "."."""
    return any(
        kind == prefix or (prefix.endswith(".") and kind.startswith(prefix)) for prefix in prefixes
    )


class IRoute(Interface):
    """A way to the game service that owns some message types."""

    name = Attribute("What the route leads to, for logs and error messages.")

    def owns(kind):
        """Whether the service handles messages of type C{kind}."""

    def handle(caller, kind, message):
        """
        Deferred: the reply's fields (a dict) or C{None} for no reply, for
        the message C{message} (the whole client message) of type C{kind}
        from C{caller}; fails with a L{WireError} for the client.
        """

    def session_event(caller, event):
        """Deferred: tell the service that C{caller}'s session had C{event}."""

    def services():
        """The Twisted services the route needs running (an RPC link), if any."""


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

    def services(self) -> list[IService]:
        return []


@implementer(IRoute)
class RemoteRoute:
    """
    A route to a game service in another process, over an
    L{mmo.rpc.RPCClientService} link.

    @ivar prefixes: The message types (or prefixes ending in ".") it owns.
    @ivar link: The L{mmo.rpc.RPCClientService} to the service's process.
    @ivar timeout: Seconds to wait for an answer once a message is sent.
    """

    log = Logger()

    def __init__(self, prefixes, link: rpc.RPCClientService, timeout: float = CALL_TIMEOUT):
        self.prefixes = tuple(prefixes)
        self.link = link
        self.timeout = timeout
        self.name = link.peer.name

    def __repr__(self) -> str:
        return f"<RemoteRoute to {self.name} for {', '.join(self.prefixes)}>"

    def owns(self, kind: str) -> bool:
        return owns(self.prefixes, kind)

    def services(self) -> list[IService]:
        return [self.link]

    def _call(self, command, **arguments) -> defer.Deferred:
        d = self.link.callRemote(command, **arguments)
        return d.addTimeout(self.timeout, self.link.reactor)

    def handle(self, caller: Caller, kind: str, message: dict) -> defer.Deferred:
        return defer.ensureDeferred(self._handle(caller, kind, message))

    async def _handle(self, caller: Caller, kind: str, message: dict):
        try:
            response = await self._call(
                commands.Route, caller=pack(caller.to_dict()), kind=kind, body=pack(message)
            )
        except commands.ServiceError as e:
            raise e.wire_error() from None
        except rpc.Unavailable:
            raise WireError(
                codes.UNAVAILABLE, f"the {self.name} service is not reachable now; retry"
            ) from None
        except (error.ConnectionLost, error.ConnectionDone, defer.TimeoutError) as e:
            self.log.warn("{kind!r} to {service}: {why}", kind=kind, service=self.name, why=str(e))
            raise WireError(
                codes.UNAVAILABLE,
                f"the {self.name} service did not answer; the request may or may not "
                "have taken effect",
            ) from None
        except amp.UnknownRemoteError:
            raise WireError(
                codes.INTERNAL, f"the {self.name} service failed to handle {kind!r}"
            ) from None
        return unpack(response["body"])

    def session_event(self, caller: Caller, event: str) -> defer.Deferred:
        d = self._call(commands.SessionEvent, caller=pack(caller.to_dict()), event=event)
        return d.addCallback(lambda _: None)


# -- the service side --------------------------------------------------------------


def _caller(data: bytes) -> Caller:
    try:
        fields = unpack(data)
        caller = Caller.from_dict(fields)
    except Exception:
        raise rpc.BadRequest("malformed caller")
    if not all(isinstance(v, str) for v in (caller.session, caller.gateway, caller.account_id)):
        raise rpc.BadRequest("malformed caller")
    return caller


class ServiceRPC(rpc.RPCProtocol):
    """
    Answers gateways' L{commands.Route} and L{commands.SessionEvent} for the
    factory's game service.
    """

    @commands.Route.responder
    def route(self, caller: bytes, kind: str, body: bytes) -> defer.Deferred:
        return defer.ensureDeferred(self.factory.route(_caller(caller), kind, body))

    @commands.SessionEvent.responder
    def session_event(self, caller: bytes, event: str) -> defer.Deferred:
        d = defer.ensureDeferred(self.factory.service.session_event(_caller(caller), event))
        return d.addCallback(lambda _: {})


class ServiceRPCFactory(rpc.RPCServerFactory):
    """
    The RPC listener's factory of a game-service process.

    @ivar service: The L{GameService} it serves.
    """

    protocol = ServiceRPC

    def __init__(self, config: Config, process: ProcessSection, service, reactor=None):
        super().__init__(config, process, reactor)
        self.service = service

    async def route(self, caller: Caller, kind: str, body: bytes) -> dict:
        try:
            message = unpack(body)
        except Exception:
            raise rpc.BadRequest("malformed message body")
        if not isinstance(message, dict):
            raise rpc.BadRequest("the message body is not a map")
        try:
            reply = await self.service.handle(caller, kind, message)
        except WireError as e:
            raise commands.ServiceError.of(e)
        return {"body": pack(reply)}


def serve(config: Config, process: ProcessSection | str, service, reactor=None) -> IService:
    """
    The RPC listener (on C{processes.NAME.rpc}, mutual TLS) through which
    gateways reach C{service}, a L{GameService} of this process: it answers
    L{commands.Route} and L{commands.SessionEvent}.

    @raise mmo.config.ConfigError: The process has no C{rpc} listener, or a
        certificate is missing.
    """
    if not isinstance(process, ProcessSection):
        process = config.process(process)
    factory = ServiceRPCFactory(config, process, service, reactor)
    return rpc.listen(config, process, factory=factory, reactor=reactor)


def remote_routes(
    config: Config, process: ProcessSection, reactor=None, timeout: float = LINK_TIMEOUT
) -> list[RemoteRoute]:
    """
    A L{RemoteRoute} (with its own RPC link) to every process of the config
    whose kind is in L{ROUTE_PREFIXES} (C{lobby}, C{chat}), in the config's
    order.  The links are not started: L{mmo.gateway.tap.add_gateway} runs
    them with the gateway.
    """
    return [
        RemoteRoute(
            ROUTE_PREFIXES[peer.kind],
            rpc.RPCClientService(config, process, peer, reactor=reactor, timeout=timeout),
        )
        for peer in config.processes.values()
        if peer.kind in ROUTE_PREFIXES
    ]
