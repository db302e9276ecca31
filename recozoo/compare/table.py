"""Records -> leaderboard rows -> a table (rich), Markdown, CSV or JSON.

Rows aggregate a model's records over seeds: mean and sample std (``ddof=1``;
none with one seed) of each metric, mean timings, the largest peak memory,
parameter count, the published figure when the dataset has one, and the paired
bootstrap interval of its test-RMSE gap to the best model — over users, for each
ranking metric, from the per-user values every fit keeps. Ranking-only models
(``predicts_ratings`` False) have ``None`` in every rating column — never a
made-up RMSE. Rows are sorted by ``sort`` (rating metrics low first, ranking
metrics high first); by default by mean test RMSE with ranking-only models
following by their first ranking metric, and on implicit data by NDCG@100 (the
first ranking metric when it was not computed).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recozoo.compare.config import RATING_METRICS, parse_metrics
from recozoo.compare.runner import TEST_ERRORS, TEST_RANKING
from recozoo.compare.stats import N_BOOT, paired_bootstrap, pooled_squared_errors
from recozoo.compare.store import ResultsStore
from recozoo.errors import RecozooError
from recozoo.registry import get_dataset

__all__ = ["Leaderboard", "build_leaderboard", "to_json", "to_csv", "to_markdown", "to_rich",
           "TIMING_KEYS"]

#: row keys that measure the machine, not the model (excluded when comparing two runs)
TIMING_KEYS = ("fit_seconds_mean", "fit_seconds_std", "predict_seconds_mean", "peak_memory_mb",
               "peak_memory_mb_max", "peak_rss_mb", "gpu_peak_mb")


@dataclass
class Leaderboard:
    folder: Path
    dataset: str
    split: str
    policy: str | None
    metrics: list[str]
    rows: list[dict[str, Any]]
    published: dict[str, dict[str, Any]] = field(default_factory=dict)
    missing: list[tuple[str, int]] = field(default_factory=list)
    n_test: int | None = None
    files: dict[str, str] = field(default_factory=dict)
    #: model -> its run directories (for the learning curves)
    run_dirs: dict[str, list[str]] = field(default_factory=dict)
    #: TEST scored by models refitted on TRAIN ∪ VALID (`recozoo compare --refit`)
    refit: bool = False
    #: the metric the rows are sorted by (None: RMSE, then ranking-only models)
    sort: str | None = None
    #: the comparison ran on implicit data (ranking metrics only)
    implicit: bool = False
    #: users paired in the ranking-metric bootstrap (None when none was drawn)
    n_users: int | None = None
    #: each model's settings were tuned on VALID first (`recozoo compare --tune`)
    tuned: bool = False
    #: per blend row made by ``compare --tune`` of the tuned rows: their names
    blends: dict[str, list[str]] = field(default_factory=dict)

    @property
    def has_published(self) -> bool:
        return bool(self.published)


def _mean_std(vals: list[float]) -> tuple[float | None, float | None]:
    vals = [v for v in vals if v is not None]
    if not vals:
        return None, None
    a = np.asarray(vals, dtype=np.float64)
    return float(a.mean()), (float(a.std(ddof=1)) if a.size > 1 else None)


def _published_for(dataset: str) -> dict[str, dict[str, Any]]:
    try:
        return dict(getattr(get_dataset(dataset), "published", {}) or {})
    except RecozooError:
        return {}


def _select(store: ResultsStore) -> tuple[dict[str, Any], dict[str, list[dict]], list]:
    """(manifest-like header, model -> its records sorted by seed, missing (model, seed))."""
    latest = store.latest()
    man = store.manifest()
    if man is None:
        if not latest:
            raise RecozooError(f"{store.folder}: no comparison results here (no {store.path.name})")
        recs = list(latest.values())
        order: list[str] = []
        last_hash: dict[str, str] = {}
        for r in recs:
            if r["model"] not in order:
                order.append(r["model"])
            last_hash[r["model"]] = r["config_hash"]
        first = recs[0]
        man = {"dataset": first["dataset"], "split": first.get("split", first["dataset"]),
               "models": order, "config_hashes": last_hash, "metrics": list(RATING_METRICS),
               "seeds": sorted({r["seed"] for r in recs})}
    by_model: dict[str, list[dict]] = {}
    missing = []
    for m in man["models"]:
        h = man["config_hashes"][m]
        got = [latest[(m, s, h)] for s in man["seeds"] if (m, s, h) in latest]
        missing += [(m, s) for s in man["seeds"] if (m, s, h) not in latest]
        if got:
            by_model[m] = sorted(got, key=lambda r: r["seed"])
    return man, by_model, missing


def _metric_value(rec: dict, part: str, metric: str) -> float | None:
    if "@" in metric:
        name, k = metric.split("@")
        return (rec["metrics"].get("test_ranking", {}).get(k) or {}).get(f"{name}@{k}")
    if not rec.get("predicts_ratings", True):
        return None
    return (rec["metrics"].get(part) or {}).get(metric)


def _row(model: str, recs: list[dict], metrics: list[str], published: dict) -> dict[str, Any]:
    first = recs[0]
    row: dict[str, Any] = {"model": model, "seeds": [r["seed"] for r in recs],
                           "predicts_ratings": bool(first.get("predicts_ratings", True)),
                           "preset": first["config"].get("preset")}
    for part in ("test", "valid"):
        for metric in RATING_METRICS:
            row[f"{part}_{metric}_mean"], row[f"{part}_{metric}_std"] = _mean_std(
                [_metric_value(r, part, metric) for r in recs])
    for metric in metrics:
        if "@" in metric:
            row[f"test_{metric}_mean"], row[f"test_{metric}_std"] = _mean_std(
                [_metric_value(r, "test", metric) for r in recs])
    row["fit_seconds_mean"], row["fit_seconds_std"] = _mean_std([r["seconds"]["fit"] for r in recs])
    row["predict_seconds_mean"], _ = _mean_std([r["seconds"]["predict"] for r in recs])
    row["n_parameters"] = int(first.get("n_parameters") or 0)
    # median over seeds: a model's first fit also pays one-off costs (numba compilation, lazy
    # imports) that the median leaves out once there are three seeds; the max is kept beside it
    deltas = [r["memory"]["delta_mb"] for r in recs]
    row["peak_memory_mb"] = float(np.median(deltas))
    row["peak_memory_mb_max"] = max(deltas)
    row["peak_rss_mb"] = max(r["memory"]["peak_mb"] for r in recs)
    row["memory_method"] = first["memory"]["method"]
    gpu = [r["memory"].get("gpu_peak_mb") for r in recs if r["memory"].get("gpu_peak_mb") is not None]
    row["gpu_peak_mb"] = max(gpu) if gpu else None
    pub = published.get(model)
    row["published_test_rmse"] = pub.get("test_rmse") if pub else None
    row["published_source"] = pub.get("source") if pub else None
    for metric in metrics:
        if "@" in metric and pub and pub.get(f"test_{metric}") is not None:
            row[f"published_test_{metric}"] = pub[f"test_{metric}"]
    row["delta_test_rmse_vs_best"] = None
    return row


def _sort_key(metrics: list[str], sort: str | None):
    rank = next((m for m in metrics if "@" in m), None)

    def by_sort(row):
        v = row.get(f"test_{sort}_mean")
        if v is None:
            return (1, 0.0, row["model"])
        return (0, v if sort in RATING_METRICS else -v, row["model"])

    def default(row):
        if row["test_rmse_mean"] is not None:
            return (0, row["test_rmse_mean"], row["model"])
        v = row.get(f"test_{rank}_mean") if rank else None
        return (1, -v if v is not None else math.inf, row["model"])
    return by_sort if sort else default


def _default_sort(metrics: list[str], implicit: bool) -> str | None:
    """NDCG@100 on implicit data (else its first ranking metric); None elsewhere (RMSE first)."""
    if not implicit:
        return None
    return "ndcg@100" if "ndcg@100" in metrics else next((m for m in metrics if "@" in m), None)


def _check_sort(sort: str, metrics: list[str], folder: Path) -> str:
    m = parse_metrics(sort)
    if len(m) != 1:
        raise RecozooError(f"--sort takes one metric, got {sort!r}")
    if m[0] not in metrics:
        raise RecozooError(f"--sort {m[0]}: not among the table's metrics ({', '.join(metrics)}) in {folder}; "
                           f"add it with --metrics")
    return m[0]


def _bootstrap(folder: Path, rows: list[dict], recs: dict[str, list[dict]]) -> int | None:
    rated = sorted((r for r in rows if r["test_rmse_mean"] is not None), key=lambda r: r["test_rmse_mean"])
    if len(rated) < 2:
        return None
    pooled: dict[str, np.ndarray] = {}
    for r in rated:
        paths = [folder / rec["run_dir"] / TEST_ERRORS for rec in recs[r["model"]]]
        if all(p.exists() for p in paths):
            pooled[r["model"]] = pooled_squared_errors([np.load(p, allow_pickle=False) for p in paths])
    best = rated[0]["model"]
    if best not in pooled:
        return None
    n = pooled[best].shape[0]
    others = {m: v for m, v in pooled.items() if m != best and v.shape == pooled[best].shape}
    res = paired_bootstrap(pooled[best], others, n_boot=N_BOOT, seed=0)
    for r in rated[1:]:
        if r["model"] in res:
            r["delta_test_rmse_vs_best"] = {"vs": best, **res[r["model"]]}
    return n


#: ranking metrics whose gaps get a paired interval (higher is better; coverage is not per user)
_BOOTSTRAPPED = ("ndcg", "recall", "recall_std", "map", "hitrate")


def _per_user(folder: Path, recs: list[dict], metric: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(users, the metric per user averaged over seeds) from the fits' ``test_ranking.npz``, or None."""
    users, vals = None, []
    for rec in recs:
        path = folder / rec["run_dir"] / TEST_RANKING
        if not path.exists():
            return None
        with np.load(path, allow_pickle=False) as z:
            if metric not in z.files or (users is not None and not np.array_equal(users, z["users"])):
                return None
            users = z["users"]
            vals.append(z[metric])
    return users, np.mean(vals, axis=0)


def _bootstrap_ranking(folder: Path, rows: list[dict], recs: dict[str, list[dict]],
                       metrics: list[str]) -> int | None:
    """``delta_test_{m}_vs_best`` for every bootstrapped ranking metric: each row's gap to the row with
    the best mean, paired over TEST users (the same users for every model)."""
    n_users = None
    for m in metrics:
        if "@" not in m or m.split("@")[0] not in _BOOTSTRAPPED:
            continue
        got = {r["model"]: _per_user(folder, recs[r["model"]], m) for r in rows
               if r.get(f"test_{m}_mean") is not None}
        got = {k: v for k, v in got.items() if v is not None}
        if len(got) < 2:
            continue
        best = max(got, key=lambda k: (float(got[k][1].mean()), k))
        users = got[best][0]
        others = {k: v[1] for k, v in got.items() if k != best and np.array_equal(v[0], users)}
        res = paired_bootstrap(got[best][1], others, n_boot=N_BOOT, seed=0, root=False)
        for r in rows:
            if r["model"] in res:
                r[f"delta_test_{m}_vs_best"] = {"vs": best, **res[r["model"]]}
        n_users = int(users.size)
    return n_users


def build_leaderboard(folder: str | Path, metrics: str | list[str] | None = None,
                      sort: str | None = None) -> Leaderboard:
    """Redraw a comparison's table from its results store (no fitting), sorted by ``sort``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RecozooError(f"{folder}: no such comparison folder")
    store = ResultsStore(folder)
    man, recs, missing = _select(store)
    if not recs:
        raise RecozooError(f"{folder}: no finished fit of {', '.join(man['models'])} yet")
    mets = parse_metrics(metrics) if metrics is not None else list(man.get("metrics") or RATING_METRICS)
    published = _published_for(man["dataset"])
    rows = [_row(m, r, mets, published) for m, r in recs.items()]
    tuned = man.get("tune") or {}
    for r in rows:
        t = tuned.get(r["model"]) or {}
        r["tune_trials"] = (t["trials"]["complete"] + t["trials"]["pruned"]) if t.get("trials") else None
        r["tune_best_valid"], r["tune_metric"] = t.get("best_valid"), t.get("metric")
    for m in mets:
        if "@" in m and all(r.get(f"test_{m}_mean") is None for r in rows):
            raise RecozooError(f"{m} was not computed in {folder}: rerun the same `recozoo compare` with "
                               f"--metrics {','.join(mets)} (the saved models are scored, not refitted)")
    implicit = bool(man.get("implicit", False))
    sort = _check_sort(sort, mets, folder) if sort else _default_sort(mets, implicit)
    rows.sort(key=_sort_key(mets, sort))
    n_test = _bootstrap(folder, rows, recs)
    n_users = _bootstrap_ranking(folder, rows, recs, mets)
    return Leaderboard(folder, man["dataset"], man.get("split", man["dataset"]), man.get("policy"),
                       mets, rows, {m: v for m, v in published.items() if m in recs}, missing, n_test,
                       run_dirs={m: [str(folder / x["run_dir"]) for x in r] for m, r in recs.items()},
                       refit=bool(man.get("refit", False)), sort=sort, implicit=implicit, n_users=n_users,
                       tuned=bool(tuned), blends={m: t["components"] for m, t in tuned.items()
                                                  if t.get("components")})


# ------------------------------------------------------------------- columns
@dataclass
class _Col:
    header: str
    key: str            # row key prefix (metric columns) or full key
    kind: str           # metric | delta | published | seconds | int | mb
    better: str | None  # "min" | "max" | None


_LABELS = {"ndcg": "NDCG", "recall": "Recall", "recall_std": "Recall(std)", "map": "MAP",
           "hitrate": "HitRate", "coverage": "Coverage", "popularity": "Popularity"}


def _label(metric: str) -> str:
    if metric in RATING_METRICS:
        return metric.upper()
    name, k = metric.split("@")
    return f"{_LABELS[name]}@{k}"


def _ranking_extras(lb: Leaderboard) -> list[_Col]:
    """The sort metric's paired interval, and published ranking figures where the dataset has them."""
    cols = []
    if lb.sort and "@" in lb.sort and any(r.get(f"delta_test_{lb.sort}_vs_best") for r in lb.rows):
        cols.append(_Col(f"Δ {_label(lb.sort)} vs best [95% CI]", f"delta_test_{lb.sort}_vs_best", "delta",
                         None))
    for m in lb.metrics:
        if "@" in m and any(r.get(f"published_test_{m}") is not None for r in lb.rows):
            cols.append(_Col(f"published {_label(m)}", f"published_test_{m}", "published", None))
    return cols


def _columns(lb: Leaderboard) -> list[_Col]:
    cols = []
    for m in lb.metrics:
        if m in RATING_METRICS:
            cols.append(_Col(f"test {m.upper()}", f"test_{m}", "metric", "min"))
        else:
            cols.append(_Col(_label(m), f"test_{m}", "metric", "min" if m.startswith("popularity") else "max"))
    cols += _ranking_extras(lb)
    if "rmse" in lb.metrics:
        cols.append(_Col("valid RMSE", "valid_rmse", "metric", "min"))
        if sum(r["test_rmse_mean"] is not None for r in lb.rows) >= 2:
            cols.append(_Col("Δ RMSE vs best [95% CI]", "delta_test_rmse_vs_best", "delta", None))
        if lb.has_published:
            cols.append(_Col("published test RMSE", "published_test_rmse", "published", None))
    if lb.tuned:
        cols += [_Col("trials", "tune_trials", "int", None), _Col("best VALID (tuned on)", "tune_best_valid",
                                                                "tuned", None)]
    cols += [_Col("fit s", "fit_seconds_mean", "seconds", "min"),
             _Col("predict s", "predict_seconds_mean", "seconds", "min"),
             _Col("params", "n_parameters", "int", "min"),
             _Col("peak +MB", "peak_memory_mb", "mb", "min")]
    if any(r.get("gpu_peak_mb") is not None for r in lb.rows):
        cols.append(_Col("GPU peak MB", "gpu_peak_mb", "mb", "min"))
    return cols


def _value(row: dict, col: _Col):
    if col.kind == "metric":
        return row.get(f"{col.key}_mean")
    return row.get(col.key)


def _text(row: dict, col: _Col, lb: Leaderboard) -> str:
    v = _value(row, col)
    if col.kind == "metric":
        if v is None:
            return "—"
        s = row.get(f"{col.key}_std")
        return f"{v:.4f} ± {s:.4f}" if s is not None else f"{v:.4f}"
    if col.kind == "delta":
        if v is None:
            best = next((r[col.key]["vs"] for r in lb.rows if r.get(col.key)), None)
            return "best" if row["model"] == best else "—"
        return f"{v['estimate']:+.4f} [{v['ci_low']:+.4f}, {v['ci_high']:+.4f}]"
    if v is None:
        return "—"
    if col.kind == "published":
        return f"{v:.4f}"
    if col.kind == "tuned":
        return f"{v:.4f} ({row['tune_metric']})"
    if col.kind == "seconds":
        return f"{v:.2f}" if v >= 1 else (f"{v:.3f}" if v >= 0.001 else "<0.001")
    if col.kind == "int":
        return f"{v:,}"
    if col.kind == "mb":
        return f"{v:.1f}"
    return str(v)


def _best(lb: Leaderboard, col: _Col):
    if col.better is None:
        return None
    vals = [_value(r, col) for r in lb.rows]
    vals = [v for v in vals if v is not None]
    if len(vals) < 2:
        return None
    return min(vals) if col.better == "min" else max(vals)


def _notes(lb: Leaderboard) -> list[str]:
    notes = []
    if lb.n_test is not None:
        notes.append(f"Δ: paired bootstrap over the {lb.n_test:,} test ratings ({N_BOOT} resamples, "
                     "squared errors averaged over seeds); an interval that excludes 0 is a real gap.")
    if lb.n_users is not None:
        notes.append(f"Δ of a ranking metric: paired bootstrap over the {lb.n_users:,} test users ({N_BOOT} "
                     "resamples, per-user values averaged over seeds), gap to the model with the best mean.")
    if lb.sort:
        notes.append(f"sorted by test {_label(lb.sort)}; ranking metrics as defined in docs/evaluation.md "
                     "(recall@K divides by min(K, positives), recall_std@K by the positives).")
    if any(not r["predicts_ratings"] for r in lb.rows) and any(m in RATING_METRICS for m in lb.metrics):
        notes.append("— in rating columns: the model ranks items and predicts no ratings.")
    if lb.tuned:
        notes.append("tuned: each model's settings were chosen by recozoo tune on VALID (Optuna TPE; trials = "
                     "completed + pruned, best VALID of the study, studies in studies/MODEL), then fitted per "
                     "seed and refitted on TRAIN + VALID; TEST was scored once per fit.")
    for name, components in lb.blends.items():
        notes.append(f"{name}: a ridge blend of the tuned {', '.join(components)} (each with the settings its "
                     "study chose; weights fitted on VALID, components refitted on TRAIN + VALID); no study of "
                     "its own.")
    if lb.refit:
        notes.append("refit: each fit was refitted on TRAIN + VALID with the settings and epoch count VALID "
                     "chose; TEST columns score the refitted models, VALID columns the selected ones.")
    method = lb.rows[0]["memory_method"] if lb.rows else "VmHWM"
    notes.append("peak +MB: rise of the process's resident memory during a fit over its size before it "
                 f"({method}), median over seeds.")
    for m, p in lb.published.items():
        figs = ", ".join(f"{_label(k[5:])} {v:.4f}" for k, v in p.items() if k.startswith("test_"))
        notes.append(f"published {m} {figs}: {p['source']}")
    for m, s in lb.missing:
        notes.append(f"missing: {m} seed {s} (not fitted yet; rerun compare to continue)")
    return notes


def _title(lb: Leaderboard) -> str:
    seeds = sorted({s for r in lb.rows for s in r["seeds"]})
    return (f"{lb.dataset} (split {lb.split}{', policy ' + lb.policy if lb.policy else ''}; "
            f"seeds {','.join(map(str, seeds))}; mean ± std)")


# ------------------------------------------------------------------- formats
def _marked_rows(lb: Leaderboard, cols: list[_Col], mark: str) -> list[tuple[str, list[str]]]:
    """``(model, cell texts under cols)`` of every row, each column's best value written through
    ``mark`` (a format string: bold in the terminal table and in Markdown alike)."""
    bests = [_best(lb, c) for c in cols]
    out = []
    for r in lb.rows:
        cells = []
        for c, best in zip(cols, bests):
            txt, v = _text(r, c, lb), _value(r, c)
            cells.append(mark.format(txt) if best is not None and v is not None and v == best else txt)
        out.append((r["model"], cells))
    return out


def to_rich(lb: Leaderboard):
    from rich.table import Table
    cols = _columns(lb)
    t = Table(title=_title(lb), caption="\n".join(_notes(lb)), caption_justify="left")
    for c in [_Col("model", "model", "name", None)] + cols:
        t.add_column(c.header, justify="left" if c.kind == "name" else "right", no_wrap=True)
    for model, cells in _marked_rows(lb, cols, "[bold green]{}[/]"):
        t.add_row(model, *cells)
    return t


def to_markdown(lb: Leaderboard) -> str:
    cols = _columns(lb)
    lines = [f"**{_title(lb)}**", "",
             "| model | " + " | ".join(c.header for c in cols) + " |",
             "|:--|" + "--:|" * len(cols)]
    for model, cells in _marked_rows(lb, cols, "**{}**"):
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"- {n}" for n in _notes(lb)]
    return "\n".join(lines) + "\n"


def _flat(lb: Leaderboard) -> tuple[list[str], list[dict[str, Any]]]:
    header = ["model", "seeds"]
    for m in lb.metrics:
        header += [f"test_{m}_mean", f"test_{m}_std"]
    if "rmse" in lb.metrics:
        header += ["valid_rmse_mean", "valid_rmse_std", "delta_test_rmse_vs_best",
                   "delta_ci_low", "delta_ci_high"]
        if lb.has_published:
            header += ["published_test_rmse", "published_source"]
    ranked_delta = f"delta_test_{lb.sort}_vs_best" if lb.sort and "@" in lb.sort else None
    if ranked_delta:
        header += [ranked_delta, f"delta_{lb.sort}_ci_low", f"delta_{lb.sort}_ci_high"]
    header += [f"published_test_{m}" for m in lb.metrics
               if "@" in m and any(r.get(f"published_test_{m}") is not None for r in lb.rows)]
    if lb.tuned:
        header += ["tune_trials", "tune_best_valid", "tune_metric"]
    header += ["fit_seconds_mean", "predict_seconds_mean", "n_parameters", "peak_memory_mb"]
    if any(r.get("gpu_peak_mb") is not None for r in lb.rows):
        header.append("gpu_peak_mb")
    out = []
    for r in lb.rows:
        d = {k: r.get(k) for k in header}
        d["seeds"] = " ".join(map(str, r["seeds"]))
        if "rmse" in lb.metrics:
            delta = r.get("delta_test_rmse_vs_best") or {}
            d["delta_test_rmse_vs_best"] = delta.get("estimate")
            d["delta_ci_low"], d["delta_ci_high"] = delta.get("ci_low"), delta.get("ci_high")
        if ranked_delta:
            delta = r.get(ranked_delta) or {}
            d[ranked_delta] = delta.get("estimate")
            d[f"delta_{lb.sort}_ci_low"], d[f"delta_{lb.sort}_ci_high"] = delta.get("ci_low"), delta.get("ci_high")
        out.append(d)
    return header, out


def to_csv(lb: Leaderboard) -> str:
    header, rows = _flat(lb)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None else (repr(v) if isinstance(v, float) else v)) for k, v in r.items()})
    return buf.getvalue()


def to_json(lb: Leaderboard) -> dict[str, Any]:
    rows = []
    for r in lb.rows:
        rows.append({k: v for k, v in r.items()})
    return {"dataset": lb.dataset, "split": lb.split, "policy": lb.policy, "refit": lb.refit, "tuned": lb.tuned,
            "metrics": lb.metrics, "sort": lb.sort, "implicit": lb.implicit,
            "rows": rows, "missing": [{"model": m, "seed": s} for m, s in lb.missing],
            "bootstrap": {"n_ratings": lb.n_test, "n_boot": N_BOOT, "level": 0.95,
                          "pairs": "test ratings; squared errors averaged over seeds"},
            "bootstrap_ranking": {"n_users": lb.n_users, "n_boot": N_BOOT, "level": 0.95,
                                  "pairs": "test users; per-user values averaged over seeds"},
            "published_sources": {m: p["source"] for m, p in lb.published.items()},
            "files": dict(lb.files)}
