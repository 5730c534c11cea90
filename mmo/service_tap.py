"""
What the plugins of game services (C{mmo-lobby}, C{mmo-chat}) share: a
process with the store, the bus and one L{mmo.services.GameService},
answering gateways over AMP with mutual TLS and announcing itself in the
directory.
"""

from __future__ import annotations

from mmo.app import ConfigOptions, ProcessService, build
from mmo.bus import make_bus
from mmo.bus.directory import DirectoryService
from mmo.store import make_store


class ServiceOptions(ConfigOptions):
    synopsis = "--config FILE [--process NAME]"


def make_game_service(options: ConfigOptions, service_class, reactor=None) -> ProcessService:
    """The process running C{service_class} for the process chosen by C{options}."""
    from mmo.gateway.router import serve

    config, process = options.config, options.process
    if reactor is None:
        from twisted.internet import reactor

    def make():
        top = ProcessService(config, process, reactor)
        store = top.resource(make_store(config, reactor))
        bus = top.resource(make_bus(config, reactor))
        service = top.resource(service_class(config, store, bus, reactor))
        top.control_service(bus)
        serve(config, process, service, reactor).setServiceParent(top)
        DirectoryService(
            bus,
            process.name,
            lambda: {"kind": process.kind, "realm": process.realm, **service.directory_info()},
            config.bus.heartbeat_interval,
            config.bus.heartbeat_timeout,
            reactor=reactor,
        ).setServiceParent(top)
        return top

    return build(make)
