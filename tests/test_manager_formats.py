"""
What C{mmo-admin players} and C{mmo-admin errors} print from the managers'
answers, and the refusals of their arguments before any manager is asked.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.trial import unittest

from mmo.manager import admin
from mmo.manager.formats import format_errors, format_players
from mmo.schedules import iso_time
from tests.support import write_config


def session(number: int, name: str, zone: str = "zone-1", attached: bool = True) -> dict:
    return {
        "session": f"s{number:04d}",
        "account": name,
        "name": name.title(),
        "character": f"{name}-char",
        "zone": zone,
        "attached": attached,
    }


class PlayersTests(unittest.TestCase):
    def test_a_row_per_session_across_gateways(self):
        answer = {
            "gateways": {
                "gateway-2": {"sessions": [session(3, "carol", "zone-2")], "total": 1,
                              "more": False},
                "gateway-1": {"sessions": [session(1, "alice"), session(2, "bob", attached=False)],
                              "total": 2, "more": False},
            }
        }  # fmt: skip
        lines = format_players(answer).splitlines()
        self.assertEqual([line.split() for line in lines[1:4]], [
            ["gateway-1", "Alice", "alice-char", "zone-1", "yes", "s0001"],
            ["gateway-1", "Bob", "bob-char", "zone-1", "no", "s0002"],
            ["gateway-2", "Carol", "carol-char", "zone-2", "yes", "s0003"],
        ])  # fmt: skip
        self.assertEqual(lines[-1], "3 online")

    def test_the_next_page_and_a_gateway_that_failed(self):
        answer = {
            "gateways": {
                "gateway-1": {"sessions": [session(1, "alice"), session(2, "bob")], "total": 5,
                              "more": True},
                "gateway-2": {"error": "no answer in 5 s"},
            }
        }  # fmt: skip
        lines = format_players(answer).splitlines()
        self.assertIn("5 online", lines)
        self.assertIn("gateway-1 has more: --after s0002", lines)
        self.assertEqual(lines[-1], "(gateway-2: no answer in 5 s)")

    def test_nobody_online(self):
        self.assertEqual(format_players({"gateways": {}}).splitlines()[-1], "0 online")


class ErrorsTests(unittest.TestCase):
    def test_every_managers_lines_newest_first(self):
        answers = [
            {"manager": "manager-a", "errors": [
                {"time": 100.0, "process": "zone-1", "text": "zone-1 tick overran"},
                {"time": 40.0, "process": "chat", "text": "Traceback (most recent call last):"},
            ]},
            {"manager": "manager-b", "errors": [
                {"time": 70.0, "process": "gateway-3", "text": "store unreachable"},
            ]},
        ]  # fmt: skip
        lines = format_errors(answers).splitlines()
        self.assertEqual([line.split()[1] for line in lines], ["zone-1", "gateway-3", "chat"])
        self.assertTrue(lines[0].startswith(iso_time(100.0)))
        self.assertTrue(lines[2].endswith("Traceback (most recent call last):"))

    def test_no_lines(self):
        self.assertEqual(format_errors([{"manager": "manager", "errors": []}]), "no error lines")


class ArgumentTests(unittest.TestCase):
    """Bad limits are refused with the command's name, before any link is made."""

    def refused(self, *args) -> str:
        path = write_config(self, "")
        arguments = admin._parser().parse_args(["--config", path, *args])
        failure = self.failureResultOf(
            defer.ensureDeferred(admin.run(None, arguments)), admin.AdminError
        )
        return str(failure.value)

    def test_players_limit(self):
        self.assertIn("players: --limit is 1 to 200", self.refused("players", "--limit", "0"))
        self.assertIn("got 201", self.refused("players", "--limit", "201"))

    def test_errors_limit(self):
        self.assertIn("errors: --limit is at least 1", self.refused("errors", "--limit", "0"))
