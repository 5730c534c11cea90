"""
Tests of the ladder service's parts on their own edges: a queued player's
session that moves (L{mmo.ladder.queue_requests}), and a result whose
application or save fails (L{mmo.ladder.results}).
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from mmo.game.messages import Push, gateway_channel
from mmo.ladder.report import report_result
from mmo.ladder.service import PASS_INTERVAL
from tests.support import GatewayInbox
from tests.test_ladder_service import LadderTestCase, player


class QueueRequestTests(LadderTestCase):
    async def test_a_queued_players_moved_session_gets_the_pushes(self):
        """
        A queued player's session that moves to another gateway is where
        the ladder's pushes go; news of another session of the same
        account changes nothing.
        """
        moved_inbox = GatewayInbox()
        await self.bus.subscribe(gateway_channel("gw2"), moved_inbox)
        alice, bob = player("alice"), player("bob")
        await self.send(alice, "ladder.queue.join", ladder="duel", mode="1v1")
        moved = alice.moved(gateway="gw2")
        await self.ladder.session_event(moved, "moved")
        other = alice.moved(session="s-alice-2", gateway="gw3")
        await self.ladder.session_event(other, "changed")
        self.assertEqual(self.ladder.callers[alice.account_id], moved)
        await self.send(bob, "ladder.queue.join", ladder="duel", mode="1v1")
        self.turn(PASS_INTERVAL)
        self.turn(60)  # the match times out
        ended = [
            m.sessions
            for m in moved_inbox.of_type(Push)
            if m.kind == "ladder.match.ended" and alice.session in m.sessions
        ]
        self.assertEqual(len(ended), 1)
        self.assertEqual(self.pushes("ladder.match.ended", alice.session), [])
        self.assertEqual(len(self.pushes("ladder.match.ended", bob.session)), 1)


class ResultTests(LadderTestCase):
    def logged(self) -> list[dict]:
        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        return events

    async def test_a_result_that_fails_is_not_answered_and_applied_on_retry(self):
        _, match = await self.matched("alice", "bob")
        duel = self.ladder.ladders["duel"]
        report = duel.report
        calls = []

        async def failing_once(*args, **kwargs):
            calls.append(args)
            if len(calls) == 1:
                raise RuntimeError("the store failed")
            return await report(*args, **kwargs)

        self.patch(duel, "report", failing_once)
        d = defer.ensureDeferred(
            report_result(self.bus, "duel", match, ranks=[0, 1], reactor=self.clock, retry=1)
        )
        await self.settle(lambda: len(calls) == 1)
        self.turn()
        self.assertFalse(d.called)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(self.pushes("ladder.result"), [])
        self.turn(1)
        await self.settle(lambda: d.called)
        outcome = await d
        self.assertFalse(outcome["already_applied"])
        self.assertEqual(len(calls), 2)
        self.assertEqual(len(self.pushes("ladder.result")), 2)

    async def test_a_result_whose_state_save_fails(self):
        """
        A result applied whose queue state cannot be saved is still
        answered, pushed and frees the players; the failure is logged.
        """
        (alice, _), match = await self.matched("alice", "bob")

        async def broken():
            raise RuntimeError("the bus failed")

        self.patch(self.ladder, "save", broken)
        outcome = await self.report(match, ranks=[0, 1])
        self.assertFalse(outcome["already_applied"])
        self.assertEqual(len(self.pushes("ladder.result")), 2)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        joined = await self.send(alice, "ladder.queue.join", ladder="duel", mode="1v1")
        self.assertTrue(joined["queued"])

    async def test_a_result_whose_state_is_not_saved_is_warned_of(self):
        """A save refused (the lease is being lost) after a result is a warning."""
        _, match = await self.matched("alice", "bob")
        events = self.logged()

        async def refused():
            return False

        self.patch(self.ladder, "save", refused)
        await self.report(match, ranks=[0, 1])
        warned = [e for e in events if "was not saved" in formatEvent(e)]
        self.assertEqual([e["log_level"] for e in warned], [LogLevel.warn])
        self.assertIn(match, formatEvent(warned[0]))
