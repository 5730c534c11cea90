"""
The chat service: channels, whispers, history, moderation, ignore lists and
flood limits, for every gateway of the deployment.

Gateways route each C{chat.*} message of an admitted player here (in the
same process, or over AMP from a cluster's gateways) and tell every service
of session events; the service keeps, from those events, who is online under
which display name and which channels each session is in, and sends pushes
with L{GameService.deliver}: one bus message per gateway, however many of
its players a message goes to.

L{ChatService} handles the messages and holds one part per concern, each
changing only its own state:

  - L{Presence<mmo.game.presence.Presence>}: who is online, under which name;
  - L{Channels<mmo.chat.channels.Channels>}: the channels, their members and
    their history;
  - L{IgnoreLists<mmo.chat.ignores.IgnoreLists>}: each account's ignore list;
  - L{Moderation<mmo.chat.moderation.Moderation>}: moderators and mutes;
  - L{FloodLimit<mmo.chat.flood.FloodLimit>}: each account's token bucket;
  - L{StoreLogs<mmo.chat.logs.StoreLogs>}: the store logs behind history and
    ignore lists.

The room channels follow the lobby's C{lobby.rooms} bus events (handled
here, in order); the zone channels follow the session's zone
(L{Caller.zone<mmo.game.service.Caller>}), which every session event and
request carries, so that a player is in the channel of the zone that holds
its character, across handoffs, with nothing to do.  State is in this
process's memory, except what must outlive it: histories and ignore lists
are store logs, mutes are bus keys that expire by themselves.  One chat
process serves a deployment.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.logger import Logger

from mmo.chat import checks
from mmo.chat.channels import (
    ZONE,
    Channel,
    Channels,
    is_zone_channel,
    public,
    room_channel,
    shown_id,
    world_channel,
    zone_channel,
)
from mmo.chat.flood import FloodLimit
from mmo.chat.ignores import IgnoreLists
from mmo.chat.logs import StoreLogs
from mmo.chat.moderation import Moderation
from mmo.game import messages
from mmo.game.messages import ROOMS_CHANNEL, RoomEvent
from mmo.game.presence import Presence
from mmo.game.service import Caller, GameService
from mmo.metrics.kinds import children
from mmo.metrics.registry import CHAT_MESSAGES
from mmo.unavailable import log_failure
from mmo.wire import codes
from mmo.wire.codes import WireError

#: Session events that (re)state a live session.
LIVE_EVENTS = ("started", "changed", "moved")

#: Who a mute given through the control channel is by, as the muted player is told.
OPERATOR = "an operator"


#: Chat messages said, by kind: to a C{channel}, or a C{whisper}.
SAID = children(CHAT_MESSAGES, "channel", "whisper")


class ChatService(GameService):
    """
    The C{chat.*} messages.  See C{docs/chat.md} for each message, its reply
    and its errors.

    Game teams may subclass it and change the class attributes below, or add
    handlers (C{on_chat_<name>}); a handler may use the parts below.

    @cvar ignore_max: Most players one account may ignore.
    @cvar mute_default: Seconds of a mute when the moderator gives none.
    @cvar mute_max: Longest mute, seconds.
    @cvar reason_max: Longest mute reason, characters.
    @cvar name_max: Longest player name accepted in a request.
    @cvar party_name_max: Longest party channel name (after C{party:}).

    @ivar settings: The C{[chat]} section.
    @ivar presence: The sessions online (L{Presence<mmo.game.presence.Presence>}).
    @ivar channels: The channels (L{Channels<mmo.chat.channels.Channels>}).
    @ivar ignores: The ignore lists (L{IgnoreLists<mmo.chat.ignores.IgnoreLists>}).
    @ivar moderation: Moderators and mutes (L{Moderation<mmo.chat.moderation.Moderation>}).
    @ivar flood: The accounts' buckets (L{FloodLimit<mmo.chat.flood.FloodLimit>}).
    @ivar logs: The store logs (L{StoreLogs<mmo.chat.logs.StoreLogs>}).
    """

    kind = "chat"
    prefixes = ("chat.",)
    finds_sessions = True
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
        self.logs = StoreLogs(store)
        self.presence = Presence(offline=self._account_offline)
        self.channels = Channels(self.logs, self.settings.history)
        self.ignores = IgnoreLists(self.logs, self.presence)
        self.moderation = Moderation(bus, reactor, self.settings.moderators)
        self.flood = FloodLimit(self.settings.rate, self.settings.burst, reactor)
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
            await self.channels.settled()
            await self.logs.settled()

        return defer.ensureDeferred(wait())

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

    async def _join(self, caller: Caller, channel_id: str, push: bool = False) -> list[dict]:
        """
        Put C{caller} in the channel; its history as C{caller} is to see it
        (what was sent before the join).  With C{push}, the history is also
        pushed to it as C{chat.joined} if it was not a member already.
        """
        channel, new = self.channels.add(caller, channel_id)
        return await self._joined(caller, channel, new, channel.count, push)

    async def _joined(
        self, caller: Caller, channel: Channel, new: bool, upto: int, push: bool
    ) -> list[dict]:
        """
        The history of a channel C{caller} was put in when it had C{upto}
        messages (what came after reached him live); with C{push}, also
        pushed to him as C{chat.joined} if he was not a member already.
        """
        history = await self._history(caller, channel, upto)
        if push and new:
            member = self.channels.member(channel.id, caller.session)
            if member is not None:
                await self.deliver([member], "chat.joined", channel=channel.shown, history=history)
        return history

    async def _history(self, caller: Caller, channel: Channel, upto: int | None = None):
        """The channel's recent messages (numbered up to C{upto}), less what C{caller} ignores."""
        records = await channel.history(upto)
        ignored = self.ignores.of(caller.account_id)
        return [public(record) for record in records if record.get("account") not in ignored]

    async def _resolve(self, name: str) -> tuple[str, str]:
        """
        The account id and shown name of the player called C{name}: an online
        player's display name, else an account name.
        """
        online = self.presence.find(name)
        if online is not None:
            return online.account_id, online.display_name
        account = await self.store.account_by_name(name)
        if account is None:
            raise WireError(
                codes.NOT_FOUND,
                f"no player called {name!r} is online and no account has that name",
            )
        return account.id, account.name

    def _channel_id(self, caller: Caller, message: dict) -> str:
        return checks.channel_id(message, caller.realm, self.party_name_max, caller.zone)

    def _name(self, message: dict, field: str = "name") -> str:
        return checks.player_name(message, self.name_max, field)

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

    # -- messages: channels ----------------------------------------------------------------

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

    # -- messages: players ----------------------------------------------------------------

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

    # -- messages: moderation ---------------------------------------------------------------

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

    # -- messages: ignore lists ---------------------------------------------------------------

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
