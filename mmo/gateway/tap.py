"""
The C{mmo-gateway} plugin: holds players' connections and sessions, admits
them with their session tickets, and routes their messages to the game
services of the deployment (the C{lobby} and C{chat} processes, over AMP).

    twistd -n mmo-gateway --config cluster.toml --process gateway-1
"""

from __future__ import annotations

from twisted.application.internet import TimerService

from mmo.app import ConfigOptions, ProcessService, ServiceResource, build
from mmo.bus import make_bus
from mmo.bus.directory import DirectoryService
from mmo.gateway.admission import Admission
from mmo.gateway.factory import GatewayFactory
from mmo.gateway.router import remote_routes
from mmo.gateway.service import ClientListener, factory_class
from mmo.gateway.websocket import WebSocketListener
from mmo.login.service import SESSIONS_CHANNEL
from mmo.login.tickets import TicketSigner, load_key
from mmo.services import gateway_channel


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


def directory_info(process, listener, kind=None, load=None, websocket=None, draining=False) -> dict:
    """
    What a process with a client listener tells the directory about itself:
    where clients reach it (and browsers, with a WebSocket listener), its
    load and, once it drains, C{"draining": true} (login then sends nobody there).
    """
    port = listener.port.getHost().port if listener.port is not None else None
    host, public_port = process.public_address(port)
    info = {
        "kind": kind or process.kind,
        "realm": process.realm,
        "host": host,
        "port": public_port,
        "load": load() if load is not None else len(listener.factory.connections),
    }
    if websocket is not None and websocket.port is not None:
        info["websocket"] = websocket.port.getHost().port
    if draining:
        info["draining"] = True
    return info


def add_gateway(
    top: ProcessService, factory: GatewayFactory, bus, reactor, routes=None
) -> ClientListener:
    """
    Wire a gateway factory into a process: ticket admission, the sessions
    channel, this gateway's delivery channel, presence, the directory entry,
    the routes to game services (C{routes}, a list of
    L{mmo.gateway.router.IRoute}; by default those the factory has), the
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
