"""
Password hashing with argon2id, off the reactor thread, with bounded
concurrency: a login storm queues (up to a limit, then gets "busy" with the
time to wait) instead of stalling the reactor or every other player.

argon2-cffi releases the GIL while it hashes, so hashes on different
threads run on different cores: the pool has one thread per core unless
configured otherwise, which is what lets logins reach the machine's hash
ceiling (cores / the time of one check).  More threads than cores would
only add hashes that wait for a core inside the kernel instead of in the
queue, where they can be counted and refused.
"""

from __future__ import annotations

import math
import os
import time

import argon2
from twisted.internet import defer, threads
from twisted.python.threadpool import ThreadPool

from mmo.metrics.registry import STATE, state
from mmo.wire.codes import BUSY, WireError

#: The shortest wait a "busy" answer asks for, in seconds.
MIN_RETRY_AFTER = 0.05

#: Weight of the newest hash's time in the running estimate of a hash's time.
HASH_TIME_WEIGHT = 0.1

#: Parameter sets whose "needs a new hash" answer is kept: a deployment has
#: the current one and the few it had before.
REHASH_ANSWERS = 16


#: Where Linux says how much CPU time the process's control group may use:
#: cgroup v2 ("QUOTA PERIOD" or "max PERIOD"), then v1 (quota and period files).
CPU_MAX = "/sys/fs/cgroup/cpu.max"
CFS_QUOTA = ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us")


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def cgroup_cores(cpu_max: str = CPU_MAX, cfs_quota: tuple[str, str] = CFS_QUOTA) -> int | None:
    """
    The cores' worth of CPU time the process's control group may use (a
    container's CPU limit), rounded up; C{None} without a limit.
    """
    quota = period = None
    text = _read(cpu_max)
    if text is not None:
        fields = text.split()
        if len(fields) == 2 and fields[0] != "max":
            quota, period = fields
    else:
        quota, period = _read(cfs_quota[0]), _read(cfs_quota[1])
    try:
        quota_us, period_us = int(quota), int(period)
    except (TypeError, ValueError):
        return None
    if quota_us <= 0 or period_us <= 0:
        return None
    return max(1, math.ceil(quota_us / period_us))


def usable_cores() -> int:
    """
    The cores this process may run on: its CPU affinity where the OS tells,
    and no more than its control group's CPU limit (in a container given
    two cores' worth of a large host, two).
    """
    if hasattr(os, "sched_getaffinity"):
        cores = len(os.sched_getaffinity(0))
    else:
        cores = os.cpu_count() or 1
    limit = cgroup_cores()
    return min(cores, limit) if limit is not None else cores


def hash_threads(login_config) -> int:
    """The hashing threads C{[login] hash_threads} asks for: 0 means one per core."""
    return login_config.hash_threads or usable_cores()


class PasswordHasher:
    """
    Hashes and verifies passwords on a thread pool of its own: C{threads_}
    hashes run at once, C{queue} more may wait; past that a request fails
    at once with C{busy} and a C{retry_after} of the time the queue takes
    to drain.

    @ivar threads: The hashes that run at once (the pool's threads).
    @ivar pending: Hashes queued or running.
    @ivar limit: The most hashes queued or running at once.
    @ivar hash_seconds: A running estimate of the wall time of one hash on
        the pool, measured by C{timer} on the hashing threads.
    @ivar pool: What runs the hashes: a L{ThreadPool} of C{threads_}
        threads unless another object with its C{callInThreadWithCallback},
        C{start} and C{stop} is given.
    """

    def __init__(
        self,
        reactor,
        threads_: int = 2,
        queue: int = 64,
        time_cost: int = 2,
        memory_kib: int = 19456,
        parallelism: int = 1,
        timer=time.perf_counter,
        pool=None,
    ):
        self.reactor = reactor
        self.argon2 = argon2.PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism
        )
        self.threads = threads_
        if pool is None:
            pool = ThreadPool(minthreads=0, maxthreads=threads_, name="mmo-passwords")
        self.pool = pool
        self.limit = threads_ + queue
        self.pending = 0
        self.timer = timer
        # A hash of no one's password: checking it costs what a real check
        # costs, so an unknown name takes as long as a wrong password.
        started = timer()
        self._decoy = self.argon2.hash("decoy password of no account")
        self.hash_seconds = timer() - started
        self._rehash: dict[tuple[str, int, int], bool] = {}

    @classmethod
    def from_config(cls, config, reactor):
        login = config.login
        return cls(
            reactor,
            threads_=hash_threads(login),
            queue=login.hash_queue,
            time_cost=login.argon2_time_cost,
            memory_kib=login.argon2_memory_kib,
            parallelism=login.argon2_parallelism,
        )

    def start(self) -> None:
        self.pool.start()
        STATE.register(self, self.metric_families)

    def stop(self) -> None:
        STATE.unregister(self)
        self.pool.stop()

    def metric_families(self):
        """What Prometheus reads of the hasher: its queue."""
        yield state("mmo_login_hash_queue", ((), self.pending))

    def retry_after(self) -> float:
        """Seconds until the hashes queued now have run: when to ask again."""
        waves = self.pending / self.threads
        return round(max(MIN_RETRY_AFTER, waves * self.hash_seconds), 2)

    def _run(self, function, *args) -> defer.Deferred:
        if self.pending >= self.limit:
            return defer.fail(
                WireError(
                    BUSY,
                    "the server is busy checking passwords; try again in a moment",
                    retry_after=self.retry_after(),
                )
            )
        self.pending += 1
        d = threads.deferToThreadPool(self.reactor, self.pool, self._timed, function, *args)

        def done(result):
            self.pending -= 1
            return result

        return d.addBoth(done).addCallback(self._measured)

    def _timed(self, function, *args):
        # On a hashing thread: the time is handed back to the reactor
        # thread, which alone updates the estimate.
        started = self.timer()
        result = function(*args)
        return result, self.timer() - started

    def _measured(self, timed):
        result, seconds = timed
        self.hash_seconds += HASH_TIME_WEIGHT * (seconds - self.hash_seconds)
        return result

    def hash(self, password: str) -> defer.Deferred:
        """Deferred[str]: the encoded argon2id hash of C{password}."""
        return self._run(self.argon2.hash, password)

    def verify(self, encoded: str | None, password: str) -> defer.Deferred:
        """
        Deferred[bool]: whether C{password} matches C{encoded}.  With
        C{encoded} C{None} (no such account) a decoy hash is checked, so that
        both cases cost the same.
        """
        return self._run(self._verify, encoded, password)

    def _verify(self, encoded: str | None, password: str) -> bool:
        try:
            return self.argon2.verify(encoded or self._decoy, password) and encoded is not None
        except argon2.exceptions.VerificationError:
            return False
        except argon2.exceptions.InvalidHashError:
            return False

    def needs_rehash(self, encoded: str) -> bool:
        """Whether C{encoded} was made with other parameters than the current ones."""
        # Parsing the parameters costs the reactor thread about 20 µs a
        # login; the answer depends only on the parameters and the lengths
        # of the salt and the hash, so it is kept per set of them.
        fields = encoded.rsplit("$", 2)
        if len(fields) != 3:
            return self.argon2.check_needs_rehash(encoded)
        head, salt, digest = fields
        parameters = (head, len(salt), len(digest))
        answer = self._rehash.get(parameters)
        if answer is None:
            if len(self._rehash) >= REHASH_ANSWERS:
                self._rehash.clear()
            answer = self._rehash[parameters] = self.argon2.check_needs_rehash(encoded)
        return answer
