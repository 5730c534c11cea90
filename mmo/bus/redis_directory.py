"""
The service directory of L{mmo.bus.redis.RedisBus}: L{RedisDirectory}, a
mixin, and its scripts.  The directory is two keys, C{P:bus:dir} (hash,
name -> msgpack C{[name, info]}) and C{P:bus:dir:exp} (sorted set, name
scored by its expiry in Redis's milliseconds); an expired entry is
dropped by the next read.
"""

from __future__ import annotations

from twisted.internet import defer

from mmo.bus.memory import pack, unpack
from mmo.bus.redis_commands import NOW, milliseconds

#: KEYS: entries (hash), expiries (zset); ARGV: name, value, ttl ms.
ANNOUNCE = (
    NOW
    + """
local ttl = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], now + ttl, ARGV[1])
-- A directory nobody announces to any more goes away by itself.
for _, key in ipairs(KEYS) do
  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
end
return 1
"""
)

#: KEYS: entries, expiries; ARGV: name.
WITHDRAW = """
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""

#: KEYS: entries, expiries.  Drops expired entries, returns the live values.
SERVICES = (
    NOW
    + """
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, name in ipairs(dead) do
  redis.call('ZREM', KEYS[2], name)
  redis.call('HDEL', KEYS[1], name)
end
local live = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. now, '+inf')
local values = {}
for _, name in ipairs(live) do
  local value = redis.call('HGET', KEYS[1], name)
  if value then values[#values + 1] = value end
end
return values
"""
)


class RedisDirectory:
    """The directory methods of L{mmo.bus.IBus}, on L{mmo.bus.redis_commands.RedisCommands}."""

    def _directory_keys(self) -> list[str]:
        return [self._key("dir"), self._key("dir", "exp")]

    def announce(self, name: str, info: dict, ttl: float) -> defer.Deferred:
        try:
            value = pack([name, info])
        except Exception:
            return defer.fail()
        d = self._call(
            f"announce {name!r}",
            "eval",
            ANNOUNCE,
            self._directory_keys(),
            [name, value, milliseconds(ttl)],
        )
        return d.addCallback(lambda _: None)

    def withdraw(self, name: str) -> defer.Deferred:
        d = self._call(f"withdraw {name!r}", "eval", WITHDRAW, self._directory_keys(), [name])
        return d.addCallback(lambda _: None)

    def services(self, kind: str | None = None) -> defer.Deferred:
        d = self._call("read the directory", "eval", SERVICES, self._directory_keys(), [])

        def collect(values):
            result = {}
            for raw in values or ():
                entry = unpack(raw)
                if not (isinstance(entry, list) and len(entry) == 2):
                    continue
                name, info = entry
                if kind is None or (isinstance(info, dict) and info.get("kind") == kind):
                    result[name] = info
            return result

        return d.addCallback(collect)
