"""
The CPU time of a running process's entry points, for C{bench/capacity.py
--calls}: where a cluster's CPU goes, call by call, in the processes
themselves (a profiler that samples the wall clock counts the time a
process waits, preempted inside a C{send()}, as spent there; one that
traces every call inflates the call-heavy code).

Python imports this module at start-up when its directory is on
C{PYTHONPATH}; it does nothing unless C{MMO_BENCH_CALLS} names a
directory.  Then each entry point of L{ENTRIES} is wrapped: the thread CPU
time (C{time.thread_time}) of each call is added to its total, and a
thread writes every process's totals and counts to C{PID.json} in that
directory every L{EVERY} seconds, with the C{time.monotonic()} they were
read at.  Nested entry points each count their own calls in full (a
tick's publication is in the tick too).  The wrapping costs about a
microsecond a call: the figures of a run with it are not the run's
without.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import threading
import time

#: (name in the figures, module, attribute path): the entry points timed.
ENTRIES = (
    ("reads", "twisted.internet.tcp", "Connection.doRead"),
    ("timers", "twisted.internet.base", "ReactorBase.runUntilCurrent"),
    ("client_reads", "mmo.frontend.protocol", "ClientProtocol.dataReceived"),
    ("turn_flushes", "twisted.protocols.tls", "_AggregateSmallWrites._scheduledFlush"),
    ("route_flushes", "mmo.game.routes", "RemoteRoute.flush"),
    ("rpc_boxes", "mmo.rpc.service", "RPCProtocol.ampBoxReceived"),
    ("zone_streams", "mmo.zone.streams", "StreamedLinkFactory.heard"),
    ("push_writes", "mmo.compat", "RecordWrites.send"),
    ("redis_reads", "txredisapi", "RedisProtocol.dataReceived"),
    ("presence", "mmo.gateway.presence", "Presence.refresh"),
    ("ticks", "mmo.zone.service", "ZoneService.tick"),
    ("publications", "mmo.zone.publication", "Publication.run"),
)

#: Seconds between two writes of the totals.
EVERY = 0.2


def timed(function, name: str, totals: dict, counts: dict):
    """C{function}, its calls' thread CPU time added to C{totals[name]}."""
    clock = time.thread_time

    def call(*args, **kwargs):
        started = clock()
        try:
            return function(*args, **kwargs)
        finally:
            totals[name] += clock() - started
            counts[name] += 1

    return call


def install(entries, totals: dict, counts: dict) -> None:
    """Wrap each entry point that can be imported; the others are left out."""
    for name, module_name, path in entries:
        try:
            owner = importlib.import_module(module_name)
        except ImportError:
            continue
        *outer, attribute = path.split(".")
        for part in outer:
            owner = getattr(owner, part)
        totals[name] = 0.0
        counts[name] = 0
        setattr(owner, attribute, timed(getattr(owner, attribute), name, totals, counts))


def write(directory: str, totals: dict, counts: dict) -> None:
    """The totals and counts as now, to C{PID.json} in C{directory} (replaced whole)."""
    path = os.path.join(directory, f"{os.getpid()}.json")
    state = {
        "argv": sys.argv,
        "at": time.monotonic(),
        "seconds": dict(totals),
        "calls": dict(counts),
    }
    with open(path + ".new", "w") as f:
        json.dump(state, f)
    os.replace(path + ".new", path)


def _writing(directory: str, totals: dict, counts: dict) -> None:
    while True:
        time.sleep(EVERY)
        try:
            write(directory, totals, counts)
        except OSError:
            return


def _start() -> None:
    directory = os.environ.get("MMO_BENCH_CALLS")
    if not directory:
        return
    totals: dict[str, float] = {}
    counts: dict[str, int] = {}
    install(ENTRIES, totals, counts)
    threading.Thread(target=_writing, args=(directory, totals, counts), daemon=True).start()


_start()
