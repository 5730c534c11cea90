"""
Tests of the chat service's parts on their own edges: the channels a
session is put in and taken out of without asking (L{mmo.chat.membership})
and a whisper to a player who goes while it waits (L{mmo.chat.player_requests}).
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from mmo.game import messages
from mmo.game.messages import ROOMS_CHANNEL, RoomEvent
from mmo.wire import codes
from tests.test_chat import ChatTestCase


class MembershipTests(ChatTestCase):
    async def channels(self, caller) -> list[str]:
        return (await self.request(caller, "chat.channels"))["channels"]

    def logged(self) -> list[dict]:
        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        return events

    async def test_a_session_moved_to_another_realm_changes_world(self):
        """
        A session whose realm changes leaves the old realm's world channel
        and is put in the new one's: it no longer hears the old world.
        """
        moved = self.alice.moved(realm="other")
        await self.chat.session_event(moved, "changed")
        self.flush()
        self.assertEqual(await self.channels(moved), ["world:other"])
        self.assertEqual(self.deliveries.to(moved, "chat.joined")[-1]["channel"], "world:other")
        await self.request(self.bob, "chat.send", channel="world", text="main only")
        self.assertEqual(self.texts(moved), [])

    async def test_a_session_started_again_after_its_end(self):
        """
        A session that ended and is started again (same session id) is in
        its realm's world again, and its later news is taken; news of it
        that crossed its end does not bring it back.
        """
        await self.chat.session_event(self.alice, "ended")
        await self.chat.session_event(self.alice, "changed")
        self.flush()
        self.assertFalse(self.chat.channels.is_member("world:main", self.alice.session))
        self.deliveries.clear()
        await self.chat.session_event(self.alice, "started")
        self.flush()
        self.assertEqual(await self.channels(self.alice), ["world:main"])
        [joined] = self.deliveries.to(self.alice, "chat.joined")
        self.assertEqual(joined["channel"], "world:main")
        # Live again: its next news is taken.
        renamed = self.alice.moved(character_name="Alicia")
        await self.chat.session_event(renamed, "changed")
        who = await self.request(self.bob, "chat.who", name="Alicia")
        self.assertTrue(who["online"])

    async def test_an_unknown_session_event_is_warned_of(self):
        events = self.logged()
        await self.chat.session_event(self.alice, "teleported")
        warned = [e for e in events if "teleported" in formatEvent(e)]
        self.assertEqual([e["log_level"] for e in warned], [LogLevel.warn])
        self.assertEqual(await self.channels(self.alice), ["world:main"])

    async def test_a_session_that_ends_while_its_ignore_list_loads(self):
        """
        A session that ends while its account's ignore list is read is put
        in no channel, and is pushed nothing.
        """
        gate: defer.Deferred = defer.Deferred()
        self.addCleanup(lambda: None if gate.called else gate.callback(None))
        load = self.chat.ignores.load

        async def slow(account_id):
            await gate
            return await load(account_id)

        self.patch(self.chat.ignores, "load", slow)
        dave = await self.player("Dave", "gateway-2", start=False)
        started = defer.ensureDeferred(self.chat.session_event(dave, "started"))
        await self.chat.session_event(dave, "ended")
        gate.callback(None)
        await started
        self.flush()
        self.assertEqual(self.chat.channels.joined(dave.session), frozenset())
        self.assertEqual(self.deliveries.to(dave), [])

    async def test_a_room_left_by_a_session_not_in_it(self):
        await self.lobby("joined", "5", self.alice)
        self.deliveries.clear()
        await self.lobby("left", "5", self.bob)
        self.assertEqual(self.deliveries.to(self.bob, "chat.left"), [])
        await self.lobby("left", "5", self.alice)
        [left] = self.deliveries.to(self.alice, "chat.left")
        self.assertEqual((left["channel"], left["reason"]), ("room:5", "left"))

    async def test_a_room_event_with_a_bad_room_id_is_logged(self):
        """A malformed room event is logged and skipped; the next one is handled."""
        message = RoomEvent(True, "joined", self.alice.to_dict())
        await messages.publish(self.bus, ROOMS_CHANNEL, message, "lobby")
        self.flush()
        self.assertEqual(len(self.flushLoggedErrors(TypeError)), 1)
        await self.lobby("joined", 7, self.alice)
        self.assertIn("room:7", await self.channels(self.alice))


class PlayerRequestTests(ChatTestCase):
    async def test_a_whisper_to_a_player_who_went_during_the_mute_check(self):
        check = self.chat.moderation.check

        async def bob_goes(account_id):
            await self.chat.session_event(self.bob, "ended")
            return await check(account_id)

        self.patch(self.chat.moderation, "check", bob_goes)
        e = await self.refused(
            codes.PLAYER_OFFLINE, self.alice, "chat.whisper", to="Bob", text="hi"
        )
        self.assertIn("Bob", e.message)
        self.assertEqual(self.deliveries.to(self.bob, "chat.whisper"), [])
