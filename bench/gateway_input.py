"""
The gateway's CPU per client move and per handoff, and a zone's per input,
in process (no sockets, no TLS): what the gateway's and the zone's own code
costs on the input path, apart from the links that carry it.

    python bench/gateway_input.py [--players 200] [--rounds 5] [--against CHECKOUT] [--json]

Move: a C{zone.move} frame from each admitted player's connection
(L{mmo.gateway.protocol.GatewayProtocol} on a C{StringTransport}) through
the zones' route (L{mmo.zone.route.ZoneRoute}, L{mmo.game.routes.RemoteRoute})
to the C{RouteInputs} box of the turn, and its reply written.  Handoff: a
C{SwitchRoute} applied by the zones' route (the session's zone changed,
every service told C{changed}, C{Switched} sent back, C{zone.changed}
pushed).  Zone input: a C{RouteInputs} box read by a zone process's RPC
factory (L{mmo.game.server.ServiceRPCFactory}) down to a service that
takes every move (the game's own handling is L{bench/zone_tick.py}'s).
Zone box: a C{RouteInputs} box of one move, read off a gateway's link by
the zone's RPC protocol (the AMP box parsed, the sender's kind checked,
the command dispatched, the move handled): in a live cluster moves come
in one by one, and a gateway's turn often carries one.  The links to
the services answer a turn later, as over a network, on the real
reactor's timers (not run); CPU time is C{time.process_time}.

The baseline is a C{ping} from the same connections (the frame read, the
flood check, the reply written: the floor of any message), measured in the
same run.  C{--against CHECKOUT} measures the same things with another
checkout's code (another commit's worktree) as well, round by round in
turn with this one's, each in a process of its own: a same-run A/B.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import parser, report  # noqa: E402

#: What one round measures, and how many of each per player.
MOVES_PER_PLAYER = 50
HANDOFFS_PER_PLAYER = 10
#: Calls in one zone input box (a gateway's turn of moves to one zone).
BOX = 200
#: What a round reports, µs of CPU each.
FIGURES = ("move_us", "handoff_us", "zone_input_us", "zone_box_us", "ping_us")


class Link:
    """
    An RPC link that is up and takes C{RouteInputs}: what is told is
    counted, calls are answered when L{answer} is called (a turn later).
    """

    def __init__(self, name: str):
        from twisted.internet import reactor

        self.peer = type("Peer", (), {"name": name})()
        # The real reactor's timers (a heap), not run: the routes' timeouts
        # cost what they cost in a gateway.
        self.reactor = reactor
        self.told = 0
        self.pending: list = []

    def takes(self, command) -> bool:
        return True

    def tell(self, command, **arguments):
        from twisted.internet import defer

        self.told += 1
        return defer.succeed({})

    def callRemote(self, command, **arguments):
        from twisted.internet import defer

        d = defer.Deferred()
        self.pending.append(d)
        return d

    def answer(self) -> None:
        pending, self.pending = self.pending, []
        for d in pending:
            d.callback({})


class Gateway:
    """A gateway with C{players} admitted players, each in zone-1, and its zones' route."""

    def __init__(self, players: int):
        from twisted.internet.testing import MemoryReactorClock

        from mmo.bus.memory import MemoryBus
        from mmo.game.routes import LocalRoute, RemoteRoute
        from mmo.game.service import SessionChange
        from mmo.login.tickets import TicketSigner
        from mmo.zone.route import ZONE_INPUTS, ZoneRoute
        from tests import support
        from tests.test_sessions import KEY, Lobby, Player, make_config

        config = make_config(None, flood_rate=100000.0, flood_burst=100000)
        self.clock = MemoryReactorClock()
        self.clock.advance(1_800_000_000)
        bus = MemoryBus(reactor=self.clock)
        signer = TicketSigner(KEY, 60.0, self.clock)
        zone_links = {zone: Link(zone) for zone in ("zone-1", "zone-2")}
        self.zone_routes = [
            RemoteRoute(("zone.",), link, unanswered=ZONE_INPUTS) for link in zone_links.values()
        ]
        self.zones = ZoneRoute(
            dict(zip(zone_links, self.zone_routes, strict=True)), None, "gw-a", clock=self.clock
        )
        # A cluster gateway's other services: the lobby, chat and the ladder.
        others = [RemoteRoute((prefix,), Link(prefix)) for prefix in ("chat.", "ladder.")]
        self.links = [*zone_links.values(), *(route.link for route in others)]
        self.factory = support.gateway(
            config, "gw-a", bus, signer, [LocalRoute(Lobby()), self.zones, *others], self.clock
        )
        self.players = []
        for i in range(players):
            player = Player(self.factory)
            player.send("auth", ticket=signer.issue(f"id-{i}", f"P{i}", "main")[0])
            self.settle()
            [reply] = player.frames()
            session = self.factory.sessions.get(reply["session"])
            session.change(SessionChange(zone="zone-1", character_id=f"c-{i}"))
            self.players.append(player)
        self.version = 0

    def settle(self) -> None:
        """The end of a reactor turn: the routes' boxes sent, the services' answers in."""
        for route in self.zone_routes:
            route.flush()
        for link in self.links:
            link.answer()
        self.clock.advance(0)
        self.links[0].reactor.runUntilCurrent()

    def messages(self, kind: str, rounds: int, first: int, **fields) -> float:
        """CPU seconds for C{rounds} messages from every player, a turn per round."""
        from mmo.wire import codec

        frames = [
            [
                codec.frame({"t": kind, "id": n, "seq": n, "x": 10.0 + n, "y": 20.0, **fields})
                for n in range(first, first + rounds)
            ]
            for _ in self.players
        ]
        started = time.process_time()
        for n in range(rounds):
            for player, sent in zip(self.players, frames, strict=True):
                player.protocol.dataReceived(sent[n])
            self.settle()
        spent = time.process_time() - started
        for player in self.players:
            player.transport.clear()
        return spent

    def handoffs(self, count: int) -> float:
        """CPU seconds for C{count} route switches, the players' in turn."""
        from mmo.game.messages import SwitchRoute
        from mmo.gateway.delivery import SessionPort

        sessions = [self.factory.sessions.get(p.protocol.session.id) for p in self.players]
        ports = [SessionPort(self.factory.sessions, session) for session in sessions]
        started = time.process_time()
        for k in range(count):
            session, port = sessions[k % len(sessions)], ports[k % len(sessions)]
            self.version += 1
            zone = session.caller.zone
            target = "zone-2" if zone == "zone-1" else "zone-1"
            switch = SwitchRoute(
                f"t{self.version}", session.id, session.caller.character_id, target, self.version
            )
            self.zones.switch(zone, switch, port)
            if k % len(sessions) == len(sessions) - 1:
                self.settle()
        self.settle()
        spent = time.process_time() - started
        for player in self.players:
            player.transport.clear()
        return spent


def move(n: int) -> dict:
    return {"t": "zone.move", "id": n, "seq": n, "x": 1.0, "y": 2.0}


def zone_factory():
    """A zone process's RPC factory, to a service that takes every move, and L{BOX} callers."""
    from twisted.internet.testing import MemoryReactorClock

    from mmo.game.server import ServiceRPCFactory
    from mmo.game.service import Caller, GameService
    from tests.test_sessions import make_config

    class Moves(GameService):
        kind = "zone"
        prefixes = ("zone.",)
        moves = 0

        async def on_zone_move(self, caller, message):
            self.moves += 1
            return {}

    config = make_config()
    clock = MemoryReactorClock()
    factory = ServiceRPCFactory(
        config, config.processes["gw-a"], Moves(config, None, None, clock), clock
    )
    callers = [
        Caller(
            f"{i:08x}-5e55-4d0e-9a1b-{i:012x}",
            "gw-a",
            f"{i:08x}-acc0-4b1e-8c2d-{i:012x}",
            f"player{i:05d}",
            character_id=f"{i:08x}-c4a2-4f3e-9d4c-{i:012x}",
            character_name=f"Hero{i:05d}",
            zone="zone-1",
            in_world=True,
            incarnation="0123456789ab",
        ).to_dict()
        for i in range(BOX)
    ]
    return factory, callers


def zone_inputs(boxes: int) -> float:
    """CPU seconds for C{boxes} input boxes of L{BOX} players' moves, read by a zone."""
    from mmo.game.routes import pack

    factory, callers = zone_factory()
    data = [
        pack(
            [
                [c, "zone.move", {"t": "zone.move", "id": b, "seq": b, "x": 1.0, "y": 2.0}]
                for c in callers
            ]
        )
        for b in range(boxes)
    ]
    started = time.process_time()
    for box in data:
        factory.route_inputs(box, "gw-a")
    return time.process_time() - started


def zone_boxes(count: int) -> float:
    """
    CPU seconds for C{count} input boxes of one move each (a gateway's turn
    with one player's move, as in a live cluster where moves come in one
    by one), read off a gateway's link by a zone's RPC protocol: the AMP
    box, the sender's check, the dispatch, the move.
    """
    from twisted.internet.testing import StringTransport
    from twisted.protocols import amp

    from mmo.game.routes import pack
    from mmo.rpc.commands import RouteInputs

    factory, callers = zone_factory()
    link = factory.buildProtocol(None)
    link.makeConnection(StringTransport())
    link.peer = "gw-a"
    gateway, sent = amp.AMP(), StringTransport()
    gateway.makeConnection(sent)
    wire = []
    for b in range(count):
        move = {"t": "zone.move", "id": b, "seq": b, "x": 1.0, "y": 2.0}
        gateway.callRemote(RouteInputs, calls=pack([[callers[b % BOX], "zone.move", move]]))
        wire.append(sent.value())
        sent.clear()
    started = time.process_time()
    for box in wire:
        link.dataReceived(box)
    spent = time.process_time() - started
    if factory.service.moves != count:
        raise RuntimeError(f"{factory.service.moves} of {count} boxes' moves reached the zone")
    return spent


def one_round(players: int) -> dict:
    """One round of every measurement, in this process: µs of CPU per message."""
    gateway = Gateway(players)
    # Warm: the code paths, and every player handed off once.
    gateway.messages("zone.move", 5, 1)
    gateway.handoffs(players)
    zone_inputs(5)
    zone_boxes(100)
    moves = players * MOVES_PER_PLAYER
    handoffs = players * HANDOFFS_PER_PLAYER
    boxes = max(1, moves // BOX)
    return {
        "move_us": gateway.messages("zone.move", MOVES_PER_PLAYER, 100) / moves * 1e6,
        "ping_us": gateway.messages("ping", MOVES_PER_PLAYER, 1000) / moves * 1e6,
        "handoff_us": gateway.handoffs(handoffs) / handoffs * 1e6,
        "zone_input_us": zone_inputs(boxes) / (boxes * BOX) * 1e6,
        "zone_box_us": zone_boxes(moves) / moves * 1e6,
    }


def child_round(checkout: str, players: int) -> dict:
    """One round in a process of its own, with C{checkout}'s code (and tests)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (checkout, env.get("PYTHONPATH")) if p)
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", "--players", str(players)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if out.returncode != 0:
        raise RuntimeError(f"a round with {checkout}'s code failed:\n{out.stderr}")
    return json.loads(out.stdout)


def main(args) -> None:
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sides = {"": here}
    if args.against:
        sides["against_"] = os.path.abspath(args.against)
    rounds: dict[str, list[dict]] = {side: [] for side in sides}
    for _ in range(args.rounds):
        for side, checkout in sides.items():
            rounds[side].append(child_round(checkout, args.players))
    figures: dict = {"players": args.players, "rounds": args.rounds}
    for side, results in rounds.items():
        for name in FIGURES:
            figures[side + name] = statistics.median(r[name] for r in results)
    figures["move_over_ping"] = figures["move_us"] / figures["ping_us"]
    if args.against:
        for name in FIGURES:
            figures[name.replace("_us", "_ratio")] = figures[name] / figures["against_" + name]
    report(figures, args.json)


if __name__ == "__main__":
    p = parser(__doc__.strip().splitlines()[0])
    p.add_argument("--players", type=int, default=200, help="admitted players")
    p.add_argument("--rounds", type=int, default=5, help="rounds (medians are reported)")
    p.add_argument(
        "--against",
        metavar="CHECKOUT",
        help="also measure another checkout's code, round by round in turn with this one's",
    )
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    arguments = p.parse_args()
    if arguments.players < 1 or arguments.rounds < 1:
        p.error("--players and --rounds must be at least 1")
    if arguments.child:
        print(json.dumps(one_round(arguments.players)))
    elif arguments.profile:
        # One round in this process, under the profiler (CPU time, as measured).
        import cProfile

        profiler = cProfile.Profile(time.process_time)
        profiler.runcall(one_round, arguments.players)
        profiler.dump_stats(arguments.profile)
    else:
        main(arguments)
