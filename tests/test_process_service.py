"""The top service of a process: what a failed start leaves to stop, and a bounded stop."""

from __future__ import annotations

import gc

from twisted.application import service
from twisted.application.internet import TimerService
from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.internet.task import Clock
from twisted.trial import unittest

from mmo.bus.directory import DirectoryService
from mmo.bus.memory import MemoryBus
from mmo.process.service import COLLECTOR_THRESHOLDS, STOP_SHARE, ProcessService
from tests.support import LogCapture, config_of


class Refusing(service.Service):
    """A listener whose port is in use."""

    def startService(self):
        raise CannotListenError("127.0.0.1", 7000, OSError("in use"))


class Counting(service.Service):
    stops = 0

    def stopService(self):
        self.stops += 1
        return super().stopService()


class Unanswered(service.Service):
    """A service whose stop waits on a peer that never answers (Redis gone)."""

    def __init__(self):
        self.waiting = defer.Deferred()

    def stopService(self):
        super().stopService()
        return self.waiting


class Resource:
    """A process resource (a bus, a store): its stop answers or not."""

    def __init__(self, stopping=None):
        self.stopping = stopping
        self.stopped = False

    def start(self):
        return defer.succeed(None)

    def stop(self):
        self.stopped = True
        return self.stopping if self.stopping is not None else defer.succeed(None)


class BoundedStopTests(unittest.TestCase):
    """
    A process asked to stop stops within 4/5 of [manager] stop_timeout
    whatever its peers do: a stop that never ends is given up on, and logged.
    """

    def setUp(self):
        self.clock = Clock()
        config = config_of(manager={"stop_timeout": 10.0})
        self.bound = STOP_SHARE * 10.0
        self.top = ProcessService(config, config.process("mmo"), self.clock)
        self.top.exitOnFailure = False
        self.log = LogCapture(self)

    def start(self):
        self.top.startService()
        self.successResultOf(self.top.started)

    def test_child_that_never_stops(self):
        """
        A child whose stop waits for ever (a zone's last checkpoint with its
        Redis stopped) holds the stop until the bound, no longer; then the
        resources are stopped and the process's stop completes.
        """
        stuck = Unanswered()
        stuck.setServiceParent(self.top)
        other = Counting()
        other.setServiceParent(self.top)
        bus = self.top.resource(Resource())
        self.start()
        stopped = self.top.stopService()
        self.clock.advance(self.bound - 0.1)
        self.assertNoResult(stopped)
        self.assertEqual(other.stops, 1)
        self.assertFalse(bus.stopped)
        self.clock.advance(0.1)
        self.successResultOf(stopped)
        self.assertTrue(bus.stopped)
        self.assertEqual(len(self.log.matching("gave up waiting for", "Unanswered")), 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        # Its answer coming late changes nothing, and a late failure is logged.
        stuck.waiting.errback(RuntimeError("connection lost"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_resource_that_never_stops(self):
        """
        A resource whose stop never ends (a Redis disconnect) is given up on
        at the same deadline; the resources before it are still stopped.
        """
        first = self.top.resource(Resource())
        stuck = self.top.resource(Resource(defer.Deferred()))
        Counting().setServiceParent(self.top)
        self.start()
        stopped = self.top.stopService()
        self.assertTrue(stuck.stopped)
        self.assertFalse(first.stopped)
        self.clock.advance(self.bound)
        self.successResultOf(stopped)
        self.assertTrue(first.stopped)
        self.assertEqual(len(self.log.matching("gave up waiting for", "Resource")), 1)

    def test_prompt_stop(self):
        """A stop that answers completes at once, and leaves no timer behind."""
        Counting().setServiceParent(self.top)
        self.top.resource(Resource())
        self.start()
        self.successResultOf(self.top.stopService())
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.log.matching("gave up"), [])


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


class ReadyTests(unittest.TestCase):
    def test_ready_once_in_the_directory(self):
        """
        A process says it is ready once its directory entries' first
        announcements are over (a child's child's too): whoever reads the
        directory then finds it.
        """
        clock = Clock()
        config = config_of()
        log = LogCapture(self)
        top = ProcessService(config, config.process("mmo"), clock)
        top.exitOnFailure = False
        bus = MemoryBus(reactor=clock)
        held = defer.Deferred()
        bus.announce = lambda name, info, ttl: held
        group = service.MultiService()
        group.setServiceParent(top)
        DirectoryService(bus, "mmo", lambda: {"kind": "mmo"}, 1, 3, clock).setServiceParent(group)
        top.startService()
        self.assertNoResult(top.started)
        self.assertEqual(log.matching("mmo: ready"), [])
        held.callback(None)
        self.successResultOf(top.started)
        self.assertEqual(len(log.matching("mmo: ready")), 1)
        self.successResultOf(top.stopService())


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
