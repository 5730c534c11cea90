"""
Where a player's character comes into the world and what is kept of it
when it leaves: the store's side of C{zone.enter} and C{zone.leave}
(L{mmo.zone.service.ZoneService}).
"""

from __future__ import annotations

from twisted.logger import Logger
from twisted.python.failure import Failure

from mmo.rpc.commands import Redirect
from mmo.unavailable import log_failure
from mmo.zone.entity import PLAYER, WORLD_KEY, Entity, saved_position

log = Logger()


async def entering(store, world_map, zone: str, spawn, caller) -> Entity:
    """
    The entity of C{caller}'s character as it enters zone C{zone}: its
    checkpoint from the store, else a new entity where the character last
    left the world (L{WORLD_KEY} of its data, with the attrs it had then)
    if that is on the map, else at C{spawn} (with the saved attrs all the
    same).

    @raise Redirect: Another zone owns it, or its saved position is in
        another zone's region.
    """
    entity_id = caller.character_id
    stored = await store.load_entity(entity_id)
    if stored is not None and stored.owner != zone:
        # Another zone owns it: the gateway's zone route goes there.
        raise Redirect(stored.owner)
    if stored is not None:
        entity = Entity.from_dict(stored.data)
        entity.version = stored.version
        return entity
    x, y = spawn
    attrs = None
    # A new entity starts with its character's data as its attributes (the
    # game's: hp, class...), or with the attrs it had when it last left the
    # world, where it was then; from then on the entity's own attrs travel
    # with it (handoffs, checkpoints).
    character = await store.character_by_id(entity_id)
    data = character.data if character is not None else None
    if isinstance(data, dict):
        attrs = {k: v for k, v in data.items() if k != WORLD_KEY}
    saved = saved_position(data)
    if saved is not None:
        region = world_map.region_at(saved[0], saved[1])
        if region is not None and region.name != zone:
            raise Redirect(region.name)
        if region is not None:
            x, y = saved[0], saved[1]
        if saved[2] is not None:
            attrs = saved[2]
    entity = Entity(entity_id, PLAYER, x, y, name=caller.display_name)
    if attrs is not None:
        entity.attrs = attrs
    return entity


async def save_where(store, zone: str, entity: Entity) -> None:
    """
    Save where C{entity} left the world, with its attrs, into its
    character's data (L{WORLD_KEY}); a failure is logged (its next
    C{zone.enter} finds an older saved position, or none: the spawn).
    """
    try:
        character = await store.character_by_id(entity.id)
        if character is None:
            return
        data = dict(character.data) if isinstance(character.data, dict) else {}
        data[WORLD_KEY] = {"x": entity.x, "y": entity.y, "attrs": entity.attrs}
        await store.update_character(entity.id, data)
    except Exception:
        log_failure(
            Failure(),
            log,
            "zone {zone}: saving where {id} left the world failed",
            zone=zone,
            id=entity.id,
        )
