"""pluggy hook specifications: how built-in and third-party code add to recozoo.

A plugin is any module (or installed distribution exposing a module through the
``recozoo`` entry-point group) implementing one or more of these hooks with
``@recozoo.hookimpl``. recozoo's own models and datasets are registered through
exactly these hooks (see :mod:`recozoo.builtin`).
"""

import pluggy

hookspec = pluggy.HookspecMarker("recozoo")
hookimpl = pluggy.HookimplMarker("recozoo")


@hookspec
def register_models(register):
    """Call ``register(model_class)`` for each :class:`recozoo.models.base.Model` subclass."""


@hookspec
def register_datasets(register):
    """Call ``register(dataset_spec)`` for each :class:`recozoo.datasets.DatasetSpec`."""
