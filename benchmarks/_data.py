"""ML-100K u1 for the DeepRec/AutoRec scripts: ``recozoo.datasets.build_split`` when it can
read the data, else the same protocol built here (u1.base/u1.test + ``holdout_split``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

DATA = Path(os.environ.get("RECOZOO_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def ml100k_u1(seed: int = 0):
    try:
        from recozoo.datasets import build_split
        return build_split("ml-100k", source=DATA / "ml-100k", seed=seed)
    except ModuleNotFoundError:
        pass
    import pandas as pd
    from recozoo.data.table import IdMap, RatingsTable
    from recozoo.splits import holdout_split
    cols = ["user", "item", "rating", "ts"]
    base = pd.read_csv(DATA / "ml-100k" / "u1.base", sep="\t", names=cols)
    test = pd.read_csv(DATA / "ml-100k" / "u1.test", sep="\t", names=cols)
    both = pd.concat([base, test])
    uids, iids = IdMap(np.unique(both.user)), IdMap(np.unique(both.item))

    def table(df):
        return RatingsTable.from_coo(uids.lookup(df.user.values), iids.lookup(df.item.values),
                                     df.rating.values, df.ts.values, user_ids=uids, item_ids=iids)
    return holdout_split(table(base), table(test), "ml-100k", seed=seed, info={"fold": "u1"})
