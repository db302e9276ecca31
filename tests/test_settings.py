"""Hyperparameter dataclasses (recozoo.settings): strings in, typed values out.

Why: ``--set NAME=VALUE`` is how every experiment is configured; a value read
wrongly (``"128 256"`` as 128256) or a typo silently ignored wastes a run, so
every type parses from strings and every mistake is one clear line.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recozoo.errors import SettingsError
from recozoo.settings import (BaseSettings, parse_assignments, parse_settings, setting, settings_table,
                              settings_to_dict)

FAST = settings(max_examples=60, deadline=None)


@dataclasses.dataclass(frozen=True)
class Demo(BaseSettings):
    epochs: int = setting(10, "passes over the data", min=1, max=1000)
    lr: float = setting(0.01, "learning rate", min=0.0, min_exclusive=True)
    dropout: float = setting(0.0, "code-layer dropout", min=0.0, max=1.0, max_exclusive=True)
    shuffle: bool = setting(True, "shuffle users each epoch")
    name: str = setting("run", "a label")
    activation: Literal["selu", "relu", "sigmoid"] = setting("selu", "activation")
    layers: tuple[int, ...] = setting((128, 256), "hidden sizes", min=1)
    batch: Optional[int] = setting(None, "batch size (none = all)", min=1)
    decay: Optional[float] = setting(None, "weight decay")
    optimiser: str = setting("momentum", "optimiser", choices=("momentum", "adam", "sgd"))


@dataclasses.dataclass(frozen=True)
class Checked(BaseSettings):
    lo: int = setting(1, "lower")
    hi: int = setting(2, "upper")

    def validate(self) -> None:
        if self.lo >= self.hi:
            raise SettingsError(f"lo ({self.lo}) must be below hi ({self.hi})")


def _one_line_error(values: dict, cls=Demo) -> str:
    with pytest.raises(SettingsError) as e:
        parse_settings(cls, values)
    msg = str(e.value)
    assert "\n" not in msg and msg.strip() == msg
    return msg


# ---------------------------------------------------------------- parsing


def test_defaults_and_frozen():
    s = parse_settings(Demo)
    assert s == Demo() and s.layers == (128, 256) and s.batch is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.epochs = 3


@FAST
@given(st.integers(1, 1000), st.sampled_from(["{}", " {} ", "+{}"]))
def test_int_from_string(n, fmt):
    assert parse_settings(Demo, {"epochs": fmt.format(n)}).epochs == n
    assert isinstance(parse_settings(Demo, {"epochs": fmt.format(n)}).epochs, int)


@FAST
@given(st.floats(min_value=1e-12, max_value=1e12, allow_nan=False, allow_infinity=False))
def test_float_from_string(x):
    for text in (repr(x), f"{x:e}"):
        assert parse_settings(Demo, {"lr": text}).lr == float(text)


@pytest.mark.parametrize("text,value", [("true", True), ("True", True), ("1", True), ("yes", True),
                                        ("on", True), ("false", False), ("FALSE", False), ("0", False),
                                        ("no", False), ("off", False)])
def test_bool_from_string(text, value):
    assert parse_settings(Demo, {"shuffle": text}).shuffle is value


@FAST
@given(st.lists(st.integers(1, 4096), max_size=6), st.sampled_from([",", ", ", " ", ",,"]))
def test_tuple_from_string(sizes, sep):
    s = parse_settings(Demo, {"layers": sep.join(map(str, sizes))})
    assert s.layers == tuple(sizes)
    assert parse_settings(Demo, {"layers": sizes}).layers == tuple(sizes)  # TOML gives a list


def test_tuple_with_brackets_and_single_value():
    assert parse_settings(Demo, {"layers": "[512, 512, 1024]"}).layers == (512, 512, 1024)
    assert parse_settings(Demo, {"layers": "(64,)"}).layers == (64,)
    assert parse_settings(Demo, {"layers": "64"}).layers == (64,)
    assert parse_settings(Demo, {"layers": 64}).layers == (64,)


def test_literal_optional_and_str():
    assert parse_settings(Demo, {"activation": "ReLU"}).activation == "relu"
    assert parse_settings(Demo, {"batch": "128"}).batch == 128
    for none in ("none", "None", "null", ""):
        assert parse_settings(Demo, {"batch": none}).batch is None
    assert parse_settings(Demo, {"decay": "1e-4"}).decay == pytest.approx(1e-4)
    assert parse_settings(Demo, {"name": "a b=c"}).name == "a b=c"
    assert parse_settings(Demo, {"optimiser": "adam"}).optimiser == "adam"


def test_base_is_kept_and_overridden():
    base = parse_settings(Demo, {"epochs": "5", "layers": "1,2,3"})
    s = parse_settings(Demo, {"lr": "0.5"}, base=base)
    assert (s.epochs, s.layers, s.lr) == (5, (1, 2, 3), 0.5)
    assert base.replace(epochs=7).epochs == 7 and base.replace(epochs=7).layers == (1, 2, 3)
    with pytest.raises(SettingsError, match="epochs"):
        base.replace(epochs=0)
    with pytest.raises(SettingsError, match="unknown"):
        base.replace(epoch=3)


# ----------------------------------------------------------------- errors


def test_unknown_name_lists_the_known_ones():
    msg = _one_line_error({"epoch": "3"})
    assert "epoch" in msg
    for f in dataclasses.fields(Demo):
        assert f.name in msg
    msg = _one_line_error({"a": 1, "b": 2})
    assert "unknown settings" in msg and "a, b" in msg
    with pytest.raises(SettingsError, match="of deeprec"):
        parse_settings(Demo, {"x": 1}, model="deeprec")


@pytest.mark.parametrize("values,fragment", [
    ({"epochs": "0"}, ">= 1"), ({"epochs": "1001"}, "<= 1000"), ({"lr": "0"}, "> 0"),
    ({"lr": "-1e-3"}, "> 0"), ({"dropout": "1.0"}, "< 1"), ({"dropout": "-0.1"}, ">= 0"),
    ({"layers": "128,0"}, ">= 1"), ({"batch": "0"}, ">= 1"),
    ({"activation": "tanh"}, "selu, relu, sigmoid"), ({"optimiser": "rmsprop"}, "momentum, adam, sgd"),
    ({"epochs": "ten"}, "as int"), ({"epochs": "2.5"}, "as int"), ({"epochs": "1e3"}, "as int"),
    ({"epochs": "inf"}, "as int"), ({"epochs": float("inf")}, "as int"), ({"epochs": True}, "as int"),
    ({"lr": "fast"}, "as float"), ({"lr": "nan"}, "as float"), ({"shuffle": "maybe"}, "as bool"),
    ({"shuffle": 2}, "as bool"), ({"layers": "128 x"}, "list of int"), ({"batch": "some"}, "int"),
])
def test_bad_values_are_one_line_errors_naming_the_setting(values, fragment):
    msg = _one_line_error(values)
    assert repr(next(iter(values))) in msg
    assert fragment in msg


@FAST
@given(st.integers(-10**6, 10**6))
def test_range_is_enforced_for_every_int(n):
    if 1 <= n <= 1000:
        assert parse_settings(Demo, {"epochs": str(n)}).epochs == n
    else:
        _one_line_error({"epochs": str(n)})


def test_cross_field_validate():
    assert parse_settings(Checked, {"lo": "1", "hi": "5"}).hi == 5
    msg = _one_line_error({"lo": "3", "hi": "2"}, cls=Checked)
    assert "below" in msg


def test_mutable_default_is_refused():
    with pytest.raises(TypeError):
        setting([1, 2], "a list")


# ---------------------------------------------------------- assignments etc.


def test_parse_assignments():
    assert parse_assignments(["a=1", " b = x=y ", "layers=1,2"]) == {"a": "1", "b": "x=y", "layers": "1,2"}
    assert parse_assignments(None) == {}
    for bad in ("noequals", "=3"):
        with pytest.raises(SettingsError, match="NAME=VALUE"):
            parse_assignments([bad])


def test_dict_and_table():
    s = parse_settings(Demo, {"layers": "1,2"})
    d = settings_to_dict(s)
    assert d["layers"] == [1, 2] and d["batch"] is None
    assert parse_settings(Demo, d) == s  # the JSON form reads back
    rows = {r["name"]: r for r in settings_table(Demo)}
    assert rows["layers"]["default"] == "128,256" and rows["layers"]["type"] == "list of int"
    assert rows["activation"]["type"] == "selu|relu|sigmoid"
    assert rows["batch"]["type"] == "int or none"
    assert rows["lr"]["help"] == "learning rate"
    assert math.isclose(float(rows["lr"]["default"]), 0.01)
