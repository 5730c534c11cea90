"""
How mmo keeps its figures, below the names (L{mmo.metrics.registry}):
the label children of a metric taken once (L{LabelCache}); counters and
histograms counted in plain numbers on the per-message paths
(L{TallyCounter}, L{TallyHistogram}); figures read at scrape time from
the objects that hold them (L{StateCollector}); operations timed from
their call until their Deferred fires (L{timed_operations}).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterable
from types import SimpleNamespace

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from twisted.internet import defer
from twisted.python.failure import Failure
from zope.interface import implementedBy

#: The label value of a message type, or any other label, outside the known set.
OTHER = "other"


class Tally:
    """One count of a L{TallyCounter}, or one series of a L{TallyHistogram}."""

    __slots__ = ("value",)

    def __init__(self):
        self.value = 0

    def inc(self, amount: float = 1) -> None:
        self.value += amount


class TallyCounter:
    """
    A counter with one label for the per-message paths, counted in plain
    numbers and read at scrape time.  prometheus-client's children take a
    lock at every increment (0.6 us) and observation (1.9 us), for
    threads that mmo does not count from: a client's messages are counted
    in the reactor's thread only, where a plain addition is enough (a
    gateway's CPU per message with metrics on, C{bench/metrics_cost.py}).
    Its C{labels(value)} children have C{inc} as prometheus-client's do.
    """

    def __init__(self, name: str, documentation: str, label: str, registry):
        self.name = name
        self.documentation = documentation
        self.label = label
        self.children: dict[str, Tally] = {}
        registry.register(self)

    def labels(self, value: str) -> Tally:
        child = self.children.get(value)
        if child is None:
            child = self.children[value] = Tally()
        return child

    def describe(self):
        return [CounterMetricFamily(self.name, self.documentation, labels=[self.label])]

    def collect(self):
        family = CounterMetricFamily(self.name, self.documentation, labels=[self.label])
        for value, child in list(self.children.items()):
            family.add_metric([value], child.value)
        return [family]


class TallyBuckets:
    """One series of a L{TallyHistogram}: its buckets' counts and its sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, amount: float) -> None:
        # The first bucket whose bound is at least the amount ("le").
        self.counts[bisect_left(self.bounds, amount)] += 1
        self.sum += amount


class TallyHistogram(TallyCounter):
    """A histogram with one label, as L{TallyCounter} is a counter."""

    def __init__(self, name: str, documentation: str, label: str, buckets, registry):
        self.bounds = tuple(float(bound) for bound in buckets)
        super().__init__(name, documentation, label, registry)

    def labels(self, value: str) -> TallyBuckets:
        child = self.children.get(value)
        if child is None:
            child = self.children[value] = TallyBuckets(self.bounds)
        return child

    def describe(self):
        return [HistogramMetricFamily(self.name, self.documentation, labels=[self.label])]

    def collect(self):
        family = HistogramMetricFamily(self.name, self.documentation, labels=[self.label])
        names = [repr(bound) for bound in self.bounds] + ["+Inf"]
        for value, child in list(self.children.items()):
            cumulative, buckets = 0, []
            for name, count in zip(names, child.counts, strict=True):
                cumulative += count
                buckets.append((name, cumulative))
            family.add_metric([value], buckets, child.sum)
        return [family]


def children(metric, *values: str) -> SimpleNamespace:
    """The children of C{metric} (one label) for C{values}, as attributes by value."""
    return SimpleNamespace(**{value: metric.labels(value) for value in values})


class LabelCache:
    """
    The children of a metric with one label, taken once per value: a hot
    path pays a dict lookup, not the metric's own label handling.  At most
    C{limit} values get a child of their own; the others count as
    L{OTHER}, so a client cannot grow the label set.

    @ivar children: The children taken so far, by label value.
    """

    def __init__(
        self, metric, limit: int = 256, fixed: Iterable[str] = (), first: tuple[str, ...] = ()
    ):
        """
        @param fixed: Values whose children are taken now.
        @param first: The values of the metric's labels before the cached
            one (a zone's name), the same for every child.
        """
        self.metric = metric
        self.limit = limit
        self.first = first
        self.children = {value: metric.labels(*first, value) for value in fixed}
        self.other = metric.labels(*first, OTHER)

    def get(self, value: str):
        """The child of C{value}, or of L{OTHER} if C{value} has none yet."""
        return self.children.get(value, self.other)

    def child(self, value: str):
        """The child of C{value}, taken now if there is room."""
        child = self.children.get(value)
        if child is None:
            if len(self.children) >= self.limit or not isinstance(value, str):
                return self.other
            child = self.children[value] = self.metric.labels(*self.first, value)
        return child


class StateCollector:
    """
    Figures read when Prometheus scrapes: the objects that hold a state
    (a gateway's sessions, a zone's entities) register a source, which is
    called for its current samples, and unregister it when they stop.

    A source is a callable returning C{(name, documentation, kind, labels,
    samples)} families: C{kind} C{"gauge"} or C{"counter"}, C{samples} a
    list of C{(label values, value)}.
    """

    def __init__(self, states: dict[str, tuple[str, str, list[str]]]):
        """
        @param states: The families its sources may give, by name:
            C{(documentation, kind, labels)}.
        """
        self.states = states
        self._sources: dict[object, Callable[[], Iterable[tuple]]] = {}

    def register(self, key, source: Callable[[], Iterable[tuple]]) -> None:
        """Read C{source} at every scrape, until L{unregister}C{(key)}."""
        self._sources[key] = source

    def unregister(self, key) -> None:
        self._sources.pop(key, None)

    def collect(self):
        # Sources of one family add up (the client factories of a process
        # each count their connections).
        families: dict[str, tuple] = {}
        for source in list(self._sources.values()):
            for name, documentation, kind, labels, samples in source():
                _, _, _, values = families.setdefault(name, (documentation, kind, labels, {}))
                for key, value in samples:
                    values[tuple(key)] = values.get(tuple(key), 0) + value
        collected = []
        for name, (documentation, kind, labels, values) in families.items():
            cls = GaugeMetricFamily if kind == "gauge" else CounterMetricFamily
            family = cls(name, documentation, labels=labels)
            for key, value in values.items():
                family.add_metric(list(key), value)
            collected.append(family)
        return collected

    def describe(self):
        # Described by the families it may give, so that the registry's
        # names (and docs/metrics.md) list them with no source yet.
        families = []
        for name, (documentation, kind, labels) in self.states.items():
            cls = GaugeMetricFamily if kind == "gauge" else CounterMetricFamily
            families.append(cls(name, documentation, labels=labels))
        return families


def timed_operations(histogram, failures):
    """
    A class decorator (above C{@implementer}): every method of the
    interfaces the class implements is timed into C{histogram} by its name,
    and its failures counted in C{failures}, from its call until its
    Deferred fires.  A bounded label set: the interfaces' method names.
    """

    def decorate(cls):
        names = sorted({name for interface in implementedBy(cls).flattened() for name in interface})
        for name in names:
            method = getattr(cls, name, None)
            if callable(method) and not getattr(method, "timed", False):
                setattr(cls, name, _timed(method, histogram, failures, name))
        return cls

    return decorate


def _timed(method, histogram, failures, name: str):
    # The children are taken at the first call: a process shows the
    # operations it uses, not every one of the store's.
    observed = failed = None

    def timed(*args, **kwargs):
        nonlocal observed, failed
        if observed is None:
            observed, failed = histogram.labels(name), failures.labels(name)
        started = time.perf_counter()
        result = method(*args, **kwargs)
        if not isinstance(result, defer.Deferred):
            observed.observe(time.perf_counter() - started)
            return result

        def done(outcome):
            observed.observe(time.perf_counter() - started)
            if isinstance(outcome, Failure):
                failed.inc()
            return outcome

        return result.addBoth(done)

    timed.__name__ = method.__name__
    timed.__qualname__ = method.__qualname__
    timed.__doc__ = method.__doc__
    timed.__wrapped__ = method
    timed.timed = True
    return timed
