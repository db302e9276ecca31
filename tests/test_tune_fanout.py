"""``compare --tune --jobs N``: the studies run side by side in recozoo.fanout's worker processes
and choose what the sequential run chooses (each study is a one-worker study with the same seed)."""

from __future__ import annotations

import csv

from recozoo.compare.config import TuneSpec, build_config
from recozoo.compare.runner import resolve_models
from recozoo.compare.tuning import tune_models
from recozoo.data.synthetic import generate
from recozoo.progress import Reporter
from recozoo.settings import settings_to_dict
from recozoo.splits import random_split


def _values(study_dir):
    with open(study_dir / "trials.csv", newline="") as f:
        return [(r["number"], r["state"], r["value"]) for r in csv.DictReader(f)]


class _Lines(Reporter):
    def __init__(self):
        self.lines = []

    def message(self, text):
        self.lines.append(text)


def test_studies_fanned_out_choose_what_the_sequential_run_chooses(tmp_path):
    split = random_split(generate(n_users=200, n_items=80, n_ratings=5000, seed=5), "tiny-tune-jobs",
                         test_fraction=0.1, valid_fraction=0.1, seed=0)
    got = {}
    for jobs in (1, 2):
        cfg = build_config(dataset="tiny-tune-jobs", models="bias,als", sets=["als.iterations=3"],
                           tune=TuneSpec(trials=3), jobs=jobs)
        out = tmp_path / f"jobs{jobs}"
        said = _Lines()
        tuned, info = tune_models(cfg, resolve_models(cfg), split, out, ["rmse"], "cpu", said)
        assert any("2 studies at a time" in x for x in said.lines) == (jobs == 2), said.lines
        got[jobs] = ({spec.name: settings_to_dict(s) for spec, _, s in tuned},
                     {m: (i["best_valid"], i["trials"]) for m, i in info.items()},
                     {m: _values(out / "studies" / m) for m in ("bias", "als")})
    assert got[1] == got[2]
    assert set(got[2][1]) == {"bias", "als"} and got[2][1]["als"][1]["complete"] == 3
