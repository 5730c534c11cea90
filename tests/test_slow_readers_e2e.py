"""
Clients that do not read, against the real standalone process: a browser
that sends WebSocket pings and never reads the pongs, and a TCP client that
stops reading while world chat flows to it.  Each is cut off (goodbye
C{slow_reader}) once it leaves C{[listeners] max_unsent} bytes unread, the
server's resident memory stays within a stated bound meanwhile, and an
honest client is served afterwards.

The abusers are bounded: they stop after L{FLOOD_SECONDS} whether or not
they were cut off; the tests wait for the cut-off, they do not assert on
time.  The flooder and the memory sampler are C{bench/abuse.py}'s.
"""

from __future__ import annotations

import os
import socket

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol, wrapClientTLS
from twisted.trial import unittest

from mmo import tls
from mmo.client import client_tls_options, connect
from tests.support import PASSWORD, STANDALONE, WEBSOCKET, deployment, load_bench
from tests.test_login_e2e import started
from tests.test_twistd import spawn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: What a connection may leave unread in these tests.
MAX_UNSENT = 256 * 1024

#: The most the server's resident memory may grow while an abuser runs, MB.
#: Without the limit it grows with everything the abuser leaves unread
#: (about 5 MB a second in the issue); with it, by the limit, the kernel's
#: queue stays outside the process.
RSS_BOUND_MB = 48

#: How long an abuser goes on at most, seconds.
FLOOD_SECONDS = 20.0

EXTRA = f"""
[login]
argon2_memory_kib = 1024
argon2_time_cost = 1

[wire]
max_frame_size = 65536

[listeners]
max_unsent = {MAX_UNSENT}

[gateway]
resume_buffer_bytes = {MAX_UNSENT}
flood_rate = 100000
flood_burst = 100000

[chat]
rate = 10000
burst = 10000
max_length = 30000
"""


abuse = load_bench("abuse")


class SlowReaderTests(unittest.TestCase):
    timeout = 120

    async def server(self):
        config = deployment(self, STANDALONE + WEBSOCKET, extra=EXTRA)
        self.ca = tls.ca_path(config.deployment.tls_dir)
        child, transport = spawn(self, config.file)
        match = await child.whenLogged(r"secure WebSocket 127\.0\.0\.1:(\d+)")
        self.wss_port = int(match.group(1))
        self.port = await started(child, "mmo")
        return child, transport.pid

    async def player(self, name: str):
        client = await connect(reactor, "127.0.0.1", self.port, ca=self.ca, hostname="localhost")
        self.addCleanup(lambda: client.transport.connected and client.transport.abortConnection())
        await client.request("register", name=name, password=PASSWORD)
        ticket = await client.request("login", name=name, password=PASSWORD)
        await client.request("auth", ticket=ticket["ticket"])
        return client

    async def assertHonestServed(self):
        honest = await self.player("Honest")
        reply = await honest.request("ping")
        self.assertIn("time", reply)

    async def test_ping_flood_without_reading(self):
        """
        A browser that sends pings and never reads is cut off once the
        pongs it left unread pass the limit; memory stays bounded.
        """
        child, pid = await self.server()
        flooder = abuse.PingFlooder()
        options = client_tls_options("localhost", self.ca)
        endpoint = wrapClientTLS(options, TCP4ClientEndpoint(reactor, "127.0.0.1", self.wss_port))
        await connectProtocol(endpoint, flooder)
        self.addCleanup(lambda: flooder.lost.called or flooder.transport.abortConnection())
        await flooder.upgraded
        self.assertIn(b" 101 ", flooder.head.split(b"\r\n", 1)[0])

        memory = abuse.Memory(pid)

        cut = await abuse.until(reactor, lambda: flooder.lost.called, flooder.flood, FLOOD_SECONDS)
        growth = memory.stop()
        self.assertIsNotNone(cut, f"not cut off after {flooder.sent} bytes of pings")
        await child.whenLogged(r"slow_reader")
        self.assertLess(growth, RSS_BOUND_MB)
        await self.assertHonestServed()

    async def test_push_flow_to_a_client_that_stops_reading(self):
        """
        A player who stops reading while world chat flows to it is cut off
        once it leaves more than the limit unread; memory stays bounded.
        """
        child, pid = await self.server()
        reader = await self.player("Reader")
        chatter = await self.player("Chatter")
        heard = []
        chatter.on("chat.message", heard.append)
        # The reader stops reading, with a small receive buffer (less in flight).
        reader.transport.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        reader.transport.pauseProducing()
        memory = abuse.Memory(pid)
        text = "x" * 30000
        sent = [0]

        def step():
            # Keep a few messages in flight: the chatter reads its echoes.
            while sent[0] - len(heard) < 20:
                chatter.send("chat.send", channel="world:main", text=text)
                sent[0] += 1

        cut = await abuse.until(
            reactor, lambda: "slow_reader" in child.output(), step, FLOOD_SECONDS
        )
        growth = memory.stop()
        self.assertIsNotNone(cut, f"not cut off after {sent[0]} messages")
        self.assertLess(growth, RSS_BOUND_MB)
        await self.assertHonestServed()
