"""recozoo: a pluggable recommender-systems toolkit.

The package reads like a table of contents:

* :mod:`recozoo.data` — the ratings table, loaders, the synthetic generator, downloads;
* :mod:`recozoo.splits` — evaluation protocols (Netflix time splits, MovieLens folds);
* :mod:`recozoo.datasets` — named datasets, the data home and the prepared-split cache;
* :mod:`recozoo.metrics` / :mod:`recozoo.evaluate` — metrics and the one evaluator;
* :mod:`recozoo.models` — the model contract and the zoo; :mod:`recozoo.engine` — the
  training engine shared by torch models;
* :mod:`recozoo.registry` / :mod:`recozoo.hookspecs` — the pluggy registry;
* :mod:`recozoo.cli` — the ``recozoo`` command.
"""

__version__ = "0.1.0"

from recozoo.hookspecs import hookimpl  # noqa: E402,F401  (plugin authors import it from here)
