"""
The gateway's way to the game services: its routes (L{mmo.game.routes}),
which route owns a message type, and the session events every service
hears.
"""

from __future__ import annotations

from twisted.application.service import IService
from twisted.internet import defer
from twisted.logger import Logger

from mmo.game.service import Caller
from mmo.gateway.failures import log_failure

#: Message types whose route L{Services.route_for} keeps, at most.
KNOWN_KINDS = 256


def hears_zone_changes(route) -> bool:
    """
    Whether C{route}'s service is told C{"changed"} when the session's zone
    is all that changed (L{GameService.hears_zone_changes
    <mmo.game.service.GameService.hears_zone_changes>}): as the route says
    (a remote service's, from its kind), else as its service in this
    process says; told by default.
    """
    says = getattr(route, "hears_zone_changes", None)
    if says is None:
        says = getattr(getattr(route, "service", None), "hears_zone_changes", True)
    return says


class Services:
    """
    The routes to the game services of a gateway, in the order they are
    asked whether they own a message type.

    @ivar routes: The L{mmo.game.routes.IRoute}s (set before the first
        message is routed: which route owns a type is kept once found).
    """

    log = Logger()

    def __init__(self, routes=()):
        self.routes = list(routes)
        #: Message type -> the route that owns it, as found: every client
        #: message asks (every move asks each route before the zones').
        #: Bounded (L{KNOWN_KINDS}), since clients choose the types they send.
        self._owners: dict[str, object] = {}

    def route_for(self, kind: str):
        """The first route whose service owns message type C{kind}, or C{None}."""
        route = self._owners.get(kind)
        if route is not None:
            return route
        for route in self.routes:
            if route.owns(kind):
                if len(self._owners) < KNOWN_KINDS:
                    self._owners[kind] = route
                return route
        return None

    def links(self) -> list[IService]:
        """The Twisted services the routes need running (their RPC links), once each."""
        found: list[IService] = []
        for route in self.routes:
            found.extend(s for s in route.services() if s not in found)
        return found

    def handlers(self) -> dict:
        """
        What the routes hear on the gateway's bus channel: message class ->
        handler, from every route that has C{handlers()} (the zones' route:
        handoffs switch a player's zone).
        """
        found: dict = {}
        for route in self.routes:
            handlers = getattr(route, "handlers", None)
            if handlers is not None:
                found.update(handlers())
        return found

    def hear(self, dispatcher) -> None:
        """
        Have every route that hears messages streamed to the gateway (the
        zones' route: L{mmo.zone.streams}) hand them to C{dispatcher}.
        """
        for route in self.routes:
            hear = getattr(route, "hear", None)
            if hear is not None:
                hear(dispatcher)

    def tell(self, caller: Caller, event: str, zone_only: bool = False) -> defer.Deferred:
        """
        Tell every route's service that C{caller}'s session had C{event};
        fires when all have answered.  A service that fails is logged, and
        does not stop the others from being told.  With C{zone_only} (a
        C{"changed"} of the session's zone alone), the services that do not
        hear zone changes (L{hears_zone_changes}) are not told.
        """
        # Every one is waited for, even one that has fired: a Deferred that
        # fired may still wait on another (an RPC call once the link is
        # up), and only the service's answer says it is told.
        told = []
        for route in self.routes:
            if zone_only and not hears_zone_changes(route):
                continue
            try:
                d = route.session_event(caller, event)
            except Exception:
                d = defer.fail()
            told.append(d.addErrback(self._not_told, route, caller, event))
        return defer.gatherResults(told).addCallback(lambda _: None)

    def _not_told(self, failure, route, caller: Caller, event: str) -> None:
        log_failure(
            failure,
            self.log,
            "telling {route!r} that session {session} {event} failed",
            route=route,
            session=caller.session,
            event=event,
        )
