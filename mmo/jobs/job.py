"""
A scheduled L{Job} and one L{Run} of it: what game code and the config
describe, and what a job's handler is given.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from mmo.schedules import Schedule, iso_time

#: The misfire policies: what becomes of the times a job missed.
MISFIRE_POLICIES = ("skip", "catch_up")

#: The longest job name (the store's bound too).
MAX_JOB_NAME = 64


@dataclass(frozen=True)
class Job:
    """
    A job: a name, when it runs and what it runs.

    @ivar name: Unique in the deployment: it names the job's lease, its
        state in the store and its runs.
    @ivar schedule: A L{Schedule} (L{mmo.schedules.parse_schedule}
        makes one from text).
    @ivar handler: C{async def handler(run)}, given the L{Run}.  What it
        raises is the run's outcome (logged, recorded); the run is not
        retried.
    @ivar misfire: C{"skip"}: a time more than C{grace} seconds past when
        its run could start is not run (the next one is); C{"catch_up"}:
        every missed time runs, in order, at most C{max_catch_up} of them
        (the oldest beyond that are skipped).
    @ivar grace: Seconds a run may start late and still count as on time.
    @ivar max_catch_up: The most missed times run at once under C{catch_up}.
    @ivar args: Free-form settings, given to the handler as C{run.args}.
    @ivar lease_ttl: Seconds the leader's lease lasts unrenewed: how long
        the job waits for a new leader when its leader dies.  Renewed
        every third of it.
    @ivar history: How many of its last runs the store keeps.
    @ivar commands: Control commands of the job's own (name -> handler, as
        L{mmo.process.control.ControlService.register} takes), answered by
        every process that runs the job: what its runs computed, read from
        the store (C{economy} for the money-supply metrics).
    """

    name: str
    schedule: Schedule
    handler: Callable[[Run], Awaitable[Any]]
    misfire: str = "skip"
    grace: float = 60.0
    max_catch_up: int = 100
    args: dict = field(default_factory=dict)
    lease_ttl: float = 10.0
    history: int = 1000
    commands: dict[str, Callable] = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.name, str) or not 0 < len(self.name) <= MAX_JOB_NAME:
            raise ValueError(f"a job name is 1 to {MAX_JOB_NAME} characters, got {self.name!r}")
        if not isinstance(self.schedule, Schedule):
            raise ValueError(f"job {self.name}: schedule must be a Schedule")
        if not callable(self.handler):
            raise ValueError(f"job {self.name}: the handler must be callable")
        if self.misfire not in MISFIRE_POLICIES:
            raise ValueError(f"job {self.name}: misfire must be one of {MISFIRE_POLICIES}")
        if self.grace < 0 or self.max_catch_up < 1 or self.lease_ttl <= 0 or self.history < 1:
            raise ValueError(
                f"job {self.name}: grace >= 0, max_catch_up >= 1, lease_ttl > 0, history >= 1"
            )

    def run_id(self, scheduled: float) -> str:
        """The id of the run of the scheduled time C{scheduled}: the same in every process."""
        return f"{self.name}@{iso_time(scheduled)}"

    def manual_run_id(self, now: float) -> str:
        """A fresh id for a run asked for at C{now} (C{mmo-admin jobs trigger})."""
        return f"{self.name}@manual-{iso_time(now)}-{uuid.uuid4().hex[:8]}"


class Run:
    """
    One run of a job, as its handler gets it.

    @ivar job: The L{Job}.
    @ivar id: The run id: the idempotency key of what the run does (an
        effect written twice under one run id must count once).
    @ivar scheduled: The scheduled time (Unix seconds), C{None} for a
        manual run.
    @ivar token: The fencing token of the lease the run holds: a write
        stamped with it is refused once another process took the lease.
    @ivar store: The process's store.
    @ivar bus: The process's bus.
    @ivar reactor: The process's reactor (its clock).
    @ivar config: The deployment's config (C{None} where the scheduler was
        given none, as in tests of the scheduler alone).
    """

    def __init__(self, job: Job, run_id: str, scheduled, token: int, runner):
        self.job = job
        self.id = run_id
        self.scheduled = scheduled
        self.token = token
        self.store = runner.store
        self.bus = runner.bus
        self.reactor = runner.reactor
        # A runner made by a game's own tests may not carry a config.
        self.config = getattr(runner, "config", None)
        self._runner = runner

    def __repr__(self) -> str:
        return f"<Run {self.id} token {self.token}>"

    @property
    def args(self) -> dict:
        """The job's C{args}."""
        return self.job.args

    async def held(self) -> bool:
        """
        Whether this run's lease is still held (renewed now, on the bus): a
        long handler checks it between steps and stops when it is not.
        The store refuses the run's record anyway once it is lost.
        """
        return await self._runner.renew_for(self.token)
