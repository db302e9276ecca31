"""Serving under load: ``recozoo serve`` against Cornac's serving app, and fold-in latency.

What it measures (the issue's targets; loopback only; every load bounded in time):

* **server load** — a real ``recozoo serve`` process per run, driven by a
  closed-loop load generator in another process: ``wrk`` (Debian package
  ``wrk``) when installed, else the Python client below. GET
  /recommend?user=U&k=10 over the run's users in a shuffled cycle, at 1, 8 and
  32 connections (``--connections``), ``--duration`` seconds each after a short
  warm-up; p50/p95/p99 latency, requests/s and errors (non-2xx, socket errors,
  timeouts). Runs:

  - ``deeprec-17768``: DeepRec n,512,512,1024 (the paper's Netflix-full
    architecture, user mode) on a generated table with 17,768 items;
  - ``deeprec-ml100k``: ``recozoo fit deeprec --preset ml-100k`` on ML-100K u1
    (item mode, 1,682 items).

  The networks are trained for a few epochs only: a forward pass costs the
  same whatever the weights, so serving speed does not depend on training
  length (``--epochs``).
* **Cornac side by side** (``--cornac-python PY``: an interpreter with
  ``cornac``, ``flask`` and ``torch`` — VAECF trains with torch, which cornac
  does not install; docs/online.md#benchmark has the commands that build one,
  and a missing or incomplete one stops the script at once, in one line):
  Cornac's Flask serving app (``cornac.serving.app``) with VAECF trained
  on the same TRAIN data, same load, same client (GET /recommend?uid=U&k=10).
* **fold-in latency** — in-process: a new user with 20 ratings folded into ALS
  (rank 10) and biased MF (100 factors) fitted on a 17,768-item table;
  ``score_new_users`` alone and with the top-10 (``recommend_new_users``),
  median and p99 over ``--foldin-reps`` calls.

It writes one JSON record (command, commit, machine, load before/after, date,
figures) through ``benchmarks/_record.py`` to ``benchmarks/records/serve.json``
(``--record PATH``; ``serve-quick.json`` for ``--quick``) and prints the figures;
``tables(figures)`` renders them for the docs.

Usage::

    python benchmarks/bench_serve.py                          # everything that is installed
    python benchmarks/bench_serve.py --cornac-python /path/venv/bin/python
    python benchmarks/bench_serve.py --quick                  # tiny sizes: checks the script runs
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import Run, add_record_option, record_path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

WRK_LUA = """
local ids = {%(ids)s}
local i = 0
init = function(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
  i = math.random(#ids)
end
request = function()
  i = i %% #ids + 1
  return wrk.format("GET", "%(path)s" .. ids[i] .. "%(tail)s")
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p95_us": %%d, '
    .. '"p99_us": %%d, "mean_us": %%.1f, "max_us": %%d, "connect": %%d, "read": %%d, "write": %%d, '
    .. '"status": %%d, "timeout": %%d}\\n', summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.mean, latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""

#: the Python fallback client: N threads, one keep-alive connection each, closed loop
PY_CLIENT = textwrap.dedent("""
    import http.client, json, sys, threading, time, random
    host, port, path, tail, conns, dur, ids = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], \\
        int(sys.argv[5]), float(sys.argv[6]), json.loads(sys.argv[7])
    lat, errors, lock = [], [0], threading.Lock()
    stop = time.perf_counter() + dur
    def run(seed):
        rnd = random.Random(seed); mine = []; bad = 0
        c = http.client.HTTPConnection(host, port, timeout=30)
        while time.perf_counter() < stop:
            u = ids[rnd.randrange(len(ids))]
            t0 = time.perf_counter()
            try:
                c.request("GET", f"{path}{u}{tail}"); r = c.getresponse(); r.read()
                if r.status >= 400: bad += 1
            except Exception:
                bad += 1; c.close(); c = http.client.HTTPConnection(host, port, timeout=30)
            mine.append(time.perf_counter() - t0)
        with lock:
            lat.extend(mine); errors[0] += bad
    t0 = time.perf_counter()
    ts = [threading.Thread(target=run, args=(s,)) for s in range(conns)]
    [t.start() for t in ts]; [t.join() for t in ts]
    el = time.perf_counter() - t0
    lat.sort(); q = lambda p: int(1e6 * lat[min(len(lat) - 1, int(p * len(lat)))]) if lat else 0
    print("WRKJSON " + json.dumps({"requests": len(lat), "duration_us": int(el * 1e6), "p50_us": q(.5),
        "p95_us": q(.95), "p99_us": q(.99), "mean_us": 1e6 * sum(lat) / max(len(lat), 1),
        "max_us": q(1.0), "status": errors[0], "connect": 0, "read": 0, "write": 0, "timeout": 0}))
""")

CORNAC_SERVER = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    import cornac
    from cornac.data import Dataset
    from cornac.models import VAECF
    data = np.load(sys.argv[1])
    triples = list(zip(data["users"].astype(str).tolist(), data["items"].astype(str).tolist(),
                       data["ratings"].astype(float).tolist()))
    ds = Dataset.from_uir(triples, seed=0)
    model = VAECF(k=10, autoencoder_structure=[20], n_epochs=int(sys.argv[3]), batch_size=100,
                  learning_rate=0.001, seed=0, verbose=False).fit(ds)
    path = model.save(sys.argv[2], save_trainset=True)
    print("SAVED " + path, flush=True)
""")


# --------------------------------------------------------------------- helpers
def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ok(url: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def load_test(host: str, port: int, path: str, tail: str, ids: list, connections: int,
              duration: float, warmup: float) -> dict:
    """One closed-loop load level; wrk when installed, else the Python client (both separate processes)."""
    wrk = shutil.which("wrk")
    ids_s = [str(i) for i in ids]

    def once(conns: int, secs: float) -> dict:
        if wrk:
            with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
                f.write(WRK_LUA % {"ids": ",".join(json.dumps(i) for i in ids_s), "path": path, "tail": tail})
            try:
                p = subprocess.run([wrk, "-t", str(min(conns, 2)), "-c", str(conns), "-d", f"{secs:g}s",
                                    "--timeout", "10s", "-s", f.name, f"http://{host}:{port}"],
                                   capture_output=True, text=True, timeout=secs + 60)
            finally:
                os.unlink(f.name)
            tool = "wrk"
        else:
            p = subprocess.run([sys.executable, "-c", PY_CLIENT, host, str(port), path, tail, str(conns),
                                str(secs), json.dumps(ids_s)], capture_output=True, text=True,
                               timeout=secs + 60)
            tool = "python-client"
        line = next((ln for ln in p.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
        if line is None:
            raise RuntimeError(f"load generator failed: {p.stdout[-500:]} {p.stderr[-500:]}")
        r = json.loads(line[8:])
        secs_run = r["duration_us"] / 1e6
        errors = r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"]
        return {"tool": tool, "connections": conns, "seconds": round(secs_run, 2), "requests": r["requests"],
                "req_per_s": round(r["requests"] / max(secs_run, 1e-9), 1), "p50_ms": r["p50_us"] / 1000,
                "p95_ms": r["p95_us"] / 1000, "p99_ms": r["p99_us"] / 1000, "max_ms": r["max_us"] / 1000,
                "errors": errors}
    if warmup > 0:
        once(connections, warmup)
    return once(connections, duration)


# ------------------------------------------------------------------------ runs
def _synthetic_split(n_users: int, n_items: int, n_ratings: int, seed: int = 0):
    from recozoo.data.synthetic import generate
    from recozoo.splits import random_split
    table = generate(n_users=n_users, n_items=n_items, n_ratings=n_ratings, seed=seed)
    return random_split(table, f"synthetic-{n_items}", test_fraction=0.05, valid_fraction=0.05, seed=seed)


def _fit(model: str, settings: dict, split, out: Path, dataset: str, preset: str | None = None) -> Path:
    from recozoo.runs import RunConfig, fit_run
    if (out / "model.rcz").exists():
        return out
    fit_run(RunConfig(model=model, dataset=dataset, settings=settings, preset=preset), out, split=split)
    return out


def build_runs(work: Path, args) -> dict[str, tuple[Path, object]]:
    """{name: (run dir, split)} of the runs to serve (cached in ``work``)."""
    from recozoo.models.deeprec import SMALL_DATA_SETTINGS
    runs = {}
    if "deeprec-17768" in args.setups:
        n_items = 300 if args.quick else 17768
        layers = "32,32,64" if args.quick else "512,512,1024"
        split = _synthetic_split(400 if args.quick else 4000, n_items, 8000 if args.quick else 200_000)
        settings = {"layers": layers, "epochs": args.epochs, "dropout": 0.8, "mode": "user"}
        runs["deeprec-17768"] = (_fit("deeprec", settings, split, work / f"deeprec-{n_items}", split.name), split)
    if "deeprec-ml100k" in args.setups:
        from recozoo.datasets import build_split
        if args.quick:
            split = _synthetic_split(300, 200, 6000, seed=1)
        else:
            split = build_split("ml-100k", source=args.ml100k, seed=0)
        settings = {**SMALL_DATA_SETTINGS, "epochs": args.epochs, "patience": 0}
        runs["deeprec-ml100k"] = (_fit("deeprec", settings, split, work / "deeprec-ml100k",
                                       "ml-100k" if not args.quick else split.name, preset=None), split)
    return runs


def serve_and_load(run: Path, args, label: str) -> dict:
    import numpy as np
    port = _free_port()
    env = {**os.environ}
    cmd = [sys.executable, "-m", "recozoo", "serve", str(run), "--port", str(port), "--workers", str(args.workers),
           "--events", str(run / "bench-events.sqlite3")]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        _wait_ok(f"http://127.0.0.1:{port}/health")
        ids = np.load(run / "user_ids.npy").tolist()
        rng = np.random.default_rng(0)
        ids = [ids[i] for i in rng.permutation(len(ids))[:5000]]
        levels = _levels(port, "/recommend?user=", "&k=10", ids, args, label)
        return {"server": "recozoo", "command": " ".join(cmd[2:]), "levels": levels}
    finally:
        _stop(p)


def _levels(port: int, path: str, tail: str, ids: list, args, label: str) -> list[dict]:
    """Every ``--connections`` level against one server, printed as it is measured."""
    levels = []
    for c in args.connections:
        r = load_test("127.0.0.1", port, path, tail, ids, c, args.duration, args.warmup)
        levels.append(r)
        print(f"  {label:<28} c={c:<3} {r['req_per_s']:>8.1f} req/s  p50 {r['p50_ms']:6.2f}  "
              f"p95 {r['p95_ms']:6.2f}  p99 {r['p99_ms']:7.2f} ms  errors {r['errors']}", flush=True)
    return levels


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


#: what ``--cornac-python`` must import: Cornac's serving app is a Flask app, and VAECF trains with torch
CORNAC_NEEDS = ("cornac", "flask", "torch")


def check_cornac_python(py: str) -> str | None:
    """Why ``py`` cannot run the Cornac side (one line), or None when it can: checked before anything is
    fitted, so a missing or incomplete peer interpreter stops the benchmark at once instead of after the
    recozoo levels (or, for a missing file, with a traceback)."""
    if not shutil.which(py):
        return f"--cornac-python {py}: no such interpreter (docs/online.md#benchmark says how to build one)"
    probe = ("import importlib.util, sys; "
             f"print(' '.join(m for m in {CORNAC_NEEDS!r} if importlib.util.find_spec(m) is None))")
    try:
        p = subprocess.run([py, "-c", probe], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"--cornac-python {py}: cannot run it ({e})"
    missing = p.stdout.split() if p.returncode == 0 else None
    if missing is None:
        return f"--cornac-python {py}: exited {p.returncode} ({(p.stderr.strip().splitlines() or [''])[-1]})"
    if missing:
        return (f"--cornac-python {py}: cannot import {', '.join(missing)} "
                f"(pip install 'cornac>=2' flask torch into it; docs/online.md#benchmark)")
    return None


def cornac_load(split, args, label: str, work: Path) -> dict | None:
    import numpy as np
    py = args.cornac_python
    if not py:
        return None
    tr = split.train
    data = work / f"{label}-train.npz"
    np.savez(data, users=tr.user_ids.raw[tr.users], items=tr.item_ids.raw[tr.items], ratings=tr.ratings)
    mdir = work / f"cornac-{label}"
    p = subprocess.run([py, "-c", CORNAC_SERVER, str(data), str(mdir), str(args.epochs)], capture_output=True,
                       text=True, timeout=3600)
    saved = next((ln[6:] for ln in p.stdout.splitlines() if ln.startswith("SAVED ")), None)
    if saved is None:
        print(f"  cornac ({label}): training failed: {p.stderr[-400:]}", flush=True)
        return {"server": "cornac", "error": p.stderr[-400:]}
    port = _free_port()
    env = {**os.environ, "MODEL_PATH": saved, "MODEL_CLASS": "cornac.models.VAECF"}
    cmd = [py, "-m", "flask", "--app", "cornac.serving.app", "run", "--port", str(port), "--no-reload",
           "--no-debugger"]
    srv = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        ids = [str(u) for u in tr.user_ids.raw[np.unique(tr.users)][:5000].tolist()]
        _wait_ok(f"http://127.0.0.1:{port}/recommend?uid={ids[0]}&k=10")
        levels = _levels(port, "/recommend?uid=", "&k=10&remove_seen=true", ids, args, "cornac VAECF " + label)
        return {"server": "cornac", "model": "VAECF", "command": " ".join(cmd[1:]), "levels": levels}
    finally:
        _stop(srv)


def fold_in_latency(args) -> dict:
    """Median / p99 seconds of folding one 20-rating user into ALS and biased MF (17,768 items), on the
    compute threads a server on this machine would use (``recozoo serve``'s default)."""
    import numpy as np
    import scipy.sparse as sp
    from recozoo.registry import get_model
    from recozoo.serve.server import set_compute_threads
    threads = set_compute_threads(0, 1)
    n_items = 300 if args.quick else 17768
    split = _synthetic_split(400 if args.quick else 5000, n_items, 8000 if args.quick else 300_000, seed=2)
    rng = np.random.default_rng(0)
    out = {}
    for name, settings in (("als", {"iterations": 2}), ("biasedmf", {"epochs": 1})):
        m = get_model(name)(settings=settings, seed=0).fit(split.train)
        users = []
        for _ in range(args.foldin_reps):
            items = np.sort(rng.choice(n_items, 20, replace=False))
            users.append(sp.csr_matrix((rng.integers(1, 6, 20).astype(np.float32), items, [0, 20]),
                                       shape=(1, n_items)))
        for u in users[:20]:
            m.recommend_new_users(u, k=10)
        fold, top = [], []
        for u in users:
            t0 = time.perf_counter()
            m.score_new_users(u)
            t1 = time.perf_counter()
            m.recommend_new_users(u, k=10)
            t2 = time.perf_counter()
            fold.append(t1 - t0)
            top.append(t2 - t1)
        f, t = np.array(fold) * 1000, np.array(top) * 1000
        out[name] = {"threads": threads, "items": n_items, "ratings_per_user": 20, "reps": len(users),
                     "fold_in_ms_p50": round(float(np.median(f)), 3), "fold_in_ms_p99": round(float(np.quantile(f, .99)), 3),
                     "with_top10_ms_p50": round(float(np.median(t)), 3),
                     "with_top10_ms_p99": round(float(np.quantile(t, .99)), 3)}
        print(f"  fold-in {name:<9} {n_items} items: {out[name]['fold_in_ms_p50']:.3f} ms median, "
              f"{out[name]['fold_in_ms_p99']:.3f} ms p99; with top-10 {out[name]['with_top10_ms_p50']:.3f} / "
              f"{out[name]['with_top10_ms_p99']:.3f} ms", flush=True)
    return out


TARGETS = {"deeprec-17768": {8: "p99 ≤ 25 ms, ≥ 500 req/s", 32: "0 errors, p99 ≤ 100 ms"},
           "deeprec-ml100k": {8: "≥ 1,000 req/s, p99 ≤ 15 ms"}}


def tables(figures: dict) -> dict:
    """The record's tables (``render_docs.py``): load levels side by side, and fold-in latency."""
    rows = []
    for name, servers in figures.items():
        if name in ("fold_in", "settings") or not isinstance(servers, dict):
            continue
        for server, res in servers.items():
            for lv in res.get("levels", []):
                target = TARGETS.get(name, {}).get(lv["connections"], "") if server == "recozoo" else ""
                rows.append([name, server, lv["connections"], f"{lv['req_per_s']:.0f}", f"{lv['p50_ms']:.2f}",
                             f"{lv['p95_ms']:.2f}", f"{lv['p99_ms']:.2f}", lv["errors"], target])
    out = {"load": {"columns": ["run", "server", "connections", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors",
                                "target (issue 13)"], "rows": rows}}
    fold = figures.get("fold_in")
    if fold:
        out["fold_in"] = {"columns": ["model", "items", "ratings", "fold-in p50 ms", "fold-in p99 ms",
                                      "with top-10 p50 ms", "with top-10 p99 ms", "target"],
                          "rows": [[m, f["items"], f["ratings_per_user"], f["fold_in_ms_p50"], f["fold_in_ms_p99"],
                                    f["with_top10_ms_p50"], f["with_top10_ms_p99"], "≤ 2 ms"]
                                   for m, f in fold.items()]}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--setups", default="deeprec-17768,deeprec-ml100k,foldin",
                    help="comma list of deeprec-17768, deeprec-ml100k, foldin")
    ap.add_argument("--connections", default="1,8,32")
    ap.add_argument("--duration", type=float, default=15.0, help="seconds per load level")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up before each level")
    ap.add_argument("--workers", type=int, default=1, help="recozoo serve --workers")
    ap.add_argument("--epochs", type=int, default=2, help="training epochs of the served networks")
    ap.add_argument("--foldin-reps", type=int, default=300)
    ap.add_argument("--cornac-python", default=None, help="a Python with cornac and flask (side by side)")
    ap.add_argument("--ml100k", default=os.environ.get("RECOZOO_ML100K",
                                                       str(ROOT.parent / "shared" / "data" / "ml-100k")))
    ap.add_argument("--work", default=None, help="folder for the fitted runs (cached; default a temp dir)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes and loads: checks the script, measures nothing")
    add_record_option(ap)
    args = ap.parse_args(argv)
    if args.cornac_python and (why := check_cornac_python(args.cornac_python)):
        sys.stderr.write(f"bench_serve.py: error: {why}\n")
        return 2
    record = Run(__file__, argv)
    args.setups = [s.strip() for s in args.setups.split(",") if s.strip()]
    args.connections = [int(c) for c in args.connections.split(",")]
    if args.quick:
        args.duration, args.warmup, args.foldin_reps, args.epochs = min(args.duration, 1.0), 0.0, 30, 1
    t0 = time.time()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench-serve-"))
    work.mkdir(parents=True, exist_ok=True)
    figures: dict = {}
    print(f"bench_serve: load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores", flush=True)
    for name, (run_dir, split) in build_runs(work, args).items():
        figures[name] = {"recozoo": serve_and_load(run_dir, args, name)}
        c = cornac_load(split, args, name, work)
        if c is not None:
            figures[name]["cornac"] = c
    if "foldin" in args.setups:
        figures["fold_in"] = fold_in_latency(args)
    figures["settings"] = {"duration_s": args.duration, "warmup_s": args.warmup, "workers": args.workers,
                           "epochs": args.epochs, "connections": args.connections, "quick": args.quick,
                           "seconds": round(time.time() - t0, 1)}
    record.write(figures, record_path(args.record, "serve-quick" if args.quick else "serve"))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
