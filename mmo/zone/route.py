"""
The gateway's side of the handoff: the route of a player's C{zone.*}
messages to the zone that holds its character, switched by the handoffs
(L{mmo.zone.handoff}) as the character walks from zone to zone.

This is the one gateway side there is: production gateways run it, and the
deterministic crash and reorder runs of the handoff (C{tests/test_handoff.py})
drive it.  See C{docs/handoff.md}.
"""

from __future__ import annotations

from math import isfinite

from twisted.application.service import IService
from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from mmo import rpc
from mmo.config import Config, ProcessSection
from mmo.game.messages import Moved, Relink, Switched, SwitchRoute
from mmo.game.routes import LINK_TIMEOUT, IRoute, RemoteRoute
from mmo.game.service import Caller, Reply, SessionChange, owns
from mmo.rpc.commands import Redirect
from mmo.wire import codes
from mmo.wire.codes import WireError
from mmo.zone.ended import EndedResends
from mmo.zone.entity import saved_position
from mmo.zone.streams import StreamedLinkFactory
from mmo.zone.world import WorldMap

#: The players' inputs: a gateway sends them in batches without an answer
#: (L{mmo.rpc.commands.RouteInputs}) and answers them itself.
ZONE_INPUTS = ("zone.move",)

#: A player's move.
MOVE = "zone.move"

#: The fields of a C{zone.move} that are not the game's own (C{Input.extra}).
MOVE_FIELDS = frozenset({"t", "id", "seq", "x", "y"})

#: The messages that put a character in a zone or take it out.
ENTER, LEAVE = "zone.enter", "zone.leave"


def check_move(message: dict) -> int:
    """
    The C{seq} of a C{zone.move} that is well formed: C{seq} a non-negative
    integer, C{x} and C{y} finite numbers (what the simulation takes,
    L{mmo.zone.simulation.parse_input}).  The gateway checks this before it
    sends a move (the zone does not answer moves), and the zone again
    (L{move_input}).

    @raise WireError: C{bad_request}: malformed.
    """
    seq = message.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise WireError(codes.BAD_REQUEST, "seq must be a non-negative integer")
    x, y = message.get("x"), message.get("y")
    # What clients send: two floats (no bool is a float).
    if type(x) is float and type(y) is float and isfinite(x) and isfinite(y):
        return seq
    for value in (x, y):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not isfinite(value):
            raise WireError(codes.BAD_REQUEST, "x and y must be finite numbers")
    return seq


def move_input(message: dict) -> tuple[int, dict]:
    """
    C{(seq, payload)} of a C{zone.move} (L{check_move}): the payload is
    C{{"x", "y"}} and, if the message has fields of the game's own,
    C{"extra"}.

    @raise WireError: C{bad_request}: malformed.
    """
    seq = check_move(message)
    payload = {"x": message["x"], "y": message["y"]}
    # Most moves have only the usual fields: no copy to look through.
    if not message.keys() <= MOVE_FIELDS:
        payload["extra"] = {k: v for k, v in message.items() if k not in MOVE_FIELDS}
    return seq, payload


@implementer(IRoute)
class ZoneRoute:
    """
    The route of C{zone.*} messages: to the zone that holds the caller's
    character (L{Caller.zone}), whichever route leads there.

    C{zone.enter} needs a session in the world (C{world.enter}, from the
    lobby) with a character.  It goes to the zone the store names owner of
    its character (it is still in the world, or was checkpointed there),
    else to the zone whose region holds the position its character last
    left the world at
    (L{mmo.zone.entity.WORLD_KEY}), else to the zone whose region holds
    C{[world] spawn}; a zone that does not own the character answers
    L{Redirect} to the one that does, and the route follows it once.  The
    zone the character entered (or left) changes the caller's session: the
    route answers with a L{Reply} carrying the L{SessionChange}.

    A handoff moves the character to another zone: the old zone sends a
    L{SwitchRoute}, which L{switch} applies (only forwards: by the entity's
    version, so repeats are harmless) and answers with L{Switched}; a zone
    that finds an input for an entity it no longer owns sends L{Moved},
    applied the same way.  The client is pushed C{zone.changed {zone}} and
    its connection stays as it is.

    @ivar routes: Zone (region) name -> the L{IRoute} to its service.
    @ivar gateway: The gateway's process name: who sends the L{Switched}s.
    @ivar store: The store, if this process has one (the standalone
        server), to find where a character is; else C{None}.
    @ivar resends: The L{EndedResends}: C{"ended"} to a zone process that
        cannot be reached is sent again (one of L{services}).
    """

    log = Logger()
    name = "zones"
    prefixes = ("zone.",)

    def __init__(
        self,
        routes: dict,
        world_map,
        gateway: str,
        store=None,
        spawn=None,
        clock=None,
        streams=(),
    ):
        self.routes = dict(routes)
        #: The L{StreamedLinkFactory}s of the links to zone processes.
        self.streams = tuple(streams)
        self.map = world_map
        self.gateway = gateway
        self.store = store
        self.spawn = tuple(spawn) if spawn is not None else None
        #: Session -> the version of its entity that set its zone.
        self._versions: dict[str, int] = {}
        self.resends = EndedResends(clock)

    def __repr__(self) -> str:
        return f"<ZoneRoute to {', '.join(self.routes)}>"

    def owns(self, kind: str) -> bool:
        return owns(self.prefixes, kind)

    def services(self) -> list[IService]:
        found: list[IService] = []
        for route in self.routes.values():
            found.extend(s for s in route.services() if s not in found)
        return found + [self.resends]

    def handlers(self) -> dict:
        """What this route hears on its gateway's bus channel (L{mmo.gateway.routing})."""
        return {SwitchRoute: self.switch, Moved: self.switch, Relink: self.relink}

    def hear(self, dispatcher) -> None:
        """
        Hand what the zone processes stream to this gateway (L{Stream}) to
        C{dispatcher}, the one that hears its bus channel: the same
        handlers hear a zone's messages by either way.
        """
        for factory in self.streams:
            factory.hear(dispatcher)

    # -- a player's messages -------------------------------------------------------------

    def handle(self, caller: Caller, kind: str, message: dict):
        # An input's reply comes at once, others' in a Deferred (IRoute.handle).
        zone = caller.zone
        if zone is not None and kind != ENTER and kind != LEAVE:
            # In a zone, an input: straight to its zone's route (every
            # player's every move comes this way).
            route = self.routes.get(zone)
            if route is None:
                return defer.fail(self._unreachable(zone))
            if kind == MOVE:
                # Checked here: the zone does not answer moves.
                try:
                    check_move(message)
                except WireError as e:
                    return defer.fail(e)
            return route.handle(caller, kind, message)
        return defer.ensureDeferred(self._enter_or_leave(caller, kind, message))

    @staticmethod
    def _unreachable(zone: str) -> WireError:
        return WireError(codes.UNAVAILABLE, f"zone {zone!r} is not reachable from here")

    async def _enter_or_leave(self, caller: Caller, kind: str, message: dict):
        zone = caller.zone
        if kind == ENTER:
            if not caller.in_world:
                raise WireError(codes.NOT_ALLOWED, "enter the world first (world.enter)")
            # Wherever the session thinks it is: the owner of its character
            # may have changed while its zone was out of reach.
            zone = await self.home(caller)
        elif zone is None:
            raise WireError(codes.NOT_ALLOWED, "enter a zone first (zone.enter)")
        zone, reply = await self._call(caller, zone, kind, message)
        if kind != ENTER and kind != LEAVE:
            return reply
        # A new entity (or none): route switches start over.
        self._versions.pop(caller.session, None)
        fields, changes = reply, {}
        if isinstance(reply, Reply):
            fields, changes = reply.fields, dict(reply.change.changes)
        changes["zone"] = zone if kind == ENTER else None
        return Reply(fields, SessionChange(**changes))

    async def _call(self, caller: Caller, zone: str, kind: str, message: dict):
        """C{(zone, reply)}: the zone's answer, following one L{Redirect}."""
        for _ in range(2):
            route = self.routes.get(zone)
            if route is None:
                raise self._unreachable(zone)
            try:
                reply = route.handle(caller.moved(zone=zone), kind, message)
                if isinstance(reply, defer.Deferred):
                    reply = await reply
                return zone, reply
            except Redirect as e:
                # In the wrong zone: the store names another owner.
                zone = e.target
        raise WireError(codes.UNAVAILABLE, "your character is moving between zones; retry")

    async def home(self, caller: Caller) -> str:
        """The zone a caller's character enters the world in."""
        if caller.character_id is None:
            raise WireError(codes.NOT_ALLOWED, "choose a character first")
        if self.store is not None:
            stored = await self.store.load_entity(caller.character_id)
            if stored is not None and stored.owner in self.routes:
                return stored.owner
            if stored is None:
                # Out of the world: where it left it, if that is on the map.
                character = await self.store.character_by_id(caller.character_id)
                saved = saved_position(character.data if character is not None else None)
                region = self.map.region_at(saved[0], saved[1]) if saved else None
                if region is not None and region.name in self.routes:
                    return region.name
        region = self.map.region_at(*self.spawn) if self.spawn is not None else None
        if region is None:
            raise WireError(codes.INTERNAL, "the spawn point is off the map")
        return region.name

    def session_event(self, caller: Caller, event: str) -> defer.Deferred:
        """
        C{"moved"} and C{"ended"} go to every zone (any may hold the
        character); C{"ended"} again later to a zone process that cannot be
        reached now (L{EndedResends}), so that its entity still leaves the
        world when that process is back.
        """
        if event not in ("moved", "ended"):
            return defer.succeed(None)
        if event == "ended":
            self._versions.pop(caller.session, None)
            calls = [self.resends.send(route, caller) for route in self._each_route()]
        else:
            calls = [
                defer.maybeDeferred(route.session_event, caller, event)
                for route in self._each_route()
            ]
        return defer.gatherResults(calls, consumeErrors=True).addCallback(lambda _: None)

    def _each_route(self) -> list:
        """The routes, each once (the regions of one process share one)."""
        found: list = []
        for route in self.routes.values():
            if route not in found:
                found.append(route)
        return found

    # -- what zones say --------------------------------------------------------------------

    def switch(self, sender: str, message: SwitchRoute | Moved, session) -> None:
        """
        A zone says the session's entity is owned by C{message.zone} now (at
        C{message.version}): the session's zone changes if that is news, and
        a L{SwitchRoute} is answered L{Switched} in any case (the old zone
        waits for it; everything this gateway sent it before went first).

        @param session: The session as the gateway holds it (a
            L{mmo.gateway.delivery.SessionPort}), or C{None}.
        """
        if session is not None and session.caller.character_id == message.entity_id:
            if message.version > self._versions.get(message.session, -1):
                self._versions[message.session] = message.version
                if session.caller.zone != message.zone:
                    session.change(SessionChange(zone=message.zone)).addErrback(
                        lambda f: self.log.failure("switching a zone route failed", f)
                    )
                    session.push("zone.changed", {"zone": message.zone})
        if isinstance(message, SwitchRoute):
            self._switched(sender, Switched(message.transfer_id, message.session))

    def _switched(self, zone: str, switched: Switched) -> None:
        """
        Answer C{zone}'s route switch over the route this gateway's inputs
        to it take (L{mmo.game.routes.IRoute.send}): every input sent there
        before arrives before the answer, as the handoff needs.
        """
        route = self.routes.get(zone)
        if route is None:
            self.log.warn("no route to zone {zone} for its route switch", zone=zone)
            return
        route.send(zone, switched, self.gateway).addErrback(
            lambda f: self.log.warn(
                "answering zone {zone}'s route switch failed: {why}",
                zone=zone,
                why=f.getErrorMessage(),
            )
        )

    def relink(self, sender: str, message: Relink) -> defer.Deferred | None:
        """
        Zone process C{message.process} was replaced (a takeover): its route
        moves its link to the new process.
        """
        done = [r for r in self._each_route() if getattr(r, "name", None) == message.process]
        if not done:
            return None
        self.log.info("relinking to zone process {process}", process=message.process)
        return defer.gatherResults([route.relink() for route in done], consumeErrors=True)


def zone_routes(
    config: Config, process: ProcessSection, reactor=None, timeout: float = LINK_TIMEOUT
) -> ZoneRoute | None:
    """
    The L{ZoneRoute} of a gateway of a cluster to the C{zone} processes of
    the config (one RPC link per process, shared by its regions), or C{None}
    if it has none.  The gateway has no store: a character checkpointed in
    another zone than the spawn's is found by that zone's redirect.
    """
    streams = {
        peer.name: StreamedLinkFactory(config, process, peer, reactor)
        for peer in config.processes.values()
        if peer.kind == "zone"
    }
    peers = {
        name: RemoteRoute(
            ("zone.",),
            rpc.RPCClientService(
                config, process, name, factory=factory, reactor=reactor, timeout=timeout
            ),
            unanswered=ZONE_INPUTS,
        )
        for name, factory in streams.items()
    }
    if not peers:
        return None
    world_map = WorldMap.from_config(config.world)
    routes = {
        region.name: peers[region.process]
        for region in world_map.regions.values()
        if region.process in peers
    }
    return ZoneRoute(
        routes, world_map, process.name, None, config.world.spawn, reactor, streams.values()
    )
