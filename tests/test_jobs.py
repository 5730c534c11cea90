"""
Tests of L{mmo.jobs}: schedulers of several processes sharing one bus and
one store, on a L{task.Clock}: each time runs once, the lease moves on
when its holder stops answering and the store refuses the late record of
the run that lost it, the misfire policies after downtime, pause, resume
and manual runs, jobs from the config and from game services.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.trial import unittest

from mmo import config
from mmo.bus import BusError
from mmo.bus.memory import MemoryBus
from mmo.config import ConfigError
from mmo.jobs.build import add_scheduler, config_jobs
from mmo.jobs.job import Job
from mmo.jobs.scheduler import Scheduler
from mmo.schedules import Interval, iso_time
from mmo.zone.service import ZoneService
from tests.support import fake_clock_bus_store, sleep, write_config

#: Where the clock starts: a multiple of every interval below.
START = 1_800_000_000.0


class Partitioned(MemoryBus):
    """A process's view of a shared L{MemoryBus} that can be cut off from it."""

    def __init__(self, shared: MemoryBus):
        self.shared = shared
        self.cut = False

    def __getattr__(self, name):
        return getattr(self.shared, name)

    def lease(self, key, holder, ttl):
        if self.cut:
            return defer.fail(BusError("cut off"))
        return self.shared.lease(key, holder, ttl)


class Recorder:
    """A job handler that notes its runs; it waits on C{gate} if one is set."""

    def __init__(self):
        self.runs = []
        self.gate: defer.Deferred | None = None
        self.held = []

    async def __call__(self, run):
        self.runs.append(run)
        if self.gate is not None:
            await self.gate
            self.held.append(await run.held())


class SchedulerHarness:
    """Schedulers of processes sharing one bus and one store, on a L{task.Clock}."""

    async def setUp(self):
        self.clock, self.bus, self.store = await fake_clock_bus_store(self)
        self.clock.advance(START)
        self.schedulers = []

    def scheduler(self, *jobs, process="p1", bus=None) -> Scheduler:
        scheduler = Scheduler(jobs, self.store, bus or self.bus, process, self.clock)
        scheduler.start()
        self.schedulers.append(scheduler)
        self.addCleanup(self.stop, scheduler)
        return scheduler

    async def stop(self, scheduler):
        if scheduler in self.schedulers:
            self.schedulers.remove(scheduler)
            await scheduler.stop()

    def idle(self) -> bool:
        return not len(self.store.in_flight) and all(
            runner._working is None or getattr(runner.job.handler, "gate", None) is not None
            for s in self.schedulers
            for runner in s.runners.values()
        )

    async def settle(self):
        """Let the store's thread and what waits on it finish (a few idle turns in a row)."""
        from twisted.internet import reactor

        quiet = 0
        deadline = reactor.seconds() + 20
        while reactor.seconds() < deadline:
            await sleep(0.001 if quiet else 0)
            self.clock.advance(0)
            quiet = quiet + 1 if self.idle() else 0
            if quiet >= 3:
                return
        raise AssertionError("the schedulers did not settle")

    async def advance(self, seconds: float, step: float = 0.5):
        for _ in range(round(seconds / step)):
            self.clock.advance(step)
            await self.settle()

    def job(self, name="tick", every=10.0, **kwargs) -> Job:
        kwargs.setdefault("lease_ttl", 6.0)
        return Job(name, Interval(every), Recorder(), **kwargs)

    async def recorded(self, name="tick"):
        return [(r.id, r.scheduled, r.token) for r in await self.store.job_runs(name, 1000)]


class SchedulerTests(SchedulerHarness, unittest.TestCase):
    async def test_once_across_processes(self):
        """Three processes run one job: each time runs once, in order, by the lease's holder."""
        jobs = [self.job(), self.job(), self.job()]
        for n, job in enumerate(jobs):
            self.scheduler(job, process=f"p{n}")
        await self.advance(60)
        ran = [run.scheduled for job in jobs for run in job.handler.runs]
        expected = [START + 10 * n for n in range(1, 7)]
        self.assertEqual(sorted(ran), expected)
        self.assertEqual([len(job.handler.runs) > 0 for job in jobs].count(True), 1)
        self.assertEqual([r[1] for r in await self.recorded()], expected)
        self.assertEqual(
            [r[0] for r in await self.recorded()], [f"tick@{iso_time(t)}" for t in expected]
        )

    async def test_leader_dies(self):
        """A leader that stops renewing loses the job to another after the lease's term."""
        first, second = self.job(), self.job()
        cut = Partitioned(self.bus)
        self.scheduler(first, process="p1", bus=cut)
        await self.settle()
        self.scheduler(second, process="p2")
        await self.advance(20)
        self.assertEqual(len(first.handler.runs), 2)
        cut.cut = True
        await self.advance(30)
        self.assertEqual([r.scheduled for r in first.handler.runs], [START + 10, START + 20])
        # No time was lost: 30 ran late, within the grace period.
        self.assertEqual(
            [r.scheduled for r in second.handler.runs], [START + 30, START + 40, START + 50]
        )
        tokens = {token for _, _, token in await self.recorded()}
        self.assertEqual(len(tokens), 2)

    async def test_lease_lost_mid_run(self):
        """
        The run of a leader cut off mid-run is run again by the next leader
        (same run id); the first one's record, coming late, is refused, and
        it sees its lease is not held.
        """
        first, second = self.job(), self.job()
        cut = Partitioned(self.bus)
        gate = first.handler.gate = defer.Deferred()
        self.addCleanup(lambda: gate.called or gate.callback(None))
        self.scheduler(first, process="p1", bus=cut)
        await self.settle()
        self.scheduler(second, process="p2")
        await self.advance(10)
        self.assertEqual([r.id for r in first.handler.runs], [first.run_id(START + 10)])
        cut.cut = True
        await self.advance(10)
        self.assertEqual(
            [r.id for r in second.handler.runs],
            [first.run_id(START + 10), first.run_id(START + 20)],
        )
        stale, fresh = first.handler.runs[0].token, second.handler.runs[0].token
        self.assertGreater(fresh, stale)
        cut.cut = False
        gate.callback(None)
        await self.settle()
        self.assertEqual(first.handler.held, [False])
        self.assertEqual(
            await self.recorded(),
            [
                (first.run_id(START + 10), START + 10, fresh),
                (first.run_id(START + 20), START + 20, fresh),
            ],
        )
        # The refused holder let go of its token.
        runner = self.schedulers[0].runners["tick"]
        self.assertIsNone(runner.token)

    async def test_skip_after_downtime(self):
        """skip: times missed past the grace period are not run; the next ones are."""
        job = self.job(misfire="skip", grace=15)
        scheduler = self.scheduler(job)
        await self.advance(10)
        await self.stop(scheduler)
        self.clock.advance(100)  # nobody runs it: 20 ... 110 missed
        again = self.job(misfire="skip", grace=15)
        self.scheduler(again)
        await self.advance(10)
        # At 110 on restart: 100 and 110 within 15 s; 20..90 skipped.
        self.assertEqual(
            [r.scheduled for r in again.handler.runs], [START + 100, START + 110, START + 120]
        )
        state = await self.store.job_state("tick")
        self.assertEqual(state.last_scheduled, START + 120)
        self.assertEqual(len(await self.recorded()), 4)

    async def test_catch_up_after_downtime(self):
        """catch_up: every missed time runs, in order, the oldest beyond the bound skipped."""
        job = self.job(misfire="catch_up", max_catch_up=5)
        scheduler = self.scheduler(job)
        await self.advance(10)
        await self.stop(scheduler)
        self.clock.advance(100)
        again = self.job(misfire="catch_up", max_catch_up=5)
        self.scheduler(again)
        await self.settle()
        self.assertEqual(
            [r.scheduled for r in again.handler.runs], [START + 10 * n for n in range(7, 12)]
        )
        unbounded = self.job("all", misfire="catch_up", max_catch_up=1000)
        self.scheduler(unbounded)
        await self.advance(10)
        await self.stop(self.schedulers[-1])
        self.clock.advance(95)
        later = self.job("all", misfire="catch_up", max_catch_up=1000)
        self.scheduler(later)
        await self.advance(5)
        self.assertEqual(
            [r.scheduled for r in unbounded.handler.runs + later.handler.runs],
            [START + 110 + 10 * n for n in range(1, 12)],
        )

    async def test_pause_resume_trigger(self):
        """Paused, a job runs nothing in any process; a trigger runs once, with its own id."""
        first, second = self.job(), self.job()
        one = self.scheduler(first, process="p1")
        two = self.scheduler(second, process="p2")
        await self.settle()
        described = await two.pause("tick")
        self.assertTrue(described["paused"])
        self.assertIsNone(described["next_run"])
        await self.advance(30)
        self.assertEqual(first.handler.runs + second.handler.runs, [])
        await one.resume("tick")
        await self.advance(10)
        # Missed while paused: the grace period (60 s) keeps them.
        ran = [r.scheduled for r in first.handler.runs + second.handler.runs]
        self.assertEqual(ran, [START + 10 * n for n in range(1, 5)])
        answer = await two.trigger("tick")
        await self.advance(2)
        manual = [r for r in first.handler.runs + second.handler.runs if r.scheduled is None]
        self.assertEqual([r.id for r in manual], [answer["run"]])
        self.assertIn("@manual-", answer["run"])
        state = await self.store.job_state("tick")
        self.assertEqual((state.triggers, state.last_scheduled), ([], START + 40))
        with self.assertRaises(ValueError):
            await one.trigger("nope")

    async def test_describe(self):
        job = self.job()
        scheduler = self.scheduler(job, process="zone-1")
        await self.advance(10)
        (row,) = await scheduler.describe()
        self.assertEqual(row["name"], "tick")
        self.assertEqual(row["schedule"], "every 10s")
        self.assertEqual(row["leader"], "zone-1")
        self.assertEqual(row["last_run"]["id"], job.run_id(START + 10))
        self.assertEqual(row["last_run"]["outcome"], "ok")
        self.assertEqual(row["next_run"], iso_time(START + 20))

    async def test_failing_handler(self):
        """A handler that raises: its outcome is recorded, the next time runs."""
        calls = []

        async def broken(run):
            calls.append(run.id)
            raise RuntimeError("boom")

        self.scheduler(Job("broken", Interval(10), broken, lease_ttl=6))
        await self.advance(20)
        self.assertEqual(len(calls), 2)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)
        runs = await self.store.job_runs("broken", 10)
        self.assertEqual([r.outcome for r in runs], ["error: RuntimeError: boom"] * 2)

    async def test_stop_releases(self):
        """A stopping scheduler gives its leases up: another takes the job at once."""
        first, second = self.job(), self.job()
        one = self.scheduler(first, process="p1")
        await self.settle()
        self.scheduler(second, process="p2")
        await self.settle()
        await self.stop(one)
        await self.advance(2.5)
        self.assertEqual((await self.bus.lease_holder("job:tick"))[0].partition("/")[0], "p2")


async def noted(run):
    """A handler named in the configs below."""


class FromConfigTests(unittest.TestCase):
    PROCESSES = '[processes.lobby]\nkind = "lobby"\n[processes.zone-1]\nkind = "zone"\n'

    def load(self, jobs: str):
        return config.load(write_config(self, jobs + self.PROCESSES))

    def test_jobs_of_a_kind(self):
        conf = self.load(
            '[jobs.daily]\nschedule = "0 4 * * *"\nhandler = "tests.test_jobs:noted"\n'
            '[jobs.fast]\nschedule = 2.5\nhandler = "tests.test_jobs:noted"\nkind = "zone"\n'
            'misfire = "catch_up"\nmax_catch_up = 7\nlease = 3\nargs = {reward = 5}\n'
        )
        (daily,) = config_jobs(conf, "lobby")
        self.assertEqual(
            (daily.name, daily.schedule.text, daily.misfire), ("daily", "0 4 * * *", "skip")
        )
        self.assertIs(daily.handler, noted)
        (fast,) = config_jobs(conf, "zone")
        self.assertEqual((fast.max_catch_up, fast.lease_ttl, fast.args), (7, 3.0, {"reward": 5}))
        self.assertEqual(len(config_jobs(conf, None)), 2)
        self.assertEqual(config_jobs(conf, "chat"), [])

    def test_errors(self):
        cases = {
            '[jobs.x]\nschedule = "every now"\nhandler = "a:b"\n': "jobs.x.schedule",
            '[jobs.x]\nschedule = 5\nhandler = "nope"\n': "jobs.x.handler",
            '[jobs.x]\nschedule = 5\nhandler = "a:b"\nmisfire = "later"\n': "jobs.x.misfire",
            '[jobs.x]\nschedule = 5\nhandler = "a:b"\nkind = "gateway"\n': "jobs.x.kind",
            '[jobs.x]\nschedule = 5\nhandler = "a:b"\nevery = 3\n': "jobs.x.every",
            '[jobs.Bad]\nschedule = 5\nhandler = "a:b"\n': "jobs.Bad",
        }
        for text, key in cases.items():
            with self.assertRaises(ConfigError, msg=text) as caught:
                self.load(text)
            self.assertIn(f": {key}:", str(caught.exception))

    def test_handler_errors_at_start(self):
        """A handler that cannot be imported, or a kind nobody runs, fails at start."""
        for text, why in [
            ('handler = "tests.no_such_module:f"\n', "cannot import tests.no_such_module"),
            ('handler = "tests.test_jobs:missing"\n', "has no function 'missing'"),
            ('handler = "tests.test_jobs:noted"\nkind = "chat"\n', "no process of kind 'chat'"),
        ]:
            conf = self.load(f"[jobs.x]\nschedule = 5\n{text}")
            with self.assertRaises(ConfigError) as caught:
                config_jobs(conf, "lobby")
            self.assertIn(conf.file, str(caught.exception))
            self.assertIn(why, str(caught.exception))


class ServiceJobsTests(unittest.TestCase):
    async def test_service_jobs_and_config_jobs(self):
        """A process runs its kind's config jobs and its services' jobs; names are unique."""
        from mmo.game.service import GameService
        from mmo.process.service import ProcessService

        clock, bus, store = await fake_clock_bus_store(self)
        conf = config.load(
            write_config(
                self,
                '[jobs.daily]\nschedule = "@daily"\nhandler = "tests.test_jobs:noted"\n'
                '[processes.lobby]\nkind = "lobby"\n',
            )
        )

        class Seasonal(GameService):
            kind = "lobby"

            def jobs(self):
                return [Job("rollover", Interval(3600), noted, misfire="catch_up")]

        top = ProcessService(conf, conf.processes["lobby"], clock)
        service = Seasonal(conf, store, bus, clock)
        scheduler = add_scheduler(
            top, conf, store, bus, [service, Seasonal(conf, store, bus, clock)], clock, "lobby"
        )
        self.assertEqual(sorted(scheduler.runners), ["daily", "rollover"])
        self.assertIs(top.resources[-1], scheduler)
        self.assertIn("jobs.trigger", top.control.handlers)

        class Clashing(GameService):
            def jobs(self):
                return [Job("daily", Interval(5), noted)]

        with self.assertRaises(ConfigError) as caught:
            add_scheduler(
                top, conf, store, bus, [Clashing(conf, store, bus, clock)], clock, "lobby"
            )
        self.assertIn("two jobs are called 'daily'", str(caught.exception))


class JobCommandsTests(unittest.TestCase):
    async def test_commands(self):
        """
        A job's own control commands are answered where it runs, and a
        command taken (by another job, the scheduler or the process) fails
        the start.
        """
        from mmo.process.service import ProcessService

        clock, bus, store = await fake_clock_bus_store(self)
        conf = config.load(write_config(self, '[processes.lobby]\nkind = "lobby"\n'))

        def job(name, *commands):
            return Job(name, Interval(60), noted, commands={c: lambda: name for c in commands})

        top = ProcessService(conf, conf.processes["lobby"], clock)
        add_scheduler(top, conf, store, bus, [_Jobs([job("a", "figures")])], clock, "lobby")
        self.assertEqual(top.control.handlers["figures"](), "a")
        for jobs, why in [
            ([job("a", "figures"), job("b", "figures")], "'figures' is taken (by job a)"),
            ([job("a", "jobs.list")], "'jobs.list' is taken"),
            ([job("a", "status")], "'status' is taken"),
        ]:
            top = ProcessService(conf, conf.processes["lobby"], clock)
            with self.assertRaises(ConfigError) as caught:
                add_scheduler(top, conf, store, bus, [_Jobs(jobs)], clock, "lobby")
            self.assertIn(why, str(caught.exception))


class _Jobs:
    """A service of C{jobs}."""

    def __init__(self, jobs):
        self._jobs = jobs

    def jobs(self):
        return self._jobs


class AdminTests(unittest.TestCase):
    """C{mmo-admin jobs}: the manager asks the processes, through their control channels."""

    async def test_list_pause_trigger(self):
        from twisted.internet import reactor

        from mmo.manager.admin import _parser
        from mmo.manager.formats import format_jobs
        from mmo.manager.service import Manager, ManagerError
        from mmo.process.control import ControlService
        from tests.test_manager import CLUSTER, supervisor

        _, bus, store = await fake_clock_bus_store(self)
        bus = MemoryBus(reactor)
        conf = config.load(write_config(self, CLUSTER))
        controls = []
        for name, kind in [("lobby", "lobby"), ("zone-1", "zone"), ("gateway-1", "gateway")]:
            await bus.announce(name, {"kind": kind}, 60)
            if kind == "gateway":
                continue
            control = ControlService(bus, name)
            jobs = [Job("daily", Interval(86400), noted)]
            if kind == "zone":
                jobs.append(Job("hourly", Interval(3600), noted))
            scheduler = Scheduler(jobs, store, bus, name, reactor)
            scheduler.register(control)
            await control.start()
            controls.append(control)
            self.addCleanup(control.stop)
        sup, _ = supervisor(("lobby", "lobby"))
        manager = Manager(conf, conf.processes["manager"], bus, sup, reactor)

        listed = await manager.run("jobs", {})
        self.assertEqual([job["name"] for job in listed["jobs"]], ["daily", "hourly"])
        self.assertEqual(listed["jobs"][0]["processes"], ["lobby", "zone-1"])
        self.assertEqual(listed["jobs"][1]["processes"], ["zone-1"])
        self.assertEqual(listed["jobs"][0]["kinds"], ["lobby", "zone"])
        self.assertEqual(listed["errors"], {})
        table = format_jobs(listed)
        self.assertIn("every 86400s", table.splitlines()[1])
        self.assertIn("lobby,zone", table.splitlines()[1])

        paused = await manager.run("jobs", {"action": "pause", "name": "hourly"})
        self.assertTrue(paused["paused"])
        self.assertTrue((await store.job_state("hourly")).paused)
        await manager.run("jobs", {"action": "resume", "name": "hourly"})
        self.assertFalse((await store.job_state("hourly")).paused)
        triggered = await manager.run("jobs", {"action": "trigger", "name": "daily"})
        self.assertEqual((await store.job_state("daily")).triggers, [triggered["run"]])

        for args, why in [
            ({"action": "pause", "name": "weekly"}, "no process runs a job 'weekly'"),
            ({"action": "pause"}, "name the job"),
            ({"action": "explode", "name": "daily"}, "no action 'explode'"),
        ]:
            with self.assertRaises(ManagerError) as caught:
                await manager.run("jobs", args)
            self.assertIn(why, str(caught.exception))

        parsed = _parser().parse_args(["--config", "x", "jobs", "trigger", "daily"])
        self.assertEqual((parsed.command, parsed.action, parsed.name), ("jobs", "trigger", "daily"))
        self.assertEqual(_parser().parse_args(["-c", "x", "jobs"]).action, "list")


class JobZone(ZoneService):
    """A game's zone with a job per deployment and a job per zone; C{ran} notes their runs."""

    ran: list = []

    def jobs(self):
        return [
            Job("zone.daily", Interval(10), self.noted, lease_ttl=6.0),
            Job(f"zone.spawn.{self.name}", Interval(10), self.noted, lease_ttl=6.0),
        ]

    async def noted(self, run):
        self.ran.append((run.job.name, self.name, run.scheduled))


ZONE_CLUSTER = """
[processes.zone-1]
kind = "zone"
rpc = "tcp:0"

[processes.zone-2]
kind = "zone"
rpc = "tcp:0"

[world]
width = 300.0
height = 100.0
columns = 3
rows = 1
zones = ["zone-1", "zone-1", "zone-2"]
zone_class = "tests.test_jobs.JobZone"
"""


class ZoneJobsTests(SchedulerHarness, unittest.TestCase):
    async def test_zone_jobs_in_a_cluster(self):
        """
        Each zone process runs its zones' jobs (as an mmo-zone process
        builds its scheduler): a job every zone names runs once per time in
        the deployment, a job named after its region in that region's process.
        """
        from mmo.process.service import ProcessService
        from mmo.zone.host import ZoneHost

        conf = config.load(write_config(self, ZONE_CLUSTER))
        JobZone.ran = ran = []
        runners = {}
        for name in ("zone-1", "zone-2"):
            top = ProcessService(conf, conf.processes[name], self.clock)
            host = ZoneHost(conf, self.store, self.bus, self.clock, name)
            scheduler = add_scheduler(top, conf, self.store, self.bus, [host], self.clock, "zone")
            scheduler.start()
            self.schedulers.append(scheduler)
            self.addCleanup(self.stop, scheduler)
            runners[name] = sorted(scheduler.runners)
        self.assertEqual(
            runners,
            {
                "zone-1": ["zone.daily", "zone.spawn.r0c0", "zone.spawn.r0c1"],
                "zone-2": ["zone.daily", "zone.spawn.r0c2"],
            },
        )
        await self.advance(30)
        times = [START + 10, START + 20, START + 30]
        daily = [(when, zone) for job, zone, when in ran if job == "zone.daily"]
        self.assertEqual([when for when, _ in sorted(daily)], times)
        self.assertEqual(len({zone for _, zone in daily}), 1)
        for zone in ("r0c0", "r0c1", "r0c2"):
            self.assertEqual(
                sorted((z, when) for job, z, when in ran if job == f"zone.spawn.{zone}"),
                [(zone, when) for when in times],
            )
