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
    """A ghost: the zone it came from, its version, and its view (without the version)."""

    source: str
    version: int
    view: dict


class GhostTable:
    """
    The ghosts one zone holds of its neighbours' entities.

    A ghost's view is the view it came with, without its version (what the
    simulation shows, L{views_from}): copied once, when it is taken.

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
        #: Zone -> its ghosts' views by id: what the simulation shows of it.
        self._by_source: dict[str, dict[str, dict]] = {}
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
        """Every ghost's view, by id."""
        return [self._ghosts[key].view for key in sorted(self._ghosts)]

    def views_from(self, zone: str) -> dict[str, dict]:
        """
        The views of the ghosts from C{zone}, by id (for
        L{mmo.zone.simulation.ZoneSimulation.set_ghosts}): the table's own,
        changed by the next update, so to be copied if kept.
        """
        return self._by_source.get(zone, _NONE)

    def snapshot(self) -> dict:
        """
        The ghosts by source, C{{zone: {"tick": n, "views": [view + version]}}}:
        what a process handing its zone over gives its successor, which
        L{apply}s each as a L{GhostUpdate} (nothing leaves anyone's view).
        """
        found = {}
        for zone, views in self._by_source.items():
            found[zone] = {
                "tick": self._ticks.get(zone, 0),
                "views": [{**views[i], "version": self._ghosts[i].version} for i in sorted(views)],
            }
        return found

    def apply(self, update: GhostUpdate) -> None:
        """Take one zone's update: replace its ghosts, by the rules above."""
        zone = update.zone
        if update.tick <= self._ticks.get(zone, -1):
            return
        now = self.clock.seconds()
        self._ticks[zone] = update.tick
        self._heard[zone] = now
        seen: dict[str, dict] = {}
        take = self._take
        for view in update.views:
            shown = take(zone, view, now)
            if shown is not None:
                seen[view["id"]] = shown
        if self._handed:
            self._keep_handed(update, seen)
        before = self._by_source.get(zone)
        if before:
            ghosts = self._ghosts
            for entity_id in before.keys() - seen.keys():
                del ghosts[entity_id]
        self._by_source[zone] = seen

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
        shown = self._take(zone, view, now)
        if shown is None:
            return
        entity_id = view["id"]
        self._by_source.setdefault(zone, {})[entity_id] = shown
        # Dropped with the zone's other ghosts if it never speaks.
        self._heard.setdefault(zone, now)
        last = self._ticks.get(zone, -1)
        self._handed[entity_id] = (zone, last if tick is None else max(tick, last))

    def _take(self, zone: str, view: dict, now: float) -> dict | None:
        """
        Make C{view} (with its version) its entity's ghost from C{zone},
        unless the rules above say no: the ghost's view (without the
        version), or C{None}.  The caller notes it among C{zone}'s ghosts.
        """
        entity_id = view["id"]
        version = view["version"]
        if self.is_real(entity_id):
            return None
        shown = view.copy()
        del shown["version"]
        current = self._ghosts.get(entity_id)
        if current is not None and current.source == zone and current.version == version:
            # The same ghost again, as most are tick after tick: while it
            # is held, its version is the highest taken.
            current.view = shown
            self._versions[entity_id] = (version, now)
            return shown
        newest = self._versions.get(entity_id)
        if newest is not None and version < newest[0]:
            return None
        if current is not None and current.source != zone:
            if version <= current.version:
                return None
            self._by_source[current.source].pop(entity_id, None)
        self._ghosts[entity_id] = Ghost(zone, version, shown)
        self._versions[entity_id] = (version, now)
        return shown

    def _keep_handed(self, update: GhostUpdate, seen: dict[str, dict]) -> None:
        """Keep, through C{update}, the handed-over ghosts it was sent too early to hold."""
        for entity_id, (zone, tick) in list(self._handed.items()):
            if zone != update.zone:
                continue
            if update.tick <= tick and entity_id in self._by_source.get(zone, ()):
                seen[entity_id] = self._ghosts[entity_id].view
            else:
                del self._handed[entity_id]

    def real_added(self, entity_id: str) -> None:
        """The entity became a real here (a handoff arrived): drop its ghost."""
        self._handed.pop(entity_id, None)
        ghost = self._ghosts.pop(entity_id, None)
        if ghost is not None:
            self._by_source[ghost.source].pop(entity_id, None)

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
                for entity_id in sorted(self._by_source.pop(zone, ())):
                    del self._ghosts[entity_id]
                    self._handed.pop(entity_id, None)
                    dropped.append(entity_id)
        versions = self._versions
        if len(versions) != len(self._ghosts):
            # Only those of ghosts gone may be forgotten.
            for entity_id in versions.keys() - self._ghosts.keys():
                if now - versions[entity_id][1] >= self.ttl:
                    del versions[entity_id]
        return dropped

    def sources(self) -> Iterable[str]:
        """The zones whose ghosts are held."""
        return sorted(zone for zone, views in self._by_source.items() if views)


#: No ghosts from a zone.
_NONE: dict[str, dict] = {}
