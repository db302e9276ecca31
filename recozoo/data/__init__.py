"""Data: the ratings table, loaders for the raw layouts, the synthetic generator."""

from recozoo.data.table import IdMap, RatingsTable  # noqa: F401
