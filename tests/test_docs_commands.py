"""The documentation's commands work as written, and its claims name real tests (issue 14, item 12).

Every ``recozoo`` command in a fenced shell block of the README or of any docs page must parse
(the README once showed ``--data-param n_users=… n_items=… n_ratings=…``, which the CLI
rejected). The quick-start commands of the README and docs/getting-started.md also run, in a
temporary data home and working folder: with tiny sizes or one epoch where the command as
written would train for minutes (two DeepRec fits on the Netflix-shaped sets are only parsed: the
machine is small; the commands run the CLI's entry point in process, ``cli_helpers.invoke_cli``,
and one more runs the installed console script), with real files standing in for the placeholders
(``/data/nf_prize_dataset.tar.gz``, ``N3M_TRAIN``) and ``data fetch`` replaced by a
``data prepare`` of the same files (tests never touch the network). A new documented command
with no entry in :data:`RUN_AS` fails the test: someone must decide how it is checked.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
from pathlib import Path

import pytest

from cli_helpers import invoke_cli, run_cli

ROOT = Path(__file__).resolve().parents[1]
QUICK_START_PAGES = ("README.md", "docs/getting-started.md")
ONE_EPOCH = ["--set", "epochs=1"]
TINY_SYNTHETIC = ["--data-param", "n_users=300", "n_items=80", "n_ratings=6000"]   # the docs' form

#: each quick-start command -> the arguments the test adds when it runs it (None: parsed only)
RUN_AS: dict[str, list[str] | None] = {
    "recozoo fit deeprec --dataset synthetic": [*TINY_SYNTHETIC, *ONE_EPOCH],
    "recozoo data fetch ml-100k": None,           # network: ml100k_env prepared the same files
    "recozoo fit bias --dataset ml-100k": [],
    "recozoo fit deeprec --dataset ml-100k --preset ml-100k --json": ONE_EPOCH,
    "recozoo evaluate runs/<run-dir> --split test": [],
    "recozoo data prepare netflix-3m --source /data/nf_prize_dataset.tar.gz": [],
    "recozoo data info netflix-3m --json": [],
    "recozoo fit deeprec --dataset netflix-3m --preset paper": None,   # parsed; deeprec fits run above
    "recozoo data prepare n3m --train N3M_TRAIN --valid N3M_VALID --test N3M_TEST": [],
    "recozoo fit deeprec --dataset n3m": None,
}


def _commands(path: Path) -> list[str]:
    """``recozoo ...`` commands of the page's fenced shell blocks, comments and ``&&`` chains split."""
    out = []
    for block in re.findall(r"```(?:bash|sh|shell|console)?\n(.*?)```", path.read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            for part in re.split(r"&&|;", re.split(r"\s#\s", line)[0]):
                part = part.strip()
                if part.startswith("recozoo "):
                    out.append(" ".join(part.split()))
    return out


def _parse(argv: list[str]) -> None:
    """Parse ``recozoo ARGV`` as the console script does, down to the command, without running it."""
    import typer.main

    from recozoo.cli.main import app, expand_assignments
    cmd = typer.main.get_command(app)
    ctx = cmd.make_context("recozoo", expand_assignments(list(argv)))
    while getattr(cmd, "commands", None):         # a group: resolve its sub-command, parse on
        # (typer 0.29's vendored click keeps the sub-command's name in _protected_args)
        name, cmd, rest = cmd.resolve_command(ctx, [*ctx._protected_args, *ctx.args])
        ctx = cmd.make_context(name, rest, parent=ctx)


def test_every_documented_command_parses():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    commands = {(p.name, c) for p in pages for c in _commands(p)}
    assert len(commands) >= 20
    for page, c in sorted(commands):
        argv = shlex.split(c)[1:]
        try:
            _parse(argv)
        except Exception as e:           # click's UsageError and its kin
            pytest.fail(f"{page}: `{c}` does not parse: {e}")


def test_data_param_takes_several_pairs_after_one_option(tmp_path):
    """The docs' ``--data-param n_users=… n_items=… n_ratings=…`` (was "unexpected extra argument"),
    through the CLI; the repeated form gives the same split, and a positional after the pairs stays one."""
    env = {"RECOZOO_DATA": str(tmp_path / "home")}
    one = json.loads(invoke_cli("data", "info", "synthetic", *TINY_SYNTHETIC, "--json", env=env).stdout)
    assert one["train"]["users"] <= 300 and one["train"]["items"] <= 80
    assert sum(part["ratings"] for part in one.values()) <= 6000
    repeated = json.loads(invoke_cli("data", "info", "synthetic", "--data-param", "n_users=300", "--data-param",
                                     "n_items=80", "--data-param", "n_ratings=6000", "--json", env=env).stdout)
    assert repeated == one
    after = json.loads(invoke_cli("data", "info", "--data-param", "n_users=300", "n_items=80", "n_ratings=6000",
                                  "synthetic", "--json", env=env).stdout)
    assert after == one


def _netflix_archive(path: Path) -> Path:
    """A tiny ``nf_prize_dataset.tar.gz`` whose dates cover netflix-3m's train and test months."""
    from recozoo.data.synthetic import generate, write_netflix_layout
    write_netflix_layout(generate(400, 60, 12000, seed=0, start="2005-08-01", end="2005-12-31"), path, "tar.gz")
    return path


def _presplit(base: Path) -> dict[str, Path]:
    """N3M_TRAIN / N3M_VALID / N3M_TEST folders in the reference converter's TSV layout
    (``user<TAB>item<TAB>rating``), of a small generated table split 8:1:1."""
    import numpy as np

    from recozoo.data.synthetic import generate
    t = generate(300, 60, 6000, seed=1)
    rows = np.column_stack([t.user_ids.raw[t.users], t.item_ids.raw[t.items], t.ratings])
    part = np.arange(len(rows)) % 10
    out = {}
    for name, keep in (("N3M_TRAIN", part < 8), ("N3M_VALID", part == 8), ("N3M_TEST", part == 9)):
        (base / name).mkdir()
        np.savetxt(base / name / "part-00000.tsv", rows[keep], fmt="%d\t%d\t%.1f")
        out[name] = base / name
    return out


def test_quick_start_commands_run(ml100k_env, tmp_path):
    """Each quick-start command, in order, in a fresh working folder (``runs/`` lands there)."""
    pages = {p: _commands(ROOT / p) for p in QUICK_START_PAGES}
    documented = list(dict.fromkeys(c for cs in pages.values() for c in cs))
    assert sorted(set(documented) - set(RUN_AS)) == [], "a new quick-start command: add it to RUN_AS"
    env = {**ml100k_env, "OMP_NUM_THREADS": "1"}       # ml-100k prepared from the shared files
    files = {"/data/nf_prize_dataset.tar.gz": _netflix_archive(tmp_path / "nf_prize_dataset.tar.gz"),
             **_presplit(tmp_path)}
    work = tmp_path / "work"
    work.mkdir()
    for command in documented:
        extra = RUN_AS[command]
        if extra is None:
            continue
        argv = [files.get(w, w) for w in shlex.split(command)[1:]]
        if "runs/<run-dir>" in argv:
            argv[argv.index("runs/<run-dir>")] = next(p for p in sorted((work / "runs").iterdir())
                                                      if p.name.startswith("bias-ml-100k"))
        p = invoke_cli(*argv, *extra, *(["-q"] if argv[0] == "fit" else []), env=env, cwd=work)
        if "--json" in argv:
            json.loads(p.stdout)                # one JSON document on stdout, nothing else
    assert len(list((work / "runs").iterdir())) == 3     # the three fits run
    # the README's convention, for the one --json command its quick start does not show; through the
    # installed console script in a new process (the commands above ran its entry point in process)
    bias_run = next(p for p in (work / "runs").iterdir() if p.name.startswith("bias-ml-100k"))
    assert json.loads(run_cli("evaluate", bias_run, "--json", env=env, cwd=work).stdout)["metrics"]["rmse"] > 0


def _test_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and n.name.startswith("test")}


def test_reliability_page_names_real_tests():
    page = (ROOT / "docs" / "reliability.md").read_text()
    refs = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", page)
    assert len(refs) >= 10, "the page should name its tests as `tests/FILE.py::test_name`"
    missing = [f"{f}::{t}" for f, t in refs if not (ROOT / f).is_file() or t not in _test_names(ROOT / f)]
    assert missing == [], f"docs/reliability.md names tests that do not exist: {missing}"
    tables = re.findall(r"^\| guarantee \| test \|\n\|[-|]+\|\n((?:\|.*\n)+)", page, re.M)
    rows = [ln for t in tables for ln in t.splitlines()]
    assert len(rows) >= 20 and all("`tests/" in ln for ln in rows), "every guarantee row names its test"
