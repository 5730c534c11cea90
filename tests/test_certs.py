"""
Tests for L{mmo.certs}: the deployment CA, process certificates, the files
they are written to and the C{mmo-certs} command.

The certificates are checked the way their users check them: signatures with
the CA's public key, names with service_identity (what Twisted's TLS client
uses), full chains with cryptography's RFC 5280 verifier and OpenSSL, and a
real mutual-TLS connection over the loopback interface.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import ipaddress
import os
import stat
import sys
import textwrap

import service_identity
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given, settings
from hypothesis import strategies as st
from OpenSSL import SSL
from service_identity.cryptography import (
    verify_certificate_hostname,
    verify_certificate_ip_address,
)
from twisted.internet import defer, protocol, reactor, ssl, utils
from twisted.trial import unittest

import mmo
from mmo import certs, config

CONFIG = """\
[deployment]
name = "test"
tls_dir = "certs"

[processes.mmo]
kind = "mmo"
client = "tcp:0"
hosts = ["localhost", "127.0.0.1", "::1", "game.example.org"]

[processes.zone-1]
kind = "zone"
rpc = "tcp:0"
"""

ZONE_2 = """
[processes.zone-2]
kind = "zone"
rpc = "tcp:0"
hosts = ["zone-2.internal", "10.0.0.2"]
"""

#: Every file C{generate} writes for L{CONFIG}.
FILES = [
    "ca.crt",
    "ca.key",
    "mmo.crt",
    "mmo.key",
    "mmo.client.crt",
    "mmo.client.key",
    "zone-1.crt",
    "zone-1.key",
    "zone-1.client.crt",
    "zone-1.client.key",
    "ticket.key",
    "admin.client.crt",
    "admin.client.key",
    "prometheus.client.crt",
    "prometheus.client.key",
]


@contextlib.contextmanager
def umask(mask):
    """Run the block with the process umask set to C{mask}."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def load_cert(path: str) -> x509.Certificate:
    with open(path, "rb") as f:
        return x509.load_pem_x509_certificate(f.read())


def load_key(path: str):
    with open(path, "rb") as f:
        return serialization.load_pem_private_key(f.read(), password=None)


def public_der(key_or_cert) -> bytes:
    return key_or_cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def extension(cert: x509.Certificate, kind):
    return cert.extensions.get_extension_for_class(kind)


def alt_names(cert: x509.Certificate) -> list:
    return list(extension(cert, x509.SubjectAlternativeName).value)


def common_name(name: x509.Name) -> str:
    return name.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def assert_lifetime(testcase, cert: x509.Certificate, days: int) -> None:
    """Assert that C{cert} expires C{days} days from now (give or take a minute)."""
    left = cert.not_valid_after_utc - now()
    testcase.assertTrue(
        abs(left - datetime.timedelta(days=days)) < datetime.timedelta(minutes=1),
        f"expires in {left}, not {days} days",
    )


class DeploymentMixin:
    """A config file in a temporary directory, and the files of its TLS directory."""

    def write_config(self, text: str = CONFIG) -> str:
        """Write the config file (again); return its path."""
        if not hasattr(self, "base"):
            self.base = os.path.abspath(self.mktemp())
            os.makedirs(self.base)
        path = os.path.join(self.base, "mmo.toml")
        with open(path, "w") as f:
            f.write(textwrap.dedent(text))
        return path

    def load_config(self, text: str = CONFIG) -> config.Config:
        return config.load(self.write_config(text))

    @property
    def tls_dir(self) -> str:
        return os.path.join(self.base, "certs")

    def path(self, name: str) -> str:
        return os.path.join(self.tls_dir, name)

    def contents(self) -> dict[str, bytes]:
        """Every file of the TLS directory, by name."""
        result = {}
        for name in sorted(os.listdir(self.tls_dir)):
            with open(self.path(name), "rb") as f:
                result[name] = f.read()
        return result


class CreateCATests(unittest.TestCase):
    """L{certs.create_ca} makes a self-signed CA fit for signing process certificates."""

    def setUp(self):
        self.key, self.cert = certs.create_ca("test")

    def test_selfSigned(self):
        """The CA is its own issuer, and its signature verifies with its own key."""
        self.assertEqual(self.cert.issuer, self.cert.subject)
        self.assertEqual(common_name(self.cert.subject), "test mmo CA")
        self.cert.verify_directly_issued_by(self.cert)

    def test_key(self):
        """The key is ECDSA P-256, it is the certificate's key, and it signs with SHA-256."""
        self.assertIsInstance(self.key, ec.EllipticCurvePrivateKey)
        self.assertIsInstance(self.key.curve, ec.SECP256R1)
        self.assertEqual(public_der(self.key), public_der(self.cert))
        self.assertIsInstance(self.cert.signature_hash_algorithm, hashes.SHA256)

    def test_extensions(self):
        """A critical CA:TRUE with path length 0, certificate and CRL signing only, and a SKI."""
        constraints = extension(self.cert, x509.BasicConstraints)
        self.assertTrue(constraints.critical)
        self.assertTrue(constraints.value.ca)
        self.assertEqual(constraints.value.path_length, 0)
        usage = extension(self.cert, x509.KeyUsage)
        self.assertTrue(usage.critical)
        self.assertTrue(usage.value.key_cert_sign)
        self.assertTrue(usage.value.crl_sign)
        self.assertFalse(usage.value.digital_signature)
        self.assertEqual(
            extension(self.cert, x509.SubjectKeyIdentifier).value,
            x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()),
        )

    def test_validity(self):
        """Valid from a few minutes ago, for 3650 days by default or as asked."""
        start = self.cert.not_valid_before_utc
        self.assertTrue(now() - datetime.timedelta(minutes=6) < start)
        self.assertTrue(start < now() - datetime.timedelta(minutes=4))
        assert_lifetime(self, self.cert, 3650)
        _, short = certs.create_ca("test", days=30)
        assert_lifetime(self, short, 30)

    def test_randomSerials(self):
        """Each CA has a new, random serial number."""
        _, other = certs.create_ca("test")
        self.assertNotEqual(self.cert.serial_number, other.serial_number)
        self.assertGreater(self.cert.serial_number.bit_length(), 64)


class IssueTests(unittest.TestCase):
    """L{certs.issue} makes server and client certificates signed by the CA."""

    def setUp(self):
        self.ca_key, self.ca_cert = certs.create_ca("test")

    def issue(self, usage="server", hosts=("localhost", "127.0.0.1", "::1", "game.example.org")):
        return certs.issue(self.ca_key, self.ca_cert, "mmo", list(hosts), usage=usage)

    def assertIssuedByCA(self, cert):
        cert.verify_directly_issued_by(self.ca_cert)
        # The same, spelt out: the CA's public key verifies the signature.
        self.ca_cert.public_key().verify(
            cert.signature,
            cert.tbs_certificate_bytes,
            ec.ECDSA(cert.signature_hash_algorithm),
        )
        self.assertEqual(
            extension(cert, x509.AuthorityKeyIdentifier).value.key_identifier,
            extension(self.ca_cert, x509.SubjectKeyIdentifier).value.digest,
        )

    def test_server(self):
        """A server certificate names the process and its hosts, for serverAuth only."""
        key, cert = self.issue()
        self.assertIssuedByCA(cert)
        self.assertEqual(public_der(key), public_der(cert))
        self.assertIsInstance(key.curve, ec.SECP256R1)
        self.assertEqual(common_name(cert.subject), "mmo")
        self.assertEqual(cert.issuer, self.ca_cert.subject)
        self.assertEqual(
            alt_names(cert),
            [
                x509.DNSName("mmo"),
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.IPAddress(ipaddress.ip_address("::1")),
                x509.DNSName("game.example.org"),
            ],
        )
        self.assertEqual(
            list(extension(cert, x509.ExtendedKeyUsage).value), [ExtendedKeyUsageOID.SERVER_AUTH]
        )

    def test_client(self):
        """A client certificate names the process only, for clientAuth only."""
        key, cert = self.issue("client")
        self.assertIssuedByCA(cert)
        self.assertEqual(public_der(key), public_der(cert))
        self.assertEqual(common_name(cert.subject), "mmo")
        self.assertEqual(alt_names(cert), [x509.DNSName("mmo")])
        self.assertEqual(
            list(extension(cert, x509.ExtendedKeyUsage).value), [ExtendedKeyUsageOID.CLIENT_AUTH]
        )

    def test_leafExtensions(self):
        """Both kinds: not a CA, digital signature only (critical), and a SKI of their own."""
        for usage in ("server", "client"):
            key, cert = self.issue(usage)
            constraints = extension(cert, x509.BasicConstraints)
            self.assertFalse(constraints.value.ca)
            usage_ext = extension(cert, x509.KeyUsage)
            self.assertTrue(usage_ext.critical)
            self.assertTrue(usage_ext.value.digital_signature)
            self.assertFalse(usage_ext.value.key_cert_sign)
            self.assertEqual(
                extension(cert, x509.SubjectKeyIdentifier).value,
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
            )
            self.assertIsInstance(cert.signature_hash_algorithm, hashes.SHA256)

    def test_validity(self):
        """825 days from now by default, valid from a few minutes ago."""
        _, cert = self.issue()
        assert_lifetime(self, cert, 825)
        self.assertTrue(cert.not_valid_before_utc < now() - datetime.timedelta(minutes=4))
        _, cert = certs.issue(self.ca_key, self.ca_cert, "mmo", days=7)
        assert_lifetime(self, cert, 7)

    def test_notBeyondCA(self):
        """A certificate never outlives the CA that signed it."""
        ca_key, ca_cert = certs.create_ca("short", days=10)
        _, cert = certs.issue(ca_key, ca_cert, "mmo", days=825)
        self.assertEqual(cert.not_valid_after_utc, ca_cert.not_valid_after_utc)

    def test_newKeys(self):
        """Every certificate gets a new key and a new random serial."""
        key1, cert1 = self.issue()
        key2, cert2 = self.issue()
        self.assertNotEqual(public_der(key1), public_der(key2))
        self.assertNotEqual(cert1.serial_number, cert2.serial_number)

    def test_duplicateHosts(self):
        """The name and hosts appear once each, whatever their case or spelling."""
        _, cert = self.issue(hosts=["MMO", "localhost", "LocalHost", "::1", "0:0::1", "127.0.0.1"])
        self.assertEqual(
            alt_names(cert),
            [
                x509.DNSName("mmo"),
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("::1")),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            ],
        )

    @settings(max_examples=40, deadline=None)
    @given(
        st.lists(
            st.one_of(
                st.sampled_from(["localhost", "game.example.org", "zone-1", "mmo"]),
                st.ip_addresses().map(str),
            ),
            max_size=8,
        )
    )
    def test_altNamesProperty(self, hosts):
        """For any hosts: the name first, then each distinct host once, each of the right type."""
        _, cert = certs.issue(self.ca_key, self.ca_cert, "mmo", hosts)
        names = alt_names(cert)
        expected = [x509.DNSName("mmo")]
        for host in hosts:
            try:
                entry = x509.IPAddress(ipaddress.ip_address(host))
            except ValueError:
                entry = x509.DNSName(host)
            if entry not in expected:
                expected.append(entry)
        self.assertEqual(names, expected)

    def test_badUsage(self):
        """A usage other than server or client is refused."""
        self.assertRaises(ValueError, self.issue, "both")

    def test_expiredCA(self):
        """An expired CA cannot issue."""
        ca_key, ca_cert = expired_ca()
        self.assertRaises(ValueError, certs.issue, ca_key, ca_cert, "mmo")


def expired_ca():
    """A CA certificate (and key) that expired yesterday."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "old mmo CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now() - datetime.timedelta(days=30))
        .not_valid_after(now() - datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


class WriteTests(unittest.TestCase):
    """L{certs.write_private_key} and L{certs.write_certificate}."""

    def setUp(self):
        self.directory = self.mktemp()
        os.makedirs(self.directory)
        self.key, self.cert = certs.create_ca("test")

    def test_privateKey(self):
        """An unencrypted PKCS#8 PEM key, mode 0600."""
        path = os.path.join(self.directory, "a.key")
        certs.write_private_key(path, self.key)
        with open(path, "rb") as f:
            data = f.read()
        self.assertTrue(data.startswith(b"-----BEGIN PRIVATE KEY-----\n"))
        self.assertEqual(public_der(load_key(path)), public_der(self.key))
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)

    def test_privateKeyModeWhateverUmask(self):
        """The key is 0600 even with an umask of 0, and replaces a file readable by all."""
        path = os.path.join(self.directory, "a.key")
        with open(path, "w") as f:
            f.write("old")
        os.chmod(path, 0o644)
        with umask(0):
            certs.write_private_key(path, self.key)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertEqual(public_der(load_key(path)), public_der(self.key))

    def test_privateKeyCreatedPrivate(self):
        """
        The key file is private from the moment it exists: created 0600, not
        made so afterwards (here nothing else could narrow it: the umask is 0
        and the later C{fchmod} does nothing).
        """
        path = os.path.join(self.directory, "a.key")
        self.patch(os, "fchmod", lambda fd, mode: None)
        with umask(0):
            certs.write_private_key(path, self.key)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)

    def test_privateKeyExactMode(self):
        """A restrictive umask does not leave the key unwritable by its owner: it is 0600."""
        path = os.path.join(self.directory, "a.key")
        with umask(0o277):
            certs.write_private_key(path, self.key)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)

    def test_certificate(self):
        """A PEM certificate, readable by all."""
        path = os.path.join(self.directory, "a.crt")
        with umask(0o022):
            certs.write_certificate(path, self.cert)
        self.assertEqual(load_cert(path), self.cert)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o644)

    def test_noTemporaryFilesLeft(self):
        """Replacing a file leaves only that file behind."""
        path = os.path.join(self.directory, "a.key")
        certs.write_private_key(path, self.key)
        certs.write_private_key(path, self.key)
        self.assertEqual(os.listdir(self.directory), ["a.key"])

    def test_failedWriteKeepsOldFile(self):
        """If the new content cannot be written, the old file is untouched and no debris stays."""
        path = os.path.join(self.directory, "a.key")
        with open(path, "wb") as f:
            f.write(b"old")

        def fail(fd):
            raise OSError(28, "No space left on device")

        self.patch(os, "fsync", fail)
        self.assertRaises(OSError, certs.write_private_key, path, self.key)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"old")
        self.assertEqual(os.listdir(self.directory), ["a.key"])


class GenerateTests(DeploymentMixin, unittest.TestCase):
    """L{certs.generate} writes a deployment's CA and process certificates."""

    def test_layout(self):
        """The CA and four files per process, in the config's tls_dir; it returns their paths."""
        conf = self.load_config()
        written = certs.generate(conf)
        self.assertEqual(sorted(written), sorted(self.path(name) for name in FILES))
        self.assertEqual(sorted(os.listdir(self.tls_dir)), sorted(FILES))
        self.assertEqual(stat.S_IMODE(os.stat(self.tls_dir).st_mode), 0o700)

    def test_keyModes(self):
        """Every private key is mode 0600."""
        certs.generate(self.load_config())
        for name in FILES:
            if name.endswith(".key"):
                self.assertEqual(stat.S_IMODE(os.stat(self.path(name)).st_mode), 0o600, name)

    def test_certificatesMatchKeysAndCA(self):
        """Each certificate is its key's and was issued by the CA; the CA is a CA."""
        certs.generate(self.load_config())
        ca = load_cert(self.path("ca.crt"))
        self.assertTrue(extension(ca, x509.BasicConstraints).value.ca)
        self.assertEqual(public_der(load_key(self.path("ca.key"))), public_der(ca))
        self.assertEqual(common_name(ca.subject), "test mmo CA")
        for stem in ("mmo", "mmo.client", "zone-1", "zone-1.client"):
            cert = load_cert(self.path(stem + ".crt"))
            cert.verify_directly_issued_by(ca)
            self.assertEqual(public_der(load_key(self.path(stem + ".key"))), public_der(cert))
            self.assertFalse(extension(cert, x509.BasicConstraints).value.ca)

    def test_names(self):
        """Server certificates carry the config's hosts (or their default); clients the name."""
        certs.generate(self.load_config())
        self.assertEqual(
            alt_names(load_cert(self.path("mmo.crt"))),
            [
                x509.DNSName("mmo"),
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.IPAddress(ipaddress.ip_address("::1")),
                x509.DNSName("game.example.org"),
            ],
        )
        self.assertEqual(
            alt_names(load_cert(self.path("zone-1.crt"))),
            [
                x509.DNSName("zone-1"),
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.IPAddress(ipaddress.ip_address("::1")),
            ],
        )
        for name in ("mmo", "zone-1"):
            cert = load_cert(self.path(f"{name}.client.crt"))
            self.assertEqual(alt_names(cert), [x509.DNSName(name)])
            self.assertEqual(
                list(extension(cert, x509.ExtendedKeyUsage).value),
                [ExtendedKeyUsageOID.CLIENT_AUTH],
            )
            cert = load_cert(self.path(f"{name}.crt"))
            self.assertEqual(
                list(extension(cert, x509.ExtendedKeyUsage).value),
                [ExtendedKeyUsageOID.SERVER_AUTH],
            )

    def test_serviceIdentity(self):
        """service_identity accepts the server certificate for its names only."""
        certs.generate(self.load_config())
        cert = load_cert(self.path("mmo.crt"))
        for host in ("mmo", "localhost", "game.example.org"):
            verify_certificate_hostname(cert, host)
        for address in ("127.0.0.1", "::1"):
            verify_certificate_ip_address(cert, address)
        self.assertRaises(
            service_identity.VerificationError,
            verify_certificate_hostname,
            cert,
            "other.example",
        )
        self.assertRaises(
            service_identity.VerificationError, verify_certificate_ip_address, cert, "10.0.0.1"
        )
        client = load_cert(self.path("mmo.client.crt"))
        verify_certificate_hostname(client, "mmo")
        self.assertRaises(
            service_identity.VerificationError, verify_certificate_hostname, client, "localhost"
        )

    def test_chainVerification(self):
        """cryptography's RFC 5280 verifier accepts each certificate for its purpose only."""
        certs.generate(self.load_config())
        store = verification.Store([load_cert(self.path("ca.crt"))])
        builder = verification.PolicyBuilder().store(store)
        server = load_cert(self.path("mmo.crt"))
        client = load_cert(self.path("zone-1.client.crt"))
        for name in (
            verification.DNSName("game.example.org"),
            verification.IPAddress(ipaddress.ip_address("::1")),
        ):
            builder.build_server_verifier(name).verify(server, [])
        verified = builder.build_client_verifier().verify(client, [])
        self.assertEqual(verified.subjects, [x509.DNSName("zone-1")])
        self.assertRaises(
            verification.VerificationError,
            builder.build_server_verifier(verification.DNSName("other.example")).verify,
            server,
            [],
        )
        self.assertRaises(
            verification.VerificationError, builder.build_client_verifier().verify, server, []
        )

    def test_otherDirectory(self):
        """An explicit directory is used instead of the config's, and created."""
        directory = os.path.join(os.path.abspath(self.mktemp()), "deep", "tls")
        written = certs.generate(self.load_config(), directory)
        self.assertEqual(sorted(os.listdir(directory)), sorted(FILES))
        self.assertEqual(sorted(written), sorted(os.path.join(directory, f) for f in FILES))
        self.assertFalse(os.path.exists(self.tls_dir))

    def test_days(self):
        """C{days} sets the validity of process certificates, C{ca_days} that of the CA."""
        certs.generate(self.load_config(), days=30, ca_days=60)
        for name, days in (("mmo.crt", 30), ("zone-1.client.crt", 30), ("ca.crt", 60)):
            assert_lifetime(self, load_cert(self.path(name)), days)

    def test_progress(self):
        """C{out} gets one line per file written."""
        out = io.StringIO()
        written = certs.generate(self.load_config(), out=out)
        lines = out.getvalue().splitlines()
        self.assertEqual(len(lines), len(FILES))
        for line, path in zip(lines, written, strict=True):
            self.assertIn(path, line)

    def test_refusesToReplace(self):
        """A second run changes nothing and says which files are in the way, and what to do."""
        conf = self.load_config()
        certs.generate(conf)
        before = self.contents()
        error = self.assertRaises(certs.CertsError, certs.generate, conf)
        self.assertEqual(self.contents(), before)
        message = str(error)
        for name in FILES:
            self.assertIn(self.path(name), message)
        self.assertIn(
            "use --force to replace everything, or --renew to reissue the process "
            "certificates with the existing CA",
            message,
        )

    def test_refusesIfAnyExists(self):
        """A single existing file is enough to refuse; nothing else is created."""
        conf = self.load_config()
        os.makedirs(self.tls_dir)
        with open(self.path("zone-1.client.key"), "w") as f:
            f.write("mine")
        error = self.assertRaises(certs.CertsError, certs.generate, conf)
        self.assertIn(self.path("zone-1.client.key"), str(error))
        self.assertNotIn(self.path("ca.crt"), str(error))
        self.assertEqual(self.contents(), {"zone-1.client.key": b"mine"})

    def test_force(self):
        """C{force} makes a new CA, and certificates the old CA does not verify."""
        conf = self.load_config()
        certs.generate(conf)
        before = self.contents()
        old_ca = load_cert(self.path("ca.crt"))
        written = certs.generate(conf, force=True)
        self.assertEqual(sorted(written), sorted(self.path(name) for name in FILES))
        after = self.contents()
        for name in FILES:
            self.assertNotEqual(after[name], before[name], name)
        new_ca = load_cert(self.path("ca.crt"))
        self.assertNotEqual(public_der(new_ca), public_der(old_ca))
        leaf = load_cert(self.path("mmo.crt"))
        leaf.verify_directly_issued_by(new_ca)
        self.assertRaises(InvalidSignature, leaf.verify_directly_issued_by, old_ca)

    def test_forceFixesKeyMode(self):
        """Replacing a key that someone made readable by all makes it 0600 again."""
        conf = self.load_config()
        certs.generate(conf)
        os.chmod(self.path("mmo.key"), 0o644)
        certs.generate(conf, force=True)
        self.assertEqual(stat.S_IMODE(os.stat(self.path("mmo.key")).st_mode), 0o600)

    def test_renew(self):
        """C{renew} keeps the CA, reissues every process certificate with new keys, and
        issues for processes new in the config."""
        certs.generate(self.load_config())
        before = self.contents()
        conf = self.load_config(CONFIG + ZONE_2)
        written = certs.generate(conf, renew=True)
        after = self.contents()
        self.assertEqual(after["ca.crt"], before["ca.crt"])
        self.assertEqual(after["ca.key"], before["ca.key"])
        new_files = [f"zone-2{suffix}" for suffix in (".crt", ".key", ".client.crt", ".client.key")]
        leaves = [name for name in FILES if not name.startswith(("ca.", "ticket."))] + new_files
        self.assertEqual(sorted(written), sorted(self.path(name) for name in leaves))
        # Tickets in flight stay valid: the ticket key is kept.
        self.assertEqual(after["ticket.key"], before["ticket.key"])
        self.assertEqual(sorted(after), sorted(FILES + new_files))
        for name in leaves:
            if name in before:
                self.assertNotEqual(after[name], before[name], name)
        ca = load_cert(self.path("ca.crt"))
        for stem in ("mmo", "zone-1", "zone-2", "zone-2.client"):
            cert = load_cert(self.path(stem + ".crt"))
            cert.verify_directly_issued_by(ca)
            self.assertEqual(public_der(load_key(self.path(stem + ".key"))), public_der(cert))
        self.assertEqual(
            alt_names(load_cert(self.path("zone-2.crt"))),
            [
                x509.DNSName("zone-2"),
                x509.DNSName("zone-2.internal"),
                x509.IPAddress(ipaddress.ip_address("10.0.0.2")),
            ],
        )

    def test_renewLeavesRemovedProcesses(self):
        """Files of a process no longer in the config are left alone."""
        certs.generate(self.load_config(CONFIG + ZONE_2))
        before = self.contents()
        certs.generate(self.load_config(), renew=True)
        after = self.contents()
        self.assertEqual(after["zone-2.key"], before["zone-2.key"])
        self.assertNotEqual(after["zone-1.key"], before["zone-1.key"])

    def test_renewWithoutCA(self):
        """C{renew} with no CA fails, naming the missing file, and writes nothing."""
        error = self.assertRaises(certs.CertsError, certs.generate, self.load_config(), renew=True)
        self.assertIn(self.path("ca.crt"), str(error))
        self.assertIn("No such file", str(error))
        self.assertFalse(os.path.exists(self.tls_dir))

    def test_renewWithoutCAKey(self):
        """C{renew} with the CA certificate but not its key fails, naming the key."""
        conf = self.load_config()
        certs.generate(conf)
        os.unlink(self.path("ca.key"))
        before = self.contents()
        error = self.assertRaises(certs.CertsError, certs.generate, conf, renew=True)
        self.assertIn(self.path("ca.key"), str(error))
        self.assertEqual(self.contents(), before)

    def test_renewUnreadableCA(self):
        """A CA certificate that is not PEM is an error naming it."""
        conf = self.load_config()
        certs.generate(conf)
        with open(self.path("ca.crt"), "w") as f:
            f.write("not a certificate")
        error = self.assertRaises(certs.CertsError, certs.generate, conf, renew=True)
        self.assertIn(self.path("ca.crt"), str(error))

    def test_renewMismatchedKey(self):
        """A CA key that is not the CA certificate's key is an error."""
        conf = self.load_config()
        certs.generate(conf)
        certs.write_private_key(self.path("ca.key"), certs.create_ca("other")[0])
        before = self.contents()
        error = self.assertRaises(certs.CertsError, certs.generate, conf, renew=True)
        self.assertIn("does not belong", str(error))
        self.assertEqual(self.contents(), before)

    def test_renewEncryptedKey(self):
        """An encrypted CA key is an error that says so."""
        conf = self.load_config()
        certs.generate(conf)
        key = load_key(self.path("ca.key"))
        with open(self.path("ca.key"), "wb") as f:
            f.write(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.BestAvailableEncryption(b"secret"),
                )
            )
        error = self.assertRaises(certs.CertsError, certs.generate, conf, renew=True)
        self.assertIn("encrypted", str(error))

    def test_renewNotACA(self):
        """A process certificate in place of the CA's is refused."""
        conf = self.load_config()
        certs.generate(conf)
        os.replace(self.path("mmo.crt"), self.path("ca.crt"))
        os.replace(self.path("mmo.key"), self.path("ca.key"))
        error = self.assertRaises(certs.CertsError, certs.generate, conf, renew=True)
        self.assertIn("not a CA", str(error))

    def test_renewExpiredCA(self):
        """An expired CA is refused, with the advice to make a new one."""
        conf = self.load_config()
        certs.generate(conf)
        key, cert = expired_ca()
        certs.write_private_key(self.path("ca.key"), key)
        certs.write_certificate(self.path("ca.crt"), cert)
        error = self.assertRaises(certs.CertsError, certs.generate, conf, renew=True)
        self.assertIn("expired", str(error))
        self.assertIn("--force", str(error))

    def test_forceAndRenew(self):
        """C{force} and C{renew} together are refused."""
        self.assertRaises(
            certs.CertsError, certs.generate, self.load_config(), force=True, renew=True
        )
        self.assertFalse(os.path.exists(self.tls_dir))

    def test_reservedName(self):
        """A process called 'ca' would overwrite the CA; it is refused."""
        conf = self.load_config(CONFIG + '[processes.ca]\nkind = "zone"\n')
        error = self.assertRaises(certs.CertsError, certs.generate, conf)
        self.assertIn("processes.ca", str(error))
        self.assertFalse(os.path.exists(self.tls_dir))

    def test_allOrNothing(self):
        """If writing fails part way, every existing file is left as it was, with no debris."""
        conf = self.load_config()
        certs.generate(conf)
        before = self.contents()
        calls = []
        stage = certs._stage

        def failing_stage(*args):
            calls.append(args)
            if len(calls) == 5:
                raise OSError(28, "No space left on device")
            return stage(*args)

        self.patch(certs, "_stage", failing_stage)
        error = self.assertRaises(certs.CertsError, certs.generate, conf, force=True)
        self.assertIn("No space left on device", str(error))
        self.assertEqual(self.contents(), before)

    def test_unwritableDirectory(self):
        """A directory that cannot be made is a L{certs.CertsError} naming it."""
        blocker = os.path.abspath(self.mktemp())
        with open(blocker, "w") as f:
            f.write("a file, not a directory")
        error = self.assertRaises(
            certs.CertsError, certs.generate, self.load_config(), os.path.join(blocker, "tls")
        )
        self.assertIn(blocker, str(error))


class _Server(protocol.Protocol):
    """Echo the first data, recording the common name of the client's certificate."""

    def dataReceived(self, data):
        peer = self.transport.getPeerCertificate()
        self.factory.peers.append(peer.get_subject().commonName)
        self.transport.write(data)

    def connectionLost(self, reason):
        self.factory.lost.callback(None)


class _Client(protocol.Protocol):
    """Send a ping and hang up on the answer."""

    def connectionMade(self):
        self.transport.write(b"ping")

    def dataReceived(self, data):
        self.factory.received.append(data)
        self.transport.loseConnection()

    def connectionLost(self, reason):
        self.factory.lost.callback(None)


class _ClientFactory(protocol.ClientFactory):
    protocol = _Client

    def clientConnectionFailed(self, connector, reason):
        self.lost.errback(reason)


class MutualTLSTests(DeploymentMixin, unittest.TestCase):
    """
    The generated files work for mutual TLS between processes, as OpenSSL
    (through Twisted) sees them, over a real loopback connection.
    """

    timeout = 30

    def setUp(self):
        certs.generate(self.load_config())

    def read(self, *names: str) -> bytes:
        data = b""
        for name in names:
            with open(self.path(name), "rb") as f:
                data += f.read()
        return data

    def exchange(self, server: str, client: str, client_ca: str = "ca.crt"):
        """
        Process C{server} listens; a client presenting C{client}'s
        certificate and trusting C{client_ca} connects to it as
        C{server} and sends a ping.

        @return: A L{Deferred} firing, once both sides have closed, with
            what the client received and the names the server saw.
        """
        authority = ssl.Certificate.loadPEM(self.read("ca.crt"))
        server_options = ssl.PrivateCertificate.loadPEM(
            self.read(f"{server}.crt", f"{server}.key")
        ).options(authority)
        client_options = ssl.optionsForClientTLS(
            server,
            trustRoot=ssl.Certificate.loadPEM(self.read(client_ca)),
            clientCertificate=ssl.PrivateCertificate.loadPEM(
                self.read(f"{client}.crt", f"{client}.key")
            ),
        )
        server_factory = protocol.Factory.forProtocol(_Server)
        server_factory.peers = []
        server_factory.lost = defer.Deferred()
        client_factory = _ClientFactory()
        client_factory.received = []
        client_factory.lost = defer.Deferred()
        port = reactor.listenSSL(0, server_factory, server_options, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        reactor.connectSSL("127.0.0.1", port.getHost().port, client_factory, client_options)
        done = defer.gatherResults([server_factory.lost, client_factory.lost])
        done.addCallback(lambda _: (b"".join(client_factory.received), server_factory.peers))
        return done

    @defer.inlineCallbacks
    def test_mutualTLS(self):
        """A process's client certificate is accepted by another process's server."""
        received, peers = yield self.exchange("mmo", "zone-1.client")
        self.assertEqual(received, b"ping")
        self.assertEqual(peers, ["zone-1"])

    @defer.inlineCallbacks
    def test_serverCertificateIsNoClientCertificate(self):
        """A server certificate (serverAuth only) is refused as a client certificate."""
        received, peers = yield self.exchange("mmo", "zone-1")
        self.assertEqual((received, peers), (b"", []))

    @defer.inlineCallbacks
    def test_otherCA(self):
        """After C{force}, a client still trusting the old CA refuses the server."""
        with open(self.path("ca.crt"), "rb") as f:
            old_ca = f.read()
        certs.generate(self.load_config(), force=True)
        with open(os.path.join(self.base, "old-ca.crt"), "wb") as f:
            f.write(old_ca)
        received, peers = yield self.exchange("mmo", "zone-1.client", "../old-ca.crt")
        self.assertEqual((received, peers), (b"", []))

    def test_pyOpenSSLLoadsKeys(self):
        """The key files load into OpenSSL contexts with their certificates."""
        for stem in ("ca", "mmo", "mmo.client"):
            context = SSL.Context(SSL.TLS_METHOD)
            context.use_certificate_file(self.path(f"{stem}.crt"))
            context.use_privatekey_file(self.path(f"{stem}.key"))
            context.check_privatekey()


class MainTests(DeploymentMixin, unittest.TestCase):
    """The C{mmo-certs} command."""

    def setUp(self):
        self.stdout = io.StringIO()
        self.stderr = io.StringIO()
        self.patch(sys, "stdout", self.stdout)
        self.patch(sys, "stderr", self.stderr)

    def fail_main(self, *args: str) -> SystemExit:
        """Run C{main}, which must exit; return the L{SystemExit}."""
        return self.assertRaises(SystemExit, certs.main, list(args))

    def test_generate(self):
        """It writes the files, lists them, and says where the CA is and how to check."""
        path = self.write_config()
        self.assertEqual(certs.main(["--config", path]), 0)
        self.assertEqual(sorted(os.listdir(self.tls_dir)), sorted(FILES))
        output = self.stdout.getvalue()
        for name in FILES:
            self.assertIn(self.path(name), output)
        self.assertIn(f"openssl s_client -connect HOST:PORT -CAfile {self.path('ca.crt')}", output)
        self.assertEqual(self.stderr.getvalue(), "")

    def test_options(self):
        """--dir, --days and --ca-days are passed on."""
        path = self.write_config()
        directory = os.path.abspath(self.mktemp())
        certs.main(["--config", path, "--dir", directory, "--days", "10", "--ca-days", "20"])
        self.assertEqual(sorted(os.listdir(directory)), sorted(FILES))
        for name, days in (("mmo.crt", 10), ("ca.crt", 20)):
            cert = load_cert(os.path.join(directory, name))
            assert_lifetime(self, cert, days)
        self.assertIn(os.path.join(directory, "ca.crt"), self.stdout.getvalue())

    def test_existing(self):
        """A second run exits 1 with the advice, and changes nothing."""
        path = self.write_config()
        certs.main(["--config", path])
        before = self.contents()
        self.assertEqual(self.fail_main("--config", path).code, 1)
        error = self.stderr.getvalue()
        self.assertTrue(error.startswith("mmo-certs: "), error)
        self.assertIn("use --force", error)
        self.assertNotIn("Traceback", error)
        self.assertEqual(self.contents(), before)

    def test_forceAndRenew(self):
        """--force replaces the CA; --renew keeps it."""
        path = self.write_config()
        certs.main(["--config", path])
        first = self.contents()
        certs.main(["--config", path, "--renew"])
        second = self.contents()
        self.assertEqual(second["ca.crt"], first["ca.crt"])
        self.assertNotEqual(second["mmo.crt"], first["mmo.crt"])
        certs.main(["--config", path, "--force"])
        self.assertNotEqual(self.contents()["ca.crt"], first["ca.crt"])

    def test_brokenConfig(self):
        """A wrong config exits 1 with the file and key, and no traceback."""
        path = self.write_config(CONFIG.replace('kind = "zone"', 'kind = "zoen"'))
        self.assertEqual(self.fail_main("--config", path).code, 1)
        error = self.stderr.getvalue()
        self.assertTrue(error.startswith(f"mmo-certs: {path}: processes.zone-1.kind: "), error)
        self.assertNotIn("Traceback", error)
        self.assertFalse(os.path.exists(self.tls_dir))

    def test_missingConfig(self):
        """A config file that is not there exits 1, naming it."""
        path = os.path.abspath(self.mktemp())
        self.assertEqual(self.fail_main("--config", path).code, 1)
        self.assertIn(f"mmo-certs: {path}: cannot read", self.stderr.getvalue())

    def test_badArguments(self):
        """Missing --config, both --force and --renew, or --ca-days with --renew: usage errors."""
        path = self.write_config()
        for args in (
            [],
            ["--config", path, "--force", "--renew"],
            ["--config", path, "--renew", "--ca-days", "10"],
            ["--config", path, "--days", "0"],
        ):
            self.assertEqual(self.fail_main(*args).code, 2, args)
        self.assertFalse(os.path.exists(self.tls_dir))

    def test_subprocess(self):
        """Run as a program, a wrong config exits 1 with file and key on stderr, no traceback."""
        path = self.write_config(CONFIG.replace('client = "tcp:0"', 'client = "ssl:443"'))
        root = os.path.dirname(os.path.dirname(os.path.abspath(mmo.__file__)))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        result = utils.getProcessOutputAndValue(
            sys.executable, ["-m", "mmo.certs", "--config", path], env=env, path=self.base
        )

        def check(result):
            _, err, code = result
            err = err.decode()
            self.assertEqual(code, 1, err)
            self.assertTrue(err.startswith(f"mmo-certs: {path}: processes.mmo.client: "), err)
            self.assertNotIn("Traceback", err)
            self.assertFalse(os.path.exists(self.tls_dir))

        return result.addCallback(check)


#: L{CONFIG} with a manager that runs the deployment's Redis.
LOCAL_REDIS = (
    CONFIG
    + """
[redis]
host = "127.0.0.1"

[processes.manager]
kind = "manager"
redis_server = true
"""
)


class LocalRedisTests(DeploymentMixin, unittest.TestCase):
    """The Redis a manager runs: its certificate and its generated password."""

    def test_files(self):
        """A server certificate for [redis] host from the CA, a key and a password, 0600."""
        with umask(0o022):
            certs.generate(self.load_config(LOCAL_REDIS))
        cert = load_cert(self.path("redis.crt"))
        cert.verify_directly_issued_by(load_cert(self.path("ca.crt")))
        self.assertEqual(public_der(load_key(self.path("redis.key"))), public_der(cert))
        self.assertIn(x509.IPAddress(ipaddress.ip_address("127.0.0.1")), alt_names(cert))
        for name in ("redis.key", "redis.password"):
            self.assertEqual(stat.S_IMODE(os.stat(self.path(name)).st_mode), 0o600, name)
        password = self.contents()["redis.password"].strip()
        self.assertGreaterEqual(len(password), 32)

    def test_only_with_a_local_redis(self):
        certs.generate(self.load_config())
        self.assertNotIn("redis.password", self.contents())

    def test_renew_keeps_password(self):
        """A renewal reissues the certificate but keeps the password; an older set gets one."""
        certs.generate(self.load_config())
        certs.generate(self.load_config(LOCAL_REDIS), renew=True)
        before = self.contents()
        self.assertIn("redis.password", before)
        certs.generate(self.load_config(LOCAL_REDIS), renew=True)
        after = self.contents()
        self.assertEqual(after["redis.password"], before["redis.password"])
        self.assertNotEqual(after["redis.crt"], before["redis.crt"])

    def test_name_reserved(self):
        text = LOCAL_REDIS + '\n[processes.redis]\nkind = "zone"\nrpc = "tcp:0"\n'
        error = self.assertRaises(certs.CertsError, certs.generate, self.load_config(text))
        self.assertIn("processes.redis: the name 'redis' is reserved", str(error))
