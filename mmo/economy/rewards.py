"""
L{Rewards}: the faucet API of game rules.  A rule pays a player currency
and items under a key derived from its event (L{event_key}), so that a
replayed event pays once, and a unique item it gives is issued once, with
an id derived from the key.
"""

from __future__ import annotations

from mmo.economy.errors import BadRequest
from mmo.economy.holdings import Holding, check_count, event_key, instance_id
from mmo.economy.ledger import OnLedger
from mmo.store import StoreError
from mmo.store.common_economy import faucet, unique

__all__ = ["Rewards", "event_key", "issue_legs"]

#: Most unique items one posting issues (two legs each, within the
#: ledger's 64 legs with room for the payment).
MAX_UNIQUES = 30


def issue_legs(rules, source: str, target: str, key: str, item: str, count: int):
    """
    The legs and properties that give C{count} of C{item} from the faucet
    C{source} to C{target} under posting C{key}: a stackable item as a
    count, a unique item as new instances, issued with ids derived from
    C{key} and the item definition's properties (and C{item}: its id).

    @return: C{(legs, issue)}: the legs and C{{asset: properties}}.
    """
    definition = rules.item_def(item)
    check_count(count, f"a count of {item!r}")
    if definition.stackable:
        return rules.transfer(source, target, Holding(items={item: count})), {}
    if count > MAX_UNIQUES:
        raise BadRequest(f"at most {MAX_UNIQUES} unique items per posting, got {count} of {item!r}")
    legs, issue = [], {}
    for index in range(count):
        asset = unique(instance_id(item, key, index))
        legs += [rules.leg(source, asset, -1), rules.leg(target, asset, 1)]
        issue[asset] = {**definition.props, "item": item}
    return legs, issue


class Rewards(OnLedger):
    """
    Payments from the game's faucets (C{faucet:REASON}) to players.
    """

    async def reward(self, player_id, key, reason, currencies=None, items=None) -> int:
        """
        Pay C{player_id} from C{faucet:REASON}, once per C{key}.

        @param key: Derived from the game event (L{event_key}: C{loot:ZONE:
            ENTITY:TICK}, C{quest:QUEST:PLAYER}); a replay pays nothing.
        @param reason: The faucet's name and the posting's reason
            (C{loot}, C{quest}, C{daily}).
        @param currencies: Currency name to amount, minor units.
        @param items: Item id to count; unique items are issued as new
            instances, with the ids L{instance_id} derives from C{key}.
        @return: The posting's sequence number (the first one's on a replay).
        @raise EconomyError: Bad input, or no room in the inventory (nothing
            paid).
        """
        account = self._rules.account(player_id)
        if not isinstance(reason, str) or not reason:
            raise BadRequest(f"a reward's reason is a non-empty string, got {reason!r}")
        try:
            source = faucet(reason)
        except StoreError as e:
            raise BadRequest(str(e))
        paid = Holding(currencies or {}, items or {})
        posting_key = event_key("reward", key)
        legs = self._rules.transfer(source, account, Holding(paid.currencies))
        issue = {}
        for item, count in paid.items.items():
            more, issued = issue_legs(self._rules, source, account, posting_key, item, count)
            legs += more
            issue.update(issued)
        return await self._ledger.post(posting_key, reason, legs, issue)
