"""
L{mmo.game.messages.Dispatcher}: a channel's messages to their handlers, one
at a time or, for a run from the bus, the consecutive messages of a type
with a run handler in one call.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.trial import unittest

from mmo.game import messages
from mmo.game.messages import Moved, Push, PushBatch
from tests.support import LogCapture


class Boom(Exception):
    """What a failing handler raises."""


def push(n: int) -> Push:
    return Push([f"s-{n}"], "news", {"n": n})


class DispatcherRunTests(unittest.TestCase):
    def setUp(self):
        self.log = LogCapture(self)
        self.calls: list = []
        self.dispatcher = messages.Dispatcher("gateway gw-1")
        self.dispatcher.on(
            Push,
            lambda sender, value: self.calls.append(("one", sender, value.fields["n"])),
            runs=lambda pairs: self.calls.append(
                ("run", [(sender, value.fields["n"]) for sender, value in pairs])
            ),
        )
        self.dispatcher.on(
            PushBatch, lambda sender, value: self.calls.append(("batch", sender, value.pushes))
        )

    def test_one_message(self):
        """Called with one message, the handler (not the run handler) has it."""
        self.dispatcher(messages.encode(push(1), "chat"))
        self.assertEqual(self.calls, [("one", "chat", 1)])

    def test_run(self):
        """
        Consecutive messages of a type with a run handler go to it in one
        call; any other message is handled in its place, and cuts the run.
        """
        run = [
            messages.encode(push(1), "chat"),
            messages.encode(push(2), "lobby"),
            messages.encode(PushBatch({"s-1": []}), "r0c0"),
            messages.encode(push(3), "chat"),
        ]
        self.dispatcher.run(run)
        self.assertEqual(
            self.calls,
            [
                ("run", [("chat", 1), ("lobby", 2)]),
                ("batch", "r0c0", {"s-1": []}),
                ("run", [("chat", 3)]),
            ],
        )

    def test_malformed_and_unexpected(self):
        """
        A message that is not one, or that nobody here handles, is logged
        and dropped; the second is a message of another type all the same.
        """
        run = [
            messages.encode(push(1), "chat"),
            {"type": "Nonsense"},
            messages.encode(push(2), "chat"),
            messages.encode(Moved("s-1", "e-1", "r0c1", 2), "r0c0"),
            messages.encode(push(3), "chat"),
        ]
        self.dispatcher.run(run)
        self.assertEqual(self.calls, [("run", [("chat", 1), ("chat", 2)]), ("run", [("chat", 3)])])
        self.assertEqual(len(self.log.matching("dropped a bus message")), 1)
        self.assertEqual(len(self.log.matching("unexpected Moved from r0c0")), 1)

    def test_failures(self):
        """
        What a handler raises, or fails with later, is logged, each failure
        apart; the other messages are handled all the same.
        """
        later = defer.Deferred()
        self.dispatcher.on(Push, None, runs=lambda pairs: later)

        def batch(sender, value):
            raise Boom("now")

        self.dispatcher.on(PushBatch, batch)
        self.dispatcher.on(Moved, lambda sender, value: self.calls.append(value.zone))
        self.dispatcher.run(
            [
                messages.encode(push(1), "chat"),
                messages.encode(PushBatch({}), "r0c0"),
                messages.encode(Moved("s-1", "e-1", "r0c1", 2), "r0c0"),
                messages.encode(PushBatch({}), "r0c0"),
            ]
        )
        self.assertEqual(self.calls, ["r0c1"])
        self.assertEqual(len(self.flushLoggedErrors(Boom)), 2)
        later.errback(Boom("later"))
        self.assertEqual(len(self.flushLoggedErrors(Boom)), 1)
        self.assertEqual(len(self.log.matching("gateway gw-1: handling PushBatch failed")), 2)
        self.assertEqual(len(self.log.matching("gateway gw-1: handling Push failed")), 1)

    def test_runs_handler_replaced(self):
        """Registered again without one, a type's messages are handled one at a time."""
        self.dispatcher.on(
            Push, lambda sender, value: self.calls.append(("one", sender, value.fields["n"]))
        )
        self.dispatcher.run([messages.encode(push(n), "chat") for n in (1, 2)])
        self.assertEqual(self.calls, [("one", "chat", 1), ("one", "chat", 2)])
