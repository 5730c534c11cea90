"""
L{Lease}: which process of a kind holds what only one may serve (the
ladder's ranked queue, the economy's trades).

Every process of the kind contends for one bus lease (its key); the
holder alone serves, and writes stamped with the lease's fencing token.
The others stand by and take over when the lease expires (the holder
died) or is released (it stopped, after its last write).

A holder that fails to renew (the bus is unreachable, or another
process holds the lease now) stops at once: it writes nothing more.  It
also writes nothing once less than a third of the lease's ttl is left
since its last renewal was asked for, so that a write on its way when
the lease runs out is one that took longer than that to arrive (the
remaining window, C{docs/ladder.md}).

The lease lives here, below the services that hold one
(L{mmo.ladder.service}, L{mmo.economy.service}).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Awaitable, Callable

from twisted.internet import defer, task
from twisted.logger import Logger

from mmo.unavailable import BackendUnavailable


def new_holder(name: str) -> str:
    """A name for this process on a lease of C{name}: its pid and a fresh id of this start."""
    return f"{name}-{os.getpid()}/{uuid.uuid4().hex[:8]}"


class Lease:
    """
    One process's hold on the lease C{key}, renewed every C{ttl / 3}
    seconds of C{reactor}.

    C{taken(token)} is awaited when the lease becomes this process's
    (before any renewal after it), C{lost()} called when it stops being;
    a holding that changed token (lost and taken again between two
    renewals) is a loss then a take.

    @ivar key: The bus lease.
    @ivar name: What the log lines say the lease is of (C{"ladder"}).
    @ivar holder: This process on the lease.
    @ivar token: The fencing token while this process holds the lease,
        else C{None}.
    """

    log = Logger()

    def __init__(
        self,
        bus,
        key: str,
        name: str,
        ttl: float,
        reactor,
        taken: Callable[[int], Awaitable[None]],
        lost: Callable[[], None],
        holder: str | None = None,
    ):
        if ttl <= 0:
            raise ValueError(f"a lease lasts more than 0 seconds, not {ttl}")
        self.bus = bus
        self.key = key
        self.name = name
        self.ttl = ttl
        self.reactor = reactor
        self.holder = holder or new_holder(name)
        self.token: int | None = None
        self._taken = taken
        self._lost = lost
        #: The reactor time up to which a write is still made.
        self._writable_until = 0.0
        self._loop = task.LoopingCall(self._tick)
        self._loop.clock = reactor
        self._renewing: defer.Deferred | None = None

    def __repr__(self) -> str:
        return f"<Lease {self.key} {self.holder} token={self.token}>"

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
                await self.bus.release_lease(self.key, self.holder)
            except BackendUnavailable as e:
                self.log.warn(
                    "{name}: lease {key} not released (it expires): {e}",
                    name=self.name,
                    key=self.key,
                    e=e,
                )

    # -- holding -------------------------------------------------------------------------

    def writable(self) -> bool:
        """Whether this process holds the lease, with time left to write under it."""
        return self.token is not None and self.reactor.seconds() < self._writable_until

    async def current(self) -> tuple[str, int] | None:
        """C{(holder, token)} of whoever holds the lease now, or C{None}."""
        return await self.bus.lease_holder(self.key)

    def _tick(self) -> None:
        # Not returned: a renewal slower than the interval must not stop the loop.
        if self._renewing is None:
            d = defer.ensureDeferred(self.renew())
            d.addErrback(
                lambda f: self.log.failure("{name}: lease {key} renewal failed", f, **self._said)
            )

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
            got = await self.bus.lease(self.key, self.holder, self.ttl)
        except BackendUnavailable as e:
            if self.token is not None:
                self.log.warn(
                    "{name}: cannot renew lease {key}, standing by: {e}", e=e, **self._said
                )
            got = None
        if got is not None and got == self.token:
            self._writable_until = asked + self.ttl * 2 / 3
            return
        if self.token is not None:
            self.log.warn(
                "{name}: lease {key} lost (token {token})", token=self.token, **self._said
            )
            self._drop()
        if got is None:
            return
        self.log.info(
            "{name}: {holder} holds lease {key} (token {token})",
            holder=self.holder,
            token=got,
            **self._said,
        )
        self._writable_until = asked + self.ttl * 2 / 3
        self.token = got
        try:
            await self._taken(got)
        except BaseException as e:
            # Serving with a state not loaded (or not recovered) would lose the last holder's:
            # give the lease up, another (or the next renewal) takes it.
            self._drop()
            try:
                await self.bus.release_lease(self.key, self.holder)
            except BackendUnavailable:
                pass
            if not isinstance(e, BackendUnavailable):
                raise
            self.log.warn(
                "{name}: the state could not be read, lease {key} given up: {e}",
                e=e,
                **self._said,
            )

    @property
    def _said(self) -> dict:
        return {"name": self.name, "key": self.key}

    def _drop(self) -> None:
        self.token = None
        self._writable_until = 0.0
        self._lost()
