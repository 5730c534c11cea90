"""
L{Config}, the root section: the whole file, the checks that involve the
whole deployment (realms, managers and the machines they run, listeners
that would clash on one machine), and L{load}, which reads a file into it.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator

from mmo.config.backends import BusSection, RedisSection, StoreSection
from mmo.config.chat import ChatSection
from mmo.config.deployment import DeploymentSection, LoggingSection, TLSSection, WireSection
from mmo.config.economy import EconomySection
from mmo.config.gateway import GatewaySection
from mmo.config.jobs import JOB_NAME, JobSection
from mmo.config.ladder import LADDER_NAME, LadderSection
from mmo.config.listeners import ListenersSection, ListeningAddress, listening_address
from mmo.config.lobby import LobbySection
from mmo.config.login import LoginSection
from mmo.config.manager import ManagerSection
from mmo.config.processes import PROCESS_NAME, RESERVED_NAMES, ProcessSection, RealmSection
from mmo.config.schema import ConfigError, Context, Section, Table, Tables
from mmo.config.web import WebSection
from mmo.config.world import WorldSection

#: The longest path a Unix socket address holds (Linux: 108 bytes with the NUL).
MAX_UNIX_PATH = 107


class Config(Section):
    """
    The whole file.  Read one with L{load}.

    @ivar file: The file it was read from.
    """

    fields = {
        "deployment": Table(DeploymentSection),
        "logging": Table(LoggingSection),
        "wire": Table(WireSection),
        "tls": Table(TLSSection),
        "listeners": Table(ListenersSection),
        "store": Table(StoreSection),
        "redis": Table(RedisSection),
        "bus": Table(BusSection),
        "login": Table(LoginSection),
        "gateway": Table(GatewaySection),
        "lobby": Table(LobbySection),
        "chat": Table(ChatSection),
        "world": Table(WorldSection),
        "manager": Table(ManagerSection),
        "web": Table(WebSection),
        "realms": Tables(
            RealmSection,
            name_pattern=r"^[a-z][a-z0-9-]{0,31}$",
            name_rule="a lower-case name: a-z, 0-9 and '-'",
        ),
        "jobs": Tables(JobSection, name_pattern=JOB_NAME, name_rule="a-z, 0-9, '_', '.', '-'"),
        "ladders": Tables(
            LadderSection,
            name_pattern=LADDER_NAME.pattern,
            name_rule="a lower-case name: a-z, 0-9 and '-', at most 32",
        ),
        "economy": Table(EconomySection),
        "processes": Tables(
            ProcessSection,
            name_pattern=PROCESS_NAME.pattern,
            name_rule="a lower-case DNS label: a-z, 0-9 and '-'",
        ),
    }

    file: str | None = None

    def check(self):
        if not self.processes:
            raise ConfigError("at least one process must be defined", ("processes",))
        for reserved in RESERVED_NAMES:
            if reserved in self.processes:
                raise ConfigError(
                    f"the name {reserved!r} is reserved (it names a certificate mmo-certs makes "
                    "for operators)",
                    ("processes", reserved),
                )
        self._machine = self._check_managers()
        self._check_ports()
        self._check_unix_paths()
        # A process's name is its identity on internal links: another
        # process's certificate must not carry it as a host name.
        for process in self.processes.values():
            for host in process.hosts:
                if host.lower() in self.processes and host.lower() != process.name:
                    raise ConfigError(
                        f"{host!r} is the name of another process; a certificate for it "
                        "would let this process pass for that one",
                        ("processes", process.name, "hosts"),
                    )

        if self.gateway.resume_buffer_bytes > self.listeners.max_unsent:
            raise ConfigError(
                f"must not exceed [listeners] max_unsent ({self.listeners.max_unsent}): "
                "the replay of a resume could be cut off as a slow reader",
                ("gateway", "resume_buffer_bytes"),
            )

        for process in self.processes.values():
            if process.kind == "economy" and not self.economy.enabled:
                raise ConfigError(
                    f"process {process.name!r} is an economy process, but the economy is "
                    "not enabled: set it to true, or remove the process",
                    ("economy", "enabled"),
                )
            if process.kind in ("mmo", "gateway") and process.realm not in self.realm_names():
                raise ConfigError(
                    f"no realm {process.realm!r} (realms: {', '.join(self.realm_names())})",
                    ("processes", process.name, "realm"),
                )

    def managed(self, manager: ProcessSection) -> list[ProcessSection]:
        """The processes C{manager} runs, in the file's order."""
        names = manager.runs or [n for n, p in self.processes.items() if p.kind != "manager"]
        return [self.processes[name] for name in names]

    def _check_managers(self) -> dict[str, str]:
        """
        Check what every manager runs.

        @return: The manager running each managed process, by process name.
        """
        runner: dict[str, str] = {}
        for manager in self.processes.values():
            if manager.kind != "manager":
                continue
            for name in manager.runs:
                found = self.processes.get(name)
                path = ("processes", manager.name, "runs")
                if found is None:
                    raise ConfigError(f"no process {name!r} to run", path)
                if found.kind == "manager":
                    raise ConfigError(f"{name!r} is a manager: managers are not managed", path)
                if name in runner:
                    raise ConfigError(
                        f"{name!r} is run by {runner[name]!r} already: a process runs on "
                        "one machine",
                        path,
                    )
                runner[name] = manager.name
            if not manager.runs:
                for name, process in self.processes.items():
                    if process.kind != "manager":
                        if name in runner:
                            raise ConfigError(
                                f"list what it runs: {name!r} is run by {runner[name]!r}",
                                ("processes", manager.name, "runs"),
                            )
                        runner[name] = manager.name
        return runner

    def _listeners(self) -> Iterator[tuple[ProcessSection, str, ListeningAddress]]:
        """Every listener of the file whose address is known: (process, key, address)."""
        for process in self.processes.values():
            for key in ("client", "rpc", "websocket", "metrics", "console"):
                value = getattr(process, key)
                if value:
                    address = listening_address(value)
                    if address is not None:
                        yield process, key, address
            if process.kind == "manager" and process.redis_server and not self.redis.unix:
                address = ListeningAddress(port=self.redis.port, interface=self.redis.host)
                yield process, "redis_server", address

    def same_machine(self, a: ProcessSection, b: ProcessSection) -> bool:
        """
        Whether C{a} and C{b} run on one machine: under one manager (or one
        is the other's manager) or, without managers, sharing a name or
        address in C{hosts}.
        """
        machine_a = a.name if a.kind == "manager" else self._machine.get(a.name)
        machine_b = b.name if b.kind == "manager" else self._machine.get(b.name)
        if machine_a is not None and machine_b is not None:
            return machine_a == machine_b
        return bool({h.lower() for h in a.hosts} & {h.lower() for h in b.hosts})

    def _check_ports(self) -> None:
        seen: list[tuple[ProcessSection, str, ListeningAddress]] = []
        for process, key, address in self._listeners():
            for other, other_key, other_address in seen:
                if address.clashes(other_address) and self.same_machine(process, other):
                    raise ConfigError(
                        f"port {address} is taken by processes.{other.name}.{other_key} "
                        "on the same machine",
                        ("processes", process.name, key),
                    )
            seen.append((process, key, address))

    def _check_unix_paths(self) -> None:
        """The Unix sockets of C{rpc_unix_dir} have paths a socket address holds."""
        directory = self.deployment.rpc_unix_dir
        if not directory:
            return
        for process in self.processes.values():
            path = self.rpc_socket(process)
            if process.rpc and len(os.fsencode(path)) > MAX_UNIX_PATH:
                raise ConfigError(
                    f"{path} is longer than a Unix socket path may be ({MAX_UNIX_PATH} bytes)",
                    ("deployment", "rpc_unix_dir"),
                )

    def rpc_socket(self, process: ProcessSection) -> str | None:
        """Where C{process} listens for Unix-socket links, if C{rpc_unix_dir} is set."""
        directory = self.deployment.rpc_unix_dir
        return os.path.join(directory, f"{process.name}.sock") if directory else None

    def realm_names(self) -> list[str]:
        """
        The realms players choose from, in the file's order (the first is
        the default): those of C{[realms]}, else just "main".
        """
        return list(self.realms) or ["main"]

    def realm_title(self, name: str) -> str:
        realm = self.realms.get(name)
        return (realm.title if realm is not None else "") or name

    def process(self, name: str | None = None, kind: str | None = None) -> ProcessSection:
        """
        The process to run: the one called C{name}, or else the only one of
        C{kind}.

        @raise ConfigError: No such process, or several of C{kind}.
        """
        if name is not None:
            if name not in self.processes:
                known = ", ".join(sorted(self.processes))
                raise ConfigError(
                    f"no such process (defined: {known})", ("processes", name), self.file
                )
            found = self.processes[name]
            if kind is not None and found.kind != kind:
                raise ConfigError(
                    f"is a {found.kind!r} process, not {kind!r}",
                    ("processes", name, "kind"),
                    self.file,
                )
            return found
        matches = [p for p in self.processes.values() if kind is None or p.kind == kind]
        if len(matches) != 1:
            what = f"{kind!r} processes" if kind else "processes"
            reason = "none" if not matches else ", ".join(sorted(p.name for p in matches))
            raise ConfigError(
                f"name the process to run with --process; {what}: {reason}",
                ("processes",),
                self.file,
            )
        return matches[0]


def load(path: str, config_class: type[Config] = Config) -> Config:
    """
    Read and check the config file at C{path}.

    @raise ConfigError: The file cannot be read, is not TOML, or is wrong;
        the error names the file and the key.
    """
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror or e}", file=path)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"not valid TOML: {e}", file=path)
    try:
        config = config_class(data, (), Context(os.path.dirname(os.path.abspath(path))))
    except ConfigError as e:
        # An error in a data file the config names carries that file's name.
        if e.file is None:
            e.file = path
        raise
    config.file = path
    return config
