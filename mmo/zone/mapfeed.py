"""
A zone's feed of the console's live map: while a console watches, a
L{MapFrame} of the zone's reals and handoffs in flight, packed, on the
bus's C{map.feed} channel, at L{MAP_RATE} or more (as the tick rate allows).

Nothing is computed or sent while nobody watches: a console with the map
open publishes a L{MapWatch} every second or so on C{map.watch}, and a zone
publishes frames until the last one's C{ttl} runs out, unless the watch's
C{view} (what the console's browsers show between them) leaves its region
out.  A frame is built
once per publication from the reals the tick left (one pass over them,
whoever watches); what each console shows of it (its view rectangle) is
the console's business (L{mmo.console.mapview}).  See C{docs/map.md}.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable
from sys import byteorder

from twisted.logger import Logger

from mmo.game.messages import (
    MAP_FEED_CHANNEL,
    MAP_WATCH_CHANNEL,
    Dispatcher,
    MapFrame,
    MapWatch,
    encode,
)
from mmo.zone.aoi import KERNEL
from mmo.zone.entity import PLAYER

#: The least frames per second a zone publishes while watched (its tick
#: rate permitting): on every tick below twice this rate, on every other
#: tick from there to three times, and so on.
MAP_RATE = 10.0

#: The longest watch a console may ask for, seconds: a console that died
#: costs the zones no more than this.
MAX_WATCH = 30.0


def _little(native: bytes) -> bytes:
    """Native float32s as little-endian ones."""
    packed = array("f")
    packed.frombytes(native)
    packed.byteswap()
    return packed.tobytes()


def _number(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _rectangle(value) -> bool:
    """Whether C{value} is C{[x0, y0, x1, y1]}, finite, with C{x0 <= x1}, C{y0 <= y1}."""
    return (
        isinstance(value, list | tuple)
        and len(value) == 4
        and all(_number(v) for v in value)
        and value[0] <= value[2]
        and value[1] <= value[3]
    )


class MapFeed:
    """
    The live map's feed of one zone (see the module docstring).

    @param bus: The bus (an L{mmo.bus.IBus}).
    @param zone: The region's name.
    @param simulation: The zone's L{mmo.zone.simulation.ZoneSimulation}:
        its C{reals} are read at a publication.
    @param outgoing: Returns C{(entity id, target zone)} of the handoffs in
        flight (L{mmo.zone.handoff.ZoneHandoff.outgoing}).
    @param publish: C{publish(channel, data)}: sends an encoded message
        without waiting (the zone's L{mmo.zone.outbox.Outbox.publish}).
    @param clock: Provides C{seconds()}.
    @param tick_rate: The zone's ticks per second.
    @ivar watched_until: The clock's time the last watch that sees this
        zone's region runs out.
    @ivar every: Publish on every this many ticks.
    """

    log = Logger()

    def __init__(
        self,
        bus,
        zone: str,
        simulation,
        outgoing: Callable[[], list[tuple[str, str]]],
        publish: Callable[[str, dict], None],
        clock,
        tick_rate: float,
    ):
        self.bus = bus
        self.zone = zone
        self.simulation = simulation
        self.outgoing = outgoing
        self.publish = publish
        self.clock = clock
        self.every = max(1, math.floor(tick_rate / MAP_RATE))
        self.watched_until = -math.inf
        #: Until when each console watches this zone, by its name.
        self._watches: dict[str, float] = {}
        self._ticks = 0
        self._subscription = None
        self._dispatcher = Dispatcher(f"zone {zone} map")
        self._dispatcher.on(MapWatch, self._watched)

    @property
    def watching(self) -> bool:
        """Whether a console watches (its last L{MapWatch} has not run out)."""
        return self.clock.seconds() < self.watched_until

    async def start(self) -> None:
        """Listen for watchers."""
        self._subscription = await self.bus.subscribe(MAP_WATCH_CHANNEL, self._dispatcher)

    async def stop(self) -> None:
        """Listen no more, and publish nothing more."""
        self.watched_until = -math.inf
        self._watches.clear()
        if self._subscription is not None:
            subscription, self._subscription = self._subscription, None
            await subscription.cancel()

    def _watched(self, sender: str, watch: MapWatch) -> None:
        ttl, view = watch.ttl, watch.view
        if not _number(ttl) or not ttl > 0 or not (view is None or _rectangle(view)):
            self.log.warn(
                "zone {zone}: a map watch from {sender} with ttl {ttl!r}, view {view!r}",
                zone=self.zone,
                sender=sender,
                ttl=ttl,
                view=view,
            )
            return
        now = self.clock.seconds()
        if view is None or self._sees(view):
            self._watches[sender] = now + min(float(ttl), MAX_WATCH)
        else:
            self._watches.pop(sender, None)
        for gone in [s for s, until in self._watches.items() if until <= now]:
            del self._watches[gone]
        self.watched_until = max(self._watches.values(), default=-math.inf)

    def _sees(self, view) -> bool:
        """Whether the rectangle C{view} meets this zone's region."""
        region = self.simulation.region
        x0, y0, x1, y1 = view
        return x0 <= region.x1 and region.x0 <= x1 and y0 <= region.y1 and region.y0 <= y1

    def tick(self, time: float) -> None:
        """After the zone's tick at C{time}: publish a frame if watched and due."""
        if self.clock.seconds() >= self.watched_until:
            return
        self._ticks += 1
        if self._ticks % self.every:
            return
        self.publish(MAP_FEED_CHANNEL, encode(self.frame(time), self.zone))

    def frame(self, time: float) -> MapFrame:
        """The L{MapFrame} of the zone's reals now: players first, then NPCs."""
        players, xs, ys = KERNEL.positions(self.simulation.reals, PLAYER)
        if byteorder == "big":
            xs, ys = _little(xs), _little(ys)
        handoffs = []
        for entity_id, target in self.outgoing():
            entity = self.simulation.get(entity_id)
            if entity is not None:
                handoffs.append((entity_id, target, entity.x, entity.y))
        return MapFrame(self.zone, time, players, xs, ys, handoffs)
