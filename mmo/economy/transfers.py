"""
L{Transfers}: value moved between players in one posting, the building
block of trades, and the escrow a trade holds between its sides' deposits
and its settlement.

Each step's key is derived from the trade id and the step
(C{trade:ID:deposit:SIDE}, C{trade:ID:settle}, C{trade:ID:refund}), so a
step retried after a crash applies once; settling and refunding take from
the same escrow, so once one of them is applied the other is refused: a
trade happens whole or not at all, and each item and coin has one owner
after every step.
"""

from __future__ import annotations

from collections.abc import Mapping

from mmo.economy.errors import BadRequest
from mmo.economy.holdings import Holding, event_key
from mmo.economy.ledger import OnLedger
from mmo.store.common_economy import escrow


class Transfers(OnLedger):
    """
    Moves between players, and trades' escrow, on the
    L{mmo.economy.ledger.Ledger}.

    """

    def escrow_account(self, trade_id: object) -> str:
        """The escrow account of trade C{trade_id}."""
        return self._rules.named(escrow, trade_id, "a trade id")

    async def move(self, key: str, reason: str, source: str, target: str, holding: Holding):
        """
        Move C{holding} from player C{source} to player C{target} in one
        posting under C{key}.

        @return: The posting's sequence number.
        @raise EconomyError: C{source} lacks some of it, C{target} has no
            room, or bad input; nothing moved.
        """
        if source == target:
            raise BadRequest(f"a move from {source!r} to itself")
        legs = self._rules.transfer(
            self._rules.account(source), self._rules.account(target), holding
        )
        return await self._ledger.post(event_key("move", key), reason, legs)

    async def deposit(self, trade_id: str, side: str, player_id: str, holding: Holding):
        """
        Move what C{player_id} gives as side C{side} of the trade into its
        escrow (C{escrow:TRADE}), once per trade and side.
        """
        legs = self._rules.transfer(
            self._rules.account(player_id), self.escrow_account(trade_id), holding
        )
        key = event_key("trade", trade_id, "deposit", side)
        return await self._ledger.post(key, "trade.deposit", legs)

    def _sides(self, sides: object) -> list[tuple[str, Holding]]:
        if not isinstance(sides, Mapping) or len(sides) != 2:
            raise BadRequest(f"a trade has two sides, SIDE: (player, holding), got {sides!r}")
        found = []
        for side in sorted(sides):
            entry = sides[side]
            if not isinstance(entry, tuple) or len(entry) != 2:
                raise BadRequest(f"side {side!r} is (player, holding), got {entry!r}")
            found.append((self._rules.account(entry[0]), entry[1]))
        return found

    async def settle(self, trade_id: str, sides) -> int:
        """
        Pay each side's deposit out of escrow to the other side's player, in
        one posting.

        @param sides: C{{side: (player id, holding deposited)}}, two sides.
        @raise EconomyError: The escrow does not hold both deposits (not
            made, or refunded), a player has no room; nothing moved.
        """
        (first, given_first), (second, given_second) = self._sides(sides)
        held = self.escrow_account(trade_id)
        legs = self._rules.transfer(held, second, given_first)
        legs += self._rules.transfer(held, first, given_second)
        return await self._ledger.post(event_key("trade", trade_id, "settle"), "trade", legs)

    async def refund(self, trade_id: str, sides) -> int:
        """
        Give each side's deposit back to its player, in one posting; a side
        that deposited nothing has an empty L{Holding}.

        @raise EconomyError: The escrow does not hold the deposits (settled).
        """
        held = self.escrow_account(trade_id)
        legs = []
        for owner, given in self._sides(sides):
            legs += self._rules.transfer(held, owner, given)
        key = event_key("trade", trade_id, "refund")
        return await self._ledger.post(key, "trade.refund", legs, returning=True)
