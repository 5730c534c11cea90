"""
Control commands over the in-process bus: a reply for a known command, a
refusal for an unknown one or bad arguments, L{NoAnswer} when nobody takes
the process's channel.
"""

from __future__ import annotations

from twisted.internet import defer, task
from twisted.trial import unittest

from mmo.bus.memory import MemoryBus
from mmo.process import control


class ControlTests(unittest.TestCase):
    async def setUp(self):
        self.clock = task.Clock()
        self.bus = MemoryBus(reactor=self.clock)
        await self.bus.start()
        self.addCleanup(self.bus.stop)
        self.service = control.ControlService(self.bus, "gateway-1")
        self.service.register("add", lambda a, b: a + b)
        self.service.register("later", lambda: task.deferLater(self.clock, 1, lambda: "done"))
        await self.service.start()
        self.addCleanup(self.service.stop)

    def call(self, process, command, args=None):
        d = defer.ensureDeferred(
            control.call(self.bus, process, command, args, timeout=5, reactor=self.clock)
        )
        # The memory bus delivers on the clock.
        for _ in range(10):
            self.clock.advance(0)
        return d

    async def test_answer(self):
        self.assertEqual(await self.call("gateway-1", "add", {"a": 2, "b": 3}), 5)

    async def test_answer_later(self):
        d = self.call("gateway-1", "later")
        self.assertNoResult(d)
        self.clock.advance(1)
        for _ in range(10):
            self.clock.advance(0)
        self.assertEqual(await d, "done")

    async def test_refused(self):
        with self.assertRaises(control.ControlError) as caught:
            await self.call("gateway-1", "reboot")
        self.assertNotIsInstance(caught.exception, control.NoAnswer)
        self.assertIn("gateway-1 has no command 'reboot'", str(caught.exception))
        with self.assertRaises(control.ControlError) as caught:
            await self.call("gateway-1", "add", {"a": 2})
        self.assertIn("missing 1 required", str(caught.exception))

    async def test_no_answer(self):
        d = self.call("gateway-2", "add", {"a": 1, "b": 1})
        self.clock.advance(5)
        with self.assertRaises(control.NoAnswer) as caught:
            await d
        self.assertIn("gateway-2 did not answer 'add' within 5s", str(caught.exception))
