"""
Tests of L{mmo.metrics}: the registry's helpers (label children, figures
read at scrape time, timed store operations), docs/metrics.md against the
registered metrics, the C{metrics} keys of the config, the listener over
TLS (who may read) and plain HTTP, and the service discovery list.
"""

from __future__ import annotations

import json
import os
import re
import threading

from OpenSSL import SSL
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer, endpoints, reactor, ssl, task
from twisted.trial import unittest
from twisted.web.client import (
    Agent,
    RequestTransmissionFailed,
    ResponseNeverReceived,
    readBody,
)
from twisted.web.iweb import IPolicyForHTTPS
from twisted.web.test.requesthelper import DummyRequest
from zope.interface import Interface, implementer

from mmo import config, tls
from mmo.metrics import discovery, listener
from mmo.metrics.kinds import (
    OTHER,
    LabelCache,
    StateCollector,
    TallyCounter,
    TallyHistogram,
    timed_operations,
)
from mmo.metrics.registry import STATES, metric_names, state
from tests.support import STANDALONE, config_of, deployment, write_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def samples(text: str) -> dict[tuple, float]:
    """The samples of a scrape, by C{(name, sorted labels)}, parsed as Prometheus does."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def scraped(registry) -> dict[tuple, float]:
    return samples(generate_latest(registry).decode())


class RegistryTests(unittest.TestCase):
    def test_label_cache_bounded(self):
        """
        Values get a child each up to the limit; past it, and for a value
        only looked up, the count goes to C{other}.
        """
        registry = CollectorRegistry()
        counter = Counter("things", "Things.", ["type"], registry=registry)
        cache = LabelCache(counter, limit=2)
        cache.child("a").inc()
        cache.child("b").inc()
        cache.child("c").inc()
        cache.get("d").inc()
        cache.child("a").inc()
        got = scraped(registry)
        self.assertEqual(got[("things_total", (("type", "a"),))], 2)
        self.assertEqual(got[("things_total", (("type", "b"),))], 1)
        self.assertEqual(got[("things_total", (("type", OTHER),))], 2)
        self.assertNotIn(("things_total", (("type", "c"),)), got)

    def test_label_cache_first_labels(self):
        """C{first} fixes the labels before the cached one (a zone's name)."""
        registry = CollectorRegistry()
        counter = Counter("fixes", "Fixes.", ["zone", "reason"], registry=registry)
        cache = LabelCache(counter, fixed=("slow",), first=("r0c0",))
        cache.get("slow").inc(3)
        got = scraped(registry)
        self.assertEqual(got[("fixes_total", (("reason", "slow"), ("zone", "r0c0")))], 3)

    def test_tallies(self):
        """
        A tally counter and histogram read as prometheus-client's own would:
        counts by label; cumulative buckets, their count and sum.
        """
        registry = CollectorRegistry()
        counter = TallyCounter("frames", "Frames.", "type", registry)
        histogram = TallyHistogram("waits_seconds", "Waits.", "type", (0.001, 0.025), registry)
        cache = LabelCache(counter, limit=1)
        cache.child("ping").inc()
        cache.child("ping").inc(2)
        cache.child("auth").inc()
        timer = histogram.labels("ping")
        for amount in (0.0007, 0.001, 0.02, 20.0):
            timer.observe(amount)
        got = scraped(registry)
        self.assertEqual(got[("frames_total", (("type", "ping"),))], 3)
        self.assertEqual(got[("frames_total", (("type", OTHER),))], 1)
        buckets = {
            dict(labels)["le"]: count
            for (name, labels), count in got.items()
            if name == "waits_seconds_bucket"
        }
        self.assertEqual(buckets, {"0.001": 2, "0.025": 3, "+Inf": 4})
        self.assertEqual(got[("waits_seconds_count", (("type", "ping"),))], 4)
        self.assertAlmostEqual(got[("waits_seconds_sum", (("type", "ping"),))], 20.0217)

    def test_state_read_at_scrape(self):
        """
        Sources are called at each scrape; samples of one family from
        several sources add up; an unregistered source is no longer read.
        """
        registry = CollectorRegistry()
        collector = StateCollector(STATES)
        registry.register(collector)
        held = {"a": 2, "b": 5}
        collector.register("a", lambda: [state("mmo_connections", ((), held["a"]))])
        collector.register("b", lambda: [state("mmo_connections", ((), held["b"]))])
        self.assertEqual(scraped(registry)[("mmo_connections", ())], 7)
        held["a"] = 10
        self.assertEqual(scraped(registry)[("mmo_connections", ())], 15)
        collector.unregister("b")
        self.assertEqual(scraped(registry)[("mmo_connections", ())], 10)

    def test_timed_operations(self):
        """
        Every method of the implemented interfaces is timed by name from
        its call until its Deferred fires; a failure is counted.
        """
        registry = CollectorRegistry()
        durations = Histogram("ops_seconds", "Ops.", ["operation"], registry=registry)
        failures = Counter("ops_failures", "Failed.", ["operation"], registry=registry)

        class IThing(Interface):
            def fetch(): ...

            def lose(): ...

        waiting = defer.Deferred()

        @implementer(IThing)
        class Thing:
            def fetch(self):
                return waiting

            def lose(self):
                return defer.fail(ValueError("no"))

            def other(self):
                return defer.succeed(None)

        timed_operations(durations, failures)(Thing)
        thing = Thing()
        d = thing.fetch()
        self.assertEqual(scraped(registry)[("ops_seconds_count", (("operation", "fetch"),))], 0)
        waiting.callback(3)
        self.assertEqual(self.successResultOf(d), 3)
        self.failureResultOf(thing.lose(), ValueError)
        thing.other()
        got = scraped(registry)
        self.assertEqual(got[("ops_seconds_count", (("operation", "fetch"),))], 1)
        self.assertEqual(got[("ops_seconds_count", (("operation", "lose"),))], 1)
        self.assertEqual(got[("ops_failures_total", (("operation", "lose"),))], 1)
        self.assertEqual(got[("ops_failures_total", (("operation", "fetch"),))], 0)
        self.assertNotIn(("ops_seconds_count", (("operation", "other"),)), got)

    def test_docs_list_every_metric(self):
        """docs/metrics.md lists exactly the registered metrics, each once."""
        with open(os.path.join(ROOT, "docs", "metrics.md")) as f:
            listed = re.findall(r"(?m)^\| `(mmo_\w+)` \|", f.read())
        self.assertEqual(sorted(listed), metric_names())

    def test_names_follow_conventions(self):
        """Prefix C{mmo_}; counters end in C{_total}; durations in seconds."""
        for name in metric_names():
            self.assertTrue(name.startswith("mmo_"), name)
            self.assertNotRegex(name, r"_(ms|milliseconds|minutes)\b", name)


CLUSTER_PROCESSES = """
[processes.manager]
kind = "manager"
rpc = "tcp:7400:interface=127.0.0.1"
metrics = "tcp:7500:interface=127.0.0.1"

[processes.gateway-1]
kind = "gateway"
client = "tcp:7001"
metrics = "tcp:7511"
hosts = ["gw1.example.com", "10.0.0.5"]

[processes.zone-1]
kind = "zone"
rpc = "tcp:7201:interface=127.0.0.1"
metrics = "tcp:7531:interface=127.0.0.1"
metrics_tls = false

[processes.chat]
kind = "chat"
rpc = "tcp:7102:interface=127.0.0.1"
metrics = "unix:/tmp/chat-metrics.sock"
metrics_tls = false

[processes.lobby]
kind = "lobby"
rpc = "tcp:7101:interface=127.0.0.1"
"""


class ConfigTests(unittest.TestCase):
    def load(self, text: str):
        return config.load(write_config(self, '[deployment]\nname = "t"\n' + text))

    def test_every_kind(self):
        """Every kind may have a metrics listener; TLS by default."""
        conf = self.load(CLUSTER_PROCESSES)
        self.assertEqual(conf.processes["gateway-1"].metrics, "tcp:7511")
        self.assertTrue(conf.processes["gateway-1"].metrics_tls)
        self.assertFalse(conf.processes["zone-1"].metrics_tls)
        self.assertIsNone(conf.processes["lobby"].metrics)

    def test_plain_off_loopback_refused(self):
        """A plain listener on another address than loopback fails, naming the key."""
        for endpoint in ("tcp:7531", "tcp:7531:interface=10.0.0.5", "tcp6:7531"):
            text = CLUSTER_PROCESSES.replace("tcp:7531:interface=127.0.0.1", endpoint)
            error = self.assertRaises(config.ConfigError, self.load, text)
            self.assertIn("processes.zone-1.metrics", str(error))
            self.assertIn("loopback address only", str(error))
            self.assertIn(".toml", str(error))

    def test_plain_on_ipv6_loopback(self):
        text = CLUSTER_PROCESSES.replace(
            "tcp:7531:interface=127.0.0.1", "tcp6:7531:interface=\\\\:\\\\:1"
        )
        self.assertFalse(self.load(text).processes["zone-1"].metrics_tls)

    def test_port_clash(self):
        """A metrics port is a listener like the others: two on one port fail."""
        text = CLUSTER_PROCESSES.replace("tcp:7531:interface", "tcp:7201:interface")
        error = self.assertRaises(config.ConfigError, self.load, text)
        self.assertIn("port 7201 is taken", str(error))

    def test_prometheus_name_reserved(self):
        """A process may not take the name of the scrapers' certificate."""
        text = CLUSTER_PROCESSES + '[processes.prometheus]\nkind = "chat"\n'
        error = self.assertRaises(config.ConfigError, self.load, text)
        self.assertIn("processes.prometheus", str(error))
        self.assertIn("reserved", str(error))

    def test_targets(self):
        """
        One group per TCP metrics listener, labelled with the process and
        its kind and scheme; a listener on every interface by the first
        of the process's hosts; none for a Unix socket or no listener.
        """
        conf = self.load(CLUSTER_PROCESSES)
        groups = discovery.targets(conf.processes.values())
        self.assertEqual(
            groups,
            [
                {
                    "targets": ["127.0.0.1:7500"],
                    "labels": {"process": "manager", "kind": "manager", "__scheme__": "https"},
                },
                {
                    "targets": ["gw1.example.com:7511"],
                    "labels": {"process": "gateway-1", "kind": "gateway", "__scheme__": "https"},
                },
                {
                    "targets": ["127.0.0.1:7531"],
                    "labels": {"process": "zone-1", "kind": "zone", "__scheme__": "http"},
                },
            ],
        )


class TargetsFileTests(unittest.TestCase):
    def test_rewritten_when_the_list_changes(self):
        """
        Written at start; rewritten when the list changes (checked every
        interval), left alone while it does not.
        """
        clock = task.Clock()
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, "targets.json")
        current = [{"targets": ["127.0.0.1:1"], "labels": {"process": "a"}}]
        targets = discovery.TargetsFile(path, lambda: list(current), clock)
        targets.start()
        self.addCleanup(targets.stop)
        with open(path) as f:
            self.assertEqual(json.load(f), current)
        os.remove(path)
        clock.advance(targets.interval)
        self.assertFalse(os.path.exists(path))
        current.append({"targets": ["127.0.0.1:2"], "labels": {"process": "b"}})
        clock.advance(targets.interval)
        with open(path) as f:
            self.assertEqual(len(json.load(f)), 2)
        # Replaced at once: no temporary file left beside it.
        self.assertEqual(os.listdir(directory), ["targets.json"])

    def test_unwritable_logged(self):
        """A file that cannot be written is logged; the manager goes on."""
        clock = task.Clock()
        path = os.path.join(self.mktemp(), "missing", "targets.json")
        targets = discovery.TargetsFile(path, lambda: [], clock)
        targets.start()
        self.addCleanup(targets.stop)
        self.assertIsNone(targets.written)
        self.assertEqual(len(self.flushLoggedErrors()), 0)


@implementer(IPolicyForHTTPS)
class ClientCertificate:
    """HTTPS with the deployment's CA and the client certificate of C{identity}."""

    def __init__(self, tls_dir: str, identity: str | None):
        with open(tls.ca_path(tls_dir), "rb") as f:
            self.ca = ssl.Certificate.loadPEM(f.read())
        self.mine = None
        if identity is not None:
            cert, key = tls.client_paths(tls_dir, identity)
            with open(cert, "rb") as c, open(key, "rb") as k:
                self.mine = ssl.PrivateCertificate.loadPEM(c.read() + k.read())

    def creatorForNetloc(self, hostname, port):
        return ssl.optionsForClientTLS("localhost", trustRoot=self.ca, clientCertificate=self.mine)


async def scrape(port: int, tls_dir: str | None = None, identity: str | None = "prometheus"):
    """GET /metrics on C{port}, over TLS with C{tls_dir}: the status and the text."""
    if tls_dir is None:
        agent = Agent(reactor)
        url = f"http://127.0.0.1:{port}/metrics"
    else:
        agent = Agent(reactor, contextFactory=ClientCertificate(tls_dir, identity))
        url = f"https://localhost:{port}/metrics"
    response = await agent.request(b"GET", url.encode())
    body = await readBody(response)
    return response.code, body.decode()


class PageTests(unittest.TestCase):
    def test_rendered_now(self):
        """
        The page is rendered by the call itself, in the reactor's thread,
        not later in a thread of its pool: the figures read at scrape
        time are read where the objects live.
        """
        registry = CollectorRegistry()
        collector = StateCollector(STATES)
        registry.register(collector)
        threads = []

        def source():
            threads.append(threading.get_ident())
            yield state("mmo_sessions", ((), 4))

        collector.register("gateway", source)
        request = DummyRequest([b""])
        body = listener.MetricsPage(registry, None).render_GET(request)
        self.assertEqual(threads, [threading.get_ident()])
        self.assertEqual(samples(body.decode())[("mmo_sessions", ())], 4)
        self.assertIn(b"text/plain", request.responseHeaders.getRawHeaders(b"content-type")[0])

    def test_openmetrics(self):
        """A scraper that asks for OpenMetrics gets it."""
        request = DummyRequest([b""])
        request.requestHeaders.setRawHeaders(b"accept", [b"application/openmetrics-text"])
        body = listener.MetricsPage(CollectorRegistry(), None).render_GET(request)
        self.assertTrue(body.endswith(b"# EOF\n"))
        content_type = request.responseHeaders.getRawHeaders(b"content-type")[0]
        self.assertIn(b"application/openmetrics-text", content_type)


class ListenerTests(unittest.TestCase):
    """The listener on loopback, with the real reactor."""

    timeout = 30

    async def listening(self, conf, process):
        endpoint = endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
        port = await endpoint.listen(listener.factory(conf, process))
        self.addCleanup(port.stopListening)
        return port.getHost().port

    async def test_tls_for_scrapers_only(self):
        """
        Over TLS, the prometheus and admin certificates read the figures; a
        process's own client certificate gets 403; no certificate, no
        handshake.
        """
        conf = deployment(self, STANDALONE + 'metrics = "tcp:0:interface=127.0.0.1"\n')
        port = await self.listening(conf, conf.processes["mmo"])
        tls_dir = conf.deployment.tls_dir
        for identity in ("prometheus", "admin"):
            code, text = await scrape(port, tls_dir, identity)
            self.assertEqual(code, 200, identity)
            self.assertIn(("process_cpu_seconds_total", ()), samples(text))
        code, text = await scrape(port, tls_dir, "mmo")
        self.assertEqual(code, 403)
        self.assertIn("prometheus or admin", text)
        with self.assertRaises((ResponseNeverReceived, RequestTransmissionFailed, SSL.Error)):
            await scrape(port, tls_dir, None)

    async def test_plain(self):
        """Plain HTTP with C{metrics_tls = false}; a path but /metrics is 404."""
        conf = config_of(
            {"mmo": {"kind": "mmo", "client": "tcp:0", "metrics": "tcp:0:interface=127.0.0.1",
                     "metrics_tls": False}}
        )  # fmt: skip
        port = await self.listening(conf, conf.processes["mmo"])
        code, text = await scrape(port)
        self.assertEqual(code, 200)
        names = {family.name for family in text_string_to_metric_families(text)}
        self.assertIn("mmo_connections_opened", names)
        agent = Agent(reactor)
        response = await agent.request(b"GET", f"http://127.0.0.1:{port}/".encode())
        self.assertEqual(response.code, 404)
