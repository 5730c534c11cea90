"""
What both backends' economy ledger (L{mmo.store.IEconomyStore}) share: its
records, the checks of its arguments and the plan of a posting that each
backend carries out in one atomic step.

Accounts are strings C{kind:id} (L{ACCOUNT_KINDS}); assets are strings
C{c:<currency>} (integer minor units), C{i:<item def>} (a stackable item's
count) or C{u:<instance id>} (a unique item, held once).  A posting moves
amounts of assets between accounts, each asset's amounts summing to zero;
see C{docs/economy.md}.

Refusals are checked in one order on both backends, so that both give the
same answer: an asset whose amounts do not sum to zero, then each leg in
the order given (its floor, then, for a unique item, its ceiling), then
the load limits in the order given, then the unique items issued.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import math
from dataclasses import dataclass, field

import msgpack

from mmo.store import StoreError

#: The kinds of account.  A C{faucet} is where new value comes from (its
#: balances may fall without limit); a C{sink} is where value leaves.
ACCOUNT_KINDS = ("player", "faucet", "sink", "escrow", "vendor")

#: The kinds of asset: a currency, a stackable item, a unique item.
ASSET_KINDS = ("c", "i", "u")

#: Longest account, asset, idempotency key and reason, characters.
MAX_NAME = 128
MAX_REASON = 64

#: Most legs in one posting, and entries in one read.
MAX_LEGS = 64
MAX_READ = 1000

#: Largest amount, weight, stack, floor or load limit: integers both
#: backends keep exactly (Lua's numbers are doubles).
MAX_AMOUNT = 2**50


def account(kind: str, ident: str) -> str:
    """The account C{kind:ident}, checked."""
    return check_account(f"{kind}:{ident}")


def player(account_id: str) -> str:
    return account("player", account_id)


def faucet(name: str) -> str:
    return account("faucet", name)


def sink(name: str) -> str:
    return account("sink", name)


def escrow(ident: str) -> str:
    return account("escrow", ident)


def vendor(name: str) -> str:
    return account("vendor", name)


def currency(name: str) -> str:
    return check_asset(f"c:{name}")


def stackable(item_def: str) -> str:
    return check_asset(f"i:{item_def}")


def unique(instance_id: str) -> str:
    return check_asset(f"u:{instance_id}")


def _check_name(value: object, what: str, kinds: tuple[str, ...]) -> str:
    if type(value) is not str or not _well_formed(value, kinds):
        _bad_name(value, what, kinds)
    return value


# A posting names each of its accounts and assets: the names seen last are
# known good without being split again (a bounded cache).
@functools.lru_cache(maxsize=4096)
def _well_formed(value: str, kinds: tuple[str, ...]) -> bool:
    kind, colon, ident = value.partition(":")
    return bool(colon and kind in kinds and ident and len(value) <= MAX_NAME)


def _bad_name(value: object, what: str, kinds: tuple[str, ...]):
    if not isinstance(value, str) or not 0 < len(value) <= MAX_NAME:
        raise StoreError(f"a {what} is a string of 1 to {MAX_NAME} characters, got {value!r}")
    raise StoreError(f"a {what} is KIND:ID with KIND one of {', '.join(kinds)}, got {value!r}")


def check_account(value: object) -> str:
    return _check_name(value, "ledger account", ACCOUNT_KINDS)


def check_asset(value: object) -> str:
    return _check_name(value, "ledger asset", ASSET_KINDS)


def is_faucet(account_name: str) -> bool:
    return account_name.startswith("faucet:")


def is_sink(account_name: str) -> bool:
    return account_name.startswith("sink:")


def is_system(account_name: str) -> bool:
    """Whether the account is a faucet or a sink: value comes from or leaves there."""
    return account_name.startswith(("faucet:", "sink:"))


def is_player(account_name: str) -> bool:
    return account_name.startswith("player:")


def is_unique(asset: str) -> bool:
    return asset.startswith("u:")


def _check_int(value: object, what: str, low: int, high: int = MAX_AMOUNT) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise StoreError(f"{what} is an integer from {low} to {high}, got {value!r}")
    return value


@dataclass(frozen=True)
class Leg:
    """
    One account's change of one asset in a posting.

    @ivar amount: Added to the account's balance (negative: taken).
    @ivar weight: Load per unit (the account's load changes by
        C{weight * amount}).
    @ivar stack: Units per inventory slot (0: the asset takes no slot); the
        load changes by the slots its balance's stacks use after minus before.
    """

    account: str
    asset: str
    amount: int
    weight: int = 0
    stack: int = 0

    def load_change(self, before: int) -> int:
        """How much this leg changes its account's load, from balance C{before}."""
        change = self.weight * self.amount
        if self.stack > 0:
            change += slots(before + self.amount, self.stack) - slots(before, self.stack)
        return change


def merged(legs) -> tuple[Leg, ...]:
    """
    C{legs} with those of one account and asset added into one (as a
    posting needs them), in the order each first appears; those that sum
    to 0 dropped.

    @raise StoreError: Two legs of one account and asset differ in weight
        or stack.
    """
    sums: dict[tuple[str, str], Leg] = {}
    for leg in legs:
        first = sums.get((leg.account, leg.asset))
        if first is None:
            sums[leg.account, leg.asset] = leg
        elif (first.weight, first.stack) != (leg.weight, leg.stack):
            raise StoreError(f"legs of {leg.account} in {leg.asset} differ in weight or stack")
        else:
            sums[leg.account, leg.asset] = Leg(
                leg.account, leg.asset, first.amount + leg.amount, leg.weight, leg.stack
            )
    return tuple(leg for leg in sums.values() if leg.amount)


def slots(balance: int, stack: int) -> int:
    """Slots a balance takes in stacks of C{stack} (none for a balance of 0 or less)."""
    return max(0, -(-balance // stack))


@dataclass(frozen=True)
class Posting:
    """
    A change of balances, applied whole or not at all, once per C{key}.

    @ivar key: The idempotency key (1 to L{MAX_NAME} characters).
    @ivar reason: Short text (C{loot}, C{shop.buy}, C{trade}).
    @ivar legs: The L{Leg}s; each (account, asset) at most once, each
        asset's amounts summing to zero.
    @ivar at: Unix time, the caller's.
    @ivar floors: C{(account, asset, floor)}: the lowest that account's
        balance of that asset may fall to (below 0: credit).  Otherwise
        0, or no limit for a faucet.
    @ivar limits: C{(account, max_load)}: the posting is refused if it
        raises that account's load above C{max_load}.
    @ivar issue: C{{unique asset: properties}} (msgpack-able) of the
        unique items this posting brings into being: those a faucet's leg
        of -1 issues (without an entry here, their properties are C{{}}).
    """

    key: str
    reason: str
    legs: tuple[Leg, ...]
    at: float
    floors: tuple[tuple[str, str, int], ...] = ()
    limits: tuple[tuple[str, int], ...] = ()
    issue: dict = field(default_factory=dict)


class Posted(enum.Enum):
    """What L{mmo.store.IEconomyStore.economy_post} did."""

    #: Applied now, under a new sequence number.
    APPLIED = "applied"
    #: Its key was applied before: nothing written; the first sequence number.
    DUPLICATE = "duplicate"
    #: Not applied, for the L{Refusal} given; nothing written.
    REFUSED = "refused"


class Refused(enum.Enum):
    """Why a posting was refused."""

    #: Some asset's amounts do not sum to zero.
    UNBALANCED = "unbalanced"
    #: An account's balance of an asset would fall below its floor.
    FLOOR = "floor"
    #: An account's load would rise above its limit.
    LIMIT = "limit"
    #: A unique item would be held twice, or issued again.
    UNIQUE = "unique"


@dataclass(frozen=True)
class Refusal:
    """
    Why, and where: the account and asset of a L{Refused.FLOOR} or
    L{Refused.UNIQUE}, the account of a L{Refused.LIMIT}, the asset of a
    L{Refused.UNBALANCED}.
    """

    reason: Refused
    account: str | None = None
    asset: str | None = None


@dataclass(frozen=True)
class PostResult:
    """
    The answer of L{mmo.store.IEconomyStore.economy_post}.

    @ivar seq: The ledger's sequence number of the posting (C{APPLIED}, or
        the first one's with C{DUPLICATE}).
    """

    status: Posted
    seq: int | None = None
    refusal: Refusal | None = None


@dataclass(frozen=True)
class Entry:
    """
    A posting as the ledger keeps it (its floors and limits are not kept).

    @ivar legs: All of its legs, or one account's (L{economy_history}).
    """

    seq: int
    key: str
    reason: str
    at: float
    legs: tuple[Leg, ...]

    def of(self, account_name: str) -> Entry:
        """This entry with C{account_name}'s legs only."""
        legs = tuple(leg for leg in self.legs if leg.account == account_name)
        return Entry(self.seq, self.key, self.reason, self.at, legs)


def pack_legs(legs) -> bytes:
    return msgpack.packb(
        [[leg.account, leg.asset, leg.amount, leg.weight, leg.stack] for leg in legs],
        use_bin_type=True,
    )


def unpack_legs(blob: bytes) -> tuple[Leg, ...]:
    return tuple(Leg(*values) for values in msgpack.unpackb(blob, raw=False))


def pack_entry(posting: Posting, legs: bytes) -> bytes:
    """
    A posting as the Redis store keeps it, with its packed legs (its
    sequence number is in its key).
    """
    return msgpack.packb([posting.key, posting.reason, float(posting.at), legs])


def unpack_entry(seq: int, blob: bytes) -> Entry:
    key, reason, at, legs = msgpack.unpackb(blob, raw=False)
    return Entry(seq, key, reason, float(at), unpack_legs(legs))


@dataclass(frozen=True)
class Step:
    """
    One leg as a backend applies it: the floor and ceiling its balance
    must stay within (C{None}: no limit).
    """

    leg: Leg
    floor: int | None
    ceiling: int | None


@dataclass(frozen=True)
class Plan:
    """
    A checked posting, ready for a backend.

    @ivar digest: Of its legs: a key applied again must come with the same.
    @ivar limits: C{{account: max_load}}, in the order given.
    @ivar issue: C{{asset: (faucet, packed properties)}} of the unique
        items it issues, in the order of its legs.
    """

    posting: Posting
    steps: tuple[Step, ...]
    legs: bytes
    digest: str
    limits: dict[str, int]
    issue: dict[str, tuple[str, bytes]]
    unbalanced: str | None


def _floor(leg: Leg, floors: dict) -> int | None:
    if is_unique(leg.asset):
        return -1 if is_faucet(leg.account) else 0
    if (leg.account, leg.asset) in floors:
        return floors[leg.account, leg.asset]
    return None if is_faucet(leg.account) else 0


def plan(posting: object) -> Plan:
    """
    Check a posting's arguments and plan it.

    @raise StoreError: It is malformed.
    """
    if not isinstance(posting, Posting):
        raise StoreError(f"a ledger posting is a Posting, got {posting!r}")
    key = check_key(posting.key)
    if not isinstance(posting.reason, str) or not 0 < len(posting.reason) <= MAX_REASON:
        raise StoreError(f"a posting's reason is 1 to {MAX_REASON} characters")
    if isinstance(posting.at, bool) or not isinstance(posting.at, int | float):
        raise StoreError(f"a posting's time is a number, got {posting.at!r}")
    if not math.isfinite(posting.at):
        raise StoreError(f"a posting's time is finite, got {posting.at!r}")
    legs = tuple(posting.legs)
    if not 0 < len(legs) <= MAX_LEGS:
        raise StoreError(f"posting {key!r} has 1 to {MAX_LEGS} legs, got {len(legs)}")
    seen = set()
    sums: dict[str, int] = {}
    for leg in legs:
        if not isinstance(leg, Leg):
            raise StoreError(f"a posting's leg is a Leg, got {leg!r}")
        check_account(leg.account)
        check_asset(leg.asset)
        _check_int(leg.amount, "a leg's amount", -MAX_AMOUNT)
        if leg.amount == 0:
            raise StoreError(f"posting {key!r}: a leg of amount 0 ({leg!r})")
        _check_int(leg.weight, "a leg's weight", 0)
        _check_int(leg.stack, "a leg's stack", 0)
        if (leg.account, leg.asset) in seen:
            raise StoreError(f"posting {key!r} has two legs of {leg.account} in {leg.asset}")
        seen.add((leg.account, leg.asset))
        sums[leg.asset] = sums.get(leg.asset, 0) + leg.amount
    floors = {}
    for entry in posting.floors:
        if not isinstance(entry, tuple | list) or len(entry) != 3:
            raise StoreError(f"posting {key!r}: a floor is (account, asset, floor), got {entry!r}")
        account_name, asset, floor = entry
        check_account(account_name)
        if is_unique(check_asset(asset)):
            raise StoreError(f"posting {key!r}: a unique item's floor is fixed ({asset})")
        floors[account_name, asset] = _check_int(floor, "a floor", -MAX_AMOUNT)
    limits = {}
    for entry in posting.limits:
        if not isinstance(entry, tuple | list) or len(entry) != 2:
            raise StoreError(f"posting {key!r}: a limit is (account, max load), got {entry!r}")
        account_name, max_load = entry
        limits[check_account(account_name)] = _check_int(max_load, "a load limit", 0)
    if not isinstance(posting.issue, dict):
        raise StoreError(f"posting {key!r}: issue is a dict of unique assets' properties")
    # A faucet's leg of -1 of a unique item brings it into being (the
    # faucet's floor of -1 lets it do so once; the store's record of the
    # items issued, once across faucets).
    issuers = {}
    for leg in legs:
        if is_unique(leg.asset) and is_faucet(leg.account) and leg.amount == -1:
            if leg.asset in issuers:
                raise StoreError(f"posting {key!r} issues {leg.asset} twice")
            issuers[leg.asset] = leg.account
    issue = {}
    for asset in posting.issue:
        if asset not in issuers:
            raise StoreError(f"posting {key!r} gives properties of {asset!r} but does not issue it")
    for asset, issuer in issuers.items():
        try:
            props = msgpack.packb(posting.issue.get(asset, {}), use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as e:
            raise StoreError(f"posting {key!r}: the properties of {asset} are not msgpack: {e}")
        issue[asset] = (issuer, props)
    steps = tuple(
        Step(leg, _floor(leg, floors), 1 if is_unique(leg.asset) else None) for leg in legs
    )
    packed = pack_legs(legs)
    unbalanced = next((asset for asset, total in sums.items() if total != 0), None)
    return Plan(
        posting, steps, packed, hashlib.sha256(packed).hexdigest()[:32], limits, issue, unbalanced
    )


def check_key(key: object) -> str:
    if not isinstance(key, str) or not 0 < len(key) <= MAX_NAME:
        raise StoreError(f"an idempotency key is 1 to {MAX_NAME} characters, got {key!r}")
    return key


def check_kind(kind: object) -> str:
    if kind not in ACCOUNT_KINDS:
        raise StoreError(f"an account kind is one of {', '.join(ACCOUNT_KINDS)}, got {kind!r}")
    return kind


def kind_of(account_name: str) -> str:
    """The kind of an account (C{escrow} of C{escrow:t1})."""
    return account_name.partition(":")[0]


def check_limit(limit: object) -> int:
    return _check_int(limit, "a read's limit", 1, MAX_READ)


def check_seq(seq: object, what: str) -> int:
    return _check_int(seq, what, 0, 2**62)


def refusal_for(step: Step) -> Refusal:
    """The refusal of a step whose balance would leave its bounds."""
    reason = Refused.UNIQUE if is_unique(step.leg.asset) else Refused.FLOOR
    return Refusal(reason, step.leg.account, step.leg.asset)


def reused(key: str) -> StoreError:
    return StoreError(f"idempotency key {key!r} was used before for a posting of other legs")
