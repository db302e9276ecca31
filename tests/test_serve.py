"""Online use: a real server (uvicorn on loopback) against real fitted runs on ML-100K.

In-process servers (a thread) for the endpoints, hostile input, concurrency and
hot swap; ``recozoo serve`` subprocesses for SIGTERM and ``kill -9``.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import numpy as np
import pytest

from cli_helpers import RECOZOO, assert_one_line_error, invoke_cli, invoke_json


@pytest.fixture(scope="module")
def runs(ml100k_split, tmp_path_factory):
    """Two real run directories on ML-100K u1 (fitted in-process: the CLI's fit has its own tests). DeepRec is
    pinned to user mode: its "auto" rule picks item mode on ML-100K, and these tests need the fold-in of user mode."""
    from recozoo.runs import RunConfig, fit_run
    d = tmp_path_factory.mktemp("serve")
    fit_run(RunConfig(model="bias", dataset="ml-100k", settings={}), d / "bias", split=ml100k_split)
    fit_run(RunConfig(model="als", dataset="ml-100k", settings={"iterations": 2, "rank": 8}), d / "als",
            split=ml100k_split)
    fit_run(RunConfig(model="deeprec", dataset="ml-100k", settings={"mode": "user", "layers": "8", "epochs": 1,
                                                                    "dropout": 0.0, "batch_size": 256}),
            d / "deeprec", split=ml100k_split)
    return d


@pytest.fixture()
def als_copy(runs, tmp_path):
    """A private copy of the ALS run (tests that store events must not share a database)."""
    dst = tmp_path / "als"
    shutil.copytree(runs / "als", dst)
    return dst


def _req(url, method="GET", body=None, headers=None, timeout=30):
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw and r.headers.get_content_type() == "application/json"
                              else raw)
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, (json.loads(raw) if raw else None)


def _raw(url, payload: bytes, timeout=10) -> bytes:
    """Send raw bytes on a fresh connection, return everything the server answers."""
    u = urlparse(url)
    with socket.create_connection((u.hostname, u.port), timeout=timeout) as s:
        s.sendall(payload)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
    return out


def _assert_json_error(status, body, code):
    assert status == code, (status, body)
    assert isinstance(body, dict) and set(body) == {"error"} and "\n" not in body["error"], body


@pytest.fixture(scope="module")
def server(runs):
    """One server for every test that only reads (endpoints, hostile input, methods): starting one per
    test cost ~1 s each, 30 times."""
    from recozoo.serve import serve_in_thread
    s = serve_in_thread(runs / "bias", events=str(runs / "bias-events.sqlite3"))
    yield s
    s.stop()


def test_endpoints(server, runs):
    base = server.url
    st, h = _req(f"{base}/health")
    assert st == 200 and h == {"status": "ok", "model": "bias", "dataset": "ml-100k", "users": 943,
                               "items": 1682}
    st, r = _req(f"{base}/recommend?user=1&k=5")
    assert st == 200 and r["user"] == "1" and len(r["items"]) == 5
    scores = [x["score"] for x in r["items"]]
    assert scores == sorted(scores, reverse=True)
    rec = server.state.rec
    u = rec.user_index(1)
    seen = set(rec.item_ids.raw[rec.model.seen_items([u]).indices].tolist())
    assert not seen & {x["item"] for x in r["items"]}
    items, sc = rec.model.recommend(u, k=5)          # the library's own answer
    assert [x["item"] for x in r["items"]] == rec.item_ids.raw[items].tolist()
    assert np.allclose(scores, sc)
    st, p = _req(f"{base}/predict?user=1&item=50")
    assert st == 200 and p["user"] == "1" and 1.0 < p["rating"] < 5.5
    st, n = _req(f"{base}/recommend", "POST", {"ratings": {"50": 5, "1": 1}, "k": 3})
    assert st == 200 and len(n["items"]) == 3 and not {50, 1} & {x["item"] for x in n["items"]}
    st, b = _req(f"{base}/recommend/batch", "POST",
                 {"requests": [{"user": 1}, {"user": 123456}, {"ratings": {"50": 5}}, {"user": "1", "k": 2}],
                  "k": 5})
    assert st == 200 and len(b["results"]) == 4
    assert b["results"][0]["items"] == r["items"] and b["results"][3]["items"] == r["items"][:2]
    assert b["results"][1]["status"] == 404 and "unknown user" in b["results"][1]["error"]
    assert len(b["results"][2]["items"]) == 5
    st, m = _req(f"{base}/model")
    assert st == 200 and m["model"] == "bias" and m["users"] == 943 and m["folds_in"] is True
    assert m["settings"]["reg_user"] == 10.0 and m["training_ratings"] > 70_000
    st, o = _req(f"{base}/openapi.json")
    assert st == 200 and o["openapi"].startswith("3.") and "/recommend/batch" in o["paths"]
    st, d = _req(f"{base}/docs")
    assert st == 200 and b"/interactions" in d
    st, met = _req(f"{base}/metrics")
    text = met.decode()
    assert st == 200 and 'recozoo_requests_total{endpoint="/recommend",method="GET",status="200"' in text
    assert "recozoo_request_seconds_bucket" in text and "recozoo_batch_size_count" in text


@pytest.mark.parametrize("url_tail,code,needle", [
    ("/recommend?user=99999999999999999999999", 404, "unknown user"),
    ("/recommend?user=abc", 404, "unknown user"),
    ("/recommend?user=" + "9" * 5000, 404, "unknown user"),
    ("/recommend?user=424242", 404, "unknown user"),
    ("/recommend", 400, "missing"),
    ("/recommend?user=1&k=0", 400, "k must"),
    ("/recommend?user=1&k=1e3", 400, "k must"),
    ("/recommend?user=1&k=99999999999999999999", 400, "k must"),
    ("/predict?user=1", 400, "required"),
    ("/predict?user=1&item=999999", 404, "unknown item"),
    ("/nope", 404, "no such endpoint"),
    ("/recommend?user=%FF%FE", 404, "unknown user"),
])
def test_bad_queries_get_one_line_json_4xx(server, url_tail, code, needle):
    st, body = _req(server.url + url_tail)
    _assert_json_error(st, body, code)
    assert needle in body["error"].lower()


@pytest.mark.parametrize("body,code,needle", [
    (b"[" * 100_000, 400, "nested"),
    (b'{"ratings": {"50": ' + b"9" * 400 + b"}}", 400, "digits"),
    (b'{"ratings": {"50": 1e400}}', 400, "finite"),
    (b'{"ratings": {"50": NaN}}', 400, "not a number"),
    (b'{"ratings": {"50": "x"}}', 400, "number"),
    (b'{"ratings": {"50": true}}', 400, "number"),
    (b'{"ratings": {}}', 400, "non-empty"),
    (b'{"ratings": {"999999": 4}}', 404, "unknown item"),
    (b'{"ratings": {"50": 4}, "k": "ten"}', 400, "k must"),
    (b"\xff\xfe\x00{", 400, "utf-8"),
    (b"{not json", 400, "not valid json"),
    (b"", 400, "empty"),
    (b"[1, 2]", 400, "json object"),
    (json.dumps({"ratings": {"50": 4}, "pad": "x" * (5 << 20)}).encode(), 413, "larger"),
])
def test_bad_bodies_get_one_line_json_4xx(server, body, code, needle):
    st, got = _req(f"{server.url}/recommend", "POST", body, {"Content-Type": "application/json"})
    _assert_json_error(st, got, code)
    assert needle in got["error"].lower()


def test_wrong_methods_are_405_with_json(server):
    for method, path in (("PUT", "/recommend"), ("DELETE", "/recommend"), ("PATCH", "/health"),
                         ("GET", "/interactions"), ("POST", "/health"), ("DELETE", "/model")):
        st, body = _req(server.url + path, method)
        _assert_json_error(st, body, 405)
    st, body = _req(server.url + "/interactions", "HEAD")
    assert st == 405
    st, _ = _req(server.url + "/health", "HEAD")
    assert st == 200                                   # HEAD of a GET resource is allowed


def test_malformed_http_slowloris_and_huge_headers(runs):
    from recozoo.serve import serve_in_thread
    s = serve_in_thread(runs / "bias", events=str(runs / "bias-events.sqlite3"), read_timeout=0.5)
    try:
        out = _raw(s.url, b"GARBAGE\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 400") and out.endswith(b'{"error": "malformed HTTP request"}')
        t0 = time.monotonic()
        out = _raw(s.url, b"GET /health HTTP/1.1\r\nHost: x\r\n")          # never finishes its headers
        assert out.startswith(b"HTTP/1.1 408") and b'"error"' in out and time.monotonic() - t0 < 5
        out = _raw(s.url, b"GET /health HTTP/1.1\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 431") and b'"error"' in out
        # a body announced but not sent in time
        out = _raw(s.url, b"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{")
        assert out.startswith(b"HTTP/1.1 408") and b"within" in out
        # keep-alive: several requests on one connection (HTTP/1.1)
        u = urlparse(s.url)
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
        for _ in range(3):
            c.request("GET", "/recommend?user=2&k=2")
            r = c.getresponse()
            assert r.status == 200 and len(json.loads(r.read())["items"]) == 2
        c.close()
    finally:
        s.stop()


def _fetch_all(base, paths, connections):
    """GET/POST every (method, path, body) on ``connections`` keep-alive clients in parallel."""
    u = urlparse(base)
    chunks = [paths[i::connections] for i in range(connections)]

    def worker(chunk):
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        out = {}
        for method, path, body in chunk:
            c.request(method, path, body=body, headers={"Content-Type": "application/json"})
            r = c.getresponse()
            out[(method, path, body)] = (r.status, r.read())
        c.close()
        return out
    res = {}
    with ThreadPoolExecutor(connections) as ex:
        for part in ex.map(worker, chunks):
            res.update(part)
    return res


def test_32_concurrent_clients_get_what_a_sequential_client_gets(runs):
    from recozoo.serve import serve_in_thread
    s = serve_in_thread(runs / "als", events=str(runs / "als-events-conc.sqlite3"), batch_wait_ms=5)
    try:
        rng = np.random.default_rng(0)
        users = rng.choice(np.arange(1, 944), 150, replace=False)
        paths = [("GET", f"/recommend?user={u}&k={1 + u % 20}", None) for u in users]
        for j in range(40):
            items = rng.choice(np.arange(1, 1683), 1 + j % 15, replace=False)
            body = json.dumps({"ratings": {str(i): float(rng.integers(1, 6)) for i in items},
                               "k": 1 + j % 12}).encode()
            paths.append(("POST", "/recommend", body))
        sequential = _fetch_all(s.url, paths, 1)
        batches_before = s.state.metrics.batches.n
        concurrent = _fetch_all(s.url, paths, 32)
        assert all(v[0] == 200 for v in sequential.values())
        assert concurrent == sequential                    # byte for byte
        # and they really were batched: fewer batches than requests
        assert s.state.metrics.batches.n - batches_before < len(paths)
    finally:
        s.stop()


def test_a_torch_models_batched_answers_equal_its_single_answers(runs):
    """The batch-invariant path (one call per batch, padded to 8 rows) for known users and fold-ins."""
    from recozoo.serve.recommender import Query, Recommender
    rec = Recommender(runs / "deeprec")
    assert rec.model.batch_invariant and rec.folds_in
    rng = np.random.default_rng(1)
    queries = [Query(int(u), 10) for u in rng.choice(900, 30, replace=False)]
    for j in range(12):
        items = rng.choice(1682, 1 + j, replace=False)
        queries.append(Query(-1, 7, fold=(items, rng.integers(1, 6, items.size).astype(np.float32)), exclude=items))
    alone = [rec.answer([q])[0] for q in queries]
    for _ in range(3):
        order = rng.permutation(len(queries))[:rng.integers(9, len(queries))]
        for j, (it, sc) in zip(order, rec.answer([queries[j] for j in order])):
            assert np.array_equal(it, alone[j][0]) and np.array_equal(sc, alone[j][1])


@pytest.fixture(scope="module")
def mult_runs(ml100k_split, tmp_path_factory):
    """Small Mult-VAE and Mult-DAE runs on ML-100K u1 (every rating one interaction)."""
    from recozoo.runs import RunConfig, fit_run
    d = tmp_path_factory.mktemp("serve-mult")
    for name, layers in (("mult-vae", "64,16"), ("mult-dae", "32")):
        fit_run(RunConfig(model=name, dataset="ml-100k", settings={"layers": layers, "epochs": 2, "batch_size": 128}),
                d / name, split=ml100k_split)
    return d


@pytest.mark.parametrize("name", ["mult-vae", "mult-dae"])
def test_mult_models_score_a_batch_bit_identically_to_one_user_at_a_time(mult_runs, name):
    """Declared batch-invariant: every row of a padded batch call (known users and fold-ins, in any
    order and company) has the bits of the same row scored alone."""
    from recozoo.serve.recommender import Query, Recommender
    rec = Recommender(mult_runs / name)
    assert rec.model.batch_invariant and rec.folds_in
    rng = np.random.default_rng(2)
    queries = [Query(int(u), 10) for u in rng.choice(943, 40, replace=False)]
    for j in range(12):
        items = rng.choice(1682, 1 + 3 * j, replace=False)
        queries.append(Query(-1, 7, fold=(items, np.ones(items.size, np.float32)), exclude=items))
    alone = [rec.scores([q])[0] for q in queries]
    for _ in range(3):
        order = rng.permutation(len(queries))[:rng.integers(9, len(queries))]
        for j, row in zip(order, rec.scores([queries[j] for j in order])):
            assert np.array_equal(row, alone[j])


def test_32_concurrent_clients_of_a_mult_vae_server_get_the_sequential_answers(mult_runs):
    """Through the real server: Mult-VAE requests micro-batched together answer byte for byte what a
    sequential client gets (each alone in its batch)."""
    from recozoo.serve import serve_in_thread
    s = serve_in_thread(mult_runs / "mult-vae", events=str(mult_runs / "vae-events.sqlite3"), batch_wait_ms=5)
    try:
        rng = np.random.default_rng(3)
        paths = [("GET", f"/recommend?user={u}&k={1 + u % 20}", None)
                 for u in rng.choice(np.arange(1, 944), 150, replace=False)]
        for j in range(40):
            items = rng.choice(np.arange(1, 1683), 1 + j % 15, replace=False)
            paths.append(("POST", "/recommend", json.dumps({"ratings": {str(i): 1 for i in items},
                                                            "k": 1 + j % 12}).encode()))
        sequential = _fetch_all(s.url, paths, 1)
        batches_before = s.state.metrics.batches.n
        concurrent = _fetch_all(s.url, paths, 32)
        assert all(v[0] == 200 for v in sequential.values())
        assert concurrent == sequential                    # byte for byte
        assert s.state.metrics.batches.n - batches_before < len(paths) / 2      # really batched
    finally:
        s.stop()


def test_interactions_are_reflected_and_new_users_become_recommendable(als_copy):
    from recozoo.serve import serve_in_thread
    s = serve_in_thread(als_copy)
    try:
        base = s.url
        _, before = _req(f"{base}/recommend?user=7&k=10")
        top = before["items"][0]["item"]
        st, r = _req(f"{base}/interactions", "POST", {"user": 7, "item": top, "rating": 1})
        assert st == 200 and r["stored"] == 1 and r["reflected"] is True
        _, after = _req(f"{base}/recommend?user=7&k=10")
        assert top not in {x["item"] for x in after["items"]}      # rated: excluded from now on
        assert after["items"] != before["items"][1:]                # and the user's scores moved
        # a brand-new user id becomes recommendable through its events
        assert _req(f"{base}/recommend?user=5000&k=3")[0] == 404
        st, r = _req(f"{base}/interactions", "POST", {"events": [
            {"user": 5000, "item": 50, "rating": 5}, {"user": 5000, "item": 181, "rating": 4.5},
            {"user": 5000, "item": 1}]})
        assert st == 200 and r["stored"] == 3
        st, r = _req(f"{base}/recommend?user=5000&k=3")
        assert st == 200 and len(r["items"]) == 3 and not {50, 181, 1} & {x["item"] for x in r["items"]}
        # the same answer as a new user with those ratings (the implicit event only excludes)
        st, n = _req(f"{base}/recommend", "POST", {"ratings": {"50": 5, "181": 4.5}, "k": 4})
        assert [x for x in n["items"] if x["item"] != 1][:3] == r["items"]
        st, p = _req(f"{base}/predict?user=5000&item=172")
        assert st == 200 and 1 < p["rating"] < 6
        for bad, code in (({"user": 1, "item": 999999}, 404), ({"user": 1}, 400),
                          ({"user": 1, "item": 50, "rating": "x"}, 400), ({"user": 1, "item": 50, "rating": 1e999}, 400),
                          ({"user": "x" * 300, "item": 50}, 404), ({"events": []}, 400)):
            st, body = _req(f"{base}/interactions", "POST", bad)
            _assert_json_error(st, body, code)
    finally:
        s.stop()


def _start(args, env=None):
    p = subprocess.Popen([RECOZOO, "serve", *map(str, args), "--port", "0"], stderr=subprocess.PIPE,
                         stdout=subprocess.DEVNULL, text=True, env={**os.environ, **(env or {})})
    line = p.stderr.readline()
    assert "serving" in line, line + p.stderr.read()
    url = line.strip().rsplit(" ", 1)[-1]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if _req(f"{url}/health", timeout=2)[0] == 200:
                return p, url
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.1)
    p.kill()
    raise AssertionError("server did not come up")


def test_kill_9_right_after_a_200_loses_no_event_and_two_workers_share_the_events(als_copy):
    p, url = _start([als_copy])
    try:
        st, r = _req(f"{url}/interactions", "POST", {"user": 4242, "item": 50, "rating": 5})
        assert st == 200
        os.kill(p.pid, signal.SIGKILL)               # no shutdown code runs
        p.wait(10)
    finally:
        if p.poll() is None:
            p.kill()
    from recozoo.serve.store import read_events
    assert read_events(als_copy / "interactions.sqlite3") == [(r["ids"][0], 4242, 50, 5.0)]
    # and a new server sees it: two workers on one socket (one start for both checks; each costs seconds)
    p, url = _start([als_copy, "--workers", "2"])
    try:
        st, rec = _req(f"{url}/recommend?user=4242&k=2")
        assert st == 200 and len(rec["items"]) == 2
        st, r = _req(f"{url}/interactions", "POST", {"user": 31337, "item": 50, "rating": 5})
        assert st == 200
        for _ in range(6):      # whichever worker answers, it sees the event the other may have stored
            st, rec = _req(f"{url}/recommend?user=31337&k=2")
            assert st == 200 and len(rec["items"]) == 2
        st, body = _req(f"{url}/admin/swap", "POST", {})
        _assert_json_error(st, body, 403)
    finally:
        p.terminate()
        p.wait(60)


def test_hot_swap_keeps_in_flight_requests(runs, tmp_path):
    from recozoo.serve import serve_in_thread
    s = serve_in_thread(runs / "bias", events=str(tmp_path / "ev.sqlite3"), admin_token="t0ken")
    try:
        base = s.url
        assert _req(f"{base}/admin/swap", "POST", {"run_dir": str(runs / "als")})[0] == 401
        stop = threading.Event()
        statuses = []

        def hammer():
            u = urlparse(base)
            c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
            while not stop.is_set():
                c.request("GET", "/recommend?user=9&k=3")
                r = c.getresponse()
                statuses.append((r.status, json.loads(r.read())))
            c.close()
        threads = [threading.Thread(target=hammer) for _ in range(8)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        st, r = _req(f"{base}/admin/swap", "POST", {"run_dir": str(runs / "als")},
                     {"Authorization": "Bearer t0ken"})
        assert st == 200 and r["model"] == "als"
        time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join(30)
        assert statuses and all(code == 200 for code, _ in statuses)
        assert _req(f"{base}/health")[1]["model"] == "als"
        _, now = _req(f"{base}/recommend?user=9&k=3")
        assert now == statuses[-1][1]                 # answers come from the new run
        st, body = _req(f"{base}/admin/swap", "POST", {"run_dir": str(tmp_path / "nothing")},
                        {"Authorization": "Bearer t0ken"})
        _assert_json_error(st, body, 400)
        assert _req(f"{base}/health")[1]["model"] == "als"          # a failed swap changes nothing
    finally:
        s.stop()


def test_recommend_cli_known_and_new_user(runs, tmp_path):
    """`recozoo recommend`, and `serve` refusing bad input before it starts (in process: `invoke_cli`)."""
    f = tmp_path / "new.json"
    f.write_text(json.dumps({"50": 5, "181": 4}))
    n = invoke_json("recommend", runs / "als", "--ratings", f, "--k", "4")
    assert len(n["items"]) == 4
    d = invoke_json("recommend", runs / "deeprec", "--ratings", f, "--k", "4")      # user mode folds in
    assert len(d["items"]) == 4 and not {50, 181} & {r["item"] for r in d["items"]}
    from recozoo.serve.store import EVENTS_FILE, InteractionStore
    store = InteractionStore(runs / "bias" / EVENTS_FILE)      # as `recozoo serve` logs them (the servers of
    store.add([(90001, 50, 5.0), (90001, 181, 4.0)])           # this module keep their events elsewhere)
    store.close()
    e = invoke_json("recommend", runs / "bias", "--user", "90001", "--k", "4")       # known through its events
    assert len(e["items"]) == 4 and not {50, 181} & {r["item"] for r in e["items"]}
    assert_one_line_error(invoke_cli("recommend", runs / "bias", "--user", "424242", check=False), "unknown user")
    f.write_text("{not json")
    assert_one_line_error(invoke_cli("recommend", runs / "bias", "--ratings", f, check=False), "not valid json")
    assert_one_line_error(invoke_cli("serve", runs / "bias", "--workers", "0", check=False), "--workers")
    assert_one_line_error(invoke_cli("serve", tmp_path, check=False), "not a run directory")


def test_sighup_reloads_a_repointed_symlink_and_sigterm_lets_in_flight_requests_finish(runs, tmp_path):
    """One server process for both signals (each `recozoo serve` start costs seconds of imports)."""
    link = tmp_path / "current"
    link.symlink_to(runs / "bias")
    p, url = _start([link, "--events", tmp_path / "ev.sqlite3", "--batch-wait-ms", "900"])
    try:
        assert _req(f"{url}/health")[1]["model"] == "bias"
        tmp = tmp_path / "next"
        tmp.symlink_to(runs / "als")
        os.replace(tmp, link)                              # atomic repoint, then SIGHUP
        p.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 60
        while _req(f"{url}/health")[1]["model"] != "als":
            assert time.monotonic() < deadline, "SIGHUP did not reload"
            time.sleep(0.2)
        assert _req(f"{url}/recommend?user=1&k=2")[0] == 200
        # two queries at once: the batcher now expects company, so a lone request waits for it (900 ms)
        assert _req(f"{url}/recommend/batch", "POST", {"requests": [{"user": 1}, {"user": 2}]})[0] == 200
        out = {}
        t = threading.Thread(target=lambda: out.setdefault("r", _req(f"{url}/recommend?user=3&k=2")))
        t.start()
        time.sleep(0.3)                                  # the request waits in the batcher (900 ms)
        p.send_signal(signal.SIGTERM)
        t.join(20)
        assert out["r"][0] == 200 and len(out["r"][1]["items"]) == 2
        # uvicorn ends the process by re-raising the signal after the graceful shutdown (exit -15)
        assert p.wait(20) in (0, -signal.SIGTERM)
        assert "Traceback" not in p.stderr.read()
    finally:
        if p.poll() is None:
            p.terminate()
            p.wait(30)
