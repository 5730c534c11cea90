"""
The world map: a rectangle split into regions, each simulated by one zone
process.

Regions are half-open rectangles C{[x0, x1) x [y0, y1)}, so that every point
of the map belongs to exactly one of them; the map's own right and top edges
(C{x == width}, C{y == height}) belong to the regions along them.  The map is
read from the C{[world]} section of the config (L{WorldMap.from_config}),
which has already checked that the regions tile it.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass


@dataclass(frozen=True)
class Region:
    """
    One rectangle of the map and the zone process serving it.

    @ivar name: Unique on the map (C{r<row>c<column>} for a grid).
    @ivar process: The name of the zone process (C{[processes.NAME]}).
    """

    name: str
    x0: float
    y0: float
    x1: float
    y1: float
    process: str

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    def contains(self, x: float, y: float) -> bool:
        """Whether C{(x, y)} lies in the closed rectangle (borders included)."""
        return self.x0 <= x <= self.x1 and self.y0 <= y <= self.y1

    def distance(self, x: float, y: float) -> float:
        """How far C{(x, y)} is from the rectangle: 0 on or inside it."""
        dx = max(self.x0 - x, 0.0, x - self.x1)
        dy = max(self.y0 - y, 0.0, y - self.y1)
        if not dy:
            return dx
        if not dx:
            return dy
        return math.hypot(dx, dy)

    def touches(self, other: Region) -> bool:
        """Whether the two rectangles share a border or a corner (and are distinct)."""
        return (
            other is not self
            and other.name != self.name
            and self.x0 <= other.x1
            and other.x0 <= self.x1
            and self.y0 <= other.y1
            and other.y0 <= self.y1
        )


class WorldMap:
    """
    The map: its size, its regions and the lookups the zones need.

    L{region_at} is a binary search in a grid of the distinct region edges,
    so it costs O(log regions) whatever the layout.
    """

    def __init__(self, width: float, height: float, regions: list[Region]):
        if not regions:
            raise ValueError("a world map needs at least one region")
        self.width = float(width)
        self.height = float(height)
        self.regions: dict[str, Region] = {}
        for region in regions:
            if region.name in self.regions:
                raise ValueError(f"two regions are called {region.name!r}")
            self.regions[region.name] = region
        # The distinct edges across and up, and which region covers each
        # cell between them.
        self._xs = sorted({r.x0 for r in regions} | {r.x1 for r in regions})
        self._ys = sorted({r.y0 for r in regions} | {r.y1 for r in regions})
        self._cells: list[list[Region | None]] = []
        for j in range(len(self._ys) - 1):
            my = (self._ys[j] + self._ys[j + 1]) / 2
            row = []
            for i in range(len(self._xs) - 1):
                mx = (self._xs[i] + self._xs[i + 1]) / 2
                row.append(
                    next((r for r in regions if r.x0 <= mx < r.x1 and r.y0 <= my < r.y1), None)
                )
            self._cells.append(row)
        self._neighbours = {r.name: tuple(o for o in regions if r.touches(o)) for r in regions}

    @classmethod
    def from_config(cls, config) -> WorldMap:
        """
        The map of C{config}: a L{mmo.config.Config} (its C{world} section
        is used) or a L{mmo.config.WorldSection}.
        """
        world = getattr(config, "world", config)
        return cls(world.width, world.height, [Region(*entry) for entry in world.layout])

    def in_bounds(self, x: float, y: float) -> bool:
        """Whether C{(x, y)} is on the map (its edges included)."""
        return 0.0 <= x <= self.width and 0.0 <= y <= self.height

    def region_at(self, x: float, y: float) -> Region | None:
        """The region C{(x, y)} belongs to, or C{None} off the map."""
        if not (0.0 <= x <= self.width and 0.0 <= y <= self.height):
            return None
        # bisect_right puts a point on an edge into the cell that starts
        # there (half-open regions); the map's far edges into the last cell.
        i = min(bisect_right(self._xs, x) - 1, len(self._xs) - 2)
        j = min(bisect_right(self._ys, y) - 1, len(self._ys) - 2)
        return self._cells[j][i]

    def region(self, name: str) -> Region:
        """The region called C{name}; C{KeyError} if there is none."""
        return self.regions[name]

    def neighbours(self, region: Region | str) -> tuple[Region, ...]:
        """The regions sharing a border or a corner with C{region}."""
        return self._neighbours[region if isinstance(region, str) else region.name]

    def distance_to_region(self, region: Region | str, x: float, y: float) -> float:
        """How far C{(x, y)} is from C{region}: 0 on or inside it."""
        if isinstance(region, str):
            region = self.regions[region]
        return region.distance(x, y)

    def regions_within(
        self, x: float, y: float, margin: float, exclude: Region | str | None = None
    ) -> list[Region]:
        """
        The regions within C{margin} of C{(x, y)} (the one it is in
        included, unless it is C{exclude}): where an entity there must be
        ghosted.
        """
        skip = exclude.name if isinstance(exclude, Region) else exclude
        return [r for r in self.regions.values() if r.name != skip and r.distance(x, y) <= margin]
