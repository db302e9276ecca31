"""Named splitting protocols: how one ratings table becomes a :class:`~recozoo.splits.Split`.

``recozoo data prepare NAME --source FILE --protocol P --data-param K=V`` and
the built-in implicit datasets (``ml-100k-implicit`` …) go through
:func:`apply_protocol`. Each protocol declares its parameters (defaults,
meaning, parser), so a bad value or an unknown name is a one-line error and
the stored parameters are canonical (what the split cache keys on).

=============  ==========================================================  ======
protocol       rule                                                        time?
=============  ==========================================================  ======
random         per rating: TEST ``test_fraction`` of all, VALID             no
               ``valid_fraction`` of the rest (seeded)
user-random    per user: a seeded random ``⌊test_fraction·n⌋`` to TEST,    no
               ``⌊valid_fraction·rest⌋`` of the rest to VALID
time           the Netflix rules with dataset-relative windows: TRAIN =     yes
               the earliest ``train_fraction`` of ratings, then rules 2-5
               (VALID/TEST a seeded coin over the kept later ratings)
user-time      per user: the latest ``⌊test_fraction·n⌋`` to TEST, the     yes
               latest ``⌊valid_fraction·rest⌋`` of the rest to VALID
leave-last-k   per user: the last ``k`` to TEST, the ``valid_k`` before     yes
               them to VALID
strong         strong generalisation (PROTOCOLS.md rules 1-5): held-out    no
               users with a fold-in part
=============  ==========================================================  ======

Every protocol takes ``threshold``: with a number, the data is binarised
first (an interaction = a rating strictly above it, value 1), so
``user-random`` with a threshold is weak generalisation and ``leave-last-k``
with one is the temporal leave-last-k-out of implicit data.

Seeds: every protocol gets the split seed (``--split-seed``, default 0).
``strong`` draws with ``98765 + seed`` (the authors' seed at the default,
so ``--split-seed 0`` reproduces their split); the others draw with ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from recozoo.data.table import RatingsTable
from recozoo.errors import DataError, SettingsError
from recozoo.splits import Split, random_split, time_fraction_split

__all__ = ["Protocol", "ProtocolParam", "PROTOCOLS", "get_protocol", "protocol_params",
           "apply_protocol", "parse_count"]


@dataclass(frozen=True)
class ProtocolParam:
    """One ``--data-param`` of a protocol: its default, what it means, how it is read."""

    name: str
    default: Any
    meaning: str
    parse: Callable[[str, Any], Any]


@dataclass(frozen=True)
class Protocol:
    name: str
    summary: str
    params: tuple[ProtocolParam, ...]
    needs_time: bool
    split: Callable[[RatingsTable, str, int, dict], Split]


# ---------------------------------------------------------------- parsers
def _number(name: str, v: Any, kind=float):
    try:
        out = kind(float(v)) if kind is int else float(v)
        if kind is int and float(v) != out:
            raise ValueError
    except (TypeError, ValueError):
        raise SettingsError(f"--data-param {name}: want {'an integer' if kind is int else 'a number'}, "
                            f"got {v!r}") from None
    return out


def _fraction(zero_ok: bool):
    def parse(name: str, v: Any) -> float:
        x = _number(name, v)
        if not (0 <= x < 1) or (x == 0 and not zero_ok):
            raise SettingsError(f"--data-param {name}: want {'0 <=' if zero_ok else '0 <'} {name} < 1, "
                                f"got {v!r}")
        return x
    return parse


def _open_fraction(name: str, v: Any) -> float:
    x = _number(name, v)
    if not 0 < x < 1:
        raise SettingsError(f"--data-param {name}: want 0 < {name} < 1, got {v!r}")
    return x


def parse_count(name: str, v: Any, minimum: int = 0) -> int:
    """An integer ``--data-param`` of at least ``minimum``; a one-line error otherwise."""
    x = _number(name, v, int)
    if x < minimum:
        raise SettingsError(f"--data-param {name}: want an integer >= {minimum}, got {v!r}")
    return x


def _count(minimum: int):
    return lambda name, v: parse_count(name, v, minimum)


def _threshold(name: str, v: Any) -> float | None:
    if v is None or (isinstance(v, str) and v.strip().lower() in ("", "none")):
        return None
    x = _number(name, v)
    if x != x or x in (float("inf"), float("-inf")):
        raise SettingsError(f"--data-param {name}: want a finite number or none, got {v!r}")
    return x


def _heldout(name: str, v: Any) -> int | str:
    if v is None or (isinstance(v, str) and v.strip().lower() == "auto"):
        return "auto"
    return _count(1)(name, v)


THRESHOLD = ProtocolParam("threshold", None, "binarise first: an interaction is a rating strictly "
                          "above this (none: keep ratings as they are)", _threshold)


def _p(name, default, meaning, parse) -> ProtocolParam:
    return ProtocolParam(name, default, meaning, parse)


# ------------------------------------------------------------- protocols
def _random(table, name, seed, p) -> Split:
    tf, vf = p["test_fraction"], p["valid_fraction"]
    # VALID is valid_fraction of what TEST leaves: r in [tf, tf + (1 - tf) * vf)
    s = random_split(table, name, tf, (1 - tf) * vf, seed=seed)
    s.info.update({"valid_fraction": vf, "valid_of": "the ratings TEST leaves"})
    return s


def _user_random(table, name, seed, p) -> Split:
    from recozoo.user_splits import user_random_split
    return user_random_split(table, name, p["test_fraction"], p["valid_fraction"], seed=seed)


def _time(table, name, seed, p) -> Split:
    return time_fraction_split(table, name, p["train_fraction"], seed=seed)


def _user_time(table, name, seed, p) -> Split:
    from recozoo.user_splits import user_time_split
    return user_time_split(table, name, p["test_fraction"], p["valid_fraction"], seed=seed)


def _leave_last_k(table, name, seed, p) -> Split:
    from recozoo.user_splits import leave_last_k_split
    return leave_last_k_split(table, name, p["k"], p["valid_k"], seed=seed)


def _strong(table, name, seed, p) -> Split:
    from recozoo.strong_generalization import AUTHORS_SEED, strong_generalization_split
    n = None if p["heldout_users"] == "auto" else p["heldout_users"]
    s = strong_generalization_split(table, name, n, threshold=p["threshold"],
                                    min_interactions=p["min_interactions"],
                                    scored_fraction=p["scored_fraction"], seed=AUTHORS_SEED + seed)
    s.info["split_seed"] = seed
    return s


_TF = "share of each user's ratings (of all ratings, for random) that goes to TEST"
_VF = "share of what TEST leaves that goes to VALID (0: no VALID)"

PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (
    Protocol("random", "per rating: seeded random TEST, then VALID from the rest",
             (_p("test_fraction", 0.1, "share of all ratings that goes to TEST", _fraction(False)),
              _p("valid_fraction", 0.1, _VF, _fraction(True)), THRESHOLD), False, _random),
    Protocol("user-random", "per user: seeded random holdout (weak generalisation on implicit data)",
             (_p("test_fraction", 0.2, "share of each user's ratings that goes to TEST (floor)",
                 _fraction(False)),
              _p("valid_fraction", 0.1, _VF + " (floor, per user)", _fraction(True)), THRESHOLD),
             False, _user_random),
    Protocol("time", "global time split, Netflix rules with dataset-relative windows",
             (_p("train_fraction", 0.8, "the earliest share of ratings that is TRAIN", _open_fraction),
              THRESHOLD), True, _time),
    Protocol("user-time", "per user: the latest ratings are TEST, the latest of the rest VALID",
             (_p("test_fraction", 0.2, "share of each user's latest ratings that goes to TEST (floor)",
                 _fraction(False)),
              _p("valid_fraction", 0.1, _VF + " (the latest; floor, per user)", _fraction(True)),
              THRESHOLD), True, _user_time),
    Protocol("leave-last-k", "per user: the last k ratings are TEST, the valid_k before them VALID",
             (_p("k", 1, "ratings per user that go to TEST (users with k or fewer keep all)", _count(1)),
              _p("valid_k", 1, "ratings per user before the TEST ones that go to VALID", _count(0)),
              THRESHOLD), True, _leave_last_k),
    Protocol("strong", "strong generalisation: held-out users scored through a fold-in part",
             (_p("heldout_users", "auto", "N users each for VALID and TEST (auto: the scaled rule)",
                 _heldout),
              _p("min_interactions", 5, "users with fewer are dropped (rule 2); held-out users with "
                 "fewer are fold-in only (rule 5)", _count(1)),
              _p("scored_fraction", 0.2, "share of a held-out user's interactions that is scored "
                 "(floor); the rest is its fold-in part", _open_fraction),
              THRESHOLD), False, _strong),
)}


def get_protocol(name: str) -> Protocol:
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise SettingsError(f"unknown protocol {name!r} (known: {', '.join(PROTOCOLS)})") from None


def protocol_params(protocol: str, given: dict | None = None) -> dict[str, Any]:
    """Defaults overridden by ``given``, each value parsed; unknown names are an error."""
    proto = get_protocol(protocol)
    known = {p.name: p for p in proto.params}
    given = dict(given or {})
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise SettingsError(f"protocol {protocol} has no parameter {', '.join(unknown)} "
                            f"(known: {', '.join(known)})")
    return {n: p.parse(n, given.get(n, p.default)) for n, p in known.items()}


def apply_protocol(table: RatingsTable, name: str, protocol: str, seed: int = 0,
                   params: dict | None = None, *, source: str | None = None) -> Split:
    """Split ``table`` by ``protocol`` (binarised first when ``threshold`` is set).

    A protocol that orders by time refuses data without timestamps, naming
    ``source``. ``info["implicit"]`` says whether the split is implicit
    feedback (binarised, ``strong``, or every value 1 as in interaction-only
    files): ranking metrics are its measure, not RMSE.
    """
    proto = get_protocol(protocol)
    p = protocol_params(protocol, params)
    if proto.needs_time and not table.has_timestamps:
        raise DataError(f"protocol {protocol} orders ratings by time, and this data has no "
                        "timestamps (map one with --columns ...,timestamp=COLUMN, or pick "
                        "random, user-random or strong)", path=source or name)
    if p["threshold"] is not None and protocol != "strong":
        from recozoo.strong_generalization import binarize
        table = binarize(table, p["threshold"], name=name)
    # implicit: binarised, held-out users' interactions, or interaction-only data (every value 1)
    implicit = p["threshold"] is not None or protocol == "strong" or bool(
        table.nnz and np.all(np.asarray(table.ratings) == 1))
    split = proto.split(table, name, seed, p)
    split.info.update({"protocol": protocol, "params": p, "implicit": implicit})
    if source is not None:
        split.info["source"] = str(source)
    return split
