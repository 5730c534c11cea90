"""
How C{mmo-admin} shows what the managers answer: text tables of the
processes (C{status}), the players online (C{players}), the recent error
lines (C{errors}), the scheduled jobs (C{jobs}) and the money supply
(C{economy}).  Pure functions of the answers, apart from the link that
fetched them.
"""

from __future__ import annotations

import functools
import math

from mmo.economy.wallets import format_amount
from mmo.schedules import iso_time


def format_status(statuses: list[dict]) -> str:
    """The C{status} of every manager as text tables."""
    lines = []
    directory: dict = {}
    regions: dict = {}
    for status in statuses:
        directory.update(status.get("directory") or {})
        regions.update(status.get("regions") or {})
    lines.append(
        f"{'process':<16} {'kind':<8} {'manager':<12} {'state':<8} {'pid':>7} "
        f"{'restarts':>8} {'version':<8} {'load':>6} {'memory':>8}  details"
    )
    seen = set()
    for status in statuses:
        for name, row in status["processes"].items():
            seen.add(name)
            info = directory.get(name) or {}
            lines.append(_row(name, row["kind"], status["manager"], row["state"], row["pid"],
                              row["restarts"], info))  # fmt: skip
    for name, info in sorted(directory.items()):
        if name not in seen and isinstance(info, dict):
            lines.append(_row(name, info.get("kind"), "-", "-", info.get("pid"), "", info))
    if regions:
        lines.append("")
        lines.append(f"{'region':<12} {'process':<16} box")
        for name, region in regions.items():
            box = ", ".join(f"{v:g}" for v in region["box"])
            lines.append(f"{name:<12} {region['process']:<16} ({box})")
    return "\n".join(lines)


def _row(name, kind, manager, state, pid, restarts, info) -> str:
    details = []
    if info.get("draining"):
        details.append("draining")
    for key in ("players", "entities", "overruns"):
        if key in info:
            details.append(f"{key} {info[key]}")
    tick = info.get("tick_ms")
    if isinstance(tick, dict):
        details.append(f"tick p50 {tick.get('p50')} p99 {tick.get('p99')} ms")
    if not info and state == "running" and kind != "redis":
        details.append("not in the directory")
    return (
        f"{name:<16} {kind or '?':<8} {manager:<12} {state:<8} {pid or '-':>7} "
        f"{restarts!s:>8} {info.get('version', '-'):<8} {info.get('load', '-')!s:>6} "
        f"{_megabytes(info.get('rss')):>8}  " + ", ".join(details)
    )


def _megabytes(rss) -> str:
    """Resident memory as shown in the status table."""
    if isinstance(rss, int) and not isinstance(rss, bool):
        return f"{rss / 2**20:.1f} MB"
    return "-"


def format_jobs(result: dict) -> str:
    """The C{jobs} list as a text table."""
    lines = [
        f"{'job':<20} {'kind':<8} {'schedule':<16} {'misfire':<8} {'paused':<6} {'leader':<12} "
        f"{'next run':<24} last run"
    ]
    for job in result.get("jobs", []):
        last = job.get("last_run")
        last_text = f"{last['time']} {last['outcome']} ({last['id']})" if last else "-"
        lines.append(
            f"{job['name']:<20} {','.join(map(str, job.get('kinds', []))) or '-':<8} "
            f"{job['schedule']:<16} {job['misfire']:<8} "
            f"{'yes' if job['paused'] else 'no':<6} {job.get('leader') or '-':<12} "
            f"{job.get('next_run') or '-':<24} {last_text}"
        )
    for process, error in sorted(result.get("errors", {}).items()):
        lines.append(f"({process}: {error})")
    return "\n".join(lines)


#: The exit status of C{mmo-admin economy} when a currency's supply alarm is on.
ALARM_STATUS = 2


def economy_alarms(result: dict) -> list[str]:
    """The currencies whose latest figures of C{result} (C{economy}) raise the alarm."""
    return [
        shown["currency"]
        for shown in result.get("currencies", [])
        if shown["figures"] and shown["figures"][0]["alarm"]
    ]


def format_economy(result: dict) -> str:
    """The C{economy} figures as text: each currency's latest, then its history."""
    interval = result.get("interval")
    lines = [f"economy metrics every {interval:g} s (from {result.get('process', '?')})"]
    for shown in result.get("currencies", []):
        name, figures = shown["currency"], shown["figures"]
        lines.append("")
        if not figures:
            lines.append(f"{name}: no figures yet ({_not_yet(result.get('last_run'))})")
            continue
        money = functools.partial(format_amount, decimals=shown["decimals"])
        lines += _latest(figures[0], money, shown["supply_alarm"])
        if len(figures) > 1:
            lines += _history(figures, money)
    return "\n".join(lines)


def _not_yet(last_run) -> str:
    if last_run is None:
        return "the metrics job has not run"
    return f"the job last ran at {iso_time(last_run)}; its next run shows the first interval"


def _latest(f: dict, money, alarm: float) -> list[str]:
    def by_reason(flows: dict) -> str:
        return ", ".join(f"{r or '-'} {money(v)}" for r, v in sorted(flows.items())) or "-"

    state = (
        f"ALARM: above its supply_alarm of {alarm:.1%}"
        if f["alarm"]
        else f"alarm above {alarm:.1%}"
    )
    d = f["distribution"]
    percentiles = "  ".join(f"{k} {money(v)}" for k, v in d["percentiles"].items())
    return [
        f"{f['currency']}  {iso_time(f['start'])} to {iso_time(f['end'])}",
        f"  supply        {money(f['supply'])} (from {money(f['supply_start'])}; "
        f"growth {_rate(f['growth_per_hour'])} per hour; {state})",
        f"  inflow        {money(f['inflow'])}  ({by_reason(f['inflow_by_reason'])})",
        f"  outflow       {money(f['outflow'])}  ({by_reason(f['outflow_by_reason'])})",
        f"  velocity      {f['velocity']:.3f} per hour (volume {money(f['volume'])})",
        f"  players       {d['players']}  gini {d['gini']:.3f}  {percentiles}",
        f"  price index   {f['price_index']:.2f} ({f['sales']} sales)",
        f"  discrepancy   {money(f['discrepancy'])}",
    ]


def _history(figures: list[dict], money) -> list[str]:
    lines = [
        f"  {'interval end':<24} {'supply':>14} {'inflow':>12} {'outflow':>12} "
        f"{'velocity':>9} {'gini':>6} {'prices':>8} {'growth/h':>10}  alarm"
    ]
    for f in figures:
        lines.append(
            f"  {iso_time(f['end']):<24} {money(f['supply']):>14} "
            f"{money(f['inflow']):>12} {money(f['outflow']):>12} "
            f"{f['velocity']:>9.3f} {f['distribution']['gini']:>6.3f} {f['price_index']:>8.2f} "
            f"{_rate(f['growth_per_hour']):>10}  {'yes' if f['alarm'] else 'no'}"
        )
    return lines


def _rate(fraction: float) -> str:
    return "+inf" if math.isinf(fraction) else f"{fraction:+.2%}"


def format_players(result: dict) -> str:
    """
    The C{players} answer (every gateway's page of sessions) as a table, a
    row per session, then what a gateway could not answer and where the
    next page starts when a gateway has more.
    """
    lines = [f"{'gateway':<14} {'name':<16} {'character':<16} {'zone':<12} {'attached':<8} session"]
    problems, more = [], []
    total = 0
    for gateway, page in sorted(result.get("gateways", {}).items()):
        if not isinstance(page, dict) or "error" in page:
            why = page.get("error") if isinstance(page, dict) else page
            problems.append(f"({gateway}: {why})")
            continue
        rows = page.get("sessions") or []
        total += page.get("total", len(rows))
        for row in rows:
            lines.append(
                f"{gateway:<14} {row.get('name') or '-':<16} {row.get('character') or '-':<16} "
                f"{row.get('zone') or '-':<12} {'yes' if row.get('attached') else 'no':<8} "
                f"{row.get('session', '-')}"
            )
        if page.get("more") and rows:
            more.append(f"{gateway} has more: --after {rows[-1]['session']}")
    lines.append(f"{total} online")
    return "\n".join(lines + more + problems)


def format_errors(answers: list[dict]) -> str:
    """
    Every manager's C{errors} answer as one list, newest first: time,
    process and the line.
    """
    rows = [
        (error["time"], error["process"], error["text"])
        for answer in answers
        for error in answer.get("errors", [])
    ]
    rows.sort(key=lambda row: row[0], reverse=True)
    if not rows:
        return "no error lines"
    return "\n".join(f"{iso_time(when)}  {process:<14} {text}" for when, process, text in rows)
