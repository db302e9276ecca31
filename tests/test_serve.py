"""Online use: real HTTP on loopback against a real fitted run."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request

import pytest

from cli_helpers import RECOZOO, assert_one_line_error, run_cli, run_json


@pytest.fixture(scope="module")
def bias_run(ml100k_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("serve")
    env = {"RECOZOO_DATA": str(d / "home")}
    run_cli("fit", "bias", "--dataset", "ml-100k", "--source", ml100k_dir, "--out", d / "run", "-q", env=env)
    return d / "run"


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _post(url, obj):
    req = urllib.request.Request(url, data=json.dumps(obj).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_http_endpoints(bias_run):
    from recozoo.models.base import load_model
    from recozoo.serve import serve_in_thread
    server, base = serve_in_thread(bias_run)
    try:
        st, h = _get(f"{base}/health")
        assert st == 200 and h["model"] == "bias" and h["users"] == 943
        st, r = _get(f"{base}/recommend?user=1&k=5")
        assert st == 200 and len(r["items"]) == 5
        scores = [x["score"] for x in r["items"]]
        assert scores == sorted(scores, reverse=True)
        # user 1's training items are never recommended back
        model = load_model(bias_run / "model.rcz")
        u = server.recommender.user_ids.index(1)
        seen = set(server.recommender.item_ids.raw[model._seen[u].indices].tolist())
        assert not seen & {x["item"] for x in r["items"]}
        st, p = _get(f"{base}/predict?user=1&item=50")
        assert st == 200 and 1.0 < p["rating"] < 5.5
        # a new user who loves item 50 and hates item 1
        st, n = _post(f"{base}/recommend", {"ratings": {"50": 5, "1": 1}, "k": 3})
        assert st == 200 and len(n["items"]) == 3 and not {50, 1} & {x["item"] for x in n["items"]}
        assert _get(f"{base}/recommend?user=999999")[0] == 404
        assert _post(f"{base}/recommend", {"ratings": {"999999": 4}})[0] == 404
        assert _post(f"{base}/recommend", {"ratings": {"50": "x"}})[0] == 400
        assert _post(f"{base}/recommend", {"ratings": {}})[0] == 400
        assert _get(f"{base}/recommend?user=1&k=0")[0] == 400
        assert _get(f"{base}/nope")[0] == 404
    finally:
        server.shutdown()
        server.server_close()


def test_recommend_cli_known_and_new_user(bias_run, tmp_path):
    r = run_json("recommend", bias_run, "--user", "1", "--k", "4")
    assert len(r["items"]) == 4
    f = tmp_path / "new.json"
    f.write_text(json.dumps({"50": 5, "181": 4}))
    n = run_json("recommend", bias_run, "--ratings", f, "--k", "4")
    assert len(n["items"]) == 4
    assert_one_line_error(run_cli("recommend", bias_run, "--user", "424242", check=False), "unknown user")
    f.write_text("{not json")
    assert_one_line_error(run_cli("recommend", bias_run, "--ratings", f, check=False), "not valid json")


def test_serve_command_over_loopback(bias_run):
    p = subprocess.Popen([RECOZOO, "serve", str(bias_run), "--port", "0"], stderr=subprocess.PIPE,
                         stdout=subprocess.DEVNULL, text=True)
    try:
        line = p.stderr.readline()
        assert "serving" in line, line
        url = line.strip().rsplit(" ", 1)[-1]
        st, r = _get(f"{url}/recommend?user=5&k=2")
        assert st == 200 and len(r["items"]) == 2
    finally:
        p.terminate()
        p.wait(timeout=10)
