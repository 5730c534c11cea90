"""
Chat's channels: who is in which, and each one's recent history.

Channels (C{docs/chat.md} has the rules):

  - C{world:REALM}: every session of the realm, joined when it starts;
  - C{room:ID}: the members of a lobby room, from the lobby's room events;
  - C{party:NAME}: open channels that players join and leave themselves;
  - C{zone:REALM:ZONE}: the sessions of the realm whose character is in
    the zone, followed from the session's zone (L{mmo.game.service.Caller}),
    which the handoffs switch; players name it C{zone} (L{ZONE}).

A channel exists in memory while it has members; its history is a store log
(L{history_key}), read when the channel is made and written behind delivery
through L{StoreLogs<mmo.chat.logs.StoreLogs>}.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from mmo.chat.logs import StoreLogs, follow
from mmo.game import keyed
from mmo.game.service import Caller
from mmo.unavailable import log_failure
from mmo.wire import codes
from mmo.wire.codes import WireError

#: The kinds of channel, the part of a channel id before the first ":".
CHANNEL_KINDS = ("world", "room", "party")


def world_channel(realm: str) -> str:
    """The id of the world channel of C{realm}."""
    return f"world:{realm}"


#: The id players name their zone's channel by, in requests, replies and pushes.
ZONE = "zone"


def zone_channel(realm: str, zone: str) -> str:
    """The id of the channel of C{zone} (a world region) in C{realm}."""
    return f"{ZONE}:{realm}:{zone}"


def is_zone_channel(channel_id: str) -> bool:
    return channel_id.startswith(ZONE + ":")


def shown_id(channel_id: str) -> str:
    """
    The id players see of a channel: its own, but L{ZONE} for a zone's
    (a player is in one zone's channel at a time, and follows it across
    borders without naming it).
    """
    return ZONE if is_zone_channel(channel_id) else channel_id


def room_channel(room) -> str:
    """The id of the channel of lobby room C{room}."""
    return f"room:{room}"


def history_key(channel: str) -> str:
    """The store log of a channel's history."""
    return f"chat:{channel}"


#: The fields of a history record that players see (the store keeps the
#: sender's account too, for ignore lists).
PUBLIC_FIELDS = ("channel", "from", "text", "time")


def public(record: dict) -> dict:
    """A stored message as players see it: a C{chat.message} push's fields."""
    return {key: record.get(key) for key in PUBLIC_FIELDS}


class Channel:
    """
    One channel in this process: its members and its recent history.

    @ivar members: session id -> the member's L{Caller}.
    @ivar recent: The last messages, as C{(number, record)}: records loaded
        from the store have number 0, those sent since are numbered from 1
        by L{count}, so that a member who joined when C{count} was C{n} is
        shown exactly the records numbered up to C{n} as history.
    @ivar ready: Fires when the stored history is loaded.
    """

    def __init__(self, channel_id: str, keep: int):
        self.id = channel_id
        self.kind = channel_id.partition(":")[0]
        #: The id its members see (L{shown_id}).
        self.shown = shown_id(channel_id)
        self.members: dict[str, Caller] = {}
        self.recent: deque[tuple[int, dict]] = deque(maxlen=keep)
        self.count = 0
        self.loaded = False
        self.ready: defer.Deferred = defer.Deferred()
        #: Records sent before the history was loaded: written to the store
        #: only after it was read, so that the read cannot see them twice.
        self.unsaved: list[dict] = []

    def add(self, caller: Caller) -> bool:
        """Make C{caller}'s session a member, unless it is one; whether it is new."""
        if caller.session in self.members:
            return False
        self.members[caller.session] = caller
        return True

    def update(self, caller: Caller) -> None:
        """The member of C{caller}'s session is now C{caller} (a new name, a new gateway)."""
        if caller.session in self.members:
            self.members[caller.session] = caller

    def remove(self, session: str) -> Caller | None:
        """Take the session out; the member it was, if it was one."""
        return self.members.pop(session, None)

    def add_message(self, record: dict) -> bool:
        """
        Add a sent message to the history; whether to write it to the store
        now (if not, L{load} hands it over once the stored history is read).
        """
        self.count += 1
        self.recent.append((self.count, record))
        if not self.loaded:
            self.unsaved.append(record)
        return self.loaded

    def load(self, records: list[dict], save: Callable[[dict], None]) -> None:
        """
        The stored history was read as C{records}: put them before what was
        sent since, hand each message sent meanwhile to C{save} (oldest
        first), then wake who waits for the history.
        """
        sent = list(self.recent)
        self.recent.clear()
        self.recent.extend([(0, record) for record in records] + sent)
        self.loaded = True
        unsaved, self.unsaved = self.unsaved, []
        for record in unsaved:
            save(record)
        self.ready.callback(None)

    async def history(self, upto: int | None = None) -> list[dict]:
        """The recent records (numbered up to C{upto}), once the stored history is loaded."""
        if not self.loaded:
            await follow(self.ready)
        return [record for number, record in self.recent if upto is None or number <= upto]


class Channels:
    """
    The channels with members in this process and the channels of each
    session.  A channel is made when its first member joins (its history
    read from the store) and dropped when its last member leaves (its
    history is in the store, or on its way there).

    @ivar keep: Messages kept per channel (C{[chat] history}); 0 keeps none.
    """

    log = Logger()

    def __init__(self, logs: StoreLogs, keep: int):
        self.logs = logs
        self.keep = keep
        #: channel id -> Channel, for channels with members.
        self._channels: dict[str, Channel] = {}
        #: session -> ids of the channels it is in (L{keyed}).
        self._joined: dict[str, tuple[str, ...]] = {}
        #: Channel histories being read from the store.
        self._loading: set[defer.Deferred] = set()

    # -- who is where ---------------------------------------------------------

    def get(self, channel_id: str) -> Channel | None:
        """The channel, if it has members."""
        return self._channels.get(channel_id)

    def joined(self, session: str) -> frozenset[str]:
        """The ids of the channels the session is in."""
        return frozenset(self._joined.get(session, ()))

    def size(self, channel_id: str) -> int:
        """How many members the channel has."""
        channel = self._channels.get(channel_id)
        return 0 if channel is None else len(channel.members)

    def is_member(self, channel_id: str, session: str) -> bool:
        channel = self._channels.get(channel_id)
        return channel is not None and session in channel.members

    def member(self, channel_id: str, session: str) -> Caller | None:
        """The channel's member of that session, if it is one."""
        channel = self._channels.get(channel_id)
        return None if channel is None else channel.members.get(session)

    def require_member(self, caller: Caller, channel_id: str) -> Channel:
        """The channel; C{not_allowed} if C{caller} is not in it."""
        channel = self._channels.get(channel_id)
        if channel is None or caller.session not in channel.members:
            raise WireError(codes.NOT_ALLOWED, f"you are not in the channel {channel_id!r}")
        return channel

    # -- joining and leaving -------------------------------------------------

    def add(self, caller: Caller, channel_id: str) -> tuple[Channel, bool]:
        """Put C{caller} in the channel (made if need be); it and whether C{caller} is new."""
        channel = self._open(channel_id)
        new = channel.add(caller)
        if new:
            keyed.add(self._joined, caller.session, channel_id)
        return channel, new

    def update(self, caller: Caller) -> None:
        """C{caller} is its session's new state: the member it is in each channel."""
        for channel_id in self._joined.get(caller.session, ()):
            self._channels[channel_id].update(caller)

    def remove(self, channel_id: str, session: str) -> Caller | None:
        """Take the session out of the channel; the member it was, if it was one."""
        channel = self._channels.get(channel_id)
        member = None if channel is None else channel.remove(session)
        if member is None:
            return None
        keyed.discard(self._joined, session, channel_id)
        if not channel.members:
            del self._channels[channel_id]
        return member

    def close(self, channel_id: str) -> list[Caller]:
        """Take every member out of the channel; the members it had."""
        channel = self._channels.get(channel_id)
        members = list(channel.members) if channel is not None else []
        return [self.remove(channel_id, session) for session in members]

    def leave_all(self, session: str) -> None:
        """Take the session out of every channel (it ended)."""
        for channel_id in self._joined.get(session, ()):
            self.remove(channel_id, session)

    # -- history -----------------------------------------------------------

    def record(self, channel: Channel, record: dict) -> None:
        """Add a sent message to the channel's history (memory, then the store)."""
        if not self.keep:
            return
        if channel.add_message(record):
            self._save(channel, record)

    def settled(self) -> defer.Deferred:
        """A Deferred firing once the histories being read are loaded."""
        return defer.gatherResults([follow(d) for d in list(self._loading)])

    def _open(self, channel_id: str) -> Channel:
        """The channel, made (and its history loading) if it has no members yet."""
        channel = self._channels.get(channel_id)
        if channel is None:
            channel = self._channels[channel_id] = Channel(channel_id, self.keep)
            if self.keep:
                loading = defer.ensureDeferred(self._load(channel))
                if not loading.called:
                    self._loading.add(loading)
                    loading.addBoth(lambda result: self._loading.discard(loading) or result)
            else:
                channel.load([], lambda record: None)
        return channel

    async def _load(self, channel: Channel) -> None:
        try:
            records = await self.logs.read(history_key(channel.id), self.keep)
        except Exception:
            log_failure(
                Failure(),
                self.log,
                "chat: cannot read the history of {channel}",
                channel=channel.id,
            )
            records = []
        channel.load(records, lambda record: self._save(channel, record))

    def _save(self, channel: Channel, record: dict) -> None:
        self.logs.append(history_key(channel.id), record, self.keep)
