"""TimeSVD++ (Koren, "Collaborative Filtering with Temporal Dynamics", KDD 2009).

Prediction for user ``u``, item ``i`` on day ``t``::

    r̂_ui(t) = μ + (b_i + b_{i,Bin(t)})·c_u(t) + b_u + α_u·dev_u(t) + b_{u,t}
              + q_iᵀ( p_u(t) + |R(u)|^-½ Σ_{j∈R(u)} y_j )
    p_uk(t) = p_uk + α_uk·dev_u(t) [+ p_{uk,t}]
    dev_u(t) = sign(t − t_u)·|t − t_u|^β,   β = 0.4,  t_u = mean day of u's ratings
    c_u(t)  = c_u + c_{u,t}   (only with ``scaling=true``; otherwise 1)

``Bin(t)`` splits the training range into ``n_bins`` (30) equal-length bins;
days after the training range (every test day of the Netflix protocol) fall in
the last bin, days before it in the first.

**Day-specific terms** (``b_{u,t}``, ``c_{u,t}``, ``p_{uk,t}``) exist only for
the (user, day) pairs seen in training: they are stored sparsely, one row per
distinct (user, day), through a CSR index user -> distinct days built from the
training ratings. A day without training ratings for that user — every test
day after the training range — has no such term: it takes the default, zero
(so ``c_u(t) = c_u``), as Koren prescribes. ``R(u)`` is the user's training
items.

**Defaults** (above :data:`~recozoo.defaults.SMALL_DATA_RATINGS` training ratings; below, the
bias rates, decay and passes come from :func:`~recozoo.defaults.timesvdpp_rule`) follow Koren's BellKor 2009 Grand Prize report ("The BellKor
Solution to the Netflix Grand Prize", Sec. III for the time-aware baseline
predictors, Sec. IV for the factor part): per parameter group learning rate η
/ regularisation λ — b_u 3e-3/3e-3, b_i 2e-3/3e-3, b_{i,bin} 5e-5/0.1, α_u
1e-5/50, b_{u,t} 2.5e-3/5e-3, c_u 8e-3/0.01 (shrunk towards 1), c_{u,t}
2e-3/5e-3, factors p/q/y 0.008/0.0015 and α_uk 1e-5/50; every η decays ×0.9
per pass. The day-specific factor η/λ (4e-3/0.01) are ours. Koren tuned these
on 100M ratings over six years; on small or short data the tiny η of α_u and
b_{i,bin} learn slowly — raise them via settings, or use the ``small`` preset
(``recozoo fit timesvdpp --preset small``, ``SMALL_DATA_SETTINGS`` below: chosen
on synthetic-drift VALID, it is docs/temporal.md's ``timesvdpp@small``).

**Speed**: one SGD pass is a numba kernel over users (shuffled each pass).
Per user, the implicit sum ``|R(u)|^-½ Σ y_j`` is computed once, the ratings
are visited with that sum fixed, and the ``y_j`` receive the accumulated
gradient once per user (the standard fast SVD++ schedule, so their
regularisation is applied once per user rather than once per rating). The
pass with the best VALID RMSE is kept (model selection on VALID only).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np

from recozoo.data.table import RatingsTable
from recozoo.engine.checkpoint import check_signature
from recozoo.engine.selection import Selection
from recozoo.errors import CheckpointError
from recozoo.io import atomic_open
from recozoo.metrics import rmse
from recozoo.models._factors import fold_in_ridge, keep_entries, with_ones
from recozoo.models.base import FoldIn, Model
from recozoo.models.temporal import TimeAwarePredict, days_of
from recozoo.progress import Reporter
from recozoo.search_space import Categorical, Float, Int, SearchSpace
from recozoo.defaults import timesvdpp_rule
from recozoo.settings import AUTO, BaseSettings, setting, settings_to_dict

__all__ = ["TimeSVDpp", "dev_u", "bin_of"]

# parameter groups: indices into the learning-rate / regularisation vectors
G_BU, G_AU, G_BUT, G_BI, G_BIB, G_CU, G_CUT, G_P, G_Q, G_Y, G_AUK, G_PUT = range(12)
N_GROUPS = 12


@dataclass(frozen=True)
class TimeSVDppSettings(BaseSettings):
    factors: int = setting(20, "number of latent factors", min=1)
    epochs: int = setting(AUTO, "maximum number of SGD passes (auto: docs/defaults.md)", min=1, auto=True)
    patience: int = setting(3, "stop after this many passes without a better VALID RMSE "
                               "(0 = never stop early)", min=0)
    n_bins: int = setting(30, "item-bias time bins over the training range", min=1)
    beta: float = setting(0.4, "exponent of dev_u(t) = sign(t-t_u)|t-t_u|^beta", min=0.0)
    day_bias: bool = setting(True, "learn the day-specific user bias b_{u,t}")
    scaling: bool = setting(False, "scale the item bias by c_u(t) = c_u + c_{u,t} (BellKor 2009)")
    day_factors: bool = setting(False, "learn day-specific factor offsets p_{uk,t} "
                                       "(one row of `factors` floats per training (user, day))")
    lr_bu: float = setting(AUTO, "learning rate of b_u (auto: docs/defaults.md)", min=0.0, auto=True)
    reg_bu: float = setting(3e-3, "regularisation of b_u", min=0.0)
    lr_bi: float = setting(AUTO, "learning rate of b_i (auto: docs/defaults.md)", min=0.0, auto=True)
    reg_bi: float = setting(3e-3, "regularisation of b_i", min=0.0)
    lr_bin: float = setting(5e-5, "learning rate of b_{i,Bin(t)}", min=0.0)
    reg_bin: float = setting(0.1, "regularisation of b_{i,Bin(t)}", min=0.0)
    lr_alpha: float = setting(1e-5, "learning rate of alpha_u (user bias drift)", min=0.0)
    reg_alpha: float = setting(50.0, "regularisation of alpha_u", min=0.0)
    lr_but: float = setting(2.5e-3, "learning rate of b_{u,t}", min=0.0)
    reg_but: float = setting(5e-3, "regularisation of b_{u,t}", min=0.0)
    lr_cu: float = setting(8e-3, "learning rate of c_u (with scaling)", min=0.0)
    reg_cu: float = setting(0.01, "regularisation of c_u towards 1", min=0.0)
    lr_cut: float = setting(2e-3, "learning rate of c_{u,t} (with scaling)", min=0.0)
    reg_cut: float = setting(5e-3, "regularisation of c_{u,t}", min=0.0)
    lr_factors: float = setting(0.008, "learning rate of p_u, q_i and y_j", min=0.0)
    reg_factors: float = setting(0.0015, "regularisation of p_u, q_i and y_j", min=0.0)
    lr_alpha_factors: float = setting(1e-5, "learning rate of alpha_uk (factor drift)", min=0.0)
    reg_alpha_factors: float = setting(50.0, "regularisation of alpha_uk", min=0.0)
    lr_day_factors: float = setting(4e-3, "learning rate of p_{uk,t} (ours)", min=0.0)
    reg_day_factors: float = setting(0.01, "regularisation of p_{uk,t} (ours)", min=0.0)
    lr_decay: float = setting(AUTO, "every learning rate is multiplied by this after each pass "
                                    "(auto: docs/defaults.md)", min=0.0, max=1.0, min_exclusive=True, auto=True)
    init_std: float = setting(0.01, "std of the normal initialisation of p, q, y", min=0.0)

    def lr_reg(self) -> tuple[np.ndarray, np.ndarray]:
        lr = np.array([self.lr_bu, self.lr_alpha, self.lr_but, self.lr_bi, self.lr_bin, self.lr_cu,
                       self.lr_cut, self.lr_factors, self.lr_factors, self.lr_factors,
                       self.lr_alpha_factors, self.lr_day_factors], dtype=np.float64)
        reg = np.array([self.reg_bu, self.reg_alpha, self.reg_but, self.reg_bi, self.reg_bin,
                        self.reg_cu, self.reg_cut, self.reg_factors, self.reg_factors,
                        self.reg_factors, self.reg_alpha_factors, self.reg_day_factors],
                       dtype=np.float64)
        return lr, reg


# ---------------------------------------------------------------- time features
def dev_u(day: np.ndarray, t_u: np.ndarray, beta: float) -> np.ndarray:
    """``sign(t − t_u)·|t − t_u|^β`` (float64), t and t_u in days."""
    d = np.asarray(day, dtype=np.float64) - np.asarray(t_u, dtype=np.float64)
    return np.sign(d) * np.abs(d) ** beta


def bin_of(day: np.ndarray, d_min: int, d_max: int, n_bins: int) -> np.ndarray:
    """Item time bin of each day: ``n_bins`` equal bins over [d_min, d_max], clamped outside."""
    span = d_max - d_min + 1
    rel = np.asarray(day, dtype=np.int64) - d_min
    return np.clip(rel * n_bins // span, 0, n_bins - 1).astype(np.int32)


# ---------------------------------------------------------------- the SGD pass
@numba.njit(cache=True, fastmath=True, nogil=True)
def _sgd_pass(order, indptr, items, ratings, dev, bins, udi, mu,
              bu, au, but, bi, bib, cu, cut, P, A, Pt, Q, Y,
              lr, reg, scaling, day_bias, day_factors):
    """One pass over the users in ``order``; returns the sum of squared training errors."""
    k = P.shape[1]
    z = np.zeros(k, dtype=np.float32)
    gz = np.zeros(k, dtype=np.float32)
    pt = np.zeros(k, dtype=np.float32)
    sse = 0.0
    for oi in range(order.shape[0]):
        u = order[oi]
        a, b = indptr[u], indptr[u + 1]
        n = b - a
        if n == 0:
            continue
        norm = np.float32(1.0 / np.sqrt(n))
        for f in range(k):
            z[f] = 0.0
            gz[f] = 0.0
        for r in range(a, b):
            j = items[r]
            for f in range(k):
                z[f] += Y[j, f]
        for f in range(k):
            z[f] *= norm
        for r in range(a, b):
            i = items[r]
            e_dev = dev[r]
            bn = bins[r]
            d = udi[r]
            ib = bi[i] + bib[i, bn]
            s = np.float32(1.0)
            if scaling:
                s = cu[u] + cut[d]
            pred = mu + bu[u] + au[u] * e_dev + ib * s
            if day_bias:
                pred += but[d]
            for f in range(k):
                v = P[u, f] + A[u, f] * e_dev + z[f]
                if day_factors:
                    v += Pt[d, f]
                pt[f] = v
                pred += Q[i, f] * v
            e = ratings[r] - pred
            sse += e * e
            # biases (all gradients taken at the pre-step point)
            bu[u] += lr[0] * (e - reg[0] * bu[u])
            au[u] += lr[1] * (e * e_dev - reg[1] * au[u])
            if day_bias:
                but[d] += lr[2] * (e - reg[2] * but[d])
            bi[i] += lr[3] * (e * s - reg[3] * bi[i])
            bib[i, bn] += lr[4] * (e * s - reg[4] * bib[i, bn])
            if scaling:
                cu_old = cu[u]
                cu[u] += lr[5] * (e * ib - reg[5] * (cu_old - 1.0))
                cut[d] += lr[6] * (e * ib - reg[6] * cut[d])
            # factors
            for f in range(k):
                q = Q[i, f]
                gz[f] += e * q
                Q[i, f] += lr[8] * (e * pt[f] - reg[8] * q)
                P[u, f] += lr[7] * (e * q - reg[7] * P[u, f])
                A[u, f] += lr[10] * (e * q * e_dev - reg[10] * A[u, f])
                if day_factors:
                    Pt[d, f] += lr[11] * (e * q - reg[11] * Pt[d, f])
        # implicit factors: one update per user with the accumulated gradient
        for r in range(a, b):
            j = items[r]
            for f in range(k):
                Y[j, f] += lr[9] * (gz[f] * norm - reg[9] * Y[j, f])
    return sse


@numba.njit(cache=True, nogil=True)
def _implicit_sums(indptr, items, Y):
    """``|R(u)|^-½ Σ_{j∈R(u)} y_j`` for every user (zeros for users without ratings)."""
    n_u = indptr.shape[0] - 1
    k = Y.shape[1]
    Z = np.zeros((n_u, k), dtype=np.float32)
    for u in range(n_u):
        a, b = indptr[u], indptr[u + 1]
        if b == a:
            continue
        norm = 1.0 / np.sqrt(b - a)
        for r in range(a, b):
            j = items[r]
            for f in range(k):
                Z[u, f] += Y[j, f]
        for f in range(k):
            Z[u, f] *= norm
    return Z


#: the last pass's state in the run directory (``resume`` continues from it)
CHECKPOINT = "last.npz"
_PARAMS = ("bu", "au", "but", "bi", "bib", "cu", "cut", "P", "A", "Pt", "Q", "Y")

#: the ``small`` preset (``--preset small``): BellKor's rates were tuned for 100M ratings and
#: under-train ~0.5M ratings in 30 passes. Chosen on VALID of synthetic-drift (docs/temporal.md), then used unchanged on every dataset: faster bias rates, b_{i,bin}
#: rate 1e-3, factors lr 7e-3 / reg 0.015, decay 0.95, 60 passes; alpha_u keeps BellKor's 1e-5 / 50.
SMALL_DATA_SETTINGS: dict[str, object] = {
    "lr_bu": 5e-3, "lr_bi": 5e-3, "lr_bin": 1e-3, "lr_decay": 0.95, "lr_factors": 7e-3,
    "reg_factors": 0.015, "epochs": 60,
}


def _small_preset(dataset: str) -> dict[str, object]:
    """Settings for small data (~1M ratings or fewer), chosen on synthetic-drift VALID."""
    return dict(SMALL_DATA_SETTINGS)


class TimeSVDpp(TimeAwarePredict, Model):
    """Koren's TimeSVD++ with BellKor-2009 defaults; see the module docstring."""

    name = "timesvdpp"
    Settings = TimeSVDppSettings
    uses_timestamps = True
    auto_rule = timesvdpp_rule
    valid_curve = True          # each pass's VALID RMSE, the engine's record
    tune_prunes = False         # trials of seconds, slow learners end best: see Model.tune_prunes
    fallback = ("global mean + the known side's static bias (b_u or b_i); day terms of days "
                "without training ratings are zero")
    summary = "TimeSVD++ (Koren KDD 2009): drifting biases, item time bins, day effects, SVD++"
    #: tiny settings for the conformance kit (recozoo.testing.check_model)
    conformance_settings = {"epochs": 3, "factors": 4, "scaling": True, "day_factors": True}
    #: named settings (``recozoo fit timesvdpp --preset small``); the defaults stay BellKor's
    presets = {"small": _small_preset}
    #: what ``recozoo tune timesvdpp`` tries; VALID stops each trial (patience) and prunes it per pass
    search_space = SearchSpace(Int("factors", 5, 100, log=True), Float("lr_factors", 1e-3, 0.03, log=True),
                               Float("reg_factors", 1e-4, 0.1, log=True), Float("lr_decay", 0.8, 0.99),
                               Float("reg_bu", 1e-3, 0.1, log=True), Float("reg_bi", 1e-3, 0.1, log=True),
                               Categorical("scaling", (True, False)), Categorical("day_bias", (True, False)),
                               fixed={"epochs": 40, "patience": 3})
    folds_in = FoldIn.YES
    fold_in_method = ("static part only: b_u and p_u solve the per-user SGD objective Σ e² + n (reg_bu b_u² "
                      "+ reg_factors ‖p_u‖²) with items, y_j and the implicit term fixed; every new rating "
                      "is 'now' (the default day), so dev_u = 0, c_u = 1 and no day terms (no drift)")

    # ------------------------------------------------------------------ fitting
    def _prepare(self, train: RatingsTable):
        """Per-rating day features and the (user, day) index, from the training table."""
        s = self.settings
        days = days_of(train.timestamps)
        self.d_min_, self.d_max_ = int(days.min()), int(days.max())
        self.default_day_ = self.d_max_ + 1
        span = self.d_max_ - self.d_min_ + 1
        users = train.users.astype(np.int64)
        rel = days - self.d_min_
        cnt = train.user_counts()
        sums = np.bincount(users, weights=rel.astype(np.float64), minlength=train.n_users)
        self.t_u_ = np.where(cnt > 0, sums / np.maximum(cnt, 1), 0.0)   # mean rating day (relative)
        dev = dev_u(rel, self.t_u_[users], s.beta).astype(np.float32)
        bins = bin_of(days, self.d_min_, self.d_max_, s.n_bins)
        # CSR user -> distinct training days: sorted keys u*span + rel; row index = key position
        keys = users * span + rel
        self.ud_keys_, udi = np.unique(keys, return_inverse=True)
        return dev, bins, udi.astype(np.int32).reshape(-1)

    def _init_params(self, n_users: int, n_items: int, n_ud: int) -> dict[str, np.ndarray]:
        s = self.settings
        k = s.factors
        rng = np.random.default_rng(self.seed)
        f32 = np.float32
        n_put = n_ud if s.day_factors else 0
        return {
            "bu": np.zeros(n_users, f32), "au": np.zeros(n_users, f32),
            "but": np.zeros(n_ud, f32), "bi": np.zeros(n_items, f32),
            "bib": np.zeros((n_items, s.n_bins), f32), "cu": np.ones(n_users, f32),
            "cut": np.zeros(n_ud, f32),
            "P": (rng.standard_normal((n_users, k)) * s.init_std).astype(f32),
            "A": np.zeros((n_users, k), f32), "Pt": np.zeros((n_put, k), f32),
            "Q": (rng.standard_normal((n_items, k)) * s.init_std).astype(f32),
            "Y": (rng.standard_normal((n_items, k)) * s.init_std).astype(f32),
        }

    def _fit(self, train, valid, reporter: Reporter, run_dir: Path | None, resume: bool) -> None:
        """SGD passes with the engine's selection rule (:class:`~recozoo.engine.selection.Selection`) and
        its checkpoint file: ``run_dir/last.npz`` after every pass, so ``resume`` continues exactly."""
        s = self.settings
        dev, bins, udi = self._prepare(train)
        self.mu_ = np.float32(self.global_mean_)
        params = self._init_params(train.n_users, train.n_items, self.ud_keys_.size)
        lr, reg = s.lr_reg()
        indptr = train.indptr.astype(np.int64)
        items = train.items.astype(np.int32)
        ratings = train.ratings.astype(np.float32)
        rng = np.random.default_rng(self.seed + 1)
        valid = valid if valid is not None and valid.nnz > 0 else None
        sel, best, start = Selection(uses_valid=valid is not None, patience=s.patience), None, 1
        self.history_: list[dict] = []
        sig = self._signature(train)
        ck = self._load_checkpoint(run_dir, sig) if resume else None
        if ck is not None:                      # continue exactly where the last pass ended
            params, best, lr = ck["params"], ck["best"], ck["lr"]
            sel.load_state_dict(ck["selection"])
            rng.bit_generator.state = ck["rng"]
            self.history_ = list(ck["history"])
            start = ck["epoch"] + 1
        reporter.start(f"{self.name}", total=s.epochs)
        for epoch in range(start, s.epochs + 1):
            if sel.stopped:
                break
            t0 = time.perf_counter()
            order = rng.permutation(train.n_users).astype(np.int64)
            sse = _sgd_pass(order, indptr, items, ratings, dev, bins, udi, self.mu_,
                            *(params[n] for n in _PARAMS), lr, reg,
                            s.scaling, s.day_bias, s.day_factors)
            lr = lr * s.lr_decay
            rec = {"epoch": epoch, "train_rmse": float(np.sqrt(sse / max(train.nnz, 1))),
                   "seconds": time.perf_counter() - t0}
            self._set_params(params, indptr, items)
            if valid is not None:
                rec["valid_rmse"] = rmse(self.predict_table(valid), valid.ratings)
            self.history_.append(rec)
            reporter.log(rec)
            reporter.advance(1, **{k: v for k, v in rec.items() if k.endswith("rmse")})
            if sel.update(epoch, rec.get("valid_rmse")) and valid is not None:
                best = {n: a.copy() for n, a in params.items()}
            if run_dir is not None:
                self._save_checkpoint(run_dir, {"signature": sig, "epoch": epoch, "params": params, "best": best,
                                                "lr": lr, "selection": sel.state_dict(),
                                                "rng": rng.bit_generator.state, "history": self.history_})
        reporter.finish()
        self._set_params(best if best is not None else params, indptr, items)
        self.best_epoch_ = sel.best_epoch

    def _signature(self, train: RatingsTable) -> dict:
        """What a checkpoint must match to be resumed: the data's shape and every setting but the budget."""
        st = {k: v for k, v in settings_to_dict(self.settings).items() if k not in ("epochs", "patience")}
        return {"model": self.name, "n_users": train.n_users, "n_items": train.n_items, "n_ratings": train.nnz,
                "settings": json.dumps(st, sort_keys=True)}

    @staticmethod
    def _save_checkpoint(run_dir: Path, state: dict) -> None:
        """The arrays and a JSON header (everything else) in one ``.npz``, written atomically.

        numpy, not torch: a TimeSVD++ fit stays torch-free (torch's import is 3-6 s and ~200 MB), and
        the file loads with ``allow_pickle=False`` (no code in it, as with ``weights_only``)."""
        arrays = {f"params.{n}": a for n, a in state["params"].items()}
        if state["best"] is not None:
            arrays.update({f"best.{n}": a for n, a in state["best"].items()})
        header = {"signature": state["signature"], "epoch": state["epoch"], "lr": np.asarray(state["lr"]).tolist(),
                  "selection": state["selection"], "rng": state["rng"], "history": state["history"],
                  "has_best": state["best"] is not None}
        arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        with atomic_open(Path(run_dir) / CHECKPOINT) as f:
            np.savez(f, **arrays)

    @staticmethod
    def _load_checkpoint(run_dir: Path | None, signature: dict) -> dict | None:
        """The state :meth:`_save_checkpoint` wrote, or None when there is none; a file that is not one is
        a one-line :class:`CheckpointError`."""
        path = Path(run_dir) / CHECKPOINT if run_dir is not None else None
        if path is None or not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                ck = json.loads(z["header"].tobytes().decode())
                ck["params"] = {n: z[f"params.{n}"] for n in _PARAMS}
                ck["best"] = {n: z[f"best.{n}"] for n in _PARAMS} if ck["has_best"] else None
        except Exception as e:  # a truncated zip, a foreign file, a missing array: many types
            raise CheckpointError(f"{path}: not a TimeSVD++ checkpoint ({type(e).__name__})") from None
        check_signature(ck, signature, path)
        try:
            return {**ck, "lr": np.asarray(ck["lr"], dtype=np.float64), "epoch": int(ck["epoch"])}
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{path}: not a TimeSVD++ checkpoint ({type(e).__name__}: {e})") from None

    def _set_params(self, params: dict[str, np.ndarray], indptr, items) -> None:
        for n in _PARAMS:
            setattr(self, n + "_", params[n])
        self.Z_ = _implicit_sums(indptr, items, params["Y"])

    # --------------------------------------------------------------- predicting
    def _day_rows(self, users: np.ndarray, rel: np.ndarray) -> np.ndarray:
        """Row of each (user, day) in the day-specific tables; -1 for days without training data."""
        span = self.d_max_ - self.d_min_ + 1
        inside = (rel >= 0) & (rel < span)
        keys = users * span + np.where(inside, rel, 0)
        pos = np.searchsorted(self.ud_keys_, keys)
        pos_c = np.minimum(pos, max(self.ud_keys_.size - 1, 0))
        found = inside & (self.ud_keys_.size > 0) & (self.ud_keys_[pos_c] == keys)
        return np.where(found, pos_c, -1)

    def _predict_at(self, users, items, days):
        s = self.settings
        rel = days - self.d_min_
        dev = dev_u(rel, self.t_u_[users], s.beta).astype(np.float32)
        dev[self._seen_count(users) == 0] = 0.0
        bins = bin_of(days, self.d_min_, self.d_max_, s.n_bins)
        row = self._day_rows(users, rel)
        has = row >= 0
        rc = np.maximum(row, 0)
        ib = self.bi_[items] + self.bib_[items, bins]
        if s.scaling:
            ib = ib * (self.cu_[users] + np.where(has, self.cut_[rc] if self.cut_.size else 0, 0))
        out = self.mu_ + self.bu_[users] + self.au_[users] * dev + ib
        if s.day_bias and self.but_.size:
            out = out + np.where(has, self.but_[rc], 0.0)
        pu = self.P_[users] + self.A_[users] * dev[:, None] + self.Z_[users]
        if s.day_factors and self.Pt_.size:
            pu = pu + np.where(has[:, None], self.Pt_[rc], 0.0)
        out = out + np.einsum("ij,ij->i", pu, self.Q_[items])
        return out.astype(np.float32)

    def score_items(self, users: np.ndarray) -> np.ndarray:
        """All items for each user at the default day (after training: no day terms), densely."""
        self._check_fitted()
        s = self.settings
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        dev = dev_u(np.full(users.size, self.default_day_ - self.d_min_), self.t_u_[users],
                    s.beta).astype(np.float32)
        dev[self._seen_count(users) == 0] = 0.0
        last = bin_of(np.array([self.default_day_]), self.d_min_, self.d_max_, s.n_bins)[0]
        ib = (self.bi_ + self.bib_[:, last])[None, :]
        if s.scaling:
            ib = ib * self.cu_[users][:, None]
        pu = self.P_[users] + self.A_[users] * dev[:, None] + self.Z_[users]
        out = (self.mu_ + self.bu_[users] + self.au_[users] * dev)[:, None] + ib + pu @ self.Q_.T
        return out.astype(np.float32)

    def _score_new_users(self, ratings):
        """Koren's model at its no-drift values for a user whose ratings all fall on the default day.

        With every rating on one day t = t_u, dev_u(t) = 0, so α_u, α_uk and the
        drift vanish; the day terms b_{u,t}, c_{u,t}, p_{uk,t} of a day without
        training data are 0 and c_u takes its prior value 1 (reg_cu pulls it
        there). The item bias is read in the default day's bin. What is left is
        SVD++ with biases: z = |R|^-½ Σ_{j∈R} y_j over the new user's items, and
        (b_u, p_u) minimise Σ_i (r_i − μ − b_i − b_{i,bin} − q_i·z − b_u − q_i·p_u)²
        + n (reg_bu b_u² + reg_factors ‖p_u‖²), the per-user form of the SGD
        objective (it applies each penalty once per rating). Items without
        training ratings are left out of R and of the solve.
        """
        s = self.settings
        known = np.bincount(self._seen.indices, minlength=self.n_items_) > 0
        keep = known[ratings.indices]
        if not keep.all():
            ratings = keep_entries(ratings, keep)
        n = np.diff(ratings.indptr)
        rows = np.repeat(np.arange(ratings.shape[0]), n)
        norm = np.where(n > 0, 1.0 / np.sqrt(np.maximum(n, 1)), 0.0)
        Z = np.zeros((ratings.shape[0], self.Y_.shape[1]))
        np.add.at(Z, rows, self.Y_[ratings.indices].astype(np.float64))
        Z *= norm[:, None]
        last = bin_of(np.array([self.default_day_]), self.d_min_, self.d_max_, s.n_bins)[0]
        item_b = (self.bi_ + self.bib_[:, last]).astype(np.float64)
        Q = self.Q_
        t = (ratings.data - self.mu_ - item_b[ratings.indices]
             - np.einsum("ij,ij->i", Q[ratings.indices].astype(np.float64), Z[rows]))
        k = Q.shape[1]
        sol = fold_in_ridge(ratings, lambda c: with_ones(Q[c]), t, np.r_[np.full(k, s.reg_factors), s.reg_bu])
        P, bu = sol[:, :k], sol[:, k]
        out = (float(self.mu_) + bu[:, None] + item_b[None, :] + (P + Z) @ Q.T.astype(np.float64)).astype(np.float32)
        cold = n == 0
        if cold.any():
            it = np.arange(self.n_items_)
            out[cold] = self._predict_unknown(np.full(it.size, -1), it)
        return out

    def _seen_count(self, users):
        return np.diff(self._seen.indptr)[users]

    def _predict_unknown(self, users, items):
        out = np.full(users.shape[0], self.global_mean_, dtype=np.float32)
        ku = (users >= 0) & (users < self.n_users_)
        ki = (items >= 0) & (items < self.n_items_)
        out[ku] += self.bu_[users[ku]]
        out[ki] += self.bi_[items[ki]]
        return out

    # -------------------------------------------------------------- persistence
    def _get_state(self):
        st = {n: getattr(self, n + "_") for n in _PARAMS}
        st.update({"Z": self.Z_, "t_u": self.t_u_, "ud_keys": self.ud_keys_,
                   "mu": float(self.mu_), "d_min": self.d_min_, "d_max": self.d_max_,
                   "best_epoch": self.best_epoch_})
        return st

    def _set_state(self, state):
        for n in _PARAMS:
            setattr(self, n + "_", np.asarray(state[n]))
        self.Z_ = np.asarray(state["Z"])
        self.t_u_ = np.asarray(state["t_u"])
        self.ud_keys_ = np.asarray(state["ud_keys"])
        self.mu_ = np.float32(state["mu"])
        self.d_min_, self.d_max_ = int(state["d_min"]), int(state["d_max"])
        self.default_day_ = self.d_max_ + 1
        self.best_epoch_ = int(state["best_epoch"])

