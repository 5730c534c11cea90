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
from mmo.gateway.sessions import log_failure


class Services:
    """
    The routes to the game services of a gateway, in the order they are
    asked whether they own a message type.

    @ivar routes: The L{mmo.game.routes.IRoute}s.
    """

    log = Logger()

    def __init__(self, routes=()):
        self.routes = list(routes)

    def route_for(self, kind: str):
        """The first route whose service owns message type C{kind}, or C{None}."""
        for route in self.routes:
            if route.owns(kind):
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

    def tell(self, caller: Caller, event: str) -> defer.Deferred:
        """
        Tell every route's service that C{caller}'s session had C{event};
        fires when all have answered.  A service that fails is logged, and
        does not stop the others from being told.
        """
        calls = []
        for route in self.routes:
            d = defer.maybeDeferred(route.session_event, caller, event)
            d.addErrback(
                log_failure,
                self.log,
                "telling {route!r} that session {session} {event} failed",
                route=route,
                session=caller.session,
                event=event,
            )
            calls.append(d)
        return defer.gatherResults(calls).addCallback(lambda _: None)
