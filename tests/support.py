"""
Helpers shared by the tests, one for each job: throw-away deployments with
real certificates and in-memory configs, frames on the wire, waiting in real
time for a condition, gateways and what they hear on the bus, log lines.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import os
import sys
import textwrap
from collections.abc import Callable

import msgpack
from twisted.internet import defer, reactor, task
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial import unittest

from mmo import certs, config
from mmo.wire import codec

#: The standalone process, its clients on TLS on loopback.
STANDALONE = """
[processes.mmo]
kind = "mmo"
client = "tcp:0:interface=127.0.0.1"
hosts = ["localhost", "127.0.0.1"]
"""

#: What to append to L{STANDALONE} (or any process table) for a secure
#: WebSocket listener on loopback.
WEBSOCKET = 'websocket = "tcp:0:interface=127.0.0.1"\n'

#: Password hashing cheap enough for tests that log many players in.
FAST_HASH = "[login]\nargon2_memory_kib = 1024\nargon2_time_cost = 1\n"

#: The store and the bus on Redis (a C{[redis]} section to add), with a
#: directory that forgets a dead process in 2 s.
ON_REDIS = """
[store]
backend = "redis"

[bus]
backend = "redis"
heartbeat_interval = 0.5
heartbeat_timeout = 2.0
"""

#: The password of the players of the end-to-end tests.
PASSWORD = "open sesame 42"

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


async def started_store(testcase, path: str):
    """The store of the config file C{path}, started, stopped when C{testcase} ends."""
    from mmo.store import make_store

    store = make_store(config.load(path))
    await store.start()
    testcase.addCleanup(store.stop)
    return store


async def store_of_release_before(testcase, migration, clock):
    """
    A SQLite store, started (stopped when C{testcase} ends), on a file that
    the release before C{migration} made: its migrations up to that one.
    """
    import sqlite3

    from mmo.store import sqlite as store_sqlite

    path = os.path.abspath(os.path.join(testcase.mktemp(), "old.sqlite3"))
    os.makedirs(os.path.dirname(path))
    before = store_sqlite.MIGRATIONS.index(migration)
    with sqlite3.connect(path) as conn:
        for earlier in store_sqlite.MIGRATIONS[:before]:
            earlier(conn)
        conn.execute(f"PRAGMA user_version = {before}")
    store = store_sqlite.SQLiteStore(path, reactor=clock)
    await store.start()
    testcase.addCleanup(store.stop)
    return store


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


def turn(clock, seconds: float = 0.0) -> None:
    """
    Let C{seconds} of the fake C{clock} pass, a second at most at a time
    (as a reactor would, with leases renewed on the way), then deliver what
    a memory bus on it holds.
    """
    while seconds > 1:
        turn(clock, 1)
        seconds -= 1
    clock.advance(seconds)
    for _ in range(5):
        clock.advance(0)


def compiled_module(name: str):
    """
    The compiled extension C{name} (e.g. C{"mmo.zone._kernel"}): a test
    that uses it fails when it is not built (C{make venv} builds it),
    unless C{MMO_PURE_PYTHON=1} says it is not meant to be: then it is
    skipped.
    """
    try:
        return importlib.import_module(name)
    except ImportError:
        if os.environ.get("MMO_PURE_PYTHON") == "1":
            raise unittest.SkipTest(f"MMO_PURE_PYTHON=1: {name} is not used") from None
        raise AssertionError(
            f"{name} is not built: make venv builds it (or set MMO_PURE_PYTHON=1)"
        ) from None


def load_bench(name: str):
    """bench/NAME.py as a module (bench/ is not a package), for its pieces."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location(
        f"bench_{name}", os.path.join(root, "bench", f"{name}.py")
    )
    module = importlib.util.module_from_spec(spec)
    # Dataclasses look their module up in sys.modules.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


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


def map_with_pairs(*pairs) -> bytes:
    """
    A msgpack map of C{pairs} (key, packed value) as given, so that a key
    may appear twice; up to 15 pairs (a fixmap).
    """
    return bytes([0x80 | len(pairs)]) + b"".join(
        msgpack.packb(key, use_bin_type=True) + value for key, value in pairs
    )


def split_frames(data: bytes) -> tuple[list[bytes], bytes]:
    """The bodies of the whole frames in C{data}, and the bytes after them (a cut frame)."""
    bodies = []
    offset = 0
    while len(data) - offset >= codec.HEADER.size:
        (length,) = codec.HEADER.unpack_from(data, offset)
        end = offset + codec.HEADER.size + length
        if end > len(data):
            break
        bodies.append(data[offset + codec.HEADER.size : end])
        offset = end
    return bodies, data[offset:]


def decode_frames(data: bytes) -> list[dict]:
    """The messages in C{data}, which must be whole frames only."""
    bodies, rest = split_frames(data)
    if rest:
        raise AssertionError(f"a cut frame after {len(bodies)} whole ones: {rest!r}")
    return [codec.decode(body) for body in bodies]


def written_frames(transport) -> list[dict]:
    """The messages written to a C{StringTransport} since the last call."""
    result = decode_frames(transport.value())
    transport.clear()
    return result


def config_of(processes: dict | None = None, **sections) -> config.Config:
    """
    An in-memory config (no file, no certificates): C{processes} (name ->
    table; by default one standalone process) and the other C{sections}
    (name -> table).
    """
    if processes is None:
        processes = {"mmo": {"kind": "mmo", "client": "tcp:0"}}
    return config.Config({"processes": processes, **sections})


#: The longest real-time wait of a step (L{until}, L{bounded}) by default, in
#: seconds: generous, so that only something broken reaches it on a loaded
#: machine.
WAIT = 20.0


def bounded(d: defer.Deferred, seconds: float = WAIT) -> defer.Deferred:
    """C{d}, failing with a timeout instead of hanging the test run."""
    return d.addTimeout(seconds, reactor)


def when_lost(protocol) -> defer.Deferred:
    """
    A Deferred that fires with C{[reason]} once C{protocol}'s
    C{connectionLost} has run (it is wrapped).
    """
    lost = defer.Deferred()
    closed = protocol.connectionLost

    def connectionLost(reason):
        closed(reason)
        lost.callback([reason])

    protocol.connectionLost = connectionLost
    return lost


def until(
    predicate: Callable[[], object],
    timeout: float = WAIT,
    interval: float = 0.01,
    what: str | Callable[[], str] | None = None,
) -> defer.Deferred:
    """
    Fire once C{predicate()} is true (or what it returns, when that is
    awaitable, is true once awaited), looking every C{interval} seconds of
    real time (the reactor runs meanwhile); after C{timeout} seconds, fail
    with an C{AssertionError} naming what was awaited: C{what} (a callable
    gives it at that moment, with the state it found), else the
    predicate's source.
    """

    async def holds() -> bool:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        return bool(result)

    async def poll():
        deadline = reactor.seconds() + timeout
        while not await holds():
            if reactor.seconds() > deadline:
                said = what() if callable(what) else what or _source(predicate)
                raise AssertionError(f"waited {timeout} s in vain for: {said}")
            await task.deferLater(reactor, interval)

    return defer.ensureDeferred(poll())


async def collect(read: Callable[[], list], count: int = 1, timeout: float = WAIT) -> list:
    """
    Call C{read}, which gives what arrived since its last call (frames, say),
    in real time until C{count} items arrived in all; all of them.
    """
    arrived: list = []

    def enough() -> bool:
        arrived.extend(read())
        return len(arrived) >= count

    await until(enough, timeout, what=lambda: f"{count} items; only {arrived!r} arrived")
    return arrived


def _source(function) -> str:
    """The source text of C{function} (a lambda's line), else its repr."""
    try:
        return inspect.getsource(function).strip()
    except (OSError, TypeError):
        return repr(function)


def sleep(seconds: float) -> defer.Deferred:
    """Fire after C{seconds} of real time: for what must not happen meanwhile."""
    return task.deferLater(reactor, seconds)


#: The kinds of process that clients connect to.
CLIENT_KINDS = ("login", "gateway", "mmo")


def process_tables(
    *processes: tuple[str, ...], ports: dict[str, int] | None = None, metrics: bool = False
) -> str:
    """
    C{[processes.NAME]} tables for C{(name, kind)} pairs on loopback: client
    kinds listen on a port chosen at start (or the one C{ports} gives by
    name), services on a free port (gateways must know it to connect).  A
    third element, C{(name, kind, listeners)}, names further listeners (such
    as C{"websocket"}) on a port chosen at start.  With C{metrics}, every
    process has a metrics listener (TLS) on a free port.
    """
    from tests.redis import free_port

    ports = ports or {}
    tables = []
    for name, kind, *more in processes:
        if kind in CLIENT_KINDS:
            listeners = [f'client = "tcp:{ports.get(name, 0)}:interface=127.0.0.1"']
        else:
            listeners = [f'rpc = "tcp:{free_port()}:interface=127.0.0.1"']
        for extra in more[0] if more else ():
            listeners.append(f'{extra} = "tcp:0:interface=127.0.0.1"')
        if metrics:
            listeners.append(f'metrics = "tcp:{free_port()}:interface=127.0.0.1"')
        listener = "\n".join(listeners)
        tables.append(
            f'[processes.{name}]\nkind = "{kind}"\n{listener}\nhosts = ["localhost", "127.0.0.1"]\n'
        )
    return "\n".join(tables)


@dataclasses.dataclass
class Cluster:
    """
    A cluster of twistd processes, started (L{spawn_cluster}).

    @ivar config: Its config (the file is C{config.file}).
    @ivar ca: Its CA file, for clients.
    @ivar children: Process name -> its L{tests.test_twistd.TwistdProcess}.
    @ivar transports: Process name -> its process transport.
    @ivar ports: Login and gateway name -> the TLS port of its clients.
    @ivar redis: Its private L{tests.redis.RedisServer}, if it has one.
    """

    config: config.Config
    ca: str
    children: dict
    transports: dict
    ports: dict
    redis: object = None


async def spawn_cluster(
    testcase,
    processes,
    settings: str = "",
    pythonpath: str | None = None,
    appendonly: bool = False,
) -> Cluster:
    """
    The C{(name, kind[, listeners])} C{processes} (as L{process_tables} takes
    them) as C{twistd mmo-KIND} processes on a private redis-server (with
    C{appendonly}: C{appendfsync always}, L{tests.redis.RedisServer}), with
    C{settings} (and a game's modules on C{pythonpath}); fires once every
    one is ready.  The services start first, so that the login server and
    gateways find them.
    """
    from mmo import tls
    from tests.redis import redis_config_text, start_redis
    from tests.test_login_e2e import started
    from tests.test_twistd import spawn

    server = start_redis(testcase, appendonly=appendonly)
    conf = deployment(
        testcase, process_tables(*processes), extra=settings + redis_config_text(server)
    )
    kinds = {name: kind for name, kind, *_ in processes}
    # Services first; sorted() keeps the order within each group.
    order = sorted(kinds, key=lambda name: kinds[name] in CLIENT_KINDS)
    children, transports, ports = {}, {}, {}
    for name in order:
        children[name], transports[name] = spawn(
            testcase, conf.file, f"mmo-{kinds[name]}", "--process", name, pythonpath=pythonpath
        )
    for name in order:
        if kinds[name] in CLIENT_KINDS:
            ports[name] = await started(children[name], name)
        else:
            await children[name].whenLogged(rf"{name}: ready")
    ca = tls.ca_path(conf.deployment.tls_dir)
    return Cluster(conf, ca, children, transports, ports, server)


def managed_deployment(
    testcase,
    processes,
    settings: str = "",
    stop_timeout: float = 5.0,
    ports=None,
    manager_keys: str = "",
    metrics: bool = False,
) -> config.Config:
    """
    The deployment of the C{(name, kind)} C{processes} (one of them
    C{("manager", "manager")}) whose manager runs a redis-server of its own
    (append-only, in C{redis} beside the config, on a free port), with
    C{settings}; client listeners on the C{ports} given by name; the
    manager's table has C{manager_keys} too (lines of TOML); with
    C{metrics}, metrics listeners (L{process_tables}) and the manager's
    list of them, C{metrics-targets.json} beside the config.
    """
    from tests.redis import free_port, redis_server_path

    redis_server_path()
    extra = (
        settings
        + f'[redis]\nport = {free_port()}\nprefix = "test"\n'
        + '[manager]\nredis_dir = "redis"\nrestart_delay = 0.2\n'
        + f"stop_timeout = {stop_timeout}\n"
        + ('metrics_targets = "metrics-targets.json"\n' if metrics else "")
    )
    tables = process_tables(*processes, ports=ports, metrics=metrics).replace(
        'kind = "manager"', f'kind = "manager"\nredis_server = true\n{manager_keys}'
    )
    return deployment(testcase, tables, extra=extra)


async def spawn_managed(
    testcase,
    processes,
    settings: str = "",
    stop_timeout: float = 5.0,
    ports=None,
    manager_keys: str = "",
    metrics: bool = False,
) -> Cluster:
    """
    L{managed_deployment}'s cluster run by C{twistd mmo-manager}; fires once
    every process is ready.  The cluster's only child is the manager (its
    output holds every process's, each line prefixed C{[NAME]}).
    """
    from mmo import tls
    from tests.test_login_e2e import started
    from tests.test_twistd import spawn

    conf = managed_deployment(
        testcase, processes, settings, stop_timeout, ports, manager_keys, metrics
    )
    manager, transport = spawn(testcase, conf.file, "mmo-manager", "--process", "manager")
    ports = {}
    for name, kind in processes:
        if kind in CLIENT_KINDS:
            ports[name] = await started(manager, name)
        elif kind != "manager":
            await manager.whenLogged(rf"\[{name}\] .*{name}: ready")
    ca = tls.ca_path(conf.deployment.tls_dir)
    return Cluster(conf, ca, {"manager": manager}, {"manager": transport}, ports)


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


def stem_event(stem: bytes) -> list:
    """
    C{[kind, fields]} of a push's stem (L{codec.push_stem}): its frame
    decoded as a client decodes it, without its C{t} and C{seq}.
    """
    fields = codec.decode(codec.numbered_body(stem, 0))
    kind = fields.pop("t")
    del fields["seq"]
    return [kind, fields]


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
        """
        The zones' batched pushes since the last call: C{{session: [[kind,
        fields]...]}} (a L{mmo.game.messages.PushStems}'s stems decoded as
        a client reads them, by L{stem_event}).
        """
        from mmo.game.messages import PushBatch, PushStems

        found = []
        rest = []
        for m in self.messages:
            if isinstance(m, PushBatch):
                found.append(m.pushes)
            elif isinstance(m, PushStems):
                found.append(
                    {
                        session: [stem_event(stem) for stem in stems]
                        for session, stems in m.pushes.items()
                    }
                )
            else:
                rest.append(m)
        self.messages = rest
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
