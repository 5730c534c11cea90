"""
Login throughput and latency over TLS against the standalone server, next
to the baselines measured in the same run: a bare TLS handshake against the
same listener, and the hash ceiling (cores / the time of one argon2id check
with the server's parameters, timed in this process).

    python bench/login.py [--logins 200] [--concurrency 8] [--repeats 3] [--json]

Each login is a new connection: TLS handshake, protocol hello, login,
close; a password login checks the argon2id hash, a token login presents
the device's refresh token instead (and keeps the next one).  Each baseline
operation is a new connection: TLS handshake, close.  All run with the same
concurrency, in turn, C{--repeats} times; each figure is the median.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import argon2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import Server, cpu_seconds, parser, percentile, report, settle  # noqa: E402
from twisted.internet import defer, protocol, task  # noqa: E402
from twisted.internet.endpoints import (  # noqa: E402
    HostnameEndpoint,
    connectProtocol,
    wrapClientTLS,
)

from mmo.client import client_tls_options, connect  # noqa: E402

PASSWORD = "benchmark password 1"

#: Seconds the idle server's CPU is read over.
IDLE_SECONDS = 3.0


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
    await client.login(name, PASSWORD)
    await client.close()


async def token_login(reactor, server, tokens: dict) -> None:
    """
    Log in with the token of a device no other login is using now (a token
    presented twice at once would be seen as stolen), and keep the next one.
    """
    name, token = tokens.popitem()
    client = await connect(reactor, "127.0.0.1", server.port, ca=server.ca, hostname="localhost")
    reply = await client.login(refresh=token, device=name)
    tokens[name] = reply["refresh"]
    await client.close()


def hash_seconds(login_config, count: int = 20) -> float:
    """
    The median CPU time of one argon2id check with the server's parameters,
    here (CPU time, not wall time: on a busy machine the wall time counts
    the waits for a core too).
    """
    hasher = argon2.PasswordHasher(
        time_cost=login_config.argon2_time_cost,
        memory_cost=login_config.argon2_memory_kib,
        parallelism=login_config.argon2_parallelism,
    )
    encoded = hasher.hash(PASSWORD)
    times = []
    for _ in range(count):
        started = time.process_time()
        hasher.verify(encoded, PASSWORD)
        times.append(time.process_time() - started)
    return statistics.median(times)


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


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


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


async def main(reactor, args) -> None:
    server = Server(profile=args.profile)
    server.start()
    runs: dict[str, list] = {
        "handshake_per_s": [],
        "login_per_s": [],
        "token_per_s": [],
        "hash_ms": [],
        "handshake_server_cpu_ms": [],
        "login_server_cpu_ms": [],
        "token_server_cpu_ms": [],
    }
    latencies: dict[str, list[float]] = {"handshake": [], "login": [], "token": []}
    try:
        client = await connect(
            reactor, "127.0.0.1", server.port, ca=server.ca, hostname="localhost"
        )
        names = [f"bench{i}" for i in range(args.concurrency)]
        tokens = {}
        for name in names:
            await client.request("register", name=name, password=PASSWORD)
            tokens[name] = (await client.login(name, PASSWORD, device=name))["refresh"]
        await client.close()
        deadline = time.monotonic() + args.max_seconds
        # Warm up the paths, then measure each kind in turn, every repeat.
        await measure(reactor, lambda: bare_handshake(reactor, server), 10, 2, deadline)
        counter = iter(range(10**9))

        def next_name():
            return names[next(counter) % len(names)]

        operations = {
            "handshake": lambda: bare_handshake(reactor, server),
            "login": lambda: one_login(reactor, server, next_name()),
            "token": lambda: token_login(reactor, server, tokens),
        }
        # What the idle server spends (its zone's ticks, heartbeats): left
        # out of the CPU per operation, or slow operations would carry more.
        idle = cpu_seconds(server.process.pid)
        await settle(reactor, IDLE_SECONDS)
        idle_per_s = (cpu_seconds(server.process.pid) - idle) / IDLE_SECONDS
        for _ in range(args.repeats):
            runs["hash_ms"].append(hash_seconds(server.config.login) * 1000)
            for kind, operation in operations.items():
                if kind not in args.kinds:
                    continue
                cpu = cpu_seconds(server.process.pid)
                found, rate = await measure(
                    reactor, operation, args.logins, args.concurrency, deadline
                )
                cpu = cpu_seconds(server.process.pid) - cpu
                if rate:
                    cpu -= idle_per_s * len(found) / rate
                latencies[kind] += found
                runs[f"{kind}_per_s"].append(rate)
                if found:
                    runs[f"{kind}_server_cpu_ms"].append(cpu / len(found) * 1000)
    finally:
        server.stop()
    handshake_rate = median(runs["handshake_per_s"])
    login_rate = median(runs["login_per_s"])
    token_rate = median(runs["token_per_s"])
    hash_ms = median(runs["hash_ms"])
    ceiling = cores() / (hash_ms / 1000) if hash_ms else float("nan")
    base, logins, token = latencies["handshake"], latencies["login"], latencies["token"]
    figures = {
        "logins": len(logins),
        "token_logins": len(token),
        "concurrency": args.concurrency,
        "repeats": args.repeats,
        "cores": cores(),
        "hash_threads": server.config.login.hash_threads,
        "idle_server_cpu_per_s": idle_per_s,
        "login_per_s": login_rate,
        "login_p50_ms": percentile(logins, 0.50) * 1000,
        "login_p99_ms": percentile(logins, 0.99) * 1000,
        "hash_ms": hash_ms,
        "hash_ceiling_per_s": ceiling,
        "login_ceiling_ratio": login_rate / ceiling,
        "login_server_cpu_ms": median(runs["login_server_cpu_ms"]),
        "login_cpu_ceiling_ratio": hash_ms / median(runs["login_server_cpu_ms"]),
        "token_per_s": token_rate,
        "token_p50_ms": percentile(token, 0.50) * 1000,
        "token_p99_ms": percentile(token, 0.99) * 1000,
        "token_server_cpu_ms": median(runs["token_server_cpu_ms"]),
        "token_cpu_handshake_ratio": median(runs["handshake_server_cpu_ms"])
        / median(runs["token_server_cpu_ms"]),
        "handshake_per_s": handshake_rate,
        "handshake_p50_ms": percentile(base, 0.50) * 1000,
        "handshake_p99_ms": percentile(base, 0.99) * 1000,
        "handshake_server_cpu_ms": median(runs["handshake_server_cpu_ms"]),
        "token_handshake_ratio": token_rate / handshake_rate if handshake_rate else float("nan"),
        "rate_ratio": handshake_rate / login_rate if login_rate else float("nan"),
        "p50_ratio": percentile(logins, 0.5) / percentile(base, 0.5) if base else float("nan"),
    }
    report(figures, args.json)


if __name__ == "__main__":
    p = parser(__doc__.strip().splitlines()[0])
    p.add_argument("--logins", type=int, default=200, help="operations of each kind")
    p.add_argument("--concurrency", type=int, default=8, help="operations at once")
    p.add_argument("--repeats", type=int, default=3, help="rounds of every kind (medians)")
    p.add_argument(
        "--kinds",
        type=lambda text: text.split(","),
        default=["handshake", "login", "token"],
        help="what to measure, of handshake,login,token (to profile one path)",
    )
    p.add_argument("--max-seconds", type=float, default=120.0, help="stop measuring after this")
    arguments = p.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, arguments)))
