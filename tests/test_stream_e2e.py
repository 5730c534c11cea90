"""
The zone -> gateway stream in a real cluster (C{docs/handoff.md}, "A
direct zone -> gateway stream"): the link between the gateway and a zone
process is cut and restored while its players watch others move.  What
the zone sent meanwhile is lost with the link; when the link is up again,
the zone starts its players' views over (C{reset}), and their views end
equal to the zone's.

The cut is made by a TCP relay between the gateway and zone-1 in the test
process (zone-1 listens on another port than the one the gateway's config
names); cutting it aborts the connections and refuses new ones until it
is restored, as a network that fails would.
"""

from __future__ import annotations

import re

from twisted.internet import reactor
from twisted.protocols import portforward
from twisted.trial import unittest

from tests.redis import free_port, redis_config_text, start_redis
from tests.support import deployment, process_tables, sleep, until
from tests.test_login_e2e import started
from tests.test_twistd import spawn
from tests.world_walk import CLUSTER, CLUSTER_WORLD, SETTINGS, tcp_player


class Relay(portforward.ProxyFactory):
    """Forwards connections to C{port}; L{cut} aborts them and refuses new ones until L{restore}."""

    def __init__(self, port: int):
        super().__init__("127.0.0.1", port)
        self.up = True
        self.open: set = set()

    def buildProtocol(self, addr):
        if not self.up:
            return None
        return super().buildProtocol(addr)

    def cut(self) -> None:
        self.up = False
        for server in list(self.open):
            server.transport.abortConnection()
            if server.peer is not None:
                server.peer.transport.abortConnection()

    def restore(self) -> None:
        self.up = True


class RelayServer(portforward.ProxyServer):
    def connectionMade(self):
        self.factory.open.add(self)
        super().connectionMade()

    def connectionLost(self, reason):
        self.factory.open.discard(self)
        super().connectionLost(reason)


Relay.protocol = RelayServer


class LinkCutTests(unittest.TestCase):
    timeout = 120

    async def start(self):
        """L{CLUSTER}, zone-1 behind a L{Relay}; returns the servers' ports and CA."""
        from mmo import tls

        server = start_redis(self)
        conf = deployment(
            self,
            process_tables(*CLUSTER),
            extra=SETTINGS + CLUSTER_WORLD + redis_config_text(server),
        )
        with open(conf.file) as f:
            text = f.read()
        named = re.search(r'\[processes\.zone-1\][^\[]*rpc = "tcp:(\d+):', text)
        gateway_side = int(named.group(1))
        zone_side = free_port()
        # zone-1 listens where the relay forwards to; the others reach it through the relay.
        zone_file = conf.file + ".zone-1.toml"
        with open(zone_file, "w") as f:
            f.write(text.replace(f'rpc = "tcp:{gateway_side}:', f'rpc = "tcp:{zone_side}:', 1))
        self.relay = Relay(zone_side)
        port = reactor.listenTCP(gateway_side, self.relay, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.addCleanup(self.relay.cut)
        children = {}
        for name, kind in CLUSTER:
            file = zone_file if name == "zone-1" else conf.file
            children[name], _ = spawn(self, file, f"mmo-{kind}", "--process", name)
        ports = {}
        for name, kind in CLUSTER:
            if kind in ("login", "gateway"):
                ports[name] = await started(children[name], name)
            else:
                await children[name].whenLogged(rf"{name}: ready")
        self.children = children
        for zone in ("zone-1", "zone-2"):
            await children[zone].whenLogged(r"stream to gateway-1 up")
        return tls.ca_path(conf.deployment.tls_dir), ports["login"]

    async def test_view_repaired_after_a_cut(self):
        """
        Alice stands in zone-1's region and sees Bob, who walks in zone-2's
        while the gateway's link to zone-1 is cut: zone-1's updates of Bob
        to Alice are lost.  Once the link is back, Alice's next update
        starts her view over (C{reset}), and she sees Bob where he is.
        """
        ca, login = await self.start()
        bob = await tcp_player(self, ca, login, "Bob")
        await bob.walk_to(106.0)
        await bob.caught_up(1)
        alice = await tcp_player(self, ca, login, "Alice")
        await until(lambda: alice.seen.get(bob.id) == (106.0, 50.0), what="Alice sees Bob")
        self.assertFalse([m for m in alice.received if m.get("reset")])

        self.relay.cut()
        await self.children["zone-1"].whenLogged(r"RPC link with gateway-1 closed")
        await bob.walk_to(110.0)
        await sleep(0.5)
        # Zone-1's updates of Bob's walk did not reach Alice.
        self.assertNotEqual(alice.seen.get(bob.id), (110.0, 50.0))
        heard = len(alice.received)
        self.relay.restore()

        await until(
            lambda: any(m.get("reset") for m in alice.received[heard:]),
            what="Alice's view started over",
        )
        await until(lambda: alice.seen.get(bob.id) == (110.0, 50.0), what="Alice sees Bob again")
        [reset] = [m for m in alice.received[heard:] if m.get("reset")]
        self.assertIn(bob.id, [view["id"] for view in reset["enter"]])
        self.assertIn(alice.id, [view["id"] for view in reset["enter"]])
        # And the world goes on: she walks and sees herself move.
        await alice.walk_to(95.0)
        await until(lambda: alice.seen.get(alice.id) == (95.0, 50.0), what="Alice moves")
        self.assertEqual(alice.corrections, [])
        # Bob's client, on zone-2's stream, never missed anything.
        self.assertFalse([m for m in bob.received if m.get("reset")])
