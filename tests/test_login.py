"""
Tests for login: registration rules, password checks, throttles and
lockout, tickets (forged, expired, replayed, revoked), realms and gateway
choice, gateway admission and the second-login policy.

Passwords are hashed for real (argon2id with small parameters, on threads,
so the real reactor runs); the bus and store are the embedded ones and the
clock of tickets and throttles is a L{task.Clock}.
"""

from __future__ import annotations

import os

from twisted.internet import defer, reactor, task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from mmo.bus import BusError
from mmo.bus.memory import MemoryBus
from mmo.gateway.admission import Admission
from mmo.login import service as login_service
from mmo.login.passwords import PasswordHasher
from mmo.login.service import LoginService
from mmo.login.tickets import TicketSigner
from mmo.standalone.protocol import StandaloneFactory
from mmo.store.sqlite import SQLiteStore
from mmo.wire import codec, codes
from mmo.wire.codes import THROTTLED, TICKET_REFUSED, WireError
from tests import support
from tests.support import written_frames

KEY = b"k" * 64
PASSWORD = "correct horse battery"


class SpyHasher(PasswordHasher):
    """The real hasher, counting verifications and what they checked against."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.verified = []

    def verify(self, encoded, password):
        self.verified.append(encoded)
        return super().verify(encoded, password)


class HeldBus:
    """
    A bus whose C{count} and C{services} answers wait until L{answer}: what
    a login asked for before any answer came shows.
    """

    def __init__(self, bus):
        self.bus = bus
        self.waiting: list[tuple[str, defer.Deferred, object]] = []

    def __getattr__(self, name):
        return getattr(self.bus, name)

    def _held(self, name, *args):
        held = defer.Deferred()
        getattr(self.bus, name)(*args).addCallback(
            lambda result: self.waiting.append((name, held, result))
        )
        return held

    def count(self, key):
        return self._held("count", key)

    def services(self):
        return self._held("services")

    def asked(self) -> list[str]:
        return [name for name, _, _ in self.waiting]

    def answer(self) -> None:
        """Answer every call waiting, in the order asked; later ones answer at once."""
        waiting, self.waiting = self.waiting, []
        self.count = self.bus.count
        self.services = self.bus.services
        for _, d, result in waiting:
            d.callback(result)


class LoginTestCase(unittest.TestCase):
    login_options: dict = {}
    realm = "main"

    def setUp(self):
        self.config = support.config_of(
            {"mmo": {"kind": "mmo", "client": "tcp:7000", "realm": self.realm}},
            login={"argon2_memory_kib": 64, "argon2_time_cost": 1, **self.login_options},
            realms={"main": {"title": "Main"}, "east": {}},
        )
        self.clock = task.Clock()
        self.clock.advance(1_800_000_000)
        self.bus = MemoryBus(reactor=self.clock)
        self.store = SQLiteStore(os.path.abspath(self.mktemp()) + ".sqlite3", reactor=self.clock)
        self.hasher = SpyHasher(reactor, time_cost=1, memory_kib=64, threads_=2, queue=8)
        self.hasher.start()
        self.addCleanup(self.hasher.stop)
        self.signer = TicketSigner(KEY, self.config.login.ticket_ttl, self.clock)
        self.login = LoginService(
            self.config, self.store, self.bus, self.hasher, self.signer, self.clock
        )
        self.addCleanup(self.store.stop)
        return defer.gatherResults(
            [
                defer.ensureDeferred(defer.maybeDeferred(self.store.start)),
                defer.maybeDeferred(self.bus.start),
            ]
        ).addCallback(lambda _: self.announce("gw-a", "main", 10))

    def announce(self, name, realm, load, kind="gateway"):
        info = {"kind": kind, "realm": realm, "host": f"{name}.example", "port": 7000, "load": load}
        return defer.ensureDeferred(defer.maybeDeferred(self.bus.announce, name, info, 60))

    def call(self, coroutine):
        return defer.ensureDeferred(coroutine)

    async def failure_of(self, coroutine):
        try:
            await coroutine
        except WireError as e:
            return e
        self.fail("no WireError")


class RegisterTests(LoginTestCase):
    async def test_register_and_duplicate(self):
        account = await self.login.register("Alice", PASSWORD, "10.0.0.1")
        self.assertEqual(account.name, "Alice")
        self.assertTrue(account.password_hash.startswith("$argon2id$"))
        for name in ("alice", "ALICE", "Alice"):
            error = await self.failure_of(self.login.register(name, PASSWORD, "10.0.0.2"))
            self.assertEqual(error.code, codes.NAME_TAKEN)

    async def test_name_rules(self):
        for name in ("al", "x" * 21, "1abc", "bad name", "ünïcode", None, 12):
            error = await self.failure_of(self.login.register(name, PASSWORD, "10.0.0.1"))
            self.assertEqual(error.code, codes.BAD_NAME, repr(name))

    async def test_password_policy(self):
        for password in ("short", "x" * 300, "zz-alice-zz", "abababababab", None):
            error = await self.failure_of(self.login.register("Alice", password, "10.0.0.1"))
            self.assertEqual(error.code, codes.WEAK_PASSWORD, repr(password))

    async def test_registration_throttled_per_address(self):
        limit = self.config.login.register_per_ip
        for i in range(limit):
            await self.login.register(f"player{i}", PASSWORD, "10.0.0.9")
        error = await self.failure_of(self.login.register("another", PASSWORD, "10.0.0.9"))
        self.assertEqual(error.code, THROTTLED)
        # Another address is not affected.
        await self.login.register("another", PASSWORD, "10.0.0.10")


class LoginTests(LoginTestCase):
    def setUp(self):
        d = super().setUp()
        return d.addCallback(
            lambda _: self.call(self.login.register("Alice", PASSWORD, "10.0.0.1"))
        ).addCallback(lambda account: setattr(self, "account", account))

    async def test_login_gives_ticket_and_least_loaded_gateway(self):
        await self.announce("gw-b", "main", 3)
        await self.announce("gw-c", "east", 0)
        reply = await self.login.login("alice", PASSWORD, "10.0.0.1", "east")
        self.assertEqual(reply["realm"], "east")
        self.assertEqual(
            reply["gateway"],
            {"name": "gw-c", "host": "gw-c.example", "port": 7000, "websocket": None},
        )
        # The realm first in the config is the default; its least-loaded gateway is chosen.
        reply = await self.login.login("alice", PASSWORD, "10.0.0.1")
        self.assertEqual(reply["realm"], "main")
        self.assertEqual(reply["gateway"]["name"], "gw-b")
        ticket = self.signer.verify(reply["ticket"])
        self.assertEqual(ticket.account_id, self.account.id)
        self.assertEqual(ticket.realm, "main")
        self.assertEqual(reply["expires"], self.clock.seconds() + self.config.login.ticket_ttl)

    async def test_gateway_websocket_port(self):
        """A gateway that serves browsers is named with its WebSocket port."""
        info = {
            "kind": "gateway",
            "realm": "east",
            "host": "gw-w.example",
            "port": 7001,
            "websocket": 7443,
            "load": 0,
        }
        await self.bus.announce("gw-w", info, 60)
        reply = await self.login.login("alice", PASSWORD, "10.0.0.1", "east")
        self.assertEqual(
            reply["gateway"],
            {"name": "gw-w", "host": "gw-w.example", "port": 7001, "websocket": 7443},
        )

    async def test_gateways_of_the_realm(self):
        """
        C{gateways} lists every gateway of the realm that takes players,
        least loaded (the chosen one) first; a draining one, another realm's
        and a non-gateway are left out.
        """
        await self.announce("gw-b", "main", 3)
        await self.announce("gw-d", "main", 3)
        await self.announce("gw-e", "east", 0)
        await self.announce("lobby", "main", 0, kind="lobby")
        info = {"kind": "gateway", "realm": "main", "host": "gw-f.example", "port": 7000}
        await self.bus.announce("gw-f", {**info, "load": 0, "draining": True}, 60)
        await self.bus.announce("gw-w", {**info, "websocket": 7443, "load": 5}, 60)
        reply = await self.login.login("alice", PASSWORD, "10.0.0.1", "main")
        names = [gateway["name"] for gateway in reply["gateways"]]
        # Loads 3, 3 (by name), 5, 10 (gw-a, announced by setUp).
        self.assertEqual(names, ["gw-b", "gw-d", "gw-w", "gw-a"])
        self.assertEqual(reply["gateways"][0], reply["gateway"])
        self.assertEqual(
            reply["gateways"][2],
            {"name": "gw-w", "host": "gw-f.example", "port": 7000, "websocket": 7443},
        )
        self.assertEqual([g["websocket"] for g in reply["gateways"]], [None, None, 7443, None])

    async def test_unknown_realm_and_no_gateway(self):
        error = await self.failure_of(self.login.login("alice", PASSWORD, "10.0.0.1", "west"))
        self.assertEqual(error.code, codes.UNKNOWN_REALM)
        error = await self.failure_of(self.login.login("alice", PASSWORD, "10.0.0.1", "east"))
        self.assertEqual(error.code, codes.NO_GATEWAY)

    async def test_bus_reads_before_the_hash_asked_at_once(self):
        """
        The address's and the pair's failure counts and the directory are
        asked for before any of them answers (on Redis, one round trip);
        the account is looked up once they have answered, the throttles
        passed.
        """
        held = HeldBus(self.bus)
        self.login.bus = self.login.throttle.bus = held
        looked_up = []
        by_name = self.store.account_by_name
        self.patch(self.store, "account_by_name", lambda n: looked_up.append(n) or by_name(n))
        login = self.call(self.login.login("alice", PASSWORD, "10.0.0.1"))
        self.assertEqual(sorted(held.asked()), ["count", "count", "services"])
        self.assertEqual(looked_up, [])
        held.answer()
        self.assertEqual(looked_up, ["alice"])
        reply = await login
        self.assertEqual(reply["gateway"]["name"], "gw-a")

    async def test_no_gateway_told_after_the_password(self):
        """
        A wrong password in a realm with no gateway is a failed login: the
        directory, read with the throttles, is answered after the check.
        """
        wrong = self.login.login("alice", "wrong password!", "10.0.0.1", "east")
        error = await self.failure_of(wrong)
        self.assertEqual(error.code, codes.LOGIN_FAILED)
        self.assertEqual(len(self.hasher.verified), 1)

    async def test_throttled_with_the_directory_down(self):
        """
        A throttled address is told so when the directory, read at the same
        time, failed too: the throttles' answer comes first.
        """
        for _ in range(self.config.login.ip_failures):
            await self.login.throttle.failed_address("10.0.0.7")
        down = BusError("services: Redis did not answer")
        self.patch(self.bus, "services", lambda: defer.fail(down))
        error = await self.failure_of(self.login.login("alice", PASSWORD, "10.0.0.7"))
        self.assertEqual(error.code, THROTTLED)

    async def test_directory_unreachable(self):
        """
        The directory unreachable (the bus down) is the bus's failure, which
        the client is told as unavailable (a retry), not "no gateway is up".
        """
        down = BusError("services: Redis at redis.lan:7380 did not answer within 5s")
        self.patch(self.bus, "services", lambda kind=None: defer.fail(down))
        for call in (self.login.login("alice", PASSWORD, "10.0.0.1"), self.login.realms()):
            with self.assertRaises(BusError):
                await call

    async def test_realms_with_load(self):
        await self.announce("gw-b", "main", 5)
        realms = await self.login.realms()
        self.assertEqual(
            realms,
            [
                {"realm": "main", "title": "Main", "players": 15, "gateways": 2},
                {"realm": "east", "title": "east", "players": 0, "gateways": 0},
            ],
        )

    async def test_failures_look_alike(self):
        """
        A wrong password, an unknown name and a locked account give the same
        error, and each costs exactly one password verification.
        """
        wrong = await self.failure_of(self.login.login("alice", "wrong password!", "10.0.0.1"))
        unknown = await self.failure_of(self.login.login("nobody", PASSWORD, "10.0.0.1"))
        # Lock the account for this address.
        for _ in range(self.config.login.account_ip_failures):
            await self.failure_of(self.login.login("alice", "wrong again!!", "10.0.0.7"))
        self.hasher.verified.clear()
        locked = await self.failure_of(self.login.login("alice", PASSWORD, "10.0.0.7"))
        self.assertEqual(len(self.hasher.verified), 1)
        self.assertEqual(
            {(e.code, e.message) for e in (wrong, unknown, locked)},
            {(codes.LOGIN_FAILED, login_service.FAILED_MESSAGE)},
        )
        # The unknown name and the locked account were checked against the
        # decoy hash, which costs what a real check costs.
        self.hasher.verified.clear()
        await self.failure_of(self.login.login("nobody", PASSWORD, "10.0.0.1"))
        self.assertEqual(self.hasher.verified, [None])

    async def test_success_clears_the_pairs_failures(self):
        """
        A good login clears its address's failures on the account, which
        then has all its tries again; with no failures there is nothing to
        clear, and the bus is not asked to.
        """
        tries = self.config.login.account_ip_failures - 1
        for _ in range(tries):
            await self.failure_of(self.login.login("alice", "wrong password!", "10.0.0.8"))
        cleared = []
        clear = self.bus.clear
        self.patch(self.bus, "clear", lambda key: cleared.append(key) or clear(key))
        await self.login.login("alice", PASSWORD, "10.0.0.8")
        self.assertEqual(len(cleared), 1)
        for _ in range(tries):
            await self.failure_of(self.login.login("alice", "wrong password!", "10.0.0.8"))
        await self.login.login("alice", PASSWORD, "10.0.0.8")
        await self.login.login("alice", PASSWORD, "10.0.0.8")
        self.assertEqual(len(cleared), 2)

    async def test_address_throttled(self):
        for i in range(self.config.login.ip_failures):
            await self.failure_of(self.login.login(f"user{i}", "nope nope", "10.0.0.66"))
        error = await self.failure_of(self.login.login("alice", PASSWORD, "10.0.0.66"))
        self.assertEqual(error.code, THROTTLED)
        self.clock.advance(self.config.login.ip_window + 1)
        await self.announce("gw-a", "main", 10)
        await self.login.login("alice", PASSWORD, "10.0.0.66")

    async def test_attack_cannot_lock_the_player_out(self):
        """
        Failures from many addresses put the account under attack, but the
        player, from an address that never failed, still logs in; the
        attacking addresses are refused even with the right password.
        """
        limit = self.config.login.account_failures
        for i in range(limit):
            await self.failure_of(
                self.login.login("alice", "guess guess", f"10.1.{i // 200}.{i % 200}")
            )
        await self.login.login("alice", PASSWORD, "10.9.9.9")
        error = await self.failure_of(self.login.login("alice", PASSWORD, "10.1.0.0"))
        self.assertEqual(error.code, codes.LOGIN_FAILED)

    async def test_banned_after_password(self):
        await self.store.update_account(self.account.id, banned=True)
        error = await self.failure_of(self.login.login("alice", "wrong password!", "10.0.0.1"))
        self.assertEqual(error.code, codes.LOGIN_FAILED)
        error = await self.failure_of(self.login.login("alice", PASSWORD, "10.0.0.1"))
        self.assertEqual(error.code, codes.BANNED)

    async def test_hash_never_logged_or_replied(self):
        logs = support.LogCapture(self)
        reply = await self.login.login("alice", PASSWORD, "10.0.0.1", "main")
        await self.failure_of(self.login.login("alice", "wrong password!", "10.0.0.1"))
        await self.login.register("Bob_2", PASSWORD, "10.0.0.1")
        secret = self.account.password_hash
        self.assertNotIn(secret, repr(reply))
        self.assertNotIn(secret, repr(self.account))
        for line in logs.lines:
            self.assertNotIn(secret, line)
            self.assertNotIn(PASSWORD, line)

    async def test_busy_when_hash_queue_full(self):
        hasher = PasswordHasher(reactor, threads_=1, queue=0, time_cost=1, memory_kib=64)
        hasher.start()
        self.addCleanup(hasher.stop)
        first = hasher.hash(PASSWORD)
        error = await self.failure_of(hasher.hash(PASSWORD))
        self.assertEqual(error.code, "busy")
        self.assertGreaterEqual(error.retry_after, 0.05)
        self.assertTrue((await first).startswith("$argon2id$"))
        self.assertTrue((await hasher.hash(PASSWORD)).startswith("$argon2id$"))


class TicketTests(LoginTestCase):
    def setUp(self):
        d = super().setUp()
        self.admission = Admission(self.signer, self.bus, "main", self.clock)
        return d

    def issue(self):
        return self.signer.issue("acct1", "Alice", "main")[0]

    async def refusal(self, token, admission=None):
        error = await self.failure_of((admission or self.admission).admit(token))
        self.assertEqual(error.code, TICKET_REFUSED)
        return error.message

    async def test_good_ticket_once(self):
        token = self.issue()
        ticket = await self.admission.admit(token)
        self.assertEqual((ticket.account_id, ticket.name), ("acct1", "Alice"))
        self.assertEqual(await self.refusal(token), "ticket already used")

    async def test_forged(self):
        token = self.issue()
        body, mac = token.split(".")
        self.assertEqual(await self.refusal(body + "." + mac[::-1]), "forged ticket")
        other = TicketSigner(b"x" * 64, 60, self.clock).issue("acct1", "Alice", "main")[0]
        self.assertEqual(await self.refusal(other), "forged ticket")
        self.assertEqual(await self.refusal("garbage"), "malformed ticket")
        # The payload of another ticket under this ticket's signature.
        other_body = self.signer.issue("acct2", "Mallory", "main")[0].split(".")[0]
        self.assertEqual(await self.refusal(other_body + "." + mac), "forged ticket")

    async def test_expired(self):
        token = self.issue()
        self.clock.advance(self.config.login.ticket_ttl)
        self.assertEqual(await self.refusal(token), "expired ticket")

    async def test_revoked(self):
        token = self.issue()
        await login_service.revoke(self.bus, self.config, "acct1", self.clock.seconds())
        self.assertEqual(await self.refusal(token), "revoked ticket")
        self.clock.advance(1)
        await self.admission.admit(self.issue())

    async def test_other_realm(self):
        token = self.signer.issue("acct1", "Alice", "east")[0]
        self.assertIn("realm", await self.refusal(token))


class AdmissionTestCase(LoginTestCase):
    """A standalone factory of realm "east" wired to the login service, the bus and admission."""

    realm = "east"

    def setUp(self):
        d = super().setUp()
        self.factory = support.gateway(
            self.config,
            "mmo",
            self.bus,
            self.signer,
            clock=self.clock,
            factory_class=StandaloneFactory,
            login=self.login,
        )
        return d

    def connect(self, port=4000):
        proto = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", port))
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", port))
        proto.makeConnection(transport)
        proto.dataReceived(codec.frame({"t": "hello", "id": 1, "versions": [1]}))
        self.assertEqual(written_frames(transport)[0]["t"], "reply")
        return proto, transport

    async def request(self, proto, transport, message):
        proto.dataReceived(codec.frame(message))
        return await support.collect(lambda: written_frames(transport))


class AdmissionProtocolTests(AdmissionTestCase):
    """The standalone protocol: login messages, then auth, then the rest."""

    async def test_register_login_auth(self):
        await self.announce("mmo", "east", 0, kind="mmo")
        proto, wire = self.connect()
        [error] = await self.request(proto, wire, {"t": "emote", "id": 2})
        self.assertEqual(error["code"], codes.AUTH_REQUIRED)
        self.assertFalse(wire.disconnecting)
        [reply] = await self.request(
            proto, wire, {"t": "register", "id": 3, "name": "Zed", "password": PASSWORD}
        )
        self.assertEqual(reply["name"], "Zed")
        [reply] = await self.request(
            proto,
            wire,
            {"t": "login", "id": 4, "name": "zed", "password": PASSWORD, "realm": "east"},
        )
        self.assertEqual(reply["gateway"]["name"], "mmo")
        [admitted] = await self.request(
            proto, wire, {"t": "auth", "id": 5, "ticket": reply["ticket"]}
        )
        self.assertEqual(admitted["name"], "Zed")
        [pong] = await self.request(proto, wire, {"t": "ping", "id": 6})
        self.assertEqual(pong["t"], "reply")

        # The newer session wins; the older one is told why before it closes.
        second, second_wire = self.connect(4001)
        [reply] = await self.request(
            second,
            second_wire,
            {"t": "login", "id": 2, "name": "Zed", "password": PASSWORD, "realm": "east"},
        )
        await self.request(second, second_wire, {"t": "auth", "id": 3, "ticket": reply["ticket"]})
        [bye] = written_frames(wire)
        self.assertEqual((bye["t"], bye["code"]), ("bye", codes.REPLACED))
        self.assertTrue(wire.disconnecting)
        self.assertIs(
            self.factory.sessions.registry.by_account[admitted["account"]].connection, second
        )

    async def test_logout_on_the_gateway(self):
        """
        logout answers, then says goodbye; the account's tickets issued until
        then are refused.
        """
        await self.announce("mmo", "east", 0, kind="mmo")
        await self.login.register("Zed", PASSWORD, "127.0.0.1")
        first = await self.login.login("Zed", PASSWORD, "127.0.0.1", "east")
        spare = await self.login.login("Zed", PASSWORD, "127.0.0.1", "east")
        proto, wire = self.connect()
        await self.request(proto, wire, {"t": "auth", "id": 2, "ticket": first["ticket"]})
        [reply] = await self.request(proto, wire, {"t": "logout", "id": 3})
        self.assertEqual(reply, {"t": "reply", "id": 3})
        self.clock.advance(0)
        await support.sleep(0)
        [bye] = written_frames(wire)
        self.assertEqual((bye["t"], bye["code"]), ("bye", codes.LOGGED_OUT))
        other, other_wire = self.connect(4002)
        [error] = await self.request(
            other, other_wire, {"t": "auth", "id": 2, "ticket": spare["ticket"]}
        )
        self.assertEqual((error["code"], error["message"]), (TICKET_REFUSED, "revoked ticket"))


class RefusePolicyTests(AdmissionTestCase):
    login_options = {"second_login": "refuse"}

    async def test_register_login_auth(self):
        await self.announce("mmo", "east", 0, kind="mmo")
        await self.login.register("Zed", PASSWORD, "127.0.0.1")
        tickets = [
            (await self.login.login("Zed", PASSWORD, "127.0.0.1", "east"))["ticket"]
            for _ in range(2)
        ]
        proto, wire = self.connect()
        [admitted] = await self.request(proto, wire, {"t": "auth", "id": 2, "ticket": tickets[0]})
        self.assertEqual(admitted["t"], "reply")
        second, second_wire = self.connect(4001)
        [error] = await self.request(
            second, second_wire, {"t": "auth", "id": 2, "ticket": tickets[1]}
        )
        self.assertEqual(error["code"], "already_online")
        self.assertFalse(wire.disconnecting)
