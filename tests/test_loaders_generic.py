"""DeepRec TSV sources and the generic CSV/TSV/Parquet loader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recozoo.data.generic import load_table, load_tables_many
from recozoo.data.tsv import load_tsv, load_tsv_many
from recozoo.errors import DataError


def test_netflix_sample_folder(netflix_sample_dir):
    t = load_tsv(netflix_sample_dir)
    assert t.describe() == {"ratings": 204_821, "users": 97_618, "items": 11_259}
    assert not t.has_timestamps
    # the table holds exactly the file's triples
    frames = [pd.read_csv(p, sep="\t", header=None) for p in sorted(netflix_sample_dir.iterdir())]
    raw = pd.concat(frames).to_numpy()
    got = t.to_frame().to_numpy()
    order = np.lexsort((raw[:, 1], raw[:, 0]))
    assert np.array_equal(got.astype(np.float64), raw[order].astype(np.float64))


def test_many_sources_share_union_maps(netflix_sample_dir):
    parts = sorted(netflix_sample_dir.iterdir())
    m = load_tsv_many({"train": parts[0], "valid": parts[1], "test": parts[2]})
    assert m["train"].user_ids is m["test"].user_ids is m["valid"].user_ids
    assert sum(x.nnz for x in m.values()) == 204_821
    assert len(m["train"].user_ids) == 97_618 and len(m["train"].item_ids) == 11_259


def _write(d: Path, name: str, text: str) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_text(text)
    return d


def test_four_column_tsv_and_hidden_files(tmp_path):
    d = _write(tmp_path / "train", "part-1.tsv", "10\t7\t4.0\t1000\n11\t7\t3\t2000\n")
    _write(d, "part-2.tsv", "10\t8\t5\t3000\n")
    _write(d, ".hidden", "garbage\n")
    t = load_tsv(d)
    assert t.nnz == 3 and t.has_timestamps
    assert t.to_frame().to_dict("list") == {"user": [10, 10, 11], "item": [7, 8, 7],
                                            "rating": [4.0, 5.0, 3.0], "timestamp": [1000, 3000, 2000]}


@pytest.mark.parametrize("text, line, what", [
    ("1\t2\t3\n2\t2\t4\t100\n", 2, "expected 3 fields"),
    ("1\t2\t3\t5\n2\t2\t4\n", 2, "expected 4 fields"),
    ("1\t2\t3\nuser\t2\t4\n", 2, "field 'user'"),
    ("1\t2\t3\n\n2\t2.5\t4\n", 3, "field 'item'"),
    ("1\t2\t3\n2\t2\tnan\n", 2, "field 'rating'"),
    ("1\t2\t3\n2\t2\t\n", 2, "field 'rating'"),
    ("1\t2\t3\t5\n2\t2\t4\t5x\n", 2, "field 'timestamp'"),
])
def test_malformed_tsv_lines(tmp_path, text, line, what):
    f = tmp_path / "data.tsv"
    f.write_text(text)
    with pytest.raises(DataError) as e:
        load_tsv(f)
    msg = str(e.value)
    assert "\n" not in msg and f"data.tsv, line {line}" in msg and what in msg


def test_columns_must_agree_across_a_folder(tmp_path):
    d = _write(tmp_path / "s", "a.tsv", "1\t2\t3\n")
    _write(d, "b.tsv", "1\t3\t3\t99\n")
    with pytest.raises(DataError, match=r"b.tsv, line 1: expected 3 fields"):
        load_tsv(d)
    with pytest.raises(DataError, match="no data files"):
        load_tsv(_write(tmp_path / "e", ".only-hidden", "x"))


def test_generic_csv_with_dates_and_names(tmp_path):
    f = tmp_path / "r.csv"
    f.write_text("when,uid,sku,stars,extra\n2005-01-02,u1,9,4,x\n2005-01-03 12:00,u2,9,2.5,y\n")
    t = load_table(f, user="uid", item="sku", rating="stars", timestamp="when", string_ids=True)
    assert t.user_ids.to_list() == ["u1", "u2"]
    assert t.timestamps.tolist() == [1104624000, 1104624000 + 86400 + 43200]
    with pytest.raises(DataError, match=r"r.csv, line 2, field 'user': user is not an integer"):
        load_table(f, user="uid", item="sku", rating="stars")
    with pytest.raises(DataError, match="no column 'userId'"):
        load_table(f, user="userId", item="sku", rating="stars")


def test_generic_positions_parquet_and_many(tmp_path):
    f = tmp_path / "r.tsv"
    f.write_text("1\t5\t3\t100\n2\t6\t4\t200\n")
    t = load_table(f, user=0, item=1, rating=2, timestamp=3, header=False)
    assert t.nnz == 2 and t.timestamps.tolist() == [100, 200]
    p = tmp_path / "r.parquet"
    pd.DataFrame({"u": [1, 3], "i": [5, 7], "r": [1.0, 2.0]}).to_parquet(p)
    assert load_table(p, user="u", item="i", rating="r").nnz == 2
    g = tmp_path / "test.tsv"
    g.write_text("9\t5\t1\n")
    m = load_tables_many({"train": f, "test": g}, fmt="tsv", user="0", item="1", rating="2",
                         header="false")  # strings, as the CLI passes them
    assert m["train"].nnz == 2 and m["test"].nnz == 1
    assert m["train"].user_ids is m["test"].user_ids and m["test"].user_ids.to_list() == [1, 2, 9]


@pytest.mark.parametrize("text, line, field", [
    ("u,i,r\n1,2,3\n1,3,abc\n", 3, "rating"),
    ("u,i,r\n1,2,3\n1,3,nan\n", 3, "rating"),
    ("u,i,r\n1,2,3\n1.5,3,2\n", 3, "user"),
    ("u,i,r\n1,2,3\n1,,2\n", 3, "item"),
])
def test_generic_malformed(tmp_path, text, line, field):
    f = tmp_path / "bad.csv"
    f.write_text(text)
    with pytest.raises(DataError) as e:
        load_table(f, user="u", item="i", rating="r")
    assert f"bad.csv, line {line}, field {field!r}" in str(e.value)


def test_generic_wrong_field_count_and_bad_date(tmp_path):
    f = tmp_path / "bad.csv"
    f.write_text("u,i,r\n1,2,3\n1,3,4,9\n")
    with pytest.raises(DataError, match=r"bad.csv, line 3: expected 3 fields, found 4"):
        load_table(f, user="u", item="i", rating="r")
    f.write_text("u,i,r,t\n1,2,3,2005-01-01\n1,3,4,2005-13-45\n")
    with pytest.raises(DataError, match=r"line 3, field 'timestamp': timestamp is not a date"):
        load_table(f, user="u", item="i", rating="r", timestamp="t")
