"""
Small sets kept per key, as tuples: what chat and presence keep per session
and per account (the channels a session is in, the sessions of an account)
is one or two items, and a set takes 216 bytes even for one, a tuple 48.
"""

from __future__ import annotations

from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


def add(table: dict[K, tuple[V, ...]], key: K, item: V) -> None:
    """Put C{item} in C{key}'s tuple (once)."""
    items = table.get(key, ())
    if item not in items:
        table[key] = (*items, item)


def discard(table: dict[K, tuple[V, ...]], key: K, item: V) -> bool:
    """Take C{item} out of C{key}'s tuple, dropping the key once empty; whether it went."""
    items = table.get(key, ())
    rest = tuple(i for i in items if i != item)
    if rest:
        table[key] = rest
    else:
        table.pop(key, None)
    return not rest
