"""recozoo's one training engine for torch models.

Every torch model of the zoo (DeepRec, I-/U-AutoRec, GLocal-K, RRN) trains
through this package, so batching, precision, devices, DDP, model selection,
checkpoints and logs behave the same for all of them. Row models hand the
engine a :class:`RowMatrix`; a model whose batches are not rows (RRN's
alternating user and movie phases, with an optimiser per network) brings its
own batches and optimisers through optional :class:`Task` hooks and gets the
same loop, selection, checkpoints and logs (see ``Task``).

Public API
----------
``RowMatrix.from_table(table, by="user"|"item")``
    CSR rows of a :class:`~recozoo.data.table.RatingsTable` (item rows come from
    the table's cached CSC copy). ``take(rows) -> RowBatch`` gathers rows with
    one vectorised index computation.
``RowBatch``
    ``rows`` (host int64), ``offsets`` (B+1), ``cols``, ``vals`` (torch),
    ``n_cols``; ``to(device)``, ``row_index()`` (batch row of every entry),
    ``dense()`` (B x n_cols on the batch's device).
``EngineConfig`` (``EngineConfig.from_settings(settings, device=, seed=, **fixed)``: the
one mapping of a model's settings onto it, field by field name)
    epochs, batch_size (0 = all rows), optimizer (momentum|sgd|adam|adagrad|
    rmsprop|rprop|lbfgs; ``momentum`` = SGD momentum 0.9 with the lr multiplied by
    ``gamma`` after the epochs in ``milestones``, stepped *after* the epoch's
    optimiser steps; ``momentum``/``sgd`` run :class:`~recozoo.engine.lazy_sgd.LazySGD`;
    ``lbfgs`` = one full-batch L-BFGS iteration with a strong-Wolfe line search per
    step, L2 terms in the task's penalty), lr, momentum, weight_decay, eval_every, patience (0 = no
    early stopping), precision (fp32|bf16|fp16), device (auto|cpu|cuda|cuda:N|
    mps), seed, eval_batch_rows, tensorboard.
``Task`` (the base class a model's task subclasses; every hook is declared there)
    ``build_module() -> nn.Module``; ``train_losses(net, batch)`` — a generator
    yielding one ``Loss(sse, count, penalty=None, report=True, ends_batch=False)`` per optimiser
    step (the engine steps before the generator resumes, so multi-step schemes
    like DeepRec's dense re-feeding need no loop of their own; ``net`` may be
    DDP-wrapped, so call it, not its submodules, for anything needing
    gradients); ``eval_sse(module, inputs, targets) -> (sse, count)`` under
    no_grad, scoring only the target entries. Optional, with defaults:
    ``row_sparse_updates`` (True; False declines lazy rows), ``next_step_rows(module,
    batch) -> {param: rows}`` (the rows the batch's first row-sparse step will
    touch; with lazy rows the engine prefetches the next batch and passes them to
    the optimiser for the current batch's ``ends_batch`` step — LazySGD's
    ``next_rows``: DeepRec with re-feeding folds a catch-up pass into its dense
    update), ``valid_rmse(module, valid)`` (None: the engine scores rows with
    ``eval_sse``), ``make_optimizers(module) -> {name: opt}`` (None: one optimiser
    from the config), ``state_dict``/``load_state_dict`` (the task's random state).
    Tasks with their own batches (RRN) set ``own_batches = True`` and add
    ``epoch_batches(epoch)`` (sized; yields ``(batch, progress units)`` lazily);
    their losses may be ``summed`` (objective ``sse + penalty``), name the
    optimisers a step moves (``steps``) and a ``before_step`` hook. Call
    ``Trainer.fit(None, valid)`` for them (one process; no torchrun).
``RowSparseModule``
    base class of modules whose big (n x d) weights can take row-sparse gradients
    (``sparse_grad``, ``sync_rows``; see :mod:`recozoo.engine.lazy_sgd`).
``Selection``
    best-on-VALID bookkeeping and early stopping, shared with epoch loops outside
    torch (TimeSVD++).
``Trainer(task, config, reporter=, run_dir=, resume=, signature=, start_from=)``
    ``fit(train_rows, (valid_inputs, valid_targets) | None) -> FitResult``
    (module with the best-on-VALID weights, best_epoch, best_valid_rmse,
    history, epochs_run, stopped_early, resumed_from);
    ``evaluate(module, inputs, targets) -> (rmse, sse, count)``. ``start_from(module)``: a warm
    start, usually ``lambda m: copy_weights(previous_module, m)`` (:mod:`recozoo.engine.warm`).

Behaviour
---------
* Each epoch visits every non-empty training row once, in an order drawn from
  ``(seed, epoch)`` only (so resume and all DDP ranks agree); the last partial
  batch is kept.
* Row-sparse gradients: a :class:`RowSparseModule`
  (:class:`~recozoo.models.autoencoder.AutoencoderNet` of DeepRec, AutoRec) gets row-sparse
  gradients for its big weight matrices and :class:`~recozoo.engine.lazy_sgd.LazySGD`
  updates only the touched rows, exactly (see that module); single process only.
* Objective per step: ``sse_global / count_global + penalty``. Under
  ``torchrun`` (``WORLD_SIZE`` > 1) each rank takes rows ``rank::world`` of every
  global batch, the counts are all-reduced and DDP averages gradients, which
  reproduces the one-process trajectory for the same global batch (exactly, up
  to float summation order, when the model has no dropout/noise; with dropout
  each rank draws its own masks).
* ``run_dir``: ``last.pt`` (module, optimiser, scheduler, scaler, RNG states,
  epoch, best, history) and ``best.pt`` written atomically each epoch,
  ``metrics.jsonl`` (epoch, train_rmse, valid_rmse, seconds, train_seconds,
  ratings_per_s, lr, best_epoch) rewritten atomically each epoch and also sent
  to ``reporter.log``; ``tb/`` when tensorboard is importable. ``resume=True``
  continues from ``last.pt`` to the same result as an uninterrupted run (CPU).
  A checkpoint whose ``signature`` differs (e.g. another item count) is a
  one-line :class:`~recozoo.errors.CheckpointError`.
"""

import importlib
from typing import Any

#: each public name and the module that defines it. The names load on first use (PEP 562), so a
#: torch-free model that needs only :mod:`recozoo.engine.selection` (TimeSVD++) imports that module
#: without this package pulling in torch (3-6 s and ~200 MB on a 2-core machine).
_EXPORTS = {
    "RowSparseModule": "lazy_sgd", "RowBatch": "rows", "RowMatrix": "rows", "Runtime": "runtime",
    "autocast_context": "runtime", "dist_env": "runtime", "Selection": "selection",
    "METRICS_FILE": "trainer", "OPTIMIZERS": "trainer", "EngineConfig": "trainer", "FitResult": "trainer",
    "Loss": "trainer", "Task": "trainer", "Trainer": "trainer", "copy_weights": "warm",
}

__all__ = ["RowBatch", "RowMatrix", "RowSparseModule", "Runtime", "autocast_context", "dist_env",
           "EngineConfig", "FitResult", "Loss", "Selection", "Task", "Trainer", "OPTIMIZERS", "METRICS_FILE",
           "copy_weights"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'recozoo.engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"recozoo.engine.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
