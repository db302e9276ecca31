"""One model x seed of a comparison as a picklable job, so that fits can run anywhere.

:func:`fit_job` is what a worker runs (``recozoo.fanout``): in this process, in a local worker
process, or on a Dask worker on another machine. It fits through ``fit_and_score`` on the
split it is handed (the parent's split, shipped once per worker), so the figures equal those
of the sequential run and of ``recozoo fit`` with the same settings and seed.

Where the run directory is written: a job on this machine (``rdir`` set) writes it in place,
exactly as the sequential run does; a job on a cluster (``rdir`` None) fits in a temporary
folder on its worker and hands the folder's files back as bytes, which the parent writes with
:func:`land_files`. Either way the results store is written by the parent alone, after the run
directory is complete, so a record always points at a whole run.
"""

from __future__ import annotations

import io
import json
import os
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from recozoo.compare.config import CompareConfig, ModelSpec
from recozoo.compare.memory import PeakMemory
from recozoo.fanout import cpu_cores, imported_module
from recozoo.io import atomic_write_bytes
from recozoo.progress import JsonlLog, Reporter, RichReporter
from recozoo.rank_eval import RankedPart, rank_part
from recozoo.registry import get_model
from recozoo.runs import RunConfig, fit_and_score, versions
from recozoo.settings import BaseSettings

__all__ = ["FitContext", "FitJob", "FitResult", "fit_job", "run_fit", "land_files", "write_files", "ranking_at",
           "TEST_ERRORS", "TEST_RANKING", "LOG_FILE", "run_dir_name", "machine"]

TEST_ERRORS = "test_errors.npy"
#: TEST's per-user ranking values of a fit ("users" + one array per "ndcg@100" ...), for the bootstrap
TEST_RANKING = "test_ranking.npz"
#: what the model reported through ``reporter.log`` during the fit (one JSON record a line)
LOG_FILE = "log.jsonl"
SUMMARY_FILE = "summary.json"


def run_dir_name(model: str, seed: int) -> str:
    return f"runs/{model}-seed{seed}"


def machine() -> dict[str, Any]:
    """Where a fit ran. ``threads``: the BLAS/OpenMP/numba cap it ran under (``--jobs`` pins it, else
    every core); ``pid``: the process (with ``--jobs N`` the comparing process fits too);
    ``torch_threads`` only when the process has loaded torch: importing torch to report on it
    would cost a torch-free worker 3-6 s."""
    out = {"platform": platform.platform(), "arch": platform.machine(),
           "processor": platform.processor(), "cpus": os.cpu_count(),
           "threads": int(os.environ.get("OMP_NUM_THREADS") or cpu_cores()), "pid": os.getpid()}
    torch = imported_module("torch")
    if torch is not None:
        out["torch_threads"] = torch.get_num_threads()
    return out


@dataclass(frozen=True)
class FitContext:
    """What every job of one comparison shares (shipped once per worker)."""

    cfg: CompareConfig
    split: Any
    base: dict[str, Any]
    device: str
    ks: tuple[int, ...]


@dataclass(frozen=True)
class FitJob:
    spec: ModelSpec
    settings: BaseSettings
    seed: int
    config_hash: str
    #: the run directory to write in place; None: fit in a temporary folder, return its files
    rdir: str | None

    @property
    def label(self) -> str:
        return f"{self.spec.name} seed {self.seed}"


@dataclass(frozen=True)
class FitResult:
    record: dict[str, Any]
    #: the run directory's files (relative path -> bytes) when the job ran without ``rdir``
    files: dict[str, bytes] | None = None


def ranking_at(model, split, ks, have: dict[str, Any], rdir: Path,
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


def run_fit(ctx: FitContext, job: FitJob, rdir: Path, reporter: Reporter) -> dict[str, Any]:
    """Fit one model x seed into ``rdir`` through ``fit_and_score`` and return its store record."""
    cfg, spec, seed = ctx.cfg, job.spec, job.seed
    cls = get_model(spec.name)
    run_cfg = RunConfig(model=spec.name, dataset=cfg.dataset, settings=job.settings,
                        seed=seed, split_seed=cfg.split_seed, device=ctx.device,
                        data_params=cfg.data_params or None, source=cfg.source,
                        preset=spec.preset, refit=cfg.refit)
    # records the model sends to reporter.log (per-epoch figures of models that do
    # not run on the engine, which writes metrics.jsonl itself) -> learning curves
    reporter.jsonl = JsonlLog(rdir / LOG_FILE)
    t0 = time.perf_counter()
    try:
        with PeakMemory(ctx.device) as pm:
            outcome = fit_and_score(run_cfg, rdir, reporter=reporter, split=ctx.split)
    finally:
        reporter.jsonl = None
    wall = time.perf_counter() - t0
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
    test_ranking = ranking_at(outcome.model, ctx.split, ctx.ks, test_ranking, rdir, outcome.test_ranked)
    del outcome
    return {"model": spec.name, "seed": seed, "config_hash": job.config_hash,
            "dataset": cfg.dataset, "split": ctx.split.name,
            "config": {**ctx.base, "model": spec.name, "settings": summary["settings"],
                       "preset": spec.preset, "seed": seed},
            "predicts_ratings": bool(cls.predicts_ratings_with(job.settings)),
            "metrics": {"valid": m.get("valid"), "test": m["test"],
                        "test_ranking": test_ranking},
            "seconds": {"fit": summary["seconds"]["fit"], "predict": predict_s,
                        "evaluate": summary["seconds"]["evaluate"], "wall": wall},
            "memory": pm.result(), "n_parameters": summary["n_parameters"],
            "run_dir": run_dir_name(spec.name, seed), "fallback": summary["fallback"],
            "versions": versions(), "machine": machine(),
            "finished": datetime.now(timezone.utc).isoformat()}


def fit_job(ctx: FitContext, job: FitJob) -> FitResult:
    """A worker's entry point (no progress display: the parent shows the overall progress)."""
    reporter = RichReporter(enabled=False)
    if job.rdir is not None:
        return FitResult(run_fit(ctx, job, Path(job.rdir), reporter))
    with tempfile.TemporaryDirectory(prefix="recozoo-fit-") as tmp:
        rdir = Path(tmp) / "run"
        record = run_fit(ctx, job, rdir, reporter)
        files = {p.relative_to(rdir).as_posix(): p.read_bytes() for p in sorted(rdir.rglob("*")) if p.is_file()}
    return FitResult(record, files)


def land_files(files: dict[str, bytes], rdir: Path) -> None:
    """Write a run directory that came back from a cluster worker: all of it, or nothing.

    The files go to a sibling staging folder that is renamed into place once complete; the
    summary's ``run_dir`` (the worker's temporary path) becomes this one.
    """
    stage = rdir.with_name(f".{rdir.name}.partial")
    if stage.exists():
        shutil.rmtree(stage)
    if SUMMARY_FILE in files:
        doc = json.loads(files[SUMMARY_FILE])
        doc["run_dir"] = str(rdir)
        files = {**files, SUMMARY_FILE: json.dumps(doc, indent=2).encode()}
    write_files(files, stage)
    stage.mkdir(parents=True, exist_ok=True)      # (a run with no file at all is still a folder)
    if rdir.exists():
        shutil.rmtree(rdir)
    os.replace(stage, rdir)


def write_files(files: dict[str, bytes], folder: Path) -> None:
    """Each ``relative path -> bytes`` of ``files`` written under ``folder`` (made as needed)."""
    for rel, data in files.items():
        target = Path(folder) / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def _save_npy(path: Path, arr: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())
