"""Matrix factorisation by minibatch SGD: PMF and biased MF ("SVD").

* ``pmf`` — Salakhutdinov & Mnih, "Probabilistic Matrix Factorization"
  (NIPS 2007). Gaussian likelihood with spherical Gaussian priors on the user
  and item factors; maximising the posterior is minimising
  Σ (r_ui − r̂_ui)² + λ_U Σ‖U_u‖² + λ_V Σ‖V_i‖², with λ_U = σ²/σ_U² and
  λ_V = σ²/σ_V². ``link="logistic"`` (the default) is the variant the paper's
  experiments use: ratings are mapped to [0, 1] by (r − r_min)/(r_max − r_min)
  (the paper's (x − 1)/(K − 1), with the training data's scale) and the model
  is g(U_u·V_i) with the logistic g, so predictions stay inside the
  rating scale *by construction* (that is the model, not clipping).
  ``link="linear"`` is the plain linear-Gaussian model on mean-centred
  ratings, as in the authors' released Matlab code (``pmf.m``). The paper
  trains with minibatches and momentum; we use plain minibatch SGD (no
  momentum), which reaches the same MAP objective.
* ``biasedmf`` — Funk's SVD with Koren's baseline terms (Koren, Bell &
  Volinsky, "Matrix Factorization Techniques for Recommender Systems", IEEE
  Computer 2009, eq. 5): r̂ = μ + b_u + b_i + p_u·q_i, trained by SGD on the
  regularised squared error. Defaults are Surprise's ``SVD`` defaults (100
  factors, 20 epochs, lr 0.005, reg 0.02, init std 0.1), so the two can be
  compared like for like.

Training: each epoch shuffles the ratings (seeded) and walks them in
minibatches of ``batch_size``; within a minibatch every gradient is computed
at the parameters as they were at the batch start, then all are applied
(summed per user/item). ``batch_size=1`` is Funk's classic per-rating SGD
and ``biasedmf``'s default: on ML-100K u1 it gave the same VALID RMSE as
``batch_size=64`` (0.9447 both, Surprise's settings) and, updating in place
in one pass, its epoch is the fastest (20 epochs, 100 factors: 0.25 s against
0.41 s for batches of 64 on the 2-core CPU).
With VALID, each epoch's VALID RMSE is logged (the curve ``recozoo tune`` prunes
from; :class:`~recozoo.models._factors.ValidCurve` scores the training arrays
in place). It selects nothing: every epoch runs, so the fitted model is the one
a fit without VALID gives.
The loop is one compiled numba kernel (``cache=True``: compiled once per
machine, about a second, then loaded from the cache), so nothing in Python runs
per rating.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Literal

import numba
import numpy as np

from recozoo.defaults import biasedmf_rule, pmf_rule
from recozoo.errors import RecozooError, SettingsError
from recozoo.models._baseline import BiasBaseline
from recozoo.models._factors import BiasedFactorModel, ValidCurve, padded_rows
from recozoo.search_space import Categorical, Float, Int, SearchSpace, When
from recozoo.settings import AUTO, BaseSettings, setting

__all__ = ["PMF", "BiasedMF", "PMFSettings", "BiasedMFSettings", "sgd_epoch"]


@numba.njit(cache=True, nogil=True, fastmath=True)
def sgd_epoch(users, items, ratings, perm, P, Q, bu, bi, mu, use_bias, logistic, lo, span,
              lr, lr_bias, reg_p, reg_q, reg_bu, reg_bi, batch, gP, gQ, gb):  # pragma: no cover
    """One epoch of minibatch SGD over ``perm``; returns the sum of squared errors.

    Prediction x = mu + [b_u + b_i] + p_u·q_i; with ``logistic`` the rating is
    lo + span·g(x) (PMF's logistic link), else x itself. ``reg_p``/``reg_q`` are
    per user/item (a count-dependent prior, PMF's ``reg_count``). ``gP``/``gQ`` are
    (batch x k) and ``gb`` (batch x 2) scratch buffers.
    """
    n = perm.shape[0]
    k = P.shape[1]
    sse = 0.0
    for s in range(0, n, batch):
        e = min(n, s + batch)
        for t in range(s, e):                    # gradients at the batch-start parameters
            j = perm[t]
            u = users[j]
            i = items[j]
            x = mu
            for f in range(k):
                x += P[u, f] * Q[i, f]
            if use_bias:
                x += bu[u] + bi[i]
            if logistic:
                g = 1.0 / (1.0 + np.exp(-x))
                err = ratings[j] - (lo + span * g)
                d = err * span * g * (1.0 - g)
            else:
                err = ratings[j] - x
                d = err
            sse += err * err
            rp = reg_p[u]                        # loaded once: the compiler cannot tell the
            rq = reg_q[i]                        # factor writes below never alias them
            if batch == 1:                       # plain SGD: update in place, one pass
                pu = P[u]
                qi = Q[i]
                for f in range(k):
                    pf = pu[f]
                    qf = qi[f]
                    pu[f] = pf + lr * (d * qf - rp * pf)
                    qi[f] = qf + lr * (d * pf - rq * qf)
                if use_bias:
                    bu[u] += lr_bias * (d - reg_bu * bu[u])
                    bi[i] += lr_bias * (d - reg_bi * bi[i])
                continue
            row = t - s
            for f in range(k):
                gP[row, f] = d * Q[i, f] - rp * P[u, f]
                gQ[row, f] = d * P[u, f] - rq * Q[i, f]
            if use_bias:
                gb[row, 0] = d - reg_bu * bu[u]
                gb[row, 1] = d - reg_bi * bi[i]
        if batch == 1:
            continue
        for t in range(s, e):                    # apply, summed per user/item
            j = perm[t]
            u = users[j]
            i = items[j]
            row = t - s
            for f in range(k):
                P[u, f] += lr * gP[row, f]
                Q[i, f] += lr * gQ[row, f]
            if use_bias:
                bu[u] += lr_bias * gb[row, 0]
                bi[i] += lr_bias * gb[row, 1]
    return sse


def logistic_fold_in(ratings, V: np.ndarray, scale: tuple[float, float], reg: float,
                     iterations: int = 100, tol: float = 1e-10, count_reg: float = 0.0) -> np.ndarray:
    """Each row's U minimising Σ_i (r_i − lo − span·σ(U·V_i))² + (n·reg + count_reg)·‖U‖² (rows x d, float64).

    Levenberg-Marquardt on the padded batch (:func:`padded_rows`): the damping
    grows when a step does not lower a row's objective and shrinks when it does,
    so every row's objective decreases monotonically; a row stops when its step
    is below ``tol`` (relative). Rows without ratings get 0.
    """
    lo, span = scale
    d = V.shape[1]
    out = np.zeros((ratings.shape[0], d))
    eye = np.eye(d)
    for rows, pos, mask in padded_rows(ratings.indptr):
        n = mask.sum(1).astype(np.float64)
        live = n > 0
        if not live.any():
            continue
        rows, pos, mask, n = rows[live], pos[live], mask[live], n[live]
        F = V[ratings.indices[pos]].astype(np.float64) * mask[:, :, None]
        r = np.where(mask, ratings.data[pos].astype(np.float64), 0.0)
        lam = (n * reg + count_reg)[:, None]

        def objective(U):
            e = (r - lo - span / (1.0 + np.exp(-np.einsum("bld,bd->bl", F, U)))) * mask
            return (e ** 2).sum(1) + lam[:, 0] * (U ** 2).sum(1), e

        U = np.zeros((rows.size, d))
        damp = np.full(rows.size, 1e-3)
        f, e = objective(U)
        active = np.ones(rows.size, dtype=bool)
        for _ in range(iterations):
            if not active.any():
                break
            g = 1.0 / (1.0 + np.exp(-np.einsum("bld,bd->bl", F, U)))
            J = (span * g * (1 - g) * mask)[:, :, None] * F                  # d pred / dU
            A = np.matmul(J.transpose(0, 2, 1), J) + lam[:, :, None] * eye
            grad = np.einsum("bld,bl->bd", J, e) - lam * U                   # −½ ∇objective
            step = np.linalg.solve(A + damp[:, None, None] * eye, grad[:, :, None])[:, :, 0]
            step[~active] = 0.0
            f_new, e_new = objective(U + step)
            better = f_new <= f
            U[better] += step[better]
            f[better], e[better] = f_new[better], e_new[better]
            damp = np.where(better, damp / 3.0, damp * 4.0)
            small = np.linalg.norm(step, axis=1) <= tol * (1.0 + np.linalg.norm(U, axis=1))
            active &= ~(better & small) & (damp < 1e12)
        out[rows] = U
    return out


class _SGDFactorModel(BiasedFactorModel):
    """Shared mechanics of PMF and biased MF (one kernel, two parameterisations)."""

    _use_bias = False
    conformance_settings = {"factors": 4, "epochs": 2}
    valid_curve = True          # each epoch's VALID RMSE (scored only; the fit runs every epoch)
    tune_prunes = False         # trials of seconds, slow learners end best: see Model.tune_prunes

    def _hyper(self) -> dict[str, float]:
        raise NotImplementedError

    def _fit(self, train, valid, reporter, run_dir, resume):
        s = self.settings
        h = self._hyper()
        rng = np.random.default_rng(self.seed)
        users = train.users.astype(np.int32)
        items = np.asarray(train.items, dtype=np.int32)
        r = np.asarray(train.ratings, dtype=np.float64)
        logistic = self._logistic()
        if logistic:
            lo, hi = float(r.min()), float(r.max())
            self.scale_ = (lo, max(hi - lo, 1e-6))
            self.offset_ = 0.0
        else:
            self.scale_ = (0.0, 1.0)
            self.offset_ = float(self.global_mean_)
        self.user_known_ = train.user_counts() > 0
        self.item_known_ = train.item_counts() > 0
        P = rng.normal(0.0, s.init_std, (train.n_users, s.factors))
        Q = rng.normal(0.0, s.init_std, (train.n_items, s.factors))
        bu = np.zeros(train.n_users)
        bi = np.zeros(train.n_items)
        use_bias = self._use_bias
        self.base_reg_user_ = None
        if self._baseline():            # μ + b_u + b_i of the bias model, fixed (PMF learns no biases)
            base = BiasBaseline.fit(train)
            bu[:], bi[:] = base.user_bias, base.item_bias
            self.offset_, use_bias, self.base_reg_user_ = base.mu, True, base.reg_user
        self._warm_init(P, Q, bu, bi)
        b = min(s.batch_size, max(1, r.size))
        reg_p, reg_q = self._factor_regs(train, h)
        gP, gQ, gb = np.empty((b, s.factors)), np.empty((b, s.factors)), np.empty((b, 2))
        curve = ValidCurve(self, valid) if valid is not None and valid.nnz else None
        reporter.start(self.name, total=s.epochs)
        for epoch in range(s.epochs):
            perm = rng.permutation(r.size).astype(np.int64)
            sse = sgd_epoch(users, items, r, perm, P, Q, bu, bi, self.offset_, use_bias,
                            logistic, self.scale_[0], self.scale_[1], s.lr, h["lr_bias"],
                            reg_p, reg_q, h["reg_bu"], h["reg_bi"], b, gP, gQ, gb)
            if not np.isfinite(sse):
                raise RecozooError(f"{self.name}: training diverged at epoch {epoch + 1} "
                                   f"(lr {s.lr} is too large for this data)")
            figures = {"train_rmse": float(np.sqrt(sse / r.size))}
            if curve is not None:
                figures["valid_rmse"] = curve.rmse(P, Q, bu, bi, self.offset_)
            reporter.advance(1, **figures)
            reporter.log({"epoch": epoch + 1, **figures})
        reporter.finish()
        self.user_factors_ = P.astype(np.float32)
        self.item_factors_ = Q.astype(np.float32)
        self.user_bias_ = bu.astype(np.float32)
        self.item_bias_ = bi.astype(np.float32)

    def _factor_regs(self, train, h) -> tuple[np.ndarray, np.ndarray]:
        """Each user's and item's per-rating L2 weight of its factors (float64; here the same for all)."""
        return np.full(train.n_users, float(h["reg_p"])), np.full(train.n_items, float(h["reg_q"]))

    def _baseline(self) -> bool:
        """Whether the fit starts from the bias model's μ, b_u and b_i (PMF: ``baseline=bias``)."""
        return False

    def _logistic(self) -> bool:
        """Whether ratings are lo + span·σ(x) (PMF: ``link=logistic``), else x itself."""
        return False

    # ------------------------------------------------------ prediction, state
    def _uses_bias(self) -> bool:
        # PMF: a user without data has the prior mean factor 0, which the link maps
        # to the mean, not to a rating; so its fallback is the global mean (μ + the
        # known side's bias under the bias baseline)
        return self._use_bias or self._baseline()

    def _link(self, x: np.ndarray) -> np.ndarray:
        if self._logistic():
            lo, span = self.scale_
            return (lo + span / (1.0 + np.exp(-x))).astype(np.float32)
        return x.astype(np.float32)

    def _get_state(self) -> dict[str, Any]:
        return {**super()._get_state(), "scale": list(self.scale_)}

    def _fold_in_reg(self) -> tuple[float, float]:
        h = self._hyper()
        return float(h["reg_p"]), float(h["reg_bu"])

    def _set_state(self, state):
        super()._set_state(state)
        self.scale_ = tuple(float(v) for v in state["scale"])


@dataclass(frozen=True)
class PMFSettings(BaseSettings):
    """Defaults: the paper's D=10, and the rest as chosen on ML-100K u1 VALID by
    benchmarks/bench_zoo.py (the paper's λ values do not transfer: its objective sums
    the priors once, SGD applies them per rating)."""

    factors: int = setting(10, "latent dimension D (the paper's experiments use 10 and 30)",
                           min=1, max=4096)
    epochs: int = setting(80, "passes over the training ratings", min=1, max=100_000)
    lr: float = setting(0.01, "SGD learning rate", min=0, min_exclusive=True)
    reg_user: float = setting(0.1, "λ_U = σ²/σ_U²: weight of the Gaussian prior on user factors",
                              min=0)
    reg_item: float = setting(0.05, "λ_V = σ²/σ_V²: weight of the Gaussian prior on item factors",
                              min=0)
    reg_count: float = setting(AUTO, "prior weight c per user and per item on top of λ·n: its factors' "
                               "penalty over its n ratings is λ·n + c, so few ratings shrink harder "
                               "(0 = the paper's; auto: docs/defaults.md)", min=0, auto=True)
    link: Literal["logistic", "linear"] = setting(
        "linear", "logistic: g(U·V) on ratings mapped to [0,1] (the paper's experiments); "
        "linear: μ + U·V (the authors' pmf.m)")
    batch_size: int = setting(64, "ratings per minibatch (1 = per-rating SGD)", min=1)
    init_std: float = setting(0.1, "standard deviation of the random initial factors", min=0)
    baseline: Literal["none", "bias"] = setting(
        "bias", "bias: μ + b_u + b_i of the bias model (fitted on TRAIN, fixed) under the factors, "
        "link=linear only; none: no biases (with link=logistic: the paper's model, --preset paper)")

    def validate(self) -> None:
        if self.baseline == "bias" and self.link != "linear":
            raise SettingsError("setting 'baseline': bias adds μ + b_u + b_i to U·V, which needs link=linear")


class PMF(_SGDFactorModel):
    """Probabilistic matrix factorisation (Salakhutdinov & Mnih 2007), MAP by minibatch SGD."""

    name = "pmf"
    Settings = PMFSettings
    summary = "probabilistic matrix factorisation (Salakhutdinov & Mnih 2007)"
    fallback = ("user or item without training ratings: μ + the known side's bias (baseline=bias), "
                "the global mean (baseline=none)")
    #: ``--preset paper``: the paper's model (logistic link, no biases), as the default was before issue 12
    presets: ClassVar[dict[str, Callable[[str], dict[str, Any]]]] = {
        "paper": lambda dataset: {"link": "logistic", "baseline": "none", "reg_count": 0.0}}
    fold_in_method = ("MAP of the user's factor with the items fixed: Σ (r − g(U·V_i))² + (n λ_U + c) ‖U‖² "
                      "(c: reg_count), one ridge solve (linear link) or Gauss-Newton iterations (logistic link)")
    _use_bias = False
    auto_rule = pmf_rule
    #: what ``recozoo tune pmf`` tries
    search_space = SearchSpace(Int("factors", 5, 100, log=True), Int("epochs", 20, 150),
                               Float("lr", 1e-3, 0.1, log=True), Float("reg_user", 1e-3, 1.0, log=True),
                               Float("reg_item", 1e-3, 1.0, log=True), Categorical("link", ("logistic", "linear")),
                               When("link", "logistic", fixed={"baseline": "none"}))

    def _score_new_users(self, ratings):
        """Linear link: the ridge solve of the base class. Logistic link: the same objective,
        Σ_i (r_i − lo − span·σ(U·V_i))² + (n λ_U + c) ‖U‖², is no longer quadratic; it is minimised by
        damped Gauss-Newton (Levenberg-Marquardt) steps from U = 0, all users of a batch at once."""
        if not self._logistic():
            return super()._score_new_users(ratings)
        ratings = self._fold_in_data(ratings)
        U = logistic_fold_in(ratings, self.item_factors_, self.scale_, float(self.settings.reg_user),
                             count_reg=self._count_reg())
        known = np.diff(ratings.indptr) > 0
        return self._dense_scores(U.astype(np.float32), np.zeros(U.shape[0], np.float32), known)

    def _baseline(self) -> bool:
        return self.settings.baseline == "bias"

    def _logistic(self) -> bool:
        return self.settings.link == "logistic"

    def _count_reg(self) -> float:
        # "auto" only in a model saved before the setting existed, which was trained with c = 0
        c = self.settings.reg_count
        return 0.0 if c == AUTO else float(c)

    def _factor_regs(self, train, h):
        """λ + c/n per rating, so a user's (item's) penalty over its n ratings is λ·n + c."""
        c = self._count_reg()
        nu = np.maximum(train.user_counts(), 1).astype(np.float64)
        ni = np.maximum(train.item_counts(), 1).astype(np.float64)
        return h["reg_p"] + c / nu, h["reg_q"] + c / ni

    def _hyper(self):
        s = self.settings
        return {"lr_bias": 0.0, "reg_p": s.reg_user, "reg_q": s.reg_item, "reg_bu": 0.0, "reg_bi": 0.0}


@dataclass(frozen=True)
class BiasedMFSettings(BaseSettings):
    factors: int = setting(AUTO, "latent dimension (Surprise SVD default 100; auto: docs/defaults.md)",
                           min=1, max=4096, auto=True)
    epochs: int = setting(20, "passes over the training ratings", min=1, max=100_000)
    lr: float = setting(0.005, "SGD learning rate of the factors", min=0, min_exclusive=True)
    lr_bias: float | None = setting(None, "SGD learning rate of the biases (none = lr)", min=0)
    reg: float = setting(AUTO, "L2 weight of the factors (Surprise SVD default 0.02; auto: docs/defaults.md)",
                         min=0, auto=True)
    reg_bias: float | None = setting(None, "L2 weight of the biases (none = reg)", min=0)
    batch_size: int = setting(1, "ratings per minibatch (1 = Funk's per-rating SGD)", min=1)
    init_std: float = setting(0.1, "standard deviation of the random initial factors", min=0)


class BiasedMF(_SGDFactorModel):
    """Biased matrix factorisation μ + b_u + b_i + p_u·q_i (Funk / Koren SVD), minibatch SGD."""

    name = "biasedmf"
    Settings = BiasedMFSettings
    summary = "biased matrix factorisation, Funk/Koren SVD (minibatch SGD)"
    fallback = "user or item without training ratings: μ + the known side's bias"
    fold_in_method = ("p_u and b_u minimise Σ (r − μ − b_i − b_u − p_u·q_i)² + n (reg ‖p_u‖² + "
                      "reg_bias b_u²) (the SGD objective), items fixed: one small ridge solve")
    _use_bias = True
    auto_rule = biasedmf_rule
    #: what ``recozoo tune biasedmf`` tries
    search_space = SearchSpace(Int("factors", 8, 256, log=True), Int("epochs", 10, 80),
                               Float("lr", 1e-3, 0.03, log=True), Float("reg", 1e-3, 0.3, log=True),
                               Float("reg_bias", 1e-3, 0.3, log=True), Float("init_std", 0.01, 0.2, log=True))

    def _hyper(self):
        s = self.settings
        rb = s.reg if s.reg_bias is None else s.reg_bias
        return {"lr_bias": s.lr if s.lr_bias is None else s.lr_bias, "reg_p": s.reg, "reg_q": s.reg,
                "reg_bu": rb, "reg_bi": rb}

