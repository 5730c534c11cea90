"""
The C{mmo-login} plugin: accounts, password checks, throttles, session
tickets, realms and the choice of the least-loaded gateway.

    twistd -n mmo-login --config cluster.toml
"""

from __future__ import annotations

from mmo.bus import make_bus
from mmo.bus.directory import DirectoryService
from mmo.frontend.listener import ClientListener, directory_info, factory_class
from mmo.frontend.websocket import WebSocketListener
from mmo.login.passwords import PasswordHasher
from mmo.login.protocol import LoginFactory
from mmo.login.service import LoginService
from mmo.login.tickets import TicketSigner, load_key
from mmo.process.service import ConfigOptions, ProcessService, build
from mmo.store import make_store


class Options(ConfigOptions):
    kind = "login"
    synopsis = "--config FILE [--process NAME]"
    longdesc = "Accounts, logins, session tickets and realms."


def login_service(top: ProcessService, reactor) -> LoginService:
    """The login domain object of a process, its store, bus and hasher as resources."""
    config = top.config
    store = top.resource(make_store(config, reactor))
    bus = top.resource(make_bus(config, reactor))
    top.control_service(bus)
    hasher = top.resource(PasswordHasher.from_config(config, reactor))
    signer = TicketSigner(load_key(config), config.login.ticket_ttl, reactor)
    return LoginService(config, store, bus, hasher, signer, reactor)


def makeService(options: Options, reactor=None) -> ProcessService:
    config, process = options.config, options.process
    if reactor is None:
        from twisted.internet import reactor

    def make():
        top = ProcessService(config, process, reactor)
        login = login_service(top, reactor)
        factory = factory_class(config, process, LoginFactory)(
            config, process, reactor, login=login
        )
        listener = ClientListener(config, process, reactor=reactor, factory=factory)
        listener.setServiceParent(top)
        # Browsers log in over secure WebSocket, on the same factory.
        browsers = None
        if process.websocket:
            browsers = WebSocketListener(config, process, factory, reactor=reactor)
            browsers.setServiceParent(top)
        DirectoryService(
            login.bus,
            process.name,
            lambda: directory_info(process, listener, websocket=browsers),
            config.bus.heartbeat_interval,
            config.bus.heartbeat_timeout,
            reactor=reactor,
        ).setServiceParent(top)
        return top

    return build(make)
