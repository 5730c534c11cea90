"""
The admin console's HTTPS listener: C{processes.NAME.console}, with TLS by
the manager's certificate (or the operator's, C{[tls]}), HTTP/1.1 only.
"""

from __future__ import annotations

from twisted.application import service
from twisted.internet import defer, endpoints
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory

from mmo import tls
from mmo.config import Config, ConfigError, ProcessSection
from mmo.console import console_url


class ConsoleListener(service.Service):
    """
    Serves C{site} on C{process}'s console endpoint.  The certificate is
    loaded when it is made and the port bound when it starts: either
    failing fails the manager's start with the file, key and reason.

    @ivar port: The listening port while running.
    """

    log = Logger()
    port = None

    def __init__(self, config: Config, process: ProcessSection, site, reactor):
        self.config = config
        self.process = process
        self.key = ("processes", process.name, "console")
        self.url = console_url(config, process)
        self.endpoint = endpoints.serverFromString(reactor, process.console)
        server = tls.client_facing_tls(config, process, (b"http/1.1",))
        self.factory = TLSMemoryBIOFactory(server, False, site)

    def privilegedStartService(self):
        super().privilegedStartService()
        failures = []
        self.endpoint.listen(self.factory).addCallbacks(self._listening, failures.append)
        if failures:
            raise ConfigError(
                f"cannot listen on {self.process.console!r}: {failures[0].getErrorMessage()}",
                self.key,
                self.config.file,
            )

    def _listening(self, port):
        self.port = port
        self.log.info(
            "{process}: admin console on {url} (log in: mmo-admin console)",
            process=self.process.name,
            url=self.url,
        )

    def startService(self):
        if self.port is None:
            self.privilegedStartService()
        super().startService()

    def stopService(self):
        super().stopService()
        if self.port is None:
            return None
        port, self.port = self.port, None
        return defer.maybeDeferred(port.stopListening)
