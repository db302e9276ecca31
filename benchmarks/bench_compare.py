"""``recozoo compare`` as a benchmark: the whole command timed, its leaderboard kept as a record.

    python benchmarks/bench_compare.py --dataset ml-100k \
        --models deeprec,autorec-i,autorec-u,als,pmf,biasedmf,bias --seeds 3

Every option other than ``--out`` and ``--record`` goes to ``recozoo compare`` unchanged. The
comparison runs as its own process (``python -m recozoo.cli.main compare ...``), end to end:
fits, evaluation, bootstrap and figures, exactly what a user runs. The record
(``benchmarks/records/compare-DATASET.json``, or ``--record``) keeps the wall-clock seconds,
``leaderboard.json`` and the leaderboard in Markdown as ``recozoo compare`` printed it; its table
in the docs is that Markdown (``benchmarks/render_docs.py``). ``--out`` keeps the run folder (by
default a temporary one, removed afterwards).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _compare import out_folder, parse_leaderboard, run_compare  # noqa: E402
from _record import Run, add_record_option, record_path  # noqa: E402


def tables(figures: dict) -> dict:
    """The record's table (``render_docs.py``)."""
    t = parse_leaderboard(figures["markdown"])
    t["notes"].append(f"{figures['wall_s']:.0f} s wall clock for the whole command (every fit, evaluation, "
                      "bootstrap and figures).")
    return {"main": t}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="Any other option is passed to `recozoo compare`.")
    ap.add_argument("--out", default=None, help="keep the comparison's run folder here")
    ap.add_argument("--dataset", required=True)
    add_record_option(ap)
    args, rest = ap.parse_known_args(argv)
    run = Run(__file__, argv)
    with out_folder(args.out) as folder:
        res = run_compare(args.dataset, rest, folder, who="bench_compare")
    print(res.markdown)
    print(f"{res.wall_s:.0f} s wall clock end to end", file=sys.stderr)
    run.write({"dataset": args.dataset, "compare_args": rest, "wall_s": round(res.wall_s, 1),
               "markdown": res.markdown, "leaderboard": res.board}, record_path(args.record, f"compare-{args.dataset}"))
    return 0

if __name__ == "__main__":
    sys.exit(main())
