"""
The client-facing listeners of a process (login, gateway or standalone):
TLS on C{processes.NAME.client} (or plain TCP from a TLS-terminating proxy,
with the PROXY protocol, when C{processes.NAME.proxy_from} is set), the
factory class a config names, and what a process with clients tells the
directory about itself.
"""

from __future__ import annotations

from twisted.application import service
from twisted.internet import defer, endpoints
from twisted.logger import Logger
from twisted.python.reflect import namedAny

from mmo import tls
from mmo.config import Config, ConfigError, ProcessSection
from mmo.frontend.addresses import LimitedTLSFactory, parse_networks
from mmo.frontend.factory import ClientFactory
from mmo.frontend.proxied import ProxiedFactory, proxied_endpoint


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


class TLSListener(service.Service):
    """
    A client-facing TLS listener of a process, on the endpoint of
    C{processes.NAME.KEY}, serving C{wrapped} behind TLS with the process's
    client-facing certificate.  The certificates are loaded when it is made
    and the port bound when it starts, so either failing fails the start with
    the file, key and reason.  Connections are admitted by the per-address
    limits of C{clients} (the client factory's L{AddressLimits}) before TLS.

    With C{processes.NAME.proxy_from} set, a proxy in front does the TLS:
    the listener takes plain TCP from those addresses only, each connection
    opening with a PROXY protocol header (L{mmo.frontend.proxied}), and the
    limits apply to the address the header names.

    @cvar what: How the log line names what listens ("clients on TLS").
    @cvar what_proxied: The same, behind a proxy.
    @cvar alpn: The ALPN protocol names it selects, most preferred first
        (a client that offers none of them gets none, and is not refused).
    @ivar port: The listening port while running.
    @ivar portFactory: What the port serves: TLS (L{LimitedTLSFactory}) or
        PROXY protocol (L{ProxiedFactory}) around C{wrapped}.
    """

    log = Logger()
    port = None
    what = "TLS"
    what_proxied = "PROXY protocol"
    alpn: tuple[bytes, ...] = ()

    def __init__(
        self, config: Config, process: ProcessSection, key: str, wrapped, clients, reactor
    ):
        self.config = config
        self.process = process
        self.key = ("processes", process.name, key)
        self.description = getattr(process, key)
        if not self.description:
            raise ConfigError("no listener is configured", self.key, config.file)
        self.endpoint = endpoints.serverFromString(reactor, self.description)
        if process.proxy_from:
            self.what = self.what_proxied
            self.endpoint = proxied_endpoint(self.endpoint, parse_networks(process.proxy_from))
            self.portFactory = ProxiedFactory(
                wrapped, clients.addresses, config.wire.handshake_timeout, reactor
            )
        else:
            server = tls.client_facing_tls(config, process, self.alpn)
            self.portFactory = LimitedTLSFactory(server, False, wrapped, clients.addresses)

    def privilegedStartService(self):
        # Listen before dropping privileges, and fail the start if we cannot.
        super().privilegedStartService()
        failures = []
        d = self.endpoint.listen(self.portFactory)
        d.addCallbacks(self._listening, failures.append)
        if failures:
            raise ConfigError(
                f"cannot listen on {self.description!r}: {failures[0].getErrorMessage()}",
                self.key,
                self.config.file,
            )

    def _listening(self, port):
        self.port = port
        address = port.getHost()
        self.log.info(
            "{process}: {what} {host}:{port}",
            process=self.process.name,
            what=self.what,
            host=getattr(address, "host", address),
            port=getattr(address, "port", ""),
        )

    def startService(self):
        if self.port is None:
            self.privilegedStartService()
        super().startService()

    def stopListening(self) -> defer.Deferred:
        """Stop accepting connections."""
        if self.port is None:
            return defer.succeed(None)
        port, self.port = self.port, None
        return defer.maybeDeferred(port.stopListening)


class ClientListener(TLSListener):
    """
    The client-facing listener of a process (gateway, login or standalone):
    listens for clients on C{processes.NAME.client} with TLS and, when
    stopped, stops accepting, says goodbye to every client and waits for
    the connections to close.

    @ivar factory: The client factory (a L{ClientFactory} or subclass).
    """

    what = "clients on TLS"
    what_proxied = "clients on PROXY protocol (TLS at the proxy)"
    alpn = (b"mmo",)

    def __init__(self, config: Config, process: ProcessSection, reactor=None, factory=None):
        if reactor is None:
            from twisted.internet import reactor
        if factory is None:
            factory = factory_class(config, process)(config, process, reactor)
        self.factory = factory
        super().__init__(config, process, "client", factory, factory, reactor)

    @defer.inlineCallbacks
    def stopService(self):
        super().stopService()
        yield self.stopListening()
        yield self.factory.closeAll()


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
