"""
The SQLite store's entity checkpoints (L{mmo.store.IStore}'s C{checkpoint},
C{transfer}, C{load_zone}, C{recover_zone}, C{load_entity},
C{remove_entity}): L{SQLiteEntities}, a mixin of
L{mmo.store.sqlite.SQLiteStore}, on its connection pool (C{_run}).
"""

from __future__ import annotations

from twisted.internet import defer

from mmo.store import (
    OwnershipConflict,
    StoredEntity,
    StoreError,
    check_transfer,
    check_zone,
    entity_rows,
    stored_entity,
)
from mmo.store.sqlite_rows import ENTITY_COLUMNS


class SQLiteEntities:
    """
    The zones' entities in the C{entities} table, each with its owner zone
    and version.
    """

    # Each operation is one transaction (BEGIN IMMEDIATE takes the write lock
    # first), so the compare-and-set of an owner is atomic even between
    # processes sharing the file.

    def checkpoint(self, zone, records):
        try:
            check_zone(zone)
            rows = entity_rows(records)
        except StoreError as e:
            return defer.fail(e)
        return self._run(self._checkpoint, zone, rows)

    def _checkpoint(self, conn, zone, rows):
        conn.execute("BEGIN IMMEDIATE")
        refused = []
        for entity_id, version, blob in rows:
            stored = conn.execute(
                "SELECT owner, version FROM entities WHERE id = ?", (entity_id,)
            ).fetchone()
            if stored is None:
                conn.execute(
                    "INSERT INTO entities (id, owner, version, transfer_id, data) "
                    "VALUES (?, ?, ?, NULL, ?)",
                    (entity_id, zone, version, blob),
                )
            elif stored == (zone, version):
                conn.execute("UPDATE entities SET data = ? WHERE id = ?", (blob, entity_id))
            else:
                refused.append(entity_id)
        return refused

    def transfer(self, entity_id, from_zone, to_zone, transfer_id, record):
        try:
            version, blob = check_transfer(entity_id, from_zone, to_zone, transfer_id, record)
        except StoreError as e:
            return defer.fail(e)
        return self._run(self._transfer, entity_id, from_zone, to_zone, transfer_id, version, blob)

    def _transfer(self, conn, entity_id, from_zone, to_zone, transfer_id, version, blob):
        conn.execute("BEGIN IMMEDIATE")
        current = self._load_entity(conn, entity_id)
        if current is not None:
            if current.owner == to_zone and current.transfer_id == transfer_id:
                return current
            if current.owner != from_zone or current.version != version:
                raise OwnershipConflict(current)
        conn.execute(
            "INSERT OR REPLACE INTO entities (id, owner, version, transfer_id, data) "
            "VALUES (?, ?, ?, ?, ?)",
            (entity_id, to_zone, version + 1, transfer_id, blob),
        )
        return stored_entity(entity_id, to_zone, version + 1, transfer_id, blob)

    def load_zone(self, zone):
        try:
            check_zone(zone)
        except StoreError as e:
            return defer.fail(e)
        return self._run(self._load_zone, zone)

    def _load_zone(self, conn, zone) -> list[StoredEntity]:
        rows = conn.execute(
            f"SELECT {ENTITY_COLUMNS} FROM entities WHERE owner = ? ORDER BY id", (zone,)
        ).fetchall()
        return [stored_entity(*row) for row in rows]

    def recover_zone(self, zone):
        try:
            check_zone(zone)
        except StoreError as e:
            return defer.fail(e)
        return self._run(self._recover_zone, zone)

    def _recover_zone(self, conn, zone):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE entities SET version = version + 1 WHERE owner = ?", (zone,))
        return self._load_zone(conn, zone)

    def load_entity(self, entity_id):
        return self._run(self._load_entity, entity_id)

    def _load_entity(self, conn, entity_id) -> StoredEntity | None:
        row = conn.execute(
            f"SELECT {ENTITY_COLUMNS} FROM entities WHERE id = ?", (entity_id,)
        ).fetchone()
        return None if row is None else stored_entity(*row)

    def remove_entity(self, zone, entity_id):
        return self._run(self._remove_entity, zone, entity_id)

    def _remove_entity(self, conn, zone, entity_id):
        conn.execute("BEGIN IMMEDIATE")
        cursor = conn.execute("DELETE FROM entities WHERE id = ? AND owner = ?", (entity_id, zone))
        return cursor.rowcount > 0
