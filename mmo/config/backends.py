"""
Where data lives and how processes talk: C{[store]} (SQLite or Redis),
C{[bus]} (in memory or on Redis) and C{[redis]}, the server both may use.
"""

from __future__ import annotations

from mmo.config.schema import Bool, FilePath, Number, Section, Str, StrList, check_host_port


class StoreSection(Section):
    """Where durable data (accounts, characters, zone checkpoints) lives."""

    fields = {
        "backend": Str(
            "sqlite",
            choices=("sqlite", "redis"),
            doc="Where durable data lives: 'sqlite' (embedded) or 'redis' ([redis]).",
        ),
        "path": FilePath("mmo.sqlite3", doc="The SQLite database file."),
    }


class RedisSection(Section):
    """The Redis server of the store and the bus, and how to reach it."""

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
    """The bus between processes: its backend and the directory's heartbeats."""

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
