"""
End to end against real twistd processes over real TLS: register, log in,
get a ticket, present it to the gateway and be admitted; once with
C{mmo-login} and C{mmo-gateway} as separate processes sharing a private
Redis (bus and store), once in the standalone process on SQLite, each
time with a returning player's refresh token logins too; and Redis killed
under a burst of registrations and logins.
"""

from twisted.internet import defer, reactor
from twisted.trial import unittest

from mmo import tls
from mmo.client import ServerError, connect
from tests.redis import redis_config_text, start_redis
from tests.support import FAST_HASH, PASSWORD, STANDALONE, bounded, deployment, until
from tests.test_twistd import PROCESS_TIMEOUT, spawn

CLUSTER = """
[processes.login]
kind = "login"
client = "tcp:0:interface=127.0.0.1"
hosts = ["localhost", "127.0.0.1"]

[processes.gateway-1]
kind = "gateway"
client = "tcp:0:interface=127.0.0.1"
hosts = ["localhost", "127.0.0.1"]
"""


async def started(child, name):
    """The client port of a started process (from its log)."""
    match = await child.whenLogged(rf"{name}: clients on TLS 127\.0\.0\.1:(\d+)")
    await child.whenLogged(rf"{name}: ready")
    return int(match.group(1))


class EndToEndTests(unittest.TestCase):
    timeout = 120

    async def journey(self, ca, login_port, expected_gateway):
        """Register, log in, present the ticket to the gateway it names."""
        client = await connect(reactor, "127.0.0.1", login_port, ca=ca, hostname="localhost")
        registered = await client.request("register", name="Hero", password=PASSWORD)
        with self.assertRaises(ServerError) as caught:
            await client.request("register", name="hero", password=PASSWORD)
        self.assertEqual(caught.exception.code, "name_taken")
        with self.assertRaises(ServerError) as caught:
            await client.request("login", name="hero", password="not the password")
        self.assertEqual(caught.exception.code, "login_failed")
        realms = await client.request("realms")
        self.assertEqual([r["realm"] for r in realms["realms"]], ["main"])
        ticket = await client.request("login", name="hero", password=PASSWORD)
        await client.close()
        self.assertEqual(ticket["account"], registered["account"])
        gateway = ticket["gateway"]
        self.assertEqual(gateway["name"], expected_gateway)

        player = await connect(
            reactor, gateway["host"], gateway["port"], ca=ca, hostname="localhost"
        )
        with self.assertRaises(ServerError) as caught:
            await player.request("emote", name="wave")
        self.assertEqual(caught.exception.code, "auth_required")
        admitted = await player.request("auth", ticket=ticket["ticket"])
        self.assertEqual((admitted["account"], admitted["name"]), (ticket["account"], "Hero"))
        await player.request("ping")
        await player.close()

        # The ticket was used: a replay is refused, on any connection.
        again = await connect(
            reactor, gateway["host"], gateway["port"], ca=ca, hostname="localhost"
        )
        with self.assertRaises(ServerError) as caught:
            await again.request("auth", ticket=ticket["ticket"])
        self.assertEqual(caught.exception.code, "ticket_refused")
        await again.close()
        await self.returning(ca, login_port, registered["account"])

    async def returning(self, ca, login_port, account):
        """
        A returning player: a password login that asks for a refresh token,
        then logins with the token alone, each giving a ticket a gateway
        admits and the next token; a spent token revokes the device's
        tokens; a logout of the device revokes its token.
        """

        async def login(**fields):
            client = await connect(reactor, "127.0.0.1", login_port, ca=ca, hostname="localhost")
            try:
                return await client.login(**fields)
            finally:
                await client.close()

        first = await login(name="hero", password=PASSWORD, device="pc-1")
        second = await login(refresh=first["refresh"], device="pc-1")
        self.assertEqual(second["account"], account)
        gateway = second["gateway"]
        player = await connect(
            reactor, gateway["host"], gateway["port"], ca=ca, hostname="localhost"
        )
        admitted = await player.request("auth", ticket=second["ticket"])
        self.assertEqual(admitted["name"], "Hero")
        await player.close()
        third = await login(refresh=second["refresh"], device="pc-1")
        for spent in (first, third):
            with self.assertRaises(ServerError) as caught:
                await login(refresh=spent["refresh"], device="pc-1")
            self.assertEqual(caught.exception.code, "refresh_refused")

        kept = await login(name="hero", password=PASSWORD, device="pc-2")
        client = await connect(reactor, "127.0.0.1", login_port, ca=ca, hostname="localhost")
        await client.logout(kept["ticket"], "pc-2")
        await client.close()
        with self.assertRaises(ServerError) as caught:
            await login(refresh=kept["refresh"], device="pc-2")
        self.assertEqual(caught.exception.code, "refresh_refused")

    async def test_separate_processes_sharing_redis(self):
        server = start_redis(self)
        config = deployment(
            self,
            CLUSTER,
            extra=FAST_HASH
            + redis_config_text(server)
            + '[bus]\nbackend = "redis"\n[store]\nbackend = "redis"\n',
        )
        login, _ = spawn(self, config.file, "mmo-login")
        gateway, _ = spawn(self, config.file, "mmo-gateway")
        login_port = await started(login, "login")
        await started(gateway, "gateway-1")
        await self.journey(tls.ca_path(config.deployment.tls_dir), login_port, "gateway-1")

    async def test_standalone_on_sqlite(self):
        config = deployment(self, STANDALONE, extra=FAST_HASH)
        child, transport = spawn(self, config.file)
        port = await started(child, "mmo")
        await self.journey(tls.ca_path(config.deployment.tls_dir), port, "mmo")
        # Accounts persist across a restart of the server process.
        transport.signalProcess("TERM")
        await child.ended.addTimeout(PROCESS_TIMEOUT, reactor)
        child, transport = spawn(self, config.file)
        port = await started(child, "mmo")
        client = await connect(
            reactor,
            "127.0.0.1",
            port,
            ca=tls.ca_path(config.deployment.tls_dir),
            hostname="localhost",
        )
        ticket = await client.request("login", name="HERO", password=PASSWORD)
        self.assertEqual(ticket["name"], "Hero")
        await client.close()


#: Clients of the burst, and the requests each sends (one at a time).
BURST_CLIENTS = 8
BURST_REQUESTS = 24

#: What a client may be told in the burst besides its reply: each says "retry".
RETRYABLE = {"unavailable", "busy", "no_gateway"}


class RedisKilledTests(unittest.TestCase):
    """
    Redis SIGKILLed in the middle of registrations and logins, then
    restarted: the login server answers every request, with its reply or a
    code that says "retry", never C{internal}; it logs warnings, not
    tracebacks; and nothing it acknowledged is lost.
    """

    timeout = 180

    async def test_redis_killed_during_registrations_and_logins(self):
        server = start_redis(self, appendonly=True)
        settings = (
            FAST_HASH
            + "register_per_ip = 1000000\n"
            + redis_config_text(server)
            + "connect_timeout = 1.0\n"
            + '[store]\nbackend = "redis"\n[bus]\nbackend = "redis"\n'
        )
        config = deployment(self, CLUSTER, extra=settings)
        login, _ = spawn(self, config.file, "mmo-login")
        gateway, _ = spawn(self, config.file, "mmo-gateway")
        port = await started(login, "login")
        await started(gateway, "gateway-1")
        ca = tls.ca_path(config.deployment.tls_dir)
        clients = [
            await connect(reactor, "127.0.0.1", port, ca=ca, hostname="localhost")
            for _ in range(BURST_CLIENTS)
        ]
        for client in clients:
            self.addCleanup(client.close)

        registered = []  # names whose registration was acknowledged
        # (request, "ok" or an error code): each request gets one, or the
        # test fails (bounded).
        answers = []

        async def one(client, request, **fields):
            try:
                await bounded(client.request(request, **fields))
            except ServerError as e:
                answers.append((request, e.code))
                return False
            answers.append((request, "ok"))
            return True

        async def player(n):
            client = clients[n]
            for i in range(BURST_REQUESTS):
                name = f"player{n}x{i}"
                if await one(client, "register", name=name, password=PASSWORD):
                    registered.append(name)
                if registered:
                    earlier = registered[(n * 7 + i) % len(registered)]
                    await one(client, "login", name=earlier, password=PASSWORD)

        async def outage():
            await until(lambda: len(answers) >= 40)
            server.kill()
            # Down until a few requests have been answered meanwhile, then back.
            down = len(answers)
            await until(lambda: len(answers) >= down + 8)
            server.start()

        burst = [defer.ensureDeferred(player(n)) for n in range(BURST_CLIENTS)]
        await defer.gatherResults([defer.ensureDeferred(outage()), *burst])

        codes_seen = {code for _, code in answers}
        self.assertLessEqual(codes_seen, {"ok"} | RETRYABLE, answers)
        self.assertIn("unavailable", codes_seen)

        # Every acknowledged registration logs in once Redis and the
        # gateway's directory entry are back.
        client = clients[0]

        async def logs_in(name):
            try:
                await client.request("login", name=name, password=PASSWORD)
            except ServerError as e:
                self.assertIn(e.code, RETRYABLE, name)
                return False
            return True

        await until(lambda: logs_in(registered[0]))
        for name in registered:
            await until(lambda name=name: logs_in(name), what=f"{name} logs in")

        log = login.output()
        self.assertNotIn(" critical ", log)
        self.assertNotIn("Traceback", log)
        self.assertIn(" warn ", log)
