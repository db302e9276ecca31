"""A fitted run addressed by raw ids, scored in batches: the library under ``recozoo serve``.

:class:`Recommender` loads a run directory (model + raw id maps) once and
answers *queries*: top-k for a known user, for a new user's ratings, or for a
user with live events (their training history and events folded in, see
:mod:`recozoo.serve.store`). :meth:`Recommender.answer` scores many queries in
one pass — one ``score_items`` call for the known users, one
``score_new_users`` call for the fold-ins — and picks every top-k at once
(:func:`recozoo.topk.top_k_rows`), which is what the server's
micro-batcher calls.

Batch-invariance: a query's answer must not depend on which other queries
share its batch. Rows of a BLAS matrix product are not always reproducible
whatever the other rows: measured on this project's CPU builds, numpy's
OpenBLAS rounds a row differently by its position in the kernel's tiles (rows
6-11 of every 12 differ from rows 0-5 on an AMD EPYC host), by the product's
row count (8 vs 16) and by the thread split (2 threads, 32 rows or more);
torch's CPU products with 8 or more rows gave identical rows for every row
count, position and thread count tried, 1-7 rows did not. So a model that
declares ``batch_invariant`` (the torch autoencoders) scores the whole batch
in one call padded to a multiple of :data:`ROW_ALIGN` rows (the padding
discarded), and any other model (numpy products, cheap per user) one user per
call. Either way every query's row goes through the same arithmetic whoever
shares its batch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from recozoo.errors import RecozooError

__all__ = ["Recommender", "Query", "UnknownId", "ClientError", "parse_raw_id", "ROW_ALIGN",
           "MAX_ID_CHARS", "MAX_K"]

#: a batch-invariant model is called on a multiple of this many rows (see the module docstring)
ROW_ALIGN = 8
#: longest raw id accepted (characters), and the most digits of an integer id (int64 range)
MAX_ID_CHARS = 256
MAX_INT_DIGITS = 18
MAX_K = 10_000


class ClientError(RecozooError):
    """A malformed request (HTTP 400)."""

    status = 400


class UnknownId(RecozooError):
    """A raw user or item id the run has never seen (HTTP 404)."""

    status = 404


def parse_raw_id(value: Any, integer_ids: bool, what: str):
    """A raw id from a query string or a JSON value, in the run's id type.

    Integer-id runs accept an int or a string of at most 18 digits (optionally
    signed); anything else cannot be an id of the run, so it is unknown (404),
    not a crash: ``?user=99999999999999999999999`` is simply no such user.
    """
    if isinstance(value, bool) or value is None or isinstance(value, (dict, list, float)):
        raise ClientError(f"{what} must be an id (a string or an integer), got {type(value).__name__}")
    if integer_ids:
        if isinstance(value, int):
            if abs(value) >= 10 ** MAX_INT_DIGITS:
                raise UnknownId(f"unknown {what} {str(value)[:24]}... (longer than any id of this run)")
            return int(value)
        text = str(value).strip()
        digits = text[1:] if text[:1] in "+-" else text
        if not digits.isdigit() or not digits.isascii():
            raise UnknownId(f"unknown {what} {text[:40]!r} (ids are integers in this run)")
        if len(digits) > MAX_INT_DIGITS:
            raise UnknownId(f"unknown {what} {text[:24]}... (longer than any id of this run)")
        return int(text)
    text = str(value)
    if len(text) > MAX_ID_CHARS:
        raise ClientError(f"{what} id longer than {MAX_ID_CHARS} characters")
    return text


@dataclass
class Query:
    """One request to answer: ``user`` is the run's index (-1: not a training user).

    ``fold`` (item indices, values) set: score by folding these ratings in
    (history + live events, or a new user's ratings); ``exclude``: items never
    to recommend beyond the training items of a known user (rated or live-event
    items); ``fallback``: score with the model's unknown-user fallback (a model
    that cannot fold in, for a user it does not know).
    """

    user: int
    k: int
    fold: tuple[np.ndarray, np.ndarray] | None = None
    exclude: np.ndarray | None = None
    fallback: bool = False


class Recommender:
    """A fitted run addressed by raw ids. ``events``: an optional :class:`~recozoo.serve.store.EventLog`."""

    def __init__(self, run_dir: str | Path, events=None):
        from recozoo.runs import load_ids, load_run
        self.run_dir = Path(run_dir)
        self.config, self.model = load_run(self.run_dir)
        self.user_ids, self.item_ids = load_ids(self.run_dir)
        if len(self.user_ids) != self.model.n_users_ or len(self.item_ids) != self.model.n_items_:
            raise RecozooError(f"{run_dir}: id maps do not match the model's shape")
        self.events = events
        self.int_users = self.user_ids.raw.dtype.kind in "iu"
        self.int_items = self.item_ids.raw.dtype.kind in "iu"
        self.folds_in = self.model.can_fold_in()
        n = self.model.n_items_
        # the JSON text of {"item": RAW, "score": ...} up to the score, once per item
        self._item_json = [b'{"item":' + json.dumps(r).encode() + b',"score":' for r in self.item_ids.to_list()]
        self._fallback = self.model.predict(np.full(n, -1, dtype=np.int64), np.arange(n, dtype=np.int64))
        self._plain_values = not self.model.predicts_ratings

    def read_run_events(self) -> None:
        """Fold in the events logged in the run's own database (``RUN_DIR/interactions.sqlite3``, what
        ``recozoo serve`` stored), as the server does — except those the run already learned by a warm
        start. Nothing happens when the run has no database."""
        from recozoo.serve.store import EVENTS_FILE, EventLog, InteractionStore, learned_through
        db = self.run_dir / EVENTS_FILE
        if db.is_file():
            self.events = EventLog(InteractionStore(db), through=learned_through(self.config, db))

    # ------------------------------------------------------------------ ids
    def user_index(self, raw) -> int:
        return int(self.user_ids.lookup(np.asarray([raw]))[0])

    def item_indices(self, raws: list) -> np.ndarray:
        idx = self.item_ids.lookup(np.asarray(raws, dtype=np.int64 if self.int_items else None)) if raws \
            else np.zeros(0, dtype=np.int64)
        if (idx < 0).any():
            bad = [r for r, i in zip(raws, idx) if i < 0][:3]
            raise UnknownId(f"unknown item(s) {', '.join(map(repr, bad))}")
        return idx

    def parse_user(self, value) -> object:
        return parse_raw_id(value, self.int_users, "user")

    def parse_item(self, value) -> object:
        return parse_raw_id(value, self.int_items, "item")

    # -------------------------------------------------------------- queries
    def query_user(self, raw_user, k: int) -> Query:
        """The query for a user by raw id: known, with live events, or unknown (404)."""
        u = self.user_index(raw_user)
        ev = self.events.events_for(raw_user) if self.events is not None else None
        if ev is None:
            if u < 0:
                raise UnknownId(f"unknown user {raw_user!r}")
            return Query(u, k)
        items = self.item_ids.lookup(np.asarray(list(ev), dtype=np.int64 if self.int_items else None))
        vals = np.array([np.nan if v is None else v for v in ev.values()], dtype=np.float64)
        ok = items >= 0          # (events of items outside this run: a run swapped in later)
        items, vals = items[ok], vals[ok]
        if not self.folds_in:
            return Query(u, k, exclude=items, fallback=u < 0)
        if self._plain_values:   # ranking models: an implicit event is an interaction of value 1
            vals = np.where(np.isnan(vals), 1.0, vals)
        rated = ~np.isnan(vals)
        fold: dict[int, float] = {}
        if u >= 0:
            h = self.model.history([u])
            fold.update(zip(h.indices.tolist(), h.data.tolist()))
        fold.update(zip(items[rated].tolist(), vals[rated].tolist()))
        fi = np.fromiter(fold, dtype=np.int64, count=len(fold))
        fv = np.fromiter(fold.values(), dtype=np.float32, count=len(fold))
        return Query(u, k, fold=(fi, fv), exclude=items)

    def query_ratings(self, ratings: Any, k: int) -> Query:
        """The query for a new user's ``{item: rating}`` (the POST /recommend body's ratings)."""
        if not isinstance(ratings, dict) or not ratings:
            raise ClientError("'ratings' must be a non-empty object {item: rating}")
        if len(ratings) > 100_000:
            raise ClientError("'ratings' holds more than 100000 items")
        values = []
        for v in ratings.values():
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ClientError("every rating must be a number")
            if isinstance(v, int) and abs(v) > 10 ** 9:
                raise ClientError("a rating is out of range (|rating| > 1e9)")
            values.append(float(v))
        vals = np.asarray(values, dtype=np.float64)
        if not np.all(np.isfinite(vals)) or np.any(np.abs(vals) > 1e9):
            raise ClientError("every rating must be a finite number (|rating| <= 1e9)")
        items = self.item_indices([self.parse_item(r) for r in ratings])
        if not self.folds_in:
            raise ClientError(f"{self.model.name} cannot score a new user's ratings without refitting "
                              f"({self.model.fold_in_method})")
        return Query(-1, k, fold=(items, vals.astype(np.float32)), exclude=items)

    # -------------------------------------------------------------- scoring
    def scores(self, queries: list[Query]) -> np.ndarray:
        """Scores (len(queries) x n_items) with every query's exclusions set to -inf."""
        n = self.model.n_items_
        out = np.empty((len(queries), n), dtype=np.float32)
        plain = [j for j, q in enumerate(queries) if q.fold is None and not q.fallback]
        folded = [j for j, q in enumerate(queries) if q.fold is not None]
        for j, q in enumerate(queries):
            if q.fallback:
                out[j] = self._fallback
        if plain:
            users = np.array([queries[j].user for j in plain], dtype=np.int64)
            out[plain] = self._batched(users, lambda u: self.model.score_items(
                _pad(u, u[0], self._rows_for(u.size))))
            rows, cols = _seen_cells(self.model.seen_items(), users)
            out[np.asarray(plain)[rows], cols] = -np.inf
        if folded:
            out[folded] = self._batched(np.asarray(folded), lambda js: self._fold_block(
                [queries[j].fold for j in js]))
            known = [(j, queries[j].user) for j in folded if queries[j].user >= 0]
            if known:
                rows, cols = _seen_cells(self.model.seen_items(), np.array([u for _, u in known]))
                out[np.array([j for j, _ in known])[rows], cols] = -np.inf
        for j, q in enumerate(queries):
            if q.exclude is not None and q.exclude.size:
                out[j, q.exclude] = -np.inf
        return out

    def _batched(self, keys: np.ndarray, score) -> np.ndarray:
        """``score(block)`` for the whole batch at once (a batch-invariant model; the call pads to a
        multiple of :data:`ROW_ALIGN` rows), else for one key at a time."""
        if self.model.batch_invariant:
            return score(keys)[:keys.size]
        out = np.empty((keys.size, self.model.n_items_), dtype=np.float32)
        for s in range(keys.size):
            out[s] = score(keys[s:s + 1])[0]
        return out

    def _rows_for(self, n: int) -> int:
        """Rows a model call for ``n`` queries is made with: a multiple of :data:`ROW_ALIGN` for a
        batch-invariant model, else ``n`` (always 1)."""
        return n + (-n % ROW_ALIGN) if self.model.batch_invariant else n


    def _fold_block(self, rows: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """Fold-in scores of (items, values) rows, padded with empty rows to :func:`_rows_for`."""
        n, size = self.model.n_items_, self._rows_for(len(rows))
        lengths = np.array([r[0].size for r in rows] + [0] * (size - len(rows)), dtype=np.int64)
        indptr = np.zeros(size + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        csr = sp.csr_matrix((np.concatenate([r[1] for r in rows]), np.concatenate([r[0] for r in rows]),
                             indptr), shape=(size, n))
        csr.sort_indices()
        return self.model.score_new_users(csr)

    def answer(self, queries: list[Query]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Top-k (items, scores) per query, scored together; excluded items never appear."""
        from recozoo.topk import top_k_rows
        if not queries:
            return []
        s = self.scores(queries)
        items, scores = top_k_rows(s, max(q.k for q in queries))
        out = []
        for j, q in enumerate(queries):
            it, sc = items[j, :q.k], scores[j, :q.k]
            keep = sc > -np.inf
            out.append((it[keep], sc[keep]))
        return out

    def warm_up(self) -> None:
        """Score one batch of known users (and one fold-in) before serving: first calls pay for lazy
        initialisation (torch kernels, caches), which should not land on a client's request."""
        users = np.flatnonzero(np.diff(self.model.seen_items().indptr) > 0)[:ROW_ALIGN]
        queries = [Query(int(u), 10) for u in users]
        if self.folds_in and users.size:
            h = self.model.history(users[:1])
            queries.append(Query(-1, 10, fold=(h.indices.astype(np.int64), h.data.astype(np.float32))))
        if queries:
            self.answer(queries)

    # ------------------------------------------------------------- answers
    def rows_json(self, items: np.ndarray, scores: np.ndarray) -> bytes:
        """``[{"item": RAW, "score": S}, ...]`` as JSON bytes (precomputed item fragments)."""
        frag = self._item_json
        return b"[" + b",".join([frag[i] + repr(float(s)).encode() + b"}"
                                 for i, s in zip(items.tolist(), scores.tolist())]) + b"]"

    def rows(self, items: np.ndarray, scores: np.ndarray) -> list[dict[str, Any]]:
        raw = self.item_ids.raw
        return [{"item": raw[i].item(), "score": float(s)} for i, s in zip(items.tolist(), scores.tolist())]

    def recommend_user(self, raw_user, k: int = 10) -> list[dict[str, Any]]:
        """Top-k for a user by raw id (training items and live-event items excluded)."""
        items, scores = self.answer([self.query_user(raw_user, _check_k(k))])[0]
        return self.rows(items, scores)

    def recommend_ratings(self, ratings: dict, k: int = 10) -> list[dict[str, Any]]:
        """Top-k for a new user's ``{item: rating}`` (rated items excluded)."""
        items, scores = self.answer([self.query_ratings(ratings, _check_k(k))])[0]
        return self.rows(items, scores)

    def predict(self, raw_user, raw_item) -> float:
        """One predicted rating (score); a user with live events is folded in first."""
        i = int(self.item_indices([raw_item])[0])
        q = self.query_user(raw_user, 1)
        if q.fold is None and not q.fallback:
            return float(self.model.predict([q.user], [i])[0])
        if q.fallback:
            return float(self._fallback[i])
        return float(self._fold_block([q.fold])[0, i])         # the arithmetic /recommend uses

    def health(self) -> dict[str, Any]:
        return {"status": "ok", "model": self.model.name, "dataset": self.config.get("dataset"),
                "users": len(self.user_ids), "items": len(self.item_ids)}

    def info(self) -> dict[str, Any]:
        """Metadata for GET /model: the model, its settings, data sizes and what it can do."""
        m = self.model
        return {"run_dir": str(self.run_dir), "model": m.name, "dataset": self.config.get("dataset"),
                "settings": self.config.get("settings"), "seed": self.config.get("seed"),
                "users": len(self.user_ids), "items": len(self.item_ids),
                "training_ratings": int(m.seen_items().nnz),
                "predicts_ratings": m.predicts_ratings, "folds_in": self.folds_in,
                "fold_in_method": m.fold_in_method, "fallback": m.fallback,
                "n_parameters": m.n_parameters(), "started": self.config.get("started"),
                "warm_start": self.config.get("warm_start")}


def _seen_cells(seen: sp.csr_matrix, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row in ``users``, item) of every training item of ``users``, straight from the CSR arrays
    (scipy's fancy row indexing cost ~3 ms per batch under load, more than the network)."""
    starts = seen.indptr[users]
    lens = seen.indptr[users + 1] - starts
    rows = np.repeat(np.arange(users.size), lens)
    pos = np.arange(rows.size) - np.repeat(np.cumsum(lens) - lens, lens) + np.repeat(starts, lens)
    return rows, seen.indices[pos]


def _pad(a: np.ndarray, fill, size: int) -> np.ndarray:
    """``a`` padded with ``fill`` to ``size`` entries."""
    pad = size - a.size
    return a if pad == 0 else np.concatenate([a, np.full(pad, fill, dtype=a.dtype)])


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ClientError(f"k must be an integer, got {k!r}")
    if not 1 <= int(k) <= MAX_K:
        raise ClientError(f"k must be between 1 and {MAX_K}")
    return int(k)
