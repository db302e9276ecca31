"""``recozoo fit MODEL --warm-start RUN_DIR``: from the run's weights, on TRAIN + its logged events."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from cli_helpers import assert_one_line_error, invoke_cli, invoke_json


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
    s = invoke_json("fit", "biasedmf", "--warm-start", run, "--out", tmp_path / "warm", "-q",
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
    assert_one_line_error(invoke_cli("fit", "als", "--warm-start", run, check=False, env=ml100k_env),
                          "holds a biasedmf run")
    assert_one_line_error(invoke_cli("fit", "biasedmf", "--warm-start", tmp_path, check=False, env=ml100k_env),
                          "not a run directory")
    _events(run, [(1, 999999, 4.0)])
    assert_one_line_error(invoke_cli("fit", "biasedmf", "--warm-start", run, "--out", tmp_path / "w", check=False,
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


def _rrn_module(m):
    from recozoo.models.rrn.task import RRNModule
    return RRNModule(m)


#: (first fit's settings, the warm fit's settings: a step that moves nothing, the module to compare)
_TORCH_WARM = {
    # RRN: the run from random stationary factors, the warm and cold fits from ALS's, so the warm fit
    # must end at the run's weights in spite of its own ALS start, and the cold fit cannot
    "rrn": ({"epochs": 2, "patience": 0, "hidden": 8, "embed": 8, "dynamic": 4, "stationary": 4,
             "stationary_init": "random"},
            {"lr": 1e-12, "lr_stationary": 0.0, "epochs": 1, "stationary_init": "als"}, _rrn_module),
    "mult-vae": ({"layers": "16,8", "epochs": 3, "batch_size": 32, "total_anneal_steps": 10, "lr": 0.01},
                 {"lr": 1e-12, "epochs": 1}, lambda m: m.net_),
    "mult-dae": ({"layers": "16", "epochs": 3, "batch_size": 32, "lr": 0.01},
                 {"lr": 1e-12, "epochs": 1}, lambda m: m.net_),
}


@pytest.mark.parametrize("name", sorted(_TORCH_WARM))
def test_rrn_and_mult_warm_start_resume_from_the_runs_weights_and_see_the_events(tmp_path, name):
    """RRN, Mult-VAE and Mult-DAE through the one engine's ``start_from``: a warm fit whose step moves
    nothing ends at the run's weights (a cold fit does not); the new user's events are in its TRAIN
    (RRN, a rating model, skips the implicit event; the Mult models count it as one interaction)."""
    from recozoo.registry import get_model
    from recozoo.runs import RunConfig, fit_run, load_ids, load_run
    from recozoo.testing import tiny_split
    split = tiny_split(4)
    base, still, module = _TORCH_WARM[name]
    a, b, c = (x.item() for x in split.item_ids.raw[[3, 9, 12]])
    fit_run(RunConfig(model=name, dataset="tiny", settings=base), tmp_path / "run", split=split)
    _events(tmp_path / "run", [(90001, a, 5.0), (90001, b, 4.0), (90001, c, None)])
    s = fit_run(RunConfig(model=name, dataset="tiny", settings={**base, **still}), tmp_path / "warm",
                split=split, warm_start=tmp_path / "run")
    assert s["warm_start"]["new_users"] == 1
    _, old = load_run(tmp_path / "run")
    _, new = load_run(tmp_path / "warm")
    old_sd, new_sd = module(old).state_dict(), module(new).state_dict()
    assert old_sd.keys() == new_sd.keys()
    for key, t in new_sd.items():
        o = old_sd[key]
        assert t.shape[0] in (o.shape[0], o.shape[0] + 1), key          # (RRN: one more user row)
        np.testing.assert_allclose(t[:o.shape[0]].numpy(), o.numpy(), atol=1e-6, err_msg=key)
    cold = get_model(name)(settings={**base, **still}, seed=0).fit(split.train)
    assert max(float((t - module(cold).state_dict()[k][:t.shape[0]]).abs().max())
               for k, t in old_sd.items() if t.shape == module(cold).state_dict()[k].shape) > 0.01
    users, items = load_ids(tmp_path / "warm")
    h = new.history([users.index(90001)])
    want = [a, b] if name == "rrn" else [a, b, c]
    assert sorted(items.raw[h.indices].tolist()) == sorted(want)
    if name == "mult-vae":                     # beta's schedule went on from the run's update count
        rows = int((np.diff(new.seen_items().indptr) > 0).sum())
        assert old.updates_ > 0 and new.updates_ == old.updates_ + -(-rows // 32)


def test_models_that_cannot_warm_start_say_so_in_one_line(tmp_path):
    from recozoo.errors import RecozooError
    from recozoo.registry import get_model, list_models
    torch_models = {e.name: e.cls for e in list_models() if e.cls.uses_device}
    assert {"rrn", "mult-vae", "mult-dae", "deeprec", "autorec-u", "glocal-k"} <= set(torch_models)
    assert [n for n, c in torch_models.items() if not c.warm_starts] == ["glocal-k"]   # every other one can
    m = get_model("glocal-k")()
    with pytest.raises(RecozooError, match="glocal-k cannot warm-start") as e:
        m.warm_start_from(m)
    assert "\n" not in str(e.value)
