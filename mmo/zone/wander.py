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
from types import ModuleType

from mmo.zone import kernel as pure_kernel
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
    @param kernel: The module of the per-tick loops whose C{wander} walks
        them (the area of interest's: L{mmo.zone.kernel.load}); default:
        the pure-Python L{mmo.zone.kernel}.
    """

    def __init__(
        self,
        region: Region,
        speed: float,
        clock,
        rng: random.Random,
        turn: tuple[float, float],
        kernel: ModuleType = pure_kernel,
    ):
        self.region = region
        self.speed = speed
        self.clock = clock
        self.rng = rng
        self.turn = turn
        self.kernel = kernel
        # Inclusive: an NPC stays inside the half-open region.
        self._bounds = (
            float(region.x0),
            math.nextafter(region.x1, region.x0),
            float(region.y0),
            math.nextafter(region.y1, region.y0),
        )
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
        self.kernel.wander(
            self._walks, reals, frozen, now, self.speed * step, self._bounds, self._new_walk
        )
