"""
L{JobRunner}: one job in one process.  It keeps trying to hold the job's
lease; while it holds it, it runs the job's due times and manual runs, one
at a time, each under the lease's fencing token, and records each in the
store (which refuses the record of a run whose lease was lost).
"""

from __future__ import annotations

import inspect

from twisted.internet import defer, task
from twisted.logger import Logger

from mmo.game.messages import job_lease_key
from mmo.jobs.job import Job, Run
from mmo.store.jobs import JobRun, JobState, StaleToken
from mmo.unavailable import BackendUnavailable

#: The most scheduled times one pass looks at: a job far behind (an
#: interval of a second after a week down) is worked through in passes.
PASS_LIMIT = 10_000


class JobRunner:
    """
    The leadership and runs of one job in this process.

    @ivar job: The L{Job}.
    @ivar holder: Who this process is on the lease (its name and a fresh
        id of this start: a process started again, or a successor taking
        over, is a new holder).
    @ivar token: The fencing token of the lease while held, else C{None}.
    @ivar config: The deployment's config, given to each L{Run}.
    """

    log = Logger()

    def __init__(self, job: Job, store, bus, holder: str, reactor, config=None):
        self.job = job
        self.store = store
        self.bus = bus
        self.config = config
        self.holder = holder
        self.reactor = reactor
        self.key = job_lease_key(job.name)
        self.token: int | None = None
        #: The reactor time until which the lease is surely held.
        self._held_until = 0.0
        #: Whether the store has been told of C{token} (L{IStore.claim_job}).
        self._claimed = False
        self._loop: task.LoopingCall | None = None
        self._timer = None
        self._working: defer.Deferred | None = None
        self._stopping = False
        #: The job's state as the last pass read it.
        self._state: JobState | None = None
        #: The scheduled time up to which the last pass ran or skipped.
        self._done_upto: float | None = None

    # -- life cycle ----------------------------------------------------------------

    def start(self) -> None:
        self._stopping = False
        self._loop = task.LoopingCall(self._renew)
        self._loop.clock = self.reactor
        self._loop.start(self.job.lease_ttl / 3, now=True)

    async def stop(self) -> None:
        """Stop taking runs, let the one under way end, give the lease up."""
        self._stopping = True
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._cancel_timer()
        if self._working is not None:
            await self._working
        if self.token is not None:
            self.token = None
            try:
                await self.bus.release_lease(self.key, self.holder)
            except BackendUnavailable as e:
                self.log.warn("job {job}: lease not released: {e}", job=self.job.name, e=e)

    # -- the lease ---------------------------------------------------------------------

    async def renew_for(self, token: int | None) -> bool:
        """
        Take or renew the lease now.  Whether this process holds it with
        C{token} (any token, if C{None}).
        """
        asked = self.reactor.seconds()
        try:
            got = await self.bus.lease(self.key, self.holder, self.job.lease_ttl)
        except BackendUnavailable as e:
            self.log.warn("job {job}: cannot renew its lease: {e}", job=self.job.name, e=e)
            got = self.token if asked < self._held_until else None
        else:
            if got is not None:
                self._held_until = asked + self.job.lease_ttl
        if got != self.token:
            if self.token is not None:
                self.log.warn(
                    "job {job}: lease lost (token {token})", job=self.job.name, token=self.token
                )
            if got is not None:
                self.log.info(
                    "job {job}: {holder} leads it (token {token})",
                    job=self.job.name,
                    holder=self.holder,
                    token=got,
                )
            self.token, self._claimed = got, False
        return got is not None and (token is None or got == token)

    def holds(self, token: int) -> bool:
        """Whether the lease is surely still held with C{token}, by what was last heard."""
        return token == self.token and self.reactor.seconds() < self._held_until

    def _renew(self) -> defer.Deferred:
        d = defer.ensureDeferred(self.renew_for(None))
        d.addCallback(lambda holding: self.kick() if holding else None)
        d.addErrback(lambda f: self.log.failure("job {job}: renewal", f, job=self.job.name))
        return d

    # -- runs ------------------------------------------------------------------------------

    def kick(self) -> None:
        """Run what is due, unless a pass is under way already."""
        if self._working is None and not self._stopping and self.token is not None:
            self._cancel_timer()
            self._working = defer.ensureDeferred(self._work())
            self._working.addErrback(
                lambda f: self.log.failure("job {job}: pass failed", f, job=self.job.name)
            )
            self._working.addBoth(self._worked)

    def _worked(self, _) -> None:
        self._working = None
        if not self._stopping and self.token is not None:
            self._arm_timer()

    async def _work(self) -> None:
        # Stays None unless the pass goes well: a pass that failed is not
        # tried again before the next renewal.
        self._done_upto = None
        token = self.token
        try:
            if not self._claimed:
                state = await self.store.claim_job(self.job.name, token, self.reactor.seconds())
                self._claimed = True
            else:
                state = await self.store.job_state(self.job.name)
        except StaleToken as e:
            self._lost(token, e)
            return
        except BackendUnavailable as e:
            self.log.warn("job {job}: store unavailable: {e}", job=self.job.name, e=e)
            return
        self._state = state
        if state.paused or state.last_scheduled is None:
            return
        for run_id in state.triggers:
            if not await self._run(Run(self.job, run_id, None, token, self)):
                return
        self._done_upto = state.last_scheduled
        await self._run_due(state, token)

    async def _run_due(self, state: JobState, token: int) -> None:
        job, now = self.job, self.reactor.seconds()
        due = job.schedule.times(state.last_scheduled, now, PASS_LIMIT)
        if job.misfire == "skip":
            late = [t for t in due if now - t > job.grace]
            due = due[len(late) :]
        else:
            late = due[: max(0, len(due) - job.max_catch_up)]
            due = due[len(late) :]
        if late:
            self.log.warn(
                "job {job}: {count} missed times skipped ({first} to {last}; misfire {policy})",
                job=job.name,
                count=len(late),
                first=job.run_id(late[0]),
                last=job.run_id(late[-1]),
                policy=job.misfire,
            )
            try:
                await self.store.skip_job_times(job.name, token, late[-1])
            except StaleToken as e:
                self._lost(token, e)
                self._done_upto = None
                return
            except BackendUnavailable as e:
                self.log.warn("job {job}: store unavailable: {e}", job=job.name, e=e)
                self._done_upto = None
                return
            self._done_upto = late[-1]
        for scheduled in due:
            if not await self._run(Run(job, job.run_id(scheduled), scheduled, token, self)):
                self._done_upto = None
                return
            self._done_upto = scheduled

    async def _run(self, run: Run) -> bool:
        """
        Run C{run} and record it.  Whether to go on with the next (the lease
        is held, the store took the record).
        """
        if self._stopping or not self.holds(run.token):
            return False
        started = self.reactor.seconds()
        outcome = "ok"
        try:
            result = self.job.handler(run)
            if inspect.isawaitable(result):
                await result
        except Exception as e:
            self.log.failure("job {job}: run {run} failed", job=self.job.name, run=run.id)
            outcome = f"error: {type(e).__name__}: {e}"[:500]
        record = JobRun(run.id, run.scheduled, run.token, started, self.reactor.seconds(), outcome)
        try:
            fresh = await self.store.record_job_run(
                self.job.name, run.token, record, self.job.history
            )
        except StaleToken as e:
            self._lost(run.token, e)
            return False
        except BackendUnavailable as e:
            # Not recorded: it runs again (same run id) once the store is back.
            self.log.warn(
                "job {job}: run {run} done but not recorded: {e}",
                job=self.job.name,
                run=run.id,
                e=e,
            )
            return False
        if not fresh:
            self.log.warn(
                "job {job}: run {run} was recorded already", job=self.job.name, run=run.id
            )
        self.log.info(
            "job {job}: run {run} {outcome} in {seconds:.3f} s",
            job=self.job.name,
            run=run.id,
            outcome=outcome,
            seconds=record.finished - record.started,
        )
        return True

    def _lost(self, token: int, error: StaleToken) -> None:
        self.log.warn(
            "job {job}: the store refused token {token} (a later leader took over): {e}",
            job=self.job.name,
            token=token,
            e=error,
        )
        if self.token == token:
            self.token, self._claimed = None, False

    # -- the timer of the next time ---------------------------------------------------------

    def _arm_timer(self) -> None:
        """
        Kick the next pass at the next time after the last one done: at
        once if it is due already (it came while a run ran, or a job far
        behind goes on), unless the lease's renewal comes first.
        """
        self._cancel_timer()
        if self._state is None or self._state.paused or self._done_upto is None:
            return
        now = self.reactor.seconds()
        following = self.job.schedule.next_after(self._done_upto)
        if following is not None and following - now < self.job.lease_ttl / 3:
            self._timer = self.reactor.callLater(max(0.0, following - now), self.kick)

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def next_time(self, state: JobState | None) -> float | None:
        """The next time the job is due by C{state} (C{None}: paused, or never again)."""
        if state is not None and state.paused:
            return None
        now = self.reactor.seconds()
        last = state.last_scheduled if state is not None else None
        if last is not None and last < now and self.job.misfire == "catch_up":
            return self.job.schedule.next_after(last)
        return self.job.schedule.next_after(now)
