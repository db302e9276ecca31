"""The plugin registry: one pluggy PluginManager, built-ins and plugins alike.

Loading order: recozoo's built-in plugin module, then every entry point of the
``recozoo`` group (what ``pip install some-plugin`` adds). Both go through the
same ``register_*`` hooks. Two providers registering one name is an error that
names both.

``RECOZOO_PLUGINS`` controls the third-party part (as in ``llm``): unset = load
all installed plugins; an empty string = none; a comma list = only those entry
point names. Built-ins are always loaded.

The registry knows only what plugins register. Datasets that a user registers
with ``recozoo data prepare NAME --train ...`` are :mod:`recozoo.datasets`'
business (it looks there after the registry), so this module imports no part of
recozoo that could import it back.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

import pluggy

from recozoo import hookspecs
from recozoo.errors import DatasetNotFound, RegistryError

__all__ = ["plugin_manager", "get_model", "list_models", "get_dataset", "list_datasets", "has_dataset",
           "ModelEntry", "LazyModel", "reset", "add_plugin", "register_temporarily", "BUILTIN_PLUGIN"]

#: recozoo's own plugin module, loaded first and by name, as entry points are
BUILTIN_PLUGIN = "recozoo.builtin"

_pm: pluggy.PluginManager | None = None
_models: dict[str, "ModelEntry"] | None = None
_datasets: dict[str, tuple[Any, str]] | None = None


@dataclass(frozen=True)
class LazyModel:
    """A model registered by name and ``"module:Class"``, imported on first use."""

    name: str
    target: str

    def load(self) -> type:
        try:
            cls = import_string(self.target)
        except (ImportError, AttributeError) as e:
            raise RegistryError(f"model {self.name!r}: cannot import {self.target} ({e})") from None
        if getattr(cls, "name", None) != self.name:
            raise RegistryError(f"model {self.name!r}: {self.target} is named {getattr(cls, 'name', None)!r}")
        return cls


@dataclass
class ModelEntry:
    name: str
    provider: str
    _obj: Any

    @property
    def cls(self) -> type:
        if isinstance(self._obj, LazyModel):
            self._obj = self._obj.load()
        return self._obj

    @property
    def summary(self) -> str:
        cls = self.cls
        return getattr(cls, "summary", "") or (cls.__doc__ or "").strip().split("\n")[0]


def plugin_manager() -> pluggy.PluginManager:
    global _pm
    if _pm is not None:
        return _pm
    pm = pluggy.PluginManager("recozoo")
    pm.add_hookspecs(hookspecs)
    pm.register(importlib.import_module(BUILTIN_PLUGIN), name="recozoo")
    wanted = os.environ.get("RECOZOO_PLUGINS")
    allow = None if wanted is None else {w.strip() for w in wanted.split(",") if w.strip()}
    for ep in entry_points(group="recozoo"):
        if allow is not None and ep.name not in allow:
            continue
        if pm.has_plugin(ep.name):
            continue
        try:
            mod = ep.load()
        except Exception as e:  # a broken plugin must not break recozoo: say which one
            raise RegistryError(f"plugin {ep.name!r} ({ep.value}) failed to load: {e}") from None
        dist = getattr(ep, "dist", None)
        pm.register(mod, name=(dist.name if dist is not None else ep.name))
    _pm = pm
    return pm


def reset() -> None:
    """Forget loaded plugins (tests and long-lived processes after an install)."""
    global _pm, _models, _datasets
    _pm = _models = _datasets = None


def add_plugin(module, name: str) -> None:
    """Register one more plugin module (e.g. a test's) and rebuild the model and dataset tables."""
    global _models, _datasets
    plugin_manager().register(module, name=name)
    _models = _datasets = None


@contextlib.contextmanager
def register_temporarily(cls: type, provider: str):
    """Make model ``cls`` known by its name while the block runs, unless a plugin already registered that name.

    Yields True when the name now resolves to ``cls`` (it was free, or a plugin
    registered this very class), False when another class holds it. What the
    conformance kit uses to load a model under test that is not packaged yet.
    """
    models = _models_map()
    added = cls.name not in models
    if added:
        models[cls.name] = ModelEntry(cls.name, provider, cls)
    try:
        yield models[cls.name].cls is cls
    finally:
        if added and _models is models:
            models.pop(cls.name, None)


def _provider_of(impl) -> str:
    return impl.plugin_name


def _collect(hook_name: str) -> list[tuple[Any, str]]:
    pm = plugin_manager()
    out: list[tuple[Any, str]] = []
    hook = getattr(pm.hook, hook_name)
    for impl in hook.get_hookimpls():
        items: list[Any] = []
        impl.function(register=items.append)
        out.extend((it, _provider_of(impl)) for it in items)
    return out


def _models_map() -> dict[str, ModelEntry]:
    global _models
    if _models is None:
        found: dict[str, ModelEntry] = {}
        for cls, provider in _collect("register_models"):
            name = getattr(cls, "name", "")
            if not name:
                raise RegistryError(f"plugin {provider!r} registered a model class without a name: {cls!r}")
            if name in found:
                raise RegistryError(f"model {name!r} is registered twice: by {found[name].provider!r} "
                                    f"and by {provider!r}")
            found[name] = ModelEntry(name, provider, cls)
        _models = found
    return _models


def list_models() -> list[ModelEntry]:
    return sorted(_models_map().values(), key=lambda e: e.name)


def get_model(name: str) -> type:
    m = _models_map()
    if name not in m:
        raise RegistryError(f"unknown model {name!r} (known: {', '.join(sorted(m))})")
    return m[name].cls


def _datasets_map() -> dict[str, tuple[Any, str]]:
    global _datasets
    if _datasets is None:
        found: dict[str, tuple[Any, str]] = {}
        for spec, provider in _collect("register_datasets"):
            if spec.name in found:
                raise RegistryError(f"dataset {spec.name!r} is registered twice: by "
                                    f"{found[spec.name][1]!r} and by {provider!r}")
            found[spec.name] = (spec, provider)
        _datasets = found
    return _datasets


def list_datasets() -> list[Any]:
    return [s for s, _ in sorted(_datasets_map().values(), key=lambda t: t[0].name)]


def has_dataset(name: str) -> bool:
    """Whether a plugin (built-ins included) registered dataset ``name``."""
    return name in _datasets_map()


def get_dataset(name: str):
    """The dataset spec a plugin registered as ``name``; :class:`DatasetNotFound` otherwise.

    Datasets registered from files (``recozoo data prepare NAME --train ...``)
    are found by :func:`recozoo.datasets.get_spec`, which looks here first.
    """
    d = _datasets_map()
    if name not in d:
        raise DatasetNotFound(f"unknown dataset {name!r} (known: {', '.join(sorted(d))})")
    return d[name][0]


def import_string(path: str):
    mod, _, attr = path.partition(":")
    return getattr(importlib.import_module(mod), attr)
