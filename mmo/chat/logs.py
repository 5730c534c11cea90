"""
Chat's store logs: what of chat outlives its process.

The history of each channel and each account's ignore list are store logs
(L{IStore.append_log<mmo.store.IStore.append_log>}), written behind delivery
by one L{LogWriter} per log so that the stored order is the delivered order;
L{StoreLogs} holds the writers while they have work, and reads a log after
the writes queued for it.
"""

from __future__ import annotations

from collections import deque

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from mmo.unavailable import log_failure


def follow(d: defer.Deferred) -> defer.Deferred:
    """
    A new Deferred with C{d}'s result, leaving C{d}'s own result alone, so
    that several callers may wait for one operation (a Deferred awaited
    twice gives the second awaiter C{None}).
    """
    follower: defer.Deferred = defer.Deferred()

    def done(result):
        follower.callback(result)
        return result

    d.addBoth(done)
    return follower


class LogWriter:
    """
    Appends records to one store log, one append at a time (of every
    record added while the last one ran), in the order they were added.

    A store may run operations issued together in any order (a Redis pool
    spreads them over connections), so appends wait for each other here:
    the log's order is the order of L{add}, which is the order of delivery.
    Only the last C{keep} records of a log matter, so when the store falls
    behind, records waiting beyond that many are dropped rather than piled
    up.  A failed append is logged and skipped: chat goes on without the
    store.

    @ivar added: Records added so far.
    @ivar done: Records written, failed or dropped so far.
    """

    log = Logger()

    def __init__(self, store, key: str, keep: int, idle=None):
        self.store = store
        self.key = key
        self.keep = keep
        self.added = 0
        self.done = 0
        self._queue: deque[dict] = deque()
        self._waiters: list[tuple[int, defer.Deferred]] = []
        self._running = False
        self._idle = idle

    def add(self, record: dict) -> None:
        """Queue C{record}; it is written after every record added before it."""
        self.added += 1
        self._queue.append(record)
        while len(self._queue) > self.keep:
            self._queue.popleft()
            self._finished(1)
        if not self._running:
            self._running = True
            defer.ensureDeferred(self._run())

    def flushed(self) -> defer.Deferred:
        """A Deferred firing once every record added so far is written (or given up)."""
        target = self.added
        if self.done >= target:
            return defer.succeed(None)
        d: defer.Deferred = defer.Deferred()
        self._waiters.append((target, d))
        return d

    @property
    def busy(self) -> bool:
        return self._running

    async def _run(self) -> None:
        while self._queue:
            # What was added while the last append ran goes in one append:
            # a store write (a SQLite commit) per message would cost more
            # than the message's delivery to hundreds of players.
            records = list(self._queue)
            self._queue.clear()
            try:
                await self.store.append_logs(self.key, records, self.keep)
            except Exception:
                log_failure(
                    Failure(),
                    self.log,
                    "chat: cannot append to the store log {key!r}",
                    key=self.key,
                )
            self._finished(len(records))
        self._running = False
        if self._idle is not None:
            self._idle(self)

    def _finished(self, count: int) -> None:
        self.done += count
        ready = [d for target, d in self._waiters if target <= self.done]
        self._waiters = [(t, d) for t, d in self._waiters if t > self.done]
        for d in ready:
            d.callback(None)


class StoreLogs:
    """
    The store logs chat writes: one L{LogWriter} per log while it has work,
    and reads that see every record appended before them.
    """

    def __init__(self, store):
        self.store = store
        #: store log key -> its writer, while it has work.
        self._writers: dict[str, LogWriter] = {}

    def append(self, key: str, record: dict, keep: int) -> None:
        """Queue C{record} for the log C{key}, which keeps its last C{keep} records."""
        writer = self._writers.get(key)
        if writer is None:
            writer = self._writers[key] = LogWriter(self.store, key, keep, self._idle)
        writer.add(record)

    def flushed(self, key: str) -> defer.Deferred:
        """A Deferred firing once the records appended so far to C{key} are written."""
        writer = self._writers.get(key)
        return defer.succeed(None) if writer is None else writer.flushed()

    def settled(self) -> defer.Deferred:
        """A Deferred firing once the records appended so far to any log are written."""
        return defer.gatherResults([w.flushed() for w in list(self._writers.values())])

    async def read(self, key: str, limit: int) -> list[dict]:
        """The log's last C{limit} records, after the writes queued for it."""
        await self.flushed(key)
        return await self.store.read_log(key, limit)

    def _idle(self, writer: LogWriter) -> None:
        if self._writers.get(writer.key) is writer and not writer.busy:
            del self._writers[writer.key]
