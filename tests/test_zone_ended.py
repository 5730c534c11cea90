"""
A player's entity leaves the world whenever its session ends
(L{mmo.zone.ended}): also when C{"ended"} comes while the entity is being
handed over between zones, or still entering, and when its zone's process
is down (the gateway's zone route tells it again once it is back).  The
entity leaves once, saved where it was, and never from under a newer
session of its character.  Two zones on a fake clock, the memory bus and
SQLite.
"""

from __future__ import annotations

from twisted.internet import defer, error, task
from twisted.trial import unittest

from mmo import rpc
from mmo.game.messages import SwitchRoute
from mmo.game.routes import LocalRoute
from mmo.rpc.commands import ServiceError
from mmo.wire import codes
from mmo.wire.codes import WireError
from mmo.zone.ended import EndedResends, EndedSessions
from mmo.zone.entity import WORLD_KEY
from mmo.zone.route import ZoneRoute
from mmo.zone.world import WorldMap
from tests.test_zone_service import caller
from tests.test_zone_views import HeldTransfers, ViewTestCase


class Gate:
    """
    A store whose C{method} waits for L{open} before it is carried out: a
    zone's request on its way, not done yet.
    """

    def __init__(self, store, method: str):
        self.store = store
        self.method = method
        self.waiting: list[tuple[defer.Deferred, tuple]] = []

    def __getattr__(self, name):
        if name == self.method:
            return self._held
        return getattr(self.store, name)

    def _held(self, *args):
        answer = defer.Deferred()
        self.waiting.append((answer, args))
        return answer

    def open(self) -> None:
        waiting, self.waiting = self.waiting, []
        for answer, args in waiting:
            getattr(self.store, self.method)(*args).chainDeferred(answer)


class EndedTestCase(ViewTestCase):
    async def setUp(self):
        await super().setUp()
        #: Zone name -> how many times it saved where an entity left the world.
        self.saves = {}
        for zone in (self.west, self.east):
            self.count_saves(zone)
        self.alice = await self.character("alice", {"hp": 10})
        self.alice_id = self.alice.character_id
        await self.west.handle(self.alice, "zone.enter", {})
        self.west.simulation.get(self.alice_id).x = 96.0
        await self.settle()

    def count_saves(self, zone) -> None:
        save = zone._save_where
        self.saves[zone.name] = 0

        async def counted(entity):
            self.saves[zone.name] += 1
            await save(entity)

        zone._save_where = counted

    async def ended(self, *zones, session=None) -> None:
        """Alice's session ends, as the gateway's zone route tells C{zones}."""
        caller = self.alice if session is None else self.alice.moved(session=session)
        for zone in zones or (self.west, self.east):
            await zone.session_event(caller, "ended")

    def switched(self) -> bool:
        return bool(self.delivered["gw-1"].of_type(SwitchRoute))

    async def assertLeftOnce(self):
        """Alice's entity is in no zone and not in the store, saved once, where it was."""
        await self.tick_until(
            lambda: (
                sum(self.saves.values()) == 1
                and self.east.handoff.status(self.alice_id) is None
                and self.west.handoff.status(self.alice_id) in (None, "forwarding")
            )
        )
        await self.settle(3)
        self.assertIsNone(self.west.simulation.get(self.alice_id))
        self.assertIsNone(self.east.simulation.get(self.alice_id))
        self.assertIsNone(await self.store.load_entity(self.alice_id))
        self.assertEqual(sum(self.saves.values()), 1, self.saves)
        character = await self.store.character_by_id(self.alice_id)
        self.assertGreater(character.data[WORLD_KEY]["x"], 96.0)

    async def assertStays(self, zone, session: str, saves: int = 0):
        """
        Alice's entity is active in C{zone}, held by C{session}, in the
        store; C{saves} saves of an entity leaving so far.
        """
        await self.tick_until(lambda: zone.handoff.status(self.alice_id) == "active")
        await self.settle(3)
        entity = zone.simulation.get(self.alice_id)
        self.assertEqual(entity.session, session)
        self.assertEqual((await self.store.load_entity(self.alice_id)).owner, zone.name)
        self.assertEqual(sum(self.saves.values()), saves, self.saves)
        other = self.west if zone is self.east else self.east
        self.assertIsNone(other.simulation.get(self.alice_id))


class EndedDuringHandoffTests(EndedTestCase):
    """C{"ended"} to both zones at each step of a handoff east."""

    async def test_offer_sent(self):
        """The offer is on its way (the east zone has not committed it)."""
        gate = self.east.handoff.store = Gate(self.store, "transfer")
        await self.walk_east(self.alice, self.alice_id, lambda: bool(gate.waiting))
        self.assertEqual(self.west.handoff.status(self.alice_id), "offering")
        await self.ended()
        gate.open()
        await self.assertLeftOnce()

    async def test_committed_before_the_source_hears(self):
        """The east zone committed, but neither zone has heard yet."""
        held = self.east.handoff.store = HeldTransfers(self.store)
        await self.walk_east(self.alice, self.alice_id, lambda: bool(held.held))
        self.assertEqual((await self.store.load_entity(self.alice_id)).owner, "r0c1")
        self.assertEqual(self.west.handoff.status(self.alice_id), "offering")
        await self.ended()
        held.release()
        await self.assertLeftOnce()

    async def test_accepted(self):
        """Accepted: the east zone holds it until the west zone's Done."""
        await self.walk_east(self.alice, self.alice_id, self.switched)
        self.assertEqual(self.east.handoff.status(self.alice_id), "holding")
        await self.ended()
        await self.assertLeftOnce()

    async def test_aborted(self):
        """The east zone does not answer: the west zone undoes the handoff and keeps it."""
        await self.east._subscription.cancel()
        self.east._subscription = None
        await self.walk_east(
            self.alice, self.alice_id, lambda: self.west.handoff.status(self.alice_id) == "offering"
        )
        await self.ended()
        await self.assertLeftOnce()
        self.assertEqual(self.saves, {"r0c0": 1, "r0c1": 0})

    async def test_only_the_source_hears(self):
        """
        Only the west zone's process ends the session (its gateway died, and
        the east zone's process did not know the session then): the end
        goes along with the handoff.
        """
        held = self.east.handoff.store = HeldTransfers(self.store)
        await self.walk_east(self.alice, self.alice_id, lambda: bool(held.held))
        await self.ended(self.west)
        held.release()
        await self.assertLeftOnce()
        self.assertEqual(self.saves, {"r0c0": 0, "r0c1": 1})


class NewerSessionTests(EndedTestCase):
    async def test_takeover_while_held_is_kept(self):
        """
        The old session's end reaches the east zone before it has the
        entity; a new session takes it over while it is held there: it
        stays, with the new session.
        """
        await self.ended(self.east)
        await self.walk_east(self.alice, self.alice_id, self.switched)
        self.assertEqual(self.east.handoff.status(self.alice_id), "holding")
        again = self.alice.moved(session="session-alice-2", zone="r0c1")
        await self.east.handle(again, "zone.enter", {})
        await self.ended(self.west)
        await self.assertStays(self.east, again.session)

    async def test_new_session_during_the_offer(self):
        """
        A new session entering while its entity is offered is told to retry
        (the offer carries the old session); once the old one's entity left,
        the new one enters, once.
        """
        gate = self.east.handoff.store = Gate(self.store, "transfer")
        await self.walk_east(self.alice, self.alice_id, lambda: bool(gate.waiting))
        await self.ended()
        again = self.alice.moved(session="session-alice-2")
        with self.assertRaises(WireError) as caught:
            await self.west.handle(again, "zone.enter", {})
        self.assertEqual(caught.exception.code, codes.UNAVAILABLE)
        gate.open()
        await self.assertLeftOnce()
        reply = await self.east.handle(again.moved(zone="r0c1"), "zone.enter", {})
        self.assertEqual(reply["zone"], "r0c1")
        await self.assertStays(self.east, again.session, saves=1)

    async def test_older_end_after_the_takeover(self):
        """A session's end remembered earlier never removes a newer session's entity."""
        await self.ended(self.east, session="session-alice-0")
        await self.walk_east(self.alice, self.alice_id, self.switched)
        await self.assertStays(self.east, self.alice.session)


class EndedDuringEnterTests(EndedTestCase):
    async def test_ended_while_entering(self):
        """The session ends while its zone.enter writes the new entity: it leaves once entered."""
        bob = await self.character("bob", {})
        gate = self.west.handoff.store = Gate(self.store, "checkpoint")
        entering = defer.ensureDeferred(self.west.handle(bob, "zone.enter", {}))
        await self.tick_until(lambda: bool(gate.waiting))
        for zone in (self.west, self.east):
            await zone.session_event(bob, "ended")
        gate.open()
        with self.assertRaises(WireError) as caught:
            await entering
        self.assertEqual(caught.exception.code, codes.NOT_ALLOWED)
        await self.settle(3)
        self.assertIsNone(self.west.simulation.get(bob.character_id))
        self.assertIsNone(await self.store.load_entity(bob.character_id))
        self.assertEqual(self.saves, {"r0c0": 1, "r0c1": 0})
        character = await self.store.character_by_id(bob.character_id)
        self.assertIn(WORLD_KEY, character.data)


class DownZoneRoute:
    """A route to a zone's process that is down until L{up}: session events fail."""

    def __init__(self, zone):
        self.zone = zone
        self.down = True
        self.events: list = []

    def services(self):
        return []

    def session_event(self, caller, event):
        self.events.append(event)
        if self.down:
            return defer.fail(rpc.Unavailable("the link to zone-1 is not running"))
        return LocalRoute(self.zone).session_event(caller, event)


class ZoneDownTests(EndedTestCase):
    """C{"ended"} while the entity's zone process is down, restarted from its checkpoint."""

    async def test_gateway_tells_the_restored_zone(self):
        await self.west.checkpointer.checkpoint()
        await self.crash(self.west)
        down = DownZoneRoute(None)
        route = ZoneRoute(
            {"r0c0": down, "r0c1": LocalRoute(self.east)},
            WorldMap.from_config(self.config),
            "gw-1",
            None,
            self.config.world.spawn,
            self.clock,
        )
        route.resends.startService()
        self.addCleanup(route.resends.stopService)
        await route.session_event(self.alice, "ended")
        self.assertEqual(len(route.resends), 1)
        # The zone is back, restored from its checkpoint: the entity with it.
        west = await self.restart(self.west)
        self.assertEqual(west.simulation.get(self.alice_id).session, self.alice.session)
        down.zone, down.down = west, False
        self.clock.advance(route.resends.first_delay)
        await self.tick_until(lambda: west.simulation.get(self.alice_id) is None)
        await self.settle(3)
        self.assertEqual(down.events, ["ended", "ended"])
        self.assertEqual(len(route.resends), 0)
        self.assertIsNone(await self.store.load_entity(self.alice_id))
        self.assertEqual(sum(self.saves.values()), 1, self.saves)

    async def test_ended_before_the_zone_recovered(self):
        """An end that reaches a restarted zone before it restored its entities."""
        await self.west.checkpointer.checkpoint()
        await self.crash(self.west)
        west = self.new_zone("r0c0")
        await west.session_event(self.alice, "ended")
        await west.start()
        await self.tick_until(lambda: west.simulation.get(self.alice_id) is None)
        await self.settle(3)
        self.assertIsNone(await self.store.load_entity(self.alice_id))
        self.assertEqual(self.saves["r0c0"], 1)

    async def crash(self, zone) -> None:
        zone.pause()
        zone.handoff.stop()
        await zone._subscription.cancel()
        zone._subscription = None

    def new_zone(self, name: str):
        from mmo.zone.service import ZoneService

        zone = ZoneService(self.config, self.store, self.bus, self.clock, name)
        self.addCleanup(zone.stop)
        self.count_saves(zone)
        return zone

    async def restart(self, zone):
        restarted = self.new_zone(zone.name)
        await restarted.start()
        return restarted


class FailingRoute:
    """A route whose session events fail with C{failures}, one each, then succeed."""

    def __init__(self, *failures):
        self.failures = list(failures)
        self.calls = 0

    def session_event(self, caller, event):
        self.calls += 1
        if self.failures:
            return defer.fail(self.failures.pop(0))
        return defer.succeed(None)


class EndedResendsTests(unittest.TestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.resends = EndedResends(self.clock)
        self.resends.startService()
        self.addCleanup(self.resends.stopService)
        self.caller = caller("alice")

    def test_backoff_until_answered(self):
        route = FailingRoute(rpc.Unavailable("down"), error.ConnectionLost(), defer.TimeoutError())
        self.successResultOf(self.resends.send(route, self.caller))
        for delay, calls in ((1.0, 2), (2.0, 3), (4.0, 4)):
            self.clock.advance(delay - 0.01)
            self.assertEqual(route.calls, calls - 1)
            self.clock.advance(0.01)
            self.assertEqual(route.calls, calls)
        self.assertEqual(len(self.resends), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_gives_up(self):
        route = FailingRoute(*[rpc.Unavailable("down")] * 100)
        self.resends.send(route, self.caller)
        self.clock.pump([1.0] * 200)
        self.assertEqual(len(self.resends), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        # 1 + 2 + 4 + 8, then every 10 s, until 120 s passed.
        self.assertEqual(route.calls, 1 + 4 + 11)
        self.flushLoggedErrors()

    def test_service_errors_are_not_resent(self):
        route = FailingRoute(ServiceError("internal", "bug"))
        self.failureResultOf(self.resends.send(route, self.caller), ServiceError)
        self.assertEqual(len(self.resends), 0)

    def test_bounded_and_stopped(self):
        self.resends.max_pending = 2
        routes = [FailingRoute(rpc.Unavailable("down")) for _ in range(3)]
        for route in routes:
            self.resends.send(route, self.caller)
        self.assertEqual(len(self.resends), 2)
        self.clock.advance(1.0)
        self.assertEqual([r.calls for r in routes], [1, 2, 2])
        # Not running (the gateway stopped): nothing is kept.
        self.resends.send(FailingRoute(rpc.Unavailable("down")), self.caller)
        self.resends.stopService()
        self.assertEqual(len(self.resends), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.resends.send(FailingRoute(rpc.Unavailable("down")), self.caller)
        self.assertEqual(len(self.resends), 0)


class EndedSessionsTests(unittest.TestCase):
    def test_bounded_and_taken_once(self):
        ended = EndedSessions(remember=2)
        for session in ("s1", "s2", "s3"):
            ended.add(session)
        self.assertEqual(len(ended), 2)
        self.assertFalse(ended.take("s1"))
        self.assertTrue(ended.take("s2"))
        self.assertFalse(ended.take("s2"))
        self.assertFalse(ended.take(None))
