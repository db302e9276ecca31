"""The two figures written beside the table (matplotlib, Agg backend: no display needed).

* ``learning_curves.png`` — validation RMSE per epoch of every model whose run
  directories log epochs: ``metrics.jsonl`` records with ``epoch`` and
  ``valid_rmse`` (written by the training engine, i.e. the torch models), else
  ``log.jsonl`` (what a model sent to ``reporter.log`` during a compare fit: the
  models that declare ``valid_curve`` send ``epoch`` and ``valid_rmse``; ALS runs
  from before that logged ``iteration``, which still counts as the epoch). Thin
  lines per seed, a thick line for the mean over the seeds that reached that epoch.
* ``test_rmse.png`` — mean test RMSE per rating model with ±1 std error bars
  over seeds, and the published figure as a marker where the dataset has one.
"""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

from recozoo.io import atomic_write_bytes

__all__ = ["learning_curves", "rmse_bars", "read_curve", "warm_up_in_background"]


def read_curve(path: Path) -> list[tuple[int, float]]:
    """(epoch, valid_rmse) pairs of one run, last record per epoch wins (resumed runs)."""
    out: dict[int, float] = {}
    if not path.exists():
        return []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue            # a torn last line of a killed run
        if not isinstance(rec, dict) or rec.get("valid_rmse") is None:
            continue
        x = rec.get("epoch", rec.get("iteration"))
        if x is not None:
            try:
                out[int(x)] = float(rec["valid_rmse"])
            except (TypeError, ValueError):
                continue
    return sorted(out.items())


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


_warming: threading.Thread | None = None


def warm_up_in_background() -> None:
    """Import matplotlib (about a second) on a daemon thread, once per process.

    ``compare --jobs N`` calls this when fewer fits remain than workers: a core is idle then, and
    the figures, drawn after the last fit, no longer wait for the import. The drawing imports
    matplotlib as usual; Python's import lock makes it wait for a warm-up still under way."""
    global _warming
    if _warming is None:
        _warming = threading.Thread(target=_plt, daemon=True, name="matplotlib-warm-up")
        _warming.start()


def learning_curves(lb, recs_by_model: dict[str, list[str]], path: Path) -> Path | None:
    """``recs_by_model``: model -> its run directories. None when no model logs epochs."""
    curves = {}
    for model, dirs in recs_by_model.items():
        cs = [c for c in (read_curve(Path(d) / "metrics.jsonl") or read_curve(Path(d) / "log.jsonl")
                          for d in dirs) if c]
        if cs:
            curves[model] = cs
    if not curves:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 5))
    for j, (model, cs) in enumerate(curves.items()):
        color = f"C{j % 10}"
        by_epoch: dict[int, list[float]] = {}
        for c in cs:
            ax.plot([e for e, _ in c], [v for _, v in c], color=color, alpha=0.3, linewidth=0.8)
            for e, v in c:
                by_epoch.setdefault(e, []).append(v)
        ep = sorted(by_epoch)
        ax.plot(ep, [sum(by_epoch[e]) / len(by_epoch[e]) for e in ep], color=color, linewidth=2,
                label=f"{model} ({len(cs)} seed{'s' if len(cs) > 1 else ''})")
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch (ALS: iteration)")
    ax.set_ylabel("validation RMSE")
    ax.set_title(f"Validation RMSE per epoch on {lb.dataset}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def rmse_bars(lb, path: Path) -> Path | None:
    rows = [r for r in lb.rows if r["test_rmse_mean"] is not None]
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5, 1.1 * len(rows) + 2), 4.5))
    x = range(len(rows))
    means = [r["test_rmse_mean"] for r in rows]
    errs = [r["test_rmse_std"] or 0.0 for r in rows]
    ax.bar(x, means, yerr=errs, capsize=4, color="C0", label="recozoo (mean ± std over seeds)")
    pub = [(i, r["published_test_rmse"]) for i, r in zip(x, rows) if r["published_test_rmse"]]
    if pub:
        ax.scatter([i for i, _ in pub], [v for _, v in pub], marker="D", color="C3", zorder=3,
                   label="published")
    lo = min(means + [v for _, v in pub]) - max(max(errs), 0.01) * 3
    hi = max(m + e for m, e in zip(means, errs))
    ax.set_ylim(max(0.0, lo), hi + (hi - max(0.0, lo)) * 0.1 + 1e-3)
    ax.set_xticks(list(x), [r["model"] for r in rows], rotation=30, ha="right")
    ax.set_ylabel("test RMSE (lower is better)")
    ax.set_title(f"Test RMSE on {lb.dataset}")
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def _save(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    atomic_write_bytes(Path(path), buf.getvalue())
