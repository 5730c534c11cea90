"""
The swarm's timers, shared by all its bots: a bot's periodic work and its
fire-and-forget requests' timeouts cost one timer each for the whole run,
not one (or one per request) for every bot, which with hundreds of bots is
a large part of the reactor's own work.
"""

from __future__ import annotations

from collections import deque

from twisted.internet import defer, task


class Metronome:
    """
    Periodic work of many bots on one C{LoopingCall}: the C{interval} is
    cut into C{beats} slots, each job goes into the slot of its phase, and
    every beat runs one slot's jobs.  A late beat runs the slots it missed
    (each at most once), so every job still runs once per interval on
    average, as a C{LoopingCall} of its own would.
    """

    def __init__(self, clock, interval: float, beats: int = 20):
        self.interval = interval
        self.beats = beats
        self._slots: list[dict[int, object]] = [{} for _ in range(beats)]
        self._next_key = 0
        self._count = 0
        self._beat = 0
        self._loop = task.LoopingCall.withCount(self._run)
        self._loop.clock = clock

    def __len__(self) -> int:
        return self._count

    def add(self, work, phase: float) -> tuple[int, int]:
        """Call C{work()} every interval, at C{phase} (0 to interval) seconds into it; a key."""
        slot = int(phase / self.interval * self.beats) % self.beats
        self._next_key += 1
        self._slots[slot][self._next_key] = work
        self._count += 1
        if not self._loop.running:
            self._beat = 0
            self._loop.start(self.interval / self.beats, now=False)
        return slot, self._next_key

    def remove(self, key: tuple[int, int]) -> None:
        """Stop calling the work added under C{key} (twice is harmless)."""
        slot, number = key
        if self._slots[slot].pop(number, None) is not None:
            self._count -= 1
            if not self._count:
                self.stop()

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def _run(self, count: int) -> None:
        for _ in range(min(count, self.beats)):
            jobs = self._slots[self._beat]
            self._beat = (self._beat + 1) % self.beats
            for work in list(jobs.values()):
                work()


class Deadlines:
    """
    Timeouts of many requests on one C{LoopingCall}: each request that is
    still waiting C{timeout} seconds after it was sent is cancelled (its
    Deferred fails with C{CancelledError}; a request without one is
    expired by its C{expire}, L{expect}), checked every C{resolution}
    seconds, so a request times out between C{timeout} and C{timeout +
    resolution} after it was sent.  Requests are kept in the order they
    were sent (all have the same timeout): at most those sent in the last
    C{timeout + resolution} seconds.
    """

    def __init__(self, clock, timeout: float, resolution: float = 0.5):
        self.clock = clock
        self.timeout = timeout
        self._waiting: deque[tuple[float, object, object]] = deque()
        self._loop = task.LoopingCall(self._expire)
        self._loop.clock = clock
        self.resolution = resolution

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, d: defer.Deferred) -> defer.Deferred:
        """Cancel C{d} if it has not fired within the timeout; C{d}."""
        self.expect(_cancel_unfired, d)
        return d

    def expect(self, expire, key) -> None:
        """
        Call C{expire(key)} once the timeout has passed: C{expire} does
        nothing if the request of C{key} was answered by then.
        """
        self._waiting.append((self.clock.seconds() + self.timeout, expire, key))
        if not self._loop.running:
            self._loop.start(self.resolution, now=False)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def _expire(self) -> None:
        now = self.clock.seconds()
        waiting = self._waiting
        while waiting and waiting[0][0] <= now:
            _, expire, key = waiting.popleft()
            expire(key)
        if not waiting:
            self.stop()


def _cancel_unfired(d: defer.Deferred) -> None:
    if not d.called:
        d.cancel()
