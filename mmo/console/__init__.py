"""
The admin console: a C{twisted.web} site the manager serves over HTTPS on
C{processes.NAME.console}, where holders of the admin credential watch and
act on the deployment (C{docs/console.md}).

    L{auth}      one-time login links, session cookies, CSRF tokens
    L{site}      the page, its files and the JSON API over the manager's commands
    L{service}   the HTTPS listener
"""

from __future__ import annotations

from mmo.config import Config, ConfigError, ProcessSection, listening_address


def console_port(config: Config, process: ProcessSection) -> int:
    """
    The TCP port of C{process}'s console.

    @raise ConfigError: It has none, or 0: its login links name the port.
    """
    address = listening_address(process.console)
    if address is None or not address.port:
        raise ConfigError(
            "the console needs a TCP port of its own (its login links name it)",
            ("processes", process.name, "console"),
            config.file,
        )
    return address.port


def console_url(config: Config, process: ProcessSection, path: str = "") -> str:
    """The address of C{path} on C{process}'s console: its first host name and its port."""
    host = process.hosts[0] if process.hosts else "localhost"
    if ":" in host:
        host = f"[{host}]"
    return f"https://{host}:{console_port(config, process)}/{path}"
