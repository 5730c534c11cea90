"""
Handoff latency and input safety between two zone processes: one player
entity handed back and forth between zone-a and zone-b, each a separate OS
process running a L{ZoneHandoff}, over the Redis bus and the Redis store of
a private redis-server; this process is the gateway (the production
gateway side, L{mmo.zone.route.ZoneRoute}) and sends the player's numbered
inputs all along (on the zones' bus channels: the zone processes here have
no RPC listener).

    python bench/handoff.py [--handoffs 1000] [--input-rate 200] [--json]

A handoff's latency is from the old owner's C{cross()} (the request) to
the gateway's route switch (C{SwitchRoute} applied), both read from the
system-wide monotonic clock.  The baseline is a bus round trip (gateway to
zone and back) measured in the same run.  At the end every input sent is
looked up in the entity's applied inputs in both zones: lost (never
applied), duplicated (applied more than once), out of order.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _common import parser, percentile, react, report  # noqa: E402
from twisted.internet import defer, task  # noqa: E402

from mmo import config as mmo_config  # noqa: E402
from mmo.game import messages  # noqa: E402
from mmo.game.messages import (  # noqa: E402
    BusLink,
    Input,
    Moved,
    SwitchRoute,
    gateway_channel,
    zone_channel,
)
from mmo.game.service import Caller  # noqa: E402
from mmo.zone.entity import PLAYER, Entity  # noqa: E402
from mmo.zone.handoff import ACTIVE, HANDOFF_MESSAGES, ZoneHandoff  # noqa: E402
from mmo.zone.route import ZoneRoute  # noqa: E402
from tests.redis import RedisServer  # noqa: E402

ZONES = ("zone-a", "zone-b")
GATEWAY = "gw-bench"
SESSION = "session-1"
ENTITY = "bench-player"
#: The parent's channel (zones report there) and each zone's control channel.
PARENT = "bench:handoff:parent"


def control(zone: str) -> str:
    return f"bench:handoff:control:{zone}"


def monotonic() -> float:
    # CLOCK_MONOTONIC is system-wide on Linux: comparable between processes.
    return time.clock_gettime(time.CLOCK_MONOTONIC)


# -- a private redis-server (the tests' own, tests/redis.py) ------------------------------


def private_redis(directory: str, appendonly: bool) -> RedisServer:
    if shutil.which("redis-server") is None:
        raise SystemExit(
            "bench/handoff.py needs redis-server on the PATH (apt-get install "
            "redis-server): the zones talk over the Redis bus and share the Redis store"
        )
    return RedisServer(os.path.join(directory, "redis"), appendonly=appendonly)


def write_config(directory: str, port: int) -> str:
    path = os.path.join(directory, "mmo.toml")
    with open(path, "w") as f:
        f.write(
            '[deployment]\nname = "bench"\n'
            f'[redis]\nhost = "127.0.0.1"\nport = {port}\nprefix = "bench"\n'
            '[store]\nbackend = "redis"\n[bus]\nbackend = "redis"\n'
            + "".join(f'[processes.{zone}]\nkind = "zone"\n' for zone in ZONES)
        )
    return path


async def connect(reactor, config):
    from mmo.bus.redis import RedisBus
    from mmo.store.redis import RedisStore

    bus = RedisBus(config, reactor=reactor)
    await bus.start()
    store = RedisStore(config, reactor)
    await store.start()
    return bus, store


def subscribe(bus, channel, handlers: dict):
    """Subscribe to the messages on C{channel}: C{handlers} by message class."""
    dispatcher = messages.Dispatcher(channel)
    for cls, handler in handlers.items():
        dispatcher.on(cls, handler)
    return bus.subscribe(channel, dispatcher)


# -- a zone process ----------------------------------------------------------------------


class State:
    """The zone's simulation as the handoff sees it: a dict of reals, and what was applied."""

    def __init__(self):
        self.reals: dict[str, Entity] = {}
        self.frozen: set[str] = set()
        #: (monotonic time, seq) of every input applied here.
        self.applied: list[tuple[float, int]] = []

    def add(self, entity, seen):
        self.reals[entity.id] = entity

    def remove(self, entity_id):
        self.frozen.discard(entity_id)
        return self.reals.pop(entity_id, None)

    def get(self, entity_id):
        return self.reals.get(entity_id)

    def freeze(self, entity_id):
        self.frozen.add(entity_id)

    def thaw(self, entity_id):
        self.frozen.discard(entity_id)

    def apply_input(self, entity, seq, payload):
        self.applied.append((monotonic(), seq))
        entity.x, entity.y = payload["x"], payload["y"]


async def zone_main(reactor, args) -> None:
    from twisted.logger import globalLogBeginner, textFileLogObserver

    # The zone's log (warnings of the handoff) goes to its log file.
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)])
    name = args.child
    other = ZONES[1 - ZONES.index(name)]
    config = mmo_config.load(args.config)
    bus, store = await connect(reactor, config)
    state = State()
    handoff = ZoneHandoff(name, store, state, BusLink(bus, name, ZONES), reactor)
    await subscribe(bus, zone_channel(name), {cls: handoff.receive for cls in HANDOFF_MESSAGES})
    crossing = [False]
    finished = defer.Deferred()

    def publish(message):
        bus.publish(PARENT, message).addErrback(lambda f: None)

    def command(message):
        kind = message.get("cmd")
        if kind == "ping":
            publish({"pong": message["n"]})
        elif kind == "go":
            crossing[0] = True
        elif kind == "halt":
            crossing[0] = False
        elif kind == "report":
            entity = state.get(ENTITY)
            publish(
                {
                    "report": name,
                    "round": message["round"],
                    "status": handoff.status(ENTITY),
                    "last_input": entity.last_input if entity is not None else None,
                    "applied": [seq for _, seq in state.applied],
                    "times": [t for t, _ in state.applied],
                }
            )
        elif kind == "exit" and not finished.called:
            finished.callback(None)

    await bus.subscribe(control(name), command)
    await handoff.recover()
    if name == ZONES[0]:
        entity = Entity(ENTITY, PLAYER, 100.0, 100.0, session=SESSION, gateway=GATEWAY)
        if not await handoff.enter(entity):
            raise RuntimeError("the player could not enter zone-a")

    def tick():
        # As a zone's tick would: the entity is reported crossing every tick
        # while it is here (cross() refuses while it is not an active real).
        if crossing[0]:
            transfer_id = handoff.cross(ENTITY, other)
            if transfer_id is not None:
                publish({"crossed": transfer_id, "t": monotonic(), "from": name})

    ticker = task.LoopingCall(tick)
    ticker.start(args.tick, now=False)
    publish({"ready": name})
    await finished
    ticker.stop()
    handoff.stop()
    await bus.stop()
    await store.stop()


# -- the gateway and the measurement ---------------------------------------------------------


class ZoneLink:
    """The gateway's link to one zone: each C{zone.move} goes on the zone's channel."""

    def __init__(self, link: BusLink, zone: str):
        self.link, self.zone, self.name = link, zone, zone

    def owns(self, kind):
        return kind.startswith("zone.")

    def services(self):
        return []

    def session_event(self, caller, event):
        return defer.succeed(None)

    def send(self, to, message, sender):
        # On the zone's channel, as the inputs here: after every one sent before.
        return self.link.send(to, message)

    def handle(self, caller, kind, message):
        payload = {"x": message["x"], "y": message["y"]}
        self.link.send(
            self.zone, Input(caller.session, caller.character_id, message["seq"], payload)
        )
        return defer.succeed({})


class Gateway:
    """The gateway: one session in zone-a, its zone route, and the measurement."""

    def __init__(self, reactor, bus, store):
        self.reactor = reactor
        self.bus = bus
        link = BusLink(bus, GATEWAY, ZONES)
        self.caller = Caller(
            SESSION, GATEWAY, "bench", "bench", character_id=ENTITY, zone=ZONES[0], in_world=True
        )
        self.route = ZoneRoute({zone: ZoneLink(link, zone) for zone in ZONES}, None, GATEWAY)
        self.sent: list[int] = []
        self.crossed: dict[str, float] = {}
        self.switched: dict[str, float] = {}
        self.ready: set[str] = set()
        self.pongs: dict[int, float] = {}
        self.reports: dict[tuple[int, str], dict] = {}
        self._waiters: list[tuple[object, defer.Deferred]] = []

    async def start(self):
        handlers = {SwitchRoute: self.zone_message, Moved: self.zone_message}
        await subscribe(self.bus, gateway_channel(GATEWAY), handlers)
        await self.bus.subscribe(PARENT, self.parent_message)

    # The session, as the zone route sees it.

    def change(self, change):
        self.caller = change.apply(self.caller)
        return defer.succeed(None)

    def push(self, kind, fields):
        pass

    def zone_message(self, sender, message):
        before = self.caller.zone
        self.route.switch(sender, message, self if message.session == SESSION else None)
        if isinstance(message, SwitchRoute) and self.caller.zone != before:
            self.switched.setdefault(message.transfer_id, monotonic())
        self._check()

    def parent_message(self, message):
        now = monotonic()
        if "ready" in message:
            self.ready.add(message["ready"])
        elif "pong" in message:
            self.pongs[message["pong"]] = now
        elif "crossed" in message:
            self.crossed[message["crossed"]] = message["t"]
        elif "report" in message:
            self.reports[(message["round"], message["report"])] = message
        self._check()

    def _check(self):
        for waiter in list(self._waiters):
            predicate, d = waiter
            if predicate():
                self._waiters.remove(waiter)
                d.callback(True)

    def until(self, predicate, timeout: float) -> defer.Deferred:
        """Fires True when C{predicate()} holds, False after C{timeout} seconds."""
        if predicate():
            return defer.succeed(True)
        d = defer.Deferred()
        waiter = (predicate, d)
        self._waiters.append(waiter)

        def expire():
            if waiter in self._waiters:
                self._waiters.remove(waiter)
                d.callback(False)

        call = self.reactor.callLater(timeout, expire)
        d.addBoth(lambda result: (call.active() and call.cancel(), result)[1])
        return d

    def command(self, zone, **message):
        return self.bus.publish(control(zone), message)

    def send_input(self):
        seq = len(self.sent) + 1
        self.sent.append(seq)
        move = {"seq": seq, "x": float(seq % 1000), "y": 100.0}
        self.route.handle(self.caller, "zone.move", move)


async def parent_main(reactor, args) -> None:
    directory = tempfile.mkdtemp(prefix="mmo-bench-handoff-")
    redis = private_redis(directory, args.appendonly)
    children: list[subprocess.Popen] = []
    try:
        redis.start()
        config_path = write_config(directory, redis.port)
        config = mmo_config.load(config_path)
        tick_rate = float(getattr(getattr(config, "world", None), "tick_rate", 20.0) or 20.0)
        budget_ms = 1000.0 / tick_rate
        bus, store = await connect(reactor, config)
        gateway = Gateway(reactor, bus, store)
        await gateway.start()
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        for zone in ZONES:
            log = open(os.path.join(directory, f"{zone}.log"), "w")
            children.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        os.path.abspath(__file__),
                        "--child",
                        zone,
                        "--config",
                        config_path,
                        "--tick",
                        str(1.0 / tick_rate),
                        # One zone process is profiled: zone-a.
                        *(
                            ["--profile", os.path.abspath(args.profile)]
                            if args.profile and zone == ZONES[0]
                            else []
                        ),
                    ],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            # zone-a enters the player: zone-b must not start crossing first.
            if not await gateway.until(lambda z=zone: z in gateway.ready, 30.0):
                raise RuntimeError(f"{zone} did not start; see {directory}/{zone}.log")
        deadline = time.monotonic() + args.max_seconds

        # The baseline: bus round trips, gateway -> zone-a -> gateway.
        rtts = []
        for n in range(args.pings):
            started = monotonic()
            await gateway.command(ZONES[0], cmd="ping", n=n)
            if await gateway.until(lambda n=n: n in gateway.pongs, 5.0):
                rtts.append(gateway.pongs[n] - started)

        # The handoffs, with inputs all along.
        inputs = task.LoopingCall(gateway.send_input)
        inputs.start(1.0 / args.input_rate)
        started = time.monotonic()
        for zone in ZONES:
            await gateway.command(zone, cmd="go")
        await gateway.until(
            lambda: len(gateway.switched) >= args.handoffs or time.monotonic() > deadline,
            max(1.0, deadline - time.monotonic()),
        )
        for zone in ZONES:
            await gateway.command(zone, cmd="halt")
        elapsed = time.monotonic() - started
        # Inputs go on across the last handoff, then stop.
        await task.deferLater(reactor, 0.5, lambda: None)
        inputs.stop()

        # Settle: the entity's owner has applied the last input sent.
        last = len(gateway.sent)
        for round_ in range(40):
            await task.deferLater(reactor, 0.25, lambda: None)
            for zone in ZONES:
                await gateway.command(zone, cmd="report", round=round_)
            await gateway.until(lambda r=round_: all((r, z) in gateway.reports for z in ZONES), 5.0)
            reports = [gateway.reports.get((round_, z)) for z in ZONES]
            if all(reports) and any(
                r["status"] == ACTIVE and r["last_input"] == last for r in reports
            ):
                break
        settled = all(reports) and any(
            r["status"] == ACTIVE and r["last_input"] == last for r in reports
        )
        for zone in ZONES:
            await gateway.command(zone, cmd="exit")
        await bus.stop()
        await store.stop()
    finally:
        for child in children:
            try:
                child.wait(30 if args.profile else 10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        redis.stop()
        if not args.keep:
            shutil.rmtree(directory, ignore_errors=True)

    latencies = [
        gateway.switched[t] - gateway.crossed[t] for t in gateway.switched if t in gateway.crossed
    ]
    applied = [
        (t, seq) for r in reports if r for t, seq in zip(r["times"], r["applied"], strict=True)
    ]
    counts = Counter(seq for _, seq in applied)
    sent = set(gateway.sent)
    ordered = [seq for _, seq in sorted(applied)]
    figures = {
        "transport": "two zone processes, Redis bus and Redis store (private redis-server)",
        "appendonly": bool(args.appendonly),
        "handoffs": len(latencies),
        "handoffs_per_s": len(latencies) / elapsed if elapsed else 0.0,
        "crossings_unswitched": len(set(gateway.crossed) - set(gateway.switched)),
        "handoff_p50_ms": percentile(latencies, 0.50) * 1000,
        "handoff_p99_ms": percentile(latencies, 0.99) * 1000,
        "handoff_max_ms": max(latencies) * 1000 if latencies else float("nan"),
        "budget_ms": budget_ms,
        "p99_under_tick": bool(latencies) and percentile(latencies, 0.99) * 1000 < budget_ms,
        "bus_rtt_p50_ms": percentile(rtts, 0.50) * 1000,
        "bus_rtt_p99_ms": percentile(rtts, 0.99) * 1000,
        "p50_rtt_ratio": percentile(latencies, 0.5) / percentile(rtts, 0.5)
        if latencies and rtts
        else float("nan"),
        "inputs_sent": len(sent),
        "inputs_applied": sum(counts.values()),
        "lost": len(sent - set(counts)),
        "duplicated": sum(c - 1 for c in counts.values() if c > 1),
        "out_of_order": sum(1 for a, b in zip(ordered, ordered[1:], strict=False) if b <= a),
        "settled": bool(settled),
    }
    report(figures, args.json)


if __name__ == "__main__":
    p = parser(__doc__.strip().splitlines()[0])
    p.add_argument("--handoffs", type=int, default=1000, help="handoffs to measure")
    p.add_argument("--input-rate", type=float, default=200.0, help="player inputs per second")
    p.add_argument("--pings", type=int, default=200, help="bus round trips for the baseline")
    p.add_argument("--max-seconds", type=float, default=300.0, help="stop handing off after this")
    p.add_argument(
        "--appendonly",
        action="store_true",
        help="run Redis with appendonly yes, appendfsync always (every store write on disk)",
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    p.add_argument("--child", choices=ZONES, help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    p.add_argument("--tick", type=float, default=0.05, help=argparse.SUPPRESS)
    arguments = p.parse_args()
    main = zone_main if arguments.child else parent_main
    react(main, arguments, arguments.profile if arguments.child else None)
