"""Implicit feedback (issue 16): Mult-VAE's sparse first layer at ML-20M size, and every model's NDCG@100.

Speed — one ``mult-vae`` epoch with the sparse first layer against the same network with a
dense input layer (each batch densified and multiplied, as the authors' TensorFlow code
does), side by side in one run; EASE's fit and the ranking of the held-out users beside them::

    python benchmarks/bench_implicit.py speed [--scale 1.0] [--item-scale 1.0] [--epochs 1] [--repeats 1]
        [--threads 1] [--no-ease]

The data is ``synthetic-implicit`` at ML-20M's size: 136,677 users x 20,720 items and 20M
generated ratings, half of them above the 3.5 threshold (~10M interactions), strong
generalisation with N scaled to the users. ``--scale`` multiplies the users and the ratings
(an epoch's work scales with it; a batch of 500 users looks the same), ``--item-scale`` the
items (the first layer's width: what the dense layer pays for). Both are in the record.

Accuracy — every implicit model on the strong-generalisation split of MovieLens 100K through
``compare`` (held-out users through their fold-in, NDCG@100 and Recall@20/50 as in
PROTOCOLS.md rule 6), then paired bootstrap intervals over TEST users of each autoencoder's
NDCG@100 gap to each baseline of :data:`BASELINES` that ran::

    python benchmarks/bench_implicit.py accuracy [--dataset ml-100k-implicit] [--source DIR]
        [--protocol strong] [--data-param NAME=VALUE]
        [--models pop,itemknn,bpr,ease,mult-dae,mult-vae,deeprec] [--seeds 0] [--set MODEL.NAME=VALUE]
        [--budget 5m] [--tune-trials N]

``--protocol`` makes ``--dataset`` a name for one's own data: ``--source`` split by that protocol
with the ``--data-param`` parameters, registered exactly as ``recozoo data prepare NAME --source DIR
--protocol P --data-param ...`` does (e.g. the Netflix sample binarised at 3.5, strong
generalisation: ``--dataset netflix-sample-implicit --source .../netflix-sample --protocol strong
--data-param threshold=3.5``). Without it, ``--data-param`` overrides a built-in dataset's parameters.

With ``--budget`` / ``--tune-trials`` each model is first tuned on VALID (``compare --tune``:
``recozoo tune`` per model on VALID NDCG@100, then a fit with the best settings refitted on
TRAIN ∪ VALID and TEST scored once); the fixed settings are then :data:`TUNED_SETS` (the epochs
and batches that fit the budget; Mult-VAE/-DAE keep their VALID-best epoch), and the record is
``implicit-tuned-DATASET.json``. A model with nothing to tune (``pop``) runs as given.

Records: ``benchmarks/records/implicit-speed.json`` / ``implicit-accuracy-DATASET.json``
(``--record`` elsewhere); ``benchmarks/render_docs.py`` renders them into docs/implicit.md.
Run by hand; nothing here is a test.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from recozoo.errors import RecozooError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import Run, add_record_option, record_path  # noqa: E402

ML20M = {"n_users": 136_677, "n_items": 20_720, "n_ratings": 20_000_000}
#: the autoencoders, and the baselines their NDCG@100 gaps are measured against
AUTOENCODERS = ("mult-vae", "mult-dae", "deeprec")
BASELINES = ("pop", "itemknn", "bpr", "ease")
#: settings of the accuracy run (the paper's for Mult-VAE/-DAE are the defaults). DeepRec gets Mult-VAE's
#: network, optimiser and batches, user rows, no weight decay and no bias baseline, every epoch scored on
#: VALID without early stopping: pinned here, since its ``auto`` defaults follow the data's shape.
DEFAULT_SETS = ["deeprec.loss=multinomial", "deeprec.refeed=0", "deeprec.optimizer=adam", "deeprec.lr=0.001",
                "deeprec.layers=600,200", "deeprec.activation=tanh", "deeprec.dropout=0.5",
                "deeprec.batch_size=500", "deeprec.epochs=200", "deeprec.mode=user", "deeprec.weight_decay=0",
                "deeprec.eval_every=1", "deeprec.patience=0", "deeprec.baseline=none",
                "bpr.factors=64", "bpr.iterations=100", "itemknn.neighbours=100"]

#: fixed settings of the tuned run (``--budget``): whatever is not fixed here is searched on VALID.
#: Batches of 100 users (8 updates per epoch on ML-100K's ~750 training users instead of 2) and 60
#: epochs, the epoch kept by VALID NDCG@100; β anneals over the whole run, up to the tuned cap.
TUNED_SETS = ["mult-vae.batch_size=100", "mult-vae.epochs=60", "mult-vae.total_anneal_steps=480",
              "mult-dae.batch_size=100", "mult-dae.epochs=60"]


def _speed_split(scale: float, item_scale: float):
    from recozoo.datasets import build_split
    params = {"n_users": str(round(ML20M["n_users"] * scale)),
              "n_items": str(round(ML20M["n_items"] * item_scale)),
              "n_ratings": str(round(ML20M["n_ratings"] * scale))}
    t0 = time.perf_counter()
    split = build_split("synthetic-implicit", params=params)
    return split, params, time.perf_counter() - t0


def _vae_epochs(split, first_layer: str, epochs: int):
    from recozoo.models.multvae import MultVAE
    m = MultVAE({"epochs": epochs, "first_layer": first_layer}, seed=0)
    t0 = time.perf_counter()
    m.fit(split.train)
    return m, {"first_layer": first_layer, "epoch_seconds": [r["train_seconds"] for r in m.history_],
               "fit_seconds": round(time.perf_counter() - t0, 2)}


def _batch_phases(n_items: int, reps: int = 3) -> list[dict]:
    """Seconds of one batch's forward, backward and Adam step (best of ``reps``), per first layer, on
    500 users with ML-20M's mean of 73 interactions over ``n_items`` items: where an epoch goes."""
    import scipy.sparse as sp
    import torch
    from recozoo.engine import RowMatrix
    from recozoo.models.multvae import MultTask, MultVAESettings
    X = sp.random(500, n_items, density=min(1.0, 73 / n_items), format="csr", random_state=0, dtype=np.float32)
    batch = RowMatrix(X.indptr, X.indices, np.ones(X.nnz, np.float32), n_items).take(np.arange(500))
    runs = {}
    for layer in ("sparse", "dense"):
        task = MultTask(n_items, MultVAESettings(first_layer=layer), True)
        torch.manual_seed(0)
        net = task.build_module()
        runs[layer] = (task, net, task.make_optimizers(net)["main"],
                       {"forward": np.inf, "backward": np.inf, "adam": np.inf})
    for _ in range(reps):                 # the two layers alternate: a shared machine's load hits both
        for task, net, opt, best in runs.values():
            t0 = time.perf_counter()
            loss = next(task.train_losses(net, batch))
            t1 = time.perf_counter()
            opt.zero_grad()
            loss.sse.backward()
            t2 = time.perf_counter()
            opt.step()
            t3 = time.perf_counter()
            for k, v in (("forward", t1 - t0), ("backward", t2 - t1), ("adam", t3 - t2)):
                best[k] = min(best[k], v)
    return [{"first_layer": layer, **{k: round(v, 3) for k, v in r[3].items()}} for layer, r in runs.items()]


def speed(args) -> dict:
    import torch
    from recozoo.rank_eval import rank_part
    from recozoo.registry import get_model
    torch.set_num_threads(args.threads)
    split, params, gen_s = _speed_split(args.scale, args.item_scale)
    out = {"scale": args.scale, "item_scale": args.item_scale, "generator": params, "threads": args.threads,
           "data_seconds": round(gen_s, 1), "train": split.train.describe(),
           "heldout_users": split.info["heldout_users"], "rows": []}
    sparse_model, rows = None, {}
    for rep in range(args.repeats):       # fresh fits, the two layers alternating (the load hits both)
        for layer in ("sparse", "dense"):
            m, row = _vae_epochs(split, layer, args.epochs)
            sparse_model = sparse_model or m
            if layer in rows:
                rows[layer]["epoch_seconds"] += row["epoch_seconds"]
                rows[layer]["fit_seconds"] = min(rows[layer]["fit_seconds"], row["fit_seconds"])
            else:
                rows[layer] = row
            print(f"mult-vae {layer}, fit {rep + 1}: epochs {row['epoch_seconds']} s", file=sys.stderr)
    out["rows"] = list(rows.values())
    s, d = (min(r["epoch_seconds"]) for r in out["rows"])
    out["speedup"] = round(d / s, 2)
    out["batch_phases"] = _batch_phases(split.train.n_items)
    ranked = rank_part(sparse_model, split, "test", ks=(100,))
    out["rank_test"] = {"users": ranked.summary["n_users"], "seconds": round(ranked.summary["recommend_seconds"], 3)}
    if args.ease:
        t0 = time.perf_counter()
        get_model("ease")(seed=0).fit(split.train)
        out["ease_fit_seconds"] = round(time.perf_counter() - t0, 2)
    return out


def _per_user(folder: Path, run_dirs: list[str], metric: str) -> np.ndarray:
    """A model's per-user TEST values of ``metric``, averaged over its seeds (compare's files)."""
    vals = []
    for d in run_dirs:
        with np.load(folder / d / "test_ranking.npz", allow_pickle=False) as z:
            vals.append(z[metric])
    return np.mean(vals, axis=0)


def _gaps(folder: Path, recs: dict[str, list[str]], metric: str) -> list[dict]:
    """Each autoencoder's ``metric`` minus each baseline's, with a paired 95% bootstrap interval."""
    from recozoo.compare.stats import paired_bootstrap
    out = []
    for ae in (a for a in AUTOENCODERS if a in recs):
        mine = _per_user(folder, recs[ae], metric)
        base = {b: _per_user(folder, recs[b], metric) for b in BASELINES if b in recs}
        for b, res in paired_bootstrap(mine, base, seed=0, root=False).items():
            # paired_bootstrap reports other − best; here "best" is the autoencoder: flip the sign
            out.append({"model": ae, "vs": b, "estimate": -res["estimate"], "ci_low": -res["ci_high"],
                        "ci_high": -res["ci_low"]})
    return out


def _split_counts(cfg) -> dict:
    """What the models were ranked on: TRAIN's counts, the held-out N, TEST's scored users and entries."""
    from recozoo.datasets import load_split
    split = load_split(cfg.dataset, cfg.source, cfg.split_seed, cfg.data_params, remember=False)
    out = {"train": split.train.describe(), "test": split.test.describe(),
           "heldout_users": split.info.get("heldout_users")}
    if split.test_fold_in is not None:
        out["test_fold_in"] = split.test_fold_in.describe()
    return out


def accuracy(args) -> dict:
    from recozoo.compare.config import build_config
    from recozoo.compare.runner import run_compare
    from recozoo.compare.store import ResultsStore
    from recozoo.compare.table import build_leaderboard, to_json
    from recozoo.compare.config import TuneSpec
    from recozoo.tune.config import parse_budget
    names = {m.strip() for m in args.models.split(",")}
    tuning = args.budget is not None or args.tune_trials is not None
    sets = [x for x in (TUNED_SETS if tuning else DEFAULT_SETS) if x.split(".")[0] in names] + (args.set or [])
    from recozoo.settings import parse_assignments
    tune = TuneSpec(budget=parse_budget(args.budget), trials=args.tune_trials) if tuning else None
    params = parse_assignments(args.data_param)
    source = args.source
    if args.protocol is not None:
        from recozoo.datasets import register_protocol_dataset
        if source is None:
            raise RecozooError("--protocol needs --source DIR (the ratings file or folder to split)")
        register_protocol_dataset(args.dataset, source, args.protocol, params=params)
        source, params = None, {}       # the registered record holds both from here on
    cfg = build_config(dataset=args.dataset, models=args.models, seeds=args.seeds, sets=sets,
                       source=source, data_params=params,
                       metrics="ndcg@100,recall@20,recall@50,recall_std@20", tune=tune)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.out or tmp)
        t0 = time.perf_counter()
        run_compare(cfg, folder, progress=False)
        board = to_json(build_leaderboard(folder))
        recs: dict[str, list[str]] = {}
        for rec in ResultsStore(folder).records():
            recs.setdefault(rec["model"], []).append(rec["run_dir"])
        gaps = _gaps(folder, recs, "ndcg@100")
    out = {"dataset": args.dataset, "seeds": args.seeds, "sets": sets, "leaderboard": board, "gaps": gaps,
           "seconds": round(time.perf_counter() - t0, 1), "split": _split_counts(cfg)}
    if args.protocol is not None or args.data_param:
        out["data"] = {"protocol": args.protocol, "params": parse_assignments(args.data_param)}
    if tuning:
        out["tune"] = {"budget": args.budget, "trials": args.tune_trials}
    return out


def _speed_table(f: dict) -> dict:
    rows = [[r["first_layer"], f"{min(r['epoch_seconds']):.1f} (best of {len(r['epoch_seconds'])})",
             f"{r['fit_seconds']:.1f}"] for r in f["rows"]]
    rows.append(["dense / sparse", f"{f['speedup']:.2f}x", ""])
    if "ease_fit_seconds" in f:
        rows.append(["EASE fit (same data)", "", f"{f['ease_fit_seconds']:.1f}"])
    rows.append([f"ranking {f['rank_test']['users']} TEST users, top-100", "", f"{f['rank_test']['seconds']:.2f}"])
    for p in f.get("batch_phases", []):
        rows.append([f"one batch, {p['first_layer']}: forward / backward / Adam",
                     f"{p['forward']:.2f} / {p['backward']:.2f} / {p['adam']:.2f}", ""])
    return {"columns": ["mult-vae first layer", "seconds per epoch", "whole fit (s)"], "rows": rows,
            "notes": [f"synthetic-implicit x{f['scale']} users and ratings, x{f['item_scale']} items: "
                      f"{f['train']['users']} training users, {f['train']['items']} items, "
                      f"{f['train']['ratings']} interactions; {f['threads']} torch threads"]}


def _accuracy_table(f: dict) -> dict:
    rows, tuned = [], "tune" in f
    for r in f["leaderboard"]["rows"]:
        row = [r["model"]] + [f"{r.get(f'test_{m}_mean'):.4f}" if r.get(f"test_{m}_mean") is not None
                              else "" for m in ("ndcg@100", "recall@20", "recall@50", "recall_std@20")]
        if tuned:
            row += [str(r["tune_trials"]) if r.get("tune_trials") is not None else "not tuned",
                    f"{r['tune_best_valid']:.4f}" if r.get("tune_best_valid") is not None else ""]
        rows.append(row)
    cols = ["model", "NDCG@100", "Recall@20", "Recall@50", "recall_std@20"]
    notes = [_data_note(f)] if "split" in f else []
    if not tuned:
        return {"columns": cols, "rows": rows, "notes": notes}
    t = f["tune"]
    budget = ", ".join(x for x in (f"{t['budget']} per model" if t["budget"] else "",
                                   f"at most {t['trials']} trials" if t["trials"] else "") if x)
    return {"columns": cols + ["tune trials", "best VALID NDCG@100"], "rows": rows,
            "notes": notes + [f"each model tuned on VALID NDCG@100 ({budget}; Optuna TPE), then fitted with the "
                              f"best settings, refitted on TRAIN + VALID and scored on TEST once; fixed: "
                              f"{', '.join(f['sets']) or 'nothing'}"]}


def _data_note(f: dict) -> str:
    s, data = f["split"], f.get("data") or {}
    made = ""
    if data.get("protocol"):
        params = ", ".join(f"{k}={v}" for k, v in data["params"].items())
        made = f" (the source split by `{data['protocol']}`{f', {params}' if params else ''})"
    n = f"{s['heldout_users']} held-out users each for VALID and TEST; " if s.get("heldout_users") else ""
    fold = f", {s['test_fold_in']['ratings']} fold-in" if "test_fold_in" in s else ""
    return (f"{f['dataset']}{made}: {n}TRAIN {s['train']['users']} users, {s['train']['items']} items, "
            f"{s['train']['ratings']} interactions; {s['test']['users']} TEST users scored "
            f"({s['test']['ratings']} scored interactions{fold})")


def _gap_table(f: dict) -> dict:
    rows = [[g["model"], g["vs"], f"{g['estimate']:+.4f}", f"[{g['ci_low']:+.4f}, {g['ci_high']:+.4f}]"]
            for g in f["gaps"]]
    return {"columns": ["autoencoder", "vs", "NDCG@100 gap", "95% interval (paired, over users)"], "rows": rows}


def tables(figures: dict) -> dict:
    """The record's tables (``render_docs.py``)."""
    if figures["mode"] == "speed":
        return {"main": _speed_table(figures)}
    return {"main": _accuracy_table(figures), "gaps": _gap_table(figures)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--scale", type=float, default=1.0)
    s.add_argument("--item-scale", type=float, default=1.0)
    s.add_argument("--epochs", type=int, default=1)
    s.add_argument("--repeats", type=int, default=1, help="fits per first layer, alternating; the best epoch counts")
    s.add_argument("--threads", type=int, default=1, help="torch threads (1: a shared machine's fair figure)")
    s.add_argument("--no-ease", dest="ease", action="store_false")
    add_record_option(s)
    a = sub.add_parser("accuracy")
    a.add_argument("--dataset", default="ml-100k-implicit")
    a.add_argument("--source", default=None)
    a.add_argument("--protocol", default=None,
                   help="register --dataset as --source split by this protocol (as `recozoo data prepare`)")
    a.add_argument("--data-param", action="append", help="NAME=VALUE: a protocol or dataset parameter")
    a.add_argument("--models", default="pop,itemknn,bpr,ease,mult-dae,mult-vae,deeprec")
    a.add_argument("--seeds", default="1", help="compare's --seeds: a count (3 = seeds 0,1,2) or a list")
    a.add_argument("--set", action="append", help="MODEL.NAME=VALUE (after the defaults)")
    a.add_argument("--out", default=None, help="keep the compare folder here")
    a.add_argument("--budget", default=None, help="tune each model on VALID first: wall clock per model (e.g. 5m)")
    a.add_argument("--tune-trials", type=int, default=None, help="tune each model on VALID first: trials per model")
    add_record_option(a)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "speed" and args.ease:       # checked before the long Mult-VAE epochs, not after
            from recozoo.registry import get_model
            get_model("ease")
        run = Run(__file__, argv)
        figures = speed(args) if args.cmd == "speed" else accuracy(args)
    except RecozooError as e:                       # bad input: one line, as recozoo's own commands
        hint = " (pip install ./plugins/recozoo-ease, or --no-ease)" if "'ease'" in str(e) else ""
        sys.exit(f"bench_implicit.py: error: {e}{hint}")
    if args.cmd == "speed":
        name = "implicit-speed"
    else:
        tuned = args.budget is not None or args.tune_trials is not None
        name = f"implicit-{'tuned' if tuned else 'accuracy'}-{args.dataset}"
    run.write({"mode": args.cmd, **figures}, record_path(args.record, name))


if __name__ == "__main__":
    main()
