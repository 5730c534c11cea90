"""
A ladder's ratings: the openskill model named in its config, the displayed
rating derived from a rating, when a rating is provisional, and how a
rating carries into the next season.  Pure functions of their inputs, so
that replaying a season's results gives the stored ratings exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import openskill.models

from mmo.store.common_ladder import SeasonRecord

#: A rating: (mu, sigma).
Rating = tuple[float, float]

#: Sigmas below the ordinal of the displayed rating (mu - 3 sigma): a
#: player's skill is above it with about 99.7% confidence.
ORDINAL_SIGMAS = 3.0


class Rater:
    """
    The ratings of one ladder.

    @param model: The name of a model of C{openskill.models}.
    @param provisional_sigma: A rating is provisional while its sigma is
        above this.
    @param display_scale: Displayed points per unit of the ordinal.
    @param display_offset: The displayed rating of an ordinal of 0.
    """

    def __init__(
        self,
        model: str = "PlackettLuce",
        provisional_sigma: float = 5.0,
        display_scale: float = 40.0,
        display_offset: float = 1000.0,
    ):
        self.model_name = model
        self._model = getattr(openskill.models, model)()
        self.provisional_sigma = provisional_sigma
        self.display_scale = display_scale
        self.display_offset = display_offset

    @classmethod
    def from_section(cls, section) -> Rater:
        """The rater of a L{mmo.config.ladder.LadderSection}."""
        return cls(
            section.model,
            section.provisional_sigma,
            section.display_scale,
            section.display_offset,
        )

    def initial(self) -> Rating:
        """A new player's rating (the model's defaults)."""
        return (float(self._model.mu), float(self._model.sigma))

    def rate(
        self,
        teams: Sequence[Sequence[Rating]],
        ranks: Sequence[float] | None = None,
        scores: Sequence[float] | None = None,
    ) -> list[list[Rating]]:
        """
        The ratings after a match of C{teams}, in the same shape: placed by
        C{ranks} (lower is better, equal is a tie) or C{scores} (higher is
        better), or, with neither, in the order given.
        """
        rated = self._model.rate(
            [[self._model.rating(mu=mu, sigma=sigma) for mu, sigma in team] for team in teams],
            ranks=list(ranks) if ranks is not None else None,
            scores=list(scores) if scores is not None else None,
        )
        return [[(float(r.mu), float(r.sigma)) for r in team] for team in rated]

    def display(self, mu: float, sigma: float) -> float:
        """The displayed rating, which the board orders by."""
        return self.display_scale * (mu - ORDINAL_SIGMAS * sigma) + self.display_offset

    def provisional(self, sigma: float) -> bool:
        return sigma > self.provisional_sigma

    def carry(self, rating: Rating, season: SeasonRecord) -> Rating:
        """
        A rating of the season before C{season} as the player starts
        C{season} with, by the rule its rollover recorded.
        """
        mu, sigma = rating
        if season.reset == "keep":
            return rating
        initial_mu, initial_sigma = self.initial()
        if season.reset == "reset":
            return (initial_mu, initial_sigma)
        share = season.soften
        return (mu + (initial_mu - mu) * share, sigma + (initial_sigma - sigma) * share)
