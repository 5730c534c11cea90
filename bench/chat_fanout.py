"""
Chat fan-out: deliveries per second, latency and server CPU per delivery
for one channel of C{--members} players, against the standalone server over
TLS, next to a bare Twisted broadcast server measured in the same run with
the same clients; and the server's idle memory per connected client for both.

    python bench/chat_fanout.py [--members 500] [--messages 40] [--rate 100000]
        [--idle-steps 5] [--json]

Every member is admitted and in the realm's world channel; one member sends
C{--messages} chat messages, back to back or, with C{--rate}, one every
C{members / rate} seconds (so that the server delivers C{rate} a second);
each is delivered to every member (the sender too).  Latency: from the send
to each delivery.  Server CPU: the server process's, from the first send to
the last delivery, per delivery.

The bare server relays frames as large as the standalone server's chat
frames (C{frame_bytes}, header included; the sender pads its number with
spaces): the same messages through bare Twisted TLS, so that the TLS work
per delivery is the same on both sides.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (  # noqa: E402
    Server,
    parser,
    percentile,
    precise_cpu_seconds,
    report,
    rss_bytes,
    settle,
    start_bare,
    stop_bare,
)
from twisted.internet import defer, task  # noqa: E402
from twisted.internet.endpoints import (  # noqa: E402
    HostnameEndpoint,
    connectProtocol,
    wrapClientTLS,
)
from twisted.protocols.basic import Int32StringReceiver  # noqa: E402

from mmo.client import Client, client_tls_options, connect  # noqa: E402
from mmo.wire import codec  # noqa: E402

PASSWORD = "benchmark password 1"
SETTINGS = """
[login]
argon2_memory_kib = 64
argon2_time_cost = 1
register_per_ip = 1000000
[wire]
idle_timeout = 3600
[gateway]
heartbeat_interval = 600
heartbeat_timeout = 1800
flood_rate = 100000
flood_burst = 100000
[chat]
rate = 10000
burst = 10000
"""


async def send_all(reactor, args, send) -> None:
    """
    Call C{send(index)} for each of C{--messages} messages, back to back or,
    with C{--rate}, each on its time (C{members / rate} seconds apart).
    """
    interval = args.members / args.rate if args.rate else 0.0
    started = time.perf_counter()
    for index in range(args.messages):
        wait = started + index * interval - time.perf_counter()
        if wait > 0:
            await task.deferLater(reactor, wait, lambda: None)
        send(index)


async def measure(reactor, args, pid: int, tally, send) -> None:
    """
    Send the messages, wait for every delivery, and count C{pid}'s CPU time
    meanwhile, and this process's (the clients').
    """
    cpu = precise_cpu_seconds(pid)
    clients_cpu = time.process_time()
    tally.first = time.perf_counter()

    def sent(index):
        tally.sent[index] = time.perf_counter()
        send(index)

    await send_all(reactor, args, sent)
    await tally.done.addTimeout(args.max_seconds, reactor)
    tally.cpu = precise_cpu_seconds(pid) - cpu
    tally.clients_cpu = time.process_time() - clients_cpu


def parts(members: int, steps: int) -> list[tuple[int, int]]:
    """The clients C{0..members} in C{steps} consecutive ranges, as even as can be."""
    steps = max(2, min(steps, members))
    bounds = [members * i // steps for i in range(steps + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(steps)]


def idle_per_client(
    members: int, steps: list[tuple[int, int]], rss: list[int]
) -> tuple[float, float]:
    """
    Resident memory per idle client: over all the clients, from C{rss[0]}
    (before the first) to C{rss[-1]} (all idle); and what one more client
    costs: the median, over every step of clients but the first (which
    also pays what is made once for all: threads, caches, allocator
    arenas), of the step's growth per client.  C{rss[i + 1]} was read once
    the clients of C{steps[i]} were idle.  One step's growth alone is
    noisy: a step may fill the free memory an earlier one left (the
    handshakes' buffers) or not.
    """
    added = [(rss[i + 1] - rss[i]) / max(1, end - start) for i, (start, end) in enumerate(steps)]
    return (rss[-1] - rss[0]) / members, statistics.median(added[1:])


class Tally:
    """Send times per message, and every delivery's latency."""

    def __init__(self, messages: int, members: int):
        self.sent: dict[int, float] = {}
        self.latencies: list[float] = []
        self.expected = messages * members
        self.first = None
        self.last = None
        self.cpu = 0.0
        #: This process's CPU time meanwhile: the clients' reading.
        self.clients_cpu = 0.0
        #: The size of a delivered frame, its length header included.
        self.frame_bytes = 0
        self.done = defer.Deferred()

    def chat_received(self, message: dict) -> None:
        if not self.frame_bytes:
            # Encoded again as the server did: a stem and a 4-byte number.
            self.frame_bytes = len(codec.push_stem(message["t"], message)) + 4
        self.received(int(message["text"]))

    def received(self, index: int) -> None:
        now = time.perf_counter()
        self.latencies.append(now - self.sent[index])
        self.last = now
        if len(self.latencies) == self.expected and not self.done.called:
            self.done.callback(None)


class Receiver(Client):
    """
    A member on the standalone server: the SDK's client, whose chat
    messages go straight to the tally.  Both servers' clients run in this
    process, on the cores the servers use: a delivery's reading costs
    about the same on both sides (a frame, its body parsed, its number
    read), not the SDK's dispatch to handlers on top.
    """

    def __init__(self, tally):
        super().__init__()
        self.tally = tally

    def messageReceived(self, message: dict) -> None:
        if message["t"] == "chat.message":
            self.tally.chat_received(message)
        else:
            super().messageReceived(message)


async def measure_mmo(reactor, args):
    server = Server(SETTINGS, profile=args.profile)
    server.start()
    try:
        await settle(reactor)
        idle_before = rss_bytes(server.process.pid)
        tally = Tally(args.messages, args.members)
        clients = []

        async def join(i):
            client = await connect(
                reactor,
                "127.0.0.1",
                server.port,
                ca=server.ca,
                hostname="localhost",
                timeout=60,
                client=Receiver(tally),
            )
            name = f"m{i:05d}"
            await client.request("register", name=name, password=PASSWORD)
            ticket = await client.request("login", name=name, password=PASSWORD)
            await client.request("auth", ticket=ticket["ticket"])
            clients.append(client)

        steps = parts(args.members, args.idle_steps)
        idle = [idle_before]
        for first, end in steps:
            for start in range(first, end, 50):
                await defer.gatherResults(
                    [defer.ensureDeferred(join(i)) for i in range(start, min(start + 50, end))],
                    consumeErrors=True,
                )
            await settle(reactor, 2.0)
            idle.append(rss_bytes(server.process.pid))
        sender = clients[0]
        await measure(
            reactor,
            args,
            server.process.pid,
            tally,
            lambda index: sender.send("chat.send", channel="world:main", text=str(index)),
        )
        for client in clients:
            client.transport.abortConnection()
        return tally, idle_per_client(args.members, steps, idle)
    finally:
        server.stop()


class Member(Int32StringReceiver):
    MAX_LENGTH = 65536

    def __init__(self, tally):
        self.tally = tally
        self.ready = defer.Deferred()

    def connectionMade(self):
        self.ready.callback(self)

    def stringReceived(self, data):
        self.tally.received(int(data))


def padded(index: int, frame_bytes: int) -> bytes:
    """Message C{index} as the body of a frame of C{frame_bytes}, header included."""
    return str(index).encode().ljust(frame_bytes - 4)


async def measure_baseline(reactor, args, ca, cert, key, frame_bytes: int):
    child, port = await start_bare(reactor, "_broadcast.py", cert, key)
    try:
        await settle(reactor)
        idle_before = rss_bytes(child.pid)
        tally = Tally(args.messages, args.members)
        options = client_tls_options("localhost", ca)
        members = []
        steps = parts(args.members, args.idle_steps)
        idle = [idle_before]
        for first, end in steps:
            for _ in range(first, end):
                member = Member(tally)
                endpoint = wrapClientTLS(options, HostnameEndpoint(reactor, "127.0.0.1", port))
                await connectProtocol(endpoint, member)
                members.append(member)
            # A write and its echo: the TLS handshakes are done.
            for member in members[first:]:
                member.transport.write(b"")
            await settle(reactor, 2.0)
            idle.append(rss_bytes(child.pid))
        sender = members[0]
        await measure(
            reactor,
            args,
            child.pid,
            tally,
            lambda index: sender.sendString(padded(index, frame_bytes)),
        )
        for member in members:
            member.transport.abortConnection()
        return tally, idle_per_client(args.members, steps, idle)
    finally:
        stop_bare(child)


async def main(reactor, args):
    mmo_tally, mmo_memory = await measure_mmo(reactor, args)
    # The baseline uses a deployment of its own, with the same kind of certificate.
    keep = Server()
    try:
        base_tally, base_memory = await measure_baseline(
            reactor,
            args,
            keep.ca,
            os.path.join(keep.config.deployment.tls_dir, "mmo.crt"),
            os.path.join(keep.config.deployment.tls_dir, "mmo.key"),
            mmo_tally.frame_bytes,
        )
    finally:
        keep.stop()

    def rate(tally):
        return len(tally.latencies) / (tally.last - tally.first)

    def cpu_us(tally):
        return tally.cpu / len(tally.latencies) * 1e6

    def clients_cpu_us(tally):
        return tally.clients_cpu / len(tally.latencies) * 1e6

    figures = {
        "members": args.members,
        "messages": args.messages,
        "target_deliveries_per_s": args.rate,
        "frame_bytes": mmo_tally.frame_bytes,
        "deliveries_per_s": rate(mmo_tally),
        "delivery_p50_ms": percentile(mmo_tally.latencies, 0.5) * 1000,
        "delivery_p99_ms": percentile(mmo_tally.latencies, 0.99) * 1000,
        "baseline_deliveries_per_s": rate(base_tally),
        "baseline_p50_ms": percentile(base_tally.latencies, 0.5) * 1000,
        "baseline_p99_ms": percentile(base_tally.latencies, 0.99) * 1000,
        "rate_ratio": rate(base_tally) / rate(mmo_tally),
        "p99_ratio": percentile(mmo_tally.latencies, 0.99) / percentile(base_tally.latencies, 0.99),
        "server_cpu_us_per_delivery": cpu_us(mmo_tally),
        "baseline_server_cpu_us_per_delivery": cpu_us(base_tally),
        "cpu_ratio": cpu_us(mmo_tally) / cpu_us(base_tally),
        "clients_cpu_us_per_delivery": clients_cpu_us(mmo_tally),
        "baseline_clients_cpu_us_per_delivery": clients_cpu_us(base_tally),
        "idle_bytes_per_client": mmo_memory[0],
        "baseline_idle_bytes_per_client": base_memory[0],
        "idle_bytes_per_added_client": mmo_memory[1],
        "baseline_idle_bytes_per_added_client": base_memory[1],
        "idle_bytes_over_baseline": mmo_memory[1] - base_memory[1],
    }
    report(figures, args.json)


if __name__ == "__main__":
    p = parser(__doc__.strip().splitlines()[0])
    p.add_argument("--members", type=int, default=500, help="players in the channel")
    p.add_argument("--messages", type=int, default=40, help="messages sent")
    p.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="deliveries per second to aim at (0: send the messages back to back)",
    )
    p.add_argument(
        "--idle-steps",
        type=int,
        default=5,
        help="steps the clients join in, memory read after each (per added client: the median)",
    )
    p.add_argument("--max-seconds", type=float, default=300.0, help="give up after this")
    arguments = p.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, arguments)))
