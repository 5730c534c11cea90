"""
The browser demo game (C{clients/demo}) in a real, headless Chromium,
driven by C{playwright-core} from Node (C{clients/demo/test/browser.mjs}),
against real servers: the standalone C{twistd mmo}, and a cluster (login,
a gateway, lobby, chat and two zones on a private redis-server).  The
pages are served by the server itself, on its WebSocket port; Chromium
trusts the deployment's certificates by their public keys
(C{--ignore-certificate-errors-spki-list}, in a fresh profile), as a user
may.  Also: the committed bundle in C{mmo/web/static/} is what the sources
build.

Needs C{node}, C{npm} and Chromium (C{/usr/bin/chromium}, or
C{MMO_CHROMIUM}); without them the tests are skipped with the reason,
except under C{MMO_REQUIRE_BROWSER=1} (set by C{.ci/run}), where they
fail.  C{npm ci} runs in C{clients/demo} once, and again only when its lock
file changed.  C{MMO_DEMO_SCREENSHOT=FILE} saves a screenshot of the demo
(relative to the repository; C{docs/demo.png} is one).
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.trial import unittest

from tests.node import INSTALL_TIMEOUT, ROOT, install, node_tools, require, succeed
from tests.support import spawn_cluster
from tests.test_cluster import SETTINGS
from tests.world_walk import CLUSTER, CLUSTER_WORLD, start_standalone

DEMO = os.path.join(ROOT, "clients", "demo")
STATIC = os.path.join(ROOT, "mmo", "web", "static")
#: Seconds one browser scenario may take.
SCENARIO_TIMEOUT = 90.0


def chromium() -> str:
    """Chromium's binary, or skip (fail under MMO_REQUIRE_BROWSER=1)."""
    path = os.environ.get("MMO_CHROMIUM", "/usr/bin/chromium")
    if not os.access(path, os.X_OK):
        require(f"no Chromium at {path}", "apt-get install chromium, or set MMO_CHROMIUM")
    return path


def spki(certificate: str) -> str:
    """The base64 SHA-256 of a certificate's public key, as Chromium's SPKI list takes it."""
    with open(certificate, "rb") as f:
        key = x509.load_pem_x509_certificate(f.read()).public_key()
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


class DemoTestCase(unittest.TestCase):
    timeout = INSTALL_TIMEOUT + 2 * SCENARIO_TIMEOUT

    async def setUpTools(self) -> str:
        """Node and npm (else skip), the demo's packages installed; the node binary."""
        node, npm = node_tools()
        await install(self, npm, DEMO)
        return node

    async def succeed(self, argv: list[str], timeout: float) -> str:
        return await succeed(self, argv, DEMO, timeout)


class BundleTests(DemoTestCase):
    async def test_committed_bundle(self):
        """The script in mmo/web/static is what clients/demo builds, and it type-checks."""
        node = await self.setUpTools()
        with tempfile.TemporaryDirectory() as out:
            await self.succeed([node, "build.mjs", out], INSTALL_TIMEOUT)
            self.assertEqual(os.listdir(out), ["demo.js"])
            with open(os.path.join(out, "demo.js"), "rb") as built:
                with open(os.path.join(STATIC, "demo.js"), "rb") as committed:
                    self.assertTrue(
                        built.read() == committed.read(),
                        "mmo/web/static/demo.js is not what clients/demo builds: run make demo",
                    )
        await self.succeed([node, "node_modules/typescript/bin/tsc", "--noEmit", "-p", "."], 120)


class BrowserTests(DemoTestCase):
    async def scenario(self, name: str, url: str, certificates: list[str]) -> None:
        node = await self.setUpTools()
        argv = [node, "test/browser.mjs", "--scenario", name, "--url", url]
        argv += ["--spki", ",".join(spki(c) for c in certificates), "--chromium", chromium()]
        if os.environ.get("MMO_DEMO_SCREENSHOT"):
            argv += ["--screenshot", os.path.join(ROOT, os.environ["MMO_DEMO_SCREENSHOT"])]
        output = await self.succeed(argv, SCENARIO_TIMEOUT)
        self.assertIn(f"browser {name}: passed", output)

    async def test_standalone(self):
        """
        Two pages of the standalone server log in and see each other move,
        chat (world and zone channels) and whisper; one loses the network (offline emulation) and
        resumes with every line said meanwhile, in order, once.  A third page
        is remembered (back after a reload without the password), logs out
        and is forgotten.
        """
        chromium()
        servers = await start_standalone(self, browsers=True)
        tls_dir = os.path.join(os.path.dirname(servers.config_file), "certs")
        await self.scenario(
            "standalone",
            f"https://localhost:{servers.browsers}/",
            [os.path.join(tls_dir, "mmo.crt")],
        )

    async def test_cluster(self):
        """
        The page of a cluster's login server logs in over its wss and plays
        on the gateway the ticket names; a player walks across the border
        of two zone processes with no reconnect while another page keeps
        seeing it.
        """
        chromium()
        processes = [
            (name, kind, ("websocket",)) if kind in ("login", "gateway") else (name, kind)
            for name, kind in CLUSTER
        ]
        cluster = await spawn_cluster(self, processes, SETTINGS + CLUSTER_WORLD)
        match = await cluster.children["login"].whenLogged(
            r"login: browsers on secure WebSocket 127\.0\.0\.1:(\d+)"
        )
        tls_dir = cluster.config.deployment.tls_dir
        await self.scenario(
            "cluster",
            f"https://localhost:{match.group(1)}/",
            [os.path.join(tls_dir, f"{name}.crt") for name in ("login", "gateway-1")],
        )
