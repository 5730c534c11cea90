"""
The service directory, seen from one process: L{DirectoryService} keeps the
process's entry alive with a heartbeat, L{ranked} orders entries by load and
L{least_loaded} picks the first.

An entry is the process's name and a dict of what others need to reach and
choose it (see C{docs/bus.md}): C{kind}, C{realm}, C{addresses} or
C{host}/C{port}, C{load} (a number, lower is better) and C{draining} (true
while it takes no new work).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from numbers import Real

from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.logger import Logger

import mmo
from mmo.unavailable import log_failure

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_bytes() -> int | None:
    """This process's resident memory, bytes (Linux), else C{None}."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def process_info() -> dict:
    """
    What every entry says of the process behind it (for C{mmo-admin
    status}): its version, pid and resident memory (C{rss}, bytes).
    """
    return {"version": mmo.__version__, "pid": os.getpid(), "rss": resident_bytes()}


class DirectoryService(Service):
    """
    Announce a process in the directory every C{interval} seconds, for
    C{ttl} seconds each time, from L{startService} until L{stopService},
    which withdraws it.

    C{info_callable} is called at every tick, so the entry follows the
    process's load.  A failed announcement (Redis down, a bad value) is
    logged and tried again at the next tick; it never stops the service.
    If announcements keep failing for longer than C{ttl} the entry expires,
    which is what the other processes should believe: they cannot reach the
    bus through which they would reach this process.

    @ivar announced: How many announcements succeeded (for status and tests).
    @ivar failures: How many announcements in a row failed.
    """

    log = Logger()

    def __init__(
        self,
        bus,
        name: str,
        info_callable: Callable[[], dict],
        interval: float,
        ttl: float,
        reactor=None,
    ):
        if ttl <= interval:
            raise ValueError(f"ttl ({ttl}) must be longer than interval ({interval})")
        if reactor is None:
            from twisted.internet import reactor
        self.bus = bus
        self.name = name
        self.info_callable = info_callable
        self.interval = interval
        self.ttl = ttl
        self.reactor = reactor
        self.announced = 0
        self.failures = 0
        self._loop: task.LoopingCall | None = None
        self._pending: defer.Deferred | None = None

    @classmethod
    def from_config(cls, bus, config, name: str, info_callable, reactor=None):
        """One whose interval and ttl are C{[bus] heartbeat_interval/timeout}."""
        return cls(
            bus,
            name,
            info_callable,
            config.bus.heartbeat_interval,
            config.bus.heartbeat_timeout,
            reactor=reactor,
        )

    def startService(self) -> None:
        super().startService()
        self._loop = task.LoopingCall(self._tick)
        self._loop.clock = self.reactor
        self._loop.start(self.interval, now=True)

    def _tick(self) -> None:
        # Not returned to the LoopingCall: a slow announcement must not
        # stop the heartbeat, and one still in flight makes this tick a no-op.
        if self._pending is None:
            self.refresh()

    def refresh(self) -> defer.Deferred:
        """
        Announce now (say, after the load or C{draining} changed) rather than
        at the next tick.  Deferred[None]; never fails.
        """
        if not self.running:
            return defer.succeed(None)
        if self._pending is not None:
            # One at a time: the second follows the first, with fresh info.
            result = defer.Deferred()
            self._pending.addBoth(lambda _: self.refresh().chainDeferred(result))
            return result
        d = defer.maybeDeferred(
            lambda: self.bus.announce(
                self.name, {**process_info(), **self.info_callable()}, self.ttl
            )
        )
        self._pending = d

        def succeeded(_):
            self.announced += 1
            if self.failures:
                self.log.info(
                    "announced {name} in the directory again, after {failures} failures",
                    name=self.name,
                    failures=self.failures,
                )
            self.failures = 0

        def failed(f):
            # The whole story the first time (a traceback only if it is not
            # the bus being unreachable), one line a tick afterwards.
            self.failures += 1
            if self.failures == 1:
                log_failure(
                    f,
                    self.log,
                    "could not announce {name} in the directory; retrying every {interval}s",
                    name=self.name,
                    interval=self.interval,
                )
            else:
                self.log.warn(
                    "still cannot announce {name} in the directory ({failures} failures): {reason}",
                    name=self.name,
                    failures=self.failures,
                    reason=f.getErrorMessage(),
                )

        def done(_):
            if self._pending is d:
                self._pending = None

        d.addCallbacks(succeeded, failed).addBoth(done)
        return d

    def announcing(self) -> defer.Deferred:
        """
        Deferred[None], firing once no announcement is in flight (the one
        made at the start, say: sent, or failed and logged); never fails.
        A process says it is ready after it, so that whoever reads the
        directory then finds the process there.
        """
        pending = self._pending
        if pending is None:
            return defer.succeed(None)
        d = defer.Deferred()

        def over(result):
            d.callback(None)
            return result

        pending.addBoth(over)
        return d

    def stopService(self) -> defer.Deferred:
        """Stop the heartbeat and withdraw the entry.  Deferred[None]; never fails."""
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        # Withdraw after any announcement in flight: otherwise a late
        # announcement could put the entry back for another ttl.
        pending = self._pending if self._pending is not None else defer.succeed(None)
        d = defer.Deferred()
        pending.addBoth(lambda _: d.callback(None))
        d.addCallback(lambda _: self.bus.withdraw(self.name))
        d.addErrback(
            log_failure,
            self.log,
            "could not withdraw {name} from the directory; it expires in {ttl}s",
            name=self.name,
            ttl=self.ttl,
        )
        return d


def ranked(services: dict, kinds: tuple[str, ...] | None, realm: str | None = None) -> list:
    """
    The entries of C{services} (name -> info, from L{IBus.services}) of one
    of C{kinds} (any if C{None}) and of C{realm} (any if C{None}) that may be
    given work, lowest C{info["load"]} first; equal loads go by name, so
    every caller ranks them alike.  Entries that are C{draining} or whose
    load is not a number are left out; a missing load counts as 0.

    @return: C{[(name, info), ...]}.
    """
    found = []
    for name, info in services.items():
        if not isinstance(info, dict):
            continue
        if kinds is not None and info.get("kind") not in kinds:
            continue
        if realm is not None and info.get("realm") != realm:
            continue
        if info.get("draining"):
            continue
        load = info.get("load", 0)
        if isinstance(load, bool) or not isinstance(load, Real):
            continue
        found.append(((load, name), name, info))
    found.sort(key=lambda entry: entry[0])
    return [(name, info) for _, name, info in found]


def least_loaded(services: dict, kind: str | None, realm: str | None = None):
    """
    The first entry L{ranked} gives for C{kind} (any if C{None}) and
    C{realm}: the least-loaded one that may be given work.

    @return: C{(name, info)}, or C{None} if nothing fits.
    """
    found = ranked(services, None if kind is None else (kind,), realm)
    return found[0] if found else None
