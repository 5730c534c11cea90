"""
The SQLite store: one database file, reached through
C{twisted.enterprise.adbapi} so that the blocking calls run in a thread.

One connection (C{cp_max=1}): SQLite has one writer at a time anyway, and a
single connection makes every operation of this process run in order.  The
file is in WAL mode with C{synchronous=FULL}: a write is on disk before its
Deferred fires, so an acknowledged registration survives a crash of the
process or of the machine.

The schema is versioned by C{PRAGMA user_version}; L{MIGRATIONS} brings an
older file up to date at L{SQLiteStore.start}, each step in its own
transaction.  A file from a newer mmo is refused rather than guessed at.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable

from twisted.enterprise import adbapi
from twisted.internet import defer
from twisted.internet.interfaces import IReactorThreads
from twisted.logger import Logger
from zope.interface import implementer

from mmo.metrics.registry import timed_store
from mmo.store import (
    DUMP_VERSION,
    Account,
    AlreadyExists,
    IEconomyStore,
    ILadderStore,
    InFlight,
    IStore,
    NotEmpty,
    NotFound,
    RefreshFamily,
    StoreError,
    StoreUnavailable,
    check_log_args,
    check_name,
    check_refresh,
    dump_logs,
    dump_record,
    name_key,
    new_id,
    pack_data,
    pack_record,
    read_dump,
    read_dump_logs,
    sqlite_jobs,
    unpack_data,
)
from mmo.store import sqlite_refresh as refresh
from mmo.store.common_economy_dump import read_dump_economy
from mmo.store.common_ladder import dump_ladders, read_dump_ladders
from mmo.store.jobs import dump_jobs, read_dump_jobs
from mmo.store.sqlite_characters import SQLiteCharacters
from mmo.store.sqlite_economy import (
    ECONOMY_TABLES,
    SQLiteEconomy,
    dump_economy_tables,
    restore_economy_tables,
)
from mmo.store.sqlite_economy import migration as _migration_economy
from mmo.store.sqlite_entities import SQLiteEntities
from mmo.store.sqlite_ladder import (
    LADDER_TABLES,
    SQLiteLadder,
    dump_ladder_tables,
    restore_ladder_tables,
)
from mmo.store.sqlite_ladder import migration as _migration_ladder
from mmo.store.sqlite_rows import (
    ACCOUNT_COLUMNS,
    CHARACTER_COLUMNS,
    account_by_id,
    account_row,
    character_row,
    is_name_conflict,
)

log = Logger()

#: Marks the file as an mmo store (C{PRAGMA application_id}, "mmo\\0").
APPLICATION_ID = 0x6D6D6F00

#: Milliseconds a statement waits for a lock held by another process.
BUSY_TIMEOUT_MS = 10000


def _migration_1(conn: sqlite3.Connection) -> None:
    """Accounts and characters."""
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute(
        """
        CREATE TABLE accounts (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            name_key TEXT NOT NULL UNIQUE,
            password_hash TEXT NOT NULL,
            created REAL NOT NULL,
            banned INTEGER NOT NULL DEFAULT 0
        )
        """
    )
    conn.execute(
        """
        CREATE TABLE characters (
            id TEXT PRIMARY KEY,
            account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            name_key TEXT NOT NULL UNIQUE,
            created REAL NOT NULL,
            data BLOB NOT NULL
        )
        """
    )
    conn.execute("CREATE INDEX characters_of_account ON characters (account_id, created, id)")


def _migration_2(conn: sqlite3.Connection) -> None:
    """Named logs (L{IStore.append_log}): records numbered by C{seq} within a key."""
    conn.execute(
        """
        CREATE TABLE logs (
            key TEXT NOT NULL,
            seq INTEGER NOT NULL,
            data BLOB NOT NULL,
            PRIMARY KEY (key, seq)
        ) WITHOUT ROWID
        """
    )


def _migration_3(conn: sqlite3.Connection) -> None:
    """
    Entity checkpoints (L{IStore.checkpoint}, L{IStore.transfer}): each
    entity with its owning zone, its version (the fencing token) and the
    last transfer that moved it; C{data} is the entity, msgpack.
    """
    conn.execute(
        """
        CREATE TABLE entities (
            id TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            version INTEGER NOT NULL,
            transfer_id TEXT,
            data BLOB NOT NULL
        ) WITHOUT ROWID
        """
    )
    conn.execute("CREATE INDEX entities_of_owner ON entities (owner, id)")


def _migration_4(conn: sqlite3.Connection) -> None:
    """
    Refresh tokens (L{IStore.issue_refresh}): one family per device of an
    account, with the SHA-256 of its current secret.
    """
    conn.execute(
        """
        CREATE TABLE refresh_tokens (
            family TEXT PRIMARY KEY,
            account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
            device TEXT NOT NULL,
            token_hash TEXT NOT NULL,
            created REAL NOT NULL,
            used REAL NOT NULL,
            expires REAL NOT NULL,
            UNIQUE (account_id, device)
        ) WITHOUT ROWID
        """
    )
    conn.execute("CREATE INDEX refresh_of_account ON refresh_tokens (account_id, used)")


#: The migrations, in order: C{MIGRATIONS[n]} takes a database from schema
#: version C{n} to C{n + 1}.  Append only; never edit a released one.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _migration_1,
    _migration_2,
    _migration_3,
    _migration_4,
    sqlite_jobs.migration,
    _migration_ladder,
    _migration_economy,
]


def _open(conn: sqlite3.Connection) -> None:
    """Set up each new connection (adbapi's C{cp_openfun})."""
    # Transactions are begun explicitly (BEGIN IMMEDIATE for writes), never
    # implicitly by the sqlite3 module.
    conn.isolation_level = None
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if mode.lower() != "wal":
        log.warn("SQLite store: journal_mode is {mode!r}, not WAL", mode=mode)
    conn.execute("PRAGMA synchronous = FULL")


#: Modes of the store's directory (when the store creates it) and of its
#: files: they hold password hashes, for this user's eyes only.
DIRECTORY_MODE = 0o700
FILE_MODE = 0o600

#: The files SQLite keeps beside the database in WAL mode.
WAL_SUFFIXES = ("-wal", "-shm")


def private_files(path: str) -> None:
    """
    Make the database C{path} and its directory private, whatever the umask:
    a directory it creates is 0700, the database file is created (empty, for
    SQLite to fill) or narrowed to 0600, and so are the C{-wal} and C{-shm}
    files an older mmo left wider.  SQLite creates those two itself with the
    mode of the database file, so they are 0600 from then on.

    @raise OSError: A directory or file cannot be made or changed.
    """
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        # An existing directory is the operator's; one made here is private.
        os.makedirs(directory, mode=DIRECTORY_MODE, exist_ok=True)
        os.chmod(directory, DIRECTORY_MODE)
    flags = os.O_RDONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    for suffix in WAL_SUFFIXES:
        try:
            os.chmod(path + suffix, FILE_MODE)
        except FileNotFoundError:
            pass


def _append_logs(conn, key, blobs, keep):
    """L{SQLiteStore.append_logs} in its transaction: the rows numbered on, then the trim."""
    conn.execute("BEGIN IMMEDIATE")
    (first,) = conn.execute(
        "SELECT COALESCE(MAX(seq), 0) + 1 FROM logs WHERE key = ?", (key,)
    ).fetchone()
    conn.executemany(
        "INSERT INTO logs (key, seq, data) VALUES (?, ?, ?)",
        [(key, first + i, blob) for i, blob in enumerate(blobs)],
    )
    last = first + len(blobs) - 1
    conn.execute("DELETE FROM logs WHERE key = ? AND seq <= ?", (key, last - keep))


@timed_store
@implementer(IStore, ILadderStore, IEconomyStore)
class SQLiteStore(
    SQLiteCharacters, sqlite_jobs.SQLiteJobs, SQLiteEntities, SQLiteLadder, SQLiteEconomy
):
    """
    L{IStore} on a SQLite file.

    @param path: The database file; created, with its directory, if missing.
    @param reactor: Gives the time (C{seconds()}) of registrations; if it
        also runs threads (a real reactor) the database calls go through it,
        otherwise (a L{twisted.internet.task.Clock} in tests) through the
        global reactor.
    @ivar in_flight: Its operations that have not finished (an
        L{InFlight}: C{len()} counts them).
    """

    def __init__(self, path: str, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.path = path
        self._clock = reactor
        self._reactor = reactor
        if not IReactorThreads.providedBy(reactor):
            from twisted.internet import reactor as global_reactor

            self._reactor = global_reactor
        self._pool: adbapi.ConnectionPool | None = None
        self.in_flight = InFlight()

    def __repr__(self) -> str:
        return f"<SQLiteStore {self.path!r}>"

    # -- life cycle ----------------------------------------------------------

    @defer.inlineCallbacks
    def start(self):
        if self._pool is not None:
            raise StoreError(f"the SQLite store {self.path} is already started")
        try:
            private_files(self.path)
        except OSError as e:
            raise StoreError(
                f"cannot open the SQLite database {self.path}: "
                f"{e.filename or self.path}: {e.strerror or e}"
            )
        self._pool = adbapi.ConnectionPool(
            "sqlite3",
            self.path,
            check_same_thread=False,
            cp_min=1,
            cp_max=1,
            cp_openfun=_open,
            cp_reactor=self._reactor,
        )
        try:
            version = yield self._pool.runWithConnection(self._migrate)
        except BaseException as e:
            pool, self._pool = self._pool, None
            pool.close()
            if isinstance(e, StoreError):
                raise
            if isinstance(e, sqlite3.Error):
                raise StoreError(f"cannot open the SQLite database {self.path}: {e}")
            raise
        log.info("SQLite store {path} at schema version {version}", path=self.path, version=version)

    def _migrate(self, conn) -> int:
        """Bring the schema up to date; runs in the database thread."""
        application_id = conn.execute("PRAGMA application_id").fetchone()[0]
        if application_id not in (0, APPLICATION_ID):
            raise StoreError(
                f"{self.path} is not an mmo store (application_id {application_id:#x})"
            )
        latest = len(MIGRATIONS)
        while True:
            conn.execute("BEGIN IMMEDIATE")
            try:
                # Read again inside the transaction: another process may have
                # migrated the file in the meantime.
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version > latest:
                    raise StoreError(
                        f"{self.path} is at schema version {version}, newer than this "
                        f"mmo knows (version {latest}); run a newer mmo or restore a "
                        "backup made for this version"
                    )
                if version == latest:
                    conn.execute("COMMIT")
                    return version
                MIGRATIONS[version](conn)
                conn.execute(f"PRAGMA user_version = {version + 1}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            log.info(
                "SQLite store {path}: migrated to schema version {version}",
                path=self.path,
                version=version + 1,
            )

    @defer.inlineCallbacks
    def stop(self):
        pool, self._pool = self._pool, None
        if pool is None:
            return
        # Let the operations already asked for finish (the writes are on
        # disk when they do) before the connection is closed.
        yield self.in_flight.wait()
        pool.close()

    # -- running in the database thread -------------------------------------

    def _run(self, function, *args) -> defer.Deferred:
        """
        Run C{function(conn, *args)} in the database thread; commit if it
        returns, roll back if it raises.  Errors of SQLite become
        L{StoreError}s.
        """
        if self._pool is None:
            return defer.fail(StoreError(f"the SQLite store {self.path} is not started"))
        return self.in_flight.track(self._pool.runWithConnection(self._guard, function, *args))

    def _guard(self, conn, function, *args):
        try:
            return function(conn, *args)
        except sqlite3.OperationalError as e:
            # Locked by another writer past the busy timeout: retryable.
            code = getattr(e, "sqlite_errorcode", 0) & 0xFF  # the primary code
            locked = code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
            kind = StoreUnavailable if locked else StoreError
            raise kind(f"SQLite store {self.path}: {e}") from e
        except sqlite3.Error as e:
            raise StoreError(f"SQLite store {self.path}: {e}") from e

    # -- accounts ---------------------------------------------------------------

    def create_account(self, name, password_hash):
        try:
            check_name(name, "account")
            if not isinstance(password_hash, str) or not password_hash:
                raise StoreError("the password hash must be a non-empty string")
        except StoreError as e:
            return defer.fail(e)
        account = Account(new_id(), name, password_hash, self._clock.seconds(), False)
        return self._run(self._insert_account, account)

    def _insert_account(self, conn, account: Account) -> Account:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "INSERT INTO accounts (id, name, name_key, password_hash, created, banned) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    account.id,
                    account.name,
                    name_key(account.name),
                    account.password_hash,
                    account.created,
                    int(account.banned),
                ),
            )
        except sqlite3.IntegrityError as e:
            if is_name_conflict(e):
                raise AlreadyExists(f"the account name {account.name!r} is taken")
            raise
        return account

    def account_by_name(self, name):
        return self._run(self._account_by_name, name)

    def _account_by_name(self, conn, name):
        row = conn.execute(
            f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE name_key = ?", (name_key(name),)
        ).fetchone()
        return None if row is None else account_row(row)

    def account_by_id(self, account_id):
        return self._run(account_by_id, account_id)

    def update_account(self, account_id, password_hash=None, banned=None):
        if password_hash is not None and (not isinstance(password_hash, str) or not password_hash):
            return defer.fail(StoreError("the password hash must be a non-empty string"))
        return self._run(self._update_account, account_id, password_hash, banned)

    def _update_account(self, conn, account_id, password_hash, banned):
        conn.execute("BEGIN IMMEDIATE")
        if password_hash is not None:
            conn.execute(
                "UPDATE accounts SET password_hash = ? WHERE id = ?", (password_hash, account_id)
            )
        if banned is not None:
            conn.execute("UPDATE accounts SET banned = ? WHERE id = ?", (int(banned), account_id))
        account = account_by_id(conn, account_id)
        if account is None:
            raise NotFound(f"no account {account_id!r}")
        if banned:
            conn.execute("DELETE FROM refresh_tokens WHERE account_id = ?", (account_id,))
        return account

    # -- refresh tokens -----------------------------------------------------

    def issue_refresh(self, account_id, device, family, token_hash, ttl, limit):
        try:
            check_refresh(account_id, device, family, token_hash, ttl, limit)
        except StoreError as e:
            return defer.fail(e)
        now = self._clock.seconds()
        record = RefreshFamily(family, account_id, device, token_hash, now, now, now + ttl)
        return self._run(refresh.issue, record, limit)

    def rotate_refresh(self, family, device, token_hash, new_hash, ttl):
        try:
            check_refresh("-", device, family, token_hash, ttl)
            check_refresh("-", device, family, new_hash, ttl)
        except StoreError as e:
            return defer.fail(e)
        now = self._clock.seconds()
        d = self._run(
            refresh.unsynced, refresh.rotate, family, device, token_hash, new_hash, now, ttl
        )
        return d.addCallback(refresh.raise_reused)

    def revoke_refresh(self, account_id, device=None):
        return self._run(refresh.revoke, account_id, device)

    def refresh_families(self, account_id):
        return self._run(refresh.families, account_id, self._clock.seconds())

    # -- logs -------------------------------------------------------------------

    def append_log(self, key, record, keep):
        return self.append_logs(key, [record], keep)

    def append_logs(self, key, records, keep):
        try:
            check_log_args(key, keep, "keep", 1)
            blobs = [pack_record(record) for record in records]
        except StoreError as e:
            return defer.fail(e)
        if not blobs:
            return defer.succeed(None)
        return self._run(_append_logs, key, blobs, keep)

    def read_log(self, key, limit):
        try:
            check_log_args(key, limit, "limit", 0)
        except StoreError as e:
            return defer.fail(e)
        return self._run(self._read_log, key, limit)

    def _read_log(self, conn, key, limit):
        rows = conn.execute(
            "SELECT data FROM logs WHERE key = ? ORDER BY seq DESC LIMIT ?", (key, limit)
        ).fetchall()
        return [unpack_data(row[0]) for row in reversed(rows)]

    # -- backup -----------------------------------------------------------------

    def dump(self):
        return self._run(self._dump)

    def _dump(self, conn):
        # One read transaction: a consistent snapshot even while this or
        # another process writes (WAL readers do not block the writer).
        conn.execute("BEGIN")
        accounts = conn.execute(
            f"SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY created, id"
        ).fetchall()
        characters = conn.execute(
            f"SELECT {CHARACTER_COLUMNS} FROM characters ORDER BY created, id"
        ).fetchall()
        logs: dict[str, list[dict]] = {}
        for key, blob in conn.execute("SELECT key, data FROM logs ORDER BY key, seq"):
            logs.setdefault(key, []).append(unpack_data(blob))
        return {
            "version": DUMP_VERSION,
            "accounts": [dump_record(account_row(row)) for row in accounts],
            "characters": [dump_record(character_row(row)) for row in characters],
            **dump_logs(list(logs.items())),
            **dump_ladders(dump_ladder_tables(conn)),
            **dump_jobs(sqlite_jobs.dump_job_tables(conn)),
            **dump_economy_tables(conn),
        }

    def restore(self, data):
        try:
            accounts, characters = read_dump(data)
            logs = read_dump_logs(data)
            ladders = read_dump_ladders(data)
            jobs = read_dump_jobs(data)
            ledger = read_dump_economy(data)
        except StoreError as e:
            return defer.fail(e)
        return self._run(self._restore, accounts, characters, logs, ladders, jobs, ledger)

    def _restore(self, conn, accounts, characters, logs, ladders, jobs, ledger):
        # All or nothing: one transaction.
        conn.execute("BEGIN IMMEDIATE")
        tables = (
            "accounts",
            "characters",
            "logs",
            "jobs",
            *LADDER_TABLES,
            *ECONOMY_TABLES,
        )
        count = conn.execute(
            "SELECT " + " + ".join(f"(SELECT count(*) FROM {table})" for table in tables)
        ).fetchone()[0]
        if count:
            raise NotEmpty(
                f"the SQLite store {self.path} is not empty; restore only into an empty store"
            )
        conn.executemany(
            "INSERT INTO accounts (id, name, name_key, password_hash, created, banned) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [
                (a.id, a.name, name_key(a.name), a.password_hash, a.created, int(a.banned))
                for a in accounts
            ],
        )
        conn.executemany(
            "INSERT INTO characters (id, account_id, name, name_key, created, data) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [
                (c.id, c.account_id, c.name, name_key(c.name), c.created, pack_data(c.data))
                for c in characters
            ],
        )
        conn.executemany(
            "INSERT INTO logs (key, seq, data) VALUES (?, ?, ?)",
            [
                (key, seq, pack_record(record))
                for key, records in logs
                for seq, record in enumerate(records, 1)
            ],
        )
        restore_ladder_tables(conn, ladders)
        sqlite_jobs.restore_job_tables(conn, jobs)
        restore_economy_tables(conn, ledger)
