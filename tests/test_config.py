"""
Tests for L{mmo.config}: every class of config error names the file and the
key, and good files read into typed sections with defaults.
"""

import os

from twisted.trial import unittest

from mmo import config
from mmo.config import ConfigError
from tests.support import write_config

GOOD = """
[deployment]
name = "game"
tls_dir = "tls"

[wire]
max_frame_size = 4096
idle_timeout = 30

[processes.mmo]
kind = "mmo"
client = "tcp:7000:interface=127.0.0.1"
"""


class LoadTests(unittest.TestCase):
    def assertConfigError(self, text, key, *fragments):
        """Loading C{text} fails with a message naming the file, C{key} and C{fragments}."""
        path = write_config(self, text)
        error = self.assertRaises(ConfigError, config.load, path)
        message = str(error)
        self.assertTrue(message.startswith(f"{path}: {key}: "), message)
        for fragment in fragments:
            self.assertIn(fragment, message)
        return error

    def test_good_file(self):
        path = write_config(self, GOOD)
        conf = config.load(path)
        self.assertEqual(conf.file, path)
        self.assertEqual(conf.deployment.name, "game")
        # Relative paths are relative to the config file, not the cwd.
        self.assertEqual(
            conf.deployment.tls_dir, os.path.abspath(os.path.join(os.path.dirname(path), "tls"))
        )
        self.assertEqual(conf.wire.max_frame_size, 4096)
        # An integer where a number is expected is accepted as a float.
        self.assertIsInstance(conf.wire.idle_timeout, float)
        self.assertEqual(conf.wire.idle_timeout, 30.0)
        # Defaults fill what the file leaves out.
        self.assertEqual(conf.wire.handshake_timeout, 10.0)
        self.assertEqual(conf.logging.format, "text")
        self.assertIsNone(conf.tls.certificate)
        process = conf.processes["mmo"]
        self.assertEqual(process.name, "mmo")
        self.assertEqual(process.hosts, ["localhost", "127.0.0.1", "::1"])
        self.assertIsNone(process.rpc)

    def test_shipped_standalone_config(self):
        """The config the README runs is valid."""
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        conf = config.load(os.path.join(here, "conf", "standalone.toml"))
        self.assertEqual(conf.process(kind="mmo").name, "mmo")

    def test_missing_file(self):
        path = os.path.join(self.mktemp(), "absent.toml")
        error = self.assertRaises(ConfigError, config.load, path)
        self.assertEqual(str(error), f"{path}: cannot read: No such file or directory")

    def test_not_toml(self):
        path = write_config(self, "[wire\nmax_frame_size = 1\n")
        error = self.assertRaises(ConfigError, config.load, path)
        self.assertIn(f"{path}: not valid TOML", str(error))
        self.assertIn("line 1", str(error))

    def test_unknown_key(self):
        self.assertConfigError(
            GOOD + "\n[logging]\nfromat = 'json'\n",
            "logging.fromat",
            "unknown key",
            "format",
        )

    def test_unknown_section(self):
        self.assertConfigError(GOOD + "\n[wires]\n", "wires", "unknown key")

    def test_unknown_process_key(self):
        self.assertConfigError(
            GOOD.replace('kind = "mmo"', 'kind = "mmo"\nlisten = "tcp:1"'),
            "processes.mmo.listen",
            "unknown key",
        )

    def test_bad_type(self):
        self.assertConfigError(
            GOOD.replace("max_frame_size = 4096", 'max_frame_size = "4k"'),
            "wire.max_frame_size",
            "must be an integer, got a string",
        )

    def test_bool_is_not_a_number(self):
        self.assertConfigError(
            GOOD.replace("idle_timeout = 30", "idle_timeout = true"),
            "wire.idle_timeout",
            "must be a number, got a boolean",
        )

    def test_section_not_a_table(self):
        self.assertConfigError('logging = "json"\n' + GOOD, "logging", "must be a table")

    def test_impossible_value(self):
        self.assertConfigError(
            GOOD.replace("max_frame_size = 4096", "max_frame_size = 3"),
            "wire.max_frame_size",
            "at least 256",
        )

    def test_bad_choice(self):
        self.assertConfigError(
            GOOD + "\n[logging]\nformat = 'xml'\n", "logging.format", "'text'", "'json'"
        )

    def test_bad_endpoint_type(self):
        self.assertConfigError(
            GOOD.replace("tcp:7000:interface=127.0.0.1", "tpc:7000"),
            "processes.mmo.client",
            "not a valid endpoint",
            "tpc",
        )

    def test_bad_endpoint_port(self):
        self.assertConfigError(
            GOOD.replace("tcp:7000:interface=127.0.0.1", "tcp:seven"),
            "processes.mmo.client",
            "not a valid endpoint",
        )

    def test_tls_endpoint_refused(self):
        """TLS comes from [tls]; an ssl: endpoint would wrap it twice."""
        self.assertConfigError(
            GOOD.replace("tcp:7000:interface=127.0.0.1", "ssl:7000"),
            "processes.mmo.client",
            "TLS is added by mmo",
        )

    def test_required_key(self):
        self.assertConfigError(
            GOOD.replace('kind = "mmo"\n', ""), "processes.mmo.kind", "is required"
        )

    def test_bad_process_name(self):
        self.assertConfigError(
            GOOD.replace("[processes.mmo]", "[processes.Zone_1]"),
            "processes.Zone_1",
            "DNS label",
        )

    def test_bad_host(self):
        self.assertConfigError(
            GOOD.replace('kind = "mmo"', 'kind = "mmo"\nhosts = ["localhost", "bad host"]'),
            "processes.mmo.hosts",
            "item 1",
            "'bad host'",
        )

    def test_gateway_needs_client_listener(self):
        self.assertConfigError(
            GOOD.replace('client = "tcp:7000:interface=127.0.0.1"', ""),
            "processes.mmo.client",
            "needs a client listener",
        )

    def test_certificate_without_key(self):
        self.assertConfigError(
            GOOD + '\n[tls]\ncertificate = "chain.pem"\n', "tls.private_key", "together"
        )

    def test_host_named_like_another_process(self):
        self.assertConfigError(
            GOOD
            + '\n[bus]\nbackend = "redis"\n[processes.zone-1]\nkind = "zone"\nhosts = ["mmo"]\n',
            "processes.zone-1.hosts",
            "name of another process",
        )

    def test_no_processes(self):
        self.assertConfigError('[deployment]\nname = "x"\n', "processes", "at least one")


class ProcessChoiceTests(unittest.TestCase):
    TEXT = """
    [bus]
    backend = "redis"
    [processes.zone-1]
    kind = "zone"
    [processes.zone-2]
    kind = "zone"
    [processes.mmo]
    kind = "mmo"
    client = "tcp:0"
    """

    def setUp(self):
        self.conf = config.load(write_config(self, self.TEXT))

    def test_only_one_of_kind(self):
        self.assertEqual(self.conf.process(kind="mmo").name, "mmo")

    def test_by_name(self):
        self.assertEqual(self.conf.process("zone-2", "zone").name, "zone-2")

    def test_ambiguous(self):
        error = self.assertRaises(ConfigError, self.conf.process, None, "zone")
        self.assertIn("--process", str(error))
        self.assertIn("zone-1, zone-2", str(error))
        self.assertIn(self.conf.file, str(error))

    def test_unknown_name(self):
        error = self.assertRaises(ConfigError, self.conf.process, "zone-9")
        self.assertIn("processes.zone-9: no such process", str(error))

    def test_wrong_kind(self):
        error = self.assertRaises(ConfigError, self.conf.process, "zone-1", "mmo")
        self.assertIn("processes.zone-1.kind", str(error))
