"""
Gateway memory per session under world traffic: what a session costs once
its resume buffer is full of C{world.update} pushes, as a player in a busy
part of the world fills it in under a minute at 20 Hz.

    python bench/session_memory.py [--sessions 200] [--buffer 1000] [--json]

Runs in process (no server, no network): C{--sessions} gateway sessions
(L{mmo.gateway.session.Session}, the shipped C{[gateway] resume_buffer} by
default) are each pushed C{--buffer} world updates of C{--visible} entities,
C{--moving} of which moved (the shape of a zone's pushes: see
docs/world.md), attached to a connection that discards what is sent.  Memory
is counted with tracemalloc; the push rate (C{pushes_per_s}) is timed
without it, over 50 sessions, and with C{--profile PATH} profiled over
them once more.  The baseline: the same pushes kept as the
bytes that went on the wire and nothing else, the least any resume buffer
can hold.

And what an idle player costs a gateway (C{idle_bytes_per_session}): as
many connections to a whole gateway (L{mmo.gateway.factory.make_gateway},
in-process bus, fake clock), each over a C{StringTransport}, handshaken and
admitted, then idle; next to a bare C{Int32StringReceiver} per
C{StringTransport}, the least a framed connection costs.  No TLS: the same
for both, and not Python's to count.
"""

from __future__ import annotations

import cProfile
import gc
import os
import random
import shutil
import sys
import tempfile
import time
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import parser, report  # noqa: E402
from twisted.internet import protocol, task  # noqa: E402
from twisted.internet.address import IPv4Address  # noqa: E402
from twisted.internet.testing import StringTransport  # noqa: E402
from twisted.protocols.basic import Int32StringReceiver  # noqa: E402

from mmo import config  # noqa: E402
from mmo.bus.memory import MemoryBus  # noqa: E402
from mmo.game.service import Caller  # noqa: E402
from mmo.gateway.factory import make_gateway, subscriptions  # noqa: E402
from mmo.gateway.session import Session  # noqa: E402
from mmo.login.tickets import TicketSigner  # noqa: E402
from mmo.wire import codec  # noqa: E402

PEER = IPv4Address("TCP", "127.0.0.1", 40000)
GATEWAY = '[deployment]\nname = "bench"\ntls_dir = "certs"\n'
GATEWAY += '[processes.gw]\nkind = "gateway"\nclient = "tcp:0"\n'


class Discard:
    """A connection that sends nowhere."""

    def canSend(self) -> bool:
        return True

    def sendString(self, body: bytes) -> None:
        pass

    def sendFrame(self, frame: bytes, more: bytes = b"") -> None:
        pass


def updates(rng: random.Random, count: int, visible: int, moving: int) -> list[dict]:
    """C{count} world updates, as a zone's batch delivers them to a gateway."""
    pushes = []
    for tick in range(count):
        moved = rng.sample(range(visible), moving)
        fields = {
            "tick": tick,
            "enter": [],
            "update": [
                {"id": f"c-{i}", "x": rng.uniform(0, 1000), "y": rng.uniform(0, 1000)}
                for i in moved
            ],
            "leave": [],
        }
        # What the gateway gets: decoded from the bus, one dict per push.
        pushes.append(codec.decode(codec.encode({"t": "batch", **fields})))
    return pushes


def traced(build) -> tuple[int, object]:
    """The bytes C{build()} keeps allocated, and what it built."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = build()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return after - before, kept


def idle_gateway():
    """A whole gateway on a fake clock and an in-process bus; how to admit a player to it."""
    directory = tempfile.mkdtemp(prefix="mmo-bench-")
    path = os.path.join(directory, "mmo.toml")
    with open(path, "w") as f:
        f.write(GATEWAY)
    settings = config.load(path)
    shutil.rmtree(directory)
    clock = task.Clock()
    bus = MemoryBus(reactor=clock)
    signer = TicketSigner(b"k" * 32, 3600.0, clock)
    factory = make_gateway(settings, settings.processes["gw"], bus, signer, (), clock)
    for channel, dispatcher in subscriptions(factory).items():
        bus.subscribe(channel, dispatcher)

    def admit(n: int):
        connection = factory.buildProtocol(PEER)
        transport = StringTransport(peerAddress=PEER)
        connection.makeConnection(transport)
        ticket = signer.issue(f"a{n}", f"Player {n}", "main")[0]
        connection.dataReceived(codec.frame({"t": "hello", "id": 1, "versions": [1]}))
        connection.dataReceived(codec.frame({"t": "auth", "id": 2, "ticket": ticket}))
        clock.advance(0)
        transport.clear()
        return connection, transport

    return admit


class Bare(Int32StringReceiver):
    def stringReceived(self, body: bytes) -> None:
        pass


def bare(n: int):
    """The baseline of an idle connection: a framed protocol on a transport, nothing else."""
    connection = protocol.Factory.forProtocol(Bare).buildProtocol(PEER)
    transport = StringTransport(peerAddress=PEER)
    connection.makeConnection(transport)
    connection.dataReceived(codec.frame({"t": "hello", "id": 1, "versions": [1]}))
    return connection, transport


def main() -> None:
    p = parser(__doc__.strip().splitlines()[0])
    p.add_argument("--sessions", type=int, default=200, help="sessions held")
    p.add_argument("--buffer", type=int, default=1000, help="[gateway] resume_buffer")
    p.add_argument("--visible", type=int, default=40, help="entities each player sees")
    p.add_argument("--moving", type=int, default=8, help="of which moved in a push")
    p.add_argument("--max-seconds", type=float, default=120.0, help="give up after this")
    args = p.parse_args()
    rng = random.Random(7)
    deadline = time.monotonic() + args.max_seconds
    pushes = updates(rng, args.buffer, args.visible, args.moving)

    def sessions(wanted: int):
        held = []
        for n in range(wanted):
            if time.monotonic() > deadline:
                break
            caller = Caller(f"s{n}", "gateway-1", f"a{n}", f"Player {n}")
            session = Session(caller, None, "token", args.buffer, 1 << 24)
            session.connection = Discard()
            for push in pushes:
                # Each session's pushes are its own objects, as off the bus.
                session.push("world.update", dict(push, update=[dict(u) for u in push["update"]]))
            held.append(session)
        return held

    def wire_bytes():
        held = []
        for _ in kept:
            held.append(
                [
                    codec.encode({**push, "t": "world.update", "seq": seq + 1})
                    for seq, push in enumerate(pushes)
                ]
            )
        return held

    used, kept = traced(lambda: sessions(args.sessions))
    # The push rate, measured without tracemalloc's own cost.
    timed = min(50, len(kept))
    started = time.perf_counter()
    sessions(timed)
    elapsed = time.perf_counter() - started
    if args.profile:
        # The hottest path, pushing, once more under cProfile.
        profiler = cProfile.Profile()
        profiler.runcall(sessions, timed)
        profiler.dump_stats(args.profile)
    baseline, _ = traced(wire_bytes)
    count = max(1, len(kept))
    admit = idle_gateway()
    admit(-1)  # what the first connection makes once for all
    bare(-1)

    def idle(connect):
        return [connect(n) for n in range(args.sessions) if time.monotonic() <= deadline]

    idle_used, idle_kept = traced(lambda: idle(admit))
    bare_used, bare_kept = traced(lambda: idle(bare))
    per_session = used / count
    figures = {
        "sessions": len(kept),
        "buffer": args.buffer,
        "visible": args.visible,
        "moving": args.moving,
        "push_bytes": len(codec.encode({**pushes[0], "t": "world.update", "seq": 1})),
        "bytes_per_session": int(per_session),
        "pushes_per_s": round(timed * args.buffer / elapsed),
        "baseline_bytes_per_session": int(baseline / count),
        "memory_ratio": round(per_session / max(1.0, baseline / count), 2),
        "idle_bytes_per_session": int(idle_used / max(1, len(idle_kept))),
        "baseline_idle_bytes_per_connection": int(bare_used / max(1, len(bare_kept))),
    }
    report(figures, args.json)


if __name__ == "__main__":
    main()
