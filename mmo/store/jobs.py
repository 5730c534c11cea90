"""
The durable state of scheduled jobs (L{mmo.jobs}), shared by both
backends (L{mmo.store.sqlite_jobs}, L{mmo.store.redis_jobs}): the records,
their checks, and L{StaleToken}, what a write with a lease's stale fencing
token gets.

Per job the store keeps the highest fencing token it has seen, the last
scheduled time done (run or skipped), whether the job is paused, the
manual runs asked for and not run yet, and its recent runs, keyed by run
id.  Every write of a run checks the token and changes all of that in one
atomic step, so a run whose leader lost its lease records nothing.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import msgpack

from mmo.store import StoreError

#: The most manual runs of one job that may wait for its leader at once.
MAX_TRIGGERS = 16

#: The longest job name, run id and outcome.
MAX_NAME = 64
MAX_RUN_ID = 160
MAX_OUTCOME = 500


class StaleToken(StoreError):
    """
    A job's write carried a fencing token lower than one the store has
    seen: its lease has been taken by another holder since, and the write
    was refused (nothing of it was done).

    @ivar token: The refused token.
    @ivar current: The highest token the store has seen for the job.
    """

    def __init__(self, job: str, token: int, current: int):
        super().__init__(
            f"job {job!r}: fencing token {token} is stale (the store has seen {current})"
        )
        self.token = token
        self.current = current


@dataclass(frozen=True)
class JobRun:
    """
    One run of a job, as recorded when it ended.

    @ivar id: The run id: C{NAME@TIME} for a scheduled run (its scheduled
        time, ISO 8601 UTC), C{NAME@manual-...} for a triggered one.
    @ivar scheduled: Its scheduled time (Unix seconds), C{None} if triggered.
    @ivar token: The fencing token of the lease it ran under.
    @ivar started: When its handler was called.
    @ivar finished: When it returned or raised.
    @ivar outcome: C{"ok"}, or C{"error: ..."} with what the handler raised.
    """

    id: str
    scheduled: float | None
    token: int
    started: float
    finished: float
    outcome: str = "ok"

    def pack(self) -> bytes:
        return msgpack.packb(asdict(self), use_bin_type=True)

    @classmethod
    def unpack(cls, data: bytes) -> JobRun:
        return cls(**msgpack.unpackb(data, raw=False))


@dataclass
class JobState:
    """
    What the store holds of one job.

    @ivar name: The job's name.
    @ivar token: The highest fencing token seen (0: none yet).
    @ivar last_scheduled: The scheduled time up to which every time is done
        (run, or skipped by the misfire policy); C{None} before the job's
        first leader claimed it.
    @ivar paused: Whether runs are held back.
    @ivar triggers: Ids of the manual runs asked for and not run yet, oldest first.
    @ivar last_run: The last run recorded, if any.
    """

    name: str
    token: int = 0
    last_scheduled: float | None = None
    paused: bool = False
    triggers: list[str] = field(default_factory=list)
    last_run: JobRun | None = None


def check_job(name: object) -> str:
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME:
        raise StoreError(f"a job name is a string of 1 to {MAX_NAME} characters, got {name!r}")
    return name


def check_token(token: object) -> int:
    if isinstance(token, bool) or not isinstance(token, int) or token < 1:
        raise StoreError(f"a fencing token is a positive integer, got {token!r}")
    return token


def check_time(when: object, what: str) -> float:
    if isinstance(when, bool) or not isinstance(when, (int, float)) or not math.isfinite(when):
        raise StoreError(f"{what} must be a time in seconds, got {when!r}")
    return float(when)


def check_run_id(run_id: object) -> str:
    if not isinstance(run_id, str) or not 0 < len(run_id) <= MAX_RUN_ID:
        raise StoreError(f"a run id is a string of 1 to {MAX_RUN_ID} characters, got {run_id!r}")
    return run_id


def check_run(run: object) -> JobRun:
    if not isinstance(run, JobRun):
        raise StoreError(f"a run is a JobRun, got {type(run).__name__}")
    check_run_id(run.id)
    check_token(run.token)
    if run.scheduled is not None:
        check_time(run.scheduled, "a scheduled time")
    check_time(run.started, "a start time")
    check_time(run.finished, "an end time")
    if not isinstance(run.outcome, str) or len(run.outcome) > MAX_OUTCOME:
        raise StoreError(f"an outcome is a string of at most {MAX_OUTCOME} characters")
    return run


def check_keep(keep: object) -> int:
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise StoreError(f"keep must be a positive integer, got {keep!r}")
    return keep
