"""
L{Scheduler}: the jobs of one process, as a process resource (started
after the store, the bus and the services, stopped before them), with the
control commands C{mmo-admin jobs} reaches them by.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from twisted.internet import defer
from twisted.logger import Logger

from mmo.game.messages import job_lease_key
from mmo.jobs.job import Job
from mmo.jobs.runner import JobRunner
from mmo.schedules import iso_time
from mmo.store.jobs import JobState


class Scheduler:
    """
    Runs C{jobs} in this process: each job's L{JobRunner} contends for the
    job's lease with the other processes running it, and the holder runs
    it.

    @ivar runners: Job name -> its L{JobRunner}.
    @ivar holder: This process on the leases: its name and an id of this start.
    """

    log = Logger()

    def __init__(self, jobs: Iterable[Job], store, bus, process: str, reactor=None, config=None):
        if reactor is None:
            from twisted.internet import reactor
        self.store = store
        self.bus = bus
        self.reactor = reactor
        self.holder = f"{process}/{uuid.uuid4().hex[:8]}"
        self.runners: dict[str, JobRunner] = {}
        #: Control command -> the job that answers it (L{Job.commands}).
        self._commands: dict[str, Job] = {}
        for job in jobs:
            if job.name in self.runners:
                raise ValueError(f"two jobs are called {job.name!r}")
            for command in job.commands:
                taken = self._commands.get(command)
                if taken is not None or command.partition(".")[0] == "jobs":
                    by = f" (by job {taken.name})" if taken is not None else ""
                    raise ValueError(
                        f"job {job.name}: the control command {command!r} is taken{by}"
                    )
                self._commands[command] = job
            self.runners[job.name] = JobRunner(job, store, bus, self.holder, reactor, config)

    def __repr__(self) -> str:
        return f"<Scheduler {self.holder}: {', '.join(self.runners) or 'no jobs'}>"

    def start(self) -> None:
        for runner in self.runners.values():
            runner.start()

    def stop(self) -> defer.Deferred:
        return defer.gatherResults(
            [defer.ensureDeferred(runner.stop()) for runner in self.runners.values()],
            consumeErrors=True,
        )

    def runner(self, name: object) -> JobRunner:
        """
        The runner of job C{name}.

        @raise ValueError: No such job here (what a control command's caller is told).
        """
        runner = self.runners.get(name) if isinstance(name, str) else None
        if runner is None:
            raise ValueError(f"no job {name!r} here (jobs: {', '.join(self.runners) or 'none'})")
        return runner

    # -- what mmo-admin jobs asks ---------------------------------------------------------------

    async def describe(self) -> list[dict]:
        """The C{jobs} control command: every job of this process, with its state."""
        states = await self.store.job_states()
        found = []
        for name, runner in sorted(self.runners.items()):
            held = await self.bus.lease_holder(job_lease_key(name))
            found.append(describe(runner, states.get(name), held))
        return found

    async def pause(self, name: str) -> dict:
        """The C{jobs.pause} control command: hold the job's runs back, in every process."""
        runner = self.runner(name)
        state = await self.store.pause_job(name, True)
        return describe(runner, state, await self.bus.lease_holder(job_lease_key(name)))

    async def resume(self, name: str) -> dict:
        """The C{jobs.resume} control command: let them go again."""
        runner = self.runner(name)
        state = await self.store.pause_job(name, False)
        return describe(runner, state, await self.bus.lease_holder(job_lease_key(name)))

    async def trigger(self, name: str) -> dict:
        """
        The C{jobs.trigger} control command: one run now (at the leader's
        next pass, under its lease), with its own run id.
        """
        runner = self.runner(name)
        run_id = runner.job.manual_run_id(self.reactor.seconds())
        await self.store.trigger_job(name, run_id)
        runner.kick()
        return {"job": name, "run": run_id}

    def register(self, control) -> None:
        """
        Answer the jobs commands on C{control} (the process's
        L{ControlService}), and the jobs' own (L{Job.commands}).

        @raise ValueError: A job's command is one the process answers already.
        """
        control.register("jobs", self.describe)
        control.register("jobs.pause", self.pause)
        control.register("jobs.resume", self.resume)
        control.register("jobs.trigger", self.trigger)
        for command, job in self._commands.items():
            if command in control.handlers:
                raise ValueError(f"job {job.name}: the control command {command!r} is taken")
            control.register(command, job.commands[command])


def describe(runner: JobRunner, state: JobState | None, held) -> dict:
    """One job as C{mmo-admin jobs} shows it (JSON-able)."""
    job = runner.job
    last = state.last_run if state is not None else None
    following = runner.next_time(state)
    return {
        "name": job.name,
        "schedule": job.schedule.text,
        "misfire": job.misfire,
        "paused": bool(state is not None and state.paused),
        "last_run": None
        if last is None
        else {"id": last.id, "time": iso_time(last.started), "outcome": last.outcome},
        "next_run": None if following is None else iso_time(following),
        "waiting": list(state.triggers) if state is not None else [],
        "leader": held[0].partition("/")[0] if held else None,
        "token": held[1] if held else None,
    }
