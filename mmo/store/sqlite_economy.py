"""
The SQLite store's economy ledger (L{mmo.store.IEconomyStore}): its tables,
made by L{migration}, and L{SQLiteEconomy}, the mixin of
L{mmo.store.sqlite.SQLiteStore} whose methods run the functions below in
the store's connection thread.

Tables:

  - C{economy_postings}: the postings applied, numbered by C{seq} (1, 2,
    ... with no gap), the idempotency key unique, the legs as msgpack and
    their digest (a key applied again must come with the same legs);
  - C{economy_account_postings}: C{(account, seq)} of every account a
    posting has a leg of: an account's history, newest first, read
    backwards;
  - C{economy_balances}: C{(account, asset) -> balance}, no row for 0,
    with the index C{economy_holders} on C{(asset, account)};
  - C{economy_loads}: an account's load;
  - C{economy_items}: a unique item's properties and the posting that
    issued it.

A posting is one C{BEGIN IMMEDIATE} transaction: the check of its key,
its refusal checks against the balances and loads it reads and all its
writes are one atomic step between processes sharing the file.
"""

from __future__ import annotations

import sqlite3

import msgpack

from mmo.store.common_economy import (
    Entry,
    Posted,
    PostResult,
    Refusal,
    Refused,
    check_account,
    check_asset,
    check_key,
    check_kind,
    check_limit,
    check_seq,
    pack_legs,
    plan,
    refusal_for,
    reused,
    unpack_legs,
)
from mmo.store.common_economy_dump import LedgerDump, dump_economy
from mmo.store.common_ladder import checked

ENTRY_COLUMNS = "seq, key, reason, at, legs"


def migration(conn: sqlite3.Connection) -> None:
    """The ledger's tables (a migration of L{mmo.store.sqlite.MIGRATIONS})."""
    conn.execute(
        """
        CREATE TABLE economy_postings (
            seq INTEGER PRIMARY KEY,
            key TEXT NOT NULL UNIQUE,
            reason TEXT NOT NULL,
            at REAL NOT NULL,
            legs BLOB NOT NULL,
            digest TEXT NOT NULL
        )
        """
    )
    conn.execute(
        """
        CREATE TABLE economy_account_postings (
            account TEXT NOT NULL,
            seq INTEGER NOT NULL,
            PRIMARY KEY (account, seq)
        ) WITHOUT ROWID
        """
    )
    conn.execute(
        """
        CREATE TABLE economy_balances (
            account TEXT NOT NULL,
            asset TEXT NOT NULL,
            balance INTEGER NOT NULL,
            PRIMARY KEY (account, asset)
        ) WITHOUT ROWID
        """
    )
    conn.execute("CREATE INDEX economy_holders ON economy_balances (asset, account)")
    conn.execute(
        "CREATE TABLE economy_loads (account TEXT PRIMARY KEY, load INTEGER NOT NULL) WITHOUT ROWID"
    )
    conn.execute(
        "CREATE TABLE economy_items (asset TEXT PRIMARY KEY, props BLOB NOT NULL, "
        "seq INTEGER NOT NULL) WITHOUT ROWID"
    )


def _entry(values) -> Entry:
    seq, key, reason, at, legs = values
    return Entry(seq, key, reason, at, unpack_legs(bytes(legs)))


def _balance(conn, account, asset) -> int:
    row = conn.execute(
        "SELECT balance FROM economy_balances WHERE account = ? AND asset = ?", (account, asset)
    ).fetchone()
    return 0 if row is None else row[0]


def _load(conn, account) -> int:
    row = conn.execute("SELECT load FROM economy_loads WHERE account = ?", (account,)).fetchone()
    return 0 if row is None else row[0]


def _post(conn, planned) -> PostResult:
    posting = planned.posting
    conn.execute("BEGIN IMMEDIATE")
    stored = conn.execute(
        "SELECT seq, digest FROM economy_postings WHERE key = ?", (posting.key,)
    ).fetchone()
    if stored is not None:
        if stored[1] != planned.digest:
            raise reused(posting.key)
        return PostResult(Posted.DUPLICATE, seq=stored[0])
    if planned.unbalanced is not None:
        return PostResult(
            Posted.REFUSED, refusal=Refusal(Refused.UNBALANCED, asset=planned.unbalanced)
        )
    afters = []
    loads: dict[str, int] = {}
    for step in planned.steps:
        leg = step.leg
        before = _balance(conn, leg.account, leg.asset)
        after = before + leg.amount
        if (step.floor is not None and after < step.floor) or (
            step.ceiling is not None and after > step.ceiling
        ):
            return PostResult(Posted.REFUSED, refusal=refusal_for(step))
        afters.append(after)
        loads[leg.account] = loads.get(leg.account, 0) + leg.load_change(before)
    for account, max_load in planned.limits.items():
        change = loads.get(account, 0)
        if change > 0 and _load(conn, account) + change > max_load:
            return PostResult(Posted.REFUSED, refusal=Refusal(Refused.LIMIT, account=account))
    for asset, (issuer, _) in planned.issue.items():
        if conn.execute("SELECT 1 FROM economy_items WHERE asset = ?", (asset,)).fetchone():
            return PostResult(Posted.REFUSED, refusal=Refusal(Refused.UNIQUE, issuer, asset))
    (seq,) = conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM economy_postings").fetchone()
    conn.execute(
        "INSERT INTO economy_postings (seq, key, reason, at, legs, digest) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (seq, posting.key, posting.reason, posting.at, planned.legs, planned.digest),
    )
    for step, after in zip(planned.steps, afters, strict=True):
        if after == 0:
            conn.execute(
                "DELETE FROM economy_balances WHERE account = ? AND asset = ?",
                (step.leg.account, step.leg.asset),
            )
        else:
            conn.execute(
                "INSERT OR REPLACE INTO economy_balances (account, asset, balance) "
                "VALUES (?, ?, ?)",
                (step.leg.account, step.leg.asset, after),
            )
    conn.executemany(
        "INSERT INTO economy_account_postings (account, seq) VALUES (?, ?)",
        [(account, seq) for account in loads],
    )
    conn.executemany(
        "INSERT INTO economy_loads (account, load) VALUES (?, ?) "
        "ON CONFLICT (account) DO UPDATE SET load = load + excluded.load",
        [(account, change) for account, change in loads.items() if change],
    )
    conn.executemany(
        "INSERT INTO economy_items (asset, props, seq) VALUES (?, ?, ?)",
        [(asset, props, seq) for asset, (_, props) in planned.issue.items()],
    )
    return PostResult(Posted.APPLIED, seq=seq)


def _balances(conn, account):
    return dict(
        conn.execute(
            "SELECT asset, balance FROM economy_balances WHERE account = ?", (account,)
        ).fetchall()
    )


def _history(conn, account, limit, before):
    conn.execute("BEGIN")
    rows = conn.execute(
        f"SELECT {ENTRY_COLUMNS} FROM economy_postings WHERE seq IN ("
        "SELECT seq FROM economy_account_postings WHERE account = ? AND seq < ? "
        "ORDER BY seq DESC LIMIT ?) ORDER BY seq DESC",
        (account, before, limit),
    ).fetchall()
    return [_entry(values).of(account) for values in rows]


def _posting(conn, key):
    values = conn.execute(
        f"SELECT {ENTRY_COLUMNS} FROM economy_postings WHERE key = ?", (key,)
    ).fetchone()
    return None if values is None else _entry(values)


def _postings(conn, after_seq, limit):
    return [
        _entry(values)
        for values in conn.execute(
            f"SELECT {ENTRY_COLUMNS} FROM economy_postings WHERE seq > ? ORDER BY seq LIMIT ?",
            (after_seq, limit),
        )
    ]


def _holders(conn, asset, after, limit):
    return conn.execute(
        "SELECT account, balance FROM economy_balances WHERE asset = ? AND account > ? "
        "ORDER BY account LIMIT ?",
        (asset, after, limit),
    ).fetchall()


def _accounts(conn, kind, after, limit):
    # The balances' primary key is ordered by account: the accounts of a
    # kind are the range from "kind:" to "kind;" (";" follows ":").
    rows = conn.execute(
        "SELECT DISTINCT account FROM economy_balances WHERE account > ? AND account < ? "
        "ORDER BY account LIMIT ?",
        (after or f"{kind}:", f"{kind};", limit),
    )
    return [account for (account,) in rows]


def _item(conn, asset):
    row = conn.execute("SELECT props FROM economy_items WHERE asset = ?", (asset,)).fetchone()
    return None if row is None else msgpack.unpackb(bytes(row[0]), raw=False)


class SQLiteEconomy:
    """
    L{mmo.store.IEconomyStore} for L{mmo.store.sqlite.SQLiteStore}, whose
    C{_run} runs each function in its connection thread, in a transaction.
    """

    @checked
    def economy_post(self, posting):
        return self._run(_post, plan(posting))

    @checked
    def economy_balances(self, account):
        return self._run(_balances, check_account(account))

    @checked
    def economy_history(self, account, limit, before=None):
        before = 2**62 if before is None else check_seq(before, "a history's before")
        return self._run(_history, check_account(account), check_limit(limit), before)

    @checked
    def economy_posting(self, key):
        return self._run(_posting, check_key(key))

    @checked
    def economy_postings(self, after_seq, limit):
        return self._run(_postings, check_seq(after_seq, "after_seq"), check_limit(limit))

    @checked
    def economy_holders(self, asset, limit, after=None):
        after = "" if after is None else check_account(after)
        return self._run(_holders, check_asset(asset), after, check_limit(limit))

    @checked
    def economy_load(self, account):
        return self._run(_load, check_account(account))

    @checked
    def economy_item(self, asset):
        return self._run(_item, check_asset(asset))

    @checked
    def economy_accounts(self, kind, limit, after=None):
        after = None if after is None else check_account(after)
        return self._run(_accounts, check_kind(kind), after, check_limit(limit))


# -- dump and restore: run by mmo.store.sqlite.SQLiteStore's in its transaction --

#: The ledger's tables, for the check that a restore's store is empty.
ECONOMY_TABLES = ("economy_postings", "economy_items")


def dump_economy_tables(conn) -> dict:
    """The C{"economy"} part of a dump, read in the caller's transaction."""
    postings = [
        (_entry(row[:5]), row[5])
        for row in conn.execute(
            f"SELECT {ENTRY_COLUMNS}, digest FROM economy_postings ORDER BY seq"
        )
    ]
    items = {
        asset: bytes(props)
        for asset, props in conn.execute("SELECT asset, props FROM economy_items")
    }
    return dump_economy(postings, items)


def restore_economy_tables(conn, ledger: LedgerDump | None) -> None:
    """Write a checked ledger into the caller's transaction (the tables empty)."""
    if ledger is None:
        return
    conn.executemany(
        "INSERT INTO economy_postings (seq, key, reason, at, legs, digest) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [
            (e.seq, e.key, e.reason, e.at, pack_legs(e.legs), digest)
            for e, digest in ledger.postings
        ],
    )
    conn.executemany(
        "INSERT INTO economy_account_postings (account, seq) VALUES (?, ?)",
        [
            (account, e.seq)
            for e, _ in ledger.postings
            for account in dict.fromkeys(leg.account for leg in e.legs)
        ],
    )
    conn.executemany(
        "INSERT INTO economy_balances (account, asset, balance) VALUES (?, ?, ?)",
        ledger.balances,
    )
    conn.executemany("INSERT INTO economy_loads (account, load) VALUES (?, ?)", ledger.loads)
    conn.executemany("INSERT INTO economy_items (asset, props, seq) VALUES (?, ?, ?)", ledger.items)
