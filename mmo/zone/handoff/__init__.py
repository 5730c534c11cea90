"""
Handoff: moving a real entity from the zone that owns it to a neighbour,
seamlessly and safely, whatever crashes or whatever the network does.

The protocol (see C{docs/handoff.md} for the full story and diagram)::

    old owner A                 new owner B                gateway G
    cross: freeze, buffer ---- Offer(T, state) ---------->
                                store.transfer(A->B, T)   (the commit point)
                                real added, holds G's inputs
             <--------------- Accept(T) ---------------
    real removed (a ghost of B's until B's ghost updates hold it),
    forward entry
    Forward(T, buffered) ---------------------------->     (applied at once)
    SwitchRoute(T, B) -------------------------------------------------->
             <---------------------------------------------- Switched(T)
    Done(T) ---------------------------------------->     releases held inputs

Everything that decides who owns an entity goes through the store, in one
compare-and-set (L{mmo.store.IStore.transfer}) keyed by the entity's
version: B's commit moves the owner from A at the version A offered; A,
when it got no answer in time, I{fences} (a transfer from A to A at that
version), which either undoes the handoff (the offer can no longer commit)
or fails because B committed, in which case A completes as if accepted.  A
restarted zone bumps the version of everything it owns
(L{mmo.store.IStore.recover_zone}), which fences every offer its earlier
life sent.  So at any time an entity is simulated (not frozen) by at most
one zone, the one the store names, and it is never lost: the store always
names exactly one owner, which has it or loads it (an entity is in the
store from when it enters the world: L{ZoneHandoff.enter}).

Inputs carry a sequence number and are applied only above the entity's
C{last_input}, which travels with its state: in order, each at most once,
across handoffs and crashes.  Without crashes and with links that keep
order none is lost: A buffers them while it offers, forwards them after,
B holds those coming straight from the gateway until A's C{Done}.

This package is the zone's side of the protocol only: deterministic, with
the clock, the links and the zone's simulation injected (L{Link},
L{ZoneState}).  Its messages are those of L{mmo.game.messages}; the zone
service hands it every one it hears (L{ZoneHandoff.receive}) and sends
what it says over the bus.  The gateway's side is
L{mmo.zone.route.ZoneRoute}.

    L{mmo.zone.handoff.zone}        L{ZoneHandoff}: the reals, what the zone asks
    L{mmo.zone.handoff.departures}  the old owner's side: offer, settle, switch
    L{mmo.zone.handoff.arrivals}    the new owner's side: commit, hold, release
    L{mmo.zone.handoff.inputs}      the gate of the players' inputs: apply,
                                    buffer, forward, locate
    L{mmo.zone.handoff.base}        states, records, what it needs around it
"""

from mmo.zone.handoff.base import (
    ACTIVE,
    FORWARDING,
    HANDOFF_MESSAGES,
    HOLDING,
    LEAVING,
    MAX_HOPS,
    OFFERING,
    Link,
    ZoneState,
)
from mmo.zone.handoff.zone import ZoneHandoff

__all__ = [
    "ACTIVE",
    "FORWARDING",
    "HANDOFF_MESSAGES",
    "HOLDING",
    "LEAVING",
    "MAX_HOPS",
    "OFFERING",
    "Link",
    "ZoneHandoff",
    "ZoneState",
]
