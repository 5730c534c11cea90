"""
Tests of mmo.store: one suite, L{StoreTestsMixin}, run against both
backends (SQLite on a temporary file, Redis on a private redis-server),
then what only one backend has (migrations; reconnection, AOF, Sentinel,
TLS, Unix sockets).
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import stat
import sys
import textwrap

import txredisapi
from twisted.internet import defer, protocol, reactor, task
from twisted.python.failure import Failure
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from mmo import config
from mmo.redis import connect_redis, key_prefix
from mmo.store import (
    DUMP_VERSION,
    Account,
    AlreadyExists,
    Character,
    IStore,
    NotEmpty,
    NotFound,
    OwnershipConflict,
    StoredEntity,
    StoreError,
    StoreUnavailable,
    make_store,
)
from mmo.store import redis as store_redis
from mmo.store import sqlite as store_sqlite
from mmo.store.redis import RedisStore
from mmo.store.sqlite import SQLiteStore
from mmo.zone.entity import PLAYER, Entity
from tests.redis import (
    ExtraArgsRedis,
    SentinelServer,
    free_port,
    make_tls_files,
    redis_config_text,
    start_redis,
)
from tests.support import write_config

#: The time of the clock the stores are given.
NOW = 1_700_000_000.125

HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"

PROCESSES = """
[processes.zone-1]
kind = "zone"
"""


def load_config(testcase, text: str) -> config.Config:
    """A config from C{text} plus one process."""
    return config.load(write_config(testcase, textwrap.dedent(text) + PROCESSES))


@defer.inlineCallbacks
def gather(deferreds):
    """The outcomes of C{deferreds}: (succeeded, value or failure) pairs."""
    results = yield defer.DeferredList(deferreds, consumeErrors=True)
    return results


class StoreTestsMixin:
    """
    The behaviour every L{IStore} must have.  Subclasses implement
    L{make_store} and start what it needs in C{setUp} before calling this
    one's.
    """

    def make_store(self, fresh: bool = False, reactor=None) -> IStore:
        """
        A new, not started store: on the same data as the previous ones, or
        with C{fresh} on new, empty storage.
        """
        raise NotImplementedError()

    @defer.inlineCallbacks
    def setUp(self):
        self.clock = task.Clock()
        self.clock.advance(NOW)
        self.store = yield self.open_store()

    @defer.inlineCallbacks
    def open_store(self, fresh=False):
        store = self.make_store(fresh=fresh, reactor=self.clock)
        yield store.start()
        self.addCleanup(store.stop)
        return store

    @defer.inlineCallbacks
    def populate(self, store=None):
        """Two accounts (one banned) with characters; returns them."""
        store = store or self.store
        alice = yield store.create_account("Alice", HASH)
        self.clock.advance(1.5)
        bob = yield store.create_account("Bob", HASH + "b")
        bob = yield store.update_account(bob.id, banned=True)
        self.clock.advance(0.001)
        hero = yield store.create_character(alice.id, "Hero", {"level": 3, "hp": 17.5})
        self.clock.advance(1)
        mage = yield store.create_character(
            alice.id, "Mage", {"inventory": ["staff", {"potion": 2}], "flags": None, 7: "seven"}
        )
        self.clock.advance(1)
        rogue = yield store.create_character(bob.id, "Rogue", {})
        return {"alice": alice, "bob": bob, "hero": hero, "mage": mage, "rogue": rogue}

    # -- accounts ---------------------------------------------------------------

    def test_interface(self):
        self.assertTrue(verifyObject(IStore, self.store))

    @defer.inlineCallbacks
    def test_create_account(self):
        account = yield self.store.create_account("Alice", HASH)
        self.assertEqual(account.name, "Alice")
        self.assertEqual(account.password_hash, HASH)
        self.assertEqual(account.created, NOW)
        self.assertFalse(account.banned)
        self.assertEqual(len(account.id), 32)
        int(account.id, 16)

    @defer.inlineCallbacks
    def test_account_by_name_any_case(self):
        account = yield self.store.create_account("Alice", HASH)
        for name in ("Alice", "alice", "ALICE", "aLiCe"):
            found = yield self.store.account_by_name(name)
            self.assertEqual(found, account)
        self.assertEqual((yield self.store.account_by_id(account.id)), account)
        self.assertIsNone((yield self.store.account_by_name("Bob")))
        self.assertIsNone((yield self.store.account_by_id("0" * 32)))

    @defer.inlineCallbacks
    def test_ids_unique(self):
        first = yield self.store.create_account("One", HASH)
        second = yield self.store.create_account("Two", HASH)
        self.assertNotEqual(first.id, second.id)

    @defer.inlineCallbacks
    def test_duplicate_name_refused(self):
        """A name is taken without regard to case, casefolded (ß is ss)."""
        yield self.store.create_account("Alice", HASH)
        yield self.assertFailure(self.store.create_account("aLICE", HASH), AlreadyExists)
        yield self.store.create_account("Straße", HASH)
        yield self.assertFailure(self.store.create_account("STRASSE", HASH), AlreadyExists)
        found = yield self.store.account_by_name("alice")
        self.assertEqual(found.name, "Alice")

    @defer.inlineCallbacks
    def test_concurrent_registrations(self):
        """Of 20 registrations of one name at once, exactly one succeeds."""
        results = yield gather(
            [self.store.create_account("RUSH" if i % 2 else "rush", HASH) for i in range(20)]
        )
        winners = [value for ok, value in results if ok]
        losers = [value for ok, value in results if not ok]
        self.assertEqual(len(winners), 1)
        self.assertEqual(len(losers), 19)
        for failure in losers:
            self.assertTrue(failure.check(AlreadyExists), failure)
        found = yield self.store.account_by_name("RUSH")
        self.assertEqual(found, winners[0])
        dump = yield self.store.dump()
        self.assertEqual(len(dump["accounts"]), 1)

    @defer.inlineCallbacks
    def test_names_that_look_like_numbers(self):
        """Names and hashes come back as the strings they were."""
        for name in ("007", "1.5", "-3", "1e5"):
            account = yield self.store.create_account(name, "12345")
            found = yield self.store.account_by_name(name)
            self.assertEqual(found, account)
            self.assertEqual(found.name, name)
            self.assertEqual(found.password_hash, "12345")

    @defer.inlineCallbacks
    def test_bad_names_refused(self):
        yield self.assertFailure(self.store.create_account("", HASH), StoreError)
        yield self.assertFailure(self.store.create_account(None, HASH), StoreError)
        yield self.assertFailure(self.store.create_account("Alice", ""), StoreError)

    @defer.inlineCallbacks
    def test_update_account(self):
        account = yield self.store.create_account("Alice", HASH)
        changed = yield self.store.update_account(account.id, password_hash="new-hash")
        self.assertEqual(changed.password_hash, "new-hash")
        self.assertFalse(changed.banned)
        changed = yield self.store.update_account(account.id, banned=True)
        self.assertEqual(changed.password_hash, "new-hash")
        self.assertTrue(changed.banned)
        unchanged = yield self.store.update_account(account.id)
        self.assertEqual(unchanged, changed)
        self.assertEqual((yield self.store.account_by_name("alice")), changed)
        self.assertEqual(changed.created, account.created)
        changed = yield self.store.update_account(account.id, banned=False)
        self.assertFalse(changed.banned)

    @defer.inlineCallbacks
    def test_update_missing_account(self):
        yield self.assertFailure(self.store.update_account("0" * 32, banned=True), NotFound)
        self.assertIsNone((yield self.store.account_by_id("0" * 32)))

    @defer.inlineCallbacks
    def test_password_hash_not_in_repr(self):
        account = yield self.store.create_account("Alice", HASH)
        found = yield self.store.account_by_name("Alice")
        for value in (account, found):
            self.assertNotIn(HASH, repr(value))
            self.assertNotIn("argon2", repr(value))
            self.assertIn("Alice", repr(value))

    # -- characters -----------------------------------------------------------

    @defer.inlineCallbacks
    def test_characters(self):
        made = yield self.populate()
        alice, hero, mage = made["alice"], made["hero"], made["mage"]
        self.assertEqual(hero.account_id, alice.id)
        self.assertEqual(hero.created, NOW + 1.501)
        self.assertEqual(mage.data[7], "seven")
        listed = yield self.store.characters(alice.id)
        self.assertEqual(listed, [hero, mage])
        self.assertEqual((yield self.store.characters(made["bob"].id)), [made["rogue"]])
        self.assertEqual((yield self.store.characters("0" * 32)), [])
        self.assertEqual((yield self.store.character_by_id(mage.id)), mage)
        self.assertIsNone((yield self.store.character_by_id("0" * 32)))

    @defer.inlineCallbacks
    def test_characters_oldest_first(self):
        account = yield self.store.create_account("Alice", HASH)
        made = []
        for i, name in enumerate(["Zed", "Amy", "Kim", "Bo"]):
            self.clock.advance(10 - i)
            made.append((yield self.store.create_character(account.id, name, {"i": i})))
        self.assertEqual((yield self.store.characters(account.id)), made)

    @defer.inlineCallbacks
    def test_character_data_round_trip(self):
        account = yield self.store.create_account("Alice", HASH)
        data = {
            "text": "ünïcødé ⚔",
            "bytes": b"\x00\xff\x80binary",
            "big": 2**62,
            "negative": -17,
            "float": 0.1,
            "nested": {"list": [1, [2, [3]]], "empty": {}},
            "bool": True,
            "none": None,
            "tuple": (1, 2),
        }
        character = yield self.store.create_character(account.id, "Hero", data)
        expected = dict(data, tuple=[1, 2])
        self.assertEqual(character.data, expected)
        self.assertEqual((yield self.store.character_by_id(character.id)).data, expected)

    @defer.inlineCallbacks
    def test_update_character(self):
        made = yield self.populate()
        mage = made["mage"]
        updated = yield self.store.update_character(mage.id, {"level": 4})
        self.assertEqual(
            updated, Character(mage.id, mage.account_id, "Mage", mage.created, {"level": 4})
        )
        self.assertEqual((yield self.store.character_by_id(mage.id)), updated)
        self.assertEqual((yield self.store.character_by_id(made["hero"].id)), made["hero"])

    @defer.inlineCallbacks
    def test_update_missing_character(self):
        yield self.assertFailure(self.store.update_character("0" * 32, {}), NotFound)
        self.assertIsNone((yield self.store.character_by_id("0" * 32)))

    @defer.inlineCallbacks
    def test_bad_character_data_refused(self):
        account = yield self.store.create_account("Alice", HASH)
        yield self.assertFailure(
            self.store.create_character(account.id, "Hero", ["not", "a", "dict"]), StoreError
        )
        yield self.assertFailure(
            self.store.create_character(account.id, "Hero", {"x": object()}), StoreError
        )
        hero = yield self.store.create_character(account.id, "Hero", {})
        yield self.assertFailure(self.store.update_character(hero.id, {"x": {1, 2}}), StoreError)
        self.assertEqual((yield self.store.character_by_id(hero.id)).data, {})
        yield self.assertFailure(self.store.create_character(account.id, "", {}), StoreError)

    @defer.inlineCallbacks
    def test_character_name_unique_across_accounts(self):
        alice = yield self.store.create_account("Alice", HASH)
        bob = yield self.store.create_account("Bob", HASH)
        yield self.store.create_character(alice.id, "Hero", {})
        yield self.assertFailure(self.store.create_character(bob.id, "HERO", {}), AlreadyExists)
        yield self.assertFailure(self.store.create_character(alice.id, "hero", {}), AlreadyExists)
        self.assertEqual((yield self.store.characters(bob.id)), [])

    @defer.inlineCallbacks
    def test_account_and_character_names_separate(self):
        """An account and a character may share a name."""
        alice = yield self.store.create_account("Alice", HASH)
        character = yield self.store.create_character(alice.id, "alice", {})
        self.assertEqual(character.name, "alice")

    @defer.inlineCallbacks
    def test_concurrent_character_creations(self):
        alice = yield self.store.create_account("Alice", HASH)
        bob = yield self.store.create_account("Bob", HASH)
        results = yield gather(
            [
                self.store.create_character((alice, bob)[i % 2].id, "Hero", {"i": i})
                for i in range(20)
            ]
        )
        winners = [value for ok, value in results if ok]
        self.assertEqual(len(winners), 1)
        for ok, failure in results:
            if not ok:
                self.assertTrue(failure.check(AlreadyExists), failure)
        listed = (yield self.store.characters(alice.id)) + (yield self.store.characters(bob.id))
        self.assertEqual(listed, winners)

    @defer.inlineCallbacks
    def test_delete_character(self):
        made = yield self.populate()
        hero = made["hero"]
        self.assertTrue((yield self.store.delete_character(hero.id)))
        self.assertIsNone((yield self.store.character_by_id(hero.id)))
        self.assertEqual((yield self.store.characters(made["alice"].id)), [made["mage"]])
        self.assertFalse((yield self.store.delete_character(hero.id)))
        self.assertFalse((yield self.store.delete_character("0" * 32)))
        yield self.assertFailure(self.store.update_character(hero.id, {}), NotFound)

    @defer.inlineCallbacks
    def test_delete_frees_name(self):
        made = yield self.populate()
        yield self.store.delete_character(made["hero"].id)
        self.clock.advance(1)
        again = yield self.store.create_character(made["bob"].id, "HERO", {"new": True})
        self.assertEqual(again.name, "HERO")
        self.assertNotEqual(again.id, made["hero"].id)
        self.assertEqual((yield self.store.characters(made["bob"].id)), [made["rogue"], again])

    @defer.inlineCallbacks
    def test_concurrent_deletes(self):
        made = yield self.populate()
        results = yield gather([self.store.delete_character(made["hero"].id) for _ in range(5)])
        self.assertEqual(sorted(value for _, value in results), [False] * 4 + [True])

    @defer.inlineCallbacks
    def test_character_of_missing_account(self):
        yield self.assertFailure(self.store.create_character("0" * 32, "Hero", {}), NotFound)
        # The name was not taken by the failed attempt.
        alice = yield self.store.create_account("Alice", HASH)
        yield self.store.create_character(alice.id, "Hero", {})

    # -- logs ---------------------------------------------------------------------

    @defer.inlineCallbacks
    def test_log_append_and_read(self):
        """A log keeps its last C{keep} records; reads give the last ones, oldest first."""
        for i in range(5):
            yield self.store.append_log("chat:world:main", {"i": i}, 3)
        self.assertEqual(
            (yield self.store.read_log("chat:world:main", 10)), [{"i": 2}, {"i": 3}, {"i": 4}]
        )
        self.assertEqual((yield self.store.read_log("chat:world:main", 2)), [{"i": 3}, {"i": 4}])
        self.assertEqual((yield self.store.read_log("chat:world:main", 0)), [])
        self.assertEqual((yield self.store.read_log("never written", 5)), [])

    @defer.inlineCallbacks
    def test_log_keep_per_append(self):
        """Each append trims to its own C{keep}: a smaller one drops more."""
        for i in range(6):
            yield self.store.append_log("log", {"i": i}, 10)
        self.assertEqual(len((yield self.store.read_log("log", 100))), 6)
        yield self.store.append_log("log", {"i": 6}, 2)
        self.assertEqual((yield self.store.read_log("log", 100)), [{"i": 5}, {"i": 6}])
        yield self.store.append_log("log", {"i": 7}, 1)
        self.assertEqual((yield self.store.read_log("log", 100)), [{"i": 7}])

    @defer.inlineCallbacks
    def test_log_append_many(self):
        """Several records in one append, in order, then the trim; none is nothing."""
        yield self.store.append_log("log", {"i": 0}, 10)
        yield self.store.append_logs("log", [{"i": 1}, {"i": 2}, {"i": 3}], 10)
        self.assertEqual([r["i"] for r in (yield self.store.read_log("log", 100))], [0, 1, 2, 3])
        yield self.store.append_logs("log", [{"i": 4}, {"i": 5}, {"i": 6}], 2)
        self.assertEqual((yield self.store.read_log("log", 100)), [{"i": 5}, {"i": 6}])
        yield self.store.append_logs("log", [], 1)
        self.assertEqual(len((yield self.store.read_log("log", 100))), 2)
        yield self.assertFailure(self.store.append_logs("log", [{"i": object()}], 1), StoreError)
        self.assertEqual(len((yield self.store.read_log("log", 100))), 2)

    @defer.inlineCallbacks
    def test_logs_separate(self):
        """Logs of different keys (any characters, case kept) do not mix."""
        keys = ["a", "A", "a:b", "ünï ⚔:*", "log:a"]
        for n, key in enumerate(keys):
            for i in range(n + 1):
                yield self.store.append_log(key, {"key": key, "i": i}, 100)
        for n, key in enumerate(keys):
            self.assertEqual(
                (yield self.store.read_log(key, 100)), [{"key": key, "i": i} for i in range(n + 1)]
            )

    @defer.inlineCallbacks
    def test_log_record_round_trip(self):
        record = {
            "text": "ünïcødé ⚔",
            "bytes": b"\x00\xff",
            "time": NOW,
            "nested": {"list": [1, [2]], 7: None},
            "tuple": (1, 2),
        }
        yield self.store.append_log("log", record, 5)
        self.assertEqual((yield self.store.read_log("log", 5)), [dict(record, tuple=[1, 2])])

    @defer.inlineCallbacks
    def test_log_bad_arguments(self):
        """Bad keys, records, keeps and limits fail with StoreError, writing nothing."""
        bad_appends = [
            ("", {}, 1),
            (None, {}, 1),
            ("log", ["not", "a", "dict"], 1),
            ("log", {"x": object()}, 1),
            ("log", {}, 0),
            ("log", {}, -1),
            ("log", {}, True),
            ("log", {}, 1.5),
        ]
        for key, record, keep in bad_appends:
            yield self.assertFailure(self.store.append_log(key, record, keep), StoreError)
        for key, limit in [("log", -1), ("log", None), ("", 1), ("log", False)]:
            yield self.assertFailure(self.store.read_log(key, limit), StoreError)
        self.assertEqual((yield self.store.read_log("log", 10)), [])
        self.assertNotIn("logs", (yield self.store.dump()))

    @defer.inlineCallbacks
    def test_log_concurrent_appends(self):
        """Appends at once all land, and the trim keeps exactly C{keep} of them."""
        yield defer.gatherResults([self.store.append_log("log", {"i": i}, 5) for i in range(20)])
        records = yield self.store.read_log("log", 100)
        self.assertEqual(len(records), 5)
        self.assertEqual(len({r["i"] for r in records}), 5)
        # One after the other, the order is the order asked for.
        for i in range(20, 25):
            yield self.store.append_log("log", {"i": i}, 5)
        self.assertEqual((yield self.store.read_log("log", 100)), [{"i": i} for i in range(20, 25)])

    @defer.inlineCallbacks
    def test_log_persists_across_restart(self):
        for i in range(3):
            yield self.store.append_log("log", {"i": i}, 2)
        yield self.store.stop()
        again = yield self.open_store()
        self.assertEqual((yield again.read_log("log", 10)), [{"i": 1}, {"i": 2}])
        yield again.append_log("log", {"i": 3}, 2)
        self.assertEqual((yield again.read_log("log", 10)), [{"i": 2}, {"i": 3}])

    @defer.inlineCallbacks
    def test_dump_restore_logs(self):
        """Logs are in the dump, sorted by key, and a restore brings them back."""
        made = yield self.populate()
        for i in range(4):
            yield self.store.append_log("zeta", {"i": i, "b": b"\x01"}, 3)
        yield self.store.append_log("alpha", {"text": "hi"}, 3)
        dump = yield self.store.dump()
        self.assertEqual(
            dump["logs"],
            [
                {"key": "alpha", "records": [{"text": "hi"}]},
                {"key": "zeta", "records": [{"i": i, "b": b"\x01"} for i in (1, 2, 3)]},
            ],
        )
        other = yield self.open_store(fresh=True)
        yield other.restore(dump)
        self.assertEqual((yield other.dump()), dump)
        self.assertEqual((yield other.read_log("zeta", 2)), dump["logs"][1]["records"][1:])
        self.assertEqual((yield other.account_by_id(made["alice"].id)), made["alice"])
        # Appending carries on after the restored records.
        yield other.append_log("zeta", {"i": 4}, 3)
        self.assertEqual(
            [r["i"] for r in (yield other.read_log("zeta", 10))],
            [2, 3, 4],
        )

    @defer.inlineCallbacks
    def test_restore_dump_without_logs(self):
        """A dump made before logs existed (no "logs" key) restores, with no logs."""
        made = yield self.populate()
        yield self.store.append_log("log", {"i": 1}, 3)
        dump = yield self.store.dump()
        del dump["logs"]
        other = yield self.open_store(fresh=True)
        yield other.restore(dump)
        self.assertEqual((yield other.dump()), dump)
        self.assertEqual((yield other.read_log("log", 10)), [])
        self.assertEqual((yield other.characters(made["bob"].id)), [made["rogue"]])

    @defer.inlineCallbacks
    def test_restore_checks_logs_first(self):
        """Malformed logs fail the restore before anything is written."""
        yield self.populate()
        yield self.store.append_log("log", {"i": 1}, 3)
        dump = yield self.store.dump()
        good = dump["logs"][0]
        other = yield self.open_store(fresh=True)
        bad_dumps = [
            dict(dump, logs=None),
            dict(dump, logs=[good, good]),
            dict(dump, logs=[dict(good, key="")]),
            dict(dump, logs=[dict(good, records=None)]),
            dict(dump, logs=[dict(good, records=[["not", "a", "dict"]])]),
            dict(dump, logs=[dict(good, extra=1)]),
            dict(dump, logs=["log"]),
        ]
        for bad in bad_dumps:
            yield self.assertFailure(other.restore(bad), StoreError)
        self.assertEqual((yield other.dump()), {"version": 1, "accounts": [], "characters": []})
        yield other.restore(dump)
        self.assertEqual((yield other.read_log("log", 10)), [{"i": 1}])

    @defer.inlineCallbacks
    def test_restore_into_store_with_logs(self):
        """A store holding only logs is not empty."""
        yield self.populate()
        dump = yield self.store.dump()
        other = yield self.open_store(fresh=True)
        yield other.append_log("log", {"i": 1}, 3)
        yield self.assertFailure(other.restore(dump), NotEmpty)
        self.assertEqual((yield other.dump())["accounts"], [])

    # -- entity checkpoints -----------------------------------------------------

    @defer.inlineCallbacks
    def test_checkpoint_and_load_zone(self):
        """A checkpoint inserts new entities as the zone's; load_zone gives them by id."""
        refused = yield self.store.checkpoint("zone-a", [entity("e2"), entity("e1", x=3.5)])
        self.assertEqual(refused, [])
        yield self.store.checkpoint("zone-b", [entity("e3")])
        loaded = yield self.store.load_zone("zone-a")
        self.assertEqual([e.id for e in loaded], ["e1", "e2"])
        self.assertEqual(loaded[0], StoredEntity("e1", "zone-a", 0, None, entity("e1", x=3.5)))
        self.assertEqual([e.id for e in (yield self.store.load_zone("zone-b"))], ["e3"])
        self.assertEqual((yield self.store.load_zone("zone-c")), [])
        self.assertEqual((yield self.store.load_entity("e3")).owner, "zone-b")
        self.assertIsNone((yield self.store.load_entity("nobody")))

    @defer.inlineCallbacks
    def test_checkpoint_updates_own_entities_only(self):
        """
        An entity another zone owns, or stored at another version, is refused
        (and reported); the rest of the checkpoint is written.
        """
        yield self.store.checkpoint("zone-a", [entity("mine"), entity("fenced")])
        yield self.store.checkpoint("zone-b", [entity("theirs", x=1.0)])
        yield self.store.recover_zone("zone-a")  # "mine" and "fenced" now at version 1
        refused = yield self.store.checkpoint(
            "zone-a",
            [entity("theirs", x=9.0), entity("mine", version=1, x=2.0), entity("fenced", x=5.0)],
        )
        self.assertEqual(refused, ["theirs", "fenced"])
        self.assertEqual((yield self.store.load_entity("theirs")).data["x"], 1.0)
        self.assertEqual((yield self.store.load_entity("mine")).data["x"], 2.0)
        fenced = yield self.store.load_entity("fenced")
        self.assertEqual((fenced.version, fenced.data["x"]), (1, 0.0))

    @defer.inlineCallbacks
    def test_transfer(self):
        """A transfer moves the owner, bumps the version and stores the record."""
        yield self.store.checkpoint("zone-a", [entity("e1", x=1.0)])
        moved = yield self.store.transfer(
            "e1", "zone-a", "zone-b", "t1", entity("e1", x=2.0, last_input=7)
        )
        expected = StoredEntity(
            "e1", "zone-b", 1, "t1", entity("e1", version=1, x=2.0, last_input=7)
        )
        self.assertEqual(moved, expected)
        self.assertEqual((yield self.store.load_entity("e1")), expected)
        self.assertEqual((yield self.store.load_zone("zone-a")), [])
        self.assertEqual((yield self.store.load_zone("zone-b")), [expected])
        # The old owner's checkpoints are refused, the new owner's taken.
        self.assertEqual((yield self.store.checkpoint("zone-a", [entity("e1")])), ["e1"])
        refused = yield self.store.checkpoint("zone-b", [entity("e1", version=1, x=3.0)])
        self.assertEqual(refused, [])
        self.assertEqual((yield self.store.load_entity("e1")).data["x"], 3.0)

    @defer.inlineCallbacks
    def test_transfer_idempotent(self):
        """The same transfer again succeeds and writes nothing, even after later checkpoints."""
        yield self.store.checkpoint("zone-a", [entity("e1")])
        first = yield self.store.transfer("e1", "zone-a", "zone-b", "t1", entity("e1", x=1.0))
        yield self.store.checkpoint("zone-b", [entity("e1", version=1, x=4.0)])
        again = yield self.store.transfer("e1", "zone-a", "zone-b", "t1", entity("e1", x=9.0))
        self.assertEqual(
            again, StoredEntity("e1", "zone-b", 1, "t1", entity("e1", version=1, x=4.0))
        )
        self.assertEqual(first.version, again.version)

    @defer.inlineCallbacks
    def test_transfer_refused(self):
        """
        A transfer from a zone that does not own the entity, or at another
        version, fails with the entity as stored, and changes nothing.
        """
        yield self.store.checkpoint("zone-a", [entity("e1", x=1.0)])
        stored = StoredEntity("e1", "zone-a", 0, None, entity("e1", x=1.0))
        attempts = [
            ("zone-c", "zone-b", "t1", entity("e1")),  # not the owner
            ("zone-a", "zone-b", "t1", entity("e1", version=1)),  # wrong version
            ("zone-a", "zone-b", "t1", entity("e1", version=5)),
        ]
        for from_zone, to_zone, transfer_id, record in attempts:
            error = yield self.assertFailure(
                self.store.transfer("e1", from_zone, to_zone, transfer_id, record),
                OwnershipConflict,
            )
            self.assertEqual(error.current, stored)
            self.assertIsInstance(error, StoreError)
        self.assertEqual((yield self.store.load_entity("e1")), stored)
        # A transfer id used by the entity's last transfer into another zone
        # is no pass either.
        yield self.store.transfer("e1", "zone-a", "zone-b", "t1", entity("e1"))
        error = yield self.assertFailure(
            self.store.transfer("e1", "zone-a", "zone-c", "t1", entity("e1")), OwnershipConflict
        )
        self.assertEqual((error.current.owner, error.current.version), ("zone-b", 1))

    @defer.inlineCallbacks
    def test_transfer_of_unknown_entity(self):
        """An entity never checkpointed is created by its first transfer."""
        moved = yield self.store.transfer("new", "zone-a", "zone-b", "t1", entity("new", version=3))
        self.assertEqual((moved.owner, moved.version, moved.data["version"]), ("zone-b", 4, 4))
        self.assertEqual((yield self.store.load_zone("zone-b")), [moved])

    @defer.inlineCallbacks
    def test_fence_undoes_an_offer(self):
        """
        A transfer to the zone that owns it (the undoing of a handoff) bumps
        the version: the transfer offered at the old version then fails,
        and whichever of the two runs first wins.
        """
        yield self.store.checkpoint("zone-a", [entity("e1"), entity("e2")])
        fenced = yield self.store.transfer("e1", "zone-a", "zone-a", "t1", entity("e1", x=5.0))
        self.assertEqual((fenced.owner, fenced.version, fenced.data["x"]), ("zone-a", 1, 5.0))
        error = yield self.assertFailure(
            self.store.transfer("e1", "zone-a", "zone-b", "t1", entity("e1")), OwnershipConflict
        )
        self.assertEqual(error.current, fenced)
        # The fence repeated is idempotent.
        self.assertEqual(
            (yield self.store.transfer("e1", "zone-a", "zone-a", "t1", entity("e1"))), fenced
        )
        # The other way round: the transfer committed, the fence fails.
        yield self.store.transfer("e2", "zone-a", "zone-b", "t2", entity("e2"))
        error = yield self.assertFailure(
            self.store.transfer("e2", "zone-a", "zone-a", "t2", entity("e2")), OwnershipConflict
        )
        self.assertEqual((error.current.owner, error.current.transfer_id), ("zone-b", "t2"))

    @defer.inlineCallbacks
    def test_concurrent_transfers(self):
        """Of transfers of one entity to two zones at once, exactly one wins."""
        yield self.store.checkpoint("zone-a", [entity("e1")])
        results = yield gather(
            [
                self.store.transfer("e1", "zone-a", f"zone-{'bc'[i % 2]}", f"t{i}", entity("e1"))
                for i in range(20)
            ]
        )
        winners = [value for ok, value in results if ok]
        self.assertEqual(len(winners), 1, results)
        for ok, failure in results:
            if not ok:
                self.assertTrue(failure.check(OwnershipConflict), failure)
                self.assertEqual(failure.value.current, winners[0])
        self.assertEqual((yield self.store.load_entity("e1")), winners[0])
        owned = []
        for zone in ("zone-a", "zone-b", "zone-c"):
            owned.append(len((yield self.store.load_zone(zone))))
        self.assertEqual(sorted(owned), [0, 0, 1])

    @defer.inlineCallbacks
    def test_concurrent_transfer_and_fence(self):
        """A handoff and its undoing at once: exactly one of them takes effect."""
        for i in range(10):
            yield self.store.checkpoint("zone-a", [entity(f"e{i}")])
        outcomes = []
        for i in range(10):
            offer = self.store.transfer(f"e{i}", "zone-a", "zone-b", f"t{i}", entity(f"e{i}"))
            fence = self.store.transfer(f"e{i}", "zone-a", "zone-a", f"t{i}", entity(f"e{i}"))
            results = yield gather([offer, fence] if i % 2 else [fence, offer])
            self.assertEqual(sorted(ok for ok, _ in results), [False, True])
            outcomes.append((yield self.store.load_entity(f"e{i}")).owner)
        loaded = (yield self.store.load_zone("zone-a")) + (yield self.store.load_zone("zone-b"))
        self.assertEqual(sorted(e.id for e in loaded), sorted(f"e{i}" for i in range(10)))

    @defer.inlineCallbacks
    def test_recover_zone_fences(self):
        """
        Recovering a zone bumps the version of each of its entities: a
        transfer or checkpoint made at the old version is refused.
        """
        yield self.store.checkpoint("zone-a", [entity("e1"), entity("e2", x=2.0)])
        yield self.store.checkpoint("zone-b", [entity("e3")])
        recovered = yield self.store.recover_zone("zone-a")
        self.assertEqual(
            recovered,
            [
                StoredEntity("e1", "zone-a", 1, None, entity("e1", version=1)),
                StoredEntity("e2", "zone-a", 1, None, entity("e2", version=1, x=2.0)),
            ],
        )
        self.assertEqual((yield self.store.load_zone("zone-a")), recovered)
        self.assertEqual((yield self.store.load_entity("e3")).version, 0)
        yield self.assertFailure(
            self.store.transfer("e1", "zone-a", "zone-b", "t1", entity("e1")), OwnershipConflict
        )
        self.assertEqual((yield self.store.checkpoint("zone-a", [entity("e2")])), ["e2"])
        moved = yield self.store.transfer("e1", "zone-a", "zone-b", "t1", entity("e1", version=1))
        self.assertEqual(moved.version, 2)
        self.assertEqual([e.id for e in (yield self.store.recover_zone("zone-a"))], ["e2"])

    @defer.inlineCallbacks
    def test_remove_entity(self):
        yield self.store.checkpoint("zone-a", [entity("e1"), entity("e2")])
        self.assertFalse((yield self.store.remove_entity("zone-b", "e1")))
        self.assertTrue((yield self.store.remove_entity("zone-a", "e1")))
        self.assertFalse((yield self.store.remove_entity("zone-a", "e1")))
        self.assertIsNone((yield self.store.load_entity("e1")))
        self.assertEqual([e.id for e in (yield self.store.load_zone("zone-a"))], ["e2"])
        # A removed entity may be checkpointed again, by any zone.
        self.assertEqual((yield self.store.checkpoint("zone-b", [entity("e1")])), [])

    @defer.inlineCallbacks
    def test_entity_data_round_trip(self):
        record = entity(
            "e1",
            attrs={"hp": 17.5, "bag": [b"\x00\xff", {"potion": 2}], 7: None, "tuple": (1, 2)},
            session="s1",
            gateway="gw-1",
            last_input=2**40,
        )
        yield self.store.checkpoint("zone-ü ⚔", [record])
        loaded = yield self.store.load_entity("e1")
        expected = dict(record, attrs=dict(record["attrs"], tuple=[1, 2]))
        self.assertEqual(loaded.data, expected)
        self.assertEqual(loaded.owner, "zone-ü ⚔")
        self.assertEqual([e.data for e in (yield self.store.load_zone("zone-ü ⚔"))], [expected])

    @defer.inlineCallbacks
    def test_entity_bad_arguments(self):
        """Bad zones, records and transfer ids fail with StoreError, writing nothing."""
        bad_checkpoints = [
            ("", [entity("e1")]),
            (None, [entity("e1")]),
            ("zone-a", entity("e1")),
            ("zone-a", ["not a dict"]),
            ("zone-a", [{"version": 0}]),
            ("zone-a", [entity("")]),
            ("zone-a", [entity("e1", version=-1)]),
            ("zone-a", [entity("e1", version=True)]),
            ("zone-a", [dict(entity("e1"), version=None)]),
            ("zone-a", [entity("e1", attrs={"x": object()})]),
            ("zone-a", [entity("e1"), entity("e1")]),
        ]
        for zone, records in bad_checkpoints:
            yield self.assertFailure(self.store.checkpoint(zone, records), StoreError)
        bad_transfers = [
            ("e1", "", "zone-b", "t1", entity("e1")),
            ("e1", "zone-a", None, "t1", entity("e1")),
            ("e1", "zone-a", "zone-b", "", entity("e1")),
            ("e1", "zone-a", "zone-b", "t1", entity("e2")),
            ("e1", "zone-a", "zone-b", "t1", entity("e1", version=-2)),
        ]
        for args in bad_transfers:
            yield self.assertFailure(self.store.transfer(*args), StoreError)
        yield self.assertFailure(self.store.load_zone(""), StoreError)
        yield self.assertFailure(self.store.recover_zone(None), StoreError)
        self.assertIsNone((yield self.store.load_entity("e1")))
        self.assertIsNone((yield self.store.load_entity("e2")))

    @defer.inlineCallbacks
    def test_entities_persist_across_restart(self):
        yield self.store.checkpoint("zone-a", [entity("e1"), entity("e2")])
        moved = yield self.store.transfer("e2", "zone-a", "zone-b", "t1", entity("e2", x=8.0))
        yield self.store.stop()
        again = yield self.open_store()
        self.assertEqual([e.id for e in (yield again.load_zone("zone-a"))], ["e1"])
        self.assertEqual((yield again.load_entity("e2")), moved)

    @defer.inlineCallbacks
    def test_entities_not_in_dump(self):
        """Checkpoints are the world's state, not accounts: dumps leave them out."""
        yield self.store.checkpoint("zone-a", [entity("e1")])
        self.assertEqual(
            (yield self.store.dump()), {"version": DUMP_VERSION, "accounts": [], "characters": []}
        )

    # -- dump and restore -----------------------------------------------------

    @defer.inlineCallbacks
    def test_dump(self):
        made = yield self.populate()
        dump = yield self.store.dump()
        self.assertEqual(dump["version"], DUMP_VERSION)
        self.assertEqual(
            dump["accounts"],
            [
                {
                    "id": a.id,
                    "name": a.name,
                    "password_hash": a.password_hash,
                    "created": a.created,
                    "banned": a.banned,
                }
                for a in (made["alice"], made["bob"])
            ],
        )
        self.assertEqual(
            dump["characters"],
            [
                {
                    "id": c.id,
                    "account_id": c.account_id,
                    "name": c.name,
                    "created": c.created,
                    "data": c.data,
                }
                for c in (made["hero"], made["mage"], made["rogue"])
            ],
        )

    @defer.inlineCallbacks
    def test_dump_restore_round_trip(self):
        made = yield self.populate()
        yield self.store.delete_character(made["rogue"].id)
        dump = yield self.store.dump()
        other = yield self.open_store(fresh=True)
        self.assertEqual((yield other.dump())["accounts"], [])
        yield other.restore(dump)
        self.assertEqual((yield other.dump()), dump)
        for key in ("alice", "bob"):
            account = made[key]
            self.assertEqual((yield other.account_by_name(account.name.upper())), account)
            self.assertEqual((yield other.account_by_id(account.id)), account)
            self.assertEqual(
                (yield other.characters(account.id)), (yield self.store.characters(account.id))
            )
        self.assertEqual((yield other.character_by_id(made["mage"].id)), made["mage"])
        # The names are taken in the restored store too.
        yield self.assertFailure(other.create_account("alice", HASH), AlreadyExists)
        yield self.assertFailure(other.create_character(made["bob"].id, "MAGE", {}), AlreadyExists)
        # And the freed one is free.
        yield other.create_character(made["bob"].id, "Rogue", {})

    @defer.inlineCallbacks
    def test_restore_into_non_empty(self):
        made = yield self.populate()
        dump = yield self.store.dump()
        other = yield self.open_store(fresh=True)
        carol = yield other.create_account("Carol", HASH)
        yield self.assertFailure(other.restore(dump), NotEmpty)
        after = yield other.dump()
        self.assertEqual(after["accounts"], [dataclass_dict(carol)])
        self.assertIsNone((yield other.account_by_id(made["alice"].id)))
        yield self.assertFailure(self.store.restore(dump), NotEmpty)

    @defer.inlineCallbacks
    def test_restore_checks_everything_first(self):
        made = yield self.populate()
        dump = yield self.store.dump()
        other = yield self.open_store(fresh=True)
        bad_dumps = [
            dict(dump, version=DUMP_VERSION + 1),
            dict(dump, accounts=dump["accounts"] + [dict(dump["accounts"][0], id="f" * 32)]),
            dict(dump, characters=dump["characters"] + [dict(dump["characters"][0], id="e" * 32)]),
            dict(dump, accounts=[a for a in dump["accounts"] if a["id"] != made["bob"].id]),
            dict(dump, accounts=[dict(dump["accounts"][0], created="yesterday")]),
            dict(dump, accounts=[dict(dump["accounts"][0], banned=1)]),
            dict(dump, characters=[dict(dump["characters"][0], data=[1])]),
            dict(dump, accounts=None),
            ["not", "a", "dump"],
        ]
        for bad in bad_dumps:
            yield self.assertFailure(other.restore(bad), StoreError)
        self.assertEqual((yield other.dump()), {"version": 1, "accounts": [], "characters": []})
        yield other.restore(dump)

    # -- durability -------------------------------------------------------------

    @defer.inlineCallbacks
    def test_persists_across_restart(self):
        made = yield self.populate()
        yield self.store.stop()
        yield self.assertFailure(self.store.account_by_name("Alice"), StoreError)
        again = yield self.open_store()
        self.assertEqual((yield again.account_by_name("alice")), made["alice"])
        self.assertEqual((yield again.characters(made["alice"].id)), [made["hero"], made["mage"]])
        self.assertEqual((yield again.account_by_id(made["bob"].id)), made["bob"])

    @defer.inlineCallbacks
    def test_stop_finishes_pending_writes(self):
        """Writes asked for before stop() complete, and are kept."""
        writes = [self.store.create_account(f"Player{i}", HASH) for i in range(10)]
        yield self.store.stop()
        accounts = yield defer.gatherResults(writes)
        again = yield self.open_store()
        for account in accounts:
            self.assertEqual((yield again.account_by_id(account.id)), account)

    @defer.inlineCallbacks
    def test_stop_twice(self):
        yield self.store.stop()
        yield self.store.stop()

    @defer.inlineCallbacks
    def test_make_store(self):
        """make_store picks this backend from the config."""
        store = make_store(self.store_config(), reactor=self.clock)
        self.assertIsInstance(store, type(self.store))
        yield store.start()
        self.addCleanup(store.stop)
        account = yield self.store.create_account("Alice", HASH)
        self.assertEqual((yield store.account_by_name("alice")), account)


def entity(entity_id: str, version: int = 0, **fields) -> dict:
    """An entity record (L{Entity.to_dict}) at C{version}."""
    fields = {"x": 0.0, "y": 0.0, **fields}
    return Entity(entity_id, PLAYER, version=version, **fields).to_dict()


def dataclass_dict(record: Account | Character) -> dict:
    return dataclasses.asdict(record)


class SQLiteStoreTests(StoreTestsMixin, unittest.TestCase):
    def setUp(self):
        self.path = os.path.abspath(os.path.join(self.mktemp(), "db", "mmo.sqlite3"))
        return super().setUp()

    def make_store(self, fresh=False, reactor=None):
        if fresh:
            self.path = os.path.abspath(os.path.join(self.mktemp(), "mmo.sqlite3"))
        return SQLiteStore(self.path, reactor=reactor)

    def store_config(self):
        return load_config(self, f'[store]\nbackend = "sqlite"\npath = "{self.path}"\n')

    def query(self, sql, path=None):
        with sqlite3.connect(path or self.path) as conn:
            return conn.execute(sql).fetchall()

    @defer.inlineCallbacks
    def test_pragmas(self):
        """WAL, synchronous=FULL and foreign keys on the store's connection."""
        pool = self.store._pool
        values = yield pool.runWithConnection(
            lambda conn: [
                conn.execute(f"PRAGMA {name}").fetchone()[0]
                for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            ]
        )
        self.assertEqual(values, ["wal", 2, 1, store_sqlite.BUSY_TIMEOUT_MS])

    def test_schema(self):
        self.assertEqual(self.query("PRAGMA user_version"), [(len(store_sqlite.MIGRATIONS),)])
        self.assertEqual(self.query("PRAGMA application_id"), [(store_sqlite.APPLICATION_ID,)])
        columns = [row[1] for row in self.query("PRAGMA table_info(accounts)")]
        self.assertEqual(columns, ["id", "name", "name_key", "password_hash", "created", "banned"])
        columns = [row[1] for row in self.query("PRAGMA table_info(characters)")]
        self.assertEqual(columns, ["id", "account_id", "name", "name_key", "created", "data"])

    @defer.inlineCallbacks
    def test_rows(self):
        """Names are stored with their casefolded key; data as msgpack."""
        made = yield self.populate()
        rows = self.query("SELECT name, name_key, banned FROM accounts ORDER BY created")
        self.assertEqual(rows, [("Alice", "alice", 0), ("Bob", "bob", 1)])
        (data,) = self.query(f"SELECT data FROM characters WHERE id = '{made['hero'].id}'")[0]
        self.assertIsInstance(data, bytes)

    @defer.inlineCallbacks
    def test_two_stores_one_file(self):
        """Two connections to one file (as two processes): still exactly one winner."""
        other = yield self.open_store()
        results = yield gather(
            [store.create_account("Rush", HASH) for store in (self.store, other) * 10]
        )
        self.assertEqual(len([ok for ok, _ in results if ok]), 1)
        for ok, failure in results:
            if not ok:
                self.assertTrue(failure.check(AlreadyExists), failure)

    @defer.inlineCallbacks
    def test_no_acknowledged_registration_lost(self):
        """
        A process killed (SIGKILL) right after its registrations were
        acknowledged leaves every one of them in the file.
        """
        yield self.store.stop()
        protocol = KilledWriter(count=20)
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        reactor.spawnProcess(
            protocol, sys.executable, [sys.executable, "-c", WRITER, self.path], env=env
        )
        ids = yield protocol.ended
        self.assertEqual(len(ids), 20, protocol.errors)
        again = yield self.open_store()
        for i, account_id in enumerate(ids):
            account = yield again.account_by_id(account_id)
            self.assertEqual(account.name, f"Player{i}")

    @defer.inlineCallbacks
    def test_creates_directory(self):
        self.assertTrue(os.path.isdir(os.path.dirname(self.path)))
        yield self.store.create_account("Alice", HASH)
        self.assertTrue(os.path.exists(self.path))

    @defer.inlineCallbacks
    def test_private_files(self):
        """
        Under umask 022 the directory the store makes is 0700, and the
        database, its -wal and its -shm are 0600: they hold password hashes.
        """
        yield self.store.stop()
        old_umask = os.umask(0o022)
        self.addCleanup(os.umask, old_umask)
        directory = os.path.join(os.path.abspath(self.mktemp()), "var")
        self.path = os.path.join(directory, "mmo.sqlite3")
        self.store = yield self.open_store()
        yield self.store.create_account("Alice", HASH)
        modes = {
            name: stat.S_IMODE(os.stat(os.path.join(directory, name)).st_mode)
            for name in sorted(os.listdir(directory))
        }
        self.assertEqual(
            modes,
            {"mmo.sqlite3": 0o600, "mmo.sqlite3-shm": 0o600, "mmo.sqlite3-wal": 0o600},
        )
        self.assertEqual(stat.S_IMODE(os.stat(directory).st_mode), 0o700)

    @defer.inlineCallbacks
    def test_older_files_narrowed(self):
        """Files an older mmo left readable by all are 0600 once the store starts."""
        yield self.store.stop()
        # Another process's connection keeps the -wal and -shm files there.
        other = sqlite3.connect(self.path)
        self.addCleanup(other.close)
        other.execute("PRAGMA journal_mode = WAL")
        other.execute("CREATE TABLE IF NOT EXISTS scratch (x)")
        for suffix in ("", "-wal", "-shm"):
            os.chmod(self.path + suffix, 0o644)
        self.store = yield self.open_store()
        for suffix in ("", "-wal", "-shm"):
            self.assertEqual(stat.S_IMODE(os.stat(self.path + suffix).st_mode), 0o600, suffix)

    @defer.inlineCallbacks
    def test_migrates_empty_database(self):
        """A database at version 0 (a new, empty file) is migrated."""
        path = os.path.join(self.mktemp(), "old.sqlite3")
        os.makedirs(os.path.dirname(path))
        sqlite3.connect(path).close()
        self.assertEqual(self.query("PRAGMA user_version", path), [(0,)])
        store = SQLiteStore(path, reactor=self.clock)
        yield store.start()
        self.addCleanup(store.stop)
        self.assertEqual(self.query("PRAGMA user_version", path), [(len(store_sqlite.MIGRATIONS),)])
        account = yield store.create_account("Alice", HASH)
        self.assertEqual((yield store.account_by_name("alice")), account)

    @defer.inlineCallbacks
    def test_newer_database_refused(self):
        yield self.store.stop()
        newer = len(store_sqlite.MIGRATIONS) + 1
        self.query(f"PRAGMA user_version = {newer}")
        error = yield self.assertFailure(self.make_store().start(), StoreError)
        self.assertIn(self.path, str(error))
        self.assertIn(f"version {newer}", str(error))
        self.assertEqual(self.query("PRAGMA user_version"), [(newer,)])

    @defer.inlineCallbacks
    def test_migrations_in_order_keep_data(self):
        """A later migration runs on the data the earlier ones left."""
        made = yield self.populate()
        yield self.store.stop()

        def add_level(conn):
            conn.execute("ALTER TABLE characters ADD COLUMN level INTEGER NOT NULL DEFAULT 1")

        self.patch(store_sqlite, "MIGRATIONS", store_sqlite.MIGRATIONS + [add_level])
        again = yield self.open_store()
        self.assertEqual(self.query("PRAGMA user_version"), [(len(store_sqlite.MIGRATIONS),)])
        self.assertEqual(
            self.query("SELECT name, level FROM characters ORDER BY created"),
            [("Hero", 1), ("Mage", 1), ("Rogue", 1)],
        )
        self.assertEqual((yield again.account_by_name("alice")), made["alice"])

    @defer.inlineCallbacks
    def test_failed_migration_rolled_back(self):
        """A migration that fails changes nothing, and the store does not start."""
        made = yield self.populate()
        yield self.store.stop()
        before = len(store_sqlite.MIGRATIONS)

        def broken(conn):
            conn.execute("CREATE TABLE half_done (x)")
            conn.execute("DELETE FROM characters")
            conn.execute("SELECT no_such_column FROM accounts")

        self.patch(store_sqlite, "MIGRATIONS", store_sqlite.MIGRATIONS + [broken])
        error = yield self.assertFailure(self.make_store().start(), StoreError)
        self.assertIn("no_such_column", str(error))
        self.assertEqual(self.query("PRAGMA user_version"), [(before,)])
        self.assertEqual(self.query("SELECT name FROM sqlite_master WHERE name = 'half_done'"), [])
        self.assertEqual(len(self.query("SELECT * FROM characters")), 3)
        # With the code as it was, the store starts, data intact.
        self.patch(store_sqlite, "MIGRATIONS", store_sqlite.MIGRATIONS[:before])
        again = yield self.open_store()
        self.assertEqual((yield again.characters(made["alice"].id)), [made["hero"], made["mage"]])

    @defer.inlineCallbacks
    def test_not_a_database(self):
        path = os.path.join(self.mktemp(), "junk.sqlite3")
        os.makedirs(os.path.dirname(path))
        with open(path, "wb") as f:
            f.write(b"this is not a database" * 100)
        error = yield self.assertFailure(SQLiteStore(path).start(), StoreError)
        self.assertIn(path, str(error))

    @defer.inlineCallbacks
    def test_other_application_refused(self):
        path = os.path.join(self.mktemp(), "other.sqlite3")
        os.makedirs(os.path.dirname(path))
        with sqlite3.connect(path) as conn:
            conn.execute("PRAGMA application_id = 42")
        error = yield self.assertFailure(SQLiteStore(path).start(), StoreError)
        self.assertIn(path, str(error))
        self.assertIn("not an mmo store", str(error))

    @defer.inlineCallbacks
    def test_unusable_directory(self):
        blocker = self.mktemp()
        with open(blocker, "w") as f:
            f.write("a file, not a directory")
        path = os.path.join(blocker, "mmo.sqlite3")
        error = yield self.assertFailure(SQLiteStore(path).start(), StoreError)
        self.assertIn(path, str(error))

    @defer.inlineCallbacks
    def test_not_started(self):
        store = SQLiteStore(os.path.join(self.mktemp(), "x.sqlite3"))
        yield self.assertFailure(store.create_account("Alice", HASH), StoreError)
        yield store.stop()

    @defer.inlineCallbacks
    def test_restore_is_atomic(self):
        """A restore that fails half-way leaves the store empty."""
        yield self.populate()
        dump = yield self.store.dump()
        other = yield self.open_store(fresh=True)
        original = store_sqlite.pack_data
        calls = []

        def failing(data):
            calls.append(data)
            if len(calls) == len(dump["characters"]):
                raise StoreError("disk on fire")
            return original(data)

        self.patch(store_sqlite, "pack_data", failing)
        yield self.assertFailure(other.restore(dump), StoreError)
        self.assertEqual((yield other.dump())["accounts"], [])


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: A process that registers accounts one after the other, printing the id of
#: each as soon as it is acknowledged, then waits to be killed.
WRITER = """
import sys
from twisted.internet import defer, task
from mmo.store.sqlite import SQLiteStore

@defer.inlineCallbacks
def main(reactor, path):
    store = SQLiteStore(path)
    yield store.start()
    for i in range(20):
        account = yield store.create_account(f"Player{i}", "hash")
        sys.stdout.write(account.id + "\\n")
        sys.stdout.flush()
    yield defer.Deferred()

task.react(main, sys.argv[1:])
"""


class UnavailableTests(unittest.TestCase):
    """Which backend failures are L{StoreUnavailable}: the ones a retry may cure."""

    def test_redis_failures(self):
        unavailable = [
            txredisapi.ConnectionError("Lost connection"),
            txredisapi.ConnectionError("Not connected"),
            txredisapi.ResponseError("LOADING Redis is loading the dataset in memory"),
            txredisapi.ResponseError("READONLY You can't write against a read only replica."),
            txredisapi.ResponseError("MASTERDOWN Link with MASTER is down"),
        ]
        other = [
            txredisapi.ResponseError("ERR wrong number of arguments for 'hset' command"),
            txredisapi.ResponseError("WRONGTYPE Operation against a key holding the wrong kind"),
            ValueError("a bug"),
        ]
        for error in unavailable:
            self.assertTrue(store_redis._unavailable(Failure(error)), error)
        for error in other:
            self.assertFalse(store_redis._unavailable(Failure(error)), error)

    def test_sqlite_locked(self):
        """SQLite locked past the busy timeout is unavailable; other errors are not."""
        store = SQLiteStore(os.path.abspath(self.mktemp()))
        locked = sqlite3.OperationalError("database is locked")
        locked.sqlite_errorcode = sqlite3.SQLITE_BUSY

        def fail(conn, error):
            raise error

        self.assertRaises(StoreUnavailable, store._guard, None, fail, locked)
        error = self.assertRaises(
            StoreError, store._guard, None, fail, sqlite3.OperationalError("no such table: x")
        )
        self.assertNotIsInstance(error, StoreUnavailable)


class KilledWriter(protocol.ProcessProtocol):
    """Collects the ids L{WRITER} prints; kills it once it printed C{count}."""

    def __init__(self, count):
        self.count = count
        self.buffer = b""
        self.errors = b""
        self.ids: list[str] = []
        self.ended = defer.Deferred()

    def outReceived(self, data):
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        self.ids += [line.decode() for line in lines]
        if len(self.ids) >= self.count:
            self.transport.signalProcess("KILL")

    def errReceived(self, data):
        self.errors += data

    def processEnded(self, reason):
        self.ended.callback(self.ids)


class RedisStoreTests(StoreTestsMixin, unittest.TestCase):
    def setUp(self):
        self.server = start_redis(self)
        self.prefix = "test"
        self.stores = 0
        return super().setUp()

    def redis_config(self, server=None, prefix=None, extra=""):
        server = server or self.server
        text = redis_config_text(server, prefix or self.prefix)
        return load_config(self, f'[store]\nbackend = "redis"\n{text}{extra}')

    def make_store(self, fresh=False, reactor=None):
        if fresh:
            self.stores += 1
            self.prefix = f"test{self.stores}"
        return RedisStore(self.redis_config(), reactor=reactor)

    def store_config(self):
        return self.redis_config()

    @defer.inlineCallbacks
    def raw(self, server=None, extra=""):
        """A plain connection to the server, for looking at keys."""
        conn = yield connect_redis(
            self.redis_config(server, extra=extra), pool=False, convert_numbers=False
        )
        self.addCleanup(conn.disconnect)
        return conn

    @defer.inlineCallbacks
    def test_key_layout(self):
        made = yield self.populate()
        conn = yield self.raw()
        alice, hero = made["alice"], made["hero"]
        keys = sorted((yield conn.keys("*")))
        self.assertTrue(all(key.startswith("test:") for key in keys), keys)
        self.assertEqual((yield conn.get("test:account-name:alice")), alice.id)
        self.assertEqual((yield conn.get("test:character-name:hero")), hero.id)
        fields = yield conn.hgetall(f"test:account:{alice.id}")
        self.assertEqual(fields["name"], "Alice")
        self.assertEqual(fields["name_key"], "alice")
        self.assertEqual(fields["banned"], "0")
        self.assertEqual(
            (yield conn.zrange(f"test:account-characters:{alice.id}")),
            [hero.id, made["mage"].id],
        )
        self.assertEqual((yield conn.zrange("test:accounts")), [alice.id, made["bob"].id])

    @defer.inlineCallbacks
    def test_newer_layout_refused(self):
        """Keys of a layout version this code does not know are not touched."""
        conn = yield self.raw()
        self.assertEqual((yield conn.get("test:store-schema")), "1")
        yield conn.set("test:store-schema", "2")
        error = yield self.assertFailure(self.make_store().start(), StoreError)
        self.assertIn("version 2", str(error))
        self.assertIn("'test'", str(error))

    @defer.inlineCallbacks
    def test_prefixes_separate(self):
        """Two prefixes on one server are two stores."""
        other = yield self.open_store(fresh=True)
        yield self.store.create_account("Alice", HASH)
        self.assertIsNone((yield other.account_by_name("Alice")))
        yield other.create_account("Alice", HASH)

    def test_default_prefix(self):
        conf = load_config(self, '[deployment]\nname = "realm-7"\n')
        self.assertEqual(key_prefix(conf), "realm-7")
        conf = load_config(self, '[deployment]\nname = "realm-7"\n[redis]\nprefix = "x:y"\n')
        self.assertEqual(key_prefix(conf), "x:y")

    @defer.inlineCallbacks
    def test_unreachable(self):
        """With nothing listening, start fails after connect_timeout, saying where."""
        port = free_port()
        conf = load_config(
            self,
            f'[store]\nbackend = "redis"\n[redis]\nport = {port}\nconnect_timeout = 1.0\n',
        )
        store = RedisStore(conf)
        error = yield self.assertFailure(store.start(), StoreError)
        self.assertIn(f"127.0.0.1:{port}", str(error))
        self.assertIn("refused", str(error))
        yield store.stop()

    @defer.inlineCallbacks
    def test_wrong_password(self):
        server = start_redis(self, password="right")
        conf = load_config(
            self,
            f'[store]\nbackend = "redis"\n[redis]\nport = {server.port}\npassword = "wrong"\n',
        )
        error = yield self.assertFailure(RedisStore(conf).start(), StoreError)
        self.assertIn(f"127.0.0.1:{server.port}", str(error))
        self.assertIn("auth", str(error).lower())

    @defer.inlineCallbacks
    def test_password_file(self):
        server = start_redis(self, password="s3cret")
        directory = self.mktemp()
        os.makedirs(directory)
        with open(os.path.join(directory, "password"), "w") as f:
            f.write("s3cret\n")
        conf = load_config(
            self,
            f'[store]\nbackend = "redis"\n[redis]\nport = {server.port}\n'
            f'password_file = "{os.path.abspath(directory)}/password"\n',
        )
        store = RedisStore(conf, reactor=self.clock)
        yield store.start()
        self.addCleanup(store.stop)
        account = yield store.create_account("Alice", HASH)
        self.assertEqual((yield store.account_by_name("ALICE")), account)

    @defer.inlineCallbacks
    def test_missing_password_file(self):
        conf = load_config(
            self,
            f'[store]\nbackend = "redis"\n[redis]\nport = {self.server.port}\n'
            'password_file = "/nonexistent/password"\n',
        )
        error = yield self.assertFailure(RedisStore(conf).start(), StoreError)
        self.assertIn("/nonexistent/password", str(error))

    @defer.inlineCallbacks
    def test_database_number(self):
        """[redis] db selects the database."""
        conf = self.redis_config(extra="db = 3\n")
        store = RedisStore(conf, reactor=self.clock)
        yield store.start()
        self.addCleanup(store.stop)
        yield store.create_account("Alice", HASH)
        self.assertIsNone((yield self.store.account_by_name("Alice")))
        conn = yield self.raw(extra="db = 3\n")
        self.assertEqual(len((yield conn.keys("test:account:*"))), 1)

    @defer.inlineCallbacks
    def test_no_acknowledged_registration_lost(self):
        """
        With appendonly and appendfsync always, Redis killed (SIGKILL) and
        started again has every registration that was acknowledged; a store
        that was connected carries on once Redis is back.
        """
        server = start_redis(self, appendonly=True)
        store = RedisStore(self.redis_config(server), reactor=self.clock)
        yield store.start()
        self.addCleanup(store.stop)
        accounts = yield defer.gatherResults(
            [store.create_account(f"Player{i}", HASH) for i in range(50)]
        )
        server.kill()
        server.start()
        again = RedisStore(self.redis_config(server), reactor=self.clock)
        yield again.start()
        self.addCleanup(again.stop)
        for account in accounts:
            self.assertEqual((yield again.account_by_name(account.name.lower())), account)
        self.assertEqual(len((yield again.dump())["accounts"]), 50)
        # The first store reconnects by itself (its commands wait for it).
        self.assertEqual((yield store.account_by_id(accounts[0].id)), accounts[0])
        yield self.assertFailure(store.create_account("player7", HASH), AlreadyExists)

    @defer.inlineCallbacks
    def test_unix_socket(self):
        server = ExtraArgsRedis(self, ["--unixsocket", "SOCKET", "--unixsocketperm", "700"])
        conf = load_config(
            self,
            f'[store]\nbackend = "redis"\n[redis]\nunix = "{server.socket}"\nprefix = "unix"\n',
        )
        store = RedisStore(conf, reactor=self.clock)
        yield store.start()
        self.addCleanup(store.stop)
        account = yield store.create_account("Alice", HASH)
        tcp = RedisStore(self.redis_config(server, prefix="unix"), reactor=self.clock)
        yield tcp.start()
        self.addCleanup(tcp.stop)
        self.assertEqual((yield tcp.account_by_name("alice")), account)

    @defer.inlineCallbacks
    def test_tls(self):
        """With tls, the server's certificate is checked against tls_ca."""
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        ca, other_ca = make_tls_files(directory)
        tls_port = free_port()
        server = ExtraArgsRedis(
            self,
            [
                "--tls-port",
                str(tls_port),
                "--tls-cert-file",
                os.path.join(directory, "server.crt"),
                "--tls-key-file",
                os.path.join(directory, "server.key"),
                "--tls-auth-clients",
                "no",
            ],
        )
        text = f'[store]\nbackend = "redis"\n[redis]\nport = {tls_port}\ntls = true\n'
        conf = load_config(self, f'{text}tls_ca = "{ca}"\n')
        store = RedisStore(conf, reactor=self.clock)
        yield store.start()
        self.addCleanup(store.stop)
        account = yield store.create_account("Alice", HASH)
        plain = RedisStore(self.redis_config(server, prefix="mmo"), reactor=self.clock)
        yield plain.start()
        self.addCleanup(plain.stop)
        self.assertEqual((yield plain.account_by_id(account.id)), account)
        # A server whose certificate the CA did not sign is not talked to.
        conf = load_config(self, f'{text}tls_ca = "{other_ca}"\nconnect_timeout = 0.5\n')
        error = yield self.assertFailure(RedisStore(conf).start(), StoreError)
        self.assertIn(f"127.0.0.1:{tls_port}", str(error))
        self.assertIn("certificate verify failed", str(error))

    @defer.inlineCallbacks
    def test_sentinel(self):
        """With sentinels, the master is found through them."""
        sentinel = SentinelServer(self, self.server)
        conf = self.redis_config(
            extra=f'sentinels = ["127.0.0.1:{sentinel.port}"]\nsentinel_master = "mmo-master"\n'
        )
        store = RedisStore(conf, reactor=self.clock)
        yield store.start()
        self.addCleanup(store.stop)
        account = yield store.create_account("Alice", HASH)
        self.assertEqual((yield self.store.account_by_name("alice")), account)
