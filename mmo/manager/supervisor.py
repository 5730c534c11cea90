"""
The processes of one machine, supervised: started in order, restarted with
backoff when they die, their log lines passed on tagged with their names,
stopped in order, and replaced one at a time for an upgrade.

The supervision is Twisted's L{twisted.runner.procmon.ProcessMonitor}'s
(same backoff, same SIGTERM then SIGKILL), in a service that owns its
process table: a manager needs kinds and an order, two runs of one name
during an upgrade, and runs that report their own end, none of which
C{ProcessMonitor} offers through its public API.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from dataclasses import dataclass, field

from twisted.application import service
from twisted.internet import defer, error
from twisted.logger import Logger

from mmo.manager.errors import RecentErrors

#: The twistd plugin of each process kind.
PLUGINS = {
    "mmo": "mmo",
    "login": "mmo-login",
    "gateway": "mmo-gateway",
    "lobby": "mmo-lobby",
    "chat": "mmo-chat",
    "zone": "mmo-zone",
    "ladder": "mmo-ladder",
    "economy": "mmo-economy",
}

#: The order processes start in; they stop in the reverse order, one group
#: at a time: clients are told goodbye first, zones write their last
#: checkpoint while the services they talk to are still up, Redis goes last.
START_ORDER = (
    ("redis",),
    ("lobby", "chat", "ladder", "economy", "mmo"),
    ("zone",),
    ("login", "gateway"),
)

#: twistd, run by this interpreter (so by the same installation of mmo).
TWISTD = "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"

#: Kind of the local redis-server a manager may run.
REDIS = "redis"

#: Every process is started through L{mmo.manager.detach}, in a session of
#: its own: a terminal's Ctrl-C reaches the manager only, which stops its
#: processes in order (L{Supervisor.stopService}).
DETACH = (sys.executable, "-m", "mmo.manager.detach")


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


@dataclass(frozen=True)
class Program:
    """
    How to run one supervised process.

    @ivar kind: Its kind (a key of L{PLUGINS}, or L{REDIS}).
    @ivar args: Its command line, the program first.
    @ivar env: Its environment.
    @ivar cwd: Its working directory, or C{None} for the manager's.
    @ivar umask: Its umask, or C{None} for the manager's.
    """

    kind: str
    args: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    umask: int | None = None

    def command(self, *extra: str) -> list[str]:
        """The command line that starts it detached (L{DETACH}), with C{extra} arguments."""
        umask = () if self.umask is None else ("--umask", f"{self.umask:o}")
        return [*DETACH, *umask, *self.args, *extra]


class ChildProtocol:
    """
    One run of a supervised process: its output, line by line, and its end.

    Not L{twisted.runner.procmon.LoggingProtocol}: a process being replaced
    runs next to its successor under the same name, so each run knows
    itself and tells the supervisor which one ended.

    @ivar pid: The process id, once spawned.
    @ivar started: When it was started (the supervisor's clock).
    @ivar how: How it ended (L{describe_exit}), or C{None} while it runs.
    """

    def __init__(self, supervisor: Supervisor, name: str, started: float):
        self.supervisor = supervisor
        self.name = name
        self.transport = None
        self.pid: int | None = None
        self.started = started
        self.how: str | None = None
        self._partial = {1: b"", 2: b""}
        self._kill = None
        self._waiters: list[defer.Deferred] = []

    # IProcessProtocol, the parts that matter here.

    def makeConnection(self, transport) -> None:
        self.transport = transport
        self.pid = getattr(transport, "pid", None)

    def childDataReceived(self, fd: int, data: bytes) -> None:
        lines = (self._partial.get(fd, b"") + data).split(b"\n")
        self._partial[fd] = lines.pop()
        for line in lines:
            self.supervisor.child_line(self.name, fd, line)

    def childConnectionLost(self, fd: int) -> None:
        rest = self._partial.pop(fd, b"")
        if rest:
            self.supervisor.child_line(self.name, fd, rest)

    def processExited(self, reason) -> None:
        pass

    def processEnded(self, reason) -> None:
        for fd in list(self._partial):
            self.childConnectionLost(fd)
        self.cancel_kill()
        self.how = describe_exit(reason)
        self.supervisor.child_ended(self, reason)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(self.how)

    # Ending it.

    def when_ended(self) -> defer.Deferred:
        """
        A L{Deferred} that fires with how this run ended (L{describe_exit}),
        now or when it ends.  Cancelling it stops waiting.
        """
        if self.how is not None:
            return defer.succeed(self.how)
        waiter = defer.Deferred(self._waiters.remove)
        self._waiters.append(waiter)
        return waiter

    def signal(self, signal: str) -> bool:
        """Send C{signal} (C{"TERM"}, C{"KILL"}); C{False} if it is gone already."""
        try:
            self.transport.signalProcess(signal)
        except (error.ProcessExitedAlready, AttributeError):
            return False
        return True

    def terminate(self, kill_time: float, clock) -> None:
        """SIGTERM now; SIGKILL if it has not ended C{kill_time} seconds later."""
        if self.signal("TERM") and self._kill is None:
            self._kill = clock.callLater(kill_time, self._force)

    def _force(self) -> None:
        self._kill = None
        self.signal("KILL")

    def cancel_kill(self) -> None:
        """Forget the SIGKILL L{terminate} planned."""
        if self._kill is not None:
            if self._kill.active():
                self._kill.cancel()
            self._kill = None


def describe_exit(reason) -> str:
    """'exit status 1', 'signal 9' or 'exit status 0' from a process's end."""
    value = reason.value
    if isinstance(value, (error.ProcessDone, error.ProcessTerminated)):
        if value.signal is not None:
            return f"signal {value.signal}"
        return f"exit status {value.exitCode}"
    return reason.getErrorMessage()


class Supervisor(service.Service):
    """
    The processes of a manager, supervised as Twisted's C{ProcessMonitor} does it.

    A process that ran at least C{threshold} seconds is restarted at once;
    one that died younger waits its delay, which starts at
    C{min_restart_delay} and doubles at each early death up to
    C{max_restart_delay}.  Stopping one sends SIGTERM, then SIGKILL after
    C{kill_time} seconds.  On top of that:

      - processes have a kind, and start and stop in L{START_ORDER};
      - a process can be I{held} (not restarted: drained) and I{replaced}
        (L{replace}: a successor started under its name while the old one
        winds down by itself);
      - every line a process writes is passed on: the lines of mmo
        processes carry their own process name already and are written
        as they are to C{out} (the manager's log); others (Redis, anything
        on standard error before logging started) are logged here, tagged;
        the error lines among them are kept in C{errors}.

    @ivar runs: Process name -> its current run (L{ChildProtocol}), for
        the names that run.
    @ivar restarts: Process name -> how many times it was restarted.
    @ivar exits: Process name -> how its last run ended.
    @ivar held: Names not to restart when they exit.
    @ivar retired: Runs replaced by a successor, still winding down.
    @ivar errors: The last error lines of the processes (L{RecentErrors}).
    """

    log = Logger()

    def __init__(
        self,
        reactor=None,
        out=None,
        *,
        threshold: float = 1.0,
        kill_time: float = 5.0,
        min_restart_delay: float = 1.0,
        max_restart_delay: float = 3600.0,
        errors_kept: int = 200,
    ):
        """
        @param reactor: Spawns the processes and keeps the time.
        @param out: Where the lines of mmo processes go: a file, or a callable
            returning one (the manager's log, made after the supervisor).
        @param threshold: Seconds a run must last not to count as an early death.
        @param kill_time: Seconds between SIGTERM and SIGKILL.
        @param min_restart_delay: The first delay after an early death.
        @param max_restart_delay: The longest delay.
        @param errors_kept: How many error lines L{errors} keeps.
        """
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.out = out
        self.threshold = threshold
        self.kill_time = kill_time
        self.min_restart_delay = min_restart_delay
        self.max_restart_delay = max(max_restart_delay, min_restart_delay)
        self.runs: dict[str, ChildProtocol] = {}
        self.restarts: Counter = Counter()
        self.exits: dict[str, str] = {}
        self.held: set[str] = set()
        self.retired: set[ChildProtocol] = set()
        self.errors = RecentErrors(reactor, errors_kept)
        self._programs: dict[str, Program] = {}
        self._delays: dict[str, float] = {}
        self._restarting: dict[str, object] = {}

    def add(self, name: str, kind: str, args: list[str], env=None, cwd=None, umask=None) -> None:
        """Supervise C{name}, of C{kind}, run as C{args} (with C{umask}, if given)."""
        if name in self._programs:
            raise KeyError(f"{name} is supervised already")
        env = dict(os.environ if env is None else env)
        self._programs[name] = Program(kind, tuple(args), env, cwd, umask)
        self._delays[name] = self.min_restart_delay

    def kind(self, name: str) -> str | None:
        """The kind of C{name}, or C{None} if it is not supervised."""
        program = self._programs.get(name)
        return program.kind if program is not None else None

    def names(self) -> list[str]:
        """The supervised names in start order."""
        order = {kind: index for index, group in enumerate(START_ORDER) for kind in group}
        return sorted(self._programs, key=lambda name: order.get(self.kind(name), 99))

    def groups(self) -> list[list[str]]:
        """The supervised names, grouped by L{START_ORDER}."""
        return [
            [name for name in self.names() if self.kind(name) in group] for group in START_ORDER
        ]

    # -- running -------------------------------------------------------------------

    def startService(self) -> None:
        """Start every process but the local Redis (a resource of its own), in order."""
        super().startService()
        for name in self.names():
            if self.kind(name) != REDIS:
                self.start(name)

    def start(self, name: str, *extra: str) -> None:
        """Start C{name} (with C{extra} arguments) unless it runs or is held."""
        if name in self.runs or name in self.held:
            return
        program = self._programs[name]
        child = ChildProtocol(self, name, self.reactor.seconds())
        self.runs[name] = child
        args = program.command(*extra)
        try:
            self.reactor.spawnProcess(child, args[0], args, env=program.env, path=program.cwd)
        except OSError as e:
            self.log.error("{process}: cannot start: {why}", process=name, why=str(e))
            del self.runs[name]
            self._schedule(name, young=True)
            return
        self.log.info("{process}: started, pid {pid}", process=name, pid=child.pid)

    def child_ended(self, child: ChildProtocol, reason) -> None:
        """A run ended: restart its process, unless stopping, held or replaced."""
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
        if self.runs.get(name) is not child:
            return
        del self.runs[name]
        self.exits[name] = how
        lived = self.reactor.seconds() - child.started
        if not self.running or name not in self._programs:
            self.log.info("{process}: stopped ({how})", process=name, how=how)
            return
        if name in self.held:
            self.log.info("{process}: ended ({how}); held, not restarted", process=name, how=how)
            return
        self._schedule(name, young=lived < self.threshold, how=how, lived=lived)

    def _schedule(self, name: str, young: bool, how: str = "", lived: float = 0.0) -> None:
        if young:
            delay = self._delays[name]
            self._delays[name] = min(delay * 2, self.max_restart_delay)
        else:
            delay = 0
            self._delays[name] = self.min_restart_delay
        self.log.warn(
            "{process}: ended ({how}) after {lived:.1f}s; restarting in {delay:g}s",
            process=name,
            how=how or "could not start",
            lived=lived,
            delay=delay,
        )
        self.restarts[name] += 1
        self._cancel_restart(name)
        self._restarting[name] = self.reactor.callLater(delay, self._restart, name)

    def _restart(self, name: str) -> None:
        self._restarting.pop(name, None)
        self.start(name)

    def _cancel_restart(self, name: str) -> None:
        call = self._restarting.pop(name, None)
        if call is not None and call.active():
            call.cancel()

    def child_line(self, name: str, fd: int, line: bytes) -> None:
        """One line a process wrote (C{fd} 1: standard output, 2: standard error)."""
        text = line.decode("utf-8", "replace").rstrip("\r")
        if not text:
            return
        self.errors.line(name, fd, text)
        out = self.out() if callable(self.out) else self.out
        if fd == 1 and self.kind(name) != REDIS and out is not None:
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
        super().stopService()
        for name in list(self._restarting):
            self._cancel_restart(name)
        return defer.ensureDeferred(self._stop_all())

    async def _stop_all(self) -> None:
        # The local Redis is a resource of the manager: it stops it last.
        for group in reversed(self.groups()):
            await self.stop_group([name for name in group if self.kind(name) != REDIS])
        for child in list(self.retired):
            child.signal("TERM")
            await child.when_ended()

    async def stop_group(self, names) -> None:
        """Stop C{names} together (SIGTERM, SIGKILL after C{kill_time}); wait for them."""
        children = [self.runs[name] for name in names if name in self.runs]
        for child in children:
            child.terminate(self.kill_time, self.reactor)
        if children:
            await defer.DeferredList([child.when_ended() for child in children])

    def stop(self, name: str, hold: bool = False) -> defer.Deferred:
        """
        Stop C{name} (SIGTERM, SIGKILL after C{kill_time}); it is restarted
        unless C{hold}.  Deferred firing once it has ended.
        """
        if hold:
            self.held.add(name)
        child = self.runs.get(name)
        if child is None:
            return defer.succeed(None)
        ended = child.when_ended()
        child.terminate(self.kill_time, self.reactor)
        return ended.addCallback(lambda _: None)

    def release(self, name: str) -> None:
        """Stop holding C{name}: start it if it is not running."""
        self.held.discard(name)
        if self.running and name not in self.runs:
            self.start(name)

    # -- replacing -------------------------------------------------------------------

    def replace(self, name: str, *extra: str) -> ChildProtocol | None:
        """
        Start a new run of C{name} with its arguments plus C{extra} next to
        the one running, which is retired: it is neither stopped nor
        restarted; it ends by itself once its successor has taken over (or
        at L{stopService}).  Later restarts of C{name} use its usual
        arguments, without C{extra}.

        @return: The retired run (its L{ChildProtocol.when_ended} tells when
            it exits), or C{None} if C{name} was not running.
        """
        old = self.runs.pop(name, None)
        if old is not None:
            self.retired.add(old)
            old.cancel_kill()
        self._cancel_restart(name)
        self.held.discard(name)
        self.start(name, *extra)
        return old

    def describe(self) -> dict:
        """Every supervised process: kind, state, pid, restarts, last exit."""
        table = {}
        now = self.reactor.seconds()
        for name in self.names():
            child = self.runs.get(name)
            state = "running" if child is not None else ("held" if name in self.held else "down")
            table[name] = {
                "kind": self.kind(name),
                "state": state,
                "pid": child.pid if child is not None else None,
                "up": round(now - child.started, 1) if child else None,
                "restarts": self.restarts[name],
                "last_exit": self.exits.get(name),
                "retired": sorted(c.pid for c in self.retired if c.name == name and c.pid),
            }
        return table
