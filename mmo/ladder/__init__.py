"""
The ladder: ranked ratings per player (openskill), results applied once by
match id, the board of each season, and seasons rolled over atomically.

  - L{mmo.ladder.ladder}: L{Ladder}, one configured ladder on the store;
  - L{mmo.ladder.ratings}: L{Rater}, the model, the displayed rating and
    the carry of a rating into a new season;
  - L{mmo.ladder.records}: L{Player}, L{PlayerRating}, L{BoardEntry},
    L{MatchOutcome} and the errors;
  - L{mmo.ladder.queue}: the ranked queue (L{mmo.ladder.queue.Matchmaker}),
    with its teams' balance (L{mmo.ladder.teams});
  - L{mmo.ladder.service}: the ladder service (C{ladder.*}) and its process
    (L{mmo.ladder.tap}), with the lobby's rooms as parties
    (L{mmo.ladder.parties}), its requests' checks (L{mmo.ladder.checks}),
    the board's requests (L{mmo.ladder.board}), the queue's requests
    (L{mmo.ladder.queue_requests}), the lease of the process serving the
    queue (L{mmo.game.lease}), the relay of the queue's requests to it
    (L{mmo.game.relay}), the matches' rooms asked of the lobby
    (L{mmo.ladder.rooms}) and their results (L{mmo.ladder.results});
  - L{mmo.ladder.report}: how game code reports a match's result.

See C{docs/ladder.md}.
"""

from mmo.ladder.ladder import Ladder
from mmo.ladder.ratings import Rater
from mmo.ladder.records import (
    BadResult,
    BoardEntry,
    LadderBusy,
    LadderError,
    MatchOutcome,
    Player,
    PlayerRating,
    RatingChange,
)

__all__ = [
    "BadResult",
    "BoardEntry",
    "Ladder",
    "LadderBusy",
    "LadderError",
    "MatchOutcome",
    "Player",
    "PlayerRating",
    "Rater",
    "RatingChange",
]
