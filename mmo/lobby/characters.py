"""
The lobby's characters: creating, listing, deleting and choosing them
(C{character.*}).  Characters are durable: they live in the store, belong
to an account and have names unique across the deployment without regard
to case.
"""

from __future__ import annotations

import re
from contextlib import asynccontextmanager

from twisted.internet import defer

from mmo.game import checks
from mmo.game.service import Caller, Reply, SessionChange
from mmo.lobby.sessions import FIELD_LIMIT
from mmo.store import AlreadyExists, Character, NotFound
from mmo.wire.codes import (
    BAD_NAME,
    BAD_REQUEST,
    CHARACTER_LIMIT,
    NAME_TAKEN,
    NOT_ALLOWED,
    NOT_FOUND,
    WireError,
)

#: Character names: a letter, then letters, digits, '_' and '-' (the
#: lengths come from the config).
CHARACTER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


def character_dict(character: Character) -> dict:
    """A character as clients see it."""
    return {
        "id": character.id,
        "name": character.name,
        "created": character.created,
        "data": character.data,
    }


class CharacterRequests:
    """
    The lobby's C{character.*} requests, and the naming rules a game may
    change (L{check_character_name}, L{check_character_data}): a part of
    L{mmo.lobby.service.LobbyService}, over its C{store}, C{rules} and
    sessions.
    """

    def check_character_name(self, name) -> str:
        """C{name} if it follows the naming rules, else C{bad_request}/C{bad_name}."""
        if not isinstance(name, str):
            raise WireError(BAD_REQUEST, "'name' must be a string")
        low, high = self.rules.character_name_min_length, self.rules.character_name_max_length
        if not low <= len(name) <= high:
            raise WireError(BAD_NAME, f"a character name has {low} to {high} characters")
        if not CHARACTER_NAME.match(name):
            raise WireError(
                BAD_NAME,
                "a character name starts with a letter and has only letters, digits, '_' and '-'",
            )
        return name

    def check_character_data(self, data) -> dict:
        """The game attributes of a new character: a map, C{{}} if absent."""
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise WireError(BAD_REQUEST, "'data' must be a map")
        return data

    @asynccontextmanager
    async def _account_lock(self, account_id: str):
        """
        Run one character creation of an account at a time, so that two
        concurrent ones cannot both pass the limit.
        """
        lock = self._account_locks.setdefault(account_id, defer.DeferredLock())
        await lock.acquire()
        try:
            yield
        finally:
            lock.release()
            if not lock.locked and not lock.waiting:
                self._account_locks.pop(account_id, None)

    async def _own_character(self, caller: Caller, message: dict) -> Character:
        """The character C{message["character"]} of the caller's account, else C{not_found}."""
        character_id = checks.string(message, "character", FIELD_LIMIT)
        character = await self.store.character_by_id(character_id)
        # Another account's character is as unknown as a missing one.
        if character is None or character.account_id != caller.account_id:
            raise WireError(NOT_FOUND, f"you have no character {character_id!r}")
        return character

    def _chosen_elsewhere(self, caller: Caller, character_id: str) -> bool:
        """Whether another session (of the same account) has this character chosen."""
        return any(
            s.caller.character_id == character_id and s.caller.session != caller.session
            for s in self._sessions.values()
        )

    async def on_character_create(self, caller: Caller, message: dict) -> dict:
        name = self.check_character_name(message.get("name"))
        data = self.check_character_data(message.get("data"))
        limit = self.rules.characters_per_account
        async with self._account_lock(caller.account_id):
            if len(await self.store.characters(caller.account_id)) >= limit:
                raise WireError(CHARACTER_LIMIT, f"an account has at most {limit} characters")
            try:
                character = await self.store.create_character(caller.account_id, name, data)
            except AlreadyExists:
                raise WireError(NAME_TAKEN, f"the character name {name!r} is taken")
            except NotFound:
                raise WireError(NOT_FOUND, "your account no longer exists")
        self.log.info("lobby: {account} created character {name}", account=caller.name, name=name)
        return {"character": character_dict(character)}

    async def on_character_list(self, caller: Caller, message: dict) -> dict:
        characters = await self.store.characters(caller.account_id)
        return {
            "characters": [character_dict(c) for c in characters],
            "chosen": caller.character_id,
        }

    async def on_character_delete(self, caller: Caller, message: dict) -> dict | Reply:
        character = await self._own_character(caller, message)
        chosen = caller.character_id == character.id
        if chosen and caller.in_world:
            raise WireError(NOT_ALLOWED, "leave the world before deleting your character")
        if self._chosen_elsewhere(caller, character.id):
            raise WireError(NOT_ALLOWED, "the character is in play in another session")
        if not await self.store.delete_character(character.id):
            raise WireError(NOT_FOUND, f"you have no character {character.id!r}")
        self.log.info(
            "lobby: {account} deleted character {name}", account=caller.name, name=character.name
        )
        reply = {"deleted": character.id}
        if chosen:
            return Reply(reply, SessionChange(character_id=None, character_name=None))
        return reply

    async def on_character_choose(self, caller: Caller, message: dict) -> Reply:
        character = await self._own_character(caller, message)
        if caller.in_world and caller.character_id != character.id:
            raise WireError(NOT_ALLOWED, "leave the world before choosing another character")
        if self._chosen_elsewhere(caller, character.id):
            raise WireError(NOT_ALLOWED, "the character is in play in another session")
        return Reply(
            {"character": character_dict(character)},
            SessionChange(character_id=character.id, character_name=character.name),
        )
