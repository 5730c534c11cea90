"""
End to end: a gateway of a real cluster (login, two gateways, lobby and
chat as twistd processes on a private Redis) is drained through its control
channel while chat flows; its clients (the SDK) follow the move to the
other gateway without logging in again and miss nothing; stopping the
drained gateway afterwards ends none of the moved sessions.
"""

from __future__ import annotations

from twisted.internet import defer, reactor
from twisted.trial import unittest

from mmo.bus.redis import RedisBus
from mmo.process import control
from tests.support import sleep, spawn_cluster, until
from tests.test_cluster import CLUSTER, SETTINGS, Player

#: Numbered chat messages the sender sends, and after how many the drain starts.
COUNT = 40
DRAIN_AFTER = 10


class DrainEndToEndTests(unittest.TestCase):
    timeout = 60

    async def start_cluster(self):
        """The cluster of L{tests.test_cluster}, and a bus of its own to control it."""
        self.cluster = await spawn_cluster(self, CLUSTER, SETTINGS)
        self.config, self.ca, self.ports = self.cluster.config, self.cluster.ca, self.cluster.ports
        self.bus = RedisBus(self.config, reactor=reactor)
        await self.bus.start()
        self.addCleanup(self.bus.stop)

    async def test_drain_moves_every_client_without_loss(self):
        await self.start_cluster()
        movers = [await Player(self, f"Mover{i}").join(self.ports["gateway-1"]) for i in range(3)]
        sender = await Player(self, "Sender").join(self.ports["gateway-2"])
        everyone = movers + [sender]
        sessions = {p.name: p.client.session for p in movers}
        moves = {p.name: [] for p in movers}
        for player in movers:
            player.client.on("moved", moves[player.name].append)

        async def send(numbers):
            for i in numbers:
                await sender.client.request("chat.send", channel="world:main", text=f"n{i}")
                await sleep(0.02)

        await send(range(DRAIN_AFTER))
        drained = defer.ensureDeferred(
            control.call(self.bus, "gateway-1", "drain", timeout=15.0, reactor=reactor)
        )
        await send(range(DRAIN_AFTER, COUNT))
        try:
            result = await drained
        except control.ControlError as e:
            log = self.cluster.children["gateway-1"].output()[-4000:]
            self.fail(f"{e}; gateway-1 logged:\n{log}")
        self.assertEqual(
            (result["target"], result["told"], result["moved"], result["remaining"]),
            ("gateway-2", 3, 3, 0),
        )
        expected = [f"n{i}" for i in range(COUNT)]
        await until(lambda: all(len(p.texts()) >= COUNT for p in everyone))
        for player in movers:
            [move] = moves[player.name]
            self.assertEqual(move["gateway"], "gateway-2")
            # The same session, resumed: no second login.
            self.assertEqual(player.client.session, sessions[player.name])
            self.assertEqual(player.client.transport.getPeer().port, self.ports["gateway-2"])
        for player in everyone:
            self.assertEqual(player.texts(), expected, player.name)

        # The drained gateway stops; the sessions that moved live on.
        self.cluster.transports["gateway-1"].signalProcess("TERM")
        await self.cluster.children["gateway-1"].whenExited()
        await sender.client.request("chat.send", channel="world:main", text="after")
        await until(lambda: all(p.texts()[-1:] == ["after"] for p in everyone))
        for player in everyone:
            self.assertEqual(player.texts(), expected + ["after"], player.name)
            await player.client.close()
