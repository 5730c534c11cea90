"""
The standalone server, C{twistd -n mmo --config FILE}: every service in one
process (the economy's when C{[economy] enabled}), for development and
small games, on SQLite and the in-process bus.
"""

from __future__ import annotations

from mmo import rpc
from mmo.frontend.listener import factory_class
from mmo.game.routes import LocalRoute
from mmo.game.service import GameService
from mmo.gateway.tap import add_gateway
from mmo.jobs.build import add_scheduler
from mmo.login.tap import login_service
from mmo.process.service import ConfigOptions, ProcessService, build
from mmo.standalone.protocol import StandaloneFactory


def zone_route(config, process, store, bus, reactor, top):
    """
    A L{mmo.zone.service.ZoneService} for every region of C{[world]}, in
    this process (resources of C{top}), and the L{ZoneRoute} to them.
    """
    from mmo.zone.host import zone_service_class
    from mmo.zone.route import ZoneRoute
    from mmo.zone.world import WorldMap

    world_map = WorldMap.from_config(config.world)
    zone_class = zone_service_class(config)
    zones = {
        region.name: LocalRoute(top.resource(zone_class(config, store, bus, reactor, region.name)))
        for region in world_map.regions.values()
    }
    return ZoneRoute(zones, world_map, process.name, store, config.world.spawn, reactor)


class Options(ConfigOptions):
    """Options of the C{mmo} plugin."""

    kind = "mmo"
    synopsis = "--config FILE [--process NAME]"
    longdesc = "Run every mmo service in one process."


def makeService(options: Options, reactor=None) -> ProcessService:
    from mmo.chat.service import ChatService
    from mmo.ladder.service import LadderService
    from mmo.lobby.service import lobby_service_class

    config, process = options.config, options.process
    if reactor is None:
        from twisted.internet import reactor

    def make():
        top = ProcessService(config, process, reactor)
        login = login_service(top, reactor)
        classes = [lobby_service_class(config), ChatService, LadderService]
        if config.economy.enabled:
            from mmo.economy.service import EconomyService

            # The one economy process: it holds the trades' lease itself.
            classes.append(EconomyService)
        services = [top.resource(cls(config, login.store, login.bus, reactor)) for cls in classes]
        routes = [LocalRoute(service) for service in services]
        routes.append(zone_route(config, process, login.store, login.bus, reactor, top))
        factory = factory_class(config, process, StandaloneFactory)
        add_gateway(top, login.bus, routes, reactor, factory, login=login)
        if process.rpc:
            rpc.listen(config, process, reactor=reactor).setServiceParent(top)
        # Last, after every service: the jobs of every kind (this process
        # runs every service) and of every service.
        served = [r for r in top.resources if isinstance(r, GameService)]
        add_scheduler(top, config, login.store, login.bus, served, reactor, kind=None)
        return top

    return build(make)
