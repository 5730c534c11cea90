"""
Real TLS over loopback on the client-facing listener: a good handshake, a
client that does not trust the server's CA, a hostname mismatch and a
plaintext client; and the operator's own certificate chain.
"""

import os

from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.trial import unittest

from mmo import certs, tls
from mmo.client import connect
from mmo.config import ConfigError
from mmo.frontend.listener import ClientListener
from tests.support import STANDALONE, LogCapture, deployment, until


class ClientFacingTLSTests(unittest.TestCase):
    def setUp(self):
        self.config = deployment(self, STANDALONE)
        self.logs = LogCapture(self)
        return self.start(self.config)

    def start(self, config):
        self.service = ClientListener(config, config.processes["mmo"], reactor=reactor)
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.port = self.service.port.getHost().port
        return defer.succeed(None)

    @defer.inlineCallbacks
    def test_good_handshake(self):
        """A client trusting the deployment CA verifies the server and pings."""
        ca = tls.ca_path(self.config.deployment.tls_dir)
        for hostname in ("localhost", "127.0.0.1"):
            client = yield connect(reactor, "127.0.0.1", self.port, ca=ca, hostname=hostname)
            reply = yield client.request("ping")
            self.assertIsInstance(reply["time"], float)
            yield client.close()

    @defer.inlineCallbacks
    def test_wrong_ca_refused(self):
        """A client that trusts another CA refuses the server, which logs why."""
        other = deployment(self, STANDALONE, name="other")
        ca = tls.ca_path(other.deployment.tls_dir)
        yield self.assertFailure(
            connect(reactor, "127.0.0.1", self.port, ca=ca, hostname="localhost"), Exception
        )
        yield until(lambda: self.logs.matching("TLS refused", "127.0.0.1", "unknown ca"))
        self.assertEqual(self.service.factory.connections, set())

    @defer.inlineCallbacks
    def test_hostname_mismatch_refused(self):
        """The certificate is good but not for the name asked: refused."""
        ca = tls.ca_path(self.config.deployment.tls_dir)
        failure = yield self.assertFailure(
            connect(reactor, "127.0.0.1", self.port, ca=ca, hostname="elsewhere.example"),
            Exception,
        )
        self.assertIn("elsewhere.example", str(failure))

    @defer.inlineCallbacks
    def test_plaintext_refused(self):
        """A plaintext client is disconnected, and the reason logged."""
        done = defer.Deferred()

        class Plain(protocol.Protocol):
            def connectionMade(self):
                self.transport.write(b"\x00\x00\x00\x05hello")

            def connectionLost(self, reason):
                done.callback(None)

        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.port), Plain())
        yield done
        yield until(lambda: self.logs.matching("TLS refused", "127.0.0.1", "wrong version number"))


class OperatorCertificateTests(unittest.TestCase):
    """[tls] certificate/private_key replace the generated certificate."""

    @defer.inlineCallbacks
    def test_operator_chain(self):
        other = deployment(self, STANDALONE, name="public")
        ca_key, ca_cert = certs.create_ca("public")
        key, cert = certs.issue(ca_key, ca_cert, "localhost", ["localhost"], usage="server")
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        chain, key_file = os.path.join(directory, "chain.pem"), os.path.join(directory, "k.pem")
        certs.write_certificate(chain, cert)
        with open(chain, "ab") as f:
            f.write(ca_cert.public_bytes(certs.serialization.Encoding.PEM))
        certs.write_private_key(key_file, key)
        ca_file = os.path.join(directory, "ca.pem")
        certs.write_certificate(ca_file, ca_cert)
        config = deployment(
            self,
            STANDALONE,
            extra=f'[tls]\ncertificate = "{chain}"\nprivate_key = "{key_file}"\n',
        )
        service = ClientListener(config, config.processes["mmo"], reactor=reactor)
        service.startService()
        self.addCleanup(service.stopService)
        port = service.port.getHost().port
        client = yield connect(reactor, "127.0.0.1", port, ca=ca_file, hostname="localhost")
        yield client.request("ping")
        yield client.close()
        # The deployment's own CA is not what the listener presents now.
        yield self.assertFailure(
            connect(
                reactor,
                "127.0.0.1",
                port,
                ca=tls.ca_path(other.deployment.tls_dir),
                hostname="localhost",
            ),
            Exception,
        )


class MissingFilesTests(unittest.TestCase):
    def test_missing_certificates(self):
        """No certificates yet: the start fails naming the key and the remedy."""
        config = deployment(self, STANDALONE)
        os.remove(tls.server_paths(config.deployment.tls_dir, "mmo")[0])
        error = self.assertRaises(
            ConfigError, ClientListener, config, config.processes["mmo"], reactor
        )
        message = str(error)
        self.assertIn(f"{config.file}: deployment.tls_dir: cannot read", message)
        self.assertIn("mmo.crt", message)
        self.assertIn("mmo-certs --config", message)

    def test_key_does_not_match(self):
        """A private key of another certificate is refused at start."""
        config = deployment(self, STANDALONE)
        directory = config.deployment.tls_dir
        os.replace(os.path.join(directory, "mmo.client.key"), tls.server_paths(directory, "mmo")[1])
        error = self.assertRaises(
            ConfigError, ClientListener, config, config.processes["mmo"], reactor
        )
        self.assertIn("deployment.tls_dir", str(error))

    def test_port_in_use(self):
        """A port that cannot be bound fails the start with the key."""
        config = deployment(self, STANDALONE)
        first = ClientListener(config, config.processes["mmo"], reactor=reactor)
        first.startService()
        self.addCleanup(first.stopService)
        busy = first.port.getHost().port
        config.processes["mmo"].client = f"tcp:{busy}:interface=127.0.0.1"
        second = ClientListener(config, config.processes["mmo"], reactor=reactor)
        error = self.assertRaises(ConfigError, second.startService)
        self.assertIn("processes.mmo.client: cannot listen", str(error))
