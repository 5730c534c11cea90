"""
Abusive clients against the standalone server: its resident memory and an
honest player's ping latency under each abuse, next to the same figures
without it, in the same run.

    python bench/abuse.py [--seconds 10] [--connections 1500] [--json]

The phases, each C{--seconds} long, one after the other on one server
(TLS and secure WebSocket listeners), while an honest player pings it
(one ping at a time, a hundredth of a second apart):

  - idle: nothing else (the baseline of the next phase and the last);
  - ping flood: a WebSocket client sends pings as fast as it can and never
    reads the pongs;
  - flow: a chatter keeps world chat flowing to every player, who all read
    (the baseline of the next phase);
  - slow reader: the same flow, and a player who stops reading;
  - per address: C{--connections} TLS connections from one other address
    (127.0.0.2), C{--concurrency} at a time, held until the phase ends.

Each abuser stops when it is cut off or when its phase ends.  The server's
memory is read from /proc every tenth of a second (the peak growth over the
phase) and again two seconds after the abuser is gone (what it kept).  The
abusers run in this process, as the honest player does.
"""

from __future__ import annotations

import base64
import os
import socket
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
)
from chat_fanout import SETTINGS as FANOUT_SETTINGS  # noqa: E402
from connections import Idle  # noqa: E402
from twisted.internet import defer, protocol, task  # noqa: E402
from twisted.internet.endpoints import (  # noqa: E402
    HostnameEndpoint,
    connectProtocol,
    wrapClientTLS,
)

from mmo.client import client_tls_options, connect  # noqa: E402

PASSWORD = "benchmark password 1"
#: The abusers' address; the honest player's (127.0.0.1) is exempt.
ABUSER = "127.0.0.2"
#: The chat fan-out's settings (nothing of the server's own limits what is
#: measured), with longer chat messages (its [chat] table is the last) and
#: the per-address limits on for every address but the honest player's.
SETTINGS = FANOUT_SETTINGS + 'max_length = 30000\n[listeners]\nexempt = ["127.0.0.1"]\n'
LISTENER = "tcp:0:interface=127.0.0.1:backlog=1024"
WEBSOCKET = "tcp:0:interface=127.0.0.1"

#: A masked WebSocket ping with a 125-byte payload (zero mask: the payload as it is).
PING = bytes([0x89, 0x80 | 125]) + b"\0\0\0\0" + b"p" * 125
#: Pings written per hundredth of a second by the flooder.
PINGS_PER_STEP = 800
#: Chat messages the chatter keeps in flight (it reads its own echoes).
IN_FLIGHT = 20
MB = 1024 * 1024


class Memory:
    """The server's resident memory over a phase: the peak, sampled every tenth of a second."""

    def __init__(self, pid: int):
        self.pid = pid
        self.before = self.peak = rss_bytes(pid)
        self.loop = task.LoopingCall(self.sample)
        self.loop.start(0.1)

    def sample(self) -> None:
        self.peak = max(self.peak, rss_bytes(self.pid))

    def stop(self) -> float:
        """Stop sampling; the peak growth, MB."""
        if self.loop.running:
            self.loop.stop()
        self.sample()
        return (self.peak - self.before) / MB


async def pings(reactor, client, seconds: float) -> list[float]:
    """The honest player's ping round trips over C{seconds}, ms."""
    rtts = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        await client.request("ping")
        rtts.append((time.perf_counter() - started) * 1000)
        await settle(reactor, 0.01)
    return rtts


class PingFlooder(protocol.Protocol):
    """Opens a WebSocket, then sends pings and never reads again."""

    def __init__(self):
        self.head = b""
        self.upgraded = defer.Deferred()
        self.lost = defer.Deferred()
        self.sent = 0

    def connectionMade(self):
        key = base64.b64encode(os.urandom(16))
        self.transport.write(
            b"GET /play HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Key: " + key + b"\r\n\r\n"
        )

    def dataReceived(self, data):
        self.head += data
        if b"\r\n\r\n" in self.head and not self.upgraded.called:
            self.transport.pauseProducing()
            self.upgraded.callback(None)

    def flood(self, count: int = PINGS_PER_STEP) -> None:
        """Send C{count} more pings (unless the connection is gone)."""
        if not self.lost.called:
            self.transport.write(PING * count)
            self.sent += len(PING) * count

    def connectionLost(self, reason):
        self.lost.callback(None)


def slow_readers_cut(server: Server) -> int:
    """How many connections the server has cut off as slow readers so far (its log)."""
    with open(server.log_path) as f:
        return f.read().count("slow_reader")


async def until(reactor, done, step, seconds: float) -> float | None:
    """Call C{step()} every hundredth of a second until C{done()} or C{seconds}; when done."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if done():
            return time.monotonic() - started
        step()
        await settle(reactor, 0.01)
    return None


class Bench:
    def __init__(self, reactor, args, server: Server):
        self.reactor = reactor
        self.args = args
        self.server = server
        self.figures: dict = {}

    async def player(self, name: str):
        server = self.server
        client = await connect(
            self.reactor, "127.0.0.1", server.port, ca=server.ca, hostname="localhost", timeout=60
        )
        await client.request("register", name=name, password=PASSWORD)
        ticket = await client.request("login", name=name, password=PASSWORD)
        await client.request("auth", ticket=ticket["ticket"])
        return client

    async def phase(self, name: str, abuse) -> None:
        """Run C{abuse()} (a coroutine) while the honest player pings; record the figures."""
        pid = self.server.process.pid
        memory = Memory(pid)
        measured = defer.ensureDeferred(pings(self.reactor, self.honest, self.args.seconds))
        extra = await abuse() if abuse is not None else {}
        rtts = await measured
        growth = memory.stop()
        await settle(self.reactor, 2.0)
        self.figures[f"{name}_p50_ms"] = percentile(rtts, 0.5)
        self.figures[f"{name}_p99_ms"] = percentile(rtts, 0.99)
        self.figures[f"{name}_rss_growth_mb"] = growth
        self.figures[f"{name}_rss_kept_mb"] = (rss_bytes(pid) - memory.before) / MB
        for key, value in extra.items():
            self.figures[f"{name}_{key}"] = value

    async def ping_flood(self) -> dict:
        options = client_tls_options("localhost", self.server.ca)
        endpoint = wrapClientTLS(
            options, HostnameEndpoint(self.reactor, "127.0.0.1", self.server.websocket_port)
        )
        flooder = PingFlooder()
        await connectProtocol(endpoint, flooder)
        await flooder.upgraded
        cut = await until(
            self.reactor, lambda: flooder.lost.called, flooder.flood, self.args.seconds
        )
        if not flooder.lost.called:
            flooder.transport.abortConnection()
        return {"cut_off": int(cut is not None), "cut_s": cut, "sent_mb": flooder.sent / MB}

    async def flow(self, stop_reading: bool) -> dict:
        chatter = await self.player(f"chatter{int(stop_reading)}")
        reader = await self.player(f"reader{int(stop_reading)}")
        heard = []
        chatter.on("chat.message", heard.append)
        if stop_reading:
            reader.transport.transport.getHandle().setsockopt(
                socket.SOL_SOCKET, socket.SO_RCVBUF, 4096
            )
            reader.transport.pauseProducing()
        text = "x" * self.args.chat_bytes
        sent = [0]
        cut_before = slow_readers_cut(self.server)

        def step():
            while sent[0] - len(heard) < IN_FLIGHT:
                chatter.send("chat.send", channel="world:main", text=text)
                sent[0] += 1

        cut = await until(
            self.reactor,
            lambda: stop_reading and slow_readers_cut(self.server) > cut_before,
            step,
            self.args.seconds,
        )
        # Let the flow finish for the phase's full length (the honest player still pings).
        if cut is not None:
            await until(self.reactor, lambda: False, step, self.args.seconds - cut)
        for client in (chatter, reader):
            client.transport.abortConnection()
        figures = {"sent_mb": sent[0] * len(text) / MB}
        if stop_reading:
            figures.update(cut_off=int(cut is not None), cut_s=cut)
        return figures

    async def per_address(self) -> dict:
        options = client_tls_options("localhost", self.server.ca)
        held, refused = [], [0]
        remaining = iter(range(self.args.connections))
        deadline = time.monotonic() + self.args.seconds

        async def worker():
            for _ in remaining:
                if time.monotonic() > deadline:
                    return
                idle = Idle()
                endpoint = wrapClientTLS(
                    options,
                    HostnameEndpoint(
                        self.reactor,
                        "127.0.0.1",
                        self.server.port,
                        timeout=30,
                        bindAddress=(ABUSER, 0),
                    ),
                )
                try:
                    await connectProtocol(endpoint, idle)
                    held.append(await idle.ready)
                except Exception:  # noqa: BLE001 - a refusal, however it shows
                    refused[0] += 1

        await defer.gatherResults(
            [defer.ensureDeferred(worker()) for _ in range(self.args.concurrency)],
            consumeErrors=True,
        )
        # Hold what was admitted until the phase ends.
        await settle(self.reactor, max(0.0, deadline - time.monotonic()))
        for idle in held:
            idle.transport.abortConnection()
        return {
            "attempted": len(held) + refused[0],
            "held": len(held),
            "refused": refused[0],
        }

    async def run(self) -> dict:
        self.honest = await self.player("honest")
        self.figures["seconds"] = self.args.seconds
        await self.phase("idle", None)
        await self.phase("ping_flood", self.ping_flood)
        await self.phase("flow", lambda: self.flow(False))
        await self.phase("slow_reader", lambda: self.flow(True))
        await self.phase("per_address", self.per_address)
        self.figures["server_rss_mb"] = rss_bytes(self.server.process.pid) / MB
        return self.figures


async def main(reactor, args):
    raise_nofile()
    server = Server(SETTINGS, client=LISTENER, profile=args.profile, websocket=WEBSOCKET)
    server.start()
    try:
        await settle(reactor)
        figures = await Bench(reactor, args, server).run()
    finally:
        server.stop()
    report(figures, args.json)


if __name__ == "__main__":
    p = parser(__doc__.strip().splitlines()[0])
    p.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    p.add_argument(
        "--connections", type=int, default=1500, help="connections tried from one address"
    )
    p.add_argument("--concurrency", type=int, default=50, help="of those, at once")
    p.add_argument(
        "--chat-bytes", type=int, default=20000, help="size of each chat message of the flow"
    )
    arguments = p.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, arguments)))
