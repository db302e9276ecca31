"""Sparse first and last layers of a row autoencoder, with row-sparse gradients.

A batch of ``B`` CSR rows over ``n`` columns touches only ``U`` distinct
columns (U << n for a batch of users). Two autograd functions run the first
and the last layer of an autoencoder on the stored entries only, reading the
(n x d) weight matrices in place:

* :func:`csr_matmul` — ``X @ W`` for the sparse input rows ``X`` (B x n): the
  first layer on the observed ratings only. Backward: ``X^T @ G``, computed for
  the ``U`` touched rows only.
* :func:`sampled_dot` — ``<h[r], W[c]>`` at the stored (r, c) entries only: the
  last layer evaluated at the observed targets (an SDDMM). Backward:
  ``G @ W`` and ``G^T @ h`` (again only the ``U`` touched rows of W).

Both are exact (the same sums in another order) and never materialise the
``nnz x d`` gathered rows that a plain gather would, which is what made the
sparse step memory-bound. The weight's gradient is a sparse COO tensor with
the ``U`` touched rows (``sparse_grad=True``; an optimiser that understands it,
:class:`recozoo.engine.lazy_sgd.LazySGD`, then updates only those rows) or the
same values scattered into a dense (n x d) tensor for any other optimiser.
:class:`CompactPattern` holds the per-batch index work (distinct columns,
the transposed pattern), computed once and shared by both layers.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

__all__ = ["CompactPattern", "csr_matmul", "sampled_dot", "sampled_dot_at"]


def _csr(crow: torch.Tensor, col: torch.Tensor, val: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    with warnings.catch_warnings():        # "CSR support is in beta" / invariant-check notices
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, val, shape, check_invariants=False)


@dataclass
class CompactPattern:
    """The stored entries of ``B`` rows, with their columns renumbered to ``0..U-1``.

    ``cols_global[k]`` is the original column of the k-th distinct column
    (sorted), ``local`` every entry's ``k``. ``t_*`` describe the transposed
    pattern restricted to the touched columns (U x B) in CSR order: ``t_perm``
    maps its entries back to the row-major entry order.
    """

    n_rows: int
    n_cols: int
    cols_global: torch.Tensor     # (U,) int64, sorted: the touched columns
    crow: torch.Tensor            # (B+1,) int64
    col: torch.Tensor             # (nnz,) int64, original column numbers
    local: torch.Tensor           # (nnz,) int64 in 0..U-1
    t_crow: torch.Tensor          # (U+1,) int64
    t_col: torch.Tensor           # (nnz,) int64 in 0..B-1
    t_perm: torch.Tensor          # (nnz,) int64

    @classmethod
    def from_csr(cls, offsets: torch.Tensor, cols: torch.Tensor, n_cols: int) -> "CompactPattern":
        n_rows = int(offsets.shape[0] - 1)
        uniq, local = torch.unique(cols, sorted=True, return_inverse=True)
        rows = torch.repeat_interleave(torch.arange(n_rows, device=cols.device), offsets[1:] - offsets[:-1])
        perm = torch.sort(local, stable=True).indices      # column-major order, rows ascending inside
        counts = torch.bincount(local, minlength=uniq.shape[0])
        t_crow = torch.zeros(uniq.shape[0] + 1, dtype=torch.int64, device=cols.device)
        torch.cumsum(counts, 0, out=t_crow[1:])
        return cls(n_rows, int(n_cols), uniq, offsets, cols, local, t_crow, rows[perm], perm)

    @property
    def n_local(self) -> int:
        return int(self.cols_global.shape[0])

    def matrix(self, values: torch.Tensor) -> torch.Tensor:
        """(B x n) CSR with ``values`` in row-major entry order."""
        return _csr(self.crow, self.col, values, (self.n_rows, self.n_cols))

    def matrix_t(self, values: torch.Tensor) -> torch.Tensor:
        """(U x B) CSR of the transpose, ``values`` given in row-major entry order."""
        return _csr(self.t_crow, self.t_col, values[self.t_perm], (self.n_local, self.n_rows))


def _exact(t: torch.Tensor):
    """Autocast off inside the kernels: sparse matmuls have no bf16/fp16 CPU kernels, and this
    O(nnz x d) work is cheap in the weights' own precision."""
    return torch.autocast(device_type=t.device.type, enabled=False)


def _weight_grad(pattern: CompactPattern, rows_grad: torch.Tensor, w: torch.Tensor, sparse: bool):
    """The (n x d) weight's gradient from its touched rows' gradient (U x d)."""
    if sparse:
        return torch.sparse_coo_tensor(pattern.cols_global[None, :], rows_grad, w.shape, is_coalesced=True,
                                       check_invariants=False)
    return torch.zeros_like(w).index_copy_(0, pattern.cols_global, rows_grad)


class _CsrMatmul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pattern: CompactPattern, values: torch.Tensor, w: torch.Tensor, sparse: bool):
        ctx.pattern, ctx.sparse = pattern, sparse
        ctx.save_for_backward(values, w)
        with _exact(w):
            return torch.sparse.mm(pattern.matrix(values), w)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        values, w = ctx.saved_tensors
        grad_w = None
        if ctx.needs_input_grad[2]:
            with _exact(w):
                rows = torch.sparse.mm(ctx.pattern.matrix_t(values), grad_out.to(w.dtype).contiguous())
            grad_w = _weight_grad(ctx.pattern, rows, w, ctx.sparse)
        return None, None, grad_w, None


class _SampledDot(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pattern: CompactPattern, h: torch.Tensor, w: torch.Tensor, sparse: bool):
        ctx.pattern, ctx.sparse = pattern, sparse
        ctx.save_for_backward(h, w)
        zero = pattern.matrix(torch.zeros(pattern.col.shape[0], dtype=h.dtype, device=h.device))
        with _exact(h):
            return torch.sparse.sampled_addmm(zero, h, w.t()).values()

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        h, w = ctx.saved_tensors
        p = ctx.pattern
        g = grad_out.to(w.dtype).contiguous()
        grad_h = grad_w = None
        with _exact(w):
            if ctx.needs_input_grad[1]:
                grad_h = torch.sparse.mm(p.matrix(g), w)
            if ctx.needs_input_grad[2]:
                grad_w = _weight_grad(p, torch.sparse.mm(p.matrix_t(g), h), w, ctx.sparse)
        return None, grad_h, grad_w, None


def csr_matmul(pattern: CompactPattern, values: torch.Tensor, w: torch.Tensor,
               sparse_grad: bool = False) -> torch.Tensor:
    """(B x d): the sparse rows (``values`` at ``pattern``) times ``w`` (n x d), in w's dtype
    (autocast does not reach sparse kernels: the weights' precision, fp32 normally)."""
    return _CsrMatmul.apply(pattern, values.to(w.dtype), w, bool(sparse_grad))


def sampled_dot(pattern: CompactPattern, h: torch.Tensor, w: torch.Tensor,
                sparse_grad: bool = False) -> torch.Tensor:
    """(nnz,): ``<h[r], w[c]>`` at every stored entry (r, c) of ``pattern``, in w's dtype."""
    return _SampledDot.apply(pattern, h.to(w.dtype), w, bool(sparse_grad))


def sampled_dot_at(h: torch.Tensor, w: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """(len(rows),): ``<h[rows[k]], w[cols[k]]>`` without autograd, for ``rows`` sorted ascending.

    Scoring (evaluation, predict) at arbitrary pairs without gathering
    ``len(rows) x d`` copies of both operands: one SDDMM over a CSR pattern.
    """
    counts = torch.bincount(rows, minlength=h.shape[0])
    crow = torch.zeros(h.shape[0] + 1, dtype=torch.int64, device=h.device)
    torch.cumsum(counts, 0, out=crow[1:])
    zero = _csr(crow, cols, torch.zeros(cols.shape[0], dtype=w.dtype, device=w.device), (h.shape[0], w.shape[0]))
    with torch.no_grad(), _exact(w):
        return torch.sparse.sampled_addmm(zero, h.to(w.dtype), w.t()).values()
