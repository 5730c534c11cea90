"""
The admin console (C{mmo.console}) with fakes: its login (one-time links,
session cookies, CSRF tokens) through the real C{twisted.web} site over a
C{StringTransport}, its actions reaching the manager's commands, and the
manager's console commands (login links, players, mute, recent errors)
over the in-memory bus.
"""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from http.cookies import SimpleCookie

from twisted.internet import defer, task
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from mmo.bus.memory import MemoryBus
from mmo.config import ConfigError
from mmo.console import console_url
from mmo.console.__main__ import main as console_main
from mmo.console.auth import LINKS_MAX, ConsoleAuth
from mmo.console.site import ACTIONS, BODY_MAX, ConsoleSite, console_root
from mmo.manager.errors import RecentErrors, is_error
from mmo.manager.service import Manager, ManagerError
from mmo.process import control
from tests.support import write_config
from tests.test_manager import CLUSTER, supervisor


class Response:
    """One HTTP response as the site wrote it (HTTP/1.0: the body is all the rest)."""

    def __init__(self, raw: bytes):
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split(" ")[1])
        self.headers: dict[str, list[str]] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers.setdefault(name.strip().lower(), []).append(value.strip())

    def json(self):
        return json.loads(self.body)

    def cookie(self) -> SimpleCookie:
        jar = SimpleCookie()
        for value in self.headers.get("set-cookie", []):
            jar.load(value)
        return jar


class FakeManager:
    """Records the commands the console runs; answers each with C{answer}."""

    def __init__(self, answer=None, error=None):
        self.calls = []
        self.answer = answer if answer is not None else {"done": True}
        self.error = error

    async def run(self, command, args):
        self.calls.append((command, args))
        if self.error is not None:
            raise self.error
        return self.answer


class Refused(Exception):
    """What the fake manager refuses with, told to the operator."""


class ConsoleTestCase(unittest.TestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.auth = ConsoleAuth(self.clock, link_lifetime=60, session_lifetime=3600)
        self.manager = FakeManager()
        self.site = ConsoleSite(console_root(self.auth, self.manager, (Refused,)), self.clock)

    def request(self, method: str, path: str, headers=None, body: bytes = b"") -> Response:
        channel = self.site.buildProtocol(None)
        transport = StringTransport()
        channel.makeConnection(transport)
        lines = [f"{method} {path} HTTP/1.0", "Host: localhost"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        if body:
            lines.append(f"Content-Length: {len(body)}")
        channel.dataReceived("\r\n".join(lines).encode() + b"\r\n\r\n" + body)
        response = Response(transport.value())
        channel.connectionLost(None)
        return response

    def log_in(self) -> tuple[dict, str]:
        """A good login: the cookie header of its session, and its CSRF token."""
        response = self.request("GET", f"/login?token={self.auth.issue_link()}")
        self.assertEqual(response.status, 302)
        self.assertEqual(response.headers["location"], ["/"])
        morsel = response.cookie()["mmo-console"]
        headers = {"Cookie": f"mmo-console={morsel.value}"}
        session = self.request("GET", "/api/session", headers)
        self.assertEqual(session.status, 200)
        return headers, session.json()["csrf"]

    def act(self, command: str, args: dict, headers: dict, csrf: str | None) -> Response:
        headers = dict(headers, **({"X-CSRF-Token": csrf} if csrf is not None else {}))
        return self.request("POST", f"/api/action/{command}", headers, json.dumps(args).encode())


class AuthTests(ConsoleTestCase):
    def test_no_cookie(self):
        """Without a session: the page is the login help, every other path 403."""
        page = self.request("GET", "/")
        self.assertEqual(page.status, 403)
        self.assertIn(b"mmo-admin --config FILE console", page.body)
        self.assertNotIn(b"console.js", page.body)
        for path in ("/api/status", "/api/session", "/static/console.js", "/map/map.js"):
            self.assertEqual(self.request("GET", path).status, 403, path)
        self.assertEqual(self.manager.calls, [])

    def test_forged_cookie_and_token(self):
        """A cookie or a login token the console did not make gets nothing."""
        self.auth.issue_link()
        self.assertEqual(self.request("GET", "/login?token=made-up").status, 403)
        self.assertEqual(self.request("GET", "/login").status, 403)
        forged = {"Cookie": "mmo-console=made-up"}
        self.assertEqual(self.request("GET", "/api/status", forged).status, 403)
        self.assertEqual(self.request("GET", "/", forged).status, 403)

    def test_good_login(self):
        """A link logs one browser in: a Secure, HttpOnly, SameSite=Strict, expiring cookie."""
        response = self.request("GET", f"/login?token={self.auth.issue_link()}")
        morsel = response.cookie()["mmo-console"]
        self.assertTrue(morsel["secure"])
        self.assertTrue(morsel["httponly"])
        self.assertEqual(morsel["samesite"].lower(), "strict")
        self.assertEqual(morsel["max-age"], "3600")
        self.assertEqual(morsel["path"], "/")
        headers = {"Cookie": f"mmo-console={morsel.value}"}
        page = self.request("GET", "/", headers)
        self.assertEqual(page.status, 200)
        self.assertIn(b'<div id="world-map"></div>', page.body)
        self.assertIn("frame-ancestors 'none'", page.headers["content-security-policy"][0])
        self.assertEqual(page.headers["cache-control"], ["no-store"])
        script = self.request("GET", "/static/console.js", headers)
        self.assertEqual(script.status, 200)
        self.assertIn(b"x-csrf-token", script.body)

    def test_reused_token(self):
        token = self.auth.issue_link()
        self.assertEqual(self.request("GET", f"/login?token={token}").status, 302)
        again = self.request("GET", f"/login?token={token}")
        self.assertEqual(again.status, 403)
        self.assertNotIn("set-cookie", again.headers)

    def test_expired_token(self):
        token = self.auth.issue_link()
        self.clock.advance(60)
        self.assertEqual(self.request("GET", f"/login?token={token}").status, 403)

    def test_unused_links_are_bounded(self):
        """Past LINKS_MAX links waiting, the oldest is forgotten."""
        first = self.auth.issue_link()
        for _ in range(LINKS_MAX):
            self.auth.issue_link()
        self.assertEqual(self.request("GET", f"/login?token={first}").status, 403)

    def test_expired_session(self):
        headers, _ = self.log_in()
        self.clock.advance(3599)
        self.assertEqual(self.request("GET", "/api/status", headers).status, 200)
        self.clock.advance(1)
        self.assertEqual(self.request("GET", "/api/status", headers).status, 403)

    def test_missing_or_wrong_csrf_token(self):
        """An action without the session's CSRF token is refused and not run."""
        headers, csrf = self.log_in()
        for token in (None, "", "wrong", csrf + "x"):
            response = self.act("drain", {"process": "gateway-1"}, headers, token)
            self.assertEqual(response.status, 403, token)
        # A token without a session is nothing either.
        self.assertEqual(self.act("drain", {"process": "gateway-1"}, {}, csrf).status, 403)
        self.assertEqual(self.manager.calls, [])

    def test_logout(self):
        headers, csrf = self.log_in()
        self.assertEqual(self.request("POST", "/logout", headers).status, 403)
        out = self.request("POST", "/logout", dict(headers, **{"X-CSRF-Token": csrf}))
        self.assertEqual(out.status, 200)
        self.assertEqual(out.cookie()["mmo-console"].value, "")
        self.assertEqual(self.request("GET", "/api/status", headers).status, 403)


class ActionTests(ConsoleTestCase):
    def test_actions_run_the_manager_commands(self):
        """Each button's action is the manager's admin command of its name, with its arguments."""
        headers, csrf = self.log_in()
        examples = {
            "drain": {"process": "gateway-1"},
            "upgrade": {"process": "zone-1"},
            "kick": {"account": "hero", "reason": "cheating"},
            "broadcast": {"text": "restart in 5 minutes"},
            "mute": {"name": "hero", "seconds": 600, "reason": "spam"},
        }
        self.assertEqual(set(examples), set(ACTIONS))
        for command, args in examples.items():
            response = self.act(command, args, headers, csrf)
            self.assertEqual(response.status, 200)
            self.assertEqual(response.json(), {"ok": True, "result": {"done": True}})
        self.assertEqual(self.manager.calls, list(examples.items()))

    def test_reads(self):
        headers, _ = self.log_in()
        for path, command, args in [
            ("/api/status", "status", {}),
            ("/api/players?after=s-9", "players", {"after": "s-9"}),
            ("/api/errors", "errors", {}),
        ]:
            self.assertEqual(self.request("GET", path, headers).status, 200)
            self.assertEqual(self.manager.calls[-1], (command, args))

    def test_only_the_console_actions(self):
        """Other manager commands (jobs, console...) are not actions of the page."""
        headers, csrf = self.log_in()
        for command in ("console", "jobs", "status", "__init__"):
            self.assertEqual(self.act(command, {}, headers, csrf).status, 404)
        self.assertEqual(self.request("GET", "/api/console", headers).status, 404)
        self.assertEqual(self.manager.calls, [])

    def test_bad_bodies(self):
        headers, csrf = self.log_in()
        headers = dict(headers, **{"X-CSRF-Token": csrf})
        for body, code in [(b"[1]", 400), (b"{nope", 400), (b"x" * (BODY_MAX + 1), 413)]:
            response = self.request("POST", "/api/action/kick", headers, body)
            self.assertEqual(response.status, code)
            self.assertFalse(response.json()["ok"])
        self.assertEqual(self.manager.calls, [])

    def test_refusal_is_told(self):
        """What the manager refuses with is the answer; anything else is logged, not shown."""
        headers, csrf = self.log_in()
        self.manager.error = Refused("gateway-9 is not run here")
        response = self.act("drain", {"process": "gateway-9"}, headers, csrf)
        self.assertEqual(response.status, 409)
        self.assertEqual(response.json(), {"ok": False, "error": "gateway-9 is not run here"})
        self.manager.error = KeyError("secret detail")
        response = self.act("drain", {"process": "gateway-9"}, headers, csrf)
        self.assertEqual(response.status, 500)
        self.assertNotIn("secret", response.json()["error"])
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)

    def test_extra_children_behind_the_gate(self):
        """A child the manager mounts (the live map) is reached only with a session."""
        from twisted.web.static import Data

        root = console_root(self.auth, self.manager, extra={b"map": Data(b"map", "text/plain")})
        self.site = ConsoleSite(root, self.clock)
        self.assertEqual(self.request("GET", "/map").status, 403)
        headers, _ = self.log_in()
        response = self.request("GET", "/map", headers)
        self.assertEqual((response.status, response.body), (200, b"map"))


CONSOLE_CLUSTER = CLUSTER.replace(
    'kind = "manager"', 'kind = "manager"\nconsole = "tcp:7480:interface=127.0.0.1"'
)


class ManagerConsoleTests(unittest.TestCase):
    """The manager's commands behind the console, over the in-memory bus."""

    async def setUp(self):
        from mmo import config

        self.conf = config.load(write_config(self, CONSOLE_CLUSTER))
        self.supervisor, self.clock = supervisor(("gateway-1", "gateway"), ("chat", "chat"))
        self.bus = MemoryBus(reactor=self.clock)
        await self.bus.start()
        self.addCleanup(self.bus.stop)
        self.auth = ConsoleAuth.from_config(self.conf, self.clock)
        self.manager = Manager(
            self.conf, self.conf.processes["manager"], self.bus, self.supervisor, self.clock,
            console=self.auth,
        )  # fmt: skip

    def run_command(self, command, args=None):
        d = defer.ensureDeferred(self.manager.run(command, args or {}))
        for _ in range(20):
            self.clock.advance(0)
        return self.successResultOf(d)

    async def answering(self, name: str, kind: str, **handlers):
        """A process C{name} in the directory, answering C{handlers} on its control channel."""
        await self.bus.announce(name, {"kind": kind}, 60)
        service = control.ControlService(self.bus, name)
        for command, handler in handlers.items():
            service.register(command, handler)
        await service.start()
        self.addCleanup(service.stop)

    def test_console_link(self):
        """C{mmo-admin console}'s link logs a browser in, once."""
        result = self.run_command("console")
        self.assertEqual(result["console"], "https://localhost:7480/")
        self.assertTrue(result["url"].startswith("https://localhost:7480/login?token="))
        token = result["url"].split("token=", 1)[1]
        self.assertIsNotNone(self.auth.log_in(token))
        self.assertIsNone(self.auth.log_in(token))

    def test_no_console(self):
        manager = Manager(
            self.conf, self.conf.processes["manager"], self.bus, self.supervisor, self.clock
        )
        d = defer.ensureDeferred(manager.run("console", {}))
        self.assertIn("serves no console", str(self.failureResultOf(d, ManagerError).value))

    async def test_players_pages_every_gateway(self):
        asked = []

        def sessions(after, limit):
            asked.append((after, limit))
            return {"sessions": [{"session": "s-2", "name": "hero"}], "total": 3, "more": True}

        await self.answering("gateway-1", "gateway", sessions=sessions)
        await self.answering("gateway-2", "gateway", sessions=sessions)
        await self.answering("chat", "chat")
        result = self.run_command("players", {"after": "s-1"})
        self.assertEqual(set(result["gateways"]), {"gateway-1", "gateway-2"})
        self.assertEqual(result["gateways"]["gateway-1"]["sessions"][0]["name"], "hero")
        self.assertEqual(asked, [("s-1", 200), ("s-1", 200)])

    async def test_mute_goes_to_chat(self):
        muted = []
        await self.answering("gateway-1", "gateway")
        await self.answering("chat", "chat", mute=lambda **args: muted.append(args) or args)
        result = self.run_command("mute", {"name": "hero", "seconds": 60, "reason": "spam"})
        self.assertEqual(muted, [{"name": "hero", "seconds": 60, "reason": "spam"}])
        self.assertEqual(result["name"], "hero")

    def test_mute_without_chat(self):
        d = defer.ensureDeferred(self.manager.run("mute", {"name": "hero"}))
        for _ in range(5):
            self.clock.advance(0)
        self.assertIn("no chat process", str(self.failureResultOf(d).value))

    def test_recent_errors(self):
        """Error lines and standard error are kept, newest first; others are not."""
        self.supervisor.child_line("gateway-1", 1, b"T [gateway-1] info x: fine")
        self.supervisor.child_line("gateway-1", 1, b"T [gateway-1] error x: broken")
        self.supervisor.child_line("chat", 2, b"Traceback (most recent call last):")
        self.supervisor.child_line("chat", 1, b'{"level": "critical", "text": "down"}')
        result = self.run_command("errors")
        self.assertEqual(
            [(e["process"], e["text"]) for e in result["errors"]],
            [
                ("chat", '{"level": "critical", "text": "down"}'),
                ("chat", "Traceback (most recent call last):"),
                ("gateway-1", "T [gateway-1] error x: broken"),
            ],
        )
        self.assertEqual(len(self.run_command("errors", {"limit": 1})["errors"]), 1)


class RecentErrorsTests(unittest.TestCase):
    def test_bounded(self):
        errors = RecentErrors(task.Clock(), size=3)
        for n in range(5):
            errors.line("zone-1", 2, f"line {n}" + "x" * 5000)
        recent = errors.recent(10)
        self.assertEqual(len(recent), 3)
        self.assertTrue(recent[0]["text"].startswith("line 4"))
        self.assertEqual(len(recent[0]["text"]), 2000)

    def test_levels(self):
        self.assertTrue(is_error("2026-01-01T00:00:00+0000 [zone-1] error mmo.zone: x"))
        self.assertFalse(is_error("2026-01-01T00:00:00+0000 [zone-1] warn mmo.zone: error x"))
        self.assertFalse(is_error('{"level": "info", "text": "error"}'))
        self.assertFalse(is_error("{not json"))


class ConfigTests(unittest.TestCase):
    def test_console_is_a_manager_key(self):
        from mmo import config

        text = CONSOLE_CLUSTER.replace(
            'kind = "gateway"', 'kind = "gateway"\nconsole = "tcp:7481"', 1
        )
        with self.assertRaises(ConfigError) as caught:
            config.load(write_config(self, text))
        self.assertIn("console: a 'gateway' process does not use it", str(caught.exception))

    def test_console_port_clash(self):
        """The console is a listener like the others: on a port another takes, the start fails."""
        from mmo import config

        conf = config.load(write_config(self, CONSOLE_CLUSTER))
        taken = next(
            (name, p.rpc) for name, p in conf.processes.items() if p.rpc and p.rpc.startswith("tcp")
        )
        port = taken[1].split(":")[1]
        text = CONSOLE_CLUSTER.replace("tcp:7480:", f"tcp:{port}:")
        with self.assertRaises(ConfigError) as caught:
            config.load(write_config(self, text))
        self.assertIn(f"port {port} is taken by processes.{taken[0]}.rpc", str(caught.exception))
        self.assertIn("processes.manager.console", str(caught.exception))

    def test_console_needs_a_port(self):
        """Its login links name its port: a port chosen at start fails the manager's start."""
        from mmo import config

        conf = config.load(write_config(self, CONSOLE_CLUSTER.replace("tcp:7480", "tcp:0")))
        with self.assertRaises(ConfigError) as caught:
            console_url(conf, conf.processes["manager"])
        self.assertIn("processes.manager.console", str(caught.exception))
        self.assertIn("TCP port", str(caught.exception))

    def test_printed_address(self):
        """What make cluster prints: the console's address and how to log in."""
        out = io.StringIO()
        with redirect_stdout(out):
            status = console_main(["--config", write_config(self, CONSOLE_CLUSTER)])
        self.assertEqual(status, 0)
        self.assertIn("The admin console of manager: https://localhost:7480/", out.getvalue())
        self.assertIn("console; docs/console.md", out.getvalue())
