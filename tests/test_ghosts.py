"""
Ghost updates as deltas (L{mmo.zone.ghosts}): what a L{GhostSender} sends a
neighbour, whole or changed views only; that a L{GhostTable} takes a delta
as it would the whole update it stands for; how a zone that missed one
recovers; and what a zone of the release before deltas is sent.  The
rules of ghosts themselves are tested whole in C{tests/test_handoff.py},
which also runs its crash and reorder worlds with deltas.
"""

from __future__ import annotations

import random

from twisted.internet import task
from twisted.trial import unittest

from mmo.bus.memory import pack, unpack
from mmo.game import messages
from mmo.game.messages import GhostUpdate
from mmo.zone.entity import PLAYER, Entity
from mmo.zone.ghosts import (
    ASK_INTERVAL,
    HEARTBEAT,
    LEASE,
    SYNC_INTERVAL,
    TTL,
    GhostSender,
    GhostTable,
)


def view(entity_id, x=0.0, name=""):
    """A real's view, as the simulation gives it (without its version)."""
    return {"id": entity_id, "kind": PLAYER, "x": x, "y": 0.0, "name": name, "attrs": {}}


def versioned(entity_id, version, x=0.0):
    return {**view(entity_id, x), "version": version}


def reals(**versions):
    """Reals by id, at the given versions."""
    return {key: Entity(key, PLAYER, 0.0, 0.0, version=v) for key, v in versions.items()}


def over_the_bus(update: GhostUpdate) -> GhostUpdate:
    """C{update} as a neighbour decodes it."""
    return messages.decode(unpack(pack(messages.encode(update, update.zone))))[1]


class GhostSenderTests(unittest.TestCase):
    def setUp(self):
        self.sender = GhostSender("A", lease=LEASE)
        self.reals = reals(e1=1, e2=2)

    def update(self, tick, views, now=0.0):
        return self.sender.update(tick, views, self.reals, now)

    def test_whole_until_asked(self):
        """A neighbour that never asked (of the release before deltas) gets whole updates."""
        for tick in (1, 2, 3):
            update = self.update(tick, [view("e1"), view("e2", 1.0)], now=tick)
            self.assertEqual(
                update, GhostUpdate("A", tick, (versioned("e1", 1), versioned("e2", 2, 1.0)))
            )
            # Encoded as that release's GhostUpdate: no field it does not know.
            self.assertEqual(
                set(messages.encode(update, "A")), {"type", "from", "zone", "tick", "views"}
            )

    def test_deltas_once_asked(self):
        """
        Asked: a whole update first, then what changed since the one before
        (a view, or its version) and the ids gone, based on that update.
        """
        self.update(1, [view("e1"), view("e2")])
        self.sender.synced(False, 0.0)
        self.assertEqual(
            self.update(2, [view("e1"), view("e2")]),
            GhostUpdate("A", 2, (versioned("e1", 1), versioned("e2", 2))),
        )
        self.assertEqual(
            self.update(3, [view("e1"), view("e2", 1.0)]),
            GhostUpdate("A", 3, (versioned("e2", 2, 1.0),), base=2),
        )
        self.reals["e1"].version = 5
        self.reals["e3"] = Entity("e3", PLAYER, 0.0, 0.0)
        self.assertEqual(
            self.update(4, [view("e1"), view("e3")]),
            GhostUpdate("A", 4, (versioned("e1", 5), versioned("e3", 0)), base=3, gone=("e2",)),
        )

    def test_nothing_changed(self):
        """
        A delta that would say nothing is not sent, but one goes at least
        every HEARTBEAT seconds (the neighbour's ghosts live TTL seconds);
        the next delta is based on the last update sent.
        """
        self.assertLess(HEARTBEAT, TTL / 2)
        self.sender.synced(False, 0.0)
        self.assertEqual(self.update(1, [view("e1")], 0.0).base, None)
        self.assertIsNone(self.update(2, [view("e1")], 0.05))
        self.assertIsNone(self.update(3, [view("e1")], HEARTBEAT - 0.01))
        self.assertEqual(self.update(4, [view("e1")], HEARTBEAT), GhostUpdate("A", 4, (), base=1))
        self.assertIsNone(self.update(5, [view("e1")], HEARTBEAT + 0.05))
        self.assertEqual(
            self.update(6, [view("e1", 2.0)], HEARTBEAT + 0.1),
            GhostUpdate("A", 6, (versioned("e1", 1, 2.0),), base=4),
        )
        self.assertIsNone(self.update(7, [view("e1", 2.0)], HEARTBEAT + 0.15))
        # A view gone is a change: sent at once.
        self.assertEqual(
            self.update(8, [], HEARTBEAT + 0.2), GhostUpdate("A", 8, (), base=6, gone=("e1",))
        )
        self.assertIsNone(self.update(9, [], HEARTBEAT + 0.25))
        # Whole updates (a neighbour that does not ask) are sent every tick.
        whole = GhostSender("A", lease=LEASE)
        for tick in (1, 2):
            self.assertEqual(whole.update(tick, [], self.reals, 0.0), GhostUpdate("A", tick, ()))

    def test_whole_when_asked(self):
        self.sender.synced(False, 0.0)
        self.update(1, [view("e1")])
        self.update(2, [view("e1")])
        self.sender.synced(True, 0.5)
        self.assertEqual(
            self.update(3, [view("e1")], 0.5), GhostUpdate("A", 3, (versioned("e1", 1),))
        )
        self.assertEqual(
            self.update(4, [view("e1")], 0.5 + HEARTBEAT), GhostUpdate("A", 4, (), base=3)
        )

    def test_lease(self):
        """
        A neighbour that stops asking (its process replaced by one of the
        release before) gets whole updates again after the lease, and a
        whole one first if it asks again.
        """
        self.sender.synced(False, 0.0)
        self.update(1, [view("e1")], 0.0)
        self.assertEqual(self.update(2, [view("e1")], LEASE - 0.01).base, 1)
        self.sender.synced(False, LEASE - 0.01)
        self.assertEqual(self.update(3, [view("e1")], 2 * LEASE - 0.02).base, 2)
        whole = self.update(4, [view("e1")], 2 * LEASE)
        self.assertEqual(whole, GhostUpdate("A", 4, (versioned("e1", 1),)))
        self.assertEqual(self.update(5, [view("e1")], 2 * LEASE).base, None)
        self.sender.synced(False, 2 * LEASE)
        self.assertEqual(self.update(6, [view("e1")], 2 * LEASE).base, None)
        self.assertEqual(self.update(7, [view("e1")], 2 * LEASE + HEARTBEAT).base, 6)


class Syncs(list):
    """A L{GhostTable}'s C{sync}: what it asked of whom."""

    def __call__(self, zone, full):
        self.append((zone, full))


class GhostTableDeltaTests(unittest.TestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.reals: set[str] = set()
        self.syncs = Syncs()
        self.table = GhostTable(self.reals.__contains__, self.clock, ttl=1.0, sync=self.syncs)

    def test_asks_for_deltas(self):
        """
        A zone heard is told every SYNC_INTERVAL seconds that deltas are
        taken (whole updates or deltas alike: the sender's lease goes on).
        """
        self.table.apply(GhostUpdate("A", 1, (versioned("e1", 0),)))
        self.table.apply(GhostUpdate("C", 1, ()))
        self.assertEqual(self.syncs, [("A", False), ("C", False)])
        self.clock.advance(SYNC_INTERVAL - 0.1)
        self.table.apply(GhostUpdate("A", 2, (), base=1))
        self.assertEqual(len(self.syncs), 2)
        self.clock.advance(0.1)
        self.table.apply(GhostUpdate("A", 3, (), base=2))
        self.assertEqual(self.syncs[2:], [("A", False)])
        self.assertEqual([v["id"] for v in self.table.views()], ["e1"])

    def test_delta(self):
        """A delta changes what it names; the rest stays, the same views."""
        self.table.apply(GhostUpdate("A", 1, (versioned("e1", 0), versioned("e2", 0))))
        kept = self.table.get("e2").view
        self.table.apply(GhostUpdate("A", 2, (versioned("e1", 0, 5.0), versioned("e3", 1)), base=1))
        self.assertEqual(self.table.get("e1").view["x"], 5.0)
        self.assertIs(self.table.get("e2").view, kept)
        self.assertEqual(sorted(self.table.views_from("A")), ["e1", "e2", "e3"])
        self.table.apply(GhostUpdate("A", 3, (), base=2, gone=("e1", "e3")))
        self.assertEqual(list(self.table.views_from("A")), ["e2"])
        self.assertNotIn("e1", self.table)

    def test_gap(self):
        """
        A delta whose base is not the last update taken (one was missed):
        the ghosts stay as they are, a whole update is asked for (at most
        every ASK_INTERVAL seconds), and taken when it comes.
        """
        self.table.apply(GhostUpdate("A", 1, (versioned("e1", 0), versioned("e2", 0))))
        del self.syncs[:]
        self.table.apply(GhostUpdate("A", 3, (versioned("e1", 0, 9.0),), base=2, gone=("e2",)))
        self.assertEqual(self.syncs, [("A", True)])
        self.assertEqual(self.table.get("e1").view["x"], 0.0)
        self.assertIn("e2", self.table)
        self.table.apply(GhostUpdate("A", 4, (), base=3))
        self.assertEqual(self.syncs, [("A", True)])
        self.clock.advance(ASK_INTERVAL)
        self.table.apply(GhostUpdate("A", 5, (), base=4))
        self.assertEqual(self.syncs, [("A", True), ("A", True)])
        self.table.apply(GhostUpdate("A", 6, (versioned("e1", 0, 9.0),)))
        self.assertEqual(self.table.views(), [view("e1", 9.0)])
        self.table.apply(GhostUpdate("A", 7, (versioned("e4", 0),), base=6))
        self.assertEqual(sorted(self.table.views_from("A")), ["e1", "e4"])

    def test_gap_not_heard(self):
        """Deltas that cannot be taken are not heard: without a whole update, the ghosts expire."""
        self.table.apply(GhostUpdate("A", 1, (versioned("e1", 0),)))
        for tick in range(2, 13):
            self.clock.advance(0.1)
            self.table.apply(GhostUpdate("A", tick + 1, (), base=tick))
            self.table.expire()
        self.assertNotIn("e1", self.table)

    def test_delta_first(self):
        """A table that took no whole update of a zone (a new process) asks for one."""
        self.table.apply(GhostUpdate("A", 5, (versioned("e1", 0),), base=4))
        self.assertEqual(self.syncs, [("A", True)])
        self.assertNotIn("e1", self.table)

    def test_restored_asks_for_a_whole_update(self):
        """
        Ghosts restored from a predecessor's snapshot are kept, but the
        snapshot is not what their zone listed: its next delta is not
        taken, a whole update is asked for.
        """
        self.table.apply(GhostUpdate("A", 1, (versioned("e1", 0),)))
        self.table.handed_over("B", versioned("e5", 2), 7)
        successor = GhostTable(self.reals.__contains__, self.clock, ttl=1.0, sync=self.syncs)
        successor.restore(self.table.snapshot())
        self.assertEqual(successor.views(), self.table.views())
        del self.syncs[:]
        successor.apply(GhostUpdate("B", 8, (), base=0))
        self.assertEqual(self.syncs, [("B", True)])
        self.assertIn("e5", successor)
        successor.apply(GhostUpdate("B", 9, ()))
        self.assertNotIn("e5", successor)

    def test_real_here_then_not(self):
        """
        A ghost dropped because its entity became a real here comes back
        from its zone's deltas when it is no longer one, though its view did
        not change, as a whole update would bring it back.
        """
        self.table.apply(GhostUpdate("A", 1, (versioned("e1", 3),)))
        self.reals.add("e1")
        self.table.real_added("e1")
        self.table.apply(GhostUpdate("A", 2, (), base=1))
        self.assertNotIn("e1", self.table)
        self.reals.clear()
        self.table.apply(GhostUpdate("A", 3, (), base=2))
        self.assertEqual(self.table.get("e1").source, "A")

    def test_without_sync(self):
        """A table without C{sync} asks nothing: its neighbours send it whole updates."""
        table = GhostTable(self.reals.__contains__, self.clock)
        table.apply(GhostUpdate("A", 1, (versioned("e1", 0),)))
        table.apply(GhostUpdate("A", 3, (), base=2))
        self.assertIn("e1", table)


#: A zone's versions of an entity: each version has one owner (a handoff
#: bumps it), so no two zones list an entity at the same version.
OWN = {"A": 0, "C": 1}


class EquivalenceTests(unittest.TestCase):
    """
    Random updates of two zones, with handoffs, entities becoming reals
    here, zones falling silent and zones where nothing changes: a table fed
    the deltas of a L{GhostSender} holds at every step what a table fed the
    whole updates they stand for holds.  A delta that would say nothing is
    not sent, and neither is the whole update it stands for: for the
    tables, that tick's update of that zone was not sent (as a zone's ticks
    are not all heard: a publish fails, the zone is slow).
    """

    IDS = [f"e{i}" for i in range(12)]

    def run_seed(self, seed):
        rng = random.Random(seed)
        clock = task.Clock()
        real_here: set[str] = set()
        whole = GhostTable(real_here.__contains__, clock, ttl=0.3)
        delta = GhostTable(real_here.__contains__, clock, ttl=0.3, sync=lambda zone, full: None)
        # Heartbeats well within the tables' ttl, as HEARTBEAT is within TTL.
        senders = {zone: GhostSender(zone, heartbeat=0.075) for zone in ("A", "C")}
        for sender in senders.values():
            sender.synced(False, 0.0)
        states = {zone: reals() for zone in ("A", "C")}
        deltas = skipped = 0
        for tick in range(1, 300):
            clock.advance(0.05)
            for table in (whole, delta):
                table.expire()
            for zone, sender in senders.items():
                if rng.random() < 0.03:
                    # Silent for a while (its ghosts may expire).
                    continue
                state = states[zone]
                # Nothing changes there this tick, a third of the time.
                changes = rng.sample(self.IDS, 2) if rng.random() < 0.66 else ()
                for entity_id in changes:
                    if entity_id in state and rng.random() < 0.3:
                        del state[entity_id]
                    else:
                        entity = state.setdefault(
                            entity_id, Entity(entity_id, PLAYER, 0.0, 0.0, version=OWN[zone])
                        )
                        entity.x = float(rng.randrange(3))
                        if rng.random() < 0.2:
                            entity.version = 2 * rng.randrange(3) + OWN[zone]
                views = [view(key, e.x) for key, e in state.items()]
                sender.synced(False, clock.seconds())
                update = sender.update(tick, views, state, clock.seconds())
                if update is None:
                    skipped += 1
                    continue
                deltas += update.base is not None
                whole.apply(
                    GhostUpdate(
                        zone, tick, [versioned(k, e.version, e.x) for k, e in state.items()]
                    )
                )
                delta.apply(over_the_bus(update))
            happening = rng.random()
            entity_id = rng.choice(self.IDS)
            if happening < 0.05:
                real_here.add(entity_id)
                for table in (whole, delta):
                    table.real_added(entity_id)
            elif happening < 0.1:
                real_here.discard(entity_id)
            elif happening < 0.13 and entity_id in real_here:
                real_here.discard(entity_id)
                zone = rng.choice(("A", "C"))
                handed = versioned(entity_id, 2 * rng.randrange(3) + OWN[zone])
                until = tick + rng.randrange(-1, 3)
                for table in (whole, delta):
                    table.handed_over(zone, handed, until)
            for zone in ("A", "C"):
                self.assertEqual(delta.views_from(zone), whole.views_from(zone), (seed, tick, zone))
            for entity_id in self.IDS:
                self.assertEqual(
                    delta.get(entity_id), whole.get(entity_id), (seed, tick, entity_id)
                )
        self.assertGreater(deltas, 300)
        self.assertGreater(skipped, 30)

    def test_seeds(self):
        for seed in range(20):
            self.run_seed(seed)
