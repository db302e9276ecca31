"""Fit every model x seed of a comparison on one split, through ``fit_and_score``.

The split is loaded once and the *same object* is handed to every fit
(``fit_and_score(..., split=split)``), so every model sees identical TRAIN/VALID/TEST
tables and the figures equal those of ``recozoo fit`` with the same settings
and seed. Each fit lives in ``OUT/runs/<model>-seed<k>/`` and, once finished,
becomes one record in the results store; a model x seed whose record (same
config hash) is already there is skipped, which is how an interrupted
comparison continues. A run folder without a record is an interrupted fit: it
is removed and fitted again from the start.

Beyond the run's summary, each rating model's per-rating test errors
(``test_errors.npy``: prediction - truth, as the evaluator scored TEST) are kept
for the paired bootstrap, and ranking metrics at the requested cut-offs are
computed from the fitted model with :func:`recozoo.rank_eval.rank_part` in one
pass for all cut-offs (from the saved model when a finished record only lacks a
new cut-off), their per-user values kept in ``test_ranking.npz`` for the paired
bootstrap of ranking metrics. On implicit data (``info["implicit"]`` or held-out
users) every model is ranked and the default metrics are NDCG@100, Recall@20
and Recall@50.
"""

from __future__ import annotations

import io
import os
import platform
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from recozoo.compare.config import DEFAULT_RANKING, CompareConfig, config_hash
from recozoo.compare.memory import PeakMemory
from recozoo.compare.store import ResultsStore, record_key
from recozoo.datasets import load_split
from recozoo.devices import resolve_device
from recozoo.errors import SettingsError
from recozoo.io import atomic_write_bytes
from recozoo.models.base import load_model
from recozoo.progress import JsonlLog, RichReporter
from recozoo.rank_eval import RankedPart, is_implicit, rank_part
from recozoo.registry import get_model
from recozoo.runs import MODEL_FILE, RunConfig, fit_and_score, resolve_settings, versions
from recozoo.settings import BaseSettings, settings_to_dict

__all__ = ["run_compare", "resolve_models", "CompareReporter", "TEST_ERRORS", "TEST_RANKING", "LOG_FILE",
           "run_dir_name", "machine", "IMPLICIT_METRICS"]

TEST_ERRORS = "test_errors.npy"
#: TEST's per-user ranking values of a fit ("users" + one array per "ndcg@100" ...), for the bootstrap
TEST_RANKING = "test_ranking.npz"
#: what the model reported through ``reporter.log`` during the fit (one JSON record a line)
LOG_FILE = "log.jsonl"


def run_dir_name(model: str, seed: int) -> str:
    return f"runs/{model}-seed{seed}"


def machine() -> dict[str, Any]:
    out = {"platform": platform.platform(), "arch": platform.machine(),
           "processor": platform.processor(), "cpus": os.cpu_count()}
    try:
        import torch
        out["torch_threads"] = torch.get_num_threads()
    except ImportError:  # pragma: no cover
        pass
    return out


class CompareReporter(RichReporter):
    """One rich display on stderr: the overall bar (models x seeds) and the current fit's bar.

    rich allows one live display at a time, so the fit's bar (driven by the
    model through the ordinary :class:`RichReporter` calls) shares this
    reporter's ``Progress`` with the overall task.
    """

    def __init__(self, total: int, *, enabled: bool = True, console=None):
        super().__init__(enabled=enabled, console=console)
        self._overall_total = total
        self._overall = None

    def _ensure(self):
        fresh = self._progress is None
        super()._ensure()
        if fresh and self._progress is not None:
            self._overall = self._progress.add_task("compare", total=self._overall_total, figures="")

    def overall(self, description: str | None = None, advance: int = 0) -> None:
        self._ensure()
        if self._progress is not None:
            kw = {"description": description} if description else {}
            self._progress.update(self._overall, advance=advance, **kw)

    def end_fit(self) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.remove_task(self._task)
            self._task = None


def resolve_models(cfg: CompareConfig) -> list[tuple[Any, type, BaseSettings]]:
    """(spec, class, parsed settings) per model; every error surfaces before any fit."""
    out = []
    for spec in cfg.models:
        cls = get_model(spec.name)
        out.append((spec, cls, resolve_settings(cls, spec.settings, spec.preset, cfg.dataset)))
    return out


#: what a comparison on implicit data shows when no metric was asked for (Liang et al. 2018's figures)
IMPLICIT_METRICS = ("ndcg@100", "recall@20", "recall@50")


def effective_metrics(cfg: CompareConfig, models: list[tuple[type, BaseSettings]],
                      implicit: bool = False) -> list[str]:
    """The asked-for metrics; on implicit data :data:`IMPLICIT_METRICS` unless metrics were named (a
    rating metric there is a one-line error); elsewhere default ranking ones are added when a
    ranking-only model has none."""
    metrics = list(cfg.metrics)
    if implicit:
        if cfg.metrics_default:
            return list(IMPLICIT_METRICS)
        rated = [m for m in metrics if "@" not in m]
        if rated:
            raise SettingsError(f"{cfg.dataset} is implicit feedback: {', '.join(rated)} cannot be computed "
                                f"(ranking metrics only, e.g. --metrics {','.join(IMPLICIT_METRICS)})")
        return metrics
    if any(not c.predicts_ratings_with(s) for c, s in models) and not any("@" in m for m in metrics):
        metrics += list(DEFAULT_RANKING)
    return metrics


def _ranking(model, split, ks: list[int], have: dict[str, Any], rdir: Path,
             ranked: RankedPart | None = None) -> dict[str, Any]:
    """TEST's ranking summaries at every cut-off in ``ks`` that ``have`` lacks, from ``ranked`` when it
    holds them or one :func:`~recozoo.rank_eval.rank_part` pass for all of them; the per-user values
    go to ``rdir/test_ranking.npz`` (the paired bootstrap's pairs)."""
    out = dict(have)
    missing = [k for k in ks if str(k) not in out]
    if ranked is not None:
        _save_per_user(rdir / TEST_RANKING, ranked)
    if missing:
        if ranked is None or not set(missing) <= set(ranked.ks):
            ranked = rank_part(model, split, "test", missing)
            _save_per_user(rdir / TEST_RANKING, ranked)
        for k in missing:
            out[str(k)] = ranked.summary
    return out


def _save_per_user(path: Path, ranked: RankedPart) -> None:
    """Merge ``ranked``'s per-user values into ``path`` (same users; new cut-offs join the old)."""
    arrays: dict[str, np.ndarray] = {}
    if path.exists():
        with np.load(path, allow_pickle=False) as old:
            if np.array_equal(old["users"], ranked.users):
                arrays = {k: old[k] for k in old.files}
    arrays.update(ranked.per_user)
    arrays["users"] = ranked.users
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def _fit_one(cfg: CompareConfig, spec, cls, settings: BaseSettings, seed: int, device: str, split,
             base: dict[str, Any], chash: str, ks: list[int], rdir: Path,
             reporter: CompareReporter) -> dict[str, Any]:
    """Fit one model x seed through ``fit_and_score`` and return its store record."""
    run_cfg = RunConfig(model=spec.name, dataset=cfg.dataset, settings=settings,
                        seed=seed, split_seed=cfg.split_seed, device=device,
                        data_params=cfg.data_params or None, source=cfg.source,
                        preset=spec.preset, refit=cfg.refit)
    # records the model sends to reporter.log (per-epoch figures of models that do
    # not run on the engine, which writes metrics.jsonl itself) -> learning curves
    reporter.jsonl = JsonlLog(rdir / LOG_FILE)
    t0 = time.perf_counter()
    try:
        with PeakMemory(device) as pm:
            outcome = fit_and_score(run_cfg, rdir, reporter=reporter, split=split)
    finally:
        reporter.jsonl = None
    wall = time.perf_counter() - t0
    reporter.end_fit()
    summary = outcome.summary
    m = summary["metrics"]
    test_ranking: dict[str, Any] = {}
    if outcome.test_errors is not None:
        _save_npy(rdir / TEST_ERRORS, outcome.test_errors)
        predict_s = m["test"]["predict_seconds"]
    else:   # TEST was ranked (a ranking-only model, or any model on implicit data)
        for k in m["test"]["ks"]:
            test_ranking[str(k)] = m["test"]
        predict_s = m["test"]["recommend_seconds"]
    test_ranking = _ranking(outcome.model, split, ks, test_ranking, rdir, outcome.test_ranked)
    del outcome
    rec = {"model": spec.name, "seed": seed, "config_hash": chash,
           "dataset": cfg.dataset, "split": split.name,
           "config": {**base, "model": spec.name, "settings": summary["settings"],
                      "preset": spec.preset, "seed": seed},
           "predicts_ratings": bool(cls.predicts_ratings_with(settings)),
           "metrics": {"valid": m.get("valid"), "test": m["test"],
                       "test_ranking": test_ranking},
           "seconds": {"fit": summary["seconds"]["fit"], "predict": predict_s,
                       "evaluate": summary["seconds"]["evaluate"], "wall": wall},
           "memory": pm.result(), "n_parameters": summary["n_parameters"],
           "run_dir": run_dir_name(spec.name, seed), "fallback": summary["fallback"],
           "versions": versions(), "machine": machine(),
           "finished": datetime.now(timezone.utc).isoformat()}
    return rec


def run_compare(cfg: CompareConfig, out: str | Path, *, progress: bool = True, console=None,
                on_fit=None) -> dict[str, Any]:
    """Fit what the store lacks; return ``{"fitted": [...], "skipped": [...], "manifest": ...}``.

    ``on_fit(model, seed)`` is called before each fit (used by tests to count fits).
    """
    out = Path(out)
    resolved = resolve_models(cfg)
    device = resolve_device(cfg.device)
    split = load_split(cfg.dataset, cfg.source, cfg.split_seed, cfg.data_params or None)
    implicit = is_implicit(split)
    metrics = effective_metrics(cfg, [(c, s) for _, c, s in resolved], implicit)
    ks = sorted({int(m.split("@")[1]) for m in metrics if "@" in m})
    tuned: dict[str, Any] = {}
    if cfg.tune is not None:       # settings chosen on VALID first (recozoo.compare.tuning)
        from recozoo.compare.tuning import tune_models
        messages = RichReporter(enabled=progress, console=console)
        resolved, tuned = tune_models(cfg, resolved, split, out, metrics, device, messages)

    base = {"dataset": cfg.dataset, "split_seed": cfg.split_seed, "data_params": cfg.data_params,
            "device": device, "split_name": split.name, "split_counts": split.describe(), "refit": cfg.refit}
    hashes = {spec.name: config_hash({**base, "model": spec.name, "settings": settings_to_dict(s),
                                      "preset": spec.preset}) for spec, _, s in resolved}
    store = ResultsStore(out)
    manifest = {"dataset": cfg.dataset, "split": split.name, "split_counts": split.describe(),
                "split_seed": cfg.split_seed, "data_params": cfg.data_params, "device": device,
                "models": [spec.name for spec, _, _ in resolved], "seeds": cfg.seeds, "metrics": metrics,
                "config_hashes": hashes, "policy": split.default_policy,
                "presets": {spec.name: spec.preset for spec, _, _ in resolved if spec.preset},
                "refit": cfg.refit, "implicit": implicit, "tune": tuned or None}
    store.write_manifest(manifest)
    latest = store.latest()

    total = len(resolved) * len(cfg.seeds)
    reporter = CompareReporter(total, enabled=progress, console=console)
    fitted, skipped = [], []
    try:
        for spec, cls, settings in resolved:
            for seed in cfg.seeds:
                key = (spec.name, seed, hashes[spec.name])
                rdir = out / run_dir_name(spec.name, seed)
                reporter.overall(f"compare: {spec.name} seed {seed}")
                rec = latest.get(key)
                if rec is not None:
                    missing = [k for k in ks if str(k) not in rec["metrics"].get("test_ranking", {})]
                    if missing and (rdir / MODEL_FILE).exists():
                        # new cut-offs asked for: score the saved model, no refit
                        model = load_model(rdir / MODEL_FILE)
                        rec = {**rec, "metrics": {**rec["metrics"], "test_ranking": _ranking(
                            model, split, ks, rec["metrics"].get("test_ranking", {}), rdir)}}
                        store.append(rec)
                        missing = []
                    if not missing:  # (a record whose model file is gone is refitted below)
                        skipped.append((spec.name, seed))
                        reporter.overall(advance=1)
                        continue
                if on_fit is not None:
                    on_fit(spec.name, seed)
                if rdir.exists():    # an interrupted fit (or one of another config): start afresh
                    shutil.rmtree(rdir)
                rec = _fit_one(cfg, spec, cls, settings, seed, device, split, base,
                               hashes[spec.name], ks, rdir, reporter)
                store.append(rec)
                latest[record_key(rec)] = rec
                fitted.append((spec.name, seed))
                reporter.overall(advance=1)
    finally:
        reporter.close()
    return {"fitted": fitted, "skipped": skipped, "manifest": manifest}


def _save_npy(path: Path, arr: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())
