"""
The leases of L{mmo.bus.redis.RedisBus}: L{RedisLeases}, a mixin, and its
scripts.  A lease is C{P:bus:lease:KEY} (a string C{"TOKEN HOLDER"},
expiring) with its last token in C{P:bus:lease-token:KEY} (never expiring).
"""

from __future__ import annotations

from twisted.internet import defer

from mmo.bus.redis_commands import milliseconds

#: KEYS: the lease (a string "TOKEN HOLDER", expiring), its last token
#: (never expiring); ARGV: holder, ttl ms.  The token if ARGV[1] holds the
#: lease now (renewed, or taken with the next token), else nil.  A new token
#: is the last one plus one, or Redis's clock in milliseconds when that is
#: higher: a Redis that lost its data (it keeps none on disk) still numbers
#: new holdings above every token the store has seen.
LEASE = """
local held = redis.call('GET', KEYS[1])
if held then
  local space = string.find(held, ' ', 1, true)
  if string.sub(held, space + 1) ~= ARGV[1] then return false end
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return tonumber(string.sub(held, 1, space - 1))
end
if redis.replicate_commands then redis.replicate_commands() end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local token = math.max((tonumber(redis.call('GET', KEYS[2])) or 0) + 1, now)
redis.call('SET', KEYS[2], token)
redis.call('SET', KEYS[1], token .. ' ' .. ARGV[1], 'PX', ARGV[2])
return token
"""

#: KEYS: the lease; ARGV: holder.  1 if it held the lease (now ended), else 0.
RELEASE_LEASE = """
local held = redis.call('GET', KEYS[1])
if held and string.sub(held, string.find(held, ' ', 1, true) + 1) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""


class RedisLeases:
    """The lease methods of L{mmo.bus.IBus}, on L{mmo.bus.redis_commands.RedisCommands}."""

    def _lease_keys(self, key: str) -> list[str]:
        return [self._key("lease", key), self._key("lease-token", key)]

    def lease(self, key: str, holder: str, ttl: float) -> defer.Deferred:
        d = self._call(
            f"lease {key!r}", "eval", LEASE, self._lease_keys(key), [holder, milliseconds(ttl)]
        )
        return d.addCallback(lambda token: None if token is None else int(token))

    def release_lease(self, key: str, holder: str) -> defer.Deferred:
        d = self._call(
            f"release lease {key!r}", "eval", RELEASE_LEASE, self._lease_keys(key)[:1], [holder]
        )
        return d.addCallback(lambda released: bool(int(released)))

    def lease_holder(self, key: str) -> defer.Deferred:
        d = self._call(f"read lease {key!r}", "get", self._key("lease", key))

        def parse(raw):
            if raw is None:
                return None
            token, _, holder = raw.decode("utf-8", "replace").partition(" ")
            return holder, int(token)

        return d.addCallback(parse)
