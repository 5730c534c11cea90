"""
L{Ladder}: one configured ladder's ratings, board and seasons, on the
store (L{mmo.store.ILadderStore}).  What the ladder service and game code
call; see C{docs/ladder.md}.
"""

from __future__ import annotations

import msgpack
from twisted.internet import defer

from mmo.ladder.batch import Batches, Pending, WrittenRows, rate_batch
from mmo.ladder.ratings import Rater, Rating
from mmo.ladder.records import (
    BadResult,
    BoardEntry,
    LadderError,
    MatchOutcome,
    Player,
    PlayerRating,
    check_result,
)
from mmo.store.common_ladder import Applied, LadderRow, SeasonRecord

#: Most entries of one board page, and on each side of a player.
MAX_PAGE = 100


class Ladder:
    """
    One ladder (C{[ladders.NAME]}): results applied once by match id,
    ratings, the board of each season, and the rollover of seasons.

    Nothing read from it is cached but the current season's number
    (checked by the store in the same atomic step as every result) and the
    records of past rollovers, which never change; and the rows the ladder
    itself last wrote, from which a result of players it rated before is
    rated without reading them again.  The store checks every row's version
    in the apply, so a row that another process changed since costs one
    retry, never an update: two processes may each have a L{Ladder} on one
    store.  The board is always read from the store.

    @param section: The ladder's L{mmo.config.ladder.LadderSection}.
    @param store: An L{mmo.store.ILadderStore}, started.
    @param clock: Gives the time of a rollover (C{seconds()}); the reactor
        if not given.
    @ivar name: The ladder's name.
    @ivar rater: Its L{Rater}.
    """

    def __init__(self, section, store, clock=None):
        if clock is None:
            from twisted.internet import reactor as clock
        self.name = section.name
        self.section = section
        self.rater = Rater.from_section(section)
        self._store = store
        self._clock = clock
        self._season: int | None = None
        self._seasons: dict[int, SeasonRecord] = {}
        self._written = WrittenRows()
        self._batches = Batches(self._apply)

    def __repr__(self) -> str:
        return f"<Ladder {self.name!r} on {self._store!r}>"

    # -- seasons ---------------------------------------------------------------

    @defer.inlineCallbacks
    def season(self):
        """The current season (1 before any rollover).  Deferred[int]."""
        self._season = yield self._store.ladder_season(self.name)
        return self._season

    @defer.inlineCallbacks
    def rollover(self, from_season: int | None = None, run_id: str | None = None):
        """
        End season C{from_season} (the current one if C{None}) and begin the
        next, in one atomic step: a compare-and-set of the season number,
        so that a repeat (or a rollover from a season already ended, or one
        with a C{run_id} already done) changes nothing.  The ended season's
        board stays readable; ratings carry into the new season by the
        config's C{season_reset} when each player is first rated in it.

        @return: Deferred[int]: the season the rollover began (or the
            current one, if it began none).
        """
        if run_id is not None and (not isinstance(run_id, str) or len(run_id) > 128):
            raise LadderError("a run id is a string of at most 128 characters")
        if from_season is None:
            from_season = yield self.season()
        record = SeasonRecord(
            from_season + 1,
            self._clock.seconds(),
            self.section.season_reset,
            self.section.soften,
            run_id or "",
        )
        season = yield self._store.ladder_rollover(self.name, from_season, record)
        self._written.clear()
        yield self.season()
        return season

    @defer.inlineCallbacks
    def _season_record(self, season: int):
        if season not in self._seasons:
            for record in (yield self._store.ladder_seasons(self.name)):
                self._seasons[record.season] = record
        if season not in self._seasons:
            raise LadderError(f"ladder {self.name!r} has no season {season} yet")
        return self._seasons[season]

    @defer.inlineCallbacks
    def _checked_season(self, season: int | None):
        current = yield self.season()
        if season is None:
            return current
        if isinstance(season, bool) or not isinstance(season, int) or not 1 <= season <= current:
            raise LadderError(f"no season {season!r} (seasons 1 to {current})")
        return season

    # -- ratings ---------------------------------------------------------------

    @defer.inlineCallbacks
    def _starts(self, rows: dict[str, LadderRow], players, season: int):
        """
        Deferred[dict[player id, (rating, games, version)]]: what each
        player has in C{season} given their latest row at or before it
        (C{rows}): that row if it is of C{season}, else its rating carried
        through each rollover since (a new player's rating if none), with
        no game and no version.
        """
        if any(row.season < season for row in rows.values()):
            # Loads every rollover's record up to this season at once.
            yield self._season_record(season)
        return {player: self._start(rows.get(player), season) for player in players}

    def _start(self, row: LadderRow | None, season: int):
        if row is None:
            return self.rater.initial(), 0, 0
        if row.season == season:
            return (row.mu, row.sigma), row.games, row.version
        rating: Rating = (row.mu, row.sigma)
        for later in range(row.season + 1, season + 1):
            rating = self.rater.carry(rating, self._seasons[later])
        return rating, 0, 0

    @defer.inlineCallbacks
    def rating(self, player_id: str):
        """The player's L{PlayerRating} in the current season.  Deferred."""
        season = yield self.season()
        rows = yield self._store.ladder_ratings(self.name, season, [player_id])
        row = rows.get(player_id)
        (mu, sigma), games, _ = (yield self._starts(rows, [player_id], season))[player_id]
        rank = None
        if row is not None and row.season == season:
            place = yield self._store.ladder_rank(self.name, season, player_id)
            rank = place[0] if place else None
        return PlayerRating(
            player_id,
            season,
            mu,
            sigma,
            self.rater.display(mu, sigma),
            self.rater.provisional(sigma),
            games,
            rank,
        )

    # -- results -----------------------------------------------------------------

    def report(
        self,
        match_id: str,
        teams: list[list[Player]],
        ranks: list[float] | None = None,
        scores: list[float] | None = None,
    ):
        """
        Apply a match's result, once: a repeat of C{match_id} changes
        nothing and gives the first outcome again (its C{already_applied}
        set).  C{ranks}: each team's place, lower is better, equal for a
        tie; C{scores}: higher is better; neither: the teams finished in the
        order given.  Concurrent results on the same players (from any
        process) are each applied to the ratings the others left.

        Results reported while a batch is being applied wait for it, then go
        together as the next batch (see L{mmo.ladder.batch}); a result
        reported when none is being applied starts its batch at once.

        @return: Deferred[L{MatchOutcome}].
        @raise BadResult: The result is malformed.
        @raise LadderBusy: The players' ratings kept changing under it
            (after L{mmo.ladder.batch.MAX_ATTEMPTS} tries); it was not applied.
        """
        try:
            check_result(match_id, teams, ranks, scores)
        except BadResult:
            return defer.fail()
        record = msgpack.packb(
            {
                "match": match_id,
                "teams": [[player.id for player in team] for team in teams],
                "ranks": list(ranks) if ranks is not None else None,
                "scores": list(scores) if scores is not None else None,
            },
            use_bin_type=True,
        )
        d = defer.Deferred()
        self._batches.add(Pending(match_id, teams, ranks, scores, record, [d]))
        return d

    @defer.inlineCallbacks
    def _apply(self, batch: list[Pending]):
        """
        One try of a batch.  Deferred[list[L{Pending}]]: its results
        refused for a changed row or season, to try again.
        """
        season = self._season
        if season is None:
            season = yield self.season()
        ids = list(dict.fromkeys(player for pending in batch for player in pending.players()))
        rows = self._written.found(ids, season)
        if len(rows) < len(ids):
            missing = [player for player in ids if player not in rows]
            rows.update((yield self._store.ladder_ratings(self.name, season, missing)))
        starts = yield self._starts(rows, ids, season)
        rated = rate_batch(self.rater, season, batch, starts)
        if not rated:
            return []
        results = yield self._store.ladder_apply_many(
            self.name, season, [item for _, item, _ in rated]
        )
        again = []
        for (pending, item, outcome), result in zip(rated, results, strict=True):
            if result.status is Applied.APPLIED:
                self._written.wrote(item.rows)
                pending.done(outcome)
            elif result.status is Applied.DUPLICATE:
                pending.done(MatchOutcome.unpack(result.outcome).again())
            else:
                if result.status is Applied.SEASON:
                    self._season = result.season
                    self._written.clear()
                else:
                    # Someone else rated one of them since: read them again.
                    self._written.forget(pending.players())
                again.append(pending)
        return again

    @defer.inlineCallbacks
    def replay(self, season: int):
        """
        Recompute a season's ratings from its log of results, in the order
        they were applied, from each player's rating at the season's start.
        It equals the stored ratings exactly.

        @return: Deferred[dict[player id, (mu, sigma)]].
        """
        season = yield self._checked_season(season)
        log = yield self._store.ladder_matches(self.name, season)
        records = [msgpack.unpackb(blob, raw=False) for blob in log]
        players = sorted({p for record in records for team in record["teams"] for p in team})
        before = {}
        if season > 1 and players:
            before = yield self._store.ladder_ratings(self.name, season - 1, players)
        starts = yield self._starts(before, players, season)
        ratings: dict[str, Rating] = {player: start[0] for player, start in starts.items()}
        for record in records:
            teams = record["teams"]
            rated = self.rater.rate(
                [[ratings[p] for p in team] for team in teams], record["ranks"], record["scores"]
            )
            for team, new in zip(teams, rated, strict=True):
                ratings.update(zip(team, new, strict=True))
        return ratings

    # -- the board ---------------------------------------------------------------

    def _entries(self, places) -> list[BoardEntry]:
        return [
            BoardEntry(rank, row.player, row.name, row.score, self.rater.provisional(row.sigma))
            for rank, row in places
        ]

    @defer.inlineCallbacks
    def top(self, start: int, count: int, season: int | None = None):
        """
        A page of the board: C{count} (1 to L{MAX_PAGE}) entries from the
        0-based position C{start} (C{top(0, 10)}: the ten best).
        Deferred[list[L{BoardEntry}]].
        """
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise LadderError("start must be an integer from 0")
        _check_count(count, 1)
        season = yield self._checked_season(season)
        places = yield self._store.ladder_top(self.name, season, start, count)
        return self._entries(places)

    @defer.inlineCallbacks
    def rank(self, player_id: str, season: int | None = None):
        """The player's L{BoardEntry}, or C{None} if not on the board.  Deferred."""
        season = yield self._checked_season(season)
        place = yield self._store.ladder_rank(self.name, season, player_id)
        return self._entries([place])[0] if place else None

    @defer.inlineCallbacks
    def around(self, player_id: str, count: int, season: int | None = None):
        """
        The player's entry with up to C{count} (0 to L{MAX_PAGE}) entries
        above it and as many below; empty if the player is not on the board.
        Deferred[list[L{BoardEntry}]].
        """
        _check_count(count, 0)
        season = yield self._checked_season(season)
        if count == 0:
            place = yield self._store.ladder_rank(self.name, season, player_id)
            return self._entries([place]) if place else []
        places = yield self._store.ladder_around(self.name, season, player_id, count)
        return self._entries(places)


def _check_count(count: object, minimum: int) -> None:
    if isinstance(count, bool) or not isinstance(count, int) or not minimum <= count <= MAX_PAGE:
        raise LadderError(f"count must be an integer from {minimum} to {MAX_PAGE}")
