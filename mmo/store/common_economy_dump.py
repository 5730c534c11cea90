"""
The ledger's part of a store's dump (C{"economy"}), which both backends
write and read: its postings with their sequence numbers, keys and
digests, the balances and loads they give, and the unique items issued
with their properties.

A dump's balances and loads are those its postings give when replayed in
order (the ledger's invariant, which the store keeps in every posting):
so a dump read from a Redis store while postings are applied is still
consistent, and a restore checks a dump's balances and loads against its
postings before writing anything.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgpack

from mmo.store import StoreError, read_fields
from mmo.store.common_economy import (
    Entry,
    Leg,
    Posting,
    is_faucet,
    is_unique,
    plan,
)

_DUMP_FIELDS = ("postings", "balances", "loads", "items")
_POSTING_FIELDS = ("seq", "key", "reason", "at", "legs", "digest")
_ITEM_FIELDS = ("asset", "props", "seq")


@dataclass(frozen=True)
class LedgerDump:
    """
    The ledger as a dump carries it, checked.

    @ivar postings: C{(entry, digest)} in sequence order, 1 to n.
    @ivar balances: C{(account, asset, balance)}, none of 0.
    @ivar loads: C{(account, load)}, none of 0.
    @ivar items: C{(asset, packed properties, seq of the posting that issued it)}.
    """

    postings: list[tuple[Entry, str]]
    balances: list[tuple[str, str, int]]
    loads: list[tuple[str, int]]
    items: list[tuple[str, bytes, int]]


def replay(entries) -> tuple[dict, dict, dict]:
    """
    What C{entries} give, applied in order.

    @return: C{(balances, loads, issuers)}: C{{(account, asset): balance}}
        and C{{account: load}} (no 0), and C{{unique asset: seq}} of the
        posting that issued each unique item (its first faucet leg of -1).
    """
    balances: dict[tuple[str, str], int] = {}
    loads: dict[str, int] = {}
    issuers: dict[str, int] = {}
    for entry in entries:
        for leg in entry.legs:
            before = balances.get((leg.account, leg.asset), 0)
            balances[leg.account, leg.asset] = before + leg.amount
            loads[leg.account] = loads.get(leg.account, 0) + leg.load_change(before)
            if is_unique(leg.asset) and is_faucet(leg.account) and leg.amount == -1:
                issuers.setdefault(leg.asset, entry.seq)
    return (
        {key: value for key, value in balances.items() if value},
        {key: value for key, value in loads.items() if value},
        issuers,
    )


def dump_economy(postings: list[tuple[Entry, str]], items: dict[str, bytes]) -> dict:
    """
    The C{"economy"} part of a dump; C{{}} when the ledger is empty.

    @param postings: C{(entry, digest)} of every posting, in order.
    @param items: C{{unique asset: packed properties}}: at least those the
        postings issued (others, issued after the postings were read, are
        left out).
    """
    if not postings:
        return {}
    balances, loads, issuers = replay(entry for entry, _ in postings)
    return {
        "economy": {
            "postings": [
                {
                    "seq": entry.seq,
                    "key": entry.key,
                    "reason": entry.reason,
                    "at": entry.at,
                    "legs": [
                        [leg.account, leg.asset, leg.amount, leg.weight, leg.stack]
                        for leg in entry.legs
                    ],
                    "digest": digest,
                }
                for entry, digest in postings
            ],
            "balances": [[a, s, n] for (a, s), n in sorted(balances.items())],
            "loads": [[a, n] for a, n in sorted(loads.items())],
            "items": [
                {"asset": asset, "props": items[asset], "seq": seq}
                for asset, seq in sorted(issuers.items())
            ],
        }
    }


def read_dump_economy(data: dict) -> LedgerDump | None:
    """
    The ledger of a dump, checked completely before anything is written;
    C{None} for a dump without one.

    @raise StoreError: What is wrong, and where.
    """
    part = data.get("economy")
    if part is None:
        return None
    try:
        return _read_ledger(read_fields(part, _DUMP_FIELDS, "the dump's economy"))
    except (TypeError, ValueError) as e:
        raise StoreError(f"the dump's economy: {e}")


def _read_ledger(part: dict) -> LedgerDump:
    for name in _DUMP_FIELDS:
        if not isinstance(part[name], list):
            raise StoreError(f"the dump's economy.{name} is not a list")
    postings = []
    keys: set[str] = set()
    for index, entry in enumerate(part["postings"]):
        where = f"the dump's economy.postings[{index}]"
        try:
            postings.append(_read_posting(entry, index + 1))
        except (StoreError, TypeError, ValueError) as e:
            raise StoreError(f"{where}: {e}")
        if postings[-1][0].key in keys:
            raise StoreError(f"{where}: key {postings[-1][0].key!r} is applied twice")
        keys.add(postings[-1][0].key)
    balances, loads, issuers = replay(entry for entry, _ in postings)
    dumped_balances = {}
    for index, row in enumerate(part["balances"]):
        if not isinstance(row, list) or len(row) != 3:
            raise StoreError(f"the dump's economy.balances[{index}] is not [account, asset, n]")
        dumped_balances[row[0], row[1]] = row[2]
    if dumped_balances != balances:
        raise StoreError("the dump's economy.balances are not what its postings give")
    dumped_loads = {}
    for index, row in enumerate(part["loads"]):
        if not isinstance(row, list) or len(row) != 2:
            raise StoreError(f"the dump's economy.loads[{index}] is not [account, load]")
        dumped_loads[row[0]] = row[1]
    if dumped_loads != loads:
        raise StoreError("the dump's economy.loads are not what its postings give")
    items: list[tuple[str, bytes, int]] = []
    for index, entry in enumerate(part["items"]):
        where = f"the dump's economy.items[{index}]"
        entry = read_fields(entry, _ITEM_FIELDS, where)
        asset, props, seq = entry["asset"], entry["props"], entry["seq"]
        if not isinstance(asset, str) or issuers.pop(asset, None) != seq:
            raise StoreError(f"{where}: {asset!r} is not issued by posting {seq!r}, or twice")
        if not isinstance(props, bytes):
            raise StoreError(f"{where}: the properties are not msgpack bytes")
        try:
            msgpack.unpackb(props, raw=False)
        except (TypeError, ValueError) as e:
            raise StoreError(f"{where}: the properties are not msgpack: {e}")
        items.append((asset, props, seq))
    if issuers:
        raise StoreError("the dump's economy.items leave out items its postings issue")
    return LedgerDump(
        postings,
        [(account, asset, n) for (account, asset), n in sorted(balances.items())],
        sorted(loads.items()),
        items,
    )


def _read_posting(entry: object, seq: int) -> tuple[Entry, str]:
    entry = read_fields(entry, _POSTING_FIELDS, "a posting")
    if entry["seq"] != seq:
        raise StoreError(f"seq is {entry['seq']!r}, not {seq}: postings are numbered 1 to n")
    if not isinstance(entry["legs"], list):
        raise StoreError("legs is not a list")
    legs = tuple(Leg(*leg) for leg in entry["legs"])
    planned = plan(Posting(entry["key"], entry["reason"], legs, entry["at"]))
    if planned.unbalanced is not None:
        raise StoreError(f"its amounts of {planned.unbalanced} do not sum to zero")
    if entry["digest"] != planned.digest:
        raise StoreError("its digest is not its legs'")
    return Entry(seq, entry["key"], entry["reason"], float(entry["at"]), legs), planned.digest
