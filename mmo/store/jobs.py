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

from mmo.store import StoreError, read_dump_part, read_fields

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


# -- dump and restore (the "jobs" of mmo.store.IStore.dump) -----------------------


@dataclass(frozen=True)
class JobDump:
    """
    Everything a store holds of one job, as a dump carries it.

    @ivar seq: The number of its last run recorded (its recent runs are
        the last numbers, up to this one).
    @ivar triggers: C{(run id, time asked)} of its manual runs to do, oldest first.
    @ivar runs: Its recent runs, oldest first (the last is its C{last_run}).
    """

    name: str
    token: int
    last_scheduled: float | None
    paused: bool
    seq: int
    triggers: list[tuple[str, float]]
    runs: list[JobRun]

    def as_dict(self) -> dict:
        """The job as an entry of a dump's C{"jobs"}."""
        return {
            "name": self.name,
            "token": self.token,
            "last_scheduled": self.last_scheduled,
            "paused": self.paused,
            "seq": self.seq,
            "triggers": [
                {"run_id": run_id, "requested": requested} for run_id, requested in self.triggers
            ],
            "runs": [asdict(run) for run in self.runs],
        }


def dump_jobs(jobs: list[JobDump]) -> dict:
    """The C{"jobs"} part of a dump, by name; C{{}} when there is none."""
    found = [job.as_dict() for job in sorted(jobs, key=lambda job: job.name)]
    return {"jobs": found} if found else {}


_JOB_FIELDS = ("name", "token", "last_scheduled", "paused", "seq", "triggers", "runs")
_RUN_FIELDS = ("id", "scheduled", "token", "started", "finished", "outcome")


def read_dump_jobs(data: dict) -> list[JobDump]:
    """
    The jobs of a dump, checked completely before anything is written; a
    dump without C{"jobs"} has none.

    @raise StoreError: What is wrong, and where.
    """
    return read_dump_part(data, "jobs", "job", _read_job)


def _read_job(entry: object) -> JobDump:
    entry = read_fields(entry, _JOB_FIELDS, "a job")
    name = check_job(entry["name"])
    token, seq = entry["token"], entry["seq"]
    if isinstance(token, bool) or not isinstance(token, int) or token < 0:
        raise StoreError(f"token must be an integer from 0, got {token!r}")
    last_scheduled = entry["last_scheduled"]
    if last_scheduled is not None:
        last_scheduled = check_time(last_scheduled, "last_scheduled")
    if not isinstance(entry["paused"], bool):
        raise StoreError("paused must be true or false")
    if not isinstance(entry["triggers"], list) or len(entry["triggers"]) > MAX_TRIGGERS:
        raise StoreError(f"triggers must be a list of at most {MAX_TRIGGERS}")
    triggers = []
    for j, trigger in enumerate(entry["triggers"]):
        trigger = read_fields(trigger, ("run_id", "requested"), f"triggers[{j}]")
        triggers.append(
            (check_run_id(trigger["run_id"]), check_time(trigger["requested"], "requested"))
        )
    if len({run_id for run_id, _ in triggers}) != len(triggers):
        raise StoreError("a manual run is asked for twice")
    if not isinstance(entry["runs"], list):
        raise StoreError("runs is not a list")
    runs = [
        check_run(JobRun(**read_fields(run, _RUN_FIELDS, f"runs[{j}]")))
        for j, run in enumerate(entry["runs"])
    ]
    if len({run.id for run in runs}) != len(runs):
        raise StoreError("two runs have the same id")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < len(runs):
        raise StoreError(f"seq must be an integer from the number of runs, got {seq!r}")
    return JobDump(name, token, last_scheduled, entry["paused"], seq, triggers, runs)
