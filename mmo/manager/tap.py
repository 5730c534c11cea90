"""
The C{mmo-manager} plugin: starts every process this manager runs (its
C{runs}, by default every process of the file), and optionally a local
redis-server, restarts those that die, answers C{mmo-admin}, and serves
the admin console where its config gives it one.

    twistd -n mmo-manager --config conf/cluster.toml --process manager
"""

from __future__ import annotations

import os
import shlex
import shutil

from mmo import logs, rpc
from mmo.bus import make_bus
from mmo.config import ConfigError
from mmo.console import console_port
from mmo.console.auth import ConsoleAuth
from mmo.console.map import map_resource
from mmo.console.service import ConsoleListener
from mmo.console.site import ConsoleSite, console_root
from mmo.manager.service import AdminFactory, LocalRedis, Manager, ManagerError
from mmo.metrics.discovery import TargetsFile
from mmo.metrics.registry import StateSource
from mmo.process.control import ControlError
from mmo.process.service import ConfigOptions, ProcessService, ServiceResource, build
from mmo.redis import LOCAL_REDIS, LocalRedisFiles, uses_tls
from mmo.tls import client_paths, server_paths


class Options(ConfigOptions):
    kind = "manager"
    synopsis = "--config FILE [--process NAME]"
    longdesc = "Run, supervise, drain and upgrade the processes of one machine."


def check(config, process) -> None:
    """
    What would make the processes fail one by one, found at once: regions
    without a zone, missing certificates, a missing redis-server.

    @raise ConfigError: With the file, key and reason.
    """
    managed = config.managed(process)
    if not managed and not process.redis_server:
        raise ConfigError("runs nothing", ("processes", process.name, "runs"), config.file)
    if process.console:
        console_port(config, process)
    if any(p.kind == "zone" for p in config.processes.values()):
        config.world.check_processes(config.processes, config.file)
    tls_dir = config.deployment.tls_dir
    for peer in [process, *managed]:
        for path in (*server_paths(tls_dir, peer.name), *client_paths(tls_dir, peer.name)):
            _require(config, path, f"certificates of {peer.name}")
    if process.redis_server:
        program = shlex.split(config.manager.redis_command)[:1]
        if not program or shutil.which(program[0]) is None:
            raise ConfigError(
                f"{config.manager.redis_command!r} is not an installed program",
                ("manager", "redis_command"),
                config.file,
            )
        if config.redis.unix:
            raise ConfigError(
                "a local redis-server listens on [redis] host and port, not a unix socket",
                ("redis", "unix"),
                config.file,
            )
        if LOCAL_REDIS in config.processes:
            raise ConfigError(
                f"the name {LOCAL_REDIS!r} is reserved for the local redis-server",
                ("processes", LOCAL_REDIS),
                config.file,
            )
        files = LocalRedisFiles.of(config)
        needed = []
        if not (config.redis.password or config.redis.password_file):
            needed.append(files.password)
        if uses_tls(config):
            needed += [files.certificate, files.key]
        for path in needed:
            _require(config, path, "the local redis-server's")


def _require(config, path: str, whose: str) -> None:
    """
    @raise ConfigError: C{path}, a file of the TLS directory that
        C{mmo-certs} writes, is missing.
    """
    if not os.path.exists(path):
        raise ConfigError(
            f"{path} is missing ({whose}): run mmo-certs --config {config.file} --renew",
            ("deployment", "tls_dir"),
            config.file,
        )


def makeService(options: Options, reactor=None) -> ProcessService:
    config, process = options.config, options.process
    if reactor is None:
        from twisted.internet import reactor

    def make():
        check(config, process)
        top = ProcessService(config, process, reactor)
        bus = None
        if config.bus.backend == "redis":
            bus = make_bus(config, reactor)
        console = ConsoleAuth.from_config(config, reactor) if process.console else None
        manager = Manager.build(
            config, process, bus, reactor, out=lambda: logs.output, console=console
        )
        if process.redis_server:
            top.resource(LocalRedis(config, manager.supervisor, reactor))
        if bus is not None:
            top.resource(bus)
            top.control_service(bus)
        top.resource(ServiceResource(manager.supervisor))
        top.resource(StateSource(manager.metric_families))
        if config.manager.metrics_targets:
            top.resource(TargetsFile(config.manager.metrics_targets, manager.targets, reactor))
        if process.rpc:
            factory = AdminFactory(config, process, manager, reactor)
            rpc.listen(config, process, factory=factory, reactor=reactor).setServiceParent(top)
        if console is not None:
            # The live map needs the zones' bus: with the in-process one there are none.
            extra = {b"map": map_resource(config, bus, reactor, console)} if bus is not None else {}
            root = console_root(console, manager, (ManagerError, ControlError), extra=extra)
            ConsoleListener(config, process, ConsoleSite(root, reactor), reactor).setServiceParent(
                top
            )
        top.manager = manager
        return top

    return build(make)
