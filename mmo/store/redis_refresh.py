"""
The Redis store's refresh tokens: a device's token family is a hash
(C{P:refresh:FAMILY}), an account's families a sorted set by last use
(C{P:account-refresh:ID}); each change is one script.  L{RefreshTokens} does
L{mmo.store.IStore}'s C{issue_refresh} and the rest for
L{mmo.store.redis.RedisStore}, on its connection.
"""

from __future__ import annotations

import math

from twisted.internet import defer

from mmo.store import NotFound, RefreshFamily, RefreshReused, StoreError, check_refresh
from mmo.store.redis_records import (
    account_record,
    batched,
    hash_fields,
    number,
    refresh_family,
    text,
)

# KEYS: account key, the account's refresh families, the new family's key
# ARGV: prefix of family keys, family, account id, device, token hash, now,
#       expires, ttl (whole seconds, rounded up), limit
# 1: issued; 0: no such account.  The family keys are built from the set's
# members, so this script (like the next two) is for a single Redis.
ISSUE_REFRESH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for _, family in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  local key = ARGV[1] .. family
  local device = redis.call('HGET', key, 'device')
  if (not device) or device == ARGV[4] then
    redis.call('DEL', key)
    redis.call('ZREM', KEYS[2], family)
  end
end
local excess = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[9]) + 1
if excess > 0 then
  for _, family in ipairs(redis.call('ZRANGE', KEYS[2], 0, excess - 1)) do
    redis.call('DEL', ARGV[1] .. family)
    redis.call('ZREM', KEYS[2], family)
  end
end
redis.call('HSET', KEYS[3], 'family', ARGV[2], 'account_id', ARGV[3], 'device', ARGV[4],
           'token_hash', ARGV[5], 'created', ARGV[6], 'used', ARGV[6], 'expires', ARGV[7])
redis.call('EXPIRE', KEYS[3], ARGV[8])
redis.call('ZADD', KEYS[2], ARGV[6], ARGV[2])
if redis.call('TTL', KEYS[2]) < tonumber(ARGV[8]) then redis.call('EXPIRE', KEYS[2], ARGV[8]) end
return 1
"""

# KEYS: the family's key
# ARGV: prefix of account family sets, family, device, token hash, new hash,
#       now, expires, ttl (whole seconds, rounded up), prefix of account keys
# {1, the family's fields, the account's}: rotated; {0}: no such family,
# expired or of another device; {-1, account id, device}: not the current
# token, family deleted.
ROTATE_REFRESH = """
local stored = redis.call('HMGET', KEYS[1], 'account_id', 'device', 'token_hash', 'expires')
if not stored[1] then return {0} end
local families = ARGV[1] .. stored[1]
if tonumber(stored[4]) <= tonumber(ARGV[6]) then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', families, ARGV[2])
  return {0}
end
if stored[2] ~= ARGV[3] then return {0} end
if stored[3] ~= ARGV[4] then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', families, ARGV[2])
  return {-1, stored[1], stored[2]}
end
redis.call('HSET', KEYS[1], 'token_hash', ARGV[5], 'used', ARGV[6], 'expires', ARGV[7])
redis.call('EXPIRE', KEYS[1], ARGV[8])
redis.call('ZADD', families, ARGV[6], ARGV[2])
if redis.call('TTL', families) < tonumber(ARGV[8]) then redis.call('EXPIRE', families, ARGV[8]) end
return {1, redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', ARGV[9] .. stored[1])}
"""

# KEYS: the account's refresh families; ARGV: prefix of family keys, device or ""
# How many families were deleted.
REVOKE_REFRESH = """
local deleted = 0
for _, family in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local key = ARGV[1] .. family
  local device = redis.call('HGET', key, 'device')
  if not device then
    redis.call('ZREM', KEYS[1], family)
  elseif ARGV[2] == '' or device == ARGV[2] then
    redis.call('DEL', key)
    redis.call('ZREM', KEYS[1], family)
    deleted = deleted + 1
  end
end
return deleted
"""


class RefreshTokens:
    """
    The refresh token families of a Redis store.

    @param call: The store's C{call(command, *args)}: a Deferred of the
        reply, failing with the store's errors.
    @param key: The store's key of C{(kind, id)} under its prefix.
    @param clock: What tells the time.
    """

    def __init__(self, call, key, clock):
        self._call = call
        self._key = key
        self._clock = clock

    def family_key(self, family: str) -> str:
        return self._key("refresh", family)

    def account_key(self, account_id: str) -> str:
        """The sorted set of the account's families."""
        return self._key("account-refresh", account_id)

    def _account(self, account_id: str) -> str:
        return self._key("account", account_id)

    @defer.inlineCallbacks
    def issue(self, account_id, device, family, token_hash, ttl, limit):
        check_refresh(account_id, device, family, token_hash, ttl, limit)
        now = self._clock.seconds()
        record = RefreshFamily(family, account_id, device, token_hash, now, now, now + ttl)
        result = yield self._call(
            "eval",
            ISSUE_REFRESH,
            [
                self._account(account_id),
                self.account_key(account_id),
                self.family_key(family),
            ],
            [
                self.family_key(""),
                family,
                account_id,
                device,
                token_hash,
                number(now),
                number(record.expires),
                str(math.ceil(ttl)),
                str(limit),
            ],
        )
        if result != 1:
            raise NotFound(f"no account {account_id!r}")
        return record

    @defer.inlineCallbacks
    def rotate(self, family, device, token_hash, new_hash, ttl):
        check_refresh("-", device, family, token_hash, ttl)
        check_refresh("-", device, family, new_hash, ttl)
        now = self._clock.seconds()
        result = yield self._call(
            "eval",
            ROTATE_REFRESH,
            [self.family_key(family)],
            [
                self.account_key(""),
                family,
                device,
                token_hash,
                new_hash,
                number(now),
                number(now + ttl),
                str(math.ceil(ttl)),
                self._account(""),
            ],
        )
        if result[0] == -1:
            raise RefreshReused(text(result[1]), text(result[2]))
        if result[0] != 1:
            return None
        account = hash_fields(result[2])
        return refresh_family(hash_fields(result[1])), account_record(account) if account else None

    @defer.inlineCallbacks
    def revoke(self, account_id, device=None):
        if device is not None and (not isinstance(device, str) or not device):
            raise StoreError(f"the device must be a non-empty string, got {device!r}")
        deleted = yield self._call(
            "eval",
            REVOKE_REFRESH,
            [self.account_key(account_id)],
            [self.family_key(""), device or ""],
        )
        return deleted

    @defer.inlineCallbacks
    def families(self, account_id):
        families = yield self._call("zrevrange", self.account_key(account_id), 0, -1)
        try:
            replies = yield batched(
                lambda f: self._call("hgetall", self.family_key(text(f))), families
            )
        except defer.FirstError as e:
            raise e.subFailure.value
        now = self._clock.seconds()
        found = [refresh_family(fields) for fields in replies if fields]
        live = [f for f in found if f.expires > now]
        return sorted(live, key=lambda f: (-f.used, f.family))
