"""Hyperparameters as validated dataclasses, settable from strings.

Every model declares ``Settings``, a dataclass whose fields are declared with
:func:`setting` (default, one-line help, optional choices/range). The CLI's
``--set NAME=VALUE`` and TOML configs go through :func:`parse_settings`, so an
experiment reads the same everywhere and a typo is a one-line error, not a
silently ignored option.
"""

from __future__ import annotations

import re
import typing
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from recozoo.errors import SettingsError

__all__ = ["setting", "parse_settings", "settings_table", "settings_to_dict", "BaseSettings",
           "parse_assignments", "AUTO", "auto_fields"]

#: the value of a setting declared with ``auto=True`` that the model resolves from the training data's
#: shape when it fits (its rule is in :mod:`recozoo.defaults`; docs/defaults.md)
AUTO = "auto"


def setting(default: Any, help: str, *, choices: tuple | None = None,
            min: float | None = None, max: float | None = None,
            min_exclusive: bool = False, max_exclusive: bool = False, auto: bool = False):
    """Declare one hyperparameter: default, help text and constraints.

    ``auto=True``: the setting also takes the value ``"auto"`` (:data:`AUTO`), which the model
    replaces at fit time by its rule's value for the training data (:mod:`recozoo.defaults`).
    """
    meta = {"help": help, "choices": choices, "min": min, "max": max,
            "min_exclusive": min_exclusive, "max_exclusive": max_exclusive, "auto": auto}
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple for sequence defaults")
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class BaseSettings:
    """Base of every model's settings; ``validate`` is called after construction."""

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("auto") and isinstance(value, str) and value.strip().lower() == AUTO:
                object.__setattr__(self, f.name, AUTO)
                continue
            value = _coerce(f.name, value, hints[f.name])
            object.__setattr__(self, f.name, value)
            _check(f, value)
        self.validate()

    def validate(self) -> None:
        """Cross-field checks; raise :class:`SettingsError`."""

    def replace(self, **changes) -> "BaseSettings":
        """A copy with ``changes`` applied (validated; unknown names are a SettingsError)."""
        return parse_settings(type(self), changes, base=self)


def _coerce(name: str, value: Any, tp) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    try:
        if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
            non_none = [a for a in args if a is not type(None)]
            if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
                if type(None) in args:
                    return None
            return _coerce(name, value, non_none[0])
        if origin is typing.Literal:
            if isinstance(value, str):
                low = value.strip().lower()
                for a in args:
                    if str(a).lower() == low:
                        return a
            if value in args:
                return value
            raise SettingsError(f"setting {name!r}: {value!r} is not one of {', '.join(map(str, args))}")
        if origin is tuple:
            elem = args[0] if args else str
            if isinstance(value, str):
                # "128,256", "128, 256", "128 256", "[128, 256]", "(64,)"; spaces
                # separate items (never glued: "128 256" is not 128256)
                text = value.strip()
                if text[:1] + text[-1:] in ("[]", "()"):
                    text = text[1:-1]
                parts = [p for p in re.split(r"[\s,]+", text) if p != ""]
            elif isinstance(value, (list, tuple)):
                parts = list(value)
            else:
                parts = [value]
            try:
                return tuple(_coerce(name, p, elem) for p in parts)
            except SettingsError:
                raise SettingsError(f"setting {name!r}: cannot read {value!r} as {_type_name(tp)}") from None
        if tp is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, (int,)) and value in (0, 1):
                return bool(value)
            if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
                return True
            if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if tp is int:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float):
                if value != int(value):
                    raise ValueError
                return int(value)
            return int(str(value).strip())
        if tp is float:
            if isinstance(value, bool):
                raise ValueError
            v = float(value)
            if v != v:
                raise ValueError
            return v
        if tp is str:
            return str(value)
    except SettingsError:
        raise
    except (TypeError, ValueError, OverflowError):  # OverflowError: int(float("inf"))
        raise SettingsError(f"setting {name!r}: cannot read {value!r} as {_type_name(tp)}") from None
    return value


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return "|".join(map(str, typing.get_args(tp)))
    if origin is tuple:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if origin is typing.Union or (origin is not None and "UnionType" in str(origin)):
        return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None)) + " or none"
    return getattr(tp, "__name__", str(tp))


def _check(f, value) -> None:
    m = f.metadata
    if not m:
        return
    if m.get("choices") and value not in m["choices"]:
        raise SettingsError(f"setting {f.name!r}: {value!r} is not one of {', '.join(map(str, m['choices']))}")
    vals = value if isinstance(value, tuple) else (value,)
    for v in vals:
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v is None:
            continue
        lo, hi = m.get("min"), m.get("max")
        if lo is not None and (v < lo or (m.get("min_exclusive") and v == lo)):
            rel = ">" if m.get("min_exclusive") else ">="
            raise SettingsError(f"setting {f.name!r}: {v} must be {rel} {lo}")
        if hi is not None and (v > hi or (m.get("max_exclusive") and v == hi)):
            rel = "<" if m.get("max_exclusive") else "<="
            raise SettingsError(f"setting {f.name!r}: {v} must be {rel} {hi}")


def parse_assignments(pairs: list[str] | tuple[str, ...] | None) -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}``; a one-line error otherwise."""
    out: dict[str, str] = {}
    for p in pairs or ():
        if "=" not in p:
            raise SettingsError(f"--set expects NAME=VALUE, got {p!r}")
        k, v = p.split("=", 1)
        k = k.strip()
        if not k:
            raise SettingsError(f"--set expects NAME=VALUE, got {p!r}")
        out[k] = v.strip()
    return out


def parse_settings(cls: type, values: dict[str, Any] | None = None, *, base=None, model: str = ""):
    """Build ``cls`` from defaults (or ``base``) overridden by ``values``.

    Unknown names are an error that lists the known ones.
    """
    values = dict(values or {})
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        who = f" of {model}" if model else ""
        raise SettingsError(f"unknown setting{'s' if len(unknown) > 1 else ''}{who}: "
                            f"{', '.join(unknown)} (known: {', '.join(sorted(names))})")
    if base is not None:
        current = settings_to_dict(base)
        current.update(values)
        values = current
    return cls(**values)


def auto_fields(s) -> list[str]:
    """Names of the settings of ``s`` left at ``"auto"`` (resolved when the model fits)."""
    return [f.name for f in fields(s) if getattr(s, f.name) == AUTO and f.metadata.get("auto")]


def settings_to_dict(s) -> dict[str, Any]:
    """JSON-ready dict (tuples become lists)."""
    out = {}
    for f in fields(s):
        v = getattr(s, f.name)
        out[f.name] = list(v) if isinstance(v, tuple) else v
    return out


def settings_table(cls: type) -> list[dict[str, str]]:
    """Rows of name/type/default/help for ``--help-settings`` and ``recozoo models NAME``."""
    hints = typing.get_type_hints(cls)
    rows = []
    for f in fields(cls):
        d = f.default if f.default is not MISSING else None
        if isinstance(d, tuple):
            d = ",".join(map(str, d))
        kind = _type_name(hints[f.name]) + (" or auto" if f.metadata.get("auto") else "")
        rows.append({"name": f.name, "type": kind, "default": str(d),
                     "help": f.metadata.get("help", "")})
    return rows
