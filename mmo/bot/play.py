"""
L{Play}: what a scenario played in the lobby (C{ranked}, C{trader}) keeps
of one bot, and the timers it schedules, all cancelled when the bot stops
playing (its goodbye, or a dropped connection).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmo.bot.stats import Stats

if TYPE_CHECKING:
    from mmo.bot.swarm import Bot


class Play:
    """
    One bot's play of a lobby scenario: a subclass listens to its pushes
    (L{attach}, before the client connects or resumes) and plays (L{play})
    once the bot is in, and again after a resume.

    @ivar playing: Between L{start} and L{stop}: what is still under way
        after a stop (a reply) schedules nothing more.
    """

    def __init__(self, bot: Bot):
        self.bot = bot
        self.playing = False
        self._timers: list = []

    @property
    def stats(self) -> Stats:
        return self.bot.swarm.stats

    def attach(self, client) -> None:
        """Listen to C{client}'s pushes."""

    def start(self) -> None:
        """The bot is in, or its session was resumed: play."""
        self.playing = True
        self.play()

    def play(self) -> None:
        """Start playing."""

    def stop(self) -> None:
        """Stop playing: no timer of this play fires after it."""
        self.playing = False
        timers, self._timers = self._timers, []
        for timer in timers:
            if timer.active():
                timer.cancel()

    def later(self, seconds: float, work, *args) -> None:
        """Call C{work(*args)} in C{seconds}, unless the play stops first."""
        if not self.playing:
            return
        self._timers = [t for t in self._timers if t.active()]
        self._timers.append(self.bot.swarm.reactor.callLater(seconds, work, *args))
