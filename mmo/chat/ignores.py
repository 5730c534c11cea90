"""
Chat's ignore lists: per account, the players whose messages it is not
delivered.

A list is the last record of the account's store log (L{ignore_key}),
C{{"ignored": {ACCOUNT_ID: NAME, ...}}}, read once while the account is
online and kept in memory until it goes offline.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from mmo.chat.logs import StoreLogs, follow
from mmo.game.presence import Presence, name_key
from mmo.game.service import Caller
from mmo.unavailable import log_failure
from mmo.wire import codes
from mmo.wire.codes import WireError


def ignore_key(account_id: str) -> str:
    """The store log of an account's ignore list (its last record is the list)."""
    return f"chat:ignore:{account_id}"


def _names(ignored: Mapping[str, str]) -> list[str]:
    """The names of an ignore list, as replies give them."""
    return sorted(ignored.values(), key=name_key)


class IgnoreLists:
    """
    The ignore lists of the accounts online, loaded from the store and
    changed by their owners' requests.

    Lists are kept only for accounts that L{Presence} says are online; the
    service calls L{forget} when an account goes offline.
    """

    log = Logger()

    def __init__(self, logs: StoreLogs, presence: Presence):
        self.logs = logs
        self.presence = presence
        #: account id -> {ignored account id: name}, for accounts online.
        self._lists: dict[str, dict[str, str]] = {}
        self._loads: dict[str, defer.Deferred] = {}

    # -- delivery ----------------------------------------------------------------

    def of(self, account_id: str) -> Mapping[str, str]:
        """The account's list as loaded (empty if it is not), to filter what it reads."""
        return self._lists.get(account_id, {})

    def unignored(self, targets: Iterable[Caller], sender: Caller) -> list[Caller]:
        """The C{targets} whose accounts do not ignore C{sender}'s."""
        # Per message to a channel: the few readers ignoring the sender are
        # found once, rather than each target's list looked up.
        sender_id = sender.account_id
        readers = {reader for reader, ignored in self._lists.items() if sender_id in ignored}
        if not readers:
            return list(targets)
        return [c for c in targets if c.account_id not in readers]

    # -- loading -----------------------------------------------------------------

    async def load(self, account_id: str) -> dict[str, str] | None:
        """
        The account's ignore list (account id -> name), loaded once while it
        is online; C{None} if the store cannot be read (tried again next time).
        """
        if account_id in self._lists:
            return self._lists[account_id]
        load = self._loads.get(account_id)
        if load is None:
            load = defer.ensureDeferred(self._load(account_id))
            if not load.called:
                self._loads[account_id] = load
        return await follow(load)

    def forget(self, account_id: str) -> None:
        """The account went offline: drop its list from memory."""
        self._lists.pop(account_id, None)

    async def _load(self, account_id: str) -> dict[str, str] | None:
        try:
            records = await self.logs.read(ignore_key(account_id), 1)
        except Exception:
            log_failure(
                Failure(),
                self.log,
                "chat: cannot read the ignore list of {account}",
                account=account_id,
            )
            return None
        finally:
            self._loads.pop(account_id, None)
        ignored = records[-1].get("ignored", {}) if records else {}
        if account_id in self._lists:  # changed while this was read
            return self._lists[account_id]
        if self.presence.is_online(account_id):
            self._lists[account_id] = ignored
        return ignored

    # -- requests ----------------------------------------------------------------

    async def names(self, account_id: str) -> list[str]:
        """The names the account ignores, sorted."""
        return _names(await self._own(account_id))

    async def ignore(self, account_id: str, target: str, shown: str, most: int) -> list[str]:
        """
        Add account C{target}, called C{shown}, to the list of C{account_id},
        which holds at most C{most}; the names ignored after.
        """
        ignored = await self._own(account_id)
        if target not in ignored and len(ignored) >= most:
            raise WireError(codes.NOT_ALLOWED, f"you ignore {most} players already, the most")
        ignored[target] = shown
        await self._save(account_id, ignored)
        return _names(ignored)

    async def unignore(self, account_id: str, name: str) -> list[str]:
        """
        Take the player called C{name} off the list of C{account_id}: by the
        name it was ignored under, which may no longer be anyone's, else by
        the account of the online player of that name.  The names ignored after.
        """
        ignored = await self._own(account_id)
        found = [a for a, shown in ignored.items() if name_key(shown) == name_key(name)]
        if not found:
            online = self.presence.find(name)
            if online is not None and online.account_id in ignored:
                found = [online.account_id]
        if not found:
            raise WireError(codes.NOT_FOUND, f"you are not ignoring {name}")
        for ignored_id in found:
            del ignored[ignored_id]
        await self._save(account_id, ignored)
        return _names(ignored)

    async def _own(self, account_id: str) -> dict[str, str]:
        """The account's list, to read or change; C{unavailable} without the store."""
        ignored = await self.load(account_id)
        if ignored is None:
            raise WireError(codes.UNAVAILABLE, "chat cannot read your ignore list now; retry")
        return ignored

    async def _save(self, account_id: str, ignored: dict[str, str]) -> None:
        key = ignore_key(account_id)
        self.logs.append(key, {"ignored": dict(ignored)}, 1)
        await self.logs.flushed(key)
