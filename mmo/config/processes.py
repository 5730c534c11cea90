"""
The processes of a deployment and the realms players choose from: the
C{[processes.NAME]} tables (what each process runs, where it listens, the
names it is reached by) and C{[realms.NAME]}.
"""

from __future__ import annotations

import re

from mmo.config.listeners import ServerEndpoint, check_network, listening_address
from mmo.config.schema import REQUIRED, Bool, Section, Str, StrList, check_host, check_host_port

#: Names of processes: a DNS label, because the name is also the identity in
#: the process's certificates.
PROCESS_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")

#: Names no process may take: "admin" is the identity of mmo-admin's certificate.
RESERVED_NAMES = ("admin",)

#: Process kinds and the plugins that run them.
PROCESS_KINDS = (
    "mmo",
    "login",
    "gateway",
    "lobby",
    "chat",
    "zone",
    "manager",
    "ladder",
    "economy",
)

#: Keys every process table may hold.
COMMON_KEYS = frozenset({"kind", "hosts"})

#: The other keys each kind uses: any other key in its table is refused at
#: start, like an unknown key (a listener the process would never open must
#: not look configured).
KIND_KEYS = {
    "mmo": frozenset({"client", "websocket", "rpc", "realm", "public", "factory", "proxy_from"}),
    "login": frozenset({"client", "websocket", "public", "factory", "proxy_from"}),
    "gateway": frozenset({"client", "websocket", "realm", "public", "factory", "proxy_from"}),
    "lobby": frozenset({"rpc", "realm"}),
    "chat": frozenset({"rpc", "realm"}),
    "zone": frozenset({"rpc", "realm"}),
    "ladder": frozenset({"rpc", "realm"}),
    "economy": frozenset({"rpc", "realm"}),
    "manager": frozenset({"rpc", "runs", "redis_server", "console"}),
}


def check_process_name(name: str) -> str | None:
    """A process name, or why not."""
    return None if PROCESS_NAME.match(name) else "not a process name"


class RealmSection(Section):
    """A world players choose at login."""

    fields = {
        "title": Str("", doc="Name shown to players; default: the realm's key."),
    }


class ProcessSection(Section):
    """
    One process of the deployment: what it runs, where it listens and the
    names and addresses it is reached by (which go into its certificate).
    """

    fields = {
        "kind": Str(REQUIRED, choices=PROCESS_KINDS, doc="What the process runs."),
        "hosts": StrList(
            ["localhost", "127.0.0.1", "::1"],
            item=check_host,
            doc="Host names and addresses the process is reached by.",
        ),
        "client": ServerEndpoint("", doc="Client-facing TLS listener (endpoint string)."),
        "rpc": ServerEndpoint("", doc="Internal AMP listener, mutual TLS (endpoint string)."),
        "websocket": ServerEndpoint(
            "", doc="Secure WebSocket listener for browsers (endpoint string); mmo adds TLS."
        ),
        "proxy_from": StrList(
            [],
            item=check_network,
            doc="Addresses (or networks) of the TLS-terminating proxies in front of the "
            "client and websocket listeners: when set, those listeners take plain TCP "
            "from these only, each connection opening with a PROXY protocol header "
            "(v1 or v2) that names the player's address; no TLS in the process. "
            "Default: none, the process does TLS itself.",
        ),
        "realm": Str("main", doc="The realm a gateway (or standalone process) serves."),
        "public": Str(
            "",
            doc="HOST:PORT clients are sent to for this process's client listener; "
            "default: the first of hosts and the client port.",
        ),
        "factory": Str(
            "",
            pattern=r"^$|^[A-Za-z_][\w.]*\.[A-Za-z_]\w*$",
            doc="Fully qualified name of the client factory class to use.",
        ),
        "runs": StrList(
            [],
            item=check_process_name,
            doc="Manager only: the processes it starts and supervises on its machine; "
            "default: every process that is not a manager.",
        ),
        "console": ServerEndpoint(
            "",
            doc="Manager only: the admin console's HTTPS listener (endpoint string); "
            "mmo adds TLS with the manager's certificate.  Default: no console.",
        ),
        "redis_server": Bool(
            False,
            doc="Manager only: also run a local redis-server on [redis] port, with "
            "append-only persistence in [manager] redis_dir.",
        ),
    }

    def __init__(self, data, path=(), ctx=None, name=None):
        # The keys the file sets, for the kind's check: a key set to its
        # default is as wrong under a kind that has no use for it.
        self.given = frozenset(data) if isinstance(data, dict) else frozenset()
        super().__init__(data, path, ctx, name)

    def check(self):
        used = COMMON_KEYS | KIND_KEYS[self.kind]
        for key in sorted(self.given - used):
            owners = [kind for kind, keys in KIND_KEYS.items() if key in keys]
            only = " (only a manager has it)" if owners == ["manager"] else ""
            raise self.error(
                key,
                f"a {self.kind!r} process does not use it{only}; "
                f"its keys: {', '.join(sorted(used))}",
            )
        if self.kind in ("mmo", "gateway", "login") and not self.client:
            raise self.error("client", f"a {self.kind!r} process needs a client listener")
        if self.public and check_host_port(self.public):
            raise self.error("public", f"{self.public!r} must be HOST:PORT")
        if self.client and not self.public and self.client_port() is None:
            raise self.error(
                "public", "set it: the client listener has no TCP port to send clients to"
            )

    def client_port(self) -> int | None:
        """The TCP port of the client listener, if it has one (0: chosen at start)."""
        if not self.client:
            return None
        address = listening_address(self.client)
        return address.port if address is not None else None

    def public_address(self, port: int | None = None) -> tuple[str, int]:
        """
        Where clients reach this process's client listener: C{public}, or
        the first of C{hosts} and the listener's port (C{port}, the one
        actually bound, overrides a configured 0).
        """
        if self.public:
            host, _, number = self.public.rpartition(":")
            return host.strip("[]"), int(number)
        return self.hosts[0], port if port is not None else self.client_port()

    @property
    def identity(self) -> str:
        """The name other processes verify this process's certificate against."""
        return self.name
