"""The training loop shared by every torch model (DeepRec, AutoRec, ...).

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
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Protocol

import numpy as np
import torch

from recozoo.engine.checkpoint import BEST, LAST, check_signature, load_checkpoint, save_checkpoint
from recozoo.engine.heap import heap_for_large_tensors
from recozoo.engine.lazy_sgd import LazySGD
from recozoo.engine.rows import RowBatch, RowMatrix
from recozoo.engine.runtime import Runtime
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
    device: str = "cpu"
    seed: int = 0
    eval_batch_rows: int = 2048
    tensorboard: bool = True              # log to run_dir/tb when tensorboard is importable


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
    before_step: Any = None


class Task(Protocol):
    """What a model plugs into the engine.

    Row tasks (DeepRec, AutoRec, GLocal-K) train on the rows of a
    :class:`RowMatrix` that the engine batches. A task can instead bring its
    own batches and optimisers (RRN: alternating user and movie phases, Adam for
    the LSTMs and SGD for the stationary factors) with four optional hooks:
    ``epoch_batches(epoch) -> EpochBatches`` (sized: progress units; iterating
    yields ``(batch, units)`` lazily, so a phase can read the weights the
    previous phase left), ``make_optimizers(module) -> {name: Optimizer}``,
    ``valid_rmse(module, valid) -> float`` and ``state_dict()`` /
    ``load_state_dict(d)`` for its own random state. The engine then runs the
    same epoch loop, selection, early stopping, checkpoints, resume and logs.
    """

    def build_module(self) -> torch.nn.Module:
        """A fresh module (the engine seeds torch before calling it)."""

    def train_losses(self, net: torch.nn.Module, batch: RowBatch) -> Iterator[Loss]:
        """Yield one :class:`Loss` per optimiser step for this batch (``net`` may be DDP-wrapped)."""

    def eval_sse(self, module: torch.nn.Module, inputs: RowBatch,
                 targets: RowBatch) -> tuple[torch.Tensor, int]:
        """(sum of squared errors over the target entries, their count), under no_grad."""


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
    if o == "rprop":     # full-batch by nature; weight decay is added to the gradient in the loop
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


def _lbfgs_closure(task, net, batch, opt, first_obj, rt, gcnt):
    """L-BFGS closure: its first call returns the objective already back-propagated at the
    current weights; later calls (the line search) recompute the task's first loss on the same batch."""
    pending = [first_obj.detach()]

    def closure():
        if pending:
            return pending.pop()
        opt.zero_grad(set_to_none=True)
        with rt.autocast():
            loss = next(iter(task.train_losses(net, batch)))
        obj = loss.sse.float() * _mean_scale(rt.world, gcnt)
        if loss.penalty is not None:
            obj = obj + loss.penalty
        obj.backward()
        return obj.detach()
    return closure


def _make_scheduler(cfg: EngineConfig, opt):
    if cfg.optimizer == "momentum" and cfg.milestones:
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(cfg.milestones), gamma=cfg.gamma)
    return None


class Trainer:
    """Train ``task`` on CSR rows; see the module docstring for the loss contract.

    ``signature``: facts a checkpoint must share to be resumed (e.g. the model
    name and the matrix shape); a mismatch is a one-line :class:`CheckpointError`.
    """

    def __init__(self, task: Task, config: EngineConfig, *, reporter: Reporter | None = None,
                 run_dir: str | Path | None = None, resume: bool = False,
                 signature: dict[str, Any] | None = None):
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

        A module that can give its big (n x d) weights row-sparse gradients has
        ``sparse_grad`` and ``sync_rows`` attributes (see :mod:`recozoo.engine.lazy_sgd`);
        a task may decline with ``row_sparse_updates = False`` (DeepRec with
        re-feeding: its dense step reads and updates every row anyway). Only
        :class:`LazySGD` consumes such gradients; DDP and fp16 loss scaling get dense ones.
        """
        if not hasattr(module, "sparse_grad"):
            return
        on = (isinstance(opt, LazySGD) and getattr(self.task, "row_sparse_updates", True)
              and not self.rt.distributed and self.cfg.precision != "fp16")
        module.sparse_grad = self.row_sparse = bool(on)
        module.sync_rows = opt.sync_rows if on else None

    def _row_batches(self, train: RowMatrix, order: np.ndarray, gb: int, plan_next: bool, module):
        """``(batch, rows, next-rows plan)`` for the engine's own batching of ``train``'s rows."""
        rt = self.rt
        upcoming = None
        for s in range(0, order.size, gb):
            glob = order[s:s + gb]
            mine = glob[rt.rank::rt.world] if rt.distributed else glob
            batch = upcoming if upcoming is not None else train.take(mine).to(rt.device)
            upcoming, plan = None, None
            if plan_next and s + gb < order.size:    # (single process: no lazy rows under DDP)
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

    @staticmethod
    def _step_named(opts: dict[str, torch.optim.Optimizer], loss: Loss, obj: torch.Tensor) -> None:
        """One step of a task with its own optimisers: backward, the task's hook, the named ones step."""
        names = loss.steps if loss.steps is not None else tuple(opts)
        for n in names:
            opts[n].zero_grad(set_to_none=True)
        obj.backward()
        if loss.before_step is not None:
            loss.before_step()
        for n in names:
            opts[n].step()

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
    def fit(self, train: RowMatrix, valid: tuple[RowMatrix, RowMatrix] | None = None) -> FitResult:
        """Train on the non-empty rows of ``train``; ``valid`` = (input rows, target rows).

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

    def _fit(self, train: RowMatrix, valid: tuple[RowMatrix, RowMatrix] | None) -> FitResult:
        cfg, rt = self.cfg, self.rt
        own_batches = hasattr(self.task, "epoch_batches")
        if own_batches and rt.distributed:
            raise SettingsError("a task with its own batches trains in one process (no torchrun)")
        torch.manual_seed(cfg.seed)
        module = self.task.build_module().to(rt.device)
        if rt.distributed:
            torch.manual_seed(cfg.seed + 7919 * rt.rank)   # different dropout masks per rank
        if hasattr(self.task, "make_optimizers"):
            opts = dict(self.task.make_optimizers(module))
        else:
            opts = {"main": _make_optimizer(cfg, module.parameters())}
        opt = next(iter(opts.values()))       # the one whose lr is logged (and the only one of row tasks)
        self._enable_row_sparse(module, opt)
        sched = _make_scheduler(cfg, opt)
        scaler = torch.amp.GradScaler(rt.device.type) if cfg.precision == "fp16" else None

        history: list[dict[str, Any]] = []
        start_epoch, best_epoch, best_rmse, bad = 0, 0, None, 0
        best_state = None
        if self.run_dir and rt.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        last_path = self.run_dir / LAST if self.run_dir else None
        if self.resume and last_path is not None and last_path.exists():
            ck = load_checkpoint(last_path)
            check_signature(ck, self.signature, last_path)
            try:
                module.load_state_dict(ck["module"])
                for name, o in opts.items():
                    # ("optimizer": checkpoints written before the engine knew several optimisers)
                    o.load_state_dict(ck["optimizers"][name] if "optimizers" in ck else ck["optimizer"])
                if hasattr(self.task, "load_state_dict"):
                    self.task.load_state_dict(ck["task"])
            except (RuntimeError, ValueError, KeyError) as e:
                raise CheckpointError(f"{last_path}: does not fit this model ({str(e).splitlines()[0]})") from None
            if sched is not None and ck.get("scheduler"):
                sched.load_state_dict(ck["scheduler"])
            if scaler is not None and ck.get("scaler"):
                scaler.load_state_dict(ck["scaler"])
            torch.set_rng_state(ck["rng"][rt.rank] if rt.rank < len(ck["rng"]) else ck["rng"][0])
            start_epoch, best_epoch, best_rmse, bad = ck["epoch"], ck["best_epoch"], ck["best_rmse"], ck["bad"]
            history = list(ck["history"])
            if (self.run_dir / BEST).exists():
                best_state = load_checkpoint(self.run_dir / BEST)["module"]
            self.reporter.message(f"resuming from epoch {start_epoch} ({last_path})")
        if rt.is_main and self.run_dir is not None:
            self._write_metrics(history)
        net = module
        if rt.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP
            net = DDP(module, device_ids=[rt.device.index] if rt.device.type == "cuda" else None)
        tb = self._open_tensorboard()

        if not own_batches:
            rows_all = np.flatnonzero(train.lengths() > 0)
            gb = cfg.batch_size or max(rows_all.size, 1)
        # with lazy rows, a task may name the rows the next batch's first (sparse) step will touch, so
        # the optimiser can fold that step's zero-gradient part into this batch's last dense step
        plan_next = self.row_sparse and hasattr(self.task, "next_step_rows")
        stopped = False
        epoch = start_epoch
        for epoch in range(start_epoch, cfg.epochs):
            t0 = time.perf_counter()
            module.train()
            if own_batches:
                batches = self.task.epoch_batches(epoch)
                total = len(batches)
            else:
                order = rows_all[self._epoch_order(rows_all.size, epoch)]
                batches = self._row_batches(train, order, gb, plan_next, module)
                total = int(order.size)
            self.reporter.start(f"epoch {epoch + 1}/{cfg.epochs}", total=total)
            ep_sse = torch.zeros((), dtype=torch.float64, device=rt.device)
            ep_cnt = 0.0
            pending, last_tick, done = 0, t0, 0
            for batch, units, plan in ((*b, None) if own_batches else b for b in batches):
                gen = self.task.train_losses(net, batch)
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
                    if own_batches:
                        self._step_named(opts, loss, obj)
                    elif scaler is not None:
                        opt.zero_grad(set_to_none=True)
                        scaler.scale(obj).backward()
                        scaler.step(opt)
                        scaler.update()
                    else:
                        opt.zero_grad(set_to_none=True)
                        obj.backward()
                        if cfg.optimizer == "rprop" and cfg.weight_decay:
                            for p in module.parameters():
                                if p.grad is not None:
                                    p.grad.add_(p.detach(), alpha=cfg.weight_decay)
                        if cfg.optimizer == "lbfgs":     # line search: re-evaluate the first loss
                            opt.step(_lbfgs_closure(self.task, net, batch, opt, obj, rt, gcnt))
                        elif plan_next:
                            opt.next_rows = plan if loss.ends_batch else None
                            opt.step()
                            opt.next_rows = None
                        else:
                            opt.step()
                    if loss.report:
                        ep_sse += loss.sse.detach().double()
                        ep_cnt += float(loss.count)
                pending += units
                done += units
                now = time.perf_counter()
                if now - last_tick > 0.25 or done >= total:
                    self.reporter.advance(pending, rmse=math.sqrt(ep_sse.item() / max(ep_cnt, 1.0)))
                    pending, last_tick = 0, now
            self.reporter.finish()
            if isinstance(opt, LazySGD):
                opt.flush()           # lazily updated rows catch up before evaluation and checkpoints
            if sched is not None:
                sched.step()          # after the epoch's optimiser steps (the reference steps it before)
            sums = torch.stack([ep_sse, torch.tensor(ep_cnt, dtype=torch.float64, device=rt.device)])
            sums = rt.all_reduce_sum(sums)
            train_rmse = math.sqrt(sums[0].item() / sums[1].item()) if sums[1].item() else float("nan")
            train_seconds = time.perf_counter() - t0

            valid_rmse = None
            is_eval = valid is not None and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs)
            if is_eval and hasattr(self.task, "valid_rmse"):
                module.eval()
                with torch.no_grad():
                    valid_rmse = float(self.task.valid_rmse(module, valid))
                module.train()
            elif is_eval:
                valid_rmse, _, _ = self.evaluate(module, *valid)
            improved = False
            if valid is None:
                improved = True
            elif is_eval and (best_rmse is None or valid_rmse < best_rmse):
                improved = True
            if improved:
                best_epoch = epoch + 1
                best_rmse = valid_rmse if valid is not None else None
                best_state = {k: v.detach().clone().cpu() for k, v in module.state_dict().items()}
                bad = 0
            elif is_eval:
                bad += 1
            seconds = time.perf_counter() - t0
            rec = {"epoch": epoch + 1, "train_rmse": train_rmse, "valid_rmse": valid_rmse,
                   "seconds": round(seconds, 4), "train_seconds": round(train_seconds, 4),
                   "ratings_per_s": round(float(sums[1].item()) / train_seconds, 1) if train_seconds else None,
                   "lr": opt.param_groups[0]["lr"], "best_epoch": best_epoch}
            history.append(rec)
            self.reporter.log(rec)
            if tb is not None:
                for k in ("train_rmse", "valid_rmse", "lr"):
                    if rec[k] is not None:
                        tb.add_scalar(k, rec[k], epoch + 1)
            stopped = bool(cfg.patience and is_eval and bad >= cfg.patience)
            if self.run_dir is not None and rt.is_main:
                if improved:
                    save_checkpoint(self.run_dir / BEST, {"module": best_state, "epoch": best_epoch,
                                                          "signature": self.signature})
                rngs = [torch.get_rng_state()]
                if rt.distributed:
                    import torch.distributed as dist
                    gathered = [None] * rt.world
                    dist.all_gather_object(gathered, torch.get_rng_state())
                    rngs = gathered
                save_checkpoint(self.run_dir / LAST, {
                    "module": module.state_dict(), "optimizers": {k: o.state_dict() for k, o in opts.items()},
                    **({"task": self.task.state_dict()} if hasattr(self.task, "state_dict") else {}),
                    "scheduler": sched.state_dict() if sched is not None else None,
                    "scaler": scaler.state_dict() if scaler is not None else None,
                    "rng": rngs, "epoch": epoch + 1, "best_epoch": best_epoch, "best_rmse": best_rmse,
                    "bad": bad, "history": history, "signature": self.signature,
                    "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()}})
                self._write_metrics(history)
            elif self.run_dir is not None and rt.distributed:
                import torch.distributed as dist
                dist.all_gather_object([None] * rt.world, torch.get_rng_state())
            if stopped:
                self.reporter.message(f"early stop after epoch {epoch + 1}: no VALID improvement in "
                                      f"{cfg.patience} evaluations (best epoch {best_epoch})")
                break
        if tb is not None:
            tb.close()
        if hasattr(module, "sparse_grad"):       # the fitted module no longer talks to the optimiser
            module.sparse_grad, module.sync_rows = False, None
        if best_state is not None:
            module.load_state_dict(best_state)
        module.eval()
        return FitResult(module, best_epoch, best_rmse, history, epochs_run=len(history),
                         stopped_early=stopped, resumed_from=start_epoch)
