"""
The expiring keys of L{mmo.bus.redis.RedisBus}: L{RedisKeys}, a mixin, and
its scripts.  Counts are C{P:bus:n:KEY}, claims C{P:bus:c:KEY}, values
C{P:bus:v:KEY} (msgpack).
"""

from __future__ import annotations

from twisted.internet import defer

from mmo.bus import PUT_MANY_CHUNK
from mmo.bus.memory import pack, unpack
from mmo.bus.redis_commands import milliseconds

#: KEYS: counter; ARGV: window ms.  INCR, and start the window on the first hit.
HIT = """
local n = redis.call('INCR', KEYS[1])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
"""

# KEYS: the keys; ARGV[1]: the expiry in ms (0 for none), then one value per key.
PUT_MANY = """
local px = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  if px > 0 then
    redis.call('SET', key, ARGV[i + 1], 'PX', px)
  else
    redis.call('SET', key, ARGV[i + 1])
  end
end
return #KEYS
"""


class RedisKeys:
    """
    The counts, claims and values of L{mmo.bus.IBus}, on
    L{mmo.bus.redis_commands.RedisCommands}.
    """

    def hit(self, key: str, window: float) -> defer.Deferred:
        d = self._call(f"count {key!r}", "eval", HIT, [self._key("n", key)], [milliseconds(window)])
        return d.addCallback(int)

    def count(self, key: str) -> defer.Deferred:
        d = self._call(f"read count {key!r}", "get", self._key("n", key))
        return d.addCallback(lambda value: 0 if value is None else int(value))

    def clear(self, key: str) -> defer.Deferred:
        keys = [self._key(kind, key) for kind in ("n", "c", "v")]
        d = self._call(f"clear {key!r}", "delete", keys)
        return d.addCallback(lambda _: None)

    def claim(self, key: str, ttl: float) -> defer.Deferred:
        d = self._call(
            f"claim {key!r}",
            "set",
            self._key("c", key),
            b"1",
            pexpire=milliseconds(ttl),
            only_if_not_exists=True,
        )
        return d.addCallback(lambda reply: reply is not None)

    def put(self, key: str, value, ttl: float | None = None) -> defer.Deferred:
        try:
            data = pack(value)
        except Exception:
            return defer.fail()
        pexpire = None if ttl is None else milliseconds(ttl)
        d = self._call(f"put {key!r}", "set", self._key("v", key), data, pexpire=pexpire)
        return d.addCallback(lambda _: None)

    def put_many(self, items, ttl: float | None = None) -> defer.Deferred:
        try:
            packed = [(self._key("v", key), pack(value)) for key, value in items]
        except Exception:
            return defer.fail()
        expiry = 0 if ttl is None else milliseconds(ttl)
        chunks = [packed[i : i + PUT_MANY_CHUNK] for i in range(0, len(packed), PUT_MANY_CHUNK)]
        d = defer.gatherResults(
            [
                self._call(
                    f"put {len(chunk)} keys",
                    "eval",
                    PUT_MANY,
                    [key for key, _ in chunk],
                    [expiry] + [data for _, data in chunk],
                )
                for chunk in chunks
            ],
            consumeErrors=True,
        )
        # The first failure, unwrapped, as put() fails.
        d.addErrback(lambda f: f.value.subFailure if f.check(defer.FirstError) else f)
        return d.addCallback(lambda _: None)

    def get(self, key: str) -> defer.Deferred:
        d = self._call(f"get {key!r}", "get", self._key("v", key))
        return d.addCallback(lambda raw: None if raw is None else unpack(raw))
