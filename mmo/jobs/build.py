"""
Which jobs a process runs, and its L{Scheduler}: the config's
C{[jobs.NAME]} of its kind (the standalone server: all of them) and the
jobs of the game services it runs (L{mmo.game.service.GameService.jobs}).
"""

from __future__ import annotations

from collections.abc import Iterable

from mmo.config import ConfigError
from mmo.jobs.job import Job
from mmo.jobs.scheduler import Scheduler


def config_jobs(config, kind: str | None) -> list[Job]:
    """
    The jobs of the config's C{[jobs.NAME]} tables that processes of C{kind}
    run (every one for C{None}), their handlers imported.

    A handler with a C{check_args(args, config)} attribute has its job's
    C{args} checked by it here, so that a wrong one fails the start.

    @raise ConfigError: A handler cannot be imported, its C{check_args}
        refuses the job's C{args}, or no process of the deployment runs a
        job's kind.
    """
    kinds = {p.kind for p in config.processes.values()}
    found = []
    for name, section in config.jobs.items():
        if section.kind not in kinds and "mmo" not in kinds:
            raise ConfigError(
                f"no process of kind {section.kind!r} would run it", ("jobs", name, "kind"),
                config.file,
            )  # fmt: skip
        if kind is not None and section.kind != kind:
            continue
        handler = section.load_handler(config.file)
        check_args = getattr(handler, "check_args", None)
        if check_args is not None:
            try:
                check_args(section.args, config)
            except ValueError as e:
                raise ConfigError(str(e), ("jobs", name, "args"), config.file) from None
        found.append(
            Job(
                name,
                section.schedule,
                handler,
                misfire=section.misfire,
                grace=section.grace,
                max_catch_up=section.max_catch_up,
                args=section.args,
                lease_ttl=section.lease,
            )
        )
    return found


def service_jobs(services: Iterable) -> list[Job]:
    """
    The jobs of C{services} (L{mmo.game.service.GameService.jobs}), the
    jobs of one name from services of one class once: instances of one
    class (the zones of a world, one per region) all name its per-deployment
    jobs, and the first instance's job stands for them.  Jobs of one name
    from services of different classes are all kept (the scheduler refuses
    them).
    """
    found = []
    sources: dict[str, type] = {}
    for service in services:
        for job in service.jobs():
            if sources.get(job.name) is not type(service):
                found.append(job)
                sources[job.name] = type(service)
    return found


def add_scheduler(top, config, store, bus, services: Iterable, reactor, kind: str | None):
    """
    The L{Scheduler} of process C{top} (a L{mmo.process.service.ProcessService}),
    as its resource (added after the store, the bus and the services, so it
    starts after them and stops before them), answering the jobs control
    commands: the jobs of C{kind} (C{None}: every kind) and of C{services}.

    @raise ConfigError: As L{config_jobs}, or two jobs have one name.
    """
    jobs = config_jobs(config, kind) + service_jobs(services)
    try:
        scheduler = Scheduler(jobs, store, bus, top.process.name, reactor, config)
        scheduler.register(top.control_service(bus))
    except ValueError as e:
        raise ConfigError(str(e), ("jobs",), config.file) from None
    top.resource(scheduler)
    return scheduler
