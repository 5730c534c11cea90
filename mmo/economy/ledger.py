"""
L{Rules}: the config's economy mapped onto the ledger (which asset a
currency or item is, what weight and stack an item's leg has, the credit
floors and inventory limits of a posting), and L{Ledger}, which posts
through them and turns refusals into domain errors.
"""

from __future__ import annotations

from mmo.economy.errors import BadRequest, EconomyError, UnknownItem, refusal_error
from mmo.economy.holdings import Holding, item_of
from mmo.store import StoreError
from mmo.store.common_economy import (
    Leg,
    Posted,
    Posting,
    currency,
    is_player,
    is_system,
    merged,
    player,
    stackable,
    unique,
)
from mmo.unavailable import BackendUnavailable


class Rules:
    """
    The economy's config, as ledger assets, legs, floors and limits.

    A player's legs of an item carry its weight and stack (the inventory's
    rules: in C{slots} mode a stack of C{max_stack} per slot, 1 for a
    unique item, no weight; in C{weight} mode the item's weight, no slots);
    other accounts' legs carry none, so that only players' inventories have
    loads.

    @param section: The L{mmo.config.economy.EconomySection}.
    """

    def __init__(self, section):
        self.section = section
        self.currencies = section.currencies
        self.item_defs = section.item_defs
        self.vendors = section.vendors
        self.slots = section.inventory == "slots"
        self.limit = section.inventory_limit

    def account(self, player_id: object) -> str:
        """A player's ledger account."""
        return self.named(player, player_id, "a player id")

    def named(self, make, ident: object, what: str) -> str:
        """
        The ledger account C{make(ident)}.

        @raise BadRequest: C{ident} is not a non-empty string, or too long.
        """
        if not isinstance(ident, str) or not ident:
            raise BadRequest(f"{what} is a non-empty string, got {ident!r}")
        try:
            return make(ident)
        except StoreError as e:
            raise BadRequest(str(e))

    def currency_asset(self, name: object) -> str:
        if name not in self.currencies:
            raise BadRequest(f"no currency {name!r} (currencies: {', '.join(self.currencies)})")
        return currency(name)

    def item_def(self, item: object):
        found = self.item_defs.get(item) if isinstance(item, str) else None
        if found is None:
            raise UnknownItem(f"no item {item!r}")
        return found

    def stackable_asset(self, item: object) -> str:
        found = self.item_def(item)
        if not found.stackable:
            raise BadRequest(f"{item!r} is a unique item, held as instances, not counted")
        return stackable(found.id)

    def unique_asset(self, instance: object) -> str:
        if not isinstance(instance, str):
            raise BadRequest(f"a unique instance id is a string, got {instance!r}")
        if self.item_def(item_of(instance)).stackable:
            raise BadRequest(f"{instance!r} is not an instance of a unique item")
        try:
            return unique(instance)
        except StoreError as e:
            raise BadRequest(str(e))

    def leg(self, account: str, asset: str, amount: int) -> Leg:
        """The leg of C{amount} of C{asset}, with its weight and stack for a player."""
        if not is_player(account) or asset.startswith("c:"):
            return Leg(account, asset, amount)
        item = self.item_defs[item_of(asset[2:])]
        if not self.slots:
            return Leg(account, asset, amount, weight=item.weight)
        return Leg(account, asset, amount, stack=item.max_stack or 1)

    def transfer(self, source: str, target: str, holding: Holding) -> list[Leg]:
        """The legs that move C{holding} from C{source} to C{target}."""
        if not isinstance(holding, Holding):
            raise BadRequest(f"a transfer moves a Holding, got {holding!r}")
        assets = [(self.currency_asset(name), n) for name, n in holding.currencies.items()]
        assets += [(self.stackable_asset(item), n) for item, n in holding.items.items()]
        assets += [(self.unique_asset(instance), 1) for instance in sorted(holding.uniques)]
        legs = []
        for asset, amount in assets:
            legs += [self.leg(source, asset, -amount), self.leg(target, asset, amount)]
        return legs

    def floors(self, legs) -> tuple[tuple[str, str, int], ...]:
        """
        The credit floors of the players' currency legs whose currency
        allows credit, in a posting that pays that currency to the game
        only (a shop, a sink).  Money on credit never reaches another
        player or an escrow: two players could otherwise mint it, one
        spending what he will never repay into the other's wallet.
        """
        to_holders = {leg.asset for leg in legs if leg.amount > 0 and not is_system(leg.account)}
        floors = []
        for leg in legs:
            if (
                is_player(leg.account)
                and leg.asset.startswith("c:")
                and leg.asset not in to_holders
            ):
                credit = self.currencies[leg.asset[2:]].credit
                if credit:
                    floors.append((leg.account, leg.asset, -credit))
        return tuple(floors)

    def limits(self, legs) -> tuple[tuple[str, int], ...]:
        """The inventory limit of every player the legs give items to."""
        receivers = dict.fromkeys(
            leg.account
            for leg in legs
            if is_player(leg.account) and leg.amount > 0 and not leg.asset.startswith("c:")
        )
        return tuple((account, self.limit) for account in receivers)


class OnLedger:
    """
    A part of the economy over the L{Ledger}.

    @param ledger: The ledger.
    """

    def __init__(self, ledger):
        self._ledger = ledger
        self._rules = ledger.rules


class Ledger:
    """
    Posts through L{Rules} on an L{mmo.store.IEconomyStore}.

    @param rules: The L{Rules}.
    @param store: The store, started.
    @param clock: Gives each posting's time (C{seconds()}).
    """

    def __init__(self, rules: Rules, store, clock):
        self.rules = rules
        self.store = store
        self.clock = clock

    async def post(self, key: str, reason: str, legs, issue=None, returning: bool = False) -> int:
        """
        Post C{legs} (merged) under C{key}, once: a retry of an applied key
        answers its first sequence number.

        @param returning: The legs give back what their receivers put in
            (an escrow's refund): no inventory limit holds them, since the
            players held it all before; a limit would leave it in escrow.

        @return: The posting's sequence number.
        @raise EconomyError: Refused (the subclass says why), or nothing to
            move, or C{key} was used before for a different posting.
        """
        legs = merged(legs)
        if not legs:
            raise BadRequest(f"{reason}: nothing to move")
        posting = Posting(
            key,
            reason,
            legs,
            self.clock.seconds(),
            floors=self.rules.floors(legs),
            limits=() if returning else self.rules.limits(legs),
            issue=issue or {},
        )
        try:
            result = await self.store.economy_post(posting)
        except BackendUnavailable:
            raise  # the store is not reachable now: a retry may succeed
        except StoreError as e:
            raise EconomyError(f"{reason} {key!r}: {e}")
        if result.status is Posted.REFUSED:
            raise refusal_error(result.refusal)
        return result.seq

    async def posted(self, key: str) -> bool:
        """Whether a posting was applied under C{key}."""
        return await self.store.economy_posting(key) is not None
