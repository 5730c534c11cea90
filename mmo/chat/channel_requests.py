"""
L{ChannelRequests}: the C{chat.*} requests about channels: saying something
in one (C{chat.send}), joining and leaving a party channel, the channels one
is in and their history.
"""

from __future__ import annotations

from mmo.chat import checks
from mmo.chat.channels import Channels, shown_id
from mmo.chat.flood import FloodLimit
from mmo.chat.ignores import IgnoreLists
from mmo.chat.moderation import Moderation
from mmo.game.service import Caller
from mmo.metrics.kinds import children
from mmo.metrics.registry import CHAT_MESSAGES
from mmo.wire import codes
from mmo.wire.codes import WireError

#: Chat messages said, by kind: to a C{channel}, or a C{whisper}.
SAID = children(CHAT_MESSAGES, "channel", "whisper")


class ChannelRequests:
    """
    The channels' requests, for the L{ChatService
    <mmo.chat.service.ChatService>}: its C{channels}, C{moderation} (mutes),
    C{flood} (the flood limit), C{ignores} (who is not delivered what) and
    C{settings} (the C{[chat]} section).
    """

    channels: Channels
    moderation: Moderation
    flood: FloodLimit
    ignores: IgnoreLists

    def _channel_id(self, caller: Caller, message: dict) -> str:
        return checks.channel_id(message, caller.realm, self.party_name_max, caller.zone)

    async def on_chat_send(self, caller: Caller, message: dict) -> dict:
        """C{{channel, text}}: say C{text} to every member of the channel."""
        channel_id = self._channel_id(caller, message)
        text = checks.text(message, self.settings.max_length)
        self.channels.require_member(caller, channel_id)
        await self.moderation.check(caller.account_id)
        channel = self.channels.require_member(caller, channel_id)  # the wait may have changed it
        self.flood.take(caller.account_id)
        now = self.reactor.seconds()
        fields = {"channel": channel.shown, "from": caller.display_name, "text": text, "time": now}
        self.channels.record(channel, dict(fields, account=caller.account_id))
        targets = self.ignores.unignored(channel.members.values(), caller)
        await self.deliver(targets, "chat.message", **fields)
        SAID.channel.inc()
        return {"channel": channel.shown, "time": now}

    async def on_chat_join(self, caller: Caller, message: dict) -> dict:
        """
        C{{channel}}: join a party channel; for a channel one is in already
        (world, zone and room channels are joined for you), its history again.
        """
        channel_id = self._channel_id(caller, message)
        if not self.channels.is_member(channel_id, caller.session):
            if not channel_id.startswith("party:"):
                raise WireError(
                    codes.NOT_ALLOWED,
                    f"{shown_id(channel_id)!r} cannot be joined: world channels are joined "
                    "on login, the zone channel by entering a zone, room channels by "
                    "joining the room in the lobby",
                )
            if self.channels.size(channel_id) >= self.settings.channel_max_members:
                raise WireError(codes.NOT_ALLOWED, f"the channel {channel_id!r} is full")
        history = await self._join(caller, channel_id)
        return {"channel": shown_id(channel_id), "history": history}

    async def on_chat_leave(self, caller: Caller, message: dict) -> dict:
        """C{{channel}}: leave a party channel."""
        channel_id = self._channel_id(caller, message)
        self.channels.require_member(caller, channel_id)
        if not channel_id.startswith("party:"):
            raise WireError(
                codes.NOT_ALLOWED,
                f"{shown_id(channel_id)!r} cannot be left: you are in the world channel "
                "while online, in your zone's channel while in the world, and in a room's "
                "channel while in the room",
            )
        self.channels.remove(channel_id, caller.session)
        return {"channel": channel_id}

    async def on_chat_channels(self, caller: Caller, message: dict) -> dict:
        """The ids of the channels the caller is in."""
        return {"channels": sorted(shown_id(c) for c in self.channels.joined(caller.session))}

    async def on_chat_history(self, caller: Caller, message: dict) -> dict:
        """C{{channel, limit?}}: the last messages of a channel one is in."""
        channel_id = self._channel_id(caller, message)
        limit = checks.history_limit(message, self.settings.history)
        channel = self.channels.require_member(caller, channel_id)
        messages = await self._history(caller, channel)
        return {"channel": channel.shown, "messages": messages[-limit:] if limit else []}
