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
from mmo.store import StoreError, read_dump_part, read_fields

#: Longest player id and match id, characters.
MAX_ID = 128

#: Most rows one board read returns.
MAX_BOARD_READ = 1000


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


class Applied(enum.Enum):
    """What L{mmo.store.ILadderStore.ladder_apply} did."""

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
    The answer of L{mmo.store.ILadderStore.ladder_apply}.

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


def check_apply(ladder, season, match_id, rows) -> None:
    check_ladder(ladder)
    check_season(season)
    check_id(match_id, "match")
    if not rows:
        raise StoreError("a result changes at least one row")
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


# -- dump and restore (the "ladders" of mmo.store.IStore.dump) --------------------


@dataclass(frozen=True)
class LadderDump:
    """
    Everything a store holds of one ladder, as a dump carries it: the
    board of each season is derived from its rows, and so are the Redis
    store's index of each player's last season and of the rollovers' run ids.

    @ivar season: Its current season (the last season record's, or 1).
    @ivar matches: Each season's log, C{(season, record)} in the order applied.
    @ivar applied: C{(match id, outcome)} of every result applied, one per
        log entry: in the order applied where the backend keeps it (SQLite),
        by match id otherwise (Redis keeps the two apart).
    """

    name: str
    season: int
    seasons: list[SeasonRecord]
    rows: list[LadderRow]
    matches: list[tuple[int, bytes]]
    applied: list[tuple[str, bytes]]

    def as_dict(self) -> dict:
        """The ladder as an entry of a dump's C{"ladders"}."""
        return {
            "name": self.name,
            "season": self.season,
            "seasons": [_as_dict(record, _SEASON_FIELDS) for record in self.seasons],
            "rows": [
                _as_dict(row, _ROW_FIELDS)
                for row in sorted(self.rows, key=lambda r: (r.season, r.player))
            ],
            "matches": [{"season": season, "record": record} for season, record in self.matches],
            "applied": [{"match": match, "outcome": outcome} for match, outcome in self.applied],
        }


def dump_ladders(ladders: list[LadderDump]) -> dict:
    """The C{"ladders"} part of a dump, by name; C{{}} when there is none."""
    found = [ladder.as_dict() for ladder in sorted(ladders, key=lambda ladder: ladder.name)]
    return {"ladders": found} if found else {}


def read_dump_ladders(data: dict) -> list[LadderDump]:
    """
    The ladders of a dump, checked completely before anything is written;
    a dump without C{"ladders"} has none.

    @raise StoreError: What is wrong, and where.
    """
    return read_dump_part(data, "ladders", "ladder", _read_ladder)


def _as_dict(record, names: tuple[str, ...]) -> dict:
    return {name: getattr(record, name) for name in names}


def _real(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise StoreError(f"{what} must be a number, got {value!r}")
    return float(value)


def _count(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise StoreError(f"{what} must be an integer from 0, got {value!r}")
    return value


def _list(entry: dict, key: str) -> list:
    if not isinstance(entry[key], list):
        raise StoreError(f"{key} is not a list")
    return entry[key]


def _bytes(value: object, what: str) -> bytes:
    if not isinstance(value, bytes):
        raise StoreError(f"{what} must be bytes")
    return value


_LADDER_FIELDS = ("name", "season", "seasons", "rows", "matches", "applied")
_SEASON_FIELDS = ("season", "started", "reset", "soften", "run_id")
_ROW_FIELDS = ("player", "name", "season", "mu", "sigma", "games", "version", "score")


def _read_ladder(entry: object) -> LadderDump:
    entry = read_fields(entry, _LADDER_FIELDS, "a ladder")
    name = check_ladder(entry["name"])
    season = check_season(entry["season"])
    seasons = [
        _read_season(record, f"seasons[{i}]") for i, record in enumerate(_list(entry, "seasons"))
    ]
    if [record.season for record in seasons] != list(range(2, season + 1)):
        raise StoreError(f"seasons must be the records of seasons 2 to {season}, in order")
    run_ids = [record.run_id for record in seasons if record.run_id]
    if len(set(run_ids)) != len(run_ids):
        raise StoreError("two seasons have the same run id")
    rows = [_read_row(row, f"rows[{i}]") for i, row in enumerate(_list(entry, "rows"))]
    if len({(row.season, row.player) for row in rows}) != len(rows):
        raise StoreError("two rows of a season have the same player")
    matches = []
    for i, match in enumerate(_list(entry, "matches")):
        match = read_fields(match, ("season", "record"), f"matches[{i}]")
        matches.append(
            (check_season(match["season"]), _bytes(match["record"], f"matches[{i}].record"))
        )
    applied = []
    for i, match in enumerate(_list(entry, "applied")):
        match = read_fields(match, ("match", "outcome"), f"applied[{i}]")
        applied.append(
            (check_id(match["match"], "match"), _bytes(match["outcome"], f"applied[{i}].outcome"))
        )
    if len({match for match, _ in applied}) != len(applied):
        raise StoreError("a match id is applied twice")
    if len(applied) != len(matches):
        raise StoreError(
            f"{len(matches)} results in the logs but {len(applied)} matches applied "
            "(each applied match has one)"
        )
    return LadderDump(name, season, seasons, rows, matches, applied)


def _read_season(record: object, where: str) -> SeasonRecord:
    record = read_fields(record, _SEASON_FIELDS, where)
    if not isinstance(record["run_id"], str) or not isinstance(record["reset"], str):
        raise StoreError(f"{where}: reset and run_id are strings")
    result = SeasonRecord(
        check_season(record["season"]),
        _real(record["started"], f"{where}.started"),
        record["reset"],
        _real(record["soften"], f"{where}.soften"),
        record["run_id"],
    )
    if result.season < 2:
        raise StoreError(f"{where}: no rollover begins season 1")
    check_rollover(result.season - 1, result)
    return result


def _read_row(row: object, where: str) -> LadderRow:
    row = read_fields(row, _ROW_FIELDS, where)
    if not isinstance(row["name"], str):
        raise StoreError(f"{where}.name is not a string")
    return LadderRow(
        check_id(row["player"], "player"),
        row["name"],
        check_season(row["season"]),
        _real(row["mu"], f"{where}.mu"),
        _real(row["sigma"], f"{where}.sigma"),
        _count(row["games"], f"{where}.games"),
        _count(row["version"], f"{where}.version"),
        _real(row["score"], f"{where}.score"),
    )
