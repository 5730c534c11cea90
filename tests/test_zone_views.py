"""
What a player's client is shown is exact across new sessions and zone
restarts (L{mmo.zone.service}, L{mmo.zone.aoi}): a new session's view
starts empty, whatever the zone kept of an earlier one (a handoff's offer
repeated after it completed, a handoff landing while the new session
enters), and a zone restored from the store after its process ended starts
each player's view over with C{reset}, since it cannot know what the
client was shown.  Two zones on a fake clock, the memory bus and SQLite.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.trial import unittest

from mmo.client import WorldView
from mmo.game import messages
from mmo.game.messages import Offer, Switched, SwitchRoute, zone_channel
from mmo.zone.service import ZoneService
from tests.test_zone_service import ZoneTestCase


class HeldTransfers:
    """
    A store whose handoff commits (C{transfer}) are carried out at once but
    answered only on L{release}: a commit the zone has not heard of yet.
    """

    def __init__(self, store):
        self.store = store
        self.held: list[tuple[defer.Deferred, object]] = []

    def __getattr__(self, name):
        return getattr(self.store, name)

    def transfer(self, *args):
        answer = defer.Deferred()
        self.store.transfer(*args).addBoth(lambda result: self.held.append((answer, result)))
        return answer

    def release(self) -> None:
        held, self.held = self.held, []
        for answer, result in held:
            answer.callback(result)


class ViewTestCase(ZoneTestCase):
    async def setUp(self):
        await super().setUp()
        #: The offers the east zone heard, in order.
        self.offers: list[Offer] = []
        await self.bus.subscribe(zone_channel("r0c1"), self._heard_east)

    def _heard_east(self, data) -> None:
        _, value = messages.decode(data)
        if isinstance(value, Offer):
            self.offers.append(value)

    def first_update(self, session: str) -> dict:
        """The first C{world.update} of C{session} since the batches were last read."""
        updates = [
            fields
            for batch in self.batches()
            for kind, fields in batch.get(session, [])
            if kind == "world.update"
        ]
        self.assertTrue(updates, f"no world.update for {session}")
        return updates[0]

    async def near_the_border(self):
        """Alice and Bob in the west zone, near the border, seeing each other."""
        alice = await self.character("alice", {})
        bob = await self.character("bob", {})
        await self.west.handle(alice, "zone.enter", {})
        await self.west.handle(bob, "zone.enter", {})
        self.west.simulation.get(alice.character_id).x = 96.0
        self.west.simulation.get(bob.character_id).x = 92.0
        await self.settle(2)
        return alice, bob

    def assertStartsEmpty(self, session: str, entity_id: str) -> dict:
        """
        The next tick's first update of C{session} (whose player's entity is
        C{entity_id}) is that of a client with nothing in view: it enters
        everything, its entity too, and changes or leaves nothing.
        """
        self.batches()
        self.tick()
        update = self.first_update(session)
        self.assertEqual(update["leave"], [])
        self.assertEqual(update["update"], [])
        self.assertIn(entity_id, [view["id"] for view in update["enter"]])
        self.assertNotIn("reset", update)
        return update

    async def walk_east(self, player, entity_id: str, until) -> int:
        """
        Move C{player}'s entity east from the west zone, a step a tick,
        until C{until()}; the last input's number.
        """
        seq, x = 0, self.west.simulation.get(entity_id).x
        for _ in range(12):
            seq += 1
            x += 0.6
            await self.west.handle(player, "zone.move", {"seq": seq, "x": x, "y": 50.0})
            await self.settle()
            if until():
                return seq
        # The store answers from threads: under load the handoff may still
        # be settling after the last step.
        await self.tick_until(until, ticks=300)
        return seq


class NewSessionTests(ViewTestCase):
    async def test_new_session_after_a_repeated_offer(self):
        """
        Alice walks into the east zone (its old zone's offer comes once more
        after the handoff completed: a repeat, as when the commit takes
        longer than the offer's retry), her session ends there, Bob (whom
        she saw) leaves the world, and she comes back soon after in a new
        session: its first update enters everything she sees, herself too,
        and leaves nothing (nothing was shown to this client yet).
        """
        alice, bob = await self.near_the_border()
        alice_id, bob_id = alice.character_id, bob.character_id

        def switched():
            return bool(self.delivered["gw-1"].of_type(SwitchRoute))

        await self.walk_east(alice, alice_id, switched)
        await self.tick_until(lambda: self.east.handoff.status(alice_id) == "active")
        [offer, *_] = [o for o in self.offers if o.entity_id == alice_id]
        self.assertIn(bob_id, offer.seen)
        # The offer once more, late.
        await self.bus.publish(zone_channel("r0c1"), messages.encode(offer, "r0c0"))
        await self.settle(2)

        await self.east.session_event(alice.moved(zone="r0c1"), "ended")
        await self.west.handle(bob.moved(zone="r0c0"), "zone.leave", {})
        await self.settle(2)
        self.assertIsNone(self.east.simulation.get(alice_id))
        again = alice.moved(session="session-alice-2")
        reply = await self.east.handle(again, "zone.enter", {})
        self.assertEqual(reply["zone"], "r0c1")
        self.assertStartsEmpty(again.session, alice_id)

    async def test_new_session_while_a_handoff_lands(self):
        """
        Alice's entity is handed east while a new session of hers enters
        there: the handoff's commit lands while the zone enters her (it took
        her from the store), so the entity it adds comes with the old
        client's view.  The new session's first update still enters
        everything, and leaves nothing.
        """
        alice, bob = await self.near_the_border()
        alice_id = alice.character_id
        held = self.east.handoff.store = HeldTransfers(self.store)

        def committed():
            return bool(held.held)

        await self.walk_east(alice, alice_id, committed)
        stored = await self.store.load_entity(alice_id)
        self.assertEqual(stored.owner, "r0c1")
        self.assertIn(bob.character_id, self.offers[0].seen)
        await self.west.handle(bob.moved(zone="r0c0"), "zone.leave", {})
        await self.settle(2)

        again = alice.moved(session="session-alice-2")
        entering = defer.ensureDeferred(self.east.handle(again, "zone.enter", {}))
        # The commit's answer comes while the zone enters her.
        held.release()
        self.assertEqual(self.east.handoff.status(alice_id), "holding")
        reply = await entering
        self.assertEqual(reply["zone"], "r0c1")
        entity = self.east.simulation.get(alice_id)
        self.assertEqual(entity.session, again.session)
        self.assertStartsEmpty(again.session, alice_id)


class HeldArrivalTests(ViewTestCase):
    async def test_arriving_player_is_shown_nothing_until_released(self):
        """
        While the new owner holds Alice's inputs (from the commit to the
        old owner's C{Done}) it shows her nothing, whatever it simulates:
        the old owner's last updates may still be on their way to her
        client on another link.  Once released, her first update is the
        diff from the view her offer carried: Bob, whom she saw, neither
        enters again nor leaves; she is not entered either.
        """
        alice, bob = await self.near_the_border()
        alice_id, bob_id = alice.character_id, bob.character_id
        self.batches()

        def holding():
            return self.east.handoff.status(alice_id) == "holding"

        await self.walk_east(alice, alice_id, holding)
        # The gateway answers the route switch five ticks on: the old owner
        # then sends Done, and the new owner releases her.
        shown, ticks = [], 0
        while holding():
            self.batches()
            await self.settle()
            ticks += 1
            if ticks == 5:
                [switch, *_] = self.delivered["gw-1"].of_type(SwitchRoute)
                self.west.receive("r0c0", "gw-1", Switched(switch.transfer_id, switch.session))
            if holding():
                for batch in self.batches():
                    shown.extend(batch.get(alice.session, []))
        self.assertGreater(ticks, 3)
        self.assertEqual(shown, [])
        self.assertEqual(self.east.handoff.status(alice_id), "active")
        # Her first update since, whether the release came before or after
        # the last tick.
        self.tick()
        update = self.first_update(alice.session)
        self.assertNotIn("reset", update)
        self.assertNotIn(bob_id, [view["id"] for view in update["enter"]])
        self.assertNotIn(alice_id, [view["id"] for view in update["enter"]])
        self.assertNotIn(bob_id, update["leave"])

    async def held_east(self):
        """Alice, walked east until the east zone holds her: C{(alice, holding)}."""
        alice, _ = await self.near_the_border()

        def holding():
            return self.east.handoff.status(alice.character_id) == "holding"

        await self.walk_east(alice, alice.character_id, holding)
        return alice, holding

    async def assertReleasedAfresh(self, alice, holding) -> None:
        """Alice is released, and her first update starts her view over (C{reset})."""
        for _ in range(100):
            if not holding():
                break
            self.batches()
            await self.settle()
        self.assertEqual(self.east.handoff.status(alice.character_id), "active")
        self.tick()
        update = self.first_update(alice.session)
        self.assertTrue(update.get("reset"))
        self.assertIn(alice.character_id, [view["id"] for view in update["enter"]])

    async def test_unanswered_switch_starts_over(self):
        """
        Nobody answers the old owner's route switch (the gateway's link to
        it is down): it sends C{Done} at its C{switch_timeout}, saying so,
        for what it last showed Alice may not have reached her.  The new
        owner releases her with her view starting over (C{reset}).
        """
        alice, holding = await self.held_east()
        await self.assertReleasedAfresh(alice, holding)

    async def test_released_without_done_starts_over(self):
        """
        The old owner's process ends right after the commit (no route
        switch, no C{Done}): what it last showed Alice may never reach her.
        The new owner releases her at C{hold_timeout}, and her first update
        then starts her view over (C{reset}).
        """
        alice, holding = await self.held_east()
        self.west.pause()
        self.west.handoff.stop()
        await self.west._subscription.cancel()
        self.west._subscription = None
        await self.assertReleasedAfresh(alice, holding)


class RestartTests(ViewTestCase):
    async def crash_and_restart(self, zone: ZoneService, checkpoint=True) -> ZoneService:
        """
        C{zone}'s process ends at once, after a C{checkpoint} if asked (no
        last one, nothing more sent); a new one recovers its region from
        the store.
        """
        if checkpoint:
            await zone.checkpointer.checkpoint()
        zone.pause()
        zone.handoff.stop()
        await zone._subscription.cancel()
        zone._subscription = None
        restarted = ZoneService(self.config, self.store, self.bus, self.clock, zone.name)
        await restarted.start()
        self.addCleanup(restarted.stop)
        return restarted

    async def test_restarted_zone_starts_views_over(self):
        """
        A zone restored after its process ended cannot know what its
        players' clients were shown: the first update of each starts the
        view over (C{reset}), entering everything in sight once, with no
        update or leave; the updates after it go on as usual.
        """
        alice, bob = await self.character("alice", {}), await self.character("bob", {})
        await self.west.handle(alice, "zone.enter", {})
        await self.west.handle(bob, "zone.enter", {})
        await self.settle(2)
        update = self.first_update(alice.session)
        client = WorldView()
        client.apply(update)
        shown = {view["id"] for view in update["enter"]}
        self.assertEqual(shown, {alice.character_id, bob.character_id})
        # Bob walks out of sight after the last checkpoint: the restored
        # zone has him in sight again, while the client saw him leave.
        await self.west.checkpointer.checkpoint()
        self.west.simulation.get(bob.character_id).x = 10.0
        self.tick()
        client.apply(self.first_update(alice.session))
        self.assertEqual(set(client.entities), {alice.character_id})

        west = await self.crash_and_restart(self.west, checkpoint=False)
        self.assertEqual(west.simulation.get(alice.character_id).session, alice.session)
        self.batches()
        self.tick()
        update = self.first_update(alice.session)
        self.assertIs(update.get("reset"), True)
        self.assertEqual({view["id"] for view in update["enter"]}, shown)
        self.assertEqual((update["update"], update["leave"]), ([], []))
        # The client's view is the zone's again.
        client.apply(update)
        self.assertEqual(set(client.entities), shown)
        # Then as usual: only what changed, and no reset.
        await west.handle(alice.moved(zone="r0c0"), "zone.move", {"seq": 1, "x": 50.5, "y": 50.0})
        self.tick()
        update = self.first_update(alice.session)
        self.assertNotIn("reset", update)
        self.assertEqual(update["enter"], [])
        self.assertEqual(update["update"], [{"id": alice.character_id, "x": 50.5, "y": 50.0}])

    async def test_new_session_in_a_restarted_zone(self):
        """A new session of a restored player has nothing in view: no reset, everything enters."""
        alice = await self.character("alice", {})
        await self.west.handle(alice, "zone.enter", {})
        await self.settle()
        west = await self.crash_and_restart(self.west)
        again = alice.moved(session="session-alice-2")
        await west.handle(again, "zone.enter", {})
        update = self.assertStartsEmpty(again.session, alice.character_id)
        self.assertEqual([view["id"] for view in update["enter"]], [alice.character_id])


class WorldViewTests(unittest.TestCase):
    """The SDK's L{WorldView}: a client's view, kept from its pushes."""

    def test_pushes(self):
        view = WorldView()
        npc = {"id": "npc-1", "kind": "npc", "x": 1.0, "y": 2.0, "name": "n", "attrs": {}}
        me = {"id": "c-1", "kind": "player", "x": 5.0, "y": 5.0, "name": "me", "attrs": {"hp": 3}}
        view.apply({"tick": 1, "enter": [npc, me], "update": [], "leave": []})
        view.apply({"tick": 2, "enter": [], "update": [{"id": "c-1", "x": 6.0}], "leave": []})
        self.assertEqual(view.entities["c-1"], {**me, "x": 6.0})
        self.assertEqual(me["x"], 5.0)
        view.apply(
            {"tick": 3, "enter": [], "update": [{"id": "c-1", "attrs": {}}], "leave": ["npc-1"]}
        )
        self.assertEqual(view.entities, {"c-1": {**me, "x": 6.0, "attrs": {}}})
        self.assertNotIn("npc-1", view)
        # A reset: what it enters is all there is.
        view.apply({"tick": 9, "reset": True, "enter": [npc], "update": [], "leave": []})
        self.assertEqual(list(view.entities), ["npc-1"])
        self.assertEqual(len(view), 1)
        view.clear()
        self.assertEqual(view.entities, {})
