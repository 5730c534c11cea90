"""
The admin console's C{twisted.web} site: its page, its files, the login
link's landing and a small JSON API over the manager's admin commands.

    GET  /                  the console (the login help to a browser not logged in)
    GET  /login?token=T     spends a login link: a session cookie, then to /
    POST /logout            ends the session (CSRF token)
    GET  /static/...        the page's script and style
    GET  /api/session       the session's CSRF token and end
    GET  /api/status        the manager's C{status} (as C{mmo-admin status})
    GET  /api/players       the players online, a page per gateway (C{players})
    GET  /api/errors        the processes' recent error lines (C{errors})
    POST /api/action/NAME   one of L{ACTIONS}, its arguments a JSON object (CSRF token)

Everything but C{/} and C{/login} answers 403 without a session, and the
children the manager adds (C{extra}: the live map) get the same L{ConsoleAuth}
to check.  Every command goes through the manager's C{run}, the same path
as C{mmo-admin}'s admin endpoint.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources
from io import BytesIO

from twisted.internet import defer
from twisted.logger import Logger
from twisted.web import http, resource, server
from twisted.web.resource import IResource

from mmo.console.auth import ConsoleAuth
from mmo.web.pages import HTTP_IDLE_TIMEOUT, DemoPages

#: The manager's commands the console may run, and the HTTP method of each.
READS = {b"status": "status", b"players": "players", b"errors": "errors"}

#: What the console's buttons do: the manager's admin commands of the same names.
ACTIONS = ("drain", "upgrade", "kick", "broadcast", "mute")

#: The largest request body read, bytes.
BODY_MAX = 64 * 1024

#: The page's files (package data in C{static/}), by path, and their types.
FILES = {
    b"/index.html": b"text/html; charset=utf-8",
    b"/static/console.js": b"text/javascript; charset=utf-8",
    b"/static/console.css": b"text/css; charset=utf-8",
}

#: Headers on every response: nothing but the console's own files, no
#: framing, no caching (every answer is about one session).
HEADERS = {
    b"content-security-policy": (
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    b"x-content-type-options": b"nosniff",
    b"x-frame-options": b"DENY",
    b"referrer-policy": b"no-referrer",
    b"cross-origin-opener-policy": b"same-origin",
    b"cross-origin-resource-policy": b"same-origin",
    b"cache-control": b"no-store",
    b"server": b"mmo",
}

#: What a browser without a session is shown.
LOGIN_HELP = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>mmo console: log in</title></head>
<body><h1>mmo admin console</h1>
<p id="login-help">Log in with a one-time link: run
<code>mmo-admin --config FILE console</code> (it needs the deployment's admin
certificate) and open the address it prints.</p></body></html>
"""


def console_files() -> dict[bytes, tuple[bytes, bytes]]:
    """The page's files from the installed package, by path."""
    static = resources.files("mmo.console") / "static"
    return {
        path: (kind, (static / path.rsplit(b"/", 1)[1].decode()).read_bytes())
        for path, kind in FILES.items()
    }


def _address(request) -> str:
    address = request.getClientAddress()
    return getattr(address, "host", None) or str(address)


def set_headers(request) -> None:
    for name, value in HEADERS.items():
        request.setHeader(name, value)


def answer_json(request, value, code: int = http.OK) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    return json.dumps(value, default=str).encode()


def refuse(request, code: int, why: str) -> bytes:
    return answer_json(request, {"ok": False, "error": why}, code)


class ConsoleRoot(resource.Resource):
    """
    The root of the console: the page at C{/} for a logged-in browser (the
    login help otherwise), and the gate in front of every child but
    C{login}: a request without a session gets 403.
    """

    def __init__(self, auth: ConsoleAuth, index: bytes):
        super().__init__()
        self.auth = auth
        self.index = index

    def getChildWithDefault(self, path: bytes, request) -> IResource:
        set_headers(request)
        if path == b"":
            return self
        if path != b"login" and not self.auth.authorized(request):
            return resource.ErrorPage(http.FORBIDDEN, "Forbidden", "log in to the console first")
        return super().getChildWithDefault(path, request)

    def render_GET(self, request) -> bytes:
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        if not self.auth.authorized(request):
            request.setResponseCode(http.FORBIDDEN)
            return LOGIN_HELP
        return self.index


class Login(resource.Resource):
    """C{/login?token=T}: spend a login link, set the session cookie, go to C{/}."""

    isLeaf = True
    log = Logger()

    def __init__(self, auth: ConsoleAuth):
        super().__init__()
        self.auth = auth

    def render_GET(self, request) -> bytes:
        token = (request.args.get(b"token") or [b""])[0]
        logged = self.auth.log_in(token)
        if logged is None:
            self.log.warn(
                "console: a login link from {address} was refused (unknown, used or expired)",
                address=_address(request),
            )
            request.setResponseCode(http.FORBIDDEN)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"this login link is unknown, used already or expired: ask for another\n"
        ident, _ = logged
        self.auth.set_cookie(request, ident)
        self.log.info("console: {address} logged in with a login link", address=_address(request))
        request.redirect(b"/")
        return b""


class Logout(resource.Resource):
    """C{POST /logout}: end the session."""

    isLeaf = True

    def __init__(self, auth: ConsoleAuth):
        super().__init__()
        self.auth = auth

    def render_POST(self, request) -> bytes:
        if not self.auth.may_act(request):
            return refuse(request, http.FORBIDDEN, "no session, or no CSRF token")
        self.auth.log_out(request)
        return answer_json(request, {"ok": True})


class Api(resource.Resource):
    """
    C{/api/...}: the session, the manager's reads and its actions.

    @ivar manager: What runs the admin commands: an object with C{run(command,
        args)} returning an awaitable of the result (the manager's, the same
        as its admin endpoint's).
    @ivar refusals: The exceptions of C{run} whose message is the answer
        (the operator is told why); others are logged.
    """

    isLeaf = True
    log = Logger()

    def __init__(self, auth: ConsoleAuth, manager, refusals: tuple[type[Exception], ...] = ()):
        super().__init__()
        self.auth = auth
        self.manager = manager
        self.refusals = refusals

    def render_GET(self, request) -> bytes | int:
        path = request.postpath
        if path == [b"session"]:
            session = self.auth.session(request)
            if session is None:
                return refuse(request, http.FORBIDDEN, "the session has ended")
            return answer_json(request, {"csrf": session.csrf, "expires": session.expires})
        if len(path) != 1 or path[0] not in READS:
            return refuse(request, http.NOT_FOUND, "no such page")
        args = {}
        if path[0] == b"players":
            after = request.args.get(b"after")
            if after:
                args["after"] = after[0].decode("utf-8", "replace")
        return self.run(request, READS[path[0]], args)

    def render_POST(self, request) -> bytes | int:
        path = request.postpath
        if len(path) != 2 or path[0] != b"action":
            return refuse(request, http.NOT_FOUND, "no such action")
        if not self.auth.may_act(request):
            return refuse(request, http.FORBIDDEN, "no session, or no CSRF token")
        command = path[1].decode("utf-8", "replace")
        if command not in ACTIONS:
            return refuse(request, http.NOT_FOUND, f"no action {command!r}")
        if getattr(request, "too_large", False):
            return refuse(request, http.REQUEST_ENTITY_TOO_LARGE, "the request is too large")
        try:
            args = json.loads(request.content.getvalue() or b"{}")
        except ValueError as e:
            return refuse(request, http.BAD_REQUEST, f"the body is not JSON: {e}")
        if not isinstance(args, dict):
            return refuse(request, http.BAD_REQUEST, "the body must be a JSON object")
        self.log.info("console: {command} {args}", command=command, args=args)
        return self.run(request, command, args)

    def run(self, request, command: str, args: dict) -> int:
        """Run C{command} through the manager; its result, or why not, as JSON."""
        finished = []
        request.notifyFinish().addBoth(finished.append)
        d = defer.ensureDeferred(self.manager.run(command, args))

        def done(result):
            return answer_json(request, {"ok": True, "result": result})

        def failed(failure):
            # What the admin endpoint would tell mmo-admin; anything else
            # is logged, not shown.
            if self.refusals and failure.check(*self.refusals):
                return refuse(request, http.CONFLICT, str(failure.value))
            self.log.failure("console: {command} failed", failure, command=command)
            return refuse(request, http.INTERNAL_SERVER_ERROR, f"{command} failed (see the log)")

        def write(body: bytes):
            if not finished:
                request.write(body)
                request.finish()

        d.addCallbacks(done, failed).addCallback(write)
        d.addErrback(lambda f: self.log.failure("console: answer lost", f))
        return server.NOT_DONE_YET


class ConsoleRequest(server.Request):
    """A request whose body is kept in memory up to L{BODY_MAX} bytes, and dropped past it."""

    too_large = False

    def gotLength(self, length) -> None:
        self.content = BytesIO()
        self.too_large = length is not None and length > BODY_MAX

    def handleContentChunk(self, data: bytes) -> None:
        if self.too_large or self.content.tell() + len(data) > BODY_MAX:
            self.too_large = True
            return
        self.content.write(data)


def console_root(
    auth: ConsoleAuth,
    manager,
    refusals: tuple[type[Exception], ...] = (),
    extra: Mapping[bytes, IResource] | None = None,
) -> IResource:
    """
    The console's root resource.

    @param auth: Who is in (L{ConsoleAuth}).
    @param manager: What runs the admin commands (C{run(command, args)}).
    @param refusals: The exceptions of C{run} that are refusals, told as they are.
    @param extra: Further children mounted at the root (C{{b"map": ...}}),
        behind the same gate; each checks C{auth.authorized} itself too.
    """
    files = console_files()
    root = ConsoleRoot(auth, files[b"/index.html"][1])
    root.putChild(b"login", Login(auth))
    root.putChild(b"logout", Logout(auth))
    root.putChild(b"api", Api(auth, manager, refusals))
    static = {path: value for path, value in files.items() if path.startswith(b"/static/")}
    root.putChild(b"static", DemoPages(static, HEADERS))
    for name, child in (extra or {}).items():
        root.putChild(name, child)
    return root


class ConsoleSite(server.Site):
    """The console's site: bodies bounded, idle connections closed after a while."""

    def __init__(self, root: IResource, reactor=None):
        super().__init__(root, ConsoleRequest, timeout=HTTP_IDLE_TIMEOUT, reactor=reactor)
