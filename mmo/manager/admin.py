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
    mmo-admin --config conf/cluster.toml players
    mmo-admin --config conf/cluster.toml errors --limit 20
    mmo-admin --config conf/cluster.toml console
    mmo-admin --config conf/cluster.toml jobs
    mmo-admin --config conf/cluster.toml jobs trigger daily-reset
    mmo-admin --config conf/cluster.toml economy --history 5

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
from mmo.manager.errors import ERRORS_SHOWN
from mmo.manager.formats import (
    ALARM_STATUS,
    economy_alarms,
    format_economy,
    format_errors,
    format_jobs,
    format_players,
    format_status,
)
from mmo.manager.players import PLAYERS_PAGE
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
    players = sub.add_parser("players", help="the players online: a page per gateway")
    players.add_argument("--after", default="", help="start after this session id (paging)")
    players.add_argument(
        "--limit",
        type=int,
        default=PLAYERS_PAGE,
        help=f"sessions per gateway, 1 to {PLAYERS_PAGE} (default {PLAYERS_PAGE})",
    )
    errors = sub.add_parser("errors", help="the processes' recent error lines, newest first")
    errors.add_argument(
        "--limit", type=int, default=ERRORS_SHOWN, help=f"lines a manager (default {ERRORS_SHOWN})"
    )
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


def _check(arguments) -> None:
    """Refuse what no manager would take, before any is asked."""
    if arguments.command == "players" and not 0 < arguments.limit <= PLAYERS_PAGE:
        raise AdminError(f"players: --limit is 1 to {PLAYERS_PAGE}, got {arguments.limit}")
    if arguments.command == "errors" and arguments.limit < 1:
        raise AdminError(f"errors: --limit is at least 1 line, got {arguments.limit}")


async def run(reactor, arguments) -> tuple[object, str]:
    """Carry out the parsed C{arguments}; (result, text to print)."""
    _check(arguments)
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
    if command == "players":
        # Any manager reaches every gateway through the bus.
        result = await call(reactor, config, chosen[0], "players", timeout,
                            after=arguments.after, limit=arguments.limit)  # fmt: skip
        return result, format_players(result)
    if command == "errors":
        # Each manager keeps its own machine's lines.
        answers = [await call(reactor, config, m, "errors", timeout, limit=arguments.limit)
                   for m in chosen]  # fmt: skip
        return answers, format_errors(answers)
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
