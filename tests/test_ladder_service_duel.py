"""
The ranked duel example (C{examples/ranked_duel.py}): its lobby, named by
C{[lobby] lobby_class}, decides rock, paper, scissors in a match's room and
reports the result to the ladder, which moves the ratings once.
"""

from __future__ import annotations

import importlib
import os
import sys

from twisted.trial import unittest

from mmo import config
from mmo.config import ConfigError
from mmo.game.messages import Push
from mmo.ladder.service import PASS_INTERVAL
from mmo.lobby.service import LobbyService, lobby_service_class
from mmo.wire import codes
from tests.support import config_of
from tests.test_ladder_service import LadderTestCase, player

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")


def example():
    if EXAMPLES not in sys.path:
        sys.path.insert(0, EXAMPLES)
    return importlib.import_module("ranked_duel")


class LobbyClassTests(unittest.TestCase):
    def test_named_in_the_config(self):
        conf = config.load(os.path.join(EXAMPLES, "ranked_duel.toml"))
        self.assertIs(lobby_service_class(conf), example().RankedDuelLobby)
        self.assertEqual(sorted(conf.ladders), ["duel"])

    def test_default_and_errors(self):
        self.assertIs(lobby_service_class(config_of()), LobbyService)
        for name, why in (("nowhere.Lobby", "cannot import"), ("mmo.store.new_id", "subclass")):
            e = self.assertRaises(
                ConfigError, lobby_service_class, config_of(lobby={"lobby_class": name})
            )
            self.assertIn(why, str(e))
            self.assertIn("lobby_class", str(e))


class DuelTests(LadderTestCase):
    async def setUp(self):
        await super().setUp()
        # The example's lobby in place of the plain one.
        await self.lobby.stop()
        self.lobby = example().RankedDuelLobby(self.config, self.store, self.bus, self.clock)
        await self.lobby.start()
        self.addCleanup(self.lobby.stop)

    async def duel(self, throws: dict) -> tuple[dict, str]:
        (alice, bob), match = await self.matched("alice", "bob")
        self.turn()
        self.assertIsNotNone(self.lobby.room_of(alice).match)
        callers = {"alice": alice, "bob": bob}
        for name, throw in throws.items():
            await self.send(callers[name], "room.duel.throw", throw=throw)
        # Each player's result is pushed after his rank is read: both.
        await self.settle(lambda: len(self.pushes("ladder.result")) == len(callers))
        return callers, match

    async def test_a_duel_reported_by_the_rule(self):
        callers, match = await self.duel({"alice": "rock", "bob": "scissors"})
        for caller in callers.values():
            [shown] = self.pushes("room.duel.result", caller.session)
            self.assertEqual(shown["throws"], {"alice": "rock", "bob": "scissors"})
            self.assertEqual(shown["winner"], "alice")
        [won] = self.pushes("ladder.result", callers["alice"].session)
        [lost] = self.pushes("ladder.result", callers["bob"].session)
        self.assertEqual((won["outcome"]["place"], lost["outcome"]["place"]), (1, 2))
        self.assertGreater(won["after"], won["before"])
        self.assertLess(lost["after"], lost["before"])
        self.assertEqual((won["rank"], lost["rank"]), (1, 2))
        self.assertNotIn(match, self.ladder.queue.matches)
        # Decided: no second throw, no second result.
        e = await self.refused(codes.NOT_ALLOWED, callers["bob"], "room.duel.throw", throw="rock")
        self.assertIn("decided", e.message)

    async def test_a_draw_is_a_tie(self):
        callers, _ = await self.duel({"alice": "paper", "bob": "paper"})
        [shown] = self.pushes("room.duel.result", callers["alice"].session)
        self.assertIsNone(shown["winner"])
        for caller in callers.values():
            [result] = self.pushes("ladder.result", caller.session)
            self.assertEqual((result["outcome"]["place"], result["outcome"]["tie"]), (1, True))

    async def test_throws_checked(self):
        (alice, _), _ = await self.matched("alice", "bob")
        await self.refused(codes.BAD_REQUEST, alice, "room.duel.throw", throw="lizard")
        await self.refused(codes.BAD_REQUEST, alice, "room.duel.throw")
        await self.send(alice, "room.duel.throw", throw="rock")
        await self.refused(codes.NOT_ALLOWED, alice, "room.duel.throw", throw="paper")
        outsider = player("carol")
        await self.send(outsider, "room.create", name="elsewhere")
        e = await self.refused(codes.NOT_ALLOWED, outsider, "room.duel.throw", throw="rock")
        self.assertIn("match", e.message)
        self.turn(PASS_INTERVAL)
        self.assertEqual([m for m in self.inbox.of_type(Push) if m.kind == "ladder.result"], [])
