"""``recozoo compare`` and ``recozoo leaderboard``: many models, one split, one table.

The package is split by job so each part is testable alone:

* :mod:`~recozoo.compare.config`  — the experiment (TOML file and/or CLI options);
* :mod:`~recozoo.compare.store`   — the append-only results store (``results.jsonl``);
* :mod:`~recozoo.compare.memory`  — per-fit peak memory without psutil;
* :mod:`~recozoo.compare.runner`  — fits model x seed through :func:`recozoo.runs.fit_run`;
* :mod:`~recozoo.compare.stats`   — the paired bootstrap of test-RMSE differences;
* :mod:`~recozoo.compare.table`   — records -> rows -> table/markdown/csv/json;
* :mod:`~recozoo.compare.plots`   — learning curves and the test-RMSE bar chart.
"""

from recozoo.compare.config import CompareConfig, load_config_file, parse_metrics
from recozoo.compare.runner import run_compare
from recozoo.compare.store import ResultsStore
from recozoo.compare.table import build_leaderboard

__all__ = ["CompareConfig", "load_config_file", "parse_metrics", "run_compare", "ResultsStore",
           "build_leaderboard"]
