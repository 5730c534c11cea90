"""
The handoff as a bystander sees it: a player crossing a border never
leaves the view of those who keep seeing it, and never enters it again
(C{docs/world.md}, "Ghosts and handoffs").

Two real zone services (L{mmo.zone.service.ZoneService}) side by side on
one L{task.Clock}, the in-memory bus and a SQLite store; an observer stands
near the border on each side, and a walker goes back and forth across it,
so that every crossing has an observer in the zone it leaves and one in the
zone it enters.  Everything is deterministic: the clock only moves when
every store call in flight has been answered (the store answers at once),
and what each zone sends the other goes through a L{Network} that delays it
as the test says.  The tests explore the orderings: the second zone's tick
phase against the first's, ghost updates and handoff messages delayed by
up to two ticks (each kind on its own, so that the one overtakes the other),
and at random per message (reordering them) with both zones' timers firing
late (a starved process).

What each zone tells the gateway goes on a stream of its own
(L{mmo.zone.streams}): a FIFO that delays its messages as the test says,
independently of the other zone's (so that one zone's messages overtake
the other's), and that a test cuts and restores.

What is checked, from the views the observers' clients build out of their
C{world.update}s: the walker entered each observer's view once, never left
it, and is seen where it is at the end; and of every client, the walker's
too: nothing entered twice, nothing updated or left that was not in view,
and at the end its view is what the zone that owns its player shows it.
"""

from __future__ import annotations

import random

from twisted.internet import defer, task
from twisted.trial import unittest

from mmo import config
from mmo.bus.memory import pack, unpack
from mmo.game import messages
from mmo.game.messages import (
    Accept,
    GhostUpdate,
    Moved,
    PushBatch,
    PushStems,
    Switched,
    SwitchRoute,
    gateway_channel,
    zone_channel,
)
from mmo.game.service import Caller
from mmo.zone.handoff import ACTIVE
from mmo.zone.service import ZoneService
from tests.support import fake_clock_bus_store, stem_event, write_config
from tests.test_zone_service import WORLD

#: Seconds between two ticks of a zone.
INTERVAL = 0.1
#: The gateway of every session.
GATEWAY = "gw-1"
#: The zones, west and east of the border at x = 100.
WEST, EAST = "r0c0", "r0c1"
#: Where the observers stand, one on each side; the walker's turning points.
OBSERVERS = {"watcher-west": (WEST, 90.0), "watcher-east": (EAST, 110.0)}
TURNS = (104.5, 95.5, 104.5, 95.5)
#: Units the walker moves per input (one input per interval: under max_speed).
STEP = 0.5


class Network:
    """
    How long each message between the two zones travels, seconds: by kind
    (L{GhostUpdate}s, or the rest: the handoff's), or at random up to
    C{spread} for each message; messages of the types in C{lost} are lost.
    """

    def __init__(self, ghosts=0.0, handoff=0.0, spread=0.0, rng=None, lost=(), streams=None):
        self.ghosts = ghosts
        self.handoff = handoff
        self.spread = spread
        self.rng = rng
        self.lost = {cls.__name__ for cls in lost}
        #: Zone -> seconds its stream to the gateway delays each message
        #: (at random up to C{spread} if not given).
        self.streams = streams or {}

    def stream_delay(self, zone: str) -> float:
        """Seconds a message on C{zone}'s stream travels (in order all the same)."""
        if zone in self.streams:
            return self.streams[zone]
        return self.rng.uniform(0.0, self.spread) if self.spread else 0.0

    def delay(self, data: dict) -> float | None:
        """Seconds C{data} travels, or C{None}: lost."""
        if data.get("type") in self.lost:
            return None
        if self.spread:
            return self.rng.uniform(0.0, self.spread)
        return self.ghosts if data.get("type") == GhostUpdate.__name__ else self.handoff


class Wire:
    """
    A process's bus: what it publishes to a zone's channel travels through
    the L{Network} (as a copy, as the bus would carry it); the rest as usual.
    """

    def __init__(self, bus, clock, network: Network):
        self.bus = bus
        self.clock = clock
        self.network = network

    def __getattr__(self, name):
        return getattr(self.bus, name)

    def publish(self, channel: str, data):
        if not channel.startswith("zone:"):
            return self.bus.publish(channel, data)
        delay = self.network.delay(data)
        if delay is None:
            return defer.succeed(None)
        if not delay:
            return self.bus.publish(channel, data)
        self.clock.callLater(delay, self.bus.publish, channel, unpack(pack(data)))
        return defer.succeed(None)


class Stream:
    """
    A zone's stream to the gateway (a L{mmo.zone.streams.GatewayStreams}
    of one gateway): each message delayed as the L{Network} says, but
    delivered in the order sent; while L{cut}, what is sent is dropped,
    and when L{restore}d the zone hears that the gateway's link is up.
    """

    def __init__(self, zone: str, clock, network: Network, deliver):
        self.zone = zone
        self.clock = clock
        self.network = network
        self.deliver = deliver
        self.up = True
        self._last = 0.0
        self.service = None

    def takes_stems(self, gateway: str) -> bool:
        # A gateway of this release.
        return True

    def send(self, gateway: str, value, sender: str) -> None:
        if not self.up:
            return
        data = unpack(pack(messages.encode(value, sender)))
        at = max(self._last, self.clock.seconds() + self.network.stream_delay(self.zone))
        self._last = at
        self.clock.callLater(at - self.clock.seconds(), self.deliver, data)

    def cut(self) -> None:
        self.up = False

    def restore(self) -> None:
        self.up = True
        self.service.gateway_linked(GATEWAY)


class LateClock:
    """
    A process's view of the clock: each of its timers fires up to
    C{lateness} seconds late, as in a process starved of CPU.
    """

    def __init__(self, clock, lateness: float, rng: random.Random):
        self.clock = clock
        self.lateness = lateness
        self.rng = rng

    def seconds(self) -> float:
        return self.clock.seconds()

    def callLater(self, delay, function, *args, **kwargs):
        late = self.rng.uniform(0.0, self.lateness)
        return self.clock.callLater(delay + late, function, *args, **kwargs)


class AnsweredStore:
    """
    The store, with its calls in flight counted: L{answered} waits until
    each has been answered and its callbacks have run, so that the test
    moves the clock on only then (the store answers at once).
    """

    def __init__(self, store):
        self.store = store
        self.in_flight = 0

    def __getattr__(self, name):
        method = getattr(self.store, name)
        if not callable(method):
            return method

        def call(*args, **kwargs):
            result = method(*args, **kwargs)
            if isinstance(result, defer.Deferred) and not result.called:
                self.in_flight += 1
                result.addBoth(self._answer)
            return result

        return call

    def _answer(self, result):
        from twisted.internet import reactor

        # Counted down once the callbacks added after this one ran too.
        reactor.callLater(0, self._done)
        return result

    def _done(self):
        self.in_flight -= 1

    async def answered(self) -> None:
        from twisted.internet import reactor

        while self.in_flight:
            await task.deferLater(reactor, 0.001, lambda: None)


class Client:
    """
    The view a session's client builds from its pushes, and what happened
    to the walker in it.

    @ivar view: The entities in view, by id.
    @ivar walker: The walker's C{enter}s and C{leave}s: C{(time, tick, kind)}.
    @ivar twice: Entities that entered while in view already.
    """

    def __init__(self, walker_id: str):
        self.walker_id = walker_id
        self.view: dict[str, dict] = {}
        self.walker: list[tuple[float, int, str]] = []
        self.twice: list[str] = []
        #: Entities updated or left while not in view.
        self.stray: list[str] = []
        self.resets = 0
        #: The walker's positions shown that went back the way it came
        #: (not at a turning point): an older update after a newer one.
        self.back: list[tuple[float, float]] = []
        self._walker_x: float | None = None
        self._heading = 0.0

    def push(self, now: float, kind: str, fields: dict) -> None:
        if kind != "world.update":
            return
        if fields.get("reset"):
            self.resets += 1
            self.view.clear()
        for view in fields["enter"]:
            if view["id"] in self.view:
                self.twice.append(view["id"])
            self.view[view["id"]] = dict(view)
            if view["id"] == self.walker_id:
                self.walker.append((round(now, 3), fields["tick"], "enter"))
        for entry in fields["enter"] + fields["update"]:
            if entry["id"] == self.walker_id and "x" in entry:
                self.walked(entry["x"])
        for entry in fields["update"]:
            if entry["id"] not in self.view:
                self.stray.append(entry["id"])
            self.view.setdefault(entry["id"], {}).update(entry)
        for entity_id in fields["leave"]:
            if entity_id not in self.view:
                self.stray.append(entity_id)
            self.view.pop(entity_id, None)
            if entity_id == self.walker_id:
                self.walker.append((round(now, 3), fields["tick"], "leave"))

    def walked(self, x: float) -> None:
        last, self._walker_x = self._walker_x, x
        if last is None or x == last:
            return
        heading = 1.0 if x > last else -1.0
        if heading != self._heading and self._heading and last not in TURNS:
            self.back.append((last, x))
        self._heading = heading


class Border:
    """
    The two zones, the observers, the walker and its gateway; see the
    module docstring.
    """

    def __init__(self, testcase, network: Network, phase: float, lateness: float, seed: int):
        self.testcase = testcase
        self.network = network
        self.phase = phase
        self.lateness = lateness
        self.seed = seed
        self.clients: dict[str, Client] = {}
        self.route = WEST
        self.x = TURNS[-1]
        self.target = self.x
        self.seq = 0
        self.corrections = 0
        self.errors: list = []

    async def start(self) -> None:
        testcase = self.testcase
        self.config = config.load(write_config(testcase, WORLD))
        world = self.config.world
        # Where the observers stand and the walker turns fit these.
        testcase.assertEqual(
            (world.columns, world.width, world.tick_rate, world.aoi_radius, world.hysteresis),
            (2, 200, 1 / INTERVAL, 20, 2),
        )
        self.clock, self.bus, store = await fake_clock_bus_store(testcase)
        self.store = AnsweredStore(store)
        await self.bus.subscribe(gateway_channel(GATEWAY), self.heard)
        self.gateway_wire = Wire(self.bus, self.clock, self.network)
        self.zones: dict[str, ZoneService] = {}
        self.streams: dict[str, Stream] = {}
        rng = random.Random(self.seed)
        for name, delay in ((WEST, 0.0), (EAST, self.phase)):
            self.clock.advance(delay)
            clock = LateClock(self.clock, self.lateness, random.Random(rng.random()))
            wire = Wire(self.bus, self.clock, self.network)
            zone = ZoneService(self.config, self.store, wire, clock, name)
            stream = self.streams[name] = Stream(name, self.clock, self.network, self.heard)
            stream.service = zone
            zone.stream_to(stream)
            await zone.start()
            testcase.addCleanup(zone.stop)
            self.zones[name] = zone
        for name, (zone, x) in OBSERVERS.items():
            await self.enter(name, zone, x)
        self.walker = await self.enter("walker", WEST, self.x)
        self.clock.callLater(INTERVAL * 0.37, self.send_input)

    async def enter(self, name: str, zone: str, x: float) -> Caller:
        """A player of a new character that last left the world at C{(x, 50)}."""
        store = self.store
        account = await store.create_account(name, "hash")
        character = await store.create_character(
            account.id, name, {"world": {"x": x, "y": 50.0, "attrs": {}}}
        )
        caller = Caller(
            session=f"session-{name}",
            gateway=GATEWAY,
            account_id=account.id,
            name=name,
            character_id=character.id,
            character_name=name,
            zone=zone,
            in_world=True,
        )
        self.clients[caller.session] = Client("")
        await self.zones[zone].handle(caller, "zone.enter", {})
        return caller

    # -- the gateway -------------------------------------------------------------------

    def heard(self, data) -> None:
        sender, message = messages.decode(data)
        if isinstance(message, (PushBatch, PushStems)):
            for session, events in message.pushes.items():
                if isinstance(message, PushStems):
                    # As the client reads them.
                    events = [stem_event(stem) for stem in events]
                for kind, fields in events:
                    self.clients[session].push(self.clock.seconds(), kind, fields)
                    if session == self.walker.session and kind == "world.correct":
                        self.x = fields["x"]
                        self.corrections += 1
        elif isinstance(message, SwitchRoute):
            self.route = message.zone
            switched = Switched(message.transfer_id, message.session)
            self.gateway_wire.publish(zone_channel(sender), messages.encode(switched, GATEWAY))
        elif isinstance(message, Moved):
            self.route = message.zone

    # -- the walker's client ----------------------------------------------------------------

    def send_input(self) -> None:
        """One input a tick, a step towards the target, to the zone the route names."""
        self.clock.callLater(INTERVAL, self.send_input)
        if self.x == self.target:
            return
        step = max(-STEP, min(STEP, self.target - self.x))
        self.x = round(self.x + step, 6)
        self.seq += 1
        caller = self.walker.moved(zone=self.route)
        move = {"seq": self.seq, "x": self.x, "y": 50.0}
        d = defer.ensureDeferred(self.zones[self.route].handle(caller, "zone.move", move))
        d.addErrback(self.errors.append)

    # -- time ---------------------------------------------------------------------------

    async def run(self, seconds: float) -> None:
        """Move the clock on by C{seconds}, one due call at a time, the store answering."""
        end = self.clock.seconds() + seconds
        while True:
            await self.store.answered()
            due = [call.getTime() for call in self.clock.getDelayedCalls()]
            now = self.clock.seconds()
            if not due or min(due) > end:
                self.clock.advance(max(0.0, end - now))
                await self.store.answered()
                return
            self.clock.advance(max(0.0, min(due) - now))

    def owner(self) -> str | None:
        """The zone where the walker is an active real, if one is."""
        for name, zone in self.zones.items():
            if zone.handoff.status(self.walker.character_id) == ACTIVE:
                return name
        return None

    async def walk_to(self, x: float) -> None:
        """Walk to C{x}, then wait until the handoff (if any) is over and ghosts settled."""
        self.target = x
        expected = WEST if x < 100 else EAST
        for _ in range(200):
            await self.run(INTERVAL)
            if self.x == x and self.owner() == expected:
                break
        else:
            self.testcase.fail(f"the walker never got to {x} in {expected} (in {self.owner()})")
        await self.run(INTERVAL * 10)

    def where(self) -> tuple[float, float]:
        entity = self.zones[self.owner()].simulation.get(self.walker.character_id)
        return entity.x, entity.y


class FlickerTests(unittest.TestCase):
    """
    The walker crosses the border four times (see the module docstring) in
    each ordering.  Generated: C{test_phase_<p>_ghosts_<g>_handoff_<h>}
    (delays in ticks), C{test_accept_lost_phase_<p>} and
    C{test_random_seed_<n>}.
    """

    async def cross(self, network: Network, phase: float, lateness=0.0, seed=0):
        border = Border(self, network, phase, lateness, seed)
        await border.start()
        walker_id = border.walker.character_id
        for name in (*OBSERVERS, "walker"):
            border.clients[f"session-{name}"].walker_id = walker_id
        await border.run(INTERVAL * 5)
        for x in TURNS:
            await border.walk_to(x)
        self.assertViewsExact(border)
        self.assertEqual(border.errors, [])
        self.assertEqual(border.corrections, 0)
        where = border.where()
        self.assertEqual(where, (TURNS[-1], 50.0))
        for name in OBSERVERS:
            client = border.clients[f"session-{name}"]
            self.assertEqual(
                client.walker[1:], [], f"{name} saw the walker leave and enter: {client.walker}"
            )
            self.assertEqual([kind for _, _, kind in client.walker], ["enter"], name)
            self.assertEqual(client.twice, [], name)
            seen = client.view.get(walker_id, {})
            self.assertEqual((seen.get("x"), seen.get("y")), where, name)

    def assertViewsExact(self, border: Border) -> None:
        """
        Every client (the walker's too) had nothing enter twice and nothing
        change or leave out of view, and has in view what the zone that
        owns its player shows it.
        """
        for session, client in border.clients.items():
            self.assertEqual(client.twice, [], session)
            self.assertEqual(client.stray, [], session)
            self.assertEqual(client.back, [], session)
            player = session.removeprefix("session-")
            entity_id = border.walker.character_id if player == "walker" else None
            zone = border.owner() if player == "walker" else OBSERVERS[player][0]
            simulation = border.zones[zone].simulation
            if entity_id is None:
                entity_id = next(e.id for e in simulation.reals.values() if e.session == session)
            self.assertEqual(sorted(client.view), sorted(simulation.seen(entity_id)), session)

    async def test_stream_cut_and_restored(self):
        """
        The west zone's stream to the gateway is cut for three ticks while
        the walker and an observer are there, and restored: what it sent
        meanwhile is lost, and the next update of each of its players
        starts the view over (C{reset}); then the walker crosses east and
        back, and every view is exact.
        """
        border = Border(self, Network(), 0.0, 0.0, 0)
        await border.start()
        await border.run(INTERVAL * 5)
        walker = border.clients[border.walker.session]
        await border.walk_to(TURNS[1])
        border.streams[WEST].cut()
        border.target = TURNS[1] - 5.0
        await border.run(INTERVAL * 3)
        border.streams[WEST].restore()
        await border.run(INTERVAL * 2)
        self.assertEqual(walker.resets, 1)
        self.assertEqual(border.clients["session-watcher-west"].resets, 1)
        self.assertEqual(border.clients["session-watcher-east"].resets, 0)
        self.assertViewsExact(border)
        await border.walk_to(TURNS[0])
        await border.walk_to(TURNS[1])
        self.assertViewsExact(border)
        self.assertEqual(border.errors, [])
        self.assertEqual(border.corrections, 0)

    @classmethod
    def generate(cls):
        for phase in (0.0, 0.25, 0.5, 0.75):
            for ghosts in (0.0, 0.5, 1.5):
                for handoff in (0.0, 0.5, 1.5):

                    def test(self, phase=phase, ghosts=ghosts, handoff=handoff):
                        network = Network(ghosts=ghosts * INTERVAL, handoff=handoff * INTERVAL)
                        return self.cross(network, phase * INTERVAL)

                    name = f"test_phase_{phase:g}_ghosts_{ghosts:g}_handoff_{handoff:g}"
                    name = name.replace(".", "_")
                    test.__name__ = name
                    test.__doc__ = (
                        f"The east zone ticks {phase:g} tick after the west; ghost updates "
                        f"take {ghosts:g} tick, handoff messages {handoff:g}."
                    )
                    setattr(cls, name, test)
        for phase in (0.0, 0.25, 0.5, 0.75):

            def test(self, phase=phase):
                network = Network(ghosts=0.5 * INTERVAL, handoff=0.5 * INTERVAL, lost=[Accept])
                return self.cross(network, phase * INTERVAL)

            name = f"test_accept_lost_phase_{phase:g}".replace(".", "_")
            test.__name__ = name
            test.__doc__ = (
                f"The east zone ticks {phase:g} tick after the west; every Accept is "
                "lost: the old zone learns from the store that the handoff committed."
            )
            setattr(cls, name, test)
        for slow in (WEST, EAST):
            for phase in (0.0, 0.5):

                def test(self, slow=slow, phase=phase):
                    network = Network(
                        ghosts=0.5 * INTERVAL,
                        handoff=0.5 * INTERVAL,
                        streams={slow: 2.5 * INTERVAL},
                    )
                    return self.cross(network, phase * INTERVAL)

                name = f"test_slow_stream_{slow}_phase_{phase:g}".replace(".", "_")
                test.__name__ = name
                test.__doc__ = (
                    f"The {slow} zone's stream to the gateway takes 2.5 ticks, the other's "
                    f"none: what the one zone says overtakes what the other said before."
                )
                setattr(cls, name, test)
        for seed in range(8):

            def test(self, seed=seed):
                rng = random.Random(seed)
                network = Network(spread=2 * INTERVAL, rng=rng)
                phase = rng.uniform(0.0, INTERVAL)
                return self.cross(network, phase, lateness=INTERVAL * 0.6, seed=seed)

            name = f"test_random_seed_{seed}"
            test.__name__ = name
            test.__doc__ = (
                f"Every message between the zones delayed at random up to two ticks "
                f"(reordered), timers up to 0.6 tick late, seed {seed}."
            )
            setattr(cls, name, test)


FlickerTests.generate()
