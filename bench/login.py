"""
Login throughput and latency over TLS against the standalone server, next
to a bare TLS handshake measured in the same run against the same listener,
so the ratio shows what the login itself costs.

    python bench/login.py [--logins 200] [--concurrency 8] [--json]

Each login is a new connection: TLS handshake, protocol hello, login
(argon2id check, ticket), close.  Each baseline operation is a new
connection: TLS handshake, close.  Both run with the same concurrency.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import Server, parser, percentile, report  # noqa: E402
from twisted.internet import defer, protocol, task  # noqa: E402
from twisted.internet.endpoints import (  # noqa: E402
    HostnameEndpoint,
    connectProtocol,
    wrapClientTLS,
)

from mmo.client import client_tls_options, connect  # noqa: E402

PASSWORD = "benchmark password 1"


class Handshake(protocol.Protocol):
    """Closes as soon as TLS is up; C{done} fires then."""

    def __init__(self):
        self.done = defer.Deferred()

    def handshakeCompleted(self):
        self.transport.loseConnection()

    def connectionLost(self, reason):
        self.done.callback(None)


# Twisted calls handshakeCompleted on protocols that declare the interface.
from twisted.internet.interfaces import IHandshakeListener  # noqa: E402
from zope.interface import classImplements  # noqa: E402

classImplements(Handshake, IHandshakeListener)


async def bare_handshake(reactor, server) -> None:
    options = client_tls_options("localhost", server.ca)
    endpoint = wrapClientTLS(options, HostnameEndpoint(reactor, "127.0.0.1", server.port))
    proto = Handshake()
    await connectProtocol(endpoint, proto)
    await proto.done


async def one_login(reactor, server, name) -> None:
    client = await connect(reactor, "127.0.0.1", server.port, ca=server.ca, hostname="localhost")
    await client.request("login", name=name, password=PASSWORD)
    await client.close()


async def measure(reactor, operation, count, concurrency, deadline):
    """Run C{operation} C{count} times, C{concurrency} at once; latencies and rate."""
    latencies: list[float] = []
    remaining = iter(range(count))

    async def worker():
        for _ in remaining:
            if time.monotonic() > deadline:
                return
            started = time.perf_counter()
            await operation()
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await defer.gatherResults(
        [defer.ensureDeferred(worker()) for _ in range(concurrency)], consumeErrors=True
    )
    elapsed = time.perf_counter() - started
    return latencies, len(latencies) / elapsed if elapsed else 0.0


async def main(reactor, args) -> None:
    server = Server(profile=args.profile)
    server.start()
    try:
        client = await connect(
            reactor, "127.0.0.1", server.port, ca=server.ca, hostname="localhost"
        )
        names = [f"bench{i}" for i in range(args.concurrency)]
        for name in names:
            await client.request("register", name=name, password=PASSWORD)
        await client.close()
        deadline = time.monotonic() + args.max_seconds
        # Warm up both paths, then measure the baseline and the login.
        await measure(reactor, lambda: bare_handshake(reactor, server), 10, 2, deadline)
        base, base_rate = await measure(
            reactor,
            lambda: bare_handshake(reactor, server),
            args.logins,
            args.concurrency,
            deadline,
        )
        counter = iter(range(10**9))
        logins, login_rate = await measure(
            reactor,
            lambda: one_login(reactor, server, names[next(counter) % len(names)]),
            args.logins,
            args.concurrency,
            deadline,
        )
    finally:
        server.stop()
    figures = {
        "logins": len(logins),
        "concurrency": args.concurrency,
        "login_per_s": login_rate,
        "login_p50_ms": percentile(logins, 0.50) * 1000,
        "login_p99_ms": percentile(logins, 0.99) * 1000,
        "handshake_per_s": base_rate,
        "handshake_p50_ms": percentile(base, 0.50) * 1000,
        "handshake_p99_ms": percentile(base, 0.99) * 1000,
        "rate_ratio": base_rate / login_rate if login_rate else float("nan"),
        "p50_ratio": percentile(logins, 0.5) / percentile(base, 0.5) if base else float("nan"),
    }
    report(figures, args.json)


if __name__ == "__main__":
    p = parser(__doc__.strip().splitlines()[0])
    p.add_argument("--logins", type=int, default=200, help="operations of each kind")
    p.add_argument("--concurrency", type=int, default=8, help="operations at once")
    p.add_argument("--max-seconds", type=float, default=120.0, help="stop measuring after this")
    arguments = p.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, arguments)))
