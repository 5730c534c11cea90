"""
A fixed-rate loop that does not drift.

Tick C{n} is due at C{origin + n / rate}, computed from the fixed origin
(never by adding intervals to the time a tick ended), so the time a tick
takes does not push the later ones back.  A tick that overruns its budget
(one interval) makes the loop skip the ticks whose time has passed, and
count them, rather than run them late back to back: a zone that cannot keep
up degrades its rate instead of building a backlog.  A simulation measures
time between ticks itself (its clock), so a skipped tick loses no movement.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

from twisted.logger import Logger

from mmo.stats import percentile


class Ticker:
    """
    Calls C{callback()} C{rate} times a second on C{clock}.

    @ivar ticks: Ticks run.
    @ivar skipped: Ticks not run because an earlier one overran.
    @ivar overruns: Ticks that took longer than their budget (one interval).
    @ivar errors: Ticks whose callback raised (logged; the loop goes on).
    @ivar durations: The durations of the last C{window} ticks, seconds.
    """

    log = Logger()

    def __init__(
        self,
        clock,
        rate: float,
        callback: Callable[[], object],
        window: int = 1000,
        timer: Callable[[], float] | None = None,
        observe: Callable[[float], object] | None = None,
    ):
        """
        @param clock: Provides C{seconds()} and C{callLater()} (the reactor,
            or a L{twisted.internet.task.Clock}).
        @param timer: Measures tick durations; default C{clock.seconds}.
        @param observe: Given each tick's duration, seconds (a zone's
            tick histogram).
        """
        if rate <= 0:
            raise ValueError("the tick rate must be positive")
        self.clock = clock
        self.rate = float(rate)
        self.interval = 1.0 / self.rate
        self.callback = callback
        self._timer = timer if timer is not None else clock.seconds
        self._observe = observe
        self.durations: deque[float] = deque(maxlen=window)
        self.ticks = 0
        self.skipped = 0
        self.overruns = 0
        self.errors = 0
        self._origin: float | None = None
        self._index = 0
        self._call = None

    @property
    def running(self) -> bool:
        return self._origin is not None

    def start(self) -> None:
        """Run the first tick now, then one every interval from now on."""
        if self.running:
            raise RuntimeError("the ticker is running already")
        self._origin = self.clock.seconds()
        self._index = 0
        self._run()

    def stop(self) -> None:
        """Run no more ticks (until started again, from a new origin)."""
        self._origin = None
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def due(self, index: int) -> float:
        """When tick C{index} (0: the first) of this run is due."""
        return self._origin + index * self.interval

    def _run(self) -> None:
        self._call = None
        started = self._timer()
        try:
            self.callback()
        except Exception:
            self.errors += 1
            self.log.failure("a tick failed")
        duration = self._timer() - started
        self.ticks += 1
        self.durations.append(duration)
        if self._observe is not None:
            self._observe(duration)
        if duration > self.interval:
            self.overruns += 1
        if self._origin is None:  # the callback stopped the ticker
            return
        # The next tick whose time has not passed yet (one due right now
        # runs now); those before it are skipped.  The slack keeps float
        # rounding from skipping a tick that is due exactly now.
        now = self.clock.seconds()
        index = max(self._index + 1, math.ceil((now - self._origin) * self.rate - 1e-9))
        self.skipped += index - self._index - 1
        self._index = index
        self._call = self.clock.callLater(max(0.0, self.due(index) - now), self._run)

    # -- figures ------------------------------------------------------------------------

    @property
    def overrun_share(self) -> float:
        """The share of ticks (0..1) that took longer than their budget."""
        return self.overruns / self.ticks if self.ticks else 0.0

    def percentile(self, fraction: float) -> float:
        """The C{fraction} (0..1) percentile of the recent tick durations, seconds."""
        return percentile(self.durations, fraction)
