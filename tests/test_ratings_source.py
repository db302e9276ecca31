"""One ratings source as one table: layout detection, interaction-only files, folders."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recozoo.data.generic import check_column_options, load_tables_many
from recozoo.data.ratings_source import detect_kind, load_ratings_source
from recozoo.data.tsv import load_tsv, load_tsv_many
from recozoo.errors import DataError


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_two_column_tsv_is_interactions(tmp_path):
    d = tmp_path / "train"
    _write(d / "part-1.tsv", "1\t10\n2\t10\n")
    _write(d / "part-2.tsv", "2\t11\n")
    t = load_tsv(d)
    assert t.nnz == 3 and np.all(t.ratings == 1) and not t.has_timestamps
    # pre-split folders of interaction lines share one pair of id maps
    _write(tmp_path / "test" / "p.tsv", "1\t11\n")
    m = load_tsv_many({"train": d, "test": tmp_path / "test"})
    assert m["test"].user_ids is m["train"].user_ids and m["test"].nnz == 1
    # all lines of a source agree on the number of fields
    _write(tmp_path / "mixed.tsv", "1\t10\n2\t10\t4\n")
    with pytest.raises(DataError, match=r"mixed.tsv, line 2: expected 2 fields"):
        load_tsv(tmp_path / "mixed.tsv")
    _write(tmp_path / "one.tsv", "1\n")
    with pytest.raises(DataError, match="expected 2, 3 or 4 fields"):
        load_tsv(tmp_path / "one.tsv")


def test_rating_none_and_folders_in_the_generic_reader(tmp_path):
    d = tmp_path / "clicks"
    _write(d / "a.csv", "uid,sku,ts\nx,1,2005-01-01\ny,2,2005-01-02\n")
    _write(d / "b.csv", "uid,sku,ts\nx,3,2005-01-03\n")
    m = load_tables_many({"train": d, "test": _write(tmp_path / "t.csv", "uid,sku,ts\ny,1,2005-02-01\n")},
                         user="uid", item="sku", rating="none", timestamp="ts", string_ids="true")
    assert m["train"].nnz == 3 and np.all(m["train"].ratings == 1) and m["train"].has_timestamps
    assert m["train"].user_ids.to_list() == ["x", "y"]
    assert check_column_options({"user": "u", "item": "i", "rating": "None"})["rating"] is None
    for bad, needle in (({"usr": "u"}, "unknown column option 'usr'"),
                        ({"user": "none", "item": "i"}, "needs a user column")):
        with pytest.raises(DataError, match=needle):
            check_column_options(bad)


def test_detection_and_loading(tmp_path, ml100k_dir, netflix_sample_dir):
    assert detect_kind(ml100k_dir) == "movielens" and detect_kind(ml100k_dir / "u.data") == "movielens"
    assert detect_kind(netflix_sample_dir) == "tsv"
    t = load_ratings_source(ml100k_dir / "u.data")
    assert t.nnz == 100_000 and t.has_timestamps
    # a ratings.csv that is not GroupLens' is read by column name, timestamp when present
    own = _write(tmp_path / "ratings.csv", "user,item,rating\n1,2,4.5\n1,3,2\n")
    assert detect_kind(own) == "csv"
    t = load_ratings_source(own)
    assert t.nnz == 2 and not t.has_timestamps
    ml = _write(tmp_path / "ml" / "ratings.csv", "userId,movieId,rating,timestamp\n1,2,4.5,99\n")
    assert detect_kind(ml) == "movielens" and load_ratings_source(ml.parent).timestamps.tolist() == [99]
    pq = tmp_path / "r.parquet"
    pd.DataFrame({"user": [1, 2], "item": [3, 3], "rating": [1.0, 5.0], "timestamp": [5, 6]}).to_parquet(pq)
    assert load_ratings_source(pq).timestamps.tolist() == [5, 6]
    # a mapping always goes through the generic reader
    t = load_ratings_source(ml100k_dir / "u.data", columns={"user": "0", "item": "1", "rating": "none",
                                                             "header": "false"})
    assert t.nnz == 100_000 and np.all(t.ratings == 1) and not t.has_timestamps
    with pytest.raises(DataError, match="unknown format 'xls'"):
        load_ratings_source(own, "xls")
    with pytest.raises(DataError, match="no such file or folder"):
        load_ratings_source(tmp_path / "absent.csv")
