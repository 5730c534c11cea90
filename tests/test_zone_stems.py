"""
Tests for a tick's pushes as stems (L{mmo.zone.kernel.stems}) and for the
pushes themselves (L{mmo.zone.kernel.pushes}), on both kernels: every stem
is the bytes L{codec.push_stem} makes of its push, whatever the values (the
compiled kernel packs the values of built-in types itself, and hands any
other push to C{push_stem}); a push nothing can encode is dropped and told,
the others go.
"""

from __future__ import annotations

import enum
import random
import sys
from collections import OrderedDict

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from mmo.bus.memory import MemoryBus
from mmo.game.messages import PushStems
from mmo.wire import codec
from mmo.zone import aoi as aoi_module
from mmo.zone import kernel as pure_kernel
from mmo.zone.entity import PLAYER, Entity
from mmo.zone.outbox import Outbox
from mmo.zone.simulation import ZoneSimulation
from tests.test_stems import Gateways
from tests.test_wire import VALUES
from tests.test_zone_aoi import ONE_TEST_PER_KERNEL, compiled_kernel
from tests.test_zone_sim import Zone, send

BOUNDED = settings(max_examples=150, deadline=None, suppress_health_check=ONE_TEST_PER_KERNEL)

#: An entity's update entry and view, as a tick's pushes hold them.
ENTRY = {"id": "npc-1", "x": 1.5, "y": -2.25}
VIEW = {"id": "p-1", "kind": PLAYER, "x": 3.0, "y": 4.0, "name": "Ann", "attrs": {"hp": 7}}

#: Values at every edge of msgpack's forms: ints, floats, str, bin, arrays, maps.
EDGES = [
    *(0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1),
    *(-1, -32, -33, -128, -129, -32768, -32769, -(2**31), -(2**31) - 1, -(2**63)),
    *(0.0, -0.0, 1e308, float("inf"), float("-inf"), float("nan"), 5e-324),
    *("", "x" * 31, "x" * 32, "x" * 255, "x" * 256, "x" * 65535, "x" * 65536),
    *("é", "☃" * 20, "\U0001f600", "a\x00b"),
    *(b"", b"\x00" * 255, b"\x01" * 256, b"\x02" * 65536),
    *([0] * 15, [0] * 16, [0] * 65536, (1, "a"), ()),
    *({f"k{i}": i for i in range(15)}, {f"k{i}": i for i in range(16)}, {}),
    *(None, True, False, {1: "a", None: [b"b"]}),
]


class Tag(enum.IntEnum):
    """A game's value of a type of its own, which msgpack packs as its int."""

    RED = 3


class Label(str):
    """A game's str of a type of its own."""


class Opaque:
    """A value msgpack cannot encode."""


def nested(depth: int):
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


#: Values the compiled kernel leaves to the generic encoder, which packs them.
OTHERS = [
    Tag.RED,
    Label("label"),
    OrderedDict(a=1),
    2**63,
    2**64 - 1,
    bytearray(b"ab"),
    memoryview(b"cd"),
    nested(40),
    [{"deep": nested(40)}],
]


class StemsTests:
    """L{mmo.zone.kernel.stems} on a kernel (C{self.kernel})."""

    def stems(self, by_session: dict, fragments=None) -> dict:
        """The stems of C{by_session}; the pushes dropped in C{self.dropped}."""
        self.dropped = []
        if fragments is None:
            fragments = self.kernel.Fragments()

        def dropped(session, kind):
            # Told while the exception is handled, for the log's traceback.
            self.dropped.append((session, kind, sys.exc_info()[0]))

        return self.kernel.stems(by_session, codec.push_stem, fragments, dropped)

    def assertStems(self, by_session: dict) -> None:
        """Each push's stem is C{push_stem}'s, in order, by session."""
        expected = {
            session: [codec.push_stem(kind, fields) for kind, fields in events]
            for session, events in by_session.items()
            if session is not None and events
        }
        self.assertEqual(self.stems(by_session), expected)
        self.assertEqual(self.dropped, [])

    def test_zone_pushes(self):
        """A C{world.correct} and C{world.update}s of every shape a zone sends."""
        entries = [{"id": f"npc-{i}", "x": i + 0.5, "y": -i * 1.25} for i in range(40)]
        self.assertStems(
            {
                "s-1": [
                    ("world.correct", {"x": 1.0, "y": 2.0, "input": 7}),
                    (
                        "world.update",
                        {"tick": 9, "enter": [VIEW], "update": entries, "leave": ["a", "b"]},
                    ),
                ],
                "s-2": [("world.update", {"tick": 9, "enter": [], "update": [], "leave": ["c"]})],
                "s-3": [
                    (
                        "world.update",
                        {"tick": 2**40, "enter": [VIEW, ENTRY], "update": [], "leave": []}
                        | {"reset": True},
                    )
                ],
                "s-4": [],
                None: [("world.update", {"tick": 1})],
            }
        )

    def test_edges(self):
        """Every edge of msgpack's forms, as a field and as an item of a list field."""
        for value in EDGES:
            self.assertStems({"s": [("k", {"v": value}), ("k", {"update": [value, ENTRY]})]})

    def test_long_maps(self):
        """Pushes and kinds past a fix map's and a fix str's sizes."""
        fields = {f"field-{i}": i for i in range(70000)}
        self.assertStems({"s": [("k" * 40, fields), ("world.update", {"x" * 300: 1})]})

    def test_generic_values(self):
        """Values of other types, and keys the stem places itself, are packed as ever."""
        for value in OTHERS:
            self.assertStems({"s": [("k", {"v": value}), ("k", {"update": [ENTRY, value]})]})
        for fields in ({"seq": 5, "x": 1}, {"t": "x", "y": 2}, {1: "a"}, {Label("z"): 1}):
            self.assertStems({"s": [("k", fields)]})
        self.assertStems({"s": [(Label("world.update"), {"x": 1}), ("k", OrderedDict(y=2))]})

    @BOUNDED
    @given(
        st.text(min_size=1, max_size=16),
        st.dictionaries(
            st.text(max_size=8),
            VALUES
            | st.lists(st.dictionaries(st.text(max_size=4), VALUES, max_size=3), max_size=20),
            max_size=5,
        ),
    )
    def test_any_push(self, kind, fields):
        """Any push msgpack can encode: its own stem."""
        self.assertStems({"s": [(kind, fields)]})

    def test_unencodable_dropped(self):
        """A push nothing can encode is dropped and told; the others go."""
        stems = self.stems(
            {
                "s-1": [("world.odd", {"x": Opaque()}), ("world.update", {"tick": 1})],
                "s-2": [("world.odd", {"update": [ENTRY, {"x": Opaque()}]})],
                "s-3": [("world.odd", {"name": "\ud800"})],
                "s-4": [("world.odd", {"deep": nested(2000)})],
            }
        )
        self.assertEqual(stems, {"s-1": [codec.push_stem("world.update", {"tick": 1})]})
        self.assertEqual(
            self.dropped,
            [
                ("s-1", "world.odd", TypeError),
                ("s-2", "world.odd", TypeError),
                ("s-3", "world.odd", UnicodeEncodeError),
                ("s-4", "world.odd", ValueError),
            ],
        )

    def test_shared_items(self):
        """
        The maps shared by the pushes of a tick, on every gateway, are in
        each stem as in the stem of that push alone; the next tick's
        fragments are its own, where the same maps say something else.
        """
        entry = {"id": "npc-1", "x": 1.5, "y": 2.0}
        others = [{"id": f"npc-{i}"} for i in range(2, 20)]
        for x in (1.5, 8.25):
            entry["x"] = x
            fragments = self.kernel.Fragments()
            for by_session in (
                {"s-1": [("world.update", {"tick": 3, "update": [entry, *others]})]},
                {"s-2": [("world.update", {"tick": 3, "enter": [entry], "update": others[:2]})]},
                {"s-3": [("world.update", {"tick": 3, "update": [*others, entry, entry]})]},
            ):
                expected = {
                    s: [codec.push_stem(*push) for push in p] for s, p in by_session.items()
                }
                self.assertEqual(self.stems(by_session, fragments), expected)

    def test_fragments_hold_their_maps(self):
        """
        A map packed into a tick's fragments is held by them: a map made
        after another was let go is never taken for it.
        """
        fragments = self.kernel.Fragments()
        for i in range(200):
            by_session = {"s": [("world.update", {"update": [{"id": f"e-{i}", "x": i}]})]}
            self.assertEqual(
                self.stems(by_session, fragments),
                {"s": [codec.push_stem(*by_session["s"][0])]},
            )


class PureStemsTests(StemsTests, unittest.TestCase):
    kernel = pure_kernel


class CompiledStemsTests(StemsTests, unittest.TestCase):
    def setUp(self):
        self.kernel = compiled_kernel()

    def test_packs_the_zone_pushes_itself(self):
        """The pushes a zone makes are packed without the generic encoder."""
        calls = []

        def generic(kind, fields, fragments):
            calls.append(kind)
            return codec.push_stem(kind, fields, fragments)

        by_session = {
            "s-1": [
                ("world.correct", {"x": 1.0, "y": 2.0, "input": 7}),
                ("world.update", {"tick": 9, "enter": [VIEW], "update": [ENTRY], "leave": ["a"]}),
            ]
        }
        stems = self.kernel.stems(by_session, generic, self.kernel.Fragments(), None)
        self.assertEqual(stems, {"s-1": [codec.push_stem(*push) for push in by_session["s-1"]]})
        self.assertEqual(calls, [])
        # A push it cannot pack, and only that one, goes to the generic encoder.
        odd = ("world.update", {"tick": 9, "update": [ENTRY, {"tag": Tag.RED}]})
        self.kernel.stems({"s-1": [odd]}, generic, self.kernel.Fragments(), None)
        self.assertEqual(calls, ["world.update"])


class GameView(ZoneSimulation):
    """A game whose views hold values of its own types: an IntEnum, and one nothing packs."""

    def entity_view(self, entity):
        view = super().entity_view(entity)
        view["tag"] = Tag.RED
        if entity.id == "odd":
            view["opaque"] = Opaque()
        return view


class ZoneStemsTests(unittest.TestCase):
    """A zone's ticks, sent through its outbox: the same stems on both kernels."""

    def run_zone(self, kernel, cls=ZoneSimulation) -> list:
        """
        The stems of a seeded zone's ticks, the outbox's C{kernel} and the
        area of interest's, checked against L{codec.push_stem} of each
        push: players walking, entering and leaving each other's view, one
        starting over, one corrected now and then.
        """
        self.patch(aoi_module, "KERNEL", kernel)
        values = {"columns": 2, "rows": 2, "zones": ["zone-1"] * 4, "npcs": 0, "max_speed": 200}
        zone = Zone({**values, "aoi_radius": 30}, seed=7, cls=cls)
        sim = zone.sim
        gateways = Gateways(stems=True)
        outbox = Outbox(MemoryBus(), "r0c0", sim)
        outbox.kernel = kernel
        outbox.stream_to(gateways)
        rng = random.Random(11)
        players = []
        for i in range(10):
            player = Entity(
                id=f"p{i}",
                kind=PLAYER,
                x=rng.uniform(440, 500),
                y=rng.uniform(200, 300),
                name=f"player {i}",
                session=f"s{i}",
                gateway=f"g{i % 2}",
            )
            sim.add(player, reset=i == 3)
            players.append(player)
        sim.spawn_npcs(300)
        sent = []
        for tick in range(30):
            for seq, player in enumerate(players):
                # Player 5 asks too far now and then: corrected.
                far = 100 if player.id == "p5" and tick % 4 == 0 else 6
                send(
                    sim,
                    player,
                    tick * 100 + seq,
                    player.x + rng.uniform(-far, far),
                    player.y + rng.uniform(-far, far),
                )
            result = zone.tick()
            del gateways.sent[:]
            outbox.pushes(result)
            expected = []
            for gateway, by_session in result.pushes.items():
                stems = {}
                for session, events in by_session.items():
                    stems[session] = [codec.push_stem(kind, fields) for kind, fields in events]
                if stems:
                    expected.append((gateway, PushStems(stems), "r0c0"))
            self.assertEqual(gateways.sent, expected)
            sent.append(gateways.sent[:])
        kinds = {
            kind for r in sent for _, batch, _ in r for ss in batch.pushes.values() for kind in ss
        }
        self.assertTrue(kinds)
        return sent

    def test_same_stems(self):
        pure = self.run_zone(pure_kernel)
        compiled = self.run_zone(compiled_kernel())
        self.assertEqual(pure, compiled)
        decoded = [
            codec.decode(codec.numbered(stem, 1)[4:])
            for tick in compiled
            for _, batch, _ in tick
            for stems in batch.pushes.values()
            for stem in stems
        ]
        kinds = {push["t"] for push in decoded}
        self.assertEqual(kinds, {"world.update", "world.correct"})
        self.assertTrue(any(push.get("reset") for push in decoded))
        self.assertTrue(any(push["leave"] for push in decoded if push["t"] == "world.update"))

    def test_game_views(self):
        """
        A game's views with values of its own types: packed as msgpack
        packs them; a player who would see one nothing packs gets no
        update (logged), the others theirs.
        """
        for kernel in (pure_kernel, compiled_kernel()):
            sent = self.run_zone(kernel, GameView)
            views = [
                view
                for tick in sent
                for _, batch, _ in tick
                for stems in batch.pushes.values()
                for stem in stems
                for view in codec.decode(codec.numbered(stem, 1)[4:]).get("enter", [])
            ]
            self.assertTrue(views)
            self.assertEqual({view["tag"] for view in views}, {3})

    def test_unencodable_view(self):
        """A view nothing packs: its observers' updates are dropped and logged, the rest go."""
        for kernel in (pure_kernel, compiled_kernel()):
            self.patch(aoi_module, "KERNEL", kernel)
            zone = Zone({"npcs": 0}, cls=GameView)
            gateways = Gateways(stems=True)
            outbox = Outbox(MemoryBus(), "r0c0", zone.sim)
            outbox.kernel = kernel
            outbox.stream_to(gateways)
            for entity_id, x in (("odd", 100.0), ("p-1", 101.0), ("p-2", 400.0)):
                zone.sim.add(
                    Entity(entity_id, PLAYER, x, 100.0, session=f"s-{entity_id}", gateway="g")
                )
            outbox.pushes(zone.tick())
            [(_, batch, _)] = gateways.sent
            self.assertEqual(sorted(batch.pushes), ["s-p-2"])
            self.assertEqual(len(self.flushLoggedErrors(TypeError)), 2)


class PushesTests(unittest.TestCase):
    """L{mmo.zone.kernel.pushes} on both kernels."""

    def test_mismatch(self):
        """Observers and views that do not match: an error, and nothing pushed."""
        entity = Entity("p", PLAYER, 1.0, 2.0, session="s", gateway="g")
        for kernel in (pure_kernel, compiled_kernel()):
            batches: dict = {}
            self.assertRaises(
                ValueError,
                kernel.pushes,
                [("p", 1.0, 2.0, entity)] * 2,
                [([], [], ["x"])],
                1,
                set(),
                set(),
                None,
                None,
                batches,
            )
            self.assertEqual(batches, {})

    def test_entities_of_any_class(self):
        """Observers' entities of a class without slots: their gateway and session read."""

        class Plain:
            def __init__(self, gateway, session):
                self.gateway = gateway
                self.session = session
                self.x, self.y, self.last_input = 1.0, 2.0, 4

        observers = [
            ("a", 1.0, 2.0, Plain("g-1", "s-a")),
            ("b", 1.0, 2.0, Entity("b", PLAYER, 1.0, 2.0, session="s-b", gateway="g-1")),
            ("c", 1.0, 2.0, Plain("g-2", "s-c")),
            ("d", 1.0, 2.0, Plain("g-2", "s-d")),
        ]
        shown = [([], [ENTRY], []), ([], [], []), ([VIEW], [], ["x"]), ([], [], [])]
        results = []
        for kernel in (pure_kernel, compiled_kernel()):
            batches: dict = {}
            restarting = {"d"}

            def started_over(entity_id, restarting=restarting):
                if entity_id in restarting:
                    restarting.discard(entity_id)
                    return True
                return False

            kernel.pushes(
                observers,
                shown,
                5,
                {"b"},
                restarting,
                started_over,
                lambda e: {"x": e.x, "y": e.y, "input": e.last_input},
                batches,
            )
            results.append(batches)
            self.assertEqual(restarting, set())
        self.assertEqual(results[0], results[1])
        update = {"tick": 5, "enter": [], "update": [ENTRY], "leave": []}
        self.assertEqual(
            results[0],
            {
                "g-1": {
                    "s-a": [("world.update", update)],
                    "s-b": [("world.correct", {"x": 1.0, "y": 2.0, "input": 0})],
                },
                "g-2": {
                    "s-c": [
                        ("world.update", {"tick": 5, "enter": [VIEW], "update": [], "leave": ["x"]})
                    ],
                    "s-d": [
                        (
                            "world.update",
                            {"tick": 5, "enter": [], "update": [], "leave": [], "reset": True},
                        )
                    ],
                },
            },
        )
