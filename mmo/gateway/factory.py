"""
The gateway's factory of player connections: the players' sessions, their
admission, resume and handover, deliveries and routing; no bytes.
"""

from __future__ import annotations

import uuid

from twisted.internet import defer, error

from mmo.bus import BusError
from mmo.bus.directory import least_loaded
from mmo.config import Config, ProcessSection
from mmo.frontend.factory import ClientFactory
from mmo.frontend.protocol import CLOSED
from mmo.game.service import SESSION_UPDATE, Caller, gateway_channel
from mmo.gateway.admission import FloodLimits
from mmo.gateway.protocol import GatewayProtocol
from mmo.gateway.session import (
    ATTACHED,
    DETACHED,
    ENDED,
    MOVED,
    ResumeRefused,
    Session,
    SessionRegistry,
    new_token,
    session_key,
    token_hash,
)
from mmo.login.service import SESSIONS_CHANNEL, revoke
from mmo.rpc.commands import RPCError
from mmo.wire import codes
from mmo.wire.codes import (
    ALREADY_ONLINE,
    KICKED,
    LOGGED_OUT,
    REPLACED,
    RESUME_REFUSED,
    RESUMED_ELSEWHERE,
    WireError,
)


def online_key(account_id: str) -> str:
    """The bus key of an account's presence: which gateway holds its session."""
    return f"online:{account_id}"


#: Seconds a gateway waits for the holder of a session to hand it over.
HANDOVER_TIMEOUT = 5.0

#: Seconds a gateway keeps forwarding deliveries for a session that moved
#: away, while the services learn (from "moved") where it is now.
FORWARD_TIME = 60.0

#: Seconds a stopping gateway gives its services to hear that its sessions ended.
STOP_TIMEOUT = 5.0

#: Seconds a draining gateway waits for the bus (its announcement, the directory).
BUS_TIMEOUT = 5.0


#: Failures that say a service or the bus is unreachable, not that code is
#: broken: logged as a warning, without a traceback.
EXPECTED_FAILURES = (
    WireError,
    RPCError,
    BusError,
    defer.TimeoutError,
    error.ConnectionLost,
    error.ConnectionDone,
)


def _log_failure(failure, log, what: str, **kwargs) -> None:
    if failure.check(*EXPECTED_FAILURES):
        log.warn(what + ": {why}", why=failure.getErrorMessage(), **kwargs)
    else:
        log.failure(what, failure, **kwargs)


def _is_port(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536


class GatewayFactory(ClientFactory):
    """
    The factory of player sessions.

    It admits tickets and keeps one session per account (the C{[login]
    second_login} policy) across every gateway of the deployment; keeps
    sessions whose connection dropped for C{[gateway] resume_window} seconds
    and lets clients resume them, here or on another gateway (handing them
    over through the bus); delivers pushes from game services; routes
    clients' messages to those services; and tells the directory how loaded
    it is.  See C{docs/sessions.md}.

    @ivar admission: The L{mmo.gateway.admission.Admission} checking tickets.
    @ivar bus: The deployment's bus.
    @ivar routes: The L{mmo.game.routes.IRoute}s to game services, in the
        order they are asked whether they own a message type.
    @ivar registry: The L{SessionRegistry} of the sessions held here.
    @ivar flood: The L{FloodLimits} of every connection.
    @ivar forwards: Session id -> (gateway, timer) for sessions that moved
        away: what is delivered here for them is sent on there.
    @ivar draining: Set by L{drain}: the gateway admits nobody and its
        directory entry says C{"draining": true}.
    @ivar listeners: What accepts connections for this factory (objects
        with C{stopListening()}: the TCP and WebSocket listeners); L{drain}
        stops them, so that a replacement can take their ports.
    @ivar directory: The L{mmo.bus.directory.DirectoryService} announcing
        this gateway, if any; L{drain} has it announce C{draining} at once.
    """

    protocol = GatewayProtocol
    handover_timeout = HANDOVER_TIMEOUT
    forward_time = FORWARD_TIME

    def __init__(self, config: Config, process: ProcessSection, reactor=None, routes=()):
        super().__init__(config, process, reactor)
        self.admission = None
        self.bus = None
        self.routes = list(routes)
        self.registry = SessionRegistry()
        self.flood = FloodLimits(config.gateway, self.reactor)
        self.forwards: dict[str, tuple[str, object]] = {}
        self._handovers: dict[str, defer.Deferred] = {}
        self.draining = False
        self.listeners: list = []
        self.directory = None
        self._drain: dict | None = None

    @property
    def name(self) -> str:
        """This gateway's process name: the C{gateway} of its callers."""
        return self.process.name

    @property
    def sessions(self) -> dict[str, GatewayProtocol]:
        """Account id -> the connection its session is attached to, here."""
        return {
            account: session.connection
            for account, session in self.registry.by_account.items()
            if session.connection is not None
        }

    def _new_session(self, caller: Caller, ticket, token: str, seq=0, pushes=()) -> Session:
        return Session(
            caller,
            ticket,
            token,
            self.config.gateway.resume_buffer,
            self.wire.max_frame_size,
            seq,
            pushes,
        )

    # -- admission -------------------------------------------------------------------

    async def admit(self, connection: GatewayProtocol, token: str) -> dict:
        """
        Admit C{connection} with the ticket C{token}: a new session, which
        replaces any other of the account (or is refused, by policy).
        Returns the C{auth} reply's fields.
        """
        if self.draining:
            raise WireError(codes.UNAVAILABLE, "this gateway is draining; connect to another")
        ticket = await self.admission.admit(token)
        if connection.state == CLOSED:
            raise WireError(codes.BAD_REQUEST, "the connection closed")
        account = ticket.account_id
        existing = self.registry.by_account.get(account)
        if self.config.login.second_login == "refuse" and (
            existing is not None or await self.bus.get(online_key(account)) is not None
        ):
            raise WireError(ALREADY_ONLINE, "this account is already online")
        if connection.state == CLOSED:
            raise WireError(codes.BAD_REQUEST, "the connection closed")
        caller = Caller(uuid.uuid4().hex, self.name, account, ticket.name, ticket.realm)
        session = self._new_session(caller, ticket, new_token())
        existing = self.registry.by_account.get(account)
        if existing is not None:
            # The new session's presence replaces the old one's: keep the key.
            self.endSession(
                existing, REPLACED, "your account logged in from elsewhere", presence=False
            )
        self.registry.add(session)
        self.attach(session, connection)
        try:
            await self._hold(session)
            await self.bus.publish(
                SESSIONS_CHANNEL,
                {"account": account, "session": caller.session, "reason": "replaced"},
            )
        except Exception:
            self.endSession(session)
            raise
        await self.sessionEvent(session.caller, "started")
        self.log.info("{peer} admitted as {name}", peer=connection.peer, name=ticket.name)
        return {
            "account": account,
            "name": ticket.name,
            "realm": ticket.realm,
            "session": caller.session,
            "resume": session.token,
        }

    async def _hold(self, session: Session) -> None:
        """Say on the bus that this gateway holds C{session}: presence and token."""
        ttl = self.config.bus.heartbeat_timeout
        await self.bus.put(
            online_key(session.account), {"gateway": self.name, "session": session.id}, ttl=ttl
        )
        await self.bus.put(session_key(session.token_hash), self.name, ttl=ttl)

    def _background(self, d, what: str) -> None:
        """Run C{d} (a coroutine or Deferred) without waiting; log its failure."""
        d = defer.ensureDeferred(d) if not isinstance(d, defer.Deferred) else d
        d.addErrback(_log_failure, self.log, what)

    # -- attaching, detaching, ending ------------------------------------------------

    def attach(self, session: Session, connection: GatewayProtocol) -> None:
        """
        Make C{connection} the session's connection.  A connection still
        attached to it is told goodbye (C{resumed_elsewhere}).
        """
        old = session.connection
        if old is not None and old is not connection:
            old.session = None
            old.goodbye(RESUMED_ELSEWHERE, "the session was resumed on another connection")
        if session.expiry is not None and session.expiry.active():
            session.expiry.cancel()
        session.expiry = None
        session.connection = connection
        session.state = ATTACHED
        connection.session = session
        connection.ticket = session.ticket
        connection.startHeartbeat()

    def connectionDropped(self, connection: GatewayProtocol) -> None:
        """
        C{connection} closed: its session ends if the client said C{bye} or
        logged out, else it is kept for a resume.
        """
        session = connection.session
        connection.session = None
        if session is None or session.connection is not connection:
            return
        if connection.leaving:
            self.endSession(session)
        else:
            self.detach(session)

    def detach(self, session: Session, window: float | None = None) -> None:
        """
        Keep C{session} without a connection for C{window} seconds (default:
        C{[gateway] resume_window}), numbering and keeping its pushes, then
        end it.
        """
        if window is None:
            window = self.config.gateway.resume_window
        session.connection = None
        session.state = DETACHED
        if session.expiry is not None and session.expiry.active():
            session.expiry.cancel()
        session.expiry = None
        if window <= 0:
            self.endSession(session)
            return
        session.expiry = self.reactor.callLater(window, self._expired, session)
        self.log.info(
            "session of {name} detached; resumable for {window:g} s",
            name=session.caller.name,
            window=window,
        )

    def _expired(self, session: Session) -> None:
        session.expiry = None
        if session.state == DETACHED:
            self.log.info("session of {name} not resumed in time", name=session.caller.name)
            self.endSession(session)

    def endSession(
        self,
        session: Session,
        code: str | None = None,
        message: str = "",
        presence: bool = True,
    ) -> defer.Deferred:
        """
        End C{session} for good: forget it, tell its connection goodbye
        (C{code}, if given), clear its token and (unless C{presence} is false)
        its presence on the bus, and tell every service C{"ended"}.  The
        result fires once the services have been told.
        """
        if session.state in (ENDED, MOVED):
            return defer.succeed(None)
        session.state = ENDED
        if session.expiry is not None and session.expiry.active():
            session.expiry.cancel()
        session.expiry = None
        self.registry.remove(session)
        connection, session.connection = session.connection, None
        if connection is not None:
            connection.session = None
            connection.stopHeartbeat()
            if code is not None:
                connection.goodbye(code, message)
        self._background(self._release(session, presence), "releasing a session failed")
        told = self.sessionEvent(session.caller, "ended")
        self._checkDrained()
        return told

    async def _release(self, session: Session, presence: bool) -> None:
        await self.bus.clear(session_key(session.token_hash))
        if presence:
            held = await self.bus.get(online_key(session.account))
            if isinstance(held, dict) and held.get("session") == session.id:
                await self.bus.clear(online_key(session.account))

    def sessionEvent(self, caller: Caller, event: str) -> defer.Deferred:
        """
        Tell every route's service that C{caller}'s session had C{event};
        fires when all have answered.  A service that fails is logged, and
        does not stop the others from being told.
        """
        calls = []
        for route in self.routes:
            d = defer.maybeDeferred(route.session_event, caller, event)
            d.addErrback(
                _log_failure,
                self.log,
                "telling {route!r} that session {session} {event} failed",
                route=route,
                session=caller.session,
                event=event,
            )
            calls.append(d)
        return defer.gatherResults(calls).addCallback(lambda _: None)

    def sessionsMessage(self, message: dict) -> None:
        """A session of some account began or ended elsewhere: end ours if it is another."""
        session = self.registry.by_account.get(message.get("account"))
        if session is None or session.id == message.get("session"):
            return
        if message.get("reason") == "logout":
            self.endSession(session, LOGGED_OUT, "your account logged out")
        else:
            self.endSession(session, REPLACED, "your account logged in from elsewhere")

    async def logout(self, connection: GatewayProtocol) -> None:
        """Revoke the account's tickets, end its other sessions, then this one."""
        session = connection.session
        await revoke(
            self.bus,
            self.config,
            connection.ticket.account_id,
            self.reactor.seconds(),
            keep=session.id if session is not None else None,
        )
        if connection.session is not None:
            self.endSession(connection.session)

    def refreshPresence(self) -> defer.Deferred:
        """Renew the presence and token keys of every session held here (each heartbeat)."""
        return defer.gatherResults(
            [defer.ensureDeferred(self._hold(session)) for session in self.registry],
            consumeErrors=True,
        )

    def stop(self) -> defer.Deferred:
        """
        The gateway is stopping: end every session it holds (the services
        are told, for at most L{STOP_TIMEOUT} seconds).

        Sessions that moved to another gateway (after a L{drain}, or a
        resume elsewhere) are not held here and do not end: deliveries that
        still reach this gateway for them keep being forwarded for as long
        as its delivery channel is subscribed, that is until the process
        exits.  Only the forwarding timers stop, so that nothing is left
        scheduled on the reactor.
        """
        for _, timer in self.forwards.values():
            if timer.active():
                timer.cancel()
        if self._drain is not None:
            self._finishDrain(timed_out=False)
        for waiter in list(self._handovers.values()):
            if not waiter.called:
                waiter.errback(WireError(RESUME_REFUSED, "the gateway is stopping"))
        ended = defer.gatherResults(
            [
                self.endSession(session, codes.SHUTDOWN, "the server is shutting down")
                for session in self.registry
            ]
        )
        ended.addTimeout(STOP_TIMEOUT, self.reactor)
        return ended.addErrback(lambda f: self.log.warn("sessions not all released at stop"))

    def load(self) -> int:
        """What the directory reports: connected clients."""
        return len(self.connections)

    def connectionClosed(self, connection) -> None:
        super().connectionClosed(connection)
        self._checkDrained()

    # -- operators' commands: drain, kick, broadcast -----------------------------------

    def drain(self, timeout=None) -> defer.Deferred:
        """
        The C{drain} control command (a rolling upgrade of this gateway):
        stop admitting (stop the L{listeners}, announce C{draining}), tell
        every client to move to the least-loaded other live gateway of the
        realm (frame C{session.move}, then goodbye C{moved}), and keep the
        sessions resumable meanwhile: each client resumes on the other
        gateway, which takes its session over through the bus.

        With no other gateway live, clients get goodbye C{shutdown} instead
        and their sessions are kept for C{[gateway] resume_window} all the
        same, so a client that reconnects (to a replacement on this address,
        say) can still resume while this process runs.

        @param timeout: Seconds to wait at most (default C{[gateway]
            drain_timeout}).
        @return: A Deferred firing once no connection and no session is left
            here (forwarded sessions aside), or at C{timeout}, with a dict:
            C{target} (the gateway clients were sent to, or C{None}),
            C{told} (sessions told to move, or disconnected without a
            target), C{moved} (sessions another gateway took over),
            C{ended} (sessions that ended meanwhile), C{remaining}
            (sessions still held here) and C{timed_out}.  A second C{drain}
            while one runs waits for the same result.
        @raise ValueError: C{timeout} is not a positive number.
        """
        if timeout is None:
            timeout = self.config.gateway.drain_timeout
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ValueError("timeout must be a positive number of seconds")
        if self._drain is not None:
            waiter = defer.Deferred()
            self._drain["waiters"].append(waiter)
            return waiter
        waiter = defer.Deferred()
        self._drain = {
            "waiters": [waiter],
            "sessions": list(self.registry),
            "target": None,
            "told": 0,
            "timer": self.reactor.callLater(timeout, self._finishDrain, True),
            "started": False,
        }
        self.draining = True
        self._background(self._startDrain(), "draining failed")
        return waiter

    async def _startDrain(self) -> None:
        try:
            await self._moveClients()
        finally:
            # Whatever failed, the drain completes (or times out) as usual.
            if self._drain is not None:
                self._drain["started"] = True
            self._checkDrained()

    async def _moveClients(self) -> None:
        for listener in self.listeners:
            try:
                await defer.maybeDeferred(listener.stopListening)
            except Exception:
                self.log.failure("stopping a listener for the drain failed")
        if self.directory is not None:
            # Bounded: a slow bus must not hold the clients back.
            announced = defer.maybeDeferred(self.directory.refresh)
            await announced.addTimeout(BUS_TIMEOUT, self.reactor).addErrback(
                _log_failure, self.log, "announcing the drain failed"
            )
        target = None
        try:
            target = await defer.ensureDeferred(self.drainTarget()).addTimeout(
                BUS_TIMEOUT, self.reactor
            )
        except Exception as e:
            self.log.warn("drain: cannot read the directory: {why!r}", why=e)
        drain = self._drain
        if drain is None:
            return
        if target is None:
            self.log.warn(
                "{name} draining with no other gateway of realm {realm} live: clients are "
                "disconnected (shutdown) and may resume for {window:g} s",
                name=self.name,
                realm=self.process.realm,
                window=self.config.gateway.resume_window,
            )
        else:
            drain["target"] = target[0]
            self.log.info(
                "{name} draining: clients move to {target}", name=self.name, target=target[0]
            )
        for connection in list(self.connections):
            if connection.session is not None:
                drain["told"] += 1
            if target is None:
                connection.goodbye(
                    codes.SHUTDOWN, "the gateway is draining; reconnect and resume your session"
                )
                continue
            fields = target[1]
            if connection.canSend():
                connection.sendMessage({"t": "session.move", **fields})
            connection.goodbye(
                codes.MOVED, f"this gateway is draining; resume on {target[0]}", **fields
            )

    async def drainTarget(self) -> tuple[str, dict] | None:
        """
        Where a draining gateway sends its clients: the least-loaded other
        gateway of this realm in the directory that is not draining itself,
        as C{(name, {"host", "port"[, "websocket"]})}; C{None} if there is none.
        """
        services = await self.bus.services("gateway")
        candidates = {}
        for name, info in (services or {}).items():
            if name == self.name or not isinstance(info, dict):
                continue
            host, port = info.get("host"), info.get("port")
            if not isinstance(host, str) or not _is_port(port):
                continue
            candidates[name] = info
        found = least_loaded(candidates, "gateway", self.process.realm)
        if found is None:
            return None
        name, info = found
        fields = {"gateway": name, "host": info["host"], "port": info["port"]}
        if _is_port(info.get("websocket")):
            fields["websocket"] = info["websocket"]
        return name, fields

    def _checkDrained(self) -> None:
        drain = self._drain
        if drain is not None and drain["started"] and not self.connections and not self.registry:
            self._finishDrain(timed_out=False)

    def _finishDrain(self, timed_out: bool) -> None:
        drain, self._drain = self._drain, None
        if drain is None:
            return
        if drain["timer"].active():
            drain["timer"].cancel()
        sessions = drain["sessions"]
        result = {
            "target": drain["target"],
            "told": drain["told"],
            "moved": sum(1 for s in sessions if s.state == MOVED),
            "ended": sum(1 for s in sessions if s.state == ENDED),
            "remaining": len(self.registry),
            "timed_out": timed_out,
        }
        log = self.log.warn if timed_out or result["remaining"] else self.log.info
        log("{name} drained: {result}", name=self.name, result=result)
        for waiter in drain["waiters"]:
            waiter.callback(result)

    def kick(self, account, reason: str = "you were disconnected by an operator"):
        """
        The C{kick} control command: end the session of C{account} (its
        account id, or its account name as at login) if this gateway holds
        it.  Its connection, if any, gets goodbye C{kicked} with C{reason};
        the session cannot be resumed (the player may log in again: a ban
        is the login server's business).

        @return: A Deferred firing with the number of sessions ended, once
            the services have been told.
        @raise ValueError: C{account} or C{reason} is not a string.
        """
        if not isinstance(account, str) or not account:
            raise ValueError("account must be an account id or name")
        if not isinstance(reason, str):
            raise ValueError("reason must be a string")
        found = [s for s in self.registry if account in (s.account, s.caller.name)]
        for session in found:
            self.log.info(
                "kicking {name} ({account}): {reason}",
                name=session.caller.name,
                account=session.account,
                reason=reason,
            )
        ended = [self.endSession(session, KICKED, reason) for session in found]
        return defer.gatherResults(ended).addCallback(lambda _: len(found))

    def broadcast(self, text) -> int:
        """
        The C{broadcast} control command: push C{server.notice {"text"}} to
        every session held here (kept for detached ones, like any push).

        @return: The number of sessions it was pushed to.
        @raise ValueError: C{text} is not a string, or too long for a frame.
        """
        if not isinstance(text, str):
            raise ValueError("text must be a string")
        count = 0
        for session in self.registry:
            try:
                session.push("server.notice", {"text": text})
            except WireError as e:
                raise ValueError(f"the notice cannot be sent: {e.message}") from None
            count += 1
        self.log.info("notice broadcast to {count} sessions", count=count)
        return count

    # -- resume -----------------------------------------------------------------------

    async def resume(
        self, connection: GatewayProtocol, token: str, last_seq: int, request_id: int
    ) -> None:
        """
        Attach the session of resume C{token} to C{connection}: from this
        gateway, or handed over by the gateway that holds it.  Sends the
        C{resume} reply (with a new token) and then every push after
        C{last_seq}, in order.

        @raise WireError: C{resume_refused}.
        """
        hashed = token_hash(token)
        session = self.registry.by_token.get(hashed)
        if session is None:
            session = await self._take_over(hashed, token, last_seq)
        if session.state not in (ATTACHED, DETACHED) or session.token_hash != hashed:
            raise WireError(RESUME_REFUSED, "unknown, expired or used resume token")
        if connection.state == CLOSED:
            # Gone while the session was being handed over: it waits here.
            return
        try:
            missed = session.missed(last_seq)
        except ResumeRefused as e:
            if e.final:
                self.endSession(session)
            raise WireError(RESUME_REFUSED, e.reason)
        old_hash = session.token_hash
        fresh = self.registry.renew_token(session)
        self.attach(session, connection)
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
        self._background(self._rekey(session, old_hash), "re-keying a resumed session failed")

    async def _rekey(self, session: Session, old_hash: str) -> None:
        await self.bus.clear(session_key(old_hash))
        if session.state in (ATTACHED, DETACHED):
            await self._hold(session)

    async def _take_over(self, hashed: str, token: str, last_seq: int) -> Session:
        """
        Ask the gateway that holds the session of C{token} (found on the
        bus) to hand it over; the session, adopted here.

        @raise WireError: C{resume_refused}.
        """
        holder = await self.bus.get(session_key(hashed))
        if not isinstance(holder, str) or holder == self.name:
            raise WireError(RESUME_REFUSED, "unknown, expired or used resume token")
        request = uuid.uuid4().hex
        waiter = defer.Deferred()
        waiter.addTimeout(self.handover_timeout, self.reactor)
        self._handovers[request] = waiter
        try:
            await self.bus.publish(
                gateway_channel(holder),
                {
                    "handover": {
                        "request": request,
                        "token": token,
                        "last_seq": last_seq,
                        "to": self.name,
                    }
                },
            )
            return await waiter
        except defer.TimeoutError:
            raise WireError(
                RESUME_REFUSED,
                f"the gateway holding the session ({holder}) did not answer; try again",
            )
        finally:
            self._handovers.pop(request, None)

    def _handover_request(self, request: dict) -> defer.Deferred | None:
        """
        Another gateway asks for a session held here: hand it over (state
        first, then forward what is delivered for it here), or refuse.
        """
        try:
            request_id, token = request["request"], request["token"]
            last_seq, to = request["last_seq"], request["to"]
            if not (
                isinstance(token, str)
                and isinstance(to, str)
                and isinstance(last_seq, int)
                and last_seq >= 0
            ):
                raise TypeError()
        except (KeyError, TypeError):
            self.log.warn("malformed handover request: {request!r}", request=request)
            return None
        channel = gateway_channel(to)
        session = self.registry.by_token.get(token_hash(token))
        if session is None or session.state not in (ATTACHED, DETACHED):
            return self._refuse_handover(channel, request_id, "unknown, expired or used token")
        try:
            state = session.state_for(last_seq)
        except ResumeRefused as e:
            if e.final:
                self.endSession(session)
            return self._refuse_handover(channel, request_id, e.reason)
        self.registry.remove(session)
        if session.expiry is not None and session.expiry.active():
            session.expiry.cancel()
        session.expiry = None
        connection, session.connection = session.connection, None
        session.state = MOVED
        self._forward(session.id, to)
        self._checkDrained()
        d = self.bus.publish(channel, {"handover_answer": {"request": request_id, "state": state}})
        if connection is not None:
            connection.session = None
            connection.goodbye(RESUMED_ELSEWHERE, "the session was resumed on another connection")
        self.log.info(
            "session of {name} handed over to {gateway}", name=session.caller.name, gateway=to
        )
        return d.addErrback(_log_failure, self.log, "handing a session over failed")

    def _refuse_handover(self, channel: str, request_id, reason: str) -> defer.Deferred:
        d = self.bus.publish(
            channel, {"handover_answer": {"request": request_id, "refused": reason}}
        )
        return d.addErrback(_log_failure, self.log, "refusing a handover failed")

    def _forward(self, session_id: str, gateway: str) -> None:
        previous = self.forwards.pop(session_id, None)
        if previous is not None and previous[1].active():
            previous[1].cancel()
        timer = self.reactor.callLater(self.forward_time, self.forwards.pop, session_id, None)
        self.forwards[session_id] = (gateway, timer)

    def _handover_answer(self, answer: dict) -> None:
        """
        The holder answered a handover: adopt the session (even if the
        client gave up waiting: it may try again here) or refuse the resume.
        """
        waiter = self._handovers.get(answer.get("request"))
        if "state" not in answer:
            if waiter is not None and not waiter.called:
                reason = answer.get("refused")
                waiter.errback(
                    WireError(RESUME_REFUSED, reason if isinstance(reason, str) else "refused")
                )
            return
        try:
            session = Session.from_state(
                answer["state"],
                self.name,
                self.config.gateway.resume_buffer,
                self.wire.max_frame_size,
            )
        except Exception:
            self.log.failure("malformed handover state")
            if waiter is not None and not waiter.called:
                waiter.errback(WireError(RESUME_REFUSED, "the session could not be taken over"))
            return
        other = self.registry.by_account.get(session.account)
        if other is not None and other.id != session.id:
            self.endSession(other, REPLACED, "your account logged in from elsewhere", False)
        forward = self.forwards.pop(session.id, None)
        if forward is not None and forward[1].active():
            forward[1].cancel()
        self.registry.add(session)
        self.detach(session, max(self.config.gateway.resume_window, self.handover_timeout))
        self._background(self._hold(session), "announcing an adopted session failed")
        self._background(
            self.sessionEvent(session.caller, "moved"), "telling services of a move failed"
        )
        if waiter is not None and not waiter.called:
            waiter.callback(session)

    # -- deliveries ---------------------------------------------------------------------

    def gatewayMessage(self, message) -> defer.Deferred | None:
        """
        A message on this gateway's bus channel: a delivery for sessions
        held here, a handover request from another gateway, or the answer
        to one of ours.
        """
        if not isinstance(message, dict):
            return None
        if "handover" in message:
            request = message["handover"]
            return self._handover_request(request) if isinstance(request, dict) else None
        if "handover_answer" in message:
            answer = message["handover_answer"]
            if isinstance(answer, dict):
                self._handover_answer(answer)
            return None
        if "relink" in message or "zone" in message:
            # For the route that knows the zones: a zone process was replaced
            # (its link moves), or a handoff's route switch.
            zones = next((r for r in self.routes if hasattr(r, "zoneMessage")), None)
            if zones is None:
                return None
            if "relink" in message:
                return zones.relink(message["relink"])
            return zones.zoneMessage(self, message)
        if "batch" in message:
            return self.deliverBatch(message["batch"])
        return self.deliver(message)

    def deliverBatch(self, batch) -> defer.Deferred | None:
        """
        Push each session's events of C{{session: [[kind, fields], ...]}}
        (a zone's tick: one bus message per gateway), in order: sent when
        attached, kept when detached, forwarded (as one batch per gateway)
        for sessions that moved to another gateway.
        """
        if not isinstance(batch, dict):
            self.log.warn("malformed batch delivery: {batch!r}", batch=batch)
            return None
        onward: dict[str, dict] = {}
        for session_id, events in batch.items():
            if not isinstance(events, list):
                continue
            session = self.registry.by_id.get(session_id)
            if session is None:
                forward = self.forwards.get(session_id)
                if forward is not None:
                    onward.setdefault(forward[0], {})[session_id] = events
                continue
            for event in events:
                if not (
                    isinstance(event, (list, tuple))
                    and len(event) == 2
                    and isinstance(event[0], str)
                    and isinstance(event[1], dict)
                ):
                    self.log.warn("malformed batched push: {event!r}", event=event)
                    continue
                try:
                    session.push(event[0], event[1])
                except Exception:
                    self.log.failure(
                        "push {kind!r} to {name} dropped", kind=event[0], name=session.caller.name
                    )
        if not onward:
            return None
        return defer.gatherResults(
            [
                self.bus.publish(gateway_channel(gateway), {"batch": sessions}).addErrback(
                    _log_failure, self.log, "forwarding a delivery failed"
                )
                for gateway, sessions in onward.items()
            ]
        )

    def deliver(self, message: dict) -> defer.Deferred | None:
        """
        Push C{{"t": kind, "fields": {...}}} to every session listed in
        C{"to"}: sent when attached, kept when detached, forwarded to the
        gateway a session moved to.
        """
        targets, kind, fields = message.get("to"), message.get("t"), message.get("fields", {})
        if not (isinstance(targets, list) and isinstance(kind, str) and isinstance(fields, dict)):
            self.log.warn("malformed delivery: {message!r}", message=message)
            return None
        onward: dict[str, list[str]] = {}
        for session_id in targets:
            session = self.registry.by_id.get(session_id)
            if session is not None:
                try:
                    session.push(kind, fields)
                except Exception:
                    self.log.failure(
                        "push {kind!r} to {name} dropped", kind=kind, name=session.caller.name
                    )
                continue
            forward = self.forwards.get(session_id)
            if forward is not None:
                onward.setdefault(forward[0], []).append(session_id)
        if not onward:
            return None
        return defer.gatherResults(
            [
                self.bus.publish(
                    gateway_channel(gateway), {"to": sessions, "t": kind, "fields": fields}
                ).addErrback(_log_failure, self.log, "forwarding a delivery failed")
                for gateway, sessions in onward.items()
            ]
        )

    # -- routing --------------------------------------------------------------------------

    def routeFor(self, kind: str):
        """The first route whose service owns message type C{kind}, or C{None}."""
        for route in self.routes:
            if route.owns(kind):
                return route
        return None

    async def route(self, connection: GatewayProtocol, route, kind: str, message: dict):
        """
        Have C{route}'s service handle C{message} from C{connection}'s
        session; returns the reply's fields.  A reply's L{SESSION_UPDATE}
        changes the session's caller (every service is told C{"changed"})
        and is not passed on to the client.
        """
        session = connection.session
        reply = await route.handle(session.caller, kind, message)
        if isinstance(reply, dict) and SESSION_UPDATE in reply:
            reply = dict(reply)
            await self.updateSession(session, reply.pop(SESSION_UPDATE))
        return reply

    async def updateSession(self, session: Session, update) -> None:
        """Apply a service's L{SESSION_UPDATE} to C{session}'s caller; tell every service."""
        if not isinstance(update, dict):
            raise WireError(codes.INTERNAL, "the service sent a malformed session update")
        changes = {}
        for key in ("character_id", "character_name", "zone"):
            if key in update:
                value = update[key]
                if value is not None and not isinstance(value, str):
                    raise WireError(codes.INTERNAL, "the service sent a malformed session update")
                changes[key] = value
        if not changes:
            return
        session.caller = session.caller.moved(**changes)
        if session.state in (ATTACHED, DETACHED):
            await self.sessionEvent(session.caller, "changed")
