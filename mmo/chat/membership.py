"""
L{Membership}: the channels a session is in without asking for them.  A
session is in its realm's world channel while online, in the channel of the
zone that holds its character (L{Caller.zone<mmo.game.service.Caller>},
which every session event and request carries, so that it follows
handoffs with nothing to do), and in its lobby room's channel, following
the lobby's C{lobby.rooms} bus events (handled in order, one at a time).
"""

from __future__ import annotations

from twisted.internet import defer

from mmo.chat.channels import (
    ZONE,
    Channels,
    is_zone_channel,
    room_channel,
    world_channel,
    zone_channel,
)
from mmo.chat.flood import FloodLimit
from mmo.chat.ignores import IgnoreLists
from mmo.game.messages import ROOMS_CHANNEL, RoomEvent
from mmo.game.presence import Presence
from mmo.game.service import Caller
from mmo.unavailable import log_failure

#: Session events that (re)state a live session.
LIVE_EVENTS = ("started", "changed", "moved")


class Membership:
    """
    Sessions and the lobby's rooms, for the L{ChatService
    <mmo.chat.service.ChatService>}: its C{presence}, C{channels},
    C{ignores} and C{flood}, and the lock its lobby events take in turn.
    """

    presence: Presence
    channels: Channels
    ignores: IgnoreLists
    flood: FloodLimit
    _lobby: defer.DeferredLock

    # -- sessions ---------------------------------------------------------------

    async def handle(self, caller: Caller, kind: str, message: dict) -> dict | None:
        # The gateway's caller is the truth: a session this process has not
        # heard of (chat restarted) or has stale news of is brought up to
        # date -- unless it ended, and this request was on its way meanwhile.
        if (
            self.owns(kind)
            and self.presence.get(caller.session) != caller
            and not self.presence.ended(caller.session)
        ):
            await self._arrive(caller)
        return await super().handle(caller, kind, message)

    async def session_event(self, caller: Caller, event: str) -> None:
        if event in LIVE_EVENTS:
            if self.presence.ended(caller.session):
                if event != "started":  # news that crossed the end
                    return
                self.presence.restart(caller.session)
            await self._arrive(caller)
        elif event == "ended":
            self.presence.end(caller.session)
            self.channels.leave_all(caller.session)
        else:
            self.log.warn("chat: unknown session event {event!r}", event=event)

    async def session_found(self, caller: Caller) -> None:
        # What a gateway lists is older than anything heard since the start.
        if self.presence.unheard(caller.session):
            await self._arrive(caller)

    async def _arrive(self, caller: Caller) -> None:
        """
        A session started or changed: record it, put it in its realm's
        world, and in the channel of its zone (and out of any other).
        """
        old = self.presence.track(caller)
        self.channels.update(caller)
        if old is not None and old.realm != caller.realm:
            self.channels.remove(world_channel(old.realm), caller.session)
        await self.ignores.load(caller.account_id)
        current = self.presence.get(caller.session)
        if current is None:  # ended meanwhile
            return
        world = world_channel(current.realm)
        if not self.channels.is_member(world, current.session):
            await self._join(current, world, push=True)
        current = self.presence.get(caller.session)
        if current is not None:
            await self._follow_zone(current)

    async def _follow_zone(self, caller: Caller) -> None:
        """
        Put C{caller} in the channel of its zone, if it is in one, and out
        of every other zone's: pushed C{chat.joined} with the new zone's
        history, or C{chat.left} when it left the world's zones.
        """
        target = zone_channel(caller.realm, caller.zone) if caller.zone is not None else None
        for channel_id in self.channels.joined(caller.session):
            if channel_id == target or not is_zone_channel(channel_id):
                continue
            member = self.channels.remove(channel_id, caller.session)
            if member is not None and target is None:
                await self.deliver([member], "chat.left", channel=ZONE, reason="left")
        if target is not None and not self.channels.is_member(target, caller.session):
            await self._join(caller, target, push=True)

    def _account_offline(self, account_id: str) -> None:
        # Nothing of an account that is offline is kept but its bucket.
        self.ignores.forget(account_id)
        self.flood.prune(self.presence.accounts())

    # -- the lobby's rooms --------------------------------------------------------------

    def _lobby_message(self, sender: str, event: RoomEvent) -> defer.Deferred | None:
        """
        A room's member C{"joined"} or C{"left"}, or the room was
        C{"closed"}: the channel's members change at once, in the order the
        lobby told, so that a message sent in the room right after a join
        reaches the new member; what is pushed about it waits for the pushes
        of the events before (a history read may take a while).
        """
        try:
            pushes = self._room_event(event)
        except Exception:
            self.log.failure(
                "chat: cannot handle {message!r} from {channel}",
                message=event,
                channel=ROOMS_CHANNEL,
            )
            return None
        if pushes is None:
            return None
        d = self._lobby.run(lambda: defer.ensureDeferred(pushes()))
        return d.addErrback(log_failure, self.log, "chat: a room's news was not pushed")

    def _room_event(self, message: RoomEvent):
        """Change the room channel's members; the pushes that tell of it (or C{None})."""
        room, event = message.room, message.event
        if not isinstance(room, (str, int)) or isinstance(room, bool):
            raise TypeError(f"room id {room!r}")
        channel_id = room_channel(room)
        if event == "closed":
            gone = self.channels.close(channel_id)
            return lambda: self.deliver(gone, "chat.left", channel=channel_id, reason="closed")
        caller = Caller.from_dict(message.caller)
        caller = self.presence.get(caller.session) or caller
        if event == "joined":
            if self.presence.ended(caller.session):  # news that crossed the end
                return None
            channel, new = self.channels.add(caller, channel_id)
            upto = channel.count
            return lambda: self._joined(caller, channel, new, upto, push=True)
        if event == "left":
            member = self.channels.remove(channel_id, caller.session)
            if member is None:
                return None
            return lambda: self.deliver([member], "chat.left", channel=channel_id, reason="left")
        raise ValueError(f"unknown event {event!r}")
