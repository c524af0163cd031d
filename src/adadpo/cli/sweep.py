"""``adadpo sweep --config grid.yaml``: methods x beta x learning rate x seeds in a benchmark world.

The world is the oracle's unless the YAML says ``world: {kind: smollm2, ...}`` (the real-model world,
``examples/smollm2/``).

Runs in parallel (``workers`` processes, one thread each), appends each finished run to
``OUTPUT_DIR/results.jsonl`` and skips runs already there, so a killed sweep resumes. Then writes
``report.md`` (the paper's headline statistics with intervals over seeds), ``summary.json`` and plots.
The YAML format is in ``examples/sweep_dpo.yaml`` and ``adadpo.bench.sweep``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

EXTRA = "bench"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="grid of beta x learning rate x seeds x methods in a benchmark world, with a report",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="sweep YAML (see examples/sweep_dpo.yaml)")
    p.add_argument("--output_dir", help="default: sweep-<config name>")
    p.add_argument("--workers", type=int, help="processes (default: the config's, else 2)")
    p.add_argument("--cache_dir", help="where built worlds are kept (default: $ADADPO_CACHE or ~/.cache/adadpo)")
    p.add_argument("--title", help="report title")
    p.add_argument("--no_progress", action="store_true", help="no progress bars")
    p.add_argument("--report_only", action="store_true",
                   help="train nothing: write the report from the runs already in results.jsonl (a partial sweep)")


def run(args: argparse.Namespace) -> int:
    from adadpo.bench.progress import StageProgress
    from adadpo.bench.report import write_report
    from adadpo.bench.sweep import finished_rows, load_sweep_config, run_sweep, wall_time
    from adadpo.bench.world import get_world

    config = load_sweep_config(args.config)
    if args.workers is not None:
        if args.workers < 1:
            raise ValueError(f"--workers={args.workers}: need >= 1")
        config.workers = args.workers
    out = Path(args.output_dir or f"sweep-{Path(args.config).stem}")
    total = len(config.runs())
    if args.report_only:
        rows = finished_rows(config, out)
        if not rows:
            raise ValueError(f"--report_only: {out / 'results.jsonl'} has no finished run of this sweep")
    else:
        progress = StageProgress(disable=args.no_progress)
        rows = run_sweep(config, out, args.cache_dir, progress)
        progress.close()
    runs, seconds = wall_time(out)
    if runs:
        timing = (f"{runs} runs trained in {seconds / 60:.1f} min of wall time with {config.workers} worker process(es) "
                  "(world build excluded; summed over invocations if resumed)")
    else:  # only killed invocations so far: what the runs themselves took
        timing = (f"{len(rows)} runs took {sum(r.get('seconds', 0) for r in rows) / 60:.1f} min of process time in "
                  f"all, {config.workers} worker process(es)")
    partial = "" if len(rows) == total else f" **Partial: {len(rows)} of {total} runs finished so far.**"
    preamble = (f"`adadpo sweep --config {args.config}`: {timing}. World `{config.world.key()}`; settings in "
                f"`sweep.json`.{partial}")
    methods = [m.name for m in config.methods]
    world = get_world(config.world_kind)
    appendix = world.examples_markdown(rows, methods)
    default_title = f"{world.title} sweep: {Path(args.config).stem}"
    report = write_report(rows, config.comparisons, out, title=args.title or default_title,
                          preamble=preamble, order=methods, appendix=appendix)
    print(f"{len(rows)} runs in {out}/results.jsonl; report: {report}")
    return 0
