"""
The board's side of the ladder service: its client messages (C{ladder.rating},
C{ladder.top}, C{ladder.rank}, C{ladder.around}, C{ladder.seasons}), which
read the store and so are answered by any ladder process, and each ladder's
season rollover job.
"""

from __future__ import annotations

from functools import partial

from mmo.config import ConfigError
from mmo.game.service import Caller
from mmo.jobs.job import Job
from mmo.ladder import checks
from mmo.ladder.ladder import Ladder
from mmo.schedules import ScheduleError, parse_schedule
from mmo.wire.codes import NOT_FOUND, WireError


def make_ladders(config, store, reactor) -> dict:
    """A L{Ladder} for each C{[ladders.NAME]} of C{config}."""
    return {name: Ladder(section, store, reactor) for name, section in config.ladders.items()}


class BoardRequests:
    """
    The board's messages and the seasons' jobs, for a L{mmo.game.service.GameService}.

    @ivar ladders: Ladder name -> its L{Ladder}.
    """

    ladders: dict[str, Ladder]

    def _ladder(self, message: dict):
        name = checks.string(message, "ladder")
        ladder = self.ladders.get(name)
        if ladder is None:
            raise WireError(NOT_FOUND, f"no such ladder {name!r}")
        return name, ladder

    async def on_ladder_rating(self, caller: Caller, message: dict) -> dict:
        name, ladder = self._ladder(message)
        player = checks.player(message, caller)
        return {"ladder": name, "player": player, **checks.rating_dict(await ladder.rating(player))}

    async def on_ladder_top(self, caller: Caller, message: dict) -> dict:
        name, ladder = self._ladder(message)
        start = checks.integer(message, "start", 0, 0, checks.MAX_START)
        count = checks.integer(message, "count", 10, 1, checks.MAX_COUNT)
        season = checks.season(message)
        entries = await ladder.top(start, count, season=season)
        return {"ladder": name, "start": start, "entries": [checks.entry_dict(e) for e in entries]}

    async def on_ladder_rank(self, caller: Caller, message: dict) -> dict:
        name, ladder = self._ladder(message)
        player = checks.player(message, caller)
        entry = await ladder.rank(player, season=checks.season(message))
        found = checks.entry_dict(entry) if entry is not None else {"rank": None, "player": player}
        return {"ladder": name, **found}

    async def on_ladder_around(self, caller: Caller, message: dict) -> dict:
        name, ladder = self._ladder(message)
        player = checks.player(message, caller)
        count = checks.integer(message, "count", 10, 1, checks.MAX_COUNT)
        entries = await ladder.around(player, count, season=checks.season(message))
        return {
            "ladder": name,
            "player": player,
            "entries": [checks.entry_dict(e) for e in entries],
        }

    async def on_ladder_seasons(self, caller: Caller, message: dict) -> dict:
        name, ladder = self._ladder(message)
        season = await ladder.season()
        return {"ladder": name, "season": season, "seasons": list(range(1, season + 1))}

    def jobs(self) -> list[Job]:
        """
        Each ladder's season rollover, on its C{season_schedule} (none for a
        ladder that rolls over by hand only).  A rollover missed while no
        process ran the job is caught up once, late; its run id makes a
        repeat of the same run change nothing.

        @raise ConfigError: A C{season_schedule} the scheduler cannot read.
        """
        found = []
        for name, ladder in self.ladders.items():
            text = self.config.ladders[name].season_schedule
            if not text:
                continue
            try:
                schedule = parse_schedule(text)
            except ScheduleError as e:
                raise ConfigError(str(e), ("ladders", name, "season_schedule"), self.config.file)
            found.append(
                Job(
                    f"ladder.{name}.rollover",
                    schedule,
                    partial(self._rollover, ladder),
                    misfire="catch_up",
                    max_catch_up=1,
                )
            )
        return found

    async def _rollover(self, ladder, run) -> None:
        season = await ladder.rollover(run_id=run.id)
        self.log.info("ladder: {name} is in season {season}", name=ladder.name, season=season)
