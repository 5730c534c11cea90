"""
The Prometheus file-based service discovery list a manager writes
(C{[manager] metrics_targets}): one target group per process of its
machine with a TCP C{metrics} listener, labelled with the process's name
and kind, and its scheme (C{https}, or C{http} for a plain loopback
listener) in C{__scheme__}.

A process held by a drain is left out (it is out of service on purpose,
not down); the list is checked every L{TargetsFile.interval} seconds and
the file rewritten, atomically, only when it changes, so Prometheus sees
the change at its next read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable

from twisted.internet import task
from twisted.logger import Logger

from mmo.config import ProcessSection
from mmo.config.listeners import WILDCARD_INTERFACES, listening_address


def target(process: ProcessSection) -> dict | None:
    """
    The target group of C{process}'s metrics listener, or C{None} if it has
    none that Prometheus can reach by TCP (none, or a Unix socket).  A
    listener on every interface is reached by the first of the process's
    C{hosts}, a name its certificate holds.
    """
    if not process.metrics:
        return None
    address = listening_address(process.metrics)
    if address is None or address.port is None:
        return None
    host = process.hosts[0] if address.interface in WILDCARD_INTERFACES else address.interface
    where = f"[{host}]:{address.port}" if ":" in host else f"{host}:{address.port}"
    return {
        "targets": [where],
        "labels": {
            "process": process.name,
            "kind": process.kind,
            "__scheme__": "https" if process.metrics_tls else "http",
        },
    }


def targets(processes: Iterable[ProcessSection]) -> list[dict]:
    """The target groups of C{processes}, those with a reachable metrics listener."""
    return [group for group in map(target, processes) if group is not None]


def write(path: str, groups: list[dict]) -> None:
    """Write C{groups} to C{path} as JSON, replacing the file at once."""
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w") as f:
        json.dump(groups, f, indent=2)
        f.write("\n")
    os.replace(temporary, path)


class TargetsFile:
    """
    Keeps C{path} holding the target groups C{current()} returns: written
    at start, then whenever they change (checked every C{interval}
    seconds on C{clock}).  A process resource (C{start}, C{stop}).
    """

    log = Logger()
    interval = 5.0

    def __init__(self, path: str, current: Callable[[], list[dict]], clock):
        self.path = path
        self.current = current
        self.clock = clock
        self.written: list[dict] | None = None
        self._loop: task.LoopingCall | None = None

    def refresh(self) -> None:
        """Rewrite the file if the groups changed since it was last written."""
        groups = self.current()
        if groups == self.written:
            return
        try:
            write(self.path, groups)
        except OSError as e:
            self.log.error(
                "cannot write the metrics targets to {path}: {why}",
                path=self.path,
                why=e.strerror or str(e),
            )
            return
        self.written = groups

    def start(self) -> None:
        self._loop = task.LoopingCall(self.refresh)
        self._loop.clock = self.clock
        self._loop.start(self.interval, now=True)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
