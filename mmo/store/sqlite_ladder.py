"""
The SQLite store's ladder (L{mmo.store.ILadderStore}): its tables, made by
L{migration}, and L{SQLiteLadder}, the mixin of L{mmo.store.sqlite.SQLiteStore}
whose methods run the functions below in the store's connection thread.

Tables:

  - C{ladder_seasons}: one row per rollover (season 2 on); the current
    season is the highest, 1 when there is none;
  - C{ladder_ratings}: a player's row per ladder and season, with the index
    C{ladder_board} on C{(ladder, season, score, player)}: the board read
    backwards.  A rank is the count of the rows ahead of a player's on that
    index, counted when asked (never cached);
  - C{ladder_matches}: the results applied, the match id unique per ladder,
    numbered by C{seq} within their season in the order applied.

Every write is one C{BEGIN IMMEDIATE} transaction: its checks (the match
id, the season, the rows' versions) and its writes are one atomic step
between processes sharing the file.
"""

from __future__ import annotations

import sqlite3

from mmo.store.common_ladder import (
    Applied,
    ApplyResult,
    LadderDump,
    LadderRow,
    SeasonRecord,
    check_apply,
    check_id,
    check_ladder,
    check_rollover,
    check_rows,
    check_season,
    check_window,
    checked,
)

ROW_COLUMNS = "player, name, season, mu, sigma, games, version, score"


def migration(conn: sqlite3.Connection) -> None:
    """The ladder's tables (a migration of L{mmo.store.sqlite.MIGRATIONS})."""
    conn.execute(
        """
        CREATE TABLE ladder_seasons (
            ladder TEXT NOT NULL,
            season INTEGER NOT NULL,
            started REAL NOT NULL,
            reset TEXT NOT NULL,
            soften REAL NOT NULL,
            run_id TEXT NOT NULL,
            PRIMARY KEY (ladder, season)
        ) WITHOUT ROWID
        """
    )
    conn.execute(
        """
        CREATE TABLE ladder_ratings (
            ladder TEXT NOT NULL,
            season INTEGER NOT NULL,
            player TEXT NOT NULL,
            name TEXT NOT NULL,
            mu REAL NOT NULL,
            sigma REAL NOT NULL,
            games INTEGER NOT NULL,
            version INTEGER NOT NULL,
            score REAL NOT NULL,
            PRIMARY KEY (ladder, season, player)
        ) WITHOUT ROWID
        """
    )
    conn.execute("CREATE INDEX ladder_board ON ladder_ratings (ladder, season, score, player)")
    conn.execute("CREATE INDEX ladder_player ON ladder_ratings (ladder, player, season)")
    conn.execute(
        """
        CREATE TABLE ladder_matches (
            ladder TEXT NOT NULL,
            match_id TEXT NOT NULL,
            season INTEGER NOT NULL,
            seq INTEGER NOT NULL,
            record BLOB NOT NULL,
            outcome BLOB NOT NULL,
            PRIMARY KEY (ladder, match_id),
            UNIQUE (ladder, season, seq)
        ) WITHOUT ROWID
        """
    )


def _row(values) -> LadderRow:
    player, name, season, mu, sigma, games, version, score = values
    return LadderRow(player, name, season, mu, sigma, games, version, score)


def _season(conn, ladder: str) -> int:
    (season,) = conn.execute(
        "SELECT COALESCE(MAX(season), 1) FROM ladder_seasons WHERE ladder = ?", (ladder,)
    ).fetchone()
    return season


def _seasons(conn, ladder):
    return [
        SeasonRecord(*values)
        for values in conn.execute(
            "SELECT season, started, reset, soften, run_id FROM ladder_seasons "
            "WHERE ladder = ? ORDER BY season",
            (ladder,),
        )
    ]


def _rollover(conn, ladder, from_season, record: SeasonRecord) -> int:
    conn.execute("BEGIN IMMEDIATE")
    if record.run_id:
        done = conn.execute(
            "SELECT season FROM ladder_seasons WHERE ladder = ? AND run_id = ?",
            (ladder, record.run_id),
        ).fetchone()
        if done is not None:
            return done[0]
    current = _season(conn, ladder)
    if current != from_season:
        return current
    conn.execute(
        "INSERT INTO ladder_seasons (ladder, season, started, reset, soften, run_id) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (ladder, record.season, record.started, record.reset, record.soften, record.run_id),
    )
    return record.season


def _latest(conn, ladder, season, player) -> LadderRow | None:
    values = conn.execute(
        f"SELECT {ROW_COLUMNS} FROM ladder_ratings WHERE ladder = ? AND player = ? "
        "AND season <= ? ORDER BY season DESC LIMIT 1",
        (ladder, player, season),
    ).fetchone()
    return None if values is None else _row(values)


def _ratings(conn, ladder, season, players):
    found = {}
    for player in players:
        row = _latest(conn, ladder, season, player)
        if row is not None:
            found[player] = row
    return found


def _write_rows(conn, ladder, rows) -> None:
    conn.executemany(
        f"INSERT OR REPLACE INTO ladder_ratings (ladder, {ROW_COLUMNS}) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (ladder, r.player, r.name, r.season, r.mu, r.sigma, r.games, r.version, r.score)
            for r in rows
        ],
    )


def _apply(conn, ladder, season, match_id, rows, record, outcome) -> ApplyResult:
    conn.execute("BEGIN IMMEDIATE")
    stored = conn.execute(
        "SELECT outcome FROM ladder_matches WHERE ladder = ? AND match_id = ?", (ladder, match_id)
    ).fetchone()
    if stored is not None:
        return ApplyResult(Applied.DUPLICATE, outcome=bytes(stored[0]))
    current = _season(conn, ladder)
    if current != season:
        return ApplyResult(Applied.SEASON, season=current)
    for row in rows:
        version = conn.execute(
            "SELECT version FROM ladder_ratings WHERE ladder = ? AND season = ? AND player = ?",
            (ladder, season, row.player),
        ).fetchone()
        if (version[0] if version else 0) != row.version - 1:
            return ApplyResult(Applied.CONFLICT)
    _write_rows(conn, ladder, rows)
    (seq,) = conn.execute(
        "SELECT COALESCE(MAX(seq), 0) + 1 FROM ladder_matches WHERE ladder = ? AND season = ?",
        (ladder, season),
    ).fetchone()
    conn.execute(
        "INSERT INTO ladder_matches (ladder, match_id, season, seq, record, outcome) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (ladder, match_id, season, seq, record, outcome),
    )
    return ApplyResult(Applied.APPLIED)


def _matches(conn, ladder, season):
    return [
        bytes(record)
        for (record,) in conn.execute(
            "SELECT record FROM ladder_matches WHERE ladder = ? AND season = ? ORDER BY seq",
            (ladder, season),
        )
    ]


# The board: ORDER BY score DESC, player DESC reads ladder_board backwards;
# the rows ahead of (score, player) are those with a greater pair.


def _top(conn, ladder, season, start, count):
    # The page's players are found on the board index alone (it holds the
    # player), so that the rows skipped by the offset are never read from
    # the table; then the page's rows are read.
    conn.execute("BEGIN")
    players = [
        player
        for (player,) in conn.execute(
            "SELECT player FROM ladder_ratings WHERE ladder = ? AND season = ? "
            "ORDER BY score DESC, player DESC LIMIT ? OFFSET ?",
            (ladder, season, count, start),
        )
    ]
    rows = [_own_row(conn, ladder, season, player) for player in players]
    return [(start + i + 1, row) for i, row in enumerate(rows)]


def _own_row(conn, ladder, season, player) -> LadderRow | None:
    values = conn.execute(
        f"SELECT {ROW_COLUMNS} FROM ladder_ratings WHERE ladder = ? AND season = ? AND player = ?",
        (ladder, season, player),
    ).fetchone()
    return None if values is None else _row(values)


def _ahead(conn, ladder, season, row: LadderRow) -> int:
    (ahead,) = conn.execute(
        "SELECT COUNT(*) FROM ladder_ratings WHERE ladder = ? AND season = ? "
        "AND (score, player) > (?, ?)",
        (ladder, season, row.score, row.player),
    ).fetchone()
    return ahead


def _rank(conn, ladder, season, player):
    conn.execute("BEGIN")
    row = _own_row(conn, ladder, season, player)
    if row is None:
        return None
    return _ahead(conn, ladder, season, row) + 1, row


def _around(conn, ladder, season, player, count):
    conn.execute("BEGIN")
    row = _own_row(conn, ladder, season, player)
    if row is None:
        return []
    rank = _ahead(conn, ladder, season, row) + 1
    above = conn.execute(
        f"SELECT {ROW_COLUMNS} FROM ladder_ratings WHERE ladder = ? AND season = ? "
        "AND (score, player) > (?, ?) ORDER BY score, player LIMIT ?",
        (ladder, season, row.score, row.player, count),
    ).fetchall()
    below = conn.execute(
        f"SELECT {ROW_COLUMNS} FROM ladder_ratings WHERE ladder = ? AND season = ? "
        "AND (score, player) < (?, ?) ORDER BY score DESC, player DESC LIMIT ?",
        (ladder, season, row.score, row.player, count),
    ).fetchall()
    rows = [_row(values) for values in reversed(above)] + [row] + [_row(v) for v in below]
    first = rank - len(above)
    return [(first + i, r) for i, r in enumerate(rows)]


def _size(conn, ladder, season):
    (size,) = conn.execute(
        "SELECT COUNT(*) FROM ladder_ratings WHERE ladder = ? AND season = ?", (ladder, season)
    ).fetchone()
    return size


def _fill(conn, ladder, rows):
    conn.execute("BEGIN IMMEDIATE")
    _write_rows(conn, ladder, rows)


class SQLiteLadder:
    """
    L{mmo.store.ILadderStore} for L{mmo.store.sqlite.SQLiteStore}, whose
    C{_run} runs each function in its connection thread, in a transaction.
    """

    @checked
    def ladder_season(self, ladder):
        return self._run(_season, check_ladder(ladder))

    @checked
    def ladder_seasons(self, ladder):
        return self._run(_seasons, check_ladder(ladder))

    @checked
    def ladder_rollover(self, ladder, from_season, record):
        check_rollover(from_season, record)
        return self._run(_rollover, check_ladder(ladder), from_season, record)

    @checked
    def ladder_ratings(self, ladder, season, players):
        players = [check_id(player, "player") for player in players]
        return self._run(_ratings, check_ladder(ladder), check_season(season), players)

    @checked
    def ladder_apply(self, ladder, season, match_id, rows, record, outcome):
        check_apply(ladder, season, match_id, rows)
        return self._run(_apply, ladder, season, match_id, list(rows), record, outcome)

    @checked
    def ladder_matches(self, ladder, season):
        return self._run(_matches, check_ladder(ladder), check_season(season))

    @checked
    def ladder_top(self, ladder, season, start, count):
        check_window(start, count)
        return self._run(_top, check_ladder(ladder), check_season(season), start, count)

    @checked
    def ladder_rank(self, ladder, season, player):
        return self._run(
            _rank, check_ladder(ladder), check_season(season), check_id(player, "player")
        )

    @checked
    def ladder_around(self, ladder, season, player, count):
        check_window(0, count)
        return self._run(
            _around, check_ladder(ladder), check_season(season), check_id(player, "player"), count
        )

    @checked
    def ladder_size(self, ladder, season):
        return self._run(_size, check_ladder(ladder), check_season(season))

    @checked
    def ladder_fill(self, ladder, season, rows):
        return self._run(_fill, check_ladder(ladder), check_rows(season, rows))


# -- dump and restore: run by mmo.store.sqlite.SQLiteStore's in its transaction --

#: The ladder's tables, for the check that a restore's store is empty.
LADDER_TABLES = ("ladder_seasons", "ladder_ratings", "ladder_matches")


def dump_ladder_tables(conn) -> list[LadderDump]:
    """Every ladder of the store, read in the caller's transaction."""
    names = [
        name
        for (name,) in conn.execute(
            " UNION ".join(f"SELECT ladder FROM {table}" for table in LADDER_TABLES)
        )
    ]
    return [_dump_ladder(conn, name) for name in sorted(names)]


def _dump_ladder(conn, ladder) -> LadderDump:
    rows = [
        _row(values)
        for values in conn.execute(
            f"SELECT {ROW_COLUMNS} FROM ladder_ratings WHERE ladder = ?", (ladder,)
        )
    ]
    matches = conn.execute(
        "SELECT season, record, match_id, outcome FROM ladder_matches WHERE ladder = ? "
        "ORDER BY season, seq",
        (ladder,),
    ).fetchall()
    return LadderDump(
        ladder,
        _season(conn, ladder),
        _seasons(conn, ladder),
        rows,
        [(season, bytes(record)) for season, record, _, _ in matches],
        [(match_id, bytes(outcome)) for _, _, match_id, outcome in matches],
    )


def restore_ladder_tables(conn, ladders: list[LadderDump]) -> None:
    """Write checked ladders into the caller's transaction (the tables empty)."""
    for ladder in ladders:
        conn.executemany(
            "INSERT INTO ladder_seasons (ladder, season, started, reset, soften, run_id) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [
                (ladder.name, r.season, r.started, r.reset, r.soften, r.run_id)
                for r in ladder.seasons
            ],
        )
        _write_rows(conn, ladder.name, ladder.rows)
        # SQLite keeps each log entry beside its match id: a dump of this
        # backend lists both in the order applied; one of Redis, which
        # keeps them apart, is paired in its order, and nothing reads a
        # record by its match id.
        seqs: dict[int, int] = {}
        values = []
        for (season, record), (match_id, outcome) in zip(
            ladder.matches, ladder.applied, strict=True
        ):
            seqs[season] = seqs.get(season, 0) + 1
            values.append((ladder.name, match_id, season, seqs[season], record, outcome))
        conn.executemany(
            "INSERT INTO ladder_matches (ladder, match_id, season, seq, record, outcome) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            values,
        )
