"""
The players' requests of a zone (C{zone.enter}, C{zone.move},
C{zone.leave}) and their sessions' events: L{ZonePlayers}, the part of
L{mmo.zone.service.ZoneService} that deals with them.
"""

from __future__ import annotations

from mmo.game.messages import Input, Switched
from mmo.game.service import Caller
from mmo.wire import codes
from mmo.wire.codes import WireError
from mmo.zone.characters import entering, save_where
from mmo.zone.ended import caller_of
from mmo.zone.entity import PLAYER, Entity
from mmo.zone.handoff import OFFERING
from mmo.zone.route import move_input
from mmo.zone.takeover import HANDED


class ZonePlayers:
    """
    The players' side of a L{mmo.zone.service.ZoneService}, on its
    C{simulation}, C{handoff}, C{takeover}, C{ends}, C{store}, C{map} and
    C{config}.
    """

    def _player_id(self, caller: Caller) -> str:
        if caller.character_id is None:
            raise WireError(codes.NOT_ALLOWED, "choose a character first")
        return caller.character_id

    def _reply(self, entity: Entity, **extra) -> dict:
        return {
            "entity": entity.id,
            "zone": self.name,
            "x": entity.x,
            "y": entity.y,
            "input": entity.last_input,
            "tick": self.simulation.tick_count,
            "world": self.client_world,
            "movement": self.client_movement,
            **extra,
        }

    async def on_zone_enter(self, caller: Caller, message: dict) -> dict:
        """
        Put the caller's character in the world, here: the real it has here
        already (a new session of it takes it over), else its checkpoint
        from the store, else a new entity where the character last left the
        world (L{WORLD_KEY} of its data, with the attrs it had then) if that
        is on the map, else at C{[world] spawn} (with the saved attrs all
        the same).  A saved position in
        another region is redirected to that region's zone.
        """
        entity_id = self._player_id(caller)
        if self.handoff.status(entity_id) == OFFERING:
            # Its offer holds the session it had: a new session taking it
            # over now would lose the entity to that one's end.
            raise WireError(codes.UNAVAILABLE, "your character is moving between zones; retry")
        entity = self.simulation.get(entity_id) if self.handoff.is_real(entity_id) else None
        if entity is None:
            entity = await entering(
                self.store, self.map, self.name, self.config.world.spawn, caller
            )
            entity.session, entity.gateway = caller.session, caller.gateway
            if not await self.handoff.enter(entity):
                if not self.handoff.is_real(entity_id):
                    raise WireError(codes.UNAVAILABLE, "your character is busy; retry")
            # Here now, entered by us or (meanwhile) by a handoff.
            entity = self.simulation.get(entity_id)
            if entity is None:
                # Its session ended while it entered: it left again.
                raise WireError(codes.NOT_ALLOWED, "your session ended")
        if entity.session != caller.session:
            # Taken over by a new session: its client starts with an empty
            # view, whatever the one before was shown.
            self.simulation.new_client(entity_id)
        entity.session, entity.gateway = caller.session, caller.gateway
        self.log.info(
            "zone {zone}: {name} entered at ({x:.1f}, {y:.1f})",
            zone=self.name,
            name=caller.display_name,
            x=entity.x,
            y=entity.y,
        )
        return self._reply(entity)

    async def on_zone_move(self, caller: Caller, message: dict) -> dict:
        """
        A movement input: through the handoff's gate (which forwards it if
        the entity moved on, and applies it in order, at most once).
        """
        entity_id = self._player_id(caller)
        # The game's own fields of the input travel with it (Input.extra).
        seq, payload = move_input(message)
        if self.handoff.status(entity_id) is None and caller.zone is None:
            raise WireError(codes.NOT_ALLOWED, "enter the zone first")
        self._input(caller.gateway, Input(caller.session, entity_id, seq, payload))
        return {}

    def refused(self, caller: Caller, kind: str, message: dict, error: WireError) -> None:
        """
        An input its gateway did not wait for was refused: a player whose
        entity is a real here is corrected at the next tick (C{world.correct}
        with its position and C{last_input}), so that its client knows
        where it is and which of its inputs were applied.
        """
        super().refused(caller, kind, message, error)
        if caller.character_id is not None:
            self.simulation.correct(caller.character_id, error.code)

    def _input(self, gateway: str, message: Input | Switched) -> None:
        """
        An input (or a route switch) from a gateway: to the handoff's gate,
        or to the successor once handed.
        """
        if not self.takeover.relay(message, gateway):
            self.handoff.receive(gateway, message)

    def receive(self, to: str, sender: str, message) -> None:
        """
        A gateway's L{Switched}, sent over the route its inputs take (so it
        comes after every input it sent here before).

        @raise ValueError: Not for this zone, or not a L{Switched}.
        """
        if to != self.name or not isinstance(message, Switched):
            raise ValueError(f"zone {self.name} takes no {type(message).__name__} for {to!r}")
        self._input(sender, message)

    async def on_zone_leave(self, caller: Caller, message: dict) -> dict:
        """Take the caller's character out of the world."""
        entity_id = self._player_id(caller)
        entity = self.simulation.get(entity_id)
        if entity is None or entity.session != caller.session:
            raise WireError(codes.NOT_ALLOWED, "you are not in this zone")
        await self._leave(entity)
        return {}

    async def _leave(self, entity: Entity) -> bool:
        """
        A player's entity leaves the world: taken out of the simulation
        (so what is saved is its last state), where it is with its attrs
        saved into its character's data (L{WORLD_KEY}), then its record
        removed from the store.  A failed save is logged and the entity
        leaves all the same (its next C{zone.enter} finds an older saved
        position, or none: the spawn).  False if it is not active here
        (being handed over, or leaving already).
        """
        return await self.handoff.leave(entity.id, before=self._save_where)

    async def _save_where(self, entity: Entity) -> None:
        await save_where(self.store, self.name, entity)

    def held_sessions(self) -> list[Caller]:
        """
        The sessions of the players whose entities are reals here, as the
        entities name them (one handed over here may not have sent a
        request to this process yet): what C{"ended"} needs, so that the
        entity of a session whose gateway died leaves the world too
        (L{mmo.game.gateways}).
        """
        return [
            caller_of(e)
            for e in self.simulation.reals.values()
            if e.kind == PLAYER and e.session is not None
        ]

    async def session_event(self, caller: Caller, event: str) -> None:
        """
        C{"moved"}: the session's pushes go to its new gateway.  C{"ended"}:
        the session is gone for good (not merely dropped: a session waiting
        for a resume keeps its entity; its gateway died, see
        L{held_sessions}), so its entity leaves the world, saved where it
        was.  A later session of the same character that took the entity
        over (C{zone.enter}) keeps it.  An entity not active here when its
        session ends (being handed over, still entering, not here yet, or
        not restored yet) leaves once it settles here (L{ends}).
        """
        entity_id = caller.character_id
        if entity_id is None:
            return
        if self.takeover.mode == HANDED:
            if event in ("moved", "ended"):
                self.takeover.relay_event(caller, event)
            return
        if event == "ended":
            await self.ends.ended(caller)
            return
        entity = self.simulation.get(entity_id)
        if event == "moved" and entity is not None and entity.session == caller.session:
            entity.gateway = caller.gateway
