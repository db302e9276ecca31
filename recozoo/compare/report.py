"""Write a leaderboard beside its results: Markdown, CSV, JSON and the two PNGs.

Files (all written atomically, so a reader never sees half a table)::

    OUT/leaderboard.md  OUT/leaderboard.csv  OUT/leaderboard.json
    OUT/learning_curves.png   (only when some model logs per-epoch valid RMSE)
    OUT/test_rmse.png         (only when some model predicts ratings)
"""

from __future__ import annotations

import json

from recozoo.compare.plots import learning_curves, rmse_bars
from recozoo.compare.table import Leaderboard, to_csv, to_json, to_markdown
from recozoo.io import atomic_write_bytes

__all__ = ["write_outputs"]


def write_outputs(lb: Leaderboard) -> dict[str, str]:
    """Write the files; return (and record in ``lb.files``) name -> path."""
    out = lb.folder
    files: dict[str, str] = {}
    p = learning_curves(lb, lb.run_dirs, out / "learning_curves.png")
    if p is not None:
        files["learning_curves"] = str(p)
    p = rmse_bars(lb, out / "test_rmse.png")
    if p is not None:
        files["test_rmse_bars"] = str(p)
    for name, text in (("leaderboard.md", to_markdown(lb)), ("leaderboard.csv", to_csv(lb))):
        atomic_write_bytes(out / name, text.encode())
        files[name.replace(".", "_")] = str(out / name)
    files["leaderboard_json"] = str(out / "leaderboard.json")
    lb.files = files
    atomic_write_bytes(out / "leaderboard.json",
                       (json.dumps(to_json(lb), indent=2, default=str) + "\n").encode())
    return files
