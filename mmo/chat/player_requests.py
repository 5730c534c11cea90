"""
L{PlayerRequests}: the C{chat.*} requests about other players: whispering
to one, finding one (C{chat.who}), and each account's ignore list.
"""

from __future__ import annotations

from mmo.chat import checks
from mmo.chat.channel_requests import SAID
from mmo.chat.flood import FloodLimit
from mmo.chat.ignores import IgnoreLists
from mmo.chat.moderation import Moderation
from mmo.game.presence import Presence
from mmo.game.service import Caller
from mmo.wire import codes
from mmo.wire.codes import WireError


class PlayerRequests:
    """
    Whispers, C{chat.who} and ignore lists, for the L{ChatService
    <mmo.chat.service.ChatService>}: its C{presence} (who is online, by
    name), C{ignores}, C{moderation} (mutes), C{flood} and C{ignore_max}.
    """

    presence: Presence
    ignores: IgnoreLists
    moderation: Moderation
    flood: FloodLimit

    # -- whispers and who -------------------------------------------------------------------

    async def on_chat_whisper(self, caller: Caller, message: dict) -> dict:
        """C{{to, text}}: say C{text} to one online player."""
        name = self._name(message, "to")
        text = checks.text(message, self.settings.max_length)
        target = self.presence.find(name)
        if target is None:
            raise WireError(codes.PLAYER_OFFLINE, f"{name} is not online")
        if target.session == caller.session:
            raise WireError(codes.BAD_REQUEST, "you cannot whisper to yourself")
        await self.moderation.check(caller.account_id)
        self.flood.take(caller.account_id)
        target = self.presence.find(name)  # it may have gone during the wait
        if target is None:
            raise WireError(codes.PLAYER_OFFLINE, f"{name} is not online")
        now = self.reactor.seconds()
        # An ignoring player's whispers are dropped without telling the sender.
        targets = self.ignores.unignored([target], caller)
        await self.deliver(
            targets, "chat.whisper", **{"from": caller.display_name, "text": text, "time": now}
        )
        SAID.whisper.inc()
        return {"to": target.display_name, "text": text, "time": now}

    async def on_chat_who(self, caller: Caller, message: dict) -> dict:
        """C{{name}}: whether the player is online, and the zone its character is in."""
        name = self._name(message)
        found = self.presence.find(name)
        if found is None:
            return {"name": name, "online": False, "zone": None}
        return {"name": found.display_name, "online": True, "zone": found.zone}

    # -- ignore lists -----------------------------------------------------------------------

    async def on_chat_ignore(self, caller: Caller, message: dict) -> dict:
        """C{{name}}: deliver nothing more from that player to this account."""
        account_id, shown = await self._resolve(self._name(message))
        if account_id == caller.account_id:
            raise WireError(codes.BAD_REQUEST, "you cannot ignore yourself")
        names = await self.ignores.ignore(caller.account_id, account_id, shown, self.ignore_max)
        return {"ignored": names}

    async def on_chat_unignore(self, caller: Caller, message: dict) -> dict:
        """C{{name}}: deliver that player's messages again."""
        names = await self.ignores.unignore(caller.account_id, self._name(message))
        return {"ignored": names}

    async def on_chat_ignored(self, caller: Caller, message: dict) -> dict:
        """The names the caller's account ignores."""
        return {"ignored": await self.ignores.names(caller.account_id)}
