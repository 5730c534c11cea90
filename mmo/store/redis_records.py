"""
The Redis store's records as Redis returns them (hashes as field lists,
numbers as text) turned into the store's dataclasses, and the one helper
that runs many commands a chunk at a time: shared by L{mmo.store.redis} and
the refresh tokens (L{mmo.store.redis_refresh}).
"""

from __future__ import annotations

from twisted.internet import defer

from mmo.store import Account, Character, RefreshFamily, unpack_data

#: How many commands a dump or a restore keeps in flight.
BATCH = 256


def number(value: float) -> str:
    # repr() round-trips a float exactly; txredisapi's own formatting of
    # floats ("%f") would cut it to microseconds.
    return repr(float(value))


def text(value: bytes) -> str:
    return value.decode("utf-8")


def hash_fields(reply) -> dict[bytes, bytes]:
    """A hash from HGETALL (a dict) or from a script (a flat list)."""
    if isinstance(reply, dict):
        return reply
    return dict(zip(reply[::2], reply[1::2], strict=True))


def account_record(fields: dict[bytes, bytes]) -> Account:
    return Account(
        id=text(fields[b"id"]),
        name=text(fields[b"name"]),
        password_hash=text(fields[b"password_hash"]),
        created=float(fields[b"created"]),
        banned=fields[b"banned"] == b"1",
    )


#: The fields of a refresh family's hash that are times; the rest are text.
REFRESH_TIMES = ("created", "used", "expires")


def refresh_family(fields: dict[bytes, bytes]) -> RefreshFamily:
    values = {text(key): value for key, value in fields.items()}
    return RefreshFamily(
        **{
            name: float(values[name]) if name in REFRESH_TIMES else text(values[name])
            for name in RefreshFamily.__dataclass_fields__
        }
    )


def character_record(fields: dict[bytes, bytes]) -> Character:
    return Character(
        id=text(fields[b"id"]),
        account_id=text(fields[b"account_id"]),
        name=text(fields[b"name"]),
        created=float(fields[b"created"]),
        data=unpack_data(fields[b"data"]),
    )


@defer.inlineCallbacks
def batched(function, items):
    """C{[function(item) for item in items]}, at most L{BATCH} at a time."""
    results = []
    for start in range(0, len(items), BATCH):
        chunk = items[start : start + BATCH]
        results.extend(
            (yield defer.gatherResults([function(i) for i in chunk], consumeErrors=True))
        )
    return results
