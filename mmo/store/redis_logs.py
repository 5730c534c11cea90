"""
The Redis store's logs (L{mmo.store.IStore}'s C{append_log}, C{append_logs},
C{read_log}, and their part of a dump and a restore): L{RedisLogs}, a mixin
of L{mmo.store.redis.RedisStore}, on its connection (C{_eval}, C{_call}) and
its keys (C{_log_key}, C{_logs_key}).
"""

from __future__ import annotations

from twisted.internet import defer

from mmo.store import check_log_args, pack_record, unpack_data
from mmo.store.redis_records import batched, text

#: Records a restore appends to a log in one script.
LOG_CHUNK = 1000

# KEYS: the log, the index of logs; ARGV: keep, name, record, ...
# Appends the records, trims the log to its last `keep` and indexes its name.
APPEND_LOG = """
redis.call('RPUSH', KEYS[1], unpack(ARGV, 3))
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[1]), -1)
redis.call('SADD', KEYS[2], ARGV[2])
return 1
"""


class RedisLogs:
    """Each log a list of msgpack records, oldest first, and the set of every log's name."""

    def append_log(self, key, record, keep):
        return self.append_logs(key, [record], keep)

    @defer.inlineCallbacks
    def append_logs(self, key, records, keep):
        check_log_args(key, keep, "keep", 1)
        blobs = [pack_record(record) for record in records]
        if blobs:
            yield self._append_log(key, blobs, keep)

    def _append_log(self, key, blobs, keep):
        return self._eval(
            APPEND_LOG, [self._log_key(key), self._logs_key()], [str(keep), key, *blobs]
        )

    @defer.inlineCallbacks
    def read_log(self, key, limit):
        check_log_args(key, limit, "limit", 0)
        if limit == 0:
            # LRANGE from -0 would be the whole list.
            return []
        blobs = yield self._call("lrange", self._log_key(key), -limit, -1)
        return [unpack_data(blob) for blob in blobs]

    @defer.inlineCallbacks
    def _dump_logs(self):
        names = sorted(text(name) for name in (yield self._call("smembers", self._logs_key())))
        try:
            lists = yield batched(
                lambda name: self._call("lrange", self._log_key(name), 0, -1), names
            )
        except defer.FirstError as e:
            raise e.subFailure.value
        return [
            (name, [unpack_data(b) for b in blobs])
            for name, blobs in zip(names, lists, strict=True)
        ]

    @defer.inlineCallbacks
    def _restore_log(self, key, records):
        blobs = [pack_record(record) for record in records]
        for start in range(0, len(blobs), LOG_CHUNK):
            yield self._append_log(key, blobs[start : start + LOG_CHUNK], len(blobs))
