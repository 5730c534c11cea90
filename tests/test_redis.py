"""
Tests of L{mmo.redis} on their own: the password, the TLS trust, what the
endpoint remembers of failures and how it follows a failover.  The store's
and the bus's tests connect through it to real servers.
"""

from __future__ import annotations

import os
import stat

from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest

from mmo import certs, config
from mmo.redis import (
    LocalRedisFiles,
    RedisConnectError,
    RedisEndpoint,
    local_redis,
    read_password,
    redis_address,
    trust_root,
    uses_tls,
)
from tests.redis import free_port, make_tls_files
from tests.support import write_config

PROCESSES = """
[processes.zone-1]
kind = "zone"
"""


def load(testcase, redis: str) -> config.Config:
    return config.load(write_config(testcase, f"[redis]\n{redis}\n{PROCESSES}"))


#: A deployment whose manager runs its Redis.
LOCAL = """
[deployment]
tls_dir = "certs"

[processes.manager]
kind = "manager"
redis_server = true

[processes.zone-1]
kind = "zone"
"""


class ReaderTests(unittest.TestCase):
    def test_replies_parsed_by_hiredis(self):
        """
        The connections parse replies with hiredis's reader, not the
        pure-Python one that goes round a reactor turn per bulk reply.
        """
        import txredisapi

        from mmo import redis

        self.assertTrue(issubclass(redis._Protocol, txredisapi.HiredisProtocol))
        self.assertTrue(issubclass(redis._MasterProtocol, txredisapi.HiredisProtocol))


class PackedCommandsTests(unittest.TestCase):
    """Commands packed by hiredis (L{mmo.compat.PackedCommands}), as txredisapi packs them."""

    ARGUMENTS = [
        ("PING",),
        ("SET", "key", b"\x00\xffbytes", "EX", 30),
        ("HSET", "k", "name", "Zoë 🗡", "level", -7, "hp", 12.5, "alive", True),
        ("ZADD", "k", 1765161234.123456789, "member", 2**70, bytearray(b"ba")),
        ("EVALSHA", "ab" * 20, 2, "k1", "k2", *[b"d" * 300] * 30, *range(30)),
    ]

    def protocols(self, charset="utf-8", errors="strict"):
        import txredisapi

        from mmo import redis

        return (
            redis._Protocol(charset=charset, errors=errors),
            txredisapi.BaseRedisProtocol(charset=charset, errors=errors),
        )

    def test_same_bytes(self):
        from mmo import compat

        packed = []
        pack = compat._pack_command

        def counted(arguments):
            packed.append(arguments)
            return pack(arguments)

        self.patch(compat, "_pack_command", counted)
        for charset in ("utf-8", None):
            ours, theirs = self.protocols(charset)
            for arguments in self.ARGUMENTS:
                self.assertEqual(ours._build_command(*arguments), theirs._build_command(*arguments))
        # Every one of them packed by hiredis.
        self.assertEqual(len(packed), 2 * len(self.ARGUMENTS))

    def test_other_charsets_as_txredisapi(self):
        ours, theirs = self.protocols("latin-1")
        arguments = ("SET", "k", "café")
        self.assertEqual(ours._build_command(*arguments), theirs._build_command(*arguments))
        self.assertTrue(ours._build_command(*arguments).endswith(b"\r\ncaf\xe9\r\n"))

    def test_not_utf8_raises_as_txredisapi(self):
        import txredisapi

        ours, _ = self.protocols()
        self.assertRaises(txredisapi.InvalidData, ours._build_command, "SET", "k", "\udc80")


class LocalRedisTests(unittest.TestCase):
    """The defaults of the Redis a manager runs: the deployment's password, TLS and CA."""

    def setUp(self):
        self.conf = config.load(write_config(self, LOCAL))
        certs.generate(self.conf)

    def test_defaults(self):
        files = LocalRedisFiles.of(self.conf)
        self.assertIs(local_redis(self.conf), self.conf.processes["manager"])
        with open(files.password) as f:
            self.assertEqual(read_password(self.conf), f.read().strip())
        self.assertEqual(stat.S_IMODE(os.stat(files.password).st_mode), 0o600)
        self.assertTrue(uses_tls(self.conf))
        endpoint = RedisEndpoint(self.conf, MemoryReactorClock())
        self.assertTrue(endpoint.tls)
        self.assertFalse(uses_tls(load(self, "")))

    def test_explicit_settings_win(self):
        """A password of [redis] is the one; redis_tls = false is plaintext."""
        text = LOCAL + '[redis]\npassword = "mine"\n[manager]\nredis_tls = false\n'
        conf = config.load(write_config(self, text))
        self.assertEqual(read_password(conf), "mine")
        self.assertFalse(uses_tls(conf))

    def test_missing_password_file(self):
        os.unlink(LocalRedisFiles.of(self.conf).password)
        error = self.assertRaises(RedisConnectError, read_password, self.conf)
        self.assertIn("the local Redis's password file", str(error))
        self.assertIn("mmo-certs --renew", str(error))


class SettingsTests(unittest.TestCase):
    def test_address(self):
        self.assertEqual(redis_address(load(self, 'host = "::1"\nport = 7000')), "[::1]:7000")
        self.assertEqual(
            redis_address(load(self, 'unix = "/run/redis.sock"')), "unix:/run/redis.sock"
        )
        sentinels = load(self, 'sentinels = ["a:1", "b:2"]\nsentinel_master = "m"')
        self.assertEqual(redis_address(sentinels), "master 'm' of Sentinels a:1, b:2")

    def test_password(self):
        """password, or password_file less its newline; an empty or missing file is refused."""
        self.assertIsNone(read_password(load(self, "")))
        self.assertEqual(read_password(load(self, 'password = "p"')), "p")
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        path = os.path.join(directory, "password")
        with open(path, "w") as f:
            f.write("from file\r\n")
        conf = load(self, f'password_file = "{path}"')
        self.assertEqual(read_password(conf), "from file")
        with open(path, "w") as f:
            f.write("\n")
        error = self.assertRaises(RedisConnectError, read_password, conf)
        self.assertIn("is empty", str(error))
        conf = load(self, f'password_file = "{path}.missing"')
        error = self.assertRaises(RedisConnectError, read_password, conf)
        self.assertIn(f"cannot read redis.password_file {path}.missing", str(error))

    def test_trust(self):
        """tls_ca must hold PEM certificates."""
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        ca, _ = make_tls_files(directory)
        self.assertIsNotNone(trust_root(load(self, f'tls_ca = "{ca}"')))
        key = os.path.join(directory, "server.key")
        error = self.assertRaises(RedisConnectError, trust_root, load(self, f'tls_ca = "{key}"'))
        self.assertIn("no PEM certificate", str(error))
        missing = load(self, f'tls = true\ntls_ca = "{ca}.missing"')
        self.assertRaises(RedisConnectError, RedisEndpoint, missing, MemoryReactorClock())


class EndpointTests(unittest.TestCase):
    def test_failures(self):
        """
        The last reason is kept; a clean close does not hide an earlier
        reason; a cancelled attempt is no failure.
        """
        clock = MemoryReactorClock()
        endpoint = RedisEndpoint(load(self, f"port = {free_port()}"), clock)
        self.assertIsNone(endpoint.last_failure)
        endpoint.record("closed cleanly", weak=True)
        self.assertEqual(endpoint.last_failure, "closed cleanly")
        endpoint.record("could not auth")
        endpoint.record("closed cleanly", weak=True)
        self.assertEqual(endpoint.last_failure, "could not auth")
        attempt = endpoint.connect(object())
        attempt.cancel()
        self.failureResultOf(attempt)
        self.assertEqual(endpoint.last_failure, "could not auth")

    def test_sentinel_failover(self):
        """
        The master is asked of the Sentinels at every attempt; when they
        name another one, the connections to the old one are to be closed.
        """
        moved = []
        conf = load(self, f'sentinels = ["127.0.0.1:{free_port()}"]\nsentinel_master = "m"')
        clock = MemoryReactorClock()
        endpoint = RedisEndpoint(conf, clock, on_master_moved=lambda: moved.append(True))
        self.addCleanup(endpoint.disconnect)
        masters = iter([("192.0.2.1", 7001), ("192.0.2.1", 7001), ("192.0.2.2", 7002)])
        asked = []

        def discover_master(name):
            asked.append(name)
            return defer.succeed(next(masters))

        endpoint.sentinels.discover_master = discover_master
        for expected in ([], [], [True]):
            attempt = endpoint.connect(object())
            self.assertEqual(moved, expected)
            attempt.cancel()
            self.failureResultOf(attempt)
        self.assertEqual(asked, ["m", "m", "m"])
