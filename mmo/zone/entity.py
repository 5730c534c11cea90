"""
Entities of the world: players and NPCs.  An entity has exactly one
authoritative copy, the I{real}, in the zone that owns it; neighbouring zones
may hold read-only I{ghosts} of it.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field

PLAYER = "player"
NPC = "npc"


@dataclass(slots=True)
class Entity:
    """
    @ivar id: Unique in the world, never reused (players: their character id).
    @ivar kind: L{PLAYER} or L{NPC}.
    @ivar x: Position, world units.
    @ivar y: Position, world units.
    @ivar name: Shown to other players.
    @ivar attrs: Game-defined attributes (msgpack-able), carried through
        handoffs and checkpoints untouched.
    @ivar last_input: Sequence number of the last input applied (players):
        inputs are applied in order, each at most once, across handoffs.
    @ivar session: The session of a player (its gateway route), else None.
    @ivar gateway: The gateway holding that session, else None.
    @ivar version: Bumped on every change of owner (handoff), for checkpoints.
    """

    id: str
    kind: str
    x: float
    y: float
    name: str = ""
    attrs: dict = field(default_factory=dict)
    last_input: int = 0
    session: str | None = None
    gateway: str | None = None
    version: int = 0

    def to_dict(self) -> dict:
        """
        Its fields, in their order, C{attrs} a deep copy: what
        C{dataclasses.asdict} gives, without its walk of every field
        (each handoff and checkpoint of a player makes one).  A subclass's
        (fields of its own, a view of its own) is C{asdict}'s.
        """
        if type(self) is not Entity:
            return asdict(self)
        record = Entity.view(self)
        attrs = self.attrs
        record["attrs"] = copy.deepcopy(attrs) if attrs else type(attrs)()
        record["last_input"] = self.last_input
        record["session"] = self.session
        record["gateway"] = self.gateway
        record["version"] = self.version
        return record

    @classmethod
    def from_dict(cls, data: dict) -> Entity:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    def view(self) -> dict:
        """What other players see of it (AOI events, ghosts)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "x": self.x,
            "y": self.y,
            "name": self.name,
            "attrs": self.attrs,
        }


#: The key of a character's data that keeps where its entity left the world:
#: C{{"x": float, "y": float, "attrs": dict}}, saved by the zone service
#: (L{mmo.zone.service.ZoneService}) when a player's entity leaves the world.
WORLD_KEY = "world"


def saved_position(data: object) -> tuple[float, float, dict | None] | None:
    """
    Where a character's entity left the world, from its data (L{WORLD_KEY}):
    C{(x, y, attrs)} (C{attrs} C{None} if not a dict), or C{None} if none
    is saved or it is malformed.  Whether it is on the map is the caller's.
    """
    saved = data.get(WORLD_KEY) if isinstance(data, dict) else None
    if not isinstance(saved, dict):
        return None
    x, y = saved.get("x"), saved.get("y")
    for v in (x, y):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return None
    attrs = saved.get("attrs")
    return float(x), float(y), dict(attrs) if isinstance(attrs, dict) else None
