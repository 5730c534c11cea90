"""
The world map: a rectangle split into regions, each simulated by one zone
process.

The map is read from the C{[world]} section of the config
(L{WorldMap.from_config}), which has already checked that the regions tile
it.  Its geometry (half-open L{Region}s and the grid of their edges) is
L{mmo.config.world_geometry}'s, the one the config checks the tiling on;
L{Region} is importable from here too.
"""

from __future__ import annotations

from functools import lru_cache

from mmo.config.world_geometry import Region, RegionGrid

__all__ = ["Region", "WorldMap", "client_world"]


class WorldMap:
    """
    The map: its size, its regions and the lookups the zones need.

    L{region_at} and L{neighbours} are answered by the map's
    L{RegionGrid<mmo.config.world_geometry.RegionGrid>}: a binary search in
    the grid of the distinct region edges, O(log regions) whatever the
    layout.
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
        self._grid = RegionGrid(self.width, self.height, regions)

    @classmethod
    def from_config(cls, config) -> WorldMap:
        """
        The map of C{config}: a L{mmo.config.Config} (its C{world} section
        is used) or a L{mmo.config.world.WorldSection}.
        """
        world = getattr(config, "world", config)
        return cls(world.width, world.height, [Region(*entry) for entry in world.layout])

    def in_bounds(self, x: float, y: float) -> bool:
        """Whether C{(x, y)} is on the map (its edges included)."""
        return 0.0 <= x <= self.width and 0.0 <= y <= self.height

    def region_at(self, x: float, y: float) -> Region | None:
        """The region C{(x, y)} belongs to, or C{None} off the map."""
        return self._grid.region_at(x, y)

    def region(self, name: str) -> Region:
        """The region called C{name}; C{KeyError} if there is none."""
        return self.regions[name]

    def neighbours(self, region: Region | str) -> tuple[Region, ...]:
        """The regions sharing a border or a corner with C{region}."""
        return self._grid.neighbours(region if isinstance(region, str) else region.name)

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


@lru_cache(maxsize=8)
def client_world(world) -> dict:
    """
    What a client needs of the map of C{world} (a
    L{mmo.config.world.WorldSection}), as the C{world} field of the
    C{zone.enter} reply: its size, tick rate, world updates a second
    (C{update_rate}: the tick rate unless C{[world] update_rate} says
    fewer) and area-of-interest radius,
    and every region with the zone process serving it, so that it can draw
    the borders without the deployment's config file.

    Built once per section (a process has one), not per request: the dict
    is shared by every reply, so nobody may change it.
    """
    return {
        "width": float(world.width),
        "height": float(world.height),
        "tick_rate": float(world.tick_rate),
        "update_rate": float(world.tick_rate) / world.update_every,
        "aoi_radius": float(world.aoi_radius),
        "regions": [
            {
                "name": name,
                "x0": float(x0),
                "y0": float(y0),
                "x1": float(x1),
                "y1": float(y1),
                "zone": process,
            }
            for name, x0, y0, x1, y1, process in world.layout
        ],
    }
