"""
C{mmo-admin jobs} for real: a manager runs its redis-server and two lobby
processes with one daily job; C{mmo-admin} lists it (with its leader),
pauses and resumes it, and triggers a run, which the leader runs and
records.
"""

from __future__ import annotations

from twisted.internet import reactor
from twisted.trial import unittest

from mmo.store import make_store
from tests.support import spawn_managed, until
from tests.test_cluster import SETTINGS
from tests.test_manager_e2e import admin

JOB = """
[jobs.daily]
schedule = "0 4 * * *"
handler = "mmo.jobs.handlers:record_run"
lease = 3
args = {log = "daily-runs"}
"""


class AdminJobsTests(unittest.TestCase):
    timeout = 90

    async def test_list_pause_trigger(self):
        processes = (("manager", "manager"), ("lobby-1", "lobby"), ("lobby-2", "lobby"))
        cluster = await spawn_managed(self, processes, SETTINGS + JOB)
        conf = cluster.config

        async def led():
            listed = await admin(self, conf, "jobs")
            return listed if listed["jobs"] and listed["jobs"][0]["leader"] else None

        await until(led, what="a leader of the job")
        listed = await admin(self, conf, "jobs")
        (job,) = listed["jobs"]
        self.assertEqual(job["name"], "daily")
        self.assertEqual(job["schedule"], "0 4 * * *")
        self.assertEqual(job["kinds"], ["lobby"])
        self.assertEqual(sorted(job["processes"]), ["lobby-1", "lobby-2"])
        self.assertIn(job["leader"], ("lobby-1", "lobby-2"))
        self.assertTrue(job["next_run"].endswith("T04:00:00.000Z"))

        self.assertTrue((await admin(self, conf, "jobs", "pause", "daily"))["paused"])
        self.assertTrue((await admin(self, conf, "jobs"))["jobs"][0]["paused"])
        self.assertFalse((await admin(self, conf, "jobs", "resume", "daily"))["paused"])

        triggered = await admin(self, conf, "jobs", "trigger", "daily")
        store = make_store(conf, reactor)
        await store.start()
        self.addCleanup(store.stop)

        async def ran():
            return await store.read_log("daily-runs", 10)

        await until(ran, what="the triggered run")
        (record,) = await store.read_log("daily-runs", 10)
        self.assertEqual(record["run"], triggered["run"])
        self.assertIsNone(record["scheduled"])

        async def shown():
            (job,) = (await admin(self, conf, "jobs"))["jobs"]
            return job["last_run"] and job["last_run"]["id"] == triggered["run"]

        await until(shown, what="the run shown as the last")
