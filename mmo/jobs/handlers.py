"""
Job handlers that come with mmo, to name in C{[jobs.NAME] handler}.

L{record_run} is the smallest useful job: it appends a line per run to a
log in the store, a heartbeat an operator (or a test) can read back to see
which runs ran, when, and under which lease.
"""

from __future__ import annotations

import os

from twisted.internet import task

#: The records kept in a job's run log by default.
KEEP = 10_000


async def record_run(run) -> None:
    """
    Append C{{run, scheduled, token, pid, time}} to the store's log
    C{run.args["log"]} (default C{"job:NAME"}), keeping the last
    C{run.args["keep"]} records (default L{KEEP}); then, if
    C{run.args["seconds"]} is given, go on for that long, as a run that
    takes time would (a drill of what a leader dying mid-run does).
    """
    name = run.args.get("log", f"job:{run.job.name}")
    keep = run.args.get("keep", KEEP)
    record = {
        "run": run.id,
        "scheduled": run.scheduled,
        "token": run.token,
        "pid": os.getpid(),
        "time": run.reactor.seconds(),
    }
    await run.store.append_log(name, record, keep)
    seconds = run.args.get("seconds")
    if seconds:
        await task.deferLater(run.reactor, seconds)
