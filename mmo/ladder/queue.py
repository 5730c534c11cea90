"""
Ranked matchmaking: the queues of a ladder's modes and the matches they
form, as a domain object (no bytes, no bus; the time is given).

An I{entry} of a queue is one player or a party (the members of a lobby
room, queued together and placed in the same team).  Its rating is the
displayed rating of its player, or the mean of its members' (a party is as
strong as its average member: the mean keeps the match's total even, which
is what team balancing compares, where the best member's rating would let
a strong player carry weak friends against a whole team of his level).

A pass (L{Matchmaker.match}) goes over each queue's entries, longest
waiting first.  An entry accepts others whose rating is within its gap:
C{queue_gap + queue_gap_growth * waited}, at most C{queue_gap_max}.  The
longest waiter takes the entries that joined after it and are within its
gap, nearest rating first, as long as the parties can still fill the
mode's teams exactly; the teams are then balanced (L{mmo.ladder.teams}).  So every
match is within the gap of its longest waiter, a pass leaves no two solo
players that either one accepts, and with a finite C{queue_gap_max}
nobody waits past the time the gap takes to reach it while someone close
enough is queued.  Given the same entries and time, a pass forms the same
matches.

A player is in one entry or one open match at most.  An open match holds
its players until it is finished (its result applied) or its
C{match_timeout} passes; then it is kept, without its players, for
another C{match_timeout}, so that a result reported again (a retry after a
lost answer or a restart) is still recognised.

L{Matchmaker.snapshot} and L{Matchmaker.restore} carry the whole state as
plain values, for the bus.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mmo.ladder.teams import balance, packs
from mmo.store import new_id


class QueueError(Exception):
    """
    A join or leave the queue refuses.

    @ivar code: What kind of refusal: C{"no_mode"}, C{"queued"} (a player is
        queued already), C{"in_match"}, C{"party_size"}.
    """

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class QueueRules:
    """
    How a ladder's queues match.

    @ivar modes: Mode name -> the sizes of its teams (C{(1, 1)}: a duel).
    @ivar gap: Rating gap accepted at once.
    @ivar growth: How much the gap widens per second waited.
    @ivar gap_max: The widest gap.
    @ivar match_timeout: Seconds a match holds its players without a result.
    @ivar room_timeout: Seconds the ladder waits for the lobby to say it
        opened a match's room before it asks again.
    """

    modes: dict
    gap: float
    growth: float
    gap_max: float
    match_timeout: float
    room_timeout: float = 5.0

    @classmethod
    def from_config(cls, section) -> QueueRules:
        """The rules of a C{[ladders.NAME]} section."""
        return cls(
            {mode: tuple(sizes) for mode, sizes in dict(section.modes).items()},
            float(section.queue_gap),
            float(section.queue_gap_growth),
            float(section.queue_gap_max),
            float(section.match_timeout),
            float(section.room_timeout),
        )

    def accepted_gap(self, waited: float) -> float:
        """The gap an entry that waited C{waited} seconds accepts."""
        return min(self.gap + self.growth * max(waited, 0.0), self.gap_max)


@dataclass(frozen=True)
class Entry:
    """
    A player or a party in a queue.

    @ivar id: The entry's id (its first player's for a solo player).
    @ivar players: The players' ids (account ids).
    @ivar rating: The displayed rating it is matched by.
    @ivar joined: When it joined.
    """

    id: str
    players: tuple
    rating: float
    joined: float

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "players": list(self.players),
            "rating": self.rating,
            "joined": self.joined,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Entry:
        return cls(data["id"], tuple(data["players"]), float(data["rating"]), float(data["joined"]))


@dataclass(frozen=True)
class Match:
    """
    A match formed by a queue.

    @ivar id: Its match id (results are applied once by it).
    @ivar teams: The players' ids, by team, in the mode's team order.
    @ivar formed: When.
    @ivar gap: The gap its longest waiter accepted.
    @ivar entries: The queue's entries it was formed of, as they were
        queued: what L{Matchmaker.cancel} puts back.
    """

    id: str
    ladder: str
    mode: str
    teams: tuple
    formed: float
    gap: float
    entries: tuple = ()

    @property
    def players(self) -> tuple:
        return tuple(itertools.chain.from_iterable(self.teams))

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "ladder": self.ladder,
            "mode": self.mode,
            "teams": [list(team) for team in self.teams],
            "formed": self.formed,
            "gap": self.gap,
            "entries": [e.to_dict() for e in self.entries],
        }

    @classmethod
    def from_dict(cls, data: dict) -> Match:
        return cls(
            data["id"],
            data["ladder"],
            data["mode"],
            tuple(tuple(team) for team in data["teams"]),
            float(data["formed"]),
            float(data["gap"]),
            tuple(Entry.from_dict(e) for e in data.get("entries", ())),
        )


class _ByRating:
    """
    A queue's entries by rating, for one pass: each rating's entries in the
    order they joined, the ratings linked to their neighbours so that an
    entry taken out costs nothing to step over.  L{nearest} is what a
    scan of every entry sorted by C{(distance, joined, id)} would give,
    in the time of the entries it gives.
    """

    def __init__(self, entries: list[Entry]):
        self.ratings = sorted({e.rating for e in entries})
        self._index = {rating: i for i, rating in enumerate(self.ratings)}
        self._groups: list[list[Entry]] = [[] for _ in self.ratings]
        for entry in entries:
            self._groups[self._index[entry.rating]].append(entry)
        self._ids = {e.id for e in entries}
        count = len(self.ratings)
        self._prev = list(range(-1, count - 1))
        self._next = list(range(1, count + 1))

    def __contains__(self, entry_id: str) -> bool:
        return entry_id in self._ids

    def drop(self, entry: Entry) -> None:
        """Take C{entry} out (when C{entry} is in)."""
        if entry.id not in self._ids:
            return
        self._ids.discard(entry.id)
        i = self._index[entry.rating]
        group = self._groups[i]
        group.remove(entry)
        if not group:
            before, after = self._prev[i], self._next[i]
            if before >= 0:
                self._next[before] = after
            if after < len(self.ratings):
                self._prev[after] = before
            # i keeps its links: a search from its rating starts there.

    def nearest(self, rating: float, gap: float):
        """
        The entries within C{gap} of C{rating} (which must be one of the
        ratings), nearest first, then by join time and id.  Nothing may be
        dropped while this runs.
        """
        i = self._index[rating]
        yield from self._groups[i]
        low, high = self._prev[i], self._next[i]
        count = len(self.ratings)
        while True:
            below = rating - self.ratings[low] if low >= 0 else math.inf
            above = self.ratings[high] - rating if high < count else math.inf
            if min(below, above) > gap:
                return
            if below == above:
                yield from heapq.merge(
                    self._groups[low], self._groups[high], key=lambda e: (e.joined, e.id)
                )
                low, high = self._prev[low], self._next[high]
            elif below < above:
                yield from self._groups[low]
                low = self._prev[low]
            else:
                yield from self._groups[high]
                high = self._next[high]


class Matchmaker:
    """
    The queues of every ladder and mode, and the open matches.

    @ivar rules: Ladder name -> its L{QueueRules}.
    @ivar queues: C{(ladder, mode)} -> its entries, by entry id, in the
        order they joined.
    @ivar matches: Open matches by id.
    @ivar finished: Matches done with (reported or timed out), by id, and
        until when they are remembered.
    """

    def __init__(self, rules: dict[str, QueueRules], new_match_id: Callable[[], str] = new_id):
        self.rules = rules
        self.new_match_id = new_match_id
        self.queues: dict[tuple[str, str], dict[str, Entry]] = {}
        self.matches: dict[str, Match] = {}
        self.finished: dict[str, tuple[Match, float]] = {}
        self._queued: dict[str, tuple[str, str, str]] = {}
        self._playing: dict[str, str] = {}

    # -- who is where -------------------------------------------------------------

    def entry_of(self, player: str) -> tuple[str, str, Entry] | None:
        """C{(ladder, mode, entry)} of the queued player, or C{None}."""
        where = self._queued.get(player)
        if where is None:
            return None
        ladder, mode, entry_id = where
        return ladder, mode, self.queues[ladder, mode][entry_id]

    def match_of(self, player: str) -> Match | None:
        """The open match the player is in, or C{None}."""
        match_id = self._playing.get(player)
        return None if match_id is None else self.matches[match_id]

    def queued(self) -> int:
        """How many players are queued."""
        return len(self._queued)

    # -- joining and leaving ---------------------------------------------------------

    def join(
        self, ladder: str, mode: str, players: Iterable[str], ratings: Iterable[float], now: float
    ) -> Entry:
        """
        Queue a player, or a party (several players), with their displayed
        ratings.

        @raise QueueError: No such mode; a player is queued or in a match
            already; the party fits in no team.
        """
        players = tuple(players)
        ratings = [float(r) for r in ratings]
        teams = self._teams(ladder, mode)
        if not players or len(set(players)) != len(players) or len(ratings) != len(players):
            raise ValueError("an entry has distinct players, each with a rating")
        if len(players) > max(teams):
            raise QueueError("party_size", f"a party of {len(players)} fits in no team of {mode!r}")
        for player in players:
            if player in self._queued:
                raise QueueError("queued", f"{player} is queued already")
            if player in self._playing:
                raise QueueError("in_match", f"{player} is in a match")
        entry = Entry(players[0], players, sum(ratings) / len(ratings), now)
        self.queues.setdefault((ladder, mode), {})[entry.id] = entry
        for player in players:
            self._queued[player] = (ladder, mode, entry.id)
        return entry

    def leave(self, player: str) -> Entry | None:
        """Take the player's entry (a party: all its players) out of its queue."""
        found = self.entry_of(player)
        if found is None:
            return None
        ladder, mode, entry = found
        self._remove(ladder, mode, entry)
        return entry

    def _remove(self, ladder: str, mode: str, entry: Entry) -> None:
        queue = self.queues[ladder, mode]
        del queue[entry.id]
        if not queue:
            del self.queues[ladder, mode]
        for player in entry.players:
            del self._queued[player]

    def _teams(self, ladder: str, mode: str) -> tuple:
        rules = self.rules.get(ladder)
        if rules is None or mode not in rules.modes:
            raise QueueError("no_mode", f"ladder {ladder!r} has no mode {mode!r}")
        return rules.modes[mode]

    # -- matching ----------------------------------------------------------------------

    def match(self, now: float) -> list[Match]:
        """One pass over every queue: the matches formed, their players taken out."""
        formed = []
        for ladder, mode in sorted(self.queues):
            rules = self.rules.get(ladder)
            if rules is None or mode not in rules.modes:
                continue
            formed.extend(self._match_queue(ladder, mode, rules, now))
        for match in formed:
            self.matches[match.id] = match
            for player in match.players:
                self._playing[player] = match.id
        return formed

    def _match_queue(self, ladder: str, mode: str, rules: QueueRules, now: float) -> list[Match]:
        teams = rules.modes[mode]
        needed = sum(teams)
        waiting = sorted(self.queues[ladder, mode].values(), key=lambda e: (e.joined, e.id))
        # Only who joined after the anchor may join its match: each anchor
        # leaves the ratings as it is done with, matched or not.
        ratings = _ByRating(waiting)
        formed = []
        for anchor in waiting:
            if anchor.id not in ratings:
                continue  # taken by an earlier anchor
            ratings.drop(anchor)
            gap = rules.accepted_gap(now - anchor.joined)
            chosen = [anchor]
            count = len(anchor.players)
            for entry in ratings.nearest(anchor.rating, gap):
                if count == needed:
                    break
                size = len(entry.players)
                if count + size > needed:
                    continue
                if packs([len(e.players) for e in chosen] + [size], teams):
                    chosen.append(entry)
                    count += size
            if count != needed or not packs([len(e.players) for e in chosen], teams, exact=True):
                continue
            for entry in chosen:
                ratings.drop(entry)
                self._remove(ladder, mode, entry)
            formed.append(
                Match(
                    self.new_match_id(),
                    ladder,
                    mode,
                    balance(chosen, teams),
                    now,
                    gap,
                    tuple(chosen),
                )
            )
        return formed

    # -- open matches --------------------------------------------------------------------

    def finish(self, match_id: str, now: float) -> Match | None:
        """
        Free the players of open match C{match_id} (its result is in) and
        remember it for C{match_timeout}; C{None} if it is not open.
        """
        match = self._close(match_id)
        if match is not None:
            self.finished[match_id] = (match, now + self.rules_of(match).match_timeout)
        return match

    def _close(self, match_id: str) -> Match | None:
        """Take open match C{match_id} out, its players with it; C{None} if not open."""
        match = self.matches.pop(match_id, None)
        if match is not None:
            for player in match.players:
                if self._playing.get(player) == match_id:
                    del self._playing[player]
        return match

    def cancel(self, match_id: str, gone: Iterable[str] = ()) -> tuple[Match, list[Entry]] | None:
        """
        Undo open match C{match_id} (its room never opened): its entries go
        back to their queue as they were queued (a party whole, its waiting
        time kept), but those with a player of C{gone} (whose session
        ended), whose players are freed.  The match is forgotten: a result
        reported for it is refused.  C{None} if it is not open.

        @return: The match and the entries put back.
        """
        match = self._close(match_id)
        if match is None:
            return None
        gone = frozenset(gone)
        back = []
        rules = self.rules.get(match.ladder)
        if rules is None or match.mode not in rules.modes:
            return match, back  # a ladder or mode no longer configured
        for entry in match.entries:
            if gone.intersection(entry.players) or any(
                p in self._queued or p in self._playing for p in entry.players
            ):
                continue
            self.queues.setdefault((match.ladder, match.mode), {})[entry.id] = entry
            for player in entry.players:
                self._queued[player] = (match.ladder, match.mode, entry.id)
            back.append(entry)
        return match, back

    def known(self, match_id: str) -> Match | None:
        """The open or recently finished match C{match_id}, or C{None}."""
        match = self.matches.get(match_id)
        if match is None and match_id in self.finished:
            match = self.finished[match_id][0]
        return match

    def expire(self, now: float) -> list[Match]:
        """
        Finish the open matches past their C{match_timeout} (returned), and
        forget the finished ones past theirs.
        """
        for match_id, (_, until) in list(self.finished.items()):
            if until <= now:
                del self.finished[match_id]
        late = [
            m for m in self.matches.values() if m.formed + self.rules_of(m).match_timeout <= now
        ]
        for match in late:
            self.finish(match.id, now)
        return late

    def rules_of(self, match: Match) -> QueueRules:
        rules = self.rules.get(match.ladder)
        # A ladder taken out of the config: its matches end at once.
        return rules if rules is not None else QueueRules({}, 0.0, 0.0, 0.0, 0.0)

    # -- the state as plain values --------------------------------------------------------

    def snapshot(self) -> dict:
        """The whole state, as plain values (for the bus)."""
        return {
            "queues": [
                {"ladder": ladder, "mode": mode, "entries": [e.to_dict() for e in queue.values()]}
                for (ladder, mode), queue in self.queues.items()
            ],
            "matches": [m.to_dict() for m in self.matches.values()],
            "finished": [
                {"match": m.to_dict(), "until": until} for m, until in self.finished.values()
            ],
        }

    def restore(self, state: dict) -> None:
        """
        Take the state of a L{snapshot} (this one's must be empty).  What
        would break an invariant (a player twice) is dropped, and so are the
        queues of ladders and modes the rules no longer have.
        """
        for match in (Match.from_dict(m) for m in state.get("matches", ())):
            if any(p in self._playing for p in match.players):
                continue
            self.matches[match.id] = match
            for player in match.players:
                self._playing[player] = match.id
        for item in state.get("finished", ()):
            match = Match.from_dict(item["match"])
            self.finished[match.id] = (match, float(item["until"]))
        for queue in state.get("queues", ()):
            rules = self.rules.get(queue["ladder"])
            if rules is None or queue["mode"] not in rules.modes:
                continue  # a ladder or mode no longer configured
            for entry in (Entry.from_dict(e) for e in queue["entries"]):
                if any(p in self._queued or p in self._playing for p in entry.players):
                    continue
                key = (queue["ladder"], queue["mode"])
                self.queues.setdefault(key, {})[entry.id] = entry
                for player in entry.players:
                    self._queued[player] = (*key, entry.id)
