"""
The C{mmo-gateway} plugin: holds players' connections and sessions, admits
them with their session tickets, and routes their messages to the game
services of the deployment (the C{lobby} and C{chat} processes, over AMP).

    twistd -n mmo-gateway --config cluster.toml --process gateway-1
"""

from __future__ import annotations

from twisted.application.internet import TimerService

from mmo import rpc
from mmo.app import ConfigOptions, ProcessService, ServiceResource, build
from mmo.bus import make_bus
from mmo.bus.directory import DirectoryService
from mmo.config import Config, ProcessSection
from mmo.frontend.listener import ClientListener, directory_info, factory_class
from mmo.frontend.websocket import WebSocketListener
from mmo.game.routes import LINK_TIMEOUT, RemoteRoute
from mmo.game.service import gateway_channel
from mmo.gateway.admission import Admission
from mmo.gateway.factory import GatewayFactory
from mmo.login.service import SESSIONS_CHANNEL
from mmo.login.tickets import TicketSigner, load_key
from mmo.zone.route import zone_routes

#: The message types each kind of remote service owns (prefixes end in ".").
ROUTE_PREFIXES: dict[str, tuple[str, ...]] = {
    "lobby": ("character.", "room.", "world."),
    "chat": ("chat.",),
}


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


class Sessions:
    """
    The gateway's sessions as a process resource: at stop (after the client
    listener has said goodbye to every client), every session is ended and
    the services are told.
    """

    def __init__(self, factory: GatewayFactory):
        self.factory = factory

    def start(self):
        pass

    def stop(self):
        return self.factory.stop()


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


def add_gateway(
    top: ProcessService, factory: GatewayFactory, bus, reactor, routes=None
) -> ClientListener:
    """
    Wire a gateway factory into a process: ticket admission, the sessions
    channel, this gateway's delivery channel, presence, the directory entry,
    the routes to game services (C{routes}, a list of
    L{mmo.game.routes.IRoute}; by default those the factory has), the
    client listener and the control commands C{drain}, C{kick} and
    C{broadcast} (see C{docs/sessions.md}).

    Resources start in order and stop in reverse, after the child services:
    the routes' links start first and stop last, so that the services still
    hear of the sessions that end when the gateway stops.
    """
    config, process = top.config, top.process
    signer = TicketSigner(load_key(config), config.login.ticket_ttl, reactor)
    factory.bus = bus
    factory.admission = Admission(signer, bus, process.realm, reactor)
    if routes is not None:
        factory.routes = list(routes)
    for route in factory.routes:
        for service in route.services():
            if service.parent is None and not service.running:
                top.resource(ServiceResource(service))
    control = top.control_service(bus)
    control.register("drain", factory.drain)
    control.register("kick", factory.kick)
    control.register("broadcast", factory.broadcast)
    top.resource(Subscription(bus, SESSIONS_CHANNEL, factory.sessionsMessage))
    top.resource(Subscription(bus, gateway_channel(process.name), factory.gatewayMessage))
    top.resource(Sessions(factory))
    listener = ClientListener(config, process, reactor=reactor, factory=factory)
    listener.setServiceParent(top)
    browsers = None
    if process.websocket:
        # The same factory: TCP and WebSocket connections are one set of sessions.
        browsers = WebSocketListener(config, process, factory, reactor=reactor)
        browsers.setServiceParent(top)
    factory.listeners = [listener] + ([browsers] if browsers is not None else [])
    beat = config.bus.heartbeat_interval
    presence = TimerService(beat, factory.refreshPresence)
    presence.clock = reactor
    presence.setServiceParent(top)
    factory.directory = DirectoryService(
        bus,
        process.name,
        lambda: directory_info(
            process,
            listener,
            load=factory.load,
            websocket=browsers,
            draining=factory.draining,
        ),
        beat,
        config.bus.heartbeat_timeout,
        reactor=reactor,
    )
    factory.directory.setServiceParent(top)
    return listener


def makeService(options: Options, reactor=None) -> ProcessService:
    config, process = options.config, options.process
    if reactor is None:
        from twisted.internet import reactor

    def make():
        top = ProcessService(config, process, reactor)
        bus = top.resource(make_bus(config, reactor))
        factory = factory_class(config, process, GatewayFactory)(config, process, reactor)
        add_gateway(top, factory, bus, reactor, routes=remote_routes(config, process, reactor))
        return top

    return build(make)
