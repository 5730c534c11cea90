"""
C{mmo-bot}: run many bots against a deployment and report (C{docs/bot.md}).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys

from twisted.internet import defer, task

from mmo import config as mmo_config
from mmo import tls
from mmo.bot import geometry, scenario
from mmo.bot.stats import format_report
from mmo.bot.swarm import Options, Swarm

DESCRIPTION = """\
Run many bots in one process against an mmo deployment: each logs in
(registering its account first if needed), enters the world and plays a
scenario; at the end, a report of latencies, errors, disconnects, handoffs
and world checks.  Exit status 0 when every bot got in and there was no
unexplained disconnect, no duplicated or lost entity and no unexplained
error of the economy's requests; 1 otherwise; 2 for a usage or
configuration error.
"""

EPILOG = """\
scenarios:
  idle          stay in the world, ping every ping_interval seconds
  chat          send a message on a channel every chat_interval seconds and
                time its delivery back to the sender
  wander        random walk at a legal speed (move_interval, turn_interval)
  border-walk   walk back and forth across a border between two regions, one
                lane per bot spread along the borders (move_interval, span)
  login-storm   login, gateway auth, close, over and over (concurrency)
  ranked        queue on a ladder, play the ranked duel of the match's room,
                queue again (ladder, mode, think, requeue_delay)
  trader        shop (buy, sometimes sell back) and trade in pairs through
                the economy's escrow (shop, shop_every, sell_chance,
                trade_every, think)

examples:
  mmo-bot --config conf/cluster.toml --bots 100 --scenario border-walk --duration 30
  mmo-bot --config conf/cluster.toml --scenario-file storm.toml --json

See docs/bot.md for the scenario file keys and the report's JSON keys.
"""

NAME_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,12}$")


class UsageError(Exception):
    """A bad option or file: printed, exit status 2."""


def positive(kind):
    def convert(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}")
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
        return value

    return convert


def host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"must be HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mmo-bot",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = p.add_argument_group("where")
    where.add_argument(
        "--config",
        metavar="FILE",
        help="the deployment's config file: the login address (its process of kind "
        "'login', else 'mmo'), the CA from [deployment] tls_dir, the world's geometry",
    )
    where.add_argument(
        "--login", metavar="HOST:PORT", type=host_port, help="the login server (overrides --config)"
    )
    where.add_argument("--ca", metavar="FILE", help="PEM file of the CA to trust")
    where.add_argument(
        "--hostname",
        default="localhost",
        help="the name the servers' certificates must carry (default: localhost)",
    )
    what = p.add_argument_group("what")
    what.add_argument("--bots", type=positive(int), default=10, help="bots to run (default 10)")
    which = what.add_mutually_exclusive_group()
    which.add_argument(
        "--scenario", choices=scenario.SCENARIOS, help="the scenario, with default parameters"
    )
    which.add_argument(
        "--scenario-file",
        metavar="FILE",
        help="a TOML file: scenario = NAME and the scenario's parameters",
    )
    what.add_argument(
        "--duration",
        type=positive(float),
        default=60.0,
        help="seconds the scenario runs once every bot is in (default 60)",
    )
    what.add_argument(
        "--ramp", type=positive(float), default=20.0, help="bots started per second (default 20)"
    )
    what.add_argument(
        "--login-concurrency",
        type=positive(int),
        default=16,
        help="logins in flight at once (default 16)",
    )
    what.add_argument(
        "--max-seconds",
        type=positive(float),
        help="hard limit for the whole run; when it is hit the bots stop, the report is "
        "printed and the exit status is 1 (default: duration + bots / ramp + 600, as "
        "every login costs a password hash, and a first run's registrations one more)",
    )
    what.add_argument(
        "--prefix",
        default="bot",
        help="account name prefix: accounts are PREFIX00000, PREFIX00001... (default: bot)",
    )
    what.add_argument(
        "--password", default="load-test-Pass-42", help="the bots' password (default: %(default)s)"
    )
    what.add_argument("--seed", type=int, help="seed of the bots' random choices")
    out = p.add_argument_group("report")
    out.add_argument(
        "--json", action="store_true", help="print the report as one JSON object instead of text"
    )
    out.add_argument("--output", metavar="FILE", help="also write the JSON report to FILE")
    return p


def login_address(conf) -> tuple[str, int]:
    """The login server's client address in C{conf}: its process of kind login, else mmo."""
    for kind in ("login", "mmo"):
        for process in conf.processes.values():
            if process.kind == kind and process.client:
                host, port = process.public_address()
                if not port:
                    raise UsageError(
                        f"{conf.file}: processes.{process.name}.client: the port is chosen at "
                        "start; give --login HOST:PORT"
                    )
                return host, port
    raise UsageError(f"{conf.file}: no process of kind 'login' or 'mmo'; give --login HOST:PORT")


def options_from(args) -> tuple[Options, scenario.Scenario]:
    """Check the arguments and read the files: the run's options and scenario."""
    if args.scenario_file:
        chosen = scenario.load(args.scenario_file)
    else:
        chosen = scenario.make(args.scenario or "idle")
    if not NAME_PREFIX.match(args.prefix):
        raise UsageError(
            f"--prefix: {args.prefix!r} must start with a letter, then letters, digits, "
            "'_' or '-', at most 13 characters"
        )
    conf = None
    if args.config:
        try:
            conf = mmo_config.load(args.config)
        except mmo_config.ConfigError as e:
            raise UsageError(str(e))
    if args.login:
        host, port = args.login
    elif conf is not None:
        host, port = login_address(conf)
    else:
        raise UsageError("give --config FILE or --login HOST:PORT")
    ca = args.ca
    if ca is None and conf is not None:
        ca = tls.ca_path(conf.deployment.tls_dir)
    if ca is not None and not os.path.isfile(ca):
        raise UsageError(f"the CA file {ca} does not exist (run mmo-certs, or give --ca)")
    world = geometry.World.from_config(conf.world) if conf is not None else None
    if chosen.name in ("wander", "border-walk") and world is None:
        raise UsageError(f"scenario {chosen.name}: needs --config for the world's geometry")
    where = args.scenario_file or "--scenario"
    if chosen.name == "border-walk":
        if chosen.span < world.hysteresis + 10:
            raise UsageError(
                f"{where}: span: must be at least hysteresis + 10 "
                f"({world.hysteresis + 10:g}), got {chosen.span:g}"
            )
        if 0 < chosen.weave < world.hysteresis + 5:
            raise UsageError(
                f"{where}: weave: must be 0 or at least hysteresis + 5 "
                f"({world.hysteresis + 5:g}), got {chosen.weave:g}"
            )
        try:
            geometry.lanes(world, 1, chosen.span)
        except ValueError as e:
            raise UsageError(f"{args.config}: world: {e}")
    options = Options(
        login_host=host,
        login_port=port,
        ca=ca,
        hostname=args.hostname,
        bots=args.bots,
        duration=args.duration,
        ramp=args.ramp,
        login_concurrency=args.login_concurrency,
        max_seconds=args.max_seconds,
        prefix=args.prefix,
        password=args.password,
        world=world,
        seed=args.seed,
    )
    return options, chosen


def main(argv=None) -> None:
    args = parser().parse_args(argv)
    try:
        options, chosen = options_from(args)
    except (UsageError, scenario.ScenarioError) as e:
        print(f"mmo-bot: {e}", file=sys.stderr)
        sys.exit(2)
    outcome = {}

    async def run(reactor):
        swarm = Swarm(reactor, options, chosen)
        signals = {"count": 0}

        def interrupted(signum, frame):
            signals["count"] += 1
            if signals["count"] > 1:
                # A second signal: no clean stop.
                reactor.callFromThread(reactor.stop)
                return
            reactor.callFromThread(swarm.stop, "interrupted")

        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, interrupted)
        outcome["report"] = await swarm.run()

    try:
        task.react(lambda reactor: defer.ensureDeferred(run(reactor)))
    except SystemExit as e:
        if e.code not in (0, None) or "report" not in outcome:
            if "report" not in outcome:
                print("mmo-bot: stopped before the report", file=sys.stderr)
                sys.exit(1)
            raise
    report = outcome["report"]
    text = json.dumps(report, indent=None, sort_keys=True)
    if args.output:
        with open(args.output, "w") as f:
            f.write(json.dumps(report, indent=2, sort_keys=True) + "\n")
    if args.json:
        print(text)
    else:
        print(format_report(report))
    if not report["ok"]:
        for problem in report["problems"]:
            print(f"mmo-bot: {problem}", file=sys.stderr)
        sys.exit(1)
    sys.exit(0)


if __name__ == "__main__":
    main()
