"""
A zone's tick of pushes from its outbox to its players' connections on a
gateway, in one process (no network): the stems a zone encodes for a
gateway that takes them (L{mmo.game.messages.PushStems}, sent in
L{mmo.rpc.commands.StreamStems}) next to the baseline measured in the same
run, the batch a zone sends an older gateway (L{mmo.game.messages.PushBatch}
in a L{mmo.rpc.commands.Stream}, which the gateway decodes and encodes
again, push by push).

    python bench/stream_push.py [--players 400] [--ticks 200] [--visible 8] [--json]

Each tick every player gets one C{world.update} of C{--visible} moving
entities (and every tenth a C{world.correct} before it).  The zone's side
is L{mmo.zone.outbox.Outbox.pushes} into a L{mmo.zone.streams.GatewayStreams}
whose gateway link only keeps the command's argument (the AMP box itself is
the same size either way); the gateway's side is what its link's responder
does with that argument (L{mmo.zone.streams.StreamedLinkFactory.heard}:
msgpack, the gateway's L{mmo.game.messages.Dispatcher}), its
L{mmo.gateway.delivery.Delivery} and each L{mmo.gateway.session.Session},
attached to a connection that drops its frames.  CPU time with
C{time.process_time}, the best of C{--repeat} (default 5) runs of C{--ticks}
ticks each, per push.  C{--profile PATH}: the stems' gateway side once
more, under cProfile (its time in no figure).
"""

from __future__ import annotations

import cProfile
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import parser, report  # noqa: E402

from mmo.bus.memory import MemoryBus  # noqa: E402
from mmo.game import messages  # noqa: E402
from mmo.game.messages import PushBatch, PushStems  # noqa: E402
from mmo.game.routes import unpack  # noqa: E402
from mmo.game.service import Caller  # noqa: E402
from mmo.gateway.delivery import Delivery  # noqa: E402
from mmo.gateway.session import Session  # noqa: E402
from mmo.zone.outbox import Outbox  # noqa: E402
from mmo.zone.streams import GatewayStreams  # noqa: E402

GATEWAY = "gateway-1"
ZONE = "r0c0"


class Link:
    """A gateway's link as the zone's streams see it: what it takes; it keeps what it is sent."""

    peer = GATEWAY

    def __init__(self, takes: tuple[str, ...]):
        self.peer_takes = frozenset(takes)
        self.sent: list[bytes] = []

    def takes(self, command) -> bool:
        return command.commandName.decode() in self.peer_takes

    def callRemote(self, command, message: bytes) -> None:
        self.sent.append(message)


class Connection:
    """A client's connection that takes every frame and drops it."""

    def canSend(self) -> bool:
        return True

    def sendFrame(self, frame: bytes) -> None:
        pass


class Held:
    """The sessions a gateway holds, as L{Delivery} reads them."""

    name = GATEWAY

    def __init__(self, sessions: list[Session]):
        self._by_id = {session.id: session for session in sessions}

    def get(self, session_id):
        return self._by_id.get(session_id)


class Forwards:
    """No session moved away."""

    def gateway(self, session_id):
        return None


def ticks(players: int, count: int, visible: int) -> list:
    """C{count} ticks' results (their pushes) for C{players} players, as a zone makes them."""
    rng = random.Random(1)
    results = []
    for tick in range(1, count + 1):
        by_session = {}
        for p in range(players):
            update = [
                {
                    "id": f"c-{rng.randrange(10**6):06d}",
                    "x": rng.uniform(0, 1000),
                    "y": rng.uniform(0, 1000),
                }
                for _ in range(visible)
            ]
            events = [("world.update", {"tick": tick, "enter": [], "update": update, "leave": []})]
            if p % 10 == 0:
                events.insert(0, ("world.correct", {"x": 1.5, "y": 2.5, "input": tick}))
            by_session[f"session-{p}"] = events
        results.append(_Result({GATEWAY: by_session}))
    return results


class _Result:
    def __init__(self, pushes):
        self.pushes = pushes


def measure(
    results, takes: tuple[str, ...], players: int, repeat: int, profile: str | None = None
) -> dict:
    """
    The zone's and the gateway's best CPU time over C{results}, seconds;
    the box bytes.  With C{profile}, one run more, of the gateway's side
    under cProfile, its stats written there (not in the figures).
    """
    best_zone = best_gateway = float("inf")
    box_bytes = 0
    for run in range(repeat + (1 if profile else 0)):
        profiler = cProfile.Profile() if run == repeat else None
        link = Link(takes)
        streams = GatewayStreams(MemoryBus())
        streams.linked(link)
        outbox = Outbox(None, ZONE, None)
        outbox.stream_to(streams)
        started = time.process_time()
        for result in results:
            outbox.pushes(result)
        best_zone = min(best_zone, time.process_time() - started)
        box_bytes = sum(len(m) for m in link.sent)

        sessions = []
        for p in range(players):
            caller = Caller(
                session=f"session-{p}", gateway=GATEWAY, account_id=f"a-{p}", name=f"p{p}"
            )
            session = Session(caller, None, "token", 100, 1 << 20)
            session.attach(Connection())
            sessions.append(session)
        delivery = Delivery(Held(sessions), Forwards(), None)
        dispatcher = messages.Dispatcher(GATEWAY)
        dispatcher.on(PushBatch, delivery.push_batch)
        dispatcher.on(PushStems, delivery.push_stems)
        if profiler is not None:
            profiler.enable()
        started = time.process_time()
        for message in link.sent:
            # What StreamedLinkFactory.heard does with a Stream's argument.
            dispatcher(unpack(message))
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile)
        else:
            best_gateway = min(best_gateway, time.process_time() - started)
        if sum(s.seq for s in sessions) != sum(
            len(e) for r in results for e in r.pushes[GATEWAY].values()
        ):
            raise SystemExit("a push was not delivered")
    return {"zone": best_zone, "gateway": best_gateway, "bytes": box_bytes}


def main() -> None:
    p = parser(__doc__.strip().splitlines()[0])
    p.add_argument("--players", type=int, default=400, help="players on the gateway (default 400)")
    p.add_argument("--ticks", type=int, default=200, help="ticks per run (default 200)")
    p.add_argument("--visible", type=int, default=8, help="entities in each update (default 8)")
    p.add_argument("--repeat", type=int, default=5, help="runs, the best counts (default 5)")
    args = p.parse_args()
    results = ticks(args.players, args.ticks, args.visible)
    pushes = sum(len(e) for r in results for e in r.pushes[GATEWAY].values())
    # The baseline first: an older gateway, Stream only.
    batch = measure(results, ("Stream",), args.players, args.repeat)
    stems = measure(results, ("Stream", "StreamStems"), args.players, args.repeat, args.profile)
    figures = {
        "players": args.players,
        "ticks": args.ticks,
        "pushes": pushes,
        "stems_zone_us_per_push": stems["zone"] / pushes * 1e6,
        "stems_gateway_us_per_push": stems["gateway"] / pushes * 1e6,
        "stems_box_bytes_per_push": stems["bytes"] / pushes,
        "batch_zone_us_per_push": batch["zone"] / pushes * 1e6,
        "batch_gateway_us_per_push": batch["gateway"] / pushes * 1e6,
        "batch_box_bytes_per_push": batch["bytes"] / pushes,
        "gateway_ratio": stems["gateway"] / batch["gateway"],
        "zone_ratio": stems["zone"] / batch["zone"],
        "both_ratio": (stems["zone"] + stems["gateway"]) / (batch["zone"] + batch["gateway"]),
    }
    report(figures, args.json)


if __name__ == "__main__":
    main()
