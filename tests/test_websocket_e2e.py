"""
A browser-style client over secure WebSocket, with a WebSocket library the
project does not use itself (C{websockets}), against the real standalone
process: it registers, logs in, presents its ticket, joins a room and chats
with a player on TCP.
"""

from twisted.internet import reactor
from twisted.trial import unittest

from mmo import tls
from mmo.client import connect
from tests.redis import redis_config_text, start_redis
from tests.support import (
    FAST_HASH,
    PASSWORD,
    STANDALONE,
    WEBSOCKET,
    deployment,
    process_tables,
    until,
)
from tests.test_login_e2e import started
from tests.test_twistd import spawn
from tests.test_websocket import Browser


class BrowserTests(unittest.TestCase):
    timeout = 120

    async def test_browser_logs_in_joins_a_room_and_chats(self):
        config = deployment(self, STANDALONE + WEBSOCKET, extra=FAST_HASH)
        ca = tls.ca_path(config.deployment.tls_dir)
        child, _ = spawn(self, config.file)
        match = await child.whenLogged(r"secure WebSocket 127\.0\.0\.1:(\d+)")
        wss_port = int(match.group(1))
        tcp_port = await started(child, "mmo")

        # A player on TCP opens a room.
        host = await connect(reactor, "127.0.0.1", tcp_port, ca=ca, hostname="localhost")
        heard = []
        host.on("chat.message", heard.append)
        await host.request("register", name="Host", password=PASSWORD)
        ticket = await host.request("login", name="host", password=PASSWORD)
        await host.request("auth", ticket=ticket["ticket"])
        room = (await host.request("room.create", name="Tavern"))["room"]

        # The browser joins it over wss:// and talks.
        browser = await Browser(self, wss_port, ca, server_hostname="localhost").connect()
        hello = await browser.request({"t": "hello", "id": 1, "versions": [1]})
        self.assertEqual(hello["t"], "reply")
        reply = await browser.request(
            {"t": "register", "id": 2, "name": "Surfer", "password": PASSWORD}
        )
        self.assertEqual((reply["t"], reply["name"]), ("reply", "Surfer"))
        reply = await browser.request(
            {"t": "login", "id": 3, "name": "surfer", "password": PASSWORD}
        )
        admitted = await browser.request({"t": "auth", "id": 4, "ticket": reply["ticket"]})
        self.assertEqual((admitted["t"], admitted["name"]), ("reply", "Surfer"))
        await browser.send({"t": "room.join", "id": 5, "room": room["id"]})
        replies = {}
        while 5 not in replies:
            message = await browser.recv()
            if message["t"] == "reply":
                replies[message["id"]] = message
        self.assertIn("Surfer", [m["name"] for m in replies[5]["members"]])
        await browser.send(
            {"t": "chat.send", "id": 6, "channel": f"room:{room['id']}", "text": "hi from wss"}
        )
        await until(lambda: any(m["text"] == "hi from wss" for m in heard))
        said = [m for m in heard if m["text"] == "hi from wss"]
        self.assertEqual(len(said), 1)
        self.assertEqual(said[0]["from"], "Surfer")
        await host.close()


class ClusterBrowserTests(unittest.TestCase):
    """
    A browser in a cluster: it logs in on the login process's secure
    WebSocket listener, is sent to a gateway's WebSocket port, and is
    admitted there; each hello tells the heartbeat it must answer.
    """

    timeout = 120

    async def test_browser_logs_in_on_login_and_plays_on_a_gateway(self):
        server = start_redis(self)
        tables = process_tables(("login", "login", ["websocket"]), ("gw", "gateway", ["websocket"]))
        config = deployment(
            self,
            tables,
            extra=FAST_HASH + redis_config_text(server) + '[bus]\nbackend = "redis"\n',
        )
        ca = tls.ca_path(config.deployment.tls_dir)
        login, _ = spawn(self, config.file, "mmo-login")
        gateway, _ = spawn(self, config.file, "mmo-gateway")
        login_wss = await login.whenLogged(r"login: browsers on secure WebSocket [\d.]+:(\d+)")
        gateway_wss = await gateway.whenLogged(r"gw: browsers on secure WebSocket [\d.]+:(\d+)")
        await started(login, "login")
        await started(gateway, "gw")

        browser = await Browser(
            self, int(login_wss.group(1)), ca, server_hostname="localhost"
        ).connect()
        hello = await browser.request({"t": "hello", "id": 1, "versions": [1]})
        self.assertEqual((hello["heartbeat_interval"], hello["heartbeat_timeout"]), (None, None))
        await browser.request({"t": "register", "id": 2, "name": "Surfer", "password": PASSWORD})
        reply = await browser.request(
            {"t": "login", "id": 3, "name": "surfer", "password": PASSWORD}
        )
        self.assertEqual(reply["t"], "reply", reply)
        port = int(gateway_wss.group(1))
        self.assertEqual((reply["gateway"]["name"], reply["gateway"]["websocket"]), ("gw", port))
        self.assertEqual(reply["gateways"], [reply["gateway"]])
        await browser.close()

        player = await Browser(self, port, ca, server_hostname="localhost").connect()
        hello = await player.request({"t": "hello", "id": 1, "versions": [1]})
        self.assertEqual(
            (hello["heartbeat_interval"], hello["heartbeat_timeout"]),
            (config.gateway.heartbeat_interval, config.gateway.heartbeat_timeout),
        )
        admitted = await player.request({"t": "auth", "id": 2, "ticket": reply["ticket"]})
        self.assertEqual((admitted["t"], admitted["name"]), ("reply", "Surfer"))
