"""
What the plugins of game services (C{mmo-lobby}, C{mmo-chat}, C{mmo-zone})
share: a process with the store, the bus and one
L{mmo.game.service.GameService}, answering gateways over AMP with mutual TLS
(L{mmo.game.server}), announcing itself in the directory, ending the
sessions of gateways that died (L{mmo.game.gateways.GatewayWatch}),
learning the sessions online from the gateways when its service keeps
who is online (L{mmo.process.seeding.SessionSeeding}) and
running the scheduled jobs of its kind and of its service
(L{mmo.jobs.scheduler.Scheduler}).

A service that can replace a running process of the same name (the zone
host, C{mmo-zone --takeover}) has an C{attach(hooks)} method: it gets the
process's L{ProcessHooks}, with which it starts its listener, directory
entry and control subscription only once the old process released them,
or releases its own for a successor.
"""

from __future__ import annotations

from twisted.application import service as appservice
from twisted.internet import defer, task
from twisted.internet.error import CannotListenError
from twisted.logger import Logger

from mmo import rpc
from mmo.bus import make_bus
from mmo.bus.directory import DirectoryService
from mmo.game.gateways import GatewayWatch
from mmo.game.server import ServiceRPCFactory, serve
from mmo.jobs.build import add_scheduler
from mmo.process.seeding import SessionSeeding
from mmo.process.service import ConfigOptions, ProcessService, build
from mmo.store import make_store


class ServiceOptions(ConfigOptions):
    synopsis = "--config FILE [--process NAME]"


class _PortService(appservice.Service):
    """A port bound already, as a service: stopping it stops listening."""

    def __init__(self, port):
        self.port = port

    def stopService(self):
        super().stopService()
        return defer.maybeDeferred(self.port.stopListening)


class ProcessHooks:
    """
    The pieces of a game-service process that only the process serving
    its name may run, for a service replacing (or being replaced by)
    another process of the same name.

    @ivar top: The L{ProcessService}.
    @ivar factory: The RPC listener's L{mmo.game.server.ServiceRPCFactory}
        (its C{connections} are the gateways' links).
    @ivar listener: The listening service, once listening (else C{None}).
    @ivar directory: The L{DirectoryService}.
    @ivar control: The L{ControlService} (started by the process, unless
        C{standby}).
    """

    log = Logger()

    def __init__(self, top, factory, listener, directory, control, reactor, standby=False):
        self.top = top
        self.factory = factory
        self.listener = listener
        self.directory = directory
        self.control = control
        self.reactor = reactor
        self.standby = standby

    async def go_live(self, attempts: int = 50) -> None:
        """
        Listen on the RPC port (retrying while the old process still holds
        it), enter the directory, take control commands.
        """
        top = self.top
        if self.listener is None:
            for attempt in range(attempts):
                try:
                    port = await rpc.listen_port(
                        top.config, top.process, factory=self.factory, reactor=self.reactor
                    )
                    break
                except CannotListenError:
                    if attempt == attempts - 1:
                        raise
                    await task.deferLater(self.reactor, 0.1, lambda: None)
            self.listener = _PortService(port)
            self.listener.setServiceParent(top)
        if self.directory.parent is None:
            self.directory.setServiceParent(top)
        if self.standby:
            self.standby = False
            await self.control.start()
            top.resources.append(self.control)

    async def release(self) -> None:
        """
        Stop listening (the links that are up stay up), leave the
        directory, stop taking control commands: a successor takes them.
        """
        if self.listener is not None and self.listener.parent is not None:
            await defer.maybeDeferred(self.listener.disownServiceParent)
        if self.directory.parent is not None:
            await defer.maybeDeferred(self.directory.disownServiceParent)
        await self.control.stop()

    def exit_when_idle(self, timeout: float) -> None:
        """
        End the process (status 0) once no link to it is left (the
        gateways moved theirs to the successor), or after C{timeout}
        seconds.
        """
        started = self.reactor.seconds()

        def check():
            idle = not self.factory.connections
            if idle or self.reactor.seconds() - started >= timeout:
                self.log.info(
                    "{process}: exiting ({why})",
                    process=self.top.process.name,
                    why="no link left" if idle else "timeout",
                )
                loop.stop()
                self.reactor.stop()

        loop = task.LoopingCall(check)
        loop.clock = self.reactor
        loop.start(0.1, now=False)

    def fail(self) -> None:
        """End the process with status 1 (a takeover that cannot go on)."""
        self.top.fail()


def register_commands(control, service):
    """C{control} (a process's L{ControlService}) answering C{service}'s own commands."""
    for command, handler in service.control_commands().items():
        control.register(command, handler)
    return control


def make_game_service(options: ConfigOptions, service_class, reactor=None) -> ProcessService:
    """The process running C{service_class} for the process chosen by C{options}."""
    config, process = options.config, options.process
    if reactor is None:
        from twisted.internet import reactor

    def make():
        top = ProcessService(config, process, reactor)
        store = top.resource(make_store(config, reactor))
        bus = top.resource(make_bus(config, reactor))
        service = top.resource(service_class(config, store, bus, reactor))
        watch = top.resource(GatewayWatch.from_config(config, service, bus, reactor))
        if service.finds_sessions:
            top.resource(SessionSeeding(service, watch.known, bus, reactor))
        factory = ServiceRPCFactory(
            config,
            process,
            service,
            reactor,
            known=watch.known,
            # A zone host sends its players' gateways messages over their links.
            streams=getattr(service, "streams", None),
        )
        directory = DirectoryService(
            bus,
            process.name,
            lambda: {"kind": process.kind, "realm": process.realm, **service.directory_info()},
            config.bus.heartbeat_interval,
            config.bus.heartbeat_timeout,
            reactor=reactor,
        )
        attach = getattr(service, "attach", None)
        if attach is None:
            register_commands(top.control_service(bus), service)
            add_scheduler(top, config, store, bus, [service], reactor, process.kind)
            serve(config, process, service, reactor, factory=factory).setServiceParent(top)
            directory.setServiceParent(top)
            return top
        standby = bool(getattr(service, "takeover", False))
        # A standby process does not subscribe yet: the old one answers there.
        control = register_commands(top.control_service(bus, standby=standby), service)
        add_scheduler(top, config, store, bus, [service], reactor, process.kind)
        if standby:
            listener = None
        else:
            listener = serve(config, process, service, reactor, factory=factory)
            listener.setServiceParent(top)
            directory.setServiceParent(top)
        attach(ProcessHooks(top, factory, listener, directory, control, reactor, standby))
        return top

    return build(make)
