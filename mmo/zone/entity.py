"""
Entities of the world: players and NPCs.  An entity has exactly one
authoritative copy, the I{real}, in the zone that owns it; neighbouring zones
may hold read-only I{ghosts} of it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

PLAYER = "player"
NPC = "npc"


@dataclass
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
        return asdict(self)

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
