"""
The bot's own CPU per C{world.update} push read, in process, without TLS:
the frames a zone sends a player among C{--neighbours} others (each moving
in most ticks), read by C{mmo-bot}'s client (framing, the lazy decode, the
view kept exactly), next to the SDK's plain L{mmo.client.Client} reading
the same frames in full (the baseline, measured in the same run).

    python bench/bot_reads.py [--pushes 20000] [--neighbours 30] [--repeats 5] [--json]

Each frame comes in a read of its own, as a push per TLS record does.  The
figures are the medians over C{--repeats}.  C{bot_tls_us_per_push} is the
same reads with each frame in a TLS record of its own, decrypted by the
bots' TLS (C{Swarm.tls}, handshake done before the clock starts, the
server's side encrypted beforehand): what the bot's code decides of a
push's cost.  The reactor's and the kernel's share, which the bots pay
too, is in C{bench/capacity.py}'s C{bot_us_per_push_*}.
C{bot_move_us} is a bot's move, the other half of its work: the request
fired (C{Swarm.fire}), written to an in-memory transport, and its empty
reply read and counted (two per player-second, next to some 19 pushes).
Run it with C{PYTHONPATH} set to another checkout to compare two versions;
C{--profile PATH} profiles one more run of the bot's reads over TLS.
"""

from __future__ import annotations

import cProfile
import os
import random
import shutil
import ssl
import statistics
import sys
import time
from functools import partial

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import Server, parser, report  # noqa: E402
from twisted.internet import defer, endpoints, protocol, task  # noqa: E402
from twisted.internet.interfaces import IStreamClientEndpoint  # noqa: E402
from twisted.internet.testing import StringTransport  # noqa: E402
from zope.interface import implementer  # noqa: E402

from mmo.bot import scenario  # noqa: E402
from mmo.bot.client import BotClient  # noqa: E402
from mmo.bot.swarm import Options, Swarm  # noqa: E402
from mmo.bot.views import ViewTracker  # noqa: E402
from mmo.client import Client  # noqa: E402
from mmo.wire import codec  # noqa: E402

OWN = "c-own"


def frames(count: int, neighbours: int, seed: int = 1) -> list[bytes]:
    """C{count} numbered C{world.update} frames of a player among C{neighbours}."""
    rng = random.Random(seed)
    ids = [f"c-{i:05d}" for i in range(neighbours)] + [OWN]
    made = []
    for seq in range(1, count + 1):
        update = [
            {"id": entity, "x": rng.uniform(0, 2000), "y": rng.uniform(0, 2000)}
            for entity in ids
            if rng.random() < 0.7
        ]
        fields = {"tick": seq, "enter": [], "update": update, "leave": []}
        made.append(codec.numbered(codec.push_stem("world.update", fields), seq))
    return made


def bot_reads(pushes: list[bytes]) -> float:
    """CPU seconds per push of the bot's client reading C{pushes}."""
    tracker = ViewTracker(OWN, 0.0, 0.0)
    client = BotClient(tracker.feed)
    client.makeConnection(StringTransport())
    started = time.process_time()
    for frame in pushes:
        client.dataReceived(frame)
    spent = time.process_time() - started
    assert tracker.pushes == len(pushes) and tracker.position is not None
    return spent / len(pushes)


@implementer(IStreamClientEndpoint)
class InMemory:
    """An endpoint whose one connection is to a C{StringTransport}."""

    def connect(self, factory):
        self.protocol = factory.buildProtocol(None)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)
        return defer.succeed(self.protocol)


class TLSServer:
    """The server's end of one TLS connection, in memory (Python's ssl module)."""

    def __init__(self, cert: str, key: str):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_side=True)

    def handshake(self, client, transport) -> None:
        """Until both ends are through: C{client} the client's TLS protocol."""
        for _ in range(6):
            self.incoming.write(transport.value())
            transport.clear()
            try:
                self.tls.do_handshake()
                self.tls.read(65536)
            except ssl.SSLWantReadError:
                pass
            answer = self.outgoing.read()
            if answer:
                client.dataReceived(answer)

    def records(self, frames: list[bytes]) -> list[bytes]:
        """Each frame as the TLS record the server would send it in."""
        made = []
        for frame in frames:
            self.tls.write(frame)
            made.append(self.outgoing.read())
        return made


def bot_tls_reads(pushes: list[bytes], server: Server) -> float:
    """CPU seconds per push of the bot's client reading C{pushes} over the bots' TLS."""
    swarm = Swarm(
        task.Clock(), Options("127.0.0.1", 1, ca=server.ca, progress=None), scenario.make("idle")
    )
    tls = swarm.tls("127.0.0.1", 1)
    # Older bots' TLS (Twisted's over pyOpenSSL) has no wrap of its own.
    wrap = getattr(tls, "wrap", None) or partial(endpoints.wrapClientTLS, tls)
    tracker = ViewTracker(OWN, 0.0, 0.0)
    client = BotClient(tracker.feed)
    memory = InMemory()
    wrap(memory).connect(protocol.Factory.forProtocol(lambda: client))
    directory = server.config.deployment.tls_dir
    end = TLSServer(os.path.join(directory, "mmo.crt"), os.path.join(directory, "mmo.key"))
    end.handshake(memory.protocol, memory.transport)
    records = end.records(pushes)
    read = memory.protocol.dataReceived
    started = time.process_time()
    for record in records:
        read(record)
    spent = time.process_time() - started
    assert tracker.pushes == len(pushes), tracker.pushes
    return spent / len(pushes)


def bot_moves(count: int) -> float:
    """CPU seconds per move of a bot: fired, written, and its reply read and counted."""
    swarm = Swarm(task.Clock(), Options("127.0.0.1", 1, progress=None), scenario.make("idle"))
    client = BotClient(ViewTracker(OWN, 0.0, 0.0).feed)
    # Older bots answer their moves through Client.request: no on_answer.
    client.on_answer = getattr(swarm, "answered", None)
    transport = StringTransport()
    client.makeConnection(transport)
    first = client._next_id + 1
    replies = [codec.frame({"t": "reply", "id": first + i}) for i in range(count)]
    started = time.process_time()
    for i, reply in enumerate(replies):
        swarm.fire(client, "zone.move", seq=i, x=1000.5, y=1000.25)
        client.dataReceived(reply)
        transport.clear()
    spent = time.process_time() - started
    assert swarm.stats.latencies["zone.move"].count == count
    swarm.deadlines.stop()
    return spent / count


def sdk_reads(pushes: list[bytes]) -> float:
    """CPU seconds per push of the SDK's client decoding C{pushes} in full."""
    seen = []
    client = Client()
    client.on("world.update", seen.append)
    client.makeConnection(StringTransport())
    started = time.process_time()
    for frame in pushes:
        client.dataReceived(frame)
    spent = time.process_time() - started
    assert len(seen) == len(pushes)
    return spent / len(pushes)


def main(args) -> None:
    pushes = frames(args.pushes, args.neighbours)
    # Not started: its deployment's certificates only.
    server = Server()
    runs: dict[str, list[float]] = {"bot": [], "sdk": [], "tls": [], "move": []}
    try:
        for _ in range(args.repeats):
            runs["sdk"].append(sdk_reads(pushes) * 1e6)
            runs["bot"].append(bot_reads(pushes) * 1e6)
            runs["tls"].append(bot_tls_reads(pushes, server) * 1e6)
            runs["move"].append(bot_moves(args.pushes // 10) * 1e6)
        if args.profile:
            # A run of its own after the measured ones: no figure carries the profiler.
            profiler = cProfile.Profile(time.process_time)
            profiler.runcall(bot_tls_reads, pushes, server)
            profiler.dump_stats(args.profile)
    finally:
        shutil.rmtree(server.directory, ignore_errors=True)
    bot, sdk = statistics.median(runs["bot"]), statistics.median(runs["sdk"])
    report(
        {
            "pushes": args.pushes,
            "neighbours": args.neighbours,
            "repeats": args.repeats,
            "push_bytes": statistics.mean(len(frame) for frame in pushes),
            "bot_us_per_push": bot,
            "bot_tls_us_per_push": statistics.median(runs["tls"]),
            "bot_move_us": statistics.median(runs["move"]),
            "sdk_us_per_push": sdk,
            "bot_sdk_ratio": bot / sdk if sdk else float("nan"),
        },
        args.json,
    )


if __name__ == "__main__":
    p = parser(__doc__.strip().splitlines()[0])
    p.add_argument("--pushes", type=int, default=20000, help="pushes read per repeat")
    p.add_argument("--neighbours", type=int, default=30, help="others in the player's view")
    p.add_argument("--repeats", type=int, default=5, help="rounds (medians)")
    main(p.parse_args())
