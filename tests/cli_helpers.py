"""Run the real ``recozoo`` console script in a subprocess (no mocks)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

RECOZOO = shutil.which("recozoo", path=str(Path(sys.executable).parent)) or shutil.which("recozoo")


def run_cli(*args, env: dict | None = None, cwd: str | Path | None = None, check: bool = True,
            timeout: float = 600) -> subprocess.CompletedProcess:
    assert RECOZOO, "the recozoo console script is not installed (pip install -e .)"
    e = dict(os.environ)
    e.update(env or {})
    e.setdefault("COLUMNS", "200")
    p = subprocess.run([RECOZOO, *map(str, args)], capture_output=True, text=True, env=e, cwd=cwd,
                       timeout=timeout, stdin=subprocess.DEVNULL)
    if check and p.returncode != 0:
        raise AssertionError(f"recozoo {' '.join(map(str, args))} exited {p.returncode}:\n"
                             f"stdout: {p.stdout[-2000:]}\nstderr: {p.stderr[-4000:]}")
    return p


def run_json(*args, **kw):
    p = run_cli(*args, "--json", **kw)
    return json.loads(p.stdout)


def assert_one_line_error(p: subprocess.CompletedProcess, *needles: str) -> str:
    assert p.returncode != 0, f"expected failure, got exit 0: {p.stdout}"
    err = p.stderr.strip()
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one error line, got: {err!r}"
    for n in needles:
        assert n.lower() in lines[0].lower(), f"{n!r} not in {lines[0]!r}"
    return lines[0]


def invoke_cli(*args, env: dict | None = None, cwd: str | Path | None = None, check: bool = True,
               ) -> subprocess.CompletedProcess:
    """``run_cli`` without the new process: ``recozoo.cli.main.main`` called in this process.

    Each ``recozoo`` subprocess imports torch/numba afresh (~1-2 s of a 2-core CI box); a test about what
    the CLI does (its output, its one-line errors, its exit code, the files it writes) gets the same answer
    from the same entry point here. File descriptors 1 and 2 are redirected too (a C library's or a
    warning's output is caught as a child's would be), the environment, working folder, argv, stdin and
    warning filters are the child's for the call and restored after (the whole environment: a variable
    the command sets, e.g. a thread count, dies with it as with a child), and an uncaught exception is written
    to stderr as the interpreter would (a traceback, exit 1) so ``assert_one_line_error`` still catches it.
    Tests about the process itself (signals, kill -9, torchrun, fresh imports, memory) keep ``run_cli``.
    """
    import io
    import tempfile
    import traceback
    import warnings

    from recozoo.cli.main import main
    argv = ["recozoo", *map(str, args)]
    # one torch/OpenMP thread unless the test says otherwise: two threads fighting the other jobs on a
    # shared 2-core box made a 4-epoch DeepRec fit 13x slower in wall time (the same figures, bit for bit)
    e = {"COLUMNS": "200", "OMP_NUM_THREADS": "1", **(env or {})}
    saved_env = os.environ.copy()       # all of it: what the command sets must not outlive it, as a child's
    saved = (sys.argv, sys.stdin, sys.stdout, sys.stderr, os.getcwd(), warnings.showwarning)
    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch is not None else None
    sys.stdout.flush()
    sys.stderr.flush()
    fds = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, warnings.catch_warnings():
        code, repointed = 0, []
        try:
            os.environ.update({k: str(v) for k, v in e.items()})
            if cwd is not None:
                os.chdir(cwd)
            os.dup2(out.fileno(), 1)
            os.dup2(err.fileno(), 2)
            sys.argv, sys.stdin = argv, open(os.devnull)
            sys.stdout = io.TextIOWrapper(open(1, "wb", closefd=False), encoding="utf-8", write_through=True)
            sys.stderr = io.TextIOWrapper(open(2, "wb", closefd=False), encoding="utf-8", write_through=True)
            streams = {id(saved[2]): sys.stdout, id(sys.__stdout__): sys.stdout,
                       id(saved[3]): sys.stderr, id(sys.__stderr__): sys.stderr}
            repointed = _repoint_log_handlers(streams)
            warnings.resetwarnings()                 # a fresh interpreter's filters, not pytest's
            for cat in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
                warnings.simplefilter("ignore", cat)
            if torch is not None:                    # (a torch first imported in the call reads the variable)
                torch.set_num_threads(int(e["OMP_NUM_THREADS"]))
            try:
                main()
            except SystemExit as x:
                code = x.code if isinstance(x.code, int) else (0 if x.code is None else 1)
                if x.code is not None and not isinstance(x.code, int):
                    sys.stderr.write(f"{x.code}\n")
            except BaseException:                    # what the interpreter would print, and its exit status
                sys.stderr.write(traceback.format_exc())
                code = 1
        finally:
            if sys.stdout is not saved[2]:             # handlers made during the call: the test's streams
                _repoint_log_handlers({id(sys.stdout): saved[2], id(sys.stderr): saved[3]})
            for h, stream in repointed:
                h.setStream(stream)
            for stream in (sys.stdout, sys.stderr):
                if stream is not saved[2] and stream is not saved[3]:
                    stream.flush()
                    stream.detach()
            if sys.stdin is not saved[1]:
                sys.stdin.close()
            os.dup2(fds[0], 1)
            os.dup2(fds[1], 2)
            for fd in fds:
                os.close(fd)
            sys.argv, sys.stdin, sys.stdout, sys.stderr, cwd_before, warnings.showwarning = saved
            os.chdir(cwd_before)
            if os.environ != saved_env:
                os.environ.clear()
                os.environ.update(saved_env)
            if threads is not None:
                torch.set_num_threads(threads)
        out.seek(0)
        err.seek(0)
        p = subprocess.CompletedProcess(argv, code, out.read().decode(), err.read().decode())
    if check and p.returncode != 0:
        raise AssertionError(f"recozoo {' '.join(argv[1:])} exited {p.returncode} (in process):\n"
                             f"stdout: {p.stdout[-2000:]}\nstderr: {p.stderr[-4000:]}")
    return p


def _repoint_log_handlers(streams: dict) -> list:
    """Point every logging stream handler writing to a stream in ``streams`` (by id) at its new stream, as
    a child's handlers write to the child's stdout/stderr (optuna's was made at its import, with the test's
    stderr); returns (handler, old stream) pairs."""
    import logging
    loggers = [logging.getLogger(), *(x for x in logging.Logger.manager.loggerDict.values()
                                      if isinstance(x, logging.Logger))]
    out = []
    for h in {h for lg in loggers for h in lg.handlers}:
        if isinstance(h, logging.StreamHandler) and id(h.stream) in streams:
            out.append((h, h.stream))
            h.setStream(streams[id(h.stream)])
    return out


def invoke_json(*args, **kw):
    return json.loads(invoke_cli(*args, "--json", **kw).stdout)


def free_port() -> int:
    """A loopback port nothing listens on (for "a cluster address that does not answer")."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
