"""
What every part of a zone's handoff shares: the states of a real, the
records of handoffs in flight, and what the handoff needs from its
surroundings (L{Link}, L{ZoneState}).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from twisted.logger import Logger

from mmo.game.messages import Accept, Done, Forward, Input, Offer, Refuse, Switched
from mmo.zone.entity import Entity

log = Logger()

#: The messages a zone's handoff handles (L{ZoneHandoff.receive}).
HANDOFF_MESSAGES = (Offer, Accept, Refuse, Forward, Done, Switched, Input)

#: How many zones an input may be forwarded through before it is dropped
#: (a bound against forwarding loops on stale information).
MAX_HOPS = 4

# States of a real in its zone.
#: Simulated; inputs applied as they come.
ACTIVE = "active"
#: Just arrived by a handoff: simulated, inputs forwarded by the old owner
#: applied, those from the gateway held until the old owner's Done.
HOLDING = "holding"
#: Offered to a neighbour: frozen, inputs buffered, until accepted or undone.
OFFERING = "offering"
#: Leaving the world (being removed from the store): inputs dropped.
LEAVING = "leaving"
#: Not a real here, but handed over lately: inputs are forwarded.
FORWARDING = "forwarding"


def client_view(seen) -> list[str] | None:
    """
    The ids a player's client has in view, from a message that carries
    them (an L{Offer}'s C{seen}, a L{mmo.game.messages.HandedOver}'s by
    player), or C{None} if it does not say them rightly: then the view
    starts over.
    """
    if isinstance(seen, list) and all(isinstance(i, str) for i in seen):
        return seen
    return None


# -- what the handoff needs from its surroundings --------------------------------


class Link(Protocol):
    """Sends messages to other processes (zones and gateways), by name."""

    def send(self, to: str, message: object) -> None:
        """
        Send C{message} to C{to}, without waiting: it may be lost (the peer
        is down), and the protocol copes.  Messages to one peer should
        arrive in the order sent (AMP over one connection does that) for
        inputs not to be lost; nothing breaks if they do not.
        """


class ZoneState(Protocol):
    """The part of a zone's simulation the handoff drives."""

    def add(self, entity: Entity, seen: list[str] | None) -> None:
        """
        Simulate C{entity} as a real of this zone from now on.

        @param seen: What the client of a player has in view, as far as
            the handoff knows: nothing (C{[]}) for an entity that enters
            the world here, the ids the offer carried for one handed over
            (L{Offer.seen}), C{None} when it cannot be known (restored from
            the store after the zone's process ended, or adopted): then
            the client's view starts over.
        """

    def remove(self, entity_id: str) -> Entity | None:
        """Stop simulating the real C{entity_id} and forget it."""

    def get(self, entity_id: str) -> Entity | None:
        """The real C{entity_id}, or C{None}."""

    def freeze(self, entity_id: str) -> None:
        """
        Keep the real as it is (no movement, no behaviour) but visible, while
        it is offered to a neighbour: its state was sent as it is.
        """

    def thaw(self, entity_id: str) -> None:
        """Simulate the frozen real again (its handoff was undone)."""

    def apply_input(self, entity: Entity, seq: int, payload: object) -> None:
        """
        Apply the player's input C{seq} to the real C{entity}, now.  The
        handoff calls it in order, at most once per C{seq}, and then sets
        C{entity.last_input = seq}: so it must not be queued for a later
        tick (a state offered to a neighbour, or checkpointed, must contain
        every input its C{last_input} counts).  An input refused by the
        game's rules (too fast) counts as applied: the client is corrected.
        """


@dataclass
class _Outgoing:
    """A handoff this zone started."""

    transfer_id: str
    entity_id: str
    target: str
    record: dict
    #: Inputs that came while offering: (seq, payload), by seq.
    buffer: list = field(default_factory=list)
    #: "offered", "resolving" (asking the store) or "switching".
    phase: str = "offered"
    owner: str = ""
    version: int = 0
    retry: object = None
    deadline: object = None


@dataclass
class _Holding:
    """An arrived handoff whose gateway inputs are held until the old owner's Done."""

    transfer_id: str
    buffer: list = field(default_factory=list)
    timer: object = None


@dataclass
class _Forwarding:
    """Where an entity that was here went (by a handoff, or as the store said)."""

    target: str
    transfer_id: str | None
    timer: object = None
