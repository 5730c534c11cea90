"""
Failures of the shared backends (the store and the bus) that a request can
be retried after, and what a client and the log are told of them.

The store and the bus raise L{BackendUnavailable} (L{mmo.store.StoreUnavailable},
L{mmo.bus.BusError}) when their server cannot be reached, drops the
connection, does not answer in time or is not ready (Redis loading its data
after a restart, a replica after a failover).  That is not a bug of the
request: the client is told C{unavailable} with a retry hint, and the log
gets one warning line, not a traceback.  L{client_error} is that one
mapping; everything that turns a request's exception into a client's error
uses it (the client protocol, the service side of the game RPC).  Work
nobody waits for (a zone's publication, a heartbeat) logs its failure with
L{log_failure}.

It lies below the store and the bus, which subclass its exception.
"""

from __future__ import annotations

from twisted.internet.defer import FirstError
from twisted.python.failure import Failure

from mmo.wire import codes
from mmo.wire.codes import WireError


class BackendUnavailable(Exception):
    """
    A backend (store or bus) could not do an operation now: its server is
    unreachable, dropped the connection, did not answer in time or is not
    ready.  The operation was not carried out, or (the connection dropped
    after it was sent) its outcome is unknown; it may be retried.
    """


def backend_failure(error: BaseException | Failure) -> BackendUnavailable | None:
    """
    The L{BackendUnavailable} that C{error} (an exception or a L{Failure})
    is, also when it is the first failure of a L{FirstError}
    (C{gatherResults(..., consumeErrors=True)}); C{None} for anything else.
    """
    value = error.value if isinstance(error, Failure) else error
    while isinstance(value, FirstError):
        value = value.subFailure.value
    return value if isinstance(value, BackendUnavailable) else None


def client_error(error: BaseException | Failure, log, what: str, **fields) -> WireError | None:
    """
    What the client is told of a request that failed with C{error}, if it
    is a backend failure: C{unavailable} with the retry hint, after one
    warning line in C{log} (C{what}, a log format, then why).  C{None} if
    C{error} is anything else (a bug: the caller logs it with its
    traceback).  The client's message does not quote the backend's, which
    names internal addresses.
    """
    found = backend_failure(error)
    if found is None:
        return None
    log.warn(what + ": {why}", why=str(found) or type(found).__name__, **fields)
    return WireError(codes.UNAVAILABLE, "a service this request needs is not reachable now; retry")


def log_failure(failure: Failure, log, what: str, **fields) -> None:
    """
    Log the failure of work no client waits for: one warning line for a
    backend failure, the traceback for anything else.
    """
    found = backend_failure(failure)
    if found is not None:
        log.warn(what + ": {why}", why=str(found) or type(found).__name__, **fields)
    else:
        log.failure(what, failure, **fields)
