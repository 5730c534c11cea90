"""
Tests of C{mmo-store} (mmo.store.backup): dump and restore through
L{main}, in this process, on both backends.
"""

from __future__ import annotations

import io
import json
import os
import stat
import textwrap

from twisted.internet import defer, reactor
from twisted.trial import unittest

from mmo.store.backup import decode_dump, encode_dump, main
from tests.redis import redis_config_text, start_redis
from tests.support import started_store, write_config

HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA"

PROCESSES = """
[processes.zone-1]
kind = "zone"
"""


class BackupTestsMixin:
    """Subclasses: L{store_text}, the C{[store]} (and C{[redis]}) of a new store."""

    def store_text(self) -> str:
        raise NotImplementedError()

    def new_config(self) -> str:
        """A config file for a new, empty store; its path."""
        return write_config(self, textwrap.dedent(self.store_text()) + PROCESSES)

    def open_store(self, path):
        return defer.ensureDeferred(started_store(self, path))

    @defer.inlineCallbacks
    def run_main(self, *argv):
        """Run mmo-store; (status, stdout, stderr)."""
        stdout, stderr = io.StringIO(), io.StringIO()
        status = yield main(list(argv), reactor=reactor, stdout=stdout, stderr=stderr)
        return status, stdout.getvalue(), stderr.getvalue()

    @defer.inlineCallbacks
    def populate(self, store):
        alice = yield store.create_account("Alice", HASH)
        bob = yield store.create_account("Bob", HASH + "2")
        yield store.update_account(bob.id, banned=True)
        yield store.create_character(alice.id, "Hero", {"hp": 10, "bag": [b"\x00\xff", {1: "x"}]})
        yield store.create_character(bob.id, "Rogue", {})
        yield store.append_log(
            "chat:world:main", {"from": "Hero", "text": "hi", "raw": b"\x01"}, 50
        )
        yield store.append_log("chat:ignore:" + alice.id, {"names": ["rogue"]}, 1)

    @defer.inlineCallbacks
    def test_dump_and_restore(self):
        source = self.new_config()
        store = yield self.open_store(source)
        yield self.populate(store)
        expected = yield store.dump()
        out = os.path.join(os.path.abspath(self.mktemp()), "backup.json")
        os.makedirs(os.path.dirname(out))

        status, stdout, stderr = yield self.run_main("dump", "--config", source, out)
        self.assertEqual((status, stderr), (0, ""))
        self.assertIn("2 accounts and 2 characters", stdout)
        self.assertEqual(stat.S_IMODE(os.stat(out).st_mode), 0o600)
        with open(out) as f:
            document = json.load(f)
        self.assertEqual(document["version"], 1)
        self.assertEqual(document["accounts"], expected["accounts"])
        self.assertEqual([c["name"] for c in document["characters"]], ["Hero", "Rogue"])
        self.assertIsInstance(document["characters"][0]["data"], str)
        # Chat history and ignore lists are in the backup too.
        self.assertEqual(len(document["logs"]), 2)
        self.assertEqual(os.listdir(os.path.dirname(out)), ["backup.json"])

        target = self.new_config()
        status, stdout, stderr = yield self.run_main("restore", "--config", target, out)
        self.assertEqual((status, stderr), (0, ""))
        self.assertIn("restored 2 accounts and 2 characters", stdout)
        restored = yield self.open_store(target)
        self.assertEqual((yield restored.dump()), expected)
        account = yield store.account_by_name("alice")
        self.assertEqual((yield restored.account_by_name("ALICE")), account)

    @defer.inlineCallbacks
    def test_restore_into_non_empty(self):
        source = self.new_config()
        store = yield self.open_store(source)
        yield self.populate(store)
        out = os.path.abspath(self.mktemp())
        status, _, _ = yield self.run_main("dump", "--config", source, out)
        self.assertEqual(status, 0)

        status, stdout, stderr = yield self.run_main("restore", "--config", source, out)
        self.assertEqual(status, 1)
        self.assertTrue(stderr.startswith("mmo-store: "), stderr)
        self.assertIn("not empty", stderr)
        self.assertNotIn("Traceback", stderr)
        self.assertEqual(len(stderr.splitlines()), 1)
        self.assertEqual(stdout, "")
        self.assertEqual(len((yield store.dump())["accounts"]), 2)

    @defer.inlineCallbacks
    def test_dump_replaces_with_mode_0600(self):
        """An existing OUT is replaced, and ends up 0600 whatever it was."""
        source = self.new_config()
        store = yield self.open_store(source)
        yield self.populate(store)
        out = os.path.abspath(self.mktemp())
        with open(out, "w") as f:
            f.write("old")
        os.chmod(out, 0o644)
        status, _, stderr = yield self.run_main("dump", "--config", source, out)
        self.assertEqual((status, stderr), (0, ""))
        self.assertEqual(stat.S_IMODE(os.stat(out).st_mode), 0o600)
        with open(out) as f:
            self.assertEqual(json.load(f)["version"], 1)


class SQLiteBackupTests(BackupTestsMixin, unittest.TestCase):
    def store_text(self):
        path = os.path.abspath(os.path.join(self.mktemp(), "mmo.sqlite3"))
        return f'[store]\nbackend = "sqlite"\npath = "{path}"\n'

    @defer.inlineCallbacks
    def test_dump_of_missing_database(self):
        """A wrong path is an error, not an empty backup."""
        source = self.new_config()
        out = os.path.abspath(self.mktemp())
        status, _, stderr = yield self.run_main("dump", "--config", source, out)
        self.assertEqual(status, 1)
        self.assertIn("no SQLite database at", stderr)
        self.assertFalse(os.path.exists(out))

    @defer.inlineCallbacks
    def test_errors(self):
        """Each error is one line on stderr and status 1 (usage: 2)."""
        source = self.new_config()
        missing = os.path.abspath(self.mktemp())
        bad = os.path.abspath(self.mktemp())
        with open(bad, "w") as f:
            f.write("{not json")
        newer = os.path.abspath(self.mktemp())
        with open(newer, "w") as f:
            json.dump({"version": 99, "accounts": [], "characters": []}, f)
        cases = [
            (("restore", "--config", source, missing), "cannot read"),
            (("restore", "--config", source, bad), "invalid JSON"),
            (("restore", "--config", source, newer), "unsupported dump version 99"),
            (("dump", "--config", missing, "out.json"), "cannot read"),
        ]
        for argv, message in cases:
            status, _, stderr = yield self.run_main(*argv)
            self.assertEqual(status, 1, argv)
            self.assertTrue(stderr.startswith("mmo-store: "), stderr)
            self.assertIn(message, stderr)
            self.assertEqual(len(stderr.splitlines()), 1, stderr)
        status, _, stderr = yield self.run_main("dump")
        self.assertEqual(status, 2)
        self.assertIn("usage: mmo-store", stderr)

    def test_file_format(self):
        """Character data is base64 msgpack in the file, and comes back the same."""
        dump = {
            "version": 1,
            "accounts": [],
            "characters": [
                {
                    "id": "c",
                    "account_id": "a",
                    "name": "n",
                    "created": 1.5,
                    "data": {1: b"\x00", "x": [1.25, None]},
                }
            ],
        }
        text = encode_dump(dump)
        self.assertEqual(json.loads(text)["characters"][0]["data"], "ggHEAQCheJLLP/QAAAAAAADA")
        self.assertEqual(decode_dump(text), dump)


class RedisBackupTests(BackupTestsMixin, unittest.TestCase):
    def setUp(self):
        self.server = start_redis(self)
        self.prefixes = 0

    def store_text(self):
        self.prefixes += 1
        return '[store]\nbackend = "redis"\n' + redis_config_text(
            self.server, f"backup{self.prefixes}"
        )
