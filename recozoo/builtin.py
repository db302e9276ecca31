"""recozoo's own plugin: built-in models and datasets, registered through the
same hooks a third-party plugin implements (no privileged back door).

Built-in models are registered as :class:`~recozoo.registry.LazyModel` references
(name -> ``module:Class``) so that ``recozoo fit bias`` does not pay for importing
torch, numba and implicit; the class is imported on first use. A plugin may
register classes directly or lazily, the same way.
"""

from __future__ import annotations

from recozoo.datasets import builtin_datasets
from recozoo.hookspecs import hookimpl
from recozoo.registry import LazyModel

_BUILTIN_MODELS = {
    "mean": "recozoo.models.baselines:GlobalMean",
    "bias": "recozoo.models.baselines:Bias",
    "deeprec": "recozoo.models.deeprec:DeepRec",
    "autorec-i": "recozoo.models.autorec:IAutoRec",
    "autorec-u": "recozoo.models.autorec:UAutoRec",
    "glocal-k": "recozoo.models.glocalk:GLocalK",
    "blend": "recozoo.models.blend:Blend",
    "als": "recozoo.models.als:ALS",
    "als-implicit": "recozoo.models.als_implicit:ImplicitALS",
    "pmf": "recozoo.models.mf:PMF",
    "biasedmf": "recozoo.models.mf:BiasedMF",
    "timesvdpp": "recozoo.models.timesvdpp:TimeSVDpp",
    "rrn": "recozoo.models.rrn.model:RRN",
    "mult-vae": "recozoo.models.multvae:MultVAE",
    "mult-dae": "recozoo.models.multvae:MultDAE",
    "pop": "recozoo.models.popularity:Popularity",
    "itemknn": "recozoo.models.itemknn:ItemKNN",
    "bpr": "recozoo.models.bpr:BPR",
}


@hookimpl
def register_models(register):
    for name, target in _BUILTIN_MODELS.items():
        register(LazyModel(name, target))


@hookimpl
def register_datasets(register):
    for spec in builtin_datasets():
        register(spec)
