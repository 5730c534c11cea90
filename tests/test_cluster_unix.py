"""
End to end with Unix-socket links (C{[deployment] rpc_unix_dir}): a real
cluster of twistd processes on one machine whose gateway reaches the lobby
and chat over their Unix sockets instead of mutual TLS; players log in and
chat across it, and the services log the links as Unix-socket ones (with
the commands without an answer each end takes).
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile

from twisted.trial import unittest

from tests.support import spawn_cluster, until
from tests.test_cluster import SETTINGS, Player

CLUSTER = (
    ("login", "login"),
    ("gateway-1", "gateway"),
    ("lobby", "lobby"),
    ("chat", "chat"),
)


class UnixLinkClusterTests(unittest.TestCase):
    timeout = 180

    async def test_chat_over_unix_links(self):
        # Short: a socket path holds at most 107 bytes.
        base = tempfile.mkdtemp(prefix="mmo-")
        self.addCleanup(shutil.rmtree, base, True)
        directory = os.path.join(base, "run")
        # The first lines of the settings belong to [deployment].
        cluster = await spawn_cluster(self, CLUSTER, f'rpc_unix_dir = "{directory}"\n' + SETTINGS)
        self.ca, self.ports = cluster.ca, cluster.ports
        alice = await Player(self, "Alice").join(self.ports["gateway-1"])
        bob = await Player(self, "Bob").join(self.ports["gateway-1"])
        await alice.client.request("chat.send", channel="world:main", text="over unix")
        await until(lambda: "over unix" in bob.texts())

        for service in ("lobby", "chat"):
            child = cluster.children[service]
            await child.whenLogged(r"RPC link from gateway-1 at unix socket accepted")
            self.assertEqual(
                stat.S_IMODE(os.stat(os.path.join(directory, f"{service}.sock")).st_mode), 0o600
            )
        self.assertEqual(stat.S_IMODE(os.stat(directory).st_mode), 0o700)
        gateway = cluster.children["gateway-1"]
        # It knows what the service takes unanswered, as over TLS (a zone's
        # inputs go so).
        await gateway.whenLogged(r"RPC link to chat at unix:\S+chat\.sock up \(.*takes RouteInputs")
        self.assertNotIn("TLS refused", gateway.output())
