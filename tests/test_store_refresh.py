"""
Tests of the refresh tokens of L{mmo.store.IStore}: one suite,
L{RefreshTestsMixin}, run against both backends (SQLite on a temporary
file, Redis on a private redis-server): issue, rotation, reuse detection,
expiry on the store's clock, the per-account device limit, revocation by
device, by account and by a ban.
"""

from __future__ import annotations

import os

from twisted.internet import defer, task
from twisted.trial import unittest

from mmo.store import NotFound, RefreshFamily, RefreshReused, StoreError
from mmo.store.redis import RedisStore
from mmo.store.sqlite import SQLiteStore
from tests.redis import redis_config_text, start_redis
from tests.test_store import HASH, NOW, load_config

TTL = 1000.0
LIMIT = 3


def digest(n: int) -> str:
    """A stand-in for the SHA-256 of a token's secret."""
    return f"{n:064x}"


class RefreshTestsMixin:
    def make_store(self):
        raise NotImplementedError()

    @defer.inlineCallbacks
    def setUp(self):
        self.clock = task.Clock()
        self.clock.advance(NOW)
        self.store = self.make_store()
        yield self.store.start()
        self.addCleanup(self.store.stop)
        self.account = yield self.store.create_account("Alice", HASH)
        self.other = yield self.store.create_account("Bob", HASH)

    def issue(self, family, device="phone", token=1, account=None, limit=LIMIT):
        account_id = (account or self.account).id
        return self.store.issue_refresh(account_id, device, family, digest(token), TTL, limit)

    def rotate(self, family, token, new, device="phone"):
        return self.store.rotate_refresh(family, device, digest(token), digest(new), TTL)

    @defer.inlineCallbacks
    def devices(self, account=None):
        families = yield self.store.refresh_families((account or self.account).id)
        return [f.device for f in families]

    @defer.inlineCallbacks
    def test_issue_and_rotate(self):
        issued = yield self.issue("f1")
        self.assertEqual(
            issued,
            RefreshFamily("f1", self.account.id, "phone", digest(1), NOW, NOW, NOW + TTL),
        )
        self.assertEqual((yield self.store.refresh_families(self.account.id)), [issued])
        self.clock.advance(10)
        rotated, account = yield self.rotate("f1", 1, 2)
        self.assertEqual(account, self.account)
        later = NOW + 10
        self.assertEqual(
            rotated,
            RefreshFamily("f1", self.account.id, "phone", digest(2), NOW, later, later + TTL),
        )
        self.assertEqual((yield self.store.refresh_families(self.account.id)), [rotated])
        self.assertEqual((yield self.rotate("f1", 2, 3))[0].token_hash, digest(3))

    @defer.inlineCallbacks
    def test_spent_token_revokes_the_family(self):
        """A spent token presented again deletes its family, not the account's others."""
        yield self.issue("f1")
        yield self.issue("f2", device="laptop", token=7)
        yield self.rotate("f1", 1, 2)
        with self.assertRaises(RefreshReused) as caught:
            yield self.rotate("f1", 1, 3)
        self.assertEqual(
            (caught.exception.account_id, caught.exception.device), (self.account.id, "phone")
        )
        # The current token of the family is gone with it.
        self.assertIsNone((yield self.rotate("f1", 2, 3)))
        self.assertEqual((yield self.devices()), ["laptop"])
        self.assertIsNotNone((yield self.rotate("f2", 7, 8, device="laptop")))

    @defer.inlineCallbacks
    def test_unknown_family(self):
        self.assertIsNone((yield self.rotate("nope", 1, 2)))

    @defer.inlineCallbacks
    def test_other_device_is_refused_and_changes_nothing(self):
        yield self.issue("f1")
        self.assertIsNone((yield self.rotate("f1", 1, 2, device="laptop")))
        self.assertIsNone((yield self.rotate("f1", 5, 2, device="laptop")))
        self.assertEqual((yield self.rotate("f1", 1, 2))[0].token_hash, digest(2))

    @defer.inlineCallbacks
    def test_expiry(self):
        """A token expires TTL after its issue or last use, on the store's clock."""
        yield self.issue("f1")
        self.clock.advance(TTL - 1)
        yield self.rotate("f1", 1, 2)
        self.clock.advance(TTL - 1)
        yield self.rotate("f1", 2, 3)
        self.clock.advance(TTL)
        self.assertEqual((yield self.devices()), [])
        self.assertIsNone((yield self.rotate("f1", 3, 4)))
        # Deleted, not only refused: not even a reuse is seen.
        self.assertIsNone((yield self.rotate("f1", 2, 4)))

    @defer.inlineCallbacks
    def test_new_login_on_a_device_replaces_its_family(self):
        yield self.issue("f1")
        yield self.issue("f2", token=2)
        self.assertIsNone((yield self.rotate("f1", 1, 3)))
        families = yield self.store.refresh_families(self.account.id)
        self.assertEqual([f.family for f in families], ["f2"])

    @defer.inlineCallbacks
    def test_device_limit_revokes_least_recently_used(self):
        yield self.issue("f1", device="d1")
        self.clock.advance(1)
        yield self.issue("f2", device="d2")
        self.clock.advance(1)
        yield self.issue("f3", device="d3")
        self.clock.advance(1)
        yield self.rotate("f1", 1, 2, device="d1")
        self.clock.advance(1)
        yield self.issue("f4", device="d4")
        self.assertEqual((yield self.devices()), ["d4", "d1", "d3"])
        self.assertIsNone((yield self.rotate("f2", 1, 2, device="d2")))
        # Another account's families do not count.
        yield self.issue("g1", account=self.other)
        self.assertEqual((yield self.devices()), ["d4", "d1", "d3"])
        self.assertEqual((yield self.devices(self.other)), ["phone"])

    @defer.inlineCallbacks
    def test_revoke_device_and_account(self):
        yield self.issue("f1", device="d1")
        yield self.issue("f2", device="d2")
        yield self.issue("f3", device="d3")
        yield self.issue("g1", account=self.other)
        self.assertEqual((yield self.store.revoke_refresh(self.account.id, "d2")), 1)
        self.assertEqual((yield self.store.revoke_refresh(self.account.id, "d2")), 0)
        self.assertEqual(sorted((yield self.devices())), ["d1", "d3"])
        self.assertEqual((yield self.store.revoke_refresh(self.account.id)), 2)
        self.assertEqual((yield self.devices()), [])
        self.assertIsNone((yield self.rotate("f1", 1, 2, device="d1")))
        self.assertEqual((yield self.devices(self.other)), ["phone"])

    @defer.inlineCallbacks
    def test_ban_revokes_every_family(self):
        yield self.issue("f1", device="d1")
        yield self.issue("f2", device="d2")
        yield self.issue("g1", account=self.other)
        # A new hash (a rehash at login) or an unban leaves them.
        yield self.store.update_account(self.account.id, password_hash=HASH + "x", banned=False)
        self.assertEqual(len((yield self.devices())), 2)
        yield self.store.update_account(self.account.id, banned=True)
        self.assertEqual((yield self.devices()), [])
        self.assertIsNone((yield self.rotate("f1", 1, 2, device="d1")))
        self.assertEqual((yield self.devices(self.other)), ["phone"])

    @defer.inlineCallbacks
    def test_rotation_gives_the_account_as_it_is(self):
        """The account comes with the rotation, ban flag and all (the login checks it)."""
        yield self.issue("f1")
        yield self.store.update_account(self.account.id, password_hash=HASH + "x")
        _, account = yield self.rotate("f1", 1, 2)
        self.assertEqual(account.password_hash, HASH + "x")
        self.assertFalse(account.banned)

    @defer.inlineCallbacks
    def test_unknown_account(self):
        with self.assertRaises(NotFound):
            yield self.store.issue_refresh("0" * 32, "phone", "f1", digest(1), TTL, LIMIT)

    @defer.inlineCallbacks
    def test_bad_arguments(self):
        for args in [
            (self.account.id, "", "f1", digest(1), TTL, LIMIT),
            (self.account.id, "phone", None, digest(1), TTL, LIMIT),
            (self.account.id, "phone", "f1", "", TTL, LIMIT),
            (self.account.id, "phone", "f1", digest(1), 0, LIMIT),
            (self.account.id, "phone", "f1", digest(1), TTL, 0),
        ]:
            with self.assertRaises(StoreError, msg=repr(args)):
                yield self.store.issue_refresh(*args)
        self.assertEqual((yield self.devices()), [])


class SQLiteRefreshTests(RefreshTestsMixin, unittest.TestCase):
    def make_store(self):
        return SQLiteStore(os.path.abspath(self.mktemp()) + ".sqlite3", reactor=self.clock)

    @defer.inlineCallbacks
    def test_rotation_leaves_writes_synchronous(self):
        """
        A rotation commits without a fsync of its own; every other write
        still waits for the disk afterwards, a refused one too.
        """
        yield self.issue("f1")
        yield self.rotate("f1", 1, 2)
        with self.assertRaises(RefreshReused):
            yield self.rotate("f1", 1, 3)
        self.assertEqual((yield self.store._pool.runQuery("PRAGMA synchronous")), [(2,)])


class RedisRefreshTests(RefreshTestsMixin, unittest.TestCase):
    def make_store(self):
        server = start_redis(self)
        text = f'[store]\nbackend = "redis"\n{redis_config_text(server, "test")}'
        return RedisStore(load_config(self, text), reactor=self.clock)
