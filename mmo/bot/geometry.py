"""
The world as the bots see it, from the deployment's C{[world]}: its
regions and the borders between them, the fastest legal step, and the
paths the moving scenarios walk.  Pure functions of the geometry: no
reactor, no network.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

Point = tuple[float, float]

#: The largest share of the speed limits a bot's step may use, for the network's jitter.
SAFETY = 0.9


@dataclass(frozen=True)
class World:
    """The map, its regions C{(name, x0, y0, x1, y1)} and the movement rules."""

    width: float
    height: float
    regions: tuple[tuple[str, float, float, float, float], ...]
    max_speed: float = 8.0
    speed_tolerance: float = 0.1
    move_burst: float = 0.5
    hysteresis: float = 5.0
    aoi_radius: float = 50.0
    spawn: Point | None = None

    @classmethod
    def from_config(cls, world) -> World:
        """From a loaded C{[world]} section (L{mmo.config.WorldSection})."""
        return cls(
            width=world.width,
            height=world.height,
            regions=tuple((r[0], r[1], r[2], r[3], r[4]) for r in world.layout),
            max_speed=world.max_speed,
            speed_tolerance=world.speed_tolerance,
            move_burst=world.move_burst,
            hysteresis=world.hysteresis,
            aoi_radius=world.aoi_radius,
            spawn=tuple(world.spawn) if world.spawn else None,
        )

    def max_step(self, interval: float, speed: float = SAFETY) -> float:
        """
        The longest move a bot makes every C{interval} seconds: C{speed}
        (at most L{SAFETY}) times the smaller of C{max_speed x interval}
        and the largest jump the zone accepts,
        C{max_speed x (1 + speed_tolerance) x move_burst}.
        """
        jump = self.max_speed * (1 + self.speed_tolerance) * self.move_burst
        return min(speed, SAFETY) * min(self.max_speed * interval, jump)

    def inside(self, x: float, y: float, margin: float = 0.0) -> bool:
        return margin <= x <= self.width - margin and margin <= y <= self.height - margin


@dataclass(frozen=True)
class Border:
    """
    A stretch of border shared by two regions.  C{axis} C{"x"}: the
    vertical line x = C{at}, from y = C{lo} to C{hi}; C{"y"}: the
    horizontal line y = C{at}, from x = C{lo} to C{hi}.  C{below} and
    C{above} are how far the two regions reach on either side of it.
    """

    axis: str
    at: float
    lo: float
    hi: float
    below: float
    above: float

    @property
    def length(self) -> float:
        return self.hi - self.lo


@dataclass(frozen=True)
class Lane:
    """
    Where one bot walks: across the border at C{at}, along the line
    C{cross} (y for a vertical border, x for a horizontal one), between
    C{low} and C{high} (on either side of C{at}).
    """

    axis: str
    at: float
    cross: float
    low: float
    high: float
    #: From a point as far from both ends (the spawn, on the border), go
    #: to the high end first: every other lane does, so that bots fan out
    #: to both sides instead of all crowding into one region.
    high_first: bool = False

    def point(self, value: float) -> Point:
        """The point of the lane at C{value} along its walking axis."""
        return (value, self.cross) if self.axis == "x" else (self.cross, value)

    @property
    def ends(self) -> tuple[Point, Point]:
        return self.point(self.low), self.point(self.high)


def borders(world: World) -> list[Border]:
    """Every stretch of border between two regions, vertical ones first, each once."""
    found = []
    regions = world.regions
    for _, ax0, ay0, ax1, ay1 in regions:
        for _, bx0, by0, bx1, by1 in regions:
            if ax1 == bx0:
                lo, hi = max(ay0, by0), min(ay1, by1)
                if lo < hi:
                    found.append(Border("x", ax1, lo, hi, ax1 - ax0, bx1 - bx0))
            if ay1 == by0:
                lo, hi = max(ax0, bx0), min(ax1, bx1)
                if lo < hi:
                    found.append(Border("y", ay1, lo, hi, ay1 - ay0, by1 - by0))
    found.sort(key=lambda b: (b.axis, b.at, b.lo))
    return found


def lanes(world: World, count: int, span: float, spacing: float = 0.0) -> list[Lane]:
    """
    C{count} lanes along the borders of C{world} (all of them end to end),
    each from C{span} before its border to C{span} past it (less where a
    region is narrower; never less than C{hysteresis + 1}, so that every
    pass hands the bot off).  They are spread evenly along all the
    borders; with C{spacing}, they are that far apart instead, on the
    stretch nearest the spawn (centred where the borders pass nearest it,
    moved to fit): bots that start at the spawn reach them in a run's
    time, where lanes spread along a long border take several runs.

    @raise ValueError: The world has no border, or too narrow regions.
    """
    found = borders(world)
    if not found:
        raise ValueError("the world has a single region: there is no border to walk across")
    total = sum(b.length for b in found)
    stretch, first = total, 0.0
    if spacing > 0 and count * spacing < total:
        stretch = count * spacing
        spawn = world.spawn or (world.width / 2, world.height / 2)
        first = min(max(_nearest_along(found, spawn) - stretch / 2, 0.0), total - stretch)
    result = []
    for i in range(count):
        along = first + (i + 0.5) * stretch / count
        for border in found:
            if along <= border.length or border is found[-1]:
                break
            along -= border.length
        reach = min(span, border.below - 1.0, border.above - 1.0)
        if reach <= world.hysteresis:
            raise ValueError(
                f"a region next to the border at {border.axis} = {border.at:g} is too narrow "
                f"to walk {world.hysteresis:g} (the hysteresis) past the border"
            )
        result.append(
            Lane(
                border.axis,
                border.at,
                border.lo + min(along, border.length),
                border.at - reach,
                border.at + reach,
                high_first=i % 2 == 1,
            )
        )
    return result


def _nearest_along(found: list[Border], point: Point) -> float:
    """How far along the borders C{found} (end to end) they pass nearest C{point}."""
    best, where, offset = math.inf, 0.0, 0.0
    for border in found:
        across, along = point if border.axis == "x" else (point[1], point[0])
        at = min(max(along, border.lo), border.hi)
        distance = math.hypot(across - border.at, along - at)
        if distance < best:
            best, where = distance, offset + at - border.lo
        offset += border.length
    return where


def step_towards(here: Point, goal: Point, step: float) -> Point:
    """The point at most C{step} from C{here} on the way to C{goal}."""
    dx, dy = goal[0] - here[0], goal[1] - here[1]
    distance = math.hypot(dx, dy)
    if distance <= step:
        return goal
    return (here[0] + dx * step / distance, here[1] + dy * step / distance)


class BorderWalker:
    """
    A bot's border walk.  On its way from where it is to its lane (the
    spawn is on the border, and most lanes are far along it) it
    zigzags across the border, C{weave} to each side (first to the side
    L{Lane.high_first} says), advancing along the border as far each leg:
    so it hands off every few seconds from its first moves on, however far
    its lane is.  Once level with its lane (or with C{weave} C{None}:
    straight away) it goes to the nearer end of its lane, then back and
    forth between the lane's ends.  Every step is at most C{step}.
    L{reset} puts it where the server says it is (after a correction); it
    goes on to the same goal from there.
    """

    def __init__(self, lane: Lane, step: float, here: Point, weave: float | None = None):
        self.lane = lane
        self.step = step
        self.here = here
        reach = min(lane.at - lane.low, lane.high - lane.at)
        self.weave = None if weave is None else min(weave, reach)
        self.side = 1.0 if lane.high_first else -1.0
        self.on_lane = False
        self.approaching = self.weave is not None
        self.goal = self._next_goal()

    def _along(self, point: Point) -> float:
        return point[1] if self.lane.axis == "x" else point[0]

    def _point(self, across: float, along: float) -> Point:
        return (across, along) if self.lane.axis == "x" else (along, across)

    def _next_goal(self) -> Point:
        lane = self.lane
        if self.approaching:
            left = lane.cross - self._along(self.here)
            if abs(left) > self.weave:
                # One more leg: to the other side, a weave further along.
                along = self._along(self.here) + math.copysign(self.weave, left)
                goal = self._point(lane.at + self.side * self.weave, along)
                self.side = -self.side
                return goal
            self.approaching = False
        low, high = lane.ends
        to_low, to_high = math.dist(self.here, low), math.dist(self.here, high)
        if abs(to_low - to_high) < self.step:
            return high if lane.high_first else low
        return low if to_low < to_high else high

    def next(self) -> Point:
        """The next point to move to."""
        if self.here == self.goal:
            if self.approaching:
                self.goal = self._next_goal()
            else:
                self.on_lane = True
                low, high = self.lane.ends
                self.goal = high if self.goal == low else low
        self.here = step_towards(self.here, self.goal, self.step)
        return self.here

    def reset(self, here: Point) -> None:
        self.here = here


class Wanderer:
    """
    A random walk at C{step} per move: a heading kept for about
    C{turn_every} moves, turning away from the map's edges.
    """

    def __init__(self, world: World, step: float, here: Point, rng: random.Random, turn_every=6):
        self.world = world
        self.step = step
        self.here = here
        self.rng = rng
        self.turn_every = max(1.0, turn_every)
        self.heading = rng.uniform(0, 2 * math.pi)

    def next(self) -> Point:
        if self.rng.random() < 1.0 / self.turn_every:
            self.heading = self.rng.uniform(0, 2 * math.pi)
        for _ in range(16):
            x = self.here[0] + self.step * math.cos(self.heading)
            y = self.here[1] + self.step * math.sin(self.heading)
            if self.world.inside(x, y, margin=1.0):
                self.here = (x, y)
                return self.here
            # Off the map: towards the centre, give or take.
            x, y = self.here
            centre = math.atan2(self.world.height / 2 - y, self.world.width / 2 - x)
            self.heading = centre + self.rng.uniform(-1.0, 1.0)
        return self.here

    def reset(self, here: Point) -> None:
        self.here = here
