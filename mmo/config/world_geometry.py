"""
The geometry of the world map: rectangular L{Region}s and the L{RegionGrid}
of their edges, shared by the C{[world]} checks (gaps, overlaps) and the
zones' map (C{mmo.zone.world.WorldMap}: which region a point is in, which
regions are neighbours).

Regions are half-open rectangles C{[x0, x1) x [y0, y1)}, so that every point
of a map they tile belongs to exactly one of them; the map's own right and
top edges (C{x == width}, C{y == height}) belong to the regions along them.

The grid cuts the map at every distinct region edge.  A region covers a
whole block of the grid's cells, found by the index of its edges, so the
grid knows exactly (no float midpoints, no sums of areas) which cells no
region covers and which several do.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from itertools import pairwise


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

    def intersection(self, other: Region) -> tuple[float, float, float, float]:
        """C{(x0, y0, x1, y1)} of the rectangle the two share (empty when they do not meet)."""
        return (
            max(self.x0, other.x0),
            max(self.y0, other.y0),
            min(self.x1, other.x1),
            min(self.y1, other.y1),
        )


def grid_regions(
    width: float, height: float, columns: int, rows: int, processes: list[str]
) -> list[Region]:
    """
    The map cut into C{columns} x C{rows} equal regions, row-major from
    C{y = 0}, named C{r<row>c<column>} and served by C{processes} in the
    same order (one name per cell).
    """
    return [
        Region(
            f"r{row}c{column}",
            width * column / columns,
            height * row / rows,
            width * (column + 1) / columns,
            height * (row + 1) / rows,
            processes[row * columns + column],
        )
        for row in range(rows)
        for column in range(columns)
    ]


class RegionGrid:
    """
    Regions on a C{width} x C{height} map, and the grid of their distinct
    edges (the map's own edges included) that answers where a point is, what
    the regions leave uncovered and where they overlap.

    L{region_at} is a binary search in the grid, so it costs O(log regions)
    whatever the layout.

    @ivar regions: The regions, in the order given.
    @ivar xs: The distinct edges across, ascending.
    @ivar ys: The distinct edges up, ascending.
    """

    def __init__(self, width: float, height: float, regions: Iterable[Region]):
        self.width = float(width)
        self.height = float(height)
        self.regions = tuple(regions)
        self.xs = sorted({0.0, self.width} | {x for r in self.regions for x in (r.x0, r.x1)})
        self.ys = sorted({0.0, self.height} | {y for r in self.regions for y in (r.y0, r.y1)})
        column = {x: i for i, x in enumerate(self.xs)}
        row = {y: j for j, y in enumerate(self.ys)}
        # Each cell's first region in the given order, by index (-1: none);
        # a region meeting cells that an earlier one has is an overlap.
        first = [[-1] * (len(self.xs) - 1) for _ in range(len(self.ys) - 1)]
        self._overlaps: list[tuple[Region, Region]] = []
        for index, region in enumerate(self.regions):
            earliest = None
            for j in range(row[region.y0], row[region.y1]):
                cells = first[j]
                for i in range(column[region.x0], column[region.x1]):
                    if cells[i] < 0:
                        cells[i] = index
                    elif earliest is None or cells[i] < earliest:
                        earliest = cells[i]
            if earliest is not None:
                self._overlaps.append((region, self.regions[earliest]))
        self._cells: list[list[Region | None]] = [
            [self.regions[index] if index >= 0 else None for index in cells] for cells in first
        ]

    def region_at(self, x: float, y: float) -> Region | None:
        """The region C{(x, y)} belongs to, or C{None} off the map or in a gap."""
        if not (0.0 <= x <= self.width and 0.0 <= y <= self.height):
            return None
        # bisect_right puts a point on an edge into the cell that starts
        # there (half-open regions); the map's far edges into the last cell.
        i = min(bisect_right(self.xs, x) - 1, len(self.xs) - 2)
        j = min(bisect_right(self.ys, y) - 1, len(self.ys) - 2)
        return self._cells[j][i]

    def gaps(self) -> Iterator[tuple[float, float, float, float]]:
        """
        The cells of the map that no region covers, C{(x0, y0, x1, y1)},
        bottom to top and left to right.
        """
        for (y0, y1), cells in zip(pairwise(self.ys), self._cells, strict=True):
            for (x0, x1), region in zip(pairwise(self.xs), cells, strict=True):
                if (
                    region is None
                    and 0.0 <= x0
                    and x1 <= self.width
                    and 0.0 <= y0
                    and y1 <= self.height
                ):
                    yield x0, y0, x1, y1

    def overlaps(self) -> list[tuple[Region, Region]]:
        """
        Every region that overlaps an earlier one (by more than a border),
        in the order given, with the first earlier region it overlaps.
        """
        return list(self._overlaps)

    def neighbours(self, name: str) -> tuple[Region, ...]:
        """The regions sharing a border or a corner with the region called C{name}."""
        return self._neighbours[name]

    @cached_property
    def _neighbours(self) -> dict[str, tuple[Region, ...]]:
        # Found on first use: the config's checks never need them.
        return {r.name: tuple(o for o in self.regions if r.touches(o)) for r in self.regions}
