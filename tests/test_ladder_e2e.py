"""
Ranked play end to end, on a real cluster of twistd processes sharing a
private Redis: a login server, a gateway, the lobby running the ranked duel
example (C{examples/ranked_duel.py}) and two ladder processes.  Players queue, are
matched into a lobby room, the room's rule reports the result, ratings and
ranks move; the result reported again counts once; a client's result is
refused; the queue survives the death of the ladder process serving it,
which the other ladder process takes over; and the ranked bots play.
"""

from __future__ import annotations

import os

from twisted.internet import reactor
from twisted.trial import unittest

from mmo.bus import make_bus
from mmo.client import ServerError, connect
from mmo.ladder.report import report_result
from mmo.ladder.service import QUEUE_LEASE_KEY
from tests.support import FAST_HASH, ON_REDIS, PASSWORD, sleep, spawn_cluster, until
from tests.test_bot import run_bots
from tests.test_twistd import spawn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")

#: Two ladder processes: one serves the queue, the other stands by.
CLUSTER = (
    ("login", "login"),
    ("gateway-1", "gateway"),
    ("lobby", "lobby"),
    ("ladder", "ladder"),
    ("ladder-2", "ladder"),
)

SETTINGS = (
    FAST_HASH
    + ON_REDIS
    + """
[lobby]
lobby_class = "ranked_duel.RankedDuelLobby"

[ladders.duel]
modes = { "1v1" = [1, 1] }
queue_gap = 100.0
queue_gap_growth = 50.0
queue_gap_max = 1000.0
match_timeout = 60.0
queue_lease = 2.0
"""
)


class Player:
    """A client logged in and admitted on the gateway, with its pushes."""

    def __init__(self, cluster, name: str):
        self.cluster = cluster
        self.name = name
        self.pushes: dict[str, list] = {}
        self.client = None

    async def join(self) -> Player:
        cluster = self.cluster
        login = await connect(
            reactor, "127.0.0.1", cluster.ports["login"], ca=cluster.ca, hostname="localhost"
        )
        await login.request("register", name=self.name, password=PASSWORD)
        ticket = await login.request("login", name=self.name, password=PASSWORD)
        await login.close()
        gateway = ticket["gateway"]
        self.client = await connect(
            reactor, gateway["host"], gateway["port"], ca=cluster.ca, hostname="localhost"
        )
        for kind in ("ladder.matched", "ladder.result", "room.duel.result"):
            self.client.on(kind, self.pushes.setdefault(kind, []).append)
        await self.client.request("auth", ticket=ticket["ticket"])
        return self

    def request(self, kind: str, **fields):
        return self.client.request(kind, **fields)

    async def answered(self, kind: str, **fields) -> dict:
        """C{kind}'s reply, asked again while the service is unavailable (restarting)."""
        replies = []

        async def ask():
            try:
                replies.append(await self.request(kind, **fields))
            except ServerError as e:
                if e.code != "unavailable":
                    raise
            return replies

        await until(ask, what=f"an answer to {kind}")
        return replies[0]


class RankedEndToEndTests(unittest.TestCase):
    timeout = 120

    async def setUp(self):
        self.cluster = await spawn_cluster(self, CLUSTER, SETTINGS, pythonpath=EXAMPLES)
        self.players = []

    async def player(self, name: str) -> Player:
        player = await Player(self.cluster, name).join()
        self.players.append(player)
        self.addCleanup(player.client.close)
        return player

    async def test_ranked_play(self):
        alice, bob = await self.player("alice"), await self.player("bobby")

        # A client cannot report a result.
        with self.assertRaises(ServerError) as refused:
            await alice.request("ladder.report", ladder="duel", match="any", ranks=[0, 1])
        self.assertEqual(refused.exception.code, "not_allowed")

        # Queued and matched into one lobby room.
        for player in (alice, bob):
            joined = await player.request("ladder.queue.join", ladder="duel", mode="1v1")
            self.assertTrue(joined["queued"])
        await until(lambda: alice.pushes["ladder.matched"] and bob.pushes["ladder.matched"])
        [matched] = alice.pushes["ladder.matched"]
        self.assertEqual(bob.pushes["ladder.matched"][0]["room"], matched["room"])
        match = matched["match"]
        room = await alice.request("room.members")
        self.assertEqual(room["room"]["id"], matched["room"]["id"])
        self.assertEqual(sorted(m["name"] for m in room["members"]), ["alice", "bobby"])

        # The room's rule decides and reports; ratings and ranks move.
        await alice.request("room.duel.throw", throw="rock")
        await bob.request("room.duel.throw", throw="scissors")
        await until(lambda: alice.pushes["ladder.result"] and bob.pushes["ladder.result"])
        [won], [lost] = alice.pushes["ladder.result"], bob.pushes["ladder.result"]
        self.assertEqual(won["match"], match)
        self.assertGreater(won["after"], won["before"])
        self.assertLess(lost["after"], lost["before"])
        self.assertEqual((won["rank"], lost["rank"]), (1, 2))
        top = await bob.request("ladder.top", ladder="duel", start=0, count=10)
        self.assertEqual(
            [(e["name"], e["rank"]) for e in top["entries"]], [("alice", 1), ("bobby", 2)]
        )
        rating = await alice.request("ladder.rating", ladder="duel")
        self.assertEqual((rating["games"], rating["rating"]), (1, won["after"]))

        # The same result reported again (by game code, over the bus): once.
        bus = make_bus(self.cluster.config)
        await bus.start()
        self.addCleanup(bus.stop)
        again = await report_result(bus, "duel", match, ranks=[1, 0], retry=1.0, give_up=20.0)
        self.assertTrue(again["already_applied"])
        self.assertEqual(await alice.request("ladder.rating", ladder="duel"), rating)
        await sleep(0.5)
        self.assertEqual(len(alice.pushes["ladder.result"]), 1)

    async def test_the_queue_survives_its_holder(self):
        """The ladder process serving the queue killed: the other serves it."""
        cluster = self.cluster
        bus = make_bus(cluster.config)
        await bus.start()
        self.addCleanup(bus.stop)
        carol = await self.player("carol")
        # The gateway routes to the first ladder process, which serves the
        # queue or relays to the one that does.
        await carol.request("ladder.queue.join", ladder="duel", mode="1v1")

        async def saved() -> bool:
            state = await bus.get("ladder:queue")
            return bool(state and state["queue"]["queues"])

        await until(saved, what="the queue saved by its holder")
        ladders = await bus.services("ladder")
        [holder] = [name for name, info in ladders.items() if not info.get("standby")]
        held = await bus.lease_holder(QUEUE_LEASE_KEY)
        self.assertEqual(held[0].split("/")[0], f"ladder-{ladders[holder]['pid']}")
        cluster.transports[holder].signalProcess("KILL")
        await cluster.children[holder].whenExited()
        if holder == "ladder":
            # The process the gateway routes to: started again (as the
            # manager would), it stands by and relays.
            cluster.children[holder], cluster.transports[holder] = spawn(
                self, cluster.config.file, "mmo-ladder", "--process", holder, pythonpath=EXAMPLES
            )
            await cluster.children[holder].whenLogged(r"ladder: ready")
        status = await carol.answered("ladder.queue.status")
        self.assertTrue(status["queued"])
        dave = await self.player("david")
        await dave.answered("ladder.queue.join", ladder="duel", mode="1v1")
        await until(lambda: carol.pushes["ladder.matched"] and dave.pushes["ladder.matched"])
        self.assertEqual(
            carol.pushes["ladder.matched"][0]["match"], dave.pushes["ladder.matched"][0]["match"]
        )
        self.assertGreater((await bus.lease_holder(QUEUE_LEASE_KEY))[1], held[1])

    async def test_ranked_bots(self):
        report = await run_bots(
            self,
            self.cluster.config.file,
            self.cluster.ports["login"],
            'scenario = "ranked"\nthink = 0.2\nrequeue_delay = 0.2\n',
            bots=4,
            duration=5,
            max_seconds=40,
        )
        ranked = report["ranked"]
        self.assertGreaterEqual(ranked["matched"], 4)
        self.assertGreaterEqual(ranked["results"], 4)
        self.assertEqual(ranked["results"], ranked["wins"] + ranked["losses"] + ranked["ties"])
        # Every decided duel has a winner and a loser, or two who tied.
        self.assertLessEqual(abs(ranked["wins"] - ranked["losses"]), 4)
        self.assertGreater(report["requests"]["ladder.queue.join"]["count"], 4)
        self.assertEqual(report["errors"].get("room.duel.throw", {}), {})
