"""``compare --tune``: each model's settings chosen on VALID by ``recozoo tune`` before the fits.

Per model, one Optuna study lives in ``OUT/studies/MODEL/`` (SQLite, with its
``trials.csv``, ``best.json`` and PNGs), run on the comparison's one split
object: trials fit on TRAIN and are scored on VALID; TEST is not read here
(``TuneConfig.final`` is off). The chosen settings then go through the
ordinary comparison — every seed fitted, refitted on TRAIN ∪ VALID, TEST scored
once per fit — so a tuned row is made exactly like an untuned one. A rerun
resumes each study (a finished one runs no trial) and, with the same best
settings, the same config hash: its fits are reused from the results store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recozoo.compare.config import CompareConfig
from recozoo.progress import Reporter, StderrReporter
from recozoo.settings import parse_settings

__all__ = ["tune_models", "tune_metric", "STUDIES"]

#: where the studies live inside a comparison's output folder
STUDIES = "studies"


def tune_metric(cfg: CompareConfig, cls, metrics: list[str]) -> str:
    """What a model is tuned on: the comparison's first metric that the model reports (rmse for
    rating models when asked for), else ndcg@10."""
    usable = [m for m in metrics if cls.predicts_ratings or "@" in m]
    usable = [m for m in usable if m.split("@")[0] not in ("coverage", "popularity")]
    return usable[0] if usable else "ndcg@10"


def tune_models(cfg: CompareConfig, resolved: list, split, out: Path, metrics: list[str], device: str,
                reporter: Reporter) -> tuple[list, dict[str, dict[str, Any]]]:
    """``resolved`` with each model's settings replaced by its study's best, and per model what the
    table shows (trials, best VALID, metric, study folder). A model with nothing to tune (``pop``; or
    every dimension of its space set with ``--set``) keeps its settings and has no entry: its row
    shows no trials.

    With ``jobs`` > 1 (and no ``cluster``) the studies run side by side, one per worker process of
    :class:`recozoo.fanout.ProcessFanout`, each a one-worker study as in the sequential run, so the
    same seed gives the same trials (``--tune-trials``; a wall-clock ``--budget`` counts trials
    that depend on the machine either way). On a ``cluster`` they run here, one after another:
    a study's SQLite file lives in this machine's output folder, which a remote worker cannot write."""
    configs = {}
    for spec, cls, _ in resolved:
        if not cls.search_space.without(spec.settings):   # e.g. pop: no space, or every dimension set
            reporter.message(f"{spec.name}: nothing to tune (no search space left); its settings as given")
            continue
        configs[spec.name] = _tune_config(cfg, spec, cls, out, metrics, device)
    results = _run_studies(cfg, list(configs.values()), split, reporter)
    tuned, info = [], {}
    for spec, cls, settings in resolved:
        res = results.get(spec.name)
        if res is not None:
            settings = parse_settings(cls.Settings, res["best"]["settings"], model=spec.name)
            info[spec.name] = {"metric": res["metric"], "best_valid": res["best"]["value"],
                               "best_trial": res["best"]["number"], "trials": res["trials"],
                               "seconds": res["seconds"], "study": f"{STUDIES}/{spec.name}"}
        tuned.append((spec, cls, settings))
    return tuned, info


def _tune_config(cfg: CompareConfig, spec, cls, out: Path, metrics: list[str], device: str):
    from recozoo.tune import TuneConfig
    return TuneConfig(model=spec.name, dataset=cfg.dataset, metric=tune_metric(cfg, cls, metrics),
                      budget=cfg.tune.budget, trials=cfg.tune.trials, seed=cfg.seeds[0],
                      out=Path(out) / STUDIES / spec.name, fixed=dict(spec.settings),
                      split_seed=cfg.split_seed, data_params=cfg.data_params or None, source=cfg.source,
                      device=device, final=False)


def _run_studies(cfg: CompareConfig, configs: list, split, reporter: Reporter) -> dict[str, dict[str, Any]]:
    """Each study's ``tune`` result by model name: here one by one, or fanned out (see tune_models)."""
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
