"""Online use of a trained run: top-N for a known user or for a new user's ratings.

:class:`Recommender` wraps a run directory (model + raw id maps) and speaks raw
ids, so callers never see internal indices. :func:`make_server` serves it over
HTTP with the standard library (a threaded server; the model is read-only, so
requests need no lock). JSON API::

    GET  /health                         {"status": "ok", "model": ..., "users": n, "items": n}
    GET  /recommend?user=ID&k=10         top-k for a known user (their training items excluded)
    POST /recommend {"ratings": {"ITEM": 4.5, ...}, "k": 10}
                                         top-k for a new user from their ratings
    GET  /predict?user=ID&item=ID        one predicted rating

Errors are JSON ``{"error": "one line"}`` with status 400 (bad request) or 404
(unknown user/item).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np

from recozoo.errors import RecozooError

__all__ = ["Recommender", "make_server", "UnknownId"]


class UnknownId(RecozooError):
    """A raw user or item id the run has never seen."""


def _raw(v):
    return v.item() if hasattr(v, "item") else v


class Recommender:
    """A fitted run addressed by raw ids."""

    def __init__(self, run_dir: str | Path):
        from recozoo.runs import load_ids, load_run
        self.run_dir = Path(run_dir)
        self.config, self.model = load_run(self.run_dir)
        self.user_ids, self.item_ids = load_ids(self.run_dir)
        if len(self.user_ids) != self.model.n_users_ or len(self.item_ids) != self.model.n_items_:
            raise RecozooError(f"{run_dir}: id maps do not match the model's shape")

    def _user(self, raw) -> int:
        u = int(self.user_ids.lookup(np.asarray([raw]))[0])
        if u < 0:
            raise UnknownId(f"unknown user {raw!r}")
        return u

    def _items(self, raws) -> np.ndarray:
        idx = self.item_ids.lookup(np.asarray(list(raws)))
        if (idx < 0).any():
            bad = [r for r, i in zip(raws, idx) if i < 0][:3]
            raise UnknownId(f"unknown item(s) {', '.join(map(repr, bad))}")
        return idx

    def _rows(self, items, scores) -> list[dict[str, Any]]:
        return [{"item": _raw(self.item_ids.raw[i]), "score": float(s)} for i, s in zip(items, scores)]

    def recommend_user(self, raw_user, k: int = 10) -> list[dict[str, Any]]:
        items, scores = self.model.recommend(self._user(raw_user), k=k, exclude_seen=True)
        return self._rows(items, scores)

    def recommend_ratings(self, ratings: dict, k: int = 10) -> list[dict[str, Any]]:
        if not isinstance(ratings, dict) or not ratings:
            raise RecozooError("'ratings' must be a non-empty object {item: rating}")
        try:
            values = np.asarray([float(v) for v in ratings.values()], dtype=np.float32)
        except (TypeError, ValueError):
            raise RecozooError("every rating must be a number") from None
        if not np.all(np.isfinite(values)):
            raise RecozooError("every rating must be a finite number")
        raws = list(ratings)
        if self.item_ids.raw.dtype.kind in "iu":
            try:
                raws = [int(r) for r in raws]
            except ValueError:
                raise UnknownId(f"item ids are integers in this run, got {list(ratings)[:3]}") from None
        items, scores = self.model.recommend_new_user(self._items(raws), values, k=k)
        return self._rows(items, scores)

    def predict(self, raw_user, raw_item) -> float:
        return float(self.model.predict([self._user(raw_user)], self._items([raw_item]))[0])

    def health(self) -> dict[str, Any]:
        return {"status": "ok", "model": self.model.name, "dataset": self.config.get("dataset"),
                "users": len(self.user_ids), "items": len(self.item_ids)}


def _parse_id(value: str, idmap):
    if idmap.raw.dtype.kind in "iu":
        try:
            return int(value)
        except ValueError:
            raise UnknownId(f"ids are integers in this run, got {value!r}") from None
    return value


def _handler(rec: Recommender):
    class Handler(BaseHTTPRequestHandler):
        server_version = "recozoo"

        def log_message(self, fmt, *args):  # quiet by default; the CLI prints one line per start
            pass

        def _send(self, status: int, obj) -> None:
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _k(self, value) -> int:
            try:
                k = int(value)
            except (TypeError, ValueError):
                raise RecozooError(f"k must be an integer, got {value!r}") from None
            if not 1 <= k <= 10_000:
                raise RecozooError("k must be between 1 and 10000")
            return k

        def _guard(self, fn) -> None:
            try:
                self._send(200, fn())
            except UnknownId as e:
                self._send(404, {"error": str(e)})
            except RecozooError as e:
                self._send(400, {"error": str(e)})

        def do_GET(self):  # noqa: N802 (http.server's naming)
            url = urlparse(self.path)
            q = {k: v[-1] for k, v in parse_qs(url.query).items()}
            if url.path == "/health":
                return self._guard(rec.health)
            if url.path == "/recommend":
                if "user" not in q:
                    return self._send(400, {"error": "missing query parameter 'user'"})
                return self._guard(lambda: {"user": q["user"], "items": rec.recommend_user(
                    _parse_id(q["user"], rec.user_ids), self._k(q.get("k", 10)))})
            if url.path == "/predict":
                if "user" not in q or "item" not in q:
                    return self._send(400, {"error": "query parameters 'user' and 'item' are required"})
                return self._guard(lambda: {"user": q["user"], "item": q["item"], "rating": rec.predict(
                    _parse_id(q["user"], rec.user_ids), _parse_id(q["item"], rec.item_ids))})
            self._send(404, {"error": f"no such endpoint {url.path}"})

        def do_POST(self):  # noqa: N802
            url = urlparse(self.path)
            if url.path != "/recommend":
                return self._send(404, {"error": f"no such endpoint {url.path}"})
            try:
                n = int(self.headers.get("Content-Length", "0"))
                if n > 10_000_000:
                    return self._send(400, {"error": "request body too large"})
                body = json.loads(self.rfile.read(n) or b"{}")
            except ValueError:
                return self._send(400, {"error": "request body is not valid JSON"})
            if not isinstance(body, dict):
                return self._send(400, {"error": "request body must be a JSON object"})
            self._guard(lambda: {"items": rec.recommend_ratings(body.get("ratings"),
                                                                  self._k(body.get("k", 10)))})

    return Handler


def make_server(run_dir: str | Path, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """An HTTP server for ``run_dir`` (call ``serve_forever``; port 0 picks a free one)."""
    rec = Recommender(run_dir)
    server = ThreadingHTTPServer((host, port), _handler(rec))
    server.daemon_threads = True
    server.recommender = rec
    return server


def serve_in_thread(run_dir: str | Path, host: str = "127.0.0.1", port: int = 0):
    """Start a server on a background thread; returns (server, base_url)."""
    server = make_server(run_dir, host, port)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    h, p = server.server_address[:2]
    return server, f"http://{h}:{p}"
