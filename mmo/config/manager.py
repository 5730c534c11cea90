"""
The C{[manager]} section: how C{mmo-manager} supervises the processes of its
machine, and the local C{redis-server} it may run.
"""

from __future__ import annotations

from mmo.config.schema import Bool, FilePath, Number, Section, Str


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
        "console_link": Number(
            60.0,
            minimum=1,
            maximum=3600,
            kind=float,
            doc="Seconds a console login link (mmo-admin console) may wait to be opened.",
        ),
        "console_session": Number(
            3600.0,
            minimum=60,
            maximum=86400,
            kind=float,
            doc="Seconds a console session lasts after its login; then a new link is needed.",
        ),
        "redis_command": Str("redis-server", doc="The redis-server program to run."),
        "redis_dir": FilePath(
            "data/redis",
            doc="Where the local redis-server keeps its append-only file (mode 0700).",
        ),
        "redis_tls": Bool(
            True,
            doc="The local redis-server listens with TLS only (the deployment's CA, its "
            "certificate redis.crt) and every process connects with TLS; false for a "
            "redis-server built without TLS.",
        ),
    }
