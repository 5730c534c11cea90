"""
The manager's supervisor with a fake process reactor and clock: start
order, restart with backoff, holding, replacing, ordered stop and the
lines of its processes; the cluster file's checks; the admin endpoint's
refusals.
"""

from __future__ import annotations

import io
import os
import stat

from twisted.internet import defer, error
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial import unittest

from mmo.config import ConfigError
from mmo.manager import tap as manager_tap
from mmo.manager.formats import format_status
from mmo.manager.service import LocalRedis, Manager, ManagerError, redis_quote
from mmo.manager.supervisor import DETACH, Supervisor, twistd_args
from mmo.redis import read_password
from tests.support import LogCapture, write_config


class FakeProcess:
    """What spawnProcess returns: records signals; ends when the test says."""

    def __init__(self, reactor, protocol, args, pid):
        self.reactor, self.protocol, self.args, self.pid = reactor, protocol, args, pid
        self.signals = []
        self.ended = False

    def signalProcess(self, signal):
        if self.ended:
            raise error.ProcessExitedAlready()
        self.signals.append(signal)
        if self.reactor.obedient:
            self.end(signal=15 if signal == "TERM" else 9)

    def end(self, code=None, signal=None):
        self.ended = True
        if code == 0:
            reason = Failure(error.ProcessDone(0))
        else:
            reason = Failure(error.ProcessTerminated(code, signal))
        self.protocol.processEnded(reason)


class ProcessReactor(Clock):
    """A clock that also spawns fake processes."""

    def __init__(self):
        super().__init__()
        self.spawned: list[FakeProcess] = []
        self.obedient = True

    def spawnProcess(self, protocol, executable, args, env=None, path=None, **kwargs):
        # Every process is started detached; the rest is its own command.
        assert [executable, *args[1:3]] == list(DETACH), args
        process = FakeProcess(self, protocol, args[len(DETACH) :], 1000 + len(self.spawned))
        self.spawned.append(process)
        protocol.makeConnection(process)
        return process

    def running(self, name):
        """The live fake processes of C{name}."""
        return [p for p in self.spawned if not p.ended and p.protocol.name == name]


def supervisor(*processes, out=None):
    reactor = ProcessReactor()
    sup = Supervisor(reactor, out=out, threshold=5, min_restart_delay=1, max_restart_delay=8)
    for name, kind in processes:
        sup.add(name, kind, ["run", name])
    return sup, reactor


class SupervisorTests(unittest.TestCase):
    def test_start_order(self):
        """Services first, then zones, then what clients connect to."""
        sup, reactor = supervisor(
            ("gateway-1", "gateway"), ("zone-1", "zone"), ("login", "login"), ("chat", "chat")
        )
        sup.startService()
        self.assertEqual(
            [p.protocol.name for p in reactor.spawned], ["chat", "zone-1", "gateway-1", "login"]
        )

    def test_restart_at_once_after_a_long_run(self):
        sup, reactor = supervisor(("zone-1", "zone"))
        sup.startService()
        reactor.advance(60)
        reactor.spawned[0].end(signal=9)
        self.assertEqual(reactor.running("zone-1"), [])
        reactor.advance(0)
        [again] = reactor.running("zone-1")
        self.assertEqual(again.args, ["run", "zone-1"])
        self.assertEqual(sup.restarts["zone-1"], 1)
        self.assertEqual(sup.exits["zone-1"], "signal 9")

    def test_backoff_when_dying_young(self):
        """Each early death doubles the wait, up to the maximum."""
        sup, reactor = supervisor(("lobby", "lobby"))
        sup.startService()
        waits = []
        for _ in range(5):
            reactor.running("lobby")[0].end(code=1)
            started = reactor.seconds()
            while not reactor.running("lobby"):
                reactor.advance(0.5)
            waits.append(reactor.seconds() - started)
        self.assertEqual(waits, [1, 2, 4, 8, 8])
        # A long run resets it.
        reactor.advance(10)
        reactor.running("lobby")[0].end(code=1)
        reactor.advance(0)
        self.assertEqual(len(reactor.running("lobby")), 1)

    def test_held_process_is_not_restarted(self):
        sup, reactor = supervisor(("gateway-1", "gateway"))
        sup.startService()
        reactor.advance(10)
        ended = []
        sup.stop("gateway-1", hold=True).addCallback(ended.append)
        self.assertEqual(ended, [None])
        reactor.advance(100)
        self.assertEqual(reactor.running("gateway-1"), [])
        self.assertEqual(sup.describe()["gateway-1"]["state"], "held")
        sup.release("gateway-1")
        self.assertEqual(len(reactor.running("gateway-1")), 1)

    def test_replace(self):
        """
        The successor runs with the extra arguments next to the old run,
        which is neither signalled nor restarted; later restarts use the
        usual arguments.
        """
        sup, reactor = supervisor(("zone-1", "zone"))
        sup.startService()
        reactor.advance(10)
        [old] = reactor.running("zone-1")
        retired = sup.replace("zone-1", "--takeover")
        self.assertIs(retired.transport, old)
        new = reactor.spawned[-1]
        self.assertEqual(new.args, ["run", "zone-1", "--takeover"])
        self.assertEqual(len(reactor.running("zone-1")), 2)
        ended = []
        retired.when_ended().addCallback(ended.append)
        old.end(code=0)
        self.assertEqual(ended, ["exit status 0"])
        reactor.advance(10)
        self.assertEqual(reactor.running("zone-1"), [new])
        self.assertEqual(old.signals, [])
        self.assertEqual(sup.restarts["zone-1"], 0)
        new.end(signal=9)
        reactor.advance(0)
        self.assertEqual(reactor.spawned[-1].args, ["run", "zone-1"])

    def test_waiting_for_a_replaced_run_may_time_out(self):
        """
        Giving up waiting for the old run (the upgrade's timeout) leaves it
        supervised: its end is still seen, and the stop still waits for it.
        """
        sup, reactor = supervisor(("zone-1", "zone"))
        sup.startService()
        [old] = reactor.running("zone-1")
        retired = sup.replace("zone-1", "--takeover")
        waiting = retired.when_ended().addTimeout(5, reactor)
        reactor.advance(5)
        self.failureResultOf(waiting, defer.TimeoutError)
        reactor.obedient = False
        stopped = sup.stopService()
        [new] = [p for p in reactor.running("zone-1") if p is not old]
        new.end(signal=15)
        self.assertEqual(old.signals, ["TERM"])
        self.assertNoResult(stopped)
        old.end(code=0)
        self.successResultOf(stopped)
        self.assertEqual(self.successResultOf(retired.when_ended()), "exit status 0")

    def test_cannot_start(self):
        """A process that cannot be spawned is tried again later, with backoff."""
        sup, reactor = supervisor(("chat", "chat"))
        spawn, attempts = reactor.spawnProcess, []

        def failing(protocol, executable, args, **kwargs):
            attempts.append(reactor.seconds())
            if len(attempts) < 3:
                raise OSError("no such file")
            return spawn(protocol, executable, args, **kwargs)

        reactor.spawnProcess = failing
        logged = LogCapture(self)
        sup.startService()
        reactor.advance(1)
        reactor.advance(2)
        self.assertEqual(attempts, [0, 1, 3])
        self.assertEqual(len(reactor.running("chat")), 1)
        self.assertEqual(len(logged.matching("chat: cannot start: no such file")), 2)
        self.assertEqual(sup.describe()["chat"]["state"], "running")

    def test_ordered_stop(self):
        """Clients' processes stop first, then zones, then services; each group waits."""
        sup, reactor = supervisor(
            ("chat", "chat"), ("zone-1", "zone"), ("gateway-1", "gateway"), ("login", "login")
        )
        sup.startService()
        reactor.obedient = False
        stopped = []
        d = sup.stopService()
        d.addCallback(stopped.append)

        def signalled():
            return {p.protocol.name for p in reactor.spawned if p.signals}

        self.assertEqual(signalled(), {"gateway-1", "login"})
        for name in ("gateway-1", "login"):
            reactor.running(name)[0].end(signal=15)
        self.assertEqual(signalled(), {"gateway-1", "login", "zone-1"})
        # A process that ignores SIGTERM gets SIGKILL after kill_time.
        reactor.advance(sup.kill_time)
        [zone] = [p for p in reactor.spawned if p.protocol.name == "zone-1"]
        self.assertEqual(zone.signals, ["TERM", "KILL"])
        zone.end(signal=9)
        self.assertEqual(signalled(), {"gateway-1", "login", "zone-1", "chat"})
        self.assertEqual(stopped, [])
        reactor.running("chat")[0].end(signal=15)
        self.assertEqual(stopped, [None])
        reactor.advance(100)
        self.assertEqual([p for p in reactor.spawned if not p.ended], [])

    def test_lines(self):
        """
        An mmo process's lines go out as they are (they carry its name);
        standard error and Redis's lines are logged, tagged with the name.
        """
        out = io.StringIO()
        sup, reactor = supervisor(("zone-1", "zone"), ("redis", "redis"), out=out)
        sup.startService()
        sup.start("redis")
        logged = LogCapture(self)
        zone = reactor.running("zone-1")[0].protocol
        zone.childDataReceived(1, b"T [zone-1] info x: one\nT [zone-1] info x: t")
        zone.childDataReceived(1, b"wo\n")
        zone.childDataReceived(2, b"Traceback\n")
        reactor.running("redis")[0].protocol.childDataReceived(1, b"Ready to accept\n")
        self.assertEqual(out.getvalue(), "T [zone-1] info x: one\nT [zone-1] info x: two\n")
        self.assertEqual(
            logged.matching("zone-1 (stderr): Traceback"), ["zone-1 (stderr): Traceback"]
        )
        self.assertEqual(logged.matching("redis: Ready to accept"), ["redis: Ready to accept"])

    def test_twistd_args(self):
        args = twistd_args("conf/cluster.toml", "zone-1", "zone", "--takeover")
        self.assertEqual(args[3:6], ["--nodaemon", "--pidfile=", "--logfile=-"])
        self.assertEqual(args[6], "mmo-zone")
        self.assertEqual(args[-3:], ["--process", "zone-1", "--takeover"])
        self.assertTrue(args[8].endswith("/conf/cluster.toml"))


CLUSTER = """
[bus]
backend = "redis"
[store]
backend = "redis"
[world]
columns = 2
zones = ["zone-1", "zone-2"]
[processes.manager]
kind = "manager"
rpc = "tcp:7400"
[processes.gateway-1]
kind = "gateway"
client = "tcp:7001"
[processes.zone-1]
kind = "zone"
rpc = "tcp:7201"
[processes.zone-2]
kind = "zone"
rpc = "tcp:7202"
"""


def load(testcase, text):
    from mmo import config

    return config.load(write_config(testcase, text))


class ClusterFileTests(unittest.TestCase):
    def assertRefused(self, text, key, *fragments):
        with self.assertRaises(ConfigError) as caught:
            load(self, text)
        message = str(caught.exception)
        self.assertIn(f": {key}: ", message)
        self.assertIn("mmo.toml", message)
        for fragment in fragments:
            self.assertIn(fragment, message)

    def test_the_cluster_file_is_valid(self):
        from mmo import config

        loaded = config.load(os.path.join(os.path.dirname(__file__), "..", "conf", "cluster.toml"))
        [manager] = [p for p in loaded.processes.values() if p.kind == "manager"]
        self.assertEqual(len(loaded.managed(manager)), 9)
        self.assertIn("economy", [p.kind for p in loaded.managed(manager)])
        self.assertTrue(manager.redis_server)

    def test_unknown_kind(self):
        self.assertRefused(
            CLUSTER.replace('kind = "zone"\nrpc = "tcp:7202"', 'kind = "zonee"\nrpc = "tcp:7202"'),
            "processes.zone-2.kind",
            "zonee",
        )

    def test_port_clash(self):
        self.assertRefused(
            CLUSTER.replace("tcp:7202", "tcp:7201"),
            "processes.zone-2.rpc",
            "port 7201 is taken by processes.zone-1.rpc",
        )
        self.assertRefused(
            CLUSTER.replace('rpc = "tcp:7400"', 'rpc = "tcp:7001:interface=127.0.0.1"'),
            "processes.gateway-1.client",
            "port 7001",
        )

    def test_no_clash_on_other_machines_or_interfaces(self):
        two_machines = CLUSTER.replace("tcp:7202", "tcp:7201") + (
            '[processes.manager-2]\nkind = "manager"\nruns = ["zone-2"]\n'
        )
        two_machines = two_machines.replace(
            'rpc = "tcp:7400"', 'rpc = "tcp:7400"\nruns = ["gateway-1", "zone-1"]'
        )
        load(self, two_machines)
        load(
            self,
            CLUSTER.replace('"tcp:7201"', '"tcp:7201:interface=127.0.0.2"').replace(
                '"tcp:7202"', '"tcp:7201:interface=127.0.0.3"'
            ),
        )

    def test_redis_port_clash(self):
        self.assertRefused(
            CLUSTER.replace('rpc = "tcp:7400"', 'rpc = "tcp:7400"\nredis_server = true')
            + "[redis]\nport = 7001\n",
            "processes.gateway-1.client",
            "processes.manager.redis_server",
        )

    def test_region_gap(self):
        text = CLUSTER.replace('columns = 2\nzones = ["zone-1", "zone-2"]', "") + (
            "[world.regions.west]\nx0 = 0.0\ny0 = 0.0\nx1 = 400.0\ny1 = 1000.0\n"
            'process = "zone-1"\n'
            "[world.regions.east]\nx0 = 500.0\ny0 = 0.0\nx1 = 1000.0\ny1 = 1000.0\n"
            'process = "zone-2"\n'
        )
        self.assertRefused(text, "world.regions", "gap", "(400, 0)-(500, 1000)")

    def test_managers(self):
        self.assertRefused(
            CLUSTER.replace('rpc = "tcp:7400"', 'rpc = "tcp:7400"\nruns = ["zone-3"]'),
            "processes.manager.runs",
            "no process 'zone-3'",
        )
        self.assertRefused(
            CLUSTER + '[processes.manager-2]\nkind = "manager"\nruns = ["zone-1"]\n',
            "processes.manager-2.runs",
            "run by 'manager'",
        )
        self.assertRefused(
            CLUSTER.replace('client = "tcp:7001"', 'client = "tcp:7001"\nruns = ["zone-1"]'),
            "processes.gateway-1.runs",
            "only a manager",
        )
        self.assertRefused(
            CLUSTER + '[processes.admin]\nkind = "chat"\nrpc = "tcp:7300"\n',
            "processes.admin",
            "reserved",
        )


class ManagerTests(unittest.TestCase):
    def manager(self, bus=None):
        from mmo import config

        conf = config.load(write_config(self, CLUSTER))
        sup, reactor = supervisor(("gateway-1", "gateway"), ("zone-1", "zone"))
        return Manager(conf, conf.processes["manager"], bus, sup, reactor)

    @defer.inlineCallbacks
    def test_without_a_bus(self):
        """Status works; what needs the bus says how to get one."""
        manager = self.manager()
        status = yield defer.ensureDeferred(manager.run("status", {}))
        self.assertEqual(set(status["processes"]), {"gateway-1", "zone-1"})
        self.assertEqual(status["regions"]["r0c0"]["process"], "zone-1")
        with self.assertRaises(ManagerError) as caught:
            yield defer.ensureDeferred(manager.run("upgrade", {"process": "zone-1"}))
        self.assertIn('backend = "redis"', str(caught.exception))

    @defer.inlineCallbacks
    def test_refusals(self):
        from mmo.bus.memory import MemoryBus

        manager = self.manager(MemoryBus())
        for command, args, fragment in [
            ("reboot", {}, "no command 'reboot'"),
            ("__init__", {}, "no command"),
            ("drain", {"process": "nobody"}, "does not run 'nobody'"),
            ("drain", {"process": "zone-1"}, "use upgrade"),
            ("drain", {"name": "zone-1"}, "unexpected keyword"),
        ]:
            with self.assertRaises(ManagerError) as caught:
                yield defer.ensureDeferred(manager.run(command, args))
            self.assertIn(fragment, str(caught.exception))


class StatusTableTests(unittest.TestCase):
    """What C{mmo-admin status} prints of the managers' answers."""

    def test_memory_and_load(self):
        statuses = [
            {
                "manager": "manager",
                "processes": {
                    "zone-1": {"kind": "zone", "state": "running", "pid": 41, "restarts": 0},
                    "chat": {"kind": "chat", "state": "running", "pid": 42, "restarts": 1},
                },
                "directory": {
                    "zone-1": {"kind": "zone", "pid": 41, "version": "1.0", "load": 7,
                               "rss": 48 * 2**20, "players": 7},
                },
            }
        ]  # fmt: skip
        rows = {line.split()[0]: line for line in format_status(statuses).splitlines()}
        self.assertIn("48.0 MB", rows["zone-1"])
        self.assertIn("players 7", rows["zone-1"])
        # A process missing from the directory shows no figures, and says so.
        self.assertNotIn("MB", rows["chat"])
        self.assertIn("not in the directory", rows["chat"])


class LocalRedisTests(unittest.TestCase):
    """How the manager runs its Redis: TLS only, its password in a file of its own."""

    def setUp(self):
        from mmo import certs, config

        text = (
            # Any installed program stands in for redis-server here.
            '[deployment]\ntls_dir = "certs"\n'
            '[manager]\nredis_dir = "redis"\nredis_command = "sh"\n'
            + CLUSTER.replace('rpc = "tcp:7400"', 'rpc = "tcp:7400"\nredis_server = true')
        )
        self.config = config.load(write_config(self, text))
        certs.generate(self.config)
        self.sup, self.reactor = supervisor()

    def test_command_line(self):
        """TLS only on [redis] port, with the deployment's CA; no password on it."""
        local = LocalRedis(self.config, self.sup, self.reactor)
        password = read_password(self.config)
        self.assertNotIn(password, " ".join(local.args))
        option = {a: b for a, b in zip(local.args, local.args[1:], strict=False)}
        self.assertEqual(option["--port"], "0")
        self.assertEqual(option["--tls-port"], "6379")
        self.assertTrue(option["--tls-ca-cert-file"].endswith("/certs/ca.crt"))
        self.assertTrue(option["--tls-cert-file"].endswith("/certs/redis.crt"))
        self.assertEqual(option["--include"], local.auth_file)
        self.assertEqual(self.sup._programs["redis"].umask, 0o077)

    def test_auth_file(self):
        """Its directory 0700 (even if it was not), its password file 0600, quoted."""
        local = LocalRedis(self.config, self.sup, self.reactor)
        os.makedirs(local.directory, mode=0o755)
        os.chmod(local.directory, 0o755)
        local.write_auth()
        self.assertEqual(stat.S_IMODE(os.stat(local.directory).st_mode), 0o700)
        self.assertEqual(stat.S_IMODE(os.stat(local.auth_file).st_mode), 0o600)
        with open(local.auth_file) as f:
            self.assertEqual(f.read(), f'requirepass "{read_password(self.config)}"\n')

    def test_quoting(self):
        self.assertEqual(redis_quote('a "b" \\ c'), '"a \\"b\\" \\\\ c"')
        self.assertEqual(redis_quote("é\n"), '"\\xc3\\xa9\\x0a"')

    def test_without_tls(self):
        from mmo import config

        with open(self.config.file) as f:
            text = f.read().replace("[manager]\n", "[manager]\nredis_tls = false\n")
        with open(self.config.file, "w") as f:
            f.write(text)
        conf = config.load(self.config.file)
        local = LocalRedis(conf, self.sup, self.reactor)
        option = {a: b for a, b in zip(local.args, local.args[1:], strict=False)}
        self.assertEqual(option["--port"], "6379")
        self.assertNotIn("--tls-port", local.args)

    def test_missing_password_refused_at_start(self):
        """The manager's checks name the missing file and how to make it."""
        os.unlink(os.path.join(self.config.deployment.tls_dir, "redis.password"))
        with self.assertRaises(ConfigError) as caught:
            manager_tap.check(self.config, self.config.processes["manager"])
        self.assertIn("redis.password is missing", str(caught.exception))
        self.assertIn("--renew", str(caught.exception))
