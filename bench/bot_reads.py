"""
The bot's own CPU per C{world.update} push read, in process, without TLS:
the frames a zone sends a player among C{--neighbours} others (each moving
in most ticks), read by C{mmo-bot}'s client (framing, the lazy decode, the
view kept exactly), next to the SDK's plain L{mmo.client.Client} reading
the same frames in full (the baseline, measured in the same run).

    python bench/bot_reads.py [--pushes 20000] [--neighbours 30] [--repeats 5] [--json]

Each frame comes in a read of its own, as a push per TLS record does.  The
figures are the medians over C{--repeats}.  The TLS and the reactor's cost
per push, which the bots pay too, are in C{bench/capacity.py}'s
C{bot_us_per_push_*}; this isolates the part the bot's own code decides.
Run it with C{PYTHONPATH} set to another checkout to compare two versions;
C{--profile PATH} profiles one more run of the bot's reads.
"""

from __future__ import annotations

import cProfile
import os
import random
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import parser, report  # noqa: E402
from twisted.internet.testing import StringTransport  # noqa: E402

from mmo.bot.client import BotClient  # noqa: E402
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
    runs: dict[str, list[float]] = {"bot": [], "sdk": []}
    for _ in range(args.repeats):
        runs["sdk"].append(sdk_reads(pushes) * 1e6)
        runs["bot"].append(bot_reads(pushes) * 1e6)
    bot, sdk = statistics.median(runs["bot"]), statistics.median(runs["sdk"])
    if args.profile:
        # A run of its own after the measured ones: no figure carries the profiler.
        profiler = cProfile.Profile(time.process_time)
        profiler.runcall(bot_reads, pushes)
        profiler.dump_stats(args.profile)
    report(
        {
            "pushes": args.pushes,
            "neighbours": args.neighbours,
            "repeats": args.repeats,
            "push_bytes": statistics.mean(len(frame) for frame in pushes),
            "bot_us_per_push": bot,
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
