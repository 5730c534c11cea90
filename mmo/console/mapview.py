"""
What the live map shows a browser, apart from the wire: the world's
geometry (L{world_message}), the zones' latest frames (L{Frames}) and, for
one view rectangle, the update a browser is sent (L{View}, L{encode_update}).

An update is one binary WebSocket message, little-endian::

    u32       length of the header
    bytes     the header, JSON (UTF-8), padded with spaces to 4 bytes
    f32 * n   the dots' positions across (the first len(players) are
              the players', in the order of the header's "players")
    f32 * n   the dots' positions up
    u16 * c   the heat layer: entities per cell, row-major from the
              view's bottom-left cell, at most 65535

so that the page reads the arrays in place (C{Float32Array}, C{Uint16Array})
and parses only the small header.  See C{docs/map.md}.
"""

from __future__ import annotations

import json
import math
import struct
from array import array
from dataclasses import dataclass
from sys import byteorder

from mmo.game.messages import MapFrame

#: Cells of the heat layer across and up the view.
HEAT_CELLS = 32

#: The most dots an update carries: a view holding more (zoomed out over a
#: crowded world) is sent the heat layer alone, and the page says to zoom in.
MAX_DOTS = 20000

#: Seconds a zone's last frame is shown without a newer one (a zone that
#: stopped or lost its bus is dropped from the map after this).
STALE = 2.0


def world_message(world) -> dict:
    """
    The first message of the stream (text, JSON): the map's size, every
    region with the process serving it, the heat layer's cells and the most
    dots an update carries.

    @param world: The C{[world]} section (L{mmo.config.WorldSection}).
    """
    return {
        "type": "world",
        "width": world.width,
        "height": world.height,
        "regions": [
            {"name": name, "x0": x0, "y0": y0, "x1": x1, "y1": y1, "process": process}
            for name, x0, y0, x1, y1, process in world.layout
        ],
        "heat": [HEAT_CELLS, HEAT_CELLS],
        "max_dots": MAX_DOTS,
    }


def _floats(data: bytes) -> array:
    values = array("f")
    values.frombytes(data)
    if byteorder == "big":
        values.byteswap()
    return values


@dataclass(frozen=True, slots=True)
class ZoneFrame:
    """A zone's last L{MapFrame}, unpacked, and when it came (the console's clock)."""

    zone: str
    time: float
    players: tuple
    xs: array
    ys: array
    handoffs: tuple
    received: float


class Frames:
    """
    The latest frame of every zone that publishes.

    @ivar serial: Bumped by every frame taken: a stream sends an update only
        when it has changed.
    """

    def __init__(self, clock):
        self.clock = clock
        self.serial = 0
        self._zones: dict[str, ZoneFrame] = {}

    def take(self, frame: MapFrame) -> None:
        """
        Keep C{frame} as its zone's latest (an older one than that is dropped).

        @raise ValueError: Its arrays are not float32s of one length per
            position, one position per player at least, or another field is
            not what L{MapFrame} says.
        """
        if len(frame.xs) % 4 or len(frame.xs) != len(frame.ys):
            raise ValueError(f"zone {frame.zone}: positions of different lengths")
        if len(frame.players) > len(frame.xs) // 4:
            raise ValueError(f"zone {frame.zone}: more players than positions")
        if not isinstance(frame.time, (int, float)) or not all(
            isinstance(p, str) for p in frame.players
        ):
            raise ValueError(f"zone {frame.zone}: a time or player id of the wrong type")
        for handoff in frame.handoffs:
            if len(handoff) != 4 or not all(isinstance(v, (int, float)) for v in handoff[2:]):
                raise ValueError(f"zone {frame.zone}: a handoff is [entity, zone, x, y]")
        last = self._zones.get(frame.zone)
        if last is not None and frame.time < last.time:
            return
        self._zones[frame.zone] = ZoneFrame(
            frame.zone,
            frame.time,
            frame.players,
            _floats(frame.xs),
            _floats(frame.ys),
            frame.handoffs,
            self.clock.seconds(),
        )
        self.serial += 1

    def current(self) -> list[ZoneFrame]:
        """The frames not older than L{STALE}, by zone name; staler ones are forgotten."""
        now = self.clock.seconds()
        for zone in [z for z, f in self._zones.items() if now - f.received > STALE]:
            del self._zones[zone]
        return [self._zones[zone] for zone in sorted(self._zones)]


@dataclass(frozen=True, slots=True)
class View:
    """The rectangle a browser shows, C{[x0, x1] x [y0, y1]}, world units."""

    x0: float
    y0: float
    x1: float
    y1: float

    @classmethod
    def parse(cls, value) -> View:
        """
        The view of a browser's C{"view"}: four finite numbers C{[x0, y0,
        x1, y1]}, C{x0 < x1} and C{y0 < y1}.

        @raise ValueError: Anything else, saying why.
        """
        if not isinstance(value, list) or len(value) != 4:
            raise ValueError("view must be [x0, y0, x1, y1]")
        for v in value:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError("view must be four finite numbers")
        x0, y0, x1, y1 = (float(v) for v in value)
        if not (x0 < x1 and y0 < y1):
            raise ValueError("view must have x0 < x1 and y0 < y1")
        return cls(x0, y0, x1, y1)


def encode_update(frames: list[ZoneFrame], view: View, max_dots: int = MAX_DOTS) -> bytes:
    """
    The update (see the module docstring) of C{view} from C{frames}: the
    dots in the view (players first, zone by zone in the order of the
    header's C{"zones"}, each zone's count in its C{"players"}), the handoffs in flight whose entity
    is in it, and the heat layer of the whole view.  Each entity is looked
    at once.
    """
    x0, y0, x1, y1 = view.x0, view.y0, view.x1, view.y1
    across = HEAT_CELLS / (x1 - x0)
    up = HEAT_CELLS / (y1 - y0)
    last = HEAT_CELLS - 1
    heat = [0] * (HEAT_CELLS * HEAT_CELLS)
    players: list[str] = []
    player_xs = array("f")
    player_ys = array("f")
    xs = array("f")
    ys = array("f")
    handoffs = []
    zones = {}
    for frame in frames:
        first_npc = len(frame.players)
        shown = 0
        before = len(players)
        for index, (x, y) in enumerate(zip(frame.xs, frame.ys, strict=True)):
            if x < x0 or x > x1 or y < y0 or y > y1:
                continue
            shown += 1
            heat[
                min(int((y - y0) * up), last) * HEAT_CELLS + min(int((x - x0) * across), last)
            ] += 1
            if index < first_npc:
                players.append(frame.players[index])
                player_xs.append(x)
                player_ys.append(y)
            else:
                xs.append(x)
                ys.append(y)
        for entity_id, target, x, y in frame.handoffs:
            if x0 <= x <= x1 and y0 <= y <= y1:
                handoffs.append([entity_id, frame.zone, target, x, y])
        zones[frame.zone] = {
            "time": frame.time,
            "entities": len(frame.xs),
            "shown": shown,
            "players": len(players) - before,
        }
    count = len(player_xs) + len(xs)
    dots = count <= max_dots
    header = {
        "type": "update",
        "view": [x0, y0, x1, y1],
        "zones": zones,
        "count": count,
        "dots": dots,
        "players": players if dots else [],
        "handoffs": handoffs,
        "heat": [HEAT_CELLS, HEAT_CELLS],
    }
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    if dots:
        player_xs.extend(xs)
        player_ys.extend(ys)
    else:
        player_xs, player_ys = array("f"), array("f")
    counts = array("H", (min(c, 0xFFFF) for c in heat))
    if byteorder == "big":
        for packed in (player_xs, player_ys, counts):
            packed.byteswap()
    return b"".join(
        (
            struct.pack("<I", len(text)),
            text,
            player_xs.tobytes(),
            player_ys.tobytes(),
            counts.tobytes(),
        )
    )
