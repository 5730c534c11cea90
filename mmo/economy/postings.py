"""
What the metrics read of the ledger's postings and accounts: the plain
shapes, so that they need no store.

A posting is any object with C{legs}, C{reason} and C{at} (a Unix time):
the store's records or L{Posting}.  Each leg is an C{(account, asset,
amount)} triple, or an object with those attributes; C{amount} is added to
the account's balance of the asset (negative: taken), and a posting's
amounts of each asset sum to zero.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

#: Account kinds that are not holders: where value comes from and goes to.
#: Whatever else holds value (players, escrow, vendors) is in the supply.
SYSTEM_KINDS = ("faucet:", "sink:")


class PostingLike(Protocol):
    legs: Any
    reason: str
    at: float


@dataclass(frozen=True)
class Posting:
    """
    One posting as the metrics read it.

    @ivar legs: C{(account, asset, amount)} triples.
    @ivar reason: Why (C{"shop.buy"}, C{"quest"}): flows are also totalled by it.
    @ivar at: When it committed, Unix time.
    """

    legs: tuple[tuple[str, str, int], ...]
    reason: str = ""
    at: float = 0.0


def legs_of(posting: PostingLike) -> Iterator[tuple[str, str, int]]:
    """The legs of C{posting} as C{(account, asset, amount)} triples."""
    for leg in posting.legs:
        if isinstance(leg, tuple):
            yield leg
        else:
            yield leg.account, leg.asset, leg.amount


def is_faucet(account: str) -> bool:
    return account.startswith("faucet:")


def is_sink(account: str) -> bool:
    return account.startswith("sink:")


def is_system(account: str) -> bool:
    """Whether C{account} is a faucet or a sink, outside the supply."""
    return account.startswith(SYSTEM_KINDS)


def is_player(account: str) -> bool:
    return account.startswith("player:")
