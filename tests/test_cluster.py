"""
End to end against a real cluster of twistd processes sharing a private
Redis: a login server, two gateways, the lobby and chat.  Chat crosses
gateways; a dropped client resumes on the other gateway and gets exactly
what it missed; a flooding client is cut off without slowing the others.
"""

from __future__ import annotations

import statistics
import time

from twisted.internet import reactor
from twisted.trial import unittest

from mmo.client import ServerError, connect
from tests.support import FAST_HASH, ON_REDIS, PASSWORD, sleep, spawn_cluster, until
from tests.test_twistd import spawn

#: The processes of the cluster (the lobby's and chat's ports are free ones).
CLUSTER = (
    ("login", "login"),
    ("gateway-1", "gateway"),
    ("gateway-2", "gateway"),
    ("lobby", "lobby"),
    ("chat", "chat"),
)

SETTINGS = (
    FAST_HASH
    + ON_REDIS
    + """
[gateway]
resume_window = 3.0
flood_rate = 50.0
flood_burst = 100
flood_strikes = 30

[chat]
moderators = ["Mod"]
rate = 100.0
burst = 100
"""
)


class Player:
    """A client logged in through login and admitted on one gateway."""

    def __init__(self, test, name):
        self.test = test
        self.name = name
        self.messages = []
        self.client = None

    async def join(self, gateway_port):
        test = self.test
        login = await connect(
            reactor, "127.0.0.1", test.ports["login"], ca=test.ca, hostname="localhost"
        )
        try:
            await login.request("register", name=self.name, password=PASSWORD)
        except ServerError as e:
            if e.code != "name_taken":
                raise
        ticket = await login.request("login", name=self.name, password=PASSWORD)
        await login.close()
        self.client = await self.connect(gateway_port)
        admitted = await self.client.request("auth", ticket=ticket["ticket"])
        self.resume_token = admitted["resume"]
        return self

    async def connect(self, port):
        client = await connect(reactor, "127.0.0.1", port, ca=self.test.ca, hostname="localhost")
        client.on("chat.message", self.messages.append)
        return client

    def texts(self):
        return [m["text"] for m in self.messages]


class ClusterTests(unittest.TestCase):
    timeout = 180

    async def start_cluster(self):
        cluster = await spawn_cluster(self, CLUSTER, SETTINGS)
        self.ca, self.ports = cluster.ca, cluster.ports

    async def test_chat_resume_and_moderation_across_gateways(self):
        await self.start_cluster()
        alice = await Player(self, "Alice").join(self.ports["gateway-1"])
        bob = await Player(self, "Bob").join(self.ports["gateway-2"])
        moderator = await Player(self, "Mod").join(self.ports["gateway-1"])

        # A chat message reaches members on both gateways.
        await alice.client.request("chat.send", channel="world:main", text="hello all")
        await until(lambda: "hello all" in bob.texts() and "hello all" in moderator.texts())

        # A whisper to an offline player is a clear error.
        with self.assertRaises(ServerError) as caught:
            await alice.client.request("chat.whisper", to="Nobody", text="psst")
        self.assertEqual(caught.exception.code, "player_offline")

        # Bob's connection is cut without a close; Alice talks on; Bob
        # resumes on the other gateway and gets exactly what he missed.
        seen = bob.client.last_seq
        before = len(bob.messages)
        bob.client.transport.abortConnection()
        await bob.client.whenClosed()
        for i in range(5):
            await alice.client.request("chat.send", channel="world:main", text=f"missed {i}")
        resumed = await bob.connect(self.ports["gateway-1"])
        await resumed.request("resume", token=bob.resume_token, last_seq=seen)
        await until(lambda: len(bob.messages) >= before + 5)
        await sleep(0.3)
        self.assertEqual(bob.texts()[before:], [f"missed {i}" for i in range(5)])
        bob.client = resumed
        # Each resume issues a new token; the spent one is refused.
        self.assertNotEqual(resumed.resume_token, bob.resume_token)
        bob.resume_token = resumed.resume_token
        await alice.client.request("chat.send", channel="world:main", text="after")
        await until(lambda: "after" in bob.texts())
        self.assertEqual(bob.texts().count("after"), 1)

        # A muted player's messages are refused with a reason.
        await moderator.client.request("chat.mute", name="Bob", seconds=60)
        with self.assertRaises(ServerError) as caught:
            await bob.client.request("chat.send", channel="world:main", text="let me talk")
        self.assertEqual(caught.exception.code, "muted")
        self.assertTrue(caught.exception.message)

        # After the window, a dropped session is gone and what it held released.
        token = bob.resume_token
        bob.client.transport.abortConnection()
        await bob.client.whenClosed()
        await sleep(4.5)
        late = await bob.connect(self.ports["gateway-2"])
        with self.assertRaises(ServerError) as caught:
            await late.request("resume", token=token, last_seq=bob.client.last_seq)
        self.assertEqual(caught.exception.code, "resume_refused")
        with self.assertRaises(ServerError) as caught:
            await alice.client.request("chat.whisper", to="Bob", text="still there?")
        self.assertEqual(caught.exception.code, "player_offline")
        for player in (alice, moderator):
            await player.client.close()
        await late.close()

    async def test_chat_restarted_knows_who_is_online(self):
        """
        A chat process killed and started again while two players are
        connected learns them from the gateways: a whisper between them
        works though neither sent chat anything since.
        """
        cluster = await spawn_cluster(self, CLUSTER, SETTINGS)
        self.ca, self.ports = cluster.ca, cluster.ports
        alice = await Player(self, "Alice").join(self.ports["gateway-1"])
        bob = await Player(self, "Bob").join(self.ports["gateway-2"])
        whispers = []
        bob.client.on("chat.whisper", whispers.append)
        # Both sessions' events reached chat: nothing of them is on its way.
        await alice.client.request("chat.whisper", to="Bob", text="there?")
        await until(lambda: whispers, what="Bob to get the first whisper")
        cluster.transports["chat"].signalProcess("KILL")
        await cluster.children["chat"].whenExited()
        chat, _ = spawn(self, cluster.config.file, "mmo-chat", "--process", "chat")
        await chat.whenLogged(r"chat: 2 sessions learnt from 2 gateways")

        async def whispered() -> bool:
            try:
                await alice.client.request("chat.whisper", to="Bob", text="back?")
            except ServerError as e:
                if e.code != "unavailable":  # the gateway's link to chat comes back
                    raise
                return False
            return True

        await until(whispered, what="a whisper through the restarted chat")
        await until(lambda: len(whispers) == 2, what="Bob to get the whisper")
        self.assertEqual([w["text"] for w in whispers], ["there?", "back?"])
        for player in (alice, bob):
            await player.client.close()

    async def test_flooding_client_cut_off_others_unaffected(self):
        await self.start_cluster()
        calm = await Player(self, "Calm").join(self.ports["gateway-1"])
        noisy = await Player(self, "Noisy").join(self.ports["gateway-1"])

        async def latencies(count):
            result = []
            for _ in range(count):
                started = time.perf_counter()
                await calm.client.request("ping")
                result.append(time.perf_counter() - started)
            return result

        before = await latencies(30)
        flooding = []
        noisy.client.on("error", flooding.append)
        for _ in range(400):
            if noisy.client.closing:
                break
            noisy.client.send("ping")
        during = await latencies(30)
        closed = await noisy.client.whenClosed()
        self.assertEqual(closed.code, "flood")
        self.assertTrue(any(e.get("code") == "flooding" for e in flooding))
        # The calm client's latency stays in its normal range (generous bound:
        # shared machines are noisy).
        normal = statistics.median(before)
        self.assertLess(statistics.median(during), max(5 * normal, normal + 0.05))
        await calm.client.close()
