"""
Helpers shared by the tests: throw-away deployments with real certificates.
"""

from __future__ import annotations

import os
import textwrap

from twisted.logger import formatEvent, globalLogPublisher

from mmo import certs, config
from mmo.wire import codec

#: A small deployment: a standalone process and two internal peers.
DEFAULT_PROCESSES = """
[processes.mmo]
kind = "mmo"
client = "tcp:0:interface=127.0.0.1"
rpc = "tcp:0:interface=127.0.0.1"

[processes.zone-1]
kind = "zone"
rpc = "tcp:0:interface=127.0.0.1"

[processes.zone-2]
kind = "zone"
rpc = "tcp:0:interface=127.0.0.1"
"""


async def fake_clock_bus_store(testcase):
    """
    A C{task.Clock}, a L{MemoryBus} on it and a started SQLite store in a
    temporary directory, both stopped when C{testcase} ends: what a zone
    service needs to run without a reactor or a network.
    """
    from twisted.internet import task

    from mmo.bus.memory import MemoryBus
    from mmo.store.sqlite import SQLiteStore

    clock = task.Clock()
    bus = MemoryBus(reactor=clock)
    testcase.addCleanup(bus.stop)
    path = os.path.join(os.path.abspath(testcase.mktemp()), "store.sqlite3")
    os.makedirs(os.path.dirname(path))
    store = SQLiteStore(path, reactor=clock)
    await store.start()
    testcase.addCleanup(store.stop)
    return clock, bus, store


def write_config(testcase, text: str, name: str = "mmo.toml") -> str:
    """Write C{text} (dedented) as a config file in a new temporary directory."""
    directory = testcase.mktemp()
    os.makedirs(directory)
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(textwrap.dedent(text))
    return path


def deployment(
    testcase, processes: str = DEFAULT_PROCESSES, name: str = "test", extra: str = ""
) -> config.Config:
    """
    A config file with C{processes} in a temporary directory, and the
    certificates C{mmo-certs} would make for it; returns the loaded config.
    """
    text = (
        f'[deployment]\nname = "{name}"\ntls_dir = "certs"\n{extra}\n{textwrap.dedent(processes)}'
    )
    conf = config.load(write_config(testcase, text))
    certs.generate(conf)
    return conf


def decode_frames(data: bytes) -> list[dict]:
    """The messages in C{data}, a byte string of whole frames."""
    result = []
    while data:
        (length,) = codec.HEADER.unpack(data[:4])
        result.append(codec.decode(data[4 : 4 + length]))
        data = data[4 + length :]
    return result


def written_frames(transport) -> list[dict]:
    """The messages written to a C{StringTransport} since the last call."""
    result = decode_frames(transport.value())
    transport.clear()
    return result


def process_tables(*processes: tuple[str, ...]) -> str:
    """
    C{[processes.NAME]} tables for C{(name, kind)} pairs on loopback: client
    kinds listen on a port chosen at start, services on a free port (gateways
    must know it to connect).  A third element, C{(name, kind, listeners)},
    names further listeners (such as C{"websocket"}) on a port chosen at start.
    """
    from tests.redis import free_port

    tables = []
    for name, kind, *more in processes:
        if kind in ("login", "gateway", "mmo"):
            listeners = ['client = "tcp:0:interface=127.0.0.1"']
        else:
            listeners = [f'rpc = "tcp:{free_port()}:interface=127.0.0.1"']
        for extra in more[0] if more else ():
            listeners.append(f'{extra} = "tcp:0:interface=127.0.0.1"')
        listener = "\n".join(listeners)
        tables.append(
            f'[processes.{name}]\nkind = "{kind}"\n{listener}\nhosts = ["localhost", "127.0.0.1"]\n'
        )
    return "\n".join(tables)


class LogCapture:
    """The formatted log lines of a test, collected while it runs."""

    def __init__(self, testcase):
        self.lines = []
        globalLogPublisher.addObserver(self.observe)
        testcase.addCleanup(globalLogPublisher.removeObserver, self.observe)

    def observe(self, event):
        self.lines.append(formatEvent(event))

    def matching(self, *fragments):
        """The lines that hold every one of C{fragments}."""
        return [line for line in self.lines if all(f in line for f in fragments)]


def gateway(config, name: str, bus, signer, routes=(), clock=None, factory_class=None, **extra):
    """
    Gateway C{name} of C{config} on C{bus}, built and subscribed as the
    gateway's tap builds one (L{mmo.gateway.factory.make_gateway},
    L{mmo.gateway.factory.subscriptions}), admitting the tickets of C{signer}.
    """
    from mmo.gateway.factory import GatewayFactory, make_gateway, subscriptions

    factory = make_gateway(
        config,
        config.processes[name],
        bus,
        signer,
        routes,
        clock,
        factory_class or GatewayFactory,
        **extra,
    )
    for channel, dispatcher in subscriptions(factory).items():
        bus.subscribe(channel, dispatcher)
    return factory


class GatewayInbox:
    """
    What a gateway hears on its bus channel, decoded (L{mmo.game.messages}):
    subscribe it with C{bus.subscribe(gateway_channel(NAME), inbox)}.

    @ivar messages: The messages, in order of arrival.
    """

    def __init__(self):
        self.messages: list = []

    def __call__(self, data) -> None:
        from mmo.game import messages

        self.messages.append(messages.decode(data)[1])

    def of_type(self, cls) -> list:
        """The messages of type C{cls}."""
        return [m for m in self.messages if isinstance(m, cls)]

    def batches(self) -> list[dict]:
        """The zones' batched pushes since the last call: C{{session: [[kind, fields]...]}}."""
        from mmo.game.messages import PushBatch

        found = [m.pushes for m in self.messages if isinstance(m, PushBatch)]
        self.messages = [m for m in self.messages if not isinstance(m, PushBatch)]
        return found

    def events(self, session: str, kind: str | None = None) -> list:
        """
        The events (of C{kind}) batched for C{session} since the last call,
        as C{(kind, fields)}.
        """
        return [
            (event_kind, fields)
            for batch in self.batches()
            for event_kind, fields in batch.get(session, [])
            if kind is None or event_kind == kind
        ]
