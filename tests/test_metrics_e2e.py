"""
Metrics of real twistd processes, scraped over TLS with the prometheus
certificate and parsed as Prometheus parses them: the counters of the
standalone server move as a player logs in, walks and crosses a border;
a manager lists its machine's targets, each one answers, and a drained
gateway leaves the list.
"""

from __future__ import annotations

import json

from prometheus_client.parser import text_string_to_metric_families
from twisted.trial import unittest

from mmo import tls
from tests.redis import free_port
from tests.support import FAST_HASH, STANDALONE, deployment, spawn_managed, until
from tests.test_cluster import SETTINGS
from tests.test_login_e2e import started
from tests.test_manager_e2e import admin
from tests.test_metrics import samples, scrape
from tests.test_twistd import spawn
from tests.world_walk import WORLD, tcp_player


def value(found: dict, name: str, **labels) -> float:
    """The sample C{name} with exactly C{labels} (0 if absent)."""
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


class StandaloneTests(unittest.TestCase):
    timeout = 120

    async def test_counters_move_as_a_player_acts(self):
        """
        A player logs in, enters the world and walks across the border
        between the two regions: the scrape after shows its login, its
        session and connection, its moves received and timed, pushes
        sent, both zones ticking, the handoff, and store operations.
        """
        port = free_port()
        processes = STANDALONE + f'metrics = "tcp:{port}:interface=127.0.0.1"\n'
        conf = deployment(self, processes, extra=FAST_HASH + WORLD)
        child, _ = spawn(self, conf.file)
        login = await started(child, "mmo")
        ca, tls_dir = tls.ca_path(conf.deployment.tls_dir), conf.deployment.tls_dir

        code, text = await scrape(port, tls_dir)
        self.assertEqual(code, 200)
        before = samples(text)
        self.assertEqual(value(before, "mmo_sessions"), 0)

        walker = await tcp_player(self, ca, login, "Alice")
        await walker.walk_to(106.0)
        moves = walker.seq
        await walker.caught_up(1)

        after = samples((await scrape(port, tls_dir))[1])
        self.assertEqual(value(after, "mmo_login_attempts_total", outcome="ok"), 1)
        self.assertEqual(value(after, "mmo_sessions"), 1)
        self.assertGreaterEqual(value(after, "mmo_connections"), 1)
        # One connection to log in, one to the gateway (the same process here).
        self.assertEqual(value(after, "mmo_connections_opened_total"), 2)
        self.assertEqual(value(after, "mmo_messages_received_total", type="zone.move"), moves)
        self.assertEqual(
            value(after, "mmo_request_duration_seconds_count", type="zone.move"), moves
        )
        self.assertEqual(value(after, "mmo_messages_received_total", type="auth"), 1)
        self.assertGreater(
            value(after, "mmo_messages_sent_total", type="push"),
            value(before, "mmo_messages_sent_total", type="push"),
        )
        for zone in ("r0c0", "r0c1"):
            self.assertGreater(
                value(after, "mmo_zone_ticks_total", zone=zone),
                value(before, "mmo_zone_ticks_total", zone=zone),
            )
            self.assertGreater(
                value(after, "mmo_zone_tick_duration_seconds_count", zone=zone),
                value(before, "mmo_zone_tick_duration_seconds_count", zone=zone),
            )
        self.assertEqual(value(after, "mmo_zone_handoffs_started_total", zone="r0c0"), 1)
        self.assertEqual(value(after, "mmo_zone_handoffs_completed_total", zone="r0c0"), 1)
        self.assertEqual(value(after, "mmo_zone_players", zone="r0c1"), 1)
        self.assertEqual(value(after, "mmo_zone_players", zone="r0c0"), 0)
        stored = [key for key in after if key[0] == "mmo_store_operation_duration_seconds_count"]
        self.assertIn(("operation", "create_account"), [labels[0] for _, labels in stored])
        # No label names a player.
        for name, labels in after:
            for _, label in labels:
                self.assertNotIn("Alice", label, name)


#: A machine of a manager, a login server and two gateways.
MACHINE = (
    ("manager", "manager"),
    ("login", "login"),
    ("gateway-1", "gateway"),
    ("gateway-2", "gateway"),
)


class ManagedTests(unittest.TestCase):
    timeout = 120

    async def test_targets_scraped_and_drain_leaves_the_list(self):
        """
        The manager's targets file lists every process of its machine;
        each answers over TLS with its own figures; drained, a gateway
        leaves the list and the manager counts it down.
        """
        cluster = await spawn_managed(self, MACHINE, SETTINGS, metrics=True)
        conf = cluster.config
        tls_dir = conf.deployment.tls_dir
        path = conf.manager.metrics_targets

        def listed() -> dict[str, dict]:
            with open(path) as f:
                return {group["labels"]["process"]: group for group in json.load(f)}

        groups = listed()
        self.assertEqual(sorted(groups), sorted(name for name, _ in MACHINE))
        for name, kind in MACHINE:
            self.assertEqual(groups[name]["labels"]["kind"], kind)
            self.assertEqual(groups[name]["labels"]["__scheme__"], "https")
            [target] = groups[name]["targets"]
            code, text = await scrape(int(target.rsplit(":", 1)[1]), tls_dir)
            self.assertEqual(code, 200, name)
            names = {family.name for family in text_string_to_metric_families(text)}
            self.assertIn("process_cpu_seconds", names, name)
            if kind in ("login", "gateway"):
                self.assertIn("mmo_connections", names, name)
            if kind == "manager":
                found = samples(text)
                for process, _ in MACHINE[1:]:
                    self.assertEqual(
                        value(found, "mmo_manager_process_up", process=process), 1, process
                    )

        await admin(self, conf, "drain", "gateway-2")
        await until(lambda: "gateway-2" not in listed(), what="gateway-2 out of the targets")
        manager_port = int(groups["manager"]["targets"][0].rsplit(":", 1)[1])
        found = samples((await scrape(manager_port, tls_dir))[1])
        self.assertEqual(value(found, "mmo_manager_process_up", process="gateway-2"), 0)
        self.assertEqual(value(found, "mmo_manager_process_up", process="gateway-1"), 1)
