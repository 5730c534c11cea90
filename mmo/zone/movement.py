"""
How far a zone's reals may move: the speed limit of players' inputs.

Speed is checked against an I{allowance} per real, in world units: it grows
by C{max_speed x (1 + speed_tolerance)} units per second since the last
move, up to C{move_burst} seconds' worth, and shrinks by the length of each
accepted move.  Inputs delayed by the network and arriving together are
caught up, but nobody goes faster than the limit for longer than the burst,
and no single move jumps further than it.  An allowance starts full when its
real arrives in the zone, so that inputs forwarded during a handoff are not
refused.  See C{docs/world.md}, "Movement input".
"""

from __future__ import annotations

import math
from functools import lru_cache

from mmo.zone.entity import Entity
from mmo.zone.world import WorldMap

#: How much a move may exceed its allowance, world units: float rounding.
_EPSILON = 1e-6


@lru_cache(maxsize=8)
def client_movement(world_config) -> dict:
    """
    The movement rules of C{world_config} (the C{[world]} section) as a
    client needs them to predict what its zone accepts, the C{movement}
    field of the C{zone.enter} reply: C{max_speed} (units/s), C{tolerance}
    (the share above it still accepted), C{burst} (seconds of movement
    caught up at once) and C{tick_rate}.  Built once per section and shared
    by every reply: nobody may change it.
    """
    return {
        "max_speed": float(world_config.max_speed),
        "tolerance": float(world_config.speed_tolerance),
        "burst": float(world_config.move_burst),
        "tick_rate": float(world_config.tick_rate),
    }


class Allowance:
    """
    The movement allowance of every real of one zone.

    @param world_map: The L{WorldMap}: a move must end on it.
    @param world_config: The C{[world]} section (C{max_speed},
        C{speed_tolerance}, C{move_burst}).
    @param clock: Provides C{seconds()}.
    """

    def __init__(self, world_map: WorldMap, world_config, clock):
        self.map = world_map
        self.clock = clock
        rate = world_config.max_speed * (1 + world_config.speed_tolerance)
        self._refill = rate
        self._cap = rate * world_config.move_burst
        #: Entity id -> [units it may still move, as of when].
        self._left: dict[str, list[float]] = {}

    def start(self, entity_id: str) -> None:
        """A real arrived: its allowance starts full."""
        self._left[entity_id] = [self._cap, self.clock.seconds()]

    def stop(self, entity_id: str) -> None:
        """A real left: forget its allowance."""
        self._left.pop(entity_id, None)

    def move(self, entity: Entity, x: float, y: float) -> bool:
        """
        Move C{entity} to C{(x, y)} if it may go there: on the map, within
        its allowance.  Whether it moved (a refused move still counts the
        time since the last one).
        """
        if not self.map.in_bounds(x, y):
            return False
        left = self._left.get(entity.id)
        if left is None:
            return False
        now = self.clock.seconds()
        # Comparisons rather than min() and max(): this runs for every input.
        elapsed = now - left[1]
        budget = left[0] + self._refill * elapsed if elapsed > 0.0 else left[0]
        if budget > self._cap:
            budget = self._cap
        distance = math.hypot(x - entity.x, y - entity.y)
        left[1] = now
        if distance > budget + _EPSILON:
            left[0] = budget
            return False
        rest = budget - distance
        left[0] = rest if rest > 0.0 else 0.0
        entity.x = float(x)
        entity.y = float(y)
        return True
