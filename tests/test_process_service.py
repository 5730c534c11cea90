"""The top service of a process: what a failed start leaves to stop."""

from __future__ import annotations

import gc

from twisted.application import service
from twisted.application.internet import TimerService
from twisted.internet.error import CannotListenError
from twisted.internet.task import Clock
from twisted.trial import unittest

from mmo.process.service import COLLECTOR_THRESHOLDS, ProcessService
from tests.support import config_of


class Refusing(service.Service):
    """A listener whose port is in use."""

    def startService(self):
        raise CannotListenError("127.0.0.1", 7000, OSError("in use"))


class Counting(service.Service):
    stops = 0

    def stopService(self):
        self.stops += 1
        return super().stopService()


class FailedStartTests(unittest.TestCase):
    def test_stop_after_a_failed_start(self):
        """
        A child that cannot start leaves the ones after it unstarted; the
        stop stops what did start and nothing else (a TimerService that
        never started cannot stop), and it completes.
        """
        clock = Clock()
        config = config_of()
        top = ProcessService(config, config.process("mmo"), clock)
        top.exitOnFailure = False
        before = Counting()
        before.setServiceParent(top)
        Refusing().setServiceParent(top)
        timer = TimerService(1.0, lambda: None)
        timer.clock = clock
        timer.setServiceParent(top)
        top.startService()
        self.successResultOf(top.started)
        self.assertTrue(before.running)
        self.assertFalse(timer.running)

        self.successResultOf(top.stopService())
        self.assertEqual(before.stops, 1)
        self.assertFalse(before.running)
        # A child whose stop failed would be an unhandled error, logged when
        # its Deferred is collected.
        gc.collect()
        self.assertEqual(self.flushLoggedErrors(), [])


class CollectorTests(unittest.TestCase):
    def setUp(self):
        thresholds = gc.get_threshold()
        self.addCleanup(gc.set_threshold, *thresholds)
        self.addCleanup(gc.unfreeze)

    def test_started_process_settles_the_collector(self):
        """
        Once its services have started, a process freezes what it has
        loaded and collects young objects every COLLECTOR_THRESHOLDS[0]
        allocations, not CPython's 700.
        """
        gc.set_threshold(700, 10, 10)
        clock = Clock()
        config = config_of()
        top = ProcessService(config, config.process("mmo"), clock)
        top.exitOnFailure = False
        Counting().setServiceParent(top)
        top.startService()
        self.successResultOf(top.started)
        self.assertEqual(gc.get_threshold(), COLLECTOR_THRESHOLDS)
        self.assertGreater(gc.get_freeze_count(), 0)
        self.successResultOf(top.stopService())
