"""
The demo game's files as a C{twisted.web} resource.

The files are package data (C{mmo/web/static/}: the page, its style and its
one bundled script, built from C{clients/demo/}), read once when the site
is made: a fixed table of paths, so that no request can name anything else
(no directory listing, no path traversal, no file read per request).
"""

from __future__ import annotations

from importlib import resources
from io import BytesIO

from twisted.web import http, resource, server

#: The files served, by path, and their content types.  C{/} is the page.
FILES = {
    b"/index.html": b"text/html; charset=utf-8",
    b"/demo.js": b"text/javascript; charset=utf-8",
    b"/demo.css": b"text/css; charset=utf-8",
}
INDEX = b"/index.html"

#: Where the page may load from and connect to: only its own files, and
#: secure WebSockets (on a cluster the gateway is another host or port).
CONTENT_SECURITY_POLICY = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    b"connect-src 'self' wss:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

#: Headers on every response.
SAFE_HEADERS = {
    b"content-security-policy": CONTENT_SECURITY_POLICY,
    b"x-content-type-options": b"nosniff",
    b"x-frame-options": b"DENY",
    b"referrer-policy": b"no-referrer",
    b"cross-origin-opener-policy": b"same-origin",
    b"cross-origin-resource-policy": b"same-origin",
    # The files change with the server's version: always revalidate.
    b"cache-control": b"no-cache",
    b"server": b"mmo",
}

#: Seconds an idle HTTP connection is kept open.
HTTP_IDLE_TIMEOUT = 30


def demo_pages() -> DemoPages:
    """The demo's files from the installed package."""
    static = resources.files("mmo.web") / "static"
    return DemoPages(
        {path: (kind, (static / path[1:].decode()).read_bytes()) for path, kind in FILES.items()}
    )


class DemoPages(resource.Resource):
    """
    A fixed table of files: C{GET} or C{HEAD} of one of their paths (C{/}
    is the page) answers it, any other path 404, any other method 405.

    @ivar files: Path to (content type, body).
    @ivar headers: Set on every response (default L{SAFE_HEADERS}).
    """

    isLeaf = True

    def __init__(self, files: dict[bytes, tuple[bytes, bytes]], headers=None):
        super().__init__()
        self.files = files
        self.headers = SAFE_HEADERS if headers is None else headers

    def render(self, request: server.Request) -> bytes:
        for name, value in self.headers.items():
            request.setHeader(name, value)
        if request.method not in (b"GET", b"HEAD"):
            request.setResponseCode(http.NOT_ALLOWED)
            request.setHeader(b"allow", b"GET, HEAD")
            return self.text(request, b"only GET and HEAD are served here\n")
        if request.requestHeaders.hasHeader(b"upgrade"):
            # A connection that carried a page is an HTTP connection for
            # good: the WebSocket upgrade is read only as a connection's
            # first request (browsers open a new connection for it).
            request.setResponseCode(http.BAD_REQUEST)
            return self.text(request, b"open the WebSocket on a new connection\n")
        path = INDEX if request.path == b"/" else request.path
        found = self.files.get(path)
        if found is None:
            request.setResponseCode(http.NOT_FOUND)
            return self.text(request, b"not found\n")
        kind, body = found
        request.setHeader(b"content-type", kind)
        return body

    @staticmethod
    def text(request: server.Request, body: bytes) -> bytes:
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return body


class BodilessRequest(server.Request):
    """
    A request whose body is never kept: the pages read none, so a client
    sending one (a large C{POST}) costs no memory and no disk.
    """

    def gotLength(self, length) -> None:
        self.content = BytesIO()

    def handleContentChunk(self, data: bytes) -> None:
        pass


class DemoSite(server.Site):
    """
    The demo's site: no access log (the files are public and the same for
    everyone; the listener logs what matters), idle connections closed
    after L{HTTP_IDLE_TIMEOUT}.
    """

    noisy = False

    def __init__(self, pages: DemoPages, reactor=None):
        super().__init__(pages, BodilessRequest, timeout=HTTP_IDLE_TIMEOUT, reactor=reactor)

    def log(self, request) -> None:
        pass
