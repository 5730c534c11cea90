"""
End to end behind HAProxy: a real C{haproxy} terminates TLS in front of a
real C{twistd mmo} whose client listener takes the PROXY protocol from it
(C{proxy_from}); a TLS client registers, logs in and is admitted through
the proxy, and the server logs the player's own address (its port), not
the proxy's.  A plain connection that sends no PROXY header is refused
with a log line.

Skipped without haproxy (C{apt-get install -y haproxy}), except under
C{MMO_REQUIRE_HAPROXY=1} (set by C{.ci/run}), where it fails instead.
"""

import os

from twisted.internet import defer, endpoints, protocol, reactor, utils
from twisted.trial import unittest

from mmo import tls
from mmo.client import connect
from tests.support import FAST_HASH, PASSWORD, bounded, deployment, load_bench
from tests.test_twistd import spawn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


#: bench/_haproxy.py: the HAProxy the benchmark runs, run here the same way.
haproxy = load_bench("_haproxy")


def require_haproxy() -> None:
    if haproxy.binary() is None:
        reason = "haproxy is not installed (apt-get install -y haproxy)"
        if os.environ.get("MMO_REQUIRE_HAPROXY") == "1":
            raise AssertionError(f"MMO_REQUIRE_HAPROXY=1 but {reason}")
        raise unittest.SkipTest(reason)


PROXIED = """
[processes.mmo]
kind = "mmo"
client = "tcp:{backend}:interface=127.0.0.1"
hosts = ["localhost", "127.0.0.1"]
proxy_from = ["127.0.0.1"]
public = "127.0.0.1:{public}"
"""


class Silent(protocol.Protocol):
    """Sends C{payload} and waits for the close."""

    def __init__(self, payload: bytes):
        self.payload = payload
        self.lost = defer.Deferred()

    def connectionMade(self):
        self.transport.write(self.payload)

    def connectionLost(self, reason):
        self.lost.callback(None)


class BehindHAProxyTests(unittest.TestCase):
    timeout = 120

    async def test_tls_client_through_haproxy_logs_in(self):
        require_haproxy()
        backend = haproxy.free_port()
        directory = os.path.abspath(self.mktemp())
        # The proxy's port must be known for "public" (where login sends players).
        public = haproxy.free_port()
        config = deployment(self, PROXIED.format(backend=backend, public=public), extra=FAST_HASH)
        child, _ = spawn(self, config.file)
        await child.whenLogged(r"mmo: clients on PROXY protocol \(TLS at the proxy\) 127\.0\.0\.1")
        await child.whenLogged(r"mmo: ready")
        cert, key = tls.server_paths(config.deployment.tls_dir, "mmo")
        proxy = haproxy.HAProxy(directory, backend, cert, key, port=public)
        proxy.start()
        self.addCleanup(proxy.stop)
        ca = tls.ca_path(config.deployment.tls_dir)

        client = await connect(reactor, "127.0.0.1", public, ca=ca, hostname="localhost")
        await client.request("register", name="Hero", password=PASSWORD)
        ticket = await client.request("login", name="hero", password=PASSWORD)
        await client.close()
        gateway = ticket["gateway"]
        self.assertEqual((gateway["host"], gateway["port"]), ("127.0.0.1", public))

        player = await connect(reactor, "127.0.0.1", public, ca=ca, hostname="localhost")
        admitted = await player.request("auth", ticket=ticket["ticket"])
        self.assertEqual(admitted["name"], "Hero")
        # The server knows the player by the player's own address and port.
        port = player.transport.getHost().port
        await child.whenLogged(rf"127\.0\.0\.1:{port} admitted as Hero")
        await player.close()

        # Straight to the backend without a PROXY header: refused, and said so.
        plain = Silent(b"\x00\x00\x00\x10not a PROXY header")
        await endpoints.connectProtocol(
            endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", backend), plain
        )
        await bounded(plain.lost)
        await child.whenLogged(r"PROXY refused 127\.0\.0\.1:\d+: closed before a valid PROXY")


class ExampleConfigTests(unittest.TestCase):
    async def test_example_is_valid(self):
        """examples/haproxy.cfg passes haproxy -c, with a real certificate in its place."""
        require_haproxy()
        config = deployment(self)
        cert, key = tls.server_paths(config.deployment.tls_dir, "mmo")
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        pem = haproxy.pem_bundle(cert, key, os.path.join(directory, "play.pem"))
        with open(os.path.join(ROOT, "examples", "haproxy.cfg")) as f:
            text = f.read()
        self.assertIn("/etc/mmo/play.example.org.pem", text)
        path = os.path.join(directory, "haproxy.cfg")
        with open(path, "w") as f:
            f.write(text.replace("/etc/mmo/play.example.org.pem", pem))
        out, err, code = await utils.getProcessOutputAndValue(
            haproxy.binary(), ["-c", "-f", path], env=os.environ
        )
        self.assertEqual(code, 0, (out + err).decode(errors="replace"))
