"""
Connecting to Redis as the C{[redis]} section says: one helper for every
part of mmo that talks to Redis (the store, the bus).

L{connect_redis} gives a txredisapi connection handler (the object
C{txredisapi.ConnectionPool} gives) to a server reached by TCP, TLS, a Unix
socket or through Sentinel, authenticated and on the configured database.
It reconnects by itself after the start (commands issued while it is
disconnected wait for the new connection), but the start itself is bounded:
without a usable connection after C{connect_timeout} seconds it fails with
L{RedisConnectError}, which says where and why.

L{key_prefix} is the prefix of every key of the deployment.
"""

from __future__ import annotations

import txredisapi
from twisted.internet import defer, ssl
from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint, wrapClientTLS
from twisted.internet.error import ConnectingCancelledError, ConnectionDone
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.python.failure import Failure
from zope.interface import implementer


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


def _password(r) -> str | None:
    if r.password_file:
        try:
            with open(r.password_file) as f:
                password = f.read()
        except OSError as e:
            raise RedisConnectError(
                f"cannot read redis.password_file {r.password_file}: {e.strerror or e}"
            )
        # A trailing newline is what editors and `echo` leave, not part of it.
        password = password.rstrip("\r\n")
        if not password:
            raise RedisConnectError(f"redis.password_file {r.password_file} is empty")
        return password
    return r.password or None


def _trust_root(r):
    """The CAs a Redis server's certificate is checked against."""
    if not r.tls_ca:
        return ssl.platformTrust()
    try:
        with open(r.tls_ca, "rb") as f:
            pem = f.read()
    except OSError as e:
        raise RedisConnectError(f"cannot read redis.tls_ca {r.tls_ca}: {e.strerror or e}")
    marker = b"-----BEGIN CERTIFICATE-----"
    blocks = [marker + block for block in pem.split(marker)[1:]]
    try:
        certificates = [ssl.Certificate.loadPEM(block) for block in blocks]
    except Exception as e:
        raise RedisConnectError(f"redis.tls_ca {r.tls_ca}: not a PEM certificate: {e}")
    if not certificates:
        raise RedisConnectError(f"redis.tls_ca {r.tls_ca}: no PEM certificate in it")
    return ssl.trustRootFromCertificates(certificates)


class _RecordingProtocolMixin:
    """Remembers why a connection was lost before it became usable."""

    def connectionLost(self, why):
        # A clean close says less than a reason recorded before it.
        if not self._ready and (self.factory.last_failure is None or not why.check(ConnectionDone)):
            self.factory.last_failure = why
        super().connectionLost(why)


class _Protocol(_RecordingProtocolMixin, txredisapi.RedisProtocol):
    def connectionMade(self):
        if not self.factory.tls:
            return super().connectionMade()

        # Over TLS the connection is made before the handshake, which may
        # yet fail: wait for a reply (any reply, even NOAUTH), which only
        # comes once it has succeeded.
        def answered(_):
            if self.connected:
                return super(_Protocol, self).connectionMade()

        return self.execute_command("PING").addBoth(answered)


class _SentinelProtocol(_RecordingProtocolMixin, txredisapi.SentinelRedisProtocol):
    """
    txredisapi's check that the server Sentinel named is the master, also
    with C{charset=None} (where the role comes back as bytes).
    """

    def connectionMade(self):
        def check_role(role):
            kind = role[0].decode() if isinstance(role[0], bytes) else role[0]
            if self.factory.is_master and kind != "master":
                self.factory.last_failure = Failure(
                    RedisConnectError(f"the server Sentinel named is a {kind}, not the master")
                )
                self.transport.loseConnection()
                return None
            return txredisapi.RedisProtocol.connectionMade(self)

        def failed(failure):
            self.factory.last_failure = failure
            self.transport.loseConnection()

        if self.password is not None:
            self.auth(self.password, self.username).addErrback(lambda _: None)
        return self.role().addCallbacks(check_role, failed)


class _Factory(txredisapi.RedisFactory):
    protocol = _Protocol
    last_failure = None
    tls = False


class _SentinelFactory(txredisapi.SentinelConnectionFactory):
    protocol = _SentinelProtocol
    last_failure = None


class _Handler(txredisapi.ConnectionHandler):
    """
    The connection handler; C{disconnect()} also closes the connections to
    the Sentinels, if any.
    """

    # ConnectionHandler turns every unknown attribute into a Redis command.
    _sentinel = None

    def disconnect(self):
        d = self._factory.disconnect()
        if self._sentinel is not None:
            sentinel, self._sentinel = self._sentinel, None
            d = defer.gatherResults([d, sentinel.disconnect()], consumeErrors=True)
        return d


@implementer(IStreamClientEndpoint)
class _RecordingEndpoint:
    """Remembers the reason of the last failed connection attempt."""

    def __init__(self, endpoint, factory):
        self._endpoint = endpoint
        self._factory = factory

    def connect(self, protocolFactory):
        def failed(failure):
            if not failure.check(defer.CancelledError, ConnectingCancelledError):
                self._factory.last_failure = failure
            return failure

        return self._endpoint.connect(protocolFactory).addErrback(failed)


class _SentinelEndpoint(txredisapi._SentinelEndpoint):
    """
    txredisapi's endpoint that asks Sentinel where the master is, with the
    configured connect timeout and TLS.
    """

    def __init__(self, factory, reactor, timeout, tls_trust):
        super().__init__(factory)
        self._reactor = reactor
        self._timeout = timeout
        self._tls_trust = tls_trust

    def _connect(self, addr, protocolFactory):
        host, port = addr
        endpoint = HostnameEndpoint(self._reactor, host, port, timeout=self._timeout)
        if self._tls_trust is not None:
            endpoint = wrapClientTLS(
                ssl.optionsForClientTLS(host, trustRoot=self._tls_trust), endpoint
            )
        return endpoint.connect(protocolFactory)


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
    where = redis_address(config)
    try:
        password = _password(r)
        trust = _trust_root(r) if r.tls else None
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
    if r.sentinels:
        # Sentinels themselves are asked without a password (Sentinel has
        # its own, separate, authentication, which is not configured here).
        sentinel = txredisapi.Sentinel([])
        sentinel.discovery_timeout = r.connect_timeout
        for address in r.sentinels:
            host, _, port = address.rpartition(":")
            host = host.strip("[]")
            tls = ssl.optionsForClientTLS(host, trustRoot=trust) if trust is not None else False
            sentinel.sentinels.append(
                txredisapi.lazyConnection(
                    host, int(port), ssl_context_factory=tls, connectTimeout=r.connect_timeout
                )
            )
        factory = _SentinelFactory(
            sentinel_manager=sentinel,
            service_name=r.sentinel_master,
            is_master=True,
            uuid=None,
            **kwargs,
        )
        factory.handler._sentinel = sentinel
        endpoint = _SentinelEndpoint(factory, reactor, r.connect_timeout, trust)
    else:
        factory = _Factory(uuid=where, **kwargs)
        if r.unix:
            endpoint = UNIXClientEndpoint(reactor, r.unix, timeout=r.connect_timeout)
        else:
            endpoint = HostnameEndpoint(reactor, r.host, r.port, timeout=r.connect_timeout)
            if trust is not None:
                factory.tls = True
                endpoint = wrapClientTLS(ssl.optionsForClientTLS(r.host, trustRoot=trust), endpoint)
    factory.reconnect = True
    return _start(factory, _RecordingEndpoint(endpoint, factory), reactor, r.connect_timeout, where)


def _start(factory, endpoint, reactor, timeout, where) -> defer.Deferred:
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
                RedisConnectError(f"cannot connect to Redis at {where}: {reason}")
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
        if factory.last_failure is not None:
            reason = factory.last_failure.getErrorMessage()
        else:
            reason = "no answer"
        fail(f"{reason} (gave up after {timeout:g} s)")

    timer = reactor.callLater(timeout, timed_out)
    ready.addCallbacks(succeeded, failed)
    factory.startConnecting(endpoint)
    return result
