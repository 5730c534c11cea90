"""
What the bus says of a gateway's sessions: the gateway's start, and for
each session it holds, its account's presence and its resume token's
holder, renewed every heartbeat.  See C{docs/sessions.md}.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.logger import Logger

from mmo.game import messages
from mmo.game.messages import GatewayStarted, online_key, session_key
from mmo.gateway.failures import log_failure


class Presence:
    """
    The bus keys of the sessions one gateway holds.

    @ivar config: The deployment's config (C{[bus] heartbeat_timeout}).
    @ivar name: The gateway's process name.
    @ivar incarnation: The id of this start of the process.
    @ivar bus: The bus.
    @ivar registry: The L{mmo.gateway.sessions.SessionRegistry}: what
        L{refresh} renews.
    """

    log = Logger()

    def __init__(self, config, name: str, incarnation: str, bus, registry):
        self.config = config
        self.name = name
        self.incarnation = incarnation
        self.bus = bus
        self.registry = registry

    def announce(self) -> defer.Deferred:
        """
        Say on the bus that this gateway started, as L{incarnation}: the game
        services end the sessions an earlier process of its name held (they
        died with it).  Fires when sent; a failure is logged (the services
        also find the new incarnation in the directory).
        """
        d = messages.publish(
            self.bus,
            messages.GATEWAYS_CHANNEL,
            GatewayStarted(self.name, self.incarnation),
            self.name,
        )
        return d.addErrback(log_failure, self.log, "announcing the gateway's start failed")

    def keys(self, session) -> list[tuple[str, object]]:
        """The bus keys that say this gateway holds C{session}: presence and token."""
        return [
            (online_key(session.account), {"gateway": self.name, "session": session.id}),
            (session_key(session.token_hash), self.name),
        ]

    async def hold(self, session) -> None:
        """Say on the bus that this gateway holds C{session}: presence and token."""
        await self.bus.put_many(self.keys(session), ttl=self.config.bus.heartbeat_timeout)

    async def release(self, session, presence: bool) -> None:
        """C{session} is not held here any more: its token, and its presence if C{presence}."""
        await self.bus.clear(session_key(session.token_hash))
        if presence:
            held = await self.bus.get(online_key(session.account))
            if isinstance(held, dict) and held.get("session") == session.id:
                await self.bus.clear(online_key(session.account))

    async def rekey(self, session, old_hash: str) -> None:
        """A resume renewed C{session}'s token: the old one names nobody any more."""
        await self.bus.clear(session_key(old_hash))
        if session.live:
            await self.hold(session)

    def refresh(self) -> defer.Deferred:
        """
        Renew the presence and token keys of every session held here (each
        heartbeat), all in one bus call: one command per chunk of keys,
        not two per session.
        """
        items = [item for session in self.registry for item in self.keys(session)]
        if not items:
            return defer.succeed(None)
        d = self.bus.put_many(items, ttl=self.config.bus.heartbeat_timeout)
        # Logged, not raised: a failed renewal must not stop the next one.
        return d.addErrback(log_failure, self.log, "renewing the sessions' presence failed")
