"""
Figures over samples that several parts report: the percentile of the zone
ticker, the bot's latencies, the benchmarks and the economy's balances.

It imports nothing of mmo, so that any part may use it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def nearest_rank(ordered: Sequence[float], fraction: float, empty: float = 0.0) -> float:
    """
    The C{fraction} (0..1) percentile of C{ordered}, by nearest rank: the
    smallest sample with at least C{fraction} of the samples at or below it.
    It is always one of the samples, never an interpolation between two.

    @param ordered: The samples, sorted ascending.
    @param empty: The figure when there are no samples.
    """
    if not ordered:
        return empty
    rank = min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))
    return ordered[rank]


def percentile(values: Iterable[float], fraction: float, empty: float = 0.0) -> float:
    """L{nearest_rank} of C{values} in any order."""
    return nearest_rank(sorted(values), fraction, empty)
