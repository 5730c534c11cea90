"""
The manager's commands about players: C{kick}, C{broadcast} and C{mute}
(what C{mmo-admin} and the console do to players), and C{players} (who is
online, where).  They reach the gateways and chat processes through the
bus's control channels (L{mmo.process.control}).
"""

from __future__ import annotations

from mmo.process import control

#: Process kinds that hold players' sessions.
SESSION_KINDS = ("gateway", "mmo")

#: Process kinds that answer chat's C{mute}.
CHAT_KINDS = ("chat", "mmo")

#: The most sessions C{players} lists per gateway in one answer.
PLAYERS_PAGE = 200


class PlayerCommands:
    """
    The C{admin_*} commands about players, of a L{mmo.manager.service.Manager}
    (its C{bus}, C{reactor} and C{_need_bus}).
    """

    async def admin_kick(self, account: str, reason: str = "") -> dict:
        """End C{account}'s session wherever it is (every gateway is asked)."""
        return await self._ask_kinds(SESSION_KINDS, "kick", account=account, reason=reason)

    async def admin_broadcast(self, text: str) -> dict:
        """Show C{text} to every player (a C{server.notice} push)."""
        return await self._ask_kinds(SESSION_KINDS, "broadcast", text=text)

    async def admin_mute(self, name: str, seconds: float | None = None, reason: str = "") -> dict:
        """
        Stop C{name}'s chat for C{seconds} (chat's default when C{None}),
        as a chat moderator would (C{chat.mute}): one chat process is
        enough, the mute is the deployment's (a bus key).
        """
        args: dict = {"name": name, "reason": reason}
        if seconds is not None:
            args["seconds"] = seconds
        processes = await self._processes(CHAT_KINDS)
        if not processes:
            raise control.ControlError("no chat process is in the directory")
        return await control.call(self.bus, processes[0], "mute", args, reactor=self.reactor)

    async def admin_players(self, after: str = "", limit: int = PLAYERS_PAGE) -> dict:
        """
        The players online: every gateway's sessions after session id
        C{after}, at most C{limit} each (C{more} tells a gateway has others).
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= PLAYERS_PAGE:
            limit = PLAYERS_PAGE
        return await self._ask_kinds(SESSION_KINDS, "sessions", after=after, limit=limit)

    async def _processes(self, kinds) -> list[str]:
        """The processes of C{kinds} in the directory, by name."""
        self._need_bus()
        services = await self.bus.services()
        return sorted(
            name for name, info in services.items()
            if isinstance(info, dict) and info.get("kind") in kinds
        )  # fmt: skip

    async def _ask_kinds(self, kinds, command: str, **args) -> dict:
        """C{command} to every process of C{kinds} at once: each one's answer or error."""
        names = await self._processes(kinds)
        answers, errors = await control.ask_each(self.bus, names, command, args, self.reactor)
        answers.update((name, {"error": why}) for name, why in errors.items())
        return {"gateways": dict(sorted(answers.items()))}
