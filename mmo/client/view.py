"""
What a client has in view of the world, kept from its C{world.update}
pushes (C{docs/world.md}): L{WorldView}.

    view = WorldView()
    client.on("world.update", view.apply)
    ...
    for entity in view.entities.values():
        draw(entity["id"], entity["x"], entity["y"])
"""

from __future__ import annotations


class WorldView:
    """
    The entities a client has in view, by id: the last full view of each
    (C{id}, C{kind}, C{x}, C{y}, C{name}, C{attrs}) with the changes since.

    Feed it every C{world.update} push of one session, in order
    (L{apply}).  A push with C{reset} starts the view over: the zone was
    restored after its process ended and cannot know what was shown, so
    what it enters is everything in sight, and the rest is gone.  A new
    session starts with an empty view: make a new one, or L{clear} it.

    @ivar entities: Entity id -> its view (a dict of its own, changed in
        place by the updates).
    """

    def __init__(self):
        self.entities: dict[str, dict] = {}

    def apply(self, push: dict) -> None:
        """Take one C{world.update} push."""
        entities = self.entities
        if push.get("reset"):
            entities.clear()
        for entered in push.get("enter", ()):
            entities[entered["id"]] = dict(entered)
        for change in push.get("update", ()):
            entity = entities.get(change["id"])
            if entity is not None:
                entity.update(change)
        for gone in push.get("leave", ()):
            entities.pop(gone, None)

    def clear(self) -> None:
        """Nothing in view (a new session)."""
        self.entities.clear()

    def __contains__(self, entity_id: str) -> bool:
        return entity_id in self.entities

    def __len__(self) -> int:
        return len(self.entities)
