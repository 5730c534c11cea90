"""
The C{mmo-gateway} plugin: holds players' connections and sessions, admits
them with their session tickets, and routes their messages to the game
services of the deployment (the C{lobby} and C{chat} processes, over AMP).

    twistd -n mmo-gateway --config cluster.toml --process gateway-1
"""

from __future__ import annotations

from twisted.application.internet import TimerService

from mmo import rpc
from mmo.bus import make_bus
from mmo.bus.directory import DirectoryService
from mmo.config import Config, ConfigError, ProcessSection
from mmo.frontend.listener import ClientListener, directory_info, factory_class
from mmo.frontend.websocket import WebSocketListener
from mmo.game.routes import LINK_TIMEOUT, RemoteRoute
from mmo.gateway.factory import GatewayFactory, make_gateway, subscriptions
from mmo.gateway.operations import Operations
from mmo.lobby.service import lobby_service_class
from mmo.login.tickets import TicketSigner, load_key
from mmo.process.service import ConfigOptions, ProcessService, ServiceResource, build
from mmo.zone.route import zone_routes

#: The message types each kind of remote service owns (prefixes end in ".").
ROUTE_PREFIXES: dict[str, tuple[str, ...]] = {
    "lobby": ("character.", "room.", "world."),
    "chat": ("chat.",),
    "ladder": ("ladder.",),
    "economy": ("wallet.", "inventory.", "shop.", "trade."),
}

#: The kinds of remote service whose shipped class keeps nothing of a
#: session's zone (L{GameService.hears_zone_changes
#: <mmo.game.service.GameService.hears_zone_changes>} false), known here
#: without importing it (the ladder's rating model is slow to load).
ZONE_BLIND_KINDS = frozenset({"ladder"})


def hears_zone_changes(config: Config, kind: str) -> bool:
    """
    Whether a remote service of C{kind} is told C{"changed"} when a
    session's zone is all that changed: the lobby's class is the config's
    (C{[lobby] lobby_class}, a game's may follow the zone), the others' are
    the shipped ones (L{ZONE_BLIND_KINDS}).  A lobby class that cannot be
    loaded here is told everything (its own process says what is wrong).
    """
    if kind == "lobby":
        try:
            return lobby_service_class(config).hears_zone_changes
        except ConfigError:
            return True
    return kind not in ZONE_BLIND_KINDS


class ServiceRoute(RemoteRoute):
    """
    A L{RemoteRoute} to a service of a kind the gateway knows, saying
    whether that service hears zone changes
    (L{mmo.gateway.routing.hears_zone_changes}).
    """

    def __init__(self, prefixes, link, hears_zone_changes: bool, **options):
        super().__init__(prefixes, link, **options)
        self.hears_zone_changes = hears_zone_changes


class Options(ConfigOptions):
    kind = "gateway"
    synopsis = "--config FILE [--process NAME]"
    longdesc = "Hold players' connections: admission with tickets, routing, sessions."


class Subscription:
    """A bus subscription as a process resource: subscribed at start, cancelled at stop."""

    def __init__(self, bus, channel, callback):
        self.bus, self.channel, self.callback = bus, channel, callback
        self.subscription = None

    async def start(self):
        self.subscription = await self.bus.subscribe(self.channel, self.callback)

    async def stop(self):
        if self.subscription is not None:
            await self.subscription.cancel()


class Started:
    """
    The gateway's start told on the bus (L{Sessions.announce
    <mmo.gateway.sessions.Sessions.announce>}), before any client is
    admitted: the game services end what an earlier process of its name held.
    """

    def __init__(self, sessions):
        self.sessions = sessions

    def start(self):
        return self.sessions.announce()

    def stop(self):
        pass


class Stopping:
    """
    The gateway's sessions as a process resource: at stop (after the client
    listener has said goodbye to every client), a drain still running is
    over, and every session is ended and the services are told.
    """

    def __init__(self, factory: GatewayFactory, operations: Operations):
        self.factory = factory
        self.operations = operations

    def start(self):
        pass

    def stop(self):
        self.operations.stop()
        return self.factory.stop()


def gateway_routes(
    config: Config, process: ProcessSection, reactor=None, timeout: float = LINK_TIMEOUT
) -> list:
    """
    The routes of a gateway of a cluster: a L{ServiceRoute} (with its own RPC
    link) to every process of the config whose kind is in
    L{ROUTE_PREFIXES} (C{lobby}, C{chat}), in the config's order, then the
    zones' route (L{mmo.zone.route.zone_routes}) if the world has zone
    processes.  The links are not started: L{add_gateway} runs them with
    the gateway.
    """
    routes: list = [
        ServiceRoute(
            ROUTE_PREFIXES[peer.kind],
            rpc.RPCClientService(config, process, peer, reactor=reactor, timeout=timeout),
            hears_zone_changes(config, peer.kind),
        )
        for peer in config.processes.values()
        if peer.kind in ROUTE_PREFIXES
    ]
    zones = zone_routes(config, process, reactor, timeout)
    if zones is not None:
        routes.append(zones)
    return routes


def add_gateway(
    top: ProcessService,
    bus,
    routes,
    reactor,
    factory_class: type[GatewayFactory] = GatewayFactory,
    **extra,
) -> GatewayFactory:
    """
    A gateway in a process: its factory with every part
    (L{mmo.gateway.factory.make_gateway}, C{extra} going to
    C{factory_class}), its bus subscriptions, the announcement of its
    start, presence, the directory entry, the client listeners (TLS, and
    secure WebSocket when configured) and the control commands C{drain},
    C{kick} and C{broadcast} (see C{docs/sessions.md}).

    Resources start in order and stop in reverse, after the child services:
    the routes' links start first and stop last, so that the services still
    hear of the sessions that end when the gateway stops.
    """
    config, process = top.config, top.process
    signer = TicketSigner(load_key(config), config.login.ticket_ttl, reactor)
    factory = make_gateway(config, process, bus, signer, routes, reactor, factory_class, **extra)
    listener = ClientListener(config, process, reactor=reactor, factory=factory)
    # The same factory: TCP and WebSocket connections are one set of sessions.
    browsers = (
        WebSocketListener(config, process, factory, reactor=reactor) if process.websocket else None
    )
    beat = config.bus.heartbeat_interval
    directory = DirectoryService(
        bus,
        process.name,
        lambda: {
            **directory_info(
                process,
                listener,
                load=factory.load,
                websocket=browsers,
                draining=factory.sessions.draining,
            ),
            # Services that missed the gateway's start find it here.
            "incarnation": factory.sessions.incarnation,
        },
        beat,
        config.bus.heartbeat_timeout,
        reactor=reactor,
    )
    listeners = [listener] + ([browsers] if browsers is not None else [])
    operations = Operations(factory, factory.sessions, bus, listeners, directory)

    for link in factory.services.links():
        if link.parent is None and not link.running:
            top.resource(ServiceResource(link))
    operations.register(top.control_service(bus))
    for channel, dispatcher in subscriptions(factory).items():
        top.resource(Subscription(bus, channel, dispatcher))
    top.resource(Started(factory.sessions))
    top.resource(Stopping(factory, operations))
    for child in listeners:
        child.setServiceParent(top)
    presence = TimerService(beat, factory.sessions.refresh)
    presence.clock = reactor
    presence.setServiceParent(top)
    directory.setServiceParent(top)
    return factory


def makeService(options: Options, reactor=None) -> ProcessService:
    config, process = options.config, options.process
    if reactor is None:
        from twisted.internet import reactor

    def make():
        top = ProcessService(config, process, reactor)
        bus = top.resource(make_bus(config, reactor))
        routes = gateway_routes(config, process, reactor)
        add_gateway(top, bus, routes, reactor, factory_class(config, process, GatewayFactory))
        return top

    return build(make)
