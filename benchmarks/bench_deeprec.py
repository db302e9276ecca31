"""DeepRec speed on CPU: training epoch (refeed 1 / 0), evaluation, memory, bf16, GFLOP/s.

The issue's reference setting: generated data of 20,000 users x 17,768 items
(1.8M train ratings, 0.2M held out), n,512,512,1024, SELU, code dropout 0.8,
one re-feeding step, batch 128, SGD momentum, lr 0.005. Every measurement runs
in its own subprocess so its peak RSS is its own. The reference implementation
is not run here; ratios are against the figures stated in the issue (47 s per
epoch ~38K ratings/s, 134 s per evaluation pass, 932 MiB peak).

    python benchmarks/bench_deeprec.py [--threads 2] [--users 20000] [--items 17768]

On a GPU (``--device cuda``) it times the issue's Netflix-full-scale epoch instead:
refeed 1 in fp32 and with AMP, refeed 0 with AMP, the dense step against a measured
matmul peak, and the epoch's FLOP count, e.g.

    python benchmarks/bench_deeprec.py --device cuda --users 477000 --ratings 100000000 \
        --cache /tmp/bench-data

``--cache`` keeps the generated split on disk, so it is generated once (minutes at
100M ratings) and every measurement's subprocess loads it (seconds).

Each run writes its record for ``benchmarks/render_docs.py`` (``--record``): the CPU table
``benchmarks/records/deeprec-cpu.json``, ``--floor-only`` ``deeprec-floor.json``, ``--plan-only``
``deeprec-plan.json``, a GPU run ``deeprec-gpu.json``.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import Run, add_record_option, record_path  # noqa: E402

REFERENCE = {"epoch_s": 47.0, "ratings_per_s": 38_000.0, "eval_s": 134.0, "peak_mib": 932.0}
#: the issue's speed-up targets against REFERENCE
TARGETS = {"refeed1": 1.6, "refeed0": 20.0, "eval": 50.0, "bf16": 2.5}
SETTINGS = {"layers": "512,512,1024", "activation": "selu", "dropout": 0.8, "refeed": 1, "batch_size": 128,
            "optimizer": "momentum", "lr": 0.005, "epochs": 1}


def data(users: int, items: int, ratings: int, seed: int, cache: str | None = None):
    """The generated split (TRAIN, TEST = 10% held out). With ``cache`` (a folder) it is generated
    once, written there (to a temporary folder, then renamed) and loaded by every later call."""
    from recozoo.data.synthetic import generate
    from recozoo.splits import random_split
    folder = Path(cache) / f"u{users}-i{items}-r{ratings}-s{seed}" if cache else None
    if folder is not None and folder.is_dir():
        import numpy as np
        from recozoo.data.table import IdMap, RatingsTable
        from recozoo.splits import Split
        uid, iid = IdMap(np.arange(1, users + 1)), IdMap(np.arange(1, items + 1))
        return Split("bench", RatingsTable.load(folder / "train", uid, iid), None,
                     RatingsTable.load(folder / "test", uid, iid))
    t = generate(n_users=users, n_items=items, n_ratings=ratings, seed=seed)
    split = random_split(t, "bench", test_fraction=0.1, valid_fraction=0.0, seed=seed)
    if folder is not None:
        tmp = folder.with_name(folder.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        split.train.save(tmp / "train")
        split.test.save(tmp / "test")
        tmp.rename(folder)
    return split


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_fit(args, overrides: dict) -> dict:
    """One subprocess job: fit ``epochs`` epochs with evaluation on the held-out ratings."""
    import torch
    torch.set_num_threads(args.threads)
    from recozoo.models.deeprec import DeepRec
    split = data(args.users, args.items, args.ratings, args.seed, args.cache)
    st = SETTINGS | {k: v for k, v in overrides.items() if k != "seed"}
    m = DeepRec(st, seed=int(overrides.get("seed", 0)), device=args.device)
    # LazySGD's wall time is its own work on the CPU only (on a GPU its calls return before the kernels run)
    opt_s = _time_optimizer() if args.device == "cpu" else [float("nan")]
    load0 = open("/proc/loadavg").read().split()[0]
    c0 = time.process_time()
    m.fit(split.train, split.test)
    cpu = time.process_time() - c0
    h = m.history_
    return {"settings": overrides, "load_before": float(load0), "fit_cpu_seconds": round(cpu, 2),
            "optimizer_seconds": round(opt_s[0], 2),
            "train_seconds": [r["train_seconds"] for r in h],
            "eval_seconds": [round(r["seconds"] - r["train_seconds"], 3) for r in h],
            "ratings_per_s": [r["ratings_per_s"] for r in h], "valid_rmse": [r["valid_rmse"] for r in h],
            "train_ratings": split.train.nnz, "held_out": split.test.nnz, "peak_mib": peak_mib(),
            "gpu_peak_mib": (torch.cuda.max_memory_allocated() / 2**20 if args.device.startswith("cuda")
                             else None)}


def _time_optimizer() -> list[float]:
    """Wall seconds spent in the optimiser (LazySGD's steps, row catch-ups and flushes), accumulated
    into the returned one-element list: the memory-bound, single-threaded part of a DeepRec epoch."""
    from recozoo.engine.lazy_sgd import LazySGD
    acc = [0.0]

    def timed(fn):
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                acc[0] += time.perf_counter() - t
        return wrapper
    for name in ("step", "sync_rows", "flush"):
        setattr(LazySGD, name, timed(getattr(LazySGD, name)))
    return acc


def run_flops(args) -> dict:
    """Achieved GFLOP/s of the dense re-feeding step vs a measured matmul peak (fp32 and bf16), with the
    engine's heap setting (recozoo.engine.heap) as in a fit."""
    from recozoo.engine.heap import heap_for_large_tensors
    with heap_for_large_tensors():
        return _run_flops(args)


def _run_flops(args) -> dict:
    import torch
    torch.set_num_threads(args.threads)
    from recozoo.models.autoencoder import AutoencoderNet
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    n, b = args.items, 128
    layers = (512, 512, 1024)
    out = {}
    for prec, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a = torch.randn(b, n, dtype=dt, device=dev)
        w = torch.randn(n, 512, dtype=dt, device=dev)
        a @ w
        sync()
        t0 = time.perf_counter()
        reps = 10 if dev.type == "cpu" else 200
        for _ in range(reps):
            a @ w
        sync()
        peak = 2 * b * n * 512 * reps / (time.perf_counter() - t0) / 1e9
        torch.manual_seed(0)
        net = AutoencoderNet(n, layers, "selu", dropout=0.8).to(dev)
        y = torch.rand(b, n, device=dev) * 4 + 1
        sizes = [n, *layers]
        # forward: every layer twice (enc+dec); backward: weight grads everywhere, input grads
        # everywhere except the first layer (y is detached) -> 3x forward minus the first layer's input grad
        fwd = 2 * sum(2 * b * sizes[i] * sizes[i + 1] for i in range(len(sizes) - 1))
        flops = 3 * fwd - 2 * b * n * 512
        ctx = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=prec == "bf16")

        def step():
            with ctx:
                loss = ((net("dense", y).float() - y) ** 2).sum()
            loss.backward()
        step()
        sync()
        t0 = time.perf_counter()
        for _ in range(reps):
            step()
        sync()
        sec = (time.perf_counter() - t0) / reps
        out[prec] = {"matmul_peak_gflops": round(peak, 1), "dense_step_ms": round(sec * 1e3, 1),
                     "dense_step_gflops": round(flops / sec / 1e9, 1), "flop_per_step": flops}
    return out


def run_plan(args, batches: int = 40, touched: int = 4800) -> dict:
    """LazySGD alone, one re-feeding batch's optimiser work on ``w_in`` (items x 512): sync + sparse
    step on ``touched`` random rows, sync-all (the dense forward), dense step — with and without the
    engine's ``next_rows`` plan. Median ms per batch and a checksum (must agree: bit-identical)."""
    import numpy as np
    import torch
    from recozoo.engine.lazy_sgd import LazySGD
    torch.set_num_threads(args.threads)
    out = {}
    for planned in (False, True, False, True):
        torch.manual_seed(args.seed)
        n, d = args.items, 512
        p = torch.nn.Parameter(torch.randn(n, d))
        opt = LazySGD([p], lr=0.005, momentum=0.9)
        rng = np.random.default_rng(args.seed)
        g = torch.randn(n, d)
        rows = [torch.from_numpy(np.unique(rng.integers(0, n, touched))) for _ in range(batches + 1)]

        def sparse_step(r):
            opt.sync_rows(p, r)
            p.grad = torch.sparse_coo_tensor(r[None], torch.ones(r.numel(), d), (n, d), is_coalesced=True)
            opt.step()
        times = []
        for b in range(batches):
            t = time.perf_counter()
            sparse_step(rows[b])
            opt.sync_rows(p, None)
            p.grad = g
            opt.next_rows = {p: rows[b + 1]} if planned else None
            opt.step()
            opt.next_rows = None
            times.append(time.perf_counter() - t)
        sparse_step(rows[batches])
        opt.flush()
        key = "planned" if planned else "unplanned"
        out.setdefault(key, []).append(round(float(np.median(times)) * 1e3, 2))
        out[key + "_checksum"] = float(p.data.double().sum())
    return out


def run_floor(args, reps: int = 2) -> dict:
    """The refeed-0 epoch's three unavoidable parts, each timed alone over one epoch's real batches
    (the benchmark's data, users shuffled, batches of 128), best of ``reps`` sweeps:

    * ``middle``: the dense middle layers (512-512-1024-512-512 with SELU and code dropout 0.8,
      forward + backward) from the first layer's output to the last hidden layer;
    * ``sparse``: the five sparse products of a sparse step (first layer ``X @ W_in`` and its weight
      gradient ``X^T @ G``; last layer at the observed entries and its two gradients), no autograd;
    * ``update``: the momentum update ``v = mu v + g; w -= lr v`` of the touched rows of both
      (items x 512) matrices, one compiled pass per row (LazySGD's own kernel with nothing to catch
      up) — the least memory traffic an exact momentum step can have.

    What a real epoch adds on top (catch-up of rows that missed steps, batching, index work, loss,
    Python/autograd glue) is not in this sum, so ``epoch_s`` bounds the achievable epoch from below."""
    import numpy as np
    import torch
    from recozoo.engine.lazy_sgd import _NOWHERE, _kernels
    from recozoo.engine.rows import RowMatrix
    from recozoo.engine.sparse_ops import CompactPattern
    _rows_kernel = _kernels()[1]
    from recozoo.models.autoencoder import AutoencoderNet
    torch.set_num_threads(args.threads)
    split = data(args.users, args.items, args.ratings, args.seed, args.cache)
    rm = RowMatrix.from_table(split.train)
    order = np.random.default_rng(args.seed).permutation(rm.n_rows)
    bs = SETTINGS["batch_size"]
    layers = tuple(int(x) for x in SETTINGS["layers"].split(","))
    batches = []
    for s in range(0, rm.n_rows, bs):
        b = rm.take(order[s:s + bs])
        batches.append((CompactPattern.from_csr(b.offsets, b.cols, rm.n_cols), b.vals))
    torch.manual_seed(args.seed)
    d = layers[0]
    net = AutoencoderNet(rm.n_cols, layers, SETTINGS["activation"], dropout=SETTINGS["dropout"])
    w_in, w_out = net.w_in.detach().clone(), net.w_out.detach().clone()
    v_in, v_out = torch.zeros_like(w_in), torch.zeros_like(w_out)
    coef = np.eye(2)[None].repeat(2, 0)
    best = {"middle": float("inf"), "sparse": float("inf"), "update": float("inf")}
    for _ in range(reps):
        t = {"middle": 0.0, "sparse": 0.0, "update": 0.0}
        for p, vals in batches:
            h0 = torch.randn(p.n_rows, d, requires_grad=True)
            t0 = time.perf_counter()
            net._body(h0).square().sum().backward()
            t["middle"] += time.perf_counter() - t0
            with torch.no_grad():
                g_out = torch.randn(p.col.shape[0])
                t0 = time.perf_counter()
                h = torch.sparse.mm(p.matrix(vals), w_in)
                g_in = torch.sparse.mm(p.matrix_t(vals), h)
                zero = p.matrix(torch.zeros(p.col.shape[0]))
                torch.sparse.sampled_addmm(zero, h, w_out.t())
                torch.sparse.mm(p.matrix(g_out), w_out)
                g_w = torch.sparse.mm(p.matrix_t(g_out), h)
                t["sparse"] += time.perf_counter() - t0
                rows = p.cols_global.numpy()
                t0 = time.perf_counter()
                for w, v, g in ((w_in, v_in, g_in), (w_out, v_out, g_w)):
                    last = np.zeros(w.shape[0], dtype=np.int64)       # every row current: no catch-up
                    _rows_kernel(w.numpy(), v.numpy(), last, rows, coef, 0, g.numpy(), 1e-7, 0.9, 0.0, _NOWHERE)
                t["update"] += time.perf_counter() - t0
        best = {k: min(best[k], t[k]) for k in best}
    touched = float(np.mean([p.n_local for p, _ in batches]))
    return {k: round(v, 3) for k, v in best.items()} | {
        "epoch_s": round(sum(best.values()), 3), "batches": len(batches), "sweeps": reps,
        "touched_rows_per_batch": round(touched)}


def print_floor(fl: dict, peak_gflops: float | None, users: int, measured: float | None) -> None:
    mid = [int(x) for x in SETTINGS["layers"].split(",")]       # encoder and mirrored decoder, fwd + bwd
    flop = 3 * 2 * 2 * sum(mid[i] * mid[i + 1] for i in range(len(mid) - 1)) * users
    ref = REFERENCE["epoch_s"]
    print(f"refeed-0 epoch, its parts alone (best of {fl['sweeps']} sweeps over {fl['batches']} batches, "
          f"{fl['touched_rows_per_batch']:,} touched rows of each matrix per batch):")
    print(f"  middle layers forward + backward {fl['middle']:.2f} s ({flop / 1e9:.0f} GFLOP"
          + (f"; {flop / peak_gflops / 1e9:.2f} s at the measured {peak_gflops} GFLOP/s peak" if peak_gflops else "")
          + ")")
    print(f"  sparse products (first layer, last layer at observed entries, their gradients) {fl['sparse']:.2f} s")
    print(f"  momentum update of the touched rows of both matrices, nothing to catch up {fl['update']:.2f} s")
    print(f"  sum {fl['epoch_s']:.2f} s = at most {ref / fl['epoch_s']:.1f}x the reference's {ref:.0f} s; "
          f"20x needs {ref / 20:.2f} s" + (f"; the full epoch measured {measured:.2f} s" if measured else ""))


def child(args) -> None:
    job = json.loads(args.job)
    kind = job.get("kind")
    runners = {"flops": run_flops, "plan": run_plan, "floor": run_floor}
    res = runners[kind](args) if kind in runners else run_fit(args, job["overrides"])
    print("RESULT " + json.dumps(res))


def spawn(args, job: dict) -> dict:
    cmd = [sys.executable, __file__, "--child", json.dumps(job), "--threads", str(args.threads),
           "--users", str(args.users), "--items", str(args.items), "--ratings", str(args.ratings),
           "--seed", str(args.seed), "--device", args.device] + (["--cache", args.cache] if args.cache else [])
    p = subprocess.run(cmd, capture_output=True, text=True)
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"benchmark job failed: {p.stderr[-2000:]}")


def print_flops(fl: dict) -> None:
    print("| dense re-feeding step (batch 128) | ms | achieved GFLOP/s | matmul peak GFLOP/s | share of peak |")
    print("|---|---|---|---|---|")
    for prec, r in fl.items():
        print(f"| {prec} | {r['dense_step_ms']} | {r['dense_step_gflops']} | {r['matmul_peak_gflops']} | "
              f"{r['dense_step_gflops'] / r['matmul_peak_gflops']:.0%} |")


def epoch_flop(users: int, items: int, train_ratings: int) -> tuple[float, float]:
    """FLOP of one re-feeding epoch (refeed 1): (as the reference computes it — both steps dense, the
    issue's ~1.1e14 at Netflix-full scale —, as recozoo computes it — the first step on the observed
    ratings only, then the dense output y = f(x) from its hidden layer, then the dense step)."""
    mid = [int(x) for x in SETTINGS["layers"].split(",")]
    m_mid = 2 * sum(mid[i] * mid[i + 1] for i in range(len(mid) - 1))   # MACs per row: encoder + mirrored decoder
    n_d = items * mid[0]                                                # MACs per row: first or last layer
    dense_step = 2 * (3 * (2 * n_d + m_mid) - n_d)      # FLOP per row: forward + backward, no input grad at layer 1
    sparse_step = 2 * 3 * m_mid * users + 2 * 3 * 2 * mid[0] * train_ratings
    dense_output = 2 * n_d * users                      # y = f(x): the last layer densely, once per row
    return float(2 * dense_step * users), float(sparse_step + dense_output + dense_step * users)


def gpu_main(args) -> dict:
    """The issue's GPU measurement: seconds per epoch at (by default the given) scale with AMP."""
    print(f"generator: recozoo.data.synthetic.generate(n_users={args.users}, n_items={args.items}, "
          f"n_ratings={args.ratings}, seed={args.seed}) + random_split(test_fraction=0.1, seed={args.seed}); "
          f"device {args.device}, AMP {args.amp}")
    print(f"settings: {SETTINGS}")
    t0 = time.perf_counter()
    if args.cache:
        data(args.users, args.items, args.ratings, args.seed, args.cache)
        print(f"data generated or loaded into {args.cache} in {time.perf_counter() - t0:.1f} s")
    jobs = [("refeed 1, fp32", {}), (f"refeed 1, {args.amp}", {"precision": args.amp}),
            (f"refeed 0, {args.amp}", {"refeed": 0, "precision": args.amp})]
    res = [(name, spawn(args, {"overrides": ov})) for name, ov in jobs]
    fl = spawn(args, {"kind": "flops"})
    ref_flop, our_flop = epoch_flop(args.users, args.items, res[0][1]["train_ratings"])
    print(f"data: {res[0][1]['train_ratings']} train ratings, {res[0][1]['held_out']} held out")
    print(f"FLOP per refeed-1 epoch: {ref_flop:.3g} with both steps dense (the reference's way; the issue's "
          f"~1.1e14 at Netflix-full scale), {our_flop:.3g} as recozoo computes it")
    print()
    print("| measurement | s/epoch | ratings/s | TFLOP/s (recozoo's FLOP) | eval s | GPU peak MiB | held-out RMSE |")
    print("|---|---|---|---|---|---|---|")
    for name, r in res:
        s = r["train_seconds"][0]
        tf = f"{our_flop / s / 1e12:.1f}" if name.startswith("refeed 1") else "—"
        mib = "—" if r["gpu_peak_mib"] is None else f"{r['gpu_peak_mib']:.0f}"
        print(f"| train epoch, {name} | {s:.2f} | {r['ratings_per_s'][0]:,.0f} | {tf} | {r['eval_seconds'][0]:.2f} "
              f"| {mib} | {r['valid_rmse'][0]:.4f} |")
    print()
    print_flops(fl)
    print(f"total wall time {time.perf_counter() - t0:.0f} s")
    return {"mode": "gpu", "device": args.device, "amp": args.amp, "users": args.users, "items": args.items,
            "ratings": args.ratings, "settings": SETTINGS, "jobs": res, "flops": fl,
            "epoch_flop": {"reference": ref_flop, "recozoo": our_flop}, "total_s": time.perf_counter() - t0}


def _met(x: float, target: float) -> str:
    return f">= {target:g}x: {'met' if x >= target else 'missed'}"


def floor_table(fl: dict, peak_gflops: float | None, users: int) -> dict:
    mid = [int(x) for x in SETTINGS["layers"].split(",")]
    flop = 3 * 2 * 2 * sum(mid[i] * mid[i + 1] for i in range(len(mid) - 1)) * users
    at_peak = f"; {flop / peak_gflops / 1e9:.2f} s at the measured matmul peak" if peak_gflops else ""
    dims = "-".join(map(str, mid + mid[-2::-1]))
    ref = REFERENCE["epoch_s"]
    return {"columns": ["part, alone", "seconds per epoch"], "rows": [
        [f"dense middle layers {dims}, SELU, code dropout, forward + backward ({flop / 1e9:.0f} GFLOP{at_peak})",
         f"{fl['middle']:.2f}"],
        ["the five sparse products of a sparse step (first layer `X @ W_in` and `X^T @ G`; last layer at the "
         "observed entries and its two gradients; torch's CSR kernels, no autograd)", f"{fl['sparse']:.2f}"],
        ["the momentum update `v = μv + g; w -= lr·v` of the touched rows of both matrices, one compiled pass per "
         "row, nothing to catch up — the least memory traffic an exact momentum step has", f"{fl['update']:.2f}"],
        ["**sum**", f"**{fl['epoch_s']:.2f} = at most {ref / fl['epoch_s']:.1f}x the reference's {ref:.0f} s**"]]}


def dense_step_table(fl: dict) -> dict:
    return {"columns": ["dense re-feeding step (batch 128)", "ms", "achieved GFLOP/s", "matmul peak GFLOP/s",
                        "share of peak"],
            "rows": [[prec, f"{r['dense_step_ms']}", f"{r['dense_step_gflops']}", f"{r['matmul_peak_gflops']}",
                      f"{r['dense_step_gflops'] / r['matmul_peak_gflops']:.0%}"] for prec, r in fl.items()]}


def tables(figures: dict) -> dict:
    """The record's tables (``render_docs.py``), by mode: the CPU table (``speed``, ``floor``,
    ``dense-step``, ``bf16``), the floor alone, the optimiser plan, or the GPU table."""
    mode, ref = figures["mode"], REFERENCE
    if mode == "floor":
        return {"floor": floor_table(figures["floor"], None, figures["users"])}
    if mode == "plan":
        r = figures["plan"]
        return {"plan": {"columns": ["LazySGD per re-feeding batch", "ms (two runs)", "checksum"], "rows": [
            ["without the next-rows plan", " / ".join(map(str, r["unplanned"])), f"{r['unplanned_checksum']:.6f}"],
            ["with the plan", " / ".join(map(str, r["planned"])), f"{r['planned_checksum']:.6f}"]]}}
    if mode == "gpu":
        rows = []
        for name, r in figures["jobs"]:
            sec = r["train_seconds"][0]
            tf = f"{figures['epoch_flop']['recozoo'] / sec / 1e12:.1f}" if name.startswith("refeed 1") else "—"
            mib = "—" if r["gpu_peak_mib"] is None else f"{r['gpu_peak_mib']:.0f}"
            rows.append([f"train epoch, {name}", f"{sec:.2f}", f"{r['ratings_per_s'][0]:,.0f}", tf,
                         f"{r['eval_seconds'][0]:.2f}", mib, f"{r['valid_rmse'][0]:.4f}"])
        return {"gpu": {"columns": ["measurement", "s/epoch", "ratings/s", "TFLOP/s (recozoo's FLOP)", "eval s",
                                    "GPU peak MiB", "held-out RMSE"], "rows": rows},
                "dense-step": dense_step_table(figures["flops"])}
    r1, r0, f32, b16 = figures["refeed1"], figures["refeed0"], figures["fp32"], figures["bf16"]
    e = figures["bf16_epochs"]
    t16, t32 = sum(b16["train_seconds"]) / e, sum(f32["train_seconds"]) / e
    diffs = figures["bf16_minus_fp32"]
    ev = r1["eval_seconds"][0]
    speed = [
        ["train epoch, refeed 1, fp32", f"{r1['train_seconds'][0]:.2f}", f"{ref['epoch_s'] / r1['train_seconds'][0]:.1f}x",
         _met(ref["epoch_s"] / r1["train_seconds"][0], TARGETS["refeed1"]), f"{r1['optimizer_seconds']:.2f} s",
         f"{r1['peak_mib']:.0f}"],
        ["train epoch, refeed 0, fp32", f"{r0['train_seconds'][0]:.2f}", f"{ref['epoch_s'] / r0['train_seconds'][0]:.1f}x",
         _met(ref["epoch_s"] / r0["train_seconds"][0], TARGETS["refeed0"]), f"{r0['optimizer_seconds']:.2f} s",
         f"{r0['peak_mib']:.0f}"],
        [f"evaluation pass ({r1['held_out'] / 1000:.0f}K held out), fp32", f"{ev:.2f}", f"{ref['eval_s'] / ev:.0f}x",
         _met(ref["eval_s"] / ev, TARGETS["eval"]), "—", f"{r1['peak_mib']:.0f}"],
        [f"train epoch, refeed 1, bf16 autocast" + (f" (mean of {e})" if e > 1 else ""), f"{t16:.2f}",
         f"{ref['epoch_s'] / t16:.1f}x",
         _met(ref["epoch_s"] / t16, TARGETS["bf16"]) + f" (held-out RMSE {diffs[0]:+.4f} vs fp32, seed 0)",
         f"{b16['optimizer_seconds']:.2f} s", f"{b16['peak_mib']:.0f}"]]
    if e > 1:
        speed.insert(3, [f"train epoch, refeed 1, fp32 (mean of {e})", f"{t32:.2f}", f"{ref['epoch_s'] / t32:.1f}x",
                         _met(ref["epoch_s"] / t32, TARGETS["refeed1"]), f"{f32['optimizer_seconds']:.2f} s",
                         f"{f32['peak_mib']:.0f}"])
    return {"speed": {"columns": ["measurement", "seconds", "vs issue's reference", "issue's target",
                                  "of which optimiser (LazySGD)", "peak RSS MiB"], "rows": speed},
            "floor": floor_table(figures["floor"], figures["flops"]["fp32"]["matmul_peak_gflops"], figures["users"]),
            "dense-step": dense_step_table(figures["flops"]),
            "bf16": {"columns": ["seed", "held-out RMSE fp32", "held-out RMSE bf16", "bf16 − fp32"],
                     "rows": [[str(sd), f"{a:.4f}", f"{b:.4f}", f"{b - a:+.4f}"]
                              for sd, (a, b) in enumerate(figures["bf16_pairs"])]}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--items", type=int, default=17_768)
    ap.add_argument("--ratings", type=int, default=2_000_000, help="train + held out")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bf16-epochs", type=int, default=1, help="epochs of the fp32-vs-bf16 comparison")
    ap.add_argument("--bf16-seeds", type=int, default=1,
                    help="seeds of the fp32-vs-bf16 RMSE comparison (the difference is reported per seed)")
    ap.add_argument("--device", default="cpu",
                    help="cpu (the issue's CPU table) or cuda / cuda:N (the Netflix-full-scale GPU table)")
    ap.add_argument("--amp", default="bf16", choices=["bf16", "fp16"], help="GPU mixed precision to time")
    ap.add_argument("--cache", default=None,
                    help="folder that keeps the generated split between the measurements' subprocesses")
    ap.add_argument("--child", dest="job", default=None, help=argparse.SUPPRESS)
    add_record_option(ap)
    ap.add_argument("--plan-only", action="store_true",
                    help="only time LazySGD's per-batch work on w_in with and without the next-rows plan")
    ap.add_argument("--floor-only", action="store_true",
                    help="only time the refeed-0 epoch's unavoidable parts alone (middle layers, sparse "
                         "products, the momentum update of the touched rows)")
    args = ap.parse_args()
    if args.job:
        return child(args)
    run = Run(__file__)
    scale = {"users": args.users, "items": args.items, "ratings": args.ratings, "seed": args.seed,
             "threads": args.threads}
    if args.device != "cpu":
        run.write(gpu_main(args), record_path(args.record, "deeprec-gpu"))
        return
    if args.floor_only:
        fl = spawn(args, {"kind": "floor"})
        print_floor(fl, None, args.users, None)
        run.write({"mode": "floor", **scale, "floor": fl}, record_path(args.record, "deeprec-floor"))
        return
    if args.plan_only:
        r = spawn(args, {"kind": "plan"})
        print(f"LazySGD per re-feeding batch, w_in {args.items} x 512, 4,800 touched rows, {args.threads} "
              f"thread(s): unplanned {r['unplanned']} ms, planned {r['planned']} ms (two runs each); "
              f"checksums {r['unplanned_checksum']:.6f} / {r['planned_checksum']:.6f}")
        run.write({"mode": "plan", **scale, "plan": r}, record_path(args.record, "deeprec-plan"))
        return
    print(f"generator: recozoo.data.synthetic.generate(n_users={args.users}, n_items={args.items}, "
          f"n_ratings={args.ratings}, seed={args.seed}) + random_split(test_fraction=0.1, seed={args.seed}); "
          f"torch threads={args.threads}")
    print(f"settings: {SETTINGS}")
    print(f"load average before: {open('/proc/loadavg').read().split()[:3]} on {__import__('os').cpu_count()} cores")
    rows = []
    r1 = spawn(args, {"overrides": {}})
    r0 = spawn(args, {"overrides": {"refeed": 0}})
    e = args.bf16_epochs
    f32 = r1 if e == 1 else spawn(args, {"overrides": {"epochs": e}})
    b16 = spawn(args, {"overrides": {"epochs": e, "precision": "bf16"}})
    pairs = [(f32, b16)] + [(spawn(args, {"overrides": {"epochs": e, "seed": sd}}),
                             spawn(args, {"overrides": {"epochs": e, "precision": "bf16", "seed": sd}}))
                            for sd in range(1, args.bf16_seeds)]
    fl = spawn(args, {"kind": "flops"})
    ref = REFERENCE
    print(f"data: {r1['train_ratings']} train ratings, {r1['held_out']} held out")
    rows.append((f"train epoch, refeed 1, fp32 (optimiser {r1['optimizer_seconds']:.2f} s)", r1["train_seconds"][0],
                 r1["ratings_per_s"][0], ref["epoch_s"] / r1["train_seconds"][0], r1["peak_mib"]))
    rows.append((f"train epoch, refeed 0, fp32 (optimiser {r0['optimizer_seconds']:.2f} s)", r0["train_seconds"][0],
                 r0["ratings_per_s"][0], ref["epoch_s"] / r0["train_seconds"][0], r0["peak_mib"]))
    rows.append(("evaluation pass (held out), fp32", r1["eval_seconds"][0], r1["held_out"] / r1["eval_seconds"][0],
                 ref["eval_s"] / r1["eval_seconds"][0], r1["peak_mib"]))
    t32 = sum(f32["train_seconds"]) / e
    t16 = sum(b16["train_seconds"]) / e
    rows.append((f"train epoch, refeed 1, fp32 (mean of {e})", t32, r1["train_ratings"] / t32, ref["epoch_s"] / t32,
                 f32["peak_mib"]))
    rows.append((f"train epoch, refeed 1, bf16 (mean of {e})", t16, r1["train_ratings"] / t16, ref["epoch_s"] / t16,
                 b16["peak_mib"]))
    print()
    print("| measurement | seconds | ratings/s | x reference (issue's figure) | peak RSS MiB |")
    print("|---|---|---|---|---|")
    for name, s, rps, x, mib in rows:
        print(f"| {name} | {s:.2f} | {rps:,.0f} | {x:.1f}x | {mib:.0f} |")
    print()
    diffs = []
    for sd, (a, b) in enumerate(pairs):
        diffs.append(b["valid_rmse"][-1] - a["valid_rmse"][-1])
        print(f"seed {sd}: held-out RMSE after {e} epochs: fp32 {a['valid_rmse'][-1]:.4f}, "
              f"bf16 {b['valid_rmse'][-1]:.4f} (difference {diffs[-1]:+.4f})")
    if len(diffs) > 1:
        print(f"bf16 - fp32 over {len(diffs)} seeds: mean {sum(diffs) / len(diffs):+.4f}, "
              f"max |difference| {max(abs(d) for d in diffs):.4f}")
    print("load average at the start of each fit: " +
          ", ".join(f"{r['load_before']:.2f}" for r in (r1, r0, b16)))
    print()
    print_flops(fl)
    floor = spawn(args, {"kind": "floor"})
    print_floor(floor, fl["fp32"]["matmul_peak_gflops"], args.users, r0["train_seconds"][0])
    print()
    print(f"load average after: {open('/proc/loadavg').read().split()[:3]}")
    print("reference figures (issue 3, not re-measured here): epoch 47 s (~38K ratings/s), "
          "evaluation 134 s, peak 932 MiB")
    run.write({"mode": "cpu", **scale, "settings": SETTINGS, "refeed1": r1, "refeed0": r0, "fp32": f32, "bf16": b16,
               "bf16_epochs": e, "bf16_pairs": [[a["valid_rmse"][-1], b["valid_rmse"][-1]] for a, b in pairs],
               "bf16_minus_fp32": diffs, "flops": fl, "floor": floor}, record_path(args.record, "deeprec-cpu"))


if __name__ == "__main__":
    main()
