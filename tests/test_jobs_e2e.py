"""
Scheduled jobs with real processes: three C{twistd mmo-lobby} processes
on a private redis-server run one interval job (every half second, catch
up, each run lasting a fifth of a second); the leader of its lease is
SIGKILLed at random moments (seeded) and started again, or stalled
(SIGSTOP) past its lease's term and let go on, many times.  Then: every
scheduled time from the first to the last ran (none lost) and was
recorded once; a time run again (its leader died or stalled before
recording it) ran again only under a newer lease.
"""

from __future__ import annotations

import os
import random
import signal

from twisted.internet import reactor
from twisted.trial import unittest

from mmo.bus.redis import RedisBus
from mmo.game.messages import job_lease_key
from mmo.schedules import Interval
from mmo.store.redis import RedisStore
from tests.redis import redis_config_text, start_redis
from tests.support import deployment, process_tables, sleep, until
from tests.test_cluster import SETTINGS
from tests.test_twistd import spawn

#: The job's interval, seconds.
EVERY = 0.5

#: Seconds the leaders are killed over.
KILLING = 20.0

JOB = f"""
[jobs.crash]
schedule = "every {EVERY}s"
handler = "mmo.jobs.handlers:record_run"
kind = "lobby"
misfire = "catch_up"
max_catch_up = 1000
lease = 1.5
args = {{log = "crash-runs", keep = 100000, seconds = 0.2}}
"""

LOBBIES = ("lobby-1", "lobby-2", "lobby-3")


class LeaderKillTests(unittest.TestCase):
    timeout = 120

    async def test_leader_killed_many_times(self):
        seed = int(os.environ.get("MMO_JOBS_SEED", random.randrange(2**32)))
        chance = random.Random(seed)
        print(f"\nseed {seed} (MMO_JOBS_SEED={seed} to run it again)")
        server = start_redis(self)
        conf = deployment(
            self,
            process_tables(*[(name, "lobby") for name in LOBBIES]),
            extra=SETTINGS + JOB + redis_config_text(server),
        )
        bus = RedisBus(conf, reactor=reactor)
        await bus.start()
        self.addCleanup(bus.stop)
        store = RedisStore(conf, reactor=reactor)
        await store.start()
        self.addCleanup(store.stop)

        running = {}
        outputs = []

        def start(name):
            child, transport = spawn(self, conf.file, "mmo-lobby", "--process", name)
            running[name] = (child, transport)
            outputs.append(child)
            return child

        for name in LOBBIES:
            start(name)
        for name in LOBBIES:
            await running[name][0].whenLogged(rf"{name}: ready")

        kills = stalls = 0
        deadline = reactor.seconds() + KILLING
        while reactor.seconds() < deadline:
            await sleep(chance.uniform(0.3, 2.0))
            held = await bus.lease_holder(job_lease_key("crash"))
            if held is None:
                continue
            name = held[0].partition("/")[0]
            child, transport = running[name]
            if child.done:
                continue
            if chance.random() < 0.25:
                # Stalled past its lease's term, then back: by then another
                # leads, and what it still had to record is refused.
                transport.signalProcess(signal.SIGSTOP)
                await sleep(chance.uniform(2.0, 3.0))
                transport.signalProcess(signal.SIGCONT)
                stalls += 1
                continue
            transport.signalProcess(signal.SIGKILL)
            await child.whenExited()
            kills += 1
            start(name)
        self.assertGreaterEqual(kills, 3, f"seed {seed}")
        self.assertGreaterEqual(kills + stalls, 6, f"seed {seed}")

        # Let the last leader catch up, then stop everyone.
        now = reactor.seconds()

        async def caught_up():
            state = await store.job_state("crash")
            return state is not None and state.last_scheduled >= now

        await until(caught_up, what=f"the job caught up to {now} (seed {seed})")
        for child, transport in running.values():
            if not child.done:
                transport.signalProcess(signal.SIGTERM)
                await child.whenExited()

        runs = await store.job_runs("crash", 100_000)
        executions = await store.read_log("crash-runs", 100_000)
        why = f"seed {seed}, {kills} kills, {stalls} stalls"
        times = [run.scheduled for run in runs]
        self.assertEqual(times, sorted(set(times)), f"a time recorded twice or out of order; {why}")
        expected = Interval(EVERY).times(times[0] - EVERY / 2, times[-1], 100_000)
        self.assertEqual(times, expected, f"a scheduled time was lost; {why}")
        self.assertGreater(len(times), KILLING / EVERY / 2, why)
        # The record of each run is the one its handler ran under.
        executed = {}
        for entry in executions:
            executed.setdefault(entry["run"], []).append(entry["token"])
        for run in runs:
            tokens = executed.get(run.id, [])
            self.assertIn(run.token, tokens, f"{run.id}: recorded, never run; {why}")
            # Run again only after its leader died or stalled: under a newer
            # lease each time, the newest being the one recorded.
            self.assertEqual(
                len(tokens), len(set(tokens)), f"{run.id} ran twice under {tokens}; {why}"
            )
            self.assertEqual(run.token, max(tokens), why)
        again = [run_id for run_id, tokens in executed.items() if len(tokens) > 1]
        self.assertLessEqual(len(again), kills + stalls, why)
        refused = sum(child.output().count("the store refused token") for child in outputs)
        print(
            f"{kills} leaders killed, {stalls} stalled; {len(runs)} times run and recorded "
            f"once; {len(again)} run again; {refused} stale records refused"
        )
        for child in outputs:
            self.assertNotIn("was recorded already", child.output(), why)
