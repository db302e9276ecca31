"""``compare --tune``: each model's settings chosen on VALID by ``recozoo tune`` before the fits.

Per model, one Optuna study lives in ``OUT/studies/MODEL/`` (SQLite, with its
``trials.csv``, ``best.json`` and PNGs), run on the comparison's one split
object: trials fit on TRAIN and are scored on VALID; TEST is not read here
(``TuneConfig.final`` is off). The chosen settings then go through the
ordinary comparison — every seed fitted, refitted on TRAIN ∪ VALID, TEST scored
once per fit — so a tuned row is made exactly like an untuned one. A rerun
resumes each study (a finished one runs no trial) and, with the same best
settings, the same config hash: its fits are reused from the results store.

Where the studies run: here one after another, side by side in ``--jobs``
worker processes, or on the ``--cluster``'s workers. Each is a one-worker study
with the comparison's seed wherever it runs, so ``--tune-trials`` chooses the
same settings every way. On a cluster a study runs whole on one worker, in a
temporary folder holding a copy of the study folder here (so an interrupted
study resumes there), and its folder comes back as bytes that this process
writes in place of the old one (:func:`land_study`). Spreading a study's own
trials over the cluster (``recozoo tune --cluster``) would make the trials
depend on which worker finishes first, and so the chosen settings.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path
from typing import Any

from recozoo.compare.config import CompareConfig
from recozoo.errors import SettingsError
from recozoo.progress import Reporter, StderrReporter
from recozoo.settings import parse_settings

__all__ = ["tune_models", "tune_metric", "blend_tuned_rows", "blends_the_rows", "land_study", "StudyJob", "STUDIES"]

#: where the studies live inside a comparison's output folder
STUDIES = "studies"


def tune_metric(cfg: CompareConfig, cls, metrics: list[str]) -> str:
    """What a model is tuned on: the comparison's first metric that the model reports (rmse for
    rating models when asked for), else ndcg@10."""
    usable = [m for m in metrics if cls.predicts_ratings or "@" in m]
    usable = [m for m in usable if m.split("@")[0] not in ("coverage", "popularity")]
    return usable[0] if usable else "ndcg@10"


def tune_models(cfg: CompareConfig, resolved: list, split, out: Path, metrics: list[str], device: str,
                reporter: Reporter, fan=None) -> tuple[list, dict[str, dict[str, Any]]]:
    """``resolved`` with each model's settings replaced by its study's best, and per model what the
    table shows (trials, best VALID, metric, study folder). A model with nothing to tune (``pop``; or
    every dimension of its space set with ``--set``) keeps its settings and has no entry: its row
    shows no trials. A ``blend`` without components of its own is no study either: it blends the
    comparison's other rating rows with their tuned settings (:func:`blend_tuned_rows`).

    With ``jobs`` > 1 the studies run side by side, one per worker process of
    :class:`recozoo.fanout.ProcessFanout`; with ``fan`` a :class:`recozoo.fanout.DaskFanout` (the
    comparison's ``--cluster``), one per cluster worker (see the module docstring). Each is a
    one-worker study as in the sequential run, so the same seed gives the same trials
    (``--tune-trials``; a wall-clock ``--budget`` counts trials that depend on the machine either way)."""
    _blended_rows(resolved)                 # before any study: nothing written when it has none
    configs = {}
    for spec, cls, _ in resolved:
        if blends_the_rows(spec):
            continue
        if not cls.search_space.without(spec.settings):   # e.g. pop: no space, or every dimension set
            reporter.message(f"{spec.name}: nothing to tune (no search space left); its settings as given")
            continue
        configs[spec.name] = _tune_config(cfg, spec, cls, out, metrics, device)
    results = _run_studies(cfg, list(configs.values()), split, reporter, fan)
    tuned, info = [], {}
    for spec, cls, settings in resolved:
        res = results.get(spec.name)
        if res is not None:
            settings = parse_settings(cls.Settings, res["best"]["settings"], model=spec.name)
            info[spec.name] = {"metric": res["metric"], "best_valid": res["best"]["value"],
                               "best_trial": res["best"]["number"], "trials": res["trials"],
                               "seconds": res["seconds"], "study": f"{STUDIES}/{spec.name}"}
        tuned.append((spec, cls, settings))
    return blend_tuned_rows(tuned, info, reporter), info


def blends_the_rows(spec) -> bool:
    """Whether this comparison row is a ``blend`` whose components ``compare --tune`` chooses: one
    given no ``components`` (a blend's preset is refused with ``--tune``, like every preset)."""
    return spec.name == "blend" and "components" not in spec.settings


def blend_tuned_rows(tuned: list, info: dict[str, dict[str, Any]], reporter: Reporter) -> list:
    """Each row of :func:`blends_the_rows` given as components every other rating row of the
    comparison, with the settings the studies chose (or as given, for a row with nothing to tune);
    ``info`` gains the blend's entry (its components; no study). Its weights are then fitted on
    VALID as in any blend fit, and its ridge stays as given: tuning the ridge would refit every
    component per trial.

    Why: a blend is only as good as its components, and the tuned rows are the best this
    comparison has; the issue's best row (≤ 0.885 on ml-100k u1) is a blend of tuned models."""
    from recozoo.models.blend import component_spec
    rows = _blended_rows(tuned)
    out = []
    for spec, cls, settings in tuned:
        if blends_the_rows(spec):
            components = "; ".join(component_spec(r.name, s) for r, s in rows)
            settings = settings.replace(components=components)
            info[spec.name] = {"metric": None, "best_valid": None, "trials": None, "seconds": 0.0,
                               "study": None, "components": [r.name for r, _ in rows]}
            reporter.message(f"blend: components = the tuned {', '.join(r.name for r, _ in rows)} "
                             "(weights fitted on VALID; no study of its own)")
        out.append((spec, cls, settings))
    return out


def _blended_rows(resolved: list) -> list:
    """The comparison's rating rows other than blends (``(spec, settings)``); a one-line error when a
    blend of :func:`blends_the_rows` would have none."""
    rows = [(spec, s) for spec, cls, s in resolved if spec.name != "blend" and cls.predicts_ratings_with(s)]
    if not rows and any(blends_the_rows(spec) for spec, _, _ in resolved):
        raise SettingsError("blend under compare --tune blends the comparison's other rating models: "
                            "name some beside it, or give it components=...")
    return rows


def _tune_config(cfg: CompareConfig, spec, cls, out: Path, metrics: list[str], device: str):
    from recozoo.tune import TuneConfig
    return TuneConfig(model=spec.name, dataset=cfg.dataset, metric=tune_metric(cfg, cls, metrics),
                      budget=cfg.tune.budget, trials=cfg.tune.trials, seed=cfg.seeds[0],
                      out=Path(out) / STUDIES / spec.name, fixed=dict(spec.settings),
                      split_seed=cfg.split_seed, data_params=cfg.data_params or None, source=cfg.source,
                      device=device, final=False, pruner=cfg.tune.pruner)


def _run_studies(cfg: CompareConfig, configs: list, split, reporter: Reporter, fan) -> dict[str, dict[str, Any]]:
    """Each study's ``tune`` result by model name: here one by one, or fanned out (see tune_models)."""
    from recozoo.fanout import DaskFanout
    if isinstance(fan, DaskFanout) and configs:
        return _run_studies_on_cluster(fan, configs, split, reporter)
    if cfg.jobs == 1 or cfg.cluster or len(configs) < 2:
        out = {}
        for tc in configs:
            reporter.message(f"tuning {tc.model} on VALID ({tc.metric or 'default metric'})")
            out[tc.model] = _tune_one(split, tc, reporter)
        return out
    from recozoo.fanout import ProcessFanout
    reporter.message(f"tuning {', '.join(tc.model for tc in configs)} on VALID, "
                     f"{min(cfg.jobs, len(configs))} studies at a time")
    with ProcessFanout(cfg.jobs) as fan:
        results = fan.map(_tune_one, configs, shared=split, labels=[f"study {tc.model}" for tc in configs])
    return {tc.model: res for tc, res in zip(configs, results)}


def _tune_one(split, tc, reporter: Reporter | None = None) -> dict[str, Any]:
    """One model's study on the comparison's split (a fan-out job: module level, picklable result)."""
    from recozoo.tune import tune
    return tune(tc, reporter=reporter or StderrReporter(prefix=f"{tc.model}: "), split=split)


@dataclasses.dataclass(frozen=True)
class StudyJob:
    """One model's study for a cluster worker: its config (``out``: the folder here) and that
    folder's files as they are now (empty for a new study)."""

    config: Any
    files: dict[str, bytes]


def _run_studies_on_cluster(fan, configs: list, split, reporter: Reporter) -> dict[str, dict[str, Any]]:
    from recozoo.tune.study import folder_files
    reporter.message(f"tuning {', '.join(tc.model for tc in configs)} on VALID on the Dask cluster at "
                     f"{fan.address}, one study per worker slot")
    jobs = [StudyJob(tc, folder_files(tc.out) if Path(tc.out).is_dir() else {}) for tc in configs]
    results: dict[str, dict[str, Any]] = {}

    def landed(i: int, res: tuple[dict[str, Any], dict[str, bytes]]) -> None:
        tc = configs[i]
        results[tc.model] = land_study(tc.out, *res)
        c = results[tc.model]["trials"]
        reporter.message(f"{tc.model}: study finished on the cluster ({c['complete']} completed, "
                         f"{c['pruned']} pruned, {c['failed']} failed trials)")

    fan.map(_study_job, jobs, shared=split, labels=[f"study {tc.model}" for tc in configs], on_result=landed)
    return results


def _study_job(split, job: StudyJob) -> tuple[dict[str, Any], dict[str, bytes]]:
    """A cluster worker's study: the folder rebuilt in a temporary place, tuned, handed back as bytes."""
    from recozoo.compare.jobs import write_files
    from recozoo.tune.study import folder_files
    with tempfile.TemporaryDirectory(prefix="recozoo-study-") as tmp:
        folder = Path(tmp) / "study"
        write_files(job.files, folder)
        result = _tune_one(split, dataclasses.replace(job.config, out=folder))
        return result, folder_files(folder)


def land_study(out: Path, result: dict[str, Any], files: dict[str, bytes]) -> dict[str, Any]:
    """Write a study folder that came back from a cluster worker in place of ``out`` (all of it, or
    nothing); ``best.json`` and the returned result name ``out``, not the worker's temporary folder."""
    from recozoo.compare.jobs import land_files
    from recozoo.tune.outputs import BEST_FILE
    from recozoo.tune.study import default_url, safe_url
    here = {"run_dir": str(out), "storage": safe_url(default_url(out))}
    files = dict(files)
    if BEST_FILE in files:
        files[BEST_FILE] = (json.dumps({**json.loads(files[BEST_FILE]), **here}, indent=2) + "\n").encode()
    land_files(files, Path(out))
    return {**result, **here}
