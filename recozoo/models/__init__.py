"""Models: the contract (:mod:`recozoo.models.base`) and the zoo, one module each."""

from recozoo.models.base import Model, load_model  # noqa: F401
