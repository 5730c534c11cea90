"""
The cheapest TLS that stays TLS: one load against four ways of serving it,
measured side by side in the same run.

    python bench/tls.py [--connections 200] [--rounds 500] [--burst 1] [--json]

The modes (each a server process of its own, on loopback):

  - C{twisted}: what mmo's client listeners run, Twisted's TLS on a memory
    BIO (pyOpenSSL), the turn's writes of a connection gathered into one
    TLS write, sent write-through (L{mmo.frontend.addresses.LimitedTLSFactory},
    L{mmo.tls.ClientFacingTLS} with ALPN);
  - C{ssl_socket}: TLS done in C on the socket, the standard library's
    C{ssl.SSLSocket} in non-blocking mode read and written by the reactor
    (L{SSLSocketServer}, a small transport: the bench's, not mmo's);
  - C{haproxy}: HAProxy (one thread) terminating TLS in front of a plain TCP
    server behind mmo's PROXY protocol listener stack
    (L{mmo.frontend.proxied}); the server CPU is HAProxy's plus the
    server's (C{haproxy_*_server_cpu_us}: the Python server's alone).
    Skipped, and said so, when C{haproxy} is not installed (Debian:
    C{apt-get install -y haproxy});
  - C{plain}: plain TCP, written through: the floor, no TLS at all.

Every server is the same bare Int32 string protocol: a frame starting with
C{B} is written to every connection (the pushes of a world.update tick,
many small frames to many connections), one starting with C{E} is written
back to its sender (a request and its reply).  The clients are in this
process (Twisted, with TLS through pyOpenSSL for every TLS mode alike):

  - B{broadcast}: C{--connections} clients; one of them sends C{--burst}
    frames of C{--size} bytes at once, the server writes each to every
    client, and the next burst goes once every client has every frame;
    C{--rounds} bursts.  A delivery is one frame read by one client.
  - B{echo}: every client keeps one request in flight, C{--requests} in all.

Figures, each mode's next to C{plain}'s (and the ratios to it): deliveries
per second, delivery latency (from the burst's send to each read) p50/p99,
server CPU per delivery (utime + stime from /proc, every thread), echoes
per second, echo p50/p99 and server CPU per echo; each the median of
C{--repeats} runs, the modes taking turns.  Loops are bounded by count and
by C{--max-seconds} per phase.  With C{--profile PATH}, the server of the
C{twisted} mode (mmo's TLS) is profiled in its first run, not measured
again.
"""

from __future__ import annotations

import argparse
import errno
import os
import shutil
import socket
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _haproxy  # noqa: E402
from _broadcast import Broadcast  # noqa: E402
from _common import cpu_seconds, parser, percentile, report, settle  # noqa: E402
from twisted.internet import defer, endpoints, protocol, task, tcp  # noqa: E402
from twisted.internet import main as reasons  # noqa: E402
from twisted.internet import ssl as tssl  # noqa: E402
from twisted.protocols.basic import Int32StringReceiver  # noqa: E402

from mmo import certs, tls  # noqa: E402
from mmo import config as mmo_config  # noqa: E402
from mmo.compat import write_through  # noqa: E402

MODES = ("twisted", "ssl_socket", "haproxy", "plain")
#: What a frame carries before its padding: kind, round, send time.
STAMP = struct.Struct("!cId")


# -- the server side -------------------------------------------------------------------


class Relay(Broadcast):
    """The chat fan-out baseline's broadcast (B), and an echo (E) back to the sender."""

    def stringReceived(self, data):
        if data[:1] == b"B":
            super().stringReceived(data)
        else:
            self.sendString(data)


class PlainRelay(Relay):
    """On plain TCP as mmo's proxied listener has it: written through, no Nagle delay."""

    def connectionMade(self):
        write_through(self.transport)
        self.transport.setTcpNoDelay(True)
        super().connectionMade()


class SSLSocketServer(tcp.Server):
    """
    A server connection whose socket is an C{ssl.SSLSocket} (non-blocking,
    handshake driven by the reactor): OpenSSL reads and writes the socket
    itself, with no memory BIO and no Python between the record layer and
    the kernel.  Enough for the benchmark: no renegotiation, no
    close_notify on close.
    """

    context: ssl.SSLContext
    _shaken = False

    def __init__(self, sock, protocol, client, server, sessionno, reactor):
        # Each write is a TLS record sent at once: no Nagle delay behind it.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock = self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        super().__init__(sock, protocol, client, server, sessionno, reactor)

    def _handshake(self):
        try:
            self.socket.do_handshake()
        except ssl.SSLWantReadError:
            return None
        except ssl.SSLWantWriteError:
            self.startWriting()
            return None
        except (OSError, ssl.SSLError):
            return reasons.CONNECTION_LOST
        self._shaken = True
        return None

    def doRead(self):
        if not self._shaken:
            result = self._handshake()
            if result is not None or not self._shaken:
                return result
        chunks = []
        try:
            data = self.socket.recv(self.bufferSize)
            if not data:
                return reasons.CONNECTION_DONE
            chunks.append(data)
            # The rest of what OpenSSL has already decrypted; what is still in
            # the kernel comes with the next turn (the reactor polls level-
            # triggered), so a read costs no raised SSLWantReadError.
            while self.socket.pending():
                chunks.append(self.socket.recv(self.bufferSize))
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLWantWriteError:
            self.startWriting()
        except (OSError, ssl.SSLError):
            return reasons.CONNECTION_LOST
        if not chunks:
            return None
        return self._dataReceived(b"".join(chunks))

    def doWrite(self):
        if not self._shaken:
            result = self._handshake()
            if not self._shaken:
                return result
            if not self.dataBuffer and not self._tempDataBuffer:
                self.stopWriting()
                return None
        return super().doWrite()

    def writeSomeData(self, data):
        try:
            return self.socket.send(memoryview(data)[: self.SEND_LIMIT])
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
            return 0
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.ENOBUFS):
                return 0
            return reasons.CONNECTION_LOST


class SSLSocketPort(tcp.Port):
    transport = SSLSocketServer


def server_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["mmo"])
    return context


def bench_config(directory: str) -> mmo_config.Config:
    """A one-process deployment and its certificates (what the TLS modes serve)."""
    path = os.path.join(directory, "mmo.toml")
    with open(path, "w") as f:
        f.write(
            '[deployment]\nname = "bench"\ntls_dir = "certs"\n'
            "[listeners]\nper_address = 0\nper_address_rate = 0\n"
            '[processes.mmo]\nkind = "mmo"\nclient = "tcp:0:interface=127.0.0.1"\n'
            'hosts = ["localhost", "127.0.0.1"]\nproxy_from = ["127.0.0.1"]\n'
        )
    config = mmo_config.load(path)
    certs.generate(config)
    return config


def serve(args) -> None:
    """The server process of one mode: listen, write the port, run until killed."""
    from twisted.internet import reactor

    from mmo.frontend.addresses import AddressLimits, LimitedTLSFactory, parse_networks
    from mmo.frontend.proxied import ProxiedFactory, proxied_endpoint

    config = mmo_config.load(args.config)
    process = config.processes["mmo"]
    relay = protocol.Factory.forProtocol(Relay)
    relay.clients = set()
    limits = AddressLimits.from_config(config.listeners, reactor)
    endpoint = endpoints.TCP4ServerEndpoint(reactor, 0, backlog=1024, interface="127.0.0.1")
    mode = args.serve
    if mode == "twisted":
        server = tls.client_facing_tls(config, process, (b"mmo",))
        listening = endpoint.listen(LimitedTLSFactory(server, False, relay, limits))
    elif mode == "ssl_socket":
        cert, key = tls.server_paths(config.deployment.tls_dir, process.name)
        SSLSocketServer.context = server_context(cert, key)
        port = SSLSocketPort(0, relay, 1024, "127.0.0.1", reactor)
        port.startListening()
        listening = defer.succeed(port)
    elif mode == "haproxy":
        proxied = proxied_endpoint(endpoint, parse_networks(process.proxy_from))
        listening = proxied.listen(ProxiedFactory(relay, limits, 10.0, reactor))
    else:
        relay.protocol = PlainRelay
        listening = endpoint.listen(relay)

    def write_port(port):
        with open(args.portfile, "w") as f:
            f.write(str(port.getHost().port))

    listening.addCallback(write_port)
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    reactor.run()
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)


# -- the client side -------------------------------------------------------------------


class Client(Int32StringReceiver):
    MAX_LENGTH = 65536

    def __init__(self, bench):
        self.bench = bench

    def stringReceived(self, data):
        self.bench.received(self, data)


class Load:
    """The clients of one mode and the two phases run over them."""

    def __init__(self, reactor, args):
        self.reactor = reactor
        self.args = args
        self.clients: list[Client] = []
        self.latencies: list[float] = []
        self._waiting = 0
        self._done: defer.Deferred | None = None
        self._echoes_left = 0

    async def connect(self, endpoint_of) -> None:
        batch = 50
        for start in range(0, self.args.connections, batch):
            connecting = [
                endpoints.connectProtocol(endpoint_of(), Client(self))
                for _ in range(start, min(self.args.connections, start + batch))
            ]
            self.clients += await defer.gatherResults(connecting, consumeErrors=True)
        # The TLS handshakes are done once every client has an echo back.
        await self.echo(len(self.clients), warmup=True)

    def frame(self, kind: bytes, number: int) -> bytes:
        stamp = STAMP.pack(kind, number, time.perf_counter())
        return stamp + b"x" * max(0, self.args.size - len(stamp))

    def received(self, client, data):
        kind, number, sent = STAMP.unpack_from(data)
        self.latencies.append(time.perf_counter() - sent)
        if kind == b"E" and self._echoes_left > 0:
            self._echoes_left -= 1
            client.sendString(self.frame(b"E", number))
            return
        self._waiting -= 1
        if self._waiting == 0 and self._done is not None:
            done, self._done = self._done, None
            done.callback(None)

    async def broadcast(self) -> tuple[int, float]:
        """Bursts until C{--rounds} or C{--max-seconds}: (deliveries, seconds)."""
        publisher = self.clients[0]
        deliveries = 0
        self.latencies = []
        started = time.perf_counter()
        for number in range(self.args.rounds):
            self._waiting = len(self.clients) * self.args.burst
            self._done = defer.Deferred()
            for _ in range(self.args.burst):
                publisher.sendString(self.frame(b"B", number))
            await self._done
            deliveries += len(self.clients) * self.args.burst
            if time.perf_counter() - started > self.args.max_seconds:
                break
        return deliveries, time.perf_counter() - started

    async def echo(self, requests: int, warmup: bool = False) -> tuple[int, float]:
        """Every client keeps one request in flight until C{requests} are answered."""
        self.latencies = []
        started = time.perf_counter()
        in_flight = min(len(self.clients), requests)
        self._echoes_left = requests - in_flight
        self._waiting = in_flight
        self._done = defer.Deferred()
        for client in self.clients[:in_flight]:
            client.sendString(self.frame(b"E", 0))
        deadline = self.reactor.callLater(
            self.args.max_seconds, lambda: setattr(self, "_echoes_left", 0)
        )
        await self._done
        if deadline.active():
            deadline.cancel()
        return (0 if warmup else requests - self._echoes_left), time.perf_counter() - started

    def close(self) -> None:
        for client in self.clients:
            client.transport.abortConnection()


# -- running a mode --------------------------------------------------------------------


async def start_server(reactor, mode: str, config_path: str, directory: str, profile=None):
    portfile = os.path.join(directory, f"{mode}.port")
    if os.path.exists(portfile):
        os.remove(portfile)
    command = [sys.executable, os.path.abspath(__file__), "--serve", mode]
    command += ["--config", config_path, "--portfile", portfile]
    if profile:
        command += ["--profile", os.path.abspath(profile)]
    child = subprocess.Popen(command)
    deadline = time.monotonic() + 30
    while not os.path.exists(portfile) or not open(portfile).read().strip():
        if time.monotonic() > deadline or child.poll() is not None:
            stop(child)
            raise RuntimeError(f"the {mode} server did not start")
        await settle(reactor, 0.05)
    with open(portfile) as f:
        return child, int(f.read())


def stop(child) -> None:
    if child.poll() is None:
        child.terminate()
        child.wait(30)


async def measure(reactor, mode: str, args, config, directory: str, first: bool) -> dict:
    # --profile: the server of mmo's own TLS (the default), in its process.
    profile = args.profile if mode == "twisted" and first else None
    child, port = await start_server(reactor, mode, config.file, directory, profile)
    proxy = None
    pids = [child.pid]
    try:
        target = port
        if mode == "haproxy":
            cert, key = tls.server_paths(config.deployment.tls_dir, "mmo")
            proxy = _haproxy.HAProxy(os.path.join(directory, "haproxy"), port, cert, key)
            proxy.start()
            pids.append(proxy.process.pid)
            target = proxy.port
        if mode == "plain":

            def endpoint_of():
                return endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", target)
        else:
            ca = tssl.Certificate.loadPEM(open(tls.ca_path(config.deployment.tls_dir)).read())
            options = tssl.optionsForClientTLS("localhost", trustRoot=ca)

            def endpoint_of():
                plain = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", target)
                return endpoints.wrapClientTLS(options, plain)

        load = Load(reactor, args)
        await load.connect(endpoint_of)
        figures = {}
        for phase, run in (
            ("broadcast", load.broadcast),
            ("echo", lambda: load.echo(args.requests)),
        ):
            before = [cpu_seconds(pid) for pid in pids]
            count, seconds = await run()
            spent = [cpu_seconds(pid) - was for pid, was in zip(pids, before, strict=True)]
            cpu = sum(spent)
            name = "deliveries" if phase == "broadcast" else "echoes"
            short = "delivery" if phase == "broadcast" else "echo"
            figures[f"{mode}_{name}_per_s"] = count / seconds if seconds else 0.0
            figures[f"{mode}_{short}_p50_ms"] = percentile(load.latencies, 0.50) * 1000
            figures[f"{mode}_{short}_p99_ms"] = percentile(load.latencies, 0.99) * 1000
            figures[f"{mode}_{short}_cpu_us"] = cpu / count * 1e6 if count else float("nan")
            if proxy is not None:
                # The Python server's share alone: what the proxy takes off it.
                figures[f"{mode}_{short}_server_cpu_us"] = (
                    spent[0] / count * 1e6 if count else float("nan")
                )
        load.close()
        await settle(reactor, 0.2)
        return figures
    finally:
        if proxy is not None:
            proxy.stop()
        stop(child)


async def main(reactor, args) -> None:
    directory = tempfile.mkdtemp(prefix="mmo-bench-tls-")
    try:
        config = bench_config(directory)
        figures: dict = {
            "connections": args.connections,
            "burst": args.burst,
            "size": args.size,
        }
        modes = [m for m in MODES if m in args.modes.split(",")]
        if "haproxy" in modes and _haproxy.binary() is None:
            print(
                "bench/tls.py: haproxy is not installed (Debian: apt-get install -y haproxy); "
                "the haproxy row is skipped",
                file=sys.stderr,
            )
            modes.remove("haproxy")
            figures["haproxy_skipped"] = 1
        runs: dict[str, list[float]] = {}
        for repeat in range(args.repeats):
            for mode in modes:
                measured = await measure(reactor, mode, args, config, directory, repeat == 0)
                for name, value in measured.items():
                    runs.setdefault(name, []).append(value)
        figures["repeats"] = args.repeats
        figures.update({name: statistics.median(values) for name, values in runs.items()})
        if "plain" in modes:
            for mode in modes:
                if mode == "plain":
                    continue
                for figure in ("delivery_cpu_us", "echo_cpu_us"):
                    floor = figures["plain_" + figure]
                    figures[f"{mode}_{figure}_ratio"] = (
                        figures[f"{mode}_{figure}"] / floor if floor else float("nan")
                    )
        report(figures, args.json)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    p = parser(__doc__.strip().splitlines()[0])
    p.add_argument("--connections", type=int, default=200, help="client connections")
    p.add_argument("--rounds", type=int, default=500, help="broadcast bursts")
    p.add_argument("--burst", type=int, default=1, help="frames per client per burst")
    p.add_argument("--size", type=int, default=64, help="bytes per frame")
    p.add_argument("--requests", type=int, default=50000, help="echo requests")
    p.add_argument("--repeats", type=int, default=3, help="runs of every mode (medians)")
    p.add_argument("--max-seconds", type=float, default=30.0, help="bound of each phase")
    p.add_argument(
        "--modes", default=",".join(MODES), help="comma-separated, of " + ",".join(MODES)
    )
    p.add_argument("--serve", choices=MODES, help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    p.add_argument("--portfile", help=argparse.SUPPRESS)
    arguments = p.parse_args()
    if arguments.serve:
        serve(arguments)
    else:
        task.react(lambda reactor: defer.ensureDeferred(main(reactor, arguments)))
