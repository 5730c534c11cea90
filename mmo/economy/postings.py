"""
What the metrics read of the ledger's postings and accounts: the plain
shapes, so that they need no store.

A posting is any object with C{legs}, C{reason} and C{at} (a Unix time):
the store's L{mmo.store.common_economy.Posting} and C{Entry} records.
Each leg has an C{account}, an C{asset} and an C{amount}, added to the
account's balance of the asset (negative: taken); a posting's amounts of
each asset sum to zero.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from mmo.store.common_economy import is_faucet, is_player, is_sink, is_system

__all__ = ["PostingLike", "is_faucet", "is_player", "is_sink", "is_system", "legs_of"]


class PostingLike(Protocol):
    legs: Any
    reason: str
    at: float


def legs_of(posting: PostingLike) -> Iterator[tuple[str, str, int]]:
    """The legs of C{posting} as C{(account, asset, amount)} triples."""
    for leg in posting.legs:
        yield leg.account, leg.asset, leg.amount
