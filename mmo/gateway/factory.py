"""
The gateway's factory of player connections, and how a gateway is built.

L{GatewayFactory} is thin: it builds a L{GatewayProtocol} per connection
and hands what the protocols ask for to the gateway's parts, each built
whole by L{make_gateway}:

    L{mmo.gateway.admission.Admission}   session tickets
    L{mmo.gateway.sessions.Sessions}     the sessions and their life cycle
    L{mmo.gateway.handover.Handover}     resuming, here or from another gateway
    L{mmo.gateway.delivery.Delivery}     pushes from the game services
    L{mmo.gateway.routing.Services}      the routes to the game services

L{subscriptions} says what the gateway hears on which bus channel.
"""

from __future__ import annotations

from dataclasses import fields

from twisted.internet import defer

from mmo.config import Config, ProcessSection
from mmo.frontend.factory import ClientFactory
from mmo.game import messages
from mmo.game.messages import (
    AccountSession,
    HandoverAnswer,
    HandoverRequest,
    Push,
    PushBatch,
    PushStems,
    gateway_channel,
)
from mmo.game.service import Reply
from mmo.gateway.admission import Admission, FloodLimits
from mmo.gateway.delivery import Delivery
from mmo.gateway.handover import Handover
from mmo.gateway.protocol import GatewayProtocol
from mmo.gateway.routing import Services
from mmo.gateway.sessions import Sessions
from mmo.metrics.registry import state
from mmo.wire import codes
from mmo.wire.codes import WireError


class GatewayFactory(ClientFactory):
    """
    The factory of player connections: see the module docstring and
    C{docs/sessions.md}.  Game teams subclass it (and L{GatewayProtocol})
    and name the subclass in C{processes.NAME.factory}.

    @ivar admission: The L{Admission} checking tickets.
    @ivar sessions: The L{Sessions} held here.
    @ivar handover: The L{Handover} of sessions between gateways.
    @ivar delivery: The L{Delivery} of pushes.
    @ivar services: The L{Services}: routes to the game services.
    @ivar flood: The L{FloodLimits} of every connection.
    """

    protocol = GatewayProtocol

    def __init__(
        self,
        config: Config,
        process: ProcessSection,
        reactor,
        *,
        admission: Admission,
        sessions: Sessions,
        handover: Handover,
        delivery: Delivery,
        services: Services,
    ):
        super().__init__(config, process, reactor)
        self.admission = admission
        self.sessions = sessions
        self.handover = handover
        self.delivery = delivery
        self.services = services
        self.flood = FloodLimits(config.gateway, self.reactor)

    @property
    def name(self) -> str:
        """This gateway's process name: the C{gateway} of its callers."""
        return self.process.name

    def load(self) -> int:
        """What the directory reports: connected clients."""
        return len(self.connections)

    def metric_families(self):
        """What Prometheus reads of a gateway: its connections and sessions."""
        yield from super().metric_families()
        yield state("mmo_sessions", ((), len(self.sessions)))

    # -- what the protocols ask --------------------------------------------------------

    async def admit(self, connection: GatewayProtocol, token: str) -> dict:
        """
        Admit C{connection} with the ticket C{token}: a new session.
        Returns the C{auth} reply's fields.
        """
        if self.sessions.draining:
            raise WireError(codes.UNAVAILABLE, "this gateway is draining; connect to another")
        ticket = await self.admission.admit(token)
        if not connection.canSend():
            raise WireError(codes.BAD_REQUEST, "the connection closed")
        return await self.sessions.open(connection, ticket)

    def resume(self, connection, token: str, last_seq: int, request_id: int):
        """Resume the session of C{token} on C{connection} (L{Handover.resume})."""
        return defer.ensureDeferred(self.handover.resume(connection, token, last_seq, request_id))

    def logout(self, connection):
        """End the account's sessions and revoke its tickets (L{Sessions.logout})."""
        return defer.ensureDeferred(self.sessions.logout(connection))

    def endSession(self, session, code: str | None = None, message: str = "") -> defer.Deferred:
        """End C{session} for good (L{Sessions.end})."""
        return self.sessions.end(session, code, message)

    def connectionDropped(self, connection: GatewayProtocol) -> None:
        """C{connection} closed: its session ends or waits for a resume."""
        self.sessions.dropped(connection)

    def connectionClosed(self, connection) -> None:
        super().connectionClosed(connection)
        self.sessions.changed()

    def routeFor(self, kind: str):
        """The first route whose service owns message type C{kind}, or C{None}."""
        return self.services.route_for(kind)

    def route(self, connection: GatewayProtocol, route, kind: str, message: dict):
        """
        Have C{route}'s service handle C{message} from C{connection}'s
        session: the reply's fields, or a Deferred of them when the route's
        answer is not in yet.  A L{Reply} that changes the session is
        applied (every service is told C{"changed"}) before the client gets
        the reply.
        """
        # Callbacks, not a coroutine: every move of every player comes here.
        session = connection.session
        reply = route.handle(session.caller, kind, message)
        if type(reply) is dict:
            # Answered at once (every input a zone takes unanswered): no Deferred.
            return reply
        if isinstance(reply, defer.Deferred):
            return reply.addCallback(self._replied, session)
        return self._replied(reply, session)

    def _replied(self, reply, session):
        if isinstance(reply, Reply):
            fields = reply.fields
            return self.sessions.change(session, reply.change).addCallback(lambda _: fields)
        return reply

    def stop(self) -> defer.Deferred:
        """
        The gateway is stopping: end every session it holds (the services
        are told).  Sessions that moved to another gateway are not held here
        and do not end: deliveries that still reach this gateway for them
        are forwarded until the process exits.
        """
        self.handover.stop()
        return self.sessions.stop()


def make_gateway(
    config: Config,
    process: ProcessSection,
    bus,
    signer,
    routes=(),
    reactor=None,
    factory_class: type[GatewayFactory] = GatewayFactory,
    **extra,
) -> GatewayFactory:
    """
    A gateway, whole: its factory (of C{factory_class}, given C{extra} as
    keyword arguments too) with every part, reaching the game services
    through C{routes} (L{mmo.game.routes.IRoute}s, asked in order),
    admitting the tickets C{signer} checks.  Subscribe L{subscriptions} to
    the bus to run it.
    """
    if reactor is None:
        from twisted.internet import reactor
    services = Services(routes)
    sessions = Sessions(config, process.name, bus, services, reactor)
    handover = Handover(sessions, bus, reactor)
    return factory_class(
        config,
        process,
        reactor,
        admission=Admission(signer, bus, process.realm, reactor),
        sessions=sessions,
        handover=handover,
        delivery=Delivery(sessions, handover.forwards, bus),
        services=services,
        **extra,
    )


def subscriptions(factory: GatewayFactory) -> dict[str, messages.Dispatcher]:
    """
    What the gateway of C{factory} hears, by bus channel: on its own
    channel pushes, handovers and whatever its routes listen to (the zones'
    route switches), which is also what the zone processes stream to it
    (L{mmo.zone.streams}); on the sessions channel, the logins and logouts
    of accounts elsewhere.
    """
    own = messages.Dispatcher(f"gateway {factory.name}")
    own.on(Push, factory.delivery.push, runs=factory.delivery.push_run)
    own.on(PushBatch, factory.delivery.push_batch)
    own.on(PushStems, factory.delivery.push_stems)
    own.on(HandoverRequest, factory.handover.requested)
    own.on(HandoverAnswer, factory.handover.answered)
    for cls, handler in factory.services.handlers().items():
        if any(f.name == "session" for f in fields(cls)):
            handler = factory.delivery.addressed(handler)
        own.on(cls, handler)
    # What zone processes stream to the gateway goes to the same handlers.
    factory.services.hear(own)
    accounts = messages.Dispatcher(f"gateway {factory.name} sessions")
    accounts.on(AccountSession, factory.sessions.account_session)
    return {gateway_channel(factory.name): own, messages.SESSIONS_CHANNEL: accounts}
