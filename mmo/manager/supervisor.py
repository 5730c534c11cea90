"""
The processes of one machine under Twisted's L{ProcessMonitor}: started in
order, restarted with backoff when they die, their log lines passed on
tagged with their names, stopped in order, and replaced one at a time for
an upgrade.
"""

from __future__ import annotations

import os
import sys
from collections import Counter

from twisted.internet import defer, error
from twisted.logger import Logger
from twisted.runner.procmon import ProcessMonitor
from twisted.runner.procmon import _Process as MonitoredProcess

#: The twistd plugin of each process kind.
PLUGINS = {
    "mmo": "mmo",
    "login": "mmo-login",
    "gateway": "mmo-gateway",
    "lobby": "mmo-lobby",
    "chat": "mmo-chat",
    "zone": "mmo-zone",
}

#: The order processes start in; they stop in the reverse order, one group
#: at a time: clients are told goodbye first, zones write their last
#: checkpoint while the services they talk to are still up, Redis goes last.
START_ORDER = (("redis",), ("lobby", "chat", "mmo"), ("zone",), ("login", "gateway"))

#: twistd, run by this interpreter (so by the same installation of mmo).
TWISTD = "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"

#: Kind of the local redis-server a manager may run.
REDIS = "redis"


def twistd_args(config_path: str, name: str, kind: str, *extra: str) -> list[str]:
    """
    The command that runs process C{name} of the config: twistd of this
    interpreter, in the foreground, logging to standard output (which the
    manager reads), without a pid file (the manager knows the pid).
    """
    return [
        sys.executable,
        "-c",
        TWISTD,
        "--nodaemon",
        "--pidfile=",
        "--logfile=-",
        PLUGINS[kind],
        "--config",
        os.path.abspath(config_path),
        "--process",
        name,
        *extra,
    ]


class ChildProtocol:
    """
    One run of a supervised process: its output, line by line, and its end.

    Not L{twisted.runner.procmon.LoggingProtocol}: a process being replaced
    runs next to its successor under the same name, so each run knows
    itself and tells the supervisor which one ended.
    """

    def __init__(self, supervisor: Supervisor, name: str):
        self.supervisor = supervisor
        self.name = name
        self.transport = None
        self.pid: int | None = None
        self.started = supervisor._clock.seconds()
        self.ended: defer.Deferred = defer.Deferred()
        self._partial = {1: b"", 2: b""}

    # IProcessProtocol, the parts that matter here.

    def makeConnection(self, transport) -> None:
        self.transport = transport
        self.pid = getattr(transport, "pid", None)

    def childDataReceived(self, fd: int, data: bytes) -> None:
        lines = (self._partial.get(fd, b"") + data).split(b"\n")
        self._partial[fd] = lines.pop()
        for line in lines:
            self.supervisor.childLine(self.name, fd, line)

    def childConnectionLost(self, fd: int) -> None:
        rest = self._partial.pop(fd, b"")
        if rest:
            self.supervisor.childLine(self.name, fd, rest)

    def processExited(self, reason) -> None:
        pass

    def processEnded(self, reason) -> None:
        for fd in list(self._partial):
            self.childConnectionLost(fd)
        self.supervisor.childEnded(self, reason)
        self.ended.callback(describe_exit(reason))


def describe_exit(reason) -> str:
    """'exit status 1', 'signal 9' or 'exit status 0' from a process's end."""
    value = reason.value
    if isinstance(value, (error.ProcessDone, error.ProcessTerminated)):
        if value.signal is not None:
            return f"signal {value.signal}"
        return f"exit status {value.exitCode}"
    return reason.getErrorMessage()


class Supervisor(ProcessMonitor):
    """
    L{ProcessMonitor} as a manager needs it.

    A process that ran at least C{threshold} seconds is restarted at once;
    one that died younger waits C{delay[name]} (doubling, up to
    C{maxRestartDelay}), as L{ProcessMonitor} does.  On top of that:

      - processes have a kind, and start and stop in L{START_ORDER};
      - a process can be I{held} (not restarted: drained) and I{replaced}
        (L{replace}: a successor started under its name while the old one
        winds down by itself);
      - every line a process writes is passed on: the lines of mmo
        processes carry their own process name already and are written
        as they are to C{out} (the manager's log); others (Redis, anything
        on standard error before logging started) are logged here, tagged.

    @ivar kinds: Process name -> kind.
    @ivar restarts: Process name -> how many times it was restarted.
    @ivar held: Names not to restart when they exit.
    @ivar retired: Runs replaced by a successor, still winding down.
    """

    log = Logger()

    def __init__(self, reactor=None, out=None):
        """
        @param out: Where the lines of mmo processes go: a file, or a callable
            returning one (the manager's log, made after the supervisor).
        """
        if reactor is None:
            from twisted.internet import reactor
        super().__init__(reactor=reactor)
        self.reactor = reactor
        self.out = out
        self.kinds: dict[str, str] = {}
        self.restarts: Counter = Counter()
        self.exits: dict[str, str] = {}
        self.held: set[str] = set()
        self.retired: set[ChildProtocol] = set()

    def add(self, name: str, kind: str, args: list[str], env=None, cwd=None) -> None:
        """Supervise C{name}, of C{kind}, run as C{args}."""
        self.kinds[name] = kind
        self.addProcess(name, args, env=dict(os.environ if env is None else env), cwd=cwd)

    def names(self) -> list[str]:
        """The supervised names in start order."""
        order = {kind: index for index, group in enumerate(START_ORDER) for kind in group}
        return sorted(self._processes, key=lambda name: order.get(self.kinds.get(name), 99))

    def groups(self) -> list[list[str]]:
        """The supervised names, grouped by L{START_ORDER}."""
        return [
            [name for name in self.names() if self.kinds.get(name) in group]
            for group in START_ORDER
        ]

    # -- running -------------------------------------------------------------------

    def startService(self) -> None:
        # Not ProcessMonitor's: it starts everything at once, in any order.
        self.running = 1
        for name in self.names():
            if self.kinds.get(name) != REDIS:
                self.startProcess(name)

    def startProcess(self, name: str) -> None:
        if name in self.protocols or name in self.held:
            return
        process = self._processes[name]
        child = ChildProtocol(self, name)
        self.protocols[name] = child
        self.timeStarted[name] = self._clock.seconds()
        try:
            self._reactor.spawnProcess(
                child,
                process.args[0],
                process.args,
                env=process.env,
                path=process.cwd,
            )
        except OSError as e:
            self.log.error("{process}: cannot start: {why}", process=name, why=str(e))
            del self.protocols[name]
            self._schedule(name, young=True)
            return
        self.log.info("{process}: started, pid {pid}", process=name, pid=child.pid)

    def childEnded(self, child: ChildProtocol, reason) -> None:
        name = child.name
        how = describe_exit(reason)
        if child in self.retired:
            self.retired.discard(child)
            self.log.info(
                "{process}: the replaced run (pid {pid}) ended: {how}",
                process=name,
                pid=child.pid,
                how=how,
            )
            return
        if self.protocols.get(name) is not child:
            return
        del self.protocols[name]
        call = self.murder.pop(name, None)
        if call is not None and call.active():
            call.cancel()
        self.exits[name] = how
        lived = self._clock.seconds() - child.started
        if not self.running or name not in self._processes:
            self.log.info("{process}: stopped ({how})", process=name, how=how)
            return
        if name in self.held:
            self.log.info("{process}: ended ({how}); held, not restarted", process=name, how=how)
            return
        self._schedule(name, young=lived < self.threshold, how=how, lived=lived)

    def _schedule(self, name: str, young: bool, how: str = "", lived: float = 0.0) -> None:
        if young:
            delay = self.delay[name]
            self.delay[name] = min(self.delay[name] * 2, self.maxRestartDelay)
        else:
            delay = 0
            self.delay[name] = self.minRestartDelay
        self.log.warn(
            "{process}: ended ({how}) after {lived:.1f}s; restarting in {delay:g}s",
            process=name,
            how=how or "could not start",
            lived=lived,
            delay=delay,
        )
        self.restarts[name] += 1
        self.restart[name] = self._clock.callLater(delay, self.startProcess, name)

    def childLine(self, name: str, fd: int, line: bytes) -> None:
        """One line a process wrote (C{fd} 1: standard output, 2: standard error)."""
        text = line.decode("utf-8", "replace").rstrip("\r")
        if not text:
            return
        out = self.out() if callable(self.out) else self.out
        if fd == 1 and self.kinds.get(name) != REDIS and out is not None:
            # Already one line of the process's own log, tagged with its name.
            out.write(text + "\n")
            out.flush()
        elif fd == 2:
            self.log.warn("{process} (stderr): {line}", process=name, line=text)
        else:
            self.log.info("{process}: {line}", process=name, line=text)

    # -- stopping --------------------------------------------------------------------

    def stopService(self) -> defer.Deferred:
        """Stop every process, a group at a time in reverse start order."""
        self.running = 0
        for call in list(self.restart.values()):
            if call.active():
                call.cancel()
        return defer.ensureDeferred(self._stop_all())

    async def _stop_all(self) -> None:
        # The local Redis is a resource of the manager: it stops it last.
        for group in reversed(self.groups()):
            await self.stop_group([name for name in group if self.kinds[name] != REDIS])
        for child in list(self.retired):
            self._signal(child, "TERM")
            await child.ended

    async def stop_group(self, names) -> None:
        ended = [self.protocols[name].ended for name in names if name in self.protocols]
        for name in names:
            if name in self.protocols:
                self.stopProcess(name)
        if ended:
            await defer.DeferredList(ended)

    def stop(self, name: str, hold: bool = False) -> defer.Deferred:
        """
        Stop C{name} (SIGTERM, SIGKILL after C{killTime}); it is restarted
        unless C{hold}.  Deferred firing once it has ended.
        """
        if hold:
            self.held.add(name)
        child = self.protocols.get(name)
        if child is None:
            return defer.succeed(None)
        self.stopProcess(name)
        return child.ended.addCallback(lambda _: None)

    def release(self, name: str) -> None:
        """Stop holding C{name}: start it if it is not running."""
        self.held.discard(name)
        if self.running and name not in self.protocols:
            self.startProcess(name)

    def _signal(self, child: ChildProtocol, signal: str) -> None:
        try:
            child.transport.signalProcess(signal)
        except (error.ProcessExitedAlready, AttributeError):
            pass

    # -- replacing -------------------------------------------------------------------

    def replace(self, name: str, *extra: str) -> ChildProtocol:
        """
        Start a new run of C{name} with its arguments plus C{extra} next to
        the one running, which is retired: it is neither stopped nor
        restarted; it ends by itself once its successor has taken over (or
        at L{stopService}).  Later restarts of C{name} use its usual
        arguments, without C{extra}.

        @return: The retired run (its C{ended} fires when it exits), or
            C{None} if C{name} was not running.
        """
        old = self.protocols.pop(name, None)
        if old is not None:
            self.retired.add(old)
            call = self.murder.pop(name, None)
            if call is not None and call.active():
                call.cancel()
        call = self.restart.pop(name, None)
        if call is not None and call.active():
            call.cancel()
        usual = self._processes[name]
        self._processes[name] = MonitoredProcess(
            [*usual.args, *extra], usual.uid, usual.gid, usual.env, usual.cwd
        )
        try:
            self.held.discard(name)
            self.startProcess(name)
        finally:
            self._processes[name] = usual
        return old

    def describe(self) -> dict:
        """Every supervised process: kind, state, pid, restarts, last exit."""
        table = {}
        for name in self.names():
            child = self.protocols.get(name)
            state = "running" if child is not None else ("held" if name in self.held else "down")
            table[name] = {
                "kind": self.kinds.get(name),
                "state": state,
                "pid": child.pid if child is not None else None,
                "up": round(self._clock.seconds() - child.started, 1) if child else None,
                "restarts": self.restarts[name],
                "last_exit": self.exits.get(name),
                "retired": sorted(c.pid for c in self.retired if c.name == name and c.pid),
            }
        return table
