"""
The deadlines of a factory's connections, on one reactor timer.

Every client connection has a deadline that moves whenever it hears from
its client (the idle timeout) and, on a gateway, the heartbeat's.  A
C{DelayedCall} per deadline costs each idle connection most of a kilobyte
and a reset per read.  L{Deadlines} keeps one entry per connection instead:
the time the connection asked to be looked at next, in a heap, with a
single C{DelayedCall} for the earliest.  What a connection hears moves only
its own clock (a float it keeps); its entry stays where it is, and when it
falls due the connection says what is due now and when to look again, so
an entry is pushed once per deadline, not once per read.
"""

from __future__ import annotations

from heapq import heappop, heappush
from itertools import count

from twisted.logger import Logger

#: Slack when comparing the clock with a deadline: C{callLater} delays are
#: floats, and a timer may fire a rounding short of the time it was set for.
EPSILON = 1e-6


class Deadlines:
    """
    When each of many connections is to be looked at next, on one timer of
    C{reactor}.  A connection provides C{deadlineReached(now)}: a deadline
    of it may be due at C{now}; it acts on what is due and returns when to
    be looked at next (C{None}: never).

    @ivar reactor: Provides C{seconds} and C{callLater}.
    """

    log = Logger()

    def __init__(self, reactor):
        self.reactor = reactor
        #: Entries C{[when, order, connection]}; a dropped one has no connection.
        self._heap: list[list] = []
        self._entries: dict[object, list] = {}
        self._order = count()
        self._timer = None

    def __len__(self) -> int:
        return len(self._entries)

    def due(self, connection: object, when: float) -> None:
        """Look at C{connection} (its C{deadlineReached}) no later than C{when}."""
        entry = self._entries.get(connection)
        if entry is not None:
            if entry[0] <= when:
                return
            entry[2] = None
        entry = self._entries[connection] = [when, next(self._order), connection]
        heappush(self._heap, entry)
        if self._heap[0] is entry:
            self._schedule()

    def forget(self, connection: object) -> None:
        """Never look at C{connection} again (it closed), unless told to."""
        entry = self._entries.pop(connection, None)
        if entry is None:
            return
        entry[2] = None
        if not self._entries:
            self._heap.clear()
            self._schedule()

    def _schedule(self) -> None:
        heap = self._heap
        while heap and heap[0][2] is None:
            heappop(heap)
        timer = self._timer
        if not heap:
            if timer is not None and timer.active():
                timer.cancel()
            self._timer = None
            return
        # A little early rather than a rounding late: L{_fire} takes what is
        # due within EPSILON.
        delay = max(heap[0][0] - self.reactor.seconds() - EPSILON, 0.0)
        if timer is not None and timer.active():
            timer.reset(delay)
        else:
            self._timer = self.reactor.callLater(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        heap = self._heap
        now = self.reactor.seconds()
        # Looked at again on a later turn, even if a connection says "now".
        again = []
        while heap and heap[0][0] <= now + EPSILON:
            _, _, connection = heappop(heap)
            if connection is None:
                continue
            del self._entries[connection]
            try:
                later = connection.deadlineReached(now)
            except Exception:
                # One connection's bug must not stop the others' deadlines.
                self.log.failure("the deadline of {connection!r} failed", connection=connection)
                continue
            if later is not None:
                again.append((connection, later))
        for connection, later in again:
            self.due(connection, later)
        self._schedule()
