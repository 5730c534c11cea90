"""
The gateway's route of C{zone.*} messages: to the zone that holds the
player's character, switched by the handoffs (L{mmo.zone.handoff}) as the
character walks from zone to zone.  See C{docs/handoff.md}.
"""

from __future__ import annotations

from twisted.application.service import IService
from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from mmo import rpc
from mmo.config import Config, ProcessSection
from mmo.game.routes import LINK_TIMEOUT, IRoute, RemoteRoute
from mmo.game.service import ZONE_REDIRECT, Caller, gateway_channel, owns
from mmo.wire import codes
from mmo.wire.codes import WireError
from mmo.zone import messages
from mmo.zone.entity import saved_position
from mmo.zone.handoff import Moved, Switched, SwitchRoute
from mmo.zone.world import WorldMap

#: The message types a zone answers at once, which a gateway sends in batches.
ZONE_BATCHED = ("zone.move",)


@implementer(IRoute)
class ZoneRoute:
    """
    The route of C{zone.*} messages: to the zone that holds the caller's
    character (L{Caller.zone}), whichever route leads there.

    A caller not in a zone yet is sent, for C{zone.enter}, to the zone the
    store names owner of its character (it is still in the world, or was
    checkpointed there), else to the zone whose region holds the position
    its character last left the world at (L{mmo.zone.entity.WORLD_KEY}),
    else to the zone whose region holds C{[world] spawn} (which redirects,
    if the store says otherwise).  A handoff moves the character to another
    zone: the old zone sends a C{SwitchRoute} on this gateway's bus channel,
    which
    L{zoneMessage} applies (only forwards: by the entity's version, so
    repeats are harmless), answering C{Switched}; the client is pushed
    C{zone.changed {zone}} and its connection stays as it is.

    @ivar routes: Zone (region) name -> the L{IRoute} to its service.
    """

    log = Logger()
    name = "zones"
    prefixes = ("zone.",)

    def __init__(self, routes: dict, world_map, store, spawn):
        self.routes = dict(routes)
        self.map = world_map
        self.store = store
        self.spawn = tuple(spawn)
        #: Session -> the version of its entity that set its zone.
        self._versions: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"<ZoneRoute to {', '.join(self.routes)}>"

    def owns(self, kind: str) -> bool:
        return owns(self.prefixes, kind)

    def services(self) -> list[IService]:
        found: list[IService] = []
        for route in self.routes.values():
            found.extend(s for s in route.services() if s not in found)
        return found

    def handle(self, caller: Caller, kind: str, message: dict) -> defer.Deferred:
        zone = caller.zone
        if zone is not None and kind not in ("zone.enter", "zone.leave"):
            # In the world, an input: straight to its zone's route (every
            # player's every move comes this way).
            route = self.routes.get(zone)
            if route is None:
                return defer.fail(self._unreachable(zone))
            return route.handle(caller, kind, message)
        return defer.ensureDeferred(self._handle(caller, kind, message))

    @staticmethod
    def _unreachable(zone: str) -> WireError:
        return WireError(codes.UNAVAILABLE, f"zone {zone!r} is not reachable from here")

    async def _handle(self, caller: Caller, kind: str, message: dict):
        zone = caller.zone
        if zone is None:
            if kind != "zone.enter":
                raise WireError(codes.NOT_ALLOWED, "enter the world first (zone.enter)")
            zone = await self.home(caller)
            caller = caller.moved(zone=zone)
        route = self.routes.get(zone)
        if route is None:
            raise self._unreachable(zone)
        reply = await route.handle(caller, kind, message)
        if isinstance(reply, dict) and ZONE_REDIRECT in reply:
            # zone.enter in the wrong zone: the store names another owner.
            zone = reply[ZONE_REDIRECT]
            route = self.routes.get(zone)
            if route is None:
                raise self._unreachable(zone)
            reply = await route.handle(caller.moved(zone=zone), kind, message)
            if isinstance(reply, dict) and ZONE_REDIRECT in reply:
                raise WireError(codes.UNAVAILABLE, "your character is moving between zones; retry")
        if kind in ("zone.enter", "zone.leave"):
            # A new entity (or none): route switches start over.
            self._versions.pop(caller.session, None)
        return reply

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
        region = self.map.region_at(*self.spawn)
        if region is None:
            raise WireError(codes.INTERNAL, "the spawn point is off the map")
        return region.name

    def session_event(self, caller: Caller, event: str) -> defer.Deferred:
        """C{"moved"} and C{"ended"} go to every zone (any may hold the character)."""
        if event not in ("moved", "ended"):
            return defer.succeed(None)
        if event == "ended":
            self._versions.pop(caller.session, None)
        calls = [
            defer.maybeDeferred(route.session_event, caller, event)
            for route in self.routes.values()
        ]
        return defer.gatherResults(calls, consumeErrors=True).addCallback(lambda _: None)

    def relink(self, message) -> defer.Deferred | None:
        """
        C{{"relink": {"process": NAME}}} on the gateway's channel: zone
        process C{NAME} was replaced (a takeover); its route moves its link
        to the new process.
        """
        process = message.get("process") if isinstance(message, dict) else None
        done = []
        for route in self.routes.values():
            if getattr(route, "name", None) == process and route not in done:
                done.append(route)
        if not done:
            return None
        self.log.info("relinking to zone process {process}", process=process)
        return defer.gatherResults([route.relink() for route in done], consumeErrors=True)

    def zoneMessage(self, factory, message: dict) -> defer.Deferred | None:
        """
        A zone's message on the gateway's channel (L{mmo.zone.messages}):
        a C{SwitchRoute} (answered C{Switched}) or a C{Moved}.
        """
        try:
            sender, body = messages.decode(message.get(messages.KEY))
        except ValueError as e:
            self.log.warn("dropped a zone message: {why}", why=str(e))
            return None
        if not isinstance(body, (SwitchRoute, Moved)):
            self.log.warn(
                "unexpected zone message {body!r} from {sender}", body=body, sender=sender
            )
            return None
        session = factory.registry.by_id.get(body.session)
        if session is None:
            forward = factory.forwards.get(body.session)
            if forward is not None:
                # The session moved to another gateway: it answers.
                return factory.bus.publish(gateway_channel(forward[0]), message)
        elif session.caller.character_id == body.entity_id:
            if body.version > self._versions.get(body.session, -1):
                self._versions[body.session] = body.version
                if session.caller.zone != body.zone:
                    d = defer.ensureDeferred(factory.updateSession(session, {"zone": body.zone}))
                    d.addErrback(lambda f: self.log.failure("switching a zone route failed", f))
                    try:
                        session.push("zone.changed", {"zone": body.zone})
                    except Exception:
                        self.log.failure("push zone.changed dropped")
        if isinstance(body, SwitchRoute):
            # Always answered: the old zone waits for it.
            return factory.bus.publish(
                messages.zone_channel(sender),
                messages.encode(factory.name, Switched(body.transfer_id, body.session)),
            )
        return None


def zone_routes(
    config: Config, process: ProcessSection, reactor=None, timeout: float = LINK_TIMEOUT
):
    """
    The L{ZoneRoute} to the C{zone} processes of the config (one RPC link
    per process, shared by its regions), or C{None} if it has none.  The
    gateway has no store: a character checkpointed in another zone than the
    spawn's is found by that zone's redirect.
    """
    peers = {
        peer.name: RemoteRoute(
            ("zone.",),
            rpc.RPCClientService(config, process, peer, reactor=reactor, timeout=timeout),
            batched=ZONE_BATCHED,
        )
        for peer in config.processes.values()
        if peer.kind == "zone"
    }
    if not peers:
        return None
    world_map = WorldMap.from_config(config.world)
    routes = {
        region.name: peers[region.process]
        for region in world_map.regions.values()
        if region.process in peers
    }
    return ZoneRoute(routes, world_map, None, config.world.spawn)
