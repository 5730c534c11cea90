"""
A custom game rule added by subclassing the zone service: items lie in the
world, and a player picks one up with C{zone.pickup}.

    -> {"t": "zone.pickup", "id": 7, "item": "item-0"}
    <- {"t": "reply", "id": 7, "bag": ["apple"]}

An item is an entity of kind C{"item"} in the zone's simulation, so the
world's own machinery shows it: players near it get it in a C{world.update}
C{enter} (and players across a nearby border too, as a ghost).  A pickup
within L{PickupZone.reach} of the player adds the item's name to the
player's C{attrs["bag"]} (carried through handoffs and checkpoints like any
attribute, and shown to the others in an C{update}) and takes the item out of
the world, so that everyone who saw it gets a C{leave}.

When the deployment runs an economy with a currency C{gold}
(C{[economy]}, see C{docs/economy.md}), a pickup also pays the player the
item's L{PickupZone.coins} through the economy's faucet API, under a key
derived from the event (the zone, the item and the player's account): a
player is paid once for an item, however often the zone restarts and lays
it out again, and the reply says the player's gold.

    <- {"t": "reply", "id": 7, "bag": ["apple"], "gold": 5}

Items are not players' entities: they are not checkpointed nor handed off;
each zone lays out again, when it starts, those of L{PickupZone.items} that
lie in its region.  A player picks up only items of the zone it is in.

Name the class in the config to use it (C{examples/pickup.toml}):

    [world]
    zone_class = "pickup.PickupZone"

    PYTHONPATH=examples twistd -n mmo --config examples/pickup.toml
"""

from __future__ import annotations

import math

from mmo.economy.economy import Economy
from mmo.economy.holdings import event_key
from mmo.game.service import Caller
from mmo.wire import codes
from mmo.wire.codes import WireError
from mmo.zone.entity import Entity
from mmo.zone.service import ZoneService

#: The kind of an item's entity.
ITEM = "item"


class PickupZone(ZoneService):
    """
    A zone with items to pick up (see the module docstring).

    @cvar items: The world's items, C{(name, x, y)}; the one at index C{n}
        is the entity C{item-n}, in the zone whose region holds it.
    @cvar reach: How close a player must be to an item to pick it up, world
        units.
    """

    items: tuple[tuple[str, float, float], ...] = (
        ("apple", 95.0, 50.0),
        ("lantern", 120.0, 40.0),
    )
    reach = 2.0
    #: Gold paid for picking an item up, by item name (minor units).
    coins = {"apple": 5, "lantern": 20}

    async def start(self) -> None:
        await super().start()
        economy = self.config.economy
        self.economy = None
        if economy.enabled and "gold" in economy.currencies:
            self.economy = Economy(economy, self.store, self.reactor)
        self.lay_out_items()

    def lay_out_items(self) -> list[Entity]:
        """Put this region's items in the simulation; the entities added."""
        added = []
        for n, (name, x, y) in enumerate(self.items):
            region = self.map.region_at(x, y)
            if region is not None and region.name == self.name:
                item = Entity(f"item-{n}", ITEM, x, y, name=name)
                self.simulation.add(item)
                added.append(item)
        return added

    async def on_zone_pickup(self, caller: Caller, message: dict) -> dict:
        """
        Pick up the item C{message["item"]}: it goes in the player's bag and
        out of the world.  Refused when the player is not in this zone (or is
        being handed to the next), the item is not here (taken already) or
        is out of reach.
        """
        item_id = message.get("item")
        if not isinstance(item_id, str):
            raise WireError(codes.BAD_REQUEST, "item must be a string")
        player = self.simulation.get(self._player_id(caller))
        if player is None or player.session != caller.session:
            raise WireError(codes.NOT_ALLOWED, "you are not in this zone")
        if player.id in self.simulation.frozen:
            # Its state is on its way to the next zone: a change now would be lost.
            raise WireError(codes.UNAVAILABLE, "you are crossing a border; retry")
        item = self.simulation.get(item_id)
        if item is None or item.kind != ITEM:
            raise WireError(codes.NOT_FOUND, f"no item {item_id!r} here")
        if math.hypot(item.x - player.x, item.y - player.y) > self.reach:
            raise WireError(codes.NOT_ALLOWED, "out of reach")
        self.simulation.remove(item_id)
        # A new dict and list, not changed in place: the simulation sees the change.
        bag = [*player.attrs.get("bag", ()), item.name]
        player.attrs = {**player.attrs, "bag": bag}
        if self.economy is None or item.name not in self.coins:
            return {"bag": bag}
        # The item is taken before the payment, so that two players reaching
        # for it in the same turn cannot both be paid.  The key is the
        # event's: a replay pays nothing more.
        key = event_key("pickup", self.name, item_id, caller.account_id)
        paid = {"gold": self.coins[item.name]}
        await self.economy.rewards.reward(caller.account_id, key, "pickup", paid)
        wallet = await self.economy.wallets.wallet(caller.account_id)
        return {"bag": bag, "gold": wallet.balances["gold"]}
