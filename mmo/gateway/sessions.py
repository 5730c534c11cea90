"""
The sessions a gateway holds and their life cycle: admitted, attached to a
connection, detached for a resume, ended; the session events every game
service hears.  What the bus says of them is L{mmo.gateway.presence}'s.
See C{docs/sessions.md}.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

from twisted.internet import defer
from twisted.logger import Logger

from mmo.game import messages
from mmo.game.messages import AccountSession, online_key
from mmo.game.service import Caller, SessionChange

# log_failure: where mmo.gateway.delivery has found it.
from mmo.gateway.failures import background, log_failure  # noqa: F401
from mmo.gateway.presence import Presence
from mmo.gateway.session import Session, new_token
from mmo.login.service import revoke
from mmo.login.tickets import Ticket
from mmo.wire import codes
from mmo.wire.codes import ALREADY_ONLINE, LOGGED_OUT, REPLACED, WireError

#: Seconds a stopping gateway gives its services to hear that its sessions ended.
STOP_TIMEOUT = 5.0


class SessionRegistry:
    """
    The sessions a gateway holds (attached or detached), by session id, by
    account and by token hash.
    """

    def __init__(self):
        self.by_id: dict[str, Session] = {}
        self.by_account: dict[str, Session] = {}
        self.by_token: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self.by_id)

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self.by_id.values()))

    def add(self, session: Session) -> None:
        self.by_id[session.id] = session
        self.by_account[session.account] = session
        self.by_token[session.token_hash] = session

    def remove(self, session: Session) -> None:
        if self.by_id.get(session.id) is session:
            del self.by_id[session.id]
        if self.by_account.get(session.account) is session:
            del self.by_account[session.account]
        if self.by_token.get(session.token_hash) is session:
            del self.by_token[session.token_hash]

    def renew_token(self, session: Session) -> str:
        """Spend C{session}'s token and index it by a new one; returns the new token."""
        if self.by_token.get(session.token_hash) is session:
            del self.by_token[session.token_hash]
        token = session.renew_token()
        self.by_token[session.token_hash] = session
        return token


class Sessions:
    """
    The sessions of one gateway, whatever connection they are on.

    One session per account across the deployment (the C{[login]
    second_login} policy); a session whose connection dropped is kept for
    C{[gateway] resume_window} seconds; every game service hears of each
    session's events (L{mmo.gateway.routing.Services.tell}).

    @ivar name: The gateway's process name (the C{gateway} of its callers).
    @ivar incarnation: A fresh id of this start of the process (the
        C{incarnation} of its callers): see L{announce}.
    @ivar registry: The L{SessionRegistry}.
    @ivar presence: The L{Presence}: what the bus says of the sessions.
    @ivar draining: Set by L{drain}: nobody is admitted any more.
    """

    log = Logger()

    def __init__(self, config, name: str, bus, services, clock):
        self.config = config
        self.name = name
        self.bus = bus
        self.services = services
        self.clock = clock
        self.incarnation = uuid.uuid4().hex[:12]
        self.registry = SessionRegistry()
        self.presence = Presence(config, name, self.incarnation, bus, self.registry)
        self.draining = False
        self._watchers: list[Callable[[], None]] = []

    def __len__(self) -> int:
        return len(self.registry)

    def __iter__(self) -> Iterator[Session]:
        return iter(self.registry)

    def get(self, session_id) -> Session | None:
        """The session C{session_id} held here, or C{None}."""
        return self.registry.by_id.get(session_id)

    def watch(self, callback: Callable[[], None]) -> None:
        """Call C{callback()} whenever a session leaves, or a connection closes."""
        self._watchers.append(callback)

    def changed(self) -> None:
        """A session left or a connection closed: tell the watchers (a drain)."""
        for callback in list(self._watchers):
            callback()

    def drain(self) -> None:
        """Admit nobody from now on."""
        self.draining = True

    def new_session(self, caller: Caller, ticket: Ticket, token: str, seq=0, pushes=()):
        """A L{Session} with this gateway's buffer and frame limits."""
        return Session(
            caller,
            ticket,
            token,
            self.config.gateway.resume_buffer,
            self.config.wire.max_frame_size,
            seq,
            pushes,
            self.config.gateway.resume_buffer_bytes,
        )

    # -- admission -----------------------------------------------------------------

    async def open(self, connection, ticket: Ticket) -> dict:
        """
        A new session for C{connection}, admitted with C{ticket}: it
        replaces any other of the account (or is refused, by policy).
        Returns the C{auth} reply's fields.
        """
        if self.draining:
            raise WireError(codes.UNAVAILABLE, "this gateway is draining; connect to another")
        account = ticket.account_id
        existing = self.registry.by_account.get(account)
        if self.config.login.second_login == "refuse" and (
            existing is not None or await self.bus.get(online_key(account)) is not None
        ):
            raise WireError(ALREADY_ONLINE, "this account is already online")
        if not connection.canSend():
            raise WireError(codes.BAD_REQUEST, "the connection closed")
        caller = Caller(
            uuid.uuid4().hex,
            self.name,
            account,
            ticket.name,
            ticket.realm,
            incarnation=self.incarnation,
        )
        session = self.new_session(caller, ticket, new_token())
        existing = self.registry.by_account.get(account)
        if existing is not None:
            # The new session's presence replaces the old one's: keep the key.
            self.end(existing, REPLACED, "your account logged in from elsewhere", presence=False)
        self.registry.add(session)
        self.attach(session, connection)
        try:
            await self.presence.hold(session)
            await messages.publish(
                self.bus,
                messages.SESSIONS_CHANNEL,
                AccountSession(account, caller.session, "replaced"),
                self.name,
            )
        except Exception:
            self.end(session)
            raise
        await self.services.tell(session.caller, "started")
        self.log.info("{peer} admitted as {name}", peer=connection.peer, name=ticket.name)
        return {
            "account": account,
            "name": ticket.name,
            "realm": ticket.realm,
            "session": caller.session,
            "resume": session.token,
        }

    def account_session(self, sender: str, message: AccountSession) -> None:
        """A session of some account began or ended elsewhere: end ours if it is another."""
        session = self.registry.by_account.get(message.account)
        if session is None or session.id == message.session:
            return
        if message.reason == "logout":
            self.end(session, LOGGED_OUT, "your account logged out")
        else:
            self.end(session, REPLACED, "your account logged in from elsewhere")

    # -- presence ------------------------------------------------------------------

    def announce(self) -> defer.Deferred:
        """Say on the bus that this gateway started (L{Presence.announce})."""
        return self.presence.announce()

    def refresh(self) -> defer.Deferred:
        """Renew the bus keys of every session held here (L{Presence.refresh})."""
        return self.presence.refresh()

    # -- attaching, detaching, ending ----------------------------------------------

    def attach(self, session: Session, connection) -> None:
        """
        Make C{connection} the session's connection.  A connection still
        attached to it is told goodbye (C{resumed_elsewhere}).
        """
        old = session.attach(connection)
        if old is not None:
            old.released(codes.RESUMED_ELSEWHERE, "the session was resumed on another connection")
        connection.attached(session)

    def dropped(self, connection) -> None:
        """
        C{connection} closed: its session ends if the client said C{bye} or
        logged out, else it is kept for a resume.
        """
        session = connection.session
        connection.released()
        if session is None or session.connection is not connection:
            return
        if connection.leaving:
            self.end(session)
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
        if window <= 0:
            session.detach()
            self.end(session)
            return
        session.detach(self.clock.callLater(window, self._expired, session))
        self.log.info(
            "session of {name} detached; resumable for {window:g} s",
            name=session.caller.name,
            window=window,
        )

    def _expired(self, session: Session) -> None:
        if session.expired():
            self.log.info("session of {name} not resumed in time", name=session.caller.name)
            self.end(session)

    def end(
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
        if not session.live:
            return defer.succeed(None)
        self.registry.remove(session)
        connection = session.end()
        if connection is not None:
            connection.released(code, message)
        background(self.presence.release(session, presence), self.log, "releasing a session failed")
        told = self.services.tell(session.caller, "ended")
        self.changed()
        return told

    def hand_off(self, session: Session):
        """
        C{session} was handed over to another gateway: forget it here
        (without ending it); its connection, if any, is told goodbye.
        """
        self.registry.remove(session)
        connection = session.hand_off()
        if connection is not None:
            connection.released(
                codes.RESUMED_ELSEWHERE, "the session was resumed on another connection"
            )
        self.changed()

    def adopt(self, session: Session, window: float) -> None:
        """
        C{session}, handed over by another gateway, is held here from now
        on, detached for C{window} seconds (its client resumes it at once);
        another session of its account held here is replaced.
        """
        other = self.registry.by_account.get(session.account)
        if other is not None and other.id != session.id:
            self.end(other, REPLACED, "your account logged in from elsewhere", False)
        self.registry.add(session)
        self.detach(session, window)
        background(self.presence.hold(session), self.log, "announcing an adopted session failed")
        background(
            self.services.tell(session.caller, "moved"),
            self.log,
            "telling services of a move failed",
        )

    def change(self, session: Session, change: SessionChange) -> defer.Deferred:
        """
        Apply a service's L{SessionChange} to C{session}; tell every service
        (a change of the zone alone, only those that hear zone changes).
        Fires once they have been told.
        """
        # No coroutine: a handoff of every walking player comes here.
        changes = change.changes
        if changes:
            session.change(change)
            if session.live:
                zone_only = len(changes) == 1 and "zone" in changes
                return self.services.tell(session.caller, "changed", zone_only)
        return defer.succeed(None)

    async def logout(self, connection) -> None:
        """Revoke the account's tickets, end its other sessions, then this one."""
        session = connection.session
        await revoke(
            self.bus,
            self.config,
            connection.ticket.account_id,
            self.clock.seconds(),
            keep=session.id if session is not None else None,
        )
        if connection.session is not None:
            self.end(connection.session)

    def stop(self) -> defer.Deferred:
        """
        The gateway is stopping: end every session it holds (the services
        are told, for at most L{STOP_TIMEOUT} seconds).
        """
        ended = defer.gatherResults(
            [
                self.end(session, codes.SHUTDOWN, "the server is shutting down")
                for session in self.registry
            ]
        )
        ended.addTimeout(STOP_TIMEOUT, self.clock)
        return ended.addErrback(lambda f: self.log.warn("sessions not all released at stop"))
