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
from mmo.services import ZONE_REDIRECT, Caller, GameService, gateway_channel
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

#: Messages at most in one L{commands.RouteBatch} box (a box of 500
#: C{zone.move}s is about 100 KB).
MAX_BATCH = 500

#: The message types a zone answers at once, which a gateway sends in batches.
ZONE_BATCHED = ("zone.move",)


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

    Messages of the types in C{batched} (those the service answers at once,
    like a zone's C{zone.move}) are gathered for the rest of the reactor
    turn and go together in one L{commands.RouteBatch} (at most
    C{max_batch} to a box); each still gets its own reply or error.  Any
    other message first sends the gathered ones, so that the service gets
    a session's messages in the order they came.

    @ivar prefixes: The message types (or prefixes ending in ".") it owns.
    @ivar link: The L{mmo.rpc.RPCClientService} to the service's process.
    @ivar timeout: Seconds to wait for an answer once a message is sent.
    @ivar batched: The message types sent in batches.
    """

    log = Logger()

    def __init__(
        self,
        prefixes,
        link: rpc.RPCClientService,
        timeout: float = CALL_TIMEOUT,
        batched=(),
        max_batch: int = MAX_BATCH,
    ):
        self.prefixes = tuple(prefixes)
        self.link = link
        self.timeout = timeout
        self.name = link.peer.name
        self.batched = frozenset(batched)
        self.max_batch = max_batch
        #: The batched messages of this reactor turn: ([caller, kind, message], Deferred).
        self._batch: list[tuple[list, defer.Deferred]] = []
        self._flush_call = None
        #: The service does not take L{commands.RouteBatch} (an older
        #: version, during a rolling upgrade): one L{commands.Route} each.
        self._unbatched = False

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
        if kind in self.batched and not self._unbatched:
            d = defer.Deferred()
            self._batch.append(([caller.to_dict(), kind, message], d))
            if len(self._batch) >= self.max_batch:
                self.flush()
            elif self._flush_call is None:
                self._flush_call = self.link.reactor.callLater(0, self.flush)
            return d
        if self._batch:
            self.flush()
        return defer.ensureDeferred(self._handle(caller, kind, message))

    async def _handle(self, caller: Caller, kind: str, message: dict):
        try:
            response = await self._call(
                commands.Route, caller=pack(caller.to_dict()), kind=kind, body=pack(message)
            )
        except Exception as e:
            raise self._client_error(e, kind) from None
        return unpack(response["body"])

    def _client_error(self, e: Exception, kind: str) -> Exception:
        """What the client is told of a call of C{kind} that failed with C{e}."""
        if isinstance(e, commands.ServiceError):
            return e.wire_error()
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
        """Send the gathered messages now (L{commands.RouteBatch}, C{max_batch} to a box)."""
        if self._flush_call is not None:
            if self._flush_call.active():
                self._flush_call.cancel()
            self._flush_call = None
        batch, self._batch = self._batch, []
        for start in range(0, len(batch), self.max_batch):
            self._send_batch(batch[start : start + self.max_batch])

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
            if isinstance(reply, list) and len(reply) == 2 and reply[0] == 0:
                d.callback(reply[1])
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
        if self._batch:
            self.flush()
        d = self._call(commands.SessionEvent, caller=pack(caller.to_dict()), event=event)
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


# -- the service side --------------------------------------------------------------


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
    Answers gateways' L{commands.Route} and L{commands.SessionEvent} for the
    factory's game service.
    """

    @commands.Route.responder
    def route(self, caller: bytes, kind: str, body: bytes) -> defer.Deferred:
        return defer.ensureDeferred(self.factory.route(_caller(caller), kind, body))

    @commands.RouteBatch.responder
    def route_batch(self, calls: bytes) -> defer.Deferred:
        return defer.ensureDeferred(self.factory.route_batch(calls))

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
    log = Logger()

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
        try:
            reply = await self.service.handle(caller, kind, message)
        except WireError as e:
            return [1, e.code, e.message[:4096], e.fatal]
        except Exception:
            self.log.failure("{kind!r} from {session} failed", kind=kind, session=caller.session)
            return [1, codes.INTERNAL, f"the service failed to handle {kind!r}", False]
        return [0, reply]


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


def remote_routes(
    config: Config, process: ProcessSection, reactor=None, timeout: float = LINK_TIMEOUT
) -> list[RemoteRoute]:
    """
    A L{RemoteRoute} (with its own RPC link) to every process of the config
    whose kind is in L{ROUTE_PREFIXES} (C{lobby}, C{chat}), in the config's
    order.  The links are not started: L{mmo.gateway.tap.add_gateway} runs
    them with the gateway.
    """
    routes: list = [
        RemoteRoute(
            ROUTE_PREFIXES[peer.kind],
            rpc.RPCClientService(config, process, peer, reactor=reactor, timeout=timeout),
        )
        for peer in config.processes.values()
        if peer.kind in ROUTE_PREFIXES
    ]
    zones = zone_routes(config, process, reactor, timeout)
    if zones is not None:
        routes.append(zones)
    return routes


def zone_routes(
    config: Config, process: ProcessSection, reactor=None, timeout: float = LINK_TIMEOUT
):
    """
    The L{ZoneRoute} to the C{zone} processes of the config (one RPC link
    per process, shared by its regions), or C{None} if it has none.  The
    gateway has no store: a character checkpointed in another zone than the
    spawn's is found by that zone's redirect.
    """
    from mmo.zone.world import WorldMap

    peers = {
        peer.name: RemoteRoute(
            ("zone.",),
            rpc.RPCClientService(config, process, peer, reactor=reactor, timeout=timeout),
            batched=ZONE_BATCHED,
        )
        for peer in config.processes.values()
        if peer.kind == "zone"
    }
    if not peers:
        return None
    world_map = WorldMap.from_config(config.world)
    routes = {
        region.name: peers[region.process]
        for region in world_map.regions.values()
        if region.process in peers
    }
    return ZoneRoute(routes, world_map, None, config.world.spawn)


# -- the world's zones ---------------------------------------------------------------


@implementer(IRoute)
class ZoneRoute:
    """
    The route of C{zone.*} messages: to the zone that holds the caller's
    character (L{Caller.zone}), whichever route leads there.

    A caller not in a zone yet is sent, for C{zone.enter}, to the zone the
    store names owner of its character (it is still in the world, or was
    checkpointed there), else to the zone whose region holds the position
    its character last left the world at (L{mmo.zone.entity.WORLD_KEY}),
    else to the zone whose region holds C{[world] spawn} (which redirects,
    if the store says otherwise).  A handoff moves the character to another
    zone: the old zone sends a C{SwitchRoute} on this gateway's bus channel,
    which
    L{zoneMessage} applies (only forwards: by the entity's version, so
    repeats are harmless), answering C{Switched}; the client is pushed
    C{zone.changed {zone}} and its connection stays as it is.

    @ivar routes: Zone (region) name -> the L{IRoute} to its service.
    """

    log = Logger()
    name = "zones"
    prefixes = ("zone.",)

    def __init__(self, routes: dict, world_map, store, spawn):
        self.routes = dict(routes)
        self.map = world_map
        self.store = store
        self.spawn = tuple(spawn)
        #: Session -> the version of its entity that set its zone.
        self._versions: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"<ZoneRoute to {', '.join(self.routes)}>"

    def owns(self, kind: str) -> bool:
        return owns(self.prefixes, kind)

    def services(self) -> list[IService]:
        found: list[IService] = []
        for route in self.routes.values():
            found.extend(s for s in route.services() if s not in found)
        return found

    def handle(self, caller: Caller, kind: str, message: dict) -> defer.Deferred:
        zone = caller.zone
        if zone is not None and kind not in ("zone.enter", "zone.leave"):
            # In the world, an input: straight to its zone's route (every
            # player's every move comes this way).
            route = self.routes.get(zone)
            if route is None:
                return defer.fail(self._unreachable(zone))
            return route.handle(caller, kind, message)
        return defer.ensureDeferred(self._handle(caller, kind, message))

    @staticmethod
    def _unreachable(zone: str) -> WireError:
        return WireError(codes.UNAVAILABLE, f"zone {zone!r} is not reachable from here")

    async def _handle(self, caller: Caller, kind: str, message: dict):
        zone = caller.zone
        if zone is None:
            if kind != "zone.enter":
                raise WireError(codes.NOT_ALLOWED, "enter the world first (zone.enter)")
            zone = await self.home(caller)
            caller = caller.moved(zone=zone)
        route = self.routes.get(zone)
        if route is None:
            raise self._unreachable(zone)
        reply = await route.handle(caller, kind, message)
        if isinstance(reply, dict) and ZONE_REDIRECT in reply:
            # zone.enter in the wrong zone: the store names another owner.
            zone = reply[ZONE_REDIRECT]
            route = self.routes.get(zone)
            if route is None:
                raise self._unreachable(zone)
            reply = await route.handle(caller.moved(zone=zone), kind, message)
            if isinstance(reply, dict) and ZONE_REDIRECT in reply:
                raise WireError(codes.UNAVAILABLE, "your character is moving between zones; retry")
        if kind in ("zone.enter", "zone.leave"):
            # A new entity (or none): route switches start over.
            self._versions.pop(caller.session, None)
        return reply

    async def home(self, caller: Caller) -> str:
        """The zone a caller's character enters the world in."""
        if caller.character_id is None:
            raise WireError(codes.NOT_ALLOWED, "choose a character first")
        if self.store is not None:
            stored = await self.store.load_entity(caller.character_id)
            if stored is not None and stored.owner in self.routes:
                return stored.owner
            if stored is None:
                # Out of the world: where it left it, if that is on the map.
                from mmo.zone.entity import saved_position

                character = await self.store.character_by_id(caller.character_id)
                saved = saved_position(character.data if character is not None else None)
                region = self.map.region_at(saved[0], saved[1]) if saved else None
                if region is not None and region.name in self.routes:
                    return region.name
        region = self.map.region_at(*self.spawn)
        if region is None:
            raise WireError(codes.INTERNAL, "the spawn point is off the map")
        return region.name

    def session_event(self, caller: Caller, event: str) -> defer.Deferred:
        """C{"moved"} and C{"ended"} go to every zone (any may hold the character)."""
        if event not in ("moved", "ended"):
            return defer.succeed(None)
        if event == "ended":
            self._versions.pop(caller.session, None)
        calls = [
            defer.maybeDeferred(route.session_event, caller, event)
            for route in self.routes.values()
        ]
        return defer.gatherResults(calls, consumeErrors=True).addCallback(lambda _: None)

    def relink(self, message) -> defer.Deferred | None:
        """
        C{{"relink": {"process": NAME}}} on the gateway's channel: zone
        process C{NAME} was replaced (a takeover); its route moves its link
        to the new process.
        """
        process = message.get("process") if isinstance(message, dict) else None
        done = []
        for route in self.routes.values():
            if getattr(route, "name", None) == process and route not in done:
                done.append(route)
        if not done:
            return None
        self.log.info("relinking to zone process {process}", process=process)
        return defer.gatherResults([route.relink() for route in done], consumeErrors=True)

    def zoneMessage(self, factory, message: dict) -> defer.Deferred | None:
        """
        A zone's message on the gateway's channel (L{mmo.zone.messages}):
        a C{SwitchRoute} (answered C{Switched}) or a C{Moved}.
        """
        from mmo.zone import messages
        from mmo.zone.handoff import Moved, Switched, SwitchRoute

        try:
            sender, body = messages.decode(message.get(messages.KEY))
        except ValueError as e:
            self.log.warn("dropped a zone message: {why}", why=str(e))
            return None
        if not isinstance(body, (SwitchRoute, Moved)):
            self.log.warn(
                "unexpected zone message {body!r} from {sender}", body=body, sender=sender
            )
            return None
        session = factory.registry.by_id.get(body.session)
        if session is None:
            forward = factory.forwards.get(body.session)
            if forward is not None:
                # The session moved to another gateway: it answers.
                return factory.bus.publish(gateway_channel(forward[0]), message)
        elif session.caller.character_id == body.entity_id:
            if body.version > self._versions.get(body.session, -1):
                self._versions[body.session] = body.version
                if session.caller.zone != body.zone:
                    d = defer.ensureDeferred(factory.updateSession(session, {"zone": body.zone}))
                    d.addErrback(lambda f: self.log.failure("switching a zone route failed", f))
                    try:
                        session.push("zone.changed", {"zone": body.zone})
                    except Exception:
                        self.log.failure("push zone.changed dropped")
        if isinstance(body, SwitchRoute):
            # Always answered: the old zone waits for it.
            return factory.bus.publish(
                messages.zone_channel(sender),
                messages.encode(factory.name, Switched(body.transfer_id, body.session)),
            )
        return None
