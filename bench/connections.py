"""
Connections held per gateway process and memory per connection: C{--connections}
idle TLS clients, each through the protocol hello, held by the standalone
server, next to a bare Twisted TLS server holding the same number of
connections in the same run.

    python bench/connections.py [--connections 2000] [--concurrency 50] [--json]

The clients run in this process and connect C{--concurrency} at a time
(each connection: TCP, TLS handshake, protocol hello, then idle; the
baseline's: TCP, TLS handshake, then idle).  The server's resident memory is
read from /proc before the first connection and once all are idle.  The
server is configured so that no limit of its own is what is measured
(handshake and idle timeouts, heartbeats, listen backlog); this process's
open-file limit is raised to its hard limit.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (  # noqa: E402
    Server,
    parser,
    percentile,
    raise_nofile,
    report,
    rss_bytes,
    settle,
    start_bare,
    stop_bare,
)
from twisted.internet import defer, protocol, task  # noqa: E402
from twisted.internet.endpoints import (  # noqa: E402
    HostnameEndpoint,
    connectProtocol,
    wrapClientTLS,
)
from twisted.internet.interfaces import IHandshakeListener  # noqa: E402
from zope.interface import implementer  # noqa: E402

from mmo.client import client_tls_options, connect  # noqa: E402

#: Nothing of the server's own closes an idle connection during the run.
SETTINGS = """
[wire]
handshake_timeout = 600
idle_timeout = 3600
[gateway]
heartbeat_interval = 600
heartbeat_timeout = 1800
"""
#: A listen backlog above the concurrency: no SYN is dropped (1 s retransmits).
LISTENER = "tcp:0:interface=127.0.0.1:backlog=1024"
CONNECT_TIMEOUT = 30.0


async def open_all(reactor, args, opener) -> dict:
    """
    Open C{args.connections} connections with C{opener()}, C{args.concurrency}
    at once, until C{args.max_seconds}; what was held, failed, and how fast.
    """
    held: list = []
    latencies: list[float] = []
    failures: list[str] = []
    remaining = iter(range(args.connections))
    deadline = time.monotonic() + args.max_seconds

    async def worker():
        for _ in remaining:
            if time.monotonic() > deadline:
                return
            started = time.perf_counter()
            try:
                connection = await opener()
            except Exception as e:  # noqa: BLE001 - every failure is counted
                failures.append(type(e).__name__)
                continue
            latencies.append(time.perf_counter() - started)
            held.append(connection)

    started = time.perf_counter()
    await defer.gatherResults(
        [defer.ensureDeferred(worker()) for _ in range(args.concurrency)], consumeErrors=True
    )
    elapsed = time.perf_counter() - started
    return {
        "held": held,
        "failed": len(failures),
        "failures": sorted(set(failures)),
        "elapsed": elapsed,
        "rate": len(held) / elapsed if elapsed else 0.0,
        "p50": percentile(latencies, 0.50) * 1000,
        "p99": percentile(latencies, 0.99) * 1000,
    }


def still_open(transports) -> int:
    return sum(1 for t in transports if t is not None and not getattr(t, "disconnected", False))


async def measure_mmo(reactor, args) -> tuple[dict, float]:
    server = Server(SETTINGS, client=LISTENER, profile=args.profile)
    server.start()
    try:
        await settle(reactor)
        before = rss_bytes(server.process.pid)

        def opener():
            return connect(
                reactor,
                "127.0.0.1",
                server.port,
                ca=server.ca,
                hostname="localhost",
                timeout=CONNECT_TIMEOUT,
            )

        result = await open_all(reactor, args, opener)
        await settle(reactor, 2.0)
        after = rss_bytes(server.process.pid)
        clients = result["held"]
        result["open_at_end"] = still_open(c.transport for c in clients)
        for client in clients:
            if client.transport is not None:
                client.transport.abortConnection()
        await settle(reactor, 0.5)
        return result, (after - before) / len(clients) if clients else float("nan")
    finally:
        server.stop()


@implementer(IHandshakeListener)
class Idle(protocol.Protocol):
    """A baseline client: C{ready} fires once TLS is up; then it stays idle."""

    def __init__(self):
        self.ready = defer.Deferred()

    def handshakeCompleted(self):
        if not self.ready.called:
            self.ready.callback(self)

    def connectionLost(self, reason):
        if not self.ready.called:
            self.ready.errback(reason)


async def measure_baseline(reactor, args, ca, cert, key) -> tuple[dict, float]:
    child, port = await start_bare(reactor, "_hold.py", cert, key)
    try:
        await settle(reactor)
        before = rss_bytes(child.pid)
        options = client_tls_options("localhost", ca)

        async def opener():
            idle = Idle()
            endpoint = wrapClientTLS(
                options, HostnameEndpoint(reactor, "127.0.0.1", port, timeout=CONNECT_TIMEOUT)
            )
            await connectProtocol(endpoint, idle)
            return await idle.ready.addTimeout(CONNECT_TIMEOUT, reactor)

        result = await open_all(reactor, args, opener)
        await settle(reactor, 2.0)
        after = rss_bytes(child.pid)
        idles = result["held"]
        result["open_at_end"] = still_open(i.transport for i in idles)
        for idle in idles:
            idle.transport.abortConnection()
        await settle(reactor, 0.5)
        return result, (after - before) / len(idles) if idles else float("nan")
    finally:
        stop_bare(child)


async def main(reactor, args) -> None:
    limit = raise_nofile()
    if limit < args.connections + 100:
        raise SystemExit(
            f"the open-file limit ({limit}) is below --connections {args.connections}: "
            "raise the hard limit (ulimit -Hn) or ask for fewer"
        )
    mmo, mmo_memory = await measure_mmo(reactor, args)
    # The baseline uses a deployment of its own, with the same kind of certificate.
    keep = Server()
    try:
        tls_dir = keep.config.deployment.tls_dir
        base, base_memory = await measure_baseline(
            reactor,
            args,
            keep.ca,
            os.path.join(tls_dir, "mmo.crt"),
            os.path.join(tls_dir, "mmo.key"),
        )
    finally:
        keep.stop()

    def ratio(a, b):
        return a / b if b else float("nan")

    figures = {
        "connections": args.connections,
        "concurrency": args.concurrency,
        "held": mmo["open_at_end"],
        "failed": mmo["failed"],
        "failure_kinds": ",".join(mmo["failures"]),
        "connect_per_s": mmo["rate"],
        "connect_p50_ms": mmo["p50"],
        "connect_p99_ms": mmo["p99"],
        "bytes_per_connection": mmo_memory,
        "baseline_held": base["open_at_end"],
        "baseline_failed": base["failed"],
        "baseline_connect_per_s": base["rate"],
        "baseline_connect_p50_ms": base["p50"],
        "baseline_connect_p99_ms": base["p99"],
        "baseline_bytes_per_connection": base_memory,
        "rate_ratio": ratio(base["rate"], mmo["rate"]),
        "memory_ratio": ratio(mmo_memory, base_memory),
        "nofile_limit": limit,
    }
    report(figures, args.json)


if __name__ == "__main__":
    p = parser(__doc__.strip().splitlines()[0])
    p.add_argument("--connections", type=int, default=2000, help="connections to open")
    p.add_argument("--concurrency", type=int, default=50, help="connection attempts at once")
    p.add_argument("--max-seconds", type=float, default=120.0, help="stop opening after this")
    arguments = p.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, arguments)))
