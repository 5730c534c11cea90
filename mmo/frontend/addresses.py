"""
Per-address limits of the client listeners: how many connections one
address may hold at once and how fast it may open new ones
(C{[listeners] per_address}, C{per_address_rate}, C{per_address_burst}).

L{AddressLimits} is the table, shared by a process's TLS and WebSocket
listeners (it belongs to their client factory), so that one address is
counted across both.  L{LimitedTLSFactory} applies it where a connection
is accepted, below TLS: a refused connection is closed at once, before a
TLS handshake or any protocol object is made, so that refusing costs a
lookup and a close.

The table holds an entry for each address with a connection open, and for
addresses that opened connections recently (their token bucket not full
yet); it never holds more than C{[listeners] max_addresses} entries:
entries without connections are dropped, oldest first, to make room, and
an address that finds the table full of connected addresses is refused.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict

from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory

from mmo.compat import WriteThroughTLS
from mmo.ratelimit import TokenBucket

#: Idle entries looked at (and dropped when their bucket is full) per new
#: connection: keeps the table clean without a timer or a full scan.
SWEEP = 2

#: Entries looked at, at most, to make room when the table is full.
EVICT_SCAN = 64


def is_ip(host: str) -> bool:
    """Whether C{host} is an IP address (not a name, nor a UNIX socket's path)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def in_networks(host: str | None, networks: list) -> bool:
    """
    Whether C{host} is an IP address in one of C{networks} (L{ipaddress}
    networks); an IPv4-mapped IPv6 address counts as its IPv4 address.
    """
    if host is None:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    return any(address in network for network in networks)


def parse_networks(networks) -> list:
    """C{networks} (addresses or C{ADDRESS/BITS}, checked by the config) as networks."""
    return [ipaddress.ip_network(network, strict=False) for network in networks]


class _Address:
    """One address: its open connections and its bucket of new connections."""

    __slots__ = ("connections", "bucket", "refusing")

    def __init__(self, bucket: TokenBucket | None):
        self.connections = 0
        self.bucket = bucket
        # Set while refusing, so that a burst of refusals is logged once.
        self.refusing = False

    def idle(self) -> bool:
        """Nothing to remember: no connection, and a full bucket (or none)."""
        return self.connections == 0 and (self.bucket is None or self.bucket.full())


class AddressLimits:
    """
    The per-address connection limits of a process's client listeners.

    @ivar per_address: Connections one address may hold (0: no limit).
    @ivar rate: New connections per second (0: no limit).
    @ivar burst: New connections at once.
    @ivar max_addresses: Entries the table may hold.
    @ivar refused: Connections refused so far.
    """

    log = Logger()

    def __init__(
        self,
        per_address: int,
        rate: float,
        burst: int,
        exempt: list[str],
        max_addresses: int,
        clock,
    ):
        self.per_address = per_address
        self.rate = rate
        self.burst = burst
        self.exempt = parse_networks(exempt)
        self.max_addresses = max_addresses
        self.clock = clock
        self.refused = 0
        self._table: OrderedDict[str, _Address] = OrderedDict()

    @classmethod
    def from_config(cls, settings, clock) -> AddressLimits:
        """The limits of a C{[listeners]} section."""
        return cls(
            settings.per_address,
            settings.per_address_rate,
            settings.per_address_burst,
            settings.exempt,
            settings.max_addresses,
            clock,
        )

    def __len__(self) -> int:
        return len(self._table)

    def counts(self, host: str | None) -> bool:
        """
        Whether connections from C{host} are counted: limits are on, and it
        is an address (not a UNIX socket's) outside the exempt networks
        (loopback by default).
        """
        if host is None or not (self.per_address or self.rate):
            return False
        return not is_ip(host) or not in_networks(host, self.exempt)

    def admit(self, host: str) -> str | None:
        """
        A new connection from C{host}, an address that L{counts}: count it
        and return C{None}, or return why it is refused (nothing counted).
        Each connection admitted is L{release}d when it closes.
        """
        table = self._table
        entry = table.get(host)
        if entry is None:
            self._sweep()
            if len(table) >= self.max_addresses and not self._evict():
                return self._refuse(host, None, "the listener tracks too many addresses")
            bucket = TokenBucket(self.rate, self.burst, self.clock) if self.rate else None
            entry = table[host] = _Address(bucket)
        else:
            table.move_to_end(host)
        if self.per_address and entry.connections >= self.per_address:
            return self._refuse(host, entry, f"{entry.connections} connections open")
        if entry.bucket is not None and not entry.bucket.take():
            return self._refuse(host, entry, f"over {self.rate:g} new connections per second")
        entry.connections += 1
        entry.refusing = False
        return None

    def release(self, host: str) -> None:
        """A connection L{admit} counted closed."""
        entry = self._table.get(host)
        if entry is None:
            return
        entry.connections -= 1
        if entry.idle():
            del self._table[host]

    def _refuse(self, host: str, entry: _Address | None, why: str) -> str:
        self.refused += 1
        if entry is None or not entry.refusing:
            if entry is not None:
                entry.refusing = True
            self.log.warn("refusing connections from {host}: {why}", host=host, why=why)
        return why

    def _sweep(self) -> None:
        """Drop the oldest entries while they are idle (a few at most)."""
        table = self._table
        for _ in range(SWEEP):
            if not table:
                return
            host, entry = next(iter(table.items()))
            if not entry.idle():
                return
            del table[host]

    def _evict(self) -> bool:
        """
        Make room in a full table: drop the oldest entry without a
        connection (its rate history is forgotten).  Whether room was made.
        """
        table = self._table
        for _ in range(min(EVICT_SCAN, len(table))):
            host, entry = next(iter(table.items()))
            if entry.connections == 0:
                del table[host]
                return True
            table.move_to_end(host)
        return False


class LimitedTLSFactory(TLSMemoryBIOFactory):
    """
    Twisted's TLS wrapping factory with the per-address limits applied
    before TLS: L{buildProtocol} returns C{None} for a refused address,
    which makes the port close the socket at once.

    @ivar addresses: The L{AddressLimits}.
    """

    protocol = WriteThroughTLS

    def __init__(self, contextFactory, isClient: bool, wrappedFactory, addresses: AddressLimits):
        super().__init__(contextFactory, isClient, wrappedFactory)
        self.addresses = addresses
        self._hosts: dict = {}

    def buildProtocol(self, addr):
        host = getattr(addr, "host", None)
        if not self.addresses.counts(host):
            return super().buildProtocol(addr)
        if self.addresses.admit(host) is not None:
            return None
        protocol = super().buildProtocol(addr)
        self._hosts[protocol] = host
        return protocol

    def unregisterProtocol(self, protocol) -> None:
        super().unregisterProtocol(protocol)
        host = self._hosts.pop(protocol, None)
        if host is not None:
            self.addresses.release(host)
