"""
C{mmo-admin}: operators' commands to a running deployment, through its
managers' admin endpoints (AMP over mutual TLS; the client presents the
deployment's C{admin} certificate, which C{mmo-certs} writes and no process
has).

    mmo-admin --config conf/cluster.toml status
    mmo-admin --config conf/cluster.toml upgrade zone-1
    mmo-admin --config conf/cluster.toml drain gateway-2
    mmo-admin --config conf/cluster.toml kick hero --reason "cheating"
    mmo-admin --config conf/cluster.toml broadcast "Restart in 5 minutes"
    mmo-admin --config conf/cluster.toml mute hero --seconds 600 --reason "spam"
    mmo-admin --config conf/cluster.toml console
    mmo-admin --config conf/cluster.toml jobs
    mmo-admin --config conf/cluster.toml jobs trigger daily-reset
    mmo-admin --config conf/cluster.toml economy --history 5

See C{docs/manager.md}.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
from collections.abc import Sequence
from types import SimpleNamespace

from twisted.internet import defer, endpoints, task

from mmo import config as configmodule
from mmo.config import ConfigError
from mmo.economy.wallets import format_amount
from mmo.rpc import commands
from mmo.rpc.service import RPCClientFactory, peer_endpoint
from mmo.schedules import iso_time
from mmo.tls import internal_client_options

#: Seconds to wait for a manager's link.
CONNECT_TIMEOUT = 10.0


class AdminError(Exception):
    """What the operator is told, on one line, with exit status 1."""


def managers(config) -> list:
    """The manager processes of the config that have an admin endpoint."""
    return [p for p in config.processes.values() if p.kind == "manager" and p.rpc]


def manager_of(config, process: str):
    """The manager that runs C{process}."""
    if process not in config.processes:
        raise AdminError(f"no process {process!r} in {config.file}")
    for manager in managers(config):
        if process in {p.name for p in config.managed(manager)}:
            return manager
    raise AdminError(f"no manager with an rpc endpoint runs {process!r}")


async def call(reactor, config, manager, command: str, timeout: float, **args):
    """Run C{command} on C{manager}; its JSON result."""
    admin = SimpleNamespace(name=configmodule.RESERVED_NAMES[0])
    try:
        options = internal_client_options(config, admin, manager)
        endpoint = peer_endpoint(config, manager, reactor)
    except ConfigError as e:
        raise AdminError(str(e)) from None
    factory = RPCClientFactory(config, admin, manager, reactor)
    connecting = endpoints.wrapClientTLS(options, endpoint).connect(factory)
    try:
        await connecting
        link = await factory.when_connected().addTimeout(CONNECT_TIMEOUT, reactor)
    except Exception as e:
        raise AdminError(
            f"cannot reach {manager.name} at {manager.rpc}: {e or type(e).__name__}"
        ) from None
    try:
        d = link.callRemote(commands.Admin, command=command, args=json.dumps(args).encode())
        answer = await d.addTimeout(timeout, reactor)
    except commands.RPCError as e:
        raise AdminError(f"{manager.name}: {e}") from None
    except defer.TimeoutError:
        raise AdminError(f"{manager.name} did not answer within {timeout:g}s") from None
    finally:
        link.transport.loseConnection()
    return json.loads(answer["result"])


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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmo-admin", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", "-c", required=True, help="the deployment's config file")
    parser.add_argument("--manager", "-m", help="the manager to ask (default: as needed)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds to wait (default: [manager] drain_timeout + 30)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("status", help="processes, versions, load, regions")
    sub.add_parser("drain", help="take a process out of service").add_argument("process")
    upgrade = sub.add_parser("upgrade", help="replace a process by one running the installed code")
    upgrade.add_argument("process")
    kick = sub.add_parser("kick", help="end a player's session")
    kick.add_argument("account", help="account name or id")
    kick.add_argument("--reason", default="", help="shown to the player")
    broadcast = sub.add_parser("broadcast", help="a notice to every player")
    broadcast.add_argument("text")
    mute = sub.add_parser("mute", help="stop a player's chat for a time")
    mute.add_argument("name", help="the player's name or account name")
    mute.add_argument("--seconds", type=float, help="how long (default: chat's)")
    mute.add_argument("--reason", default="", help="shown to the player")
    sub.add_parser("console", help="a one-time login link to the admin console")
    jobs = sub.add_parser("jobs", help="scheduled jobs: list, pause, resume or trigger one")
    jobs.add_argument("action", nargs="?", default="list",
                      choices=("list", "pause", "resume", "trigger"))  # fmt: skip
    jobs.add_argument("name", nargs="?", help="the job (for pause, resume, trigger)")
    economy = sub.add_parser(
        "economy", help=f"money-supply figures; exit status {ALARM_STATUS} on a supply alarm"
    )
    economy.add_argument("--history", type=int, default=1, help="intervals shown (default 1)")
    economy.add_argument("--currency", help="this currency only")
    return parser


async def run(reactor, arguments) -> tuple[object, str]:
    """Carry out the parsed C{arguments}; (result, text to print)."""
    try:
        config = configmodule.load(arguments.config)
    except ConfigError as e:
        raise AdminError(str(e)) from None
    timeout = arguments.timeout or config.manager.drain_timeout + 30
    if arguments.manager:
        try:
            chosen = [config.process(arguments.manager, "manager")]
        except ConfigError as e:
            raise AdminError(str(e)) from None
    elif arguments.command in ("drain", "upgrade"):
        chosen = [manager_of(config, arguments.process)]
    elif arguments.command == "console":
        chosen = [m for m in managers(config) if m.console][:1]
        if not chosen:
            raise AdminError(f"no manager of {config.file} serves a console (its console key)")
    else:
        chosen = managers(config)
    if not chosen:
        raise AdminError(f"{config.file} has no manager with an rpc endpoint")
    command = arguments.command
    if command == "status":
        statuses = [await call(reactor, config, m, "status", timeout) for m in chosen]
        return statuses, format_status(statuses)
    if command in ("drain", "upgrade"):
        result = await call(reactor, config, chosen[0], command, timeout,
                            process=arguments.process)  # fmt: skip
        return result, f"{command} {arguments.process}: done\n{json.dumps(result, indent=2)}"
    if command == "jobs":
        if arguments.action != "list" and not arguments.name:
            raise AdminError(f"jobs {arguments.action}: name the job")
        args = {"action": arguments.action}
        if arguments.name:
            args["name"] = arguments.name
        # Any manager reaches every process through the bus.
        result = await call(reactor, config, chosen[0], "jobs", timeout, **args)
        if arguments.action == "list":
            return result, format_jobs(result)
        return result, f"jobs {arguments.action} {arguments.name}: done\n" + json.dumps(
            result, indent=2
        )
    if command == "economy":
        args = {"history": arguments.history}
        if arguments.currency:
            args["currency"] = arguments.currency
        result = await call(reactor, config, chosen[0], "economy", timeout, **args)
        return result, format_economy(result)
    if command == "console":
        result = await call(reactor, config, chosen[0], "console", timeout)
        return result, (
            f"Open within {result['expires_in']:g} s, once (the link logs one browser in):\n"
            f"{result['url']}"
        )
    if command == "mute":
        args = {"name": arguments.name, "reason": arguments.reason}
        if arguments.seconds is not None:
            args["seconds"] = arguments.seconds
        result = await call(reactor, config, chosen[0], "mute", timeout, **args)
        return result, json.dumps(result, indent=2)
    if command == "kick":
        args = {"account": arguments.account, "reason": arguments.reason}
    else:
        args = {"text": arguments.text}
    # Any manager reaches every gateway through the bus.
    result = await call(reactor, config, chosen[0], command, timeout, **args)
    return result, json.dumps(result, indent=2)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    outcome = {}

    async def go(reactor):
        try:
            result, text = await run(reactor, arguments)
        except AdminError as e:
            outcome["error"] = str(e)
            return
        print(json.dumps(result, indent=2, default=str) if arguments.json else text)
        if arguments.command == "economy" and economy_alarms(result):
            outcome["status"] = ALARM_STATUS

    try:
        task.react(lambda reactor: defer.ensureDeferred(go(reactor)))
    except SystemExit as e:
        if e.code not in (0, None):
            return int(e.code) if isinstance(e.code, int) else 1
    if "error" in outcome:
        print(f"mmo-admin: {outcome['error']}", file=sys.stderr)
        return 1
    return outcome.get("status", 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
