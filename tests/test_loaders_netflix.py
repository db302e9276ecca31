"""Netflix Prize loader: every raw layout gives the identical table; bad input is named."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recozoo.data import _parse
from recozoo.data.netflix import detect_layout, load_netflix
from recozoo.data.synthetic import generate, write_netflix_layout
from recozoo.data.table import RatingsTable
from recozoo.errors import DataError

LAYOUTS = {"mv": "training_set", "tar": "training_set.tar", "tar.gz": "nf_prize_dataset.tar.gz",
           "combined": "combined"}


@pytest.fixture(scope="module")
def table() -> RatingsTable:
    return generate(400, 90, 5000, seed=3).compact()


@pytest.fixture(scope="module")
def layouts(table, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("netflix")
    out = {}
    for layout, name in LAYOUTS.items():
        write_netflix_layout(table, root / name, layout)
        out[layout] = root / name
    return out


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_every_layout_gives_the_identical_table(table, layouts, layout):
    assert detect_layout(layouts[layout])[0] == layout
    got = load_netflix(layouts[layout])
    assert got.equals(table)
    assert got.timestamps.dtype == np.int64 and np.all(got.timestamps % 86400 == 0)
    assert got.user_ids.raw.dtype.kind == "i" and got.item_ids.raw.dtype.kind == "i"


def test_parent_folders_and_single_combined_file_are_detected(table, layouts, tmp_path):
    # the folder that holds training_set/ (as the extracted download) and a lone combined file
    assert load_netflix(layouts["mv"].parent).equals(table)
    one = tmp_path / "combined_data_1.txt"
    one.write_bytes(b"".join(p.read_bytes() for p in sorted(layouts["combined"].iterdir())))
    assert load_netflix(one).equals(table)


def test_small_chunks_keep_lines_whole_and_numbers_right(table, layouts, monkeypatch, tmp_path):
    monkeypatch.setattr(_parse, "CHUNK_BYTES", 97)  # every combined file arrives in many pieces
    assert load_netflix(layouts["combined"]).equals(table)
    f = sorted(layouts["combined"].iterdir())[1]
    lines = f.read_bytes().split(b"\n")
    k = len(lines) // 2
    while lines[k].endswith(b":"):
        k += 1
    lines[k] = lines[k][:-2] + b"32"  # day 32
    bad = tmp_path / "combined_data_1.txt"
    bad.write_bytes(b"\n".join(lines))
    with pytest.raises(DataError) as e:
        load_netflix(bad)
    msg = _one_line(e)
    assert f"{bad}, line {k + 1}, field 'date'" in msg


def test_archive_member_order_does_not_matter(table, layouts, tmp_path):
    # members in reverse movie order: rows must still come out item-sorted
    tar = tmp_path / "training_set.tar"
    with tarfile.open(tar, "w") as tf:
        for p in sorted(layouts["mv"].iterdir(), reverse=True):
            data = p.read_bytes()
            ti = tarfile.TarInfo(f"training_set/{p.name}")
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    assert load_netflix(tar).equals(table)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_random_small_tables_roundtrip(tmp_path_factory, data):
    n = data.draw(st.integers(1, 60))
    users = np.array(data.draw(st.lists(st.integers(0, 2_649_429), min_size=n, max_size=n)))
    items = np.array(data.draw(st.lists(st.integers(1, 17_770), min_size=n, max_size=n)))
    _, first = np.unique(users * 20_000 + items, return_index=True)
    users, items = users[first], items[first]
    m = users.size
    ratings = np.array(data.draw(st.lists(st.integers(1, 5), min_size=m, max_size=m)), dtype=np.float32)
    days = np.array(data.draw(st.lists(st.integers(10_000, 13_200), min_size=m, max_size=m)))
    want = RatingsTable.from_raw(users, items, ratings, days * 86400)
    root = tmp_path_factory.mktemp("hyp")
    for layout in ("mv", "tar", "combined"):
        write_netflix_layout(want, root / LAYOUTS[layout], layout)
        assert load_netflix(root / LAYOUTS[layout]).equals(want)


def _mv(tmp_path: Path, text: str, name: str = "mv_0000007.txt") -> Path:
    d = tmp_path / "training_set"
    d.mkdir(exist_ok=True)
    (d / name).write_text(text)
    return d


@pytest.mark.parametrize("text, line, field", [
    ("7:\n1,3,2005-01-01\n2,4,2005-02-30\n", 3, "date"),
    ("7:\n1,3,2005-01-01\n2,6,2005-02-03\n", 3, "rating"),
    ("7:\n1,3,2005-01-01\n2,0,2005-02-03\n", 3, "rating"),
    ("7:\n1,3,2005-01-01\nabc,4,2005-02-03\n", 3, "user"),
    ("1,3,2005-01-01\n", 1, "movie"),
    ("x7:\n1,3,2005-01-01\n", 1, "movie"),
    ("7:\n1,3,2005-01-01\n\n2,4,05-02-03\n", 4, "date"),
])
def test_malformed_lines_name_file_line_and_field(tmp_path, text, line, field):
    d = _mv(tmp_path, "7:\n5,5,2004-04-04\n", "mv_0000001.txt")
    _mv(tmp_path, text)
    with pytest.raises(DataError) as e:
        load_netflix(d)
    assert f"mv_0000007.txt, line {line}, field {field!r}" in _one_line(e)


def test_wrong_field_count_and_crlf(tmp_path):
    d = _mv(tmp_path, "7:\r\n1,3,2005-01-01\r\n2,4\r\n")
    with pytest.raises(DataError) as e:
        load_netflix(d)
    msg = _one_line(e)
    assert "mv_0000007.txt, line 3" in msg and "found 2" in msg
    (d / "mv_0000007.txt").write_text("7:\r\n1,3,2005-01-01\r\n2,4,2005-01-02\r\n")
    t = load_netflix(d)
    assert t.nnz == 2 and t.user_ids.to_list() == [1, 2]
    assert t.timestamps[1] // 86400 == (np.datetime64("2005-01-02") - np.datetime64("1970-01-01")).astype(int)


def test_empty_file_and_duplicates(tmp_path):
    d = _mv(tmp_path, "")
    with pytest.raises(DataError) as e:
        load_netflix(d)
    assert "mv_0000007.txt" in _one_line(e) and "empty file" in str(e.value)
    (d / "mv_0000007.txt").write_text("7:\n1,3,2005-01-01\n")
    (d / "mv_0000008.txt").write_text("7:\n1,4,2005-01-02\n")
    with pytest.raises(DataError, match="movie 7 is rated twice by user 1"):
        load_netflix(d)


@pytest.mark.parametrize("layout", ["tar", "tar.gz"])
def test_truncated_archive_is_one_line_error(layouts, tmp_path, layout):
    src = layouts[layout]
    cut = tmp_path / src.name
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with pytest.raises(DataError) as e:
        load_netflix(cut)
    msg = _one_line(e)
    assert str(cut) in msg and "truncated or corrupt archive" in msg


def test_not_netflix_data(tmp_path):
    with pytest.raises(DataError, match="no Netflix Prize data here"):
        load_netflix(tmp_path)


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_table_remap_fast_path_equals_the_sorting_path(data):
    """RatingsTable.remap's no-sort path (used by every split) gives what the sort path gives."""
    from recozoo.data.table import IdMap
    seed = data.draw(st.integers(0, 10_000))
    t = generate(30, 12, data.draw(st.integers(1, 150)), seed=seed)
    rng = np.random.default_rng(seed)
    extra_u = data.draw(st.booleans())
    uid = t.user_ids.take(np.flatnonzero(rng.random(t.n_users) < 0.7))
    iid = t.item_ids.take(np.flatnonzero(rng.random(t.n_items) < data.draw(st.sampled_from([0.6, 1.0]))))
    if extra_u:
        uid = IdMap(np.union1d(uid.raw, [1000, 1001]))
    u = uid.lookup(t.user_ids.raw)[t.users]
    i = iid.lookup(t.item_ids.raw)[t.items]
    keep = (u >= 0) & (i >= 0)
    want = RatingsTable.from_coo(u[keep], i[keep], t.ratings[keep], t.timestamps[keep],
                                 user_ids=uid, item_ids=iid)
    got = t.remap(uid, iid)
    assert got.equals(want) and got.items.dtype == want.items.dtype
    assert got.indptr.dtype == want.indptr.dtype


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([1, 3, 7, 64]))
def test_table_blockwise_select_and_counts_match_numpy(seed, block):
    """select()/item_counts() work blockwise (bounded memory); any block size gives numpy's answer."""
    import recozoo.data.table as T
    t = generate(25, 9, 1 + seed % 100, seed=seed)
    mask = np.random.default_rng(seed).random(t.nnz) < 0.4
    old = T._BLOCK
    T._BLOCK = block
    try:
        s = t.select(mask)
        counts = t.item_counts()
    finally:
        T._BLOCK = old
    users = t.users
    assert np.array_equal(np.diff(s.indptr), np.bincount(users[mask], minlength=t.n_users))
    assert np.array_equal(s.items, t.items[mask]) and np.array_equal(s.timestamps, t.timestamps[mask])
    assert np.array_equal(counts, np.bincount(t.items, minlength=t.n_items))
