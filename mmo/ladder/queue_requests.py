"""
L{QueueRequests}: the ranked queue's client messages (C{ladder.queue.join},
C{ladder.queue.leave}, C{ladder.queue.status}) and what takes a player out
of the queue without his asking: his session ending, his party's room
changing (L{mmo.ladder.parties}).  Only the process serving the queue
answers them (L{mmo.ladder.service}); the others relay them to it.
"""

from __future__ import annotations

from twisted.internet import defer

from mmo.game.messages import RoomEvent
from mmo.game.service import Caller
from mmo.ladder import checks
from mmo.ladder.parties import Parties
from mmo.ladder.queue import Matchmaker, QueueError
from mmo.wire.codes import BAD_REQUEST, NOT_ALLOWED, NOT_FOUND, WireError

#: Why a queue refused a join, as the client's error code.
QUEUE_CODES = {"no_mode": NOT_FOUND, "queued": NOT_ALLOWED, "in_match": NOT_ALLOWED}


class QueueRequests:
    """
    The queue's messages and session events, for the L{LadderService
    <mmo.ladder.service.LadderService>}: its C{queue}, C{callers} (the
    session of each queued or matched player), C{parties} and pushes.
    """

    queue: Matchmaker
    callers: dict[str, Caller]
    parties: Parties

    # -- sessions and rooms -------------------------------------------------------------

    async def session_event(self, caller: Caller, event: str) -> None:
        """
        A queued player whose session ended leaves the queue (with his
        party); a matched one is not queued again if his match is cancelled.
        """
        mine = self.callers.get(caller.account_id) if self.serving else None
        if event == "ended":
            self.parties.leave(caller.session)
            if mine is not None and mine.session == caller.session:
                if self.queue.match_of(caller.account_id) is not None:
                    self._gone.add(caller.account_id)
                    self._changed = True
                await self._leave(caller.account_id, "session_ended")
        elif mine is not None and mine.session == caller.session:
            self.callers[caller.account_id] = caller
            self._changed = True

    def _room_event(self, sender: str, event: RoomEvent) -> defer.Deferred | None:
        room = self.parties.heard(event)
        account = self._queued_rooms.pop(room, None) if room is not None else None
        found = self.queue.entry_of(account) if account is not None else None
        if found is None or found[2].id != account:
            return None
        # The room's members changed: it is not the party that queued.
        return defer.ensureDeferred(self._leave(account, "party_changed"))

    async def _leave(self, account: str, why: str, told: str | None = None) -> dict | None:
        """Take the account's entry out of the queue and tell its players (but C{told})."""
        found = self.queue.entry_of(account)
        if found is None:
            return None
        ladder, mode, entry = found
        self.queue.leave(account)
        self._changed = True
        await self._push(
            [p for p in entry.players if p != told],
            "ladder.queue.left",
            why=why,
            ladder=ladder,
            mode=mode,
        )
        self._forget(entry.players)
        return {"ladder": ladder, "mode": mode}

    # -- client messages ------------------------------------------------------------------

    async def on_ladder_queue_join(self, caller: Caller, message: dict) -> dict:
        name, ladder = self._ladder(message)
        mode = checks.string(message, "mode")
        party = checks.boolean(message, "party")
        if party:
            room = self.parties.room_of(caller.session)
            if room is None:
                raise WireError(NOT_ALLOWED, "you are in no room to queue as a party")
            members = list({c.account_id: c for c in self.parties.members(room)}.values())
        else:
            members = [caller]
        ratings = [await ladder.rating(c.account_id) for c in members]
        try:
            entry = self.queue.join(
                name,
                mode,
                [c.account_id for c in members],
                [r.rating for r in ratings],
                self.reactor.seconds(),
            )
        except QueueError as e:
            raise WireError(QUEUE_CODES.get(e.code, BAD_REQUEST), str(e)) from None
        for member in members:
            self.callers[member.account_id] = member
        if party:
            self._queued_rooms[room] = entry.id
        self._changed = True
        others = [c.account_id for c in members if c.session != caller.session]
        await self._push(others, "ladder.queue.joined", ladder=name, mode=mode, by=caller.name)
        return self._status(caller.account_id, (name, mode, entry))

    async def on_ladder_queue_leave(self, caller: Caller, message: dict) -> dict:
        left = await self._leave(caller.account_id, "party_left", told=caller.account_id)
        if left is None:
            raise WireError(NOT_ALLOWED, "you are not queued")
        return {"left": left}

    async def on_ladder_queue_status(self, caller: Caller, message: dict) -> dict:
        return self._status(caller.account_id, self.queue.entry_of(caller.account_id))

    def _status(self, account: str, found) -> dict:
        match = self.queue.match_of(account)
        if match is not None:
            return {"queued": False, "match": match.id, "ladder": match.ladder, "mode": match.mode}
        if found is None:
            return {"queued": False}
        ladder, mode, entry = found
        waited = max(self.reactor.seconds() - entry.joined, 0.0)
        return {
            "queued": True,
            "ladder": ladder,
            "mode": mode,
            "players": len(entry.players),
            "rating": entry.rating,
            "waited": waited,
            "gap": self.queue.rules[ladder].accepted_gap(waited),
        }
