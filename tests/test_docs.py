"""The documentation site builds with ``mkdocs build --strict``, every page is in its navigation,
and every table of figures in the README and the docs is rendered from a benchmark record.

Why: the docs are the project's front door and its figures are claims; a broken link, an orphan
page, or a figure edited by hand (or a record committed without re-rendering) must fail CI rather
than reach a reader. The convention is ``benchmarks/render_docs.py``'s docstring.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import _record  # noqa: E402
import render_docs  # noqa: E402

sys.path.remove(str(ROOT / "benchmarks"))


def _build(root: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict",
                           "-f", str(root / "mkdocs.yml"), "-d", str(out)],
                          capture_output=True, text=True, timeout=300, env={**__import__("os").environ,
                                                                             "NO_MKDOCS_2_WARNING": "1"})


def _nav_pages(nav) -> list[str]:
    out = []
    for item in nav:
        for v in (item.values() if isinstance(item, dict) else [item]):
            out += _nav_pages(v) if isinstance(v, list) else [v]
    return out


def test_site_builds_strict(tmp_path):
    p = _build(ROOT, tmp_path / "site")
    assert p.returncode == 0, p.stdout + p.stderr
    assert (tmp_path / "site" / "benchmarks" / "index.html").is_file()


def test_a_broken_link_fails_the_strict_build(tmp_path):
    """The strict build is what catches broken links: a copy of the site with one bad link fails."""
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    page = tmp_path / "docs" / "models.md"
    page.write_text(page.read_text() + "\nSee [the missing page](no-such-page.md).\n")
    p = _build(tmp_path, tmp_path / "site")
    assert p.returncode != 0 and "no-such-page.md" in p.stdout + p.stderr, p.stdout + p.stderr


def test_every_page_is_in_the_nav():
    nav = _nav_pages(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])
    pages = sorted(str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md"))
    assert sorted(set(pages) - set(nav)) == [], "pages missing from mkdocs.yml's nav: add each under the section it fits"
    assert sorted(set(nav) - set(pages)) == [], "nav entries without a page"


def test_every_figure_table_is_rendered_from_its_record():
    problems = render_docs.problems()
    assert problems == [], "\n".join(problems)


def test_readme_front_page_is_short_and_links_every_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    for page in (ROOT / "docs").rglob("*.md"):
        if page.name != "index.md":
            assert f"(docs/{page.relative_to(ROOT / 'docs')})" in readme, f"README does not link {page.name}"


def test_a_hand_written_or_stale_table_is_caught(tmp_path):
    """The check finds a figure table outside a region, a region whose text differs from its
    record, and a region naming a record that does not exist; tables without figures pass."""
    rec = tmp_path / "records"
    rec.mkdir()
    (rec / "r.json").write_text(json.dumps({
        "schema": 1, "benchmark": None, "command": "python benchmarks/x.py", "date": "2026-01-01",
        "machine": "a test", "load": "0.1", "commit": None, "dirty": None, "transcribed_at": "abc1234",
        "provenance": "transcribed from README at commit abc1234; measured 2026-01-01 by x on a test",
        "tables": {"main": {"columns": ["model", "RMSE"], "rows": [["a", "0.9000"]]}}}))
    (tmp_path / "docs").mkdir()
    region = "<!-- table: r.json#main -->\n<!-- /table -->\n"
    fresh = render_docs.render_text(region, rec)
    assert "| a | 0.9000 |" in fresh and "Transcribed from the README at commit abc1234" in fresh
    (tmp_path / "README.md").write_text(fresh + "\n| name | why |\n|---|---|\n| numba | `1.5` speed |\n")
    assert render_docs.problems(tmp_path, rec) == []
    (tmp_path / "docs" / "a.md").write_text(fresh.replace("0.9000", "0.8000"))
    (tmp_path / "docs" / "b.md").write_text("| model | RMSE |\n|---|---|\n| a | 0.9000 |\n")
    (tmp_path / "docs" / "c.md").write_text("<!-- table: gone.json#main -->\n<!-- /table -->\n")
    found = render_docs.problems(tmp_path, rec)
    assert len(found) == 3, found
    assert "a.md: table r.json#main differs" in found[0]
    assert "b.md, line 1: a table of figures outside a generated region" in found[1]
    assert "c.md: table gone.json#main: no record" in found[2]


@pytest.mark.parametrize("path", sorted((ROOT / "benchmarks" / "records").glob("*.json")), ids=lambda p: p.name)
def test_every_record_says_how_where_and_when(path):
    r = json.loads(path.read_text())
    assert r["schema"] == 1
    for key in ("command", "date", "machine", "load", "commit", "provenance"):
        assert key in r, key
    tables = render_docs.record_tables(r)
    assert tables and all(t["columns"] and t["rows"] for t in tables.values())
    if r["provenance"] == "measured":
        assert re.fullmatch(r"[0-9a-f]{40}", r["commit"]) and r["command"].startswith(("python ", "OMP"))
        assert len(r["load"]["before"]) == 3 and r["machine"]["cores"] >= 1
    else:
        assert r["provenance"].startswith(f"transcribed from README at commit {r['transcribed_at']}; measured ")
        assert r["command"] or r.get("method"), "a transcribed record names its command or says how it ran"
        assert "regenerate" in r


def test_run_record_has_commit_machine_load_and_command(tmp_path):
    run = _record.Run(ROOT / "benchmarks" / "bench_zoo.py", ["--seeds", "3", "--models", "a b"])
    path = run.write({"x": 1.5}, tmp_path / "sub" / "r.json")
    r = json.loads(path.read_text())
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert r["commit"] == head and isinstance(r["dirty"], bool)
    assert r["command"].endswith("python benchmarks/bench_zoo.py --seeds 3 --models 'a b'")
    assert r["benchmark"] == "bench_zoo" and r["provenance"] == "measured" and r["figures"] == {"x": 1.5}
    assert len(r["load"]["before"]) == 3 and len(r["load"]["after"]) == 3
    assert r["date"].endswith("Z") and r["date"] <= r["finished"]
    assert r["machine"]["cores"] >= 1 and r["machine"]["python"]
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]      # no temp file left behind
    assert run.write({"x": 1}, "") is None
