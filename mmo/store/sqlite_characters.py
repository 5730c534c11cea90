"""
The SQLite store's characters (L{mmo.store.IStore}'s C{create_character},
C{characters}, C{character_by_id}, C{update_character},
C{delete_character}): L{SQLiteCharacters}, a mixin of
L{mmo.store.sqlite.SQLiteStore}, on its connection pool (C{_run}) and clock.
"""

from __future__ import annotations

import sqlite3

from twisted.internet import defer

from mmo.store import (
    AlreadyExists,
    Character,
    NotFound,
    StoreError,
    check_name,
    name_key,
    new_id,
    pack_data,
    unpack_data,
)
from mmo.store.sqlite_rows import CHARACTER_COLUMNS, account_by_id, character_row, is_name_conflict


class SQLiteCharacters:
    """The accounts' characters in the C{characters} table, names unique without regard to case."""

    def create_character(self, account_id, name, data):
        try:
            check_name(name, "character")
            blob = pack_data(data)
        except StoreError as e:
            return defer.fail(e)
        character = Character(new_id(), account_id, name, self._clock.seconds(), unpack_data(blob))
        return self._run(self._insert_character, character, blob)

    def _insert_character(self, conn, character: Character, blob: bytes) -> Character:
        conn.execute("BEGIN IMMEDIATE")
        if account_by_id(conn, character.account_id) is None:
            raise NotFound(f"no account {character.account_id!r}")
        try:
            conn.execute(
                "INSERT INTO characters (id, account_id, name, name_key, created, data) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    character.id,
                    character.account_id,
                    character.name,
                    name_key(character.name),
                    character.created,
                    blob,
                ),
            )
        except sqlite3.IntegrityError as e:
            if is_name_conflict(e):
                raise AlreadyExists(f"the character name {character.name!r} is taken")
            raise
        return character

    def characters(self, account_id):
        return self._run(self._characters, account_id)

    def _characters(self, conn, account_id):
        rows = conn.execute(
            f"SELECT {CHARACTER_COLUMNS} FROM characters WHERE account_id = ? ORDER BY created, id",
            (account_id,),
        ).fetchall()
        return [character_row(row) for row in rows]

    def character_by_id(self, character_id):
        return self._run(self._character_by_id, character_id)

    def _character_by_id(self, conn, character_id):
        row = conn.execute(
            f"SELECT {CHARACTER_COLUMNS} FROM characters WHERE id = ?", (character_id,)
        ).fetchone()
        return None if row is None else character_row(row)

    def update_character(self, character_id, data):
        try:
            blob = pack_data(data)
        except StoreError as e:
            return defer.fail(e)
        return self._run(self._update_character, character_id, blob)

    def _update_character(self, conn, character_id, blob):
        conn.execute("BEGIN IMMEDIATE")
        cursor = conn.execute("UPDATE characters SET data = ? WHERE id = ?", (blob, character_id))
        if cursor.rowcount == 0:
            raise NotFound(f"no character {character_id!r}")
        return self._character_by_id(conn, character_id)

    def delete_character(self, character_id):
        return self._run(self._delete_character, character_id)

    def _delete_character(self, conn, character_id):
        conn.execute("BEGIN IMMEDIATE")
        cursor = conn.execute("DELETE FROM characters WHERE id = ?", (character_id,))
        return cursor.rowcount > 0
