"""
The ladder service: the ranked queue, the matches it forms, the results game
code reports and the board, for clients (C{ladder.*}).

One ladder process serves every C{[ladders.NAME]} of the deployment (kind
C{"ladder"}, or the standalone server).  A player queues (alone, or with his
lobby room as a party, L{mmo.ladder.parties}); every L{PASS_INTERVAL}
seconds a pass of the L{Matchmaker} forms matches, and for each the lobby
is asked to open a room and move the players into it
(L{mmo.game.messages.MatchRoom}), which pushes them C{ladder.matched}.
The queue's messages are L{mmo.ladder.queue_requests}.  The match's result
comes from game code only (L{mmo.ladder.report}), on the bus; the ladder
applies it once by match id (L{mmo.ladder.results}, L{mmo.ladder.ladder}),
pushes each player C{ladder.result} and frees them.  A client that sends a
result is refused.

One ladder process of a deployment serves the queue: the holder of its
bus lease (L{mmo.game.lease}).  The others stand by (their directory
entry says C{standby}): they answer the board's requests, relay the
queue's to the holder (L{mmo.game.relay}), and take over when the lease
expires or is released.  The queues and open matches, with each player's session, are
kept on the bus (L{mmo.game.messages.LADDER_STATE_KEY}), stamped with the
holder's fencing token, written after each pass that changed them and
when the holder stops, read when a process takes the lease: it goes on
where the last holder was.

A match's room is asked of the lobby until it answers
(L{mmo.ladder.rooms}); a match whose room never opens is cancelled and its
players queued again, keeping their waiting time.

The contract with clients is C{docs/protocol.md} and C{docs/ladder.md}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import task
from twisted.python.failure import Failure

from mmo.game import messages
from mmo.game.lease import Lease
from mmo.game.messages import (
    LADDER_STATE_KEY,
    MATCH_ROOMS_CHANNEL,
    RESULTS_CHANNEL,
    ROOMS_CHANNEL,
    MatchResult,
    MatchRoomFailed,
    MatchRoomOpened,
    RoomEvent,
)
from mmo.game.relay import Relay
from mmo.game.service import Caller, GameService
from mmo.ladder.board import BoardRequests, make_ladders
from mmo.ladder.parties import Parties
from mmo.ladder.queue import Match, Matchmaker, QueueRules
from mmo.ladder.queue_requests import QueueRequests
from mmo.ladder.records import LadderError
from mmo.ladder.results import ResultRequests
from mmo.ladder.rooms import MatchRoomRequests, RoomHandshake
from mmo.unavailable import log_failure
from mmo.wire.codes import BAD_REQUEST, NOT_ALLOWED, UNAVAILABLE, WireError

#: Seconds between two passes of the matchmaker.
PASS_INTERVAL = 0.5

#: Seconds the queue's state stays on the bus unwritten (a ladder down that
#: long starts with empty queues).
STATE_TTL = 24 * 3600

#: What the last part of a message type that would carry a result is: a
#: client sending one is told results come from the server.
RESULT_WORDS = frozenset({"report", "result", "results", "score", "win", "lose", "outcome"})

#: The bus lease of the ranked queue.
QUEUE_LEASE_KEY = "ladder.queue"

#: The queue's lease ttl of a config without ladders.
LEASE_TTL = 10.0

#: The message types only the holder of the queue answers.
QUEUE_PREFIX = "ladder.queue."


def lease_ttl(config) -> float:
    """The queue's lease ttl: the shortest C{queue_lease} of the ladders."""
    return min((s.queue_lease for s in config.ladders.values()), default=LEASE_TTL)


class LadderService(BoardRequests, QueueRequests, MatchRoomRequests, ResultRequests, GameService):
    """
    Ranked queues, matches and the board.

    The service is made of one part per concern, each in its own module:
    the board's messages and the seasons' jobs (L{BoardRequests}), the
    queue's messages and session events (L{QueueRequests}), the matches'
    rooms (L{MatchRoomRequests}) and the matches' results
    (L{ResultRequests}).  This class holds the state they share, serves
    the queue while it holds the lease, runs the passes and routes each
    message here or to the holder.

    @ivar ladders: Ladder name -> its L{Ladder}.
    @ivar queue: The L{Matchmaker} of every ladder's queues.
    @ivar callers: Account id -> the session of a queued or matched player.
    @ivar parties: The lobby's rooms, for parties.
    @ivar lease: The queue's lease (L{Lease}).
    @ivar rooms: The matches whose room the lobby has not confirmed.
    """

    kind = "ladder"
    prefixes = ("ladder.",)
    #: The queue and its matches keep a session's gateway, not its zone.
    hears_zone_changes = False

    def __init__(
        self,
        config,
        store,
        bus,
        reactor,
        ladders: dict | None = None,
        holder: str | None = None,
    ):
        super().__init__(config, store, bus, reactor)
        self.ladders = make_ladders(config, store, reactor) if ladders is None else ladders
        self.parties = Parties()
        self.lease = Lease(
            bus,
            QUEUE_LEASE_KEY,
            "ladder",
            lease_ttl(config),
            reactor,
            self._take,
            self._stand_by,
            holder=holder,
        )
        self.relay = Relay(
            bus, reactor, self.kind, self.lease.holder, busy="the ranked queue is being taken over"
        )
        self._reset()
        self._subscriptions: list = []
        self._stopping = False
        self._loop = task.LoopingCall(self.run_pass)
        self._loop.clock = reactor

    def _reset(self) -> None:
        """Empty queues (a process standing by holds none)."""
        self.queue = Matchmaker(
            {name: QueueRules.from_config(s) for name, s in self.config.ladders.items()}
        )
        self.callers: dict[str, Caller] = {}
        self.rooms = RoomHandshake(self.bus)
        self._queued_rooms: dict[str, str] = {}
        #: Players of open matches whose session ended (not queued again).
        self._gone: set[str] = set()
        self._changed = False
        self._serving = False

    @property
    def serving(self) -> bool:
        """
        Whether this process serves the queue: it holds the lease, with time
        left to write under it (L{Lease.writable}), and loaded the state.
        """
        return self._serving and self.lease.writable()

    # -- life cycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Listen, and contend for the queue (serving it if the lease is free)."""
        rooms = messages.Dispatcher("ladder rooms")
        rooms.on(RoomEvent, self._room_event)
        results = messages.Dispatcher("ladder results")
        results.on(MatchResult, self._result)
        answers = messages.Dispatcher("ladder match rooms")
        answers.on(MatchRoomOpened, self._room_opened)
        answers.on(MatchRoomFailed, self._room_failed)
        self._subscriptions = [
            await self.bus.subscribe(ROOMS_CHANNEL, rooms),
            await self.bus.subscribe(RESULTS_CHANNEL, results),
            await self.bus.subscribe(MATCH_ROOMS_CHANNEL, answers),
        ]
        if self.ladders:
            await self.relay.start(lambda: self.serving, self._handle_here)
            await self.lease.start()

    async def stop(self) -> None:
        """Stop passing; the holder saves the state, then releases the lease."""
        self._stopping = True
        if self._loop.running:
            self._loop.stop()
        await self.lease.stop(self._last_save)
        await self.relay.stop()
        subscriptions, self._subscriptions = self._subscriptions, []
        for subscription in subscriptions:
            await subscription.cancel()

    async def _last_save(self) -> None:
        if self._serving and not await self.save():
            self.log.warn("ladder: the queue state was not saved at stop")

    async def _take(self, token: int) -> None:
        """The lease is ours: load the state the last holder saved, and pass."""
        state = await self.bus.get(LADDER_STATE_KEY)
        self._reset()
        if isinstance(state, dict):
            self.restore(state)
        self._serving = True
        if not self._loop.running:
            self._loop.start(PASS_INTERVAL, now=False)

    def _stand_by(self) -> None:
        """The lease is not ours (any more): no pass, no write, no queue."""
        if self._loop.running:
            self._loop.stop()
        if self._serving and self._stopping:
            self.log.info("ladder: the queue is saved and released to the next process")
        elif self._serving:
            self.log.info("ladder: standing by; another process serves the queue")
        self._reset()

    def restore(self, state: dict) -> None:
        """Take the queues, matches and sessions of a L{snapshot}."""
        try:
            self.queue.restore(state.get("queue", {}))
            for account, caller in state.get("callers", {}).items():
                self.callers[account] = Caller.from_dict(caller)
            self.rooms.restore(state.get("rooms", {}), self.reactor.seconds())
            self._gone.update(p for p in state.get("gone", ()) if isinstance(p, str))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            self.log.warn("ladder: the saved queue state is unreadable ({why}): ignored", why=e)
        self.log.info(
            "ladder: {queued} queued and {matches} matches taken over (saved under token {saved})",
            queued=self.queue.queued(),
            matches=len(self.queue.matches),
            saved=state.get("token"),
        )

    def snapshot(self) -> dict[str, Any]:
        return {
            "token": self.lease.token,
            "queue": self.queue.snapshot(),
            "callers": {account: c.to_dict() for account, c in self.callers.items()},
            "rooms": self.rooms.snapshot(),
            "gone": sorted(self._gone),
        }

    async def save(self) -> bool:
        """
        Write the state to the bus, stamped with the lease's token (again
        at the next pass if that fails).  Nothing is written, and C{False}
        returned, unless the lease is surely still ours
        (L{Lease.writable}): a newer holder's state is never
        overwritten by what this process knew.
        """
        if not self.serving:
            return False
        self._changed = False
        try:
            await self.bus.put(LADDER_STATE_KEY, self.snapshot(), ttl=STATE_TTL)
        except BaseException:
            self._changed = True
            raise
        return True

    def held_sessions(self):
        return list(self.callers.values())

    def directory_info(self) -> dict:
        info = {"load": self.queue.queued(), "matches": len(self.queue.matches)}
        if self.ladders and not self.serving:
            info["standby"] = True
        return info

    # -- the pass ---------------------------------------------------------------------

    async def run_pass(self) -> None:
        """
        Free the matches past their timeout, form new ones, ask the lobby
        for their rooms, and save the state if it changed.  A failure is
        logged: the next pass goes on.
        """
        if not self.serving:
            return  # the lease is being lost: the renewal stands this process by
        now = self.reactor.seconds()
        try:
            for match in self.queue.expire(now):
                self._changed = True
                self.log.info("ladder: match {id} timed out", id=match.id)
                await self._push(match.players, "ladder.match.ended", match, why="timeout")
                self._forget(match.players)
            again, given_up = self.rooms.due(now, self.queue.matches, self.queue.rules_of)
            for match in again:
                self.log.info("ladder: asking again for the room of match {id}", id=match.id)
                await self._ask_room(match)
            for match in self.queue.match(now):
                self._changed = True
                self.log.info(
                    "ladder: match {id} of {ladder} {mode}: {teams}",
                    id=match.id,
                    ladder=match.ladder,
                    mode=match.mode,
                    teams=match.teams,
                )
                await self._ask_room(match)
            # After matching: who is queued again waits for the next pass.
            for match in given_up:
                await self._cancel(match.id, "the lobby did not answer")
            if self._changed:
                await self.save()
        except Exception:
            log_failure(Failure(), self.log, "ladder: a matchmaking pass failed")

    def _forget(self, players) -> None:
        for player in players:
            if self.queue.entry_of(player) is None and self.queue.match_of(player) is None:
                self.callers.pop(player, None)
                self._gone.discard(player)

    async def _push(self, players, kind: str, match: Match | None = None, **fields) -> None:
        if match is not None:
            fields = {"ladder": match.ladder, "mode": match.mode, "match": match.id, **fields}
        targets = [self.callers[p] for p in players if p in self.callers]
        try:
            await self.deliver(targets, kind, **fields)
        except Exception:
            log_failure(Failure(), self.log, "ladder: a push was not sent")

    # -- client messages: here, or relayed to the holder -----------------------------------

    async def handle(self, caller: Caller, kind: str, message: dict) -> dict | None:
        """
        Answer a client's message; the queue's, on a process standing by,
        are relayed to the one serving it (L{mmo.game.relay}).
        """
        if kind.startswith(QUEUE_PREFIX) and self.ladders and not self.serving:
            return await self.relay.call(caller, kind, message)
        return await self._handle_here(caller, kind, message)

    async def _handle_here(self, caller: Caller, kind: str, message: dict) -> dict | None:
        if kind.rsplit(".", 1)[-1] in RESULT_WORDS:
            raise WireError(NOT_ALLOWED, "results come from the game server, never from a client")
        if kind.startswith(QUEUE_PREFIX) and self.ladders and not self.serving:
            raise WireError(UNAVAILABLE, "the ranked queue is being taken over; retry")
        try:
            return await super().handle(caller, kind, message)
        except LadderError as e:
            raise WireError(BAD_REQUEST, str(e)) from None
