"""
A zone's tick of pushes from its outbox to its players' connections on a
gateway, in one process (no network): the stems a zone encodes for a
gateway that takes them (L{mmo.game.messages.PushStems}, sent in
L{mmo.rpc.commands.StreamStems}) next to the baseline measured in the same
run, the batch a zone sends an older gateway (L{mmo.game.messages.PushBatch}
in a L{mmo.rpc.commands.Stream}, which the gateway decodes and encodes
again, push by push).

    python bench/stream_push.py [--players 400] [--ticks 200] [--visible 8] [--tls] [--json]

Each tick every player gets one C{world.update} of C{--visible} moving
entities (and every tenth a C{world.correct} before it).  The zone's side
is L{mmo.zone.outbox.Outbox.pushes} into a L{mmo.zone.streams.GatewayStreams}
whose gateway link only keeps the command's argument (the AMP box itself is
the same size either way); the gateway's side is what its link's responder
does with that argument (L{mmo.zone.streams.StreamedLinkFactory.heard}:
msgpack, the gateway's L{mmo.game.messages.Dispatcher}), its
L{mmo.gateway.delivery.Delivery} and each L{mmo.gateway.session.Session},
attached to a connection that drops its frames.  CPU time with
C{time.process_time}, the best of C{--repeat} (default 5) runs of C{--ticks}
ticks each, per push.  C{--profile PATH}: the stems' gateway side once
more, under cProfile (its time in no figure).

With C{--tls}, the stems' gateway side once more with every session
attached to a real client connection: mmo's client listener's TLS
(L{mmo.frontend.addresses.LimitedTLSFactory}) on loopback, its clients
(Twisted, TLS through pyOpenSSL, reading and dropping what they get) in a
child process; the gateway's figure then includes the TLS writes and
C{send()}s, and the reactor's turn after each tick's message (where
writes gathered for the turn go).  Its baseline,
C{tls_gathered_gateway_us_per_push}: the same, each connection's frames
written as any other write, gathered for the end of the turn (L{Gathered}),
the two taking turns.  Beside them, C{tls_write_us_per_push}: the first
less the stems' gateway figure of the same run.

With C{--link}, the gateway's side takes in its link's AMP too: each
message reaches it as the box the zone's link sends (L{StreamStems} or
L{Stream}, serialized as on the wire, a long one split over several
values), read by the gateway's L{mmo.zone.streams.StreamedLink} (its
box parsing, its dispatch, its responder) on an in-memory transport,
instead of the argument handed straight to C{heard}: the gateway's
figures then include what each box costs outside the TLS of the link.

With C{--tls-link}, only the link: the run's ticks as the zone's
L{StreamStems} boxes, sent over a real mutual-TLS link (a zone process's
RPC listener, a gateway's L{mmo.zone.streams.StreamedLinkFactory} link
to it, on loopback, both ends in this process) and heard by the
gateway's link (its dispatcher drops them): the CPU of both ends per box,
the TLS of the link included.  With C{--callgrind} too, that alone,
inside C{functools.reduce}.

With C{--callgrind}, only the stems' gateway side to the TLS clients,
once, inside one call of C{functools.reduce}, for an instruction count
of it alone (with C{--link}, from the link's boxes):

    valgrind --tool=callgrind --toggle-collect=functools_reduce \
        python bench/stream_push.py --players 200 --ticks 20 --callgrind [--link]
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import os
import random
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import parser, raise_nofile, report  # noqa: E402

from mmo.bus.memory import MemoryBus  # noqa: E402
from mmo.game import messages  # noqa: E402
from mmo.game.messages import PushBatch, PushStems  # noqa: E402
from mmo.game.routes import unpack  # noqa: E402
from mmo.game.service import Caller  # noqa: E402
from mmo.gateway.delivery import Delivery  # noqa: E402
from mmo.gateway.session import Session  # noqa: E402
from mmo.zone.outbox import Outbox  # noqa: E402
from mmo.zone.streams import GatewayStreams  # noqa: E402

GATEWAY = "gateway-1"
ZONE = "r0c0"
#: The zone process whose link streams to the gateway (C{--link}).
ZONE_PROCESS = "zone-1"


class Link:
    """A gateway's link as the zone's streams see it: what it takes; it keeps what it is sent."""

    peer = GATEWAY

    def __init__(self, takes: tuple[str, ...]):
        self.peer_takes = frozenset(takes)
        self.sent: list[bytes] = []
        #: The command each of C{sent} was sent in.
        self.commands: list = []

    def takes(self, command) -> bool:
        return command.commandName.decode() in self.peer_takes

    def callRemote(self, command, message: bytes) -> None:
        self.sent.append(message)
        self.commands.append(command)


class Connection:
    """A client's connection that takes every frame and drops it."""

    def canSend(self) -> bool:
        return True

    def sendFrame(self, frame: bytes) -> None:
        pass

    sendFramesNow = sendFrame

    def sendFramesWith(self, frames: bytes, writes, tag) -> bool:
        return False


class Held:
    """The sessions a gateway holds, as L{Delivery} reads them."""

    name = GATEWAY

    def __init__(self, sessions: list[Session]):
        self._by_id = {session.id: session for session in sessions}

    def get(self, session_id):
        return self._by_id.get(session_id)


class Forwards:
    """No session moved away."""

    def gateway(self, session_id):
        return None


def ticks(players: int, count: int, visible: int) -> list:
    """C{count} ticks' results (their pushes) for C{players} players, as a zone makes them."""
    rng = random.Random(1)
    results = []
    for tick in range(1, count + 1):
        by_session = {}
        for p in range(players):
            update = [
                {
                    "id": f"c-{rng.randrange(10**6):06d}",
                    "x": rng.uniform(0, 1000),
                    "y": rng.uniform(0, 1000),
                }
                for _ in range(visible)
            ]
            events = [("world.update", {"tick": tick, "enter": [], "update": update, "leave": []})]
            if p % 10 == 0:
                events.insert(0, ("world.correct", {"x": 1.5, "y": 2.5, "input": tick}))
            by_session[f"session-{p}"] = events
        results.append(_Result({GATEWAY: by_session}))
    return results


class _Result:
    def __init__(self, pushes):
        self.pushes = pushes


def measure(
    results,
    takes: tuple[str, ...],
    players: int,
    repeat: int,
    profile: str | None = None,
    clients=None,
    gathered: bool = False,
    bracketed: bool = False,
    boxes: bool = False,
) -> dict:
    """
    The zone's and the gateway's best CPU time over C{results}, seconds;
    the box bytes.  With C{profile}, one run more, of the gateway's side
    under cProfile, its stats written there (not in the figures).  With
    C{clients} (a L{TLSClients}), each session's connection is one of its
    connections, and the gateway's time takes in a reactor turn after each
    message; with C{gathered} too, each connection's frames are written as
    any other write (L{Gathered}).  With C{bracketed}, the gateway's side
    runs inside C{functools.reduce}, for callgrind.  With C{boxes}, each
    message reaches the gateway as its link's box (L{StreamedLinkSide}).
    """
    best_zone = best_gateway = float("inf")
    box_bytes = 0
    for run in range(repeat + (1 if profile else 0)):
        profiler = cProfile.Profile() if run == repeat else None
        link = Link(takes)
        streams = GatewayStreams(MemoryBus())
        streams.linked(link)
        outbox = Outbox(None, ZONE, None)
        outbox.stream_to(streams)
        started = time.process_time()
        for result in results:
            outbox.pushes(result)
        best_zone = min(best_zone, time.process_time() - started)
        box_bytes = sum(len(m) for m in link.sent)

        sessions = []
        for p in range(players):
            caller = Caller(
                session=f"session-{p}", gateway=GATEWAY, account_id=f"a-{p}", name=f"p{p}"
            )
            session = Session(caller, None, "token", 100, 1 << 20)
            if clients is None:
                connection = Connection()
            elif gathered:
                connection = Gathered(clients.connections[p])
            else:
                connection = clients.connections[p]
            session.attach(connection)
            sessions.append(session)
        delivery = Delivery(Held(sessions), Forwards(), None)
        dispatcher = messages.Dispatcher(GATEWAY)
        dispatcher.on(PushBatch, delivery.push_batch)
        dispatcher.on(PushStems, delivery.push_stems)
        if boxes:
            side = StreamedLinkSide(dispatcher)
            sent, hear = side.boxes(link), side.link.dataReceived
        else:
            sent, hear = link.sent, functools.partial(hear_message, dispatcher)
        turn = clients.turn if clients is not None else None
        if profiler is not None:
            profiler.enable()
        started = time.process_time()
        if bracketed:
            # Inside one call of a C function, which callgrind can count
            # alone (--toggle-collect=functools_reduce).
            functools.reduce(functools.partial(deliver, sent, hear, turn), [None], None)
        else:
            deliver(sent, hear, turn)
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile)
        else:
            best_gateway = min(best_gateway, time.process_time() - started)
        if clients is not None:
            clients.drain()
        if sum(s.seq for s in sessions) != sum(
            len(e) for r in results for e in r.pushes[GATEWAY].values()
        ):
            raise SystemExit("a push was not delivered")
    return {"zone": best_zone, "gateway": best_gateway, "bytes": box_bytes}


def deliver(sent: list, hear, turn, *_) -> None:
    """
    The gateway's side of C{sent}, each given to C{hear}, a reactor turn
    after each where C{turn} is given.
    """
    for message in sent:
        hear(message)
        if turn is not None:
            turn()


def link_config(directory: str, tls: bool):
    """
    The config of a gateway and a zone process linked on loopback, written
    in C{directory}; with C{tls}, its certificates made there too.
    """
    from mmo import certs
    from mmo import config as mmo_config

    path = os.path.join(directory, "mmo.toml")
    with open(path, "w") as f:
        f.write(
            '[deployment]\nname = "bench"\n'
            + ('tls_dir = "certs"\n' if tls else "")
            + f'[processes.{GATEWAY}]\nkind = "gateway"\nclient = "tcp:0:interface=127.0.0.1"\n'
            f'[processes.{ZONE_PROCESS}]\nkind = "zone"\nrpc = "tcp:0:interface=127.0.0.1"\n'
        )
    config = mmo_config.load(path)
    if tls:
        certs.generate(config)
    return config


def hear_message(dispatcher, message: bytes) -> None:
    """A Stream's argument as its link's responder takes it (C{StreamedLinkFactory.heard})."""
    dispatcher(unpack(message))


class StreamedLinkSide:
    """
    The gateway's end of a zone process's link (C{--link}): a
    L{mmo.zone.streams.StreamedLink} up on an in-memory transport, its
    peer the zone process, hearing into a dispatcher; and the boxes a
    zone's link sends.
    """

    def __init__(self, dispatcher):
        from twisted.internet.testing import MemoryReactorClock, StringTransport

        from mmo.zone.streams import StreamedLinkFactory

        with tempfile.TemporaryDirectory(prefix="stream_push-") as directory:
            config = link_config(directory, tls=False)
        factory = StreamedLinkFactory(
            config,
            config.process(GATEWAY),
            config.process(ZONE_PROCESS),
            MemoryReactorClock(),
        )
        factory.hear(dispatcher)
        self.link = factory.buildProtocol(None)
        self.link.makeConnection(StringTransport())
        # As the link is once TLS named the zone process.
        self.link.peer = ZONE_PROCESS

    @staticmethod
    def boxes(link: Link) -> list[bytes]:
        """What C{link} was sent, each as the box of its command, as on the wire."""
        from twisted.protocols import amp

        wire = []
        for command, message in zip(link.commands, link.sent, strict=True):
            box = command.makeArguments({"message": message}, None)
            box[amp.COMMAND] = command.commandName
            wire.append(box.serialize())
        return wire


class Gathered:
    """
    A client connection whose frames of a tick are written as any other
    write, gathered by the TLS transport for the end of the reactor turn
    (a delayed call per connection), instead of leaving at once: how a
    tick's frames were written before C{sendFramesNow}, the baseline of
    the TLS figures.
    """

    def __init__(self, protocol):
        self.canSend = protocol.canSend
        self.sendFrame = self.sendFramesNow = protocol.sendFrame

    def sendFramesWith(self, frames: bytes, writes, tag) -> bool:
        self.sendFrame(frames)
        return False


class TLSClients:
    """
    C{count} client connections on mmo's client listener's TLS, on
    loopback, their clients in a child process (L{clients_main}); the
    server side's protocols are L{connections}, each a
    L{mmo.frontend.protocol.ClientProtocol} that only sends.
    """

    def __init__(self, count: int, max_seconds: float = 60.0):
        from twisted.internet import endpoints, reactor
        from twisted.internet.interfaces import IHandshakeListener
        from twisted.internet.protocol import Factory
        from zope.interface import implementer

        from mmo import certs, tls
        from mmo import config as mmo_config
        from mmo.frontend.addresses import AddressLimits, LimitedTLSFactory
        from mmo.frontend.protocol import OPEN, ClientProtocol

        self.reactor = reactor
        self.connections: list = []
        self._directory = tempfile.TemporaryDirectory(prefix="stream_push-")
        path = os.path.join(self._directory.name, "mmo.toml")
        with open(path, "w") as f:
            f.write(
                '[deployment]\nname = "bench"\ntls_dir = "certs"\n'
                "[listeners]\nper_address = 0\nper_address_rate = 0\n"
                '[processes.mmo]\nkind = "mmo"\nclient = "tcp:0:interface=127.0.0.1"\n'
                'hosts = ["localhost", "127.0.0.1"]\n'
            )
        config = mmo_config.load(path)
        certs.generate(config)
        handshakes = self.connections

        @implementer(IHandshakeListener)
        class Pushed(ClientProtocol):
            """A client connection that is only written to: open once TLS is."""

            def connectionMade(self) -> None:
                pass

            def handshakeCompleted(self) -> None:
                self.state = OPEN
                handshakes.append(self)

            def connectionLost(self, reason) -> None:
                self.state = "closed"

        server = tls.client_facing_tls(config, config.processes["mmo"], (b"mmo",))
        limits = AddressLimits.from_config(config.listeners, reactor)
        factory = LimitedTLSFactory(server, False, Factory.forProtocol(Pushed), limits)
        ports = []
        endpoints.TCP4ServerEndpoint(reactor, 0, backlog=1024, interface="127.0.0.1").listen(
            factory
        ).addCallback(ports.append)
        self._turns_until(lambda: ports, max_seconds)
        self._port = ports[0]
        self._child = subprocess.Popen(
            [
                sys.executable,
                os.path.abspath(__file__),
                "--clients-of",
                str(self._port.getHost().port),
                "--clients",
                str(count),
                "--ca",
                tls.ca_path(config.deployment.tls_dir),
            ],
            stdin=subprocess.PIPE,
        )
        self._turns_until(lambda: len(handshakes) >= count, max_seconds)
        if len(handshakes) < count:
            self.close()
            raise SystemExit(f"only {len(handshakes)} of {count} TLS clients connected")
        self.drain()

    def _turns_until(self, done, max_seconds: float) -> None:
        deadline = time.monotonic() + max_seconds
        while not done() and time.monotonic() < deadline:
            self.reactor.iterate(0.01)

    def turn(self) -> None:
        """One reactor turn, without waiting: what was gathered for it is written."""
        self.reactor.iterate(0)

    def drain(self, seconds: float = 0.3) -> None:
        """Let the clients read what they were sent (outside any figure)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.reactor.iterate(0.01)

    def close(self) -> None:
        self._child.stdin.close()
        try:
            self._child.wait(30)
        except subprocess.TimeoutExpired:
            self._child.kill()
            self._child.wait()
        self._port.stopListening()
        for connection in self.connections:
            connection.transport.abortConnection()
        self.drain(0.2)
        self._directory.cleanup()


def clients_main(port: int, count: int, ca_path: str) -> None:
    """
    The child process of L{TLSClients}: C{count} TLS clients of
    C{127.0.0.1:port} that read and drop what they get, until stdin closes.
    """
    from twisted.internet import endpoints, reactor, stdio
    from twisted.internet import ssl as tssl
    from twisted.internet.protocol import Protocol

    raise_nofile()
    with open(ca_path) as f:
        ca = tssl.Certificate.loadPEM(f.read())
    options = tssl.optionsForClientTLS("localhost", trustRoot=ca)

    class Drop(Protocol):
        def dataReceived(self, data: bytes) -> None:
            pass

    class Parent(Protocol):
        def connectionLost(self, reason) -> None:
            reactor.stop()

    stdio.StandardIO(Parent())
    for _ in range(count):
        endpoint = endpoints.wrapClientTLS(
            options, endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        )
        endpoints.connectProtocol(endpoint, Drop())
    reactor.run()


def tls_link(results, repeat: int, bracketed: bool = False) -> dict:
    """
    The zone's stems boxes of C{results} over a real mutual-TLS link, both
    ends in this process (C{--tls-link}): the best CPU time of C{repeat}
    runs, seconds, and the box count.  With C{bracketed}, one run inside
    C{functools.reduce}, for callgrind.
    """
    from twisted.internet import defer, endpoints, reactor

    from mmo.rpc import RPCClientService, RPCServerFactory, listen_port
    from mmo.zone.streams import StreamedLinkFactory

    zone = Link(("Stream", "StreamStems"))
    streams = GatewayStreams(MemoryBus())
    streams.linked(zone)
    outbox = Outbox(None, ZONE, None)
    outbox.stream_to(streams)
    for result in results:
        outbox.pushes(result)

    def turns_until(done, seconds: float = 60.0) -> None:
        deadline = time.monotonic() + seconds
        while not done() and time.monotonic() < deadline:
            reactor.iterate(0.001)
        if not done():
            raise SystemExit("the link did not come up, or a box was not heard")

    with tempfile.TemporaryDirectory(prefix="stream_push-") as directory:
        config = link_config(directory, tls=True)
        server = RPCServerFactory(config, config.process(ZONE_PROCESS), reactor)
        ports: list = []
        defer.ensureDeferred(listen_port(config, ZONE_PROCESS, server, reactor)).addCallback(
            ports.append
        )
        turns_until(lambda: ports)
        factory = StreamedLinkFactory(
            config, config.process(GATEWAY), config.process(ZONE_PROCESS), reactor
        )
        heard = []
        factory.hear(heard.append)
        endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", ports[0].getHost().port)
        client = RPCClientService(
            config, GATEWAY, ZONE_PROCESS, endpoint=endpoint, factory=factory, reactor=reactor
        )
        client.startService()
        try:
            turns_until(lambda: server.connections and factory.connection is not None)
            [link] = server.connections
            boxes = list(zip(zone.commands, zone.sent, strict=True))

            def send(*_) -> None:
                expected = len(heard) + len(boxes)
                for command, message in boxes:
                    link.callRemote(command, message=message)
                    # The zone's turn (its writes leave), then the gateway's.
                    reactor.iterate(0)
                    reactor.iterate(0)
                turns_until(lambda: len(heard) >= expected)

            # The first box of each command goes AMP's whole way: not counted.
            send()
            best = float("inf")
            for _ in range(1 if bracketed else repeat):
                started = time.process_time()
                if bracketed:
                    functools.reduce(send, [None], None)
                else:
                    send()
                best = min(best, time.process_time() - started)
        finally:
            client.stopService()
            ports[0].stopListening()
            for _ in range(20):
                reactor.iterate(0.01)
    return {"seconds": best, "boxes": len(boxes)}


def main() -> None:
    p = parser(__doc__.strip().splitlines()[0])
    p.add_argument("--players", type=int, default=400, help="players on the gateway (default 400)")
    p.add_argument("--ticks", type=int, default=200, help="ticks per run (default 200)")
    p.add_argument("--visible", type=int, default=8, help="entities in each update (default 8)")
    p.add_argument("--repeat", type=int, default=5, help="runs, the best counts (default 5)")
    p.add_argument(
        "--tls",
        action="store_true",
        help="also the stems' gateway side to real TLS client connections on loopback",
    )
    p.add_argument(
        "--callgrind",
        action="store_true",
        help="only the stems' gateway side to TLS clients, once, inside functools.reduce: "
        "valgrind --tool=callgrind --toggle-collect=functools_reduce counts it alone",
    )
    p.add_argument(
        "--link",
        action="store_true",
        help="the gateway's side reads each message as its link's AMP box (StreamedLink)",
    )
    p.add_argument(
        "--tls-link",
        action="store_true",
        help="only the zone's stems boxes over a real mutual-TLS link, both ends in this process",
    )
    p.add_argument("--clients-of", type=int, help=argparse.SUPPRESS)
    p.add_argument("--clients", type=int, help=argparse.SUPPRESS)
    p.add_argument("--ca", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.clients_of:
        clients_main(args.clients_of, args.clients, args.ca)
        return
    results = ticks(args.players, args.ticks, args.visible)
    pushes = sum(len(e) for r in results for e in r.pushes[GATEWAY].values())
    if args.tls_link:
        taken = tls_link(results, args.repeat, bracketed=args.callgrind)
        figures = {"players": args.players, "ticks": args.ticks, "pushes": pushes}
        figures["tls_link_boxes"] = taken["boxes"]
        figures["tls_link_us_per_box"] = taken["seconds"] / taken["boxes"] * 1e6
        figures["tls_link_us_per_push"] = taken["seconds"] / pushes * 1e6
        report(figures, args.json)
        return
    if args.callgrind:
        raise_nofile()
        clients = TLSClients(args.players, max_seconds=300)
        try:
            measure(
                results,
                ("Stream", "StreamStems"),
                args.players,
                1,
                clients=clients,
                bracketed=True,
                boxes=args.link,
            )
        finally:
            clients.close()
        report({"players": args.players, "ticks": args.ticks, "pushes": pushes}, args.json)
        return
    # The baseline first: an older gateway, Stream only.
    batch = measure(results, ("Stream",), args.players, args.repeat, boxes=args.link)
    stems = measure(
        results, ("Stream", "StreamStems"), args.players, args.repeat, args.profile, boxes=args.link
    )
    figures = {
        "players": args.players,
        "ticks": args.ticks,
        "pushes": pushes,
        "stems_zone_us_per_push": stems["zone"] / pushes * 1e6,
        "stems_gateway_us_per_push": stems["gateway"] / pushes * 1e6,
        "stems_box_bytes_per_push": stems["bytes"] / pushes,
        "batch_zone_us_per_push": batch["zone"] / pushes * 1e6,
        "batch_gateway_us_per_push": batch["gateway"] / pushes * 1e6,
        "batch_box_bytes_per_push": batch["bytes"] / pushes,
        "gateway_ratio": stems["gateway"] / batch["gateway"],
        "zone_ratio": stems["zone"] / batch["zone"],
        "both_ratio": (stems["zone"] + stems["gateway"]) / (batch["zone"] + batch["gateway"]),
    }
    if args.tls:
        raise_nofile()
        clients = TLSClients(args.players)
        now = gathered = float("inf")
        try:
            # The two ways taking turns, each first in every other round
            # (the first of a round ran faster), the best of each.
            for round_ in range(args.repeat):
                for way in (False, True) if round_ % 2 == 0 else (True, False):
                    taken = measure(
                        results,
                        ("Stream", "StreamStems"),
                        args.players,
                        1,
                        clients=clients,
                        gathered=way,
                        boxes=args.link,
                    )["gateway"]
                    if way:
                        gathered = min(gathered, taken)
                    else:
                        now = min(now, taken)
        finally:
            clients.close()
        figures["tls_stems_gateway_us_per_push"] = now / pushes * 1e6
        figures["tls_gathered_gateway_us_per_push"] = gathered / pushes * 1e6
        figures["tls_ratio"] = now / gathered
        figures["tls_write_us_per_push"] = (now - stems["gateway"]) / pushes * 1e6
    report(figures, args.json)


if __name__ == "__main__":
    main()
