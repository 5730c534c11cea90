"""
Presence as a service hears it: which sessions are online, under which
display name, of which account, and which sessions ended lately.

A service keeps it from the gateways' session events (and from the
callers of requests, which are the truth), and, in a process of its own,
from the sessions the gateways list when it starts
(L{mmo.process.seeding}): chat's C{chat.who},
C{chat.whisper} and the naming of players in requests, the economy's
partner of a trade (C{trade.open}) look players up here.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Collection

from mmo.game import keyed
from mmo.game.service import Caller

#: Ended sessions remembered, so that a request of one that was on its way
#: when it ended does not bring it back (see L{Presence.ended}).
ENDED_REMEMBERED = 10000


def name_key(name: str) -> str:
    """The form of a player's name that lookups compare: C{str.casefold}."""
    return name.casefold()


class Presence:
    """
    The live sessions heard of, found by session, display name or account.

    @ivar offline: Called with an account's id when its last session ends
        (or becomes another account's), so that what is kept per online
        account can go; or C{None}.
    """

    def __init__(
        self,
        offline: Callable[[str], None] | None = None,
        remember: int = ENDED_REMEMBERED,
    ):
        self.offline = offline
        self.remember = remember
        #: session -> its Caller, for every live session heard of.
        self._online: dict[str, Caller] = {}
        #: casefolded display name -> sessions of that name, the latest last.
        self._names: dict[str, list[str]] = {}
        #: account id -> its live sessions (L{keyed}).
        self._accounts: dict[str, tuple[str, ...]] = {}
        #: Sessions that ended, oldest first (a bounded set).
        self._ended: OrderedDict[str, None] = OrderedDict()

    # -- questions ------------------------------------------------------------

    def get(self, session: str) -> Caller | None:
        """The session's state, if it is online."""
        return self._online.get(session)

    def find(self, name: str) -> Caller | None:
        """The online session whose display name is C{name} (any case), the latest."""
        sessions = self._names.get(name_key(name))
        return self._online[sessions[-1]] if sessions else None

    def sessions_of(self, account_id: str) -> list[Caller]:
        """The online sessions of an account."""
        return [self._online[s] for s in self._accounts.get(account_id, ())]

    def is_online(self, account_id: str) -> bool:
        return account_id in self._accounts

    def accounts(self) -> Collection[str]:
        """The ids of the accounts online (a live view: do not keep it)."""
        return self._accounts.keys()

    def ended(self, session: str) -> bool:
        """Whether the session ended (lately: the last L{remember} are known)."""
        return session in self._ended

    def unheard(self, session: str) -> bool:
        """
        Whether nothing was heard of the session: it is neither online nor
        ended.  What a gateway lists when asked (L{mmo.process.seeding})
        is news only of such a session: what was heard since wins.
        """
        return session not in self._online and session not in self._ended

    # -- events ---------------------------------------------------------------

    def track(self, caller: Caller) -> Caller | None:
        """Record C{caller} as its session's state; the previous state, if any."""
        session = caller.session
        old = self._online.get(session)
        if old is not None:
            self._unname(old)
            if old.account_id != caller.account_id:
                self._unaccount(old)
        self._online[session] = caller
        self._names.setdefault(name_key(caller.display_name), []).append(session)
        keyed.add(self._accounts, caller.account_id, session)
        return old

    def end(self, session: str) -> None:
        """The session ended: it is offline, and remembered as ended."""
        caller = self._online.pop(session, None)
        if caller is not None:
            self._unname(caller)
            self._unaccount(caller)
        self._ended[session] = None
        while len(self._ended) > self.remember:
            self._ended.popitem(last=False)

    def restart(self, session: str) -> None:
        """An ended session id starts again: it is no longer taken as ended."""
        self._ended.pop(session, None)

    def _unname(self, caller: Caller) -> None:
        key = name_key(caller.display_name)
        sessions = self._names.get(key, [])
        if caller.session in sessions:
            sessions.remove(caller.session)
        if not sessions:
            self._names.pop(key, None)

    def _unaccount(self, caller: Caller) -> None:
        if keyed.discard(self._accounts, caller.account_id, caller.session):
            if self.offline is not None:
                self.offline(caller.account_id)
