"""
Ghosts: read-only copies of a neighbour's entities near the border.

Every tick a zone sends each neighbour one L{GhostUpdate}: the views
(L{ghost_view}) of its reals within the ghost margin of that neighbour.  The
neighbour keeps them in a L{GhostTable}, by these rules:

  - an update replaces the ghosts that came from its zone: a ghost missing
    from the next update of its zone is dropped (it walked out of the
    margin, or left the zone);
  - updates of one zone are numbered by tick; an older or repeated one is
    ignored;
  - a zone never holds a ghost of one of its own reals: a ghost is dropped
    when its entity becomes a real here (a handoff arrived), and views of
    reals are ignored;
  - an entity's views carry its version, which every change of owner bumps:
    once a view of some version was taken, views of older versions (from
    the zone that owned it before, which may still send it for a tick or
    two) are ignored, so the ghost of an entity that changed owner is taken
    from its new owner only;
  - a zone that stops sending (it crashed) has its ghosts dropped after
    C{ttl} seconds;
  - a real this zone handed over to a neighbour stays, as a ghost of that
    neighbour (its last view, at its new version), until the neighbour's
    first update that could contain it (L{GhostTable.handed_over}): so
    that the players who see it here do not see it leave, then enter
    again when that update comes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mmo.game.messages import GhostUpdate
from mmo.zone.entity import Entity


def ghost_view(entity: Entity) -> dict:
    """What a neighbour's ghost of C{entity} holds: its view and its version."""
    return {**entity.view(), "version": entity.version}


@dataclass
class Ghost:
    """A ghost: the view, and the zone it came from."""

    source: str
    version: int
    view: dict


class GhostTable:
    """
    The ghosts one zone holds of its neighbours' entities.

    @param is_real: Whether an entity id is a real of this zone.
    @param clock: Provides C{seconds()}, for L{expire}.
    @param ttl: Seconds after a zone's last update at which its ghosts are
        dropped by L{expire}; also how long the highest version seen of an
        entity is remembered after its ghost is gone.
    """

    def __init__(self, is_real: Callable[[str], bool], clock, ttl: float = 1.0):
        self.is_real = is_real
        self.clock = clock
        self.ttl = ttl
        self._ghosts: dict[str, Ghost] = {}
        self._by_source: dict[str, set[str]] = {}
        self._ticks: dict[str, int] = {}
        self._heard: dict[str, float] = {}
        #: Entity id -> (highest version taken, when).
        self._versions: dict[str, tuple[int, float]] = {}
        #: Entity id -> (zone, tick): ghosts of reals handed over to that zone,
        #: kept through its updates numbered up to that tick.
        self._handed: dict[str, tuple[str, int]] = {}

    def __contains__(self, entity_id: str) -> bool:
        return entity_id in self._ghosts

    def __len__(self) -> int:
        return len(self._ghosts)

    def get(self, entity_id: str) -> Ghost | None:
        return self._ghosts.get(entity_id)

    def views(self) -> list[dict]:
        """Every ghost's view, by id (for the area of interest)."""
        return [self._ghosts[key].view for key in sorted(self._ghosts)]

    def snapshot(self) -> dict:
        """
        The ghosts by source, C{{zone: {"tick": n, "views": [view + version]}}}:
        what a process handing its zone over gives its successor, which
        L{apply}s each as a L{GhostUpdate} (nothing leaves anyone's view).
        """
        found = {}
        for zone, ids in self._by_source.items():
            views = [
                {**self._ghosts[i].view, "version": self._ghosts[i].version}
                for i in sorted(ids)
                if i in self._ghosts
            ]
            found[zone] = {"tick": self._ticks.get(zone, 0), "views": views}
        return found

    def apply(self, update: GhostUpdate) -> None:
        """Take one zone's update: replace its ghosts, by the rules above."""
        if update.tick <= self._ticks.get(update.zone, -1):
            return
        now = self.clock.seconds()
        self._ticks[update.zone] = update.tick
        self._heard[update.zone] = now
        seen: set[str] = set()
        for view in update.views:
            if self._take(update.zone, view, now):
                seen.add(view["id"])
        if self._handed:
            self._keep_handed(update, seen)
        for entity_id in self._by_source.get(update.zone, set()) - seen:
            del self._ghosts[entity_id]
        self._by_source[update.zone] = seen

    def handed_over(self, zone: str, view: dict, tick: int | None = None) -> None:
        """
        This zone handed a real over to C{zone}: keep it as a ghost of
        C{zone} (C{view}: its last view here, with the version the handoff
        gave it) through that zone's updates numbered up to C{tick}, which
        were sent before it owned the entity; the first update after them
        replaces it, as any update does.  Without C{tick}, the next update
        heard from C{zone} does (the bus keeps one sender's order, so that
        one was sent after C{zone} answered the handoff).

        Nothing is kept of an entity that is a real here again, or of which
        a newer version was taken already.
        """
        now = self.clock.seconds()
        if not self._take(zone, view, now):
            return
        entity_id = view["id"]
        self._by_source.setdefault(zone, set()).add(entity_id)
        # Dropped with the zone's other ghosts if it never speaks.
        self._heard.setdefault(zone, now)
        last = self._ticks.get(zone, -1)
        self._handed[entity_id] = (zone, last if tick is None else max(tick, last))

    def _take(self, zone: str, view: dict, now: float) -> bool:
        """
        Make C{view} (with its version) its entity's ghost from C{zone},
        unless the rules above say no; whether it did.  The caller notes
        it among C{zone}'s ghosts.
        """
        entity_id, version = view["id"], view["version"]
        if self.is_real(entity_id):
            return False
        newest = self._versions.get(entity_id)
        if newest is not None and version < newest[0]:
            return False
        current = self._ghosts.get(entity_id)
        if current is not None and current.source != zone:
            if version <= current.version:
                return False
            self._by_source[current.source].discard(entity_id)
        self._ghosts[entity_id] = Ghost(zone, version, view)
        self._versions[entity_id] = (version, now)
        return True

    def _keep_handed(self, update: GhostUpdate, seen: set[str]) -> None:
        """Keep, through C{update}, the handed-over ghosts it was sent too early to hold."""
        for entity_id, (zone, tick) in list(self._handed.items()):
            if zone != update.zone:
                continue
            if update.tick <= tick and entity_id in self._by_source.get(zone, ()):
                seen.add(entity_id)
            else:
                del self._handed[entity_id]

    def real_added(self, entity_id: str) -> None:
        """The entity became a real here (a handoff arrived): drop its ghost."""
        self._handed.pop(entity_id, None)
        ghost = self._ghosts.pop(entity_id, None)
        if ghost is not None:
            self._by_source[ghost.source].discard(entity_id)

    def expire(self) -> list[str]:
        """
        Drop the ghosts of zones silent for C{ttl} seconds, and forget old
        versions.  Call it every tick.  Returns the ids dropped.
        """
        now = self.clock.seconds()
        dropped = []
        for zone, heard in list(self._heard.items()):
            if now - heard >= self.ttl:
                del self._heard[zone]
                # A restarted zone may count its ticks from 0 again.
                self._ticks.pop(zone, None)
                for entity_id in sorted(self._by_source.pop(zone, set())):
                    del self._ghosts[entity_id]
                    self._handed.pop(entity_id, None)
                    dropped.append(entity_id)
        for entity_id, (_, when) in list(self._versions.items()):
            if entity_id not in self._ghosts and now - when >= self.ttl:
                del self._versions[entity_id]
        return dropped

    def sources(self) -> Iterable[str]:
        """The zones whose ghosts are held."""
        return sorted(zone for zone, ids in self._by_source.items() if ids)
