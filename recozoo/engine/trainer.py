"""The training loop shared by every torch model (DeepRec, AutoRec, GLocal-K, RRN).

One loop, many models: a model contributes a :class:`Task` (its torch module
and its loss hooks); the :class:`Trainer` owns batching, the optimiser and
learning-rate schedule, mixed precision, DistributedDataParallel, per-epoch
evaluation on VALID with best-checkpoint selection and early stopping, atomic
checkpoints with resume, the JSONL metrics log and progress reporting.

Loss contract: a task yields :class:`Loss` objects ``(sse, count, penalty)``.
The engine minimises ``sse_global / count_global + penalty`` where the sums run
over the *global* batch. Under DDP each rank holds a shard of the global batch,
so the engine all-reduces ``count`` (one scalar) and back-propagates
``sse_local * world / count_global``; DDP averages gradients over ranks, which
gives exactly the gradient of the single-process loss on the same global batch
(up to float summation order). Each yielded loss is one optimiser step, taken
before the task's generator resumes — that is how DeepRec's dense re-feeding
(a second update after the first) plugs in without a second loop.

One fit, step by step (one method each): :meth:`Trainer._start` builds the
module and optimisers and resumes from ``last.pt``; per epoch
:meth:`~Trainer._train_epoch` runs the batches, each loss through the one step
kind chosen for the fit (:meth:`~Trainer._choose_step`),
:meth:`~Trainer._validate` scores VALID, a
:class:`~recozoo.engine.selection.Selection` keeps the best epoch,
:meth:`~Trainer._record` logs and :meth:`~Trainer._save` writes the
checkpoints; :meth:`~Trainer._finish` hands back the best weights.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Iterator, Sized

import numpy as np
import torch

from recozoo.engine.checkpoint import BEST, LAST, check_signature, load_checkpoint, rng_state, save_checkpoint
from recozoo.engine.heap import heap_for_large_tensors
from recozoo.engine.lazy_sgd import LazySGD, RowSparseModule
from recozoo.engine.rows import RowBatch, RowMatrix
from recozoo.engine.runtime import Runtime
from recozoo.engine.selection import Selection
from recozoo.errors import CheckpointError, SettingsError
from recozoo.io import atomic_write_bytes
from recozoo.progress import NullReporter, Reporter

__all__ = ["EngineConfig", "Loss", "Task", "Trainer", "FitResult", "OPTIMIZERS", "METRICS_FILE"]

OPTIMIZERS = ("momentum", "sgd", "adam", "adagrad", "rmsprop", "rprop", "lbfgs")
METRICS_FILE = "metrics.jsonl"


@dataclass
class EngineConfig:
    """Everything about *how* to train (not *what*): the model maps its settings onto this."""

    epochs: int = 10
    batch_size: int = 128                 # rows per global batch; 0 = all rows in one batch
    optimizer: str = "momentum"           # one of OPTIMIZERS
    lr: float = 0.001
    momentum: float = 0.9                 # for "momentum" (sgd = plain SGD)
    weight_decay: float = 0.0
    milestones: tuple[int, ...] = (24, 36, 48, 66, 72)   # "momentum": halve lr after these epochs
    gamma: float = 0.5
    eval_every: int = 1                   # evaluate VALID every N epochs (and after the last)
    patience: int = 0                     # stop after N evaluations without improvement; 0 = never
    precision: str = "fp32"               # fp32 | bf16 | fp16
    device: str = "cpu"                   # auto|cpu|cuda|cuda:N|mps, resolved by the Runtime
    seed: int = 0
    eval_batch_rows: int = 2048
    tensorboard: bool = True              # log to run_dir/tb when tensorboard is importable

    @classmethod
    def from_settings(cls, settings: Any, *, device: str, seed: int, **fixed: Any) -> "EngineConfig":
        """The one mapping from a model's settings to the engine: every field of this class that the
        settings dataclass has under the same name (epochs, batch_size, optimizer, lr, momentum,
        weight_decay, eval_every, patience, precision, ...), then ``fixed`` (what the model does not
        let a user choose, e.g. ``optimizer="lbfgs"``, ``milestones=()``), then device and seed."""
        have = getattr(settings, "__dataclass_fields__", {})
        values = {f.name: getattr(settings, f.name) for f in fields(cls) if f.name in have}
        return cls(**{**values, **fixed, "device": device, "seed": seed})


@dataclass
class Loss:
    """One optimiser step's objective: ``sse / count`` (+ ``penalty``), over this rank's shard.

    ``report``: include this loss in the epoch's training RMSE (DeepRec reports
    only its sparse step, not the re-feeding steps). ``ends_batch``: this is the
    batch's last step (lets the optimiser fold the next batch's first step into
    it, see :attr:`LazySGD.next_rows <recozoo.engine.lazy_sgd.LazySGD.next_rows>`).
    """

    sse: torch.Tensor
    count: float | int | torch.Tensor
    penalty: torch.Tensor | None = None
    report: bool = True
    ends_batch: bool = False
    #: tasks with their own batches (see :class:`Task`): minimise ``sse + penalty`` (the paper's summed
    #: objective) instead of ``sse / count + penalty``; ``count`` then only feeds the training RMSE
    summed: bool = False
    #: tasks with several optimisers: the ones this step moves (None = all)
    steps: tuple[str, ...] | None = None
    #: called after backward, before the optimisers step (e.g. rescaling some gradients)
    before_step: Callable[[], None] | None = None


class Task(ABC):
    """What a model plugs into the engine: subclass it, implement the two abstract methods, override
    any optional hook whose default does not suit.

    Row tasks (DeepRec, AutoRec, GLocal-K) train on the rows of a
    :class:`RowMatrix` that the engine batches, and score VALID through
    :meth:`eval_sse`. A task can instead bring its own batches and optimisers
    (RRN: alternating user and movie phases, Adam for the LSTMs and SGD for the
    stationary factors): it sets ``own_batches = True`` and implements
    :meth:`epoch_batches`, :meth:`make_optimizers` and :meth:`valid_rmse`; the
    engine then runs the same epoch loop, selection, early stopping,
    checkpoints, resume and logs (one process; call ``Trainer.fit(None, valid)``).
    """

    #: True: the task brings its own batches (:meth:`epoch_batches`) instead of the engine's row batches
    own_batches: ClassVar[bool] = False
    #: the VALID figure epochs are selected on: "rmse" (the engine's own, or :meth:`valid_rmse`), or a
    #: metric the task computes in :meth:`valid_score` (e.g. "ndcg@100" of a ranking model)
    valid_metric: ClassVar[str] = "rmse"
    #: True when :attr:`valid_metric` is a score to maximise (ranking metrics), False for an error
    higher_is_better: ClassVar[bool] = False
    #: False: decline row-sparse gradients with lazy row updates even where the module and the optimiser
    #: allow them (e.g. a weight penalty reads every row at every step, so nothing is gained)
    row_sparse_updates: bool = True

    @abstractmethod
    def build_module(self) -> torch.nn.Module:
        """A fresh module (the engine seeds torch before calling it)."""

    @abstractmethod
    def train_losses(self, net: torch.nn.Module, batch: Any) -> Iterator[Loss]:
        """Yield one :class:`Loss` per optimiser step for this batch (``net`` may be DDP-wrapped, so
        call it, not its submodules, for anything needing gradients)."""

    def eval_sse(self, module: torch.nn.Module, inputs: RowBatch,
                 targets: RowBatch) -> tuple[torch.Tensor, int]:
        """(sum of squared errors over the target entries, their count), under no_grad; what
        :meth:`Trainer.evaluate` sums over VALID's rows. Row tasks implement it."""
        raise NotImplementedError(f"{type(self).__name__} scores no rows: implement eval_sse or valid_rmse")

    def valid_rmse(self, module: torch.nn.Module, valid: Any) -> float | None:
        """VALID's RMSE computed by the task itself (module in eval mode, no_grad), or None: the engine
        scores VALID's target rows with :meth:`eval_sse` (the default)."""
        return None

    def valid_score(self, module: torch.nn.Module, valid: Any) -> float | None:
        """VALID's :attr:`valid_metric` computed by the task (module in eval mode, no_grad), or None
        for the engine's RMSE. The default is :meth:`valid_rmse`; a ranking task returns e.g. its
        NDCG@100 on VALID (:func:`recozoo.rank_eval.rank_part` ranks exactly as the evaluator does)."""
        return self.valid_rmse(module, valid)

    def epoch_batches(self, epoch: int) -> Sized | Iterable[tuple[Any, int]]:
        """``own_batches`` tasks: the epoch's batches, sized (``len`` = progress units); iterating yields
        ``(batch, units)`` lazily, so a phase can read the weights the previous phase left."""
        raise NotImplementedError(f"{type(self).__name__} sets own_batches but has no epoch_batches")

    def make_optimizers(self, module: torch.nn.Module) -> dict[str, torch.optim.Optimizer] | None:
        """The task's own optimisers by name (a :class:`Loss` names the ones a step moves), or None:
        one optimiser built from the :class:`EngineConfig` (the default)."""
        return None

    def next_step_rows(self, module: torch.nn.Module, batch: RowBatch) -> dict[torch.Tensor, torch.Tensor]:
        """With lazy rows: the rows of each parameter that ``batch``'s first (row-sparse) step will
        touch. The engine prefetches the next batch and passes them to the optimiser for the current
        batch's ``ends_batch`` step (:attr:`LazySGD.next_rows <recozoo.engine.lazy_sgd.LazySGD.next_rows>`).
        Default: no plan."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """The task's own state for checkpoints (e.g. the RNG that orders its batches)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` when a fit resumes."""


@dataclass
class FitResult:
    module: torch.nn.Module               # best weights on VALID (last ones without VALID), eval mode
    best_epoch: int
    best_valid_rmse: float | None
    history: list[dict[str, Any]] = field(default_factory=list)
    epochs_run: int = 0
    stopped_early: bool = False
    resumed_from: int = 0


def _make_optimizer(cfg: EngineConfig, params):
    o = cfg.optimizer
    if o in ("momentum", "sgd"):      # torch.optim.SGD's update; row-sparse gradients applied lazily
        mom = cfg.momentum if o == "momentum" else 0.0
        return LazySGD(params, lr=cfg.lr, momentum=mom, weight_decay=cfg.weight_decay)
    if o == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if o == "adagrad":
        return torch.optim.Adagrad(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if o == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if o == "rprop":     # full-batch by nature; weight decay is added to the gradient (Trainer._step_plain)
        return torch.optim.Rprop(params, lr=cfg.lr)
    if o == "lbfgs":     # full batch; one L-BFGS iteration (strong-Wolfe line search) per step() call
        if cfg.weight_decay or cfg.precision == "fp16":
            raise SettingsError("optimizer lbfgs: put L2 terms in the task's penalty (weight_decay is not "
                                "applied) and use fp32/bf16 (no fp16 loss scaling)")
        # history 10 = scipy L-BFGS-B's default maxcor, which the AutoRec / GLocal-K references used;
        # max_eval 26 = 1 + torch's default 25 line-search evaluations (its default, 5/4 x max_iter,
        # would leave the line search no evaluation at all with max_iter=1)
        return torch.optim.LBFGS(params, lr=cfg.lr, max_iter=1, max_eval=26, history_size=10,
                                 line_search_fn="strong_wolfe")
    raise SettingsError(f"optimizer {o!r}: expected one of {', '.join(OPTIMIZERS)}")


def _mean_scale(world: int, count: float) -> float:
    """``world / count`` (the DDP-mean factor of a summed loss) rounded exactly as float32 tensors compute
    it — ``reciprocal(count) * world`` — so the host-side count gives bit-identical objectives."""
    return float(np.float32(1.0) / np.float32(count) * np.float32(world))


def _make_scheduler(cfg: EngineConfig, opt):
    if cfg.optimizer == "momentum" and cfg.milestones:
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(cfg.milestones), gamma=cfg.gamma)
    return None


@dataclass
class _Run:
    """One fit's moving parts while it runs (what :meth:`Trainer._save` checkpoints)."""

    module: torch.nn.Module
    opts: dict[str, torch.optim.Optimizer]
    sched: Any
    scaler: Any
    selection: Selection
    net: torch.nn.Module | None = None           # the module, DDP-wrapped under torchrun
    history: list[dict[str, Any]] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] | None = None
    start_epoch: int = 0

    @property
    def opt(self) -> torch.optim.Optimizer:
        """The first optimiser: the one whose lr is logged (and the only one of row tasks)."""
        return next(iter(self.opts.values()))


@dataclass
class _EpochSums:
    """The epoch's reported squared errors (a device tensor: no host sync per step) and their count."""

    sse: torch.Tensor
    count: float = 0.0


class Trainer:
    """Train ``task`` on CSR rows; see the module docstring for the loss contract.

    ``signature``: facts a checkpoint must share to be resumed (e.g. the model
    name and the matrix shape); a mismatch is a one-line :class:`CheckpointError`.
    ``start_from``: called on the freshly built, seeded module before the
    optimisers exist — a warm start (``recozoo fit --warm-start``) copies a
    previous fit's weights into it; training then runs exactly as any fit does
    (fresh optimiser state, epochs from 0). A resumed checkpoint overrides it.
    """

    def __init__(self, task: Task, config: EngineConfig, *, reporter: Reporter | None = None,
                 run_dir: str | Path | None = None, resume: bool = False,
                 signature: dict[str, Any] | None = None,
                 start_from: Callable[[torch.nn.Module], None] | None = None):
        if not isinstance(task, Task):
            raise TypeError(f"Trainer: the task must subclass recozoo.engine.Task, got {type(task).__name__}")
        if config.epochs < 0 or config.batch_size < 0 or config.eval_every < 1 or config.patience < 0:
            raise SettingsError("engine: epochs, batch_size, patience must be >= 0 and eval_every >= 1")
        if config.optimizer not in OPTIMIZERS:
            raise SettingsError(f"optimizer {config.optimizer!r}: expected one of {', '.join(OPTIMIZERS)}")
        self.task = task
        self.cfg = config
        self.reporter = reporter or NullReporter()
        self.run_dir = Path(run_dir) if run_dir else None
        self.resume = resume
        self.signature = dict(signature or {})
        self.start_from = start_from
        self.rt = Runtime.create(config.device, config.precision)
        self.row_sparse = False          # set by fit: whether row-sparse gradients + lazy updates ran

    # ------------------------------------------------------------------ helpers
    def _epoch_order(self, n: int, epoch: int) -> np.ndarray:
        """Seeded shuffle that depends only on (seed, epoch): identical on every rank and on resume."""
        return np.random.default_rng([self.cfg.seed, epoch]).permutation(n)

    def evaluate(self, module: torch.nn.Module, inputs: RowMatrix, targets: RowMatrix) -> tuple[float, float, int]:
        """(rmse, sse, count) over every stored target entry; rows with no target are skipped."""
        rows = np.flatnonzero(targets.lengths() > 0)
        if self.rt.distributed:
            rows = rows[self.rt.rank::self.rt.world]
        step = self.cfg.eval_batch_rows
        sse = torch.zeros((), dtype=torch.float64, device=self.rt.device)
        cnt = torch.zeros((), dtype=torch.float64, device=self.rt.device)
        was_training = module.training
        module.eval()
        with torch.no_grad(), self.rt.autocast():
            for s in range(0, rows.size, step):
                r = rows[s:s + step]
                e, c = self.task.eval_sse(module, inputs.take(r).to(self.rt.device),
                                          targets.take(r).to(self.rt.device))
                sse += e.double()
                cnt += c
        module.train(was_training)
        sse = self.rt.all_reduce_sum(sse)
        cnt = self.rt.all_reduce_sum(cnt)
        n = int(cnt.item())
        return (math.sqrt(sse.item() / n) if n else float("nan")), float(sse.item()), n

    def _enable_row_sparse(self, module: torch.nn.Module, opt) -> None:
        """Row-sparse gradients + lazy updates, where the module, the task and the optimiser allow it.

        A :class:`~recozoo.engine.lazy_sgd.RowSparseModule` can give its big
        (n x d) weights row-sparse gradients; a task may decline with
        ``row_sparse_updates = False`` (AutoRec's L2 penalty reads every row at
        every step). DeepRec with re-feeding keeps them: its sparse step moves
        only the touched rows and the dense step catches the others up in one
        pass. Only :class:`LazySGD` consumes such gradients; DDP and fp16 loss
        scaling get dense ones.
        """
        if not isinstance(module, RowSparseModule):
            return
        on = (isinstance(opt, LazySGD) and self.task.row_sparse_updates
              and not self.rt.distributed and self.cfg.precision != "fp16")
        module.sparse_grad = self.row_sparse = bool(on)
        module.sync_rows = opt.sync_rows if on else None

    def _row_batches(self, train: RowMatrix, order: np.ndarray, gb: int, module):
        """``(batch, rows, next-rows plan)`` for the engine's own batching of ``train``'s rows.

        With lazy rows the next batch is gathered one batch early, so that the
        task can name the rows its first (sparse) step will touch and the
        optimiser can fold that step's zero-gradient part into this batch's last
        dense step (single process: no lazy rows under DDP).
        """
        rt = self.rt
        upcoming = None
        for s in range(0, order.size, gb):
            glob = order[s:s + gb]
            mine = glob[rt.rank::rt.world] if rt.distributed else glob
            batch = upcoming if upcoming is not None else train.take(mine).to(rt.device)
            upcoming, plan = None, None
            if self.row_sparse and s + gb < order.size:
                upcoming = train.take(order[s + gb:s + 2 * gb]).to(rt.device)
                plan = self.task.next_step_rows(module, upcoming) or None
            yield batch, glob.size, plan

    @staticmethod
    def _global_count(count: int | float, rt: Runtime) -> float:
        """The step's count over every process. A single process keeps it on the host: a device
        tensor read back with ``.item()`` would wait for the GPU at every step."""
        if not rt.distributed:
            return float(count)
        return float(rt.all_reduce_sum(torch.tensor(float(count), dtype=torch.float64, device=rt.device)).item())

    def _write_metrics(self, history: list[dict[str, Any]]) -> None:
        text = "".join(json.dumps(r) + "\n" for r in history)
        atomic_write_bytes(self.run_dir / METRICS_FILE, text.encode())

    def _open_tensorboard(self):
        if not (self.cfg.tensorboard and self.run_dir and self.rt.is_main):
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception:   # tensorboard not installed: optional by design
            return None
        return SummaryWriter(str(self.run_dir / "tb"))

    # ---------------------------------------------------------------------- fit
    def fit(self, train: RowMatrix | None, valid: Any = None) -> FitResult:
        """Train on the non-empty rows of ``train``; ``valid`` = (input rows, target rows).

        Tasks with their own batches pass ``train=None`` and whatever their
        :meth:`Task.valid_rmse` reads as ``valid``.

        On CPU the fit runs with ``torch.use_deterministic_algorithms``: with
        several threads the sparse first layer's backward (``embedding_bag``)
        otherwise accumulates in a varying order, and those 1e-6 differences grow
        over epochs into different models for the same seed.
        """
        import torch.utils.deterministic as det
        was, was_fill = torch.are_deterministic_algorithms_enabled(), det.fill_uninitialized_memory
        if self.rt.device.type == "cpu":
            torch.use_deterministic_algorithms(True, warn_only=True)
            # deterministic mode also NaN-fills every torch.empty (a debugging aid for reads of
            # uninitialised memory): ~140 fills per DeepRec batch, 10% of a sparse step, no effect on results
            det.fill_uninitialized_memory = False
        heap = heap_for_large_tensors() if self.rt.device.type == "cpu" else contextlib.nullcontext()
        try:
            with heap:
                return self._fit(train, valid)
        finally:
            torch.use_deterministic_algorithms(was)
            det.fill_uninitialized_memory = was_fill
            self.rt.close()

    def _fit(self, train: RowMatrix | None, valid: Any) -> FitResult:
        if self.task.own_batches and self.rt.distributed:
            raise SettingsError("a task with its own batches trains in one process (no torchrun)")
        run = self._start(valid)
        step = self._choose_step(run)
        rows_all = None if self.task.own_batches else np.flatnonzero(train.lengths() > 0)
        tb = self._open_tensorboard()
        stopped = False
        for epoch in range(run.start_epoch, self.cfg.epochs):
            t0 = time.perf_counter()
            sums = self._train_epoch(run, step, train, rows_all, epoch, t0)
            train_seconds = time.perf_counter() - t0
            valid_rmse = self._validate(run.module, valid, epoch)
            improved = run.selection.update(epoch + 1, valid_rmse)
            if improved:
                run.best_state = {k: v.detach().clone().cpu() for k, v in run.module.state_dict().items()}
            rec = self._record(run, epoch, sums, valid_rmse, t0, train_seconds, tb)
            stopped = run.selection.stopped
            self._save(run, epoch, improved)
            if stopped:
                self.reporter.message(f"early stop after epoch {rec['epoch']}: no VALID improvement in "
                                      f"{self.cfg.patience} evaluations (best epoch {run.selection.best_epoch})")
                break
        if tb is not None:
            tb.close()
        return self._finish(run, stopped)

    def _start(self, valid: Any) -> _Run:
        """Seeded module, its optimisers, schedule and loss scaler; then the state of ``last.pt`` when resuming."""
        cfg, rt = self.cfg, self.rt
        torch.manual_seed(cfg.seed)
        module = self.task.build_module()
        if self.start_from is not None:
            with torch.no_grad():
                self.start_from(module)
        module = module.to(rt.device)
        if rt.distributed:
            torch.manual_seed(cfg.seed + 7919 * rt.rank)   # different dropout masks per rank
        opts = self.task.make_optimizers(module)
        opts = dict(opts) if opts is not None else {"main": _make_optimizer(cfg, module.parameters())}
        run = _Run(module, opts, None, None, Selection(uses_valid=valid is not None, patience=cfg.patience,
                                                   higher_is_better=self.task.higher_is_better))
        self._enable_row_sparse(module, run.opt)
        run.sched = _make_scheduler(cfg, run.opt)
        run.scaler = torch.amp.GradScaler(rt.device.type) if cfg.precision == "fp16" else None
        if self.run_dir and rt.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.resume and self.run_dir is not None and (self.run_dir / LAST).exists():
            self._resume(run, self.run_dir / LAST)
        if rt.is_main and self.run_dir is not None:
            self._write_metrics(run.history)
        run.net = module
        if rt.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP
            run.net = DDP(module, device_ids=[rt.device.index] if rt.device.type == "cuda" else None)
        return run

    def _resume(self, run: _Run, path: Path) -> None:
        """Continue from ``last.pt``: weights, optimisers, schedule, scaler, RNG, selection and history."""
        ck = load_checkpoint(path, {"module": dict, "optimizers": dict, "rng": list, "epoch": int,
                                    "history": list})
        check_signature(ck, self.signature, path)
        rng = rng_state(ck, self.rt.rank, path)
        try:
            run.module.load_state_dict(ck["module"])
            for name, o in run.opts.items():
                o.load_state_dict(ck["optimizers"][name])
            self.task.load_state_dict(ck["task"])
            run.selection.load_state_dict(ck)
            if run.sched is not None and ck.get("scheduler"):
                run.sched.load_state_dict(ck["scheduler"])
            if run.scaler is not None and ck.get("scaler"):
                run.scaler.load_state_dict(ck["scaler"])
        except (RuntimeError, ValueError, KeyError, TypeError, AttributeError, IndexError) as e:
            raise CheckpointError(f"{path}: does not fit this model "
                                  f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
        torch.set_rng_state(rng)
        run.start_epoch = ck["epoch"]
        run.history = list(ck["history"])
        if (self.run_dir / BEST).exists():
            run.best_state = load_checkpoint(self.run_dir / BEST, {"module": dict})["module"]
        self.reporter.message(f"resuming from epoch {run.start_epoch} ({path})")

    # ------------------------------------------------------------ one epoch
    def _epoch_batches(self, run: _Run, train: RowMatrix | None, rows_all: np.ndarray | None, epoch: int):
        """``(iterable of (batch, progress units, next-rows plan), total units)`` for one epoch."""
        if self.task.own_batches:
            batches = self.task.epoch_batches(epoch)
            return ((batch, units, None) for batch, units in batches), len(batches)
        order = rows_all[self._epoch_order(rows_all.size, epoch)]
        gb = self.cfg.batch_size or max(rows_all.size, 1)
        return self._row_batches(train, order, gb, run.module), int(order.size)

    def _train_epoch(self, run: _Run, step, train, rows_all, epoch: int, t0: float) -> torch.Tensor:
        """Every batch of the epoch, progress as it goes; returns the all-reduced (sse, count) it reported."""
        rt = self.rt
        run.module.train()
        batches, total = self._epoch_batches(run, train, rows_all, epoch)
        self.reporter.start(f"epoch {epoch + 1}/{self.cfg.epochs}", total=total)
        sums = _EpochSums(torch.zeros((), dtype=torch.float64, device=rt.device))
        pending, last_tick, done = 0, t0, 0
        for batch, units, plan in batches:
            self._train_batch(run, step, batch, plan, sums)
            pending += units
            done += units
            now = time.perf_counter()
            if now - last_tick > 0.25 or done >= total:
                self.reporter.advance(pending, rmse=math.sqrt(sums.sse.item() / max(sums.count, 1.0)))
                pending, last_tick = 0, now
        self.reporter.finish()
        if isinstance(run.opt, LazySGD):
            run.opt.flush()           # lazily updated rows catch up before evaluation and checkpoints
        if run.sched is not None:
            run.sched.step()          # after the epoch's optimiser steps (the reference steps it before)
        out = torch.stack([sums.sse, torch.tensor(sums.count, dtype=torch.float64, device=rt.device)])
        return rt.all_reduce_sum(out)

    def _train_batch(self, run: _Run, step, batch, plan, sums: _EpochSums) -> None:
        """One optimiser step per loss the task yields for ``batch`` (the task's generator resumes after it)."""
        rt = self.rt
        gen = self.task.train_losses(run.net, batch)
        while True:
            with rt.autocast():
                loss = next(gen, None)
            if loss is None:
                break
            gcnt = self._global_count(loss.count, rt)
            if gcnt == 0:
                continue
            obj = loss.sse.float() if loss.summed else loss.sse.float() * _mean_scale(rt.world, gcnt)
            if loss.penalty is not None:
                obj = obj + loss.penalty
            step(run, loss, obj, batch, plan, gcnt)
            if loss.report:
                sums.sse += loss.sse.detach().double()
                sums.count += float(loss.count)

    # ------------------------------------------------------ the step kinds
    def _choose_step(self, run: _Run):
        """The fit's one kind of optimiser step: the task's named optimisers, fp16 loss scaling, an
        L-BFGS iteration, a lazy-rows SGD step, or a plain step."""
        if self.task.own_batches:
            return self._step_named
        if run.scaler is not None:
            return self._step_scaled
        if self.cfg.optimizer == "lbfgs":
            return self._step_lbfgs
        if self.row_sparse:
            return self._step_lazy
        return self._step_plain

    @staticmethod
    def _step_named(run: _Run, loss: Loss, obj: torch.Tensor, batch, plan, gcnt: float) -> None:
        """A task with its own optimisers: backward, the task's hook, then the optimisers it names step."""
        names = loss.steps if loss.steps is not None else tuple(run.opts)
        for n in names:
            run.opts[n].zero_grad(set_to_none=True)
        obj.backward()
        if loss.before_step is not None:
            loss.before_step()
        for n in names:
            run.opts[n].step()

    @staticmethod
    def _step_scaled(run: _Run, loss: Loss, obj: torch.Tensor, batch, plan, gcnt: float) -> None:
        """fp16: the loss scaled against underflow, the step skipped when gradients overflowed."""
        run.opt.zero_grad(set_to_none=True)
        run.scaler.scale(obj).backward()
        run.scaler.step(run.opt)
        run.scaler.update()

    def _step_plain(self, run: _Run, loss: Loss, obj: torch.Tensor, batch, plan, gcnt: float) -> None:
        """backward and step; Rprop gets its weight decay added to the gradient (torch's Rprop has none)."""
        run.opt.zero_grad(set_to_none=True)
        obj.backward()
        if self.cfg.optimizer == "rprop" and self.cfg.weight_decay:
            for p in run.module.parameters():
                if p.grad is not None:
                    p.grad.add_(p.detach(), alpha=self.cfg.weight_decay)
        run.opt.step()

    @staticmethod
    def _step_lazy(run: _Run, loss: Loss, obj: torch.Tensor, batch, plan, gcnt: float) -> None:
        """LazySGD with row-sparse gradients; the batch's last step carries the next batch's row plan."""
        run.opt.zero_grad(set_to_none=True)
        obj.backward()
        run.opt.next_rows = plan if loss.ends_batch else None
        run.opt.step()
        run.opt.next_rows = None

    def _step_lbfgs(self, run: _Run, loss: Loss, obj: torch.Tensor, batch, plan, gcnt: float) -> None:
        """One L-BFGS iteration. The closure's first call returns the objective already back-propagated
        at the current weights; later calls (the line search) recompute the task's first loss on the
        same batch."""
        run.opt.zero_grad(set_to_none=True)
        obj.backward()
        pending = [obj.detach()]
        rt, task, opt, net = self.rt, self.task, run.opt, run.net

        def closure():
            if pending:
                return pending.pop()
            opt.zero_grad(set_to_none=True)
            with rt.autocast():
                again = next(iter(task.train_losses(net, batch)))
            o = again.sse.float() * _mean_scale(rt.world, gcnt)
            if again.penalty is not None:
                o = o + again.penalty
            o.backward()
            return o.detach()
        opt.step(closure)

    # --------------------------------------------------- after each epoch
    def _validate(self, module: torch.nn.Module, valid: Any, epoch: int) -> float | None:
        """VALID's RMSE after ``epoch`` when it is an evaluation epoch (every ``eval_every``, and the last)."""
        cfg = self.cfg
        if valid is None or not ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs):
            return None
        module.eval()
        with torch.no_grad():
            own = self.task.valid_score(module, valid)
        module.train()
        if own is not None:
            return float(own)
        return self.evaluate(module, *valid)[0]

    def _record(self, run: _Run, epoch: int, sums: torch.Tensor, valid_rmse: float | None, t0: float,
                train_seconds: float, tb) -> dict[str, Any]:
        """The epoch's line of ``metrics.jsonl``: to the history, the reporter and TensorBoard."""
        train_rmse = math.sqrt(sums[0].item() / sums[1].item()) if sums[1].item() else float("nan")
        seconds = time.perf_counter() - t0
        metric = self.task.valid_metric
        rec = {"epoch": epoch + 1, "train_rmse": train_rmse,
               "valid_rmse": valid_rmse if metric == "rmse" else None,
               "seconds": round(seconds, 4), "train_seconds": round(train_seconds, 4),
               "ratings_per_s": round(float(sums[1].item()) / train_seconds, 1) if train_seconds else None,
               "lr": run.opt.param_groups[0]["lr"], "best_epoch": run.selection.best_epoch}
        if metric != "rmse":
            rec[f"valid_{metric}"] = valid_rmse
        run.history.append(rec)
        self.reporter.log(rec)
        if tb is not None:
            for k in ("train_rmse", "valid_rmse", "lr"):
                if rec[k] is not None:
                    tb.add_scalar(k, rec[k], epoch + 1)
        return rec

    def _save(self, run: _Run, epoch: int, improved: bool) -> None:
        """``best.pt`` when the epoch is the new best, ``last.pt`` and ``metrics.jsonl`` always (rank 0);
        every rank hands its RNG state over (a collective: all ranks take part)."""
        rt = self.rt
        if self.run_dir is None:
            return
        rngs = [torch.get_rng_state()]
        if rt.distributed:
            import torch.distributed as dist
            gathered = [None] * rt.world
            dist.all_gather_object(gathered, torch.get_rng_state())
            rngs = gathered
        if not rt.is_main:
            return
        if improved:
            save_checkpoint(self.run_dir / BEST, {"module": run.best_state, "epoch": run.selection.best_epoch,
                                                  "signature": self.signature})
        save_checkpoint(self.run_dir / LAST, {
            "module": run.module.state_dict(), "optimizers": {k: o.state_dict() for k, o in run.opts.items()},
            "task": self.task.state_dict(),
            "scheduler": run.sched.state_dict() if run.sched is not None else None,
            "scaler": run.scaler.state_dict() if run.scaler is not None else None,
            "rng": rngs, "epoch": epoch + 1, **run.selection.state_dict(),
            "history": run.history, "signature": self.signature,
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self.cfg).items()}})
        self._write_metrics(run.history)

    def _finish(self, run: _Run, stopped: bool) -> FitResult:
        """The best weights (the last ones without VALID) in eval mode, detached from the optimiser."""
        module = run.module
        if isinstance(module, RowSparseModule):       # the fitted module no longer talks to the optimiser
            module.sparse_grad, module.sync_rows = False, None
        if run.best_state is not None:
            module.load_state_dict(run.best_state)
        module.eval()
        sel = run.selection
        return FitResult(module, sel.best_epoch, sel.best_rmse, run.history, epochs_run=len(run.history),
                         stopped_early=stopped, resumed_from=run.start_epoch)
