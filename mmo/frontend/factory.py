"""
The factory of client connections: configuration and the set of live
connections, no bytes and no game state.  Login servers, gateways and the
standalone server build their connections with it (or a subclass).
"""

from __future__ import annotations

from twisted.internet import defer, protocol
from twisted.logger import Logger

from mmo.config import Config, ProcessSection
from mmo.frontend.addresses import AddressLimits
from mmo.frontend.deadlines import Deadlines
from mmo.frontend.protocol import ClientProtocol
from mmo.metrics.registry import CONNECTIONS_OPENED, STATE, state
from mmo.wire import codes


class ClientFactory(protocol.ServerFactory):
    """
    Builds a L{ClientProtocol} per client connection.

    Game teams subclass it and set C{protocol} to their own protocol class;
    the config key C{processes.NAME.factory} names the subclass to use.

    @ivar config: The deployment config.
    @ivar process: This process's section of it.
    @ivar wire: The C{[wire]} limits.
    @ivar reactor: The reactor and clock every connection uses.
    @ivar connections: The live connections.
    @ivar addresses: The per-address limits (L{AddressLimits}) of every
        listener this factory serves, TLS and WebSocket.
    @ivar deadlines: The idle and heartbeat deadlines of every connection,
        on one timer (L{Deadlines}).
    """

    protocol = ClientProtocol
    log = Logger()
    # The service logs its own line when it listens; one per connection is noise.
    noisy = False

    def __init__(self, config: Config, process: ProcessSection, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.config = config
        self.process = process
        self.wire = config.wire
        self.reactor = reactor
        self.connections: set[ClientProtocol] = set()
        self.deadlines = Deadlines(reactor)
        self.addresses = AddressLimits.from_config(config.listeners, reactor)
        self._drained: list[defer.Deferred] = []

    def startFactory(self) -> None:
        # Read at each scrape while a listener uses this factory.
        STATE.register(self, self.metric_families)

    def stopFactory(self) -> None:
        STATE.unregister(self)

    def metric_families(self):
        """What Prometheus reads of this factory: its connections."""
        yield state("mmo_connections", ((), len(self.connections)))

    def connectionOpened(self, connection: ClientProtocol) -> None:
        self.connections.add(connection)
        CONNECTIONS_OPENED.inc()

    def connectionClosed(self, connection: ClientProtocol) -> None:
        self.connections.discard(connection)
        if not self.connections:
            waiting, self._drained = self._drained, []
            for d in waiting:
                d.callback(None)

    def closeAll(
        self,
        code: str = codes.SHUTDOWN,
        message: str = "the server is shutting down",
        timeout: float = 5.0,
    ) -> defer.Deferred:
        """
        Say goodbye to every connection and close it; the result fires once
        all are closed.  Connections still open after C{timeout} seconds
        (a peer that does not read) are aborted.
        """
        if not self.connections:
            return defer.succeed(None)
        d = defer.Deferred()
        self._drained.append(d)
        for connection in list(self.connections):
            connection.goodbye(code, message)

        def abort():
            for connection in list(self.connections):
                self.log.warn("aborting {peer}: no close after goodbye", peer=connection.peer)
                connection.transport.abortConnection()

        timer = self.reactor.callLater(timeout, abort)
        d.addBoth(lambda result: timer.cancel() if timer.active() else None)
        return d
