"""recozoo-ease: the EASE^R model as a recozoo plugin (see :mod:`recozoo_ease.model`)."""

from recozoo_ease.model import EASE, EASESettings

__all__ = ["EASE", "EASESettings"]
__version__ = "0.1.0"
