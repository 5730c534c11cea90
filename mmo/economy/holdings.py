"""
L{Holding}: what a transfer moves (currency amounts, stackable counts,
unique instances), and L{event_key}, the idempotency keys derived from
game events and requests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from mmo.economy.errors import BadRequest
from mmo.store.common_economy import MAX_AMOUNT, MAX_NAME

#: The separator of a unique instance's id: its item definition, then a
#: hash (item ids have no C{.}).
INSTANCE_SEPARATOR = "."


def event_key(*parts: object) -> str:
    """
    The idempotency key of a game event or request: its parts joined by
    C{:} (C{event_key("loot", zone, entity, tick)}), so that the same event
    replayed gives the same key and pays once.  A key longer than the
    ledger takes keeps its first part and a hash of the whole.

    @raise BadRequest: No part, or one that is empty or not a string or an
        integer.
    """
    if not parts or not all(
        (isinstance(part, str) and part) or (isinstance(part, int) and not isinstance(part, bool))
        for part in parts
    ):
        raise BadRequest(f"an event key has parts of strings and integers, got {parts!r}")
    texts = [str(part) for part in parts]
    key = ":".join(texts)
    if len(key) <= MAX_NAME:
        return key
    return f"{texts[0][:32]}:#{hashlib.sha256(key.encode()).hexdigest()}"


def instance_id(item: str, key: str, index: int) -> str:
    """
    The id of the C{index}th unique C{item} issued by the posting C{key}:
    the same request issues the same instances, once.
    """
    digest = hashlib.sha256(f"{key}\0{item}\0{index}".encode()).hexdigest()[:24]
    return f"{item}{INSTANCE_SEPARATOR}{digest}"


def item_of(instance: str) -> str:
    """The item definition of a unique instance id."""
    return instance.partition(INSTANCE_SEPARATOR)[0]


def check_count(value: object, what: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_AMOUNT:
        raise BadRequest(f"{what} is an integer from {low} to {MAX_AMOUNT}, got {value!r}")
    return value


def _counts(values: object, what: str) -> Mapping[str, int]:
    if not isinstance(values, Mapping):
        raise BadRequest(f"{what} is a mapping of names to counts, got {values!r}")
    for name, count in values.items():
        if not isinstance(name, str) or not name:
            raise BadRequest(f"{what}: a name is a non-empty string, got {name!r}")
        check_count(count, f"{what}[{name!r}]")
    return MappingProxyType(dict(values))


@dataclass(frozen=True)
class Holding:
    """
    Value one side gives: currency amounts (minor units) by currency,
    counts of stackable items by item id, and unique instance ids.

    @raise BadRequest: A count that is not a positive integer, a name that
        is not a string.
    """

    currencies: Mapping[str, int] = field(default_factory=dict)
    items: Mapping[str, int] = field(default_factory=dict)
    uniques: frozenset = frozenset()

    def __post_init__(self):
        object.__setattr__(self, "currencies", _counts(self.currencies, "currencies"))
        object.__setattr__(self, "items", _counts(self.items, "items"))
        if isinstance(self.uniques, str | bytes):
            raise BadRequest(f"uniques is a set of instance ids, got {self.uniques!r}")
        try:
            uniques = frozenset(self.uniques)
        except TypeError:
            raise BadRequest(f"uniques is a set of instance ids, got {self.uniques!r}")
        if not all(isinstance(u, str) and INSTANCE_SEPARATOR in u for u in uniques):
            raise BadRequest(f"a unique instance id is ITEM.HASH, got {sorted(map(str, uniques))}")
        object.__setattr__(self, "uniques", uniques)

    def __bool__(self) -> bool:
        return bool(self.currencies or self.items or self.uniques)
