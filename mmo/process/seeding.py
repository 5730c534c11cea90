"""
Who is online, learnt from the gateways when a game-service process starts.

A service that keeps who is online (chat, the economy:
L{mmo.game.presence}) hears of sessions from the gateways' session events
and the callers of requests.  A process that (re)starts while players are
connected would know none of them until each sent it something or his
session changed: a whisper or a trade to him would find him offline.  So
once such a process started, L{SessionSeeding} asks every gateway of the
directory for the sessions it holds (its C{sessions} control command, a
page at a time: L{mmo.process.control.session_pages}), and tells the
service of each (L{mmo.game.service.GameService.session_found}).

It runs in the background: the process serves meanwhile, and what it hears
meanwhile wins (a session event or a request is newer than a gateway's
list; a session that ended is not brought back).  Each gateway has
L{SEEDING_DEADLINE} seconds to list its sessions; one that does not answer
in time, or answers nonsense, is logged and skipped.  The sessions learnt
are the process's too (L{mmo.game.gateways.KnownSessions}): they end when
their gateway dies, as any other.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.logger import Logger

from mmo.game.service import Caller
from mmo.process import control

#: Seconds a gateway has to list all of its sessions.
SEEDING_DEADLINE = 5.0

#: The directory kind of the processes that hold sessions for other processes' services.
GATEWAY_KIND = "gateway"


def row_caller(gateway: str, row: dict) -> Caller | None:
    """
    The L{Caller} of a row of C{gateway}'s C{sessions} answer, or C{None}
    if the row lacks what a caller needs (a gateway older than the row's
    C{account_id}) or is not what a gateway sends.
    """
    text = ("session", "account_id", "name")
    optional = ("character", "zone", "character_id")
    if not all(isinstance(row.get(key), str) and row[key] for key in text):
        return None
    if not all(row.get(key) is None or isinstance(row[key], str) for key in optional):
        return None
    realm, incarnation = row.get("realm", "main"), row.get("incarnation", "")
    if not (isinstance(realm, str) and isinstance(incarnation, str)):
        return None
    return Caller(
        session=row["session"],
        gateway=gateway,
        account_id=row["account_id"],
        name=row["name"],
        realm=realm,
        character_id=row.get("character_id"),
        character_name=row.get("character"),
        zone=row.get("zone"),
        in_world=row.get("in_world") is True,
        incarnation=incarnation,
    )


class SessionSeeding:
    """
    Tells a service of the sessions the gateways hold, once, after its
    process started (a process resource: L{start} returns at once, the
    asking runs in the background, L{stop} cancels it).

    @ivar service: The L{mmo.game.service.GameService} (its
        C{session_found}).
    @ivar known: The process's L{mmo.game.gateways.KnownSessions}.
    @ivar done: The Deferred of the background run, firing with the number
        of sessions the service was told of (C{None} before L{start}).
    """

    log = Logger()

    def __init__(self, service, known, bus, reactor, deadline: float = SEEDING_DEADLINE):
        self.service = service
        self.known = known
        self.bus = bus
        self.reactor = reactor
        self.deadline = deadline
        self.done: defer.Deferred | None = None

    def start(self) -> None:
        def stopped(failure):
            if failure.check(defer.FirstError):  # cancelled while asking the gateways
                failure = failure.value.subFailure
            failure.trap(defer.CancelledError)
            return 0

        self.done = defer.ensureDeferred(self.seed()).addErrback(stopped)

    def stop(self) -> None:
        if self.done is not None and not self.done.called:
            self.done.cancel()

    async def seed(self) -> int:
        """Ask every gateway at once; the number of sessions told to the service."""
        try:
            services = await self.bus.services()
        except Exception as e:
            self.log.warn(
                "{kind}: the gateways' sessions were not asked: {why}",
                kind=self.service.kind,
                why=e,
            )
            return 0
        gateways = sorted(
            name for name, info in services.items()
            if isinstance(info, dict) and info.get("kind") == GATEWAY_KIND
        )  # fmt: skip
        results = await defer.gatherResults(
            [defer.ensureDeferred(self._from(gateway)) for gateway in gateways],
            consumeErrors=True,
        )
        found = sum(results)
        self.log.info(
            "{kind}: {found} sessions learnt from {count} gateways",
            kind=self.service.kind,
            found=found,
            count=len(gateways),
        )
        return found

    async def _from(self, gateway: str) -> int:
        """Ask C{gateway}: the number of sessions it told that were news."""
        found = skipped = 0
        try:
            async for rows in control.session_pages(self.bus, gateway, self.deadline, self.reactor):
                for row in rows:
                    caller = row_caller(gateway, row)
                    if caller is None:
                        skipped += 1
                    elif self.known.found(caller):
                        found += await self._tell(caller)
        except defer.CancelledError:
            raise
        except Exception as e:  # no answer, a refusal, the bus down: skip it
            self.log.warn(
                "{kind}: the sessions of {gateway} were not learnt: {why}",
                kind=self.service.kind,
                gateway=gateway,
                why=e,
            )
        if skipped:
            self.log.warn(
                "{kind}: {count} sessions of {gateway} skipped: no caller in their rows",
                kind=self.service.kind,
                count=skipped,
                gateway=gateway,
            )
        return found

    async def _tell(self, caller: Caller) -> int:
        try:
            await self.service.session_found(caller)
        except Exception:
            self.log.failure(
                "{kind}: session {session} of {gateway} not taken",
                kind=self.service.kind,
                session=caller.session,
                gateway=caller.gateway,
            )
            return 0
        return 1
