"""
What L{mmo.ladder.Ladder} needs to apply results in batches: a result
waiting for its batch (L{Pending}), the rows a ladder wrote last
(L{WrittenRows}), and the rating of a batch in order (L{rate_batch}).

The results reported while a batch is being applied go together as the
next batch: their players' rows are read once (those the ladder did not
write last) and the store applies them all in one atomic step
(L{mmo.store.ILadderStore.ladder_apply_many}), each checked as if applied
alone after those before it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from twisted.internet import defer
from twisted.python.failure import Failure

from mmo.ladder.ratings import Rater
from mmo.ladder.records import LadderBusy, MatchOutcome, Player, RatingChange
from mmo.store.common_ladder import ApplyItem, LadderRow

#: Most results in one batch.
MAX_BATCH = 256

#: Tries of a result whose players' ratings changed between read and write.
MAX_ATTEMPTS = 32

#: Most rows a ladder keeps of those it wrote (the oldest go first).
ROW_CACHE = 65_536

#: What a player has in a season when rated: (mu, sigma), games, row version.
Start = tuple[tuple[float, float], int, int]


@dataclass
class Pending:
    """
    A reported result waiting to be applied, and who waits for it: the
    first report of its match id, then any repeat reported before it was
    applied.

    @ivar record: Its entry of the season's log (msgpack).
    @ivar tries: How many times it was refused for a changed row or season.
    """

    match_id: str
    teams: list[list[Player]]
    ranks: list[float] | None
    scores: list[float] | None
    record: bytes
    waiting: list[defer.Deferred] = field(default_factory=list)
    tries: int = 0

    def players(self) -> list[str]:
        return [player.id for team in self.teams for player in team]

    def join(self, other: Pending) -> None:
        """Also answer those waiting for C{other}, a repeat of this match id."""
        self.waiting.extend(other.waiting)

    def tried(self) -> None:
        self.tries += 1

    def done(self, outcome: MatchOutcome) -> None:
        """Answer the first report with C{outcome} and every repeat as a repeat."""
        first, *repeats = self.waiting
        first.callback(outcome)
        for d in repeats:
            d.callback(outcome.again())

    def failed(self, failure: Failure) -> None:
        for d in self.waiting:
            if not d.called:
                d.errback(failure)


class Batches:
    """
    The results reported to a ladder, applied a batch at a time: those
    reported while a batch is being applied go together as the next one
    (up to L{MAX_BATCH}), so that no result waits for a timer, and the
    busier the ladder the larger its batches.  A result reported twice
    before its batch is answered once for both.

    @param apply: Tries a batch (a list of L{Pending}): Deferred[list of
        those refused for a changed row or season], which are tried again
        first, up to L{MAX_ATTEMPTS} times each.
    """

    def __init__(self, apply):
        self._apply = apply
        #: Match id -> the result reported and not yet in a batch, in order.
        self._queued: dict[str, Pending] = {}
        #: The batch being applied, if any.
        self._applying: defer.Deferred | None = None
        self._draining = False

    def add(self, pending: Pending) -> None:
        self._queue_one(pending)
        self._next()

    def _queue_one(self, pending: Pending) -> None:
        queued = self._queued.get(pending.match_id)
        if queued is None:
            self._queued[pending.match_id] = pending
        else:
            queued.join(pending)

    def _next(self) -> None:
        """Apply the queued results, a batch at a time, until none is left."""
        if self._draining:
            return
        self._draining = True
        try:
            while self._applying is None and self._queued:
                batch = []
                for match_id in list(itertools.islice(self._queued, MAX_BATCH)):
                    batch.append(self._queued.pop(match_id))
                self._applying = d = defer.maybeDeferred(self._apply, batch)
                d.addCallbacks(self._retry, _fail_all, errbackArgs=(batch,))
                d.addBoth(self._applied, d)
        finally:
            self._draining = False

    def _applied(self, _, d: defer.Deferred) -> None:
        if self._applying is d:
            self._applying = None
            self._next()

    def _retry(self, refused: list[Pending]) -> None:
        """Queue the results refused again, first, but those tried too often."""
        later = self._queued
        self._queued = {}
        for pending in refused:
            pending.tried()
            if pending.tries < MAX_ATTEMPTS:
                self._queue_one(pending)
            else:
                busy = LadderBusy(f"match {pending.match_id!r}: ratings kept changing; not applied")
                pending.failed(Failure(busy))
        for pending in later.values():
            self._queue_one(pending)


def _fail_all(failure: Failure, batch: list[Pending]) -> None:
    """A batch's try failed (the store's error): each of its results not answered fails."""
    for pending in batch:
        pending.failed(failure)


class WrittenRows:
    """
    The rows a ladder last wrote, by player (up to L{ROW_CACHE}, the oldest
    dropped first), from which it rates those players again without
    reading them.  The store's version check makes a row changed elsewhere
    since cost a retry, never an update.
    """

    def __init__(self, size: int = ROW_CACHE):
        self._size = size
        self._rows: dict[str, LadderRow] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def found(self, players, season: int) -> dict[str, LadderRow]:
        """Those of C{players} whose row of C{season} it has."""
        rows = {}
        for player in players:
            row = self._rows.get(player)
            if row is not None and row.season == season:
                rows[player] = row
        return rows

    def wrote(self, rows) -> None:
        kept = self._rows
        for row in rows:
            kept.pop(row.player, None)
            kept[row.player] = row
        while len(kept) > self._size:
            del kept[next(iter(kept))]

    def forget(self, players) -> None:
        for player in players:
            self._rows.pop(player, None)

    def clear(self) -> None:
        self._rows.clear()


def rate_batch(
    rater: Rater, season: int, batch: list[Pending], starts: dict[str, Start]
) -> list[tuple[Pending, ApplyItem, MatchOutcome]]:
    """
    Rate a batch's results in order, each on the ratings those before it
    left (what applying them one by one gives), from C{starts}: each
    player's rating, games and row version before the batch.  A result
    whose rating fails is answered with the error and left out.

    @return: Each result rated, with what the store applies of it and its
        outcome if applied.
    """
    now = dict(starts)
    rated = []
    for pending in batch:
        try:
            ratings = rater.rate(
                [[now[player.id][0] for player in team] for team in pending.teams],
                pending.ranks,
                pending.scores,
            )
        except Exception:
            pending.failed(Failure())
            continue
        rows, changes = _changes(rater, season, pending.teams, now, ratings)
        for row in rows:
            now[row.player] = ((row.mu, row.sigma), row.games, row.version)
        outcome = MatchOutcome(pending.match_id, season, tuple(changes))
        item = ApplyItem(pending.match_id, tuple(rows), pending.record, outcome.pack())
        rated.append((pending, item, outcome))
    return rated


def _changes(rater: Rater, season: int, teams, starts: dict[str, Start], ratings):
    rows, changes = [], []
    for team, team_ratings in zip(teams, ratings, strict=True):
        for player, (mu, sigma) in zip(team, team_ratings, strict=True):
            (mu_before, sigma_before), games, version = starts[player.id]
            score = rater.display(mu, sigma)
            rows.append(
                LadderRow(player.id, player.name, season, mu, sigma, games + 1, version + 1, score)
            )
            changes.append(
                RatingChange(
                    player.id,
                    mu_before,
                    sigma_before,
                    mu,
                    sigma,
                    rater.display(mu_before, sigma_before),
                    score,
                )
            )
    return rows, changes
