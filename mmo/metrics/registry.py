"""
Every metric of mmo, named in one place, on one registry (L{REGISTRY}).

One module rather than one per part: the names are the contract with
dashboards and alerts, and one list is what C{docs/metrics.md} is checked
against; the module imports nothing of mmo, so every part (the store and
the bus at the bottom, the gateway and the zones above) can use it.

What is counted where it happens is a module-level counter or histogram,
its label children taken once by whoever counts
(L{mmo.metrics.kinds.LabelCache}), so that a hot path pays one
increment.  What is a state (sessions, entities, connections) is read
when Prometheus scrapes, from the objects that hold it (L{STATE}), never
updated per event.  How the figures are kept is
L{mmo.metrics.kinds}.

No label names a player: labels are bounded sets (message types the code
knows, zones and processes of the config, outcomes and reasons mmo
defines).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.process_collector import ProcessCollector

from mmo.metrics.kinds import (
    StateCollector,
    TallyCounter,
    TallyHistogram,
    timed_operations,
)

#: The registry of every mmo metric, with the process's own figures
#: (C{process_cpu_seconds_total}, C{process_resident_memory_bytes}...).
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)

#: Buckets of request and store latencies, seconds: from 0.5 ms to 10 s.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
#: Buckets of a zone tick's duration, seconds: a tick's budget is 1/rate (50 ms at 20/s).
TICK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0)


def _counter(name, doc, labels=()):
    return Counter(name, doc, labels, registry=REGISTRY)


def _histogram(name, doc, labels=(), buckets=LATENCY_BUCKETS):
    return Histogram(name, doc, labels, registry=REGISTRY, buckets=buckets)


# -- client connections (login, gateways, standalone) ---------------------------------

CONNECTIONS_OPENED = _counter(
    "mmo_connections_opened", "Client connections accepted (TLS or secure WebSocket)."
)
MESSAGES_RECEIVED = TallyCounter(
    "mmo_messages_received", "Frames received from clients, by message type.", "type", REGISTRY
)
MESSAGES_SENT = TallyCounter(
    "mmo_messages_sent",
    "Frames sent to clients, by message type (pushes encoded once for many "
    "sessions, a zone's updates or a channel's chat: 'push').",
    "type",
    REGISTRY,
)
REQUEST_DURATION = TallyHistogram(
    "mmo_request_duration_seconds",
    "Time from a client's request to its reply or error, by message type.",
    "type",
    LATENCY_BUCKETS,
    REGISTRY,
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
STATE = StateCollector(STATES)
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


#: The class decorator of the stores (above C{@implementer}): their
#: operations timed in L{STORE_DURATION}, their failures counted.
timed_store = timed_operations(STORE_DURATION, STORE_FAILURES)
