"""
The C{[ladders.NAME]} sections: one ranked ladder each, with its rating
model, its displayed rating, its seasons and its ranked queue.
"""

from __future__ import annotations

import re

from mmo.config.schema import ConfigError, Field, Number, Section, Str

#: The rating models of C{openskill.models} a ladder may name.
MODELS = (
    "PlackettLuce",
    "BradleyTerryFull",
    "BradleyTerryPart",
    "ThurstoneMostellerFull",
    "ThurstoneMostellerPart",
)

#: What happens to ratings at a season's rollover.
SEASON_RESETS = ("keep", "soften", "reset")

#: How many times the ladder asks the lobby to open a match's room, each
#: C{room_timeout} apart, before it cancels the match.
ROOM_TRIES = 3

#: A ladder's name (C{[ladders.NAME]}); it is part of store keys.
LADDER_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")

#: A mode's name (C{modes} keys): what a client names in the queue.
MODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,15}$")

#: Most teams in one mode, and most players in one team.
MAX_TEAMS = 64
MAX_TEAM_SIZE = 64

#: One field of a cron schedule: numbers, names, C{*}, ranges, steps, lists.
_CRON_FIELD = re.compile(r"^[A-Za-z0-9*,/-]+$")


class Modes(Field):
    """
    A table of mode name to team sizes (C{{"1v1" = [1, 1], "2v2" = [2, 2]}}):
    at least two teams of at least one player each.
    """

    def convert(self, value, path, ctx):
        if not isinstance(value, dict):
            raise ConfigError("must be a table of mode = [team sizes]", path)
        if not value:
            raise ConfigError("must name at least one mode", path)
        modes = {}
        for name, sizes in value.items():
            where = path + (name,)
            if not MODE_NAME.match(name):
                raise ConfigError(
                    "bad mode name: 1 to 16 of A-Z, a-z, 0-9, '_' and '-', "
                    "starting with a letter or digit",
                    where,
                )
            if not isinstance(sizes, list) or not all(
                isinstance(size, int) and not isinstance(size, bool) for size in sizes
            ):
                raise ConfigError("must be an array of team sizes (integers)", where)
            if not 2 <= len(sizes) <= MAX_TEAMS:
                raise ConfigError(f"must have 2 to {MAX_TEAMS} teams, got {len(sizes)}", where)
            if not all(1 <= size <= MAX_TEAM_SIZE for size in sizes):
                raise ConfigError(f"each team must have 1 to {MAX_TEAM_SIZE} players", where)
            modes[name] = tuple(sizes)
        return modes

    def missing(self, path, ctx):
        return dict(self.default)


def check_cron(value: str) -> str | None:
    """
    Why C{value} is not a cron schedule's shape (five fields: minute, hour,
    day of month, month, day of week), or C{None}.  The schedule's meaning is
    checked by the scheduler that runs it.
    """
    fields = value.split()
    if len(fields) != 5:
        return f"must be empty or a cron schedule of five fields, got {len(fields)}"
    for field in fields:
        if not _CRON_FIELD.match(field):
            return f"{field!r} is not a cron field"
    return None


class LadderSection(Section):
    """
    One ladder: its ratings, displayed rating, seasons and ranked queue.

    The displayed rating is C{display_scale * (mu - 3 * sigma) +
    display_offset} (C{docs/ladder.md}); the queue's gaps are in displayed
    rating points.
    """

    fields = {
        "model": Str(
            "PlackettLuce",
            choices=MODELS,
            doc="The openskill rating model (openskill.models).",
        ),
        "modes": Modes(
            {"1v1": (1, 1)}, doc="Ranked modes: name = [size of each team], at least two teams."
        ),
        "provisional_sigma": Number(
            5.0,
            minimum=0.001,
            maximum=1000,
            kind=float,
            doc="A rating is provisional while its sigma is above this.",
        ),
        "display_scale": Number(
            40.0,
            minimum=0.001,
            maximum=1000000,
            kind=float,
            doc="Displayed rating points per unit of the ordinal (mu - 3 sigma).",
        ),
        "display_offset": Number(
            1000.0,
            minimum=-1000000,
            maximum=1000000,
            kind=float,
            doc="Displayed rating of an ordinal of 0 (a new player's).",
        ),
        "season_schedule": Str(
            "", doc='When seasons roll over (cron, UTC); "" rolls over only by hand.'
        ),
        "season_reset": Str(
            "soften",
            choices=SEASON_RESETS,
            doc="At a rollover: keep ratings, soften them toward a new player's, or reset them.",
        ),
        "soften": Number(
            0.5,
            minimum=0,
            maximum=1,
            kind=float,
            doc="With soften: the share of the way back to a new player's mu and sigma.",
        ),
        "queue_gap": Number(
            100.0,
            minimum=0,
            maximum=1000000,
            kind=float,
            doc="Displayed-rating gap the ranked queue accepts at once.",
        ),
        "queue_gap_growth": Number(
            10.0,
            minimum=0,
            maximum=1000000,
            kind=float,
            doc="Points the accepted gap widens by per second of waiting.",
        ),
        "queue_gap_max": Number(
            600.0,
            minimum=0,
            maximum=1000000,
            kind=float,
            doc="Widest accepted gap, however long the wait.",
        ),
        "match_timeout": Number(
            3600.0,
            minimum=1,
            maximum=7 * 24 * 3600,
            kind=float,
            doc="Seconds before a match with no result frees its players.",
        ),
        "room_timeout": Number(
            5.0,
            minimum=0.1,
            maximum=600,
            kind=float,
            doc="Seconds to wait for the lobby to open a match's room before asking again.",
        ),
        "queue_lease": Number(
            10.0,
            minimum=1,
            maximum=600,
            kind=float,
            doc="Seconds the ladder process serving the queue holds it unrenewed "
            "(the shortest of the ladders' is used).",
        ),
    }

    def check(self):
        if self.season_schedule:
            problem = check_cron(self.season_schedule)
            if problem:
                raise self.error("season_schedule", problem)
        if self.queue_gap_max < self.queue_gap:
            raise self.error("queue_gap_max", "must not be below queue_gap")
        if self.room_timeout * ROOM_TRIES >= self.match_timeout:
            raise self.error(
                "room_timeout",
                f"must be below match_timeout / {ROOM_TRIES} (the lobby is asked "
                f"{ROOM_TRIES} times before the match is cancelled)",
            )
