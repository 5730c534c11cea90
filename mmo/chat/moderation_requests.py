"""
L{ModerationRequests}: mutes, given by a moderator (C{chat.mute},
C{chat.unmute}) or by an operator through the control channel (the
C{mute} command of C{mmo-admin} and the console).
"""

from __future__ import annotations

from mmo.chat import checks
from mmo.chat.moderation import Moderation
from mmo.game.presence import Presence
from mmo.game.service import Caller
from mmo.wire.codes import WireError

#: Who a mute given through the control channel is by, as the muted player is told.
OPERATOR = "an operator"


class ModerationRequests:
    """
    Mutes, for the L{ChatService <mmo.chat.service.ChatService>}: its
    C{moderation} (moderators and mutes), C{presence} (the muted player's
    sessions) and the limits C{mute_default}, C{mute_max}, C{reason_max}.
    """

    moderation: Moderation
    presence: Presence

    async def on_chat_mute(self, caller: Caller, message: dict) -> dict:
        """C{{name, seconds?, reason?}}: (moderators) stop a player's chat for a time."""
        self.moderation.require_moderator(caller)
        return await self._mute(caller.display_name, message)

    async def operator_mute(self, **message) -> dict:
        """
        The C{mute} control command (C{mmo-admin mute}, the console):
        C{chat.mute} given by an operator, with the same arguments.

        @raise ValueError: An argument is wrong or the player is unknown.
        """
        try:
            return await self._mute(OPERATOR, message)
        except WireError as e:
            raise ValueError(e.message) from None

    def control_commands(self) -> dict:
        return {"mute": self.operator_mute}

    async def _mute(self, by: str, message: dict) -> dict:
        name = self._name(message)
        seconds = checks.mute_seconds(message, self.mute_default, self.mute_max)
        reason = checks.mute_reason(message, self.reason_max)
        account_id, shown = await self._resolve(name)
        until = await self.moderation.mute(by, account_id, shown, seconds, reason)
        await self.deliver(
            self.presence.sessions_of(account_id),
            "chat.muted",
            reason=reason,
            until=until,
            seconds=seconds,
        )
        return {"name": shown, "until": until, "seconds": seconds}

    async def on_chat_unmute(self, caller: Caller, message: dict) -> dict:
        """C{{name}}: (moderators) end a player's mute."""
        self.moderation.require_moderator(caller)
        account_id, shown = await self._resolve(self._name(message))
        was_muted = await self.moderation.unmute(caller, account_id, shown)
        if was_muted:
            await self.deliver(self.presence.sessions_of(account_id), "chat.unmuted")
        return {"name": shown, "was_muted": was_muted}
