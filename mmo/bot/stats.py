"""
What a run measured: request latencies, errors, disconnects and counters,
and the report made of them (a dict with stable keys, see C{docs/bot.md}).
"""

from __future__ import annotations

import random
import ssl
from collections import Counter, defaultdict

from OpenSSL import SSL
from twisted.internet import defer, error

from mmo.client import ConnectionClosed, ServerError
from mmo.stats import nearest_rank

#: Latency samples kept per request type; past it, a uniform reservoir sample.
SAMPLES = 100_000


def error_code(failure) -> str:
    """The code a failed request or connection is counted under."""
    e = failure.value if hasattr(failure, "value") else failure
    if isinstance(e, ServerError):
        return e.code
    if isinstance(e, ConnectionClosed):
        return "closed"
    if isinstance(e, (defer.TimeoutError, defer.CancelledError, error.TimeoutError)):
        return "timeout"
    if isinstance(e, (SSL.Error, ssl.SSLError)):
        return "tls"
    if isinstance(e, (error.ConnectError, error.DNSLookupError)):
        return "connect_failed"
    return type(e).__name__


class Latencies:
    """The latencies of one request type: exact count and maximum, sampled percentiles."""

    def __init__(self, limit: int = SAMPLES, rng: random.Random | None = None):
        self.limit = limit
        self.count = 0
        self.max = 0.0
        self.samples: list[float] = []
        self._rng = rng or random.Random(0)

    def add(self, seconds: float) -> None:
        self.count += 1
        if seconds > self.max:
            self.max = seconds
        if len(self.samples) < self.limit:
            self.samples.append(seconds)
        else:
            slot = self._rng.randrange(self.count)
            if slot < self.limit:
                self.samples[slot] = seconds

    def summary(self) -> dict:
        ordered = sorted(self.samples)
        return {
            "count": self.count,
            "p50_ms": _ms(nearest_rank(ordered, 0.50)),
            "p90_ms": _ms(nearest_rank(ordered, 0.90)),
            "p99_ms": _ms(nearest_rank(ordered, 0.99)),
            "max_ms": _ms(self.max),
        }


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


class TradeCounts:
    """
    The C{trader} scenario's counts (L{mmo.bot.trader}): purchases, sales,
    trades by outcome, and its requests' errors, those it explains apart
    from the others.

    @ivar cancelled: Cancelled trades by the push's C{why}.
    @ivar errors: The economy requests' errors by code.
    @ivar unexplained: The errors no play of the scenario explains, by
        request type and code: each one fails the run.
    """

    def __init__(self):
        self.purchases = 0
        self.sales = 0
        self.opened = 0
        self.settled = 0
        self.retries = 0
        self.cancelled: Counter = Counter()
        self.errors: Counter = Counter()
        self.unexplained: dict[str, Counter] = defaultdict(Counter)
        #: Trades whose end one party counted; the other's push is not counted again.
        self._ended: set[str] = set()

    def bought(self) -> None:
        self.purchases += 1

    def sold(self) -> None:
        self.sales += 1

    def trade_opened(self) -> None:
        self.opened += 1

    def trade_ended(self, trade_id: str, settled: bool, why: str | None = None) -> bool:
        """
        Trade C{trade_id} settled, or was cancelled because of C{why}, as a
        party's push says; counted once for both parties' pushes.

        @return: Whether this push counted.
        """
        if trade_id in self._ended:
            self._ended.discard(trade_id)
            return False
        self._ended.add(trade_id)
        if settled:
            self.settled += 1
        else:
            self.cancelled[why or "none"] += 1
        return True

    def failed(self, kind: str, code: str, explained: bool) -> None:
        """A request of type C{kind} failed with C{code}, as the scenario expects or not."""
        self.errors[code] += 1
        if not explained:
            self.unexplained[kind][code] += 1

    def retried(self) -> None:
        self.retries += 1

    def unexplained_count(self) -> int:
        return sum(sum(codes.values()) for codes in self.unexplained.values())

    def report(self, latencies: dict[str, Latencies]) -> dict:
        return {
            "purchases": self.purchases,
            "sales": self.sales,
            "trades": {
                "opened": self.opened,
                "settled": self.settled,
                "cancelled": dict(sorted(self.cancelled.items())),
            },
            "retries": self.retries,
            "errors": dict(sorted(self.errors.items())),
            "unexplained": {
                kind: dict(sorted(codes.items()))
                for kind, codes in sorted(self.unexplained.items())
            },
            "latency": {
                kind: (latencies[kind] if kind in latencies else Latencies()).summary()
                for kind in ("shop.buy", "trade.settled")
            },
        }


class Stats:
    """
    Everything a run counts.  Cheap to update: the bots call it for every
    request and push.

    @ivar latencies: Request type to L{Latencies}.
    @ivar errors: Request type to a Counter of error codes.
    @ivar failures: Why bots failed to start: error code to count.
    @ivar goodbyes: Disconnects by goodbye code (C{"none"} without one).
    """

    def __init__(self):
        self.latencies: dict[str, Latencies] = defaultdict(Latencies)
        self.errors: dict[str, Counter] = defaultdict(Counter)
        self.failures: Counter = Counter()
        self.goodbyes: Counter = Counter()
        self.requests = 0
        self.error_count = 0
        self.disconnects = 0
        self.unexplained = 0
        self.resumed = 0
        self.moves_followed = 0
        self.handoffs = 0
        #: Bots handed off at least once; border-walk bots that reached their lane.
        self.handed_off = 0
        self.on_lane = 0
        self.corrections = 0
        self.pushes = 0
        self.duplicated = 0
        self.lost = 0
        self.resets = 0
        self.view_misses = 0
        self.view_pairs = 0
        self.view_checks = 0
        self.chat_sent = 0
        self.chat_delivered = 0
        #: The ranked scenario's counts (L{mmo.bot.ranked}).
        self.ranked = dict.fromkeys(
            ("queued", "matched", "results", "wins", "losses", "ties", "timeouts"), 0
        )
        #: The trader scenario's counts.
        self.trades = TradeCounts()
        self.cycles = 0
        self.examples: list[dict] = []
        #: The window (the scenario once every bot is in): its latencies
        #: apart, and the pushes and time it spanned (L{open_window}).
        self.window_latencies: dict[str, Latencies] | None = None
        self.window: dict[str, Latencies] | None = None
        self.window_errors: Counter = Counter()
        self.window_players = 0
        self.window_pushes = 0
        self.window_seconds = 0.0

    def latency(self, kind: str, seconds: float) -> None:
        """A request of type C{kind} was answered after C{seconds}."""
        self.requests += 1
        self.latencies[kind].add(seconds)
        if self.window_latencies is not None:
            self.window_latencies[kind].add(seconds)

    def open_window(self, players: int) -> None:
        """From now on the latencies also count in the window's, with C{players} in."""
        self.window_latencies = defaultdict(Latencies)
        self.window_players = players

    def close_window(self, seconds: float, pushes: int) -> None:
        """The window ended after C{seconds}, with C{pushes} pushes received in it."""
        if self.window_latencies is not None:
            self.window_seconds = seconds
            self.window_pushes = pushes
            self.window = self.window_latencies
            self.window_latencies = None

    def error(self, kind: str, code: str) -> None:
        """A request of type C{kind} failed with C{code}."""
        self.requests += 1
        self.error_count += 1
        self.errors[kind][code] += 1
        if self.window_latencies is not None:
            self.window_errors[kind] += 1

    def failed(self, code: str) -> None:
        """A bot could not start, because of C{code}."""
        self.failures[code] += 1

    def disconnected(self, code: str | None, unexplained: bool) -> None:
        """A connection ended without the bot closing it (goodbye C{code}, if any)."""
        self.disconnects += 1
        self.goodbyes[code or "none"] += 1
        if unexplained:
            self.unexplained += 1

    def report(self, **run) -> dict:
        """
        The report: C{run} gives what the caller knows about the run
        (C{scenario}, C{asked}, C{in_world}, C{elapsed}, C{ramp_seconds},
        C{duration}, C{stopped}, C{problems}).
        """
        kinds = sorted(set(self.latencies) | set(self.errors))
        requests = {}
        for kind in kinds:
            entry = (
                self.latencies[kind].summary() if kind in self.latencies else Latencies().summary()
            )
            entry["errors"] = sum(self.errors[kind].values()) if kind in self.errors else 0
            requests[kind] = entry
        asked = run.get("asked", 0)
        elapsed = run.get("elapsed", 0.0)
        duration = run.get("storm_seconds") or elapsed
        problems = list(run.get("problems", []))
        return {
            "scenario": run.get("scenario"),
            "stopped": run.get("stopped", "completed"),
            "ok": not problems,
            "problems": problems,
            "bots": {
                "asked": asked,
                "in_world": run.get("in_world", 0),
                "failed": sum(self.failures.values()),
                "failures": dict(sorted(self.failures.items())),
            },
            "elapsed": round(elapsed, 3),
            "ramp_seconds": round(run.get("ramp_seconds", 0.0), 3),
            "duration": round(run.get("duration", 0.0), 3),
            "requests": requests,
            "errors": {
                kind: dict(sorted(codes.items())) for kind, codes in sorted(self.errors.items())
            },
            "disconnects": {
                "total": self.disconnects,
                "by_code": dict(sorted(self.goodbyes.items())),
                "unexplained": self.unexplained,
                "resumed": self.resumed,
            },
            "moves_followed": self.moves_followed,
            "handoffs": self.handoffs,
            "world": {
                "duplicated": self.duplicated,
                "lost": self.lost,
                "resets": self.resets,
                "view_misses": self.view_misses,
                "view_pairs": self.view_pairs,
                "view_checks": self.view_checks,
                "corrections": self.corrections,
                "pushes": self.pushes,
                "handed_off": self.handed_off,
                "on_lane": self.on_lane,
                "examples": list(self.examples),
            },
            "chat": {"sent": self.chat_sent, "delivered": self.chat_delivered},
            "ranked": dict(self.ranked),
            "trader": self.trades.report(self.latencies),
            "window": self.window_report(),
            "login_storm": {
                "cycles": self.cycles,
                "cycles_per_second": round(self.cycles / duration, 3) if duration > 0 else 0.0,
            },
        }

    def window_report(self) -> dict:
        window = self.window if self.window is not None else (self.window_latencies or {})
        requests = {}
        for kind in sorted(set(window) | set(self.window_errors)):
            entry = window[kind].summary() if kind in window else Latencies().summary()
            entry["errors"] = self.window_errors.get(kind, 0)
            requests[kind] = entry
        return {
            "players": self.window_players,
            "seconds": round(self.window_seconds, 3),
            "pushes": self.window_pushes,
            "requests": requests,
        }


def problems(report_bots_asked: int, in_world: int, stats: Stats) -> list[str]:
    """Why a run failed (empty: it did not): the conditions of exit status 1."""
    found = []
    if in_world < report_bots_asked:
        found.append(f"{report_bots_asked - in_world} of {report_bots_asked} bots did not get in")
    if stats.unexplained:
        found.append(f"{stats.unexplained} unexplained disconnects")
    if stats.duplicated:
        found.append(f"{stats.duplicated} duplicated entities")
    if stats.lost:
        found.append(f"{stats.lost} lost entities")
    unexplained = stats.trades.unexplained_count()
    if unexplained:
        which = ", ".join(
            f"{kind} {code} {n}"
            for kind, codes in sorted(stats.trades.unexplained.items())
            for code, n in sorted(codes.items())
        )
        found.append(f"{unexplained} unexplained errors of economy requests ({which})")
    return found


def format_report(report: dict) -> str:
    """The report as text, for people."""
    bots = report["bots"]
    lines = [
        f"scenario {report['scenario']}: {report['stopped']}, {'OK' if report['ok'] else 'FAILED'}",
        f"bots: {bots['asked']} asked, {bots['in_world']} in, {bots['failed']} failed to start"
        + (
            " (" + ", ".join(f"{code} {n}" for code, n in bots["failures"].items()) + ")"
            if bots["failures"]
            else ""
        ),
        f"time: {report['elapsed']:.1f} s elapsed, ramp {report['ramp_seconds']:.1f} s, "
        f"scenario {report['duration']:.1f} s",
        "",
        f"{'request':<18}{'count':>9}{'errors':>8}{'p50 ms':>10}{'p90 ms':>10}"
        f"{'p99 ms':>10}{'max ms':>10}",
    ]
    for kind, entry in report["requests"].items():
        lines.append(
            f"{kind:<18}{entry['count']:>9}{entry['errors']:>8}{entry['p50_ms']:>10.1f}"
            f"{entry['p90_ms']:>10.1f}{entry['p99_ms']:>10.1f}{entry['max_ms']:>10.1f}"
        )
    if report["errors"]:
        lines.append("")
        lines.append("errors:")
        for kind, codes in report["errors"].items():
            lines.append(f"  {kind}: " + ", ".join(f"{code} {n}" for code, n in codes.items()))
    d = report["disconnects"]
    lines.append("")
    codes = ", ".join(f"{c} {n}" for c, n in d["by_code"].items())
    lines.append(
        f"disconnects: {d['total']}"
        + (f" ({codes})" if d["total"] else "")
        + f", unexplained {d['unexplained']}, resumed {d['resumed']}"
    )
    w = report["world"]
    lines.append(
        f"moves followed: {report['moves_followed']}, handoffs: {report['handoffs']} "
        f"({w['handed_off']} bots), on lane: {w['on_lane']}, "
        f"corrections: {w['corrections']}, pushes: {w['pushes']}"
    )
    lines.append(
        f"world checks: duplicated {w['duplicated']}, lost {w['lost']}, resets {w['resets']}, "
        f"view misses {w['view_misses']} in {w['view_pairs']} close pairs "
        f"({w['view_checks']} checks)"
    )
    for example in w.get("examples", ()):
        lines.append("  " + ", ".join(f"{key} {value}" for key, value in example.items()))
    if report["chat"]["sent"]:
        lines.append(
            f"chat: {report['chat']['sent']} sent, {report['chat']['delivered']} delivered"
        )
    ranked = report.get("ranked", {})
    if ranked.get("queued"):
        lines.append(
            f"ranked: {ranked['queued']} queued, {ranked['matched']} matched, "
            f"{ranked['results']} results ({ranked['wins']} won, {ranked['losses']} lost, "
            f"{ranked['ties']} tied), {ranked['timeouts']} timed out"
        )
    trader = report.get("trader", {})
    trades = trader.get("trades", {})
    if trader.get("purchases") or trader.get("sales") or trades.get("opened"):
        cancelled = ", ".join(f"{why} {n}" for why, n in trades["cancelled"].items())
        lines.append(
            f"trader: {trader['purchases']} bought, {trader['sales']} sold; trades "
            f"{trades['opened']} opened, {trades['settled']} settled, "
            f"{sum(trades['cancelled'].values())} cancelled"
            + (f" ({cancelled})" if cancelled else "")
            + f"; {trader['retries']} retries"
        )
    if report["login_storm"]["cycles"]:
        ls = report["login_storm"]
        lines.append(f"login storm: {ls['cycles']} cycles, {ls['cycles_per_second']:.1f}/s")
    for problem in report["problems"]:
        lines.append(f"problem: {problem}")
    return "\n".join(lines)
