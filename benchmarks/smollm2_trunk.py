"""What the frozen-trunk cache and the unpadded top blocks save in a real-model benchmark run (issue 21's "Cost").

    python benchmarks/smollm2_trunk.py [--pairs 32] [--repeats 3] [--threads 1] [--modes uncached,cold,warm,unpadded]

The SmolLM2 world (``adadpo.bench.worlds.smollm2``, the shipped snapshot) trains the top 4 of 30 blocks; the cache
(:mod:`adadpo.bench.worlds.smollm2.trunk`) serves the 26 frozen blocks' output per token sequence. This script trains
plain DPO (beta 0.1, lr 3e-4, batch 8, one epoch, the loss logged every step) on the first ``--pairs`` training pairs
through ``adadpo.bench.run.train_policy``, the sweep's own code path, in up to four modes:

* ``uncached``: every step runs all 30 blocks (``TRUNK_CACHE = False`` before the cache existed);
* ``cold``: the cache starts empty, so each sequence's trunk is computed once, alone (a run's first epoch,
  or the first run of a sweep worker);
* ``warm``: every sequence is already cached (later epochs, and every later run of the worker), the trained
  blocks run on the padded batch (``UNPADDED_TOP = False``);
* ``unpadded``: as ``warm``, the trained blocks run on each row's real tokens only (``UNPADDED_TOP = True``).

Each repeat trains once per mode, the order alternating, on a fresh copy of the reference; a warm-up run first
fills TRL's cache of the reference log-probs and the warm trunk cache, so no mode pays for them. Ratios are taken
within each repeat (each mode over ``uncached``; ``unpadded`` over ``warm``); the table gives the median over
repeats and the range. Wall times on a shared machine are noise; the ratios within a repeat are what to read.
With ``warm`` and ``unpadded`` both run it also prints their loss curves side by side and the largest relative
difference of a logged loss (the two differ by float rounding only).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: F401  (offline environment variables)

MODES = ("uncached", "cold", "warm", "unpadded")


def measure(world, pairs: int, repeats: int, threads: int = 1, train_layers: int = 4,
            modes: tuple[str, ...] = MODES) -> dict:
    """Training seconds and loss curves per mode and repeat, and the ratios within each repeat (see the module
    doc): ``{"seconds": {mode: [...]}, "losses": {mode: [[loss per logged step], ...]}, "ratios": {mode: [...]}``
    (each mode over ``uncached``, when it ran), ``"unpadded_vs_warm": [...]`` (when both ran), ``"steps": n,
    "misses": m}`` (``misses``: sequences the cold runs computed, per run)."""
    from datasets import load_from_disk

    from adadpo.bench.run import Method, RunSpec, start_run, train_policy
    from adadpo.bench.worlds.smollm2.run import LMBudget, freeze_below
    from adadpo.bench.worlds.smollm2.trunk import TrunkCache, cached_trunk

    check_modes(modes)
    data = load_from_disk(str(world.train_dataset_path)).select(range(pairs))
    spec = RunSpec(Method("DPO", "dpo"), 0.1, 3e-4, 0)
    budget = LMBudget(epochs=1, logging_steps=1, train_layers=train_layers)

    def train(cache, unpadded: bool = False) -> tuple[float, list[float]]:
        tokenizer, policy = start_run(world, threads)
        freeze_below(policy, budget.train_layers)
        start = time.perf_counter()
        with cached_trunk(policy, budget.train_layers, cache, unpadded) if cache is not None \
                else contextlib.nullcontext():
            history = train_policy(policy, None, data, tokenizer, spec, budget, max_length=None,
                                   precompute_ref_log_probs=True)
        return time.perf_counter() - start, [r["loss"] for r in history if "loss" in r]

    warm = TrunkCache()
    train(warm)  # TRL's reference log-probs for this data (cached on disk) and every sequence's trunk
    seconds: dict[str, list[float]] = {m: [] for m in modes}
    losses: dict[str, list[list[float]]] = {m: [] for m in modes}
    misses = []
    for r in range(repeats):
        for mode in modes if r % 2 == 0 else modes[::-1]:
            cache = None if mode == "uncached" else TrunkCache() if mode == "cold" else warm
            took, curve = train(cache, unpadded=mode == "unpadded")
            seconds[mode].append(took)
            losses[mode].append(curve)
            if mode == "cold":
                misses.append(cache.misses)
        print(f"repeat {r + 1}/{repeats}: " + ", ".join(f"{m} {seconds[m][-1]:.1f} s" for m in modes), flush=True)
    out = {"seconds": seconds, "losses": losses, "steps": -(-pairs // budget.batch_size), "misses": misses,
           "ratios": {}}
    if "uncached" in modes:
        out["ratios"] = {m: [t / u for t, u in zip(seconds[m], seconds["uncached"])] for m in modes if m != "uncached"}
    if {"warm", "unpadded"} <= set(modes):
        out["unpadded_vs_warm"] = [t / w for t, w in zip(seconds["unpadded"], seconds["warm"])]
    return out


def check_modes(modes: tuple[str, ...]) -> None:
    """Raise ``ValueError`` naming ``modes`` unless it is a non-empty selection of :data:`MODES`."""
    if not modes or not set(modes) <= set(MODES):
        raise ValueError(f"modes {','.join(modes)!r}: expected a comma-separated list of {', '.join(MODES)}")


def relative_differences(curve: list[float], reference: list[float]) -> list[float]:
    """``|curve - reference| / |reference|`` per logged step (the curves must have the same steps)."""
    if len(curve) != len(reference):
        raise ValueError(f"the curves have {len(curve)} and {len(reference)} logged steps")
    return [abs(a - b) / abs(b) for a, b in zip(curve, reference)]


def _range(values: list[float]) -> str:
    return f"{statistics.median(values):.3f}x ({min(values):.3f}-{max(values):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=32, help="training pairs per run (batch 8: pairs/8 steps)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, some of {', '.join(MODES)}")
    args = parser.parse_args()
    modes = tuple(m for m in args.modes.split(",") if m)
    try:
        check_modes(modes)
    except ValueError as e:
        parser.error(f"--{e}")

    import torch

    from adadpo.bench.worlds.smollm2.data import LMWorldConfig, build_world

    torch.set_num_threads(args.threads)
    out = measure(build_world(LMWorldConfig()), args.pairs, args.repeats, args.threads, modes=modes)
    seconds, ratios, steps = out["seconds"], out["ratios"], out["steps"]
    print(f"\nSmolLM2-135M-Instruct, top 4 of 30 blocks trained, DPO, {args.pairs} pairs = {steps} steps of 8 pairs, "
          f"{args.threads} thread(s), {args.repeats} repeats (median; range)\n")
    what = {"uncached": "uncached (all 30 blocks every step)", "cold": "cold cache (trunk computed once per sequence)",
            "warm": "warm cache (all hits), top blocks padded", "unpadded": "warm cache, top blocks unpadded"}
    print("| mode | time per run / uncached | median s per step |")
    print("|---|---|---|")
    for m in modes:
        ratio = "1" if m == "uncached" else _range(ratios[m]) if ratios else "-"
        print(f"| {what[m]} | {ratio} | {statistics.median(seconds[m]) / steps:.2f} |")
    if "unpadded_vs_warm" in out:
        print(f"\nunpadded / warm (padded) training time, within each repeat: {_range(out['unpadded_vs_warm'])}")
        padded, unpadded = out["losses"]["warm"], out["losses"]["unpadded"]
        diffs = [relative_differences(u, p) for u, p in zip(unpadded, padded)]
        print("\n| step | loss, padded | loss, unpadded | max relative difference over repeats |")
        print("|---|---|---|---|")
        for i, (p, u) in enumerate(zip(padded[0], unpadded[0])):
            print(f"| {i + 1} | {p:.6f} | {u:.6f} | {max(d[i] for d in diffs):.2e} |")
        print(f"\nlargest relative loss difference: {max(max(d) for d in diffs):.2e}")


if __name__ == "__main__":
    main()
