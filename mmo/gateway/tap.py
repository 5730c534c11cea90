"""
The C{mmo-gateway} plugin: holds players' connections, admits them with
their session tickets, and routes their messages (to the lobby, chat and
zones, as those services arrive).

    twistd -n mmo-gateway --config cluster.toml --process gateway-1
"""

from __future__ import annotations

from twisted.application.internet import TimerService

from mmo.app import ConfigOptions, ProcessService, build
from mmo.bus import make_bus
from mmo.bus.directory import DirectoryService
from mmo.gateway.admission import Admission
from mmo.gateway.factory import GatewayFactory
from mmo.gateway.service import ClientListener, factory_class
from mmo.login.service import SESSIONS_CHANNEL
from mmo.login.tickets import TicketSigner, load_key


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


def directory_info(process, listener, kind=None, load=None) -> dict:
    """What a process with a client listener tells the directory about itself."""
    port = listener.port.getHost().port if listener.port is not None else None
    host, public_port = process.public_address(port)
    return {
        "kind": kind or process.kind,
        "realm": process.realm,
        "host": host,
        "port": public_port,
        "load": load() if load is not None else len(listener.factory.connections),
    }


def add_gateway(top: ProcessService, factory: GatewayFactory, bus, reactor) -> ClientListener:
    """
    Wire a gateway factory into a process: ticket admission, the sessions
    channel, presence, the directory entry and the client listener.
    """
    config, process = top.config, top.process
    signer = TicketSigner(load_key(config), config.login.ticket_ttl, reactor)
    factory.bus = bus
    factory.admission = Admission(signer, bus, process.realm, reactor)
    top.resource(Subscription(bus, SESSIONS_CHANNEL, factory.sessionsMessage))
    listener = ClientListener(config, process, reactor=reactor, factory=factory)
    listener.setServiceParent(top)
    beat = config.bus.heartbeat_interval
    presence = TimerService(beat, factory.refreshPresence)
    presence.clock = reactor
    presence.setServiceParent(top)
    DirectoryService(
        bus,
        process.name,
        lambda: directory_info(process, listener, load=factory.load),
        beat,
        config.bus.heartbeat_timeout,
        reactor=reactor,
    ).setServiceParent(top)
    return listener


def makeService(options: Options, reactor=None) -> ProcessService:
    config, process = options.config, options.process
    if reactor is None:
        from twisted.internet import reactor

    def make():
        top = ProcessService(config, process, reactor)
        bus = top.resource(make_bus(config, reactor))
        factory = factory_class(config, process, GatewayFactory)(config, process, reactor)
        add_gateway(top, factory, bus, reactor)
        return top

    return build(make)
