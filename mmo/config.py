"""
Configuration: TOML files read into small typed, validated section classes.

A deployment is described by one TOML file.  Every table of the file is read
by a L{Section} subclass that declares its keys as L{Field}s; reading checks
every key and value, fills in the defaults and raises one L{ConfigError} that
names the file, the dotted key and the reason::

    conf/standalone.toml: wire.max_frame_size: must be at least 256, got 3

Game teams add their own sections by subclassing L{Config} and adding fields
(see C{docs/configuration.md}).
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import tomllib
from collections.abc import Callable, Iterable
from fractions import Fraction
from itertools import pairwise
from typing import Any, ClassVar

from twisted.internet import endpoints

#: The value of a field that has no default: the key must be present.
REQUIRED: Any = object()

#: Names of processes: a DNS label, because the name is also the identity in
#: the process's certificates.
#: Names no process may take: "admin" is the identity of mmo-admin's certificate.
RESERVED_NAMES = ("admin",)
PROCESS_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")

#: Process kinds and the plugins that run them.
PROCESS_KINDS = ("mmo", "login", "gateway", "lobby", "chat", "zone", "manager")


class ConfigError(Exception):
    """
    A configuration file is missing, unreadable or wrong.

    @ivar message: Why.
    @ivar path: The key path inside the file, outermost first (may be empty).
    @ivar file: The file name, once known.
    """

    def __init__(self, message: str, path: Iterable[str] = (), file: str | None = None):
        super().__init__(message)
        self.message = message
        self.path = tuple(path)
        self.file = file

    def __str__(self) -> str:
        parts = []
        if self.file is not None:
            parts.append(str(self.file))
        if self.path:
            parts.append(".".join(self.path))
        parts.append(self.message)
        return ": ".join(parts)


def _type_name(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


class Context:
    """
    What fields need to know about the file being read.

    @ivar base: The directory of the config file: relative paths in the file
        are relative to it, not to the working directory.
    """

    def __init__(self, base: str):
        self.base = base


class Field:
    """
    One key of a section: its type, default and checks.

    Subclasses implement L{convert}, which turns the raw TOML value into the
    typed value or raises L{ConfigError} with the reason.
    """

    def __init__(self, default: Any = REQUIRED, doc: str = ""):
        self.default = default
        self.doc = doc

    def read(self, data: dict, name: str, path: tuple[str, ...], ctx: Context) -> Any:
        if name not in data:
            if self.default is REQUIRED:
                raise ConfigError("is required", path)
            return self.missing(path, ctx)
        return self.convert(data[name], path, ctx)

    def missing(self, path: tuple[str, ...], ctx: Context) -> Any:
        """The value when the key is absent."""
        return self.default

    def convert(self, value: Any, path: tuple[str, ...], ctx: Context) -> Any:
        raise NotImplementedError()


class Str(Field):
    """A string, optionally one of C{choices} or matching C{pattern}."""

    def __init__(self, default=REQUIRED, choices=None, pattern=None, doc=""):
        super().__init__(default, doc)
        self.choices = choices
        self.pattern = re.compile(pattern) if pattern else None

    def convert(self, value, path, ctx):
        if not isinstance(value, str):
            raise ConfigError(f"must be a string, got {_type_name(value)}", path)
        if self.choices is not None and value not in self.choices:
            raise ConfigError(
                f"must be one of {', '.join(map(repr, self.choices))}, got {value!r}", path
            )
        if self.pattern is not None and not self.pattern.match(value):
            raise ConfigError(f"{value!r} does not match {self.pattern.pattern}", path)
        return value


class Number(Field):
    """An integer (or, with C{kind=float}, a number) within bounds."""

    def __init__(self, default=REQUIRED, minimum=None, maximum=None, kind=int, doc=""):
        super().__init__(default, doc)
        self.minimum = minimum
        self.maximum = maximum
        self.kind = kind

    def convert(self, value, path, ctx):
        accepted = (int,) if self.kind is int else (int, float)
        if isinstance(value, bool) or not isinstance(value, accepted):
            wanted = "an integer" if self.kind is int else "a number"
            raise ConfigError(f"must be {wanted}, got {_type_name(value)}", path)
        if self.minimum is not None and value < self.minimum:
            raise ConfigError(f"must be at least {self.minimum}, got {value}", path)
        if self.maximum is not None and value > self.maximum:
            raise ConfigError(f"must be at most {self.maximum}, got {value}", path)
        return self.kind(value)


class Bool(Field):
    """C{true} or C{false}."""

    def convert(self, value, path, ctx):
        if not isinstance(value, bool):
            raise ConfigError(f"must be true or false, got {_type_name(value)}", path)
        return value


class StrList(Field):
    """An array of strings, each checked by C{item} when given."""

    def __init__(self, default=REQUIRED, item: Callable[[str], str | None] | None = None, doc=""):
        super().__init__(default, doc)
        self.item = item

    def convert(self, value, path, ctx):
        if not isinstance(value, list):
            raise ConfigError(f"must be an array of strings, got {_type_name(value)}", path)
        for index, entry in enumerate(value):
            if not isinstance(entry, str):
                raise ConfigError(
                    f"must be an array of strings; item {index} is {_type_name(entry)}", path
                )
            if self.item is not None:
                problem = self.item(entry)
                if problem:
                    raise ConfigError(f"item {index} ({entry!r}): {problem}", path)
        return list(value)

    def missing(self, path, ctx):
        return list(self.default)


class FilePath(Str):
    """
    A file or directory name; relative names are relative to the directory of
    the config file.  An empty string means "not set" and reads as C{None}.
    """

    def convert(self, value, path, ctx):
        value = super().convert(value, path, ctx)
        if not value:
            return None
        return os.path.normpath(os.path.join(ctx.base, os.path.expanduser(value)))

    def missing(self, path, ctx):
        if not self.default:
            return None
        return os.path.normpath(os.path.join(ctx.base, self.default))


class ServerEndpoint(Str):
    """
    A Twisted server endpoint description (C{tcp:7000:interface=127.0.0.1}),
    checked by parsing it.  TLS is added by mmo from the C{[tls]} section, so
    endpoint types that do their own TLS are refused.  An empty string means
    "no listener" and reads as C{None}.
    """

    TLS_TYPES = ("ssl", "tls", "le", "lets")

    def convert(self, value, path, ctx):
        value = super().convert(value, path, ctx)
        if not value:
            return None
        kind = value.split(":", 1)[0].lower()
        if kind in self.TLS_TYPES:
            raise ConfigError(
                f"{value!r}: TLS is added by mmo from the [tls] section; "
                f"use a plain endpoint such as 'tcp:7000'",
                path,
            )
        try:
            # The reactor is only stored by the parsers, never used.
            endpoints.serverFromString(object(), value)
        except Exception as e:
            raise ConfigError(f"{value!r} is not a valid endpoint: {_reason(e)}", path)
        return value

    def missing(self, path, ctx):
        return self.convert(self.default, path, ctx) if self.default else None


def _reason(e: BaseException) -> str:
    text = str(e)
    if isinstance(e, KeyError):
        text = f"unknown endpoint type {e.args[0]!r}" if e.args else "unknown endpoint type"
    return text or type(e).__name__


def check_host(value: str) -> str | None:
    """A host name or IP address usable in a certificate, or why not."""
    try:
        ipaddress.ip_address(value)
        return None
    except ValueError:
        pass
    if len(value) > 253 or not re.match(
        r"^(?=.{1,253}$)([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)"
        r"(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$",
        value,
    ):
        return "not a host name or IP address"
    return None


class Table(Field):
    """A nested table read by a L{Section} subclass; absent means all defaults."""

    def __init__(self, section: type[Section], doc=""):
        super().__init__(None, doc)
        self.section = section

    def convert(self, value, path, ctx):
        return self.section(value, path, ctx)

    def missing(self, path, ctx):
        return self.section({}, path, ctx)


class Tables(Field):
    """A table of named tables (C{[processes.NAME]}), each read by C{section}."""

    def __init__(self, section: type[Section], name_pattern=None, name_rule="", doc=""):
        super().__init__({}, doc)
        self.section = section
        self.name_pattern = re.compile(name_pattern) if name_pattern else None
        self.name_rule = name_rule

    def convert(self, value, path, ctx):
        if not isinstance(value, dict):
            raise ConfigError(f"must be a table, got {_type_name(value)}", path)
        result = {}
        for name, table in value.items():
            if self.name_pattern is not None and not self.name_pattern.match(name):
                raise ConfigError(f"bad name: {self.name_rule}", path + (name,))
            result[name] = self.section(table, path + (name,), ctx, name=name)
        return result

    def missing(self, path, ctx):
        return {}


class Section:
    """
    A table of a config file, read into attributes named after its keys.

    Subclasses declare C{fields}, a dict of key name to L{Field}, and may
    override L{check} for rules that involve several keys.  Unknown keys are
    errors: a misspelt option must not be silently ignored.
    """

    fields: ClassVar[dict[str, Field]] = {}

    def __init__(
        self,
        data: Any,
        path: tuple[str, ...] = (),
        ctx: Context | None = None,
        name: str | None = None,
    ):
        if ctx is None:
            ctx = Context(os.getcwd())
        if not isinstance(data, dict):
            raise ConfigError(f"must be a table, got {_type_name(data)}", path)
        self.name = name
        self._path = path
        for key in data:
            if key not in self.fields:
                known = ", ".join(sorted(self.fields)) or "none"
                raise ConfigError(f"unknown key (known keys: {known})", path + (key,))
        for key, field in self.fields.items():
            setattr(self, key, field.read(data, key, path + (key,), ctx))
        self.check()

    def check(self) -> None:
        """Check rules that involve several keys; raise L{ConfigError}."""

    def error(self, key: str, message: str) -> ConfigError:
        """A L{ConfigError} for C{key} of this section."""
        return ConfigError(message, self._path + (key,))


class DeploymentSection(Section):
    fields = {
        "name": Str(
            "mmo",
            pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$",
            doc="Name of the deployment; names its certificate authority.",
        ),
        "tls_dir": FilePath(
            "certs", doc="Where mmo-certs writes, and processes read, certificates."
        ),
    }


class LoggingSection(Section):
    fields = {
        "format": Str(
            "text",
            choices=("text", "json"),
            doc="'text': one readable line per event; 'json': one JSON object per line.",
        ),
        "level": Str(
            "info",
            choices=("debug", "info", "warn", "error", "critical"),
            doc="Lowest level written.",
        ),
    }


class WireSection(Section):
    fields = {
        "max_frame_size": Number(
            65536,
            minimum=256,  # the handshake reply must fit
            maximum=16 * 1024 * 1024,
            doc="Largest frame body, in bytes, either way.",
        ),
        "handshake_timeout": Number(
            10.0,
            minimum=0.1,
            maximum=3600,
            kind=float,
            doc="Seconds a new connection has to finish the handshake.",
        ),
        "idle_timeout": Number(
            120.0,
            minimum=1,
            maximum=86400,
            kind=float,
            doc="Seconds without any frame from the client before it is closed.",
        ),
    }


class TLSSection(Section):
    fields = {
        "certificate": FilePath(
            "",
            doc="PEM chain for the client-facing listener (leaf first); "
            "default: the process certificate from mmo-certs.",
        ),
        "private_key": FilePath("", doc="PEM private key of 'certificate'."),
    }

    def check(self):
        if bool(self.certificate) != bool(self.private_key):
            missing = "private_key" if self.certificate else "certificate"
            raise self.error(missing, "certificate and private_key must be set together")


class StoreSection(Section):
    fields = {
        "backend": Str(
            "sqlite",
            choices=("sqlite", "redis"),
            doc="Where durable data lives: 'sqlite' (embedded) or 'redis' ([redis]).",
        ),
        "path": FilePath("mmo.sqlite3", doc="The SQLite database file."),
    }


def check_host_port(value: str) -> str | None:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        return "must be HOST:PORT"
    return check_host(host.strip("[]"))


class RedisSection(Section):
    fields = {
        "host": Str("127.0.0.1", doc="Redis server host (ignored with sentinels or unix)."),
        "port": Number(6379, minimum=1, maximum=65535, doc="Redis server port."),
        "unix": FilePath("", doc="Unix socket of the Redis server, instead of host and port."),
        "db": Number(0, minimum=0, maximum=1023, doc="Database number."),
        "username": Str("", doc="ACL user name (Redis 6+); empty: the default user."),
        "password": Str("", doc="Password (AUTH); empty: none."),
        "password_file": FilePath("", doc="A file holding the password, instead of 'password'."),
        "tls": Bool(False, doc="Connect with TLS."),
        "tls_ca": FilePath("", doc="CA certificate (PEM) to verify the server; default: system."),
        "prefix": Str(
            "",
            pattern=r"^[A-Za-z0-9_.:-]*$",
            doc="Prefix of every key; default: the deployment name.",
        ),
        "pool_size": Number(4, minimum=1, maximum=256, doc="Connections for commands."),
        "connect_timeout": Number(5.0, minimum=0.1, maximum=300, kind=float, doc="Seconds."),
        "sentinels": StrList(
            [], item=check_host_port, doc="HOST:PORT of Sentinels; empty: no Sentinel."
        ),
        "sentinel_master": Str("mymaster", doc="The master name the Sentinels watch."),
    }

    def check(self):
        if self.password and self.password_file:
            raise self.error("password_file", "set password or password_file, not both")


class BusSection(Section):
    fields = {
        "backend": Str(
            "memory",
            choices=("memory", "redis"),
            doc="'memory': inside one process (standalone); 'redis': across processes.",
        ),
        "heartbeat_interval": Number(
            2.0,
            minimum=0.05,
            maximum=600,
            kind=float,
            doc="Seconds between directory announcements of a process.",
        ),
        "heartbeat_timeout": Number(
            6.0,
            minimum=0.1,
            maximum=3600,
            kind=float,
            doc="Seconds after its last announcement that a process leaves the directory.",
        ),
    }

    def check(self):
        if self.heartbeat_timeout <= self.heartbeat_interval:
            raise self.error("heartbeat_timeout", "must be longer than heartbeat_interval")


class LoginSection(Section):
    """Accounts, passwords, throttles and session tickets."""

    fields = {
        "ticket_ttl": Number(
            60.0, minimum=1, maximum=3600, kind=float, doc="Seconds a session ticket stays valid."
        ),
        "ticket_key": FilePath("", doc="Secret that signs tickets; default TLS_DIR/ticket.key."),
        "name_min_length": Number(3, minimum=1, maximum=64, doc="Shortest account name."),
        "name_max_length": Number(20, minimum=1, maximum=64, doc="Longest account name."),
        "password_min_length": Number(8, minimum=4, maximum=1024, doc="Shortest password."),
        "password_max_length": Number(256, minimum=8, maximum=4096, doc="Longest password."),
        "hash_threads": Number(
            2, minimum=1, maximum=64, doc="Threads hashing passwords (off the reactor)."
        ),
        "hash_queue": Number(
            64,
            minimum=1,
            maximum=100000,
            doc="Hashes waiting for a thread before logins get 'busy'.",
        ),
        "argon2_time_cost": Number(2, minimum=1, maximum=100, doc="argon2id iterations."),
        "argon2_memory_kib": Number(
            19456, minimum=64, maximum=4 * 1024 * 1024, doc="argon2id memory per hash, KiB."
        ),
        "argon2_parallelism": Number(1, minimum=1, maximum=64, doc="argon2id lanes."),
        "ip_failures": Number(
            20,
            minimum=1,
            maximum=1000000,
            doc="Failed logins from one address before it is throttled.",
        ),
        "ip_window": Number(
            300.0, minimum=1, maximum=86400, kind=float, doc="Seconds over which ip_failures count."
        ),
        "account_ip_failures": Number(
            5,
            minimum=1,
            maximum=1000000,
            doc="Failures on one account from one address before that address is locked out of it.",
        ),
        "account_failures": Number(
            100,
            minimum=1,
            maximum=1000000,
            doc="Failures on one account from all addresses before "
            "only addresses that never failed may try it.",
        ),
        "account_window": Number(
            900.0,
            minimum=1,
            maximum=86400,
            kind=float,
            doc="Seconds over which account failures count.",
        ),
        "register_per_ip": Number(
            10,
            minimum=1,
            maximum=1000000,
            doc="Registrations from one address per register_window.",
        ),
        "register_window": Number(
            3600.0,
            minimum=1,
            maximum=86400 * 7,
            kind=float,
            doc="Seconds over which register_per_ip counts.",
        ),
        "second_login": Str(
            "replace",
            choices=("replace", "refuse"),
            doc="A second session of one account: 'replace' closes the older "
            "one (telling it why); 'refuse' refuses the newer one.",
        ),
    }

    def check(self):
        if self.name_max_length < self.name_min_length:
            raise self.error("name_max_length", "must not be below name_min_length")
        if self.password_max_length < self.password_min_length:
            raise self.error("password_max_length", "must not be below password_min_length")


class FloodClassSection(Section):
    """A class of client messages with a token bucket of its own."""

    fields = {
        "types": StrList(REQUIRED, doc="Message types (or prefixes ending in '.') in the class."),
        "rate": Number(
            REQUIRED,
            minimum=0.01,
            maximum=100000,
            kind=float,
            doc="Messages per second allowed on average.",
        ),
        "burst": Number(REQUIRED, minimum=1, maximum=100000, doc="Messages allowed at once."),
    }


class GatewaySection(Section):
    """Player sessions on gateways: heartbeat, flood limits, resume."""

    fields = {
        "heartbeat_interval": Number(
            15.0,
            minimum=0.1,
            maximum=3600,
            kind=float,
            doc="Seconds between server heartbeats to a quiet client.",
        ),
        "heartbeat_timeout": Number(
            45.0,
            minimum=0.2,
            maximum=86400,
            kind=float,
            doc="Seconds without any frame before the session is treated as dropped.",
        ),
        "resume_window": Number(
            60.0,
            minimum=0,
            maximum=86400,
            kind=float,
            doc="Seconds a dropped session is kept for the client to resume.",
        ),
        "resume_buffer": Number(
            1000, minimum=1, maximum=1000000, doc="Pushes kept per session for replay on resume."
        ),
        "flood_rate": Number(
            20.0,
            minimum=0.01,
            maximum=100000,
            kind=float,
            doc="Messages per second a connection may send on average.",
        ),
        "flood_burst": Number(
            40, minimum=1, maximum=100000, doc="Messages a connection may send at once."
        ),
        "flood_strikes": Number(
            20,
            minimum=1,
            maximum=100000,
            doc="Messages refused for flooding before the client is disconnected.",
        ),
        "flood": Tables(
            FloodClassSection,
            name_pattern=r"^[a-z][a-z0-9_-]{0,31}$",
            name_rule="a lower-case name",
            doc="Message classes with their own limits.",
        ),
        "websocket_max_message": Number(
            65536,
            minimum=256,
            maximum=16 * 1024 * 1024,
            doc="Largest WebSocket message accepted, bytes.",
        ),
        "drain_timeout": Number(
            30.0,
            minimum=0.1,
            maximum=86400,
            kind=float,
            doc="Seconds a drain waits for every client to move to another gateway.",
        ),
    }

    def check(self):
        if self.heartbeat_timeout <= self.heartbeat_interval:
            raise self.error("heartbeat_timeout", "must be longer than heartbeat_interval")


class LobbySection(Section):
    """Characters and rooms."""

    fields = {
        "characters_per_account": Number(
            8, minimum=1, maximum=1000, doc="Characters one account may have."
        ),
        "character_name_min_length": Number(3, minimum=1, maximum=64, doc="Shortest name."),
        "character_name_max_length": Number(16, minimum=1, maximum=64, doc="Longest name."),
        "room_capacity": Number(
            8, minimum=2, maximum=100000, doc="Members of a room when its creator does not say."
        ),
        "room_max_capacity": Number(
            64, minimum=2, maximum=100000, doc="Most members a room may be created for."
        ),
        "rooms_max": Number(1000, minimum=1, maximum=1000000, doc="Rooms open at once."),
    }

    def check(self):
        if self.character_name_max_length < self.character_name_min_length:
            raise self.error(
                "character_name_max_length", "must not be below character_name_min_length"
            )
        if self.room_capacity > self.room_max_capacity:
            raise self.error("room_capacity", "must not be above room_max_capacity")


class ChatSection(Section):
    """Chat channels, history, moderation and flood rules."""

    fields = {
        "history": Number(
            50,
            minimum=0,
            maximum=10000,
            doc="Messages kept (persisted) per channel and shown on join.",
        ),
        "max_length": Number(500, minimum=1, maximum=65536, doc="Longest message, characters."),
        "rate": Number(
            1.0,
            minimum=0.01,
            maximum=10000,
            kind=float,
            doc="Chat messages per second a player may send on average.",
        ),
        "burst": Number(
            5, minimum=1, maximum=10000, doc="Chat messages a player may send at once."
        ),
        "moderators": StrList([], doc="Account names that may mute and unmute."),
        "channel_max_members": Number(
            10000, minimum=2, maximum=10000000, doc="Members of one channel."
        ),
    }


class ManagerSection(Section):
    """How C{mmo-manager} supervises the processes of its machine."""

    fields = {
        "restart_delay": Number(
            1.0,
            minimum=0,
            maximum=3600,
            kind=float,
            doc="Seconds before restarting a process that died young; doubles each time.",
        ),
        "restart_max_delay": Number(
            60.0,
            minimum=0,
            maximum=86400,
            kind=float,
            doc="Longest wait before restarting a process that keeps dying young.",
        ),
        "restart_threshold": Number(
            5.0,
            minimum=0,
            maximum=3600,
            kind=float,
            doc="A process that ran this long before dying is restarted at once.",
        ),
        "stop_timeout": Number(
            15.0,
            minimum=0.1,
            maximum=3600,
            kind=float,
            doc="Seconds a process has to stop after SIGTERM before it gets SIGKILL.",
        ),
        "start_timeout": Number(
            30.0,
            minimum=0.1,
            maximum=3600,
            kind=float,
            doc="Seconds the local redis-server, or an upgraded process, has to be ready.",
        ),
        "drain_timeout": Number(
            120.0,
            minimum=1,
            maximum=86400,
            kind=float,
            doc="Seconds a drain or an upgrade may take before it is reported failed.",
        ),
        "redis_command": Str("redis-server", doc="The redis-server program to run."),
        "redis_dir": FilePath(
            "data/redis", doc="Where the local redis-server keeps its append-only file."
        ),
    }


class RealmSection(Section):
    """A world players choose at login."""

    fields = {
        "title": Str("", doc="Name shown to players; default: the realm's key."),
    }


class ProcessSection(Section):
    """
    One process of the deployment: what it runs, where it listens and the
    names and addresses it is reached by (which go into its certificate).
    """

    fields = {
        "kind": Str(REQUIRED, choices=PROCESS_KINDS, doc="What the process runs."),
        "hosts": StrList(
            ["localhost", "127.0.0.1", "::1"],
            item=check_host,
            doc="Host names and addresses the process is reached by.",
        ),
        "client": ServerEndpoint("", doc="Client-facing TLS listener (endpoint string)."),
        "rpc": ServerEndpoint("", doc="Internal AMP listener, mutual TLS (endpoint string)."),
        "websocket": ServerEndpoint(
            "", doc="Secure WebSocket listener for browsers (endpoint string); mmo adds TLS."
        ),
        "realm": Str("main", doc="The realm a gateway (or standalone process) serves."),
        "public": Str(
            "",
            doc="HOST:PORT clients are sent to for this process's client listener; "
            "default: the first of hosts and the client port.",
        ),
        "factory": Str(
            "",
            pattern=r"^$|^[A-Za-z_][\w.]*\.[A-Za-z_]\w*$",
            doc="Fully qualified name of the client factory class to use.",
        ),
        "runs": StrList(
            [],
            item=lambda name: None if PROCESS_NAME.match(name) else "not a process name",
            doc="Manager only: the processes it starts and supervises on its machine; "
            "default: every process that is not a manager.",
        ),
        "redis_server": Bool(
            False,
            doc="Manager only: also run a local redis-server on [redis] port, with "
            "append-only persistence in [manager] redis_dir.",
        ),
    }

    def check(self):
        if self.kind != "manager":
            for key, unset in (("runs", not self.runs), ("redis_server", not self.redis_server)):
                if not unset:
                    raise self.error(key, f"only a manager has it, not a {self.kind!r} process")
        if self.kind in ("mmo", "gateway", "login") and not self.client:
            raise self.error("client", f"a {self.kind!r} process needs a client listener")
        if self.public and check_host_port(self.public):
            raise self.error("public", f"{self.public!r} must be HOST:PORT")
        if self.client and not self.public and self.client_port() is None:
            raise self.error(
                "public", "set it: the client listener has no TCP port to send clients to"
            )

    def client_port(self) -> int | None:
        """The TCP port of the client listener, if it has one (0: chosen at start)."""
        if not self.client:
            return None
        kind, _, rest = self.client.partition(":")
        if kind not in ("tcp", "tcp6"):
            return None
        first = rest.split(":", 1)[0]
        if first.startswith("port="):
            first = first[len("port=") :]
        return int(first) if first.isdigit() else None

    def public_address(self, port: int | None = None) -> tuple[str, int]:
        """
        Where clients reach this process's client listener: C{public}, or
        the first of C{hosts} and the listener's port (C{port}, the one
        actually bound, overrides a configured 0).
        """
        if self.public:
            host, _, number = self.public.rpartition(":")
            return host.strip("[]"), int(number)
        return self.hosts[0], port if port is not None else self.client_port()

    @property
    def identity(self) -> str:
        """The name other processes verify this process's certificate against."""
        return self.name


class Point(Field):
    """
    A position on the world map: an array of two numbers C{[x, y]}, read as
    a tuple of floats.  The default C{None} lets the section choose one.
    """

    def convert(self, value, path, ctx):
        if (
            not isinstance(value, list)
            or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value)
        ):
            raise ConfigError(f"must be an array of two numbers [x, y], got {value!r}", path)
        if not all(math.isfinite(v) for v in value):
            raise ConfigError(f"must be finite numbers, got {value!r}", path)
        return (float(value[0]), float(value[1]))


#: Names of world regions: they name zones in the directory and in logs.
REGION_NAME = r"^[a-z0-9][a-z0-9_-]{0,31}$"


class RegionSection(Section):
    """
    One rectangle of the world map, C{[x0, x1) x [y0, y1)}, and the zone
    process that simulates it.
    """

    fields = {
        "x0": Number(REQUIRED, minimum=0, kind=float, doc="Left edge, world units."),
        "y0": Number(REQUIRED, minimum=0, kind=float, doc="Bottom edge, world units."),
        "x1": Number(REQUIRED, minimum=0, kind=float, doc="Right edge (exclusive)."),
        "y1": Number(REQUIRED, minimum=0, kind=float, doc="Top edge (exclusive)."),
        "process": Str(
            REQUIRED, pattern=PROCESS_NAME.pattern, doc="The zone process serving the region."
        ),
    }

    def check(self):
        if self.x1 <= self.x0:
            raise self.error("x1", f"must be greater than x0 ({self.x0:g}), got {self.x1:g}")
        if self.y1 <= self.y0:
            raise self.error("y1", f"must be greater than y0 ({self.y0:g}), got {self.y1:g}")


class WorldSection(Section):
    """
    The world map: its size, its split into regions (each simulated by one
    zone process), and the rules of the simulation (tick, area of interest,
    ghosts, hysteresis, speeds, NPCs).  See C{docs/world.md}.

    Regions are either a grid (C{columns} x C{rows}, with one process name
    per cell in C{zones}, row-major from y = 0) or explicit rectangles
    (C{[world.regions.NAME]}); either way they must tile the map with no gap
    and no overlap.  After reading, C{layout} lists every region as
    C{(name, x0, y0, x1, y1, process)}: the grid's cells are named
    C{r<row>c<column>}.

    @ivar layout: The regions, in grid (row-major) or file order.
    """

    #: The process serving a world that names none: the standalone one.
    DEFAULT_ZONE = "mmo"

    fields = {
        "width": Number(1000.0, minimum=1, maximum=1e9, kind=float, doc="Map width, world units."),
        "height": Number(
            1000.0, minimum=1, maximum=1e9, kind=float, doc="Map height, world units."
        ),
        "tick_rate": Number(
            20.0, minimum=1, maximum=1000, kind=float, doc="Simulation ticks per second."
        ),
        "aoi_radius": Number(
            50.0,
            minimum=0.1,
            maximum=1e9,
            kind=float,
            doc="A player sees the entities within this distance.",
        ),
        "ghost_margin": Number(
            60.0,
            minimum=0.1,
            maximum=1e9,
            kind=float,
            doc="Entities this close to a neighbouring region are mirrored into it.",
        ),
        "hysteresis": Number(
            5.0,
            minimum=0,
            maximum=1e9,
            kind=float,
            doc="How far past its region's border an entity goes before it is handed off.",
        ),
        "max_speed": Number(
            8.0, minimum=0.001, maximum=1e9, kind=float, doc="Fastest a player moves, units/s."
        ),
        "speed_tolerance": Number(
            0.1,
            minimum=0,
            maximum=10,
            kind=float,
            doc="Share above max_speed still accepted (network jitter, rounding).",
        ),
        "move_burst": Number(
            0.5,
            minimum=0.001,
            maximum=60,
            kind=float,
            doc="Seconds of movement a player may catch up on at once.",
        ),
        "npc_speed": Number(
            2.0, minimum=0, maximum=1e9, kind=float, doc="NPC walking speed, units/s."
        ),
        "npcs": Number(10, minimum=0, maximum=1000000, doc="NPCs each zone spawns."),
        "spawn": Point(None, doc="Where new players appear, [x, y]; default: the centre."),
        "zone_class": Str(
            "",
            pattern=r"^$|^[A-Za-z_][\w.]*\.[A-Za-z_]\w*$",
            doc="Fully qualified name of a ZoneService subclass with the game's rules.",
        ),
        "columns": Number(1, minimum=1, maximum=1024, doc="Regions across (grid)."),
        "rows": Number(1, minimum=1, maximum=1024, doc="Regions down (grid)."),
        "zones": StrList(
            [],
            item=lambda name: None if PROCESS_NAME.match(name) else "not a process name",
            doc="Process serving each grid cell, row-major; default: 'mmo' for every cell.",
        ),
        "regions": Tables(
            RegionSection,
            name_pattern=REGION_NAME,
            name_rule="a lower-case name: a-z, 0-9, '_' and '-'",
            doc="Explicit rectangles, instead of a grid.",
        ),
    }

    def check(self):
        if self.regions:
            for key, unset in (
                ("columns", self.columns == 1),
                ("rows", self.rows == 1),
                ("zones", not self.zones),
            ):
                if not unset:
                    raise self.error(
                        key, "set either [world.regions.NAME] tables or a grid, not both"
                    )
            self.layout = self._explicit_layout()
        else:
            self.layout = self._grid_layout()
        if self.spawn is None:
            self.spawn = (self.width / 2, self.height / 2)
        elif not (0 <= self.spawn[0] <= self.width and 0 <= self.spawn[1] <= self.height):
            raise self.error(
                "spawn", f"{list(self.spawn)} is outside the map ({self.width:g} x {self.height:g})"
            )
        if self.aoi_radius > self.ghost_margin:
            raise self.error(
                "aoi_radius",
                f"must not exceed ghost_margin ({self.ghost_margin:g}): players near a border "
                "would not see everything within their radius on the other side",
            )
        # An entity is ghosted only into the neighbours of the region that
        # owns it, even while it is up to `hysteresis` deep into one of them.
        reach = self.ghost_margin + self.hysteresis
        for name, x0, y0, x1, y1, _process in self.layout:
            side = min(x1 - x0, y1 - y0)
            if reach >= side:
                raise self.error(
                    "ghost_margin",
                    f"ghost_margin + hysteresis ({reach:g}) must be smaller than every "
                    f"region's width and height; region {name!r} is "
                    f"{x1 - x0:g} x {y1 - y0:g}",
                )
        if self.move_burst < 2 / self.tick_rate:
            raise self.error(
                "move_burst",
                f"must be at least two ticks ({2 / self.tick_rate:g} s at "
                f"tick_rate {self.tick_rate:g}), got {self.move_burst:g}",
            )

    def _grid_layout(self) -> list[tuple]:
        zones = self.zones or [self.DEFAULT_ZONE] * (self.columns * self.rows)
        if len(zones) != self.columns * self.rows:
            raise self.error(
                "zones",
                f"a grid of {self.columns} columns x {self.rows} rows needs "
                f"{self.columns * self.rows} zone names, got {len(zones)}",
            )
        layout = []
        for row in range(self.rows):
            for column in range(self.columns):
                layout.append(
                    (
                        f"r{row}c{column}",
                        self.width * column / self.columns,
                        self.height * row / self.rows,
                        self.width * (column + 1) / self.columns,
                        self.height * (row + 1) / self.rows,
                        zones[row * self.columns + column],
                    )
                )
        return layout

    def _explicit_layout(self) -> list[tuple]:
        regions = list(self.regions.values())
        for region in regions:
            for key, limit in (("x1", self.width), ("y1", self.height)):
                if getattr(region, key) > limit:
                    which = "width" if key == "x1" else "height"
                    raise ConfigError(
                        f"must be at most the map's {which} ({limit:g}), "
                        f"got {getattr(region, key):g}",
                        self._path + ("regions", region.name, key),
                    )
        for index, region in enumerate(regions):
            for other in regions[:index]:
                if (
                    region.x0 < other.x1
                    and other.x0 < region.x1
                    and region.y0 < other.y1
                    and other.y0 < region.y1
                ):
                    raise ConfigError(
                        f"overlaps world.regions.{other.name} in "
                        f"({max(region.x0, other.x0):g}, {max(region.y0, other.y0):g})-"
                        f"({min(region.x1, other.x1):g}, {min(region.y1, other.y1):g})",
                        self._path + ("regions", region.name),
                    )
        # Without overlaps, the regions tile the map exactly when their areas
        # add up to the map's: computed exactly, as fractions of the floats.
        covered = sum(
            (Fraction(r.x1) - Fraction(r.x0)) * (Fraction(r.y1) - Fraction(r.y0)) for r in regions
        )
        if covered != Fraction(self.width) * Fraction(self.height):
            x0, y0, x1, y1 = _first_gap(regions, self.width, self.height)
            raise ConfigError(
                f"the regions leave a gap: no region covers ({x0:g}, {y0:g})-({x1:g}, {y1:g})",
                self._path + ("regions",),
            )
        return [(r.name, r.x0, r.y0, r.x1, r.y1, r.process) for r in regions]

    def check_processes(self, processes: dict, file: str | None = None) -> None:
        """
        Check that every region is served by a process of C{processes} (the
        C{[processes]} tables) of kind C{zone} or C{mmo}.  Called by what
        starts zones, not on every load: a file may describe only part of a
        deployment.

        @raise ConfigError: Naming C{world.zones} or the region's C{process}.
        """
        for name, _x0, _y0, _x1, _y1, process in self.layout:
            found = processes.get(process)
            if found is not None and found.kind in ("zone", "mmo"):
                continue
            path = (
                self._path + ("regions", name, "process")
                if self.regions
                else self._path + ("zones",)
            )
            reason = "no such process" if found is None else f"a {found.kind!r} process"
            raise ConfigError(
                f"region {name!r} is served by {process!r}: {reason}, not a zone", path, file
            )


def _listening_address(description: str) -> tuple[int | str, str] | None:
    """
    C{(port, interface)} of a TCP endpoint description, C{(path, "unix")} of
    a UNIX one, or C{None} for other kinds (they are not checked for clashes).
    """
    endpoint = endpoints.serverFromString(object(), description)
    if isinstance(endpoint, (endpoints.TCP4ServerEndpoint, endpoints.TCP6ServerEndpoint)):
        return endpoint._port, endpoint._interface
    if isinstance(endpoint, endpoints.UNIXServerEndpoint):
        return os.path.abspath(endpoint._address), "unix"
    return None


def _first_gap(regions, width: float, height: float) -> tuple[float, float, float, float]:
    """The first rectangle of the map (bottom to top) that no region covers."""
    xs = sorted({0.0, width, *(r.x0 for r in regions), *(r.x1 for r in regions)})
    ys = sorted({0.0, height, *(r.y0 for r in regions), *(r.y1 for r in regions)})
    for y0, y1 in pairwise(ys):
        for x0, x1 in pairwise(xs):
            mx, my = (x0 + x1) / 2, (y0 + y1) / 2
            if not any(r.x0 <= mx < r.x1 and r.y0 <= my < r.y1 for r in regions):
                return x0, y0, x1, y1
    return 0.0, 0.0, width, height  # unreachable when the areas differ


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
        "store": Table(StoreSection),
        "redis": Table(RedisSection),
        "bus": Table(BusSection),
        "login": Table(LoginSection),
        "gateway": Table(GatewaySection),
        "lobby": Table(LobbySection),
        "chat": Table(ChatSection),
        "world": Table(WorldSection),
        "manager": Table(ManagerSection),
        "realms": Tables(
            RealmSection,
            name_pattern=r"^[a-z][a-z0-9-]{0,31}$",
            name_rule="a lower-case name: a-z, 0-9 and '-'",
        ),
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
                    f"the name {reserved!r} is reserved (it names the operators' certificate)",
                    ("processes", reserved),
                )
        self._check_managers()
        self._check_ports()
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

        for process in self.processes.values():
            if process.kind in ("mmo", "gateway") and process.realm not in self.realm_names():
                raise ConfigError(
                    f"no realm {process.realm!r} (realms: {', '.join(self.realm_names())})",
                    ("processes", process.name, "realm"),
                )

    def managed(self, manager: ProcessSection) -> list[ProcessSection]:
        """The processes C{manager} runs, in the file's order."""
        names = manager.runs or [n for n, p in self.processes.items() if p.kind != "manager"]
        return [self.processes[name] for name in names]

    def _check_managers(self) -> None:
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
        self._machine = runner

    def _listeners(self):
        """Every listener of the file: (process, key, port or path, interface)."""
        for process in self.processes.values():
            for key in ("client", "rpc", "websocket"):
                value = getattr(process, key)
                if value:
                    where = _listening_address(value)
                    if where is not None:
                        yield process, key, where[0], where[1]
            if process.kind == "manager" and process.redis_server and not self.redis.unix:
                yield process, "redis_server", self.redis.port, self.redis.host

    def _same_machine(self, a: ProcessSection, b: ProcessSection) -> bool:
        machine_a = a.name if a.kind == "manager" else self._machine.get(a.name)
        machine_b = b.name if b.kind == "manager" else self._machine.get(b.name)
        if machine_a is not None and machine_b is not None:
            return machine_a == machine_b
        return bool({h.lower() for h in a.hosts} & {h.lower() for h in b.hosts})

    def _check_ports(self) -> None:
        seen: list = []
        for process, key, port, interface in self._listeners():
            if port == 0:
                continue
            for other, other_key, other_port, other_interface in seen:
                if port != other_port or not self._same_machine(process, other):
                    continue
                wild = ("", "0.0.0.0", "::")
                if interface in wild or other_interface in wild or interface == other_interface:
                    raise ConfigError(
                        f"port {port} is taken by processes.{other.name}.{other_key} "
                        "on the same machine",
                        ("processes", process.name, key),
                    )
            seen.append((process, key, port, interface))

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
        e.file = path
        raise
    config.file = path
    return config
