"""
Every metric of mmo, named in one place, on one registry (L{REGISTRY}).

One module rather than one per part: the names are the contract with
dashboards and alerts, and one list is what C{docs/metrics.md} is checked
against; the module imports nothing of mmo, so every part (the store and
the bus at the bottom, the gateway and the zones above) can use it.

What is counted where it happens is a module-level counter or histogram,
its label children taken once by whoever counts (L{LabelCache}), so that
a hot path pays one increment.  What is a state (sessions, entities,
connections) is read when Prometheus scrapes, from the objects that hold
it (L{StateCollector}), never updated per event.

No label names a player: labels are bounded sets (message types the code
knows, zones and processes of the config, outcomes and reasons mmo
defines).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterable
from types import SimpleNamespace

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.process_collector import ProcessCollector
from twisted.internet import defer
from twisted.python.failure import Failure
from zope.interface import implementedBy

#: The registry of every mmo metric, with the process's own figures
#: (C{process_cpu_seconds_total}, C{process_resident_memory_bytes}...).
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)

#: The label value of a message type, or any other label, outside the known set.
OTHER = "other"

#: Buckets of request and store latencies, seconds: from 0.5 ms to 10 s.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
#: Buckets of a zone tick's duration, seconds: a tick's budget is 1/rate (50 ms at 20/s).
TICK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0)


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

    def __init__(self, name: str, documentation: str, label: str, registry=REGISTRY):
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

    def __init__(
        self, name: str, documentation: str, label: str, buckets=LATENCY_BUCKETS, registry=REGISTRY
    ):
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


def _counter(name, doc, labels=()):
    return Counter(name, doc, labels, registry=REGISTRY)


def _histogram(name, doc, labels=(), buckets=LATENCY_BUCKETS):
    return Histogram(name, doc, labels, registry=REGISTRY, buckets=buckets)


# -- client connections (login, gateways, standalone) ---------------------------------

CONNECTIONS_OPENED = _counter(
    "mmo_connections_opened", "Client connections accepted (TLS or secure WebSocket)."
)
MESSAGES_RECEIVED = TallyCounter(
    "mmo_messages_received", "Frames received from clients, by message type.", "type"
)
MESSAGES_SENT = TallyCounter(
    "mmo_messages_sent",
    "Frames sent to clients, by message type (pushes encoded once for many "
    "sessions, a zone's updates or a channel's chat: 'push').",
    "type",
)
REQUEST_DURATION = TallyHistogram(
    "mmo_request_duration_seconds",
    "Time from a client's request to its reply or error, by message type.",
    "type",
)
FLOOD_STRIKES = _counter(
    "mmo_flood_strikes", "Client messages refused for flooding (the per-type rate limits)."
)
RESUMES = _counter("mmo_resumes", "Session resumes asked of this gateway, by outcome.", ["outcome"])
HEARTBEAT_TIMEOUTS = _counter(
    "mmo_heartbeat_timeouts", "Connections closed because the client fell silent."
)

# -- zones -----------------------------------------------------------------------------

ZONE_TICK = _histogram(
    "mmo_zone_tick_duration_seconds",
    "Time a zone's tick takes (simulation, area of interest, pushes).",
    ["zone"],
    TICK_BUCKETS,
)
ZONE_HANDOFFS_STARTED = _counter(
    "mmo_zone_handoffs_started", "Handoffs this zone offered to a neighbour.", ["zone"]
)
ZONE_HANDOFFS_COMPLETED = _counter(
    "mmo_zone_handoffs_completed", "Handoffs from this zone the neighbour took.", ["zone"]
)
ZONE_HANDOFFS_ABORTED = _counter(
    "mmo_zone_handoffs_aborted",
    "Handoffs from this zone undone (refused or unanswered): the entity stays.",
    ["zone"],
)
ZONE_CORRECTIONS = _counter(
    "mmo_zone_corrections",
    "Corrections sent to players (world.correct), by reason: 'malformed' and "
    "'refused' inputs, or the error code of an input refused on its way.",
    ["zone", "reason"],
)

# -- bus -------------------------------------------------------------------------------

BUS_PUBLISHED = _counter("mmo_bus_published", "Messages published on the bus.")
BUS_PUBLISH_DURATION = _histogram(
    "mmo_bus_publish_duration_seconds",
    "Time from a publish to Redis's acknowledgement (the memory bus: none).",
)
BUS_DELIVERED = _counter(
    "mmo_bus_delivered", "Bus messages delivered to this process's subscribers."
)
BUS_DELIVERY_LAG = _histogram(
    "mmo_bus_delivery_lag_seconds",
    "Round trip of a PING on the Redis subscriber link, answered behind every "
    "message queued for this process: how far its deliveries lag.",
)
BUS_RECONNECTS = _counter(
    "mmo_bus_reconnects", "Times the Redis subscriber link came back after a loss."
)
BUS_SUBSCRIPTIONS_LOST = _counter(
    "mmo_bus_subscriptions_lost",
    "Channel subscriptions cut by the loss of the subscriber link (each is "
    "subscribed again once the link is back).",
)

# -- store -----------------------------------------------------------------------------

STORE_DURATION = _histogram(
    "mmo_store_operation_duration_seconds",
    "Time a store operation takes, by operation (the store's method).",
    ["operation"],
)
STORE_FAILURES = _counter(
    "mmo_store_operation_failures", "Store operations that failed, by operation.", ["operation"]
)

# -- login -----------------------------------------------------------------------------

LOGIN_ATTEMPTS = _counter(
    "mmo_login_attempts",
    "Logins asked of this login server, by outcome ('ok', or the error code).",
    ["outcome"],
)

# -- chat ------------------------------------------------------------------------------

CHAT_MESSAGES = _counter(
    "mmo_chat_messages",
    "Chat messages said, by kind: to a 'channel' or a 'whisper' to one player.",
    ["kind"],
)
CHAT_MUTES = _counter("mmo_chat_mutes", "Mutes put on players by moderators.")


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

    def __init__(self):
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
        # Described by the families documented in STATES, so that the
        # registry's names (and docs/metrics.md) list them with no source yet.
        families = []
        for name, (documentation, kind, labels) in STATES.items():
            cls = GaugeMetricFamily if kind == "gauge" else CounterMetricFamily
            families.append(cls(name, documentation, labels=labels))
        return families


#: The figures read at scrape time, by name: (documentation, kind, labels).
STATES = {
    "mmo_connections": ("Client connections open now.", "gauge", []),
    "mmo_sessions": (
        "Player sessions held by this gateway now (attached or awaiting a resume).",
        "gauge",
        [],
    ),
    "mmo_zone_entities": ("Real entities of the zone (players and NPCs).", "gauge", ["zone"]),
    "mmo_zone_players": ("Players' entities among the zone's reals.", "gauge", ["zone"]),
    "mmo_zone_ghosts": ("Ghosts the zone mirrors from its neighbours.", "gauge", ["zone"]),
    "mmo_zone_ticks": ("Ticks the zone ran.", "counter", ["zone"]),
    "mmo_zone_ticks_skipped": (
        "Ticks the zone skipped because an earlier one overran its budget.",
        "counter",
        ["zone"],
    ),
    "mmo_login_hash_queue": (
        "Password hashes waiting for, or running on, the login server's threads.",
        "gauge",
        [],
    ),
    "mmo_manager_restarts": (
        "Times the manager restarted each of its processes after it died.",
        "counter",
        ["process"],
    ),
    "mmo_manager_process_up": (
        "Whether each process the manager runs is running (1) or not (0).",
        "gauge",
        ["process"],
    ),
}

#: The collector of scrape-time figures of this process.
STATE = StateCollector()
REGISTRY.register(STATE)


class StateSource:
    """
    A process resource (C{start}, C{stop}) that has L{STATE} read
    C{source} at each scrape while it runs.
    """

    def __init__(self, source: Callable[[], Iterable[tuple]], collector: StateCollector = STATE):
        self.source = source
        self.collector = collector

    def start(self) -> None:
        self.collector.register(self, self.source)

    def stop(self) -> None:
        self.collector.unregister(self)


def metric_names() -> list[str]:
    """
    The name of every mmo metric as Prometheus shows it (counters with
    C{_total}), sorted: those counted here and those read at scrape time.
    """
    families = [
        family
        for metric in globals().values()
        if isinstance(metric, (Counter, Histogram, TallyCounter))
        for family in metric.describe()
    ]
    families += STATE.describe()
    return sorted(f"{f.name}_total" if f.type == "counter" else f.name for f in families)


def state(name: str, *samples: tuple) -> tuple:
    """
    One family of a L{StateCollector} source: C{name} (one of L{STATES})
    with C{samples}, each C{(label values, value)}.
    """
    documentation, kind, labels = STATES[name]
    return name, documentation, kind, labels, samples


def timed_operations(cls, histogram=STORE_DURATION, failures=STORE_FAILURES):
    """
    A class decorator (under C{@implementer}): every method of the
    interfaces the class implements is timed into C{histogram} by its name,
    and its failures counted in C{failures}, from its call until its
    Deferred fires.  A bounded label set: the interfaces' method names.
    """
    names = sorted({name for interface in implementedBy(cls).flattened() for name in interface})
    for name in names:
        method = getattr(cls, name, None)
        if callable(method) and not getattr(method, "timed", False):
            setattr(cls, name, _timed(method, histogram, failures, name))
    return cls


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
