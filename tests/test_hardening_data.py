"""Hostile and careless use of the data home, through the CLI where a user meets it (issue 14, items 0-8).

Every case here failed on the code before its fix: a traceback, a silent merge of distinct ids,
a data home re-pointed by a failed command or by reading a run, files written outside the data
home, leftovers of a killed save kept forever.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import assert_one_line_error, invoke_cli, invoke_json, run_cli


@pytest.fixture
def home(tmp_path):
    h = tmp_path / "home"
    h.mkdir()
    return {"RECOZOO_DATA": str(h)}


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _netflix(folder: Path, n_users: int = 40, n_movies: int = 6, seed: int = 0, rating=None) -> Path:
    """A tiny Netflix Prize folder (mv_*.txt) with ratings from 2005-09 to 2005-12 (netflix-3m's span)."""
    rng = np.random.default_rng(seed)
    days = ["2005-09-15", "2005-10-20", "2005-11-25", "2005-12-05", "2005-12-20"]
    for m in range(1, n_movies + 1):
        lines = [f"{m}:"]
        for u in range(1, n_users + 1):
            r = rating if rating is not None else int(rng.integers(1, 6))
            lines.append(f"{u * 7},{r},{days[(u + m) % len(days)]}")
        _write(folder / f"mv_{m:07d}.txt", "\n".join(lines) + "\n")
    return folder


def _tsv(path: Path, rows) -> Path:
    return _write(path, "".join("\t".join(map(str, r)) + "\n" for r in rows))


def _pre_split(tmp_path: Path, train_rows=None):
    train = train_rows or [(u, i, 1 + (u + i) % 5) for u in range(1, 9) for i in range(1, 7)]
    return (_tsv(tmp_path / "train.tsv", train),
            _tsv(tmp_path / "test.tsv", [(u, 3, 4) for u in range(1, 9)]))


# ----------------------------------------------------------------- item 0
def test_als_implicit_fits_and_compares_on_a_prepared_split(home, tmp_path):
    """implicit's Cython solver refused the prepared split's read-only memory maps."""
    train, test = _pre_split(tmp_path)
    invoke_cli("data", "prepare", "mine", "--train", train, "--test", test, env=home)
    s = invoke_json("fit", "als-implicit", "--dataset", "mine", "--set", "factors=4", "--set", "iterations=2",
                 "--out", tmp_path / "run", "-q", env=home)
    assert s["metrics"]["test"]["n_users"] > 0
    invoke_cli("compare", "--dataset", "mine", "--models", "als-implicit,bias", "--set", "als-implicit.factors=4",
            "--out", tmp_path / "cmp", env=home)


# ----------------------------------------------------------------- item 1
def test_ids_beyond_int64_are_one_line_errors_naming_file_line_field(home, tmp_path):
    csv = _write(tmp_path / "big.csv", "user,item,rating\n5,1,2\n99999999999999999999,1,4\n"
                                       "99999999999999999998,2,3\n")
    p = invoke_cli("data", "prepare", "big", "--source", csv, "--protocol", "random", env=home, check=False)
    assert_one_line_error(p, "big.csv", "line 3", "'user'", "64-bit")
    p = invoke_cli("data", "prepare", "big2", "--train", csv, "--test", csv, "--format", "csv", env=home, check=False)
    assert_one_line_error(p, "big.csv", "line 3", "'user'")
    uint = _write(tmp_path / "u.csv", "user,item,rating\n18446744073709551615,1,4\n2,2,3\n")
    p = invoke_cli("data", "prepare", "big3", "--source", uint, "--protocol", "random", env=home, check=False)
    assert_one_line_error(p, "u.csv", "line 2", "'user'", "64-bit")
    tsv = _tsv(tmp_path / "t.tsv", [(18446744073709551615, 1, 4), (2, 1, 3)])
    p = invoke_cli("data", "prepare", "big4", "--train", tsv, "--test", tsv, env=home, check=False)
    assert_one_line_error(p, "t.tsv", "line 1", "'user'", "64-bit")
    assert not (Path(home["RECOZOO_DATA"]) / "user").exists() or \
        not list((Path(home["RECOZOO_DATA"]) / "user").glob("*.json"))


@pytest.mark.parametrize("layout", ["tsv", "csv"])
def test_ids_that_fit_int64_round_trip_exactly(home, tmp_path, monkeypatch, layout):
    big = [1234567890123456789, 1234567890123456788, 9223372036854775807]
    rows = [(u, i, 3) for u in big for i in (1, 2)] + [(7, 1, 4), (7, 2, 5)]
    if layout == "tsv":
        train = _tsv(tmp_path / "train.tsv", rows)
        test = _tsv(tmp_path / "test.tsv", [(big[0], 1, 4)])
        extra = []
    else:
        train = _write(tmp_path / "train.csv", "user,item,rating\n" + "".join(f"{u},{i},{r}\n" for u, i, r in rows))
        test = _write(tmp_path / "test.csv", f"user,item,rating\n{big[0]},1,4\n")
        extra = ["--format", "csv"]
    d = invoke_json("data", "prepare", "bigids", "--train", train, "--test", test, *extra, env=home)
    assert d["train"]["users"] == 4
    monkeypatch.setenv("RECOZOO_DATA", home["RECOZOO_DATA"])
    from recozoo.datasets import load_split
    raw = load_split("bigids").user_ids.raw
    assert raw.dtype == np.int64 and sorted(raw.tolist()) == sorted(big + [7])


# ----------------------------------------------------------------- item 2
def test_a_failed_prepare_leaves_the_good_source_recorded(home, tmp_path):
    good = _netflix(tmp_path / "good")
    invoke_cli("data", "prepare", "netflix-3m", "--source", good, env=home)
    record = Path(home["RECOZOO_DATA"]) / "sources" / "netflix.json"
    before = record.read_text()
    bad = _write(tmp_path / "bad" / "mv_0000001.txt", "1:\n7,9,2005-10-01\n")
    p = invoke_cli("data", "prepare", "netflix-3m", "--source", bad.parent, env=home, check=False)
    assert_one_line_error(p, "mv_0000001.txt", "line 2", "rating")
    assert record.read_text() == before
    assert invoke_json("data", "info", "netflix-3m", env=home)["train"]["ratings"] > 0


def test_a_failed_pre_split_prepare_registers_nothing(home, tmp_path):
    train = _tsv(tmp_path / "train.tsv", [(1, 1, 4), (2, 1, "x")])
    test = _tsv(tmp_path / "test.tsv", [(1, 1, 4)])
    p = invoke_cli("data", "prepare", "mine", "--train", train, "--test", test, env=home, check=False)
    assert_one_line_error(p, "train.tsv", "line 2", "rating")
    assert not (Path(home["RECOZOO_DATA"]) / "user" / "mine.json").exists()
    assert "mine" not in [d["name"] for d in invoke_json("data", "list", env=home)]


# ----------------------------------------------------------------- item 3
def _fitted_run(home, tmp_path) -> Path:
    good = _netflix(tmp_path / "good")
    invoke_cli("data", "prepare", "netflix-3m", "--source", good, env=home)
    invoke_cli("fit", "bias", "--dataset", "netflix-3m", "--out", tmp_path / "run", "-q", env=home)
    return tmp_path / "run"


def test_evaluating_a_run_never_re_points_the_data_home(home, tmp_path):
    run = _fitted_run(home, tmp_path)
    record = Path(home["RECOZOO_DATA"]) / "sources" / "netflix.json"
    before = record.read_text()
    hostile = _netflix(tmp_path / "hostile", rating=1)
    cfg = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**cfg, "source": str(hostile)}))
    first = invoke_json("evaluate", run, env=home)
    assert record.read_text() == before
    invoke_cli("fit", "bias", "--warm-start", run, "--out", tmp_path / "warm", "-q", env=home)
    assert record.read_text() == before              # nor does continuing it
    # a run from another machine: its source path means nothing here; the split is found by its key
    (run / "config.json").write_text(json.dumps({**cfg, "source": "/nonexistent/elsewhere"}))
    assert invoke_json("evaluate", run, env=home)["metrics"]["rmse"] == first["metrics"]["rmse"]
    assert record.read_text() == before


def test_a_run_evaluates_in_a_fresh_data_home_with_source_and_refuses_other_data(home, tmp_path):
    run = _fitted_run(home, tmp_path)
    first = invoke_json("evaluate", run, env=home)
    fresh = {"RECOZOO_DATA": str(tmp_path / "fresh")}
    p = invoke_cli("evaluate", run, env=fresh, check=False)
    assert_one_line_error(p, "netflix")
    got = invoke_json("evaluate", run, "--source", tmp_path / "good", env=fresh)
    assert got["metrics"]["rmse"] == first["metrics"]["rmse"]
    assert not (tmp_path / "fresh" / "sources").exists()      # --source of evaluate is not recorded
    other = _netflix(tmp_path / "other", seed=5)
    p = invoke_cli("evaluate", run, "--source", other, env=fresh, check=False)
    assert_one_line_error(p, "--source", "fitted on")


# ----------------------------------------------------------------- item 4
def _address_space_limit(gib: int):
    def limit():
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (gib << 30, gib << 30))
    return limit


@pytest.mark.parametrize("big_user, big_movie", [(2147483647, 5), (99, 2000000000)])
def test_one_huge_netflix_id_does_not_allocate_the_id_range(home, tmp_path, big_user, big_movie):
    """A lookup table spanning the raw ids took 9 GiB (user 2**31-1) or 16.8 GiB (a movie header
    2000000000:); under a 3 GiB address-space limit the load must succeed, ids exact."""
    sparse = tmp_path / "sparse"
    _write(sparse / "mv_0000001.txt", f"1:\n7,3,2005-10-01\n{big_user},5,2005-12-10\n14,4,2005-12-03\n")
    _write(sparse / "mv_0000002.txt", f"{big_movie}:\n7,2,2005-11-01\n{big_user},1,2005-10-02\n")
    p = subprocess.run([sys.executable, "-m", "recozoo", "data", "prepare", "netflix-3m", "--source", str(sparse),
                        "--json"], capture_output=True, text=True, env={**os.environ, **home},
                       preexec_fn=_address_space_limit(3), timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads(p.stdout)["train"]["ratings"] == 3
    from recozoo.data.netflix import load_netflix
    dense = tmp_path / "dense"          # the same ratings with small ids take the dense path
    _write(dense / "mv_0000001.txt", "1:\n7,3,2005-10-01\n9,5,2005-12-10\n14,4,2005-12-03\n")
    _write(dense / "mv_0000002.txt", "5:\n7,2,2005-11-01\n9,1,2005-10-02\n")
    a, b = load_netflix(sparse), load_netflix(dense)
    assert sorted(a.user_ids.raw.tolist()) == sorted({7, 14, big_user})
    assert sorted(a.item_ids.raw.tolist()) == sorted({1, big_movie})
    fa, fb = a.to_frame(), b.to_frame()
    fb["user"] = fb["user"].replace({9: big_user})
    fb["item"] = fb["item"].replace({5: big_movie})
    key = ["user", "item"]
    assert fa.sort_values(key).reset_index(drop=True).equals(fb.sort_values(key).reset_index(drop=True))


def test_a_bad_line_on_the_sparse_id_path_names_file_and_line(tmp_path):
    from recozoo.data.netflix import load_netflix
    from recozoo.errors import DataError
    _write(tmp_path / "mv_0000001.txt", "1:\n2147483647,3,2005-10-01\n8,6,2005-10-01\n")
    with pytest.raises(DataError, match=r"mv_0000001.txt, line 3, field 'rating'"):
        load_netflix(tmp_path)


# ----------------------------------------------------------------- item 5
def test_a_killed_save_leaves_nothing_after_the_next_run(home, tmp_path):
    """A real process killed by SIGKILL while its temp folder exists; the next prepare removes it."""
    prepared = Path(home["RECOZOO_DATA"]) / "prepared" / "synthetic"
    code = ("import os, signal, pathlib; from recozoo.tmp_folders import new_tmp; "
            f"t = new_tmp(pathlib.Path({str(prepared)!r})); (t / 'train').mkdir(); "
            "(t / 'train' / 'items.npy').write_bytes(b'x' * 4096); os.kill(os.getpid(), signal.SIGKILL)")
    p = subprocess.run([sys.executable, "-c", code], env={**os.environ, **home})
    assert p.returncode == -9
    assert len(list(prepared.glob(".tmp-*"))) == 1
    live = prepared / f".tmp-x-{os.getpid()}-live"       # another host's writer: kept (it is recent)
    live.mkdir()
    args = ["data", "prepare", "synthetic", "--data-param", "n_users=50", "--data-param", "n_items=20",
            "--data-param", "n_ratings=400"]
    run_cli(*args, env=home)
    assert [p.name for p in prepared.glob(".tmp-*")] == [live.name]
    old = 1_000_000_000
    os.utime(live, (old, old))                           # a day old: its writer is gone too
    run_cli(*args, env=home)                             # (a cache hit sweeps as well)
    assert list(prepared.glob(".tmp-*")) == []


# ----------------------------------------------------------------- item 6
def test_implausible_ratings_warn_once_fail_under_a_range_and_show_in_info(home, tmp_path):
    rows = [(u, i, 1 + (u * i) % 5) for u in range(1, 21) for i in range(1, 9)]
    rows[4] = (rows[4][0], rows[4][1], "1e30")
    train, test = _pre_split(tmp_path, rows)
    p = invoke_cli("data", "prepare", "odd", "--train", train, "--test", test, "--json", env=home)
    warn = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(warn) == 1 and warn[0].startswith("recozoo: warning: odd: 1 rating (1e+30)"), p.stderr
    assert "--rating-range" in warn[0]
    info = json.loads(p.stdout)
    assert info["train"]["min_rating"] == 1 and info["train"]["max_rating"] == pytest.approx(1e30, rel=1e-6)
    assert info["test"]["max_rating"] == 4
    # the cached split warns again where it is used
    p = invoke_cli("fit", "bias", "--dataset", "odd", "--out", tmp_path / "run", "-q", env=home)
    assert "recozoo: warning: odd: 1 rating (1e+30)" in p.stderr
    p = invoke_cli("data", "prepare", "odd2", "--train", train, "--test", test, "--rating-range", "1,5",
                env=home, check=False)
    assert_one_line_error(p, "odd2", "1 rating (1e+30) outside --rating-range 1,5")
    assert not (Path(home["RECOZOO_DATA"]) / "user" / "odd2.json").exists()
    p = invoke_cli("data", "prepare", "odd3", "--train", train, "--test", test, "--rating-range", "5,1",
                env=home, check=False)
    assert_one_line_error(p, "--rating-range", "LO < HI")


def test_plausible_ratings_do_not_warn(home, tmp_path):
    rows = [(u, i, -4 if (u, i) == (1, 1) else 1 + (u * i) % 5) for u in range(1, 21) for i in range(1, 9)]
    train, test = _pre_split(tmp_path, rows)
    p = invoke_cli("data", "prepare", "ok", "--train", train, "--test", test, "--json", env=home)
    assert p.stderr.strip() == "" and json.loads(p.stdout)["train"]["min_rating"] == -4


# ----------------------------------------------------------------- item 7
@pytest.mark.parametrize("name", ["../../X", "a/b", "..", ".hidden", "a\\b"])
def test_dataset_names_cannot_escape_the_data_home(home, tmp_path, name):
    train, test = _pre_split(tmp_path)
    p = invoke_cli("data", "prepare", name, "--train", train, "--test", test, env=home, check=False)
    assert_one_line_error(p, "dataset name")
    assert not list(tmp_path.rglob("X.json")) and not (tmp_path / "X").exists()
    assert not list(Path(home["RECOZOO_DATA"]).rglob("*.json"))


# ----------------------------------------------------------------- item 8
def test_a_zip_member_under_a_file_member_is_a_one_line_error(tmp_path):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from recozoo.data.fetch import Source, fetch
    from recozoo.errors import DataError
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("link", "a file")
        z.writestr("link/x", "under the file")
    body = buf.getvalue()

    class H(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/x.zip"
        with pytest.raises(DataError, match="sits under 'link'") as e:
            fetch("toy", tmp_path, progress=False, sources={"toy": Source(url)})
        assert "\n" not in str(e.value)
    finally:
        srv.shutdown()
    assert [p.name for p in (tmp_path / "raw").iterdir()] == []


# --------------------------------------------------------- --data-param
@pytest.mark.parametrize("value, needle", [("n_users=abc", "want an integer"), ("n_ratings=0", ">= 1")])
def test_a_bad_generator_parameter_is_a_one_line_error(home, value, needle):
    p = invoke_cli("data", "prepare", "synthetic", "--data-param", value, env=home, check=False)
    assert_one_line_error(p, value.split("=")[0], needle)
