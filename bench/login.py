"""
Login throughput and latency over TLS against the standalone server, next
to the baselines measured in the same run: a bare TLS handshake against the
same listener, and the hash ceiling (cores / the time of one argon2id check
with the server's parameters, timed in this process).

    python bench/login.py [--logins 200] [--concurrency 8] [--repeats 3] [--json]

Four kinds of operation, each C{--logins} times with C{--concurrency} at
once, in turn, C{--repeats} times; each figure is the median:

  - handshake: a new TLS connection, handshake, close (the baseline);
  - login: a new TLS connection, protocol hello, a password login (the
    argon2id check), close;
  - kept: a password login on a connection kept open: the server's login
    path alone (throttles, store, hash, ticket), without the connection's
    setup, which the handshake baseline measures;
  - token: as login, with the device's refresh token instead of the
    password (no hash; the next token is kept for the next one).

Beside the ceiling of one check alone, the checks are timed with every
core checking at once (C{hash_parallel_ms}), as the server's hashing
threads run when logins queue, and the server's hashing threads are
watched: their CPU per login and the share of their time they had no hash
to run.

The client runs in this process, on the server's cores: it is kept cheap
(one TLS context for every connection, as a client program has; a loopback
address, no name lookup), and its CPU per operation is measured and shown
with the CPU the rest of the machine spent meanwhile, so that a figure
taken on a busy machine says so.
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time

import argon2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (  # noqa: E402
    Server,
    cpu_seconds,
    machine_cpu_seconds,
    parser,
    percentile,
    report,
    settle,
)
from OpenSSL import SSL  # noqa: E402
from twisted.internet import defer, protocol, task  # noqa: E402
from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS  # noqa: E402
from twisted.internet.interfaces import IHandshakeListener  # noqa: E402
from zope.interface import implementer  # noqa: E402

from mmo.client import Client, ResumingTLS, client_tls_options, connect_protocol  # noqa: E402
from mmo.login.passwords import hash_threads, usable_cores  # noqa: E402

PASSWORD = "benchmark password 1"

#: Seconds the idle server's CPU is read over.
IDLE_SECONDS = 3.0

#: Operations of each kind run before the first measurement (caches, allocators).
WARM_UP = 10

#: What the bench's server runs with, outside the measured paths: kept
#: connections send logins back to back, faster than a player's flood limit
#: lets one connection send; every worker registers an account from the one
#: loopback address, more than a player's registrations per hour.
SERVER_CONFIG = (
    "[gateway]\nflood_rate = 100000.0\nflood_burst = 100000\n[login]\nregister_per_ip = 100000\n"
)

KINDS = ("handshake", "login", "kept", "token")


@implementer(IHandshakeListener)
class Handshake(protocol.Protocol):
    """Closes as soon as TLS is up; C{done} fires then."""

    def __init__(self):
        self.done = defer.Deferred()

    def handshakeCompleted(self):
        self.transport.loseConnection()

    def connectionLost(self, reason):
        self.done.callback(None)


class Loopback:
    """
    The client side: connections to the server over loopback, all with one
    TLS context (which verifies the server's name and chain), as a client
    program makes its context once.  Logins offer the session of the last
    connection (L{ResumingTLS}), as a returning client does, unless
    C{resume} is false; the handshake baseline never does (a full
    handshake).

    @ivar resumed: Connections of logins that resumed a session, and all
        of them: C{[resumed, connections]}.
    """

    def __init__(self, reactor, server: Server, resume: bool = True):
        self.reactor = reactor
        self.port = server.port
        self.options = client_tls_options("localhost", server.ca)
        self.tls = ResumingTLS(self.options) if resume else None
        self.resumed = [0, 0]

    def endpoint(self, tls):
        return wrapClientTLS(tls, TCP4ClientEndpoint(self.reactor, "127.0.0.1", self.port))

    async def handshake(self) -> None:
        proto = Handshake()
        await connect_protocol(self.endpoint(self.options), proto)
        await proto.done

    async def connect(self) -> Client:
        """A client past the protocol's hello."""
        client = Client()
        await connect_protocol(self.endpoint(self.tls or self.options), client)
        await client.whenReady()
        connection = client.transport.getHandle()
        self.resumed[0] += bool(SSL._lib.SSL_session_reused(connection._ssl))
        self.resumed[1] += 1
        if self.tls is not None:
            self.tls.keep(client.transport)
        return client


async def one_login(loopback: Loopback, name: str) -> None:
    client = await loopback.connect()
    await client.login(name, PASSWORD)
    await client.close()


async def kept_login(kept: list) -> None:
    """A password login on one of the open connections no other login is using now."""
    name, client = kept.pop()
    try:
        await client.login(name, PASSWORD)
    finally:
        kept.append((name, client))


async def token_login(loopback: Loopback, tokens: dict) -> None:
    """
    Log in with the token of a device no other login is using now (a token
    presented twice at once would be seen as stolen), and keep the next one.
    """
    name, token = tokens.popitem()
    client = await loopback.connect()
    reply = await client.login(refresh=token, device=name)
    tokens[name] = reply["refresh"]
    await client.close()


def timed_checks(login_config, count: int, threads: int = 1) -> list[float]:
    """
    The CPU times of C{count} argon2id checks with the server's parameters
    on each of C{threads} threads checking at once (CPU time, not wall
    time: on a busy machine the wall time counts the waits for a core too).
    """
    hasher = argon2.PasswordHasher(
        time_cost=login_config.argon2_time_cost,
        memory_cost=login_config.argon2_memory_kib,
        parallelism=login_config.argon2_parallelism,
    )
    encoded = hasher.hash(PASSWORD)
    times: list[float] = []

    def check():
        for _ in range(count):
            started = time.thread_time()
            hasher.verify(encoded, PASSWORD)
            times.append(time.thread_time() - started)

    if threads == 1:
        check()
        return times
    # argon2-cffi lets go of the GIL while it hashes: the threads hash on
    # different cores at once, as the server's hashing threads do.
    running = [threading.Thread(target=check) for _ in range(threads)]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join()
    return times


def hash_seconds(login_config, count: int = 20) -> float:
    """The median CPU time of one argon2id check with the server's parameters, alone."""
    return statistics.median(timed_checks(login_config, count))


def parallel_hash_seconds(login_config, cores: int, count: int = 10) -> float:
    """
    The median CPU time of one check while every core checks one at once,
    as the server's hashing threads do when logins queue: the checks share
    the caches and the memory bus, so each costs more than one alone.
    """
    return statistics.median(timed_checks(login_config, count, cores))


async def measure(operation, count, concurrency, deadline):
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


def thread_cpu_seconds(pid: int, tid: int) -> float:
    """The CPU time of thread C{tid} of process C{pid}, to the nanosecond."""
    with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
        return int(f.read().split()[0]) / 1e9


def thread_times(pid: int) -> dict[int, tuple[float, float]]:
    """
    Each thread of process C{pid}: the seconds it ran and the seconds it
    waited for a core, from C{/proc/PID/task/*/schedstat}.
    """
    times = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                ran, waited = f.read().split()[:2]
        except (OSError, ValueError):
            continue
        times[int(tid)] = (int(ran) / 1e9, int(waited) / 1e9)
    return times


def hashing_threads(pid: int, threads: int, wall: float, before: dict, after: dict):
    """
    The CPU seconds of the server's hashing threads between C{before} and
    C{after} (L{thread_times}), and the share of their time they spent
    idle: neither running nor waiting for a core, so with no hash to run.
    They are the C{threads} threads, the reactor's apart, that ran the
    most (the store's thread runs little).
    """
    spent = sorted(
        (
            tuple(now - then for now, then in zip(times, before.get(tid, (0.0, 0.0)), strict=True))
            for tid, times in after.items()
            if tid != pid
        ),
        reverse=True,
    )[:threads]
    ran = sum(times[0] for times in spent)
    busy = sum(times[0] + times[1] for times in spent)
    return ran, max(0.0, 1 - ratio(busy, wall * threads))


class Meters:
    """
    CPU of the server (all of it, and its reactor thread apart), of this
    process (the client) and of the rest of the machine.
    """

    def __init__(self, server_pid: int):
        self.server_pid = server_pid

    def read(self) -> tuple[float, float, float, float, float]:
        return (
            time.perf_counter(),
            cpu_seconds(self.server_pid),
            thread_cpu_seconds(self.server_pid, self.server_pid),
            time.process_time(),
            machine_cpu_seconds(),
        )

    def since(self, before) -> tuple[float, float, float, float, float]:
        """
        Wall seconds, server CPU, the server's reactor thread's CPU, client
        CPU, and the CPU of everything else, since C{before}.
        """
        wall, server, reactor, client, machine = (
            now - then for now, then in zip(self.read(), before, strict=True)
        )
        return wall, server, reactor, client, max(0.0, machine - server - client)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("nan")


async def main(reactor, args) -> None:
    server = Server(SERVER_CONFIG, profile=args.profile)
    server.start()
    runs: dict[str, list] = {
        "hash_ms": [],
        "hash_parallel_ms": [],
        "other_cpu_per_s": [],
        "login_free_ceiling_ratio": [],
        "kept_free_ceiling_ratio": [],
        "login_resumed": [],
        "token_resumed": [],
        "login_hash_cpu_ms": [],
        "login_hash_idle": [],
        "kept_hash_cpu_ms": [],
        "kept_hash_idle": [],
    }
    for kind in KINDS:
        runs.update(
            {
                f"{kind}_per_s": [],
                f"{kind}_server_cpu_ms": [],
                f"{kind}_reactor_cpu_ms": [],
                f"{kind}_client_cpu_ms": [],
            }
        )
    latencies: dict[str, list[float]] = {kind: [] for kind in KINDS}
    kept: list = []
    try:
        loopback = Loopback(reactor, server, resume=not args.no_resume)
        names = [f"bench{i}" for i in range(args.concurrency)]
        tokens = {}
        for name in names:
            client = await loopback.connect()
            await client.request("register", name=name, password=PASSWORD)
            tokens[name] = (await client.login(name, PASSWORD, device=name))["refresh"]
            kept.append((name, client))
        deadline = time.monotonic() + args.max_seconds
        counter = iter(range(10**9))

        def next_name():
            return names[next(counter) % len(names)]

        operations = {
            "handshake": loopback.handshake,
            "login": lambda: one_login(loopback, next_name()),
            "kept": lambda: kept_login(kept),
            "token": lambda: token_login(loopback, tokens),
        }
        kinds = [kind for kind in KINDS if kind in args.kinds]
        for kind in kinds:
            await measure(operations[kind], WARM_UP, 2, deadline)
        # What the idle server spends (its zone's ticks, heartbeats): left
        # out of the CPU per operation, or slow operations would carry more.
        pid = server.process.pid
        idle, idle_reactor = cpu_seconds(pid), thread_cpu_seconds(pid, pid)
        await settle(reactor, IDLE_SECONDS)
        idle_per_s = (cpu_seconds(pid) - idle) / IDLE_SECONDS
        idle_reactor_per_s = (thread_cpu_seconds(pid, pid) - idle_reactor) / IDLE_SECONDS
        meters = Meters(server.process.pid)
        hashers = hash_threads(server.config.login)
        for _ in range(args.repeats):
            runs["hash_ms"].append(hash_seconds(server.config.login) * 1000)
            runs["hash_parallel_ms"].append(
                parallel_hash_seconds(server.config.login, usable_cores()) * 1000
            )
            for kind in kinds:
                before, threads_before = meters.read(), thread_times(pid)
                connections = list(loopback.resumed)
                found, rate = await measure(
                    operations[kind], args.logins, args.concurrency, deadline
                )
                threads_after = thread_times(pid)
                wall, server_cpu, reactor_cpu, client_cpu, other_cpu = meters.since(before)
                if not found:
                    continue
                server_cpu -= idle_per_s * wall
                reactor_cpu -= idle_reactor_per_s * wall
                latencies[kind] += found
                if kind in ("login", "token"):
                    resumed, made = (
                        now - then for now, then in zip(loopback.resumed, connections, strict=True)
                    )
                    runs[f"{kind}_resumed"].append(ratio(resumed, made))
                runs[f"{kind}_per_s"].append(rate)
                runs[f"{kind}_server_cpu_ms"].append(server_cpu / len(found) * 1000)
                runs[f"{kind}_reactor_cpu_ms"].append(reactor_cpu / len(found) * 1000)
                runs[f"{kind}_client_cpu_ms"].append(client_cpu / len(found) * 1000)
                if kind in ("login", "kept"):
                    hashing, idle = hashing_threads(
                        pid, hashers, wall, threads_before, threads_after
                    )
                    runs[f"{kind}_hash_cpu_ms"].append(hashing / len(found) * 1000)
                    runs[f"{kind}_hash_idle"].append(idle)
                    # The ceiling of the cores the rest of the machine left free.
                    others = other_cpu / wall
                    free = max(usable_cores() - others, 0.0)
                    runs["other_cpu_per_s"].append(others)
                    runs[f"{kind}_free_ceiling_ratio"].append(
                        ratio(rate, free / (runs["hash_ms"][-1] / 1000))
                    )
        for _, client in kept:
            await client.close()
    finally:
        server.stop()
    rates = {kind: median(runs[f"{kind}_per_s"]) for kind in KINDS}
    cpu = {kind: median(runs[f"{kind}_server_cpu_ms"]) for kind in KINDS}
    reactor_cpu = {kind: median(runs[f"{kind}_reactor_cpu_ms"]) for kind in KINDS}
    client_cpu = {kind: median(runs[f"{kind}_client_cpu_ms"]) for kind in KINDS}
    hash_ms = median(runs["hash_ms"])
    ceiling = ratio(usable_cores(), hash_ms / 1000)
    hash_parallel_ms = median(runs["hash_parallel_ms"])
    # What the cores can check when each checks at once: the ceiling with
    # nothing but hashing on them, which the memory they share lowers.
    parallel_ceiling = ratio(usable_cores(), hash_parallel_ms / 1000)
    figures = {
        "logins": len(latencies["login"]),
        "kept_logins": len(latencies["kept"]),
        "token_logins": len(latencies["token"]),
        "concurrency": args.concurrency,
        "repeats": args.repeats,
        "cores": usable_cores(),
        "hash_threads": hash_threads(server.config.login),
        "resume": int(not args.no_resume),
        "login_resumed": median(runs["login_resumed"]),
        "token_resumed": median(runs["token_resumed"]),
        "idle_server_cpu_per_s": idle_per_s,
        "other_cpu_per_s": median(runs["other_cpu_per_s"]),
        "hash_ms": hash_ms,
        "hash_ceiling_per_s": ceiling,
        "hash_parallel_ms": hash_parallel_ms,
        "hash_parallel_ratio": ratio(hash_parallel_ms, hash_ms),
        "parallel_ceiling_per_s": parallel_ceiling,
    }
    for kind, label in (("login", "login"), ("kept", "kept_login")):
        figures.update(
            {
                f"{label}_hash_cpu_ms": median(runs[f"{kind}_hash_cpu_ms"]),
                f"{label}_hash_idle": median(runs[f"{kind}_hash_idle"]),
            }
        )
    for kind, label in (("login", "login"), ("kept", "kept_login"), ("token", "token")):
        figures.update(
            {
                f"{label}_per_s": rates[kind],
                f"{label}_p50_ms": percentile(latencies[kind], 0.50) * 1000,
                f"{label}_p99_ms": percentile(latencies[kind], 0.99) * 1000,
                f"{label}_server_cpu_ms": cpu[kind],
                f"{label}_reactor_cpu_ms": reactor_cpu[kind],
                f"{label}_client_cpu_ms": client_cpu[kind],
            }
        )
    base = latencies["handshake"]
    figures.update(
        {
            "login_ceiling_ratio": ratio(rates["login"], ceiling),
            "login_cpu_ceiling_ratio": ratio(hash_ms, cpu["login"]),
            "kept_login_ceiling_ratio": ratio(rates["kept"], ceiling),
            "login_parallel_ceiling_ratio": ratio(rates["login"], parallel_ceiling),
            "kept_login_parallel_ceiling_ratio": ratio(rates["kept"], parallel_ceiling),
            "login_free_ceiling_ratio": median(runs["login_free_ceiling_ratio"]),
            "kept_login_free_ceiling_ratio": median(runs["kept_free_ceiling_ratio"]),
            "kept_login_cpu_ceiling_ratio": ratio(hash_ms, cpu["kept"]),
            "token_cpu_handshake_ratio": ratio(cpu["handshake"], cpu["token"]),
            # The most the rates could reach on cores shared by the server
            # and this client alone: every core busy, with the CPU per
            # operation of both measured here.
            "login_shared_bound_ratio": ratio(hash_ms, cpu["login"] + client_cpu["login"]),
            "kept_login_shared_bound_ratio": ratio(hash_ms, cpu["kept"] + client_cpu["kept"]),
            "token_shared_bound_ratio": ratio(
                cpu["handshake"] + client_cpu["handshake"], cpu["token"] + client_cpu["token"]
            ),
            "handshake_per_s": rates["handshake"],
            "handshake_p50_ms": percentile(base, 0.50) * 1000,
            "handshake_p99_ms": percentile(base, 0.99) * 1000,
            "handshake_server_cpu_ms": cpu["handshake"],
            "handshake_reactor_cpu_ms": reactor_cpu["handshake"],
            "handshake_client_cpu_ms": client_cpu["handshake"],
            "token_handshake_ratio": ratio(rates["token"], rates["handshake"]),
            "rate_ratio": ratio(rates["handshake"], rates["login"]),
            "p50_ratio": ratio(
                percentile(latencies["login"], 0.5), percentile(base, 0.5) if base else 0
            ),
        }
    )
    report(figures, args.json)


if __name__ == "__main__":
    p = parser(__doc__.strip().splitlines()[0])
    p.add_argument("--logins", type=int, default=200, help="operations of each kind")
    p.add_argument("--concurrency", type=int, default=8, help="operations at once")
    p.add_argument("--repeats", type=int, default=3, help="rounds of every kind (medians)")
    p.add_argument(
        "--kinds",
        type=lambda text: text.split(","),
        default=list(KINDS),
        help="what to measure, of " + ",".join(KINDS) + " (to profile one path)",
    )
    p.add_argument(
        "--no-resume",
        action="store_true",
        help="logins do not offer the last TLS session (a full handshake each)",
    )
    p.add_argument("--max-seconds", type=float, default=120.0, help="stop measuring after this")
    arguments = p.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, arguments)))
