"""
The seamless world end to end, written once: a player walks across the
border between a world's two regions and back, without reconnecting, while
another watches from the other side (L{BorderWalk}).  The test cases of
L{tests.test_world_e2e}, L{tests.test_world_websocket} and
L{tests.test_world_cluster} run it in the standalone server
(L{start_standalone}) and in a cluster of twistd processes, one zone process
per region (L{start_cluster}), the walker over TCP (L{tcp_player}, with
L{mmo.client}) or over secure WebSocket (L{browser_player}, with a client
library the project does not use itself, C{websockets}); other end-to-end
tests use the servers and players on their own.
"""

from __future__ import annotations

import dataclasses

import websockets.exceptions
from twisted.internet import defer, reactor

from mmo import tls
from mmo.client import connect
from tests.support import (
    FAST_HASH,
    PASSWORD,
    STANDALONE,
    WEBSOCKET,
    deployment,
    sleep,
    spawn_cluster,
    until,
)
from tests.test_cluster import SETTINGS
from tests.test_login_e2e import started
from tests.test_twistd import spawn
from tests.test_websocket import Browser

#: Two regions side by side, the border at x = 100.
TWO_REGIONS = """
[world]
width = 200.0
height = 100.0
columns = 2
rows = 1
tick_rate = 20.0
aoi_radius = 20.0
ghost_margin = 25.0
hysteresis = 2.0
max_speed = 8.0
npcs = 2
"""

#: Where new players appear: in the west region, near the border.
SPAWN = (92.0, 50.0)

WORLD = TWO_REGIONS + f"spawn = [{SPAWN[0]}, {SPAWN[1]}]\n"

#: The world of L{WORLD}, its two regions served by two zone processes.
CLUSTER_WORLD = WORLD + 'zones = ["zone-1", "zone-2"]\n'

#: Seconds between inputs, and units per input: 6 units/s, below max_speed.
STEP_TIME = 0.05
STEP = 0.3

#: A character attribute of the game's, which must survive the handoffs.
ATTRS = {"hp": 42}

#: The processes of the cluster: login, a gateway, the lobby, chat and two zones.
CLUSTER = (
    ("login", "login"),
    ("gateway-1", "gateway"),
    ("lobby", "lobby"),
    ("chat", "chat"),
    ("zone-1", "zone"),
    ("zone-2", "zone"),
)


@dataclasses.dataclass
class Servers:
    """
    A started deployment, as its players reach it.

    @ivar ca: The deployment's CA file.
    @ivar login: The TLS port where players register and log in.
    @ivar gateway: The TLS port of the gateway the tickets name.
    @ivar browsers: That gateway's secure WebSocket port, if it has one.
    @ivar config_file: The deployment's config file.
    @ivar children: Process name -> its L{tests.test_twistd.TwistdProcess}.
    """

    ca: str
    login: int
    gateway: int
    browsers: int | None
    config_file: str
    children: dict


async def start_standalone(testcase, extra: str = "", browsers: bool = False) -> Servers:
    """
    The standalone process (C{twistd mmo}) with the world of L{WORLD} and
    C{extra} settings; with C{browsers}, on secure WebSocket too.
    """
    processes = STANDALONE + (WEBSOCKET if browsers else "")
    config = deployment(testcase, processes, extra=FAST_HASH + WORLD + extra)
    child, _ = spawn(testcase, config.file)
    wss = None
    if browsers:
        match = await child.whenLogged(r"secure WebSocket 127\.0\.0\.1:(\d+)")
        wss = int(match.group(1))
    port = await started(child, "mmo")
    ca = tls.ca_path(config.deployment.tls_dir)
    return Servers(ca, port, port, wss, config.file, {"mmo": child})


async def start_cluster(testcase, browsers: bool = False) -> Servers:
    """
    L{CLUSTER} on a private Redis, with the world of L{CLUSTER_WORLD}; with
    C{browsers}, gateway-1 on secure WebSocket too.
    """
    processes = [
        (name, kind, ("websocket",)) if browsers and name == "gateway-1" else (name, kind)
        for name, kind in CLUSTER
    ]
    cluster = await spawn_cluster(testcase, processes, SETTINGS + CLUSTER_WORLD)
    wss = None
    if browsers:
        match = await cluster.children["gateway-1"].whenLogged(
            r"gateway-1: browsers on secure WebSocket 127\.0\.0\.1:(\d+)"
        )
        wss = int(match.group(1))
    return Servers(
        cluster.ca,
        cluster.ports["login"],
        cluster.ports["gateway-1"],
        wss,
        cluster.config.file,
        cluster.children,
    )


class Player:
    """
    A client in the world: what it was pushed (every C{world.update} from
    the first, even one that came with the C{zone.enter} reply) and where
    its own entity is.

    @ivar received: The C{world.update} messages, in order.
    @ivar seen: Entity id -> where this player last saw it.
    @ivar entered: Every entity that ever entered its view.
    @ivar left: The entities that left its view, in order.
    @ivar zones: The zones it was told it moved to (C{zone.changed}).
    @ivar corrections: The C{world.correct} messages.
    @ivar gateway: The gateway its login ticket named (C{name}, C{host}, C{port}).
    @ivar world: The map as the C{zone.enter} reply described it.
    @ivar movement: The movement rules as the C{zone.enter} reply gave them.
    @ivar chats: The C{chat.message} pushes, in order.
    """

    def __init__(self, client, gateway: dict):
        self.gateway = gateway
        self.id: str | None = None
        self.seq = 0
        self.x = self.y = None
        self.zones: list[str] = []
        self.world: dict | None = None
        self.movement: dict | None = None
        self.chats: list[dict] = []
        self.corrections: list[dict] = []
        self.entered: set[str] = set()
        self.left: list[str] = []
        self.received: list[dict] = []
        self.seen: dict[str, tuple[float, float]] = {}
        self.attach(client)

    def attach(self, client) -> None:
        """Receive C{client}'s pushes (a new connection, before it resumes)."""
        self.client = client
        client.on("world.update", self.updated)
        client.on("world.correct", self.corrections.append)
        client.on("zone.changed", lambda message: self.zones.append(message["zone"]))
        client.on("chat.message", self.chats.append)

    def placed(self, entered: dict) -> None:
        """Its entity is the one of the C{zone.enter} reply C{entered}."""
        self.id = entered["entity"]
        self.seq = entered["input"]
        self.x, self.y = entered["x"], entered["y"]
        self.world = entered["world"]
        self.movement = entered["movement"]

    def updated(self, message: dict) -> None:
        self.received.append(message)
        if message.get("reset"):
            # A restored zone starts the view over.
            self.seen.clear()
        self.left.extend(message["leave"])
        for view in message["enter"]:
            self.entered.add(view["id"])
            self.seen[view["id"]] = (view["x"], view["y"])
        for change in message["update"]:
            if "x" in change:
                self.seen[change["id"]] = (change["x"], change["y"])
        for gone in message["leave"]:
            self.seen.pop(gone, None)

    def views(self, entity_id: str, key: str = "enter") -> list[dict]:
        """What this player was shown of C{entity_id} in its updates' C{key} lists."""
        return [v for m in self.received for v in m[key] if v["id"] == entity_id]

    def attrs(self, entity_id: str) -> dict | None:
        """The attributes of C{entity_id} as this player's client knows them now."""
        found = None
        for view in self.views(entity_id, "enter") + self.views(entity_id, "update"):
            if "attrs" in view:
                found = view["attrs"]
        return found

    def said(self, channel: str) -> list[str]:
        """The texts of the C{chat.message} pushes of C{channel} this player got."""
        return [m["text"] for m in self.chats if m["channel"] == channel]

    def heard(self, channel: str, text: str) -> defer.Deferred:
        """Fire once this player got C{text} on C{channel}."""
        return until(
            lambda: text in self.said(channel),
            what=lambda: f"{text!r} on {channel}: got {self.said(channel)}",
        )

    async def move(self, x: float, y: float) -> None:
        self.seq += 1
        await self.client.request("zone.move", seq=self.seq, x=x, y=y)
        self.x, self.y = x, y

    async def walk_to(self, x: float) -> None:
        """Walk along y to C{x} at a legal speed."""
        while abs(x - self.x) > 1e-9:
            step = max(-STEP, min(STEP, x - self.x))
            await self.move(round(self.x + step, 6), self.y)
            await sleep(STEP_TIME)

    def caught_up(self, zone_changes: int) -> defer.Deferred:
        """
        Fire once this player was told of C{zone_changes} zone changes and
        sees its own entity where it walked to: its zone's pushes arrived.
        """
        return until(
            lambda: len(self.zones) >= zone_changes and self.seen.get(self.id) == (self.x, self.y),
            what=lambda: (
                f"{self.id} told of {zone_changes} zone changes and seen where it walked "
                f"{(self.x, self.y)}: zones {self.zones}, seen at {self.seen.get(self.id)}"
            ),
        )


async def log_in(ca: str, port: int, name: str) -> dict:
    """Register C{name} and log in over TLS at C{port}: the ticket."""
    client = await connect(reactor, "127.0.0.1", port, ca=ca, hostname="localhost")
    await client.request("register", name=name, password=PASSWORD)
    ticket = await client.request("login", name=name, password=PASSWORD)
    await client.close()
    return ticket


async def enter_world(testcase, client, name: str, ticket: dict) -> Player:
    """
    On C{client}, admitted with C{ticket}: create a character with L{ATTRS}
    and choose it, enter the world and its zone, at L{SPAWN} in the west
    region.
    """
    created = await client.request("character.create", name=name + "son", data=ATTRS)
    character = created["character"]
    testcase.assertEqual(character["data"], ATTRS)
    await client.request("character.choose", character=character["id"])
    player = Player(client, ticket["gateway"])
    await client.request("world.enter")
    entered = await client.request("zone.enter")
    testcase.assertEqual(entered["entity"], character["id"])
    testcase.assertEqual(entered["zone"], "r0c0")
    testcase.assertEqual((entered["x"], entered["y"]), SPAWN)
    player.placed(entered)
    return player


async def tcp_player(testcase, ca: str, login_port: int, name: str) -> Player:
    """
    Over TLS with L{mmo.client}: register and log in at C{login_port}, be
    admitted by the gateway the ticket names, enter the world.
    """
    ticket = await log_in(ca, login_port, name)
    gateway = ticket["gateway"]
    client = await connect(reactor, gateway["host"], gateway["port"], ca=ca, hostname="localhost")
    testcase.addCleanup(client.close)
    await client.request("auth", ticket=ticket["ticket"])
    return await enter_world(testcase, client, name, ticket)


async def browser_player(
    testcase, ca: str, port: int, name: str, login_port: int | None = None
) -> Player:
    """
    Over secure WebSocket at C{port}: say hello, present a ticket, enter the
    world.  The ticket comes from the login server at C{login_port} over
    TLS or, without one, from this connection (register and log in on it).
    """
    if login_port is not None:
        ticket = await log_in(ca, login_port, name)
    browser = await Browser(testcase, port, ca, server_hostname="localhost").connect()
    client = BrowserClient(browser)
    testcase.addCleanup(client.close)
    await client.request("hello", versions=[1])
    if login_port is None:
        await client.request("register", name=name, password=PASSWORD)
        ticket = await client.request("login", name=name, password=PASSWORD)
    admitted = await client.request("auth", ticket=ticket["ticket"])
    testcase.assertEqual(admitted["name"], name)
    return await enter_world(testcase, client, name, ticket)


class BrowserClient:
    """
    The little a game's browser code needs on top of a L{Browser}: requests
    matched to their replies by id, pushes handed to handlers by type, and
    the server's heartbeats answered.  It has the part of
    L{mmo.client.Client}'s interface that L{Player} uses (C{request},
    C{on}, C{whenClosed}).

    @ivar disconnected: Whether the server closed the connection (rather
        than this client, in the test's cleanup).
    @ivar unexpected: Replies and errors to no pending request.
    """

    def __init__(self, browser: Browser):
        self.browser = browser
        self.disconnected = False
        self._next_id = 0
        self._pending: dict[int, defer.Deferred] = {}
        self._handlers: dict[str, list] = {}
        self._closing = False
        self._closed: list[defer.Deferred] = []
        self.unexpected: list[dict] = []
        self._reading = defer.ensureDeferred(self._read())

    def on(self, kind: str, handler) -> None:
        """Call C{handler(message)} for every push of type C{kind}."""
        self._handlers.setdefault(kind, []).append(handler)

    def request(self, kind: str, **fields) -> defer.Deferred:
        """
        Send C{kind} with C{fields}; fires with the reply's fields, or fails
        with an C{AssertionError} naming the server's error.
        """
        self._next_id += 1
        request_id = self._next_id
        d = self._pending[request_id] = defer.Deferred()

        def unsent(failure):
            if self._pending.pop(request_id, None) is d:
                d.errback(failure)

        self.browser.send({**fields, "t": kind, "id": request_id}).addErrback(unsent)
        return d

    def whenClosed(self) -> defer.Deferred:
        """Fires once the connection has ended, however it ended."""
        d = defer.Deferred()
        if self._reading.called:
            d.callback(None)
        else:
            self._closed.append(d)
        return d

    async def close(self) -> None:
        """Close the connection, then wait for the reader to stop."""
        self._closing = True
        await self.browser.close()
        await self._reading

    async def _read(self) -> None:
        """Read and dispatch messages until the connection closes."""
        while True:
            try:
                message = await self.browser.recv()
            except TimeoutError:
                continue  # A quiet moment only: keep reading.
            except websockets.exceptions.ConnectionClosed:
                self.disconnected = not self._closing
                break
            except BaseException:
                # The browser loop was stopped under us (the test is over).
                break
            self._received(message)
        for d in self._pending.values():
            d.errback(AssertionError("the connection closed before the reply"))
        self._pending.clear()
        closed, self._closed = self._closed, []
        for d in closed:
            d.callback(None)

    def _received(self, message: dict) -> None:
        kind = message["t"]
        if kind in ("reply", "error"):
            d = self._pending.pop(message.get("id"), None)
            if d is None:
                self.unexpected.append(message)
            elif kind == "reply":
                d.callback({k: v for k, v in message.items() if k not in ("t", "id")})
            else:
                d.errback(AssertionError(f"server error: {message!r}"))
        elif kind == "heartbeat" and "seq" not in message:
            self.browser.send({"t": "pong"}).addErrback(lambda failure: None)
        else:
            for handler in self._handlers.get(kind, ()):
                handler(message)


class BorderWalk:
    """
    The border walk, for a C{TestCase} that says where it runs (L{start})
    and how the walker connects (L{walker}); the watcher and a newcomer
    come over TCP.  The walker crosses the border and back
    L{round_trips} times: each time it is told the zone change, and its position, inputs and
    character's attributes survive the handoff; it sees the watcher on the
    other side before crossing, never leaves its own view and stays
    connected; the watcher and the newcomer see it where it stopped; a
    speed hack is corrected.
    """

    timeout = 180

    #: How many times the walker crosses to the east and back.
    round_trips = 3

    async def start(self) -> Servers:
        """Start the servers."""
        raise NotImplementedError()

    async def walker(self, servers: Servers, name: str) -> Player:
        """The player who walks, in the world."""
        raise NotImplementedError()

    async def tcp_player(self, servers: Servers, name: str) -> Player:
        """A player over TCP, admitted by the gateway of C{servers}."""
        return await tcp_player(self, servers.ca, servers.login, name)

    async def test_walk_across_the_border(self):
        servers = await self.start()

        # Bob stands on the east side, near the border.
        bob = await self.tcp_player(servers, "Bob")
        await bob.walk_to(106.0)
        await bob.caught_up(1)
        self.assertEqual(bob.zones, ["r0c1"])

        walker = await self.walker(servers, "Alice")
        closed = walker.client.whenClosed()
        # Her zone.enter reply told the map of WORLD, with the zone process
        # serving each region, and the movement rules.
        zones = ("zone-1", "zone-2") if "zone-1" in servers.children else ("mmo", "mmo")
        self.assertEqual(
            walker.world,
            {
                "width": 200.0,
                "height": 100.0,
                "tick_rate": 20.0,
                "update_rate": 20.0,
                "aoi_radius": 20.0,
                "regions": [
                    {
                        "name": "r0c0",
                        "x0": 0.0,
                        "y0": 0.0,
                        "x1": 100.0,
                        "y1": 100.0,
                        "zone": zones[0],
                    },
                    {
                        "name": "r0c1",
                        "x0": 100.0,
                        "y0": 0.0,
                        "x1": 200.0,
                        "y1": 100.0,
                        "zone": zones[1],
                    },
                ],
            },
        )
        self.assertEqual(
            walker.movement, {"max_speed": 8.0, "tolerance": 0.1, "burst": 0.5, "tick_rate": 20.0}
        )
        self.assertEqual([bob.gateway["port"], walker.gateway["port"]], [servers.gateway] * 2)
        # Seen across the border (from the other zone), before crossing it.
        await until(
            lambda: walker.seen.get(bob.id) == (106.0, 50.0) and walker.id in walker.seen,
            what=lambda: f"Alice sees Bob at 106 and herself: she sees {walker.seen}",
        )
        self.assertIn(bob.id, walker.entered)
        self.assertEqual(walker.zones, [])
        self.assertEqual(walker.attrs(walker.id), ATTRS)
        self.assertEqual(walker.attrs(bob.id), ATTRS)

        expected = []
        for _ in range(self.round_trips):
            await walker.walk_to(104.0)
            expected.append("r0c1")
            await walker.caught_up(len(expected))
            self.assertEqual(walker.seen[walker.id], (104.0, 50.0))
            await walker.walk_to(96.0)
            expected.append("r0c0")
            await walker.caught_up(len(expected))
            self.assertEqual(walker.seen[walker.id], (96.0, 50.0))
        self.assertEqual(walker.zones, expected)
        self.assertEqual(walker.corrections, [])
        self.assertEqual((walker.x, walker.y), (96.0, 50.0))
        # Her own entity never left her view.  (It may be entered again after a
        # handoff that outlasted the hold timeout on a loaded machine: the view
        # then starts afresh in the new zone; the client just refreshes it.)
        self.assertGreaterEqual(len(walker.views(walker.id)), 1)
        self.assertNotIn(walker.id, walker.left)
        self.assertEqual(walker.attrs(walker.id), ATTRS)
        self.assertFalse(closed.called, "the walker was disconnected")

        # Bob, across the border again, sees her where she stopped.
        await until(
            lambda: bob.seen.get(walker.id) == (96.0, 50.0),
            what=lambda: f"Bob sees Alice at 96: he sees her at {bob.seen.get(walker.id)}",
        )

        # A newcomer's fresh view of her, from the zone that holds her after
        # every handoff: her attributes travelled with her.
        carol = await self.tcp_player(servers, "Carol")
        await until(lambda: carol.views(walker.id), what="Carol sees Alice")
        [view] = carol.views(walker.id)
        self.assertEqual((view["x"], view["y"]), (96.0, 50.0))
        self.assertEqual(view["attrs"], ATTRS)
        self.assertEqual(carol.attrs(carol.id), ATTRS)

        # Zone chat follows her across the border with nothing to do: what
        # she says to "zone" in the east reaches Bob there, not Carol in
        # the west (Carol's own word, sent after it, comes after it).
        await walker.walk_to(104.0)
        expected.append("r0c1")
        await walker.caught_up(len(expected))
        await walker.client.request("chat.send", channel="zone", text="east")
        await bob.heard("zone", "east")
        await walker.heard("zone", "east")
        await carol.client.request("chat.send", channel="zone", text="west")
        await carol.heard("zone", "west")
        self.assertEqual(carol.said("zone"), ["west"])
        self.assertEqual(bob.said("zone"), ["east"])
        who = await carol.client.request("chat.who", name="Aliceson")
        self.assertEqual((who["online"], who["zone"]), (True, "r0c1"))

        # A speed hack: refused, and corrected to where she is.
        stood = walker.x
        await walker.move(walker.x + 40.0, walker.y)
        await until(lambda: walker.corrections, what="a correction of the speed hack")
        self.assertEqual(walker.corrections[0]["x"], stood)
        self.assertEqual(walker.corrections[0]["input"], walker.seq)
        self.assertFalse(closed.called, "the walker was disconnected")
        if isinstance(walker.client, BrowserClient):
            self.assertFalse(walker.client.disconnected, "the browser was disconnected")
            self.assertEqual(walker.client.unexpected, [])
