"""
What every mmo twistd plugin shares: the C{--config} and C{--process}
options, config errors that end the start cleanly, and log set-up.

A plugin's C{tap.py} subclasses L{ConfigOptions}, setting C{kind}, and
wraps the services it makes in L{ProcessService}.
"""

from __future__ import annotations

import gc
import os

from twisted.application import service
from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure

import mmo
from mmo import config as configmodule
from mmo import logs
from mmo.bus.directory import DirectoryService
from mmo.config import ConfigError
from mmo.metrics import listener as metrics_listener
from mmo.process.control import ControlService

#: The cyclic collector's thresholds once a process has started (CPython's
#: default is 700, 10, 10).  A zone's tick allocates tens of thousands of
#: containers (update entries, events), most of them alive until the tick's
#: pushes are sent: at 700 a young collection ran dozens of times per tick,
#: each scanning what the tick had built so far (about a tenth of its time
#: at 10,000 entities; bench/zone_tick.py --default-gc shows it).
COLLECTOR_THRESHOLDS = (100_000, 10, 10)

#: The share of C{[manager] stop_timeout} a process gives its own stop: it
#: gives up on what has not stopped by then (a Redis that does not answer, a
#: peer gone) and exits by itself, before the manager's SIGKILL.
STOP_SHARE = 0.8


def settle_collector() -> None:
    """
    Set the cyclic collector up for a process that has started: what is
    loaded by now lives as long as the process, so it is kept out of the
    full collections (C{gc.freeze}), which would otherwise scan it in the
    middle of ticks; young objects are collected every
    L{COLLECTOR_THRESHOLDS}C{[0]} allocations rather than 700.
    """
    gc.freeze()
    gc.set_threshold(*COLLECTOR_THRESHOLDS)


def fail(error: ConfigError) -> None:
    """End the start: the reason on standard error, exit status 1, no traceback."""
    raise SystemExit(f"mmo: {error}")


class ConfigOptions(usage.Options):
    """
    Options of an mmo plugin.

    @cvar kind: The process kind the plugin runs.
    @cvar config_class: The L{configmodule.Config} subclass to read the file
        with (a game team's own, with its extra sections).
    @ivar config: The loaded config.
    @ivar process: The section of the process to run.
    """

    kind = "mmo"
    config_class = configmodule.Config

    optParameters = [
        ["config", "c", None, "The deployment's config file (TOML)."],
        [
            "process",
            "p",
            None,
            "Which process of the config file to run (default: the only one of this kind).",
        ],
    ]

    def postOptions(self):
        if not self["config"]:
            raise usage.UsageError("--config FILE is required")
        try:
            self.config = configmodule.load(self["config"], self.config_class)
            self.process = self.config.process(self["process"], self.kind)
        except ConfigError as e:
            fail(e)
        parent = getattr(self, "parent", None)
        if parent is not None:
            # Inside twistd: log our way unless --logger was given.
            logs.use_for_twistd(
                self.process.name, self.config.logging.format, self.config.logging.level, parent
            )


class ServiceResource:
    """
    A Twisted service run as a process resource: started before the
    process's child services and stopped after them (a gateway's RPC link to
    a service, which must outlive the sessions it tells that they ended; a
    manager's supervisor, which needs the bus and the local Redis first).
    """

    def __init__(self, service):
        self.service = service

    def start(self):
        return self.service.startService()

    def stop(self):
        return self.service.stopService()


def _directory_entries(parent: service.IServiceCollection) -> list[DirectoryService]:
    """The L{DirectoryService}s among the services under C{parent}, at any depth."""
    found = []
    for child in parent:
        if isinstance(child, DirectoryService):
            found.append(child)
        elif service.IServiceCollection.providedBy(child):
            found.extend(_directory_entries(child))
    return found


class ProcessService(service.MultiService):
    """
    The top service of an mmo process.

    With C{[processes.NAME] metrics}, its first child serves the process's
    Prometheus metrics (L{mmo.metrics.listener}).

    Resources (store, bus, password threads: anything with C{start()} and
    C{stop()} returning Deferreds) are started first, in order; only then do
    the child services start, so listeners accept no client before what
    serves it is up.  It logs C{NAME: ready} once they have, and once the
    first announcement of each of its L{DirectoryService}s is over.
    Stopping goes the other way: children first (clients are told
    goodbye), then resources.

    A failure to start (a certificate that cannot be read, a port in use, a
    store that cannot be reached) ends the process with status 1 and the
    file, key and reason, without a traceback for configuration errors.
    """

    log = Logger()
    #: Whether a failed start ends the process (tests turn this off).
    exitOnFailure = True

    def __init__(self, config, process, reactor=None):
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.config = config
        self.process = process
        self.resources = []
        #: The process's L{ControlService}, once L{control_service} made it.
        self.control = None
        self.setName(process.name)
        if getattr(process, "metrics", None):
            # First of the children: its figures are there while the others start.
            metrics_listener.listen(config, process, reactor).setServiceParent(self)

    def resource(self, thing):
        """Start C{thing} before the child services and stop it after them."""
        self.resources.append(thing)
        return thing

    def control_service(self, bus, standby: bool = False) -> ControlService:
        """
        The process's control channel on C{bus} (made once, as a resource
        started after the bus): services register their commands on it
        (C{drain}, C{kick}...).  Every process answers C{status}.

        @param standby: Make it, but leave starting it to the caller (a
            process that takes the channel over from a running one of its
            name starts it, and adds it to the resources, once it serves).
        """
        if self.control is None:
            self.control = ControlService(bus, self.process.name)
            self.control.register("status", self.status)
            if not standby:
                self.resource(self.control)
        return self.control

    def status(self) -> dict:
        """The C{status} control command: what runs here."""
        return {
            "process": self.process.name,
            "kind": self.process.kind,
            "version": mmo.__version__,
            "pid": os.getpid(),
        }

    def privilegedStartService(self):
        # Children bind their ports when they start, after the resources.
        pass

    def startService(self):
        service.Service.startService(self)
        self.started = defer.Deferred.fromCoroutine(self._start())

    async def _start(self):
        try:
            for thing in self.resources:
                await defer.maybeDeferred(thing.start)
            for child in self:
                child.privilegedStartService()
                child.startService()
        except Exception as e:
            self._cannotStart(e)
            return
        # Ready once the directory names it: a client sent here by whoever
        # read it then finds the process (a login, its gateway).
        await defer.gatherResults([entry.announcing() for entry in _directory_entries(self)])
        settle_collector()
        self.log.info(
            "{process}: ready ({kind}, mmo {version})",
            process=self.process.name,
            kind=self.process.kind,
            version=mmo.__version__,
        )

    def _cannotStart(self, error: Exception) -> None:
        if isinstance(error, CannotListenError):
            error = ConfigError(
                f"cannot listen: {error}", ("processes", self.process.name), self.config.file
            )
        if isinstance(error, ConfigError):
            self.log.critical("mmo: {error}", error=str(error))
        else:
            self.log.failure("{process}: cannot start", process=self.process.name)
        self.fail()

    def fail(self) -> None:
        """
        End the process with status 1, once the reactor has stopped what
        did start (unless C{exitOnFailure} is off, as in tests).
        """
        if not self.exitOnFailure:
            return
        self.reactor.addSystemEventTrigger("after", "shutdown", os._exit, 1)
        if self.reactor.running:
            self.reactor.stop()
        else:
            self.reactor.callWhenRunning(self.reactor.stop)

    async def _stop(self):
        service.Service.stopService(self)
        # Bounded: a stop waiting on a peer (a checkpoint, an unsubscribe
        # with Redis gone) would keep the process alive for ever, since a
        # stopping reactor ignores further SIGTERMs.
        deadline = self.reactor.seconds() + STOP_SHARE * self.config.manager.stop_timeout
        # Only what started is stopped: after a failed start (a port in
        # use) the later children never ran, and some (a TimerService)
        # cannot stop what never started.
        running = [child for child in reversed(list(self)) if child.running]
        await defer.DeferredList(
            [
                self._until(defer.maybeDeferred(child.stopService), deadline, child)
                for child in running
            ]
        )
        for thing in reversed(self.resources):
            try:
                await self._until(defer.maybeDeferred(thing.stop), deadline, thing)
            except Exception:
                self.log.failure("stopping {thing!r} failed", thing=thing)

    def _until(self, stopping: defer.Deferred, deadline: float, what) -> defer.Deferred:
        """
        C{stopping}'s result, or C{None} once C{deadline} (the reactor's
        clock) has passed, logging what the process gave up on.  C{stopping}
        is not cancelled, only no longer waited for (the reactor's end cuts
        it off); a failure after the deadline is logged.
        """
        result = defer.Deferred()

        def finished(outcome):
            if timer.active():
                timer.cancel()
                result.callback(outcome)
            elif isinstance(outcome, Failure):
                self.log.failure("stopping {thing!r} failed", outcome, thing=what)

        def give_up():
            self.log.warn(
                "{process}: gave up waiting for {thing!r} to stop after {timeout:g} s",
                process=self.process.name,
                thing=what,
                timeout=STOP_SHARE * self.config.manager.stop_timeout,
            )
            result.callback(None)

        timer = self.reactor.callLater(max(deadline - self.reactor.seconds(), 0), give_up)
        stopping.addBoth(finished)
        return result

    def stopService(self):
        return defer.Deferred.fromCoroutine(self._stop())


def build(make):
    """Call C{make()} (which builds services), ending the start on a config error."""
    try:
        return make()
    except ConfigError as e:
        fail(e)
    return None  # pragma: no cover
