"""The ASGI application (Starlette): a thin HTTP layer over :class:`~recozoo.serve.recommender.Recommender`.

Endpoints (JSON in and out; every error is ``{"error": "one line"}`` with a 4xx
status — 400 malformed, 404 unknown id or path, 405 wrong method, 408 too slow,
413 too large — never a 5xx for a client's mistake):

=======  ===================  ==========================================================
GET      /health              {"status": "ok", "model", "dataset", "users", "items"}
GET      /recommend           ?user=ID&k=10: top-k for a known user (or one with live events)
POST     /recommend           {"ratings": {ITEM: RATING, ...}, "k": 10}: top-k for a new user
POST     /recommend/batch     {"requests": [{"user": ID} | {"ratings": {...}}, ...], "k": 10}
GET      /predict             ?user=ID&item=ID: one predicted rating (score)
GET      /model               the run: model, settings, data sizes, fold-in, warm start
POST     /interactions        {"user", "item", "rating"?} or {"events": [...]}: stored durably
GET      /metrics             Prometheus text format
GET      /openapi.json, /docs the API description
POST     /admin/swap          {"run_dir"?}: serve another run (needs the admin token)
=======  ===================  ==========================================================
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from recozoo.errors import RecozooError
from recozoo.io import json_default
from recozoo.serve.batcher import MicroBatcher
from recozoo.serve.recommender import MAX_K, ClientError, Recommender, UnknownId

__all__ = ["ServeOptions", "create_app", "parse_json_body", "JSON_DEPTH_LIMIT"]

#: deepest JSON nesting accepted (the API needs 4); checked before json.loads recurses
JSON_DEPTH_LIMIT = 32
#: most digits of an integer literal in a JSON body (int64 range)
JSON_INT_DIGITS = 18
#: a body over the limit is still read (and discarded) up to this many times the limit, so that the
#: client, still sending, is not cut off before it reads its 413
_DRAIN_FACTOR = 16
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)


class ServeOptions:
    """What ``recozoo serve`` configures (one object, also handed to worker processes as JSON)."""

    def __init__(self, run_dir: str, *, events: str | None = None, batch_wait_ms: float = 2.0,
                 max_batch: int = 64, max_body_bytes: int = 4 << 20, read_timeout: float = 10.0,
                 admin_token: str | None = None, workers: int = 1, threads: int = 0):
        self.run_dir = str(run_dir)
        self.events = events
        self.batch_wait_ms = float(batch_wait_ms)
        self.max_batch = int(max_batch)
        self.max_body_bytes = int(max_body_bytes)
        self.read_timeout = float(read_timeout)
        self.admin_token = admin_token
        self.workers = int(workers)
        self.threads = int(threads)

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, text: str) -> "ServeOptions":
        d = json.loads(text)
        return cls(d.pop("run_dir"), **d)


# ------------------------------------------------------------------ JSON in and out
def compute_threads(threads: int, workers: int) -> int:
    """Threads one worker's batch scorer uses: ``threads`` if given (>0), else the cores left after
    every worker's event loop has one, shared by the workers (at least 1)."""
    if threads > 0:
        return threads
    cores = os.cpu_count() or 1
    return max(1, (cores - workers) // max(workers, 1))


def _error(status: int, message: str, headers: dict | None = None) -> Response:
    line = " ".join(str(message).split())[:500]
    return Response(json.dumps({"error": line}), status_code=status, media_type="application/json",
                    headers=headers)


def _ok(body: bytes | dict) -> Response:
    if isinstance(body, dict):
        body = json.dumps(body, default=json_default).encode()
    return Response(body, media_type="application/json")


def _int_literal(text: str) -> int:
    if len(text.lstrip("-")) > JSON_INT_DIGITS:
        raise ClientError(f"a number in the body has more than {JSON_INT_DIGITS} digits")
    return int(text)


def _no_constant(name: str):
    raise ClientError(f"{name} is not a number JSON allows")


def parse_json_body(body: bytes) -> Any:
    """``json.loads`` made safe for hostile input: nesting depth checked first (on the body with its
    strings blanked, one vectorised pass), integer literals of at most 18 digits, no NaN/Infinity,
    bad UTF-8 and bad JSON are :class:`ClientError` (400)."""
    if not body.strip():
        raise ClientError("request body is empty (expected a JSON object)")
    bare = np.frombuffer(_STRINGS.sub(b'""', body), dtype=np.uint8)
    step = ((bare == ord("[")) | (bare == ord("{"))).astype(np.int32) \
        - ((bare == ord("]")) | (bare == ord("}"))).astype(np.int32)
    if step.size and int(np.cumsum(step).max()) > JSON_DEPTH_LIMIT:
        raise ClientError(f"request body is nested deeper than {JSON_DEPTH_LIMIT} levels")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ClientError(f"request body is not valid UTF-8 (byte {e.start})") from None
    try:
        return json.loads(text, parse_int=_int_literal, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        raise ClientError(f"request body is not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") \
            from None
    except RecursionError:
        raise ClientError("request body is nested too deeply") from None
    except ValueError as e:     # int() digit limits and the like
        raise ClientError(f"request body is not valid JSON ({e})") from None


def _k(value) -> int:
    if isinstance(value, str):
        v = value.strip()
        if not (v.isascii() and v.lstrip("-").isdigit()) or len(v) > 9:
            raise ClientError(f"k must be an integer between 1 and {MAX_K}, got {value[:20]!r}")
        value = int(v)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ClientError(f"k must be an integer between 1 and {MAX_K}")
    if not 1 <= value <= MAX_K:
        raise ClientError(f"k must be between 1 and {MAX_K}")
    return value


# ------------------------------------------------------------------------ the state
def settle_heap() -> None:
    """Collect once, then move every object alive now (the served run: its network, id maps and
    per-item JSON fragments) out of the cyclic collector's reach (:func:`gc.freeze`).

    Why: a full (generation 2) collection walks every tracked object and stops the whole server
    while it does; with a 17,768-item DeepRec loaded each one took 30-130 ms, a few times in ten
    seconds under load — the p99 at 32 connections. Frozen objects are still freed by reference
    counting; the unfreeze first lets this collection reclaim a swapped-out run's cycles."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class _State:
    """The served run (swapped atomically), the event log, the batcher and the metrics."""

    def __init__(self, options: ServeOptions):
        from recozoo.serve.metrics import Metrics
        self.options = options
        self.metrics = Metrics()
        self.events = None
        self.rec: Recommender | None = None
        self.batcher = None
        self.swap_lock: asyncio.Lock | None = None

    def open(self) -> None:
        from recozoo.serve.store import EVENTS_FILE, EventLog, InteractionStore
        run = Path(self.options.run_dir)
        path = Path(self.options.events) if self.options.events else run / EVENTS_FILE
        store = InteractionStore(path)
        self.events = EventLog(store)
        self.rec = self.load(run)
        settle_heap()

    def load(self, run_dir: Path) -> Recommender:
        """A Recommender for ``run_dir``; its live events are those after what the run learned."""
        rec = Recommender(run_dir, events=None)
        rec.warm_up()
        from recozoo.serve.store import learned_through
        through = learned_through(rec.config, self.events.store.path)
        if through != self.events.through:
            from recozoo.serve.store import EventLog
            self.events = EventLog(self.events.store, through=through)
        rec.events = self.events
        self.metrics.model = {"model": rec.model.name, "run_dir": str(run_dir)}
        return rec

    def run_batch(self, rec: Recommender, queries: list):
        return rec.answer(queries)


class _Api:
    """The server's endpoints and lifespan over one :class:`_State` (``create_app`` wires them to routes)."""

    def __init__(self, options: ServeOptions, state: _State):
        self.options, self.state = options, state

    @contextlib.asynccontextmanager
    async def lifespan(self, app):
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.state.open)
        self.state.swap_lock = asyncio.Lock()
        self.state.batcher = MicroBatcher(self.state.run_batch, max_batch=self.options.max_batch,
                                          wait_s=self.options.batch_wait_ms / 1000.0,
                                          on_batch=self.state.metrics.batch)
        self.state.batcher.start()
        import signal
        try:
            loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(self._swap(None)))
        except (NotImplementedError, RuntimeError, ValueError):   # not the main thread (tests), Windows
            pass
        yield
        await self.state.batcher.stop()
        self.state.events.store.close()

    async def _swap(self, run_dir: str | None) -> Recommender:
        """Load the new run off the event loop, then switch; in-flight batches keep their run."""
        async with self.state.swap_lock:
            target = Path(run_dir) if run_dir else Path(self.options.run_dir)
            loop = asyncio.get_running_loop()
            rec = await loop.run_in_executor(None, self.state.load, target)
            self.state.rec = rec
            self.state.metrics.swaps += 1
            await loop.run_in_executor(None, settle_heap)
            return rec

    async def read_json(self, request: Request) -> Any:
        limit = self.options.max_body_bytes
        length = request.headers.get("content-length")
        if length is not None and not (length.isascii() and length.isdigit()):
            raise ClientError("Content-Length is not a number")
        chunks, size = [], 0

        async def gather():
            nonlocal size
            async for chunk in request.stream():
                size += len(chunk)
                if size <= limit:
                    chunks.append(chunk)
                elif size > _DRAIN_FACTOR * limit:
                    return            # absurdly large: answer now (the client may see the close first)
                else:
                    chunks.clear()    # too large: read on and discard, so the client gets its 413
        try:
            await asyncio.wait_for(gather(), self.options.read_timeout)
        except asyncio.TimeoutError:
            raise _Timeout(f"request body not received within {self.options.read_timeout:g} s") from None
        if size > limit:
            raise _TooLarge(f"request body larger than {limit} bytes")
        return parse_json_body(b"".join(chunks))

    async def answer_one(self, rec: Recommender, query):
        return await self.state.batcher.submit(rec, query)

    # ------------------------------------------------------------ endpoints
    async def health(self, request: Request) -> Response:
        return _ok(self.state.rec.health())

    async def model_info(self, request: Request) -> Response:
        info = self.state.rec.info()
        info["events"] = {"db": str(self.state.events.store.path), "users_with_live_events": self.state.events.users(),
                          "ignored_through_id": self.state.events.through}
        info["serving"] = {"batch_wait_ms": self.options.batch_wait_ms, "max_batch": self.options.max_batch,
                           "workers": self.options.workers,
                           "compute_threads": compute_threads(self.options.threads, self.options.workers)}
        return _ok(info)

    async def recommend_get(self, request: Request) -> Response:
        q = request.query_params
        if "user" not in q:
            raise ClientError("missing query parameter 'user'")
        k = _k(q.get("k", "10"))
        rec = self.state.rec
        self.state.events.refresh()
        query = rec.query_user(rec.parse_user(q["user"]), k)
        items, scores = await self.answer_one(rec, query)
        return _ok(b'{"user":' + json.dumps(q["user"]).encode() + b',"items":'
                   + rec.rows_json(items, scores) + b"}")

    async def recommend_post(self, request: Request) -> Response:
        body = await self.read_json(request)
        if not isinstance(body, dict):
            raise ClientError("request body must be a JSON object")
        k = _k(body.get("k", 10))
        rec = self.state.rec
        query = rec.query_ratings(body.get("ratings"), k)
        items, scores = await self.answer_one(rec, query)
        return _ok(b'{"items":' + rec.rows_json(items, scores) + b"}")

    async def recommend_batch(self, request: Request) -> Response:
        body = await self.read_json(request)
        if not isinstance(body, dict) or not isinstance(body.get("requests"), list):
            raise ClientError('request body must be {"requests": [{"user": ID} or {"ratings": {...}}, ...]}')
        reqs = body["requests"]
        if not 1 <= len(reqs) <= 1000:
            raise ClientError("'requests' must hold 1 to 1000 entries")
        k_all = _k(body.get("k", 10))
        rec = self.state.rec
        self.state.events.refresh()
        queries, errors = [], {}
        for j, r in enumerate(reqs):
            try:
                if not isinstance(r, dict) or ("user" in r) == ("ratings" in r):
                    raise ClientError('each request needs exactly one of "user" or "ratings"')
                k = _k(r["k"]) if "k" in r else k_all
                queries.append(rec.query_user(rec.parse_user(r["user"]), k) if "user" in r
                               else rec.query_ratings(r["ratings"], k))
            except (ClientError, UnknownId) as e:
                errors[j] = e
                queries.append(None)
        live = [q for q in queries if q is not None]
        answers = iter(await asyncio.gather(*[self.answer_one(rec, q) for q in live]))
        parts = []
        for j, r in enumerate(reqs):
            if j in errors:
                e = errors[j]
                parts.append(json.dumps({"error": str(e), "status": 404 if isinstance(e, UnknownId) else 400})
                             .encode())
                continue
            items, scores = next(answers)
            head = b'{"user":' + json.dumps(r["user"]).encode() + b"," if "user" in r else b"{"
            parts.append(head + b'"items":' + rec.rows_json(items, scores) + b"}")
        return _ok(b'{"results":[' + b",".join(parts) + b"]}")

    async def predict(self, request: Request) -> Response:
        q = request.query_params
        if "user" not in q or "item" not in q:
            raise ClientError("query parameters 'user' and 'item' are required")
        rec = self.state.rec
        self.state.events.refresh()
        user, item = rec.parse_user(q["user"]), rec.parse_item(q["item"])
        value = await asyncio.get_running_loop().run_in_executor(None, rec.predict, user, item)
        return _ok({"user": q["user"], "item": q["item"], "rating": value})

    async def interactions(self, request: Request) -> Response:
        body = await self.read_json(request)
        if isinstance(body, dict) and "events" in body:
            events = body["events"]
            if not isinstance(events, list) or not 1 <= len(events) <= 10_000:
                raise ClientError("'events' must be a list of 1 to 10000 events")
        else:
            events = [body]
        rec = self.state.rec
        rows = []
        for e in events:
            if not isinstance(e, dict) or "user" not in e or "item" not in e:
                raise ClientError('each event needs "user" and "item" (and optionally "rating")')
            user, item = rec.parse_user(e["user"]), rec.parse_item(e["item"])
            rec.item_indices([item])           # only items of the catalogue (404 otherwise)
            rating = e.get("rating")
            if rating is not None:
                if isinstance(rating, bool) or not isinstance(rating, (int, float)) \
                        or not np.isfinite(float(rating)) or abs(float(rating)) > 1e9:
                    raise ClientError("'rating' must be a finite number (or absent for an implicit event)")
                rating = float(rating)
            rows.append((user, item, rating))
        ids = await asyncio.get_running_loop().run_in_executor(None, self.state.events.add, rows)
        self.state.metrics.interactions += len(ids)
        return _ok({"stored": len(ids), "ids": ids, "reflected": rec.folds_in})

    async def metrics(self, request: Request) -> Response:
        return Response(self.state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def openapi(self, request: Request) -> Response:
        from recozoo.serve.openapi import spec
        return _ok(spec())

    async def docs(self, request: Request) -> Response:
        from recozoo.serve.openapi import docs_html
        return HTMLResponse(docs_html())

    async def admin_swap(self, request: Request) -> Response:
        token = self.options.admin_token
        if not token:
            return _error(403, "admin endpoints are off (start the server with --admin-token); "
                               "SIGHUP to the server process reloads RUN_DIR")
        if request.headers.get("authorization", "") != f"Bearer {token}":
            return _error(401, "missing or wrong admin token (Authorization: Bearer TOKEN)")
        if self.options.workers > 1:
            return _error(409, "with --workers > 1 a swap must reach every worker: send SIGHUP to the "
                               "main process (it restarts the workers gracefully)")
        body = await self.read_json(request) if request.headers.get("content-length", "0") != "0" else {}
        if not isinstance(body, dict):
            raise ClientError('request body must be {"run_dir": PATH} or empty')
        target = body.get("run_dir")
        if target is not None and not isinstance(target, str):
            raise ClientError("'run_dir' must be a path")
        try:
            rec = await self._swap(target)
        except RecozooError as e:
            return _error(400, f"cannot swap: {e}")
        return _ok({"swapped": True, "run_dir": str(rec.run_dir), "model": rec.model.name})


def create_app(options: ServeOptions) -> Starlette:
    """The Starlette app for ``options`` (the run is loaded at start-up, in the lifespan)."""
    state = _State(options)
    api = _Api(options, state)
    routes = [
        Route("/health", api.health, methods=["GET"]),
        Route("/recommend", api.recommend_get, methods=["GET"]),
        Route("/recommend", api.recommend_post, methods=["POST"]),
        Route("/recommend/batch", api.recommend_batch, methods=["POST"]),
        Route("/predict", api.predict, methods=["GET"]),
        Route("/model", api.model_info, methods=["GET"]),
        Route("/interactions", api.interactions, methods=["POST"]),
        Route("/metrics", api.metrics, methods=["GET"]),
        Route("/openapi.json", api.openapi, methods=["GET"]),
        Route("/docs", api.docs, methods=["GET"]),
        Route("/admin/swap", api.admin_swap, methods=["POST"]),
    ]
    known = {r.path for r in routes}
    allowed = {}
    for r in routes:
        allowed.setdefault(r.path, set()).update(r.methods or ())

    async def http_error(request: Request, exc: HTTPException) -> Response:
        path = request.url.path
        if exc.status_code == 405 or (exc.status_code == 404 and path in known):
            allow = ", ".join(sorted(allowed.get(path, ())))
            return _error(405, f"method {request.method} not allowed on {path} (allowed: {allow})",
                          {"Allow": allow})
        if exc.status_code == 404:
            return _error(404, f"no such endpoint {path}")
        return _error(exc.status_code, exc.detail)

    async def client_error(request: Request, exc: Exception) -> Response:
        return _error(404 if isinstance(exc, UnknownId) else getattr(exc, "status", 400), str(exc))

    async def server_error(request: Request, exc: Exception) -> Response:
        return _error(500, f"internal error: {type(exc).__name__}")

    app = Starlette(routes=routes, lifespan=api.lifespan,
                    exception_handlers={HTTPException: http_error, ClientError: client_error,
                                        UnknownId: client_error, _HttpStatus: client_error,
                                        Exception: server_error})
    app.state.serve = state
    return _MetricsMiddleware(app, state.metrics, known)


class _HttpStatus(ClientError):
    status = 400


class _TooLarge(_HttpStatus):
    status = 413


class _Timeout(_HttpStatus):
    status = 408



class _MetricsMiddleware:
    """Times every HTTP request and counts it by endpoint (a bounded label set) and status."""

    def __init__(self, app, metrics, known: set[str]):
        self.app, self.metrics, self.known = app, metrics, known
        self.state = app.state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = 500

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)
        try:
            await self.app(scope, receive, send_status)
        finally:
            path = scope.get("path", "")
            self.metrics.request(path if path in self.known else "other", scope.get("method", "?"), status,
                                 time.perf_counter() - t0)
