"""Rows of a sparse matrix, batched without a Python loop per rating.

A :class:`RowMatrix` is a CSR view (``indptr``, ``cols``, ``vals``) over the
rows the model trains on: users (user-based models) or items (item-based
models, built from the table's cached CSC copy). :meth:`RowMatrix.take` gathers
any set of rows with one vectorised index computation and returns a
:class:`RowBatch`, which is densified *on the device* only when a model asks
(``dense()``). Nothing copies the whole matrix per epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from recozoo.data.table import RatingsTable
from recozoo.engine.sparse_ops import CompactPattern

__all__ = ["RowMatrix", "RowBatch"]


@dataclass
class RowBatch:
    """``B`` rows in CSR form (torch tensors): row ``k`` owns ``cols[offsets[k]:offsets[k+1]]``."""

    rows: np.ndarray          # indices of these rows in the RowMatrix (int64, host)
    offsets: torch.Tensor     # (B+1,) int64
    cols: torch.Tensor        # (nnz,) int64
    vals: torch.Tensor        # (nnz,) float32
    n_cols: int

    @property
    def n_rows(self) -> int:
        return int(self.rows.shape[0])

    @property
    def nnz(self) -> int:
        return int(self.cols.shape[0])

    def to(self, device) -> "RowBatch":
        if str(device) == "cpu":
            return self
        nb = str(device).startswith("cuda")
        return RowBatch(self.rows, self.offsets.to(device, non_blocking=nb),
                        self.cols.to(device, non_blocking=nb), self.vals.to(device, non_blocking=nb),
                        self.n_cols)

    @cached_property
    def pattern(self) -> CompactPattern:
        """The stored entries with their columns renumbered (:class:`CompactPattern`), built once per
        batch: the engine's next-rows plan and the sparse step both need its distinct columns."""
        return CompactPattern.from_csr(self.offsets, self.cols, self.n_cols)

    def row_index(self) -> torch.Tensor:
        """Batch-local row of every stored entry (nnz,), int64."""
        counts = self.offsets[1:] - self.offsets[:-1]
        return torch.repeat_interleave(torch.arange(self.n_rows, device=self.cols.device), counts)

    def dense(self, dtype=torch.float32) -> torch.Tensor:
        """(B, n_cols) dense tensor on the batch's device, zeros where nothing is stored."""
        out = torch.zeros(self.n_rows, self.n_cols, dtype=dtype, device=self.cols.device)
        out[self.row_index(), self.cols] = self.vals.to(dtype)
        return out


class RowMatrix:
    """CSR rows (numpy on the host) of ``n_rows`` x ``n_cols``."""

    def __init__(self, indptr: np.ndarray, cols: np.ndarray, vals: np.ndarray, n_cols: int):
        self.indptr = np.asarray(indptr, dtype=np.int64)
        self.cols = np.asarray(cols, dtype=np.int64)
        self.vals = np.asarray(vals, dtype=np.float32)
        self.n_cols = int(n_cols)

    @classmethod
    def from_table(cls, table: RatingsTable, by: str = "user") -> "RowMatrix":
        """User rows (``by="user"``) or item rows (``by="item"``, via the cached CSC copy)."""
        if by == "user":
            return cls(table.indptr, table.items, table.ratings, table.n_items)
        if by == "item":
            csc = table.to_csc()
            return cls(csc.indptr, csc.indices, csc.data, table.n_users)
        raise ValueError(f"by must be 'user' or 'item', not {by!r}")

    @property
    def n_rows(self) -> int:
        return int(self.indptr.shape[0] - 1)

    @property
    def nnz(self) -> int:
        return int(self.cols.shape[0])

    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)

    def take(self, rows: np.ndarray) -> RowBatch:
        """Gather ``rows`` (int array) into a :class:`RowBatch` (host tensors)."""
        rows = np.asarray(rows, dtype=np.int64)
        starts = self.indptr[rows]
        lens = self.indptr[rows + 1] - starts
        offsets = np.zeros(rows.shape[0] + 1, dtype=np.int64)
        np.cumsum(lens, out=offsets[1:])
        total = int(offsets[-1])
        idx = np.repeat(starts - offsets[:-1], lens) + np.arange(total, dtype=np.int64)
        return RowBatch(rows, torch.from_numpy(offsets), torch.from_numpy(self.cols[idx]),
                        torch.from_numpy(self.vals[idx]), self.n_cols)
