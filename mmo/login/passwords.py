"""
Password hashing with argon2id, off the reactor thread, with bounded
concurrency: a login storm queues (up to a limit, then gets "busy") instead
of stalling the reactor or every other player.
"""

from __future__ import annotations

import argon2
from twisted.internet import defer, threads
from twisted.python.threadpool import ThreadPool

from mmo.wire.codes import BUSY, WireError


class PasswordHasher:
    """
    Hashes and verifies passwords on a thread pool of its own.

    @ivar pending: Hashes queued or running.
    """

    def __init__(
        self,
        reactor,
        threads_: int = 2,
        queue: int = 64,
        time_cost: int = 2,
        memory_kib: int = 19456,
        parallelism: int = 1,
    ):
        self.reactor = reactor
        self.argon2 = argon2.PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism
        )
        self.pool = ThreadPool(minthreads=0, maxthreads=threads_, name="mmo-passwords")
        self.limit = threads_ + queue
        self.pending = 0
        # A hash of no one's password: checking it costs what a real check
        # costs, so an unknown name takes as long as a wrong password.
        self._decoy = self.argon2.hash("decoy password of no account")

    @classmethod
    def from_config(cls, config, reactor):
        login = config.login
        return cls(
            reactor,
            threads_=login.hash_threads,
            queue=login.hash_queue,
            time_cost=login.argon2_time_cost,
            memory_kib=login.argon2_memory_kib,
            parallelism=login.argon2_parallelism,
        )

    def start(self) -> None:
        self.pool.start()

    def stop(self) -> None:
        self.pool.stop()

    def _run(self, function, *args) -> defer.Deferred:
        if self.pending >= self.limit:
            return defer.fail(WireError(BUSY, "the server is busy; try again in a moment"))
        self.pending += 1
        d = threads.deferToThreadPool(self.reactor, self.pool, function, *args)

        def done(result):
            self.pending -= 1
            return result

        return d.addBoth(done)

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
        return self.argon2.check_needs_rehash(encoded)
