"""
What both backends' ladder storage share (L{mmo.store.ILadderStore}): its
records, the checks of its arguments and the packing of its rows.

The store knows nothing of ratings: a row's C{score} (the displayed rating
the board is ordered by) is computed by the caller, L{mmo.ladder.Ladder}.
The board's order is the same on both backends: C{score} descending, then,
among equal scores, the player id descending (compared as bytes), which is
Redis's own order of a sorted set read from the top (C{ZREVRANGE}).
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass

import msgpack
from twisted.internet import defer

from mmo.config.ladder import LADDER_NAME
from mmo.store import StoreError

#: Longest player id and match id, characters.
MAX_ID = 128

#: Most rows one board read returns.
MAX_BOARD_READ = 1000

#: Most results one L{mmo.store.ILadderStore.ladder_apply_many} applies.
MAX_APPLY_BATCH = 1024


@dataclass(frozen=True)
class LadderRow:
    """
    A player's rating in one season of a ladder.

    @ivar season: The season it belongs to.
    @ivar version: Bumped by each result that changes it (1 after the
        first); a write expects the version it read.
    @ivar score: What the board orders by: the displayed rating.
    """

    player: str
    name: str
    season: int
    mu: float
    sigma: float
    games: int
    version: int
    score: float

    def pack(self) -> bytes:
        """The row's value as the Redis store keeps it (its player and season are in its key)."""
        return msgpack.packb(
            [self.version, self.mu, self.sigma, self.games, self.name, self.score],
            use_bin_type=True,
        )

    @classmethod
    def unpack(cls, player: str, season: int, blob: bytes) -> LadderRow:
        version, mu, sigma, games, name, score = msgpack.unpackb(blob, raw=False)
        return cls(player, name, season, float(mu), float(sigma), games, version, float(score))


@dataclass(frozen=True)
class SeasonRecord:
    """
    A season of a ladder, as its rollover recorded it.

    @ivar season: Its number (the first is 1, which no rollover records).
    @ivar started: Unix time of the rollover that began it.
    @ivar reset: How a rating of the season before carries into it
        (C{"keep"}, C{"soften"}, C{"reset"}), fixed at the rollover so
        that a later change of the config does not change it.
    @ivar soften: With C{"soften"}, the share of the way back to a new
        player's rating.
    @ivar run_id: The rollover's run id (C{""} if none): a repeat of the
        same run id does nothing.
    """

    season: int
    started: float
    reset: str
    soften: float
    run_id: str

    def pack(self) -> bytes:
        return msgpack.packb(
            [self.started, self.reset, self.soften, self.run_id], use_bin_type=True
        )

    @classmethod
    def unpack(cls, season: int, blob: bytes) -> SeasonRecord:
        started, reset, soften, run_id = msgpack.unpackb(blob, raw=False)
        return cls(season, float(started), reset, float(soften), run_id)


@dataclass(frozen=True)
class ApplyItem:
    """
    One result of a L{mmo.store.ILadderStore.ladder_apply_many}.

    @ivar rows: Its players' new rows; each expects the stored row to be
        of version C{row.version - 1} (0: none).
    @ivar record: What the season's log keeps of it (bytes).
    @ivar outcome: What a repeat of its match id answers (bytes).
    """

    match_id: str
    rows: tuple[LadderRow, ...]
    record: bytes
    outcome: bytes


class Applied(enum.Enum):
    """What L{mmo.store.ILadderStore.ladder_apply_many} did with one result."""

    #: The result was applied: its rows, its log entry and its outcome written.
    APPLIED = "applied"
    #: The match id was applied before: nothing written; the first outcome returned.
    DUPLICATE = "duplicate"
    #: The ladder is in another season now: nothing written; the season returned.
    SEASON = "season"
    #: A row changed since it was read: nothing written.
    CONFLICT = "conflict"


@dataclass(frozen=True)
class ApplyResult:
    """
    What L{mmo.store.ILadderStore.ladder_apply_many} did with one result.

    @ivar outcome: With C{DUPLICATE}, the outcome stored by the first apply.
    @ivar season: With C{SEASON}, the ladder's season now.
    """

    status: Applied
    outcome: bytes | None = None
    season: int | None = None


def check_ladder(ladder: object) -> str:
    if not isinstance(ladder, str) or not LADDER_NAME.match(ladder):
        raise StoreError(f"bad ladder name {ladder!r}")
    return ladder


def check_id(value: object, what: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID:
        raise StoreError(f"a {what} id must be a string of 1 to {MAX_ID} characters")
    return value


def check_season(season: object) -> int:
    if isinstance(season, bool) or not isinstance(season, int) or season < 1:
        raise StoreError(f"a season is a positive integer, got {season!r}")
    return season


def check_window(start: object, count: object) -> None:
    """A board read's C{start} (0-based) and C{count} (1 to L{MAX_BOARD_READ})."""
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise StoreError(f"a board read's start is an integer from 0, got {start!r}")
    if isinstance(count, bool) or not isinstance(count, int) or not 0 < count <= MAX_BOARD_READ:
        raise StoreError(f"a board read's count is 1 to {MAX_BOARD_READ}, got {count!r}")


def check_apply(ladder, season, items) -> list[ApplyItem]:
    """The results of a batch, checked: each a new row per player of C{season}."""
    check_ladder(ladder)
    check_season(season)
    items = list(items)
    if not 0 < len(items) <= MAX_APPLY_BATCH:
        raise StoreError(f"a batch applies 1 to {MAX_APPLY_BATCH} results, got {len(items)}")
    for item in items:
        if not isinstance(item, ApplyItem):
            raise StoreError(f"a batch's results are ApplyItems, got {item!r}")
        if not isinstance(item.record, bytes) or not isinstance(item.outcome, bytes):
            raise StoreError("a result's record and outcome are bytes")
        _check_item(season, item.match_id, item.rows)
    return items


def _check_item(season, match_id, rows) -> None:
    check_id(match_id, "match")
    if not rows:
        raise StoreError("a result changes at least one row")
    if not all(isinstance(row, LadderRow) for row in rows):
        raise StoreError("a result's rows are LadderRows")
    players = [row.player for row in rows]
    if len(set(players)) != len(players):
        raise StoreError("a result changes each player's row once")
    for row in rows:
        check_id(row.player, "player")
        if row.season != season or row.version < 1:
            raise StoreError(f"row {row!r} is not a new row of season {season}")


def checked(method):
    """
    A store method whose argument checks fail its Deferred (with a
    L{StoreError}) rather than raise at the call, as every store method's
    failures do.
    """

    @functools.wraps(method)
    def call(*args, **kwargs):
        return defer.maybeDeferred(method, *args, **kwargs)

    return call


def check_rows(season, rows) -> list[LadderRow]:
    """The rows of a fill, all of C{season}."""
    rows = list(rows)
    for row in rows:
        check_id(row.player, "player")
        if row.season != check_season(season):
            raise StoreError(f"row {row!r} is not of season {season}")
    return rows


def check_rollover(from_season, record: SeasonRecord) -> None:
    check_season(from_season)
    if record.season != from_season + 1:
        raise StoreError(f"season {record.season} does not follow {from_season}")
    if record.reset not in ("keep", "soften", "reset") or not 0 <= record.soften <= 1:
        raise StoreError(f"bad season record {record!r}")
