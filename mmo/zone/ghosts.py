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

An update is whole (every view: the form every release reads) or a delta:
the views that changed since the update to the same neighbour just before
it (its C{base}), and the ids no longer listed (C{gone}); the rules above
hold for a delta as for the whole update it stands for (L{GhostSender}
makes them, L{GhostTable} takes them).  A zone sends a neighbour deltas
only while the neighbour asks for them: a L{GhostSync} every
L{SYNC_INTERVAL} seconds from a zone that hears its updates, good for
L{LEASE} seconds (a zone of an earlier release never sends one, and gets
whole updates); a neighbour that missed an update (a delta whose base is
not the last update it took: it restarted, its subscription came up late,
a publish failed) keeps its ghosts as they are and asks for a whole one
(C{GhostSync(full=True)}, at most every L{ASK_INTERVAL} seconds), which
comes at the sender's next tick.  A delta that would say nothing (no view
changed, none gone) is not sent, unless the neighbour heard nothing for
L{HEARTBEAT} seconds: an idle border costs no message a tick, and the
neighbour's ghosts do not expire (L{TTL}).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mmo.game.messages import GhostUpdate
from mmo.zone.entity import Entity

#: Seconds between a zone's L{GhostSync}s to a neighbour it hears.
SYNC_INTERVAL = 2.0
#: Seconds a L{GhostSync} lets its sender be sent deltas: three of them
#: missed (its process replaced by one of an earlier release), whole
#: updates again.
LEASE = 3 * SYNC_INTERVAL
#: Seconds between a zone's asks for a whole update of a neighbour it lost.
ASK_INTERVAL = 0.25
#: Seconds after a zone's last update at which a neighbour drops its ghosts.
TTL = 1.0
#: Seconds at most between two updates to a neighbour that takes deltas,
#: empty ones left out between: well within L{TTL}, a lost one included.
HEARTBEAT = TTL / 4


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
    @param sync: C{sync(zone, full)} sends C{zone} a L{GhostSync} (see the
        module docstring); without it, no zone is asked for deltas.
    """

    def __init__(
        self,
        is_real: Callable[[str], bool],
        clock,
        ttl: float = TTL,
        sync: Callable[[str, bool], None] | None = None,
    ):
        self.is_real = is_real
        self.clock = clock
        self.ttl = ttl
        self.sync = sync
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
        #: Zone -> the views (with versions) its last update stood for, by
        #: id, and of them those not taken (refused by the rules): what a
        #: delta changes, and the views tried again at each update, as a
        #: whole update would.
        self._listed: dict[str, dict[str, dict]] = {}
        self._refused: dict[str, set[str]] = {}
        #: Zone -> when it was last sent a GhostSync, and asked for a whole update.
        self._synced: dict[str, float] = {}
        self._asked: dict[str, float] = {}

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

    def restore(self, snapshot: dict) -> None:
        """
        Take a predecessor's L{snapshot}: each zone's ghosts as a whole
        update.  The snapshot holds the ghosts, not everything their zone
        listed: a delta from a zone is not taken before its next whole
        update (asked for by that delta).
        """
        for zone, ghosts in snapshot.items():
            views = tuple(ghosts.get("views") or ())
            self.apply(GhostUpdate(zone, int(ghosts.get("tick") or 0), views))
            self._listed.pop(zone, None)
            self._refused.pop(zone, None)

    def apply(self, update: GhostUpdate) -> None:
        """Take one zone's update, whole or a delta: replace its ghosts, by the rules above."""
        zone = update.zone
        last = self._ticks.get(zone, -1)
        if update.tick <= last:
            return
        now = self.clock.seconds()
        if update.base is not None and (update.base != last or zone not in self._listed):
            # An update of zone's missed: its ghosts stay as they are (and
            # expire if no whole update comes in time).
            if self.sync is not None and now - self._asked.get(zone, -ASK_INTERVAL) >= ASK_INTERVAL:
                self._asked[zone] = self._synced[zone] = now
                self.sync(zone, True)
            return
        self._ticks[zone] = update.tick
        self._heard[zone] = now
        if update.base is None:
            self._apply_whole(update, now)
        else:
            self._apply_delta(update, now)
        if self.sync is not None and now - self._synced.get(zone, -SYNC_INTERVAL) >= SYNC_INTERVAL:
            self._synced[zone] = now
            self.sync(zone, False)

    def _apply_whole(self, update: GhostUpdate, now: float) -> None:
        """Take a whole update: every view it lists, the others of its zone dropped."""
        zone = update.zone
        seen: dict[str, dict] = {}
        listed: dict[str, dict] = {}
        refused: set[str] = set()
        take = self._take
        for view in update.views:
            entity_id = view["id"]
            listed[entity_id] = view
            shown = take(zone, view, now)
            if shown is None:
                refused.add(entity_id)
            else:
                seen[entity_id] = shown
        if self._handed:
            self._keep_handed(update, seen)
        before = self._by_source.get(zone)
        if before:
            for entity_id in before.keys() - seen.keys():
                self._drop(entity_id, now)
        self._by_source[zone] = seen
        self._listed[zone] = listed
        self._refused[zone] = refused

    def _apply_delta(self, update: GhostUpdate, now: float) -> None:
        """
        Take a delta: the views it lists and the ids gone, the views of its
        zone's refused ghosts tried again; the ghosts it does not name stay
        as they are (the same views at the same versions, taken again).
        """
        zone = update.zone
        seen = self._by_source.setdefault(zone, {})
        listed = self._listed[zone]
        refused = self._refused[zone]
        handed = self._handed
        for entity_id in update.gone or ():
            if listed.pop(entity_id, None) is None:
                continue
            refused.discard(entity_id)
            if entity_id in seen and not (handed and self._still_handed(entity_id, update)):
                del seen[entity_id]
                self._drop(entity_id, now)
        take = self._take
        for view in update.views:
            entity_id = view["id"]
            listed[entity_id] = view
            shown = take(zone, view, now)
            if shown is not None:
                seen[entity_id] = shown
                refused.discard(entity_id)
                continue
            refused.add(entity_id)
            if entity_id in seen and not (handed and self._still_handed(entity_id, update)):
                del seen[entity_id]
                self._drop(entity_id, now)
        if refused:
            changed = {view["id"] for view in update.views}
            for entity_id in [i for i in refused if i not in changed]:
                shown = take(zone, listed[entity_id], now)
                if shown is not None:
                    seen[entity_id] = shown
                    refused.discard(entity_id)
        if handed:
            for entity_id, (to, tick) in list(handed.items()):
                if to == zone and update.tick > tick:
                    del handed[entity_id]
                    taken = entity_id in listed and entity_id not in refused
                    if not taken and entity_id in seen:
                        del seen[entity_id]
                        self._drop(entity_id, now)

    def _still_handed(self, entity_id: str, update: GhostUpdate) -> bool:
        """Whether C{update} was sent too early to hold the handed-over ghost C{entity_id}."""
        handed = self._handed.get(entity_id)
        return handed is not None and handed[0] == update.zone and update.tick <= handed[1]

    def _drop(self, entity_id: str, now: float) -> None:
        """Drop a ghost; its version is remembered from now on (L{expire})."""
        ghost = self._ghosts.pop(entity_id)
        newest = self._versions.get(entity_id)
        if newest is None or newest[0] <= ghost.version:
            self._versions[entity_id] = (ghost.version, now)

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
        self._recheck(entity_id)
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
            if entity_id in self._listed.get(current.source, _NONE):
                # Refused from now on, as its next whole update would be.
                self._refused[current.source].add(entity_id)
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
        """
        The entity became a real here (a handoff arrived): drop its ghost.
        Its views listed by a zone are refused from now on (tried again at
        each update of that zone, should it stop being a real here).
        """
        self._handed.pop(entity_id, None)
        ghost = self._ghosts.get(entity_id)
        if ghost is not None:
            self._by_source[ghost.source].pop(entity_id, None)
            self._drop(entity_id, self.clock.seconds())
        self._recheck(entity_id)

    def _recheck(self, entity_id: str) -> None:
        """
        The rules may take or refuse the views listed of C{entity_id} now
        otherwise than before: they are tried again at each update of their
        zone (as refused ones), as a whole update would.
        """
        for zone, listed in self._listed.items():
            if entity_id in listed:
                self._refused[zone].add(entity_id)

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
                self._listed.pop(zone, None)
                self._refused.pop(zone, None)
                for entity_id in sorted(self._by_source.pop(zone, ())):
                    self._drop(entity_id, now)
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


class GhostSender:
    """
    The updates zone C{zone} sends one neighbour: whole ones until the
    neighbour asks for deltas (L{synced}), then deltas for as long as it
    asks again within L{LEASE} seconds (see the module docstring).

    @param zone: The sending zone.
    @param lease: L{LEASE}.
    @param heartbeat: L{HEARTBEAT}: at most this many seconds between two
        deltas sent (well within the neighbour's C{ttl}).
    """

    def __init__(self, zone: str, lease: float = LEASE, heartbeat: float = HEARTBEAT):
        self.zone = zone
        self.lease = lease
        self.heartbeat = heartbeat
        #: When the last delta (or the whole update it is based on) was made.
        self._sent_at = 0.0
        #: Until when the neighbour takes deltas (C{None}: whole updates).
        self._until: float | None = None
        #: What the last update stood for, by id: (view without its
        #: version, version); C{None}: the next update is whole.
        self._sent: dict[str, tuple[dict, int]] | None = None
        self._tick = 0

    def synced(self, full: bool, now: float) -> None:
        """The neighbour takes deltas (its L{GhostSync}); C{full}: send it the next one whole."""
        self._until = now + self.lease
        if full:
            self._sent = None

    def update(self, tick: int, views: list[dict], reals: dict, now: float) -> GhostUpdate | None:
        """
        The update numbered C{tick} of C{views} (each real's view, without
        its version: that of its real in C{reals}), whole or a delta; or
        C{None}, nothing to send: a delta that would say nothing, less than
        C{heartbeat} seconds after the last update sent (the next one is
        based on that one).
        """
        if self._until is None or now >= self._until:
            self._until = self._sent = None
            return GhostUpdate(self.zone, tick, _versioned(views, reals, None, None))
        sent = self._sent
        current: dict[str, tuple[dict, int]] = {}
        if sent is None:
            # Whole, and remembered: the base of the next ones.
            self._tick, self._sent, self._sent_at = tick, current, now
            return GhostUpdate(self.zone, tick, _versioned(views, reals, None, current))
        changed = _versioned(views, reals, sent, current)
        # What is left of the last update is gone.
        gone = list(sent) or None
        self._sent = current
        if not changed and gone is None and now - self._sent_at < self.heartbeat:
            return None
        self._tick, base, self._sent_at = tick, self._tick, now
        return GhostUpdate(self.zone, tick, changed, base=base, gone=gone)


def _versioned(views: list[dict], reals: dict, sent: dict | None, current: dict | None) -> list:
    """
    Copies of C{views} with their versions (of their reals in C{reals}):
    all of them, or those not in C{sent} as they are (C{sent} is left with
    the ids not in C{views}).  C{current}, if given, gets C{(view, version)}
    of each by id.
    """
    versioned = []
    for view in views:
        entity_id = view["id"]
        real = reals.get(entity_id)
        version = real.version if real is not None else 0
        if sent is not None:
            last = sent.pop(entity_id, None)
            # A standing real's view is the same object tick after tick
            # (Publication keeps it): no compare of its items then.
            if last is not None and last[1] == version and (last[0] is view or last[0] == view):
                current[entity_id] = last
                continue
        if current is not None:
            current[entity_id] = (view, version)
        # dict.copy and one key set: cheaper than {**view, "version": ...}.
        copy = view.copy()
        copy["version"] = version
        versioned.append(copy)
    return versioned


#: No ghosts from a zone.
_NONE: dict[str, dict] = {}
