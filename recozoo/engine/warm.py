"""Warm starts through the one engine: a fresh module takes a previous fit's weights.

``Trainer(start_from=...)`` calls a function on the freshly built, seeded
module before its optimisers exist; every torch model that warm-starts
(``recozoo fit --warm-start``, :mod:`recozoo.warm`) passes
``lambda module: copy_weights(previous_module, module)``, so the rule for
tensors that grew with the data (users appended by the logged events) is the
same for all of them.
"""

from __future__ import annotations

from torch import nn

__all__ = ["copy_weights"]


def copy_weights(source: nn.Module, target: nn.Module) -> None:
    """Copy ``source``'s weights into ``target`` (a warm start). A tensor whose first dimension grew
    (users appended since: DeepRec item mode's input/output weights and output bias, RRN's user
    factors, biases and movie-side projection) gets the old rows first and keeps ``target``'s fresh
    initialisation in the new ones; any other shape difference is a one-line error (other layers,
    mode or settings)."""
    from recozoo.errors import RecozooError
    old = source.state_dict()
    for name, t in target.state_dict().items():
        o = old.get(name)
        if o is not None and o.shape == t.shape:
            t.copy_(o)
        elif o is not None and o.dim() and o.shape[1:] == t.shape[1:] and o.shape[0] <= t.shape[0]:
            t[:o.shape[0]].copy_(o)
        else:
            raise RecozooError(f"--warm-start: the run's network has {name} "
                               f"{tuple(o.shape) if o is not None else 'missing'}, this fit's {tuple(t.shape)} "
                               "(other layers, mode or settings: warm starts keep the architecture)")
