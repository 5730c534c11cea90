"""
What a gateway admits: players, and the messages they send.

Players: a client presents its session ticket after the handshake, and is
admitted as the ticket's account once the ticket is genuine, unexpired,
unrevoked, of this realm and used for the first time (L{Admission}).

Messages: every connection has a token bucket (C{[gateway] flood_rate} and
C{flood_burst}) and one per message class configured in
C{[gateway.flood.NAME]} (L{FloodLimits}); a message over either limit is
dropped.  Buckets follow the injected clock and cost O(1) per message.
"""

from __future__ import annotations

from mmo.game.messages import revoked_key, ticket_key
from mmo.login.tickets import TicketError, TicketSigner
from mmo.ratelimit import TokenBucket
from mmo.wire.codes import TICKET_REFUSED, WireError


class Admission:
    def __init__(self, signer: TicketSigner, bus, realm: str, clock):
        self.signer = signer
        self.bus = bus
        self.realm = realm
        self.clock = clock

    async def admit(self, token):
        """The L{mmo.login.tickets.Ticket}; a C{ticket_refused} L{WireError} if refused."""
        try:
            ticket = self.signer.verify(token)
        except TicketError as e:
            raise WireError(TICKET_REFUSED, e.reason)
        if ticket.realm != self.realm:
            raise WireError(TICKET_REFUSED, f"ticket for realm {ticket.realm!r}")
        revoked = await self.bus.get(revoked_key(ticket.account_id))
        if revoked is not None and ticket.issued <= revoked:
            raise WireError(TICKET_REFUSED, "revoked ticket")
        ttl = max(ticket.expires - self.clock.seconds(), 1.0)
        if not await self.bus.claim(ticket_key(ticket.nonce), ttl):
            raise WireError(TICKET_REFUSED, "ticket already used")
        return ticket


#: Message types that no flood class limits: the handshake, the answer to
#: a heartbeat and leaving.  (They still count against the connection's own
#: bucket, except C{bye}, which is always honoured.)
CLASS_EXEMPT = frozenset({"hello", "pong", "bye"})

#: Message types the connection's bucket does not count: leaving is always allowed.
CONNECTION_EXEMPT = frozenset({"bye"})


class FloodLimits:
    """
    The flood limits of a gateway, read from C{[gateway]}: builds the
    buckets of each connection and finds the class of a message type.

    A class lists exact types (C{"chat.send"}) and prefixes ending in
    C{"."} (C{"chat."}).  A type belongs to the class that names it
    exactly, else to the class of its longest matching prefix; a type in no
    class is limited by the connection's bucket alone.
    """

    def __init__(self, gateway_section, clock):
        self.rate = gateway_section.flood_rate
        self.burst = gateway_section.flood_burst
        self.strikes = gateway_section.flood_strikes
        self.clock = clock
        #: Class name -> (rate, burst).
        self.classes: dict[str, tuple[float, int]] = {}
        self._exact: dict[str, str] = {}
        self._prefixes: dict[str, str] = {}
        for name, section in sorted(gateway_section.flood.items()):
            self.classes[name] = (section.rate, section.burst)
            for entry in section.types:
                table = self._prefixes if entry.endswith(".") else self._exact
                table.setdefault(entry, name)

    def class_of(self, kind: str) -> str | None:
        """The flood class of message type C{kind}, or C{None}."""
        if kind in CLASS_EXEMPT:
            return None
        name = self._exact.get(kind)
        if name is not None or not self._prefixes:
            return name
        # Longest prefix first: "chat.party." before "chat.".
        end = kind.rfind(".")
        while end >= 0:
            name = self._prefixes.get(kind[: end + 1])
            if name is not None:
                return name
            end = kind.rfind(".", 0, end)
        return None

    def meter(self) -> FloodMeter:
        """The buckets of one new connection."""
        return FloodMeter(self)


class FloodMeter:
    """
    The flood state of one connection: its bucket, one bucket per class it
    has used, and its strikes (messages refused).  Strikes are forgiven once
    the connection's bucket is full again.
    """

    __slots__ = ("limits", "bucket", "buckets", "strikes")

    def __init__(self, limits: FloodLimits):
        self.limits = limits
        self.bucket = TokenBucket(limits.rate, limits.burst, limits.clock)
        #: The class buckets, made with the first message of a class.
        self.buckets: dict[str, TokenBucket] | None = None
        self.strikes = 0

    def allow(self, kind: str) -> str | None:
        """
        Count a message of type C{kind}: C{None} if it may be handled, else
        why not (and a strike is counted).
        """
        if kind in CONNECTION_EXEMPT:
            return None
        if self.strikes and self.bucket.full():
            self.strikes = 0
        if not self.bucket.take():
            self.strikes += 1
            return "too many messages: slow down"
        name = self.limits.class_of(kind)
        if name is None:
            return None
        buckets = self.buckets
        if buckets is None:
            buckets = self.buckets = {}
        bucket = buckets.get(name)
        if bucket is None:
            rate, burst = self.limits.classes[name]
            bucket = buckets[name] = TokenBucket(rate, burst, self.limits.clock)
        if not bucket.take():
            self.strikes += 1
            return f"too many {name!r} messages: slow down"
        return None

    def exhausted(self) -> bool:
        """Whether the connection has used up its strikes."""
        return self.strikes >= self.limits.strikes
