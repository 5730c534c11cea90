"""
The Redis store's scheduled jobs (the jobs methods of L{mmo.store.IStore}):
L{RedisJobs}, mixed into L{mmo.store.redis.RedisStore}.

Keys (C{P} the store's prefix, C{{name}} the job's name):

  - C{P:job:{name}}: hash C{token last_scheduled paused seq last_run}, the
    job's state (C{last_run} a msgpack L{JobRun});
  - C{P:job-triggers:{name}}: sorted set of the manual runs to do, scored
    by the time they were asked for;
  - C{P:job-runs:{name}}: sorted set of the ids of its recent runs, scored
    by their number; C{P:job-run:{name}}: hash, run id -> msgpack L{JobRun};
  - C{P:jobs}: set of every job name.

Every write is one Lua script: the check of the fencing token and what the
write changes happen in one atomic step.
"""

from __future__ import annotations

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
from mmo.store.redis_records import hash_fields, number, text

#: Checks ARGV[2], the token, against KEYS[1]'s highest: returns {-1, highest}
#: if it is stale, else makes it the highest.  ARGV[1] is the job's name,
#: added to KEYS[2], the set of names.
_FENCE = """
local highest = tonumber(redis.call('HGET', KEYS[1], 'token') or '0')
if tonumber(ARGV[2]) < highest then return {-1, highest} end
redis.call('HSET', KEYS[1], 'token', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
"""

#: KEYS: job, names; ARGV: name, token, now.
CLAIM = (
    _FENCE
    + """
redis.call('HSETNX', KEYS[1], 'last_scheduled', ARGV[3])
return {1, 0}
"""
)

#: KEYS: job, names; ARGV: name, token, upto.
SKIP = (
    _FENCE
    + """
local last = redis.call('HGET', KEYS[1], 'last_scheduled')
if not last or tonumber(last) < tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[1], 'last_scheduled', ARGV[3])
end
return {1, 0}
"""
)

#: KEYS: job, names, runs (zset), run records (hash), triggers;
#: ARGV: name, token, run id, scheduled ("" if manual), record, keep.
#: {1, 0} recorded, {0, 0} the run id was recorded before, {-1, highest} stale.
RECORD = (
    _FENCE
    + """
if redis.call('HEXISTS', KEYS[4], ARGV[3]) == 1 then return {0, 0} end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('HSET', KEYS[4], ARGV[3], ARGV[5])
redis.call('ZADD', KEYS[3], seq, ARGV[3])
redis.call('HSET', KEYS[1], 'last_run', ARGV[5])
local extra = redis.call('ZCARD', KEYS[3]) - tonumber(ARGV[6])
if extra > 0 then
  local old = redis.call('ZRANGE', KEYS[3], 0, extra - 1)
  redis.call('ZREMRANGEBYRANK', KEYS[3], 0, extra - 1)
  redis.call('HDEL', KEYS[4], unpack(old))
end
if ARGV[4] == '' then
  redis.call('ZREM', KEYS[5], ARGV[3])
else
  local last = redis.call('HGET', KEYS[1], 'last_scheduled')
  if not last or tonumber(last) < tonumber(ARGV[4]) then
    redis.call('HSET', KEYS[1], 'last_scheduled', ARGV[4])
  end
end
return {1, 0}
"""
)

#: KEYS: job, names, triggers; ARGV: name, run id, now, most waiting.
TRIGGER = """
if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[4]) then return 0 end
redis.call('ZADD', KEYS[3], 'NX', ARGV[3], ARGV[2])
redis.call('HSETNX', KEYS[1], 'token', 0)
redis.call('SADD', KEYS[2], ARGV[1])
return 1
"""

#: KEYS: job, names; ARGV: name, "1" or "0".
PAUSE = """
redis.call('HSET', KEYS[1], 'paused', ARGV[2])
redis.call('HSETNX', KEYS[1], 'token', 0)
redis.call('SADD', KEYS[2], ARGV[1])
return 1
"""


class RedisJobs:
    """The jobs methods of L{mmo.store.IStore}, for L{mmo.store.redis.RedisStore}."""

    def _job_keys(self, name: str) -> list[str]:
        return [
            self._key("job", name),
            self._key("jobs"),
            self._key("job-runs", name),
            self._key("job-run", name),
            self._key("job-triggers", name),
        ]

    @defer.inlineCallbacks
    def _fenced(self, script, keys, name, token, *args):
        status, highest = yield self._eval(script, keys, [name, str(token), *args])
        status, highest = int(status), int(highest)
        if status < 0:
            raise StaleToken(name, token, highest)
        return status == 1

    @defer.inlineCallbacks
    def claim_job(self, name, token, now):
        check_job(name), check_token(token), check_time(now, "now")
        yield self._fenced(CLAIM, self._job_keys(name)[:2], name, token, number(now))
        return (yield self.job_state(name))

    @defer.inlineCallbacks
    def skip_job_times(self, name, token, upto):
        check_job(name), check_token(token), check_time(upto, "upto")
        yield self._fenced(SKIP, self._job_keys(name)[:2], name, token, number(upto))

    @defer.inlineCallbacks
    def record_job_run(self, name, token, run, keep):
        check_job(name), check_token(token), check_run(run), check_keep(keep)
        scheduled = "" if run.scheduled is None else number(run.scheduled)
        return (
            yield self._fenced(
                RECORD, self._job_keys(name), name, token, run.id, scheduled, run.pack(), str(keep)
            )
        )

    @defer.inlineCallbacks
    def pause_job(self, name, paused):
        check_job(name)
        yield self._eval(PAUSE, self._job_keys(name)[:2], [name, "1" if paused else "0"])
        return (yield self.job_state(name))

    @defer.inlineCallbacks
    def trigger_job(self, name, run_id):
        check_job(name), check_run_id(run_id)
        job, names, _, _, triggers = self._job_keys(name)
        added = yield self._eval(
            TRIGGER,
            [job, names, triggers],
            [name, run_id, number(self._clock.seconds()), str(MAX_TRIGGERS)],
        )
        if not int(added):
            raise StoreError(f"job {name!r} has {MAX_TRIGGERS} manual runs waiting already")

    @defer.inlineCallbacks
    def job_state(self, name):
        check_job(name)
        job, _, _, _, triggers = self._job_keys(name)
        fields = hash_fields((yield self._call("hgetall", job)))
        if not fields:
            return None
        waiting = yield self._call("zrange", triggers, 0, -1)
        last_run = fields.get(b"last_run")
        last_scheduled = fields.get(b"last_scheduled")
        return JobState(
            name,
            int(fields.get(b"token", b"0")),
            None if last_scheduled is None else float(last_scheduled),
            fields.get(b"paused") == b"1",
            [text(t) for t in waiting],
            None if last_run is None else JobRun.unpack(last_run),
        )

    @defer.inlineCallbacks
    def job_states(self):
        names = sorted(text(n) for n in (yield self._call("smembers", self._key("jobs"))))
        states = {}
        for name in names:
            state = yield self.job_state(name)
            if state is not None:
                states[name] = state
        return states

    @defer.inlineCallbacks
    def job_runs(self, name, limit):
        check_job(name), check_keep(limit)
        _, _, runs, records, _ = self._job_keys(name)
        ids = yield self._call("zrange", runs, -limit, -1)
        if not ids:
            return []
        blobs = yield self._call("hmget", records, ids)
        return [JobRun.unpack(blob) for blob in blobs if blob is not None]

    # -- dump and restore: used by mmo.store.redis.RedisStore's -------------------

    @defer.inlineCallbacks
    def _dump_jobs(self):
        """Every job, each read part by part (stop the servers for an exact snapshot)."""
        names = sorted(text(n) for n in (yield self._call("smembers", self._key("jobs"))))
        jobs = []
        for name in names:
            job, _, runs, records, triggers = self._job_keys(name)
            fields = hash_fields((yield self._call("hgetall", job)))
            if not fields:
                continue
            waiting = yield self._call("zrange", triggers, 0, -1, True)
            ids = yield self._call("zrange", runs, 0, -1)
            blobs = (yield self._call("hmget", records, ids)) if ids else []
            last_scheduled = fields.get(b"last_scheduled")
            jobs.append(
                JobDump(
                    name,
                    int(fields.get(b"token", b"0")),
                    None if last_scheduled is None else float(last_scheduled),
                    fields.get(b"paused") == b"1",
                    int(fields.get(b"seq", b"0")),
                    [(text(run_id), float(requested)) for run_id, requested in waiting],
                    [JobRun.unpack(blob) for blob in blobs if blob is not None],
                )
            )
        return jobs

    @defer.inlineCallbacks
    def _restore_job(self, job: JobDump):
        """Write a checked job into a store that has none of its keys."""
        key, names, runs, records, triggers = self._job_keys(job.name)
        fields = {"token": job.token, "paused": "1" if job.paused else "0", "seq": job.seq}
        if job.last_scheduled is not None:
            fields["last_scheduled"] = number(job.last_scheduled)
        if job.runs:
            fields["last_run"] = job.runs[-1].pack()
            pairs = []
            for n, run in enumerate(job.runs, job.seq - len(job.runs) + 1):
                pairs += [n, run.id]
            yield self._call("zadd", runs, *pairs)
            yield self._call("hmset", records, {run.id: run.pack() for run in job.runs})
        if job.triggers:
            pairs = []
            for run_id, requested in job.triggers:
                pairs += [number(requested), run_id]
            yield self._call("zadd", triggers, *pairs)
        yield self._call("hmset", key, fields)
        yield self._call("sadd", names, job.name)
