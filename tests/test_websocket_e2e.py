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
from tests.support import FAST_HASH, PASSWORD, STANDALONE, WEBSOCKET, deployment, until
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
