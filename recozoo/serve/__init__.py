"""Online use of a trained run: the :class:`Recommender` library class and ``recozoo serve``.

Modules (each with one job):

* :mod:`recozoo.serve.recommender` — :class:`Recommender`: a run addressed by raw ids, queries
  answered in batches (known users, new users' ratings folded in, users with live events);
* :mod:`recozoo.serve.store` — live interactions in SQLite (durable, shared by processes);
* :mod:`recozoo.serve.batcher` — micro-batching of concurrent requests;
* :mod:`recozoo.serve.app` — the ASGI app (Starlette): endpoints, safe JSON, errors, metrics;
* :mod:`recozoo.serve.server` — uvicorn, the socket, workers, timeouts, signals.

Importing this package does not import the web stack (``recozoo recommend`` and the
library use :class:`Recommender` alone); :func:`serve_in_thread` and the app modules do.
See docs/serving.md.
"""

from __future__ import annotations

from recozoo.serve.recommender import ClientError, Query, Recommender, UnknownId, parse_raw_id

__all__ = ["Recommender", "Query", "UnknownId", "ClientError", "parse_raw_id", "serve_in_thread"]


def serve_in_thread(run_dir, host: str = "127.0.0.1", port: int = 0, **options):
    """An in-process server for ``run_dir`` on a background thread (see :class:`recozoo.serve.server.ServerThread`)."""
    from recozoo.serve.server import serve_in_thread as start
    return start(run_dir, host, port, **options)
