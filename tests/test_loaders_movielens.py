"""MovieLens loaders: the real ML-100K, and the ML-1M / ML-20M layouts on generated files."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from recozoo.data.movielens import ML100K_FOLDS, load_ml100k_fold, load_movielens
from recozoo.data.synthetic import generate
from recozoo.data.table import RatingsTable
from recozoo.errors import DataError


def _raw(path: Path) -> np.ndarray:
    return np.loadtxt(path, dtype=np.int64)


def test_ml100k_counts(ml100k_dir):
    t = load_movielens(ml100k_dir)
    assert t.describe() == {"ratings": 100_000, "users": 943, "items": 1682}
    raw = _raw(ml100k_dir / "u.data")
    assert t.has_timestamps and np.array_equal(np.sort(t.timestamps), np.sort(raw[:, 3]))
    assert set(np.unique(t.ratings)) == {1.0, 2.0, 3.0, 4.0, 5.0}


def test_ml100k_fold_u1_shares_union_id_maps(ml100k_dir):
    train, test = load_ml100k_fold(ml100k_dir, "u1")
    assert train.nnz == 80_000 and test.nnz == 20_000
    assert train.user_ids is test.user_ids and train.item_ids is test.item_ids
    base, tst = _raw(ml100k_dir / "u1.base"), _raw(ml100k_dir / "u1.test")
    assert np.array_equal(train.item_ids.raw, np.union1d(base[:, 1], tst[:, 1]))
    # test ratings of items the base never rates keep their index (not dropped)
    unseen = ~np.isin(tst[:, 1], base[:, 1])
    assert unseen.sum() > 0
    assert int((train.item_counts()[test.items] == 0).sum()) == int(unseen.sum())
    # every test rating is the file's own (user, item, rating)
    got = test.to_frame().sort_values(["user", "item"]).to_numpy()
    want = tst[np.lexsort((tst[:, 1], tst[:, 0]))][:, :3]
    assert np.array_equal(got[:, :3].astype(np.int64), want)


@pytest.mark.parametrize("fold", ML100K_FOLDS[1:])
def test_other_folds_load(ml100k_dir, fold):
    train, test = load_ml100k_fold(ml100k_dir.parent, fold)  # the parent folder works too
    assert train.nnz + test.nnz == 100_000


def _table() -> RatingsTable:
    t = generate(300, 80, 4000, seed=5).compact()
    r = t.ratings.copy()
    r[::3] -= 0.5  # half stars, as ML-10M+ has
    r[r < 0.5] = 0.5
    ts = t.timestamps + np.arange(t.nnz) % 86400
    return RatingsTable(t.indptr, t.items, r, ts, t.user_ids, t.item_ids)


def _lines(t: RatingsTable, sep: str) -> str:
    f = t.to_frame()
    return "".join(f"{u}{sep}{i}{sep}{r:g}{sep}{s}\n"
                   for u, i, r, s in zip(f.user, f.item, f.rating, f.timestamp))


def test_ml1m_layout_and_zip(tmp_path):
    t = _table()
    d = tmp_path / "ml-1m"
    d.mkdir()
    (d / "ratings.dat").write_text(_lines(t, "::"))
    assert load_movielens(tmp_path).equals(t)  # found one folder down
    z = tmp_path / "ml-1m.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.write(d / "ratings.dat", "ml-1m/ratings.dat")
    assert load_movielens(z).equals(t)


def test_ml20m_csv_layout(tmp_path):
    t = _table()
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n" + _lines(t, ","))
    assert load_movielens(tmp_path / "ratings.csv").equals(t)
    (tmp_path / "ratings.csv").write_text(_lines(t, ","))
    with pytest.raises(DataError, match=r"ratings.csv, line 1: expected the header"):
        load_movielens(tmp_path)


@pytest.mark.parametrize("line, field", [("3::x::4::978300760", "item"),
                                         ("3::4::nan::978300760", "rating"),
                                         ("3::4::4::9783.5e", "timestamp"),
                                         ("3::4::4", None)])
def test_malformed_ratings_dat(tmp_path, line, field):
    (tmp_path / "ratings.dat").write_text("1::2::5::978300760\n2::2::3::978300761\n" + line + "\n")
    with pytest.raises(DataError) as e:
        load_movielens(tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and "ratings.dat, line 3" in msg
    if field:
        assert f"field {field!r}" in msg
    else:
        assert "expected 4 fields" in msg


def test_unknown_fold_and_missing_data(tmp_path, ml100k_dir):
    with pytest.raises(DataError, match="unknown ML-100K fold"):
        load_ml100k_fold(ml100k_dir, "u9")
    with pytest.raises(DataError, match="no MovieLens ratings"):
        load_movielens(tmp_path)
