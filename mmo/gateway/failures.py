"""
How a gateway logs what failed in the background: a service or the bus
out of reach is a warning, broken code a traceback.
"""

from __future__ import annotations

from twisted.internet import defer, error

from mmo.bus import BusError
from mmo.rpc.commands import RPCError
from mmo.wire.codes import WireError

#: Failures that say a service or the bus is unreachable, not that code is
#: broken: logged as a warning, without a traceback.
EXPECTED_FAILURES = (
    WireError,
    RPCError,
    BusError,
    defer.TimeoutError,
    error.ConnectionLost,
    error.ConnectionDone,
)


def log_failure(failure, log, what: str, **kwargs) -> None:
    """Log C{failure} of C{what}: a warning if expected, else with its traceback."""
    if failure.check(*EXPECTED_FAILURES):
        log.warn(what + ": {why}", why=failure.getErrorMessage(), **kwargs)
    else:
        log.failure(what, failure, **kwargs)


def background(d, log, what: str) -> None:
    """Run C{d} (a coroutine or Deferred) without waiting; log its failure."""
    d = defer.ensureDeferred(d) if not isinstance(d, defer.Deferred) else d
    d.addErrback(log_failure, log, what)
