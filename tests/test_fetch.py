"""fetch(): download, verify, extract atomically — against a local HTTP server, never the network."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
import zipfile

import pytest

from recozoo.data.fetch import NETFLIX_HOWTO, SOURCES, Source, fetch, is_fetched
from recozoo.data.movielens import load_movielens
from recozoo.errors import DataError, DatasetNotFound


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("ml-toy/ratings.dat", "1::10::5::978300760\n2::10::3::978300761\n2::11::4::978300762\n")
        z.writestr("ml-toy/README.txt", "toy\n")
    return buf.getvalue()


@pytest.fixture
def server():
    """Serves /good.zip, /truncated.zip (Content-Length larger than the body) and /bad.zip."""
    body = _zip()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            if self.path == "/missing.zip":
                self.send_error(404)
                return
            data = b"not a zip at all" if self.path == "/bad.zip" else body
            self.send_response(200)
            self.send_header("Content-Type", "application/zip")
            self.send_header("Content-Length", str(len(data) + (500 if self.path == "/truncated.zip" else 0)))
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
            self.close_connection = True

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", hashlib.sha256(body).hexdigest()
    httpd.shutdown()
    httpd.server_close()


def _leftovers(home):
    raw = home / "raw"
    return sorted(p.name for p in raw.iterdir()) if raw.exists() else []


def test_fetch_verifies_extracts_and_is_idempotent(server, tmp_path):
    url, sha = server
    seen = []
    src = {"toy": Source(url + "/good.zip", sha256=sha)}
    out = fetch("toy", tmp_path, progress=lambda done, total: seen.append((done, total)), sources=src)
    assert out == tmp_path / "raw" / "toy" and is_fetched("toy", tmp_path)
    assert load_movielens(out).nnz == 3
    assert seen[-1][0] == seen[-1][1] > 0
    assert _leftovers(tmp_path) == ["toy"]  # no temp files or folders left behind
    # already fetched: no download at all (the URL is dead now)
    assert fetch("toy", tmp_path, progress=False, sources={"toy": Source(url + "/missing.zip")}) == out


def test_progress_bar_goes_to_stderr(server, tmp_path, capsys):
    url, sha = server
    fetch("toy", tmp_path, progress=True, sources={"toy": Source(url + "/good.zip", sha256=sha)})
    cap = capsys.readouterr()
    assert cap.out == "" and "toy" in cap.err


@pytest.mark.parametrize("path, kw, match", [
    ("/good.zip", {"sha256": "0" * 64}, "SHA256 mismatch"),
    ("/good.zip", {"md5": "0" * 32}, "MD5 mismatch"),
    ("/truncated.zip", {}, "download truncated"),
    ("/bad.zip", {}, "not a valid zip"),
    ("/missing.zip", {}, "HTTP 404"),
])
def test_failures_are_one_line_and_leave_nothing(server, tmp_path, path, kw, match):
    url, _ = server
    with pytest.raises(DataError, match=match) as e:
        fetch("toy", tmp_path, progress=False, sources={"toy": Source(url + path, **kw)})
    assert "\n" not in str(e.value)
    assert _leftovers(tmp_path) == [] and not is_fetched("toy", tmp_path)


def test_sources_and_netflix_howto():
    assert {"ml-100k", "ml-1m", "ml-10m", "ml-20m", "ml-25m", "ml-latest-small", "ml-latest"} <= set(SOURCES)
    assert all(s.url.startswith("https://files.grouplens.org/") for s in SOURCES.values())
    assert "recozoo data prepare netflix-3m --source" in NETFLIX_HOWTO
    with pytest.raises(DatasetNotFound, match="cannot be downloaded by recozoo"):
        fetch("netflix", "/nonexistent")
    with pytest.raises(DatasetNotFound, match="unknown download"):
        fetch("ml-7", "/nonexistent")
