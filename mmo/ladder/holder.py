"""
L{QueueLease}: which ladder process holds the ranked queue.

Every ladder process contends for one bus lease (L{QUEUE_LEASE_KEY});
the holder alone runs matchmaking passes, takes queue joins and leaves,
applies results and writes the queue's state, stamped with the lease's
fencing token.  The others stand by and take over when the lease
expires (the holder died) or is released (it stopped, after its last
write).

A holder that fails to renew (the bus is unreachable, or another
process holds the lease now) stops at once: it writes nothing more.  It
also writes nothing once less than a third of the lease's ttl is left
since its last renewal was asked for, so that a write on its way when
the lease runs out is one that took longer than that to arrive (the
remaining window, C{docs/ladder.md}).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Awaitable, Callable

from twisted.internet import defer, task
from twisted.logger import Logger

from mmo.unavailable import BackendUnavailable

#: The bus lease of the ranked queue.
QUEUE_LEASE_KEY = "ladder.queue"


def new_holder() -> str:
    """A name for this process on the lease: its pid and a fresh id of this start."""
    return f"ladder-{os.getpid()}/{uuid.uuid4().hex[:8]}"


class QueueLease:
    """
    One process's hold on the queue's lease, renewed every C{ttl / 3}
    seconds of C{reactor}.

    C{taken(token)} is awaited when the lease becomes this process's
    (before any renewal after it), C{lost()} called when it stops being;
    a holding that changed token (lost and taken again between two
    renewals) is a loss then a take.

    @ivar holder: This process on the lease.
    @ivar token: The fencing token while this process serves the queue,
        else C{None}.
    """

    log = Logger()

    def __init__(
        self,
        bus,
        ttl: float,
        reactor,
        taken: Callable[[int], Awaitable[None]],
        lost: Callable[[], None],
        holder: str | None = None,
    ):
        if ttl <= 0:
            raise ValueError(f"a lease lasts more than 0 seconds, not {ttl}")
        self.bus = bus
        self.ttl = ttl
        self.reactor = reactor
        self.holder = holder or new_holder()
        self.token: int | None = None
        self._taken = taken
        self._lost = lost
        #: The reactor time up to which a write is still made.
        self._writable_until = 0.0
        self._loop = task.LoopingCall(self._tick)
        self._loop.clock = reactor
        self._renewing: defer.Deferred | None = None

    def __repr__(self) -> str:
        return f"<QueueLease {self.holder} token={self.token}>"

    # -- life cycle --------------------------------------------------------------------

    async def start(self) -> None:
        """Try to take the lease now, then keep renewing or contending."""
        await self.renew()
        self._loop.start(self.ttl / 3, now=False)

    async def stop(self, last_write: Callable[[], Awaitable[None]] | None = None) -> None:
        """
        Stop contending; if this process holds the lease, await
        C{last_write()} and release it, so that another takes over at once.
        """
        if self._loop.running:
            self._loop.stop()
        if self._renewing is not None:
            await self._renewing
        if self.token is None:
            return
        try:
            if last_write is not None:
                await last_write()
        finally:
            self._drop()
            try:
                await self.bus.release_lease(QUEUE_LEASE_KEY, self.holder)
            except BackendUnavailable as e:
                self.log.warn("ladder: queue lease not released (it expires): {e}", e=e)

    # -- holding -------------------------------------------------------------------------

    def writable(self) -> bool:
        """Whether this process holds the lease, with time left to write under it."""
        return self.token is not None and self.reactor.seconds() < self._writable_until

    async def current(self) -> tuple[str, int] | None:
        """C{(holder, token)} of whoever holds the lease now, or C{None}."""
        return await self.bus.lease_holder(QUEUE_LEASE_KEY)

    def _tick(self) -> None:
        # Not returned: a renewal slower than the interval must not stop the loop.
        if self._renewing is None:
            d = defer.ensureDeferred(self.renew())
            d.addErrback(lambda f: self.log.failure("ladder: queue lease renewal failed", f))

    async def renew(self) -> None:
        """Take or renew the lease once, and follow what became of it."""
        self._renewing = defer.Deferred()
        try:
            await self._renew()
        finally:
            renewing, self._renewing = self._renewing, None
            renewing.callback(None)

    async def _renew(self) -> None:
        asked = self.reactor.seconds()
        try:
            got = await self.bus.lease(QUEUE_LEASE_KEY, self.holder, self.ttl)
        except BackendUnavailable as e:
            if self.token is not None:
                self.log.warn("ladder: cannot renew the queue lease, standing by: {e}", e=e)
            got = None
        if got is not None and got == self.token:
            self._writable_until = asked + self.ttl * 2 / 3
            return
        if self.token is not None:
            self.log.warn("ladder: queue lease lost (token {token})", token=self.token)
            self._drop()
        if got is None:
            return
        self.log.info(
            "ladder: {holder} holds the queue (token {token})", holder=self.holder, token=got
        )
        self._writable_until = asked + self.ttl * 2 / 3
        self.token = got
        try:
            await self._taken(got)
        except BaseException as e:
            # Serving with a state not loaded would lose the last holder's:
            # give the lease up, another (or the next renewal) takes it.
            self._drop()
            try:
                await self.bus.release_lease(QUEUE_LEASE_KEY, self.holder)
            except BackendUnavailable:
                pass
            if not isinstance(e, BackendUnavailable):
                raise
            self.log.warn("ladder: the queue state could not be read, lease given up: {e}", e=e)

    def _drop(self) -> None:
        self.token = None
        self._writable_until = 0.0
        self._lost()
