"""
Tests of C{[ladders.NAME]} (L{mmo.config.ladder}) and of a ladder's
ratings (L{mmo.ladder.ratings.Rater}).
"""

from __future__ import annotations

from twisted.trial import unittest

from mmo import config
from mmo.config import ConfigError
from mmo.ladder import Rater
from mmo.store.common_ladder import SeasonRecord
from tests.support import write_config

PROCESSES = '\n[processes.zone-1]\nkind = "zone"\n'


class LadderConfigTests(unittest.TestCase):
    def load(self, text):
        return config.load(write_config(self, text + PROCESSES))

    def assertConfigError(self, text, key, *fragments):
        """Loading C{text} fails naming the file, C{key} and C{fragments}."""
        path = write_config(self, text + PROCESSES)
        message = str(self.assertRaises(ConfigError, config.load, path))
        self.assertTrue(message.startswith(f"{path}: {key}: "), message)
        for fragment in fragments:
            self.assertIn(fragment, message)

    def test_defaults(self):
        """A ladder named with no keys has every default."""
        ladder = self.load("[ladders.ranked]\n").ladders["ranked"]
        self.assertEqual(ladder.name, "ranked")
        self.assertEqual(ladder.model, "PlackettLuce")
        self.assertEqual(ladder.modes, {"1v1": (1, 1)})
        self.assertEqual((ladder.season_schedule, ladder.season_reset), ("", "soften"))
        self.assertEqual((ladder.queue_gap, ladder.queue_gap_max), (100.0, 600.0))
        self.assertEqual(self.load("").ladders, {})

    def test_keys(self):
        ladder = self.load(
            """
            [ladders.arena-2]
            model = "ThurstoneMostellerFull"
            modes = { "1v1" = [1, 1], "2v2" = [2, 2], "ffa" = [1, 1, 1, 1] }
            provisional_sigma = 4
            display_scale = 20
            display_offset = 1500
            season_schedule = "0 0 1 * *"
            season_reset = "reset"
            soften = 0.25
            queue_gap = 50
            queue_gap_growth = 5.5
            queue_gap_max = 400
            match_timeout = 900
            """
        ).ladders["arena-2"]
        self.assertEqual(ladder.modes["ffa"], (1, 1, 1, 1))
        self.assertEqual(ladder.season_schedule, "0 0 1 * *")
        self.assertEqual((ladder.queue_gap_growth, ladder.match_timeout), (5.5, 900.0))
        self.assertIsInstance(ladder.provisional_sigma, float)

    def test_errors(self):
        """Each bad value fails at load, naming the file, the key and why."""
        bad = [
            ("[ladders.Ranked]\n", "ladders.Ranked", "bad name"),
            ('[ladders.r]\nmodel = "Elo"\n', "ladders.r.model", "must be one of"),
            ("[ladders.r]\nmodes = {}\n", "ladders.r.modes", "at least one mode"),
            ('[ladders.r]\nmodes = { "1v1" = [1] }\n', "ladders.r.modes.1v1", "2 to 64 teams"),
            ('[ladders.r]\nmodes = { "1v1" = [1, 0] }\n', "ladders.r.modes.1v1", "1 to 64"),
            ('[ladders.r]\nmodes = { "1v1" = "1v1" }\n', "ladders.r.modes.1v1", "team sizes"),
            ('[ladders.r]\nmodes = { "a b" = [1, 1] }\n', "ladders.r.modes.a b", "mode name"),
            ("[ladders.r]\nmodes = [1, 1]\n", "ladders.r.modes", "must be a table"),
            ("[ladders.r]\nprovisional_sigma = 0\n", "ladders.r.provisional_sigma", "at least"),
            ('[ladders.r]\nseason_schedule = "daily"\n', "ladders.r.season_schedule", "five"),
            ('[ladders.r]\nseason_schedule = "0 0 1 * ?"\n', "ladders.r.season_schedule", "'?'"),
            ('[ladders.r]\nseason_reset = "halve"\n', "ladders.r.season_reset", "one of"),
            ("[ladders.r]\nsoften = 1.5\n", "ladders.r.soften", "at most 1"),
            ("[ladders.r]\nqueue_gap = -1\n", "ladders.r.queue_gap", "at least 0"),
            ("[ladders.r]\nqueue_gap = 700\n", "ladders.r.queue_gap_max", "queue_gap"),
            ("[ladders.r]\nmatch_timeout = 0\n", "ladders.r.match_timeout", "at least 1"),
            ("[ladders.r]\nqueue = 1\n", "ladders.r.queue", "unknown key"),
        ]
        for text, key, reason in bad:
            self.assertConfigError(text, key, reason)


class RaterTests(unittest.TestCase):
    def test_display_and_provisional(self):
        rater = Rater(provisional_sigma=5.0, display_scale=40.0, display_offset=1000.0)
        mu, sigma = rater.initial()
        self.assertEqual((mu, sigma), (25.0, 25.0 / 3))
        self.assertAlmostEqual(rater.display(mu, sigma), 1000.0)
        self.assertEqual(rater.display(30.0, 2.0), 40.0 * 24.0 + 1000.0)
        self.assertTrue(rater.provisional(5.01))
        self.assertFalse(rater.provisional(5.0))

    def test_rate(self):
        """Ranks (lower better), scores (higher better) and the order given agree."""
        rater = Rater()
        new = rater.initial()
        by_order = rater.rate([[new], [new]])
        self.assertEqual(rater.rate([[new], [new]], ranks=[1, 2]), by_order)
        self.assertEqual(rater.rate([[new], [new]], scores=[3, 1]), by_order)
        self.assertGreater(by_order[0][0][0], new[0])
        self.assertLess(by_order[1][0][0], new[0])
        # The same inputs give the same floats: replay depends on it.
        self.assertEqual(rater.rate([[(27.5, 6.1)], [new]]), rater.rate([[(27.5, 6.1)], [new]]))

    def test_carry(self):
        rater = Rater()
        mu0, sigma0 = rater.initial()

        def season(reset, soften=0.5):
            return SeasonRecord(2, 0.0, reset, soften, "")

        self.assertEqual(rater.carry((40.0, 3.0), season("keep")), (40.0, 3.0))
        self.assertEqual(rater.carry((40.0, 3.0), season("reset")), (mu0, sigma0))
        mu, sigma = rater.carry((40.0, 3.0), season("soften", 0.25))
        self.assertEqual((mu, sigma), (40.0 + (mu0 - 40.0) * 0.25, 3.0 + (sigma0 - 3.0) * 0.25))
