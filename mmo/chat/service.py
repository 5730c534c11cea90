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
in order, L{mmo.chat.membership}); the zone channels follow the session's zone
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
from mmo.chat.channel_requests import ChannelRequests
from mmo.chat.channels import Channel, Channels, public
from mmo.chat.flood import FloodLimit
from mmo.chat.ignores import IgnoreLists
from mmo.chat.logs import StoreLogs
from mmo.chat.membership import Membership
from mmo.chat.moderation import Moderation
from mmo.chat.moderation_requests import ModerationRequests
from mmo.chat.player_requests import PlayerRequests
from mmo.game import messages
from mmo.game.messages import ROOMS_CHANNEL, RoomEvent
from mmo.game.presence import Presence
from mmo.game.service import Caller, GameService
from mmo.wire import codes
from mmo.wire.codes import WireError


class ChatService(Membership, ChannelRequests, PlayerRequests, ModerationRequests, GameService):
    """
    The C{chat.*} messages.  See C{docs/chat.md} for each message, its reply
    and its errors.

    Its requests and events are handled by one part per concern, each in
    its own module: the channels a session is in without asking
    (L{Membership<mmo.chat.membership.Membership>}), the channels' requests
    (L{ChannelRequests<mmo.chat.channel_requests.ChannelRequests>}),
    whispers and ignore lists
    (L{PlayerRequests<mmo.chat.player_requests.PlayerRequests>}) and mutes
    (L{ModerationRequests<mmo.chat.moderation_requests.ModerationRequests>}).
    They work with the objects below, which hold the state.

    Game teams may subclass it and change the class attributes below, or add
    handlers (C{on_chat_<name>}); a handler may use the objects below.

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

    # -- what the parts share ------------------------------------------------------

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

    def _name(self, message: dict, field: str = "name") -> str:
        return checks.player_name(message, self.name_max, field)
