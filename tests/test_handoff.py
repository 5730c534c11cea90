"""
Tests of the handoff of entities between zones (L{mmo.zone.handoff}), of
ghosts (L{mmo.zone.ghosts}) and of checkpoints (L{mmo.zone.checkpoint}).

Most tests run a small simulated world, L{World}: zones (L{ZoneHandoff}
over an in-memory L{MemoryZone}, with a L{Checkpointer} and a
L{GhostTable}), one gateway (the production gateway side of the handoff,
L{mmo.zone.route.ZoneRoute}, whose links to the zones are events of the
world as AMP would carry them) and a client sending a stream of numbered
inputs, over a network of in-memory links, all on one L{task.Clock}.
Every message, every store request and every store reply is an event of
the world's scheduler, delivered in a deterministic order (by due time,
then by creation), so that a test can drop, delay or repeat any of them,
and crash any node at any event: a crashed node loses its memory (its
timers stop, what is addressed to it is lost, the replies of its store
calls are lost), what it already sent stays on the wire (a store request
too: it may be carried out after the node restarted), and the store (a
real SQLite store, or Redis in the C{Redis*} classes) keeps what it
wrote.  It restarts after a downtime and recovers as a real zone or
gateway would (a restarted gateway's player enters its zone again).

The checks, after every event: an entity is simulated (not frozen) by at
most one zone, and no zone holds a ghost of one of its own reals.  After
the world settled: every entity is a real in exactly one zone, the one the
store names, at the store's version; its inputs were applied in order,
each at most once (the entity's own history of applied inputs, which
travels with its state, is increasing, and its state matches it); no input
was applied twice anywhere; and without a zone crash, none was applied out
of order anywhere nor lost, except those sent while the gateway was down.
Then the world must still work: once the gateway's route is corrected (a
zone that restarted without the entity answers the first input with
L{Moved}), the entity crosses again and every new input is applied.
"""

from __future__ import annotations

import copy
import itertools
import os
import random
from dataclasses import dataclass

from twisted.internet import defer, task
from twisted.python.failure import Failure
from twisted.trial import unittest

from mmo.bus.memory import pack, unpack
from mmo.game import messages
from mmo.game.messages import (
    Accept,
    Done,
    Forward,
    GhostSync,
    GhostUpdate,
    Input,
    Moved,
    Offer,
    Refuse,
    Switched,
    SwitchRoute,
)
from mmo.game.service import Caller, Reply
from mmo.rpc.commands import Redirect
from mmo.store import OwnershipConflict, StoreError
from mmo.store.redis import RedisStore
from mmo.store.sqlite import SQLiteStore
from mmo.wire import codes
from mmo.wire.codes import WireError
from mmo.zone.checkpoint import Checkpointer, restore_zone
from mmo.zone.entity import NPC, PLAYER, Entity
from mmo.zone.ghosts import Ghost, GhostSender, GhostTable, ghost_view
from mmo.zone.handoff import (
    ACTIVE,
    FORWARDING,
    HOLDING,
    OFFERING,
    ZoneHandoff,
)
from mmo.zone.route import ZoneRoute
from mmo.zone.world import Region, WorldMap
from tests.redis import redis_config_text, start_redis
from tests.test_store import load_config

#: The player who walks across the border, its session and gateway.
PLAYER_ID = "p1"
SESSION = "s1"
GATEWAY = "G"

#: Timeouts of the simulated zones (seconds of the simulated clock).
TIMEOUTS = {
    "offer_retry": 0.05,
    "offer_timeout": 0.3,
    "switch_retry": 0.05,
    "switch_timeout": 0.3,
    "hold_timeout": 0.8,
    "forward_ttl": 2.0,
}

#: One-way latency of a message, and of a store request or reply.
LATENCY = 0.01
STORE_LATENCY = 0.002


# -- the callee: a zone's state, in memory -------------------------------------------


class MemoryZone:
    """
    The smallest real L{handoff.ZoneState}: a dict of reals.  An input is
    applied by recording it in the entity (C{attrs["applied"]}, which
    travels with its state) and moving it one unit, and in the world's
    journal of every application.  Misuse by the handoff is recorded in
    C{violations}.
    """

    def __init__(self, name: str, incarnation: int, journal: list, violations: list):
        self.name = name
        self.incarnation = incarnation
        self.journal = journal
        self.violations = violations
        self.entities: dict[str, Entity] = {}
        self.frozen: set[str] = set()

    def add(self, entity: Entity, seen: list[str] | None) -> None:
        if entity.id in self.entities:
            self.violations.append(f"{self.name}: {entity.id} added twice")
        self.entities[entity.id] = entity

    def remove(self, entity_id: str) -> Entity | None:
        self.frozen.discard(entity_id)
        return self.entities.pop(entity_id, None)

    def get(self, entity_id: str) -> Entity | None:
        return self.entities.get(entity_id)

    def freeze(self, entity_id: str) -> None:
        self.frozen.add(entity_id)

    def thaw(self, entity_id: str) -> None:
        self.frozen.discard(entity_id)

    def apply_input(self, entity: Entity, seq: int, payload: object) -> None:
        if entity.id in self.frozen:
            self.violations.append(f"{self.name}: input {seq} applied to frozen {entity.id}")
        if self.entities.get(entity.id) is not entity:
            self.violations.append(f"{self.name}: input {seq} applied to a stranger")
        entity.attrs.setdefault("applied", []).append(seq)
        entity.x += 1.0
        self.journal.append((self.name, self.incarnation, entity.id, seq))


# -- the simulated world -------------------------------------------------------------------


@dataclass
class Event:
    """Something in flight: a message, a store request or a store reply."""

    at: float
    order: int
    kind: str
    node: str
    incarnation: int
    to: str = ""
    message: object = None
    method: str = ""
    args: tuple = ()
    deferred: defer.Deferred | None = None
    result: object = None

    def __repr__(self) -> str:
        what = self.message if self.kind == "message" else f"{self.method}{self.args[:2]}"
        return f"<{self.kind} {self.node}#{self.incarnation}->{self.to} {what!r} at {self.at:.3f}>"


class NodeClock:
    """A node's view of the world's clock: its calls are cancelled when it crashes."""

    def __init__(self, clock: task.Clock):
        self.clock = clock
        self.calls: list = []

    def seconds(self) -> float:
        return self.clock.seconds()

    def callLater(self, delay, function, *args, **kwargs):
        call = self.clock.callLater(delay, function, *args, **kwargs)
        self.calls.append(call)
        return call

    def cancel_all(self) -> None:
        for call in self.calls:
            if call.active():
                call.cancel()


class NodeLink:
    """A node's L{handoff.Link}: each message becomes an event of the world."""

    def __init__(self, world: World, name: str, incarnation: int):
        self.world, self.name, self.incarnation = world, name, incarnation

    def send(self, to: str, message: object) -> None:
        self.world.post(self.name, self.incarnation, to, message)


class NodeStore:
    """A node's store: each call is a request event, then a reply event, of the world."""

    METHODS = (
        "checkpoint",
        "transfer",
        "load_zone",
        "recover_zone",
        "load_entity",
        "remove_entity",
        "character_by_id",
    )

    def __init__(self, world: World, name: str, incarnation: int):
        self.world, self.name, self.incarnation = world, name, incarnation

    def __getattr__(self, method: str):
        if method not in self.METHODS:
            raise AttributeError(method)

        def call(*args):
            return self.world.request(self.name, self.incarnation, method, args)

        return call


class ZoneNode:
    """One zone process: the handoff, its simulation, checkpoints and ghosts."""

    def __init__(self, world: World, name: str, incarnation: int):
        self.name = name
        self.clock = NodeClock(world.clock)
        self.zone = MemoryZone(name, incarnation, world.journal, world.violations)
        ids = (f"{name}{incarnation}-t{i}" for i in itertools.count(1))
        self.handoff = ZoneHandoff(
            name,
            NodeStore(world, name, incarnation),
            self.zone,
            NodeLink(world, name, incarnation),
            self.clock,
            new_transfer_id=lambda: next(ids),
            on_real_added=lambda entity_id: self.ghosts.real_added(entity_id),
            **world.timeouts,
        )
        self.ghosts = GhostTable(
            self.handoff.is_real, self.clock, ttl=world.ghost_ttl, sync=self.sync_ghosts
        )
        #: Neighbour -> what it is sent of our ghosts (whole, or deltas once it asks).
        self.ghost_senders = {
            other: GhostSender(name, heartbeat=world.ghost_ttl / 4)
            for other in world.zone_names
            if other != name
        }
        self.checkpointer = Checkpointer(
            name,
            self.handoff.store,
            self.handoff.checkpoint_records,
            self.clock,
            world.checkpoint_interval,
        )
        self.world = world
        self.link = self.handoff.link
        self.ghost_loop = task.LoopingCall(self.send_ghosts)
        self.ghost_loop.clock = self.clock

    def start(self) -> defer.Deferred:
        def recovered(_):
            self.checkpointer.start()
            self.ghost_loop.start(self.world.ghost_tick, now=False)

        return self.handoff.recover().addCallback(recovered)

    def send_ghosts(self) -> None:
        """Every real is within every neighbour's margin in this small world."""
        self.ghosts.expire()
        tick = round(self.clock.seconds() / self.world.ghost_tick)
        entities = {key: self.zone.get(key) for key in self.handoff.reals()}
        # Copies, as the simulation's views are: inputs change attrs in place here.
        views = [copy.deepcopy(entity.view()) for entity in entities.values()]
        now = self.clock.seconds()
        for other, sender in self.ghost_senders.items():
            update = sender.update(tick, views, entities, now)
            if update is not None:
                self.link.send(other, update)

    def sync_ghosts(self, zone: str, full: bool) -> None:
        self.link.send(zone, GhostSync(self.name, full))

    def receive(self, sender: str, message: object) -> None:
        if isinstance(message, GhostUpdate):
            self.ghosts.apply(message)
        elif isinstance(message, GhostSync):
            self.ghost_senders[message.zone].synced(message.full, self.clock.seconds())
        else:
            self.handoff.receive(sender, message)

    def stop(self) -> None:
        self.handoff.stop()
        self.clock.cancel_all()


class ZoneLink:
    """
    The gateway's link to one zone, as its L{ZoneRoute} sees it (an
    L{mmo.game.routes.IRoute}): C{zone.move} is an L{Input} event of the
    world, as L{mmo.rpc.commands.RouteInputs} carries it to the zone (in
    order with the L{Switched}s of L{send}, one way, nothing answered: the
    gateway answers the client itself); C{zone.enter}
    is answered by the zone: it is there, or the store names another owner
    (L{Redirect}), or the zone is down (C{unavailable}).
    """

    def __init__(self, world: World, node: GatewayNode, zone: str):
        self.world, self.node, self.zone = world, node, zone
        self.name = zone

    def owns(self, kind):
        return kind.startswith("zone.")

    def services(self):
        return []

    def session_event(self, caller, event):
        return defer.succeed(None)

    def send(self, to, message, sender):
        # The same link as the inputs: everything sent before arrives before.
        self.node.link.send(to, message)
        return defer.succeed(None)

    def handle(self, caller, kind, message):
        if not self.world.alive.get(self.zone):
            return defer.fail(WireError(codes.UNAVAILABLE, f"zone {self.zone} is down"))
        if kind == "zone.move":
            seq = message["seq"]
            self.node.link.send(self.zone, Input(caller.session, caller.character_id, seq, seq))
            return defer.succeed({})
        if kind == "zone.enter":
            return defer.ensureDeferred(self._enter(caller))
        return defer.fail(WireError(codes.UNKNOWN_TYPE, kind))

    async def _enter(self, caller):
        zone = self.world.nodes[self.zone]
        if zone.handoff.is_real(caller.character_id):
            return {"zone": self.zone}
        stored = await self.node.store.load_entity(caller.character_id)
        if stored is not None and stored.owner != self.zone:
            raise Redirect(stored.owner)
        raise WireError(codes.UNAVAILABLE, "your character is busy; retry")


class SessionPort:
    """The player's session on the gateway node, as its zone route sees it."""

    def __init__(self, node: GatewayNode):
        self.node = node

    @property
    def caller(self):
        return self.node.caller

    def change(self, change):
        self.node.caller = change.apply(self.node.caller)
        return defer.succeed(None)

    def push(self, kind, fields):
        pass


class GatewayNode:
    """
    The gateway process: the production zone route (L{ZoneRoute}) of the
    player's session, in the world (C{world.enter}) with its character.
    """

    #: Seconds between attempts to enter the zone, after a restart.
    retry = 0.05

    def __init__(self, world: World, name: str, incarnation: int):
        self.name = name
        self.world = world
        self.clock = NodeClock(world.clock)
        self.store = NodeStore(world, name, incarnation)
        self.link = NodeLink(world, name, incarnation)
        self.caller = Caller(
            SESSION, name, "account-1", "hero", character_id=PLAYER_ID, in_world=True
        )
        regions = [
            Region(zone, i, 0.0, i + 1.0, 1.0, zone) for i, zone in enumerate(world.zone_names)
        ]
        self.route = ZoneRoute(
            {zone: ZoneLink(world, self, zone) for zone in world.zone_names},
            WorldMap(len(regions), 1.0, regions),
            name,
            self.store,
            (0.0, 0.0),
        )
        self.port = SessionPort(self)
        self._stopped = False

    def start(self) -> defer.Deferred:
        # The session enters again (its client logged in again after a
        # crash of the gateway): where its entity is, the store says.
        self.enter()
        return defer.succeed(None)

    def enter(self) -> None:
        def entered(reply):
            if isinstance(reply, Reply):
                self.caller = reply.change.apply(self.caller)

        def again(failure):
            failure.trap(WireError)
            if not self._stopped:
                self.clock.callLater(self.retry, self.enter)

        d = self.route.handle(self.caller, "zone.enter", {})
        d.addCallbacks(entered, again)
        d.addErrback(self.world.bug)

    def send_input(self, seq: int) -> bool:
        """The client's input C{seq}; whether the gateway could route it."""
        if self.caller.zone is None or self.caller.zone in self.world.cut:
            # No link to its zone: the input is not sent.
            return False
        move = {"seq": seq, "x": 0.0, "y": 0.0}
        self.route.handle(self.caller, "zone.move", move).addErrback(lambda f: None)
        return True

    def receive(self, sender: str, message: object) -> None:
        handler = self.route.handlers().get(type(message))
        if handler is None:
            self.world.violations.append(f"gateway: unexpected {message!r} from {sender}")
            return
        port = self.port if getattr(message, "session", None) == SESSION else None
        handler(sender, message, port)

    def stop(self) -> None:
        self._stopped = True
        self.clock.cancel_all()


def fifo(world: World, event: Event) -> list[float]:
    """The default network: every message arrives once, after L{LATENCY}."""
    return [LATENCY]


class World:
    """
    Zones, a gateway, a client and the network between them, on one clock,
    with a scheduler the test controls.

    @ivar network: C{network(world, event) -> delays}: how a message
        travels (C{[]}: lost; two delays: delivered twice).
    @ivar before / after: Hooks called with each event before and after
        it is delivered (to crash a node at a precise step).
    """

    def __init__(self, testcase, zone_names=("A", "B"), seed=0, **timeouts):
        self.testcase = testcase
        self.zone_names = tuple(zone_names)
        self.clock = task.Clock()
        self.rng = random.Random(seed)
        self.timeouts = {**TIMEOUTS, **timeouts}
        self.checkpoint_interval = 0.25
        self.ghost_tick = 0.05
        self.ghost_ttl = 0.3
        self.network = fifo
        #: C{store_fault(event) -> exception or None}: a store request that fails.
        self.store_fault = lambda event: None
        self.before = []
        self.after = []
        self.events: list[Event] = []
        self.order = itertools.count()
        self.nodes: dict[str, ZoneNode | GatewayNode] = {}
        self.alive: dict[str, bool] = {}
        self.incarnations: dict[str, int] = {}
        self.journal: list[tuple[str, int, str, int]] = []
        self.violations: list[str] = []
        self.delivered: list[Event] = []
        self.crashes: list[tuple[str, float]] = []
        self.sent: list[int] = []
        self.lost_at_gateway: list[int] = []
        self.crossings: list[tuple[float, str, str, str | None]] = []
        self.next_seq = 1
        #: The zones whose link with the gateway is cut (both ways: the
        #: zone's stream to it, the gateway's inputs and Switched to it).
        self.cut: set[str] = set()
        #: Zone -> extra seconds its stream to the gateway takes.
        self.stream_delay: dict[str, float] = {}
        #: Zone -> when the last message on its stream arrives (one FIFO each).
        self.stream_last: dict[str, float] = {}
        make_store = getattr(testcase, "make_world_store", None)
        if make_store is not None:
            self.store = make_store()
        else:
            self.store = SQLiteStore(os.path.join(testcase.mktemp(), "store.sqlite3"))

    # -- setting up --------------------------------------------------------------

    @defer.inlineCallbacks
    def start(self, entities=None):
        """
        Open the store, put the entities in their zones (default: the player
        in the first zone), start every node and let them recover.
        """
        yield self.store.start()
        self.testcase.addCleanup(self.store.stop)
        if entities is None:
            entities = {self.zone_names[0]: [player()]}
        for zone, found in entities.items():
            yield self.store.checkpoint(zone, [entity.to_dict() for entity in found])
        for name in (*self.zone_names, GATEWAY):
            self.boot(name)
        yield self.run(until=self.clock.seconds() + 0.05)

    def boot(self, name: str) -> None:
        incarnation = self.incarnations.get(name, -1) + 1
        self.incarnations[name] = incarnation
        node_class = GatewayNode if name == GATEWAY else ZoneNode
        node = node_class(self, name, incarnation)
        self.nodes[name] = node
        self.alive[name] = True
        node.start().addErrback(self.bug)

    # -- what happens ----------------------------------------------------------

    def link_of(self, sender: str, to: str) -> str | None:
        """The zone of the link between a zone and the gateway a message takes, if it takes one."""
        if sender == GATEWAY and to in self.zone_names:
            return to
        if to == GATEWAY and sender in self.zone_names:
            return sender
        return None

    def post(self, sender: str, incarnation: int, to: str, message: object) -> None:
        event = Event(0.0, 0, "message", sender, incarnation, to=to, message=message)
        if self.link_of(sender, to) in self.cut:
            return
        streamed = to == GATEWAY and sender in self.zone_names
        for delay in self.network(self, event):
            at = self.clock.seconds() + delay
            if streamed:
                # The zone's stream: its own delay, in the order sent.
                at = max(at + self.stream_delay.get(sender, 0.0), self.stream_last.get(sender, 0.0))
                self.stream_last[sender] = at
            self.push(
                Event(
                    at,
                    next(self.order),
                    "message",
                    sender,
                    incarnation,
                    to=to,
                    message=message,
                )
            )

    def request(self, node: str, incarnation: int, method: str, args: tuple) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self.push(
            Event(
                self.clock.seconds() + STORE_LATENCY,
                next(self.order),
                "store",
                node,
                incarnation,
                to="store",
                method=method,
                args=args,
                deferred=d,
            )
        )
        return d

    def push(self, event: Event) -> None:
        self.events.append(event)

    def crash(self, name: str, downtime: float | None, drop_outgoing: bool = False) -> None:
        """
        Crash the node: it forgets everything; with C{drop_outgoing} what
        it sent is lost too (it was not on the wire yet).  It restarts after
        C{downtime} (never if None).
        """
        if not self.alive.get(name):
            return
        self.alive[name] = False
        self.crashes.append((name, self.clock.seconds()))
        self.nodes[name].stop()
        if drop_outgoing:
            incarnation = self.incarnations[name]
            self.events = [e for e in self.events if (e.node, e.incarnation) != (name, incarnation)]
        if downtime is not None:
            self.clock.callLater(downtime, self.boot, name)

    def cut_link(self, zone: str, downtime: float | None) -> None:
        """
        Cut the link between C{zone} and the gateway: what is on its way
        on it is lost (inputs too), and so is what is sent on it until it
        is restored after C{downtime} (never if None).
        """
        if zone in self.cut:
            return
        self.cut.add(zone)
        for event in [e for e in self.events if e.kind == "message"]:
            if self.link_of(event.node, event.to) == zone:
                self.events.remove(event)
                if isinstance(event.message, Input):
                    self.lost_at_gateway.append(event.message.seq)
        if downtime is not None:
            self.clock.callLater(downtime, self.cut.discard, zone)

    def zone(self, name: str) -> ZoneNode:
        return self.nodes[name]

    def live_zones(self) -> list[ZoneNode]:
        return [self.nodes[name] for name in self.zone_names if self.alive.get(name)]

    def owner(self, entity_id: str = PLAYER_ID) -> str | None:
        """The live zone where the entity is an active real, if any."""
        for node in self.live_zones():
            if node.handoff.status(entity_id) == ACTIVE:
                return node.name
        return None

    def cross(self, entity_id: str = PLAYER_ID, target: str | None = None) -> str | None:
        """The owner starts handing the entity to C{target} (default: the next zone)."""
        owner = self.owner(entity_id)
        if owner is None:
            return None
        if target is None:
            names = self.zone_names
            target = names[(names.index(owner) + 1) % len(names)]
        transfer_id = self.zone(owner).handoff.cross(entity_id, target)
        self.crossings.append((self.clock.seconds(), owner, target, transfer_id))
        return transfer_id

    def cross_at(self, when: float, entity_id: str = PLAYER_ID, target=None, then=None) -> None:
        """Cross at C{when}, or as soon after as the entity is active somewhere."""

        def attempt():
            chosen = target(self, entity_id) if callable(target) else target
            transfer_id = self.cross(entity_id, chosen)
            if transfer_id is None:
                self.clock.callLater(0.01, attempt)
            elif then is not None:
                then(transfer_id)

        self.clock.callLater(max(0.0, when - self.clock.seconds()), attempt)

    def send_inputs(self, start: float, count: int, interval: float = 0.01) -> None:
        """The client sends C{count} inputs, one every C{interval} from C{start}."""

        def send(n):
            seq, self.next_seq = self.next_seq, self.next_seq + 1
            self.sent.append(seq)
            gateway = self.nodes.get(GATEWAY)
            if not self.alive.get(GATEWAY) or not gateway.send_input(seq):
                self.lost_at_gateway.append(seq)
            if n > 1:
                self.clock.callLater(interval, send, n - 1)

        self.clock.callLater(max(0.0, start - self.clock.seconds()), send, count)

    # -- the scheduler -------------------------------------------------------------

    @defer.inlineCallbacks
    def run(self, until: float):
        """Deliver every event and fire every timer due up to C{until}."""
        while True:
            now = self.clock.seconds()
            due = [e for e in self.events if e.at <= now]
            if due:
                event = min(due, key=lambda e: (e.at, e.order))
                self.events.remove(event)
                for hook in list(self.before):
                    hook(event)
                yield self.deliver(event)
                self.delivered.append(event)
                for hook in list(self.after):
                    hook(event)
                self.check_step(event)
                continue
            times = [e.at for e in self.events]
            times += [call.getTime() for call in self.clock.getDelayedCalls()]
            upcoming = min(times, default=until)
            if upcoming > until:
                self.clock.advance(until - now)
                if not [e for e in self.events if e.at <= until]:
                    return
                continue
            self.clock.advance(max(0.0, upcoming - now))

    @defer.inlineCallbacks
    def deliver(self, event: Event):
        if event.kind == "message":
            if self.alive.get(event.to):
                self.nodes[event.to].receive(event.node, event.message)
        elif event.kind == "store":
            # A request already on its way is carried out even if its
            # sender has crashed meanwhile; only the reply is lost then.
            try:
                fault = self.store_fault(event)
                if fault is not None:
                    raise fault
                result = yield getattr(self.store, event.method)(*event.args)
            except Exception:
                result = Failure()
            self.push(
                Event(
                    self.clock.seconds() + STORE_LATENCY,
                    next(self.order),
                    "reply",
                    "store",
                    0,
                    to=event.node,
                    method=event.method,
                    args=(event.incarnation, *event.args),
                    deferred=event.deferred,
                    result=result,
                )
            )
        elif event.kind == "reply":
            if self.alive.get(event.to) and self.incarnations[event.to] == event.args[0]:
                if isinstance(event.result, Failure):
                    event.deferred.errback(event.result)
                else:
                    event.deferred.callback(event.result)

    def bug(self, failure) -> None:
        self.violations.append(f"unexpected error: {failure.getTraceback()}")

    # -- checks ------------------------------------------------------------------------

    def entity_ids(self) -> list[str]:
        return [PLAYER_ID] + getattr(self, "more_entities", [])

    def check_step(self, event: Event) -> None:
        """After every event: never simulated by two zones; no ghost of a real."""
        for entity_id in self.entity_ids():
            active = [
                node.name
                for node in self.live_zones()
                if entity_id in node.zone.entities and entity_id not in node.zone.frozen
            ]
            if len(active) > 1:
                self.violations.append(f"{entity_id} active in {active} after {event!r}")
            for node in self.live_zones():
                if entity_id in node.ghosts and node.handoff.is_real(entity_id):
                    self.violations.append(
                        f"{node.name} holds a ghost of its real {entity_id} after {event!r}"
                    )

    def zone_crashed(self) -> bool:
        return any(name != GATEWAY for name, _ in self.crashes)

    @defer.inlineCallbacks
    def check_settled(self, testcase, lossless: bool | None = None, strict_journal=True):
        """
        The checks once the world settled (see the module's docstring).

        @param lossless: Whether no input may be lost (other than those sent
            while the gateway was down); default: if no zone crashed.
        @param strict_journal: Whether no input may be applied twice in the
            journal of every application (false where the network repeats
            messages and zones crash: a repeated input can then be applied
            again after a crash undid it).
        """
        testcase.assertEqual(self.violations, [])
        for entity_id in self.entity_ids():
            holders = [node for node in self.live_zones() if node.handoff.is_real(entity_id)]
            names = [node.name for node in holders]
            testcase.assertEqual(len(holders), 1, f"{entity_id} is real in {names}")
            (node,) = holders
            testcase.assertEqual(node.handoff.status(entity_id), ACTIVE)
            copies = [n.name for n in self.live_zones() if entity_id in n.zone.entities]
            testcase.assertEqual(copies, [node.name])
            stored = yield self.store.load_entity(entity_id)
            entity = node.zone.get(entity_id)
            testcase.assertEqual((stored.owner, stored.version), (node.name, entity.version))
        player_entity = self.zone(self.owner()).zone.get(PLAYER_ID)
        applied = player_entity.attrs.get("applied", [])
        testcase.assertEqual(applied, sorted(set(applied)), "applied out of order or twice")
        testcase.assertTrue(set(applied) <= set(self.sent))
        testcase.assertEqual(player_entity.x, float(len(applied)), "state and inputs disagree")
        testcase.assertEqual(player_entity.last_input, applied[-1] if applied else 0)
        seqs = [seq for _, _, entity_id, seq in self.journal if entity_id == PLAYER_ID]
        if strict_journal:
            testcase.assertEqual(len(seqs), len(set(seqs)), "an input was applied twice")
        if not self.zone_crashed():
            testcase.assertEqual(seqs, sorted(seqs), "an input was applied out of order")
        if lossless is None:
            lossless = not self.zone_crashed()
        if lossless:
            expected = [seq for seq in self.sent if seq not in self.lost_at_gateway]
            testcase.assertEqual(applied, expected)
        return applied

    @defer.inlineCallbacks
    def check_still_works(self, testcase):
        """After recovery: the player crosses again, and every new input is applied."""
        now = self.clock.seconds()
        before = self.owner()
        testcase.assertIsNotNone(before, "the player is not active anywhere")
        # The gateway's route may point at a zone that restarted without the
        # entity: the first input that reaches it corrects the route
        # (Moved); inputs on their way meanwhile may be dropped (at most
        # once, in order).  Then nothing is.
        self.send_inputs(now, 3, 0.1)
        yield self.run(until=now + 0.5)
        testcase.assertEqual(self.nodes[GATEWAY].caller.zone, before)
        now = self.clock.seconds()
        first = self.next_seq
        self.send_inputs(now, 20, 0.01)
        self.cross_at(now + 0.05)
        yield self.run(until=now + 2.0)
        testcase.assertEqual(self.violations, [])
        after = self.owner()
        testcase.assertNotEqual(after, before, "the player did not cross again")
        applied = self.zone(after).zone.get(PLAYER_ID).attrs["applied"]
        testcase.assertEqual(applied[-20:], list(range(first, first + 20)))
        testcase.assertEqual(self.nodes[GATEWAY].caller.zone, after)
        # Ghosts: every other zone sees the entity, at its current version.
        entity = self.zone(after).zone.get(PLAYER_ID)
        for node in self.live_zones():
            if node.name != after:
                ghost = node.ghosts.get(PLAYER_ID)
                testcase.assertIsNotNone(ghost, f"{node.name} has no ghost")
                testcase.assertEqual((ghost.source, ghost.version), (after, entity.version))


def player(entity_id=PLAYER_ID, **attrs) -> Entity:
    return Entity(
        entity_id,
        PLAYER,
        0.0,
        0.0,
        name="Hero",
        attrs={"gold": 42, **attrs},
        session=SESSION,
        gateway=GATEWAY,
    )


def of_type(*types):
    return lambda event: event.kind == "message" and isinstance(event.message, types)


# -- the crash matrix ------------------------------------------------------------------


def commit_reply(event: Event) -> bool:
    """The store's reply to the new owner's commit (a transfer between two zones)."""
    return (
        event.kind == "reply"
        and event.method == "transfer"
        and event.args[2] != event.args[3]
        and not isinstance(event.result, Failure)
    )


def nth(predicate, n):
    """True for the C{n}th event that matches C{predicate}."""
    seen = []

    def matches(event):
        if predicate(event):
            seen.append(event)
            return len(seen) == n
        return False

    return matches


#: The steps of a handoff, in the order they happen: the name, whether the
#: crash comes before or after the event, and which event.  "crossing" is
#: the old owner's decision, before its offer is on the wire.
STEPS = [
    ("crossing", None, None),
    ("offer_in_flight", "before", of_type(Offer)),
    ("committed", "before", commit_reply),
    ("accept_in_flight", "before", of_type(Accept)),
    ("forward_in_flight", "before", of_type(Forward)),
    ("switch_in_flight", "before", of_type(SwitchRoute)),
    ("straggler_in_flight", "before", lambda: nth(of_type(Forward), 2)),
    ("route_switched", "before", of_type(Switched)),
    ("done_in_flight", "before", of_type(Done)),
    ("after_done", "after", of_type(Done)),
]

VICTIMS = [
    ("old_owner", "A"),
    ("new_owner", "B"),
    ("gateway", GATEWAY),
    # The link of the gateway with a zone is cut and restored: the zone's
    # stream to it and its inputs to the zone.
    ("link_to_old_owner", "link:A"),
    ("link_to_new_owner", "link:B"),
]

#: Short: back while the others still retry; long: after every timeout.
DOWNTIMES = [("short_downtime", 0.1), ("long_downtime", 1.0)]


class CrashMatrixTests(unittest.TestCase):
    """
    One handoff of a player from A to B while it sends an input every
    10 ms; at each step of the handoff, one of A, B and the gateway crashes
    and restarts.  Generated: C{test_crash_<victim>_at_<step>_<downtime>}.
    """

    @defer.inlineCallbacks
    def crash_at(self, step, when, predicate, victim, downtime):
        world = World(self)
        yield world.start()
        fired = []

        def crash(event=None):
            if fired:
                return
            fired.append(event)
            if victim.startswith("link:"):
                world.cut_link(victim.removeprefix("link:"), downtime)
            else:
                world.crash(victim, downtime, drop_outgoing=step == "crossing" and victim == "A")

        if step == "crossing":
            world.cross_at(0.2, then=lambda _: crash())
        else:
            match = predicate() if step == "straggler_in_flight" else predicate
            hooks = world.before if when == "before" else world.after
            hooks.append(lambda event: match(event) and crash(event))
            world.cross_at(0.2)
        world.send_inputs(0.1, 60)
        yield world.run(until=3.0)
        self.assertTrue(fired, f"the handoff never reached {step}")
        yield world.check_settled(self)
        yield world.check_still_works(self)

    @classmethod
    def generate(cls):
        for step, when, predicate in STEPS:
            for victim_name, victim in VICTIMS:
                for downtime_name, downtime in DOWNTIMES:

                    def test(
                        self,
                        step=step,
                        when=when,
                        predicate=predicate,
                        victim=victim,
                        downtime=downtime,
                    ):
                        return self.crash_at(step, when, predicate, victim, downtime)

                    what = "is cut" if victim.startswith("link:") else "crashes"
                    back = "is restored" if victim.startswith("link:") else "restarts"
                    name = f"test_crash_{victim_name}_at_{step}_{downtime_name}"
                    test.__name__ = name
                    test.__doc__ = (
                        f"The {victim_name.replace('_', ' ')} {what} at "
                        f"{step.replace('_', ' ')} and {back} after {downtime} s."
                    )
                    setattr(cls, name, test)


CrashMatrixTests.generate()


# -- the network misbehaving -------------------------------------------------------------


MESSAGES = [Offer, Accept, Forward, SwitchRoute, Switched, Done, Input, GhostUpdate, GhostSync]


#: (misbehaviour, message) that may lose inputs: the message carries some,
#: or the gateway switches so late that B holds nothing any more.
LOSSY = {
    ("drop", Forward),
    ("drop", Input),
    ("delay", Forward),
    ("delay", Input),
    ("delay", SwitchRoute),
}


def misbehave(kind, message_type):
    """
    A network that drops the first message of C{message_type}, or repeats
    or delays (by 1.5 s, past every timeout) every one; others arrive once,
    in order.
    """
    done = []

    def network(world, event):
        if not isinstance(event.message, message_type) or (done and kind == "drop"):
            return [LATENCY]
        done.append(event)
        if kind == "drop":
            return []
        if kind == "duplicate":
            return [LATENCY, LATENCY, 3 * LATENCY]
        return [1.5]

    network.done = done
    return network


class NetworkTests(unittest.TestCase):
    """
    The first message of each kind dropped, or every one repeated or
    delayed by 1.5 s (past every timeout): the handoff still ends with one
    owner and the inputs in order, at most once; no input is lost but in
    the cases of L{LOSSY}.  Generated: C{test_<drop|duplicate|delay>_<message>}.
    """

    @defer.inlineCallbacks
    def misbehaving(self, kind, message_type):
        world = World(self)
        yield world.start()
        world.network = misbehave(kind, message_type)
        world.send_inputs(0.1, 60)
        world.cross_at(0.2)
        yield world.run(until=3.0)
        self.assertTrue(world.network.done, f"no {message_type.__name__} was sent")
        world.network = fifo
        yield world.check_settled(self, lossless=(kind, message_type) not in LOSSY)
        yield world.check_still_works(self)
        return world

    @classmethod
    def generate(cls):
        for kind in ("drop", "duplicate", "delay"):
            for message_type in MESSAGES:

                def test(self, kind=kind, message_type=message_type):
                    return self.misbehaving(kind, message_type)

                name = f"test_{kind}_{message_type.__name__.lower()}"
                test.__name__ = name
                which = "The first" if kind == "drop" else "Every"
                test.__doc__ = f"{which} {message_type.__name__} is {kind}ed."
                setattr(cls, name, test)

    @defer.inlineCallbacks
    def test_ghost_deltas_lost(self):
        """
        The zones send each other deltas once asked; deltas lost (a few in
        a row, at the crossing) are made up by a whole update asked for,
        and the ghosts end as the rules say.
        """
        world = World(self)
        yield world.start()
        lost = []

        def network(world, event):
            message = event.message
            if isinstance(message, GhostUpdate) and message.base is not None:
                if 0.2 <= world.clock.seconds() < 0.35:
                    lost.append(message)
                    return []
            return [LATENCY]

        world.network = network
        world.send_inputs(0.1, 60)
        world.cross_at(0.2)
        yield world.run(until=3.0)
        self.assertTrue(lost)
        updates = [e.message for e in world.delivered if isinstance(e.message, GhostUpdate)]
        asked = [e.message for e in world.delivered if isinstance(e.message, GhostSync)]
        self.assertIn(True, [sync.full for sync in asked])
        self.assertGreater(sum(u.base is not None for u in updates), len(updates) // 2)
        world.network = fifo
        yield world.check_settled(self, lossless=True)
        yield world.check_still_works(self)

    @defer.inlineCallbacks
    def test_delayed_offer_refused_after_undo(self):
        """
        An offer that arrives after the old owner undid the handoff cannot
        commit (the undo fenced it): the new owner refuses it and the entity
        stays where it was.
        """
        world = yield self.misbehaving("delay", Offer)
        owners = [crossing[1] for crossing in world.crossings]
        self.assertEqual(owners[0], "A")
        kinds = [type(e.message) for e in world.delivered if e.kind == "message"]
        self.assertIn(Refuse, kinds)
        refused_at = kinds.index(Refuse)
        self.assertNotIn(Accept, kinds[:refused_at])

    @defer.inlineCallbacks
    def test_late_accept_completed_through_store(self):
        """
        When no accept comes in time, the old owner's fence fails (the new owner
        committed) and it completes the handoff as if accepted.
        """
        world = yield self.misbehaving("delay", Accept)
        switches = [e for e in world.delivered if isinstance(e.message, SwitchRoute)]
        self.assertEqual(switches[0].message.zone, "B")
        fences = [
            e
            for e in world.delivered
            if e.kind == "reply" and e.method == "transfer" and e.args[2] == e.args[3]
        ]
        self.assertTrue(fences)
        self.assertIsInstance(fences[0].result, Failure)
        self.assertTrue(fences[0].result.check(OwnershipConflict))


NetworkTests.generate()


class StreamTests(unittest.TestCase):
    """
    Each zone's messages to the gateway (route switches, L{Moved}) on a
    stream of its own, delayed independently of the bus and of the other
    zone's, and the link of the gateway with a zone cut and restored.
    """

    @defer.inlineCallbacks
    def walk(self, world, crossings=3):
        """The player crosses C{crossings} times while it sends an input every 10 ms."""
        world.send_inputs(0.1, 150)
        for n in range(crossings):
            world.cross_at(0.2 + 0.4 * n)
        yield world.run(until=3.0)
        self.assertGreaterEqual(len([c for c in world.crossings if c[3]]), crossings)

    @defer.inlineCallbacks
    def test_slow_stream_of_one_zone(self):
        """
        A's stream takes 0.15 s more than B's: what B tells the gateway
        overtakes what A told it before.  Nothing is lost, nothing applied
        twice or out of order.
        """
        for slow in ("A", "B"):
            world = World(self)
            world.stream_delay[slow] = 0.15
            yield world.start()
            yield self.walk(world)
            applied = yield world.check_settled(self, lossless=True)
            self.assertEqual(len(applied), 150)
            yield world.check_still_works(self)

    @defer.inlineCallbacks
    def test_link_cut_and_reconnected_between_handoffs(self):
        """
        The link of the gateway with A is cut for 0.3 s while the player is
        A's: the inputs of that time are not sent; the rest are applied,
        once each and in order, through later crossings.
        """
        world = World(self)
        yield world.start()
        world.clock.callLater(0.15, world.cut_link, "A", 0.3)
        yield self.walk(world, crossings=2)
        self.assertTrue(world.lost_at_gateway)
        yield world.check_settled(self, lossless=True)
        yield world.check_still_works(self)


# -- the whole protocol, without trouble ----------------------------------------------------


class HandoffTests(unittest.TestCase):
    """One handoff and repeated ones, when nothing goes wrong; the rules of each side."""

    @defer.inlineCallbacks
    def test_handoff(self):
        """
        The messages of a handoff, in order; the player is then B's, at
        version +1, with its state; every input applied once, in order.
        """
        world = World(self)
        yield world.start()
        world.send_inputs(0.1, 30)
        world.cross_at(0.2)
        yield world.run(until=1.0)
        kinds = [
            type(e.message).__name__
            for e in world.delivered
            if e.kind == "message" and not isinstance(e.message, (Input, GhostUpdate, GhostSync))
        ]
        self.assertEqual(kinds[:4], ["Offer", "Accept", "Forward", "SwitchRoute"])
        control = [kind for kind in kinds if kind != "Forward"]
        self.assertEqual(control, ["Offer", "Accept", "SwitchRoute", "Switched", "Done"])
        self.assertEqual(world.owner(), "B")
        self.assertEqual(world.zone("A").handoff.status(PLAYER_ID), FORWARDING)
        entity = world.zone("B").zone.get(PLAYER_ID)
        self.assertEqual(entity.attrs["gold"], 42)
        self.assertEqual(entity.version, 2)  # 1 at A's start, +1 by the transfer
        applied = yield world.check_settled(self, lossless=True)
        self.assertEqual(applied, list(range(1, 31)))
        # Some inputs were buffered at A during the offer, some forwarded
        # after the real left A, and some held at B: all three paths ran.
        forwards = [e for e in world.delivered if isinstance(e.message, Forward)]
        self.assertGreaterEqual(len(forwards), 2)
        self.assertEqual(world.nodes[GATEWAY].caller.zone, "B")

    @defer.inlineCallbacks
    def test_back_and_forth(self):
        """The player crosses A->B->A->... eight times while sending inputs: nothing lost."""
        world = World(self)
        yield world.start()
        world.send_inputs(0.1, 200, 0.01)
        for i in range(8):
            world.cross_at(0.2 + 0.2 * i)
        yield world.run(until=3.0)
        owners = [(owner, target) for _, owner, target, transfer in world.crossings if transfer]
        self.assertEqual(owners, [("A", "B"), ("B", "A")] * 4)
        yield world.check_settled(self, lossless=True)
        yield world.check_still_works(self)

    @defer.inlineCallbacks
    def test_back_at_once(self):
        """
        Crossing back as soon as the entity may (no pause at all) never
        overlaps two handoffs of one entity, and loses nothing.
        """
        world = World(self)
        yield world.start()
        world.send_inputs(0.1, 150, 0.01)

        def again(_):
            if len(world.crossings) < 12:
                world.cross_at(world.clock.seconds(), then=again)

        world.cross_at(0.2, then=again)
        yield world.run(until=3.0)
        self.assertGreaterEqual(len([c for c in world.crossings if c[3]]), 12)
        yield world.check_settled(self, lossless=True)

    @defer.inlineCallbacks
    def test_one_handoff_at_a_time(self):
        """An offered entity, or one still arriving, cannot be offered again."""
        world = World(self)
        yield world.start()
        node_a, node_b = world.zone("A"), world.zone("B")
        transfer_id = node_a.handoff.cross(PLAYER_ID, "B")
        self.assertIsNotNone(transfer_id)
        self.assertEqual(node_a.handoff.status(PLAYER_ID), OFFERING)
        self.assertIsNone(node_a.handoff.cross(PLAYER_ID, "B"))
        self.assertIsNone(node_a.handoff.cross("nobody", "B"))
        statuses = []
        world.before.append(
            lambda e: (
                isinstance(e.message, Done)
                and statuses.append(
                    (node_b.handoff.status(PLAYER_ID), node_b.handoff.cross(PLAYER_ID, "A"))
                )
            )
        )
        yield world.run(until=1.0)
        self.assertEqual(statuses, [(HOLDING, None)])
        self.assertEqual(node_b.handoff.status(PLAYER_ID), ACTIVE)
        self.assertIsNone(node_b.handoff.cross(PLAYER_ID, "B"))

    @defer.inlineCallbacks
    def test_npc_handoff(self):
        """An entity without a session is handed over without a route switch."""
        world = World(self)
        world.more_entities = ["n1"]
        yield world.start({"A": [player(), Entity("n1", NPC, 5.0, 5.0, attrs={"hp": 3})]})
        world.cross_at(0.1, "n1")
        yield world.run(until=1.0)
        self.assertEqual(world.owner("n1"), "B")
        self.assertEqual(world.zone("B").zone.get("n1").attrs, {"hp": 3})
        self.assertFalse([e for e in world.delivered if isinstance(e.message, SwitchRoute)])
        yield world.check_settled(self)

    @defer.inlineCallbacks
    def test_offer_for_owned_entity_refused(self):
        """
        An offer of an entity the receiver owns by another transfer is
        refused, and so is an offer to another zone; a repeated offer is
        accepted again without a second copy.
        """
        world = World(self)
        yield world.start()
        world.cross_at(0.1)
        yield world.run(until=1.0)
        node_b = world.zone("B")
        record = node_b.zone.get(PLAYER_ID).to_dict()
        offers = [e.message for e in world.delivered if isinstance(e.message, Offer)]
        mark = len(world.delivered)
        # The first goes to the store; the others about the same entity wait for it.
        node_b.receive("A", Offer("other", PLAYER_ID, "A", "B", record))
        node_b.receive("A", Offer("mistaken", PLAYER_ID, "A", "C", record))
        node_b.receive("A", offers[0])
        yield world.run(until=1.5)
        answers = [
            e.message for e in world.delivered[mark:] if isinstance(e.message, (Accept, Refuse))
        ]
        self.assertEqual(
            answers,
            [
                Refuse("other", PLAYER_ID, "B"),
                Refuse("mistaken", PLAYER_ID, None),
                Accept(offers[0].transfer_id, PLAYER_ID, 2),
            ],
        )
        self.assertEqual(len(node_b.zone.entities), 1)
        yield world.check_settled(self)

    @defer.inlineCallbacks
    def test_offer_of_a_crashed_life_fenced(self):
        """
        The old owner crashes with its offer still on the wire, restarts and
        takes the entity back before the offer arrives: the offer cannot
        commit (the restart fenced it), and the entity stays single.
        """
        world = World(self)
        yield world.start()
        world.network = misbehave("delay", Offer)
        world.cross_at(0.2, then=lambda _: world.crash("A", 0.1))
        world.send_inputs(0.1, 60)
        yield world.run(until=3.0)
        self.assertEqual(world.crashes, [("A", 0.2)])
        offers = [e for e in world.delivered if isinstance(e.message, Offer)]
        self.assertEqual(len(offers), 1)
        recovered = [e for e in world.delivered if e.method == "recover_zone" and e.node == "A"]
        self.assertLess(recovered[-1].at, offers[0].at)
        refusals = [e.message for e in world.delivered if isinstance(e.message, Refuse)]
        self.assertEqual(refusals, [Refuse(offers[0].message.transfer_id, PLAYER_ID, "A")])
        self.assertEqual(world.owner(), "A")
        world.network = fifo
        yield world.check_settled(self)
        yield world.check_still_works(self)

    @defer.inlineCallbacks
    def test_handed_back_while_still_offering(self):
        """
        A never hears that its offer committed (every accept is lost and the
        store fails its fences), B gives up waiting for A's Done and hands
        the player back: A takes B's newer state, with the inputs it had
        buffered, and its own stale offer is dropped.
        """
        world = World(self)
        yield world.start()
        world.network = lambda world, event: [] if isinstance(event.message, Accept) else [LATENCY]

        def fence_fails(event):
            is_fence = event.method == "transfer" and event.args[1] == event.args[2] == "A"
            if is_fence and world.clock.seconds() < 1.5:
                return StoreError("unreachable")

        world.store_fault = fence_fails
        world.send_inputs(0.1, 120)
        world.cross_at(0.2, target="B")
        world.cross_at(1.1, target="A")
        yield world.run(until=3.0)
        self.flushLoggedErrors(StoreError)
        self.assertEqual([c[1:3] for c in world.crossings], [("A", "B"), ("B", "A")])
        self.assertEqual(world.owner(), "A")
        self.assertEqual(world.zone("A").zone.get(PLAYER_ID).version, 3)
        world.network = fifo
        yield world.check_settled(self, lossless=True)
        yield world.check_still_works(self)

    @defer.inlineCallbacks
    def test_adopted_on_done(self):
        """
        A zone that the store names owner of an entity it does not hold
        (its commit landed after it restarted) adopts the entity when the
        old owner's Done names it.
        """
        world = World(self)
        yield world.start()
        world.crash("A", 0.3)
        record = player(version=0).to_dict()
        record["version"] = 1
        yield world.store.transfer(PLAYER_ID, "A", "B", "t-late", record)
        self.assertIsNone(world.zone("B").handoff.status(PLAYER_ID))
        world.post("A", 0, "B", Done("t-late", PLAYER_ID))
        yield world.run(until=0.5)
        self.assertEqual(world.zone("B").handoff.status(PLAYER_ID), ACTIVE)
        # The restarted A does not hold it: the gateway's first input there
        # is forwarded and corrects its route (far enough apart that a
        # forwarded input cannot race the next one, sent straight to B).
        world.send_inputs(0.5, 10, 0.05)
        yield world.run(until=1.5)
        self.assertEqual(world.nodes[GATEWAY].caller.zone, "B")
        applied = yield world.check_settled(self, lossless=True)
        self.assertEqual(applied, list(range(1, 11)))

    @defer.inlineCallbacks
    def test_inputs_to_former_owner_after_forwarding_expired(self):
        """
        A gateway with a stale route (it missed the switch) sends to a zone
        that no longer knows the entity: that zone finds the owner in the
        store, forwards the input and corrects the gateway's route.
        """
        world = World(self, forward_ttl=0.2)
        yield world.start()
        self.assertEqual(world.nodes[GATEWAY].caller.zone, "A")
        world.network = misbehave("drop", SwitchRoute)
        world.timeouts["switch_retry"] = 10.0
        for node in world.live_zones():
            node.handoff.switch_retry = 10.0
        world.cross_at(0.1)
        yield world.run(until=1.0)
        self.assertEqual(world.nodes[GATEWAY].caller.zone, "A")
        self.assertIsNone(world.zone("A").handoff.status(PLAYER_ID))
        # Far enough apart that a forwarded input cannot race the next one,
        # sent straight to B once the route is corrected.
        world.send_inputs(1.0, 5, 0.05)
        yield world.run(until=2.0)
        moved = [e.message for e in world.delivered if isinstance(e.message, Moved)]
        self.assertEqual(moved, [Moved(SESSION, PLAYER_ID, "B", 2)])
        self.assertEqual(world.nodes[GATEWAY].caller.zone, "B")
        applied = yield world.check_settled(self, lossless=True)
        self.assertEqual(applied, [1, 2, 3, 4, 5])

    @defer.inlineCallbacks
    def test_orphan_adopted(self):
        """
        A commit that lands after its zone restarted (the request was on its
        way when the zone crashed) leaves the entity owned by a zone that
        did not load it: the zone takes it when the old owner repeats its
        offer (the store answers it idempotently).
        """
        world = World(self)
        yield world.start()
        # B crashes with its commit request on the wire; it is carried out
        # after B's recovery read the store.
        state = {}

        def hold_commit(event):
            if event.kind == "store" and event.method == "transfer" and "request" not in state:
                if event.args[1] != event.args[2]:
                    state["request"] = event
                    world.crash("B", 0.0)

        world.before.append(hold_commit)
        original_deliver = world.deliver

        def deliver(event):
            if event is state.get("request") and "recovered" not in state:
                # Put it back until B has recovered.
                event.at = world.clock.seconds() + 0.05
                world.push(event)
                state["recovered"] = True
                return defer.succeed(None)
            return original_deliver(event)

        world.deliver = deliver
        world.send_inputs(0.1, 40)
        world.cross_at(0.2)
        yield world.run(until=3.0)
        self.assertIn("recovered", state)
        recoveries = [e for e in world.delivered if e.method == "recover_zone" and e.node == "B"]
        self.assertLess(recoveries[-1].at, state["request"].at)
        yield world.check_settled(self)
        yield world.check_still_works(self)


# -- random worlds --------------------------------------------------------------------------


def chaotic(drop=0.0, duplicate=0.0, jitter=0.0):
    """A network that loses, repeats and reorders messages at random."""

    def network(world, event):
        if world.clock.seconds() >= world.calm_after:
            return [LATENCY]
        if world.rng.random() < drop:
            return []
        delays = [LATENCY + world.rng.random() * jitter]
        if world.rng.random() < duplicate:
            delays.append(LATENCY + world.rng.random() * jitter * 3)
        return delays

    return network


class RandomTests(unittest.TestCase):
    """
    Three zones, a player and an NPC crossing at random between them; the
    network and the nodes misbehave at random until C{calm_after}, then the
    world must settle to one copy of each and work again.  One test per seed.
    """

    @defer.inlineCallbacks
    def random_world(self, seed, crashes, **network):
        world = World(self, ("A", "B", "C"), seed=seed)
        world.more_entities = ["n1"]
        world.calm_after = 2.0
        world.network = chaotic(**network)
        yield world.start({"A": [player()], "C": [Entity("n1", NPC, 1.0, 1.0)]})
        rng = world.rng

        def anywhere_else(world, entity_id):
            owner = world.owner(entity_id)
            return rng.choice([name for name in world.zone_names if name != owner])

        for entity_id in (PLAYER_ID, "n1"):
            when = 0.1
            while when < world.calm_after:
                when += rng.uniform(0.03, 0.25)
                world.cross_at(when, entity_id, anywhere_else)
        world.send_inputs(0.1, 180, 0.01)
        for _ in range(crashes):
            victim = rng.choice([*world.zone_names, GATEWAY])
            world.clock.callLater(
                rng.uniform(0.1, world.calm_after - 0.2),
                world.crash,
                victim,
                rng.choice([0.05, 0.2, 0.6]),
            )
        # The crossings still pending after the calm would never end: stop.
        yield world.run(until=world.calm_after + 2.0)
        for call in world.clock.getDelayedCalls():
            if getattr(call.func, "__name__", "") == "attempt":
                call.cancel()
        yield world.run(until=world.calm_after + 4.0)
        yield world.check_settled(
            self,
            lossless=False,
            strict_journal=not (crashes and network.get("duplicate")),
        )
        yield world.check_still_works(self)

    @classmethod
    def generate(cls):
        kinds = {
            "reordered": dict(crashes=0, jitter=0.03),
            "lossy": dict(crashes=0, drop=0.05, duplicate=0.05, jitter=0.03),
            "crashing": dict(crashes=3),
            "everything": dict(crashes=2, drop=0.03, duplicate=0.03, jitter=0.02),
        }
        for kind, arguments in kinds.items():
            for seed in range(6):

                def test(self, seed=seed, arguments=arguments):
                    return self.random_world(seed, **arguments)

                name = f"test_{kind}_seed_{seed}"
                test.__name__ = name
                test.__doc__ = f"A random world ({kind}), seed {seed}."
                setattr(cls, name, test)


RandomTests.generate()


# -- the same on Redis ---------------------------------------------------------------------------


class OnRedis:
    """The worlds of a test class on a private Redis store instead of SQLite."""

    def setUp(self):
        self.redis_server = start_redis(self)
        return super().setUp()

    def make_world_store(self):
        text = '[store]\nbackend = "redis"\n' + redis_config_text(self.redis_server, "world")
        return RedisStore(load_config(self, text))


class RedisCrashMatrixTests(OnRedis, CrashMatrixTests):
    """L{CrashMatrixTests} with the store on Redis."""


class RedisHandoffTests(OnRedis, HandoffTests):
    """L{HandoffTests} with the store on Redis."""


class RedisRandomTests(OnRedis, RandomTests):
    """L{RandomTests} with the store on Redis."""


# -- ghosts ----------------------------------------------------------------------------------


def view(entity_id, version, x=0.0):
    return {
        "id": entity_id,
        "kind": PLAYER,
        "x": x,
        "y": 0.0,
        "name": "",
        "attrs": {},
        "version": version,
    }


def shown(view):
    """What a ghost of C{view} shows: the view without its version."""
    return {k: v for k, v in view.items() if k != "version"}


class GhostTableTests(unittest.TestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.reals: set[str] = set()
        self.table = GhostTable(self.reals.__contains__, self.clock, ttl=1.0)

    def test_replaced_each_tick(self):
        self.table.apply(GhostUpdate("A", 1, (view("e1", 0, 1.0), view("e2", 0))))
        self.table.apply(GhostUpdate("A", 2, (view("e1", 0, 2.0),)))
        self.assertEqual(self.table.views(), [shown(view("e1", 0, 2.0))])
        self.assertNotIn("e2", self.table)

    def test_older_tick_ignored(self):
        self.table.apply(GhostUpdate("A", 5, (view("e1", 0, 5.0),)))
        self.table.apply(GhostUpdate("A", 4, (view("e1", 0, 4.0), view("e2", 0))))
        self.table.apply(GhostUpdate("A", 5, ()))
        self.assertEqual(self.table.views(), [shown(view("e1", 0, 5.0))])

    def test_sources_separate(self):
        """An update replaces only its own zone's ghosts."""
        self.table.apply(GhostUpdate("A", 1, (view("e1", 0),)))
        self.table.apply(GhostUpdate("C", 1, (view("e3", 0),)))
        self.table.apply(GhostUpdate("A", 2, ()))
        self.assertEqual([v["id"] for v in self.table.views()], ["e3"])
        self.assertEqual(list(self.table.sources()), ["C"])

    def test_new_owner_wins(self):
        """
        After a change of owner (a higher version), the old owner's views of
        the entity are ignored, and its updates without it do not drop it.
        """
        self.table.apply(GhostUpdate("A", 1, (view("e1", 3),)))
        self.table.apply(GhostUpdate("B", 1, (view("e1", 4, 9.0),)))
        self.table.apply(GhostUpdate("A", 2, (view("e1", 3, 1.0),)))
        self.assertEqual(self.table.get("e1").source, "B")
        self.assertEqual(self.table.get("e1").view["x"], 9.0)
        self.table.apply(GhostUpdate("A", 3, ()))
        self.assertIn("e1", self.table)
        # Even once B's ghost is gone, A's old version does not come back.
        self.table.apply(GhostUpdate("B", 2, ()))
        self.table.apply(GhostUpdate("A", 4, (view("e1", 3),)))
        self.assertNotIn("e1", self.table)

    def test_never_a_ghost_of_a_real(self):
        self.table.apply(GhostUpdate("A", 1, (view("e1", 0), view("e2", 0))))
        self.reals.add("e1")
        self.table.real_added("e1")
        self.assertNotIn("e1", self.table)
        self.table.apply(GhostUpdate("A", 2, (view("e1", 0), view("e2", 0))))
        self.assertEqual([v["id"] for v in self.table.views()], ["e2"])
        self.table.real_added("unknown")

    def test_views_from(self):
        """
        Each zone's ghosts by id, as the simulation shows them (without
        their versions); the update's own views are left as they came.
        """
        update = GhostUpdate("A", 1, (view("e1", 3, 1.0), view("e2", 0, 2.0)))
        self.table.apply(update)
        self.table.apply(GhostUpdate("C", 1, (view("e3", 0),)))
        self.assertEqual(
            self.table.views_from("A"),
            {"e1": shown(view("e1", 3, 1.0)), "e2": shown(view("e2", 0, 2.0))},
        )
        self.assertEqual(self.table.views_from("C"), {"e3": shown(view("e3", 0))})
        self.assertEqual(self.table.views_from("B"), {})
        self.assertEqual(update.views, (view("e1", 3, 1.0), view("e2", 0, 2.0)))
        # Another table takes the same update alike.
        other = GhostTable(self.reals.__contains__, self.clock)
        other.apply(update)
        self.assertEqual(other.views_from("A"), self.table.views_from("A"))
        # A ghost that moved to another zone is that zone's only.
        self.table.apply(GhostUpdate("C", 2, (view("e3", 0), view("e1", 4, 9.0))))
        self.assertEqual(list(self.table.views_from("A")), ["e2"])
        self.assertEqual(self.table.views_from("C")["e1"], shown(view("e1", 4, 9.0)))
        self.reals.add("e3")
        self.table.real_added("e3")
        self.assertEqual(list(self.table.views_from("C")), ["e1"])

    def test_snapshot_applied_again(self):
        """A snapshot's views carry their versions: applied, they make the same table."""
        self.table.apply(GhostUpdate("A", 4, (view("e1", 3, 1.0), view("e2", 0))))
        self.table.handed_over("B", view("e5", 2, 7.0), 3)
        snapshot = self.table.snapshot()
        self.assertEqual(
            snapshot,
            {
                "A": {"tick": 4, "views": [view("e1", 3, 1.0), view("e2", 0)]},
                "B": {"tick": 0, "views": [view("e5", 2, 7.0)]},
            },
        )
        again = GhostTable(self.reals.__contains__, self.clock)
        for zone, ghosts in snapshot.items():
            again.apply(GhostUpdate(zone, ghosts["tick"], tuple(ghosts["views"])))
        for zone in ("A", "B"):
            self.assertEqual(again.views_from(zone), self.table.views_from(zone))
        self.assertEqual(again.get("e1"), Ghost("A", 3, shown(view("e1", 3, 1.0))))

    def test_version_remembered_after_the_ghost_is_gone(self):
        """
        The version of a ghost held through many updates is remembered
        C{ttl} after its last one, not after its first: an older version
        is refused until then.
        """
        for tick in range(1, 31):
            self.table.apply(GhostUpdate("A", tick, (view("e1", 3, float(tick)),)))
            self.clock.advance(0.05)
            self.table.expire()
        self.table.apply(GhostUpdate("A", 31, ()))
        self.assertNotIn("e1", self.table)
        self.clock.advance(0.9)
        self.table.expire()
        self.table.apply(GhostUpdate("C", 1, (view("e1", 2),)))
        self.assertNotIn("e1", self.table)
        self.clock.advance(0.2)
        self.table.expire()
        self.table.apply(GhostUpdate("C", 2, (view("e1", 2),)))
        self.assertEqual(self.table.get("e1").source, "C")

    def test_silent_zone_expires(self):
        self.table.apply(GhostUpdate("A", 7, (view("e1", 0),)))
        self.clock.advance(0.5)
        self.table.apply(GhostUpdate("B", 1, (view("e2", 0),)))
        self.assertEqual(self.table.expire(), [])
        self.clock.advance(0.6)
        self.assertEqual(self.table.expire(), ["e1"])
        self.assertEqual([v["id"] for v in self.table.views()], ["e2"])
        # A restarted zone counting from 0 again is heard.
        self.table.apply(GhostUpdate("A", 1, (view("e1", 1),)))
        self.assertIn("e1", self.table)

    def test_handed_over_kept_until_the_new_owner_holds_it(self):
        """
        A real handed over to B stays as B's ghost through B's updates sent
        before B owned it (up to the tick its Accept named), whatever their
        order; B's next update replaces it.
        """
        self.table.apply(GhostUpdate("B", 5, (view("e2", 0),)))
        self.table.handed_over("B", view("e1", 4, 3.0), 7)
        self.assertEqual(self.table.get("e1"), Ghost("B", 4, shown(view("e1", 4, 3.0))))
        self.table.apply(GhostUpdate("B", 7, (view("e2", 0),)))
        self.table.apply(GhostUpdate("B", 6, ()))
        self.assertEqual([v["id"] for v in self.table.views()], ["e1", "e2"])
        self.table.apply(GhostUpdate("B", 8, (view("e1", 4, 3.5),)))
        self.assertEqual(self.table.get("e1").view["x"], 3.5)
        # From then on, B's updates are as any: without it, it is gone.
        self.table.apply(GhostUpdate("B", 9, ()))
        self.assertNotIn("e1", self.table)

    def test_handed_over_gone_from_the_first_update_after(self):
        """B's first update after its Accept does not hold it (it walked away): it leaves."""
        self.table.handed_over("B", view("e1", 4), 7)
        self.table.apply(GhostUpdate("B", 8, (view("e2", 0),)))
        self.assertEqual([v["id"] for v in self.table.views()], ["e2"])
        # Nor does an older update bring it back.
        self.table.apply(GhostUpdate("B", 6, (view("e1", 4),)))
        self.assertNotIn("e1", self.table)

    def test_handed_over_without_a_tick(self):
        """Not told by an Accept (settled through the store): the next update replaces it."""
        self.table.apply(GhostUpdate("B", 5, ()))
        self.table.handed_over("B", view("e1", 4))
        self.table.apply(GhostUpdate("B", 5, ()))
        self.assertIn("e1", self.table)
        self.table.apply(GhostUpdate("B", 6, ()))
        self.assertNotIn("e1", self.table)

    def test_handed_over_to_a_silent_zone_expires(self):
        self.table.handed_over("B", view("e1", 4), 100)
        self.clock.advance(0.5)
        self.assertEqual(self.table.expire(), [])
        self.clock.advance(0.5)
        self.assertEqual(self.table.expire(), ["e1"])
        self.table.apply(GhostUpdate("B", 1, ()))
        self.assertNotIn("e1", self.table)

    def test_handed_over_keeps_the_rules(self):
        """Never a ghost of a real here, never an older version; a real added drops it."""
        self.reals.add("e1")
        self.table.handed_over("B", view("e1", 4), 7)
        self.assertNotIn("e1", self.table)
        self.reals.clear()
        self.table.apply(GhostUpdate("C", 1, (view("e1", 5),)))
        self.table.handed_over("B", view("e1", 4), 7)
        self.assertEqual(self.table.get("e1").source, "C")
        self.table.handed_over("B", view("e1", 6), 7)
        self.assertEqual(self.table.get("e1").source, "B")
        self.table.apply(GhostUpdate("C", 2, ()))
        self.assertIn("e1", self.table)
        self.reals.add("e1")
        self.table.real_added("e1")
        self.assertNotIn("e1", self.table)
        self.reals.clear()
        self.table.apply(GhostUpdate("B", 3, ()))
        self.assertNotIn("e1", self.table)

    def test_ghost_view(self):
        entity = player()
        entity.version = 7
        self.assertEqual(ghost_view(entity), {**entity.view(), "version": 7})


# -- checkpoints ------------------------------------------------------------------------------


class CheckpointTests(unittest.TestCase):
    @defer.inlineCallbacks
    def setUp(self):
        self.store = SQLiteStore(os.path.join(self.mktemp(), "store.sqlite3"))
        yield self.store.start()
        self.addCleanup(self.store.stop)
        self.clock = task.Clock()

    @defer.inlineCallbacks
    def test_periodic(self):
        """Every interval, the records are written; a restart gets them back."""
        hero = player()
        records = [hero.to_dict()]
        checkpointer = Checkpointer("A", self.store, lambda: records, self.clock, 0.5)
        checkpointer.start()
        self.addCleanup(checkpointer.stop)
        self.clock.advance(0.4)
        yield checkpointer.checkpoint()  # nothing in flight: written now
        hero.x = 7.0
        records[:] = [hero.to_dict()]
        self.clock.advance(0.1)
        yield self.wait_for(checkpointer)
        restored = yield restore_zone(self.store, "A")
        self.assertEqual(
            [(e.id, e.x, e.attrs, e.version) for e in restored], [(PLAYER_ID, 7.0, {"gold": 42}, 1)]
        )

    @defer.inlineCallbacks
    def wait_for(self, checkpointer):
        while checkpointer._in_flight is not None:
            yield checkpointer._in_flight

    @defer.inlineCallbacks
    def test_one_at_a_time(self):
        records = [player().to_dict()]
        checkpointer = Checkpointer("A", self.store, lambda: records, self.clock, 1.0)
        first = checkpointer.checkpoint()
        self.assertIsNone((yield checkpointer.checkpoint()))
        self.assertEqual((yield first), [])

    @defer.inlineCallbacks
    def test_refused_after_handoff(self):
        """A checkpoint of an entity handed over meanwhile is refused: no undoing a handoff."""
        records = [player().to_dict()]
        checkpointer = Checkpointer("A", self.store, lambda: records, self.clock, 1.0)
        yield checkpointer.checkpoint()
        yield self.store.transfer(PLAYER_ID, "A", "B", "t1", records[0])
        self.assertEqual((yield checkpointer.checkpoint()), [PLAYER_ID])
        self.assertEqual((yield restore_zone(self.store, "A")), [])
        self.assertEqual([e.id for e in (yield restore_zone(self.store, "B"))], [PLAYER_ID])

    def test_bad_interval(self):
        self.assertRaises(ValueError, Checkpointer, "A", self.store, list, self.clock, 0)

    @defer.inlineCallbacks
    def test_errors_logged_loop_goes_on(self):
        calls = []

        class Failing:
            def checkpoint(self, zone, records):
                calls.append(zone)
                return defer.fail(OSError("disk on fire"))

        checkpointer = Checkpointer("A", Failing(), list, self.clock, 1.0)
        checkpointer.start()
        self.addCleanup(checkpointer.stop)
        self.clock.advance(1.0)
        self.clock.advance(1.0)
        self.assertEqual(calls, ["A", "A"])
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 2)
        yield checkpointer.checkpoint().addErrback(lambda f: f.trap(OSError))

    @defer.inlineCallbacks
    def test_restart_restores_its_region(self):
        """
        A zone restarted takes back exactly what the store says it owns: as
        of its last checkpoint, plus what arrived by a handoff since, minus
        what left.
        """
        world = World(self)
        world.more_entities = ["n1"]
        yield world.start({"A": [player(), Entity("n1", NPC, 1.0, 1.0)], "B": []})
        world.send_inputs(0.1, 20)
        yield world.run(until=0.5)  # a checkpoint at 0.25 (about 13 inputs), one at 0.5
        world.crash("A", 0.1)
        yield world.run(until=1.0)
        entity = world.zone("A").zone.get(PLAYER_ID)
        stored = yield self.store_of(world).load_entity(PLAYER_ID)
        self.assertEqual(entity.attrs["applied"], stored.data["attrs"]["applied"])
        self.assertEqual(entity.attrs["applied"], list(range(1, len(entity.attrs["applied"]) + 1)))
        self.assertGreater(len(entity.attrs["applied"]), 10)
        world.cross_at(1.0, "n1")
        yield world.run(until=1.5)
        world.crash("A", 0.1)
        world.crash("B", 0.1)
        yield world.run(until=2.0)
        self.assertEqual(world.zone("A").handoff.reals(), [PLAYER_ID])
        self.assertEqual(world.zone("B").handoff.reals(), ["n1"])
        yield world.check_settled(self, lossless=False)

    def store_of(self, world):
        return world.store


class EnterLeaveTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_enter_and_leave(self):
        """An entity entering is checkpointed before it is simulated; leaving deletes it."""
        world = World(self)
        yield world.start({"A": []})
        node_a, node_b = world.zone("A"), world.zone("B")
        results = []
        node_a.handoff.enter(player()).addCallback(results.append)
        node_b.handoff.enter(player()).addCallback(results.append)
        self.assertEqual(node_a.handoff.reals(), [])
        yield world.run(until=0.2)
        self.assertEqual(results, [True, False])
        self.assertEqual((yield world.store.load_entity(PLAYER_ID)).owner, "A")
        self.assertEqual(node_a.handoff.reals(), [PLAYER_ID])
        self.assertFalse((yield node_a.handoff.enter(player())))
        node_a.handoff.leave(PLAYER_ID).addCallback(results.append)
        yield world.run(until=0.4)
        self.assertEqual(results, [True, False, True])
        self.assertIsNone((yield world.store.load_entity(PLAYER_ID)))
        self.assertEqual(node_a.handoff.reals(), [])
        self.assertFalse((yield node_b.handoff.leave(PLAYER_ID)))


class BusMessageTests(unittest.TestCase):
    """The handoff's and the ghosts' messages over the bus, through msgpack."""

    def test_round_trip(self):
        view = {"id": "c-1", "kind": "player", "x": 1.5, "y": 2.0, "attrs": {"hp": 3}}
        sent = [
            Offer("t1", "c-1", "r0c0", "r0c1", {"id": "c-1", "x": 1.5, "attrs": {"hp": 3}}),
            Forward("t1", "c-1", ((4, {"x": 1.0, "y": 2.0}), (5, {"x": 1.5, "y": 2.0})), 2),
            Input("s-1", "c-1", 6, {"x": 2.0, "y": 2.0}),
            SwitchRoute("t1", "s-1", "c-1", "r0c1", 7),
            GhostUpdate("r0c0", 12, ({**view, "version": 2},)),
        ]
        for message in sent:
            body = unpack(pack(messages.encode(message, "r0c0")))
            self.assertEqual(messages.decode(body), ("r0c0", message))
