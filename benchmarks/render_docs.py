"""Render the documentation's figure tables from the benchmark records in ``benchmarks/records/``.

    python benchmarks/render_docs.py            # rewrite every generated table in README.md and docs/
    python benchmarks/render_docs.py --check    # change nothing; exit 1 naming each stale or unmarked table

The convention (``tests/test_docs.py`` enforces it):

* A figure table in ``README.md`` or ``docs/**/*.md`` is a generated region::

      <!-- table: zoo-ml100k.json#main -->
      ...generated: the table, its notes, and a caption with the record's command, date,
      commit, machine and load...
      <!-- /table -->

  ``zoo-ml100k.json`` is a file in ``benchmarks/records/``, ``main`` one of its tables. A JSON
  object after the table name narrows it: ``{"columns": ["model", "fit s"]}`` keeps those columns
  (in that order), ``{"rows": 5}`` the first five rows.
* A measured record's tables are computed from its ``figures`` by the ``tables(figures)`` function of
  the benchmark that wrote it (``record["benchmark"]``, a module in ``benchmarks/``); a record
  transcribed from an older README carries its ``tables`` verbatim.
* Any other Markdown table (outside fenced code) holds no figure: no cell has a decimal number
  outside backticks. A table of measured values written by hand fails the check.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

BENCHMARKS = Path(__file__).resolve().parent
ROOT = BENCHMARKS.parent
RECORDS = BENCHMARKS / "records"

REGION = re.compile(r"<!-- table: (?P<src>[^#\s]+)#(?P<table>[\w.@-]+)(?: (?P<opts>\{.*?\}))? -->\n"
                    r"(?P<body>.*?)<!-- /table -->", re.S)
INDEX = re.compile(r"<!-- records-index -->\n(?P<body>.*?)<!-- /records-index -->", re.S)
_FENCE = re.compile(r"^\s*(```|~~~)")
_SEPARATOR = re.compile(r"^\|(\s*:?-+:?\s*\|)+\s*$")
_DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+(?![\w.])")
_CODE = re.compile(r"`[^`]*`")


# ------------------------------------------------------------------------------------------ records
def documents(root: Path = ROOT) -> list[Path]:
    """The Markdown files whose tables are checked: the README and every page under docs/."""
    docs = sorted((root / "docs").rglob("*.md")) if (root / "docs").is_dir() else []
    return [root / "README.md", *docs]


def load_record(name: str, records: Path = RECORDS) -> dict[str, Any]:
    path = records / name
    if not path.is_file():
        raise LookupError(f"no record {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return json.loads(path.read_text())


@lru_cache(maxsize=None)
def _benchmark_module(name: str):
    path = BENCHMARKS / f"{name}.py"
    if not path.is_file():
        raise LookupError(f"record names benchmark {name!r}, but benchmarks/{name}.py does not exist")
    if str(BENCHMARKS) not in sys.path:            # the scripts import their siblings (_record, _data)
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def record_tables(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{name: {"columns", "rows", ["align"], ["notes"]}}`` of a record."""
    if record.get("provenance") == "measured":
        return _benchmark_module(record["benchmark"]).tables(record["figures"])
    return record["tables"]


# ---------------------------------------------------------------------------------------- rendering
def narrow(table: dict[str, Any], opts: dict[str, Any]) -> dict[str, Any]:
    cols = opts.get("columns")
    out = dict(table)
    if cols:
        missing = [c for c in cols if c not in table["columns"]]
        if missing:
            raise LookupError(f"no column(s) {missing} (has {table['columns']})")
        idx = [table["columns"].index(c) for c in cols]
        out["columns"] = list(cols)
        out["rows"] = [[r[i] for i in idx] for r in table["rows"]]
        if table.get("align"):
            out["align"] = [table["align"][i] for i in idx]
    if "rows" in opts:
        out["rows"] = out["rows"][: int(opts["rows"])]
    return out


def _cell(v: Any) -> str:
    return "" if v is None else str(v).replace("|", "\\|").replace("\n", " ")


def markdown_table(table: dict[str, Any]) -> str:
    cols = table["columns"]
    align = table.get("align") or [""] * len(cols)
    sep = {"l": ":--", "r": "--:", "c": ":-:", "": "---"}
    lines = ["| " + " | ".join(_cell(c) for c in cols) + " |",
             "|" + "|".join(sep[a] for a in align) + "|"]
    for row in table["rows"]:
        if len(row) != len(cols):
            raise ValueError(f"row {row!r} has {len(row)} cells for {len(cols)} columns")
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    return "\n".join(lines)


def _commands(cmd: str | list[str] | None) -> str:
    if not cmd:
        return "a command the README did not state"
    cmds = [cmd] if isinstance(cmd, str) else cmd
    return "; ".join(f"`{c}`" for c in cmds)


def _machine(m: str | dict[str, Any] | None) -> str:
    if not m:
        return "a machine the README did not describe"
    if isinstance(m, str):
        return m
    pk = m.get("packages", {})
    versions = ", ".join(f"{k} {pk[k]}" for k in ("torch", "numpy", "numba") if k in pk)
    return f"{m.get('cpu', '?')} ({m.get('cores', '?')} logical cores), {m.get('platform', '?')}, " \
           f"Python {m.get('python', '?')}" + (f", {versions}" if versions else "")


def _load(load: str | dict[str, Any] | None) -> str:
    if not load:
        return "load not stated"
    if isinstance(load, str):
        return f"load {load}"
    b, a = load.get("before") or [], load.get("after") or []
    if not b:
        return "load not available on this platform"
    return f"load average {b[0]:.2f} at the start, {a[0]:.2f} at the end (1 min; 5 min {b[1]:.2f} → {a[1]:.2f})"


def caption(record: dict[str, Any], src: str) -> str:
    where = f"Record: `benchmarks/records/{src}`."
    if record.get("provenance") == "measured":
        date = record["date"].replace("T", " ").replace("Z", " UTC")
        commit = (record.get("commit") or "unknown")[:10]
        dirty = " with uncommitted changes" if record.get("dirty") else ""
        return (f"Measured {date} by {_commands(record['command'])} at commit `{commit}`{dirty} on "
                f"{_machine(record.get('machine'))}; {_load(record.get('load'))}. {where}")
    date = record.get("date") or "on a date the README did not state"
    how = _commands(record["command"]) if record.get("command") else (record.get("method") or _commands(None))
    note = f" {record['note'][0].upper()}{record['note'][1:]}." if record.get("note") else ""
    return (f"Transcribed from the README at commit {record['transcribed_at']} (the run's raw output was not "
            f"kept): measured {date} by {how} on {_machine(record.get('machine'))}; "
            f"{_load(record.get('load'))}.{note} {where}")


def render_region(src: str, table: str, opts: dict[str, Any] | None = None,
                  records: Path = RECORDS) -> str:
    """The text between a region's opening and closing markers."""
    record = load_record(src, records)
    tables = record_tables(record)
    if table not in tables:
        raise LookupError(f"record {src} has no table {table!r} (has {sorted(tables)})")
    t = narrow(tables[table], opts or {})
    parts = [markdown_table(t)]
    if t.get("notes"):
        parts.append("\n".join(f"- {n}" for n in t["notes"]))
    parts.append(caption(record, src))
    return "\n\n".join(parts) + "\n"


def records_index(records: Path = RECORDS) -> str:
    """A table of every record: its tables, whether measured or transcribed, and its one command."""
    rows = []
    for path in sorted(records.glob("*.json")):
        r = json.loads(path.read_text())
        measured = r.get("provenance") == "measured"
        again = r["command"] if measured else r.get("regenerate")
        rows.append([f"`{path.name}`", ", ".join(sorted(record_tables(r))),
                     "measured" if measured else f"transcribed (README at {r['transcribed_at']})",
                     (r["date"].replace("T", " ").replace("Z", " UTC") if measured else r.get("date") or "not stated"),
                     f"`{again}`" if again else r.get("regenerate_note", "—")])
    return markdown_table({"columns": ["record", "tables", "source", "measured", "regenerate with"],
                           "rows": rows}) + "\n"


def render_text(text: str, records: Path = RECORDS) -> str:
    def sub(m: re.Match) -> str:
        opts = json.loads(m["opts"]) if m["opts"] else None
        head = m.group(0)[: m.start("body") - m.start()]
        return head + render_region(m["src"], m["table"], opts, records) + "<!-- /table -->"
    text = REGION.sub(sub, text)
    return INDEX.sub(lambda m: "<!-- records-index -->\n" + records_index(records) + "<!-- /records-index -->", text)


# ------------------------------------------------------------------------------------------ checks
def unmarked_figure_tables(text: str) -> list[tuple[int, str]]:
    """(line number, first line) of every Markdown table outside generated regions and fenced code
    that has a decimal number (outside backticks) in a cell: a figure table written by hand."""
    spans = [(text.count("\n", 0, m.start()), text.count("\n", 0, m.end()))
             for rx in (REGION, INDEX) for m in rx.finditer(text)]
    lines = text.split("\n")
    found, fenced, i = [], False, 0
    while i < len(lines):
        if _FENCE.match(lines[i]):
            fenced = not fenced
        elif (not fenced and lines[i].lstrip().startswith("|") and i + 1 < len(lines)
              and _SEPARATOR.match(lines[i + 1].strip()) and not any(a <= i <= b for a, b in spans)):
            j = i
            while j < len(lines) and lines[j].lstrip().startswith("|"):
                j += 1
            body = " ".join(lines[i:j])
            if _DECIMAL.search(_CODE.sub("", body)):
                found.append((i + 1, lines[i].strip()))
            i = j
            continue
        i += 1
    return found


def problems(root: Path = ROOT, records: Path = RECORDS) -> list[str]:
    """Every stale generated region, unreadable region, and hand-written figure table."""
    out = []
    for doc in documents(root):
        if not doc.is_file():
            continue
        text = doc.read_text()
        rel = doc.relative_to(root)
        for m in REGION.finditer(text):
            opts = json.loads(m["opts"]) if m["opts"] else None
            try:
                want = render_region(m["src"], m["table"], opts, records)
            except (LookupError, KeyError, ValueError) as e:
                out.append(f"{rel}: table {m['src']}#{m['table']}: {e}")
                continue
            if m["body"] != want:
                out.append(f"{rel}: table {m['src']}#{m['table']} differs from its record "
                           "(run: python benchmarks/render_docs.py)")
        opened, closed = text.count("<!-- table: "), text.count("<!-- /table -->")
        if opened != len(REGION.findall(text)) or closed != opened:
            out.append(f"{rel}: {opened} '<!-- table:' markers, {closed} '<!-- /table -->', "
                       f"{len(REGION.findall(text))} well-formed regions")
        for m in INDEX.finditer(text):
            if m["body"] != records_index(records):
                out.append(f"{rel}: the records index differs from benchmarks/records/ "
                           "(run: python benchmarks/render_docs.py)")
        for line, head in unmarked_figure_tables(text):
            out.append(f"{rel}, line {line}: a table of figures outside a generated region: {head[:60]} "
                       "(have the benchmark write a record through benchmarks/_record.py and render the table "
                       "from it: docs/benchmarks.md)")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 on any stale or unmarked table")
    args = ap.parse_args(argv)
    if not args.check:
        for doc in documents():
            if doc.is_file():
                text = doc.read_text()
                try:
                    new = render_text(text)
                except (LookupError, KeyError, ValueError) as e:   # a bad marker or record: say which
                    print(f"render_docs: {doc.relative_to(ROOT)}: {e}", file=sys.stderr)
                    return 1
                if new != text:
                    doc.write_text(new)
                    print(f"rendered {doc.relative_to(ROOT)}", file=sys.stderr)
    bad = problems()
    for p in bad:
        print(p, file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
