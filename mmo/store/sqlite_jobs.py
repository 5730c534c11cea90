"""
The SQLite store's scheduled jobs (the jobs methods of L{mmo.store.IStore}):
L{SQLiteJobs}, mixed into L{mmo.store.sqlite.SQLiteStore}, and the
migration that makes its tables.  Each write is one transaction (C{BEGIN
IMMEDIATE} takes the write lock first), so the check of the fencing token
and what the write changes are one atomic step, between processes too.
"""

from __future__ import annotations

import sqlite3

from twisted.internet import defer

from mmo.store import StoreError
from mmo.store.jobs import (
    MAX_TRIGGERS,
    JobDump,
    JobRun,
    JobState,
    StaleToken,
    check_job,
    check_keep,
    check_run,
    check_run_id,
    check_time,
    check_token,
)

RUN_COLUMNS = "run_id, scheduled, token, started, finished, outcome"


def migration(conn: sqlite3.Connection) -> None:
    """
    Scheduled jobs: per job its highest fencing token, the scheduled time
    done up to, whether it is paused; its manual runs to do; its recent
    runs, numbered by C{seq} within the job.
    """
    conn.execute(
        """
        CREATE TABLE jobs (
            name TEXT PRIMARY KEY,
            token INTEGER NOT NULL DEFAULT 0,
            last_scheduled REAL,
            paused INTEGER NOT NULL DEFAULT 0,
            seq INTEGER NOT NULL DEFAULT 0
        ) WITHOUT ROWID
        """
    )
    conn.execute(
        """
        CREATE TABLE job_triggers (
            name TEXT NOT NULL,
            run_id TEXT NOT NULL,
            requested REAL NOT NULL,
            PRIMARY KEY (name, run_id)
        ) WITHOUT ROWID
        """
    )
    conn.execute(
        """
        CREATE TABLE job_runs (
            name TEXT NOT NULL,
            run_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            scheduled REAL,
            token INTEGER NOT NULL,
            started REAL NOT NULL,
            finished REAL NOT NULL,
            outcome TEXT NOT NULL,
            PRIMARY KEY (name, run_id)
        ) WITHOUT ROWID
        """
    )
    conn.execute("CREATE INDEX job_runs_by_seq ON job_runs (name, seq)")


def _ensure(conn, name: str) -> None:
    conn.execute("INSERT OR IGNORE INTO jobs (name) VALUES (?)", (name,))


def _fence(conn, name: str, token: int) -> None:
    """Raise L{StaleToken} if C{token} is below the job's highest; else make it the highest."""
    _ensure(conn, name)
    (current,) = conn.execute("SELECT token FROM jobs WHERE name = ?", (name,)).fetchone()
    if token < current:
        raise StaleToken(name, token, current)
    conn.execute("UPDATE jobs SET token = ? WHERE name = ?", (token, name))


def _state(conn, name: str) -> JobState | None:
    row = conn.execute(
        "SELECT token, last_scheduled, paused FROM jobs WHERE name = ?", (name,)
    ).fetchone()
    if row is None:
        return None
    triggers = [
        r[0]
        for r in conn.execute(
            "SELECT run_id FROM job_triggers WHERE name = ? ORDER BY requested, run_id", (name,)
        )
    ]
    last = conn.execute(
        f"SELECT {RUN_COLUMNS} FROM job_runs WHERE name = ? ORDER BY seq DESC LIMIT 1", (name,)
    ).fetchone()
    return JobState(
        name, row[0], row[1], bool(row[2]), triggers, None if last is None else JobRun(*last)
    )


def _claim(conn, name, token, now):
    conn.execute("BEGIN IMMEDIATE")
    _fence(conn, name, token)
    conn.execute(
        "UPDATE jobs SET last_scheduled = ? WHERE name = ? AND last_scheduled IS NULL", (now, name)
    )
    return _state(conn, name)


def _skip(conn, name, token, upto):
    conn.execute("BEGIN IMMEDIATE")
    _fence(conn, name, token)
    conn.execute(
        "UPDATE jobs SET last_scheduled = ? WHERE name = ? "
        "AND (last_scheduled IS NULL OR last_scheduled < ?)",
        (upto, name, upto),
    )


def _record(conn, name, token, run: JobRun, keep):
    conn.execute("BEGIN IMMEDIATE")
    _fence(conn, name, token)
    found = conn.execute(
        "SELECT 1 FROM job_runs WHERE name = ? AND run_id = ?", (name, run.id)
    ).fetchone()
    if found is not None:
        return False
    (seq,) = conn.execute(
        "UPDATE jobs SET seq = seq + 1 WHERE name = ? RETURNING seq", (name,)
    ).fetchone()
    conn.execute(
        f"INSERT INTO job_runs (name, seq, {RUN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (name, seq, run.id, run.scheduled, run.token, run.started, run.finished, run.outcome),
    )
    conn.execute("DELETE FROM job_runs WHERE name = ? AND seq <= ?", (name, seq - keep))
    if run.scheduled is None:
        conn.execute("DELETE FROM job_triggers WHERE name = ? AND run_id = ?", (name, run.id))
    else:
        conn.execute(
            "UPDATE jobs SET last_scheduled = ? WHERE name = ? "
            "AND (last_scheduled IS NULL OR last_scheduled < ?)",
            (run.scheduled, name, run.scheduled),
        )
    return True


def _pause(conn, name, paused):
    conn.execute("BEGIN IMMEDIATE")
    _ensure(conn, name)
    conn.execute("UPDATE jobs SET paused = ? WHERE name = ?", (int(paused), name))
    return _state(conn, name)


def _trigger(conn, name, run_id, now):
    conn.execute("BEGIN IMMEDIATE")
    _ensure(conn, name)
    (waiting,) = conn.execute(
        "SELECT COUNT(*) FROM job_triggers WHERE name = ?", (name,)
    ).fetchone()
    if waiting >= MAX_TRIGGERS:
        raise StoreError(f"job {name!r} has {waiting} manual runs waiting already")
    conn.execute(
        "INSERT OR IGNORE INTO job_triggers (name, run_id, requested) VALUES (?, ?, ?)",
        (name, run_id, now),
    )


def _states(conn):
    names = [row[0] for row in conn.execute("SELECT name FROM jobs ORDER BY name")]
    return {name: _state(conn, name) for name in names}


def _runs(conn, name, limit):
    rows = conn.execute(
        f"SELECT {RUN_COLUMNS} FROM job_runs WHERE name = ? ORDER BY seq DESC LIMIT ?",
        (name, limit),
    ).fetchall()
    return [JobRun(*row) for row in reversed(rows)]


class SQLiteJobs:
    """The jobs methods of L{mmo.store.IStore}, for L{mmo.store.sqlite.SQLiteStore}."""

    def _jobs_call(self, check, function, *args):
        """C{function(conn, *args)} in the database thread, once C{check()} passed."""
        try:
            check()
        except StoreError as e:
            return defer.fail(e)
        return self._run(function, *args)

    def claim_job(self, name, token, now):
        def check():
            check_job(name), check_token(token), check_time(now, "now")

        return self._jobs_call(check, _claim, name, token, now)

    def skip_job_times(self, name, token, upto):
        def check():
            check_job(name), check_token(token), check_time(upto, "upto")

        return self._jobs_call(check, _skip, name, token, upto)

    def record_job_run(self, name, token, run, keep):
        def check():
            check_job(name), check_token(token), check_run(run), check_keep(keep)

        return self._jobs_call(check, _record, name, token, run, keep)

    def pause_job(self, name, paused):
        return self._jobs_call(lambda: check_job(name), _pause, name, bool(paused))

    def trigger_job(self, name, run_id):
        def check():
            check_job(name), check_run_id(run_id)

        return self._jobs_call(check, _trigger, name, run_id, self._clock.seconds())

    def job_state(self, name):
        return self._jobs_call(lambda: check_job(name), _state, name)

    def job_states(self):
        return self._run(_states)

    def job_runs(self, name, limit):
        def check():
            check_job(name), check_keep(limit)

        return self._jobs_call(check, _runs, name, limit)


# -- dump and restore: run by mmo.store.sqlite.SQLiteStore's in its transaction --


def dump_job_tables(conn) -> list[JobDump]:
    """Every job of the store, read in the caller's transaction."""
    jobs = []
    for name, token, last_scheduled, paused, seq in conn.execute(
        "SELECT name, token, last_scheduled, paused, seq FROM jobs ORDER BY name"
    ).fetchall():
        triggers = conn.execute(
            "SELECT run_id, requested FROM job_triggers WHERE name = ? ORDER BY requested, run_id",
            (name,),
        ).fetchall()
        runs = conn.execute(
            f"SELECT {RUN_COLUMNS} FROM job_runs WHERE name = ? ORDER BY seq", (name,)
        ).fetchall()
        jobs.append(
            JobDump(
                name,
                token,
                last_scheduled,
                bool(paused),
                seq,
                [tuple(trigger) for trigger in triggers],
                [JobRun(*run) for run in runs],
            )
        )
    return jobs


def restore_job_tables(conn, jobs: list[JobDump]) -> None:
    """Write checked jobs into the caller's transaction (the tables empty)."""
    conn.executemany(
        "INSERT INTO jobs (name, token, last_scheduled, paused, seq) VALUES (?, ?, ?, ?, ?)",
        [(j.name, j.token, j.last_scheduled, int(j.paused), j.seq) for j in jobs],
    )
    conn.executemany(
        "INSERT INTO job_triggers (name, run_id, requested) VALUES (?, ?, ?)",
        [(j.name, run_id, requested) for j in jobs for run_id, requested in j.triggers],
    )
    # A job's recent runs are the last numbers, up to its seq.
    conn.executemany(
        f"INSERT INTO job_runs (name, seq, {RUN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                j.name,
                j.seq - len(j.runs) + n,
                r.id,
                r.scheduled,
                r.token,
                r.started,
                r.finished,
                r.outcome,
            )
            for j in jobs
            for n, r in enumerate(j.runs, 1)
        ],
    )
