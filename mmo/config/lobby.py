"""
The C{[lobby]} section: characters and rooms.
"""

from __future__ import annotations

from mmo.config.schema import Number, Section, Str


class LobbySection(Section):
    """Characters and rooms."""

    fields = {
        "characters_per_account": Number(
            8, minimum=1, maximum=1000, doc="Characters one account may have."
        ),
        "character_name_min_length": Number(3, minimum=1, maximum=64, doc="Shortest name."),
        "character_name_max_length": Number(16, minimum=1, maximum=64, doc="Longest name."),
        "room_capacity": Number(
            8, minimum=2, maximum=100000, doc="Members of a room when its creator does not say."
        ),
        "room_max_capacity": Number(
            64, minimum=2, maximum=100000, doc="Most members a room may be created for."
        ),
        "rooms_max": Number(1000, minimum=1, maximum=1000000, doc="Rooms open at once."),
        "lobby_class": Str(
            "",
            pattern=r"^$|^[A-Za-z_][\w.]*\.[A-Za-z_]\w*$",
            doc="Fully qualified name of a LobbyService subclass with the game's rules "
            "(its rooms' games, a ranked match's rule).",
        ),
    }

    def check(self):
        if self.character_name_max_length < self.character_name_min_length:
            raise self.error(
                "character_name_max_length", "must not be below character_name_min_length"
            )
        if self.room_capacity > self.room_max_capacity:
            raise self.error("room_capacity", "must not be above room_max_capacity")
