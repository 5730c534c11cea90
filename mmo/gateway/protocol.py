"""
A player's connection to a gateway: L{GatewayProtocol}, the client protocol
(L{mmo.frontend.protocol.ClientProtocol}) with admission, routing to game
services, pushes numbered by the session, heartbeat and flood limits.
"""

from __future__ import annotations

from functools import partial

from twisted.python.failure import Failure

from mmo.frontend.deadlines import EPSILON
from mmo.frontend.protocol import RECEIVED, ClientProtocol, valid_id
from mmo.metrics.registry import FLOOD_STRIKES, HEARTBEAT_TIMEOUTS
from mmo.wire import codes
from mmo.wire.codes import AUTH_REQUIRED, LOGGED_OUT, WireError


class GatewayProtocol(ClientProtocol):
    """
    A player's connection to a gateway.

    After the handshake the client presents its session ticket (C{auth}) or
    resumes a session it had (C{resume}); until then every other message is
    refused with C{auth_required}.  Once admitted:

      - messages this protocol has no C{message_*} method for are routed to
        the game service that owns their type (L{handlerFor});
      - pushes are numbered and kept by the L{mmo.gateway.session.Session},
        so that they survive a reconnect (L{push});
      - a quiet connection gets C{heartbeat} frames, and one silent for
        C{[gateway] heartbeat_timeout} is closed (L{startHeartbeat}).

    Every message, admitted or not, passes the connection's flood limits
    first (L{mmo.gateway.admission.FloodMeter}).

    @ivar ticket: The ticket the session was admitted with, once admitted.
    @ivar session: The attached L{mmo.gateway.session.Session}, if any.
    @ivar leaving: Set when the client said C{bye} or logged out: the
        session ends with the connection instead of waiting to be resumed.
    @ivar flood: This connection's L{mmo.gateway.admission.FloodMeter}.
    @ivar last_heard: The clock when the last frame arrived.
    @ivar _heartbeat: When the heartbeat is next due (on the factory's
        deadlines, as the idle timeout), or C{None} while it is stopped.
    """

    #: Message types a client may send before it is admitted.
    before_auth = frozenset({"hello", "ping", "bye", "auth", "resume", "pong"})
    ticket = None
    session = None
    leaving = False
    flood = None
    last_heard = 0.0
    _heartbeat = None
    _admitting = False

    def __init__(self):
        super().__init__()
        # As ClientProtocol's: every attribute set first, in one order.
        self.flood = None
        self.last_heard = 0.0
        self.ticket = None
        self.session = None
        self.leaving = False
        self._heartbeat = None
        self._admitting = False

    def connectionMade(self) -> None:
        self.flood = self.factory.flood.meter()
        self.last_heard = self.factory.reactor.seconds()
        super().connectionMade()

    def connectionLost(self, reason: Failure) -> None:
        super().connectionLost(reason)
        self.stopHeartbeat()
        self.factory.connectionDropped(self)

    def _close(self) -> None:
        self.stopHeartbeat()
        super()._close()

    # -- receiving ----------------------------------------------------------------

    def messageReceived(self, message: dict) -> None:
        self.last_heard = self.factory.reactor.seconds()
        refusal = self.flood.allow(message["t"])
        if refusal is not None:
            FLOOD_STRIKES.inc()
            RECEIVED.get(message["t"]).inc()
            request_id = message.get("id")
            self.wireError(
                WireError(codes.FLOODING, refusal), request_id if valid_id(request_id) else None
            )
            if self.flood.exhausted():
                self.goodbye(
                    codes.FLOOD,
                    f"{self.flood.strikes} messages refused for flooding; disconnected",
                )
            return
        super().messageReceived(message)

    def checkMessage(self, kind: str) -> WireError | None:
        if self.session is None and kind not in self.before_auth:
            return WireError(
                AUTH_REQUIRED, f"{kind!r} needs a session: send 'auth' with your ticket"
            )
        return None

    def handlerFor(self, kind: str):
        """
        The C{message_*} method for C{kind}, else, once admitted, the route
        of the first game service that owns C{kind}.
        """
        handler = super().handlerFor(kind)
        if handler is not None or self.session is None:
            return handler
        route = self.factory.routeFor(kind)
        if route is None:
            return None
        return partial(self.factory.route, self, route, kind)

    # -- sending ------------------------------------------------------------------

    def push(self, kind: str, **fields) -> int:
        """
        Push C{kind} with C{fields}; returns its sequence number.  Once
        admitted the session numbers and keeps the push (and sends it while
        this connection is attached); before, the connection numbers it.
        """
        if self.session is not None:
            return self.session.push(kind, fields)
        return super().push(kind, **fields)

    # -- the session ----------------------------------------------------------------

    def attached(self, session) -> None:
        """C{session} is this connection's now: its pushes come here; watch for silence."""
        self.session = session
        self.ticket = session.ticket
        self.startHeartbeat()

    def released(self, code: str | None = None, message: str = "") -> None:
        """
        The session is no longer this connection's; with C{code}, the
        client is told goodbye (why) and the connection closes.
        """
        self.session = None
        self.stopHeartbeat()
        if code is not None:
            self.goodbye(code, message)

    # -- heartbeat ----------------------------------------------------------------

    def startHeartbeat(self) -> None:
        """
        Watch the connection for silence (called when a session attaches):
        after C{heartbeat_interval} seconds without a frame from the client,
        send C{heartbeat} (again every interval while the silence lasts);
        after C{heartbeat_timeout}, say goodbye (C{heartbeat_timeout}).
        """
        self.stopHeartbeat()
        self._beatAt(self.last_heard + self.factory.config.gateway.heartbeat_interval)

    def heartbeat_settings(self) -> tuple[float, float]:
        settings = self.factory.config.gateway
        return float(settings.heartbeat_interval), float(settings.heartbeat_timeout)

    def stopHeartbeat(self) -> None:
        self._heartbeat = None

    def _beatAt(self, when: float) -> None:
        self._heartbeat = when
        self.factory.deadlines.due(self, when)

    def deadlineReached(self, now: float) -> float | None:
        """The idle timeout's deadline, and the heartbeat's (L{startHeartbeat})."""
        later = super().deadlineReached(now)
        if later is None or self._heartbeat is None:
            return later
        if now + EPSILON >= self._heartbeat:
            self._heartbeat = self._beat(now)
            if self.closing:
                return None
        return later if self._heartbeat is None else min(later, self._heartbeat)

    def _beat(self, now: float) -> float | None:
        """The heartbeat is due: send it, or say goodbye; when it is due next."""
        if self.session is None or not self.canSend():
            return None
        settings = self.factory.config.gateway
        now += EPSILON
        deadline = self.last_heard + settings.heartbeat_timeout
        if now >= deadline:
            HEARTBEAT_TIMEOUTS.inc()
            self.goodbye(
                codes.HEARTBEAT_TIMEOUT,
                f"nothing received for {settings.heartbeat_timeout:g} seconds",
            )
            return None
        due = self.last_heard + settings.heartbeat_interval
        if now >= due:
            self.sendMessage({"t": "heartbeat", "time": self.factory.reactor.seconds()})
            return min(now - EPSILON + settings.heartbeat_interval, deadline)
        return due

    # -- the gateway's messages ----------------------------------------------------

    async def message_auth(self, message: dict) -> dict:
        """
        Present the session ticket from login; be admitted as its account.
        The reply carries the session id and its first resume token.
        """
        if self.session is not None or self._admitting:
            raise WireError(codes.BAD_REQUEST, "already admitted")
        token = self.field(message, "ticket", str)
        self._admitting = True
        try:
            return await self.factory.admit(self, token)
        finally:
            self._admitting = False

    async def message_resume(self, message: dict) -> None:
        """
        Take over a session this client had (on this gateway or another),
        with its resume C{token} and the C{last_seq} it saw.  The factory
        sends the reply, then every push after C{last_seq}, in order.
        """
        if self.session is not None or self._admitting:
            raise WireError(codes.BAD_REQUEST, "already admitted")
        request_id = message.get("id")
        if request_id is None:
            raise WireError(codes.BAD_REQUEST, "'resume' needs an 'id' for its reply")
        token = self.field(message, "token", str)
        last_seq = self.field(message, "last_seq", int)
        if last_seq < 0:
            raise WireError(codes.BAD_REQUEST, "'last_seq' must not be negative")
        self._admitting = True
        try:
            await self.factory.resume(self, token, last_seq, request_id)
        finally:
            self._admitting = False
        return None

    def message_pong(self, message: dict) -> dict:
        """The answer to a heartbeat: nothing to do (any frame counts as life)."""
        return {}

    async def message_logout(self, message: dict) -> dict:
        """
        End the session, and every other session of the account, and revoke
        its tickets; the reply comes before the goodbye.
        """
        self.leaving = True
        await self.factory.logout(self)
        self.factory.reactor.callLater(0, self.goodbye, LOGGED_OUT, "logged out")
        return {}

    def message_bye(self, message: dict) -> None:
        """The client is leaving: its session ends now, it is not kept for a resume."""
        self.leaving = True
        if self.session is not None:
            self.factory.endSession(self.session)
        return super().message_bye(message)
