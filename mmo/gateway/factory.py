"""
The factory of client connections: configuration and the set of live
connections, no bytes and no game state.
"""

from __future__ import annotations

import uuid

from twisted.internet import defer, protocol
from twisted.logger import Logger

from mmo.config import Config, ProcessSection
from mmo.gateway.protocol import CLOSED, ClientProtocol, GatewayProtocol
from mmo.login.service import SESSIONS_CHANNEL, revoke
from mmo.wire import codes
from mmo.wire.codes import ALREADY_ONLINE, LOGGED_OUT, REPLACED, WireError


class ClientFactory(protocol.ServerFactory):
    """
    Builds a L{ClientProtocol} per client connection.

    Game teams subclass it and set C{protocol} to their own protocol class;
    the config key C{processes.NAME.factory} names the subclass to use.

    @ivar config: The deployment config.
    @ivar process: This process's section of it.
    @ivar wire: The C{[wire]} limits.
    @ivar reactor: The reactor and clock every connection uses.
    @ivar connections: The live connections.
    """

    protocol = ClientProtocol
    log = Logger()
    # The service logs its own line when it listens; one per connection is noise.
    noisy = False

    def __init__(self, config: Config, process: ProcessSection, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.config = config
        self.process = process
        self.wire = config.wire
        self.reactor = reactor
        self.connections: set[ClientProtocol] = set()
        self._drained: list[defer.Deferred] = []

    def connectionOpened(self, connection: ClientProtocol) -> None:
        self.connections.add(connection)

    def connectionClosed(self, connection: ClientProtocol) -> None:
        self.connections.discard(connection)
        if not self.connections:
            waiting, self._drained = self._drained, []
            for d in waiting:
                d.callback(None)

    def closeAll(
        self,
        code: str = codes.SHUTDOWN,
        message: str = "the server is shutting down",
        timeout: float = 5.0,
    ) -> defer.Deferred:
        """
        Say goodbye to every connection and close it; the result fires once
        all are closed.  Connections still open after C{timeout} seconds
        (a peer that does not read) are aborted.
        """
        if not self.connections:
            return defer.succeed(None)
        d = defer.Deferred()
        self._drained.append(d)
        for connection in list(self.connections):
            connection.goodbye(code, message)

        def abort():
            for connection in list(self.connections):
                self.log.warn("aborting {peer}: no close after goodbye", peer=connection.peer)
                connection.transport.abortConnection()

        timer = self.reactor.callLater(timeout, abort)
        d.addBoth(lambda result: timer.cancel() if timer.active() else None)
        return d


def online_key(account_id: str) -> str:
    return f"online:{account_id}"


class GatewayFactory(ClientFactory):
    """
    The factory of player sessions: admits tickets, keeps one session per
    account (the C{[login] second_login} policy) across every gateway of the
    deployment, and tells the directory how loaded it is.

    @ivar admission: The L{mmo.gateway.admission.Admission} checking tickets.
    @ivar bus: The deployment's bus.
    @ivar sessions: Account id -> the admitted connection on this gateway.
    """

    protocol = GatewayProtocol

    def __init__(self, config: Config, process: ProcessSection, reactor=None):
        super().__init__(config, process, reactor)
        self.admission = None
        self.bus = None
        self.sessions: dict[str, GatewayProtocol] = {}

    async def admit(self, connection: GatewayProtocol, token: str):
        """Admit C{connection} with C{token}; returns the ticket."""
        ticket = await self.admission.admit(token)
        if connection.state == CLOSED:
            raise WireError(codes.BAD_REQUEST, "the connection closed")
        account = ticket.account_id
        existing = self.sessions.get(account)
        if self.config.login.second_login == "refuse" and (
            existing is not None or await self.bus.get(online_key(account)) is not None
        ):
            raise WireError(ALREADY_ONLINE, "this account is already online")
        connection.ticket = ticket
        connection.session = uuid.uuid4().hex
        self.sessions[account] = connection
        if existing is not None and existing is not connection:
            existing.goodbye(REPLACED, "your account logged in from elsewhere")
        await self.bus.put(
            online_key(account),
            {"gateway": self.process.name, "session": connection.session},
            ttl=self.config.bus.heartbeat_timeout,
        )
        await self.bus.publish(
            SESSIONS_CHANNEL,
            {"account": account, "session": connection.session, "reason": "replaced"},
        )
        self.log.info("{peer} admitted as {name}", peer=connection.peer, name=ticket.name)
        return ticket

    def sessionsMessage(self, message: dict) -> None:
        """A session of some account began or ended elsewhere: close ours if older."""
        connection = self.sessions.get(message.get("account"))
        if connection is None or connection.session == message.get("session"):
            return
        if message.get("reason") == "logout":
            connection.goodbye(LOGGED_OUT, "your account logged out")
        else:
            connection.goodbye(REPLACED, "your account logged in from elsewhere")

    async def logout(self, connection: GatewayProtocol) -> None:
        await revoke(
            self.bus,
            self.config,
            connection.ticket.account_id,
            self.reactor.seconds(),
            keep=connection.session,
        )

    def sessionEnded(self, connection: GatewayProtocol) -> None:
        if connection.ticket is None:
            return
        account = connection.ticket.account_id
        if self.sessions.get(account) is connection:
            del self.sessions[account]
            d = defer.ensureDeferred(self.bus.clear(online_key(account)))
            d.addErrback(lambda f: self.log.failure("clearing presence failed", f))

    def refreshPresence(self) -> defer.Deferred:
        """Renew the presence of every admitted session (called each heartbeat)."""
        ttl = self.config.bus.heartbeat_timeout
        puts = [
            defer.ensureDeferred(
                self.bus.put(
                    online_key(account),
                    {"gateway": self.process.name, "session": connection.session},
                    ttl=ttl,
                )
            )
            for account, connection in list(self.sessions.items())
        ]
        return defer.gatherResults(puts, consumeErrors=True)

    def load(self) -> int:
        """What the directory reports: connected clients."""
        return len(self.connections)
