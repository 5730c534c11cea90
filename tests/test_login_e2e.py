"""
End to end against real twistd processes over real TLS: register, log in,
get a ticket, present it to the gateway and be admitted; once with
C{mmo-login} and C{mmo-gateway} as separate processes sharing a private
Redis (for the bus), once in the standalone process on SQLite.
"""

from twisted.internet import reactor
from twisted.trial import unittest

from mmo import tls
from mmo.client import ServerError, connect
from tests.redis import redis_config_text, start_redis
from tests.support import FAST_HASH, PASSWORD, STANDALONE, deployment
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

    async def test_separate_processes_sharing_redis(self):
        server = start_redis(self)
        config = deployment(
            self,
            CLUSTER,
            extra=FAST_HASH + redis_config_text(server) + '[bus]\nbackend = "redis"\n',
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
