"""``pop``: the most popular items, the same ranking for every user.

The floor every implicit-feedback model must clear (Cremonesi, Koren & Turrin
2010 showed how hard it can be to beat on top-N metrics): an item's score is
its number of training interactions. A user's own items are excluded from
their ranking like everywhere else, so two users' lists differ only there.
Folding in a new user changes nothing but that exclusion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recozoo.models._interactions import InteractionModel
from recozoo.settings import BaseSettings

__all__ = ["Popularity"]


@dataclass(frozen=True)
class PopularitySettings(BaseSettings):
    """No settings: the ranking is the training counts."""


class Popularity(InteractionModel):
    __doc__ = __doc__
    name = "pop"
    Settings = PopularitySettings
    summary = "most popular items (training interaction counts), the same for every user"
    fallback = "every user, known or not: the items' training interaction counts; an unknown item: 0"
    fold_in_method = "the training interaction counts (the user's items only leave the ranking)"

    def _fit_interactions(self, X, reporter):
        """Nothing beyond the counts the base keeps."""

    def _scores(self, X):
        return np.broadcast_to(self.popularity_, X.shape)
