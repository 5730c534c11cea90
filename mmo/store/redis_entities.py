"""
The Redis store's entity checkpoints (L{mmo.store.IStore}'s C{checkpoint},
C{transfer}, C{load_zone}, C{recover_zone}, C{load_entity},
C{remove_entity}): L{RedisEntities}, a mixin of
L{mmo.store.redis.RedisStore}, on its connection (C{_eval}, C{_call}) and
its keys (C{_entity_key}, C{_zone_entities_key}).
"""

from __future__ import annotations

from twisted.internet import defer

from mmo.store import (
    OwnershipConflict,
    check_transfer,
    check_zone,
    entity_rows,
    stored_entity,
)
from mmo.store.redis_records import text

# KEYS: the zone's entity set, then one entity key per record
# ARGV: zone, then id, version, data per record
# The ids refused: owned by another zone, or stored at another version.
CHECKPOINT = """
local refused = {}
for i = 2, #KEYS do
  local j = 2 + (i - 2) * 3
  local id, version, data = ARGV[j], ARGV[j + 1], ARGV[j + 2]
  local stored = redis.call('HMGET', KEYS[i], 'owner', 'version')
  if not stored[1] then
    redis.call('HSET', KEYS[i], 'id', id, 'owner', ARGV[1], 'version', version,
               'transfer_id', '', 'data', data)
    redis.call('SADD', KEYS[1], id)
  elseif stored[1] == ARGV[1] and stored[2] == version then
    redis.call('HSET', KEYS[i], 'data', data)
  else
    refused[#refused + 1] = id
  end
end
return refused
"""

# KEYS: entity key, the entity set of the zone it leaves, that of the zone it joins
# ARGV: id, from zone, to zone, transfer id, expected version, data
# {1 or 0 (refused), owner, version, transfer id, data} as stored after the call.
TRANSFER = """
local stored = redis.call('HMGET', KEYS[1], 'owner', 'version', 'transfer_id', 'data')
if stored[1] then
  local version = tonumber(stored[2])
  if stored[1] == ARGV[3] and stored[3] == ARGV[4] then
    return {1, stored[1], version, stored[3], stored[4]}
  end
  if stored[1] ~= ARGV[2] or version ~= tonumber(ARGV[5]) then
    return {0, stored[1], version, stored[3], stored[4]}
  end
end
local version = tonumber(ARGV[5]) + 1
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'owner', ARGV[3], 'version', version,
           'transfer_id', ARGV[4], 'data', ARGV[6])
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
return {1, ARGV[3], version, ARGV[4], ARGV[6]}
"""

# KEYS: the zone's entity set; ARGV: zone, prefix of entity keys, "1" to bump
# Flat {id, version, transfer id, data, ...} of the zone's entities, after
# bumping each version if asked.  The entity keys are built from the set's
# members, so this script is for a single Redis (not Redis Cluster).
ZONE_ENTITIES = """
local found = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = ARGV[2] .. id
  local stored = redis.call('HMGET', key, 'owner', 'version', 'transfer_id', 'data')
  if stored[1] == ARGV[1] then
    local version = tonumber(stored[2])
    if ARGV[3] == '1' then version = redis.call('HINCRBY', key, 'version', 1) end
    found[#found + 1] = id
    found[#found + 1] = version
    found[#found + 1] = stored[3]
    found[#found + 1] = stored[4]
  end
end
return found
"""

# KEYS: entity key, the zone's entity set; ARGV: zone, id
# 1: deleted; 0: the zone does not own it.
REMOVE_ENTITY = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[2])
return 1
"""


class RedisEntities:
    """
    The zones' entities, each a hash with its owner zone and version, and
    each zone's set of the entities it owns.
    """

    # Every write is one script, so the compare-and-set of an owner is
    # atomic whatever other processes do at the same time.

    @defer.inlineCallbacks
    def checkpoint(self, zone, records):
        check_zone(zone)
        rows = entity_rows(records)
        keys = [self._zone_entities_key(zone)] + [self._entity_key(row[0]) for row in rows]
        args = [zone]
        for entity_id, version, blob in rows:
            args += [entity_id, str(version), blob]
        refused = yield self._eval(CHECKPOINT, keys, args)
        return [text(entity_id) for entity_id in refused]

    @defer.inlineCallbacks
    def transfer(self, entity_id, from_zone, to_zone, transfer_id, record):
        version, blob = check_transfer(entity_id, from_zone, to_zone, transfer_id, record)
        done, owner, version, stored_transfer, data = yield self._eval(
            TRANSFER,
            [
                self._entity_key(entity_id),
                self._zone_entities_key(from_zone),
                self._zone_entities_key(to_zone),
            ],
            [entity_id, from_zone, to_zone, transfer_id, str(version), blob],
        )
        stored = stored_entity(entity_id, text(owner), int(version), text(stored_transfer), data)
        if not done:
            raise OwnershipConflict(stored)
        return stored

    def load_zone(self, zone):
        return self._zone_entities(zone, bump=False)

    def recover_zone(self, zone):
        return self._zone_entities(zone, bump=True)

    @defer.inlineCallbacks
    def _zone_entities(self, zone, bump):
        check_zone(zone)
        found = yield self._eval(
            ZONE_ENTITIES,
            [self._zone_entities_key(zone)],
            [zone, self._entity_key(""), "1" if bump else "0"],
        )
        entities = [
            stored_entity(text(found[i]), zone, int(found[i + 1]), text(found[i + 2]), found[i + 3])
            for i in range(0, len(found), 4)
        ]
        return sorted(entities, key=lambda entity: entity.id)

    @defer.inlineCallbacks
    def load_entity(self, entity_id):
        owner, version, transfer_id, data = yield self._call(
            "hmget", self._entity_key(entity_id), ["owner", "version", "transfer_id", "data"]
        )
        if owner is None:
            return None
        return stored_entity(entity_id, text(owner), int(version), text(transfer_id), data)

    @defer.inlineCallbacks
    def remove_entity(self, zone, entity_id):
        result = yield self._eval(
            REMOVE_ENTITY,
            [self._entity_key(entity_id), self._zone_entities_key(zone)],
            [zone, entity_id],
        )
        return result == 1
