"""
Routing a client's zone.move from a gateway to a zone service process: the
gateway's L{RemoteRoute} over the project's RPC link (AMP over mutual TLS)
to a game service served by L{mmo.game.server.ServiceRPCFactory} in
another process, next to a bare Twisted AMP round trip over the same TLS,
measured in the same run.

    python bench/route.py [--requests 100000] [--window 1000] [--unanswered] [--json]

This process is the gateway: it keeps C{--window} requests in flight, one
per player (a distinct L{Caller} each), every answer sending that player's
next request, until C{--requests} were answered.  The service process
answers C{zone.move} with C{{}} at once, so what is measured is the route
itself: the caller and message packed, the AMP command, TLS, the service
side's dispatch, and back.  The route is built as a gateway's zone route
is: C{zone.move} goes in batches (L{mmo.rpc.commands.RouteBatch}, the
messages of one reactor turn in one box); C{--unbatched} sends one
C{Route} per message instead, for comparison.  A gateway's zone route sends
C{zone.move} without an answer (L{mmo.rpc.commands.RouteInputs}, answered
by the gateway itself): C{--unanswered} measures that path, each player's
move of a round in one reactor turn and a C{zone.sync} L{Route} after them
(handled after them), whose answer ends the round; its latencies are of a
round.  C{--unix} routes over a Unix-socket link (C{[deployment]
rpc_unix_dir}) instead of TLS, and then over TLS again in the same run (the
C{tls_*} figures).  CPU time per request is read for both
processes: the gateway's with C{time.process_time}, the service's from
/proc.  The baseline is a bare C{amp.AMP} server (no mmo code) answering a
command of the same argument shape with an empty body, with the same
certificates, window and count.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import cpu_seconds, parser, percentile, report, settle  # noqa: E402
from twisted.internet import defer, endpoints, task  # noqa: E402
from twisted.protocols import amp  # noqa: E402

import mmo  # noqa: E402
from mmo import certs, rpc  # noqa: E402
from mmo import config as mmo_config  # noqa: E402
from mmo.game.routes import RemoteRoute, pack  # noqa: E402
from mmo.game.server import ServiceRPCFactory  # noqa: E402
from mmo.game.service import Caller, GameService  # noqa: E402
from mmo.tls import internal_client_options, internal_server_options  # noqa: E402
from mmo.zone.route import ZONE_INPUTS  # noqa: E402

GATEWAY = "gateway-1"
SERVICE = "zone-1"
#: Requests sent before each measured phase (TLS up, code paths warm).
WARMUP = 2000
#: What the bare baseline server answers: the packed empty reply, as mmo's.
EMPTY_BODY = pack({})


def write_config(directory: str, unix: bool = False) -> mmo_config.Config:
    """
    A deployment of a gateway and one zone process, with its certificates;
    with C{unix}, links between them on Unix sockets (C{rpc_unix_dir}).
    """
    path = os.path.join(directory, "mmo.toml")
    sockets = f'rpc_unix_dir = "{os.path.join(directory, "run")}"\n' if unix else ""
    with open(path, "w") as f:
        f.write(
            '[deployment]\nname = "bench"\ntls_dir = "certs"\n'
            + sockets
            + f'[processes.{GATEWAY}]\nkind = "gateway"\nclient = "tcp:0:interface=127.0.0.1"\n'
            'hosts = ["localhost", "127.0.0.1"]\n'
            f'[processes.{SERVICE}]\nkind = "zone"\nrpc = "tcp:0:interface=127.0.0.1"\n'
            'hosts = ["localhost", "127.0.0.1"]\n'
        )
    config = mmo_config.load(path)
    certs.generate(config)
    return config


# -- the service processes -----------------------------------------------------------------


class ZoneMoves(GameService):
    """A zone service that accepts every move at once."""

    kind = "zone"
    prefixes = ("zone.",)

    async def on_zone_move(self, caller: Caller, message: dict) -> dict:
        return {}

    async def on_zone_sync(self, caller: Caller, message: dict) -> dict:
        return {}


class BareRoute(amp.Command):
    """The baseline's command: the argument shape of L{mmo.rpc.commands.Route}."""

    arguments = [(b"caller", amp.String()), (b"kind", amp.Unicode()), (b"body", amp.String())]
    response = [(b"body", amp.String())]


class BareAMP(amp.AMP):
    @BareRoute.responder
    def route(self, caller: bytes, kind: str, body: bytes) -> dict:
        return {"body": EMPTY_BODY}


def serve_main(args) -> None:
    """A child: serve C{args.serve} (mmo or bare), write the port, run until killed."""
    from twisted.internet import protocol, reactor
    from twisted.logger import (
        FilteringLogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        globalLogBeginner,
        textFileLogObserver,
    )
    from twisted.protocols.tls import TLSMemoryBIOFactory

    # Warnings and errors only (refused links, responder failures), on stderr.
    globalLogBeginner.beginLoggingTo(
        [
            FilteringLogObserver(
                textFileLogObserver(sys.stderr),
                [LogLevelFilterPredicate(defaultLogLevel=LogLevel.warn)],
            )
        ]
    )
    config = mmo_config.load(args.config)
    process = config.process(SERVICE)
    if args.serve == "mmo":
        service = ZoneMoves(config, None, None, reactor)
        factory = ServiceRPCFactory(config, process, service, reactor)
        listening = rpc.listen_port(config, process, factory, reactor)
    else:
        # The same TLS as mmo's listener (TLS around a TCP port, mutual, the
        # zone's certificates): only the protocol differs.
        tls = TLSMemoryBIOFactory(
            internal_server_options(config, process),
            False,
            protocol.Factory.forProtocol(BareAMP),
        )
        endpoint = endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
        listening = endpoint.listen(tls)

    def write_port(port):
        staged = args.portfile + ".tmp"
        with open(staged, "w") as f:
            f.write(str(port.getHost().port))
        os.rename(staged, args.portfile)

    def failed(reason):
        reason.printTraceback(file=sys.stderr)
        reactor.stop()

    listening.addCallbacks(write_port, failed)
    reactor.run()


# -- the gateway side ----------------------------------------------------------------------


#: The service processes running: stopped on any way out (see L{main}).
CHILDREN: set[subprocess.Popen] = set()


async def start_child(reactor, mode: str, config, directory: str) -> tuple[subprocess.Popen, int]:
    """Start this script as a C{mode} server; the child and its port, once it listens."""
    portfile = os.path.join(directory, f"{mode}.port")
    if os.path.exists(portfile):
        # A mode's second start (--unix) must not read the first one's port.
        os.remove(portfile)
    env = dict(os.environ)
    # The child imports the same mmo as this process.
    here = os.path.dirname(os.path.dirname(os.path.abspath(mmo.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    child = subprocess.Popen(
        [
            sys.executable,
            os.path.abspath(__file__),
            "--serve",
            mode,
            "--config",
            config.file,
            "--portfile",
            portfile,
        ],
        env=env,
    )
    CHILDREN.add(child)
    deadline = time.monotonic() + 30
    while not os.path.exists(portfile):
        if time.monotonic() > deadline or child.poll() is not None:
            stop_child(child)
            raise RuntimeError(f"the {mode} service process did not start")
        await settle(reactor, 0.05)
    with open(portfile) as f:
        return child, int(f.read())


def stop_child(child: subprocess.Popen) -> None:
    """SIGTERM, and wait (SIGKILL if it does not exit)."""
    CHILDREN.discard(child)
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(10)


def callers(window: int) -> list[Caller]:
    """One player per window slot, each with a character in the zone."""
    return [
        Caller(
            session=f"{i:08x}-5e55-4d0e-9a1b-{i:012x}",
            gateway=GATEWAY,
            account_id=f"{i:08x}-acc0-4b1e-8c2d-{i:012x}",
            name=f"player{i:05d}",
            realm="main",
            character_id=f"{i:08x}-c4a2-4f3e-9d4c-{i:012x}",
            character_name=f"Hero{i:05d}",
            zone=SERVICE,
        )
        for i in range(window)
    ]


def move(n: int) -> dict:
    """The client's C{n}th zone.move, as the gateway hands it to its route."""
    return {"t": "zone.move", "seq": n, "x": 100.0 + (n % 500) * 0.25, "y": 250.0 + (n % 7) * 0.5}


class Drive:
    """
    Keep C{window} requests in flight, each answer sending its slot's next
    one, until C{count} were sent (or C{deadline}); C{send(slot, n)} sends
    the C{n}th request, on C{slot}, and returns a L{Deferred}.
    """

    def __init__(self, send, window: int, count: int, max_seconds: float):
        self.send = send
        self.window = min(window, count)
        self.count = count
        self.deadline = time.monotonic() + max_seconds
        self.sent = 0
        self.latencies: list[float] = []
        self.failure = None
        self.active = 0
        self.done = defer.Deferred()

    async def run(self) -> float:
        """Seconds from the first request sent to the last answer received."""
        started = time.perf_counter()
        self.active = self.window
        for slot in range(self.window):
            self._next(slot)
        await self.done
        elapsed = time.perf_counter() - started
        if self.failure is not None:
            self.failure.raiseException()
        return elapsed

    def _next(self, slot: int) -> None:
        if self.sent >= self.count or self.failure is not None or time.monotonic() > self.deadline:
            self.active -= 1
            if self.active == 0:
                self.done.callback(None)
            return
        n = self.sent
        self.sent += 1
        self.send(slot, n).addCallbacks(
            self._answered, self._failed, (slot, time.perf_counter()), None, (slot,)
        )

    def _answered(self, _, slot: int, started: float) -> None:
        self.latencies.append(time.perf_counter() - started)
        self._next(slot)

    def _failed(self, reason, slot: int) -> None:
        if self.failure is None:
            self.failure = reason
        self._next(slot)


async def measure(
    send, child, args, count: int, profile: str | None = None, per_send: int = 1
) -> dict:
    """
    Warm up, then one measured phase: latencies, rate and CPU time on both
    sides; C{per_send} requests go in each C{send} (one at a time then).
    """
    window = 1 if per_send > 1 else args.window
    await Drive(send, window, max(1, WARMUP // per_send), args.max_seconds).run()
    drive = Drive(send, window, max(1, count // per_send), args.max_seconds)
    profiler = cProfile.Profile() if profile else None
    child_before = cpu_seconds(child.pid)
    cpu_before = time.process_time()
    if profiler:
        profiler.enable()
    elapsed = await drive.run()
    if profiler:
        profiler.disable()
    cpu = time.process_time() - cpu_before
    child_cpu = cpu_seconds(child.pid) - child_before
    if profiler:
        profiler.dump_stats(profile)
    done = len(drive.latencies) * per_send
    if not done:
        raise RuntimeError("no request was answered within --max-seconds")
    return {
        "requests": done,
        "per_s": done / elapsed,
        "p50_ms": percentile(drive.latencies, 0.5) * 1000,
        "p99_ms": percentile(drive.latencies, 0.99) * 1000,
        "client_cpu_us": cpu / done * 1e6,
        "server_cpu_us": child_cpu / done * 1e6,
    }


async def measure_route(reactor, args, config, directory, unix: bool = False) -> dict:
    child, port = await start_child(reactor, "mmo", config, directory)
    link = None
    try:
        link = rpc.RPCClientService(
            config,
            GATEWAY,
            SERVICE,
            # No endpoint: the config's own, the zone's Unix socket.
            endpoint=None if unix else endpoints.HostnameEndpoint(reactor, "127.0.0.1", port),
            reactor=reactor,
        )
        assert link.unix == unix
        link.startService()
        await link.factory.when_connected().addTimeout(30, reactor)
        players = callers(args.window)
        if args.unanswered:
            # As a gateway's zone route: zone.move without an answer.
            route = RemoteRoute(("zone.",), link, unanswered=ZONE_INPUTS)

            def send(slot, n):
                # A round: every player's move, then one answered message after them.
                for player in players:
                    route.handle(player, "zone.move", move(n))
                return route.handle(players[slot], "zone.sync", {"t": "zone.sync"})

            return await measure(send, child, args, args.requests, args.profile, len(players))
        # zone.move answered, in batches (one box a turn), or one Route each.
        route = RemoteRoute(("zone.",), link, batched=() if args.unbatched else ZONE_INPUTS)

        def send(slot, n):
            return route.handle(players[slot], "zone.move", move(n))

        return await measure(send, child, args, args.requests, args.profile)
    finally:
        if link is not None:
            await link.stopService()
        stop_child(child)


async def measure_baseline(reactor, args, config, directory, count: int) -> dict:
    child, port = await start_child(reactor, "bare", config, directory)
    client = None
    try:
        options = internal_client_options(config, config.process(GATEWAY), config.process(SERVICE))
        endpoint = endpoints.wrapClientTLS(
            options, endpoints.HostnameEndpoint(reactor, "127.0.0.1", port)
        )
        client = await endpoints.connectProtocol(endpoint, amp.AMP())
        # The same sizes as the route's: each player's packed caller, a packed move.
        packed = [pack(c.to_dict()) for c in callers(args.window)]
        body = pack(move(WARMUP))

        def send(slot, n):
            return client.callRemote(BareRoute, caller=packed[slot], kind="zone.move", body=body)

        return await measure(send, child, args, count)
    finally:
        if client is not None and client.transport is not None:
            client.transport.loseConnection()
        stop_child(child)


async def main(reactor, args) -> None:
    # A SIGTERM or SIGINT stops the reactor with this coroutine suspended:
    # its finally clauses would not run, the children must be stopped anyway.
    reactor.addSystemEventTrigger(
        "before", "shutdown", lambda: [stop_child(c) for c in list(CHILDREN)]
    )
    directory = tempfile.mkdtemp(prefix="mmo-bench-route-")
    try:
        config = write_config(directory, args.unix)
        mmo_figures = await measure_route(reactor, args, config, directory, args.unix)
        # The baseline sends as many requests as the route answered.
        base = await measure_baseline(reactor, args, config, directory, mmo_figures["requests"])
        # --unix: the same route over mutual TLS, for the link's own cost.
        tls_figures = await measure_route(reactor, args, config, directory) if args.unix else None
    finally:
        shutil.rmtree(directory, ignore_errors=True)

    def ratio(a, b):
        return a / b if b else float("nan")

    figures = {
        "requests": mmo_figures["requests"],
        "window": min(args.window, args.requests),
        "route_per_s": mmo_figures["per_s"],
        "route_p50_ms": mmo_figures["p50_ms"],
        "route_p99_ms": mmo_figures["p99_ms"],
        "gateway_cpu_us": mmo_figures["client_cpu_us"],
        "service_cpu_us": mmo_figures["server_cpu_us"],
        "baseline_per_s": base["per_s"],
        "baseline_p50_ms": base["p50_ms"],
        "baseline_p99_ms": base["p99_ms"],
        "baseline_client_cpu_us": base["client_cpu_us"],
        "baseline_server_cpu_us": base["server_cpu_us"],
        "rate_ratio": ratio(base["per_s"], mmo_figures["per_s"]),
        "gateway_cpu_ratio": ratio(mmo_figures["client_cpu_us"], base["client_cpu_us"]),
        "service_cpu_ratio": ratio(mmo_figures["server_cpu_us"], base["server_cpu_us"]),
    }
    if tls_figures is not None:
        figures.update(
            {
                "tls_route_per_s": tls_figures["per_s"],
                "tls_route_p50_ms": tls_figures["p50_ms"],
                "tls_route_p99_ms": tls_figures["p99_ms"],
                "tls_gateway_cpu_us": tls_figures["client_cpu_us"],
                "tls_service_cpu_us": tls_figures["server_cpu_us"],
            }
        )
    report(figures, args.json)


if __name__ == "__main__":
    p = parser(__doc__.strip().splitlines()[0])
    p.add_argument("--requests", type=int, default=100000, help="requests to measure")
    p.add_argument("--window", type=int, default=1000, help="requests in flight (players)")
    p.add_argument(
        "--max-seconds", type=float, default=60.0, help="stop each measured phase after this"
    )
    p.add_argument(
        "--unbatched",
        action="store_true",
        help="one Route command per message, not in batches",
    )
    p.add_argument(
        "--unanswered",
        action="store_true",
        help="zone.move without an answer (RouteInputs), as a gateway's zone route sends it",
    )
    p.add_argument(
        "--unix",
        action="store_true",
        help="route over a Unix-socket link (rpc_unix_dir), and again over TLS (tls_*)",
    )
    p.add_argument("--serve", choices=("mmo", "bare"), help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    p.add_argument("--portfile", help=argparse.SUPPRESS)
    arguments = p.parse_args()
    if arguments.requests < 1 or arguments.window < 1:
        p.error("--requests and --window must be at least 1")
    if arguments.serve:
        serve_main(arguments)
    else:
        task.react(lambda reactor: defer.ensureDeferred(main(reactor, arguments)))
