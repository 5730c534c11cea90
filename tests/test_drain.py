"""
Tests for draining a gateway (a rolling upgrade), and the operators'
C{kick} and C{broadcast} commands (L{mmo.gateway.factory.GatewayFactory}),
with the SDK's side of a move (L{mmo.client.Client}).

Everything runs on a L{MemoryReactorClock} with the in-process bus and
C{StringTransport}s (or linked fake transports for the SDK), as in
L{tests.test_sessions}, whose harness these tests share.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.test import iosim

from mmo import client as sdk
from mmo.frontend.listener import directory_info
from mmo.gateway.handover import FORWARD_TIME
from mmo.gateway.operations import Operations
from mmo.process.seeding import row_caller
from mmo.wire import codes
from tests.test_sessions import PEER, WINDOW, Player, SessionTestCase


class FakeListener:
    """Stands in for a client listener: records that it stopped listening."""

    def __init__(self):
        self.listening = True

    def stopListening(self):
        self.listening = False
        return defer.succeed(None)


class FakeDirectory:
    """Stands in for the DirectoryService: counts the immediate refreshes."""

    def __init__(self, factory):
        self.factory = factory
        self.refreshed = []

    def refresh(self):
        self.refreshed.append(self.factory.sessions.draining)
        return defer.succeed(None)


def entry(port, load, realm="main", **more):
    return {
        "kind": "gateway",
        "realm": realm,
        "host": "gw.example",
        "port": port,
        "load": load,
        **more,
    }


class DrainTestCase(SessionTestCase):
    def setUp(self):
        super().setUp()
        self.b = self.gateway("gw-b")
        self.listener = FakeListener()
        self.directory = FakeDirectory(self.a)
        self.ops = Operations(self.a, self.a.sessions, self.bus, [self.listener], self.directory)

    def announce(self, name, info):
        self.successResultOf(self.bus.announce(name, info, 3600.0))

    def drain(self, **args):
        d = self.ops.drain(**args)
        self.clock.advance(0)
        return d


class DrainTests(DrainTestCase):
    def test_marks_draining_and_picks_least_loaded(self):
        """
        A drain stops the listeners, announces C{draining} at once, and
        sends every client to the least-loaded other live gateway of the
        realm: not itself, not a draining one, not another realm's.
        """
        self.announce("gw-a", entry(7001, 0))
        self.announce("gw-b", entry(7002, 3))
        self.announce("gw-c", entry(7003, 1, draining=True))
        self.announce("gw-d", entry(7004, 0, realm="other"))
        self.announce("gw-e", entry(7005, 2, websocket=7443))
        self.announce("gw-f", entry(None, 0))
        alice, _ = self.admit(self.a, "Alice")
        bob, _ = self.admit(self.a, "Bob")
        d = self.drain()
        self.assertTrue(self.a.sessions.draining)
        self.assertFalse(self.listener.listening)
        self.assertEqual(self.directory.refreshed, [True])
        for player in (alice, bob):
            move, bye = player.frames()
            self.assertEqual(
                move,
                {
                    "t": "session.move",
                    "gateway": "gw-e",
                    "host": "gw.example",
                    "port": 7005,
                    "websocket": 7443,
                },
            )
            self.assertNotIn("seq", move)
            self.assertEqual((bye["t"], bye["code"]), ("bye", codes.MOVED))
            self.assertEqual(
                (bye["host"], bye["port"], bye["gateway"]), ("gw.example", 7005, "gw-e")
            )
            self.assertFalse(player.open)
        self.assertNoResult(d)
        # The directory entry says so; a new client is not admitted.
        info = directory_info(
            self.a.process,
            self.listener_with_port(),
            load=self.a.load,
            draining=self.a.sessions.draining,
        )
        self.assertIs(info["draining"], True)
        late = Player(self.a)
        ticket = self.signer.issue("id-Carol", "Carol", "main")[0]
        [error] = late.request("auth", ticket=ticket)
        self.assertEqual(error["code"], codes.UNAVAILABLE)

    def listener_with_port(self):
        class Listener:
            port = None
            factory = self.a

        return Listener()

    def test_clients_resume_elsewhere_and_drain_completes(self):
        """
        Clients told to move resume on the other gateway with exactly what
        they missed; the drain fires once none is left, and stopping the
        drained gateway then does not end the moved sessions, whose late
        deliveries it keeps forwarding.
        """
        self.announce("gw-b", entry(7002, 0))
        player, reply = self.admit(self.a)
        session_id = reply["session"]
        self.deliver("gw-a", session_id, "before")
        self.assertEqual(player.pushes(), [(1, "before")])
        d = self.drain()
        self.assertEqual([f["t"] for f in player.frames()], ["session.move", "bye"])
        player.drop()
        self.deliver("gw-a", session_id, "while moving")
        self.assertNoResult(d)
        moved = Player(self.b)
        [resumed, *replayed] = moved.request("resume", token=reply["resume"], last_seq=1)
        self.assertEqual((resumed["t"], resumed["session"]), ("reply", session_id))
        self.assertEqual([(p["seq"], p["text"]) for p in replayed], [(2, "while moving")])
        self.assertEqual(
            self.successResultOf(d),
            {
                "target": "gw-b",
                "told": 1,
                "moved": 1,
                "ended": 0,
                "remaining": 0,
                "timed_out": False,
            },
        )
        self.ops.stop()
        self.successResultOf(self.a.stop())
        self.assertEqual(self.lobby.seen("ended"), [])
        self.assertEqual([c.gateway for c in self.lobby.seen("moved")], ["gw-b"])
        self.deliver("gw-a", session_id, "late")
        self.assertEqual(moved.pushes(), [(3, "late")])
        # The forwarding timer stopped with the gateway: it forwards until it exits.
        self.clock.advance(FORWARD_TIME + 1)
        self.assertEqual(self.a.handover.forwards.gateway(session_id), "gw-b")

    def test_timeout(self):
        """A client that never resumes: the drain reports it at the timeout."""
        self.announce("gw-b", entry(7002, 0))
        player, _ = self.admit(self.a)
        d = self.drain(timeout=5)
        player.drop()
        self.clock.advance(4.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        result = self.successResultOf(d)
        self.assertEqual((result["remaining"], result["timed_out"]), (1, True))
        # A second drain waits for its own result, like the first.
        again = self.drain(timeout=1)
        self.clock.advance(1)
        self.assertTrue(self.successResultOf(again)["timed_out"])

    def test_session_not_resumed_ends_within_the_timeout(self):
        """The resume window runs out before the drain's timeout: ended, and done."""
        self.announce("gw-b", entry(7002, 0))
        player, _ = self.admit(self.a)
        d = self.drain(timeout=WINDOW * 2)
        player.drop()
        self.clock.advance(WINDOW)
        result = self.successResultOf(d)
        self.assertEqual((result["ended"], result["moved"], result["timed_out"]), (1, 0, False))
        self.assertEqual(len(self.lobby.seen("ended")), 1)

    def test_empty_gateway_drains_at_once(self):
        d = self.drain()
        self.assertEqual(self.successResultOf(d)["told"], 0)

    def test_no_other_gateway(self):
        """
        With no other gateway live, clients get goodbye C{shutdown}; their
        sessions stay resumable (here, say, once a replacement listens).
        """
        self.announce("gw-a", entry(7001, 0))
        player, reply = self.admit(self.a)
        d = self.drain(timeout=10)
        [bye] = player.frames()
        self.assertEqual((bye["t"], bye["code"]), ("bye", codes.SHUTDOWN))
        player.drop()
        again = Player(self.b)
        [resumed] = again.request("resume", token=reply["resume"], last_seq=0)
        self.assertEqual(resumed["t"], "reply")
        result = self.successResultOf(d)
        self.assertEqual((result["target"], result["moved"]), (None, 1))

    def test_bad_timeout(self):
        for bad in (0, -1, "soon", True):
            self.assertRaises(ValueError, self.ops.drain, timeout=bad)
        self.assertFalse(self.a.sessions.draining)


class KickTests(DrainTestCase):
    def test_kick_by_name_or_id(self):
        """
        A kicked player's connection gets goodbye C{kicked} with the reason;
        the session ends for good (the services hear it, no resume).
        """
        alice, reply = self.admit(self.a, "Alice")
        self.admit(self.a, "Bob")
        self.assertEqual(self.successResultOf(self.ops.kick("Alice", reason="cheating")), 1)
        [bye] = alice.frames()
        self.assertEqual((bye["t"], bye["code"], bye["message"]), ("bye", codes.KICKED, "cheating"))
        self.assertEqual([c.name for c in self.lobby.seen("ended")], ["Alice"])
        again = Player(self.a)
        request_id = again.send("resume", token=reply["resume"], last_seq=0)
        self.assertRefused(again.frames(), request_id)
        # By account id; a detached session is kicked too.
        self.assertEqual(len(self.a.sessions.registry), 1)
        self.assertEqual(self.successResultOf(self.ops.kick("id-Bob")), 1)
        self.assertEqual(len(self.a.sessions.registry), 0)
        self.assertEqual(self.successResultOf(self.ops.kick("Nobody")), 0)

    def test_bad_arguments(self):
        self.assertRaises(ValueError, self.ops.kick, 42)
        self.assertRaises(ValueError, self.ops.kick, "")
        self.assertRaises(ValueError, self.ops.kick, "Alice", reason=None)


class BroadcastTests(DrainTestCase):
    def test_broadcast(self):
        """Every session gets the notice as a push; a detached one on resume."""
        alice, _ = self.admit(self.a, "Alice")
        bob, bob_reply = self.admit(self.a, "Bob")
        bob.drop()
        self.assertEqual(self.ops.broadcast("restart in 5 minutes"), 2)
        [notice] = alice.frames()
        self.assertEqual(
            notice, {"t": "server.notice", "text": "restart in 5 minutes", "seq": notice["seq"]}
        )
        again = Player(self.a)
        [_, replayed] = again.request("resume", token=bob_reply["resume"], last_seq=0)
        self.assertEqual(
            (replayed["t"], replayed["text"]), ("server.notice", "restart in 5 minutes")
        )

    def test_bad_text(self):
        self.admit(self.a)
        self.assertRaises(ValueError, self.ops.broadcast, None)
        self.assertRaises(ValueError, self.ops.broadcast, "x" * 10_000_000)


class SessionsListTests(DrainTestCase):
    def test_pages(self):
        """C{sessions}: the sessions held here, in session id order, a page at a time."""
        alice, _ = self.admit(self.a, "Alice")
        bob, _ = self.admit(self.a, "Bob")
        bob.drop()
        self.admit(self.a, "Carol")
        ids = sorted(s.id for s in self.a.sessions)
        first = self.ops.list_sessions(limit=2)
        self.assertEqual([r["session"] for r in first["sessions"]], ids[:2])
        self.assertEqual((first["total"], first["more"]), (3, True))
        rest = self.ops.list_sessions(after=ids[1], limit=2)
        self.assertEqual([r["session"] for r in rest["sessions"]], ids[2:])
        self.assertFalse(rest["more"])
        rows = {r["name"]: r for r in first["sessions"] + rest["sessions"]}
        self.assertEqual(set(rows), {"Alice", "Bob", "Carol"})
        self.assertEqual(rows["Alice"]["account"], "id-Alice")
        self.assertTrue(rows["Alice"]["attached"])
        self.assertFalse(rows["Bob"]["attached"])

    def test_rows_carry_the_caller(self):
        """A row has all a service needs to know the session as its gateway does."""
        self.admit(self.a, "Alice")
        (session,) = self.a.sessions
        (row,) = self.ops.list_sessions()["sessions"]
        self.assertEqual(row_caller(session.caller.gateway, row), session.caller)
        self.assertEqual(row["incarnation"], self.a.sessions.incarnation)

    def test_bounded(self):
        self.admit(self.a, "Alice")
        self.assertEqual(len(self.ops.list_sessions(limit=10**9)["sessions"]), 1)
        for bad in ({"limit": 0}, {"limit": "5"}, {"limit": True}, {"after": 3}):
            self.assertRaises(ValueError, self.ops.list_sessions, **bad)


class SDKMoveTests(DrainTestCase):
    """The SDK follows a move by itself, over linked fake transports."""

    def link(self, factory, client):
        server = factory.buildProtocol(PEER)
        return iosim.connect(
            server,
            iosim.makeFakeServer(server),
            client,
            iosim.makeFakeClient(client),
            clock=self.clock,
        )

    def settle(self):
        for _ in range(5):
            self.clock.advance(0)
            for pump in self.pumps:
                pump.flush()

    def test_follows_move(self):
        """
        On C{session.move} and goodbye C{moved} the client reconnects to the
        gateway named, resumes, and carries on: a request made meanwhile
        waits and is answered there; pushes arrive once each, in order; the
        C{moved} handlers hear of it; C{whenClosed} does not fire.
        """
        self.announce("gw-b", entry(7002, 0))
        client = sdk.Client()
        self.pumps = [self.link(self.a, client)]
        targets = []

        def connector(host, port):
            targets.append((host, port))
            self.pumps.append(self.link(self.b, client))
            return defer.succeed(None)

        client.connector = connector
        client.clock = self.clock
        news, moves = [], []
        client.on("news", news.append)
        client.on("moved", moves.append)
        ticket = self.signer.issue("id-Alice", "Alice", "main")[0]
        auth = client.request("auth", ticket=ticket)
        self.settle()
        session = self.successResultOf(auth)["session"]
        self.deliver("gw-a", session, "one")
        self.settle()
        drained = self.ops.drain()
        self.clock.advance(0)
        self.pumps[0].flush()
        waiting = client.request("ping")
        self.deliver("gw-a", session, "two")
        self.settle()
        self.assertEqual(targets, [("gw.example", 7002)])
        self.assertEqual(self.successResultOf(drained)["moved"], 1)
        self.assertIn("time", self.successResultOf(waiting))
        self.assertEqual(
            moves,
            [
                {
                    "gateway": "gw-b",
                    "host": "gw.example",
                    "port": 7002,
                    "session": session,
                    "replayed": 1,
                }
            ],
        )
        self.deliver("gw-a", session, "three")
        self.deliver("gw-b", session, "four")
        self.settle()
        self.assertEqual(
            [(m["seq"], m["text"]) for m in news],
            [(1, "one"), (2, "two"), (3, "three"), (4, "four")],
        )
        self.assertNoResult(client.whenClosed())
        self.assertEqual(self.b.sessions.registry.by_id[session].state, "attached")

    def test_move_fails(self):
        """A move that cannot connect: C{whenClosed} says so, waiting requests fail."""
        self.announce("gw-b", entry(7002, 0))
        client = sdk.Client()
        self.pumps = [self.link(self.a, client)]
        client.connector = lambda host, port: defer.fail(ConnectionRefusedError("no"))
        ticket = self.signer.issue("id-Alice", "Alice", "main")[0]
        auth = client.request("auth", ticket=ticket)
        self.settle()
        self.successResultOf(auth)
        self.ops.drain()
        self.clock.advance(0)
        self.settle()
        closed = self.successResultOf(client.whenClosed())
        self.assertEqual(closed.code, "moved")
        self.assertIn("gw.example:7002", closed.message)
        failed = client.request("ping")
        self.failureResultOf(failed, sdk.ConnectionClosed)

    def test_without_connector(self):
        """A client not made by connect() reports the goodbye and keeps the target."""
        self.announce("gw-b", entry(7002, 0))
        client = sdk.Client()
        self.pumps = [self.link(self.a, client)]
        ticket = self.signer.issue("id-Alice", "Alice", "main")[0]
        client.request("auth", ticket=ticket)
        self.settle()
        self.ops.drain()
        self.settle()
        self.assertEqual(self.successResultOf(client.whenClosed()).code, "moved")
        self.assertEqual(client.move_target["port"], 7002)
