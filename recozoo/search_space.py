"""Search spaces: what ``recozoo tune`` may try for a model, declared beside its settings.

A space is a small declarative value (no Optuna needed to declare or read it):
ranges (:class:`Float`, :class:`Int`, either on a log scale), choices
(:class:`Categorical`), a sampled number of layers with one sampled width each
(:class:`Layers`), and parts that exist only under a choice (:class:`When`,
e.g. a momentum for ``optimizer=momentum`` only). ``fixed`` holds settings
every sampled point carries (e.g. early stopping on, so VALID picks the
training length). Why declarative: ``recozoo models MODEL`` shows it, the
conformance kit samples it, and a plugin declares its own the same way.

A point is drawn through a *suggester*: an Optuna trial (``recozoo tune``) or
:class:`RandomSuggest` over a numpy generator (tests, the conformance kit); both
answer ``suggest_float`` / ``suggest_int`` / ``suggest_categorical``.

Usage::

    space = SearchSpace(Float("lr", 1e-4, 1e-1, log=True),
                        Categorical("optimizer", ("adam", "momentum")),
                        When("optimizer", "momentum", Float("momentum", 0.8, 0.99)),
                        Layers("layers", depth=(1, 3), width=(64, 1024)),
                        fixed={"patience": 5})
    space.sample(RandomSuggest(np.random.default_rng(0)))
    # {'patience': 5, 'lr': 0.0031, 'optimizer': 'adam', 'layers': (181, 77)}
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Iterable, Mapping, Protocol

import numpy as np

from recozoo.errors import SettingsError
from recozoo.settings import parse_settings

__all__ = ["SearchSpace", "Float", "Int", "Categorical", "Layers", "When", "RandomSuggest", "Suggest",
           "first_invalid_point"]


class Suggest(Protocol):
    """What draws one value: an ``optuna.Trial`` fits, so does :class:`RandomSuggest`."""

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float: ...

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int: ...

    def suggest_categorical(self, name: str, choices: Any) -> Any: ...


class RandomSuggest:
    """Independent random draws from a numpy generator (uniform, or log-uniform with ``log``)."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float:
        if log:
            return float(math.exp(self.rng.uniform(math.log(low), math.log(high))))
        return float(self.rng.uniform(low, high))

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int:
        if log:
            return min(max(int(round(self.suggest_float(name, low, high, log=True))), low), high)
        return int(low + step * self.rng.integers(0, (high - low) // step + 1))

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        return choices[int(self.rng.integers(0, len(choices)))]


def _num(v: float) -> str:
    return f"{v:g}"


@dataclass(frozen=True)
class _Range:
    """A number setting drawn from ``[low, high]``: what :class:`Float` and :class:`Int` share (one
    way to check, sample, describe and name a range; each says only its kind, its checks and its draw)."""

    name: str
    low: float
    high: float
    log: bool = False

    kind: ClassVar[str]
    #: why a range is refused (the end of the one-line error)
    rule: ClassVar[str]

    def __post_init__(self):
        if not self.low < self.high or (self.log and self.low <= 0) or not self._valid():
            raise ValueError(f"search space {self.name!r}: need {self.rule}")

    def _valid(self) -> bool:
        return True

    def _draw(self, s: Suggest) -> float | int:
        raise NotImplementedError

    def _values(self) -> str:
        return f"{_num(self.low)} .. {_num(self.high)}"

    def sample(self, s: Suggest, out: dict[str, Any]) -> None:
        out[self.name] = self._draw(s)

    def params_for(self, point: Mapping[str, Any], out: dict[str, Any]) -> None:
        v = point.get(self.name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return
        out[self.name] = self._nearest(min(max(v, self.low), self.high))

    def _nearest(self, v: float) -> float | int:
        return float(v)

    def describe(self, when: str = "") -> list[dict[str, Any]]:
        return [{"name": self.name, "kind": self.kind, "values": self._values(), "log": self.log, "when": when}]

    def keys(self) -> set[str]:
        return {self.name}


@dataclass(frozen=True)
class Float(_Range):
    """A float setting drawn from ``[low, high]`` (log-uniform with ``log``)."""

    kind: ClassVar[str] = "float"
    rule: ClassVar[str] = "low < high (and low > 0 on a log scale)"

    def _draw(self, s: Suggest) -> float:
        return s.suggest_float(self.name, self.low, self.high, log=self.log)


@dataclass(frozen=True)
class Int(_Range):
    """An integer setting drawn from ``[low, high]`` (every ``step``; log-uniform with ``log``)."""

    low: int
    high: int
    step: int = 1

    kind: ClassVar[str] = "int"
    rule: ClassVar[str] = "low < high, low > 0 and step 1 on a log scale"

    def _valid(self) -> bool:
        return self.step >= 1 and not (self.log and self.step != 1)

    def _draw(self, s: Suggest) -> int:
        return s.suggest_int(self.name, self.low, self.high, step=self.step, log=self.log)

    def _nearest(self, v: float) -> int:
        return int(min(self.low + self.step * round((v - self.low) / self.step), self.high))

    def _values(self) -> str:
        step = f" step {self.step}" if self.step != 1 else ""
        return f"{self.low} .. {self.high}{step}"


@dataclass(frozen=True)
class Categorical:
    """A setting drawn from ``choices`` (None, bool, int, float or str each: what Optuna stores)."""

    name: str
    choices: tuple

    def __post_init__(self):
        object.__setattr__(self, "choices", tuple(self.choices))
        if not self.choices or not all(c is None or isinstance(c, (bool, int, float, str)) for c in self.choices):
            raise ValueError(f"search space {self.name!r}: choices must be a non-empty tuple of "
                             "None/bool/int/float/str (write a tuple setting as a string, e.g. '256,256')")

    def sample(self, s: Suggest, out: dict[str, Any]) -> None:
        out[self.name] = s.suggest_categorical(self.name, self.choices)

    def params_for(self, point: Mapping[str, Any], out: dict[str, Any]) -> None:
        v = point.get(self.name)
        # a tuple setting is a string choice ("256,256"); a bool must not match 0/1 choices, nor 1 True
        match = [c for c in self.choices if type(c) is type(v) and c == v] + \
            [c for c in self.choices if isinstance(c, str) and isinstance(v, tuple) and c == ",".join(map(str, v))]
        if match:
            out[self.name] = match[0]

    def describe(self, when: str = "") -> list[dict[str, Any]]:
        return [{"name": self.name, "kind": "choice", "values": " | ".join(map(str, self.choices)),
                 "log": False, "when": when}]

    def keys(self) -> set[str]:
        return {self.name}


@dataclass(frozen=True)
class Layers:
    """A tuple setting: a sampled depth, then one sampled width per layer (the conditional part).

    Drawn as ``NAME_depth`` and ``NAME_0`` .. ``NAME_{depth-1}``; the setting gets the tuple of widths.
    """

    name: str
    depth: tuple[int, int]
    width: tuple[int, int]
    log: bool = True

    def __post_init__(self):
        if not (1 <= self.depth[0] <= self.depth[1]) or not (1 <= self.width[0] < self.width[1]):
            raise ValueError(f"search space {self.name!r}: need 1 <= depth low <= high and 1 <= width low < high")

    def sample(self, s: Suggest, out: dict[str, Any]) -> None:
        lo, hi = self.depth
        depth = lo if lo == hi else s.suggest_int(f"{self.name}_depth", lo, hi)
        out[self.name] = tuple(s.suggest_int(f"{self.name}_{i}", self.width[0], self.width[1], log=self.log)
                               for i in range(depth))

    def params_for(self, point: Mapping[str, Any], out: dict[str, Any]) -> None:
        v = point.get(self.name)
        if not isinstance(v, (tuple, list)) or not self.depth[0] <= len(v) <= self.depth[1] \
                or not all(isinstance(w, int) and not isinstance(w, bool) for w in v):
            return
        if self.depth[0] != self.depth[1]:
            out[f"{self.name}_depth"] = len(v)
        for i, w in enumerate(v):
            out[f"{self.name}_{i}"] = min(max(w, self.width[0]), self.width[1])

    def describe(self, when: str = "") -> list[dict[str, Any]]:
        return [{"name": self.name, "kind": "layers",
                 "values": f"{self.depth[0]} .. {self.depth[1]} layers of {self.width[0]} .. {self.width[1]}",
                 "log": self.log, "when": when}]

    def keys(self) -> set[str]:
        return {self.name}


@dataclass(frozen=True)
class When:
    """Dimensions (and fixed values) that exist only when setting ``param`` took one of ``values``."""

    param: str
    values: Any
    dims: tuple = ()
    fixed: Mapping[str, Any] = field(default_factory=dict)

    def __init__(self, param: str, values: Any, *dims, fixed: Mapping[str, Any] | None = None):
        vals = tuple(values) if isinstance(values, (tuple, list)) else (values,)
        object.__setattr__(self, "param", param)
        object.__setattr__(self, "values", vals)
        object.__setattr__(self, "dims", tuple(dims))
        object.__setattr__(self, "fixed", MappingProxyType(dict(fixed or {})))

    def sample(self, s: Suggest, out: dict[str, Any]) -> None:
        if out.get(self.param) in self.values:
            out.update(self.fixed)
            for d in self.dims:
                d.sample(s, out)

    def params_for(self, point: Mapping[str, Any], out: dict[str, Any]) -> None:
        if point.get(self.param) in self.values:
            for d in self.dims:
                d.params_for(point, out)

    def describe(self, when: str = "") -> list[dict[str, Any]]:
        cond = f"{self.param} = {'|'.join(map(str, self.values))}"
        cond = f"{when} and {cond}" if when else cond
        rows = [r for d in self.dims for r in d.describe(cond)]
        rows += [{"name": k, "kind": "fixed", "values": str(v), "log": False, "when": cond}
                 for k, v in self.fixed.items()]
        return rows

    def keys(self) -> set[str]:
        return set(self.fixed).union(*(d.keys() for d in self.dims)) if self.dims else set(self.fixed)


class SearchSpace:
    """The dimensions a tuner samples, in order, plus ``fixed`` settings of every point."""

    def __init__(self, *dims, fixed: Mapping[str, Any] | None = None):
        self.dims = tuple(dims)
        self.fixed = MappingProxyType(dict(fixed or {}))
        names: list[str] = []
        for d in self.dims:
            if isinstance(d, When):
                names += [n for sub in d.dims for n in _optuna_names(sub)]
            else:
                names += _optuna_names(d)
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"search space: {', '.join(sorted(dup))} drawn twice (one name, one range)")

    def __bool__(self) -> bool:
        return bool(self.dims)

    def __repr__(self) -> str:
        return f"SearchSpace({', '.join(map(repr, self.dims))}, fixed={dict(self.fixed)!r})"

    def sample(self, suggest: Suggest) -> dict[str, Any]:
        """One point: setting name -> value (``fixed`` first, then the drawn dimensions)."""
        out: dict[str, Any] = dict(self.fixed)
        for d in self.dims:
            d.sample(suggest, out)
        return out

    def params_for(self, point: Mapping[str, Any]) -> dict[str, Any]:
        """The draws (Optuna parameter names -> values) that come nearest to ``point``, a dict of
        settings such as a model's defaults: each number clipped into its range (and onto its step),
        a choice or a layer stack kept only when the space can draw it, a conditional part only
        under its condition. What :meth:`sample` returns from these draws is the point as near as
        the space can express it (``fixed`` values win). ``recozoo tune`` queues them as a new
        study's first trial."""
        out: dict[str, Any] = {}
        for d in self.dims:
            d.params_for(point, out)
        return out

    def sample_random(self, rng: np.random.Generator | int) -> dict[str, Any]:
        """One point drawn with a numpy generator (or a seed)."""
        return self.sample(RandomSuggest(np.random.default_rng(rng)))

    def describe(self) -> list[dict[str, Any]]:
        """Rows for ``recozoo models MODEL``: name, kind, values, log, when (a condition or "")."""
        rows = [r for d in self.dims for r in d.describe()]
        return rows + [{"name": k, "kind": "fixed", "values": str(v), "log": False, "when": ""}
                       for k, v in self.fixed.items()]

    def setting_names(self) -> set[str]:
        """Every setting a point may set (for checking them against the model's Settings)."""
        return set(self.fixed).union(*(d.keys() for d in self.dims)) if self.dims else set(self.fixed)

    def without(self, names: Iterable[str]) -> "SearchSpace":
        """This space less the top-level dimensions and fixed values named (the user fixes them)."""
        drop = set(names)
        return SearchSpace(*(d for d in self.dims if isinstance(d, When) or d.name not in drop),
                           fixed={k: v for k, v in self.fixed.items() if k not in drop})


def first_invalid_point(space: SearchSpace, settings_cls: type, model: str, *, fixed: Mapping[str, Any] | None = None,
                        n_points: int = 25, seed: int = 0) -> tuple[dict[str, Any], str] | None:
    """``(point, error)`` of the first of ``n_points`` seeded samples (plus ``fixed``) that is not valid
    ``settings_cls``, or None when all are valid. What ``check_model`` and ``recozoo tune`` (before it
    writes anything) run: conditional parts and cross-field rules only show on concrete points."""
    rng = np.random.default_rng(seed)
    for _ in range(n_points if space else 1):
        point = {**space.sample_random(rng), **(fixed or {})}
        try:
            parse_settings(settings_cls, point, model=model)
        except SettingsError as e:
            return point, str(e)
    return None


def _optuna_names(d) -> list[str]:
    if isinstance(d, Layers):
        return [f"{d.name}_depth"] + [f"{d.name}_{i}" for i in range(d.depth[1])]
    if isinstance(d, When):
        return [n for sub in d.dims for n in _optuna_names(sub)]
    return [d.name]
