"""SGD with momentum that applies row-sparse gradients lazily — and exactly.

``torch.optim.SGD`` (momentum μ, weight decay λ, no dampening, no Nesterov)
updates every row of a parameter at every step:

    v ← μ·v + g + λ·w        w ← w − lr·v

A row whose gradient is zero still moves (its momentum keeps decaying into the
weight). For DeepRec's (n x d) input/output matrices a batch touches a few
thousand of n rows, so the dense update is most of a sparse step's cost. For a
zero-gradient row the update is linear in (v, w):

    [v', w'] = M [v, w],   M = [[μ, λ], [−lr·μ, 1 − lr·λ]]

so ``k`` skipped steps are one multiplication by ``M^k``. :class:`LazySGD`
keeps, per row, the step at which it was last brought up to date, and when a
row-sparse gradient arrives (a sparse COO gradient whose indices are rows) it
first applies ``M^k`` to those rows, then the ordinary update (on CPU one
compiled pass per row). Dense gradients
get the ordinary dense update after every pending row is caught up, so mixing
sparse and dense steps on one parameter (DeepRec's sparse step followed by a
dense re-feeding step) is fine. The result equals ``torch.optim.SGD`` on the
densified gradients up to float rounding (tested).

Rows must be up to date whenever anything reads them: a model calls
:meth:`sync_rows` for the rows its forward pass gathers (all rows before a
dense pass); :meth:`flush` (the engine calls it before each evaluation and
checkpoint, and :meth:`state_dict` calls it) catches every row up. A change of
lr, momentum or weight decay (the step schedule) flushes with the old values
first.

Planned rows (DeepRec with re-feeding): every batch is a row-sparse step
followed by dense steps, and the dense step's forward pass must first catch up
every row the sparse step skipped — a pass over most of ``w`` and ``v`` just
before the dense update's own pass. When the engine knows the rows of the
*next* batch's sparse step, it sets :attr:`LazySGD.next_rows` before the
batch's last dense step; that step then also applies the next step's
zero-gradient update to every row outside them (in the same pass, row by row),
so the next catch-up finds nothing to do. Only those rows are read or written
by the next step, which is checked: a gradient on another row, a dense
gradient, a flush or a schedule change in between is an error, not a silent
double step.
"""

from __future__ import annotations

import functools
from typing import Callable

import numpy as np
import torch

__all__ = ["LazySGD", "RowSparseModule"]


class RowSparseModule(torch.nn.Module):
    """A module whose big (n x d) weights can take row-sparse gradients, updated lazily by :class:`LazySGD`.

    The engine switches it on (single process, LazySGD, not fp16; see
    ``Trainer._enable_row_sparse``): ``sparse_grad`` then tells the module's
    sparse step to hand those weights row-sparse gradients, and ``sync_rows(param,
    rows | None)`` (:meth:`LazySGD.sync_rows`) must bring rows up to date before
    the forward pass reads them (None = every row). Off, it is an ordinary module.
    """

    def __init__(self):
        super().__init__()
        self.sparse_grad = False
        self.sync_rows: Callable[[torch.Tensor, torch.Tensor | None], None] | None = None


def _dense_update(w, v, g, lr, mu, wd):  # pragma: no cover - compiled
    """CPU fast path of the dense update, one pass instead of torch's three (1-d views)."""
    for j in range(w.shape[0]):
        vn = mu * v[j] + (g[j] + wd * w[j])
        v[j] = vn
        w[j] = w[j] - lr * vn


def _rows_update(w, v, last, rows, coef, upto, g, lr, mu, wd, ahead):  # pragma: no cover - compiled
    """CPU fast path, one pass per row: catch ``rows`` up to step ``upto`` with M^k (``coef``); then,
    when ``g`` has rows, take the step ``upto + 1`` with gradient ``g[i]`` for ``rows[i]``; then, where
    ``ahead[rows[i]]`` (an empty ``ahead`` = nowhere), also the zero-gradient step ``upto + 2``."""
    step = g.shape[0] > 0
    plan = ahead.shape[0] > 0
    b00, b01, b10, b11 = coef[1, 0, 0], coef[1, 0, 1], coef[1, 1, 0], coef[1, 1, 1]
    d = w.shape[1]
    # serial: the passes are memory-bound; rows split over a second thread were not faster on the 2-core
    # benchmark machine (docs/deeprec.md, "Speed (CPU)"), and numba's own threading layer beside torch's OpenMP is
    # one more thing to go wrong
    for i in range(rows.shape[0]):
        r = rows[i]
        k = upto - last[r]
        if k > 0:
            a00, a01, a10, a11 = coef[k, 0, 0], coef[k, 0, 1], coef[k, 1, 0], coef[k, 1, 1]
            for j in range(d):
                vv = v[r, j]
                ww = w[r, j]
                v[r, j] = a00 * vv + a01 * ww
                w[r, j] = a10 * vv + a11 * ww
        if step:
            if plan and ahead[r]:
                for j in range(d):
                    vn = mu * v[r, j] + (g[i, j] + wd * w[r, j])
                    v[r, j] = vn
                    w[r, j] = w[r, j] - lr * vn
                    vv = v[r, j]           # read back: rounded to the array's dtype, as a later catch-up
                    ww = w[r, j]           # would see them (bit-identical to not planning)
                    v[r, j] = b00 * vv + b01 * ww
                    w[r, j] = b10 * vv + b11 * ww
                last[r] = upto + 2
            else:
                for j in range(d):
                    vn = mu * v[r, j] + (g[i, j] + wd * w[r, j])
                    v[r, j] = vn
                    w[r, j] = w[r, j] - lr * vn
                last[r] = upto + 1
        else:
            last[r] = upto


@functools.lru_cache(maxsize=None)
def _kernels():
    """``(dense, rows)``: the two update loops above, compiled by numba on first use. Why not at
    import: numba (llvmlite) is ~57 MiB of resident memory, and a process that loads a DeepRec
    model to serve, evaluate or export it never takes an optimiser step (docs/reliability.md,
    "Memory"). Same loops, same compiled code, so updates are bit-identical."""
    import numba
    jit = numba.njit(cache=True, nogil=True)
    return jit(_dense_update), jit(_rows_update)


_NOWHERE = np.zeros(0, dtype=np.uint8)


class LazySGD(torch.optim.Optimizer):
    """``torch.optim.SGD(lr, momentum, weight_decay)`` with exact lazy updates of row-sparse gradients."""

    def __init__(self, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError("LazySGD: lr, momentum and weight_decay must be >= 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))
        self._powers: dict[tuple[float, float, float], np.ndarray] = {}
        #: the M^k table copied to a device and dtype: {(device, dtype): (numpy table it copies, tensor)}
        self._device_tables: dict[tuple[torch.device, torch.dtype], tuple[np.ndarray, torch.Tensor]] = {}
        #: set by the engine before a step: {parameter: the rows the *next* step's row-sparse gradient
        #: will have}. A dense step of such a parameter then also applies the next step's zero-gradient
        #: update to every other row in the same pass (see :meth:`step`); None = no plan
        self.next_rows: dict[torch.Tensor, torch.Tensor] | None = None

    # ---------------------------------------------------------------- M^k table
    def _table(self, hp: tuple[float, float, float], kmax: int) -> np.ndarray:
        """(K, 2, 2) float64 with K > kmax: M^k for k = 0..K-1 (M from ``hp``), cached per ``hp``."""
        table = self._powers.get(hp)
        if table is None or table.shape[0] <= kmax:
            lr, mu, wd = hp
            m = np.array([[mu, wd], [-lr * mu, 1.0 - lr * wd]])
            size = max(kmax + 1, 2 * (0 if table is None else table.shape[0]), 64)
            table = np.empty((size, 2, 2))
            table[0] = np.eye(2)
            for i in range(1, size):            # at most the number of steps between two flushes
                table[i] = m @ table[i - 1]
            self._powers = {hp: table}          # one schedule value at a time
        return table

    def _coefficients(self, hp: tuple[float, float, float], k: torch.Tensor, kmax: int,
                      dtype: torch.dtype) -> torch.Tensor:
        """(len(k), 2, 2) in ``dtype``: M^k for each entry of ``k`` (int64, 0 <= k <= ``kmax``), looked
        up where ``k`` lives. ``kmax`` is a bound known on the host, so neither ``k`` nor its maximum
        is copied back: on a GPU the step does not wait for the device."""
        table = self._table(hp, kmax)
        key = (k.device, dtype)
        cached = self._device_tables.get(key)
        if cached is None or cached[0] is not table:
            cached = (table, torch.from_numpy(table).to(device=k.device, dtype=dtype))
            self._device_tables[key] = cached
        return cached[1][k]

    @staticmethod
    def _oldest(st: dict) -> int:
        """A step no row's ``last`` is below, kept on the host: set whenever every row is brought to one
        step (first sparse step, full catch-up, dense step); after loading a state, read once."""
        if "oldest" not in st:
            st["oldest"] = int(st["last"].min())
        return st["oldest"]

    @staticmethod
    def _kernel_ok(p: torch.Tensor) -> bool:
        return p.device.type == "cpu" and p.dtype in (torch.float32, torch.float64) and p.is_contiguous()

    def _kernel(self, p, st, hp, rows: torch.Tensor | None, upto: int, grad: torch.Tensor | None,
                ahead: np.ndarray | None = None) -> None:
        """The numba path of :meth:`_catch_up` (+ the update when ``grad`` is given, + the next step's
        zero-gradient update where ``ahead``): one pass per row."""
        last = st["last"]
        idx = np.arange(p.shape[0], dtype=np.int64) if rows is None else rows.numpy()
        kmax = int(upto - int(last.min())) if rows is None else int(upto - int(last[rows].min()))
        coef = self._table(hp, max(kmax, 0))
        w2 = p.data.view(p.shape[0], -1).numpy()
        v2 = st["momentum_buffer"].view(p.shape[0], -1).numpy()
        g = (np.zeros((0, w2.shape[1]), dtype=w2.dtype) if grad is None
             else grad.reshape(grad.shape[0], -1).to(p.dtype).contiguous().numpy())
        lr, mu, wd = hp
        _kernels()[1](w2, v2, last.numpy(), idx, coef, upto, g, lr, mu, wd,
                     _NOWHERE if ahead is None else ahead)

    def _catch_up(self, p: torch.Tensor, st: dict, hp, rows: torch.Tensor | None, upto: int) -> None:
        """Apply the zero-gradient steps ``last+1..upto`` to ``rows`` (all rows if None)."""
        if self._kernel_ok(p):
            self._kernel(p, st, hp, rows, upto, None)
        else:
            self._catch_up_ops(p, st, hp, rows, upto)
        if rows is None:
            st["oldest"] = upto

    def _catch_up_ops(self, p: torch.Tensor, st: dict, hp, rows: torch.Tensor | None, upto: int) -> None:
        """:meth:`_catch_up` in torch ops (any device and dtype; what CUDA runs)."""
        last = st["last"]
        lr_rows = last if rows is None else last[rows]
        k = upto - lr_rows
        if p.device.type == "cpu" and not bool((k > 0).any()):    # (on a GPU this test would be a sync)
            return
        c = self._coefficients(hp, k, upto - self._oldest(st), p.dtype)
        shape = (-1,) + (1,) * (p.dim() - 1)
        v_rows = st["momentum_buffer"] if rows is None else st["momentum_buffer"][rows]
        w_rows = p.data if rows is None else p.data[rows]
        new_v = c[:, 0, 0].view(shape) * v_rows + c[:, 0, 1].view(shape) * w_rows
        new_w = c[:, 1, 0].view(shape) * v_rows + c[:, 1, 1].view(shape) * w_rows
        if rows is None:
            st["momentum_buffer"].copy_(new_v)
            p.data.copy_(new_w)
            last.fill_(upto)
        else:
            st["momentum_buffer"][rows] = new_v
            p.data[rows] = new_w
            last[rows] = upto

    @staticmethod
    def _hp(group) -> tuple[float, float, float]:
        return (float(group["lr"]), float(group["momentum"]), float(group["weight_decay"]))

    # ---------------------------------------------------------------- public
    @torch.no_grad()
    def flush(self) -> None:
        """Bring every lazily updated row up to date (before anything reads the weights)."""
        for group in self.param_groups:
            for p in group["params"]:
                st = self.state.get(p)
                if st and "planned" in st:
                    raise RuntimeError("LazySGD.flush: rows were advanced for a planned sparse step that "
                                       "has not been taken yet")
                if st and "last" in st:
                    self._catch_up(p, st, st["hp"], None, int(st["t"]))

    @torch.no_grad()
    def sync_rows(self, p: torch.Tensor, rows: torch.Tensor | None = None) -> None:
        """Bring ``rows`` of ``p`` (all rows if None) up to date before a forward pass reads them.

        A model that gathers rows of a lazily updated weight calls this first
        (the engine hands it over as the module's ``sync_rows``); otherwise the
        forward pass would read rows that still owe their momentum steps.
        """
        st = self.state.get(p)
        if st and rows is None and "planned" in st:
            raise RuntimeError("LazySGD.sync_rows: every row was asked for while rows are advanced for a "
                               "planned sparse step")
        if st and "last" in st:
            self._catch_up(p, st, st["hp"], rows, int(st["t"]))

    def state_dict(self):
        self.flush()
        return super().state_dict()

    def load_state_dict(self, state_dict) -> None:
        super().load_state_dict(state_dict)
        for st in self.state.values():      # torch casts every tensor to the parameter's float dtype
            if "last" in st:
                st["last"] = st["last"].to(torch.int64)
                st.pop("oldest", None)      # derived from ``last`` again when first needed

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            hp = self._hp(group)
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if not st:
                    st["t"] = 0
                    st["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                if "planned" in st and st["hp"] != hp:
                    raise RuntimeError("LazySGD: lr/momentum/weight decay changed between a planned step "
                                       "and the step it was planned for")
                if "last" in st and st["hp"] != hp:       # schedule changed: settle with the old values
                    self._catch_up(p, st, st["hp"], None, int(st["t"]))
                t = int(st["t"]) + 1
                if p.grad.is_sparse:
                    self._sparse_step(p, st, hp, t, p.grad)
                else:
                    self._dense_step(p, st, hp, t, p.grad)
                st["t"] = t
        return loss

    def _sparse_step(self, p: torch.Tensor, st: dict, hp, t: int, g: torch.Tensor) -> None:
        """Step ``t`` for a row-sparse gradient: only its rows move (after catching them up)."""
        lr, mu, wd = hp
        if "last" not in st:
            st["last"] = torch.full((p.shape[0],), t - 1, dtype=torch.int64, device=p.device)
            st["oldest"] = t - 1
        st["hp"] = hp
        rows, gv = g._indices()[0], g._values()
        if not g.is_coalesced() and not bool((rows[1:] > rows[:-1]).all()):
            g = g.coalesce()                 # duplicate rows (e.g. tied weights): sum them
            rows, gv = g.indices()[0], g.values()
        planned = st.pop("planned", None)
        if planned is not None and not bool(torch.isin(rows, planned).all()):
            raise RuntimeError("LazySGD: a row-sparse gradient has rows outside the planned "
                               "ones, which were already moved one step ahead")
        if self._kernel_ok(p):
            self._kernel(p, st, hp, rows, t - 1, gv)
            return
        self._catch_up(p, st, hp, rows, t - 1)
        v = st["momentum_buffer"]
        w_rows = p.data[rows]
        d = gv + wd * w_rows if wd else gv
        v_rows = v[rows].mul_(mu).add_(d) if mu else d
        v[rows] = v_rows
        p.data[rows] = w_rows - lr * v_rows
        st["last"][rows] = t

    def _dense_step(self, p: torch.Tensor, st: dict, hp, t: int, g: torch.Tensor) -> None:
        """Step ``t`` for a dense gradient: every row moves (lazy rows caught up in the same pass)."""
        lr, mu, wd = hp
        v = st["momentum_buffer"]
        fused = self._kernel_ok(p) and g.dtype == p.dtype and g.is_contiguous() and v.is_contiguous()
        if "planned" in st:
            raise RuntimeError("LazySGD: a dense gradient came where a planned row-sparse step was due")
        if "last" in st:
            st["hp"] = hp
            if fused:      # catch-up and update in one pass per row (w, v read and written once)
                plan = self.next_rows.get(p) if self.next_rows else None
                ahead = None
                if plan is not None:   # rows the next (sparse) step leaves alone: take it now
                    ahead = np.ones(p.shape[0], dtype=np.uint8)
                    ahead[plan.cpu().numpy()] = 0
                    st["planned"] = plan
                self._kernel(p, st, hp, None, t - 1, g, ahead)
                st["oldest"] = t
                return
            self._catch_up(p, st, hp, None, t - 1)
            st["last"].fill_(t)
            st["oldest"] = t
        if fused:
            _kernels()[0](p.data.view(-1).numpy(), v.view(-1).numpy(), g.view(-1).numpy(), lr, mu, wd)
            return
        d = g.add(p.data, alpha=wd) if wd else g
        if mu:
            v.mul_(mu).add_(d)
            p.data.add_(v, alpha=-lr)
        else:
            v.copy_(d)
            p.data.add_(d, alpha=-lr)
