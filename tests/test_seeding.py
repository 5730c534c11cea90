"""
Who is online, learnt from the gateways when a game-service process starts
(L{mmo.process.seeding}): every gateway of the directory asked a page at a
time on the in-process bus, a gateway that does not answer skipped at its
deadline without holding up the others, what the service heard meanwhile
winning over the gateways' older news, and the control helper that pages
(L{mmo.process.control.session_pages}).
"""

from __future__ import annotations

from twisted.internet import task
from twisted.trial import unittest

from mmo.bus.memory import MemoryBus
from mmo.game.gateways import KnownSessions
from mmo.game.presence import Presence
from mmo.game.service import Caller
from mmo.process import control
from mmo.process.seeding import SessionSeeding, row_caller
from tests.support import LogCapture, turn

#: Most rows a fake gateway answers at once: small, so that pages have boundaries.
PAGE = 2

#: Seconds each gateway has to list its sessions.
DEADLINE = 5.0


def row(session: str, name: str, **fields) -> dict:
    """A row as a gateway's C{sessions} lists it."""
    return {
        "session": session,
        "account": name,
        "name": name,
        "character": name.title(),
        "zone": None,
        "attached": True,
        "account_id": f"id-{name}",
        "realm": "main",
        "character_id": f"c-{name}",
        "in_world": False,
        "incarnation": "inc-1",
        **fields,
    }


class FakeGateway:
    """
    A gateway's control channel answering C{sessions} from C{rows}, at most
    L{PAGE} at a time, each answer C{delay} clock seconds late.
    """

    def __init__(self, clock, rows, delay: float = 0.0):
        self.clock = clock
        self.rows = sorted(rows, key=lambda r: r["session"])
        self.delay = delay
        self.asked: list[str] = []

    def sessions(self, after: str = "", limit: int = 100):
        self.asked.append(after)
        chosen = [r for r in self.rows if r["session"] > after]
        page = {"sessions": chosen[: min(limit, PAGE)], "more": len(chosen) > PAGE}
        return task.deferLater(self.clock, self.delay, lambda: page)


class PresenceService:
    """A service that keeps presence as the economy does, or fails for one account."""

    kind = "test"

    def __init__(self, failing: str = ""):
        self.presence = Presence()
        self.failing = failing

    async def session_found(self, caller: Caller) -> None:
        if caller.account_id == self.failing:
            raise RuntimeError("the store is away")
        if self.presence.unheard(caller.session):
            self.presence.track(caller)

    async def session_event(self, caller: Caller, event: str) -> None:
        if event == "ended":
            self.presence.end(caller.session)
        else:
            self.presence.track(caller)


class SeedingTests(unittest.TestCase):
    async def setUp(self):
        self.clock = task.Clock()
        self.bus = MemoryBus(reactor=self.clock)
        await self.bus.start()
        self.addCleanup(self.bus.stop)
        self.service = PresenceService(failing="id-mallory")
        self.known = KnownSessions()
        self.seeding = SessionSeeding(self.service, self.known, self.bus, self.clock, DEADLINE)
        self.logs = LogCapture(self)
        await self.bus.announce("chat-1", {"kind": "chat"}, 60)

    async def gateway(self, name: str, rows, delay: float = 0.0, answers: bool = True):
        """A gateway in the directory; listening on its control channel if it C{answers}."""
        await self.bus.announce(name, {"kind": "gateway"}, 60)
        fake = FakeGateway(self.clock, rows, delay)
        if answers:
            channel = control.ControlService(self.bus, name)
            channel.register("sessions", fake.sessions)
            await channel.start()
            self.addCleanup(channel.stop)
        return fake

    def settle(self, seconds: float = 0.0) -> None:
        """Let C{seconds} pass, a tenth at a time, each with what the bus holds delivered."""
        until = self.clock.seconds() + seconds
        while True:
            for _ in range(10):
                turn(self.clock)
            if self.clock.seconds() >= until:
                return
            self.clock.advance(min(0.1, until - self.clock.seconds()))

    def online(self) -> dict[str, Caller]:
        return {s: self.service.presence.get(s) for s in ("a", "b", "c", "d", "e", "f")}

    async def test_every_gateway_every_page(self):
        """Each gateway is asked after the last session of its previous page, until no more."""
        one = await self.gateway("gw-1", [row(s, f"p{s}") for s in "abcde"])
        two = await self.gateway("gw-2", [row("f", "pf", zone="r0", in_world=True)])
        self.seeding.start()
        self.settle()
        self.assertEqual(self.successResultOf(self.seeding.done), 6)
        self.assertEqual(one.asked, ["", "b", "d"])
        self.assertEqual(two.asked, [""])
        found = self.service.presence.get("f")
        self.assertEqual(
            found,
            Caller(
                "f", "gw-2", "id-pf", "pf", "main", "c-pf", "Pf", "r0", True, incarnation="inc-1"
            ),
        )
        self.assertEqual(self.service.presence.find("Pc").gateway, "gw-1")
        self.assertEqual(self.known.get("f"), found)
        self.assertEqual(len(self.known), 6)

    async def test_silent_gateway(self):
        """One that does not answer is skipped at its deadline; the others are not held up."""
        await self.gateway("gw-1", [row("a", "pa")])
        await self.gateway("gw-9", [row("b", "pb")], answers=False)
        self.seeding.start()
        self.settle()
        self.assertEqual(self.service.presence.get("a").name, "pa")
        self.assertNoResult(self.seeding.done)
        self.settle(DEADLINE)
        self.assertEqual(self.successResultOf(self.seeding.done), 1)
        (line,) = self.logs.matching("gw-9", "not learnt")
        self.assertIn("did not list its sessions within 5s", line)

    async def test_deadline_over_all_pages(self):
        """The deadline is the whole listing's: a slow gateway is cut off between pages."""
        slow = await self.gateway("gw-1", [row(s, f"p{s}") for s in "abcdef"], delay=2)
        self.seeding.start()
        self.settle(DEADLINE + 1)
        self.assertEqual(self.successResultOf(self.seeding.done), 4)
        self.assertEqual(slow.asked, ["", "b", "d"])
        self.assertIsNone(self.service.presence.get("e"))
        self.assertTrue(self.logs.matching("gw-1", "not learnt", "within 5s"))

    async def test_heard_meanwhile_wins(self):
        """An event that arrives while the pages are on their way wins; an ended session stays."""
        await self.gateway("gw-1", [row("a", "pa"), row("b", "pb"), row("c", "pc")], delay=1)
        self.seeding.start()
        self.settle()
        moved = row_caller("gw-2", row("a", "pa", zone="r3", incarnation="inc-7"))
        for caller, event in ((moved, "moved"), (row_caller("gw-1", row("b", "pb")), "ended")):
            self.known.event(caller, event)
            await self.service.session_event(caller, event)
        self.settle(3)
        self.assertEqual(self.successResultOf(self.seeding.done), 1)
        self.assertEqual(self.service.presence.get("a"), moved)
        self.assertEqual(self.known.get("a"), moved)
        self.assertIsNone(self.service.presence.get("b"))
        self.assertTrue(self.service.presence.ended("b"))
        self.assertIsNone(self.known.get("b"))
        self.assertEqual(self.service.presence.get("c").name, "pc")

    async def test_bad_rows_and_failures(self):
        """Rows with no caller, and a session the service fails on, are skipped, logged."""
        older = {k: v for k, v in row("b", "pb").items() if k != "account_id"}
        await self.gateway("gw-1", [row("a", "pa"), older, row("c", "mallory"), row("d", "pd")])
        self.seeding.start()
        self.settle()
        self.assertEqual(self.successResultOf(self.seeding.done), 2)
        self.assertEqual({s for s, c in self.online().items() if c}, {"a", "d"})
        self.assertTrue(self.logs.matching("1 sessions of gw-1 skipped"))
        self.assertTrue(self.logs.matching("session c of gw-1 not taken"))
        self.flushLoggedErrors(RuntimeError)

    async def test_no_page(self):
        """A gateway answering something that is no page is skipped, and named."""
        await self.bus.announce("gw-1", {"kind": "gateway"}, 60)
        channel = control.ControlService(self.bus, "gw-1")
        channel.register("sessions", lambda after, limit: {"sessions": [{"session": 3}]})
        await channel.start()
        self.addCleanup(channel.stop)
        self.seeding.start()
        self.settle()
        self.assertEqual(self.successResultOf(self.seeding.done), 0)
        self.assertTrue(self.logs.matching("gw-1", "not learnt", "no page"))

    async def test_stop(self):
        """Stopping the process cancels the asking; nothing is learnt after."""
        await self.gateway("gw-1", [row("a", "pa")], delay=1)
        self.seeding.start()
        self.settle()
        self.seeding.stop()
        self.assertEqual(self.successResultOf(self.seeding.done), 0)
        self.settle(1)
        self.assertIsNone(self.service.presence.get("a"))
        self.assertFalse(self.logs.matching("not learnt"))


class RowCallerTests(unittest.TestCase):
    def test_rows(self):
        self.assertEqual(row_caller("gw-1", row("a", "pa")).character_id, "c-pa")
        older = {k: v for k, v in row("a", "pa").items() if k not in ("realm", "incarnation")}
        self.assertEqual(row_caller("gw-1", older).realm, "main")
        for bad in ({"account_id": None}, {"session": ""}, {"zone": 3}, {"realm": ["x"]}):
            self.assertIsNone(row_caller("gw-1", {**row("a", "pa"), **bad}), bad)


class KnownSessionsFoundTests(unittest.TestCase):
    def test_found(self):
        """A session listed is news only if it was neither heard of nor ended."""
        known = KnownSessions()
        heard, listed = Caller("a", "gw-2", "id-a", "a"), Caller("a", "gw-1", "id-a", "a")
        known.heard(heard)
        self.assertFalse(known.found(listed))
        self.assertEqual(known.get("a"), heard)
        known.ended("b")
        self.assertFalse(known.found(Caller("b", "gw-1", "id-b", "b")))
        self.assertIsNone(known.get("b"))
        self.assertTrue(known.found(Caller("c", "gw-1", "id-c", "c")))
        self.assertEqual(len(known), 2)
