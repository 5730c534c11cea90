"""
The bots' client: the cut of a push's C{update} (L{mmo.bot.lazy}, its
compiled and pure-Python C{split_update} alike) and the requests a bot
fires and forgets (L{BotClient.fire}), counted without a Deferred.
"""

from __future__ import annotations

import os

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import task
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from mmo.bot import lazy, scenario
from mmo.bot.client import BotClient
from mmo.bot.swarm import Options, Swarm
from mmo.bot.views import ViewTracker
from mmo.wire import codec
from tests import support

#: A test of the mixins below runs once per split, from a test case of each
#: (which Hypothesis otherwise takes for a mistake); a loaded machine makes
#: the nested messages slowly.
ONE_TEST_PER_SPLIT = [HealthCheck.differing_executors, HealthCheck.too_slow]

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.binary(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=8) | st.dictionaries(st.text(max_size=10), inner, max_size=8)
    ),
    max_leaves=20,
)
messages = st.dictionaries(
    st.sampled_from(["t", "seq", "tick", "enter", "leave", "update", "reset"])
    | st.text(max_size=20),
    values,
    max_size=10,
)


def compiled_split():
    """The compiled split (L{support.compiled_module})."""
    return support.compiled_module("mmo.bot._lazy").split_update


class SplitTests:
    """C{self.split}'s cut of bodies, whole, cut short and broken."""

    split = None

    @settings(suppress_health_check=ONE_TEST_PER_SPLIT, max_examples=100, deadline=None)
    @given(messages)
    def test_the_map_without_update_and_update_as_bytes(self, message):
        body = msgpack.packb(message, use_bin_type=True)
        rest, update, end = self.split(body)
        self.assertEqual(end, len(body))
        without = {k: v for k, v in message.items() if k != "update"}
        self.assertEqual(msgpack.unpackb(rest, raw=False, strict_map_key=False), without)
        self.assertEqual(
            list(msgpack.unpackb(rest, raw=False, strict_map_key=False)), list(without)
        )
        if "update" in message:
            self.assertEqual(
                msgpack.unpackb(update, raw=False, strict_map_key=False), message["update"]
            )
        else:
            self.assertIsNone(update)
            self.assertEqual(rest, body)
        self.assertEqual(self.split(body + b"\x01\x02"), (rest, update, end))

    @settings(suppress_health_check=ONE_TEST_PER_SPLIT, max_examples=25, deadline=None)
    @given(messages.filter(bool))
    def test_a_body_cut_short_is_refused(self, message):
        body = msgpack.packb(message, use_bin_type=True)
        for cut in range(len(body)):
            self.assertRaises(ValueError, self.split, body[:cut])

    def test_long_maps_and_long_keys(self):
        message = {f"k{i}": i for i in range(1 << 16)}
        message["update"] = [{"id": "c-1", "x": 1.5}]
        body = msgpack.packb(message)
        rest, update, end = self.split(body)
        self.assertEqual(rest[:1], b"\xdf")
        self.assertEqual(msgpack.unpackb(rest), {k: v for k, v in message.items() if k != "update"})
        self.assertEqual(msgpack.unpackb(update), message["update"])
        # The key "update" in a str 8 header, as some encoders write it.
        body = b"\x82\xd9\x06update\x91\x01\xa1t\xa1x"
        self.assertEqual(self.split(body), (b"\x81\xa1t\xa1x", b"\x91\x01", len(body)))

    def test_what_is_refused(self):
        for body in (
            b"",
            b"\x92\x01\x02",
            msgpack.packb(1),
            msgpack.packb({1: "x"}),
            msgpack.packb({b"t": "x"}),
            b"\x81\xa2\xff\xfe\x01",
            b"\x81\xa1t\xc1",
            b"\x82\xa6update\x01\xa6update\x02",
        ):
            self.assertRaises(ValueError, self.split, body)

    def test_ext_and_bin_values_are_skipped_whole(self):
        message = {
            "update": [msgpack.ExtType(5, b"abc"), msgpack.ExtType(1, b"x" * 300), b"y" * 70000],
            "t": "world.update",
            "when": msgpack.ExtType(7, b"\x00" * 8),
        }
        body = msgpack.packb(message, use_bin_type=True)
        rest, update, end = self.split(body)
        self.assertEqual(msgpack.unpackb(update, raw=False), message["update"])
        self.assertEqual(
            msgpack.unpackb(rest, raw=False), {"t": "world.update", "when": message["when"]}
        )


class PureSplitTests(SplitTests, unittest.TestCase):
    split = staticmethod(lazy.pure_split_update)


class CompiledSplitTests(SplitTests, unittest.TestCase):
    def setUp(self):
        self.split = compiled_split()

    def test_the_bots_use_it(self):
        # Unless MMO_PURE_PYTHON=1 says the pure one, even where this one is built.
        pure = os.environ.get("MMO_PURE_PYTHON") == "1"
        self.assertIs(lazy.fast_split_update, lazy.pure_split_update if pure else self.split)


def push(seq: int, **fields) -> bytes:
    return codec.frame({"tick": seq, "enter": [], "update": [], "leave": [], **fields,
                        "t": "world.update", "seq": seq})  # fmt: skip


class FiredRequestTests(unittest.TestCase):
    """A bot's moves: fired, answered without a Deferred, counted exactly."""

    def setUp(self):
        self.clock = task.Clock()
        self.swarm = Swarm(self.clock, Options("127.0.0.1", 1, progress=None),
                           scenario.make("idle", {"request_timeout": 2.0}))  # fmt: skip
        self.tracker = ViewTracker("c-1", 0.0, 0.0)
        self.client = BotClient(self.tracker.feed, self.swarm.answered)
        self.transport = StringTransport()
        self.client.makeConnection(self.transport)
        self.transport.clear()

    def sent(self) -> list[dict]:
        data, frames = self.transport.value(), []
        while data:
            length = int.from_bytes(data[:4], "big")
            frames.append(codec.decode(data[4 : 4 + length]))
            data = data[4 + length :]
        self.transport.clear()
        return frames

    def test_replies_errors_and_timeouts_counted(self):
        for i in range(3):
            self.swarm.fire(self.client, "zone.move", seq=i, x=1.0, y=2.0)
        sent = self.sent()
        self.assertEqual([(m["t"], m["seq"]) for m in sent], [("zone.move", i) for i in range(3)])
        self.clock.advance(0.25)
        self.client.dataReceived(codec.frame({"t": "reply", "id": sent[0]["id"]}))
        # A push between the replies is read as ever.
        self.client.dataReceived(push(7, enter=[{"id": "n-1", "x": 1.0, "y": 1.0}]))
        self.client.dataReceived(
            codec.frame({"t": "error", "id": sent[1]["id"], "code": "not_allowed", "message": "no"})
        )
        self.clock.pump([0.5] * 6)
        # Answered after its timeout: it counted as one already.
        self.client.dataReceived(codec.frame({"t": "reply", "id": sent[2]["id"]}))
        stats = self.swarm.stats
        self.assertEqual(stats.latencies["zone.move"].count, 1)
        self.assertEqual(stats.latencies["zone.move"].max, 0.25)
        self.assertEqual(dict(stats.errors["zone.move"]), {"not_allowed": 1, "timeout": 1})
        self.assertEqual(stats.requests, 3)
        self.assertEqual((self.tracker.pushes, self.tracker.view, self.client.last_seq),
                         (1, {"n-1"}, 7))  # fmt: skip
        self.assertEqual(self.client._fired, {})
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_lost_connection_fails_them_closed(self):
        self.swarm.fire(self.client, "zone.move", seq=1, x=1.0, y=2.0)
        self.client.connectionLost()
        self.assertEqual(dict(self.swarm.stats.errors["zone.move"]), {"closed": 1})
        # The run's own goodbye at the end: not an error.
        client = BotClient(self.tracker.feed, self.swarm.answered)
        client.makeConnection(StringTransport())
        self.swarm.fire(client, "zone.move", seq=2, x=1.0, y=2.0)
        self.swarm.stopping = True
        client.connectionLost()
        self.assertEqual(dict(self.swarm.stats.errors["zone.move"]), {"closed": 1})
        self.clock.pump([0.5] * 6)
        self.assertEqual(self.swarm.stats.requests, 1)

    def test_what_cannot_go_now_goes_as_a_request(self):
        self.client._moving = True
        self.swarm.fire(self.client, "zone.move", seq=1, x=1.0, y=2.0)
        self.assertEqual(self.client._fired, {})
        self.assertEqual([kind for _, kind, _ in self.client._queued], ["zone.move"])
        self.clock.pump([0.5] * 6)
        self.assertEqual(dict(self.swarm.stats.errors["zone.move"]), {"timeout": 1})

    def test_what_cannot_be_encoded_counts_as_its_error(self):
        self.swarm.fire(self.client, "zone.move", seq=1, x=object(), y=2.0)
        self.assertEqual(dict(self.swarm.stats.errors["zone.move"]), {"TypeError": 1})
        self.assertEqual(self.client._fired, {})
        self.assertEqual(self.transport.value(), b"")
