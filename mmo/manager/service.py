"""
The manager of one machine: its processes under a L{Supervisor}, an
optional local Redis, and the operations C{mmo-admin} asks for through the
manager's admin endpoint (AMP over mutual TLS, the C{admin} certificate
only): C{status}, C{drain}, C{upgrade}, C{kick}, C{broadcast}, C{mute},
C{players}, C{errors}, C{jobs}, C{economy} and C{console} (a login link to
the admin console, which runs the same commands).

See C{docs/manager.md}.
"""

from __future__ import annotations

import json
import os
import shlex

from twisted.internet import defer, endpoints, protocol, ssl, task
from twisted.internet.interfaces import IHandshakeListener
from twisted.logger import Logger
from zope.interface import implementer

import mmo
from mmo.certs import write_secret
from mmo.console import console_url
from mmo.manager.errors import ERRORS_SHOWN
from mmo.manager.players import PlayerCommands
from mmo.manager.supervisor import REDIS, Supervisor, twistd_args
from mmo.metrics import discovery
from mmo.metrics.registry import state
from mmo.process import control
from mmo.redis import LocalRedisFiles, RedisConnectError, read_password, trust_root, uses_tls
from mmo.rpc import commands
from mmo.rpc.service import RPCProtocol, RPCServerFactory

#: Seconds between checks while waiting for Redis or the directory.
POLL = 0.2

#: Identity of the operators' certificate (mmo-certs writes it).
ADMIN = "admin"

#: What C{mmo-admin jobs} does: list them, or pause, resume or trigger one.
JOB_ACTIONS = ("list", "pause", "resume", "trigger")

#: The kinds of process that run no scheduled jobs.
NO_JOBS = ("gateway", "login", "manager", "redis")

#: Seconds a process has to describe its jobs.
JOBS_TIMEOUT = 5.0


class ManagerError(Exception):
    """An operation cannot be done: the message says why, for the operator."""


class LocalRedis:
    """
    A redis-server run by the manager (C{redis_server = true}), as a process
    resource: started first (the bus needs it), stopped last.  Append-only,
    fsync at every write: what a process was told is stored survives a
    crash of Redis or of the machine.

    It is the deployment's, for its processes only: it asks for the
    password of L{mmo.redis.read_password} (the one C{mmo-certs} generated,
    unless C{[redis]} gives one), which it reads from a file of its own
    (mode 0600, never on its command line, which anyone on the machine can
    see), listens with TLS only (the deployment's CA, its certificate
    C{redis.crt}) unless C{[manager] redis_tls} is off, and keeps its data
    in a directory of mode 0700 with files only its user can read.
    """

    log = Logger()

    #: The file of its password, in its directory.
    AUTH_FILE = "mmo-auth.conf"

    #: Its umask: its append-only files are for the manager's user only.
    UMASK = 0o077

    def __init__(self, config, supervisor: Supervisor, reactor, name: str = REDIS):
        self.config = config
        self.supervisor = supervisor
        self.reactor = reactor
        self.name = name
        redis, manager = config.redis, config.manager
        self.directory = os.path.abspath(manager.redis_dir)
        self.auth_file = os.path.join(self.directory, self.AUTH_FILE)
        args = shlex.split(manager.redis_command) + [
            "--bind", redis.host,
            "--dir", self.directory,
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--save", "",
            "--daemonize", "no",
            # A gateway busy for a moment falls behind on its channel: give it
            # room to catch up before Redis cuts it off (and what it had not
            # read yet is lost).  Redis's own default is 32mb 8mb 60.
            "--client-output-buffer-limit", "pubsub 512mb 128mb 120",
        ]  # fmt: skip
        self.tls = uses_tls(config)
        if self.tls:
            files = LocalRedisFiles.of(config)
            args += [
                "--port", "0",
                "--tls-port", str(redis.port),
                "--tls-cert-file", os.path.abspath(files.certificate),
                "--tls-key-file", os.path.abspath(files.key),
                "--tls-ca-cert-file", os.path.abspath(files.ca),
                # Clients prove themselves with the password, over TLS.
                "--tls-auth-clients", "no",
            ]  # fmt: skip
        else:
            args += ["--port", str(redis.port)]
        args += ["--include", self.auth_file]
        self.args = args
        supervisor.add(name, REDIS, args, umask=self.UMASK)

    def write_auth(self) -> None:
        """
        Its directory, mode 0700, and in it the file of its password, mode
        0600, written whole or not at all.

        @raise ManagerError: The password or the directory cannot be had.
        """
        try:
            password = read_password(self.config)
        except RedisConnectError as e:
            raise ManagerError(f"the local redis-server has no password: {e}") from None
        if password is None:
            raise ManagerError("the local redis-server has no password: run mmo-certs --renew")
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            os.chmod(self.directory, 0o700)
            write_secret(self.auth_file, f"requirepass {redis_quote(password)}\n".encode())
        except OSError as e:
            raise ManagerError(
                f"cannot prepare the local redis-server's directory: "
                f"{e.filename or self.directory}: {e.strerror or e}"
            ) from None

    async def start(self) -> None:
        self.write_auth()
        self.supervisor.start(self.name)
        redis = self.config.redis
        deadline = self.reactor.seconds() + self.config.manager.start_timeout
        endpoint = endpoints.TCP4ClientEndpoint(self.reactor, redis.host, redis.port, timeout=2)
        if self.tls:
            # A whole handshake: a connection closed in the middle of one
            # would be logged by Redis as an error at every start.
            options = ssl.optionsForClientTLS(redis.host, trustRoot=trust_root(self.config))
            endpoint = endpoints.wrapClientTLS(options, endpoint)
        while True:
            probe = _Probe(self.tls)
            try:
                await endpoints.connectProtocol(endpoint, probe)
                await probe.done
            except Exception as e:
                ended = self.supervisor.exits.get(self.name)
                if ended is not None:
                    hint = ""
                    if self.tls:
                        hint = (
                            "; a redis-server built without TLS needs [manager] redis_tls = false"
                        )
                    raise ManagerError(
                        f"the local redis-server ended ({ended}) before it listened on "
                        f"{redis.host}:{redis.port}: see its lines above{hint}"
                    ) from None
                if self.reactor.seconds() > deadline:
                    raise ManagerError(
                        f"the local redis-server did not listen on {redis.host}:{redis.port} "
                        f"within {self.config.manager.start_timeout:g}s: {e}"
                    ) from None
                await task.deferLater(self.reactor, POLL, lambda: None)
            else:
                self.log.info(
                    "local redis-server ready on {host}:{port} ({how})",
                    host=redis.host,
                    port=redis.port,
                    how="TLS only, password" if self.tls else "password",
                )
                return

    async def stop(self) -> None:
        await self.supervisor.stop_group([self.name])


@implementer(IHandshakeListener)
class _Probe(protocol.Protocol):
    """
    Is a server there?  C{done} fires once connected (over TLS: once the
    handshake is done), and the connection is closed; it fails if the
    connection is lost before.
    """

    def __init__(self, tls: bool):
        self.tls = tls
        self.done = defer.Deferred()

    def connectionMade(self):
        if not self.tls:
            self._answered()

    def handshakeCompleted(self):
        self._answered()

    def _answered(self):
        if not self.done.called:
            self.done.callback(None)
        self.transport.loseConnection()

    def connectionLost(self, reason):
        if not self.done.called:
            self.done.errback(reason)


def redis_quote(text: str) -> str:
    """C{text} as a double-quoted string of a Redis configuration file."""
    escaped = []
    for char in text:
        if char in '"\\':
            escaped.append("\\" + char)
        elif char.isprintable() and char.isascii():
            escaped.append(char)
        else:
            escaped.extend(f"\\x{byte:02x}" for byte in char.encode("utf-8"))
    return '"' + "".join(escaped) + '"'


class Manager(PlayerCommands):
    """
    What the manager of C{process} does for operators.

    @ivar supervisor: The L{Supervisor} of the machine's processes.
    @ivar console: Who may use the admin console (a
        L{mmo.console.auth.ConsoleAuth}), if the manager serves one.
    """

    log = Logger()

    def __init__(self, config, process, bus, supervisor: Supervisor, reactor, console=None):
        self.config = config
        self.process = process
        self.bus = bus
        self.supervisor = supervisor
        self.reactor = reactor
        self.console = console
        self.managed = {p.name: p for p in config.managed(process)}

    @classmethod
    def build(cls, config, process, bus, reactor, out=None, console=None) -> Manager:
        """A manager with a supervisor for every process C{process} runs."""
        settings = config.manager
        supervisor = Supervisor(
            reactor,
            out=out,
            threshold=settings.restart_threshold,
            kill_time=settings.stop_timeout,
            min_restart_delay=settings.restart_delay,
            max_restart_delay=settings.restart_max_delay,
        )
        for peer in config.managed(process):
            supervisor.add(peer.name, peer.kind, twistd_args(config.file, peer.name, peer.kind))
        return cls(config, process, bus, supervisor, reactor, console)

    def targets(self) -> list[dict]:
        """
        The metrics targets of this machine (the manager's, and its
        processes' but those held by a drain), for service discovery.
        """
        running = [p for p in self.managed.values() if p.name not in self.supervisor.held]
        return discovery.targets([self.process, *running])

    def metric_families(self):
        """The supervisor's figures, read at each scrape."""
        names = list(self.managed)
        yield state("mmo_manager_restarts", *[((n,), self.supervisor.restarts[n]) for n in names])
        yield state(
            "mmo_manager_process_up",
            *[((n,), 1 if n in self.supervisor.runs else 0) for n in names],
        )

    async def run(self, command: str, args: dict):
        """Do one admin C{command}; the result is JSON-able."""
        handler = getattr(self, "admin_" + command, None) if command.isidentifier() else None
        if handler is None:
            raise ManagerError(f"no command {command!r}")
        try:
            return await handler(**args)
        except TypeError as e:
            raise ManagerError(f"{command}: {e}") from None

    # -- commands ---------------------------------------------------------------------

    async def admin_status(self) -> dict:
        """This machine's processes, the whole directory and the world's regions."""
        directory = await self.bus.services() if self.bus is not None else {}
        return {
            "manager": self.process.name,
            "version": mmo.__version__,
            "processes": self.supervisor.describe(),
            "directory": directory,
            "regions": {
                name: {"process": process, "box": [x0, y0, x1, y1]}
                for name, x0, y0, x1, y1, process in self.config.world.layout
            },
        }

    async def admin_console(self) -> dict:
        """
        A one-time login link to this manager's admin console (what
        C{mmo-admin console} prints): good once, for C{[manager] console_link}
        seconds.
        """
        if self.console is None:
            raise ManagerError(
                f"{self.process.name} serves no console: set processes.{self.process.name}.console"
            )
        token = self.console.issue_link()
        return {
            "url": console_url(self.config, self.process, f"login?token={token}"),
            "console": console_url(self.config, self.process),
            "expires_in": self.console.link_lifetime,
        }

    async def admin_errors(self, limit: int = ERRORS_SHOWN) -> dict:
        """The last C{limit} error lines of this machine's processes, newest first."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ManagerError(f"errors: limit is a number of lines, at least 1, got {limit!r}")
        return {"manager": self.process.name, "errors": self.supervisor.errors.recent(limit)}

    def _need_bus(self) -> None:
        if self.bus is None:
            raise ManagerError(
                'the manager reaches its processes over the bus: set [bus] backend = "redis"'
            )

    def _mine(self, name: str):
        self._need_bus()
        if name not in self.managed:
            runs = ", ".join(self.managed) or "nothing"
            raise ManagerError(f"{self.process.name} does not run {name!r} (it runs {runs})")
        return self.managed[name]

    async def admin_drain(self, process: str) -> dict:
        """
        Take C{process} out of service: a gateway moves its players to the
        other gateways, then stops; it stays stopped (held) until an
        C{upgrade} starts it again.  A zone cannot be drained (its regions
        would have no server): upgrade it instead.
        """
        peer = self._mine(process)
        if peer.kind == "zone":
            raise ManagerError(
                f"{process} serves regions of the world, which cannot go unserved: "
                "use upgrade to replace it"
            )
        result = {}
        if peer.kind == "gateway":
            result = await control.call(
                self.bus, process, "drain", timeout=self.config.manager.drain_timeout,
                reactor=self.reactor,
            )  # fmt: skip
        await self.supervisor.stop(process, hold=True)
        self.log.info("{process}: drained and stopped", process=process)
        return {"process": process, "drained": result}

    async def admin_upgrade(self, process: str) -> dict:
        """
        Replace C{process} by a new one running the code installed now,
        without kicking anyone: a gateway is drained first (its players
        resume on another gateway); a zone hands its regions over to its
        successor (C{mmo-zone --takeover}); others are restarted.
        """
        peer = self._mine(process)
        timeout = self.config.manager.drain_timeout
        before = self._pid(process)
        drained = None
        if peer.kind == "zone" and process in self.supervisor.runs:
            old = self.supervisor.replace(process, "--takeover")
            try:
                await old.when_ended().addTimeout(timeout, self.reactor)
            except defer.TimeoutError:
                raise ManagerError(
                    f"the old {process} (pid {old.pid}) has not handed over within "
                    f"{timeout:g}s; it is still running next to the new one"
                ) from None
        else:
            if peer.kind == "gateway" and process in self.supervisor.runs:
                drained = await control.call(
                    self.bus, process, "drain", timeout=timeout, reactor=self.reactor
                )
            await self.supervisor.stop(process, hold=True)
            self.supervisor.release(process)
        pid = await self._wait_announced(process, before)
        self.log.info("{process}: upgraded, now pid {pid}", process=process, pid=pid)
        return {"process": process, "old_pid": before, "pid": pid, "drained": drained}

    async def admin_jobs(self, action: str = "list", name: str | None = None) -> dict:
        """
        The deployment's scheduled jobs (C{list}): each with its state, as
        the processes that run it describe it; or C{pause}, C{resume} or
        C{trigger} job C{name}, through one of those processes.
        """
        if action not in JOB_ACTIONS:
            raise ManagerError(f"jobs: no action {action!r} (actions: {', '.join(JOB_ACTIONS)})")
        if action != "list" and not isinstance(name, str):
            raise ManagerError(f"jobs {action}: name the job")
        services, answers, errors = await self._ask_job_processes("jobs", {})
        jobs: dict[str, dict] = {}
        for process, value in answers.items():
            for row in value:
                entry = jobs.setdefault(row["name"], dict(row, processes=[], kinds=[]))
                entry["processes"].append(process)
                kind = services[process].get("kind")
                if kind not in entry["kinds"]:
                    entry["kinds"].append(kind)
        if action == "list":
            return {"jobs": [jobs[n] for n in sorted(jobs)], "errors": errors}
        if name not in jobs:
            known = ", ".join(sorted(jobs)) or "none"
            raise ManagerError(f"jobs {action}: no process runs a job {name!r} (jobs: {known})")
        process = jobs[name]["processes"][0]
        return await control.call(
            self.bus, process, f"jobs.{action}", {"name": name}, reactor=self.reactor
        )

    async def admin_economy(self, history: int = 1, currency: str | None = None) -> dict:
        """
        The economy's money-supply figures (C{docs/economy.md}): the last
        C{history} intervals of each currency (or of C{currency}), as a
        process running the metrics job reads them from the store.
        """
        economy = self.config.economy
        if not economy.enabled:
            raise ManagerError(
                f"the economy is disabled ([economy] enabled = false in {self.config.file})"
            )
        if isinstance(history, bool) or not isinstance(history, int) or history < 1:
            raise ManagerError(
                f"economy: history is a number of intervals, at least 1, got {history!r}"
            )
        if currency is not None and currency not in economy.currencies:
            known = ", ".join(economy.currencies)
            raise ManagerError(f"economy: no currency {currency!r} (currencies: {known})")
        args: dict = {"history": history}
        if currency is not None:
            args["currency"] = currency
        _, answers, errors = await self._ask_job_processes("economy", args)
        if answers:
            # Every process that runs the job reads the same records.
            process = min(answers)
            return dict(answers[process], process=process)
        why = "; ".join(f"{p}: {e}" for p, e in sorted(errors.items())) or "no process runs jobs"
        raise ManagerError(f"economy: no process answers (the economy service's do): {why}")

    # -- helpers ----------------------------------------------------------------------

    async def _ask_job_processes(self, command: str, args: dict):
        """
        Ask every process that runs scheduled jobs C{command}, at once.

        @return: C{(directory, answers, errors)}: the bus's directory, and
            by process, what it answered or why it did not.
        """
        self._need_bus()
        services = await self.bus.services()
        runners = sorted(
            process for process, info in services.items()
            if isinstance(info, dict) and info.get("kind") not in NO_JOBS
        )  # fmt: skip
        answers, errors = await control.ask_each(
            self.bus, runners, command, args, self.reactor, timeout=JOBS_TIMEOUT
        )
        return services, answers, errors

    def _pid(self, process: str) -> int | None:
        child = self.supervisor.runs.get(process)
        return child.pid if child is not None else None

    async def _wait_announced(self, process: str, old_pid) -> int:
        """Wait until the directory names a run of C{process} other than C{old_pid}."""
        deadline = self.reactor.seconds() + self.config.manager.start_timeout
        while True:
            info = (await self.bus.services()).get(process)
            pid = info.get("pid") if isinstance(info, dict) else None
            if pid is not None and pid != old_pid and not info.get("draining"):
                return pid
            if self.reactor.seconds() > deadline:
                raise ManagerError(
                    f"the new {process} did not appear in the directory within "
                    f"{self.config.manager.start_timeout:g}s (see its log)"
                )
            await task.deferLater(self.reactor, POLL, lambda: None)


class AdminRPC(RPCProtocol):
    """The manager's admin endpoint: answers L{commands.Admin}."""

    @commands.Admin.responder
    def admin(self, command: str, args: bytes):
        try:
            arguments = json.loads(args.decode("utf-8")) if args else {}
        except ValueError as e:
            raise commands.BadRequest(f"args are not JSON: {e}") from None
        if not isinstance(arguments, dict):
            raise commands.BadRequest("args must be a JSON object")
        self.log.info("admin: {command} {args}", command=command, args=arguments)
        d = defer.ensureDeferred(self.factory.manager.run(command, arguments))

        def refused(failure):
            failure.trap(ManagerError, control.ControlError)
            raise commands.Refused(str(failure.value))

        d.addErrback(refused)
        d.addCallback(lambda result: {"result": json.dumps(result, default=str).encode()})
        return d


class AdminFactory(RPCServerFactory):
    """Admin links: only the C{admin} certificate may connect."""

    protocol = AdminRPC

    def __init__(self, config, process, manager: Manager, reactor=None):
        super().__init__(config, process, reactor, allowed=(ADMIN,))
        self.manager = manager
