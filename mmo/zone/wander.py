"""
NPCs wandering inside their zone's region: each walks at C{npc_speed} in a
random direction, picks a new one now and then, and turns back at the
region's edges, so that an NPC never leaves its region (and is never
handed off).  The random generator is injected: a seeded zone replays
exactly.  See C{docs/world.md}, "NPCs".
"""

from __future__ import annotations

import math
import random

from mmo.zone.entity import Entity
from mmo.zone.world import Region


class Wanderers:
    """
    The walks of one zone's NPCs.

    @param region: The L{Region} they stay in.
    @param speed: World units per second (C{[world] npc_speed}).
    @param clock: Provides C{seconds()}.
    @param rng: The random generator of headings and turns.
    @param turn: Seconds an NPC walks one way before it picks a new
        heading: C{(min, max)}.
    """

    def __init__(
        self, region: Region, speed: float, clock, rng: random.Random, turn: tuple[float, float]
    ):
        self.region = region
        self.speed = speed
        self.clock = clock
        self.rng = rng
        self.turn = turn
        #: Entity id -> [dx, dy (a unit heading), when to turn].
        self._walks: dict[str, list[float]] = {}

    def __bool__(self) -> bool:
        return bool(self._walks)

    def add(self, entity_id: str) -> None:
        """Start walking an NPC, in a random direction."""
        self._walks[entity_id] = self._new_walk()

    def remove(self, entity_id: str) -> None:
        self._walks.pop(entity_id, None)

    def _new_walk(self) -> list[float]:
        angle = self.rng.uniform(0.0, 2 * math.pi)
        low, high = self.turn
        turn = self.clock.seconds() + self.rng.uniform(low, high)
        return [math.cos(angle), math.sin(angle), turn]

    def step(self, reals: dict[str, Entity], frozen: set[str], now: float, step: float) -> None:
        """
        Move every NPC of C{reals} but the C{frozen} along its heading, for
        C{step} seconds, turning at random and at the region's edges.
        """
        distance = self.speed * step
        r = self.region
        left, right = r.x0, math.nextafter(r.x1, r.x0)
        bottom, top = r.y0, math.nextafter(r.y1, r.y0)
        for entity_id, walk in self._walks.items():
            if frozen and entity_id in frozen:
                continue
            if now >= walk[2]:
                walk[:] = self._new_walk()
            entity = reals[entity_id]
            x = entity.x + walk[0] * distance
            y = entity.y + walk[1] * distance
            if x < left:
                x, walk[0] = left, abs(walk[0])
            elif x > right:
                x, walk[0] = right, -abs(walk[0])
            if y < bottom:
                y, walk[1] = bottom, abs(walk[1])
            elif y > top:
                y, walk[1] = top, -abs(walk[1])
            entity.x = x
            entity.y = y
