"""
The fields of C{ladder.*} requests, checked, and the ladder's values as
clients see them.  Each check returns the field's value as the service
uses it, or raises C{bad_request} saying what is wrong.
"""

from __future__ import annotations

import math

# The checks every service shares, used by the ladder's service through here.
from mmo.game.checks import boolean as boolean
from mmo.game.checks import integer, string

#: Most board rows one request reads.
MAX_COUNT = 100

#: The furthest a board page may start (0 is the top).
MAX_START = 10_000_000

#: Longest player id a client may name.
MAX_PLAYER = 128


def player(message: dict, caller) -> str:
    """The player (account id) named by C{player}, else the caller's."""
    if message.get("player") is None:
        return caller.account_id
    return string(message, "player", MAX_PLAYER)


def season(message: dict) -> int | None:
    """The season asked for, or C{None} for the current one."""
    if message.get("season") is None:
        return None
    return integer(message, "season", 0, 1, 1_000_000)


def check_outcome(ranks, scores, teams: int) -> None:
    """
    A reported result's C{ranks} or C{scores}: one number per team.

    @raise ValueError: What is wrong with them.
    """
    if (ranks is None) == (scores is None):
        raise ValueError("a result has ranks or scores")
    values = ranks if ranks is not None else scores
    if not isinstance(values, list) or len(values) != teams:
        raise ValueError(f"a result of this match has {teams} ranks or scores, one per team")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("ranks and scores are numbers")
        if not math.isfinite(value):
            raise ValueError("ranks and scores are finite")


def places(ranks, scores) -> list[int]:
    """Each team's place (1: best; teams that tie share one)."""
    order = list(ranks) if ranks is not None else [-s for s in scores]
    return [1 + sum(other < mine for other in order) for mine in order]


def outcome_of(match, account: str, ranks, scores) -> dict:
    """How the match went for player C{account}: his team, its place, whether it tied."""
    team = next(i for i, members in enumerate(match.teams) if account in members)
    placed = places(ranks, scores)
    tied = placed.count(placed[team]) > 1
    return {"team": team, "place": placed[team], "tie": tied}


def rating_dict(rating) -> dict:
    """A player's L{mmo.ladder.PlayerRating} as clients see it."""
    return {
        "season": rating.season,
        "rating": rating.rating,
        "mu": rating.mu,
        "sigma": rating.sigma,
        "provisional": rating.provisional,
        "games": rating.games,
        "rank": rating.rank,
    }


def entry_dict(entry) -> dict:
    """A board's L{mmo.ladder.BoardEntry} as clients see it."""
    return {
        "rank": entry.rank,
        "player": entry.player_id,
        "name": entry.name,
        "rating": entry.rating,
        "provisional": entry.provisional,
    }


def change_dict(change) -> dict:
    """A player's L{mmo.ladder.RatingChange}: displayed ratings before and after."""
    return {
        "player": change.player_id,
        "before": change.rating_before,
        "after": change.rating,
        "mu": change.mu,
        "sigma": change.sigma,
    }


def outcome_dict(match, outcome) -> dict:
    """
    What a reporter is answered: the match, its teams (account ids), the
    season the result went to, each player's change, and whether this
    report repeated one applied before.
    """
    return {
        "match": match.id,
        "teams": [list(team) for team in match.teams],
        "season": outcome.season,
        "changes": [change_dict(c) for c in outcome.changes],
        "already_applied": outcome.already_applied,
    }
