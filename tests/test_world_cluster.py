"""
The seamless world against a real cluster of twistd processes sharing a
private Redis: a login server, one gateway, the lobby, chat and two
C{mmo-zone} processes, each serving one of the world's two regions.  A
player walks across the border between the processes and back several
times without reconnecting: it is told each zone change, its position and
its character's attributes survive each handoff, and it sees a player on
the other side of the border before crossing.  The same walk, too, by a
browser-style player on the gateway's secure WebSocket, with a client
library the project does not use itself (C{websockets}).
"""

from __future__ import annotations

from twisted.internet import reactor
from twisted.trial import unittest

from mmo import tls
from mmo.client import connect
from tests.redis import redis_config_text, start_redis
from tests.support import PASSWORD, deployment, process_tables
from tests.test_cluster import SETTINGS
from tests.test_login_e2e import started
from tests.test_twistd import spawn
from tests.test_websocket import Browser
from tests.test_world_e2e import WORLD, Player, sleep
from tests.test_world_websocket import BrowserClient

#: The processes: login, a gateway, the lobby, chat and two zones.
CLUSTER = (
    ("login", "login"),
    ("gateway-1", "gateway"),
    ("lobby", "lobby"),
    ("chat", "chat"),
    ("zone-1", "zone"),
    ("zone-2", "zone"),
)

#: The same processes, gateway-1 also serving browsers on secure WebSocket.
WEBSOCKET_CLUSTER = tuple(
    (name, kind, ("websocket",)) if name == "gateway-1" else (name, kind) for name, kind in CLUSTER
)

#: The standalone test's world, its two regions served by the two zone processes.
CLUSTER_WORLD = WORLD + 'zones = ["zone-1", "zone-2"]\n'

#: A character attribute of the game's, which must survive the handoffs.
ATTRS = {"hp": 42}


class WorldClusterTests(unittest.TestCase):
    timeout = 180

    async def start_cluster(self, cluster=CLUSTER):
        server = start_redis(self)
        processes = process_tables(*cluster)
        extra = SETTINGS + CLUSTER_WORLD + redis_config_text(server)
        config = deployment(self, processes, extra=extra)
        self.config_file = config.file
        self.ca = tls.ca_path(config.deployment.tls_dir)
        children = {}
        for name, plugin in [
            ("lobby", "mmo-lobby"),
            ("chat", "mmo-chat"),
            ("zone-1", "mmo-zone"),
            ("zone-2", "mmo-zone"),
            ("login", "mmo-login"),
            ("gateway-1", "mmo-gateway"),
        ]:
            children[name], _ = spawn(self, config.file, plugin, "--process", name)
        self.ports = {}
        if cluster is WEBSOCKET_CLUSTER:
            match = await children["gateway-1"].whenLogged(
                r"gateway-1: browsers on secure WebSocket 127\.0\.0\.1:(\d+)"
            )
            self.ports["gateway-1 wss"] = int(match.group(1))
        for name in ("login", "gateway-1"):
            self.ports[name] = await started(children[name], name)
        for name in ("lobby", "chat", "zone-1", "zone-2"):
            await children[name].whenLogged(rf"{name}: ready")
        self.children = children

    async def player(self, name) -> Player:
        """Register, log in, be admitted, create and choose a character, enter the world."""
        client = await connect(
            reactor, "127.0.0.1", self.ports["login"], ca=self.ca, hostname="localhost"
        )
        await client.request("register", name=name, password=PASSWORD)
        ticket = await client.request("login", name=name, password=PASSWORD)
        await client.close()
        gateway = ticket["gateway"]
        self.assertEqual(gateway["port"], self.ports["gateway-1"])
        client = await connect(
            reactor, gateway["host"], gateway["port"], ca=self.ca, hostname="localhost"
        )
        self.addCleanup(client.close)
        await client.request("auth", ticket=ticket["ticket"])
        created = await client.request("character.create", name=name + "son", data=ATTRS)
        character = created["character"]
        self.assertEqual(character["data"], ATTRS)
        await client.request("character.choose", character=character["id"])
        # Every world.update, from the first (even one read with the reply).
        updates = []
        client.on("world.update", updates.append)
        await client.request("world.enter")
        entered = await client.request("zone.enter")
        self.assertEqual(entered["entity"], character["id"])
        self.assertEqual(entered["zone"], "r0c0")
        self.assertEqual((entered["x"], entered["y"]), (92.0, 50.0))
        player = Player(client, entered["entity"], entered["input"], entered["x"], entered["y"])
        player.updates = updates
        return player

    async def browser_player(self, name) -> Player:
        """
        Register and log in on TCP, then on gateway-1's secure WebSocket:
        present the ticket, create and choose a character, enter the world.
        """
        client = await connect(
            reactor, "127.0.0.1", self.ports["login"], ca=self.ca, hostname="localhost"
        )
        await client.request("register", name=name, password=PASSWORD)
        ticket = await client.request("login", name=name, password=PASSWORD)
        await client.close()
        self.assertEqual(ticket["gateway"]["port"], self.ports["gateway-1"])
        browser = await Browser(
            self, self.ports["gateway-1 wss"], self.ca, server_hostname="localhost"
        ).connect()
        client = BrowserClient(browser)
        self.addCleanup(client.close)
        await client.request("hello", versions=[1])
        admitted = await client.request("auth", ticket=ticket["ticket"])
        self.assertEqual(admitted["name"], name)
        created = await client.request("character.create", name=name + "son", data=ATTRS)
        character = created["character"]
        await client.request("character.choose", character=character["id"])
        updates = []
        client.on("world.update", updates.append)
        await client.request("world.enter")
        entered = await client.request("zone.enter")
        self.assertEqual(entered["entity"], character["id"])
        self.assertEqual(entered["zone"], "r0c0")
        self.assertEqual((entered["x"], entered["y"]), (92.0, 50.0))
        player = Player(client, entered["entity"], entered["input"], entered["x"], entered["y"])
        player.updates = updates
        return player

    def views(self, player: Player, entity_id: str, key: str = "enter") -> list[dict]:
        """What C{player} was shown of C{entity_id} in its updates' C{key} lists."""
        return [v for m in player.updates for v in m[key] if v["id"] == entity_id]

    def attrs(self, player: Player, entity_id: str) -> dict | None:
        """The attributes of C{entity_id} as C{player}'s client knows them now."""
        found = None
        for view in self.views(player, entity_id, "enter") + self.views(
            player, entity_id, "update"
        ):
            if "attrs" in view:
                found = view["attrs"]
        return found

    async def settled(self, player: Player, zones: int) -> None:
        """Wait until C{player} was told of C{zones} zone changes and its position is current."""
        for _ in range(300):
            if len(player.zones) >= zones and player.seen.get(player.id) == (player.x, player.y):
                return
            await sleep(0.02)
        self.fail(
            f"{player.id}: zones {player.zones}, seen at {player.seen.get(player.id)}, "
            f"walked to {(player.x, player.y)}"
        )

    async def test_walk_across_the_border_between_processes(self):
        await self.start_cluster()

        # Bob stands on the east side, in zone-2's region, near the border.
        bob = await self.player("Bob")
        await bob.walk_to(106.0)
        await self.settled(bob, 1)
        self.assertEqual(bob.zones, ["r0c1"])

        alice = await self.player("Alice")
        closed = alice.client.whenClosed()
        await sleep(0.5)
        # Seen across the border (a ghost from the other process), before crossing it.
        self.assertIn(bob.id, alice.entered)
        self.assertEqual(alice.seen[bob.id], (106.0, 50.0))
        self.assertEqual(alice.zones, [])
        self.assertEqual(self.attrs(alice, alice.id), ATTRS)
        self.assertEqual(self.attrs(alice, bob.id), ATTRS)

        expected = []
        for _ in range(3):
            await alice.walk_to(104.0)
            expected.append("r0c1")
            await self.settled(alice, len(expected))
            await alice.walk_to(96.0)
            expected.append("r0c0")
            await self.settled(alice, len(expected))
        self.assertEqual(alice.zones, expected)
        self.assertEqual(alice.corrections, [])
        self.assertEqual((alice.x, alice.y), (96.0, 50.0))
        self.assertEqual(alice.seen[alice.id], (96.0, 50.0))
        # Her own entity never left her view.  (It may be entered again after a
        # handoff that outlasted the hold timeout on a loaded machine: the view
        # then starts afresh in the new zone; the client just refreshes it.)
        self.assertGreaterEqual(len(self.views(alice, alice.id)), 1)
        self.assertFalse(any(alice.id in m["leave"] for m in alice.updates))
        self.assertEqual(self.attrs(alice, alice.id), ATTRS)
        self.assertFalse(closed.called, "the client was disconnected")

        # A newcomer's fresh view of Alice, from the zone that holds her after
        # six handoffs between the processes: her attributes travelled with her.
        carol = await self.player("Carol")
        for _ in range(100):
            if self.views(carol, alice.id):
                break
            await sleep(0.02)
        [view] = self.views(carol, alice.id)
        self.assertEqual((view["x"], view["y"]), (96.0, 50.0))
        self.assertEqual(view["attrs"], ATTRS)
        self.assertEqual(self.attrs(carol, carol.id), ATTRS)
        self.assertFalse(closed.called, "the client was disconnected")

    async def test_browser_walks_across_the_border_between_processes(self):
        await self.start_cluster(WEBSOCKET_CLUSTER)

        # Bob, on TCP, stands on the east side, in zone-2's region, near the border.
        bob = await self.player("Bob")
        await bob.walk_to(106.0)
        await self.settled(bob, 1)
        self.assertEqual(bob.zones, ["r0c1"])

        walker = await self.browser_player("Surfer")
        await sleep(0.5)
        # Seen across the border (a ghost from the other process), before crossing it.
        self.assertIn(bob.id, walker.entered)
        self.assertEqual(walker.seen[bob.id], (106.0, 50.0))
        self.assertEqual(walker.zones, [])
        self.assertEqual(self.attrs(walker, walker.id), ATTRS)

        expected = []
        for _ in range(2):
            await walker.walk_to(104.0)
            expected.append("r0c1")
            await self.settled(walker, len(expected))
            self.assertEqual(walker.seen[walker.id], (104.0, 50.0))
            await walker.walk_to(96.0)
            expected.append("r0c0")
            await self.settled(walker, len(expected))
            self.assertEqual(walker.seen[walker.id], (96.0, 50.0))
        self.assertEqual(walker.zones, expected)
        self.assertEqual(walker.corrections, [])
        self.assertEqual((walker.x, walker.y), (96.0, 50.0))
        self.assertEqual(self.attrs(walker, walker.id), ATTRS)
        self.assertFalse(walker.client.disconnected, "the browser was disconnected")
        self.assertEqual(walker.client.unexpected, [])
        # Bob, across the border again, sees the walker where it stopped.
        for _ in range(100):
            if bob.seen.get(walker.id) == (96.0, 50.0):
                break
            await sleep(0.02)
        self.assertEqual(bob.seen.get(walker.id), (96.0, 50.0))
        self.assertFalse(walker.client.disconnected, "the browser was disconnected")
