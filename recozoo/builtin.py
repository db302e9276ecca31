"""recozoo's own plugin: built-in models and datasets, registered through the
same hooks a third-party plugin implements (no privileged back door)."""

from __future__ import annotations

import importlib

from recozoo.hookspecs import hookimpl

# Each module lists its model classes in a module-level ``MODELS`` tuple.
_MODEL_MODULES = (
    "recozoo.models.baselines",
)


@hookimpl
def register_models(register):
    for mod in _MODEL_MODULES:
        for cls in importlib.import_module(mod).MODELS:
            register(cls)


@hookimpl
def register_datasets(register):
    from recozoo.datasets import builtin_datasets
    for spec in builtin_datasets():
        register(spec)
