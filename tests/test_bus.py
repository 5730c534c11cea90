"""
Tests for L{mmo.bus}: one suite (L{BusTests}) run against the in-process bus
on a deterministic clock and against the Redis bus on a private
redis-server in real time; then what only Redis has (reconnection, pings,
an unreachable server), the directory service and L{least_loaded}.
"""

from __future__ import annotations

import os
import signal

from twisted.internet import defer, reactor, task
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial import unittest

import mmo
from mmo import config
from mmo.bus import PUT_MANY_CHUNK, BusError, IBus, make_bus
from mmo.bus.directory import DirectoryService, least_loaded
from mmo.bus.memory import MemoryBus
from mmo.config import ConfigError
from tests.redis import (
    ExtraArgsRedis,
    SentinelServer,
    free_port,
    make_tls_files,
    redis_config_text,
    start_redis,
)
from tests.support import LogCapture, bounded, sleep, until, write_config

ONE_PROCESS = """
[processes.mmo]
kind = "mmo"
client = "tcp:0:interface=127.0.0.1"
"""

TWO_PROCESSES = """
[processes.zone-1]
kind = "zone"

[processes.zone-2]
kind = "zone"
"""


def load(testcase, text: str) -> config.Config:
    return config.load(write_config(testcase, text))


class Boom(Exception):
    """What a misbehaving subscriber raises."""


class Runs:
    """
    A subscriber that takes runs of messages (L{mmo.bus.memory.deliver_run}):
    notes each message's C{n} in C{seen} with its channel, and each call's.
    """

    def __init__(self, seen: list, channel: str):
        self.seen = seen
        self.channel = channel
        self.calls = []

    def __call__(self, message):
        self.run([message])

    def run(self, messages):
        self.seen.extend((self.channel, m["n"]) for m in messages)
        self.calls.append([m["n"] for m in messages])


class BusTests:
    """
    The contract of L{IBus}, for every backend.  A subclass provides:

      - L{make_bus}: a started bus, stopped after the test;
      - L{peer}: the bus of another process of the same deployment (the
        same object for the in-process bus);
      - L{pass_time}: let C{seconds} go by;
      - L{until}: let the reactor run until a predicate holds.
    """

    async def make_bus(self):
        raise NotImplementedError()

    async def peer(self, bus):
        raise NotImplementedError()

    async def pass_time(self, seconds: float):
        raise NotImplementedError()

    async def until(self, predicate):
        raise NotImplementedError()

    # -- publish / subscribe -----------------------------------------------------------

    async def test_provides(self):
        bus = await self.make_bus()
        self.assertTrue(IBus.providedBy(bus))

    async def test_publish_order_and_fan_out(self):
        """Every subscriber, in any process, gets every message, in order."""
        bus = await self.make_bus()
        other = await self.peer(bus)
        first, second, elsewhere = [], [], []
        # Concurrently: the second waits for the first's SUBSCRIBE.
        await defer.gatherResults(
            [bus.subscribe("chat", first.append), bus.subscribe("chat", second.append)]
        )
        await other.subscribe("chat", elsewhere.append)
        await bus.subscribe("other", lambda m: self.fail(f"wrong channel: {m}"))
        sent = [{"n": n, "text": f"message {n}", "blob": bytes([n, 0, 255])} for n in range(30)]
        await defer.gatherResults([other.publish("chat", m) for m in sent])
        await self.until(lambda: len(first) == len(second) == len(elsewhere) == len(sent))
        self.assertEqual(first, sent)
        self.assertEqual(second, sent)
        self.assertEqual(elsewhere, sent)
        # Each subscriber has its own copy.
        self.assertIsNot(first[0], second[0])
        first[0]["n"] = "changed"
        self.assertEqual(second[0]["n"], 0)

    async def test_only_from_now_on(self):
        """A subscriber gets nothing published before it subscribed."""
        bus = await self.make_bus()
        received = []
        await bus.publish("news", {"n": 1})
        await self.pass_time(0.05)
        await bus.subscribe("news", received.append)
        await bus.publish("news", {"n": 2})
        await self.until(lambda: received)
        await self.pass_time(0.05)
        self.assertEqual(received, [{"n": 2}])

    async def test_cancel(self):
        bus = await self.make_bus()
        other = await self.peer(bus)
        kept, cancelled = [], []
        await bus.subscribe("chat", kept.append)
        subscription = await bus.subscribe("chat", cancelled.append)
        await subscription.cancel()
        await subscription.cancel()  # idempotent
        await other.publish("chat", {"n": 1})
        await self.until(lambda: kept)
        self.assertEqual(cancelled, [])

        # The last subscriber gone, the channel can be subscribed again.
        only = await bus.subscribe("solo", cancelled.append)
        await only.cancel()
        await other.publish("solo", {"n": 2})
        await self.pass_time(0.05)
        again = []
        await bus.subscribe("solo", again.append)
        await other.publish("solo", {"n": 3})
        await self.until(lambda: again)
        self.assertEqual(again, [{"n": 3}])
        self.assertEqual(cancelled, [])

    async def test_raising_subscriber(self):
        """A subscriber that raises is logged; the others still get every message."""
        bus = await self.make_bus()
        received = []

        def bad(message):
            raise Boom(message["n"])

        await bus.subscribe("chat", bad)
        await bus.subscribe("chat", received.append)
        for n in range(3):
            await bus.publish("chat", {"n": n})
        await self.until(lambda: len(received) == 3)
        self.assertEqual([m["n"] for m in received], [0, 1, 2])
        self.assertEqual(len(self.flushLoggedErrors(Boom)), 3)

    async def test_async_subscriber(self):
        """Coroutine callbacks are run; their failures are logged too."""
        bus = await self.make_bus()
        received = []

        async def callback(message):
            received.append(message)
            raise Boom()

        await bus.subscribe("chat", callback)
        await bus.publish("chat", {"n": 1})
        await self.until(lambda: received)
        self.assertEqual(len(self.flushLoggedErrors(Boom)), 1)

    async def test_runs(self):
        """
        A subscriber with a C{run} method may be given consecutive messages
        of its channel in one call: every message once, in publication
        order, with nothing of another channel delivered inside a run.
        """
        bus = await self.make_bus()
        other = await self.peer(bus)
        seen = []
        runs = Runs(seen, "chat")
        await bus.subscribe("chat", runs)
        await bus.subscribe("news", lambda m: seen.append(("news", m["n"])))
        sent = [("chat", n) for n in range(10)] + [("news", 10)]
        sent += [("chat", n) for n in range(11, 20)]
        await defer.gatherResults([other.publish(channel, {"n": n}) for channel, n in sent])
        await self.until(lambda: len(seen) == len(sent))
        self.assertEqual(seen, sent)
        self.assertEqual(sum(runs.calls, []), [n for channel, n in sent if channel == "chat"])
        self.assertTrue(all(10 not in run and len(run) > 0 for run in runs.calls))

    async def test_not_msgpack(self):
        """Values msgpack cannot encode fail with TypeError, in every backend."""
        bus = await self.make_bus()
        with self.assertRaises(TypeError):
            await bus.publish("chat", {"when": object()})
        with self.assertRaises(TypeError):
            await bus.put("key", {1, 2})
        with self.assertRaises(TypeError):
            await bus.announce("zone-1", {"kind": "zone", "x": object()}, 5)

    # -- directory -------------------------------------------------------------------

    async def test_directory(self):
        bus = await self.make_bus()
        other = await self.peer(bus)
        zone = {"kind": "zone", "realm": "eu", "addresses": ["127.0.0.1:7001"], "load": 3}
        gateway = {"kind": "gateway", "realm": "eu", "host": "gw.example", "port": 7000}
        await bus.announce("zone-1", zone, 30)
        await other.announce("gateway-1", gateway, 30)
        self.assertEqual(await other.services(), {"zone-1": zone, "gateway-1": gateway})
        self.assertEqual(await bus.services("zone"), {"zone-1": zone})
        self.assertEqual(await bus.services("lobby"), {})
        # A new announcement replaces the entry.
        await bus.announce("zone-1", dict(zone, load=7), 30)
        self.assertEqual((await other.services("zone"))["zone-1"]["load"], 7)
        await other.withdraw("zone-1")
        await other.withdraw("zone-1")  # idempotent
        self.assertEqual(await bus.services(), {"gateway-1": gateway})

    async def test_directory_expiry(self):
        """An entry not announced again within its ttl leaves the directory."""
        bus = await self.make_bus()
        await bus.announce("zone-1", {"kind": "zone", "load": 0}, 0.3)
        await bus.announce("zone-2", {"kind": "zone", "load": 0}, 30)
        self.assertEqual(sorted(await bus.services()), ["zone-1", "zone-2"])
        await self.pass_time(0.45)
        self.assertEqual(sorted(await bus.services()), ["zone-2"])
        self.assertEqual(sorted(await bus.services("zone")), ["zone-2"])

    async def test_directory_service(self):
        """The heartbeat keeps the entry alive, following the info; stop withdraws it."""
        bus = await self.make_bus()
        load = [0]

        def info():
            load[0] += 1
            return {"kind": "gateway", "realm": "eu", "load": load[0]}

        service = DirectoryService(bus, "gateway-1", info, 0.1, 0.3, reactor=self.reactor)
        service.startService()
        self.assertTrue(service.running)
        for _ in range(6):
            await self.pass_time(0.1)
        entry = (await bus.services("gateway"))["gateway-1"]
        self.assertGreater(entry["load"], 2)
        self.assertGreater(service.announced, 2)
        # Every entry says which process it is and how much memory it holds.
        self.assertEqual((entry["pid"], entry["version"]), (os.getpid(), mmo.__version__))
        self.assertGreater(entry["rss"], 1 << 20)
        await service.stopService()
        self.assertEqual(await bus.services(), {})
        # Stopped means stopped: nothing comes back.
        await self.pass_time(0.25)
        self.assertEqual(await bus.services(), {})

    # -- counters --------------------------------------------------------------------

    async def test_hit(self):
        bus = await self.make_bus()
        other = await self.peer(bus)
        self.assertEqual(await bus.count("login:1.2.3.4"), 0)
        self.assertEqual(await bus.hit("login:1.2.3.4", 0.3), 1)
        self.assertEqual(await other.hit("login:1.2.3.4", 0.3), 2)
        self.assertEqual(await bus.hit("login:1.2.3.4", 0.3), 3)
        self.assertEqual(await other.count("login:1.2.3.4"), 3)
        self.assertEqual(await bus.count("login:5.6.7.8"), 0)
        # The window runs from the first hit, not the last.
        await self.pass_time(0.45)
        self.assertEqual(await bus.count("login:1.2.3.4"), 0)
        self.assertEqual(await bus.hit("login:1.2.3.4", 30), 1)
        await bus.clear("login:1.2.3.4")
        self.assertEqual(await bus.count("login:1.2.3.4"), 0)

    async def test_hit_concurrent(self):
        """Concurrent hits from two processes are all counted, each number once."""
        bus = await self.make_bus()
        other = await self.peer(bus)
        counts = await defer.gatherResults(
            [b.hit("k", 30) for _ in range(15) for b in (bus, other)]
        )
        self.assertEqual(sorted(counts), list(range(1, 31)))

    # -- claims ------------------------------------------------------------------------

    async def test_claim_once(self):
        """Among many concurrent claimers in two processes, exactly one wins."""
        bus = await self.make_bus()
        other = await self.peer(bus)
        results = await defer.gatherResults(
            [b.claim("ticket:abc", 0.3) for _ in range(10) for b in (bus, other)]
        )
        self.assertEqual(results.count(True), 1)
        self.assertFalse(await other.claim("ticket:abc", 0.3))
        self.assertTrue(await bus.claim("ticket:other", 0.3))
        await self.pass_time(0.45)
        results = await defer.gatherResults(
            [b.claim("ticket:abc", 30) for _ in range(5) for b in (bus, other)]
        )
        self.assertEqual(results.count(True), 1)

    # -- values --------------------------------------------------------------------------

    async def test_put_get(self):
        bus = await self.make_bus()
        other = await self.peer(bus)
        self.assertIsNone(await bus.get("missing"))
        value = {"account": "a1", "seq": 49, "blob": b"\x00\xff\xc1", "list": [1, "2", 3.5]}
        await bus.put("session:a1", value)
        got = await other.get("session:a1")
        self.assertEqual(got, value)
        # Copies both ways.
        value["seq"] = 50
        got["seq"] = 51
        self.assertEqual((await bus.get("session:a1"))["seq"], 49)
        # Values txredisapi would otherwise mangle (numbers, text, bytes).
        for tricky in [49, "1234", "12.5", -1, 0, "", b"", b"1", "ü", None, True, [], 1.5]:
            await bus.put("tricky", tricky)
            self.assertEqual(await other.get("tricky"), tricky, repr(tricky))
        await other.clear("session:a1")
        self.assertIsNone(await bus.get("session:a1"))

    async def test_put_ttl(self):
        bus = await self.make_bus()
        await bus.put("revoked:a1", 1700000000.5, ttl=0.3)
        await bus.put("forever", "x")
        self.assertEqual(await bus.get("revoked:a1"), 1700000000.5)
        await self.pass_time(0.45)
        self.assertIsNone(await bus.get("revoked:a1"))
        self.assertEqual(await bus.get("forever"), "x")
        # A new put without ttl keeps it.
        await bus.put("revoked:a1", 2, ttl=0.3)
        await bus.put("revoked:a1", 3)
        await self.pass_time(0.45)
        self.assertEqual(await bus.get("revoked:a1"), 3)

    async def test_put_many(self):
        """
        put_many stores every item as put would, with one ttl for all, in
        chunks: more items than one chunk carries all arrive.
        """
        bus = await self.make_bus()
        other = await self.peer(bus)
        count = PUT_MANY_CHUNK * 2 + 3
        await bus.put("kept", "x")
        await bus.put_many(
            [
                (f"online:{i}", {"gateway": "g1", "session": i, "blob": b"\x00\xc1"})
                for i in range(count)
            ]
            + [("token", "g1")],
            ttl=0.3,
        )
        for i in (0, PUT_MANY_CHUNK, count - 1):
            self.assertEqual(
                await other.get(f"online:{i}"), {"gateway": "g1", "session": i, "blob": b"\x00\xc1"}
            )
        self.assertEqual(await other.get("token"), "g1")
        await bus.put_many([("forever", 49)])
        await bus.put_many([])
        await self.pass_time(0.45)
        self.assertIsNone(await bus.get("online:0"))
        self.assertIsNone(await bus.get(f"online:{count - 1}"))
        self.assertIsNone(await bus.get("token"))
        self.assertEqual(await bus.get("forever"), 49)
        self.assertEqual(await bus.get("kept"), "x")

    async def test_put_many_unpackable(self):
        """A value msgpack cannot carry fails the call and stores nothing."""
        bus = await self.make_bus()
        with self.assertRaises(TypeError):
            await bus.put_many([("a", 1), ("b", object())])
        self.assertIsNone(await bus.get("a"))

    async def test_clear(self):
        """clear forgets the count, the claim and the value of a key."""
        bus = await self.make_bus()
        await bus.hit("k", 30)
        await bus.put("k", "v")
        self.assertTrue(await bus.claim("k", 30))
        await bus.clear("k")
        self.assertEqual(await bus.count("k"), 0)
        self.assertIsNone(await bus.get("k"))
        self.assertTrue(await bus.claim("k", 30))
        await bus.clear("never-set")

    # -- leases ----------------------------------------------------------------------------

    async def test_lease_one_holder(self):
        """Among holders in two processes one gets the lease; a renewal keeps its token."""
        bus = await self.make_bus()
        other = await self.peer(bus)
        tokens = await defer.gatherResults(
            [b.lease("job:daily", f"p{n}-{i}", 0.4) for n, b in enumerate((bus, other))
             for i in range(5)]
        )  # fmt: skip
        won = [t for t in tokens if t is not None]
        self.assertEqual(len(won), 1)
        holder = await other.lease_holder("job:daily")
        self.assertEqual(holder[1], won[0])
        self.assertEqual(await bus.lease("job:daily", holder[0], 0.4), won[0])
        self.assertIsNone(await other.lease("job:daily", "someone else", 0.4))
        self.assertIsNone(await bus.lease_holder("job:other"))

    async def test_lease_token_grows(self):
        """Every new holding (after expiry or release) has a higher token."""
        bus = await self.make_bus()
        other = await self.peer(bus)
        first = await bus.lease("job:j", "a", 0.6)
        await self.pass_time(0.3)
        self.assertEqual(await bus.lease("job:j", "a", 0.6), first)
        await self.pass_time(0.3)
        # Renewed 0.3 s ago for 0.6 s: still a's.
        self.assertIsNone(await other.lease("job:j", "b", 0.6))
        await self.pass_time(0.8)
        second = await other.lease("job:j", "b", 0.3)
        self.assertGreater(second, first)
        self.assertFalse(await bus.release_lease("job:j", "a"))
        self.assertTrue(await other.release_lease("job:j", "b"))
        self.assertIsNone(await bus.lease_holder("job:j"))
        third = await bus.lease("job:j", "a", 0.3)
        self.assertGreater(third, second)
        # The same holder taking it again after losing it gets a new token too.
        await self.pass_time(0.4)
        self.assertGreater(await bus.lease("job:j", "a", 0.3), third)

    async def test_lease_not_cleared(self):
        """clear() of the same key touches neither the lease nor its tokens."""
        bus = await self.make_bus()
        token = await bus.lease("k", "a", 30)
        await bus.clear("k")
        self.assertEqual(await bus.lease_holder("k"), ("a", token))


class MemoryBusTests(BusTests, unittest.TestCase):
    """The suite on L{MemoryBus}, with time on a L{task.Clock}."""

    def setUp(self):
        self.reactor = self.clock = task.Clock()

    async def make_bus(self):
        bus = MemoryBus(reactor=self.clock)
        await bus.start()
        self.addCleanup(bus.stop)
        return bus

    async def peer(self, bus):
        return bus

    async def pass_time(self, seconds):
        self.clock.advance(seconds)

    async def until(self, predicate):
        for _ in range(10):
            if predicate():
                return
            self.clock.advance(0)
        raise AssertionError(f"gave up waiting for {predicate}")

    def test_stop_drops_undelivered(self):
        """Stopping cancels the pending delivery: no call is left on the clock."""
        bus = MemoryBus(reactor=self.clock)
        received = []
        bus.subscribe("chat", received.append)
        bus.publish("chat", {"n": 1})
        self.assertEqual(received, [])
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        bus.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(1)
        self.assertEqual(received, [])

    def test_publish_from_subscriber(self):
        """A message published by a subscriber comes after the current one, for all."""
        bus = MemoryBus(reactor=self.clock)
        first, second = [], []

        def echo(message):
            first.append(message["n"])
            if message["n"] == 0:
                bus.publish("chat", {"n": 2})

        bus.subscribe("chat", echo)
        bus.subscribe("chat", lambda m: second.append(m["n"]))
        bus.publish("chat", {"n": 0})
        bus.publish("chat", {"n": 1})
        self.clock.advance(0)
        self.clock.advance(0)
        self.assertEqual(first, [0, 1, 2])
        self.assertEqual(second, [0, 1, 2])

    def test_runs_cut(self):
        """
        A run is what the subscriber of a channel gets with nothing between:
        a message to anyone else cuts it, a channel of two subscribers
        gives each its messages one at a time, and a subscriber without
        C{run} gets every message by itself.
        """
        bus = MemoryBus(reactor=self.clock)
        seen = []
        chat, shared, plain = Runs(seen, "chat"), Runs(seen, "shared"), []
        bus.subscribe("chat", chat)
        bus.subscribe("shared", shared)
        bus.subscribe("shared", lambda m: seen.append(("also", m["n"])))
        bus.subscribe("plain", plain.append)
        for channel, n in [("chat", 0), ("chat", 1), ("shared", 2), ("shared", 3)]:
            bus.publish(channel, {"n": n})
        for n in range(4, 7):
            bus.publish("chat", {"n": n})
        bus.publish("plain", {"n": 7})
        bus.publish("plain", {"n": 8})
        self.clock.advance(0)
        self.assertEqual(chat.calls, [[0, 1], [4, 5, 6]])
        self.assertEqual(shared.calls, [[2], [3]])
        self.assertEqual(
            seen,
            [("chat", 0), ("chat", 1), ("shared", 2), ("also", 2), ("shared", 3), ("also", 3)]
            + [("chat", n) for n in range(4, 7)],
        )
        self.assertEqual(plain, [{"n": 7}, {"n": 8}])

    def test_run_failing(self):
        """A run whose subscriber raises is logged, as a message's; the next is delivered."""
        bus = MemoryBus(reactor=self.clock)

        class Failing:
            def __init__(self):
                self.calls = []

            def __call__(self, message):
                self.calls.append([message])

            def run(self, messages):
                self.calls.append(messages)
                raise Boom()

        failing = Failing()
        bus.subscribe("chat", failing)
        bus.publish("chat", {"n": 0})
        bus.publish("chat", {"n": 1})
        self.clock.advance(0)
        bus.publish("chat", {"n": 2})
        self.clock.advance(0)
        self.assertEqual(failing.calls, [[{"n": 0}, {"n": 1}], [{"n": 2}]])
        self.assertEqual(len(self.flushLoggedErrors(Boom)), 1)

    def test_sweep(self):
        """Expired entries nobody reads again are swept, so memory stays bounded."""
        bus = MemoryBus(reactor=self.clock)
        for n in range(100):
            bus.hit(f"ip:{n}", 1)
            bus.claim(f"ticket:{n}", 1)
            bus.put(f"v:{n}", n, ttl=1)
            bus.announce(f"zone-{n}", {}, 1)
        self.clock.advance(120)
        bus.hit("trigger", 1)
        self.assertEqual(list(bus._counts), ["trigger"])
        self.assertEqual((bus._claims, bus._values, bus._directory), ({}, {}, {}))


class RedisBusTests(BusTests, unittest.TestCase):
    """The suite on L{RedisBus} with a private redis-server, in real time."""

    timeout = 60

    def setUp(self):
        self.reactor = reactor
        self.server = start_redis(self)
        self.config = self.redis_config()
        self.logs = LogCapture(self)

    def redis_config(self, prefix="test", timeout=3.0):
        text = redis_config_text(self.server, prefix=prefix)
        return load(
            self,
            f'{text}connect_timeout = {timeout}\n[bus]\nbackend = "redis"\n{TWO_PROCESSES}',
        )

    async def make_bus(self, conf=None, **kwargs):
        from mmo.bus.redis import RedisBus

        bus = RedisBus(conf or self.config, reactor=reactor, **kwargs)
        await bounded(bus.start())
        self.addCleanup(bus.stop)
        return bus

    async def peer(self, bus):
        return await self.make_bus()

    def pass_time(self, seconds):
        return sleep(seconds)

    def until(self, predicate):
        return until(predicate)

    async def test_lease_tokens_across_restarts(self):
        """A new connection (a restarted holder) numbers its holdings on, above the last."""
        bus = await self.make_bus()
        first = await bus.lease("job:j", "a", 30)
        await bus.stop()
        again = await self.make_bus()
        self.assertEqual(await again.lease_holder("job:j"), ("a", first))
        self.assertTrue(await again.release_lease("job:j", "a"))
        self.assertGreater(await again.lease("job:j", "a", 30), first)

    async def test_make_bus(self):
        """make_bus gives a RedisBus for backend = "redis", even for several processes."""
        from mmo.bus.redis import RedisBus

        self.assertIsInstance(make_bus(self.config, reactor=reactor), RedisBus)

    async def test_keys(self):
        """Everything lives under PREFIX:bus:; deployments with other prefixes are apart."""
        bus = await self.make_bus()
        other = await self.make_bus(self.redis_config(prefix="elsewhere"))
        await bus.put("k", 1)
        await bus.hit("k", 30)
        await bus.claim("k", 30)
        await bus.announce("zone-1", {"kind": "zone"}, 30)
        self.assertIsNone(await other.get("k"))
        self.assertEqual(await other.services(), {})
        keys = await bus._conn.keys("*")
        self.assertEqual(
            sorted(keys),
            [
                b"test:bus:c:k",
                b"test:bus:dir",
                b"test:bus:dir:exp",
                b"test:bus:n:k",
                b"test:bus:v:k",
            ],
        )
        # The directory's keys expire too, should every process go away.
        ttl = await bus._conn.execute_command("PTTL", "test:bus:dir")
        self.assertTrue(0 < ttl <= 30000, ttl)
        received = []
        await other.subscribe("chat", received.append)
        await bus.publish("chat", {"n": 1})
        await self.pass_time(0.1)
        self.assertEqual(received, [])

    async def test_resubscribe_after_restart(self):
        """
        Killed and restarted on the same port, Redis gets every channel
        subscribed again, and messages published after the restart arrive.
        """
        bus = await self.make_bus()
        other = await self.peer(bus)
        received, news = [], []
        await bus.subscribe("chat", received.append)
        await bus.subscribe("news", news.append)
        await other.publish("chat", {"n": 1})
        await self.until(lambda: received)

        self.server.kill()
        await self.until(lambda: not bus.subscriber_connected)
        self.server.start()
        await bounded(bus.subscriber_ready())
        self.assertTrue(bus.subscriber_connected)
        # The command connection of the other process reconnects by itself;
        # its publication waits for it.
        await bounded(other.publish("chat", {"n": 2}))
        await bounded(other.publish("news", {"n": 3}))
        await self.until(lambda: len(received) == 2 and news)
        self.assertEqual(received, [{"n": 1}, {"n": 2}])
        self.assertEqual(news, [{"n": 3}])
        # Subscriptions made after the restart work as well.
        later = []
        await bus.subscribe("later", later.append)
        await other.publish("later", {"n": 4})
        await self.until(lambda: later)

    async def test_lease_tokens_rise_after_data_loss(self):
        """
        A Redis that lost its data (restarted, keeping nothing) still gives
        a lease a token above every one it gave before.
        """
        bus = await self.make_bus()
        before = await bus.lease("job:j", "a", 30)
        await bus.release_lease("job:j", "a")
        self.assertGreater(await bus.lease("job:j", "b", 30), before)
        self.server.kill()
        await self.until(lambda: not bus.subscriber_connected)
        self.server.start()
        await bounded(bus.subscriber_ready())
        after = await bounded(bus.lease("job:j", "c", 30))
        self.assertGreater(after, before + 1)

    async def test_subscribe_while_disconnected(self):
        """A subscription made while Redis is down is active once it is back."""
        bus = await self.make_bus()
        other = await self.peer(bus)
        self.server.kill()
        await self.until(lambda: not bus.subscriber_connected)
        received = []
        subscribing = bus.subscribe("chat", received.append)
        self.server.start()
        subscription = await bounded(subscribing)
        await bounded(other.publish("chat", {"n": 1}))
        await self.until(lambda: received)
        await subscription.cancel()

    async def test_ping_detects_dead_link(self):
        """
        A server that stops answering (SIGSTOP: the connection stays open) is
        noticed by the ping; once it answers again, subscriptions are back.
        """
        bus = await self.make_bus(self.redis_config(timeout=0.5), ping_interval=0.1)
        other = await self.peer(bus)
        received = []
        await bus.subscribe("chat", received.append)
        self.server.process.send_signal(signal.SIGSTOP)
        self.addCleanup(self.server.process.send_signal, signal.SIGCONT)
        await self.until(lambda: not bus.subscriber_connected)
        self.assertTrue(self.logs.matching("PING"), self.logs.lines)
        self.server.process.send_signal(signal.SIGCONT)
        await bounded(bus.subscriber_ready())
        await bounded(other.publish("chat", {"n": 1}))
        await self.until(lambda: received)

    async def test_unreachable(self):
        """start() fails within connect_timeout with a BusError naming host:port and why."""
        from mmo.bus.redis import BusError, RedisBus

        port = free_port()
        conf = load(
            self,
            f'[redis]\nhost = "127.0.0.1"\nport = {port}\nconnect_timeout = 0.5\n'
            f'[bus]\nbackend = "redis"\n{TWO_PROCESSES}',
        )
        bus = RedisBus(conf, reactor=reactor)
        started = reactor.seconds()
        with self.assertRaises(BusError) as caught:
            await bounded(bus.start())
        self.assertLess(reactor.seconds() - started, 3)
        message = str(caught.exception)
        self.assertIn(f"127.0.0.1:{port}", message)
        self.assertIn("refused", message.lower())
        # Not started: commands fail at once.
        with self.assertRaises(BusError):
            await bus.publish("chat", {})

    async def test_wrong_password(self):
        """A server that refuses the password fails the start, saying so."""
        self.server.stop()
        self.server.password = "right"
        self.server.start()
        conf = load(
            self,
            redis_config_text(self.server).replace('"right"', '"wrong"')
            + f'connect_timeout = 1.0\n[bus]\nbackend = "redis"\n{TWO_PROCESSES}',
        )
        self.assertIn(f"127.0.0.1:{self.server.port}", await self.start_error(conf))

    async def test_password(self):
        """With the right password both connections work."""
        self.server.stop()
        self.server.password = "s3cret"
        self.server.start()
        bus = await self.make_bus(self.redis_config())
        received = []
        await bus.subscribe("chat", received.append)
        await bus.publish("chat", {"n": 1})
        await self.until(lambda: received)

    async def start_error(self, conf) -> str:
        """The message of the L{BusError} that starting a bus on C{conf} fails with."""
        from mmo.bus.redis import BusError, RedisBus

        with self.assertRaises(BusError) as caught:
            await bounded(RedisBus(conf, reactor=reactor).start())
        return str(caught.exception)

    async def assertBothConnectionsWork(self, conf):
        """A bus on C{conf} subscribes, publishes and receives; a bus on the usual config too."""
        bus = await self.make_bus(conf)
        plain = await self.make_bus(self.redis_config(prefix=conf.redis.prefix))
        received = []
        await bus.subscribe("chat", received.append)
        await bus.publish("chat", {"n": 1})
        await bounded(plain.publish("chat", {"n": 2}))
        await self.until(lambda: len(received) == 2)
        self.assertEqual(received, [{"n": 1}, {"n": 2}])

    async def test_password_file(self):
        """The password comes from password_file; an unreadable one fails the start."""
        self.server.stop()
        self.server.password = "s3cret"
        self.server.start()
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        path = os.path.join(directory, "password")
        with open(path, "w") as f:
            f.write("s3cret\n")
        text = redis_config_text(self.server).replace('password = "s3cret"', "")
        tail = f'[bus]\nbackend = "redis"\n{TWO_PROCESSES}'
        await self.assertBothConnectionsWork(load(self, f'{text}password_file = "{path}"\n{tail}'))
        conf = load(self, f'{text}password_file = "{path}.missing"\n{tail}')
        self.assertIn(f"{path}.missing", await self.start_error(conf))

    async def test_unix_socket(self):
        server = ExtraArgsRedis(self, ["--unixsocket", "SOCKET", "--unixsocketperm", "700"])
        self.server = server
        conf = load(
            self,
            f'[redis]\nunix = "{server.socket}"\nprefix = "test"\n'
            f'[bus]\nbackend = "redis"\n{TWO_PROCESSES}',
        )
        await self.assertBothConnectionsWork(conf)

    async def test_tls(self):
        """
        With tls both connections check the server's certificate against
        tls_ca; a server the CA did not sign is not talked to.
        """
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        ca, other_ca = make_tls_files(directory)
        tls_port = free_port()
        self.server = ExtraArgsRedis(
            self,
            [
                "--tls-port", str(tls_port),
                "--tls-cert-file", os.path.join(directory, "server.crt"),
                "--tls-key-file", os.path.join(directory, "server.key"),
                "--tls-auth-clients", "no",
            ],
        )  # fmt: skip
        text = f'[redis]\nport = {tls_port}\ntls = true\nprefix = "test"\n'
        tail = f'[bus]\nbackend = "redis"\n{TWO_PROCESSES}'
        await self.assertBothConnectionsWork(load(self, f'{text}tls_ca = "{ca}"\n{tail}'))
        conf = load(self, f'{text}tls_ca = "{other_ca}"\nconnect_timeout = 0.5\n{tail}')
        error = await self.start_error(conf)
        self.assertIn(f"127.0.0.1:{tls_port}", error)
        self.assertIn("certificate verify failed", error)

    async def test_sentinel(self):
        """With sentinels, both connections go to the master the Sentinels name."""
        sentinel = SentinelServer(self, self.server)
        text = redis_config_text(self.server).replace(f"port = {self.server.port}", "port = 1")
        conf = load(
            self,
            f'{text}sentinels = ["127.0.0.1:{sentinel.port}"]\nsentinel_master = "mmo-master"\n'
            f'[bus]\nbackend = "redis"\n{TWO_PROCESSES}',
        )
        await self.assertBothConnectionsWork(conf)


class SubscriberPingTests(unittest.TestCase):
    """The subscriber link's ping, on a clock, with a link that is only slow."""

    class Link:
        connected = True
        reads = 0

        def __init__(self):
            self.transport = self
            self.pings: list[defer.Deferred] = []
            self.aborted = 0

        def ping(self):
            self.pings.append(defer.Deferred())
            return self.pings[-1]

        def abortConnection(self):
            self.aborted += 1

    def setUp(self):
        from mmo.bus.redis import RedisBus

        self.clock = task.Clock()
        text = f'[redis]\nconnect_timeout = 5.0\n[bus]\nbackend = "redis"\n{TWO_PROCESSES}'
        conf = load(self, text)
        self.bus = RedisBus(conf, reactor=self.clock, ping_interval=1.0)
        self.link = self.bus._link = self.Link()

    def test_busy_link_is_kept(self):
        """
        Messages queued ahead of the PONG delay it past the timeout: the link
        is alive and busy, and dropping it would lose those messages.
        """
        self.bus._ping()
        self.clock.advance(3)
        self.link.reads += 1
        self.clock.advance(3)
        self.assertEqual(self.link.aborted, 0)

    def test_silent_link_is_dropped(self):
        """Nothing at all within the timeout: the link is dropped and made again."""
        self.link.reads = 7
        self.bus._ping()
        self.clock.advance(6)
        self.assertEqual(self.link.aborted, 1)


class MakeBusTests(unittest.TestCase):
    def test_memory_for_one_process(self):
        bus = make_bus(load(self, ONE_PROCESS), reactor=task.Clock())
        self.assertIsInstance(bus, MemoryBus)

    def test_memory_refused_for_several_processes(self):
        """Several processes cannot share an in-process bus: ConfigError on bus.backend."""
        conf = load(self, TWO_PROCESSES)
        with self.assertRaises(ConfigError) as caught:
            make_bus(conf, reactor=task.Clock())
        self.assertEqual(caught.exception.path, ("bus", "backend"))
        self.assertIn("bus.backend", str(caught.exception))
        self.assertIn("redis", str(caught.exception))


class DirectoryServiceTests(unittest.TestCase):
    """L{DirectoryService} on a clock, with announcements that fail."""

    def setUp(self):
        self.clock = task.Clock()
        self.bus = MemoryBus(reactor=self.clock)

    def test_failed_announce_retried(self):
        """A failing announcement is logged and tried again at the next tick."""
        calls = []
        real = self.bus.announce

        def flaky(name, info, ttl):
            calls.append(name)
            if len(calls) <= 2:
                return defer.fail(Boom("redis down"))
            return real(name, info, ttl)

        self.bus.announce = flaky
        service = DirectoryService(self.bus, "zone-1", lambda: {"kind": "zone"}, 1, 3, self.clock)
        service.startService()
        self.clock.advance(1)
        self.assertEqual(len(calls), 2)
        self.assertEqual(self.successResultOf(self.bus.services()), {})
        # Logged with its traceback once, then in one line a tick.
        self.assertEqual(len(self.flushLoggedErrors(Boom)), 1)
        self.assertEqual(service.failures, 2)
        self.clock.advance(1)
        self.assertIn("zone-1", self.successResultOf(self.bus.services()))
        self.assertEqual((service.announced, service.failures), (1, 0))
        self.successResultOf(service.stopService())

    def test_bus_down_is_a_warning(self):
        """
        An announcement or withdrawal the bus cannot make (BusError: Redis
        down) is one warning line, not a traceback.
        """
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        down = BusError("announce 'zone-1': Redis at redis.lan:7380 did not answer within 5s")
        self.bus.announce = lambda name, info, ttl: defer.fail(down)
        self.bus.withdraw = lambda name: defer.fail(down)
        service = DirectoryService(self.bus, "zone-1", lambda: {"kind": "zone"}, 1, 3, self.clock)
        service.startService()
        self.clock.advance(1)
        self.successResultOf(service.stopService())
        self.assertEqual(service.failures, 2)
        levels = [e["log_level"] for e in events if "7380" in formatEvent(e)]
        self.assertEqual(levels, [LogLevel.warn] * 3)

    def test_info_callable_raises(self):
        """Even a broken info callable does not stop the heartbeat."""
        broken = [True]

        def info():
            if broken[0]:
                raise Boom()
            return {"kind": "zone"}

        service = DirectoryService(self.bus, "zone-1", info, 1, 3, self.clock)
        service.startService()
        self.clock.advance(1)
        broken[0] = False
        self.clock.advance(1)
        self.assertIn("zone-1", self.successResultOf(self.bus.services()))
        self.flushLoggedErrors(Boom)
        self.successResultOf(service.stopService())

    def test_slow_announce(self):
        """
        An announcement still in flight is not repeated, and stop withdraws
        only after it, so the entry cannot come back after the withdrawal.
        """
        pending = []
        self.bus.announce = lambda name, info, ttl: pending.append(defer.Deferred()) or pending[-1]
        withdrawn = []
        self.bus.withdraw = lambda name: withdrawn.append(name) or defer.succeed(None)
        service = DirectoryService(self.bus, "zone-1", lambda: {}, 1, 3, self.clock)
        service.startService()
        self.clock.advance(5)
        self.assertEqual(len(pending), 1)
        stopped = service.stopService()
        self.assertNoResult(stopped)
        self.assertEqual(withdrawn, [])
        pending[0].callback(None)
        self.successResultOf(stopped)
        self.assertEqual(withdrawn, ["zone-1"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_announcing(self):
        """
        announcing() fires once the announcement in flight is over, sent
        or failed, and at once when none is; the announcement's own
        callbacks still see its result.
        """
        pending = []
        self.bus.announce = lambda name, info, ttl: pending.append(defer.Deferred()) or pending[-1]
        service = DirectoryService(self.bus, "zone-1", lambda: {}, 1, 3, self.clock)
        self.successResultOf(service.announcing())
        service.startService()
        first = service.announcing()
        self.assertNoResult(first)
        pending[0].callback(None)
        self.successResultOf(first)
        self.assertEqual(service.announced, 1)
        self.successResultOf(service.announcing())
        self.clock.advance(1)
        failed = service.announcing()
        self.assertNoResult(failed)
        pending[1].errback(Boom("redis down"))
        self.successResultOf(failed)
        self.assertEqual(service.failures, 1)
        self.flushLoggedErrors(Boom)
        self.clock.advance(1)
        pending[2].callback(None)
        self.successResultOf(service.stopService())

    def test_refresh(self):
        """refresh() announces now, with fresh info."""
        load = [1]
        service = DirectoryService(
            self.bus, "gw", lambda: {"kind": "gateway", "load": load[0]}, 10, 30, self.clock
        )
        service.startService()
        load[0] = 9
        self.successResultOf(service.refresh())
        self.assertEqual(self.successResultOf(self.bus.services())["gw"]["load"], 9)
        self.successResultOf(service.stopService())
        self.assertEqual(self.successResultOf(self.bus.services()), {})

    def test_from_config(self):
        conf = load(
            self, ONE_PROCESS + "\n[bus]\nheartbeat_interval = 1.5\nheartbeat_timeout = 4\n"
        )
        service = DirectoryService.from_config(self.bus, conf, "mmo", dict, reactor=self.clock)
        self.assertEqual((service.interval, service.ttl), (1.5, 4.0))

    def test_ttl_longer_than_interval(self):
        with self.assertRaises(ValueError):
            DirectoryService(self.bus, "x", dict, 2, 2, self.clock)


class LeastLoadedTests(unittest.TestCase):
    SERVICES = {
        "gw-b": {"kind": "gateway", "realm": "eu", "load": 5},
        "gw-a": {"kind": "gateway", "realm": "eu", "load": 5},
        "gw-c": {"kind": "gateway", "realm": "eu", "load": 9},
        "gw-us": {"kind": "gateway", "realm": "us", "load": 1},
        "gw-drain": {"kind": "gateway", "realm": "eu", "load": 0, "draining": True},
        "gw-bad": {"kind": "gateway", "realm": "eu", "load": "lots"},
        "zone-1": {"kind": "zone", "realm": "eu", "load": 0},
    }

    def test_lowest_load(self):
        self.assertEqual(least_loaded(self.SERVICES, "gateway")[0], "gw-us")
        self.assertEqual(least_loaded(self.SERVICES, None)[0], "zone-1")

    def test_realm_and_ties(self):
        """Equal loads go to the smallest name; draining and bad loads are skipped."""
        name, info = least_loaded(self.SERVICES, "gateway", realm="eu")
        self.assertEqual(name, "gw-a")
        self.assertIs(info, self.SERVICES["gw-a"])

    def test_float_and_missing_load(self):
        services = {"a": {"kind": "gateway", "load": 0.5}, "b": {"kind": "gateway"}}
        self.assertEqual(least_loaded(services, "gateway")[0], "b")

    def test_none(self):
        self.assertIsNone(least_loaded({}, "gateway"))
        self.assertIsNone(least_loaded(self.SERVICES, "lobby"))
        self.assertIsNone(least_loaded(self.SERVICES, "gateway", realm="asia"))
