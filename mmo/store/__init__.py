"""
The store: durable data (accounts, characters and, later, checkpoints,
ladder and economy) behind one interface, L{IStore}, with two backends:

  - L{mmo.store.sqlite}: SQLite through C{twisted.enterprise.adbapi}, the
    embedded default;
  - L{mmo.store.redis}: Redis through txredisapi, for several processes or
    machines.

Every method returns a Deferred; names of accounts and characters are
unique without regard to case (compared by C{str.casefold}).  Use
L{make_store} to get the backend the config asks for.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field

import msgpack
from twisted.internet import defer
from zope.interface import Interface

from mmo.unavailable import BackendUnavailable

#: Version of the format of L{IStore.dump}.
DUMP_VERSION = 1


class StoreError(Exception):
    """A store operation failed for a reason the caller can act on."""


class StoreUnavailable(StoreError, BackendUnavailable):
    """
    The store's server could not be reached, dropped the connection or is
    not ready (Redis loading its data; SQLite locked by another writer):
    the operation was not done, or its outcome is unknown, and may be
    retried.  A client is told C{unavailable} (L{mmo.unavailable}).
    """


class AlreadyExists(StoreError):
    """The name is taken (without regard to case)."""


class NotFound(StoreError):
    """No such account or character."""


class NotEmpty(StoreError):
    """A restore was asked of a store that already holds data."""


class OwnershipConflict(StoreError):
    """
    A L{IStore.transfer} was refused: the entity is not owned by the zone
    it was to be taken from, or not at the version the transfer expected.

    @ivar current: The entity as the store holds it (a L{StoredEntity}).
    """

    def __init__(self, current: StoredEntity):
        super().__init__(
            f"entity {current.id!r} is owned by zone {current.owner!r} at version "
            f"{current.version} (last transfer {current.transfer_id!r})"
        )
        self.current = current


@dataclass
class Account:
    """
    A player account.

    @ivar id: Opaque, unique, never reused (32 hex digits).
    @ivar name: The name as registered (case kept).
    @ivar password_hash: The encoded memory-hard hash; never logged or sent.
    @ivar created: Unix time of registration.
    @ivar banned: Whether logins are refused.
    """

    id: str
    name: str
    password_hash: str = field(repr=False)
    created: float
    banned: bool = False


@dataclass
class RefreshFamily:
    """
    The refresh token of one device of an account: a family of tokens, each
    spent when it is used and replaced by the next (L{IStore.rotate_refresh}).

    @ivar family: Opaque, unique, random; the public half of the token.
    @ivar token_hash: The SHA-256 (hex) of the current token's secret half;
        the token itself is never stored.
    @ivar device: The client's label of the device the family is bound to.
    @ivar created: Unix time the family was issued (a password login).
    @ivar used: Unix time of its last issue or rotation.
    @ivar expires: Unix time after which its token is refused.
    """

    family: str
    account_id: str
    device: str
    token_hash: str = field(repr=False)
    created: float
    used: float
    expires: float


class RefreshReused(StoreError):
    """
    A refresh token that was already spent (or never issued) was presented
    for a family: the family is revoked (a stolen token's thief or its
    owner used it after the other).

    @ivar account_id: The family's account.
    @ivar device: The family's device.
    """

    def __init__(self, account_id: str, device: str):
        super().__init__(f"a spent refresh token of account {account_id!r} on {device!r}")
        self.account_id = account_id
        self.device = device


@dataclass
class Character:
    """
    A character of an account.

    @ivar data: Game-defined attributes (msgpack-able: dicts, lists, str,
        int, float, bool, None).
    """

    id: str
    account_id: str
    name: str
    created: float
    data: dict = field(default_factory=dict)


@dataclass
class StoredEntity:
    """
    The checkpoint of a world entity, with the one zone that owns it.

    @ivar id: The entity's id.
    @ivar owner: The name of the zone that holds its real; no other zone
        may write it.
    @ivar version: The fencing token: bumped by every L{IStore.transfer}
        (a handoff, or the undoing of one) and for every entity of a zone
        by L{IStore.recover_zone}; a write naming an older version is
        refused.
    @ivar transfer_id: The id of the last transfer that set the owner, or
        C{None} if none did (the entity was only checkpointed).
    @ivar data: The entity as a dict (L{mmo.zone.entity.Entity.to_dict}),
        its C{"version"} always equal to L{version}.
    """

    id: str
    owner: str
    version: int
    transfer_id: str | None
    data: dict


class IStore(Interface):
    """
    Durable storage of accounts and characters, of named logs, and of the
    checkpoints of world entities with their owning zone.
    """

    def start():
        """Open connections, create or migrate the schema.  Deferred[None]."""

    def stop():
        """Close everything after pending writes.  Deferred[None]."""

    def create_account(name, password_hash):
        """
        A new L{Account}; fails with L{AlreadyExists} if the name is taken.
        Of concurrent creations of one name exactly one succeeds.
        """

    def account_by_name(name):
        """The L{Account} called C{name} (any case), or C{None}."""

    def account_by_id(account_id):
        """The L{Account} with C{account_id}, or C{None}."""

    def update_account(account_id, password_hash=None, banned=None):
        """
        Change the given fields; fails with L{NotFound}.  A ban (C{banned}
        true) also revokes every refresh token of the account, in the same
        atomic step.  Deferred[Account].
        """

    def issue_refresh(account_id, device, family, token_hash, ttl, limit):
        """
        Start the refresh token family C{family} (a new random id) of
        C{device} of the account, its current secret hashed C{token_hash},
        expiring C{ttl} seconds from now; in one atomic step it replaces the
        device's earlier family and, past C{limit} devices, revokes the
        least recently used.  Deferred[L{RefreshFamily}].
        """

    def rotate_refresh(family, device, token_hash, new_hash, ttl):
        """
        Spend the token of C{family} whose secret hashes to C{token_hash}
        and make C{new_hash} the current one, expiring C{ttl} seconds from
        now; one atomic compare-and-set.  Deferred[tuple[L{RefreshFamily},
        L{Account}]]: the family as stored after the call and its account
        (read in the same step: a returning player's login is one round
        trip), or C{None} if there is no such family (never issued,
        revoked, or expired: an expired one is deleted) or it is of another
        device (left as it is).  Fails with L{RefreshReused}, the family
        deleted, if C{token_hash} is not the current one.
        """

    def revoke_refresh(account_id, device=None):
        """
        Delete the account's refresh token families: that of C{device}, or
        every one.  Deferred[int]: how many were deleted.
        """

    def refresh_families(account_id):
        """
        The account's live L{RefreshFamily}s, most recently used first.
        Deferred[list[L{RefreshFamily}]].
        """

    def create_character(account_id, name, data):
        """
        A new L{Character} of the account; L{AlreadyExists} if the name is
        taken by any character, L{NotFound} if the account does not exist.
        """

    def characters(account_id):
        """The account's L{Character}s, oldest first."""

    def character_by_id(character_id):
        """The L{Character}, or C{None}."""

    def update_character(character_id, data):
        """Replace the character's data; L{NotFound} if missing.  Deferred[Character]."""

    def delete_character(character_id):
        """Delete it, freeing its name; Deferred[bool]: whether it existed."""

    def append_log(key, record, keep):
        """
        Append C{record} (a msgpack-able dict) to the log named C{key} (a
        non-empty string), then drop its oldest records so that at most
        C{keep} (an int, at least 1) are left; one atomic step.  Of appends
        to one log that are in flight at once, the order is not defined:
        wait for one before asking for the next where order matters.
        Deferred[None]; L{StoreError} for a bad key, record or C{keep}.
        """

    def append_logs(key, records, keep):
        """
        L{append_log} for a list of C{records}, in order: all of them, then
        the trim, one atomic step (one write where a store pays per write:
        a writer that fell behind catches up at once).  Deferred[None].
        """

    def read_log(key, limit):
        """
        The last C{limit} (an int, at least 0) records of the log C{key},
        oldest first; C{[]} for a log never written.  Deferred[list[dict]].
        """

    def checkpoint(zone, records):
        """
        Write the entities C{records} (dicts, each with a non-empty C{"id"}
        and an int C{"version"}, msgpack-able) as owned by C{zone}, in one
        atomic step: each one is inserted if the store has no such entity,
        or replaces the stored one if that is owned by C{zone} at the same
        version, and is refused otherwise (another zone owns it, or the
        record is older than a transfer or a recovery).  Deferred[list[str]]:
        the ids refused, in the order given.  L{StoreError} for a bad zone
        or record, or an id given twice.
        """

    def transfer(entity_id, from_zone, to_zone, transfer_id, record):
        """
        Move the entity to C{to_zone}: the commit point of a handoff, one
        atomic compare-and-set.  It succeeds if the store has no such
        entity, or it is owned by C{from_zone} at C{record["version"]};
        then the entity is owned by C{to_zone}, at that version plus one,
        with C{transfer_id}, and C{record} as its data.  It also succeeds,
        writing nothing, if the entity is already owned by C{to_zone} by
        this C{transfer_id} (a repeated transfer is idempotent).  Otherwise
        it fails with L{OwnershipConflict}, which holds the entity as it is
        stored.  With C{from_zone == to_zone} it keeps the owner and bumps
        the version: a fence that makes a transfer offered at the older
        version fail (how an unfinished handoff is undone).
        Deferred[L{StoredEntity}]: as stored after the call.
        """

    def load_zone(zone):
        """The entities C{zone} owns, by id.  Deferred[list[L{StoredEntity}]]."""

    def recover_zone(zone):
        """
        Bump the version of every entity C{zone} owns and return them, in
        one atomic step: what a restarted zone does first, so that transfers
        offered and checkpoints sent by its earlier life (perhaps still in
        flight) can no longer succeed.  Deferred[list[L{StoredEntity}]], by id.
        """

    def load_entity(entity_id):
        """The entity's L{StoredEntity}, or C{None}."""

    def remove_entity(zone, entity_id):
        """
        Delete the entity if C{zone} owns it (it left the world).
        Deferred[bool]: whether it was deleted.
        """

    # -- jobs (mmo.store.jobs: the records, StaleToken) ---------------------------

    def claim_job(name, token, now):
        """
        A new leader of job C{name} with fencing C{token}: the token becomes
        the job's highest (every write with a lower one is refused from now
        on), and a job never claimed before is done up to C{now}.  Fails
        with L{mmo.store.jobs.StaleToken} if a higher token was seen.
        Deferred[JobState].
        """

    def skip_job_times(name, token, upto):
        """
        Mark the scheduled times up to C{upto} done without running them
        (a misfire policy); fenced as L{claim_job}.  Deferred[None].
        """

    def record_job_run(name, token, run, keep):
        """
        Record C{run} (a L{mmo.store.jobs.JobRun}) of job C{name} and, in the
        same atomic step, its scheduled time as done (or its manual
        trigger as served), keeping the last C{keep} runs; fenced as
        L{claim_job}.  Deferred[bool]: False if a run of that id was
        recorded already (nothing changed).
        """

    def pause_job(name, paused):
        """Hold back (or let go) the runs of job C{name}.  Deferred[JobState]."""

    def trigger_job(name, run_id):
        """
        Ask for a manual run C{run_id} of job C{name}, done by its leader;
        at most L{mmo.store.jobs.MAX_TRIGGERS} wait at once (L{StoreError}).
        Deferred[None].
        """

    def job_state(name):
        """Deferred: the L{mmo.store.jobs.JobState} of job C{name}, or C{None}."""

    def job_states():
        """Deferred[dict]: name -> L{mmo.store.jobs.JobState} of every job known."""

    def job_runs(name, limit):
        """Deferred[list]: the last C{limit} L{mmo.store.jobs.JobRun}s of C{name}, oldest first."""

    def dump():
        """
        Everything but refresh tokens (a restored store's players log in
        again with their passwords), as plain data: C{{"version": DUMP_VERSION, "accounts":
        [...], "characters": [...]}} with each record a dict of the dataclass
        fields, and, if any log has records, C{"logs": [{"key": KEY,
        "records": [...]}, ...]} sorted by key, records oldest first (left
        out when there are none, so that such a dump is what earlier
        versions wrote); likewise C{"ladders"}
        (L{mmo.store.common_ladder.LadderDump.as_dict}, by name) and
        C{"jobs"} (L{mmo.store.jobs.JobDump.as_dict}, by name) and
        C{"economy"}, the ledger
        (L{mmo.store.common_economy_dump.dump_economy}).  Deferred[dict].
        """

    def restore(data):
        """
        Load a L{dump} into this store, which must be empty (L{NotEmpty}
        otherwise); ids, names, hashes and times are kept, and the records
        of each log, the ladders, the jobs' state and the ledger (a dump
        without one of these parts has none of it).  Deferred[None].
        """


class ILadderStore(Interface):
    """
    The ladder's storage (L{mmo.ladder.Ladder}), which both stores provide
    besides L{IStore}: per ladder, its current season and the seasons'
    records, each player's row per season (L{mmo.store.common_ladder.LadderRow}),
    the board of each season in its order (score descending, then player id
    descending), the log of the results applied in each season, in the
    order they were applied, and the ids of the matches applied.  Every
    method returns a Deferred; see C{docs/store.md}.
    """

    def ladder_season(ladder):
        """The ladder's current season (1 before any rollover).  Deferred[int]."""

    def ladder_seasons(ladder):
        """The records of its rollovers, by season.  Deferred[list[SeasonRecord]]."""

    def ladder_rollover(ladder, from_season, record):
        """
        Begin season C{record.season} (C{from_season + 1}) if C{from_season}
        is current, in one atomic step with the check; nothing if the season
        moved on or a rollover with C{record.run_id} (when not empty) was
        done already.  Deferred[int]: the season that rollover began, or
        the current season.
        """

    def ladder_ratings(ladder, season, players):
        """
        Each player's latest row at or before C{season} (those with none are
        left out).  Deferred[dict[str, LadderRow]].
        """

    def ladder_apply_many(ladder, season, items):
        """
        Apply a batch of results (L{mmo.store.common_ladder.ApplyItem}s, 1 to
        C{MAX_APPLY_BATCH}) in one atomic step, each in order as if applied
        alone after those before it: unless its match id was applied, in
        this batch or before (C{DUPLICATE}, with the first outcome), the
        season is no longer C{season} (C{SEASON}) or one of its rows' stored
        version is not C{row.version - 1} (C{CONFLICT}; no row is version
        0), write its rows, append its record to the season's log and keep
        its outcome under its match id.  A result refused writes nothing
        and does not stop the others, but a result after it in the batch on
        one of its players is refused too (C{CONFLICT}): it expects the
        rows the refused one would have written, whose versions another
        result may have reached.  A batch of one is a single apply.
        Deferred[list[ApplyResult]]: one per result, in order.
        """

    def ladder_matches(ladder, season):
        """The season's log, in the order applied.  Deferred[list[bytes]]."""

    def ladder_top(ladder, season, start, count):
        """
        C{count} rows of the board from the 0-based position C{start}.
        Deferred[list[tuple[int, LadderRow]]]: (1-based rank, row).
        """

    def ladder_rank(ladder, season, player):
        """The player's rank (1-based) and row, or C{None}.  Deferred."""

    def ladder_around(ladder, season, player, count):
        """
        The player's row with up to C{count} rows on each side of it, as
        L{ladder_top} gives them; empty if the player has no row.
        """

    def ladder_size(ladder, season):
        """How many rows the season's board has.  Deferred[int]."""

    def ladder_fill(ladder, season, rows):
        """
        Write C{rows} as they are (an import, a benchmark's board), with no
        version check and no log.  Deferred[None].
        """


class IEconomyStore(Interface):
    """
    The economy's ledger, which both stores provide besides L{IStore}:
    balances of assets held by accounts, changed only by postings
    (L{mmo.store.common_economy.Posting}) applied atomically and once per
    idempotency key, each numbered in the order applied; the load of each
    account; the properties of each unique item.  Every method returns a
    Deferred; see C{docs/economy.md}.
    """

    def economy_post(posting):
        """
        Apply C{posting} in one atomic step, unless its key was applied
        (C{DUPLICATE}, with the first one's sequence number; a
        L{StoreError} if that one had other legs) or it is refused
        (C{REFUSED}, with the L{Refusal}; nothing written).
        Deferred[PostResult].
        """

    def economy_balances(account):
        """The account's balances other than 0.  Deferred[dict[str, int]]: asset -> balance."""

    def economy_history(account, limit, before=None):
        """
        Up to C{limit} (1 to 1000) of the account's postings with sequence
        numbers below C{before} (all if C{None}), newest first, each with
        that account's legs only.  Deferred[list[Entry]].
        """

    def economy_posting(key):
        """The posting applied under C{key}, or C{None}.  Deferred[Entry | None]."""

    def economy_postings(after_seq, limit):
        """
        Up to C{limit} (1 to 1000) postings numbered after C{after_seq}, in
        order (numbers have no gaps).  Deferred[list[Entry]].
        """

    def economy_holders(asset, limit, after=None):
        """
        Up to C{limit} (1 to 1000) accounts holding C{asset} (a balance
        other than 0), in account order, after the account C{after}.
        Deferred[list[tuple[str, int]]]: (account, balance).
        """

    def economy_load(account):
        """The account's load (0 if none).  Deferred[int]."""

    def economy_item(asset):
        """The properties a unique item was issued with, or C{None}.  Deferred."""

    def economy_accounts(kind, limit, after=None):
        """
        Up to C{limit} (1 to 1000) accounts of C{kind} (one of
        L{mmo.store.common_economy.ACCOUNT_KINDS}) holding something (a
        balance other than 0 of some asset), in account order, after the
        account C{after}: the escrows a trade left holding value, found
        at start.  Deferred[list[str]].
        """


def make_store(config, reactor=None) -> IStore:
    """The store the config's C{[store]} section asks for (not started)."""
    if config.store.backend == "redis":
        from mmo.store.redis import RedisStore

        return RedisStore(config, reactor=reactor)
    from mmo.store.sqlite import SQLiteStore

    return SQLiteStore(config.store.path, reactor=reactor)


# Helpers shared by the backends and by mmo.store.backup.


def name_key(name: str) -> str:
    """The form of a name that uniqueness is checked on: C{str.casefold}."""
    return name.casefold()


def new_id() -> str:
    """A new account or character id: 32 random hex digits."""
    return uuid.uuid4().hex


def check_refresh(account_id, device, family, token_hash, ttl, limit=1) -> None:
    """
    Check the arguments of L{IStore.issue_refresh} and
    L{IStore.rotate_refresh}.

    @raise StoreError: A string is empty or not a string, C{ttl} not a
        positive number or C{limit} not an int of at least 1.
    """
    for what, value in (
        ("account id", account_id),
        ("device", device),
        ("refresh family", family),
        ("refresh token hash", token_hash),
    ):
        if not isinstance(value, str) or not value:
            raise StoreError(f"the {what} must be a non-empty string, got {value!r}")
    if not isinstance(ttl, (int, float)) or isinstance(ttl, bool) or not ttl > 0:
        raise StoreError(f"the refresh ttl must be a positive number, got {ttl!r}")
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise StoreError(f"the refresh device limit must be an int of at least 1, got {limit!r}")


def check_name(name: object, what: str) -> str:
    """C{name} if it is a non-empty string, else L{StoreError}."""
    if not isinstance(name, str) or not name:
        raise StoreError(f"the {what} name must be a non-empty string, got {name!r}")
    return name


def pack_data(data: object) -> bytes:
    """
    Character data as stored: msgpack.

    @raise StoreError: C{data} is not a dict or not msgpack-able.
    """
    if not isinstance(data, dict):
        raise StoreError(f"character data must be a dict, got {type(data).__name__}")
    try:
        return msgpack.packb(data, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as e:
        raise StoreError(f"character data cannot be stored (not msgpack-able): {e}")


def unpack_data(blob: bytes) -> dict:
    """The inverse of L{pack_data}."""
    return msgpack.unpackb(blob, raw=False, strict_map_key=False)


def check_log_args(key: object, number: object, what: str, minimum: int) -> None:
    """
    Check the arguments of L{IStore.append_log} and L{IStore.read_log}.

    @raise StoreError: C{key} is not a non-empty string or C{number} (named
        C{what}) not an int of at least C{minimum}.
    """
    if not isinstance(key, str) or not key:
        raise StoreError(f"the log key must be a non-empty string, got {key!r}")
    if not isinstance(number, int) or isinstance(number, bool) or number < minimum:
        raise StoreError(f"{what} must be an int of at least {minimum}, got {number!r}")


def pack_record(record: object) -> bytes:
    """
    A log record as stored: msgpack.

    @raise StoreError: C{record} is not a dict or not msgpack-able.
    """
    if not isinstance(record, dict):
        raise StoreError(f"a log record must be a dict, got {type(record).__name__}")
    try:
        return msgpack.packb(record, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as e:
        raise StoreError(f"the log record cannot be stored (not msgpack-able): {e}")


def check_zone(zone: object, what: str = "zone") -> str:
    """C{zone} if it is a non-empty string, else L{StoreError}."""
    if not isinstance(zone, str) or not zone:
        raise StoreError(f"the {what} must be a non-empty string, got {zone!r}")
    return zone


def entity_row(record: object) -> tuple[str, int, bytes]:
    """
    An entity record as stored: its id, version and msgpack encoding.

    @raise StoreError: C{record} is not a dict with a non-empty string
        C{"id"} and an int C{"version"} of at least 0, or not msgpack-able.
    """
    if not isinstance(record, dict):
        raise StoreError(f"an entity record must be a dict, got {type(record).__name__}")
    entity_id, version = record.get("id"), record.get("version")
    if not isinstance(entity_id, str) or not entity_id:
        raise StoreError(f"an entity record needs a non-empty string id, got {entity_id!r}")
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise StoreError(
            f"entity {entity_id!r}: the version must be an int of at least 0, got {version!r}"
        )
    try:
        blob = msgpack.packb(record, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as e:
        raise StoreError(f"entity {entity_id!r} cannot be stored (not msgpack-able): {e}")
    return entity_id, version, blob


def entity_rows(records: object) -> list[tuple[str, int, bytes]]:
    """L{entity_row} of each of C{records}; L{StoreError} if an id appears twice."""
    if not isinstance(records, (list, tuple)):
        raise StoreError(f"entity records must be a list, got {type(records).__name__}")
    rows = [entity_row(record) for record in records]
    ids = [row[0] for row in rows]
    if len(set(ids)) != len(ids):
        raise StoreError("an entity appears twice in one checkpoint")
    return rows


def check_transfer(entity_id, from_zone, to_zone, transfer_id, record) -> tuple[int, bytes]:
    """
    Check the arguments of L{IStore.transfer}: the expected version and the
    record as stored.
    """
    check_zone(from_zone, "zone to transfer from")
    check_zone(to_zone, "zone to transfer to")
    check_zone(transfer_id, "transfer id")
    record_id, version, blob = entity_row(record)
    if record_id != entity_id:
        raise StoreError(f"the record of a transfer of {entity_id!r} is of {record_id!r}")
    return version, blob


def stored_entity(
    entity_id: str, owner: str, version: int, transfer_id: str | None, blob: bytes
) -> StoredEntity:
    """A L{StoredEntity} from its stored fields (the data's version is the stored one)."""
    data = unpack_data(blob)
    data["version"] = version
    return StoredEntity(entity_id, owner, version, transfer_id or None, data)


def dump_logs(logs: list[tuple[str, list[dict]]]) -> dict:
    """
    The C{"logs"} part of a dump for C{(key, records)} pairs: C{{"logs":
    [...]}} sorted by key, or C{{}} when no log has records.
    """
    found = [
        {"key": key, "records": records}
        for key, records in sorted(logs, key=lambda log: log[0])
        if records
    ]
    return {"logs": found} if found else {}


def read_dump_logs(data: dict) -> list[tuple[str, list[dict]]]:
    """
    The logs of a dump as C{(key, records)} pairs, checked completely (as
    L{read_dump} does the rest); a dump without C{"logs"} (one written
    before logs existed) has none.

    @raise StoreError: C{"logs"} is malformed or names a log twice.
    """
    if "logs" not in data:
        return []
    logs = _read_list(data, "logs")
    result = []
    keys: set[str] = set()
    for i, log in enumerate(logs):
        where = f"logs[{i}]"
        if not isinstance(log, dict) or set(log) != {"key", "records"}:
            raise StoreError(f"the dump's {where} must be an object with exactly key, records")
        key, records = log["key"], log["records"]
        if not isinstance(key, str) or not key:
            raise StoreError(f"the dump's {where}.key must be a non-empty string")
        if key in keys:
            raise StoreError(f"the dump has two logs with the key {key!r}")
        keys.add(key)
        if not isinstance(records, list):
            raise StoreError(f"the dump's {where}.records is not a list")
        for j, record in enumerate(records):
            try:
                pack_record(record)
            except StoreError as e:
                raise StoreError(f"the dump's {where}.records[{j}]: {e}")
        result.append((key, records))
    return result


def read_dump_part(data: dict, key: str, kind: str, read) -> list:
    """
    The records of the part C{key} of a dump (a list; none without it),
    each made by C{read(entry)}, which raises L{StoreError}, C{TypeError}
    or C{ValueError} on a bad entry; their C{name}s are unique.

    @raise StoreError: What is wrong, and where.
    """
    entries = data.get(key, [])
    if not isinstance(entries, list):
        raise StoreError(f"the dump's {key!r} is not a list")
    records = []
    names: set[str] = set()
    for i, entry in enumerate(entries):
        try:
            record = read(entry)
        except (StoreError, TypeError, ValueError) as e:
            raise StoreError(f"the dump's {key}[{i}]: {e}")
        if record.name in names:
            raise StoreError(f"the dump has two {kind}s named {record.name!r}")
        names.add(record.name)
        records.append(record)
    return records


def read_fields(entry: object, names: tuple[str, ...], what: str) -> dict:
    """
    C{entry} if it is an object of exactly the fields C{names}, as a dump
    part's records are.

    @raise StoreError: Not an object, or other fields (C{what} says where).
    """
    if not isinstance(entry, dict) or set(entry) != set(names):
        raise StoreError(f"{what} must be an object with exactly {', '.join(names)}")
    return entry


def dump_record(record: Account | Character) -> dict:
    """A dataclass as a dict of its fields, as in L{IStore.dump}."""
    return dataclasses.asdict(record)


def read_dump(data: object) -> tuple[list[Account], list[Character]]:
    """
    Check a dump (as made by L{IStore.dump}) completely before anything is
    written, so that a restore does not stop half-way on bad input.

    @return: Its accounts and characters, in the dump's order.
    @raise StoreError: The dump is not of a supported version, a record is
        malformed, an id or a name appears twice, or a character belongs to
        no account of the dump.
    """
    if not isinstance(data, dict):
        raise StoreError("the dump is not a JSON object")
    version = data.get("version")
    if version != DUMP_VERSION:
        raise StoreError(f"unsupported dump version {version!r} (this mmo reads {DUMP_VERSION})")
    accounts = [
        _read_record(Account, record, "accounts", i)
        for i, record in enumerate(_read_list(data, "accounts"))
    ]
    characters = [
        _read_record(Character, record, "characters", i)
        for i, record in enumerate(_read_list(data, "characters"))
    ]
    for kind, records in (("account", accounts), ("character", characters)):
        ids: set[str] = set()
        names: set[str] = set()
        for record in records:
            if record.id in ids:
                raise StoreError(f"the dump has two {kind}s with the id {record.id!r}")
            if name_key(record.name) in names:
                raise StoreError(f"the dump has two {kind}s named {record.name!r}")
            ids.add(record.id)
            names.add(name_key(record.name))
    account_ids = {account.id for account in accounts}
    for character in characters:
        if character.account_id not in account_ids:
            raise StoreError(
                f"character {character.id!r} belongs to account {character.account_id!r}, "
                "which is not in the dump"
            )
        pack_data(character.data)
    return accounts, characters


def _read_list(data: dict, key: str) -> list:
    value = data.get(key)
    if not isinstance(value, list):
        raise StoreError(f"the dump's {key!r} is not a list")
    return value


#: Types of the fields of dumped records.
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "id": (str,),
    "account_id": (str,),
    "name": (str,),
    "password_hash": (str,),
    "created": (int, float),
    "banned": (bool,),
    "data": (dict,),
}


def _read_record(cls: type, record: object, key: str, index: int):
    where = f"{key}[{index}]"
    if not isinstance(record, dict):
        raise StoreError(f"the dump's {where} is not an object")
    names = [f.name for f in dataclasses.fields(cls)]
    if set(record) != set(names):
        raise StoreError(f"the dump's {where} must have exactly the fields {', '.join(names)}")
    for name in names:
        value = record[name]
        types = _FIELD_TYPES[name]
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            raise StoreError(f"the dump's {where}.{name} has the wrong type: {value!r}")
        if isinstance(value, str) and not value:
            raise StoreError(f"the dump's {where}.{name} is empty")
    values = dict(record)
    values["created"] = float(values["created"])
    return cls(**values)


class InFlight:
    """
    The operations of a store that have not finished, so that C{stop()} can
    let them finish before it closes the connections.
    """

    def __init__(self):
        self._operations: set[defer.Deferred] = set()
        self._waiters: list[defer.Deferred] = []

    def __len__(self) -> int:
        return len(self._operations)

    def track(self, d: defer.Deferred) -> defer.Deferred:
        """Count C{d} until it fires; returns it."""
        self._operations.add(d)
        return d.addBoth(self._done, d)

    def _done(self, result, d):
        self._operations.discard(d)
        if not self._operations:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                waiter.callback(None)
        return result

    def wait(self, timeout: float | None = None, clock=None) -> defer.Deferred:
        """
        A Deferred firing with C{True} once nothing is in flight, or, after
        C{timeout} seconds on C{clock}, with C{False} once what is still in
        flight has been cancelled.
        """
        if not self._operations:
            return defer.succeed(True)
        waiter: defer.Deferred = defer.Deferred()
        self._waiters.append(waiter)
        if timeout is None:
            return waiter.addCallback(lambda _: True)
        call = clock.callLater(timeout, self._give_up, waiter)

        def finished(_):
            if call.active():
                call.cancel()
                return True
            return False

        return waiter.addCallback(finished)

    def _give_up(self, waiter: defer.Deferred) -> None:
        for d in list(self._operations):
            d.cancel()
        if not waiter.called:
            # Cancelled operations that ignore cancellation: stop waiting.
            self._waiters.remove(waiter)
            waiter.callback(None)
