"""
The handoff's and the ghosts' messages as msgpack-able dicts, for the bus.

L{mmo.zone.handoff} and L{mmo.zone.ghosts} define their messages as frozen
dataclasses and leave the transport to the zone service.  On the bus a
message travels as C{{"zone": {"from": SENDER, "type": NAME, ...fields}}} on
the channel of its addressee: L{zone_channel} for a zone,
L{mmo.game.service.gateway_channel} for a gateway.
"""

from __future__ import annotations

from dataclasses import fields

from mmo.zone.ghosts import GhostUpdate
from mmo.zone.handoff import (
    Accept,
    Done,
    Forward,
    Input,
    Moved,
    Offer,
    Refuse,
    Switched,
    SwitchRoute,
)

#: The key of a zone message in a bus message.
KEY = "zone"

#: Every message type, by name.
TYPES = {
    cls.__name__: cls
    for cls in (Offer, Accept, Refuse, Forward, Done, SwitchRoute, Switched, Input, Moved)
}
TYPES[GhostUpdate.__name__] = GhostUpdate

#: The field names of each message type, in order.
_FIELDS = {cls: tuple(f.name for f in fields(cls)) for cls in TYPES.values()}


def zone_channel(zone: str) -> str:
    """The bus channel a zone hears handoffs, ghosts and inputs on."""
    return f"zone:{zone}"


def encode(sender: str, message) -> dict:
    """The bus message carrying C{message} from C{sender}."""
    name = type(message).__name__
    if TYPES.get(name) is not type(message):
        raise TypeError(f"not a zone message: {message!r}")
    body = {"from": sender, "type": name}
    # Shallow: the fields are plain values, packed as they are at publish.
    # (asdict's deep copy of every ghost view, each tick, was a tenth of a
    # loaded zone's time.)
    for key in _FIELDS[type(message)]:
        body[key] = getattr(message, key)
    return {KEY: body}


def decode(body) -> tuple[str, object]:
    """
    C{(sender, message)} from the body of a bus message (its C{"zone"} value).

    @raise ValueError: Malformed.
    """
    if not isinstance(body, dict):
        raise ValueError("a zone message is a map")
    cls = TYPES.get(body.get("type"))
    sender = body.get("from")
    if cls is None or not isinstance(sender, str):
        raise ValueError(f"unknown zone message {body.get('type')!r}")
    try:
        values = {f.name: body[f.name] for f in fields(cls) if f.name in body}
        if cls is Forward:
            values["inputs"] = tuple(tuple(item) for item in values["inputs"])
        elif cls is GhostUpdate:
            values["views"] = tuple(values["views"])
        return sender, cls(**values)
    except (KeyError, TypeError) as e:
        raise ValueError(f"malformed {cls.__name__}: {e}") from None
