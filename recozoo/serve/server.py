"""Running the app: uvicorn (uvloop + httptools) on a socket recozoo binds itself.

Why bind here: the listen backlog is ours (``backlog``, 2048 by default; the
old standard-library server had 5 and the kernel dropped connections under
load), port 0 can be resolved before the "serving" line is printed, and
``--workers N`` processes share the one socket (uvicorn's supervisor).

What the HTTP layer adds to uvicorn's (:class:`GuardedHttpToolsProtocol`):

* a read timeout on request *headers* (slowloris: a client that trickles a
  request never completes it and would hold a connection forever; after
  ``read_timeout`` seconds it gets a 408 and the connection is closed) — the
  body has its own timeout in the app, idle keep-alive connections uvicorn's
  ``timeout_keep_alive``;
* a cap on the header bytes of one request (64 KiB, then 431);
* malformed HTTP gets a JSON 400 like every other client error (uvicorn's is text);
* a response's head and body leave in one ``send`` (:class:`CorkedTransport`):
  uvicorn writes them separately, two system calls and two loopback packets
  per answer, a quarter of the event loop's time under load (py-spy).

Shutdown: SIGTERM or SIGINT stop accepting, let in-flight requests finish
(up to ``graceful_s``), then close. SIGHUP reloads RUN_DIR (re-resolving a
symlink) in place — with ``--workers N`` uvicorn restarts the workers one by
one instead, each loading RUN_DIR anew.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from recozoo.serve.app import ServeOptions, compute_threads, create_app

__all__ = ["serve", "bind_socket", "GuardedHttpToolsProtocol", "CorkedTransport", "ServerThread",
           "serve_in_thread", "OPTIONS_ENV"]

#: worker processes read their ServeOptions (JSON) from this environment variable
OPTIONS_ENV = "RECOZOO_SERVE_OPTIONS"
MAX_HEADER_BYTES = 64 << 10


def _json_response(status: int, reason: str, message: str) -> bytes:
    body = json.dumps({"error": message}).encode()
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body


class CorkedTransport:
    """A transport whose writes of one event-loop turn leave together, in one ``write`` at the turn's end.

    uvicorn writes a response's head when the app sends ``http.response.start``
    and its body on ``http.response.body``, one after the other in the same
    turn; joined, they cost one system call instead of two. ``close`` (and
    ``set_protocol``) write what is held first; everything else is the wrapped
    transport's.
    """

    def __init__(self, transport, loop):
        self._transport, self._loop = transport, loop
        self._held: list[bytes] = []

    def write(self, data) -> None:
        if not self._held:
            self._loop.call_soon(self.flush)
        self._held.append(bytes(data))

    def flush(self) -> None:
        if self._held:
            data = b"".join(self._held)
            self._held.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def set_protocol(self, protocol) -> None:
        self.flush()
        self._transport.set_protocol(protocol)

    def __getattr__(self, name):
        return getattr(self._transport, name)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header read timeout, a header size cap and JSON 400s, whose
    responses leave in one write each (:class:`CorkedTransport`)."""

    def connection_made(self, transport) -> None:
        super().connection_made(CorkedTransport(transport, self.loop))
        self.read_timeout = float(getattr(self.config, "recozoo_read_timeout", 10.0))
        self._head_bytes = 0
        self._head_timer = None
        self._in_head = False

    def data_received(self, data: bytes) -> None:
        if not self._in_head and (self.cycle is None or self.cycle.response_complete):
            self._in_head = True                # between requests: a new head starts
            self._head_bytes = 0
            self._head_timer = self.loop.call_later(self.read_timeout, self._head_timeout)
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._in_head and self._head_bytes > MAX_HEADER_BYTES:   # still no end of the headers
            self._reject(431, "Request Header Fields Too Large",
                         f"request headers larger than {MAX_HEADER_BYTES} bytes")

    def on_headers_complete(self) -> None:
        self._end_head()
        size = len(self.url) + sum(len(k) + len(v) + 4 for k, v in self.headers)
        if size > MAX_HEADER_BYTES:      # (a head that arrived in one piece with a request body)
            self._reject(431, "Request Header Fields Too Large",
                         f"request headers larger than {MAX_HEADER_BYTES} bytes")
            return
        super().on_headers_complete()

    def _end_head(self) -> None:
        self._in_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            self._reject(408, "Request Timeout", f"request headers not received within {self.read_timeout:g} s")

    def _reject(self, status: int, reason: str, message: str) -> None:
        self._end_head()
        if not self.transport.is_closing():
            self.transport.write(_json_response(status, reason, message))
            self.transport.close()

    def connection_lost(self, exc) -> None:
        self._end_head()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        self._end_head()
        if not self.transport.is_closing():
            self.transport.write(_json_response(400, "Bad Request", "malformed HTTP request"))
            self.transport.close()


def bind_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening TCP socket (IPv6 when ``host`` has a colon), SO_REUSEADDR, the given backlog."""
    from recozoo.errors import RecozooError
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise RecozooError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def _config(app, options: ServeOptions, graceful_s: float, backlog: int, **kw) -> uvicorn.Config:
    import inspect
    if "timeout_worker_healthcheck" in inspect.signature(uvicorn.Config.__init__).parameters:
        kw.setdefault("timeout_worker_healthcheck", 300)    # a worker loads a model: more than uvicorn's 5 s
    config = uvicorn.Config(app, http=GuardedHttpToolsProtocol, loop="uvloop", lifespan="on", access_log=False,
                            log_level="warning", timeout_keep_alive=5, backlog=backlog,
                            timeout_graceful_shutdown=graceful_s, server_header=False, **kw)
    config.recozoo_read_timeout = options.read_timeout     # read by the protocol (pickled to workers)
    return config


def create_app_from_env():
    """App factory of a worker process (``--workers N``): options from :data:`OPTIONS_ENV`."""
    options = ServeOptions.from_json(os.environ[OPTIONS_ENV])
    set_compute_threads(options.threads, options.workers)
    return create_app(options)


def set_compute_threads(threads: int, workers: int) -> int:
    """Apply :func:`compute_threads` to torch and the BLAS pools.

    Why: the event loop (HTTP parsing, JSON) needs a core of its own; intra-op
    pools that take every core make the two fight, and OpenMP workers that
    spin-wait after each operation starved the loop (measured on the loaded
    2-core machine: 300 ms per request with torch's 2 threads, 33 ms with 1).
    """
    n = compute_threads(threads, workers)
    import threadpoolctl
    threadpoolctl.threadpool_limits(n)
    try:
        import torch
        torch.set_num_threads(n)
    except ImportError:  # pragma: no cover
        pass
    return n


def serve(options: ServeOptions, host: str = "127.0.0.1", port: int = 8000, *, backlog: int = 2048,
          graceful_s: float = 30.0, announce=None) -> None:
    """Serve until SIGTERM/SIGINT. ``announce(url)`` is called once the socket listens."""
    from recozoo.runs import load_run
    load_run(options.run_dir)        # fail fast, in the parent, with the one-line error of a bad run
    sock = bind_socket(host, port, backlog)
    h, p = sock.getsockname()[:2]
    url = f"http://[{h}]:{p}" if ":" in h else f"http://{h}:{p}"
    if options.workers <= 1:
        set_compute_threads(options.threads, 1)
        config = _config(create_app(options), options, graceful_s, backlog)
        server = uvicorn.Server(config)
        if announce:
            announce(url)
        server.run(sockets=[sock])
        return
    os.environ[OPTIONS_ENV] = options.to_json()
    config = _config("recozoo.serve.server:create_app_from_env", options, graceful_s, backlog,
                     factory=True, workers=options.workers)
    import inspect
    from uvicorn.supervisors import Multiprocess
    if announce:
        announce(url)
    if "target" in inspect.signature(Multiprocess.__init__).parameters:     # uvicorn < 0.35
        Multiprocess(config, target=uvicorn.Server(config).run, sockets=[sock]).run()
    else:
        Multiprocess(config, sockets=[sock]).run()


class ServerThread:
    """An in-process server on a background thread (tests, notebooks): ``.url``, ``.app_state``, ``.stop()``."""

    def __init__(self, options: ServeOptions, host: str = "127.0.0.1", port: int = 0):
        self.app = create_app(options)
        self.sock = bind_socket(host, port)
        h, p = self.sock.getsockname()[:2]
        self.url = f"http://{h}:{p}"
        self.server = uvicorn.Server(_config(self.app, options, 10.0, 2048))
        self.server.install_signal_handlers = lambda: None     # (uvicorn < 0.29 spelling; harmless)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.01)

    def _run(self):
        import asyncio
        asyncio.run(self.server.serve(sockets=[self.sock]))

    @property
    def state(self):
        return self.app.state.serve

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()


def serve_in_thread(run_dir, host: str = "127.0.0.1", port: int = 0, **options) -> ServerThread:
    """Start a server for ``run_dir`` on a background thread (port 0 picks a free one)."""
    return ServerThread(ServeOptions(str(run_dir), **options), host, port)
