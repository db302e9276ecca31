"""What a tuning run leaves beside its run directory: ``trials.csv``, ``best.json`` and two PNGs.

``trials.csv``: one row per trial (number, state, VALID value, seconds, the epoch a pruned trial
stopped at, ``budget`` when the budget stopped it, the epoch VALID chose, an error if the fit failed, then every sampled parameter).
``history.png``: Optuna's optimisation history (each trial's VALID value and the best so far).
``importances.png``: Optuna's parameter importances (its default evaluator); when Optuna cannot
compute them the PNG is left out with the reason in ``best.json``.
"""

from __future__ import annotations

import csv
import io
import warnings
from pathlib import Path
from typing import Any

from recozoo.io import atomic_write_bytes

__all__ = ["write_trials_csv", "write_plots", "info", "trial_summary", "TRIALS_FILE", "BEST_FILE", "HISTORY_PNG", "IMPORTANCES_PNG"]

TRIALS_FILE = "trials.csv"
BEST_FILE = "best.json"
HISTORY_PNG = "history.png"
IMPORTANCES_PNG = "importances.png"

_FIXED = ["number", "state", "value", "seconds", "pruned_at", "stopped", "best_epoch", "redo_of", "error"]


def write_trials_csv(study, path: Path) -> int:
    """Every trial of ``study`` as CSV at ``path`` (atomically); returns the row count."""
    trials = study.get_trials(deepcopy=False)
    params = sorted({p for t in trials for p in t.params})
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(_FIXED + params)
    for t in trials:
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() \
            if t.datetime_complete and t.datetime_start else ""
        a = info(t)
        w.writerow([t.number, t.state.name.lower(), "" if t.value is None else t.value,
                    f"{seconds:.3f}" if seconds != "" else "", _blank(a.get("pruned_at")), _blank(a.get("stopped")),
                    _blank(a.get("best_epoch")),
                    _blank(t.user_attrs.get("redo_of")), _blank(a.get("error"))] + [t.params.get(p, "") for p in params])
    atomic_write_bytes(path, buf.getvalue().encode())
    return len(trials)


def write_plots(study, out: Path) -> dict[str, str]:
    """``history.png`` and ``importances.png`` in ``out``; returns {file: "written" | why not}."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm
    done: dict[str, str] = {}
    for name, plot in ((HISTORY_PNG, ovm.plot_optimization_history), (IMPORTANCES_PNG, ovm.plot_param_importances)):
        try:
            with warnings.catch_warnings():     # (e.g. "too few trials": the PNG still says what it can)
                warnings.simplefilter("ignore")
                ax = plot(study)
            fig = ax.figure
            fig.set_size_inches(8, 5)
            fig.tight_layout()
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=100)
            plt.close(fig)
            atomic_write_bytes(out / name, buf.getvalue())
            done[name] = "written"
        except (ValueError, RuntimeError, ZeroDivisionError) as e:   # too few trials, no spread
            plt.close("all")
            done[name] = f"not written: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
    return done


def info(t) -> dict[str, Any]:
    """What the objective recorded about trial ``t`` (settings, VALID figures, epochs, error)."""
    return t.user_attrs.get("info") or {}


def _blank(v) -> Any:
    return "" if v is None else v


def trial_summary(t) -> dict[str, Any]:
    """A trial as best.json shows it."""
    a = info(t)
    return {"number": t.number, "value": t.value, "params": dict(t.params), "settings": a.get("settings"),
            "valid": a.get("valid"), "best_epoch": a.get("best_epoch"), "fit_seconds": a.get("fit_seconds")}
