"""``recozoo fit MODEL --warm-start RUN_DIR``: from the run's weights, on TRAIN + its logged events."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from cli_helpers import assert_one_line_error, run_cli, run_json


@pytest.fixture(scope="module")
def mf_run(ml100k_split, tmp_path_factory):
    """The run to warm-start from, fitted in process (the warm fit below goes through the CLI)."""
    from recozoo.runs import RunConfig, fit_run
    d = tmp_path_factory.mktemp("warm")
    fit_run(RunConfig(model="biasedmf", dataset="ml-100k", settings={"factors": 8, "epochs": 3}), d / "run",
            split=ml100k_split)
    return d / "run"


def _events(run_dir, rows):
    from recozoo.serve.store import EVENTS_FILE, InteractionStore
    s = InteractionStore(run_dir / EVENTS_FILE)
    ids = s.add(rows)
    s.close()
    return ids


def test_warm_start_resumes_from_the_runs_weights_and_sees_the_events(mf_run, tmp_path, ml100k_env,
                                                                    monkeypatch):
    from recozoo.datasets import load_split
    monkeypatch.setenv("RECOZOO_DATA", ml100k_env["RECOZOO_DATA"])
    from recozoo.runs import load_ids, load_run
    run = tmp_path / "run"
    shutil.copytree(mf_run, run)
    split = load_split("ml-100k", None, 0, {})
    tu, ti = int(split.test.users[0]), int(split.test.items[0])          # a held-out pair
    held = (split.user_ids.raw[tu].item(), split.item_ids.raw[ti].item())
    ids = _events(run, [(1, 50, 1.0), (1, 50, 2.0), (90001, 50, 5.0), (90001, 181, 4.0), (90001, 1, None),
                        (held[0], held[1], 5.0)])
    # lr 1e-12: one epoch moves nothing, so the fit must end where it started — the run's weights
    s = run_json("fit", "biasedmf", "--warm-start", run, "--out", tmp_path / "warm", "-q",
                 "--set", "lr=1e-12", "--set", "epochs=1", env=ml100k_env)
    info = s["warm_start"]
    assert info["events_through"] == ids[-1] and info["events_read"] == 6
    assert info == {**info, "events_used": 3, "implicit_skipped": 1, "heldout_dropped": 1, "new_users": 1}
    assert s["settings"]["factors"] == 8 and s["settings"]["epochs"] == 1       # the run's, then --set
    _, old = load_run(run)
    _, new = load_run(tmp_path / "warm")
    np.testing.assert_allclose(new.item_factors_, old.item_factors_, atol=1e-6)
    np.testing.assert_allclose(new.user_factors_[:old.n_users_], old.user_factors_, atol=1e-6)
    users, _ = load_ids(tmp_path / "warm")
    assert len(users) == old.n_users_ + 1 and users.raw[-1] == 90001       # appended, old indices kept
    items, _ = load_ids(run)[1], None
    h = new.history([old.n_users_])                                         # the new user's TRAIN row
    assert sorted(items.raw[h.indices].tolist()) == [50, 181] and sorted(h.data.tolist()) == [4.0, 5.0]
    u1 = new.history([users.index(1)])
    assert u1[0, items.index(50)] == 2.0                                    # the latest event won
    cfg = json.loads((tmp_path / "warm" / "config.json").read_text())
    assert cfg["warm_start"]["events_db"].endswith("interactions.sqlite3")
    # a cold fit with the same settings starts elsewhere (so the check above can fail)
    from recozoo.registry import get_model
    c = get_model("biasedmf")(settings={"factors": 8, "lr": 1e-12, "epochs": 1}).fit(split.train)
    assert np.abs(c.item_factors_ - old.item_factors_).max() > 0.05

    # a server on the old run folds user 90001's events in; swapped to the warm run, it ignores them
    # (that run learned them) and folds in only later events
    import urllib.request
    from recozoo.serve import serve_in_thread
    srv = serve_in_thread(run, admin_token="t")
    try:
        assert srv.state.events.events_for(90001)
        req = urllib.request.Request(f"{srv.url}/admin/swap", method="POST", headers={"Authorization": "Bearer t"},
                                     data=json.dumps({"run_dir": str(tmp_path / "warm")}).encode())
        assert urllib.request.urlopen(req, timeout=60).status == 200
        assert srv.state.events.through == ids[-1] and srv.state.events.events_for(90001) is None
        with urllib.request.urlopen(f"{srv.url}/model", timeout=30) as r:
            assert json.loads(r.read())["warm_start"]["events_through"] == ids[-1]
        with urllib.request.urlopen(f"{srv.url}/recommend?user=90001&k=3", timeout=30) as r:
            got = json.loads(r.read())["items"]           # a known user of the warm run now
        assert len(got) == 3 and not {50, 181} & {x["item"] for x in got}
    finally:
        srv.stop()


def test_warm_start_errors_are_one_line(mf_run, tmp_path, ml100k_env):
    run = tmp_path / "run"
    shutil.copytree(mf_run, run)
    assert_one_line_error(run_cli("fit", "als", "--warm-start", run, check=False, env=ml100k_env),
                          "holds a biasedmf run")
    assert_one_line_error(run_cli("fit", "biasedmf", "--warm-start", tmp_path, check=False, env=ml100k_env),
                          "not a run directory")
    _events(run, [(1, 999999, 4.0)])
    assert_one_line_error(run_cli("fit", "biasedmf", "--warm-start", run, "--out", tmp_path / "w", check=False,
                                  env=ml100k_env), "outside the run's catalogue")


@pytest.mark.parametrize("mode", ["user", "item"])
def test_torch_warm_start_resumes_from_the_runs_network_and_sees_the_events(tmp_path, mode):
    """DeepRec through the one engine: lr 1e-12 for one epoch moves nothing, so the warm fit must end
    at the run's weights (a cold one does not); its training rows hold the events."""
    from recozoo.registry import get_model
    from recozoo.runs import RunConfig, fit_run, load_ids, load_run
    from recozoo.testing import tiny_split
    split = tiny_split(4)
    a, b = (x.item() for x in split.item_ids.raw[[3, 9]])
    u1 = split.user_ids.raw[1].item()
    base = {"layers": "8", "epochs": 1, "dropout": 0.0, "mode": mode, "batch_size": 16, "optimizer": "adam"}
    fit_run(RunConfig(model="deeprec", dataset="tiny", settings={**base, "lr": 0.05, "epochs": 3}),
            tmp_path / "run", split=split)
    _events(tmp_path / "run", [(u1, a, 1.0), (u1, a, 2.0), (90001, a, 5.0), (90001, b, 4.0)])
    s = fit_run(RunConfig(model="deeprec", dataset="tiny", settings={**base, "lr": 1e-12}), tmp_path / "warm",
                split=split, warm_start=tmp_path / "run")
    assert s["warm_start"]["events_used"] >= 2 and s["warm_start"]["new_users"] == 1
    _, old = load_run(tmp_path / "run")
    _, new = load_run(tmp_path / "warm")
    grown = {"w_in", "w_out", "b_out"} if mode == "item" else set()       # item mode: one more user column
    for name, t in new.net_.state_dict().items():
        o = old.net_.state_dict()[name]
        assert t.shape[0] == o.shape[0] + (name in grown)
        np.testing.assert_allclose(t[:o.shape[0]].numpy(), o.numpy(), atol=1e-6, err_msg=name)
    cold = get_model("deeprec")(settings={**base, "lr": 1e-12}, seed=0).fit(split.train)
    assert (cold.net_.w_in - old.net_.w_in).abs().max() > 0.01
    users, items = load_ids(tmp_path / "warm")
    h = new.history([users.index(90001)])                                 # the new user's TRAIN row
    assert sorted(items.raw[h.indices].tolist()) == sorted([a, b]) and sorted(h.data.tolist()) == [4.0, 5.0]
    from recozoo.serve import Recommender                                  # (the CLI: tests/test_serve.py)
    rec = Recommender(tmp_path / "run")
    rec.read_run_events()                      # what `recozoo recommend` does: the run's events folded in
    q = rec.query_user(90001, 5)
    assert sorted(items.raw[q.fold[0]].tolist()) == sorted([a, b]) if mode == "user" else q.fallback
