"""
Tests for the password hashing pool: its size (one thread per core unless
configured), its bound (threads + queue) and the C{busy} refusal with the
time to wait, driven by a fake pool, a fake reactor and a fake timer.
"""

from __future__ import annotations

import os

from twisted.internet import task
from twisted.trial import unittest

from mmo.config import ConfigError
from mmo.login import passwords
from mmo.login.passwords import (
    MIN_RETRY_AFTER,
    PasswordHasher,
    cgroup_cores,
    hash_threads,
    usable_cores,
)
from mmo.wire.codes import BUSY, WireError
from tests import support

PASSWORD = "correct horse battery"


class FakePool:
    """Holds the jobs given to it until the test runs them, as a pool would on its threads."""

    def __init__(self):
        self.jobs = []
        self.started = self.stopped = False

    def start(self):
        self.started = True

    def stop(self):
        self.stopped = True

    def callInThreadWithCallback(self, onResult, function, *args, **kwargs):
        self.jobs.append((onResult, function, args, kwargs))

    def run_one(self):
        """Run the oldest job, as a hashing thread would."""
        onResult, function, args, kwargs = self.jobs.pop(0)
        onResult(True, function(*args, **kwargs))


class ThreadlessClock(task.Clock):
    """A clock that runs what a thread hands back at once (there is one thread)."""

    def callFromThread(self, function, *args, **kwargs):
        function(*args, **kwargs)


class FakeTimer:
    """Each reading advances by the next of C{steps} (the time a hash took)."""

    def __init__(self, *steps: float):
        self.now = 0.0
        self.steps = list(steps)
        self.reading = 0

    def __call__(self) -> float:
        # Readings come in pairs (before, after): the second of each adds a step.
        if self.reading % 2:
            self.now += self.steps.pop(0)
        self.reading += 1
        return self.now


def login_config(**login):
    return support.config_of(login={"argon2_memory_kib": 64, "argon2_time_cost": 1, **login})


class PoolSizeTests(unittest.TestCase):
    def test_one_thread_per_core_by_default(self):
        config = login_config()
        self.assertEqual(config.login.hash_threads, 0)
        self.assertEqual(hash_threads(config.login), usable_cores())
        hasher = PasswordHasher.from_config(config, ThreadlessClock())
        self.assertEqual(hasher.threads, usable_cores())
        self.assertEqual(hasher.pool.max, usable_cores())
        self.assertEqual(hasher.limit, usable_cores() + config.login.hash_queue)

    def test_configured_threads(self):
        config = login_config(hash_threads=3, hash_queue=5)
        hasher = PasswordHasher.from_config(config, ThreadlessClock())
        self.assertEqual((hasher.threads, hasher.pool.max, hasher.limit), (3, 3, 8))

    def test_bad_sizes_fail_the_start(self):
        for key, value, reason in (
            ("hash_threads", -1, "at least 0"),
            ("hash_threads", 1000, "at most 256"),
            ("hash_threads", "all", "must be an integer"),
            ("hash_queue", 0, "at least 1"),
        ):
            with self.assertRaises(ConfigError) as caught:
                login_config(**{key: value})
            self.assertEqual(caught.exception.path, ("login", key))
            self.assertIn(reason, caught.exception.message)

    def test_pool_started_and_stopped(self):
        pool = FakePool()
        hasher = PasswordHasher(
            ThreadlessClock(), threads_=1, time_cost=1, memory_kib=64, pool=pool
        )
        hasher.start()
        hasher.stop()
        self.assertEqual((pool.started, pool.stopped), (True, True))


class QueueBoundTests(unittest.TestCase):
    def setUp(self):
        self.pool = FakePool()
        # The decoy hash made at the start took 0.5 s; the checks take 0.1 s each.
        self.timer = FakeTimer(0.5, 0.1, 0.1, 0.1)
        self.hasher = PasswordHasher(
            ThreadlessClock(),
            threads_=2,
            queue=3,
            time_cost=1,
            memory_kib=64,
            timer=self.timer,
            pool=self.pool,
        )
        self.encoded = self.hasher._decoy

    def refusal(self, d) -> WireError:
        failures = []
        d.addErrback(failures.append)
        self.assertEqual(len(failures), 1)
        return failures[0].value

    def test_threads_and_queue_are_taken_then_busy(self):
        """Threads + queue hashes are accepted; the next gets busy at once, nothing queued."""
        accepted = [self.hasher.verify(self.encoded, PASSWORD) for _ in range(5)]
        self.assertEqual((self.hasher.pending, len(self.pool.jobs)), (5, 5))
        error = self.refusal(self.hasher.verify(self.encoded, PASSWORD))
        self.assertEqual(error.code, BUSY)
        self.assertFalse(error.fatal)
        # Five hashes to run on two threads at 0.5 s each (the estimate so far).
        self.assertEqual(error.retry_after, 1.25)
        self.assertEqual((self.hasher.pending, len(self.pool.jobs)), (5, 5))
        self.assertTrue(all(not d.called for d in accepted))

    def test_room_again_once_a_hash_has_run(self):
        results = []
        for _ in range(5):
            self.hasher.verify(self.encoded, "wrong password").addCallback(results.append)
        self.pool.run_one()
        self.assertEqual((results, self.hasher.pending), ([False], 4))
        self.hasher.verify(self.encoded, PASSWORD).addCallback(results.append)
        self.assertEqual(self.hasher.pending, 5)
        self.assertEqual(self.refusal(self.hasher.hash(PASSWORD)).code, BUSY)

    def test_retry_after_follows_the_measured_hash_time(self):
        """The wait told is the queue's hashes over the threads, at the time hashes take now."""
        for _ in range(5):
            self.hasher.verify(self.encoded, PASSWORD)
        for _ in range(3):
            self.pool.run_one()
        # 0.5 s, then three checks of 0.1 s, each weighing a tenth.
        estimate = 0.5
        for _ in range(3):
            estimate += 0.1 * (0.1 - estimate)
        self.assertAlmostEqual(self.hasher.hash_seconds, estimate)
        self.assertEqual(self.hasher.retry_after(), round(2 / 2 * estimate, 2))

    def test_retry_after_has_a_floor(self):
        self.hasher.hash_seconds = 0.0001
        self.assertEqual(self.hasher.retry_after(), MIN_RETRY_AFTER)

    def test_a_failed_hash_frees_its_place(self):
        failures = []
        self.hasher.hash(PASSWORD).addErrback(failures.append)
        self.hasher.verify(self.encoded, PASSWORD)
        onResult, _, _, _ = self.pool.jobs.pop(0)
        onResult(False, RuntimeError("the thread failed"))
        self.assertEqual(failures[0].type, RuntimeError)
        self.assertEqual(self.hasher.pending, 1)


class CgroupLimitTests(unittest.TestCase):
    """A container's CPU limit caps the threads, as much as the affinity does."""

    def write(self, text: str) -> str:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_cgroup_v2(self):
        none = (self.mktemp(), self.mktemp())
        self.assertEqual(cgroup_cores(self.write("200000 100000\n"), none), 2)
        self.assertEqual(cgroup_cores(self.write("150000 100000\n"), none), 2)
        self.assertEqual(cgroup_cores(self.write("50000 100000\n"), none), 1)
        self.assertIsNone(cgroup_cores(self.write("max 100000\n"), none))
        self.assertIsNone(cgroup_cores(self.write("garbage\n"), none))

    def test_cgroup_v1(self):
        missing = self.mktemp()
        v1 = (self.write("300000\n"), self.write("100000\n"))
        self.assertEqual(cgroup_cores(missing, v1), 3)
        unlimited = (self.write("-1\n"), self.write("100000\n"))
        self.assertIsNone(cgroup_cores(missing, unlimited))
        self.assertIsNone(cgroup_cores(missing, (self.mktemp(), self.mktemp())))

    def test_limit_caps_the_cores(self):
        self.patch(passwords, "cgroup_cores", lambda: 1)
        self.assertEqual(usable_cores(), 1)
        self.patch(passwords, "cgroup_cores", lambda: 100000)
        self.assertEqual(usable_cores(), len(os.sched_getaffinity(0)))


class RehashTests(unittest.TestCase):
    """Whether a stored hash needs a new one: its parameters against the current ones."""

    def hasher(self, **parameters) -> PasswordHasher:
        options = {"time_cost": 1, "memory_kib": 64, **parameters}
        return PasswordHasher(ThreadlessClock(), pool=FakePool(), **options)

    def test_current_and_older_parameters(self):
        hasher = self.hasher()
        current = hasher.argon2.hash(PASSWORD)
        older = self.hasher(time_cost=2).argon2.hash(PASSWORD)
        smaller = self.hasher(memory_kib=32).argon2.hash(PASSWORD)
        # Asked twice each: the kept answer is the one argon2 gives.
        for _ in range(2):
            self.assertFalse(hasher.needs_rehash(current))
            self.assertTrue(hasher.needs_rehash(older))
            self.assertTrue(hasher.needs_rehash(smaller))

    def test_salt_and_hash_lengths_count(self):
        """Same parameters, another length of salt or of hash: a new hash is needed."""
        hasher = self.hasher()
        current = hasher.argon2.hash(PASSWORD)
        head, salt, digest = current.rsplit("$", 2)
        self.assertFalse(hasher.needs_rehash(current))
        self.assertTrue(hasher.needs_rehash(f"{head}${salt[:-4]}${digest}"))
        self.assertTrue(hasher.needs_rehash(f"{head}${salt}${digest[:-4]}"))

    def test_answers_kept_are_bounded(self):
        hasher = self.hasher()
        for cost in range(1, passwords.REHASH_ANSWERS + 5):
            encoded = f"$argon2id$v=19$m=64,t={cost},p=1$c2FsdHNhbHRzYWx0c2FsdA$" + "A" * 43
            self.assertEqual(hasher.needs_rehash(encoded), cost != 1)
            self.assertLessEqual(len(hasher._rehash), passwords.REHASH_ANSWERS)
