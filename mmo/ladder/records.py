"""
What a L{mmo.ladder.Ladder} takes and gives: players, ratings, board
entries, match outcomes, its errors, and the check of a reported result.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import msgpack

from mmo.config.ladder import MAX_TEAMS
from mmo.store.common_ladder import MAX_ID

#: Longest player name, characters (ids: L{MAX_ID}, as the store takes them).
MAX_NAME = 64

#: Most players in all the teams of one match (teams: L{MAX_TEAMS}, as a mode may have).
MAX_PLAYERS = 256


class LadderError(Exception):
    """A ladder's request was refused; the message says why."""


class BadResult(LadderError, ValueError):
    """A reported result is malformed (its match id, teams, ranks or scores)."""


class LadderBusy(LadderError):
    """A result could not be applied: its players' ratings kept changing under it."""


@dataclass(frozen=True)
class Player:
    """
    A player in a result.

    @ivar id: The account id.
    @ivar name: The name shown on the board.
    """

    id: str
    name: str


@dataclass(frozen=True)
class PlayerRating:
    """
    A player's rating in a season.

    @ivar rating: The displayed rating.
    @ivar provisional: Whether sigma is still above the ladder's threshold.
    @ivar games: Results applied to the player in the season.
    @ivar rank: The player's 1-based rank on the season's board, or C{None}
        if the player has no result in it yet.
    """

    player_id: str
    season: int
    mu: float
    sigma: float
    rating: float
    provisional: bool
    games: int
    rank: int | None


@dataclass(frozen=True)
class BoardEntry:
    """One place on a board: its 1-based rank, the player and the displayed rating."""

    rank: int
    player_id: str
    name: str
    rating: float
    provisional: bool


@dataclass(frozen=True)
class RatingChange:
    """One player's rating before and after a result (displayed ratings too)."""

    player_id: str
    mu_before: float
    sigma_before: float
    mu: float
    sigma: float
    rating_before: float
    rating: float


@dataclass(frozen=True)
class MatchOutcome:
    """
    What a result did.

    @ivar season: The season it was applied in.
    @ivar changes: Each player's change, in the order of the teams.
    @ivar already_applied: The match id had been applied before: this is
        that first outcome, and nothing changed now.
    """

    match_id: str
    season: int
    changes: tuple[RatingChange, ...]
    already_applied: bool = False

    def pack(self) -> bytes:
        return msgpack.packb(
            [self.match_id, self.season, [_values(change) for change in self.changes]],
            use_bin_type=True,
        )

    @classmethod
    def unpack(cls, blob: bytes) -> MatchOutcome:
        match_id, season, changes = msgpack.unpackb(blob, raw=False)
        return cls(match_id, season, tuple(RatingChange(*change) for change in changes))

    def again(self) -> MatchOutcome:
        """This outcome, as the answer to a repeat of its report."""
        return replace(self, already_applied=True)


#: The fields of a L{RatingChange}, in the order its record lists them.
_CHANGE_FIELDS = [f.name for f in fields(RatingChange)]


def _values(change: RatingChange) -> list:
    return [getattr(change, name) for name in _CHANGE_FIELDS]


def _check_id(value: object, what: str) -> None:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID:
        raise BadResult(f"{what} must be a string of 1 to {MAX_ID} characters")


def _check_places(values: object, teams: int, what: str) -> None:
    if values is None:
        return
    if not isinstance(values, list | tuple) or len(values) != teams:
        raise BadResult(f"{what} must be a list of one number per team ({teams})")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
            raise BadResult(f"{what} must be numbers")
        if abs(value) > 1e15:
            raise BadResult(f"{what} must be finite and at most 1e15 in size")


def check_result(match_id: object, teams: object, ranks: object, scores: object) -> None:
    """
    Check a reported result.

    @raise BadResult: Why it is malformed.
    """
    _check_id(match_id, "the match id")
    if not isinstance(teams, list | tuple) or not 2 <= len(teams) <= MAX_TEAMS:
        raise BadResult(f"teams must be a list of 2 to {MAX_TEAMS} teams")
    seen = set()
    for team in teams:
        if not isinstance(team, list | tuple) or not team:
            raise BadResult("each team must be a non-empty list of players")
        for player in team:
            if not isinstance(player, Player):
                raise BadResult("each team's players must be Player records")
            _check_id(player.id, "a player id")
            if not isinstance(player.name, str) or len(player.name) > MAX_NAME:
                raise BadResult(f"a player name must be a string of at most {MAX_NAME}")
            if player.id in seen:
                raise BadResult(f"player {player.id!r} is in the match twice")
            seen.add(player.id)
    if len(seen) > MAX_PLAYERS:
        raise BadResult(f"a match has at most {MAX_PLAYERS} players")
    if ranks is not None and scores is not None:
        raise BadResult("give ranks or scores, not both")
    _check_places(ranks, len(teams), "ranks")
    _check_places(scores, len(teams), "scores")
