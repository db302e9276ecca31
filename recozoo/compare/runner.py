"""Fit every model x seed of a comparison on one split, through ``fit_and_score``.

The split is loaded once and the *same object* is handed to every fit
(``fit_and_score(..., split=split)``; a worker process or cluster worker gets one pickled copy
of it), so every model sees identical TRAIN/VALID/TEST tables and the figures equal those of
``recozoo fit`` with the same settings and seed, whether the fits run one after another,
``--jobs N`` at a time, or on a Dask cluster (``--cluster``; see :mod:`recozoo.compare.jobs`
for how a remote fit's run directory comes back). Each fit lives in
``OUT/runs/<model>-seed<k>/`` and, once finished, becomes one record in the results store; a
model x seed whose record (same config hash) is already there is skipped, which is how an
interrupted comparison continues. A run folder without a record is an interrupted fit: it
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

import shutil
from pathlib import Path
from typing import Any

from recozoo.compare.config import DEFAULT_RANKING, CompareConfig, config_hash
from recozoo.compare.jobs import (LOG_FILE, TEST_ERRORS, TEST_RANKING, FitContext, FitJob, FitResult,
                                  fit_job, land_files, machine, ranking_at, run_dir_name, run_fit)
from recozoo.compare.plots import warm_up_in_background
from recozoo.compare.store import ResultsStore, record_key
from recozoo.datasets import load_split
from recozoo.devices import require_device, resolve_device
from recozoo.errors import RecozooError, SettingsError
from recozoo.fanout import DaskFanout, Fanout, InlineFanout, open_fanout
from recozoo.models.base import load_model
from recozoo.progress import RichReporter
from recozoo.rank_eval import is_implicit
from recozoo.registry import get_model
from recozoo.runs import MODEL_FILE, resolve_settings
from recozoo.settings import BaseSettings, settings_to_dict

__all__ = ["run_compare", "resolve_models", "CompareReporter", "TEST_ERRORS", "TEST_RANKING", "LOG_FILE",
           "run_dir_name", "machine", "IMPLICIT_METRICS"]


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


def run_compare(cfg: CompareConfig, out: str | Path, *, progress: bool = True, console=None,
                on_fit=None) -> dict[str, Any]:
    """Fit what the store lacks; return ``{"fitted": [...], "skipped": [...], "manifest": ...}``.

    The fits run through :mod:`recozoo.fanout`: one after another here (``cfg.jobs == 1``),
    ``cfg.jobs`` at a time here and in ``cfg.jobs - 1`` local worker processes, or on the Dask
    cluster at ``cfg.cluster``; this process alone writes the store, one record as each fit
    finishes. ``on_fit(model, seed)`` is called before each fit is handed out (used by tests to
    count fits).
    """
    out = Path(out)
    resolved = resolve_models(cfg)
    # a cluster that does not answer fails here, before any write; with --jobs N this process fits too
    fan = open_fanout(cfg.jobs, cfg.cluster, caller_works=True)
    try:
        device = _comparison_device(cfg.device, resolved)
        split = load_split(cfg.dataset, cfg.source, cfg.split_seed, cfg.data_params or None)
        _check_timestamps(cfg.dataset, resolved, split)
        implicit = is_implicit(split)
        metrics = effective_metrics(cfg, [(c, s) for _, c, s in resolved], implicit)
        ks = sorted({int(m.split("@")[1]) for m in metrics if "@" in m})
        tuned: dict[str, Any] = {}
        if cfg.tune is not None:       # settings chosen on VALID first (recozoo.compare.tuning)
            from recozoo.compare.tuning import tune_models
            messages = RichReporter(enabled=progress, console=console)
            resolved, tuned = tune_models(cfg, resolved, split, out, metrics, device, messages, fan)
        return _run(cfg, out, resolved, (metrics, ks, implicit, tuned), device, split, fan, progress, console,
                    on_fit)
    finally:
        fan.close()


def _check_timestamps(dataset: str, resolved, split) -> None:
    """Refuse models that need timestamps on data without them before any study or fit, rather than
    when their turn comes after the others' fits."""
    if split.train.has_timestamps:
        return
    need = [spec.name for spec, cls, _ in resolved if cls.uses_timestamps]
    if need:
        raise RecozooError(f"{', '.join(need)}: need{'s' if len(need) == 1 else ''} timestamps, and "
                           f"{dataset} has none (leave {'it' if len(need) == 1 else 'them'} out of --models)")


def _comparison_device(asked: str, resolved) -> str:
    """The device the fits run on: ``auto`` resolved only when some model computes on a device
    (:meth:`Model.uses_device_with`: a blend asks its components); a comparison of torch-free models
    runs on the CPU whatever is present and never imports torch (3-6 s on a 2-core machine). A
    device named outright is checked either way (``--device cuda`` where there is none is still an
    error)."""
    if any(cls.uses_device_with(settings) for _, cls, settings in resolved):
        return resolve_device(asked)
    asked = require_device(asked)
    return "cpu" if asked == "auto" else asked


def _run(cfg, out, resolved, asked, device, split, fan: Fanout, progress, console, on_fit):
    metrics, ks, implicit, tuned = asked
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
    reporter = CompareReporter(len(resolved) * len(cfg.seeds), enabled=progress, console=console)
    fitted, skipped = [], []
    try:
        plan = []
        for spec, cls, settings in resolved:
            for seed in cfg.seeds:
                key = (spec.name, seed, hashes[spec.name])
                if _reuse(latest.get(key), out / run_dir_name(spec.name, seed), split, ks, store):
                    skipped.append((spec.name, seed))
                    reporter.overall(advance=1)
                    continue
                here = None if isinstance(fan, DaskFanout) else str(out / run_dir_name(spec.name, seed))
                plan.append(FitJob(spec, settings, seed, hashes[spec.name], here))

        def start(i: int) -> None:
            job = plan[i]
            if on_fit is not None:
                on_fit(job.spec.name, job.seed)
            rdir = out / run_dir_name(job.spec.name, job.seed)
            if rdir.exists():    # an interrupted fit (or one of another config): start afresh
                shutil.rmtree(rdir)
            if fan.workers == 1:
                reporter.overall(f"compare: {job.label}")

        def finished(i: int, res: FitResult) -> None:
            job = plan[i]
            if res.files is not None:
                land_files(res.files, out / run_dir_name(job.spec.name, job.seed))
            store.append(res.record)
            latest[record_key(res.record)] = res.record
            fitted.append((job.spec.name, job.seed))
            reporter.overall(f"compare: {job.label} done" if fan.workers > 1 else None, advance=1)
            if 0 < len(plan) - len(fitted) < fan.workers:   # a worker idles from now on: the figures'
                warm_up_in_background()                       # imports go there, off the serial end

        def inline(ctx: FitContext, job: FitJob) -> FitResult:
            rec = run_fit(ctx, job, Path(job.rdir), reporter)
            reporter.end_fit()
            return FitResult(rec)

        ctx = FitContext(cfg, split, base, device, tuple(ks))
        fan.map(inline if isinstance(fan, InlineFanout) else fit_job, plan, shared=ctx,
                labels=[j.label for j in plan], on_start=start, on_result=finished)
    finally:
        reporter.close()
    return {"fitted": fitted, "skipped": skipped, "manifest": manifest}


def _reuse(rec: dict[str, Any] | None, rdir: Path, split, ks: list[int], store: ResultsStore) -> bool:
    """Whether a stored record serves as it is (new ranking cut-offs scored from the saved model)."""
    if rec is None:
        return False
    missing = [k for k in ks if str(k) not in rec["metrics"].get("test_ranking", {})]
    if missing and (rdir / MODEL_FILE).exists():
        # new cut-offs asked for: score the saved model, no refit
        model = load_model(rdir / MODEL_FILE)
        store.append({**rec, "metrics": {**rec["metrics"], "test_ranking": ranking_at(
            model, split, ks, rec["metrics"].get("test_ranking", {}), rdir)}})
        return True
    return not missing      # (a record whose model file is gone is refitted)
