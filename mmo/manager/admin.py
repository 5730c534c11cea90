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
    mmo-admin --config conf/cluster.toml jobs
    mmo-admin --config conf/cluster.toml jobs trigger daily-reset

See C{docs/manager.md}.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from types import SimpleNamespace

from twisted.internet import defer, endpoints, task

from mmo import config as configmodule
from mmo.config import ConfigError
from mmo.rpc import commands
from mmo.rpc.service import RPCClientFactory, peer_endpoint
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
    jobs = sub.add_parser("jobs", help="scheduled jobs: list, pause, resume or trigger one")
    jobs.add_argument("action", nargs="?", default="list",
                      choices=("list", "pause", "resume", "trigger"))  # fmt: skip
    jobs.add_argument("name", nargs="?", help="the job (for pause, resume, trigger)")
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

    try:
        task.react(lambda reactor: defer.ensureDeferred(go(reactor)))
    except SystemExit as e:
        if e.code not in (0, None):
            return int(e.code) if isinstance(e.code, int) else 1
    if "error" in outcome:
        print(f"mmo-admin: {outcome['error']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
