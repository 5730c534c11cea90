"""
Gateway admission: a client presents its session ticket after the
handshake, and is admitted as the ticket's account once the ticket is
genuine, unexpired, unrevoked, of this realm and used for the first time.
"""

from __future__ import annotations

from mmo.login.service import revoked_key
from mmo.login.tickets import TicketError, TicketSigner
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
        if not await self.bus.claim(f"ticket:{ticket.nonce}", ttl):
            raise WireError(TICKET_REFUSED, "ticket already used")
        return ticket
