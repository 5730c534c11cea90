"""
The SQLite store's refresh tokens (L{mmo.store.IStore.issue_refresh} and
the rest): each function runs in the store's connection thread, with the
connection as its first argument, as L{mmo.store.sqlite.SQLiteStore} runs
it.
"""

from __future__ import annotations

from mmo.store import NotFound, RefreshFamily, RefreshReused
from mmo.store.sqlite_rows import REFRESH_COLUMNS, account_by_id


def raise_reused(result):
    """A rotation's result, or the L{RefreshReused} it returned, raised."""
    if isinstance(result, RefreshReused):
        raise result
    return result


def issue(conn, record: RefreshFamily, limit: int) -> RefreshFamily:
    """A new family for its device, replacing the device's and past C{limit} the least used."""
    conn.execute("BEGIN IMMEDIATE")
    if account_by_id(conn, record.account_id) is None:
        raise NotFound(f"no account {record.account_id!r}")
    conn.execute(
        "DELETE FROM refresh_tokens WHERE account_id = ? AND (device = ? OR expires <= ?)",
        (record.account_id, record.device, record.created),
    )
    conn.execute(
        "DELETE FROM refresh_tokens WHERE family IN (SELECT family FROM refresh_tokens "
        "WHERE account_id = ? ORDER BY used DESC, family LIMIT -1 OFFSET ?)",
        (record.account_id, limit - 1),
    )
    conn.execute(
        f"INSERT INTO refresh_tokens ({REFRESH_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            record.family,
            record.account_id,
            record.device,
            record.token_hash,
            record.created,
            record.used,
            record.expires,
        ),
    )
    return record


def unsynced(conn, function, *args):
    """
    Run C{function(conn, *args)} in a transaction of its own committed
    without waiting for the disk (C{synchronous = NORMAL}): it survives
    a crash of the process, and is on disk at the next checkpoint or
    ordinary commit, but a crash of the machine before then may lose
    it.  For a token rotation, the step of every returning player's
    login, that is what a fsync of its own (a few ms, in one writer's
    queue) would otherwise bound the login rate by; what a lost
    rotation costs is one password login.
    """
    conn.execute("PRAGMA synchronous = NORMAL")
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = function(conn, *args)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result
    finally:
        conn.execute("PRAGMA synchronous = FULL")


def rotate(conn, family, device, token_hash, new_hash, now, ttl):
    """
    The family's token spent for C{new_hash}: C{(family, account)}, C{None}
    (unknown, expired, another device), or L{RefreshReused} (the family is
    deleted: a spent token came back).
    """
    row = conn.execute(
        f"SELECT {REFRESH_COLUMNS} FROM refresh_tokens WHERE family = ?", (family,)
    ).fetchone()
    if row is None:
        return None
    stored = RefreshFamily(*row)
    if stored.expires <= now:
        conn.execute("DELETE FROM refresh_tokens WHERE family = ?", (family,))
        return None
    if stored.device != device:
        return None
    if stored.token_hash != token_hash:
        conn.execute("DELETE FROM refresh_tokens WHERE family = ?", (family,))
        # Returned, not raised: the deletion is committed.
        return RefreshReused(stored.account_id, stored.device)
    conn.execute(
        "UPDATE refresh_tokens SET token_hash = ?, used = ?, expires = ? WHERE family = ?",
        (new_hash, now, now + ttl, family),
    )
    rotated = RefreshFamily(
        family, stored.account_id, device, new_hash, stored.created, now, now + ttl
    )
    return rotated, account_by_id(conn, stored.account_id)


def revoke(conn, account_id, device):
    """Delete the account's families (of C{device} only, if given): how many."""
    conn.execute("BEGIN IMMEDIATE")
    if device is None:
        cursor = conn.execute("DELETE FROM refresh_tokens WHERE account_id = ?", (account_id,))
    else:
        cursor = conn.execute(
            "DELETE FROM refresh_tokens WHERE account_id = ? AND device = ?",
            (account_id, device),
        )
    return cursor.rowcount


def families(conn, account_id, now):
    """The account's live families, most recently used first."""
    rows = conn.execute(
        f"SELECT {REFRESH_COLUMNS} FROM refresh_tokens WHERE account_id = ? AND expires > ? "
        "ORDER BY used DESC, family",
        (account_id, now),
    ).fetchall()
    return [RefreshFamily(*row) for row in rows]
