"""
Two ladder processes on one bus (a fake clock, the in-memory bus): one
serves the queue, the holder of its lease; the other stands by and takes
over, with the queue as the holder left it, when the holder stops (it
releases the lease) or dies (the lease expires).  A holder that cannot
renew stops passing and writing at once, and never overwrites the state
of the holder after it.  A process standing by relays the queue's client
messages to the holder.
"""

from __future__ import annotations

from twisted.internet import defer

from mmo.bus import BusError
from mmo.game import messages
from mmo.game.messages import (
    LADDER_STATE_KEY,
    MATCHES_CHANNEL,
    MatchRoom,
    ServiceCall,
    ServiceCallAnswer,
    service_calls_channel,
    service_reply_channel,
)
from mmo.game.relay import RELAY_TIMEOUT
from mmo.ladder.service import PASS_INTERVAL, QUEUE_LEASE_KEY, lease_ttl
from mmo.wire import codes
from mmo.wire.codes import WireError
from tests.support import GatewayInbox
from tests.test_ladder_service import LadderTestCase, player

#: A queue join's fields.
DUEL = {"ladder": "duel", "mode": "1v1"}


def crash(ladder) -> None:
    """What a killed process leaves: its timers stop, nothing is written or released."""
    for loop in (ladder._loop, ladder.lease._loop):
        if loop.running:
            loop.stop()


class HolderTestCase(LadderTestCase):
    async def setUp(self):
        await super().setUp()
        self.first = self.ladder
        self.second = await self.start_ladder()
        self.ttl = lease_ttl(self.config)
        self.asked = GatewayInbox()
        await self.bus.subscribe(MATCHES_CHANNEL, self.asked)

    async def ask(self, service, caller, kind: str, wait: float = 0.0, **message):
        """
        What C{service} answers C{caller}'s message (relayed on the bus if
        it stands by), C{wait} seconds of the clock later at most.
        """
        d = defer.ensureDeferred(service.handle(caller, kind, message))
        self.turn(wait)
        await self.settle(lambda: d.called)
        return await d

    async def join(self, service, name: str, wait: float = 0.0):
        return await self.ask(service, player(name), "ladder.queue.join", wait, **DUEL)

    async def refused_by(self, service, kind: str, wait: float = 0.0, **message) -> WireError:
        try:
            await self.ask(service, player("carol"), kind, wait, **message)
        except WireError as e:
            return e
        self.fail(f"{kind} was not refused")

    def match_rooms(self) -> list:
        return [r for r in self.lobby.rooms.values() if r.match is not None]

    async def saved_token(self):
        return (await self.bus.get(LADDER_STATE_KEY))["token"]


class HolderTests(HolderTestCase):
    async def test_one_serves_the_other_stands_by(self):
        self.assertTrue(self.first.serving)
        self.assertFalse(self.second.serving)
        self.assertNotIn("standby", self.first.directory_info())
        self.assertTrue(self.second.directory_info()["standby"])
        # The queue's messages reach the holder through the bus, its
        # answers and errors come back.
        carol = player("carol")
        joined = await self.join(self.second, "carol")
        self.assertTrue(joined["queued"])
        self.assertIsNotNone(self.first.queue.entry_of(carol.account_id))
        self.assertEqual(self.second.queue.queued(), 0)
        e = await self.refused_by(self.second, "ladder.queue.join", **DUEL)
        self.assertEqual(e.code, codes.NOT_ALLOWED)
        status = await self.ask(self.second, carol, "ladder.queue.status")
        self.assertEqual(status["gap"], joined["gap"])
        left = await self.ask(self.second, carol, "ladder.queue.leave")
        self.assertEqual(left, {"left": {"ladder": "duel", "mode": "1v1"}})
        e = await self.refused_by(self.second, "ladder.queue.report")
        self.assertEqual(e.code, codes.NOT_ALLOWED)
        # The board is the store's: any ladder process answers it.
        board = await self.second.handle(player("alice"), "ladder.top", {"ladder": "duel"})
        self.assertEqual(board["entries"], [])
        await self.join(self.first, "alice")
        await self.join(self.first, "bob")
        for _ in range(4):
            self.turn(PASS_INTERVAL)
        # One match, one room, asked for once: only the holder passes.
        self.assertEqual(len(self.first.queue.matches), 1)
        self.assertEqual(self.second.queue.matches, {})
        self.assertEqual(len(self.asked.of_type(MatchRoom)), 1)
        self.assertEqual(len(self.match_rooms()), 1)
        self.assertEqual((await self.bus.lease_holder(QUEUE_LEASE_KEY))[0], self.first.lease.holder)

    async def test_takes_over_at_once_when_the_holder_stops(self):
        await self.join(self.first, "alice")
        self.turn(2)
        first_token = self.first.lease.token
        await self.first.stop()
        # Saved, then released.
        self.assertEqual(await self.saved_token(), first_token)
        self.assertIsNone(await self.bus.lease_holder(QUEUE_LEASE_KEY))
        # At its next renewal, well before the lease would have expired.
        self.turn(self.ttl / 3)
        self.assertTrue(self.second.serving)
        self.assertEqual(self.second.queue.entry_of("a-alice")[2].joined, 0.0)
        await self.join(self.second, "bob")
        self.turn(PASS_INTERVAL)
        [match] = self.second.queue.matches.values()
        self.assertEqual(sorted(match.players), ["a-alice", "a-bob"])
        self.assertEqual(len(self.match_rooms()), 1)

    async def test_takes_over_when_the_holder_dies(self):
        await self.join(self.first, "alice")
        self.turn(PASS_INTERVAL)  # saved by the pass
        first_token = self.first.lease.token
        crash(self.first)
        self.turn(self.ttl - 1)
        self.assertFalse(self.second.serving)  # the dead holder's lease still runs
        self.turn(1 + self.ttl / 3)
        self.assertTrue(self.second.serving)
        self.assertGreater(self.second.lease.token, first_token)
        self.assertIsNotNone(self.second.queue.entry_of("a-alice"))
        await self.join(self.second, "bob")
        self.turn(PASS_INTERVAL)
        self.assertEqual(len(self.second.queue.matches), 1)
        self.assertEqual(await self.saved_token(), self.second.lease.token)

    async def test_results_are_applied_by_the_holder_only(self):
        await self.join(self.first, "alice")
        await self.join(self.first, "bob")
        self.turn(PASS_INTERVAL)
        [match] = self.first.queue.matches
        outcome = await self.report(match, ranks=[0, 1])
        self.assertFalse(outcome["already_applied"])
        self.assertEqual(len(self.pushes("ladder.result")), 2)


class LostLeaseTests(HolderTestCase):
    async def test_a_holder_that_cannot_renew_stops_at_once(self):
        await self.join(self.first, "alice")
        self.turn(PASS_INTERVAL)
        saved = await self.bus.get(LADDER_STATE_KEY)

        def unreachable(*args):
            raise BusError("redis is down")

        self.patch(self.bus, "lease", unreachable)
        self.turn(self.ttl / 3)
        self.assertFalse(self.first.serving)
        self.assertFalse(self.second.serving)
        self.assertTrue(self.first.directory_info()["standby"])
        # Relayed, and nobody serves: the client is told to retry.
        e = await self.refused_by(
            self.first, "ladder.queue.join", RELAY_TIMEOUT, ladder="duel", mode="1v1"
        )
        self.assertEqual(e.code, codes.UNAVAILABLE)
        self.assertFalse(await self.first.save())
        self.assertEqual(await self.bus.get(LADDER_STATE_KEY), saved)

    async def test_a_stalled_holder_never_overwrites_the_next(self):
        # The holder stops renewing (a process stalled, a partition) but
        # still runs: it stops writing before its lease can have expired.
        await self.join(self.first, "alice")
        self.turn(PASS_INTERVAL)
        self.first.lease._loop.stop()
        self.turn(self.ttl * 2 / 3)
        self.assertFalse(self.first.serving)
        self.assertFalse(await self.first.save())
        self.turn(self.ttl / 3 + self.ttl / 3)
        self.assertTrue(self.second.serving)
        await self.join(self.second, "bob")
        self.turn(PASS_INTERVAL)
        token = self.second.lease.token
        self.assertEqual(await self.saved_token(), token)
        # The stalled one wakes up: its passes write nothing; its renewal
        # finds the lease taken and stands it by.
        await self.first.run_pass()
        self.assertFalse(await self.first.save())
        await self.first.lease.renew()
        self.assertFalse(self.first.serving)
        self.assertEqual(self.first.queue.queued(), 0)
        self.assertEqual(await self.saved_token(), token)
        self.assertEqual(len(self.second.queue.matches), 1)

    async def test_a_state_that_cannot_be_loaded_gives_the_lease_up(self):
        await self.first.stop()

        def unreadable(key):
            raise BusError("redis is down")

        self.patch(self.bus, "get", unreadable)
        self.turn(self.ttl / 3)
        self.assertFalse(self.second.serving)
        self.assertIsNone(await self.bus.lease_holder(QUEUE_LEASE_KEY))
        self.patch(self.bus, "get", type(self.bus).get.__get__(self.bus))
        self.turn(self.ttl / 3)
        self.assertTrue(self.second.serving)


class RelayTests(HolderTestCase):
    async def test_a_malformed_call_is_answered(self):
        answers = GatewayInbox()
        await self.bus.subscribe(service_reply_channel("tester"), answers)
        for caller, message in (({"session": 7}, {}), (player("carol").to_dict(), [])):
            call = ServiceCall(
                "r-1", service_reply_channel("tester"), caller, "ladder.queue.status", message
            )
            await messages.publish(self.bus, service_calls_channel("ladder"), call, "tester")
        self.turn()
        self.assertEqual([a.code for a in answers.of_type(ServiceCallAnswer)], [codes.INTERNAL] * 2)
        self.assertTrue(self.first.serving)

    async def test_a_call_to_nobody_is_unavailable_and_forgotten(self):
        crash(self.first)
        self.turn(self.ttl * 2 / 3)
        e = await self.refused_by(self.second, "ladder.queue.status", RELAY_TIMEOUT)
        self.assertEqual(e.code, codes.UNAVAILABLE)
        self.assertEqual(self.second.relay._requests._waiting, {})
