"""
An operator's commands to a gateway, on its control channel
(L{mmo.process.control}): C{drain} (a rolling upgrade of the gateway),
C{kick}, C{broadcast} and C{sessions} (who is here, a page at a time).
See C{docs/manager.md}.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.logger import Logger

from mmo.bus.directory import least_loaded
from mmo.gateway.failures import background, log_failure
from mmo.gateway.session import ENDED, MOVED
from mmo.gateway.sessions import Sessions
from mmo.process.control import SESSIONS_PAGE_MAX
from mmo.wire import codes
from mmo.wire.codes import KICKED, WireError

#: Seconds a draining gateway waits for the bus (its announcement, the directory).
BUS_TIMEOUT = 5.0


def _is_port(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536


class Operations:
    """
    The C{drain}, C{kick}, C{broadcast} and C{sessions} commands of one gateway.

    @param factory: The gateway's client factory (its C{connections}).
    @param listeners: What accepts its connections (objects with
        C{stopListening()}): a drain stops them, so that a replacement can
        take their ports.
    @param directory: What announces the gateway in the directory (with a
        C{refresh()}), if anything: a drain has it announce C{draining} at once.
    """

    log = Logger()

    def __init__(self, factory, sessions: Sessions, bus, listeners=(), directory=None):
        self.factory = factory
        self.sessions = sessions
        self.bus = bus
        self.listeners = list(listeners)
        self.directory = directory
        self.config = factory.config
        self.process = factory.process
        self.clock = factory.reactor
        self._drain: dict | None = None
        sessions.watch(self._check_drained)

    def register(self, control) -> None:
        """Answer C{drain}, C{kick}, C{broadcast} and C{sessions} on C{control}."""
        control.register("drain", self.drain)
        control.register("kick", self.kick)
        control.register("broadcast", self.broadcast)
        control.register("sessions", self.list_sessions)

    # -- drain ---------------------------------------------------------------------

    def drain(self, timeout=None) -> defer.Deferred:
        """
        The C{drain} control command (a rolling upgrade of this gateway):
        stop admitting (stop the listeners, announce C{draining}), tell
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
        waiter: defer.Deferred = defer.Deferred()
        if self._drain is not None:
            self._drain["waiters"].append(waiter)
            return waiter
        self._drain = {
            "waiters": [waiter],
            "sessions": list(self.sessions),
            "target": None,
            "told": 0,
            "timer": self.clock.callLater(timeout, self._finish_drain, True),
            "started": False,
        }
        self.sessions.drain()
        background(self._start_drain(), self.log, "draining failed")
        return waiter

    async def _start_drain(self) -> None:
        try:
            await self._move_clients()
        finally:
            # Whatever failed, the drain completes (or times out) as usual.
            if self._drain is not None:
                self._drain["started"] = True
            self._check_drained()

    async def _move_clients(self) -> None:
        for listener in self.listeners:
            try:
                await defer.maybeDeferred(listener.stopListening)
            except Exception:
                self.log.failure("stopping a listener for the drain failed")
        if self.directory is not None:
            # Bounded: a slow bus must not hold the clients back.
            announced = defer.maybeDeferred(self.directory.refresh)
            await announced.addTimeout(BUS_TIMEOUT, self.clock).addErrback(
                log_failure, self.log, "announcing the drain failed"
            )
        target = None
        try:
            target = await defer.ensureDeferred(self.drain_target()).addTimeout(
                BUS_TIMEOUT, self.clock
            )
        except Exception as e:
            self.log.warn("drain: cannot read the directory: {why!r}", why=e)
        drain = self._drain
        if drain is None:
            return
        name = self.sessions.name
        if target is None:
            self.log.warn(
                "{name} draining with no other gateway of realm {realm} live: clients are "
                "disconnected (shutdown) and may resume for {window:g} s",
                name=name,
                realm=self.process.realm,
                window=self.config.gateway.resume_window,
            )
        else:
            drain["target"] = target[0]
            self.log.info("{name} draining: clients move to {target}", name=name, target=target[0])
        for connection in list(self.factory.connections):
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

    async def drain_target(self) -> tuple[str, dict] | None:
        """
        Where a draining gateway sends its clients: the least-loaded other
        gateway of this realm in the directory that is not draining itself,
        as C{(name, {"host", "port"[, "websocket"]})}; C{None} if there is none.
        """
        services = await self.bus.services("gateway")
        candidates = {}
        for name, info in (services or {}).items():
            if name == self.sessions.name or not isinstance(info, dict):
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

    def _check_drained(self) -> None:
        drain = self._drain
        if (
            drain is not None
            and drain["started"]
            and not self.factory.connections
            and not len(self.sessions)
        ):
            self._finish_drain(timed_out=False)

    def _finish_drain(self, timed_out: bool) -> None:
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
            "remaining": len(self.sessions),
            "timed_out": timed_out,
        }
        log = self.log.warn if timed_out or result["remaining"] else self.log.info
        log("{name} drained: {result}", name=self.sessions.name, result=result)
        for waiter in drain["waiters"]:
            waiter.callback(result)

    def stop(self) -> None:
        """The gateway stops: a drain still running is over."""
        if self._drain is not None:
            self._finish_drain(timed_out=False)

    # -- kick and broadcast ------------------------------------------------------------

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
        found = [s for s in self.sessions if account in (s.account, s.caller.name)]
        for session in found:
            self.log.info(
                "kicking {name} ({account}): {reason}",
                name=session.caller.name,
                account=session.account,
                reason=reason,
            )
        ended = [self.sessions.end(session, KICKED, reason) for session in found]
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
        for session in self.sessions:
            try:
                session.push("server.notice", {"text": text})
            except WireError as e:
                raise ValueError(f"the notice cannot be sent: {e.message}") from None
            count += 1
        self.log.info("notice broadcast to {count} sessions", count=count)
        return count

    # -- sessions --------------------------------------------------------------------

    def list_sessions(self, after: str = "", limit: int = 100) -> dict:
        """
        The C{sessions} control command: the sessions held here, ordered by
        session id, those after C{after}, at most C{limit} (and never more
        than L{SESSIONS_PAGE_MAX}): a gateway with many players answers a
        page at a time.

        @return: C{{"sessions": [...], "total": N, "more": bool}}, each
            session as its account, name, character, zone and whether a
            connection is attached now, and the rest of its caller (account
            id, realm, character id, whether in the world, the gateway's
            incarnation): a game service that restarted learns who is
            online from them (L{mmo.process.seeding}).
        @raise ValueError: C{after} is not a string or C{limit} not a
            positive number.
        """
        if not isinstance(after, str):
            raise ValueError("after must be a session id")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError("limit must be a positive number of sessions")
        limit = min(limit, SESSIONS_PAGE_MAX)
        chosen = sorted((s for s in self.sessions if s.id > after), key=lambda s: s.id)
        rows = [
            {
                "session": session.id,
                "account": session.account,
                "name": session.caller.name,
                "character": session.caller.character_name,
                "zone": session.caller.zone,
                "attached": session.connection is not None,
                "account_id": session.caller.account_id,
                "realm": session.caller.realm,
                "character_id": session.caller.character_id,
                "in_world": session.caller.in_world,
                "incarnation": session.caller.incarnation,
            }
            for session in chosen[:limit]
        ]
        return {"sessions": rows, "total": len(self.sessions), "more": len(chosen) > limit}
