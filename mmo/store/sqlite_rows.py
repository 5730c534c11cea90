"""
The rows of the SQLite store's tables, as the store's records: the column
lists its queries select, and the conversions (shared by L{mmo.store.sqlite}
and the refresh tokens' queries, L{mmo.store.sqlite_refresh}).
"""

from __future__ import annotations

import sqlite3

from mmo.store import Account, Character, unpack_data

ACCOUNT_COLUMNS = "id, name, password_hash, created, banned"
CHARACTER_COLUMNS = "id, account_id, name, created, data"
ENTITY_COLUMNS = "id, owner, version, transfer_id, data"
REFRESH_COLUMNS = "family, account_id, device, token_hash, created, used, expires"


def account_row(row) -> Account:
    return Account(
        id=row[0], name=row[1], password_hash=row[2], created=row[3], banned=bool(row[4])
    )


def character_row(row) -> Character:
    return Character(
        id=row[0], account_id=row[1], name=row[2], created=row[3], data=unpack_data(row[4])
    )


def account_by_id(conn, account_id):
    """The account of id C{account_id}, or C{None}."""
    row = conn.execute(
        f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ?", (account_id,)
    ).fetchone()
    return None if row is None else account_row(row)


def is_name_conflict(error: sqlite3.IntegrityError) -> bool:
    """Whether C{error} is a name (of an account or a character) taken already."""
    return "UNIQUE" in str(error) and ".name_key" in str(error)
