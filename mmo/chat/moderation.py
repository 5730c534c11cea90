"""
Chat's moderation: who may mute, and the mutes.

A mute is a bus key per account (L{mute_key}) holding C{{reason, until,
by}} that expires by itself after the mute's seconds, so that it survives a
restart of chat on the Redis bus.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from twisted.logger import Logger

from mmo.game.presence import name_key
from mmo.game.service import Caller
from mmo.wire import codes
from mmo.wire.codes import WireError


def mute_key(account_id: str) -> str:
    """The bus key of an account's mute."""
    return f"chat:mute:{account_id}"


class Moderation:
    """
    The moderators (C{[chat] moderators}, account names in any case) and the
    mutes they give, on C{bus}, timed by C{clock}.  A bus that cannot be
    reached fails the request with its L{mmo.bus.BusError}, which the
    client is told as C{unavailable} (L{mmo.unavailable}).
    """

    log = Logger()

    def __init__(self, bus, clock, moderators: Iterable[str]):
        self.bus = bus
        self.clock = clock
        self.moderators = frozenset(name_key(name) for name in moderators)

    def require_moderator(self, caller: Caller) -> None:
        """C{not_allowed} unless C{caller}'s account is a moderator."""
        if name_key(caller.name) not in self.moderators:
            raise WireError(codes.NOT_ALLOWED, "only chat moderators may do this")

    async def check(self, account_id: str) -> None:
        """Raise C{muted} (with the reason and the time left) if the account is muted."""
        mute = await self.bus.get(mute_key(account_id))
        if not isinstance(mute, dict):
            return
        left = mute.get("until", 0) - self.clock.seconds()
        if left > 0:
            raise WireError(
                codes.MUTED,
                f"you are muted for another {math.ceil(left)} s "
                f"(reason: {mute.get('reason') or 'none given'})",
            )

    async def mute(
        self, moderator: str, account_id: str, shown: str, seconds: float, reason: str
    ) -> float:
        """
        C{moderator} (a moderator's shown name, or C{"an operator"}) mutes
        the account of C{shown} for C{seconds}; until when.
        """
        until = self.clock.seconds() + seconds
        mute = {"reason": reason, "until": until, "by": moderator}
        await self.bus.put(mute_key(account_id), mute, ttl=seconds)
        self.log.info(
            "chat: {moderator} muted {name} for {seconds} s: {reason}",
            moderator=moderator,
            name=shown,
            seconds=seconds,
            reason=reason,
        )
        return until

    async def unmute(self, moderator: Caller, account_id: str, shown: str) -> bool:
        """C{moderator} ends the mute of the account of C{shown}; whether it was muted."""
        key = mute_key(account_id)
        was = await self.bus.get(key)
        await self.bus.clear(key)
        if was is not None:
            self.log.info("chat: {moderator} unmuted {name}", moderator=moderator.name, name=shown)
        return was is not None
