"""``adadpo lc FILES... [--json OUT]``: length-controlled win rates of several models against one baseline.

Reads AlpacaEval annotation files (``results/<model>/<annotator>/annotations.json``: ``generator_2`` is the model,
``preference`` in [1, 2], lengths in characters) and adadpo's per-comparison records (``model``, ``instruction``,
``preference`` in [0, 1], ``len_model``, ``len_baseline``), groups the comparisons by model, estimates the
instruction difficulty jointly over the models (or takes it from ``--difficulty``), and prints per model: n, the
raw win rate (WR), the length-controlled win rate (LC) and its standard error, in percent as AlpacaEval's
leaderboard shows them, and the mean answer length. ``--json OUT`` writes the same with rates as fractions.
Method and measured agreement with the leaderboard: docs/evaluation.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

EXTRA = "eval"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lc", help="length-controlled win rates of models against one baseline, from judge annotations",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", metavar="FILE", help="annotation files (.json array or .jsonl)")
    p.add_argument("--json", metavar="OUT", help="also write the results to OUT (rates as fractions in [0, 1])")
    p.add_argument("--difficulty", metavar="TABLE",
                   help="instruction difficulty table (.csv with instruction,difficulty or .json object) instead of "
                        "estimating it across the models")
    p.add_argument("--pool_length", type=float, default=None,
                   help="pull of each model's length coefficient towards the models' median (default 0.03; 0: none)")


def run(args: argparse.Namespace) -> int:
    from adadpo.eval import POOL_LENGTH, length_controlled_winrates
    from adadpo.eval.records import read_comparisons, read_difficulty_table

    data = read_comparisons(args.files)
    difficulty = read_difficulty_table(args.difficulty) if args.difficulty else None
    pool = POOL_LENGTH if args.pool_length is None else args.pool_length
    if not pool >= 0:
        raise ValueError(f"--pool_length={args.pool_length}: expected a number >= 0")
    with warnings.catch_warnings(record=True) as caught:  # said as one plain line each, not as Python warnings
        warnings.simplefilter("always")
        result = length_controlled_winrates(data.model, data.instruction, data.preference, data.len_model,
                                            data.len_baseline, difficulty=difficulty, pool_length=pool)
    for w in caught:
        print(f"adadpo lc: note: {w.message}", file=sys.stderr)
    if data.dropped:
        print(f"dropped {data.dropped} comparisons without a preference (failed judge calls)", file=sys.stderr)
    baseline = next(iter(data.baselines), "the baseline")
    source = {"estimated": f"estimated across the {len(result.models)} models",
              "table": f"from {args.difficulty}", "none": "none (one model: not comparable with the leaderboard)"}
    print(f"against {baseline}; instruction difficulty {source[result.difficulty_source]}; "
          f"length in {data.length_unit}")
    width = max(5, *(len(str(m)) for m in result.models))
    print(f"{'model':<{width}}  {'n':>5}  {'WR %':>6}  {'LC %':>6}  {'LC SE':>5}  {'mean length':>11}")
    order = sorted(result.models, key=lambda m: -result.models[m].lc)
    for m in order:
        r = result.models[m]
        print(f"{str(m):<{width}}  {r.n:>5}  {100 * r.wr:>6.2f}  {100 * r.lc:>6.2f}  {100 * r.lc_se:>5.2f}  "
              f"{result.mean_length[m]:>11.1f}")
    if args.json:
        out = {
            "units": {"rates": "fractions in [0, 1] (x100 for AlpacaEval's percent)", "length": data.length_unit},
            "baseline": baseline,
            "difficulty": result.difficulty_source,
            "files": [str(f) for f in args.files],
            "dropped_without_preference": data.dropped,
            **result.to_dict(),
        }
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0
