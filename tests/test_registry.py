"""The pluggy registry: built-ins register through the same hook as plugins."""

from __future__ import annotations

import types

import pytest

from recozoo import hookimpl, registry
from recozoo.errors import RegistryError
from recozoo.models.baselines import Bias


@pytest.fixture()
def fresh_registry():
    registry.reset()
    yield registry
    registry.reset()


def _plugin(name: str, *classes):
    mod = types.ModuleType(name)

    @hookimpl
    def register_models(register):
        for c in classes:
            register(c)

    mod.register_models = register_models
    return mod


def test_builtins_come_through_the_hook(fresh_registry):
    pm = fresh_registry.plugin_manager()
    assert pm.has_plugin("recozoo")
    entries = {e.name: e for e in fresh_registry.list_models()}
    assert entries["bias"].provider == "recozoo"
    assert fresh_registry.get_model("bias") is Bias


def test_duplicate_model_name_names_both_providers(fresh_registry):
    class MyBias(Bias):
        name = "bias"

    fresh_registry.add_plugin(_plugin("evil"), name="evil-plugin")
    fresh_registry.add_plugin(_plugin("dup", MyBias), name="dup-plugin")
    with pytest.raises(RegistryError) as e:
        fresh_registry.list_models()
    msg = str(e.value)
    assert "'bias'" in msg and "recozoo" in msg and "dup-plugin" in msg


def test_a_new_plugin_adds_a_model(fresh_registry):
    class Shifted(Bias):
        name = "bias-shifted"

    fresh_registry.add_plugin(_plugin("p", Shifted), name="my-plugin")
    e = {e.name: e for e in fresh_registry.list_models()}
    assert e["bias-shifted"].provider == "my-plugin" and e["bias-shifted"].cls is Shifted


def test_unknown_model_lists_known(fresh_registry):
    with pytest.raises(RegistryError, match="unknown model 'nope'.*bias"):
        fresh_registry.get_model("nope")


def test_recozoo_plugins_env_filters_third_party(fresh_registry, monkeypatch):
    monkeypatch.setenv("RECOZOO_PLUGINS", "")
    names = {e.name for e in fresh_registry.list_models()}
    providers = {e.provider for e in fresh_registry.list_models()}
    assert providers == {"recozoo"} and "bias" in names
