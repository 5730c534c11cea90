"""
Resuming a session, here or on another gateway: a client that lost its
connection presents its resume token and the last push it saw; the gateway
holding the session hands it over through the bus (L{HandoverRequest},
L{HandoverAnswer}) and forwards what is still delivered for it there for a
while (L{Forwards}).  See C{docs/sessions.md}.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.logger import Logger

from mmo.game import messages
from mmo.game.messages import HandoverAnswer, HandoverRequest, gateway_channel, session_key
from mmo.gateway.failures import background, log_failure
from mmo.gateway.session import ResumeRefused, Session, token_hash
from mmo.gateway.sessions import Sessions
from mmo.metrics.kinds import children
from mmo.metrics.registry import RESUMES as RESUME_OUTCOMES
from mmo.wire.codes import RESUME_REFUSED, WireError

#: Seconds a gateway waits for the holder of a session to hand it over.
HANDOVER_TIMEOUT = 5.0

#: Seconds a gateway keeps forwarding deliveries for a session that moved
#: away, while the services learn (from "moved") where it is now.
FORWARD_TIME = 60.0


#: The outcomes of a resume: C{resumed} (the session was here), C{handed_over}
#: (from the gateway that held it), C{refused}, C{failed} (an error, logged),
#: C{gone} (the client left while its session was being handed over).
RESUMES = children(RESUME_OUTCOMES, "resumed", "handed_over", "refused", "failed", "gone")


class Forwards:
    """
    Sessions that moved to another gateway, for L{FORWARD_TIME} seconds
    each: what is delivered here for them is sent on there.
    """

    def __init__(self, clock, ttl: float = FORWARD_TIME):
        self.clock = clock
        self.ttl = ttl
        self._to: dict[str, tuple[str, object]] = {}

    def add(self, session_id: str, gateway: str) -> None:
        """Forward what comes for C{session_id} to C{gateway}, for a while."""
        self.discard(session_id)
        timer = self.clock.callLater(self.ttl, self._to.pop, session_id, None)
        self._to[session_id] = (gateway, timer)

    def discard(self, session_id: str) -> None:
        """Forward nothing more for C{session_id} (it came back)."""
        previous = self._to.pop(session_id, None)
        if previous is not None and previous[1].active():
            previous[1].cancel()

    def gateway(self, session_id) -> str | None:
        """Where what comes for C{session_id} goes, or C{None}."""
        found = self._to.get(session_id)
        return found[0] if found is not None else None

    def stop(self) -> None:
        """Stop the timers (forwarding itself goes on while the process runs)."""
        for _, timer in self._to.values():
            if timer.active():
                timer.cancel()


class Handover:
    """
    Resumes sessions held here or by another gateway, and hands sessions
    held here over to the gateways their clients resume on.

    @ivar forwards: The L{Forwards} of the sessions handed over.
    """

    log = Logger()

    def __init__(self, sessions: Sessions, bus, clock, timeout: float = HANDOVER_TIMEOUT):
        self.sessions = sessions
        self.bus = bus
        self.clock = clock
        self.timeout = timeout
        self.forwards = Forwards(clock)
        self._requests = messages.Requests(clock)

    @property
    def name(self) -> str:
        return self.sessions.name

    async def resume(self, connection, token: str, last_seq: int, request_id: int) -> None:
        """
        Attach the session of resume C{token} to C{connection}: from this
        gateway, or handed over by the gateway that holds it.  Sends the
        C{resume} reply (with a new token) and then every push after
        C{last_seq}, in order.  Its outcome is counted (C{mmo_resumes_total}).

        @raise WireError: C{resume_refused}.
        """
        try:
            outcome = await self._resume(connection, token, last_seq, request_id)
        except WireError:
            RESUMES.refused.inc()
            raise
        except Exception:
            RESUMES.failed.inc()
            raise
        outcome.inc()

    async def _resume(self, connection, token: str, last_seq: int, request_id: int):
        """L{resume}; returns the counter of its outcome."""
        hashed = token_hash(token)
        session = self.sessions.registry.by_token.get(hashed)
        outcome = RESUMES.resumed
        if session is None:
            session = await self._take_over(hashed, token, last_seq)
            outcome = RESUMES.handed_over
        if not session.live or session.token_hash != hashed:
            raise WireError(RESUME_REFUSED, "unknown, expired or used resume token")
        if not connection.canSend():
            # Gone while the session was being handed over: it waits here.
            return RESUMES.gone
        try:
            missed = session.missed(last_seq)
        except ResumeRefused as e:
            if e.final:
                self.sessions.end(session)
            raise WireError(RESUME_REFUSED, e.reason)
        old_hash = session.token_hash
        fresh = self.sessions.registry.renew_token(session)
        self.sessions.attach(session, connection)
        caller = session.caller
        connection.sendMessage(
            {
                "account": caller.account_id,
                "name": caller.name,
                "realm": caller.realm,
                "session": caller.session,
                "resume": fresh,
                "seq": session.seq,
                "replayed": len(missed),
                "t": "reply",
                "id": request_id,
            }
        )
        for body in missed:
            connection.sendString(body)
        self.log.info(
            "{peer} resumed the session of {name} ({count} pushes replayed)",
            peer=connection.peer,
            name=caller.name,
            count=len(missed),
        )
        background(
            self.sessions.presence.rekey(session, old_hash),
            self.log,
            "re-keying a resumed session failed",
        )
        return outcome

    async def _take_over(self, hashed: str, token: str, last_seq: int) -> Session:
        """
        Ask the gateway that holds the session of C{token} (found on the
        bus) to hand it over; the session, adopted here.

        @raise WireError: C{resume_refused}.
        """
        holder = await self.bus.get(session_key(hashed))
        if not isinstance(holder, str) or holder == self.name:
            raise WireError(RESUME_REFUSED, "unknown, expired or used resume token")
        request, answer = self._requests.new(self.timeout)
        try:
            await messages.publish(
                self.bus,
                gateway_channel(holder),
                HandoverRequest(request, token, last_seq, self.name),
                self.name,
            )
            return await answer
        except defer.TimeoutError:
            raise WireError(
                RESUME_REFUSED,
                f"the gateway holding the session ({holder}) did not answer; try again",
            )

    def requested(self, sender: str, request: HandoverRequest) -> defer.Deferred | None:
        """
        Another gateway asks for a session held here: hand it over (state
        first, then forward what is delivered for it here), or refuse.
        """
        if not (
            isinstance(request.token, str)
            and isinstance(request.to, str)
            and isinstance(request.last_seq, int)
            and not isinstance(request.last_seq, bool)
            and request.last_seq >= 0
        ):
            self.log.warn("malformed handover request from {sender}", sender=sender or "?")
            return None
        channel = gateway_channel(request.to)
        session = self.sessions.registry.by_token.get(token_hash(request.token))
        if session is None or not session.live:
            return self._refuse(channel, request.request, "unknown, expired or used token")
        try:
            state = session.state_for(request.last_seq)
        except ResumeRefused as e:
            if e.final:
                self.sessions.end(session)
            return self._refuse(channel, request.request, e.reason)
        self.forwards.add(session.id, request.to)
        self.sessions.hand_off(session)
        self.log.info(
            "session of {name} handed over to {gateway}",
            name=session.caller.name,
            gateway=request.to,
        )
        d = messages.publish(self.bus, channel, HandoverAnswer(request.request, state), self.name)
        return d.addErrback(log_failure, self.log, "handing a session over failed")

    def _refuse(self, channel: str, request, reason: str) -> defer.Deferred:
        d = messages.publish(self.bus, channel, HandoverAnswer(request, refused=reason), self.name)
        return d.addErrback(log_failure, self.log, "refusing a handover failed")

    def answered(self, sender: str, answer: HandoverAnswer) -> None:
        """
        The holder answered a handover: adopt the session (even if the
        client gave up waiting: it may try again here) or refuse the resume.
        """
        if answer.state is None:
            reason = answer.refused if isinstance(answer.refused, str) else "refused"
            self._requests.fail(answer.request, WireError(RESUME_REFUSED, reason))
            return
        try:
            session = Session.from_state(
                answer.state,
                self.name,
                self.sessions.config.gateway.resume_buffer,
                self.sessions.config.wire.max_frame_size,
                self.sessions.incarnation,
                self.sessions.config.gateway.resume_buffer_bytes,
            )
        except Exception:
            self.log.failure("malformed handover state")
            self._requests.fail(
                answer.request, WireError(RESUME_REFUSED, "the session could not be taken over")
            )
            return
        self.forwards.discard(session.id)
        window = max(self.sessions.config.gateway.resume_window, self.timeout)
        self.sessions.adopt(session, window)
        self._requests.answer(answer.request, session)

    def stop(self) -> None:
        """The gateway stops: resumes waiting for a handover are refused."""
        self.forwards.stop()
        self._requests.fail_all(WireError(RESUME_REFUSED, "the gateway is stopping"))
