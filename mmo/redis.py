"""
Connecting to Redis as the C{[redis]} section says: the one module for every
part of mmo that talks to Redis (the store's pool, the bus's command and
subscriber connections).  It lies below both L{mmo.store} and L{mmo.bus}.

  - L{redis_address} and L{key_prefix}: where Redis is (for messages) and the
    prefix of every key of the deployment.
  - L{read_password}, L{uses_tls} and L{trust_root}: the password (or the
    content of C{password_file}), whether to connect with TLS, and the CAs a
    TLS server's certificate must chain to.  For the Redis a manager runs
    (L{local_redis}) the defaults are the deployment's own: the password
    C{mmo-certs} generated (L{LocalRedisFiles}), TLS unless
    C{[manager] redis_tls} is off, the deployment's CA.
  - L{RedisEndpoint}: the client endpoint of the server, by TCP, TLS, a Unix
    socket or through Sentinel (asked before every attempt, so that a
    reconnection after a failover finds the new master), with the connect
    timeout; it remembers why the last attempt failed.
  - L{connect_redis}: a txredisapi connection handler (the object
    C{txredisapi.ConnectionPool} gives) on that endpoint, authenticated and
    on the configured database.  It reconnects by itself after the start
    (commands issued while it is disconnected wait for the new connection),
    but the start itself is bounded: without a usable connection after
    C{connect_timeout} seconds it fails with L{RedisConnectError}, which says
    where and why.

Every problem with the configuration or the server is a L{RedisConnectError};
the store and the bus turn it into their own error.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import txredisapi
from twisted.internet import defer, ssl
from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint, wrapClientTLS
from twisted.internet.error import ConnectingCancelledError, ConnectionDone
from twisted.internet.interfaces import IStreamClientEndpoint
from zope.interface import implementer

from mmo.compat import PackedCommands


class RedisConnectError(Exception):
    """No usable connection to Redis could be made; the message says why."""


def key_prefix(config) -> str:
    """The prefix of every key: C{[redis] prefix}, or the deployment name."""
    return config.redis.prefix or config.deployment.name


def redis_address(config) -> str:
    """Where the config says Redis is, for messages."""
    r = config.redis
    if r.sentinels:
        return f"master {r.sentinel_master!r} of Sentinels {', '.join(r.sentinels)}"
    if r.unix:
        return f"unix:{r.unix}"
    host = f"[{r.host}]" if ":" in r.host else r.host
    return f"{host}:{r.port}"


#: The name of the local Redis's server certificate (C{redis.crt},
#: C{redis.key} in the TLS directory), which no process may take.
LOCAL_REDIS = "redis"


@dataclass(frozen=True)
class LocalRedisFiles:
    """
    The files of the Redis a manager runs, in the deployment's TLS directory
    beside the other secrets, written by C{mmo-certs}.

    @ivar password: The generated password (mode 0600).
    @ivar certificate: The server certificate, for C{[redis] host}.
    @ivar key: Its private key (mode 0600).
    @ivar ca: The deployment's CA, which processes check the certificate with.
    """

    password: str
    certificate: str
    key: str
    ca: str

    @classmethod
    def of(cls, config) -> LocalRedisFiles:
        """The files in C{config}'s TLS directory."""
        return cls.in_directory(config.deployment.tls_dir)

    @classmethod
    def in_directory(cls, directory: str) -> LocalRedisFiles:
        """The files in the TLS directory C{directory}."""
        return cls(
            password=os.path.join(directory, f"{LOCAL_REDIS}.password"),
            certificate=os.path.join(directory, f"{LOCAL_REDIS}.crt"),
            key=os.path.join(directory, f"{LOCAL_REDIS}.key"),
            ca=os.path.join(directory, "ca.crt"),
        )


def local_redis(config):
    """
    The manager that runs the deployment's Redis (C{redis_server = true}),
    or C{None}: then C{[redis]} names a server run some other way.
    """
    for process in config.processes.values():
        if process.kind == "manager" and process.redis_server:
            return process
    return None


def read_password(config) -> str | None:
    """
    The password of C{[redis]}: the content of C{password_file} (less the
    trailing newline editors and C{echo} leave), or C{password}; for the
    Redis a manager runs, without either, the generated one
    (L{LocalRedisFiles}); else C{None}.

    @raise RedisConnectError: The file cannot be read or is empty.
    """
    r = config.redis
    path, what = r.password_file, "redis.password_file"
    if not path and not r.password and local_redis(config) is not None:
        path = LocalRedisFiles.of(config).password
        what = "the local Redis's password file (mmo-certs --renew writes it)"
    if not path:
        return r.password or None
    try:
        with open(path) as f:
            password = f.read().rstrip("\r\n")
    except OSError as e:
        raise RedisConnectError(f"cannot read {what} {path}: {e.strerror or e}") from None
    if not password:
        raise RedisConnectError(f"{what} {path} is empty")
    return password


def uses_tls(config) -> bool:
    """
    Whether to connect with TLS: C{[redis] tls}, or, to the Redis a
    manager runs, C{[manager] redis_tls}.  Never over a Unix socket.
    """
    r = config.redis
    if r.unix:
        return False
    return r.tls or (local_redis(config) is not None and config.manager.redis_tls)


def trust_root(config):
    """
    The CAs a Redis server's certificate is checked against: every
    certificate of C{[redis] tls_ca}; for the Redis a manager runs, the
    deployment's CA; else the platform's.

    @raise RedisConnectError: The file cannot be read or holds no certificate.
    """
    path, what = config.redis.tls_ca, "redis.tls_ca"
    if not path and local_redis(config) is not None:
        path, what = LocalRedisFiles.of(config).ca, "the deployment's CA"
    if not path:
        return ssl.platformTrust()
    try:
        with open(path, "rb") as f:
            pem = f.read()
    except OSError as e:
        raise RedisConnectError(f"cannot read {what} {path}: {e.strerror or e}") from None
    marker = b"-----BEGIN CERTIFICATE-----"
    try:
        certificates = [ssl.Certificate.loadPEM(marker + b) for b in pem.split(marker)[1:]]
    except Exception as e:
        raise RedisConnectError(f"{what} {path}: not a PEM certificate: {e}") from None
    if not certificates:
        raise RedisConnectError(f"{what} {path}: no PEM certificate in it")
    return ssl.trustRootFromCertificates(certificates)


# -- the endpoint --------------------------------------------------------------------


@implementer(IStreamClientEndpoint)
class RedisEndpoint:
    """
    The client endpoint of the config's Redis: its Unix socket, or its host
    and port (with TLS when C{[redis] tls} is set), or the master the
    Sentinels name, asked before every attempt.  The Sentinels are asked
    without a password (Sentinel has its own, separate authentication, which
    is not configured here), over TLS if C{[redis] tls}.

    @ivar where: Where Redis is, for messages (L{redis_address}).
    @ivar tls: Whether connections are made with TLS.
    @ivar sentinels: The C{txredisapi.Sentinel} asking the Sentinels, or
        C{None} without Sentinels.
    @ivar last_failure: Why the last attempt failed, or C{None}.
    """

    def __init__(
        self, config, reactor, on_master_moved: Callable[[], object] | None = None
    ) -> None:
        """
        @param on_master_moved: Called when the Sentinels name another master
            than before (a failover): the connections still open to the old
            one should be closed.
        @raise RedisConnectError: The TLS CA file is unusable.
        """
        r = config.redis
        self._reactor = reactor
        self._timeout = r.connect_timeout
        self._on_master_moved = on_master_moved
        self._master: tuple[str, int] | None = None
        self.where = redis_address(config)
        self.last_failure: str | None = None
        self._trust = trust_root(config) if uses_tls(config) else None
        self.tls = self._trust is not None
        self.sentinels = None
        self._service = r.sentinel_master
        self._closed = False
        if r.sentinels:
            self.sentinels = txredisapi.Sentinel([])
            self.sentinels.discovery_timeout = r.connect_timeout
            for address in r.sentinels:
                host, _, port = address.rpartition(":")
                host = host.strip("[]")
                self.sentinels.sentinels.append(
                    txredisapi.lazyConnection(
                        host,
                        int(port),
                        ssl_context_factory=self._tls_options(host) or False,
                        connectTimeout=r.connect_timeout,
                    )
                )
            self._fixed = None
        elif r.unix:
            self._fixed = UNIXClientEndpoint(reactor, r.unix, timeout=r.connect_timeout)
        else:
            self._fixed = self._tcp(r.host, r.port)

    def __repr__(self) -> str:
        return f"<Redis endpoint {self.where}>"

    def _tls_options(self, host: str):
        if self._trust is None:
            return None
        return ssl.optionsForClientTLS(host, trustRoot=self._trust)

    def _tcp(self, host: str, port: int):
        endpoint = HostnameEndpoint(self._reactor, host, port, timeout=self._timeout)
        options = self._tls_options(host)
        return endpoint if options is None else wrapClientTLS(options, endpoint)

    def _target(self) -> defer.Deferred:
        """Deferred[IStreamClientEndpoint] of the server to try now."""
        if self.sentinels is None:
            return defer.succeed(self._fixed)

        def found(address):
            host, port = address
            if self._master is not None and self._master != address and self._on_master_moved:
                self._on_master_moved()
            self._master = address
            return self._tcp(host, port)

        return self.sentinels.discover_master(self._service).addCallback(found)

    def connect(self, protocolFactory) -> defer.Deferred:
        d = self._target()
        d.addCallback(lambda endpoint: endpoint.connect(protocolFactory))

        def failed(failure):
            if not failure.check(defer.CancelledError, ConnectingCancelledError):
                self.record(failure.getErrorMessage() or failure.type.__name__)
            return failure

        return d.addErrback(failed)

    def record(self, reason: str, weak: bool = False) -> None:
        """
        Remember C{reason} as why the last attempt failed; a C{weak} one (a
        clean close) does not replace a reason recorded before it.
        """
        if weak and self.last_failure is not None:
            return
        self.last_failure = reason

    def disconnect(self) -> defer.Deferred:
        """Close the connections to the Sentinels, if any."""
        if self.sentinels is None or self._closed:
            return defer.succeed(None)
        self._closed = True
        return self.sentinels.disconnect()


# -- the command connections ---------------------------------------------------------


class _RecordingProtocolMixin:
    """
    Tells the endpoint why a connection was lost before it became usable.

    @ivar usable: Whether the connection became usable (authenticated, on
        its database).
    """

    usable = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.whenConnected().addCallback(self._became_usable)

    def _became_usable(self, _):
        self.usable = True

    def connectionLost(self, why):
        if not self.usable:
            # A clean close says less than a reason recorded before it.
            self.factory.endpoint.record(
                why.getErrorMessage(), weak=bool(why.check(ConnectionDone))
            )
        super().connectionLost(why)


class _Protocol(PackedCommands, _RecordingProtocolMixin, txredisapi.RedisProtocol):
    def connectionMade(self):
        if not self.factory.endpoint.tls:
            return super().connectionMade()

        # Over TLS the connection is made before the handshake, which may
        # yet fail: wait for a reply (any reply, even NOAUTH), which only
        # comes once it has succeeded.
        def answered(_):
            if self.connected:
                return super(_Protocol, self).connectionMade()

        return self.execute_command("PING").addBoth(answered)


class _MasterProtocol(PackedCommands, _RecordingProtocolMixin, txredisapi.SentinelRedisProtocol):
    """
    txredisapi's check that the server Sentinel named is the master, also
    with C{charset=None} (where the role comes back as bytes), telling the
    endpoint when it is not.
    """

    def connectionMade(self):
        def check_role(role):
            kind = role[0].decode() if isinstance(role[0], bytes) else role[0]
            if kind != "master":
                self.factory.endpoint.record(
                    f"the server Sentinel named is a {kind}, not the master"
                )
                self.transport.loseConnection()
                return None
            return txredisapi.RedisProtocol.connectionMade(self)

        def failed(failure):
            self.factory.endpoint.record(failure.getErrorMessage())
            self.transport.loseConnection()

        if self.password is not None:
            self.auth(self.password, self.username).addErrback(lambda _: None)
        return self.role().addCallbacks(check_role, failed)


class _EndpointFactoryMixin:
    """A txredisapi pool factory that knows its L{RedisEndpoint}."""

    def __init__(self, endpoint: RedisEndpoint, **kwargs):
        self.endpoint = endpoint
        super().__init__(**kwargs)


class _Factory(_EndpointFactoryMixin, txredisapi.RedisFactory):
    protocol = _Protocol


class _SentinelFactory(_EndpointFactoryMixin, txredisapi.SentinelConnectionFactory):
    protocol = _MasterProtocol


class _Handler(txredisapi.ConnectionHandler):
    """
    The connection handler; C{disconnect()} also closes the connections to
    the Sentinels, if any.
    """

    # ConnectionHandler turns every unknown attribute into a Redis command.
    endpoint = None

    def __init__(self, factory):
        super().__init__(factory)
        self.endpoint = factory.endpoint

    def disconnect(self):
        return defer.gatherResults(
            [super().disconnect(), self.endpoint.disconnect()], consumeErrors=True
        )


def connect_redis(
    config,
    reactor=None,
    pool=True,
    *,
    charset: str | None = "utf-8",
    convert_numbers: bool = True,
) -> defer.Deferred:
    """
    Connect to the Redis server of C{config}'s C{[redis]} section.

    @param reactor: Used for the connections and the start timeout.
        (txredisapi itself schedules its reconnections on the global
        reactor.)
    @param pool: C{[redis] pool_size} connections used in turn, or one.
    @param charset: How txredisapi decodes replies: with C{"utf-8"} (its
        default) bulk replies that decode are returned as C{str}; with
        C{None} every bulk reply is C{bytes}, which binary values need.
    @param convert_numbers: txredisapi's C{convertNumbers}: bulk replies
        that look like numbers come back as C{int} or C{float}.  Turn it off
        wherever a stored string could look like a number.
    @return: Deferred firing with the txredisapi connection handler once
        every connection of the pool is ready; its C{disconnect()} closes
        everything.  Fails with L{RedisConnectError} if no usable connection
        is made within C{[redis] connect_timeout} seconds, or at once if the
        server refuses the password or the database.
    """
    if reactor is None:
        from twisted.internet import reactor
    r = config.redis
    factory = None

    def close_pool():
        # After a failover the pool's other connections still go to the
        # old master: close them, so that they reconnect to the new one.
        for connection in list(factory.pool):
            connection.transport.loseConnection()

    try:
        password = read_password(config)
        endpoint = RedisEndpoint(config, reactor, on_master_moved=close_pool)
    except RedisConnectError as e:
        return defer.fail(e)
    kwargs = {
        "dbid": r.db or None,
        "poolsize": r.pool_size if pool else 1,
        "isLazy": False,
        "handler": _Handler,
        "charset": charset,
        "password": password,
        "convertNumbers": convert_numbers,
        "username": (r.username or None) if password else None,
    }
    if endpoint.sentinels is not None:
        factory = _SentinelFactory(
            endpoint,
            sentinel_manager=endpoint.sentinels,
            service_name=r.sentinel_master,
            is_master=True,
            uuid=None,
            **kwargs,
        )
    else:
        factory = _Factory(endpoint, uuid=endpoint.where, **kwargs)
    factory.reconnect = True
    return _start(factory, endpoint, reactor, r.connect_timeout)


def _start(factory, endpoint: RedisEndpoint, reactor, timeout: float) -> defer.Deferred:
    """Start connecting; the Deferred of the handler, or of the failure."""
    handler = factory.handler
    ready = factory.deferred
    result = defer.Deferred()
    finished = False

    def fail(reason: str):
        # Close whatever was opened, then report.
        d = handler.disconnect()
        d.addBoth(
            lambda _: result.errback(
                RedisConnectError(f"cannot connect to Redis at {endpoint.where}: {reason}")
            )
        )

    def succeeded(value):
        nonlocal finished
        if finished:
            # Too late: the caller has already been told it failed.
            handler.disconnect()
            return
        finished = True
        timer.cancel()
        result.callback(handler)

    def failed(failure):
        nonlocal finished
        if finished:
            return
        finished = True
        timer.cancel()
        message = failure.getErrorMessage()
        fail(message.removeprefix("Redis error: "))

    def timed_out():
        nonlocal finished
        if finished:
            return
        finished = True
        reason = endpoint.last_failure or "no answer"
        fail(f"{reason} (gave up after {timeout:g} s)")

    timer = reactor.callLater(timeout, timed_out)
    ready.addCallbacks(succeeded, failed)
    factory.startConnecting(endpoint)
    return result
