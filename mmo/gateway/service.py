"""
The gateway service: the client-facing TLS listener and its connections.
"""

from __future__ import annotations

from twisted.application import service
from twisted.internet import defer, endpoints
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.reflect import namedAny

from mmo import tls
from mmo.config import Config, ConfigError, ProcessSection
from mmo.gateway.factory import ClientFactory


def factory_class(config: Config, process: ProcessSection, default=ClientFactory):
    """
    The client factory class named by C{processes.NAME.factory}, or
    C{default}; the named class must subclass C{default}.
    """
    if not process.factory:
        return default
    key = ("processes", process.name, "factory")
    try:
        found = namedAny(process.factory)
    except Exception as e:
        raise ConfigError(f"cannot import {process.factory!r}: {e}", key, config.file)
    if not (isinstance(found, type) and issubclass(found, default)):
        raise ConfigError(
            f"{process.factory!r} is not a subclass of {default.__module__}.{default.__name__}",
            key,
            config.file,
        )
    return found


class ClientListener(service.Service):
    """
    The client-facing listener of a process (gateway, login or standalone):
    listens for clients on C{processes.NAME.client} with TLS and, when
    stopped, stops accepting, says goodbye to every client and waits for
    the connections to close.

    @ivar factory: The client factory (a L{ClientFactory} or subclass).
    @ivar port: The listening port while running.
    """

    log = Logger()
    port = None

    def __init__(self, config: Config, process: ProcessSection, reactor=None, factory=None):
        if reactor is None:
            from twisted.internet import reactor
        if factory is None:
            factory = factory_class(config, process)(config, process, reactor)
        self.config = config
        self.process = process
        self.factory = factory
        # Load the certificates now: a missing file must fail the start.
        options = tls.client_facing_options(config, process)
        self.endpoint = endpoints.serverFromString(reactor, process.client)
        self.tlsFactory = TLSMemoryBIOFactory(options, False, factory)

    def privilegedStartService(self):
        # Listen before dropping privileges, and fail the start if we cannot.
        super().privilegedStartService()
        failures = []
        d = self.endpoint.listen(self.tlsFactory)
        d.addCallbacks(self._listening, failures.append)
        if failures:
            raise ConfigError(
                f"cannot listen on {self.process.client!r}: {failures[0].getErrorMessage()}",
                ("processes", self.process.name, "client"),
                self.config.file,
            )

    def _listening(self, port):
        self.port = port
        address = port.getHost()
        self.log.info(
            "{process}: clients on TLS {host}:{port}",
            process=self.process.name,
            host=getattr(address, "host", address),
            port=getattr(address, "port", ""),
        )

    def startService(self):
        if self.port is None:
            self.privilegedStartService()
        super().startService()

    @defer.inlineCallbacks
    def stopService(self):
        super().stopService()
        if self.port is not None:
            port, self.port = self.port, None
            yield port.stopListening()
        yield self.factory.closeAll()
