"""``adadpo demo``: DPO vs AdaDPO in a small world where the truth is known, in a few minutes on a CPU.

Builds (once; cached) the oracle world: prompts naming target words, true quality = F1 with the targets, a
judge biased toward length, a tiny Llama reference policy trained by SFT on noisy demonstrations and
on-policy preference pairs sampled from it. Then trains DPO and AdaDPO from the reference with
``AdaDPOTrainer`` on the same pairs, seeds and budget, and judges their answers to held-out prompts against
the reference's: WR (biased judge), LC (length-controlled, the AlpacaEval 2 way), TQ (the truth).
Writes ``report.md``, ``results.json`` and plots to ``--output-dir``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

TABLE = (("lc", "LC"), ("wr", "WR"), ("tq", "TQ"), ("length", "length"), ("quality", "quality"), ("kl", "KL"),
         ("delta_chosen", "d logp chosen"), ("delta_rejected", "d logp rejected"))


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="DPO vs AdaDPO in the oracle world: a table, a report and plots in minutes",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output-dir", default="adadpo-demo", help="where report.md, results.json and plots go")
    p.add_argument("--beta", type=float, default=0.1)
    p.add_argument("--learning-rate", type=float, default=3e-4)
    p.add_argument("--seeds", type=int, default=3, help="runs per method (seeds 0..N-1)")
    p.add_argument("--workers", type=int, default=2, help="processes, one thread each (default: 2)")
    p.add_argument("--world", metavar="YAML", help="WorldConfig overrides, e.g. a file with `eta: 2.0` (default: none)")
    p.add_argument("--cache-dir", help="where the built world is kept (default: $ADADPO_CACHE or ~/.cache/adadpo)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def table(rows: list[dict], methods: list[str]) -> str:
    """Plain-text table: one line per method, mean ± 95% half-width over seeds."""
    from adadpo.oracle.report import interval, value

    head = f"{'method':<8}" + "".join(f"{label:>17}" for _, label in TABLE)
    lines = [head, "-" * len(head)]
    for m in methods:
        cells = [interval([value(r, k) for r in rows if r["method"] == m]).fmt() for k, _ in TABLE]
        lines.append(f"{m:<8}" + "".join(f"{c:>17}" for c in cells))
    return "\n".join(lines)


#: Metrics where neither direction is better in itself: their verdict says which way they moved.
NEUTRAL = ("length", "kl")
MOVED = {"win": "higher", "loss": "lower"}


def differences(rows: list[dict], base: str, cand: str) -> str:
    from adadpo.oracle.report import METRICS, compare

    lines = []
    for metric in ("lc", "wr", "tq", "lc_minus_wr", "length", "kl", "delta_chosen"):
        c = compare(rows, base, cand, metric)
        iv = c.pooled
        verdict = iv.verdict()
        if metric in NEUTRAL:
            verdict = MOVED.get(verdict, verdict)
        verdict = "" if iv.n < 2 else f"  {verdict}"
        lines.append(f"  {METRICS[metric]:<15}{iv.mean:+8.3f}  [{iv.lo:+.3f}, {iv.hi:+.3f}]{verdict}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    # imported here so that `import adadpo.cli` stays light (no transformers for `adadpo explain`)
    from adadpo.oracle.progress import StageProgress
    from adadpo.oracle.report import summary, write_report
    from adadpo.oracle.run import Method
    from adadpo.oracle.sweep import SweepConfig, load_world_config, run_sweep, sweep_config_dict
    from adadpo.oracle.world import WorldConfig

    if args.seeds < 1 or args.workers < 1:
        raise ValueError(f"--seeds={args.seeds} and --workers={args.workers} must be >= 1")
    world = load_world_config(args.world) if args.world else WorldConfig()
    config = SweepConfig(
        methods=[Method("DPO", "dpo"), Method("AdaDPO", "dpo", {})], betas=[args.beta],
        learning_rates=[args.learning_rate], seeds=list(range(args.seeds)), world=world, workers=args.workers,
    )
    out = Path(args.output_dir)
    start = time.perf_counter()
    progress = StageProgress(disable=args.no_progress)
    rows = run_sweep(config, out / "runs", args.cache_dir, progress)
    progress.close()
    seconds = time.perf_counter() - start
    methods = [m.name for m in config.methods]
    ref = rows[0]
    print(f"\nHeld-out prompts, answers judged against the reference policy's (length {ref['ref_length']:.2f}, "
          f"quality {ref['ref_quality']:.3f}); beta={args.beta:g}, lr={args.learning_rate:g}, "
          f"{args.seeds} seeds, mean ± 95% half-width:\n")
    print(table(rows, methods))
    print("\nAdaDPO - DPO, paired by seed (95% interval; 'tie' when it contains 0):")
    print(differences(rows, "DPO", "AdaDPO"))
    preamble = (f"`adadpo demo` (β={args.beta:g}, learning rate {args.learning_rate:g}, {args.seeds} seeds): "
                f"{seconds / 60:.1f} min on this machine including the world when it was not cached. "
                "WR: win rate against the reference under the length-biased judge; LC: its length-controlled "
                "version (AlpacaEval 2); TQ: the true-quality win rate that LC tries to estimate.")
    report = write_report(rows, config.comparisons, out, title="adadpo demo: DPO vs AdaDPO in the oracle world",
                          preamble=preamble, order=[m.name for m in config.methods])
    (out / "results.json").write_text(json.dumps(
        {"config": sweep_config_dict(config), "seconds": seconds, "summary": summary(rows, config.comparisons),
         "runs": rows}, indent=1))
    print(f"\n{len(rows)} runs in {seconds:.0f} s. Report: {report}; data: {out / 'results.json'}")
    return 0
