"""
The zone service: one region of the world, simulated and wired.

A L{ZoneService} owns a L{ZoneSimulation} of its region, the region's side
of every handoff (L{ZoneHandoff}), the ghosts its neighbours mirror into it
(L{GhostTable}), periodic checkpoints (L{Checkpointer}) and a L{Ticker} at
C{[world] tick_rate}.  Players reach it through the gateway's zone route
(L{mmo.zone.route.ZoneRoute}) with C{zone.enter}, C{zone.move} and
C{zone.leave}; it pushes C{world.update} and C{world.correct} back.

Everything between processes travels on the bus (L{mmo.zone.messages}): a
zone hears handoffs, forwarded inputs and ghosts on C{zone:REGION}, and
sends each tick's pushes as one message per gateway (C{{"batch": {session:
[[kind, fields], ...]}}}) on the gateway's channel, together with the
handoff's route switches.  See C{docs/world.md}.
"""

from __future__ import annotations

import math
import uuid

from twisted.internet import defer, task
from twisted.logger import Logger

from mmo.game.service import SESSION_UPDATE, ZONE_REDIRECT, Caller, GameService, gateway_channel
from mmo.wire import codes
from mmo.wire.codes import WireError
from mmo.zone import messages
from mmo.zone.checkpoint import Checkpointer
from mmo.zone.entity import PLAYER, WORLD_KEY, Entity, saved_position
from mmo.zone.ghosts import GhostTable, GhostUpdate
from mmo.zone.handoff import Input, Offer, ZoneHandoff
from mmo.zone.simulation import Input as Move
from mmo.zone.simulation import ZoneSimulation
from mmo.zone.ticker import Ticker, nearest_rank
from mmo.zone.world import WorldMap

#: Seconds between checkpoints of a zone's entities (what a crash may lose).
CHECKPOINT_INTERVAL = 5.0

#: The key of the messages replacing a zone's process, on C{zone:REGION}:
#: C{{"takeover": {"step": "marker" | "handed" | "aborted" | "event", "token": ...}}}.
TAKEOVER = "takeover"

#: The zone's modes: serving (the usual), standby (a new process waiting
#: for the old one's marker), handing (the old one settling its handoffs
#: before its marker), handed (the old one, after its marker: it serves
#: nothing of the region any more).
SERVING, STANDBY, HANDING, HANDED = "serving", "standby", "handing", "handed"

#: Seconds the old process waits for its handoffs in flight to settle
#: before its marker, and for its marker to come back.
SETTLE_TIMEOUT = 2.0
MARKER_TIMEOUT = 5.0


class TakeoverAborted(Exception):
    """The old process could not hand its zone over: it goes on serving it."""


def takeover_channel(process: str) -> str:
    """The bus channel the old process of C{process} says C{released} on."""
    return f"takeover:{process}"


class BusLink:
    """
    The handoff's L{mmo.zone.handoff.Link} over the bus: a message to a
    zone goes on its L{messages.zone_channel}, anything else to the gateway
    of that name.  One bus keeps the order of one sender's messages.
    """

    log = Logger()

    def __init__(self, bus, name: str, zones, seen=None):
        self.bus = bus
        self.name = name
        self.zones = frozenset(zones)
        #: C{seen(entity_id)}: the ids a player's client has in view, sent
        #: along with an L{Offer} (as its C{"seen"}) so that the new zone
        #: goes on with the same view (nothing enters again).
        self.seen = seen

    def channel(self, to: str) -> str:
        return messages.zone_channel(to) if to in self.zones else gateway_channel(to)

    def send(self, to: str, message) -> None:
        body = messages.encode(self.name, message)
        if isinstance(message, Offer) and self.seen is not None:
            body[messages.KEY]["seen"] = self.seen(message.entity_id)
        d = defer.maybeDeferred(self.bus.publish, self.channel(to), body)
        d.addErrback(
            lambda failure: self.log.failure(
                "zone {zone}: sending {message!r} to {to} failed",
                failure,
                zone=self.name,
                message=message,
                to=to,
            )
        )


class _State:
    """
    The simulation as the handoff's L{mmo.zone.handoff.ZoneState}.

    The handoff applies an input I{now} and then sets the entity's
    C{last_input} itself, so inputs are applied here at once with the
    simulation's own movement rules (L{ZoneSimulation.apply_input}), never
    queued for the tick (where the simulation would skip them, their
    C{seq} being counted already).  Refused ones are noted, for a
    C{world.correct} with the tick's pushes.
    """

    def __init__(self, simulation: ZoneSimulation):
        self.simulation = simulation
        self.corrected: set[str] = set()
        #: Entity id -> the view its client has, from the offer handing it here.
        self.arriving: dict[str, list[str]] = {}

    def add(self, entity: Entity) -> None:
        self.simulation.add(entity, seen=self.arriving.pop(entity.id, None))

    def remove(self, entity_id: str) -> Entity | None:
        self.corrected.discard(entity_id)
        return self.simulation.remove(entity_id)

    def get(self, entity_id: str) -> Entity | None:
        return self.simulation.get(entity_id)

    def freeze(self, entity_id: str) -> None:
        self.simulation.freeze(entity_id)

    def thaw(self, entity_id: str) -> None:
        self.simulation.thaw(entity_id)

    def apply_input(self, entity: Entity, seq: int, payload) -> None:
        move = _move(seq, payload)
        if move is None or not self.simulation.apply_input(entity, move):
            self.corrected.add(entity.id)


def _move(seq: int, payload) -> Move | None:
    """The simulation's input from a C{zone.move}'s payload, or C{None} if malformed."""
    if not isinstance(payload, dict):
        return None
    x, y = payload.get("x"), payload.get("y")
    for value in (x, y):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        if not math.isfinite(value):
            return None
    return Move(seq, float(x), float(y), payload.get("extra"))


class ZoneService(GameService):
    """
    One region of the world (see the module docstring).

    @ivar name: The region's name: the zone's name for the store, the bus
        and the handoffs.
    @ivar simulation: The L{ZoneSimulation} (C{simulation_class}).
    @ivar handoff: The L{ZoneHandoff}.
    @ivar ghosts: The L{GhostTable}.
    @ivar ticker: The L{Ticker} (running between L{start} and L{stop}).
    """

    kind = "zone"
    prefixes = ("zone.",)
    #: The simulation class: a game's subclass of L{ZoneSimulation}.
    simulation_class = ZoneSimulation
    checkpoint_interval = CHECKPOINT_INTERVAL

    def __init__(self, config, store, bus, reactor, region_name: str, rng=None):
        super().__init__(config, store, bus, reactor)
        world = config.world
        self.map = WorldMap.from_config(world)
        self.name = region_name
        self.simulation = self.simulation_class(self.map, region_name, world, reactor, rng=rng)
        self.state = _State(self.simulation)
        self.link = BusLink(bus, region_name, list(self.map.regions), self.simulation.seen)
        self.ghosts = GhostTable(self._is_real, reactor)
        self.handoff = ZoneHandoff(
            region_name,
            store,
            self.state,
            self.link,
            reactor,
            on_real_added=self.ghosts.real_added,
        )
        self.checkpointer = Checkpointer(
            region_name, store, self.handoff.checkpoint_records, reactor, self.checkpoint_interval
        )
        self.ticker = Ticker(reactor, world.tick_rate, self.tick)
        self._subscription = None
        self._ghost_tick = 0
        #: L{SERVING}, L{STANDBY}, L{HANDING} or L{HANDED}.
        self.mode = SERVING
        #: When the last tick ran (the clock's time), for the takeover's pause.
        self.last_tick_at: float | None = None
        self._token: str | None = None
        #: Standby: the messages after our predecessor's marker, in order.
        self._standby: list | None = None
        self._marker: defer.Deferred | None = None
        #: Handed: what comes for the region before the successor was told
        #: to go on (published after the C{handed} message), else C{None}.
        self._relay: list | None = None
        #: Standby: fires when this zone took over (C{handed} was handled).
        self.took_over: defer.Deferred | None = None
        #: Milliseconds between the old process's last tick and our first.
        self.takeover_pause_ms: float | None = None

    def _is_real(self, entity_id: str) -> bool:
        return self.handoff.is_real(entity_id) or entity_id in self.simulation.reals

    # -- life cycle ------------------------------------------------------------------

    async def start(self, standby: bool = False) -> None:
        """
        Subscribe and serve.  With C{standby}, only subscribe: the zone
        waits for the process it replaces to hand it over (L{hand_over} on
        that side), or for L{start_plain} if there is none.
        """
        self._subscription = await self.bus.subscribe(
            messages.zone_channel(self.name), self.zoneMessage
        )
        if standby:
            self.mode = STANDBY
            self.took_over = defer.Deferred()
            return
        await self.start_plain()

    async def start_plain(self) -> None:
        """Recover the zone's entities from the store (fencing them) and start ticking."""
        self.mode = SERVING
        self._standby = None
        await self.handoff.recover()
        self.simulation.spawn_npcs()
        self.checkpointer.start()
        self.ticker.start()
        self.log.info(
            "zone {zone}: {reals} entities, ticking at {rate:g}/s",
            zone=self.name,
            reals=len(self.simulation.reals),
            rate=self.ticker.rate,
        )

    async def stop(self) -> None:
        self.ticker.stop()
        self.checkpointer.stop()
        if self._subscription is not None:
            await self._subscription.cancel()
            self._subscription = None
        if self.mode == SERVING or self.mode == HANDING:
            try:
                await self.checkpointer.checkpoint()
            except Exception:
                self.log.failure("zone {zone}: last checkpoint failed", zone=self.name)
        self.handoff.stop()

    # -- the bus ---------------------------------------------------------------------

    def zoneMessage(self, message) -> None:
        """
        A message on this zone's channel: a handoff message, a neighbour's
        ghosts, or a step of replacing the zone's process.
        """
        if isinstance(message, dict) and isinstance(message.get(TAKEOVER), dict):
            body = message[TAKEOVER]
            if body.get("step") != "event":
                self._takeover_step(body)
                return
        if self.mode == STANDBY:
            if self._standby is not None:
                self._standby.append(message)
            return
        if self.mode == HANDED:
            return
        self._dispatch(message)

    def _dispatch(self, message) -> None:
        if isinstance(message, dict) and isinstance(message.get(TAKEOVER), dict):
            # A session event the predecessor received after its marker.
            body = message[TAKEOVER]
            try:
                caller = Caller.from_dict(body["caller"])
            except Exception:
                return
            d = defer.ensureDeferred(self.session_event(caller, body.get("event")))
            d.addErrback(
                lambda f: self.log.failure("zone {zone}: relayed event", f, zone=self.name)
            )
            return
        try:
            sender, body = messages.decode(
                message.get(messages.KEY) if isinstance(message, dict) else None
            )
        except ValueError as e:
            self.log.warn("zone {zone}: dropped a message: {why}", zone=self.name, why=str(e))
            return
        if isinstance(body, GhostUpdate):
            if body.zone != self.name:
                self.ghosts.apply(body)
        else:
            if isinstance(body, Offer):
                seen = message[messages.KEY].get("seen")
                if isinstance(seen, list) and all(isinstance(i, str) for i in seen):
                    self.state.arriving[body.entity_id] = seen
                else:
                    self.state.arriving.pop(body.entity_id, None)
            self.handoff.receive(sender, body)

    async def handle(self, caller: Caller, kind: str, message: dict) -> dict | None:
        """
        Messages, as usual; but a zone whose process handed it over (or
        not taken over yet) answers C{zone.enter} and C{zone.leave} with
        C{unavailable} ("retry": the gateway's link moves to the new process
        in a moment), and passes C{zone.move} on to its successor.
        """
        if self.mode in (HANDED, STANDBY) and kind != "zone.move":
            raise WireError(
                codes.UNAVAILABLE, f"zone {self.name} is moving to a new process; retry"
            )
        return await super().handle(caller, kind, message)

    # -- replacing the process (docs/world.md, "Replacing a zone process") -----------

    def _relay_message(self, message: dict) -> None:
        """After the marker: a message for the successor, on the zone's channel, in order."""
        if self._relay is not None:
            self._relay.append(message)
        else:
            self._publish(messages.zone_channel(self.name), message)

    async def hand_over(
        self, token: str, settle: float = SETTLE_TIMEOUT, marker_timeout: float = MARKER_TIMEOUT
    ) -> None:
        """
        The old process's side: hand the zone over to the process waiting
        in standby with C{token}.  No new crossings; the handoffs in flight
        settle (at most C{settle} seconds); then the marker goes on the
        zone's channel.  When it comes back (everything before it was
        handled here), the ticks stop, every real is written to the store
        and C{handed} tells the successor what it needs to go on; inputs
        that still come here follow it on the channel.

        @raise TakeoverAborted: The marker did not come back in
            C{marker_timeout} seconds, or the last checkpoint failed: the
            zone goes on serving here (and the successor is told C{aborted}).
        """
        if self.mode != SERVING:
            raise TakeoverAborted(f"zone {self.name} is {self.mode}")
        self.mode, self._token = HANDING, token
        waited = 0.0
        while self.handoff.in_flight() and waited < settle:
            await task.deferLater(self.reactor, 0.05, lambda: None)
            waited += 0.05
        self._marker = defer.Deferred()
        self._publish(
            messages.zone_channel(self.name), {TAKEOVER: {"step": "marker", "token": token}}
        )
        marker = self._marker.addTimeout(marker_timeout, self.reactor)
        try:
            await marker
        except defer.TimeoutError:
            self._abort("the marker did not come back")
            raise TakeoverAborted(f"zone {self.name}: marker lost") from None
        # From here on (our own marker handled, ticks stopped) nothing is ours.
        try:
            refused = await self.store.checkpoint(self.name, self.handoff.final_records())
        except Exception as e:
            self.log.failure("zone {zone}: final checkpoint failed", zone=self.name)
            self._abort(f"final checkpoint failed: {e}")
            raise TakeoverAborted(f"zone {self.name}: final checkpoint failed") from None
        sim = self.simulation
        players = [e for e in sim.reals.values() if e.session is not None]
        handed = {
            "step": "handed",
            "token": token,
            "tick": sim.tick_count,
            "ghost_tick": self._ghost_tick,
            "last_tick": self.last_tick_at,
            "seen": {e.id: sim.seen(e.id) for e in players},
            "npcs": [e.to_dict() for e in sim.reals.values() if not self.handoff.is_real(e.id)],
            "npc_serial": sim._npc_serial,
            "ghosts": self.ghosts.snapshot(),
            "refused": list(refused or ()),
        }
        channel = messages.zone_channel(self.name)
        self._publish(channel, {TAKEOVER: handed})
        for message in self.handoff.pending_inputs():
            entity = sim.get(message.entity_id)
            gateway = entity.gateway if entity is not None and entity.gateway else ""
            self._publish(channel, messages.encode(gateway, message))
        relay, self._relay = self._relay or [], None
        for message in relay:
            self._publish(channel, message)
        self.handoff.stop()
        self.log.info(
            "zone {zone}: handed over ({reals} entities, tick {tick})",
            zone=self.name,
            reals=len(sim.reals),
            tick=sim.tick_count,
        )

    def _abort(self, why: str) -> None:
        """The takeover failed here: serve on, and tell the successor."""
        self.log.warn("zone {zone}: handover aborted: {why}", zone=self.name, why=why)
        was_handed = self.mode == HANDED
        self.mode = SERVING
        relay, self._relay = self._relay or [], None
        self._publish(
            messages.zone_channel(self.name),
            {TAKEOVER: {"step": "aborted", "token": self._token}},
        )
        if was_handed:
            self.checkpointer.start()
            self.ticker.start()
        for message in relay:
            if TAKEOVER in message:
                self._dispatch(message)
            else:
                sender, body = messages.decode(message[messages.KEY])
                self.handoff.receive(sender, body)

    def _takeover_step(self, body: dict) -> None:
        step, token = body.get("step"), body.get("token")
        if step == "marker":
            if self.mode == HANDING and token == self._token and self._marker is not None:
                # Our own marker: everything before it was handled here.
                self.mode = HANDED
                self._relay = []
                self.ticker.stop()
                self.checkpointer.stop()
                marker, self._marker = self._marker, None
                marker.callback(None)
            elif self.mode == STANDBY and token == self._token:
                # Our predecessor's: what follows is ours.
                self._standby = []
        elif step == "handed" and self.mode == STANDBY and token == self._token:
            d = defer.ensureDeferred(self._take_over(body))
            d.addErrback(lambda f: self.log.failure("zone {zone}: takeover", f, zone=self.name))
        elif step == "aborted" and self.mode == STANDBY and token == self._token:
            self._standby = None
            if self.took_over is not None and not self.took_over.called:
                self.took_over.errback(TakeoverAborted(f"zone {self.name}: aborted"))

    def expect(self, token: str) -> None:
        """Standby: the takeover we asked for has C{token} (before asking for it)."""
        self._token = token

    async def _take_over(self, handed: dict) -> None:
        """
        The new process's side, on C{handed}: recover the zone from the
        store (fencing what the old process may still have in flight), with
        its players' views, NPCs, ghosts and tick count, then the messages
        that came after the marker, and start ticking.
        """
        sim = self.simulation
        self.mode = SERVING
        seen = handed.get("seen")
        if isinstance(seen, dict):
            self.state.arriving.update(
                {k: v for k, v in seen.items() if isinstance(v, list) and isinstance(k, str)}
            )
        sim.tick_count = int(handed.get("tick") or 0)
        self._ghost_tick = int(handed.get("ghost_tick") or 0)
        for data in handed.get("npcs") or ():
            sim.add(Entity.from_dict(data))
        sim._npc_serial = max(sim._npc_serial, int(handed.get("npc_serial") or 0))
        for source, ghosts in (handed.get("ghosts") or {}).items():
            views = tuple(ghosts.get("views") or ())
            self.ghosts.apply(GhostUpdate(source, int(ghosts.get("tick") or 0), views))
        buffered, self._standby = self._standby or [], None
        for message in buffered:
            # Handoff messages wait in the handoff until it recovered.
            self._dispatch(message)
        await self.handoff.recover()
        self.state.arriving.clear()
        self.checkpointer.start()
        self.ticker.start()
        last = handed.get("last_tick")
        pause = (self.last_tick_at - last) * 1000 if isinstance(last, (int, float)) else None
        self.takeover_pause_ms = pause
        self.log.info(
            "zone {zone}: took over {reals} entities at tick {tick} (pause {pause} ms)",
            zone=self.name,
            reals=len(sim.reals),
            tick=sim.tick_count,
            pause=f"{pause:.0f}" if pause is not None else "?",
        )
        if self.took_over is not None and not self.took_over.called:
            self.took_over.callback(None)

    # -- the tick --------------------------------------------------------------------

    def tick(self) -> None:
        """One tick: ghosts in, simulate, pushes and ghosts out, crossings handed off."""
        self.ghosts.expire()
        by_source: dict[str, list[dict]] = {r.name: [] for r in self.simulation.neighbours}
        for view in self.ghosts.views():
            ghost = self.ghosts.get(view["id"])
            if ghost.source in by_source:
                by_source[ghost.source].append({k: v for k, v in view.items() if k != "version"})
        for source, views in by_source.items():
            self.simulation.set_ghosts(source, views)

        result = self.simulation.tick()
        self.last_tick_at = result.time

        pushes = result.pushes
        corrected, self.state.corrected = self.state.corrected, set()
        for entity_id in sorted(corrected):
            entity = self.simulation.get(entity_id)
            if entity is None or entity.session is None or entity.gateway is None:
                continue
            events = pushes.setdefault(entity.gateway, {}).setdefault(entity.session, [])
            if not (events and events[0][0] == "world.correct"):
                correction = {"x": entity.x, "y": entity.y, "input": entity.last_input}
                events.insert(0, ("world.correct", correction))
        for gateway, by_session in pushes.items():
            if gateway is None:
                continue
            batch = {
                session: [[kind, fields] for kind, fields in events]
                for session, events in by_session.items()
                if session is not None
            }
            if batch:
                self._publish(gateway_channel(gateway), {"batch": batch})

        # Tick numbers of ghost updates keep increasing across a restart.
        self._ghost_tick = max(self._ghost_tick + 1, int(result.time * 1000))
        for region, views in result.ghost_views.items():
            versioned = []
            for view in views:
                real = self.simulation.get(view["id"])
                versioned.append({**view, "version": real.version if real is not None else 0})
            update = GhostUpdate(self.name, self._ghost_tick, tuple(versioned))
            self._publish(messages.zone_channel(region), messages.encode(self.name, update))

        if self.mode == SERVING:
            # Handing the process over: no new crossings (reported again later).
            for entity, region in result.crossings:
                self.handoff.cross(entity.id, region.name)

    def _publish(self, channel: str, message: dict) -> None:
        d = defer.maybeDeferred(self.bus.publish, channel, message)
        d.addErrback(lambda f: self.log.failure("zone {zone}: publish failed", f, zone=self.name))

    # -- players ---------------------------------------------------------------------

    def _player_id(self, caller: Caller) -> str:
        if caller.character_id is None:
            raise WireError(codes.NOT_ALLOWED, "choose a character first")
        return caller.character_id

    def _reply(self, entity: Entity, **extra) -> dict:
        return {
            "entity": entity.id,
            "zone": self.name,
            "x": entity.x,
            "y": entity.y,
            "input": entity.last_input,
            "tick": self.simulation.tick_count,
            **extra,
        }

    async def on_zone_enter(self, caller: Caller, message: dict) -> dict:
        """
        Put the caller's character in the world, here: the real it has here
        already (a new session of it takes it over), else its checkpoint
        from the store, else a new entity where the character last left the
        world (L{WORLD_KEY} of its data, with the attrs it had then) if that
        is on the map, else at C{[world] spawn} (with the saved attrs all
        the same).  A saved position in
        another region is redirected to that region's zone.
        """
        entity_id = self._player_id(caller)
        entity = self.simulation.get(entity_id) if self.handoff.is_real(entity_id) else None
        if entity is None:
            stored = await self.store.load_entity(entity_id)
            if stored is not None and stored.owner != self.name:
                # Another zone owns it: the gateway's zone route goes there.
                return {ZONE_REDIRECT: stored.owner}
            if stored is not None:
                entity = Entity.from_dict(stored.data)
                entity.version = stored.version
            else:
                x, y = self.config.world.spawn
                attrs = None
                # A new entity starts with its character's data as its
                # attributes (the game's: hp, class...), or with the attrs
                # it had when it last left the world, where it was then;
                # from then on the entity's own attrs travel with it
                # (handoffs, checkpoints).
                character = await self.store.character_by_id(entity_id)
                data = character.data if character is not None else None
                if isinstance(data, dict):
                    attrs = {k: v for k, v in data.items() if k != WORLD_KEY}
                saved = saved_position(data)
                if saved is not None:
                    region = self.map.region_at(saved[0], saved[1])
                    if region is not None and region.name != self.name:
                        return {ZONE_REDIRECT: region.name}
                    if region is not None:
                        x, y = saved[0], saved[1]
                    if saved[2] is not None:
                        attrs = saved[2]
                entity = Entity(entity_id, PLAYER, x, y, name=caller.display_name)
                if attrs is not None:
                    entity.attrs = attrs
            entity.session, entity.gateway = caller.session, caller.gateway
            if not await self.handoff.enter(entity):
                if not self.handoff.is_real(entity_id):
                    raise WireError(codes.UNAVAILABLE, "your character is busy; retry")
            entity = self.simulation.get(entity_id)
        elif entity.session != caller.session:
            # Taken over by a new session: its client starts with an empty view.
            self.simulation.new_client(entity_id)
        entity.session, entity.gateway = caller.session, caller.gateway
        self.log.info(
            "zone {zone}: {name} entered at ({x:.1f}, {y:.1f})",
            zone=self.name,
            name=caller.display_name,
            x=entity.x,
            y=entity.y,
        )
        return self._reply(entity, **{SESSION_UPDATE: {"zone": self.name}})

    async def on_zone_move(self, caller: Caller, message: dict) -> dict:
        """
        A movement input: through the handoff's gate (which forwards it if
        the entity moved on, and applies it in order, at most once).
        """
        entity_id = self._player_id(caller)
        seq, x, y = message.get("seq"), message.get("x"), message.get("y")
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
            raise WireError(codes.BAD_REQUEST, "seq must be a non-negative integer")
        payload = {"x": x, "y": y}
        if _move(seq, payload) is None:
            raise WireError(codes.BAD_REQUEST, "x and y must be finite numbers")
        if self.handoff.status(entity_id) is None and caller.zone is None:
            raise WireError(codes.NOT_ALLOWED, "enter the zone first")
        self._input(caller.gateway, Input(caller.session, entity_id, seq, payload))
        return {}

    def _input(self, gateway: str, message: Input) -> None:
        """An input from a gateway: to the handoff's gate, or to the successor once handed."""
        if self.mode == HANDED:
            self._relay_message(messages.encode(gateway, message))
        else:
            self.handoff.receive(gateway, message)

    async def on_zone_leave(self, caller: Caller, message: dict) -> dict:
        """Take the caller's character out of the world."""
        entity_id = self._player_id(caller)
        entity = self.simulation.get(entity_id)
        if entity is None or entity.session != caller.session:
            raise WireError(codes.NOT_ALLOWED, "you are not in this zone")
        await self._leave(entity)
        return {SESSION_UPDATE: {"zone": None}}

    async def _leave(self, entity: Entity) -> None:
        """
        A player's entity leaves the world: taken out of the simulation
        (so what is saved is its last state), where it is with its attrs
        saved into its character's data (L{WORLD_KEY}), then its record
        removed from the store.  A failed save is logged and the entity
        leaves all the same (its next C{zone.enter} finds an older saved
        position, or none: the spawn).
        """
        await self.handoff.leave(entity.id, before=self._save_where)

    async def _save_where(self, entity: Entity) -> None:
        try:
            character = await self.store.character_by_id(entity.id)
            if character is None:
                return
            data = dict(character.data) if isinstance(character.data, dict) else {}
            data[WORLD_KEY] = {"x": entity.x, "y": entity.y, "attrs": entity.attrs}
            await self.store.update_character(entity.id, data)
        except Exception:
            self.log.failure(
                "zone {zone}: saving where {id} left the world failed",
                zone=self.name,
                id=entity.id,
            )

    async def session_event(self, caller: Caller, event: str) -> None:
        """
        C{"moved"}: the session's pushes go to its new gateway.  C{"ended"}:
        the session is gone for good (not merely dropped: a session waiting
        for a resume keeps its entity), so its entity leaves the world.
        """
        entity_id = caller.character_id
        if entity_id is None:
            return
        if self.mode == HANDED:
            if event in ("moved", "ended"):
                body = {"step": "event", "token": self._token}
                self._relay_message(
                    {TAKEOVER: {**body, "caller": caller.to_dict(), "event": event}}
                )
            return
        entity = self.simulation.get(entity_id)
        if entity is None or entity.session != caller.session:
            return
        if event == "moved":
            entity.gateway = caller.gateway
        elif event == "ended":
            await self._leave(entity)


class ZoneHost(GameService):
    """
    The zones of one process: a L{ZoneService} for every region of
    C{[world]} whose C{process} is C{process_name}, as one game service for
    the gateways (L{mmo.game.server.serve} serves one).  A message goes
    to the zone named by its caller's C{zone} (the gateway's
    L{mmo.zone.route.ZoneRoute} sets it); session events go to all.

    It also replaces a running process of the same name (C{takeover}): see
    C{docs/world.md}, "Replacing a zone process".  The process's pieces
    that only the serving process may run (its RPC listener, directory
    entry and control subscription) are given by L{attach}; with
    C{takeover} they are started only once the old process released them.

    @ivar zones: Region name -> its L{ZoneService}.
    """

    kind = "zone"
    prefixes = ("zone.",)
    zone_class = None
    #: Seconds the new process waits for the old one to answer C{handover}.
    handover_answer_timeout = 3.0
    #: Seconds the new process waits for the whole handover.
    takeover_timeout = 20.0
    #: Seconds the old process waits for its gateways' links to go before it exits.
    exit_timeout = 15.0
    #: Attempts (0.1 s apart) at binding the RPC port the old process just freed.
    bind_attempts = 50

    def __init__(self, config, store, bus, reactor, process_name: str, takeover: bool = False):
        super().__init__(config, store, bus, reactor)
        if self.zone_class is None:
            self.zone_class = zone_service_class(config)
        world = config.world
        self.process_name = process_name
        self.takeover = takeover
        self.zones = {
            name: self.zone_class(config, store, bus, reactor, name)
            for name, *_box, process in world.layout
            if process == process_name
        }
        if not self.zones:
            from mmo.config import ConfigError

            raise ConfigError(
                f"no region of the world is served by process {process_name!r}",
                ("world", "zones" if not world.regions else "regions"),
                config.file,
            )
        #: Set by L{attach}: see there.
        self.process = None
        #: "serving", "standby", "handing", "handed" or "aborted", for the process.
        self.state = "standby" if takeover else "serving"
        #: Fires when the takeover (this process's) is over: ready to serve.
        self.ready: defer.Deferred = defer.Deferred()
        #: Fires when this process handed everything over and released its port.
        self.released: defer.Deferred = defer.Deferred()

    def attach(self, process) -> None:
        """
        Give the host the process's pieces, a L{ProcessHooks}: it registers
        C{handover} on the control channel, and with C{takeover} starts
        the listener, directory entry and control subscription itself.
        """
        self.process = process
        if process.control is not None:
            process.control.register("handover", self.on_handover)

    # -- life cycle --------------------------------------------------------------

    async def start(self) -> None:
        if not self.takeover:
            for zone in self.zones.values():
                await zone.start()
            self.ready.callback(None)
            return
        for zone in self.zones.values():
            await zone.start(standby=True)
        d = defer.ensureDeferred(self._take_over())
        d.addErrback(self._takeover_failed)

    async def stop(self) -> None:
        for zone in self.zones.values():
            await zone.stop()

    # -- the new process ---------------------------------------------------------

    async def _take_over(self) -> None:
        from mmo import control

        token = uuid.uuid4().hex
        for zone in self.zones.values():
            zone.expect(token)
        released = defer.Deferred()

        def heard(message):
            if isinstance(message, dict) and message.get("released") == token:
                if not released.called:
                    released.callback(None)

        subscription = await self.bus.subscribe(takeover_channel(self.process_name), heard)
        try:
            try:
                await control.call(
                    self.bus,
                    self.process_name,
                    "handover",
                    {"token": token},
                    timeout=self.handover_answer_timeout,
                    reactor=self.reactor,
                )
            except control.NoAnswer:
                self.log.info(
                    "{process}: no process to take over; starting afresh",
                    process=self.process_name,
                )
                for zone in self.zones.values():
                    await zone.start_plain()
                released.callback(None)
            except control.ControlError as e:
                raise TakeoverAborted(str(e)) from None
            self.state = "taking"
            waiting = defer.gatherResults(
                [z.took_over for z in self.zones.values() if z.mode == STANDBY] + [released],
                consumeErrors=True,
            )
            waiting.addTimeout(self.takeover_timeout, self.reactor)
            try:
                await waiting
            except defer.TimeoutError:
                # The old process is gone half-way: what it did not hand over
                # is in the store; recover it (fencing) and serve.
                self.log.warn(
                    "{process}: takeover timed out; recovering", process=self.process_name
                )
                for zone in self.zones.values():
                    if zone.mode == STANDBY:
                        await zone.start_plain()
            except defer.FirstError as e:
                raise e.subFailure.value from None
        finally:
            await subscription.cancel()
        await self._go_live()

    async def _go_live(self) -> None:
        """Bind the RPC port, enter the directory, take control commands, relink gateways."""
        process = self.process
        if process is not None:
            await process.go_live(self.bind_attempts)
            from mmo.game.service import gateway_channel

            for peer in self.config.processes.values():
                if peer.kind in ("gateway", "mmo"):
                    await self.bus.publish(
                        gateway_channel(peer.name), {"relink": {"process": self.process_name}}
                    )
        self.state = "serving"
        self.log.info("{process}: took over, ready", process=self.process_name)
        self.ready.callback(None)

    def _takeover_failed(self, failure) -> None:
        self.state = "aborted"
        self.log.failure("{process}: takeover failed", failure, process=self.process_name)
        if self.process is not None:
            self.process.fail()
        if not self.ready.called:
            self.ready.errback(failure)
            # Logged above: not an unhandled error as well.
            self.ready.addErrback(lambda _: None)

    # -- the old process ---------------------------------------------------------

    def on_handover(self, token: str) -> dict:
        """
        The C{handover} control command, from a new process of the same
        name in standby: hand every region over to it (in the background)
        and answer at once.
        """
        if not isinstance(token, str) or not token:
            raise ValueError("token must be a non-empty string")
        if self.state != "serving":
            from mmo.control import ControlError

            raise ControlError(f"{self.process_name} is {self.state}")
        self.state = "handing"
        d = defer.ensureDeferred(self._hand_over(token))
        d.addErrback(lambda f: self.log.failure("{p}: handover", f, p=self.process_name))
        return {"regions": sorted(self.zones)}

    async def _hand_over(self, token: str) -> None:
        results = await defer.DeferredList(
            [defer.ensureDeferred(zone.hand_over(token)) for zone in self.zones.values()],
            consumeErrors=True,
        )
        if not all(ok for ok, _ in results):
            # Regions that did hand over stay unserved until a restart (the
            # store has them); the others go on here.
            self.state = "serving"
            self.log.warn("{process}: handover aborted", process=self.process_name)
            return
        self.state = "handed"
        if self.process is not None:
            await self.process.release()
        await self.bus.publish(takeover_channel(self.process_name), {"released": token})
        self.log.info("{process}: handed over; released", process=self.process_name)
        self.released.callback(None)
        if self.process is not None:
            self.process.exit_when_idle(self.exit_timeout)

    # -- messages ----------------------------------------------------------------

    async def handle(self, caller: Caller, kind: str, message: dict) -> dict | None:
        zone = self.zones.get(caller.zone)
        if zone is None:
            raise WireError(codes.UNAVAILABLE, f"zone {caller.zone!r} is not served here; retry")
        return await zone.handle(caller, kind, message)

    async def session_event(self, caller: Caller, event: str) -> None:
        for zone in self.zones.values():
            await zone.session_event(caller, event)

    def directory_info(self) -> dict:
        """
        The process's load for the directory: C{load} and C{players} (players
        in its regions), C{entities}, C{regions}, C{tick_ms} (the p50, p99
        and max of the recent ticks of all its regions) and C{overruns}.
        """
        players = entities = overruns = 0
        durations: list[float] = []
        for zone in self.zones.values():
            reals = zone.simulation.reals.values()
            entities += len(reals)
            players += sum(1 for e in reals if e.kind == PLAYER)
            overruns += zone.ticker.overruns
            durations.extend(zone.ticker.durations)
        durations.sort()

        def at(fraction: float) -> float:
            return round(nearest_rank(durations, fraction) * 1000, 3)

        return {
            "load": players,
            "players": players,
            "entities": entities,
            "regions": sorted(self.zones),
            "tick_ms": {"p50": at(0.5), "p99": at(0.99), "max": at(1.0)},
            "overruns": overruns,
        }


def zone_service_class(config) -> type[ZoneService]:
    """
    The zone service class named by C{[world] zone_class} (a game's
    subclass with its own messages and rules), or L{ZoneService}.

    @raise ConfigError: It cannot be imported or is no L{ZoneService}.
    """
    from twisted.python.reflect import namedAny

    from mmo.config import ConfigError

    name = config.world.zone_class
    if not name:
        return ZoneService
    key = ("world", "zone_class")
    try:
        found = namedAny(name)
    except Exception as e:
        raise ConfigError(f"cannot import {name!r}: {e}", key, config.file)
    if not (isinstance(found, type) and issubclass(found, ZoneService)):
        raise ConfigError(
            f"{name!r} is not a subclass of mmo.zone.service.ZoneService", key, config.file
        )
    return found
