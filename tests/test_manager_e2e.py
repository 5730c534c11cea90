"""
The manager for real: C{twistd mmo-manager} runs its own redis-server
(append-only, in a temporary directory) and a whole cluster (login, two
gateways, lobby, chat, two zones); C{mmo-admin} talks to it with the admin
certificate.  A zone process SIGKILLed while players move in it is
restarted, restores its entities from their last checkpoint, and the
players, still connected, play on without logging in again.  A cluster
file with a mistake stops the manager at start with the file, key and
reason.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import stat
import sys

from twisted.internet import defer, reactor, utils
from twisted.trial import unittest

from mmo import tls
from mmo.client import ConnectionClosed, ServerError
from mmo.store import make_store
from mmo.zone.entity import WORLD_KEY
from tests.redis import RedisServer
from tests.support import (
    config_of,
    managed_deployment,
    process_tables,
    sleep,
    spawn_managed,
    until,
    write_config,
)
from tests.test_cluster import SETTINGS
from tests.test_login_e2e import started
from tests.test_twistd import TwistdProcess, kill_twistd, spawn, subprocess_env, twistd_command
from tests.world_walk import CLUSTER_WORLD, SPAWN, STEP_TIME, TWO_REGIONS, tcp_player

#: The processes a manager runs in these tests.
CLUSTER = (
    ("manager", "manager"),
    ("login", "login"),
    ("gateway-1", "gateway"),
    ("gateway-2", "gateway"),
    ("lobby", "lobby"),
    ("chat", "chat"),
    ("zone-1", "zone"),
    ("zone-2", "zone"),
)


async def admin(testcase, config, *args) -> dict:
    """Run C{mmo-admin --config FILE --json ARGS}; its JSON output."""
    code = "import sys; from mmo.manager.admin import main; sys.exit(main())"
    out, err, status = await utils.getProcessOutputAndValue(
        sys.executable,
        ["-c", code, "--config", config.file, "--json", *args],
        env=subprocess_env(),
    )
    testcase.assertEqual(status, 0, (out + err).decode())
    return json.loads(out)


#: Two regions that leave the strip 80 <= x < 100 unserved.
GAP = """
[bus]
backend = "redis"
[world]
width = 200.0
height = 100.0
[world.regions.west]
x0 = 0.0
y0 = 0.0
x1 = 80.0
y1 = 100.0
process = "zone-1"
[world.regions.east]
x0 = 100.0
y0 = 0.0
x1 = 200.0
y1 = 100.0
process = "zone-2"
"""


class ManagerTests(unittest.TestCase):
    timeout = 240

    async def start(self):
        cluster = await spawn_managed(self, CLUSTER, SETTINGS + CLUSTER_WORLD)
        self.config, self.ca, self.ports = cluster.config, cluster.ca, cluster.ports
        self.manager = cluster.children["manager"]
        self.transport = cluster.transports["manager"]

    async def test_zone_killed_and_restarted(self):
        await self.start()
        status = await admin(self, self.config, "status")
        [mine] = status
        processes = mine["processes"]
        self.assertEqual(processes["redis"]["state"], "running")
        self.assertEqual(mine["regions"]["r0c0"]["process"], "zone-1")
        zone_pid = processes["zone-1"]["pid"]
        self.assertEqual(mine["directory"]["zone-1"]["pid"], zone_pid)

        alice = await tcp_player(self, self.ca, self.ports["login"], "alice")
        bob = await tcp_player(self, self.ca, self.ports["login"], "bob")
        closed = []
        for player in (alice, bob):
            player.client.whenClosed().addCallback(closed.append)
        # Alice walks west; a checkpoint (every 5 s) records where she got to.
        for _ in range(20):
            await alice.move(round(alice.x - 0.3, 6), alice.y)
            await sleep(STEP_TIME)
        checkpointed = (alice.x, alice.y)
        store = make_store(self.config, reactor)
        await store.start()

        async def stored_where_she_stopped():
            stored = await store.load_entity(alice.id)
            return stored is not None and (stored.data["x"], stored.data["y"]) == checkpointed

        await until(
            stored_where_she_stopped, interval=0.1, what=f"a checkpoint of alice at {checkpointed}"
        )
        await store.stop()

        os.kill(zone_pid, signal.SIGKILL)
        # She keeps trying while the zone is down: refused, never disconnected.
        refused = []
        for _ in range(10):
            try:
                await alice.move(round(alice.x - 0.3, 6), alice.y)
            except ServerError as e:
                refused.append(e.code)
                alice.seq -= 1
            await sleep(0.05)
        await self.manager.whenLogged(r"zone-1: ended \(signal 9\) after [\d.]+s; restarting")
        await self.manager.whenLogged(r"(?s)zone-1: ready.*zone-1: ready")
        self.assertTrue(set(refused) <= {"unavailable"}, refused)

        # Back in play, on the same connections: the restored entity is
        # where the last checkpoint put it, and walks on from there.
        start = alice.x
        for _ in range(10):
            try:
                await alice.move(round(alice.x - 0.3, 6), alice.y)
            except ServerError as e:
                self.assertEqual(e.code, "unavailable")
                alice.seq -= 1
            await sleep(STEP_TIME)
        await until(
            lambda: (
                alice.seen.get(alice.id, (None,))[0] is not None
                and alice.seen[alice.id][0] < start - 1
            ),
            what=lambda: f"alice moves on after the restart: she is at {alice.seen.get(alice.id)}",
        )
        self.assertLessEqual(alice.seen[alice.id][0], checkpointed[0])
        await until(lambda: alice.id in bob.seen, what="bob sees alice after the restart")
        self.assertEqual(closed, [])
        status = await admin(self, self.config, "status")
        self.assertEqual(status[0]["processes"]["zone-1"]["restarts"], 1)
        self.assertNotEqual(status[0]["processes"]["zone-1"]["pid"], zone_pid)

        # An upgrade of zone-1 while alice walks: the new process takes
        # the region over; she is neither disconnected nor refused.
        errors = []

        async def walk(steps):
            for i in range(steps):
                dx = -0.3 if (i // 20) % 2 == 0 else 0.3
                try:
                    await alice.move(round(alice.x + dx, 6), alice.y)
                except (ServerError, ConnectionClosed) as e:
                    errors.append(e.code)
                    alice.seq -= 1
                await sleep(STEP_TIME)

        walking = defer.ensureDeferred(walk(120))
        upgraded = await admin(self, self.config, "upgrade", "zone-1")
        await walking
        self.assertEqual(errors, [])
        self.assertEqual(upgraded["old_pid"], status[0]["processes"]["zone-1"]["pid"])
        await self.manager.whenLogged(r"zone-1: the replaced run \(pid \d+\) ended: exit status 0")
        position = alice.x
        await alice.move(round(alice.x - 0.3, 6), alice.y)
        await until(
            lambda: abs(alice.seen[alice.id][0] - (position - 0.3)) < 1e-6,
            what=lambda: f"alice's last move after the upgrade: at {alice.seen.get(alice.id)}",
        )
        status = await admin(self, self.config, "status")
        self.assertEqual(status[0]["processes"]["zone-1"]["pid"], upgraded["pid"])
        self.assertEqual(status[0]["processes"]["zone-1"]["restarts"], 1)
        self.assertEqual(status[0]["directory"]["zone-1"]["players"], 2)
        self.assertEqual(closed, [])

        # A notice to everyone, through every gateway.
        notices = {"alice": [], "bob": []}
        alice.client.on("server.notice", notices["alice"].append)
        bob.client.on("server.notice", notices["bob"].append)
        told = await admin(self, self.config, "broadcast", "restart soon")
        self.assertEqual(sum(told["gateways"].values()), 2, told)
        await until(lambda: all(notices.values()), what=lambda: f"both notices: {notices}")
        self.assertEqual(
            [n["text"] for n in notices["alice"] + notices["bob"]], ["restart soon"] * 2
        )

        # Who is online and where, as the console's players view shows it;
        # the recent error lines of the manager's machine.
        online = await admin(self, self.config, "players")
        rows = [row for page in online["gateways"].values() for row in page["sessions"]]
        self.assertEqual(sorted(row["name"] for row in rows), ["alice", "bob"], online)
        self.assertTrue(all(row["attached"] and row["zone"] for row in rows), online)
        recent = await admin(self, self.config, "errors", "--limit", "5")
        self.assertEqual([answer["manager"] for answer in recent], ["manager"])
        self.assertLessEqual(len(recent[0]["errors"]), 5)

        # An upgrade of alice's gateway: she moves to the other one and
        # walks on, in the same session; the new gateway-1 comes up.
        self.assertEqual(alice.client.transport.getPeer().port, self.ports["gateway-1"])
        session = alice.client.session
        moved = []
        alice.client.on("moved", moved.append)
        walking = defer.ensureDeferred(walk(60))
        upgraded = await admin(self, self.config, "upgrade", "gateway-1")
        await walking
        self.assertEqual(upgraded["drained"]["target"], "gateway-2")
        self.assertEqual(len(moved), 1)
        self.assertEqual(alice.client.session, session)
        self.assertEqual(alice.client.transport.getPeer().port, self.ports["gateway-2"])
        # At most the one request in flight at the goodbye was cut off.
        self.assertLessEqual(len(errors), 1, errors)
        position = alice.x
        await alice.move(round(alice.x + 0.3, 6), alice.y)
        await until(
            lambda: abs(alice.seen[alice.id][0] - (position + 0.3)) < 1e-6,
            what=lambda: f"alice's move after the gateway upgrade: at {alice.seen.get(alice.id)}",
        )
        self.assertEqual(closed, [])

        # Kicked: bob's connection ends with the goodbye "kicked".
        kicked = await admin(self, self.config, "kick", "bob", "--reason", "testing")
        self.assertEqual(sum(kicked["gateways"].values()), 1, kicked)
        await until(lambda: closed, what="bob kicked")
        self.assertEqual(closed[0].code, "kicked")

        # Stopping the manager stops everything in order, its Redis last.
        redis_pid = status[0]["processes"]["redis"]["pid"]
        self.transport.signalProcess("TERM")
        await self.manager.whenExited()
        out = self.manager.output()
        order = [out.index(f"{name}: stopped") for name in ("gateway-1", "zone-1", "chat")]
        self.assertEqual(order, sorted(order), out[-3000:])
        self.assertGreater(out.index("redis: stopped"), order[-1])
        with self.assertRaises(ProcessLookupError):
            os.kill(redis_pid, 0)

    async def test_misconfigured_cluster_fails_at_start(self):
        """Unknown kind, port clash, regions with a gap: exit 1, file, key and reason."""
        base = process_tables(("manager", "manager"), ("zone-1", "zone"), ("zone-2", "zone"))
        world = CLUSTER_WORLD + '[bus]\nbackend = "redis"\n'
        cases = [
            (
                base.replace('kind = "zone"', 'kind = "zome"', 1),
                world,
                "processes.zone-1.kind: must be one of",
            ),
            (
                base.replace('[processes.zone-2]\nkind = "zone"\nrpc = "tcp:', "X", 1),
                world,
                None,
            ),
            (
                base,
                world.replace('zones = ["zone-1", "zone-2"]', 'zones = ["zone-1", "zone-3"]'),
                "world.zones: region 'r0c1' is served by 'zone-3': no such process",
            ),
            (
                base,
                GAP,
                "world.regions: the regions leave a gap: no region covers (80, 0)-(100, 100)",
            ),
        ]
        import re

        rpc_ports = re.findall(r'rpc = "tcp:(\d+)', base)
        clash = base.replace(f"tcp:{rpc_ports[2]}", f"tcp:{rpc_ports[1]}")
        cases[1] = (
            clash,
            world,
            f"processes.zone-2.rpc: port {rpc_ports[1]} is taken by processes.zone-1.rpc",
        )
        for processes, extra, expected in cases:
            path = write_config(self, f'[deployment]\ntls_dir = "certs"\n{extra}\n{processes}')
            child, _ = spawn(self, path, "mmo-manager", "--process", "manager")
            status = await child.whenExited()
            self.assertEqual(status, 1, child.output())
            self.assertIn(f"mmo: {path}: {expected}", child.output())


#: One region, one zone process (the smallest world with a zone).
ONE_ZONE = TWO_REGIONS.replace("columns = 2", "columns = 1") + (
    f'spawn = [{SPAWN[0]}, {SPAWN[1]}]\nzones = ["zone-1"]\n'
)

#: The processes of the smaller cluster: a player can log in, have a
#: character and walk.
SMALL = (
    ("manager", "manager"),
    ("login", "login"),
    ("gateway-1", "gateway"),
    ("lobby", "lobby"),
    ("zone-1", "zone"),
)


class TerminalTests(unittest.TestCase):
    """A manager run from a terminal, and its local Redis."""

    timeout = 180

    async def start(self, terminal: bool = False):
        """
        The manager of L{SMALL} and its local Redis; with C{terminal}, as a
        shell runs it: in a session and process group of its own, with a
        terminal (a pseudo-terminal here), whose foreground group it is.
        """
        self.config = managed_deployment(self, SMALL, SETTINGS + ONE_ZONE, stop_timeout=10.0)
        self.ca = tls.ca_path(self.config.deployment.tls_dir)
        self.manager = TwistdProcess()
        pidfile = os.path.abspath(self.mktemp())
        self.transport = reactor.spawnProcess(
            self.manager,
            sys.executable,
            twistd_command(
                "-n", "--pidfile", pidfile, "mmo-manager", "--config", self.config.file,
                "--process", "manager",
            ),
            env=subprocess_env(),
            usePTY=terminal,
        )  # fmt: skip

        self.addCleanup(kill_twistd, self.manager, self.transport)
        self.login = await started(self.manager, "login")
        for name in ("gateway-1", "lobby", "zone-1"):
            await self.manager.whenLogged(rf"\[{name}\] .*{name}: ready")

    async def saved_position(self, character_id: str) -> tuple[float, float]:
        """
        Where character C{character_id} left the world, as its zone saved it,
        read from the stopped local Redis's append-only files by a
        redis-server of the test's own.
        """
        directory = os.path.join(os.path.dirname(self.config.file), "redis")
        server = RedisServer(directory, appendonly=True)
        server.start()
        self.addCleanup(server.stop)
        conf = config_of(store={"backend": "redis"}, redis={"port": server.port, "prefix": "test"})
        store = make_store(conf, reactor)
        await store.start()
        try:
            character = await store.character_by_id(character_id)
        finally:
            await store.stop()
        where = character.data[WORLD_KEY]
        return where["x"], where["y"]

    async def test_local_redis_is_private(self):
        """
        The manager's Redis answers nobody without the deployment's CA and
        its password: a plaintext client gets no answer, a TLS one without
        the password NOAUTH.  The password is generated beside the other
        secrets (0600), never on a command line; Redis's files are its
        user's only.  The processes use both: a player plays.
        """
        await self.start()
        port = self.config.redis.port
        with socket.create_connection(("127.0.0.1", port), timeout=5) as plain:
            plain.sendall(b"PING\r\n")
            try:
                answer = plain.recv(64)
            except OSError:
                answer = b""
        self.assertFalse(answer.startswith(b"+PONG"), answer)
        context = ssl.create_default_context(cafile=self.ca)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as secure:
                secure.sendall(b"PING\r\nKEYS *\r\n")
                answer = b""
                while answer.count(b"\r\n") < 2:
                    answer += secure.recv(256)
        self.assertEqual(answer.count(b"-NOAUTH"), 2, answer)

        alice = await tcp_player(self, self.ca, self.login, "alice")
        await alice.move(round(alice.x - 0.3, 6), alice.y)

        tls_dir = self.config.deployment.tls_dir
        password_file = os.path.join(tls_dir, "redis.password")
        self.assertEqual(stat.S_IMODE(os.stat(password_file).st_mode), 0o600)
        with open(password_file) as f:
            password = f.read().strip()
        self.assertGreaterEqual(len(password), 32)
        [status] = await admin(self, self.config, "status")
        pid = status["processes"]["redis"]["pid"]
        if os.path.exists(f"/proc/{pid}/cmdline"):
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                self.assertNotIn(password.encode(), f.read())
        directory = os.path.join(os.path.dirname(self.config.file), "redis")
        self.assertEqual(stat.S_IMODE(os.stat(directory).st_mode), 0o700)
        found = []
        for root, dirs, files in os.walk(directory):
            for name in dirs + files:
                mode = stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode)
                found.append(name)
                self.assertEqual(mode & 0o077, 0, f"{name}: {mode:o}")
        self.assertTrue(any(name.endswith(".aof") for name in found), found)

    async def test_processes_of_a_dead_manager_stop_without_redis(self):
        """
        A manager killed while its Redis does not answer: its processes get
        SIGTERM (they die with it) and each stops within [manager]
        stop_timeout, giving up on the Redis it cannot reach, instead of
        waiting on it for ever with nobody left to SIGKILL them.
        """
        if not sys.platform.startswith("linux"):
            raise unittest.SkipTest("processes die with their manager on Linux only")
        await self.start()
        [status] = await admin(self, self.config, "status")
        pids = {name: entry["pid"] for name, entry in status["processes"].items()}
        redis = pids.pop("redis")
        os.kill(redis, signal.SIGSTOP)
        self.addCleanup(os.kill, redis, signal.SIGCONT)
        self.transport.signalProcess("KILL")
        await self.manager.whenExited()

        def alive():
            # A zombie has ended: whoever adopted it reaps it when it will.
            running = []
            for name, pid in pids.items():
                try:
                    with open(f"/proc/{pid}/stat") as f:
                        state = f.read().rpartition(")")[2].split()[0]
                except OSError:
                    continue
                if state != "Z":
                    running.append(name)
            return running

        await until(
            lambda: not alive(),
            timeout=self.config.manager.stop_timeout + 5.0,
            interval=0.2,
            what=lambda: f"the processes of the dead manager to stop; left: {alive()}",
        )

    async def test_ctrl_c_stops_in_order(self):
        """
        Ctrl-C in the manager's terminal (SIGINT to its whole process group)
        reaches the manager only: it stops its processes in order, with
        SIGTERM, gateways first and its Redis last; no process ends in a
        crash, and the zone's last checkpoint keeps where the player stopped.
        """
        await self.start(terminal=True)
        alice = await tcp_player(self, self.ca, self.login, "alice")
        for _ in range(10):
            await alice.move(round(alice.x - 0.3, 6), alice.y)
            await sleep(STEP_TIME)
        await until(
            lambda: alice.seen.get(alice.id) == (alice.x, alice.y),
            what=lambda: f"alice seen where she walked: {alice.seen.get(alice.id)}",
        )
        os.killpg(self.transport.pid, signal.SIGINT)
        await self.manager.whenExited()
        out = self.manager.output()
        self.assertEqual(out.count("Received SIGINT"), 1, out[-4000:])
        self.assertIn("[manager] ", out[: out.index("Received SIGINT")].rsplit("\n", 1)[-1])
        self.assertNotIn("ReactorNotRunning", out)
        self.assertNotIn("critical", out)
        order = [
            out.index(f"{name}: stopped") for name in ("gateway-1", "zone-1", "lobby", "redis")
        ]
        self.assertEqual(order, sorted(order), out[-4000:])
        self.assertIn("redis: stopped (exit status 0)", out)
        self.assertEqual(await self.saved_position(alice.id), (alice.x, alice.y))
