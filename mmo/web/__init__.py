"""
The browser demo game on the WebSocket port of a standalone or login
process: plain HTTPS requests get the demo's files, a WebSocket upgrade on
any path is the game protocol as before.

    L{pages}    the demo's files (package data in C{static/}) as a
                C{twisted.web} resource, with safe headers
    L{router}   reads a connection's first HTTP request head and hands the
                connection to the WebSocket protocol or to an HTTP channel

L{demo_site} says whether a process serves the demo, and builds its site.
"""

from __future__ import annotations

from mmo.config import Config, ConfigError, ProcessSection, listening_address
from mmo.web.pages import DemoSite, demo_pages

#: The process kinds whose WebSocket port serves the demo: those a player
#: logs in on first (a gateway's address comes from the login reply).
DEMO_KINDS = ("mmo", "login")


def serves_demo(config: Config, process: ProcessSection) -> bool:
    """Whether C{process}'s WebSocket listener serves the demo game."""
    return bool(config.web.demo and process.websocket and process.kind in DEMO_KINDS)


def demo_site(config: Config, process: ProcessSection, reactor=None):
    """
    The C{twisted.web} site of the demo for C{process}, or C{None}.

    @raise ConfigError: The demo's files are not installed.
    """
    if not serves_demo(config, process):
        return None
    try:
        pages = demo_pages()
    except OSError as e:
        raise ConfigError(
            f"the demo's files are not installed ({e}); reinstall mmo, or set it to false",
            ("web", "demo"),
            config.file,
        )
    return DemoSite(pages, reactor=reactor)


def demo_url(process: ProcessSection, port: int | None = None) -> str:
    """
    The address of the demo on C{process}: its first host name (a name in
    its certificate) and its WebSocket port (C{port}, when the system chose
    it at start).
    """
    if port is None:
        address = listening_address(process.websocket)
        port = address.port if address is not None else None
    host = process.hosts[0] if process.hosts else "localhost"
    if ":" in host:
        host = f"[{host}]"
    return f"https://{host}:{port}/"
