"""
The C{[world]} section: the map's size, its split into regions (each
simulated by one zone process, C{[world.regions.NAME]} or a grid) and the
rules of the simulation.  The tiling is checked on the map's
L{RegionGrid<mmo.config.world_geometry.RegionGrid>}, the grid the zones
use to find where a point is.
"""

from __future__ import annotations

import math

from mmo.config.processes import PROCESS_NAME, check_process_name
from mmo.config.schema import REQUIRED, ConfigError, Field, Number, Section, Str, StrList, Tables
from mmo.config.world_geometry import Region, RegionGrid, grid_regions


class Point(Field):
    """
    A position on the world map: an array of two numbers C{[x, y]}, read as
    a tuple of floats.  The default C{None} lets the section choose one.
    """

    def convert(self, value, path, ctx):
        if (
            not isinstance(value, list)
            or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value)
        ):
            raise ConfigError(f"must be an array of two numbers [x, y], got {value!r}", path)
        if not all(math.isfinite(v) for v in value):
            raise ConfigError(f"must be finite numbers, got {value!r}", path)
        return (float(value[0]), float(value[1]))


#: Names of world regions: they name zones in the directory and in logs.
REGION_NAME = r"^[a-z0-9][a-z0-9_-]{0,31}$"


class RegionSection(Section):
    """
    One rectangle of the world map, C{[x0, x1) x [y0, y1)}, and the zone
    process that simulates it.
    """

    fields = {
        "x0": Number(REQUIRED, minimum=0, kind=float, doc="Left edge, world units."),
        "y0": Number(REQUIRED, minimum=0, kind=float, doc="Bottom edge, world units."),
        "x1": Number(REQUIRED, minimum=0, kind=float, doc="Right edge (exclusive)."),
        "y1": Number(REQUIRED, minimum=0, kind=float, doc="Top edge (exclusive)."),
        "process": Str(
            REQUIRED, pattern=PROCESS_NAME.pattern, doc="The zone process serving the region."
        ),
    }

    def check(self):
        if self.x1 <= self.x0:
            raise self.error("x1", f"must be greater than x0 ({self.x0:g}), got {self.x1:g}")
        if self.y1 <= self.y0:
            raise self.error("y1", f"must be greater than y0 ({self.y0:g}), got {self.y1:g}")


class WorldSection(Section):
    """
    The world map: its size, its split into regions (each simulated by one
    zone process), and the rules of the simulation (tick, area of interest,
    ghosts, hysteresis, speeds, NPCs).  See C{docs/world.md}.

    Regions are either a grid (C{columns} x C{rows}, with one process name
    per cell in C{zones}, row-major from y = 0) or explicit rectangles
    (C{[world.regions.NAME]}); either way they must tile the map with no gap
    and no overlap.  After reading, C{layout} lists every region as
    C{(name, x0, y0, x1, y1, process)}: the grid's cells are named
    C{r<row>c<column>}.

    @ivar layout: The regions, in grid (row-major) or file order.
    @ivar update_every: Every how many ticks a player is sent a world
        update (from C{update_rate}; 1 without it).
    """

    #: The process serving a world that names none: the standalone one.
    DEFAULT_ZONE = "mmo"

    fields = {
        "width": Number(1000.0, minimum=1, maximum=1e9, kind=float, doc="Map width, world units."),
        "height": Number(
            1000.0, minimum=1, maximum=1e9, kind=float, doc="Map height, world units."
        ),
        "tick_rate": Number(
            20.0, minimum=1, maximum=1000, kind=float, doc="Simulation ticks per second."
        ),
        "update_rate": Number(
            0.0,
            minimum=0,
            maximum=1000,
            kind=float,
            doc="World updates sent to each player per second; 0: one every tick. "
            "Must divide tick_rate.",
        ),
        "aoi_radius": Number(
            50.0,
            minimum=0.1,
            maximum=1e9,
            kind=float,
            doc="A player sees the entities within this distance.",
        ),
        "ghost_margin": Number(
            60.0,
            minimum=0.1,
            maximum=1e9,
            kind=float,
            doc="Entities this close to a neighbouring region are mirrored into it.",
        ),
        "hysteresis": Number(
            5.0,
            minimum=0,
            maximum=1e9,
            kind=float,
            doc="How far past its region's border an entity goes before it is handed off.",
        ),
        "max_speed": Number(
            8.0, minimum=0.001, maximum=1e9, kind=float, doc="Fastest a player moves, units/s."
        ),
        "speed_tolerance": Number(
            0.1,
            minimum=0,
            maximum=10,
            kind=float,
            doc="Share above max_speed still accepted (network jitter, rounding).",
        ),
        "move_burst": Number(
            0.5,
            minimum=0.001,
            maximum=60,
            kind=float,
            doc="Seconds of movement a player may catch up on at once.",
        ),
        "npc_speed": Number(
            2.0, minimum=0, maximum=1e9, kind=float, doc="NPC walking speed, units/s."
        ),
        "npcs": Number(10, minimum=0, maximum=1000000, doc="NPCs each zone spawns."),
        "spawn": Point(None, doc="Where new players appear, [x, y]; default: the centre."),
        "zone_class": Str(
            "",
            pattern=r"^$|^[A-Za-z_][\w.]*\.[A-Za-z_]\w*$",
            doc="Fully qualified name of a ZoneService subclass with the game's rules.",
        ),
        "columns": Number(1, minimum=1, maximum=1024, doc="Regions across (grid)."),
        "rows": Number(1, minimum=1, maximum=1024, doc="Regions down (grid)."),
        "zones": StrList(
            [],
            item=check_process_name,
            doc="Process serving each grid cell, row-major; default: 'mmo' for every cell.",
        ),
        "regions": Tables(
            RegionSection,
            name_pattern=REGION_NAME,
            name_rule="a lower-case name: a-z, 0-9, '_' and '-'",
            doc="Explicit rectangles, instead of a grid.",
        ),
    }

    def check(self):
        if self.regions:
            for key, unset in (
                ("columns", self.columns == 1),
                ("rows", self.rows == 1),
                ("zones", not self.zones),
            ):
                if not unset:
                    raise self.error(
                        key, "set either [world.regions.NAME] tables or a grid, not both"
                    )
            regions = self._explicit_layout()
        else:
            regions = self._grid_layout()
        self.layout = [(r.name, r.x0, r.y0, r.x1, r.y1, r.process) for r in regions]
        if self.spawn is None:
            self.spawn = (self.width / 2, self.height / 2)
        elif not (0 <= self.spawn[0] <= self.width and 0 <= self.spawn[1] <= self.height):
            raise self.error(
                "spawn", f"{list(self.spawn)} is outside the map ({self.width:g} x {self.height:g})"
            )
        if self.aoi_radius > self.ghost_margin:
            raise self.error(
                "aoi_radius",
                f"must not exceed ghost_margin ({self.ghost_margin:g}): players near a border "
                "would not see everything within their radius on the other side",
            )
        # An entity is ghosted only into the neighbours of the region that
        # owns it, even while it is up to `hysteresis` deep into one of them.
        reach = self.ghost_margin + self.hysteresis
        for name, x0, y0, x1, y1, _process in self.layout:
            side = min(x1 - x0, y1 - y0)
            if reach >= side:
                raise self.error(
                    "ghost_margin",
                    f"ghost_margin + hysteresis ({reach:g}) must be smaller than every "
                    f"region's width and height; region {name!r} is "
                    f"{x1 - x0:g} x {y1 - y0:g}",
                )
        self.update_every = self._update_every()
        if self.move_burst < 2 / self.tick_rate:
            raise self.error(
                "move_burst",
                f"must be at least two ticks ({2 / self.tick_rate:g} s at "
                f"tick_rate {self.tick_rate:g}), got {self.move_burst:g}",
            )

    def _update_every(self) -> int:
        """Every how many ticks a player is sent a world update (C{update_rate})."""
        if not self.update_rate:
            return 1
        every = self.tick_rate / self.update_rate
        if self.update_rate > self.tick_rate or abs(every - round(every)) > 1e-9:
            raise self.error(
                "update_rate",
                f"must divide tick_rate ({self.tick_rate:g}) into a whole number of ticks, "
                f"got {self.update_rate:g}",
            )
        return round(every)

    def _grid_layout(self) -> list[Region]:
        zones = self.zones or [self.DEFAULT_ZONE] * (self.columns * self.rows)
        if len(zones) != self.columns * self.rows:
            raise self.error(
                "zones",
                f"a grid of {self.columns} columns x {self.rows} rows needs "
                f"{self.columns * self.rows} zone names, got {len(zones)}",
            )
        return grid_regions(self.width, self.height, self.columns, self.rows, zones)

    def _explicit_layout(self) -> list[Region]:
        regions = [Region(r.name, r.x0, r.y0, r.x1, r.y1, r.process) for r in self.regions.values()]
        for region in regions:
            for key, limit in (("x1", self.width), ("y1", self.height)):
                if getattr(region, key) > limit:
                    which = "width" if key == "x1" else "height"
                    raise ConfigError(
                        f"must be at most the map's {which} ({limit:g}), "
                        f"got {getattr(region, key):g}",
                        self._path + ("regions", region.name, key),
                    )
        grid = RegionGrid(self.width, self.height, regions)
        overlaps = grid.overlaps()
        if overlaps:
            region, other = overlaps[0]
            x0, y0, x1, y1 = region.intersection(other)
            raise ConfigError(
                f"overlaps world.regions.{other.name} in ({x0:g}, {y0:g})-({x1:g}, {y1:g})",
                self._path + ("regions", region.name),
            )
        gap = next(grid.gaps(), None)
        if gap is not None:
            x0, y0, x1, y1 = gap
            raise ConfigError(
                f"the regions leave a gap: no region covers ({x0:g}, {y0:g})-({x1:g}, {y1:g})",
                self._path + ("regions",),
            )
        return regions

    def check_processes(self, processes: dict, file: str | None = None) -> None:
        """
        Check that every region is served by a process of C{processes} (the
        C{[processes]} tables) of kind C{zone} or C{mmo}.  Called by what
        starts zones, not on every load: a file may describe only part of a
        deployment.

        @raise ConfigError: Naming C{world.zones} or the region's C{process}.
        """
        for name, _x0, _y0, _x1, _y1, process in self.layout:
            found = processes.get(process)
            if found is not None and found.kind in ("zone", "mmo"):
                continue
            path = (
                self._path + ("regions", name, "process")
                if self.regions
                else self._path + ("zones",)
            )
            reason = "no such process" if found is None else f"a {found.kind!r} process"
            raise ConfigError(
                f"region {name!r} is served by {process!r}: {reason}, not a zone", path, file
            )
