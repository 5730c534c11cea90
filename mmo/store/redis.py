"""
The Redis store: accounts and characters in Redis, through txredisapi, for
deployments of several processes or machines.

Keys (C{P} is L{key_prefix}, C{{id}} 32 hex digits, C{{key}} a casefolded
name):

  - C{P:account:{id}}: hash C{id name name_key password_hash created banned};
  - C{P:account-name:{key}}: string, the id of the account of that name;
  - C{P:accounts}: sorted set of every account id, scored by C{created};
  - C{P:character:{id}}: hash C{id account_id name name_key created data},
    C{data} being msgpack bytes;
  - C{P:character-name:{key}}: string, the id of the character of that name;
  - C{P:account-characters:{id}}: sorted set of the account's character ids,
    scored by C{created};
  - C{P:log:{name}}: list, the records of the log C{name} (msgpack each),
    oldest first;
  - C{P:logs}: set of the names of every log, for L{RedisStore.dump};
  - C{P:entity:{id}}: hash C{id owner version transfer_id data}, the
    checkpoint of a world entity (C{data} msgpack; C{transfer_id} empty
    when no transfer set the owner);
  - C{P:zone-entities:{zone}}: set of the ids of the entities C{zone} owns;
  - C{P:refresh:{family}}: hash C{family account_id device token_hash
    created used expires}, a device's refresh token family (the token's
    secret only as its SHA-256), with a Redis expiry at C{expires};
  - C{P:account-refresh:{id}}: sorted set of the account's families,
    scored by C{used} (members whose hash expired are dropped when seen);
  - C{P:store-schema}: the version of this layout, L{SCHEMA_VERSION};
  - the keys of scheduled jobs: see L{mmo.store.redis_jobs};
  - the keys of the economy's ledger: see L{mmo.store.redis_economy}.

Every write that touches more than one key is one Lua script (C{EVAL}), so
it is atomic: of concurrent creations of one name exactly one finds the name
key absent, and a deletion frees the name in the same step.  Values are
binary (msgpack), so the connection is made with C{charset=None} and
C{convertNumbers} off: every reply is bytes, decoded here, and a name such
as C{"007"} is never turned into a number.

Durability is the server's: see C{docs/store.md} (C{appendonly yes} with
C{appendfsync always} for no loss of an acknowledged write).
"""

from __future__ import annotations

import txredisapi
from twisted.internet import defer, error
from twisted.internet.interfaces import IReactorTCP
from twisted.logger import Logger
from zope.interface import implementer

from mmo.metrics.registry import timed_store
from mmo.redis import RedisConnectError, connect_redis, key_prefix, redis_address
from mmo.store import (
    DUMP_VERSION,
    Account,
    AlreadyExists,
    Character,
    IEconomyStore,
    ILadderStore,
    InFlight,
    IStore,
    NotEmpty,
    NotFound,
    StoreError,
    StoreUnavailable,
    check_name,
    dump_logs,
    dump_record,
    name_key,
    new_id,
    pack_data,
    read_dump,
    read_dump_logs,
    unpack_data,
)
from mmo.store.common_economy_dump import read_dump_economy
from mmo.store.common_ladder import dump_ladders, read_dump_ladders
from mmo.store.jobs import dump_jobs, read_dump_jobs
from mmo.store.redis_economy import RedisEconomy
from mmo.store.redis_entities import RedisEntities
from mmo.store.redis_jobs import RedisJobs
from mmo.store.redis_ladder import RedisLadder, RedisLadderBackup
from mmo.store.redis_logs import RedisLogs
from mmo.store.redis_records import (
    account_record,
    batched,
    character_record,
    hash_fields,
    number,
    text,
)
from mmo.store.redis_refresh import RefreshTokens

log = Logger()

#: Version of the key layout, kept in C{P:store-schema}.  (The logs and the
#: refresh tokens, added later, are new keys only: a layout without them is
#: still version 1.)
SCHEMA_VERSION = 1

# KEYS: schema key; ARGV: this code's version.  The stored version (set to
# ARGV[1] if there was none).
CHECK_SCHEMA = """
local version = redis.call('GET', KEYS[1])
if not version then
  redis.call('SET', KEYS[1], ARGV[1])
  return tonumber(ARGV[1])
end
return tonumber(version)
"""

# KEYS: name key, account key, account index
# ARGV: id, name, name_key, password_hash, created, banned
# 1: created; 0: the name is taken; -1: the id is taken.
CREATE_ACCOUNT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
redis.call('HSET', KEYS[2], 'id', ARGV[1], 'name', ARGV[2], 'name_key', ARGV[3],
           'password_hash', ARGV[4], 'created', ARGV[5], 'banned', ARGV[6])
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[1])
return 1
"""

# KEYS: account key, the account's refresh families
# ARGV: prefix of family keys, "1" to revoke the families (a ban), field, value, ...
# The account's fields after the change, or nil if there is no such account.
UPDATE_ACCOUNT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
if #ARGV > 2 then redis.call('HSET', KEYS[1], unpack(ARGV, 3)) end
if ARGV[2] == '1' then
  for _, family in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
    redis.call('DEL', ARGV[1] .. family)
  end
  redis.call('DEL', KEYS[2])
end
return redis.call('HGETALL', KEYS[1])
"""

# KEYS: account key, name key, character key, the account's character index
# ARGV: id, account_id, name, name_key, created, data
# 1: created; 0: the name is taken; -1: no such account; -2: the id is taken.
CREATE_CHARACTER = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if redis.call('EXISTS', KEYS[3]) == 1 then return -2 end
redis.call('HSET', KEYS[3], 'id', ARGV[1], 'account_id', ARGV[2], 'name', ARGV[3],
           'name_key', ARGV[4], 'created', ARGV[5], 'data', ARGV[6])
redis.call('SET', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[1])
return 1
"""

# KEYS: character key; ARGV: data
UPDATE_CHARACTER = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
redis.call('HSET', KEYS[1], 'data', ARGV[1])
return redis.call('HGETALL', KEYS[1])
"""

# KEYS: character key, name key, the account's character index; ARGV: id
# 1: deleted; 0: there was no such character.
DELETE_CHARACTER = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('DEL', KEYS[1])
return 1
"""


#: Error replies of a Redis that is not ready to serve yet or any more: it
#: is loading its data (after a restart), a replica or cut off from its
#: master (around a failover), or busy with a script.
_NOT_READY = ("LOADING", "READONLY", "MASTERDOWN", "BUSY", "TRYAGAIN", "NOREPLICAS")


def _unavailable(failure) -> bool:
    """Whether a command failed because Redis was unreachable or not ready (not our request)."""
    if failure.check(txredisapi.ConnectionError, error.ConnectError, error.ConnectionLost):
        return True
    if failure.check(txredisapi.ResponseError):
        return failure.getErrorMessage().split(" ", 1)[0] in _NOT_READY
    return False


@timed_store
@implementer(IStore, ILadderStore, IEconomyStore)
class RedisStore(RedisEntities, RedisLogs, RedisJobs, RedisLadder, RedisLadderBackup, RedisEconomy):
    """
    L{IStore} on Redis (the C{[redis]} section of C{config}).

    @param reactor: Gives the time (C{seconds()}) of registrations; if it is
        also a network reactor the connections use it, otherwise (a
        L{twisted.internet.task.Clock} in tests) the global reactor.
    @ivar in_flight: Its operations that have not finished (an
        L{InFlight}: C{len()} counts them).
    """

    def __init__(self, config, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self._config = config
        self._clock = reactor
        self._reactor = reactor
        if not IReactorTCP.providedBy(reactor):
            from twisted.internet import reactor as global_reactor

            self._reactor = global_reactor
        self.prefix = key_prefix(config)
        self._redis = None
        self.in_flight = InFlight()
        self._refresh = RefreshTokens(self._call, self._key, reactor)

    def __repr__(self) -> str:
        return f"<RedisStore {redis_address(self._config)} prefix {self.prefix!r}>"

    # -- keys ---------------------------------------------------------------

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def _account_key(self, account_id: str) -> str:
        return self._key("account", account_id)

    def _account_name_key(self, name: str) -> str:
        return self._key("account-name", name_key(name))

    def _accounts_key(self) -> str:
        return self._key("accounts")

    def _character_key(self, character_id: str) -> str:
        return self._key("character", character_id)

    def _character_name_key(self, name: str) -> str:
        return self._key("character-name", name_key(name))

    def _account_characters_key(self, account_id: str) -> str:
        return self._key("account-characters", account_id)

    def _log_key(self, name: str) -> str:
        return self._key("log", name)

    def _logs_key(self) -> str:
        return self._key("logs")

    def _entity_key(self, entity_id: str) -> str:
        return self._key("entity", entity_id)

    def _zone_entities_key(self, zone: str) -> str:
        return self._key("zone-entities", zone)

    # -- life cycle -------------------------------------------------------------

    @defer.inlineCallbacks
    def start(self):
        if self._redis is not None:
            raise StoreError("the Redis store is already started")
        try:
            redis = yield connect_redis(
                self._config, self._reactor, pool=True, charset=None, convert_numbers=False
            )
        except RedisConnectError as e:
            raise StoreError(str(e))
        self._redis = redis
        try:
            version = yield self._eval(CHECK_SCHEMA, [self._key("store-schema")], [SCHEMA_VERSION])
            if version != SCHEMA_VERSION:
                raise StoreError(
                    f"the Redis store at {redis_address(self._config)} (prefix "
                    f"{self.prefix!r}) has key layout version {version}, which this mmo "
                    f"does not know (version {SCHEMA_VERSION}); run a newer mmo"
                )
        except StoreError:
            yield self.stop()
            raise
        try:
            info = yield self._call("execute_command", "INFO", "persistence")
        except StoreError as e:
            # An ACL user may well not be allowed INFO; that is not our concern.
            log.info("Redis store: cannot check persistence: {error}", error=e)
        else:
            if b"aof_enabled:1" not in info:
                log.warn(
                    "Redis at {address} has appendonly off: writes acknowledged since "
                    "its last snapshot are lost if it stops uncleanly (see docs/store.md)",
                    address=redis_address(self._config),
                )
        log.info(
            "Redis store at {address}, prefix {prefix!r}",
            address=redis_address(self._config),
            prefix=self.prefix,
        )

    @defer.inlineCallbacks
    def stop(self):
        redis, self._redis = self._redis, None
        if redis is None:
            return
        # Closing a connection loses the replies still due on it; let the
        # commands already sent finish first, so that a write that reached
        # Redis is also acknowledged to its caller.  Bounded: with Redis
        # unreachable they would wait for a reconnection forever.
        timeout = self._config.redis.connect_timeout
        finished = yield self.in_flight.wait(timeout, self._reactor)
        if not finished:
            log.warn(
                "Redis store: commands still unanswered after {timeout} s were cancelled",
                timeout=timeout,
            )
        yield redis.disconnect()

    def _call(self, name, *args):
        """
        Run a txredisapi command; its errors become L{StoreError}s, and
        L{StoreUnavailable} where Redis could not be reached or was not
        ready (L{_unavailable}).
        """
        if self._redis is None:
            return defer.fail(StoreUnavailable("the Redis store is not started"))
        d = self.in_flight.track(defer.maybeDeferred(getattr(self._redis, name), *args))

        def failed(failure):
            message = f"Redis at {redis_address(self._config)}: {failure.getErrorMessage()}"
            raise (StoreUnavailable if _unavailable(failure) else StoreError)(message)

        return d.addErrback(failed)

    def _eval(self, script, keys, args):
        return self._call("eval", script, keys, args)

    # -- accounts ---------------------------------------------------------------

    @defer.inlineCallbacks
    def create_account(self, name, password_hash):
        check_name(name, "account")
        if not isinstance(password_hash, str) or not password_hash:
            raise StoreError("the password hash must be a non-empty string")
        account = Account(new_id(), name, password_hash, self._clock.seconds(), False)
        yield self._insert_account(account)
        return account

    @defer.inlineCallbacks
    def _insert_account(self, account: Account):
        result = yield self._eval(
            CREATE_ACCOUNT,
            [
                self._account_name_key(account.name),
                self._account_key(account.id),
                self._accounts_key(),
            ],
            [
                account.id,
                account.name,
                name_key(account.name),
                account.password_hash,
                number(account.created),
                "1" if account.banned else "0",
            ],
        )
        if result == 0:
            raise AlreadyExists(f"the account name {account.name!r} is taken")
        if result != 1:
            raise StoreError(f"the account id {account.id!r} is taken")

    @defer.inlineCallbacks
    def account_by_name(self, name):
        account_id = yield self._call("get", self._account_name_key(name))
        if account_id is None:
            return None
        return (yield self.account_by_id(text(account_id)))

    @defer.inlineCallbacks
    def account_by_id(self, account_id):
        fields = yield self._call("hgetall", self._account_key(account_id))
        return account_record(fields) if fields else None

    @defer.inlineCallbacks
    def update_account(self, account_id, password_hash=None, banned=None):
        args = []
        if password_hash is not None:
            if not isinstance(password_hash, str) or not password_hash:
                raise StoreError("the password hash must be a non-empty string")
            args += ["password_hash", password_hash]
        if banned is not None:
            args += ["banned", "1" if banned else "0"]
        fields = yield self._eval(
            UPDATE_ACCOUNT,
            [self._account_key(account_id), self._refresh.account_key(account_id)],
            [self._refresh.family_key(""), "1" if banned else "0", *args],
        )
        if fields is None:
            raise NotFound(f"no account {account_id!r}")
        return account_record(hash_fields(fields))

    # -- refresh tokens (mmo.store.redis_refresh) -----------------------------

    def issue_refresh(self, account_id, device, family, token_hash, ttl, limit):
        return self._refresh.issue(account_id, device, family, token_hash, ttl, limit)

    def rotate_refresh(self, family, device, token_hash, new_hash, ttl):
        return self._refresh.rotate(family, device, token_hash, new_hash, ttl)

    def revoke_refresh(self, account_id, device=None):
        return self._refresh.revoke(account_id, device)

    def refresh_families(self, account_id):
        return self._refresh.families(account_id)

    # -- characters -----------------------------------------------------------

    @defer.inlineCallbacks
    def create_character(self, account_id, name, data):
        check_name(name, "character")
        blob = pack_data(data)
        character = Character(new_id(), account_id, name, self._clock.seconds(), unpack_data(blob))
        yield self._insert_character(character, blob)
        return character

    @defer.inlineCallbacks
    def _insert_character(self, character: Character, blob: bytes):
        result = yield self._eval(
            CREATE_CHARACTER,
            [
                self._account_key(character.account_id),
                self._character_name_key(character.name),
                self._character_key(character.id),
                self._account_characters_key(character.account_id),
            ],
            [
                character.id,
                character.account_id,
                character.name,
                name_key(character.name),
                number(character.created),
                blob,
            ],
        )
        if result == 0:
            raise AlreadyExists(f"the character name {character.name!r} is taken")
        if result == -1:
            raise NotFound(f"no account {character.account_id!r}")
        if result != 1:
            raise StoreError(f"the character id {character.id!r} is taken")

    @defer.inlineCallbacks
    def characters(self, account_id):
        ids = yield self._call("zrange", self._account_characters_key(account_id), 0, -1)
        found = yield self._characters_by_id([text(i) for i in ids])
        return found

    @defer.inlineCallbacks
    def _characters_by_id(self, ids):
        try:
            replies = yield batched(lambda i: self._call("hgetall", self._character_key(i)), ids)
        except defer.FirstError as e:
            raise e.subFailure.value
        # A character deleted between the two reads is left out.
        return [character_record(fields) for fields in replies if fields]

    @defer.inlineCallbacks
    def character_by_id(self, character_id):
        fields = yield self._call("hgetall", self._character_key(character_id))
        return character_record(fields) if fields else None

    @defer.inlineCallbacks
    def update_character(self, character_id, data):
        blob = pack_data(data)
        fields = yield self._eval(UPDATE_CHARACTER, [self._character_key(character_id)], [blob])
        if fields is None:
            raise NotFound(f"no character {character_id!r}")
        return character_record(hash_fields(fields))

    @defer.inlineCallbacks
    def delete_character(self, character_id):
        # Names never change, so what is read here is still right when the
        # script runs; the script checks the character still exists.
        account_id, key = yield self._call(
            "hmget", self._character_key(character_id), ["account_id", "name_key"]
        )
        if account_id is None or key is None:
            return False
        result = yield self._eval(
            DELETE_CHARACTER,
            [
                self._character_key(character_id),
                self._key("character-name", text(key)),
                self._account_characters_key(text(account_id)),
            ],
            [character_id],
        )
        return result == 1

    # -- backup -----------------------------------------------------------------

    @defer.inlineCallbacks
    def dump(self):
        """
        Every record, each read atomically; writes made while the dump runs
        may or may not be in it (stop the servers for an exact snapshot).
        """
        ids = yield self._call("zrange", self._accounts_key(), 0, -1)
        try:
            replies = yield batched(
                lambda i: self._call("hgetall", self._account_key(text(i))), ids
            )
            accounts = [account_record(fields) for fields in replies if fields]
            lists = yield batched(
                lambda a: self._call("zrange", self._account_characters_key(a.id), 0, -1),
                accounts,
            )
        except defer.FirstError as e:
            raise e.subFailure.value
        character_ids = [text(i) for found in lists for i in found]
        characters = yield self._characters_by_id(character_ids)
        characters.sort(key=lambda c: (c.created, c.id))
        logs = yield self._dump_logs()
        ladders = yield self._dump_ladders()
        jobs = yield self._dump_jobs()
        economy = yield self._dump_economy()
        return {
            "version": DUMP_VERSION,
            "accounts": [dump_record(a) for a in accounts],
            "characters": [dump_record(c) for c in characters],
            **dump_logs(logs),
            **dump_ladders(ladders),
            **dump_jobs(jobs),
            **economy,
        }

    @defer.inlineCallbacks
    def restore(self, data):
        """
        Load a dump.  Everything is checked first, but the writes are not one
        transaction: if the connection fails half-way, delete the prefix's
        keys and restore again.
        """
        accounts, characters = read_dump(data)
        logs = read_dump_logs(data)
        ladders = read_dump_ladders(data)
        jobs = read_dump_jobs(data)
        ledger = read_dump_economy(data)
        count = yield self._call("zcard", self._accounts_key())
        count += yield self._call("scard", self._logs_key())
        count += yield self._call("scard", self._key("jobs"))
        count += len((yield self._ladder_store_keys()))
        count += yield self._economy_empty()
        if count:
            raise NotEmpty(
                f"the Redis store at {redis_address(self._config)} (prefix {self.prefix!r}) "
                "is not empty; restore only into an empty store"
            )
        try:
            yield batched(self._insert_account, accounts)
            yield batched(lambda c: self._insert_character(c, pack_data(c.data)), characters)
            # Each log's chunks in order, the logs side by side.
            yield batched(lambda log: self._restore_log(*log), logs)
            yield batched(self._restore_ladder, ladders)
            yield batched(self._restore_job, jobs)
        except defer.FirstError as e:
            raise e.subFailure.value
        yield self._restore_economy(ledger)
        log.info(
            "Redis store: restored {accounts} accounts, {characters} characters, {logs} logs, "
            "{ladders} ladders, {jobs} jobs and {postings} ledger postings",
            postings=len(ledger.postings) if ledger else 0,
            accounts=len(accounts),
            characters=len(characters),
            logs=len(logs),
            ladders=len(ladders),
            jobs=len(jobs),
        )
