"""
The chat service: channels, whispers, history, moderation, ignore lists and
flood limits, for every gateway of the deployment.

Gateways route each C{chat.*} message of an admitted player here (in the
same process, or over AMP from a cluster's gateways) and tell every service
of session events; the service keeps, from those events, who is online under
which display name and which channels each session is in, and sends pushes
with L{GameService.deliver}: one bus message per gateway, however many of
its players a message goes to.

Channels (C{docs/chat.md} has the rules and every message):

  - C{world:REALM}: every session of the realm, joined when it starts;
  - C{room:ID}: the members of a lobby room, from the lobby's C{lobby.rooms}
    bus events;
  - C{party:NAME}: open channels that players join and leave themselves.

State is in this process's memory, except what must outlive it: the history
of each channel and each account's ignore list are store logs
(L{IStore.append_log}), written behind delivery by one L{LogWriter} per log
so that the stored order is the delivered order; mutes are bus keys that
expire by themselves (they survive a restart of chat on the Redis bus).  One
chat process serves a deployment.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Iterable

from twisted.internet import defer
from twisted.logger import Logger

from mmo.bus import BusError
from mmo.game import messages
from mmo.game.messages import ROOMS_CHANNEL, RoomEvent
from mmo.game.service import Caller, GameService
from mmo.store import StoreError
from mmo.wire import codes
from mmo.wire.codes import WireError

#: The kinds of channel, the part of a channel id before the first ":".
CHANNEL_KINDS = ("world", "room", "party")

#: Session events that (re)state a live session.
LIVE_EVENTS = ("started", "changed", "moved")

#: Ended sessions remembered, so that a request of one that was on its way
#: when it ended does not bring it back (see L{ChatService.handle}).
ENDED_REMEMBERED = 10000


def world_channel(realm: str) -> str:
    """The id of the world channel of C{realm}."""
    return f"world:{realm}"


def room_channel(room) -> str:
    """The id of the channel of lobby room C{room}."""
    return f"room:{room}"


def history_key(channel: str) -> str:
    """The store log of a channel's history."""
    return f"chat:{channel}"


def ignore_key(account_id: str) -> str:
    """The store log of an account's ignore list (its last record is the list)."""
    return f"chat:ignore:{account_id}"


def mute_key(account_id: str) -> str:
    """The bus key of an account's mute."""
    return f"chat:mute:{account_id}"


def name_key(name: str) -> str:
    """The form of a player's name that lookups compare: C{str.casefold}."""
    return name.casefold()


#: The fields of a history record that players see (the store keeps the
#: sender's account too, for ignore lists).
PUBLIC_FIELDS = ("channel", "from", "text", "time")


def public(record: dict) -> dict:
    """A stored message as players see it: a C{chat.message} push's fields."""
    return {key: record.get(key) for key in PUBLIC_FIELDS}


def _follow(d: defer.Deferred) -> defer.Deferred:
    """
    A new Deferred with C{d}'s result, leaving C{d}'s own result alone, so
    that several callers may wait for one operation (a Deferred awaited
    twice gives the second awaiter C{None}).
    """
    follower: defer.Deferred = defer.Deferred()

    def done(result):
        follower.callback(result)
        return result

    d.addBoth(done)
    return follower


class LogWriter:
    """
    Appends records to one store log, one append at a time, in the order
    they were added.

    A store may run operations issued together in any order (a Redis pool
    spreads them over connections), so appends wait for each other here:
    the log's order is the order of L{add}, which is the order of delivery.
    Only the last C{keep} records of a log matter, so when the store falls
    behind, records waiting beyond that many are dropped rather than piled
    up.  A failed append is logged and skipped: chat goes on without the
    store.

    @ivar added: Records added so far.
    @ivar done: Records written, failed or dropped so far.
    """

    log = Logger()

    def __init__(self, store, key: str, keep: int, idle=None):
        self.store = store
        self.key = key
        self.keep = keep
        self.added = 0
        self.done = 0
        self._queue: deque[dict] = deque()
        self._waiters: list[tuple[int, defer.Deferred]] = []
        self._running = False
        self._idle = idle

    def add(self, record: dict) -> None:
        """Queue C{record}; it is written after every record added before it."""
        self.added += 1
        self._queue.append(record)
        while len(self._queue) > self.keep:
            self._queue.popleft()
            self._finished()
        if not self._running:
            self._running = True
            defer.ensureDeferred(self._run())

    def flushed(self) -> defer.Deferred:
        """A Deferred firing once every record added so far is written (or given up)."""
        target = self.added
        if self.done >= target:
            return defer.succeed(None)
        d: defer.Deferred = defer.Deferred()
        self._waiters.append((target, d))
        return d

    @property
    def busy(self) -> bool:
        return self._running

    async def _run(self) -> None:
        while self._queue:
            record = self._queue.popleft()
            try:
                await self.store.append_log(self.key, record, self.keep)
            except Exception:
                self.log.failure("chat: cannot append to the store log {key!r}", key=self.key)
            self._finished()
        self._running = False
        if self._idle is not None:
            self._idle(self)

    def _finished(self) -> None:
        self.done += 1
        ready = [d for target, d in self._waiters if target <= self.done]
        self._waiters = [(t, d) for t, d in self._waiters if t > self.done]
        for d in ready:
            d.callback(None)


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
        self.members: dict[str, Caller] = {}
        self.recent: deque[tuple[int, dict]] = deque(maxlen=keep)
        self.count = 0
        self.loaded = False
        self.ready: defer.Deferred = defer.Deferred()
        #: Records sent before the history was loaded: written to the store
        #: only after it was read, so that the read cannot see them twice.
        self.unsaved: list[dict] = []


class ChatService(GameService):
    """
    The C{chat.*} messages.  See C{docs/chat.md} for each message, its reply
    and its errors.

    Game teams may subclass it and change the class attributes below, or add
    handlers (C{on_chat_<name>}).

    @cvar ignore_max: Most players one account may ignore.
    @cvar mute_default: Seconds of a mute when the moderator gives none.
    @cvar mute_max: Longest mute, seconds.
    @cvar reason_max: Longest mute reason, characters.
    @cvar name_max: Longest player name accepted in a request.
    @cvar party_name_max: Longest party channel name (after C{party:}).
    """

    kind = "chat"
    prefixes = ("chat.",)
    log = Logger()

    ignore_max = 100
    mute_default = 600.0
    mute_max = 366 * 24 * 3600.0
    reason_max = 200
    name_max = 64
    party_name_max = 32

    def __init__(self, config, store, bus, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        super().__init__(config, store, bus, reactor)
        self.settings = config.chat
        self.moderators = {name_key(name) for name in self.settings.moderators}
        #: session -> its Caller, for every live session heard of.
        self._online: dict[str, Caller] = {}
        #: casefolded display name -> sessions of that name, the latest last.
        self._names: dict[str, list[str]] = {}
        #: account id -> its live sessions.
        self._accounts: dict[str, set[str]] = {}
        #: channel id -> Channel, for channels with members.
        self._channels: dict[str, Channel] = {}
        #: session -> ids of the channels it is in.
        self._joined: dict[str, set[str]] = {}
        #: account id -> {ignored account id: name}, for accounts online.
        self._ignores: dict[str, dict[str, str]] = {}
        self._ignore_loads: dict[str, defer.Deferred] = {}
        #: account id -> (tokens, time) of its flood bucket.
        self._buckets: dict[str, tuple[float, float]] = {}
        #: store log key -> its writer, while it has work.
        self._writers: dict[str, LogWriter] = {}
        #: Channel histories being read from the store.
        self._loading: set[defer.Deferred] = set()
        #: Sessions that ended, oldest first (a bounded set).
        self._ended: OrderedDict[str, None] = OrderedDict()
        #: Lobby events are handled one at a time, in order.
        self._lobby = defer.DeferredLock()
        self._subscription = None

    # -- life cycle -----------------------------------------------------------

    async def start(self) -> None:
        rooms = messages.Dispatcher("chat rooms")
        rooms.on(RoomEvent, self._lobby_message)
        self._subscription = await self.bus.subscribe(ROOMS_CHANNEL, rooms)

    async def stop(self) -> None:
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            await subscription.cancel()
        await self.settled()

    def settled(self) -> defer.Deferred:
        """
        A Deferred firing once the lobby events received so far are handled
        and the store writes asked for so far are done.
        """

        async def wait():
            await self._lobby.run(lambda: None)
            await defer.gatherResults([_follow(d) for d in list(self._loading)])
            await defer.gatherResults([w.flushed() for w in list(self._writers.values())])

        return defer.ensureDeferred(wait())

    # -- sessions ---------------------------------------------------------------

    async def handle(self, caller: Caller, kind: str, message: dict) -> dict | None:
        # The gateway's caller is the truth: a session this process has not
        # heard of (chat restarted) or has stale news of is brought up to
        # date -- unless it ended, and this request was on its way meanwhile.
        if (
            self.owns(kind)
            and self._online.get(caller.session) != caller
            and caller.session not in self._ended
        ):
            await self._arrive(caller)
        return await super().handle(caller, kind, message)

    async def session_event(self, caller: Caller, event: str) -> None:
        if event in LIVE_EVENTS:
            if caller.session in self._ended:
                if event != "started":  # news that crossed the end
                    return
                del self._ended[caller.session]
            await self._arrive(caller)
        elif event == "ended":
            self._forget(caller.session)
            self._ended[caller.session] = None
            while len(self._ended) > ENDED_REMEMBERED:
                self._ended.popitem(last=False)
        else:
            self.log.warn("chat: unknown session event {event!r}", event=event)

    async def _arrive(self, caller: Caller) -> None:
        """A session started or changed: record it, and put it in its realm's world."""
        old = self._track(caller)
        if old is not None and old.realm != caller.realm:
            self._remove_member(world_channel(old.realm), caller.session)
        await self._ignore_list(caller.account_id)
        current = self._online.get(caller.session)
        if current is None:  # ended meanwhile
            return
        world = world_channel(current.realm)
        if not self._is_member(world, current.session):
            await self._join(current, world, push=True)

    def _track(self, caller: Caller) -> Caller | None:
        """Record C{caller} as its session's state; the previous state, if any."""
        session = caller.session
        old = self._online.get(session)
        if old is not None:
            self._unname(old)
            if old.account_id != caller.account_id:
                self._unaccount(old)
        self._online[session] = caller
        self._names.setdefault(name_key(caller.display_name), []).append(session)
        self._accounts.setdefault(caller.account_id, set()).add(session)
        for channel_id in self._joined.get(session, ()):
            self._channels[channel_id].members[session] = caller
        return old

    def _unname(self, caller: Caller) -> None:
        key = name_key(caller.display_name)
        sessions = self._names.get(key, [])
        if caller.session in sessions:
            sessions.remove(caller.session)
        if not sessions:
            self._names.pop(key, None)

    def _unaccount(self, caller: Caller) -> None:
        sessions = self._accounts.get(caller.account_id, set())
        sessions.discard(caller.session)
        if not sessions:
            # Nothing of an account that is offline is kept but its bucket.
            self._accounts.pop(caller.account_id, None)
            self._ignores.pop(caller.account_id, None)
            self._prune_buckets()

    def _forget(self, session: str) -> None:
        """A session ended: it is offline and in no channel."""
        caller = self._online.pop(session, None)
        if caller is not None:
            self._unname(caller)
            self._unaccount(caller)
        for channel_id in list(self._joined.get(session, ())):
            self._remove_member(channel_id, session)

    def _find(self, name: str) -> Caller | None:
        """The online session whose display name is C{name} (any case), the latest."""
        sessions = self._names.get(name_key(name))
        return self._online[sessions[-1]] if sessions else None

    def _sessions_of(self, account_id: str) -> list[Caller]:
        return [self._online[s] for s in self._accounts.get(account_id, ())]

    # -- channels -----------------------------------------------------------------

    def _channel(self, channel_id: str) -> Channel:
        """The channel, made (and its history loading) if it has no members yet."""
        channel = self._channels.get(channel_id)
        if channel is None:
            channel = self._channels[channel_id] = Channel(channel_id, self.settings.history)
            if self.settings.history:
                loading = defer.ensureDeferred(self._load(channel))
                if not loading.called:
                    self._loading.add(loading)
                    loading.addBoth(lambda result: self._loading.discard(loading) or result)
            else:
                channel.loaded = True
                channel.ready.callback(None)
        return channel

    async def _load(self, channel: Channel) -> None:
        key = history_key(channel.id)
        try:
            records = await self._read_log(key, self.settings.history)
        except Exception:
            self.log.failure("chat: cannot read the history of {channel}", channel=channel.id)
            records = []
        sent = list(channel.recent)
        channel.recent.clear()
        channel.recent.extend([(0, record) for record in records] + sent)
        channel.loaded = True
        unsaved, channel.unsaved = channel.unsaved, []
        writer = self._writer(key, self.settings.history)
        for record in unsaved:
            writer.add(record)
        channel.ready.callback(None)

    def _is_member(self, channel_id: str, session: str) -> bool:
        channel = self._channels.get(channel_id)
        return channel is not None and session in channel.members

    async def _join(self, caller: Caller, channel_id: str, push: bool = False) -> list[dict]:
        """
        Put C{caller} in the channel; its history as C{caller} is to see it
        (what was sent before the join, less what C{caller} ignores).  With
        C{push}, the history is also pushed to it as C{chat.joined} if it
        was not a member already.
        """
        channel = self._channel(channel_id)
        new = caller.session not in channel.members
        if new:
            channel.members[caller.session] = caller
            self._joined.setdefault(caller.session, set()).add(channel_id)
        history = await self._history(caller, channel, channel.count)
        if push and new:
            member = self._member(channel_id, caller.session)
            if member is not None:
                await self.deliver([member], "chat.joined", channel=channel_id, history=history)
        return history

    def _member(self, channel_id: str, session: str) -> Caller | None:
        channel = self._channels.get(channel_id)
        return None if channel is None else channel.members.get(session)

    def _remove_member(self, channel_id: str, session: str) -> Caller | None:
        """Take the session out of the channel; the member it was, if it was one."""
        channel = self._channels.get(channel_id)
        if channel is None or session not in channel.members:
            return None
        member = channel.members.pop(session)
        joined = self._joined.get(session, set())
        joined.discard(channel_id)
        if not joined:
            self._joined.pop(session, None)
        if not channel.members:
            # Its history is in the store (or on its way there).
            del self._channels[channel_id]
        return member

    async def _history(self, caller: Caller, channel: Channel, upto: int | None = None):
        """The channel's recent messages (numbered up to C{upto}) as C{caller} sees them."""
        if not channel.loaded:
            await _follow(channel.ready)
        ignored = self._ignores.get(caller.account_id, {})
        return [
            public(record)
            for number, record in channel.recent
            if (upto is None or number <= upto) and record.get("account") not in ignored
        ]

    def _record(self, channel: Channel, record: dict) -> None:
        """Add a sent message to the channel's history (memory, then the store)."""
        if not self.settings.history:
            return
        channel.count += 1
        channel.recent.append((channel.count, record))
        if channel.loaded:
            self._writer(history_key(channel.id), self.settings.history).add(record)
        else:
            channel.unsaved.append(record)

    # -- store logs -----------------------------------------------------------------

    def _writer(self, key: str, keep: int) -> LogWriter:
        writer = self._writers.get(key)
        if writer is None:
            writer = self._writers[key] = LogWriter(self.store, key, keep, self._writer_idle)
        return writer

    def _writer_idle(self, writer: LogWriter) -> None:
        if self._writers.get(writer.key) is writer and not writer.busy:
            del self._writers[writer.key]

    async def _read_log(self, key: str, limit: int) -> list[dict]:
        """The log's records, after the writes this process has queued for it."""
        writer = self._writers.get(key)
        if writer is not None:
            await writer.flushed()
        return await self.store.read_log(key, limit)

    # -- the lobby's rooms --------------------------------------------------------------

    def _lobby_message(self, sender: str, event: RoomEvent) -> defer.Deferred:
        message = {"room": event.room, "event": event.event, "caller": event.caller}
        return self._lobby.run(lambda: defer.ensureDeferred(self._room_event(message)))

    async def _room_event(self, message) -> None:
        """C{{"room": id, "event": "joined"|"left"|"closed", "caller": dict}}."""
        try:
            room, event = message["room"], message["event"]
            if not isinstance(room, (str, int)) or isinstance(room, bool):
                raise TypeError(f"room id {room!r}")
            channel_id = room_channel(room)
            if event == "closed":
                channel = self._channels.get(channel_id)
                members = list(channel.members) if channel is not None else []
                gone = [self._remove_member(channel_id, session) for session in members]
                await self.deliver(gone, "chat.left", channel=channel_id, reason="closed")
                return
            caller = Caller.from_dict(message["caller"])
            caller = self._online.get(caller.session, caller)
            if event == "joined":
                if caller.session in self._ended:  # news that crossed the end
                    return
                await self._join(caller, channel_id, push=True)
            elif event == "left":
                member = self._remove_member(channel_id, caller.session)
                if member is not None:
                    await self.deliver([member], "chat.left", channel=channel_id, reason="left")
            else:
                raise ValueError(f"unknown event {event!r}")
        except Exception:
            self.log.failure(
                "chat: cannot handle {message!r} from {channel}",
                message=message,
                channel=ROOMS_CHANNEL,
            )

    # -- checks ---------------------------------------------------------------------------

    def _channel_id(self, caller: Caller, message: dict) -> str:
        """The channel a request names, as an id (C{"world"} is the caller's realm's)."""
        raw = message.get("channel")
        if not isinstance(raw, str) or not raw:
            raise WireError(codes.BAD_REQUEST, "'channel' must be a non-empty string")
        if raw == "world":
            return world_channel(caller.realm)
        kind, colon, name = raw.partition(":")
        if not colon or not name or kind not in CHANNEL_KINDS:
            raise WireError(
                codes.BAD_REQUEST,
                f"no channel {raw!r}: channels are world:REALM, room:ID and party:NAME",
            )
        if kind == "party":
            name = name.casefold()
            if len(name) > self.party_name_max or not all(c.isalnum() or c in "-_" for c in name):
                raise WireError(
                    codes.BAD_REQUEST,
                    f"a party channel name has 1 to {self.party_name_max} letters, digits, "
                    "'-' or '_'",
                )
            return f"party:{name}"
        return raw

    def _text(self, message: dict) -> str:
        text = message.get("text")
        if not isinstance(text, str) or not text.strip():
            raise WireError(codes.BAD_REQUEST, "'text' must be a non-empty string")
        if len(text) > self.settings.max_length:
            raise WireError(
                codes.BAD_REQUEST,
                f"the message is {len(text)} characters long; at most "
                f"{self.settings.max_length} are allowed",
            )
        return text

    def _name(self, message: dict, field: str = "name") -> str:
        name = message.get(field)
        if not isinstance(name, str) or not name or len(name) > self.name_max:
            raise WireError(
                codes.BAD_REQUEST, f"{field!r} must be a player's name (1 to {self.name_max})"
            )
        return name

    def _require_member(self, caller: Caller, channel_id: str) -> Channel:
        channel = self._channels.get(channel_id)
        if channel is None or caller.session not in channel.members:
            raise WireError(codes.NOT_ALLOWED, f"you are not in the channel {channel_id!r}")
        return channel

    def _require_moderator(self, caller: Caller) -> None:
        if name_key(caller.name) not in self.moderators:
            raise WireError(codes.NOT_ALLOWED, "only chat moderators may do this")

    async def _check_mute(self, caller: Caller) -> None:
        """Raise C{muted} (with the reason and the time left) if the caller is muted."""
        mute = await self._bus(self.bus.get(mute_key(caller.account_id)))
        if not isinstance(mute, dict):
            return
        left = mute.get("until", 0) - self.reactor.seconds()
        if left > 0:
            raise WireError(
                codes.MUTED,
                f"you are muted for another {math.ceil(left)} s "
                f"(reason: {mute.get('reason') or 'none given'})",
            )

    def _take_token(self, caller: Caller) -> None:
        """Spend one token of the account's flood bucket, or raise C{flooding}."""
        rate, burst = self.settings.rate, self.settings.burst
        now = self.reactor.seconds()
        tokens, then = self._buckets.get(caller.account_id, (burst, now))
        tokens = min(burst, tokens + (now - then) * rate)
        if tokens < 1:
            wait = (1 - tokens) / rate
            raise WireError(
                codes.FLOODING,
                f"you are sending chat messages too fast (at most {rate:g} a second, "
                f"{burst} at once); wait {wait:.1f} s",
            )
        self._buckets[caller.account_id] = (tokens - 1, now)

    def _prune_buckets(self) -> None:
        """Forget the full buckets of accounts that are offline (full is as good as none)."""
        if len(self._buckets) <= 2 * len(self._accounts) + 64:
            return
        now = self.reactor.seconds()
        rate, burst = self.settings.rate, self.settings.burst
        for account_id, (tokens, then) in list(self._buckets.items()):
            if account_id not in self._accounts and tokens + (now - then) * rate >= burst:
                del self._buckets[account_id]

    async def _bus(self, d):
        try:
            return await d
        except BusError as e:
            raise WireError(codes.UNAVAILABLE, f"chat cannot reach the bus: {e}")

    async def _resolve(self, name: str) -> tuple[str, str]:
        """
        The account id and shown name of the player called C{name}: an online
        player's display name, else an account name.
        """
        online = self._find(name)
        if online is not None:
            return online.account_id, online.display_name
        try:
            account = await self.store.account_by_name(name)
        except StoreError as e:
            raise WireError(codes.UNAVAILABLE, f"chat cannot reach the store: {e}")
        if account is None:
            raise WireError(
                codes.NOT_FOUND,
                f"no player called {name!r} is online and no account has that name",
            )
        return account.id, account.name

    # -- ignore lists -------------------------------------------------------------------

    async def _ignore_list(self, account_id: str) -> dict[str, str] | None:
        """
        The account's ignore list (account id -> name), loaded once while it
        is online; C{None} if the store cannot be read (tried again next time).
        """
        if account_id in self._ignores:
            return self._ignores[account_id]
        load = self._ignore_loads.get(account_id)
        if load is None:
            load = defer.ensureDeferred(self._load_ignores(account_id))
            if not load.called:
                self._ignore_loads[account_id] = load
        return await _follow(load)

    async def _load_ignores(self, account_id: str) -> dict[str, str] | None:
        try:
            records = await self._read_log(ignore_key(account_id), 1)
        except Exception:
            self.log.failure("chat: cannot read the ignore list of {account}", account=account_id)
            return None
        finally:
            self._ignore_loads.pop(account_id, None)
        ignored = records[-1].get("ignored", {}) if records else {}
        if account_id in self._ignores:  # changed while this was read
            return self._ignores[account_id]
        if account_id in self._accounts:
            self._ignores[account_id] = ignored
        return ignored

    async def _own_ignore_list(self, caller: Caller) -> dict[str, str]:
        """The caller's ignore list, to read or change; C{unavailable} without the store."""
        ignored = await self._ignore_list(caller.account_id)
        if ignored is None:
            raise WireError(codes.UNAVAILABLE, "chat cannot read your ignore list now; retry")
        return ignored

    async def _save_ignores(self, account_id: str, ignored: dict[str, str]) -> None:
        writer = self._writer(ignore_key(account_id), 1)
        writer.add({"ignored": dict(ignored)})
        await writer.flushed()

    def _ignoring(self, reader: str, sender: str) -> bool:
        """Whether account C{reader} ignores account C{sender}."""
        return sender in self._ignores.get(reader, ())

    def _unignored(self, targets: Iterable[Caller], sender: Caller) -> list[Caller]:
        return [c for c in targets if not self._ignoring(c.account_id, sender.account_id)]

    # -- messages: channels ----------------------------------------------------------------

    async def on_chat_send(self, caller: Caller, message: dict) -> dict:
        """C{{channel, text}}: say C{text} to every member of the channel."""
        channel_id = self._channel_id(caller, message)
        text = self._text(message)
        self._require_member(caller, channel_id)
        await self._check_mute(caller)
        channel = self._require_member(caller, channel_id)  # the wait may have changed it
        self._take_token(caller)
        now = self.reactor.seconds()
        fields = {"channel": channel_id, "from": caller.display_name, "text": text, "time": now}
        self._record(channel, dict(fields, account=caller.account_id))
        targets = self._unignored(channel.members.values(), caller)
        await self.deliver(targets, "chat.message", **fields)
        return {"channel": channel_id, "time": now}

    async def on_chat_join(self, caller: Caller, message: dict) -> dict:
        """
        C{{channel}}: join a party channel; for a channel one is in already
        (world and room channels are joined for you), its history again.
        """
        channel_id = self._channel_id(caller, message)
        if not self._is_member(channel_id, caller.session):
            if not channel_id.startswith("party:"):
                raise WireError(
                    codes.NOT_ALLOWED,
                    f"{channel_id!r} cannot be joined: world channels are joined on login, "
                    "room channels by joining the room in the lobby",
                )
            channel = self._channels.get(channel_id)
            if channel is not None and len(channel.members) >= self.settings.channel_max_members:
                raise WireError(codes.NOT_ALLOWED, f"the channel {channel_id!r} is full")
        history = await self._join(caller, channel_id)
        return {"channel": channel_id, "history": history}

    async def on_chat_leave(self, caller: Caller, message: dict) -> dict:
        """C{{channel}}: leave a party channel."""
        channel_id = self._channel_id(caller, message)
        self._require_member(caller, channel_id)
        if not channel_id.startswith("party:"):
            raise WireError(
                codes.NOT_ALLOWED,
                f"{channel_id!r} cannot be left: you are in the world channel while online, "
                "and in a room's channel while in the room",
            )
        self._remove_member(channel_id, caller.session)
        return {"channel": channel_id}

    async def on_chat_channels(self, caller: Caller, message: dict) -> dict:
        """The ids of the channels the caller is in."""
        return {"channels": sorted(self._joined.get(caller.session, ()))}

    async def on_chat_history(self, caller: Caller, message: dict) -> dict:
        """C{{channel, limit?}}: the last messages of a channel one is in."""
        channel_id = self._channel_id(caller, message)
        limit = message.get("limit", self.settings.history)
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            raise WireError(codes.BAD_REQUEST, "'limit' must be an integer of at least 0")
        channel = self._require_member(caller, channel_id)
        messages = await self._history(caller, channel)
        return {"channel": channel_id, "messages": messages[-limit:] if limit else []}

    # -- messages: players ----------------------------------------------------------------

    async def on_chat_whisper(self, caller: Caller, message: dict) -> dict:
        """C{{to, text}}: say C{text} to one online player."""
        name = self._name(message, "to")
        text = self._text(message)
        target = self._find(name)
        if target is None:
            raise WireError(codes.PLAYER_OFFLINE, f"{name} is not online")
        if target.session == caller.session:
            raise WireError(codes.BAD_REQUEST, "you cannot whisper to yourself")
        await self._check_mute(caller)
        self._take_token(caller)
        target = self._find(name)  # it may have gone during the wait
        if target is None:
            raise WireError(codes.PLAYER_OFFLINE, f"{name} is not online")
        now = self.reactor.seconds()
        # An ignoring player's whispers are dropped without telling the sender.
        targets = self._unignored([target], caller)
        await self.deliver(
            targets, "chat.whisper", **{"from": caller.display_name, "text": text, "time": now}
        )
        return {"to": target.display_name, "text": text, "time": now}

    async def on_chat_who(self, caller: Caller, message: dict) -> dict:
        """C{{name}}: whether the player is online (and, once zones exist, where)."""
        name = self._name(message)
        found = self._find(name)
        if found is None:
            return {"name": name, "online": False, "zone": None}
        return {"name": found.display_name, "online": True, "zone": None}

    # -- messages: moderation ---------------------------------------------------------------

    async def on_chat_mute(self, caller: Caller, message: dict) -> dict:
        """C{{name, seconds?, reason?}}: (moderators) stop a player's chat for a time."""
        self._require_moderator(caller)
        name = self._name(message)
        seconds = message.get("seconds", self.mute_default)
        if (
            not isinstance(seconds, (int, float))
            or isinstance(seconds, bool)
            or not 0 < seconds <= self.mute_max
        ):
            raise WireError(
                codes.BAD_REQUEST, f"'seconds' must be a number above 0, at most {self.mute_max:g}"
            )
        reason = message.get("reason", "")
        if not isinstance(reason, str) or len(reason) > self.reason_max:
            raise WireError(
                codes.BAD_REQUEST, f"'reason' must be a string of at most {self.reason_max}"
            )
        account_id, shown = await self._resolve(name)
        until = self.reactor.seconds() + seconds
        mute = {"reason": reason, "until": until, "by": caller.display_name}
        await self._bus(self.bus.put(mute_key(account_id), mute, ttl=seconds))
        self.log.info(
            "chat: {moderator} muted {name} for {seconds} s: {reason}",
            moderator=caller.name,
            name=shown,
            seconds=seconds,
            reason=reason,
        )
        await self.deliver(
            self._sessions_of(account_id),
            "chat.muted",
            reason=reason,
            until=until,
            seconds=seconds,
        )
        return {"name": shown, "until": until, "seconds": seconds}

    async def on_chat_unmute(self, caller: Caller, message: dict) -> dict:
        """C{{name}}: (moderators) end a player's mute."""
        self._require_moderator(caller)
        account_id, shown = await self._resolve(self._name(message))
        key = mute_key(account_id)
        was = await self._bus(self.bus.get(key))
        await self._bus(self.bus.clear(key))
        if was is not None:
            self.log.info("chat: {moderator} unmuted {name}", moderator=caller.name, name=shown)
            await self.deliver(self._sessions_of(account_id), "chat.unmuted")
        return {"name": shown, "was_muted": was is not None}

    # -- messages: ignore lists ---------------------------------------------------------------

    async def on_chat_ignore(self, caller: Caller, message: dict) -> dict:
        """C{{name}}: deliver nothing more from that player to this account."""
        account_id, shown = await self._resolve(self._name(message))
        if account_id == caller.account_id:
            raise WireError(codes.BAD_REQUEST, "you cannot ignore yourself")
        ignored = await self._own_ignore_list(caller)
        if account_id not in ignored and len(ignored) >= self.ignore_max:
            raise WireError(
                codes.NOT_ALLOWED, f"you ignore {self.ignore_max} players already, the most"
            )
        ignored[account_id] = shown
        await self._save_ignores(caller.account_id, ignored)
        return {"ignored": sorted(ignored.values(), key=name_key)}

    async def on_chat_unignore(self, caller: Caller, message: dict) -> dict:
        """C{{name}}: deliver that player's messages again."""
        name = self._name(message)
        ignored = await self._own_ignore_list(caller)
        # By the name it was ignored under, which may no longer be anyone's.
        found = [a for a, shown in ignored.items() if name_key(shown) == name_key(name)]
        if not found:
            online = self._find(name)
            if online is not None and online.account_id in ignored:
                found = [online.account_id]
        if not found:
            raise WireError(codes.NOT_FOUND, f"you are not ignoring {name}")
        for account_id in found:
            del ignored[account_id]
        await self._save_ignores(caller.account_id, ignored)
        return {"ignored": sorted(ignored.values(), key=name_key)}

    async def on_chat_ignored(self, caller: Caller, message: dict) -> dict:
        """The names the caller's account ignores."""
        ignored = await self._own_ignore_list(caller)
        return {"ignored": sorted(ignored.values(), key=name_key)}
