"""What the frozen-trunk cache saves in a real-model benchmark run (issue 21's "Cost").

    python benchmarks/smollm2_trunk.py [--pairs 32] [--repeats 3] [--threads 1]

The SmolLM2 world (``adadpo.bench.worlds.smollm2``, the shipped snapshot) trains the top 4 of 30 blocks; the cache
(:mod:`adadpo.bench.worlds.smollm2.trunk`) serves the 26 frozen blocks' output per token sequence. This script trains
plain DPO (beta 0.1, lr 3e-4, batch 8, one epoch) on the first ``--pairs`` training pairs through
``adadpo.bench.run.train_policy``, the sweep's own code path, three ways:

* ``uncached``: every step runs all 30 blocks (``TRUNK_CACHE = False`` before the cache existed);
* ``cold``: the cache starts empty, so each sequence's trunk is computed once, alone (a run's first epoch,
  or the first run of a sweep worker);
* ``warm``: every sequence is already cached (later epochs, and every later run of the worker).

Each repeat trains once per mode, the order alternating, on a fresh copy of the reference; a warm-up run
first fills TRL's cache of the reference log-probs, so no mode pays for it. The ratio to ``uncached`` is
taken within each repeat; the table gives the median over repeats and the range. Wall times on a shared
machine are noise; the ratios within a repeat are what to read.
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


def measure(world, pairs: int, repeats: int, threads: int = 1, train_layers: int = 4) -> dict:
    """Training seconds per mode and repeat and the ratios to ``uncached`` within each repeat (see the module
    doc): ``{"seconds": {mode: [...]}, "ratios": {"cold": [...], "warm": [...]}, "steps": n, "misses": m}``
    (``misses``: sequences the cold runs computed, per run)."""
    from datasets import load_from_disk

    from adadpo.bench.run import Method, RunSpec, start_run, train_policy
    from adadpo.bench.worlds.smollm2.run import LMBudget, freeze_below
    from adadpo.bench.worlds.smollm2.trunk import TrunkCache, cached_trunk

    data = load_from_disk(str(world.train_dataset_path)).select(range(pairs))
    spec = RunSpec(Method("DPO", "dpo"), 0.1, 3e-4, 0)
    budget = LMBudget(epochs=1, logging_steps=1000, train_layers=train_layers)

    def train(cache) -> float:
        tokenizer, policy = start_run(world, threads)
        freeze_below(policy, budget.train_layers)
        start = time.perf_counter()
        with cached_trunk(policy, budget.train_layers, cache) if cache is not None else contextlib.nullcontext():
            train_policy(policy, None, data, tokenizer, spec, budget, max_length=None, precompute_ref_log_probs=True)
        return time.perf_counter() - start

    train(None)  # TRL's reference log-probs for this data, cached on disk for the timed runs
    warm = TrunkCache()
    train(warm)
    seconds: dict[str, list[float]] = {"uncached": [], "cold": [], "warm": []}
    misses = []
    for r in range(repeats):
        order = ["uncached", "cold", "warm"] if r % 2 == 0 else ["warm", "cold", "uncached"]
        for mode in order:
            cache = None if mode == "uncached" else TrunkCache() if mode == "cold" else warm
            seconds[mode].append(train(cache))
            if mode == "cold":
                misses.append(cache.misses)
        print(f"repeat {r + 1}/{repeats}: " + ", ".join(f"{m} {seconds[m][-1]:.1f} s" for m in seconds), flush=True)
    ratios = {m: [t / u for t, u in zip(seconds[m], seconds["uncached"])] for m in ("cold", "warm")}
    return {"seconds": seconds, "ratios": ratios, "steps": -(-pairs // budget.batch_size), "misses": misses}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=32, help="training pairs per run (batch 8: pairs/8 steps)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    from adadpo.bench.worlds.smollm2.data import LMWorldConfig, build_world

    torch.set_num_threads(args.threads)
    out = measure(build_world(LMWorldConfig()), args.pairs, args.repeats, args.threads)
    seconds, ratios, steps = out["seconds"], out["ratios"], out["steps"]
    print(f"\nSmolLM2-135M-Instruct, top 4 of 30 blocks trained, DPO, {args.pairs} pairs = {steps} steps of 8 pairs, "
          f"{args.threads} thread(s), {args.repeats} repeats (median; range)\n")
    print("| mode | time per run / uncached | median s per step |")
    print("|---|---|---|")
    print(f"| uncached (all 30 blocks every step) | 1 | {statistics.median(seconds['uncached']) / steps:.2f} |")
    for m, what in (("cold", "cold cache (trunk computed once per sequence)"), ("warm", "warm cache (all hits)")):
        lo, hi = min(ratios[m]), max(ratios[m])
        print(f"| {what} | {statistics.median(ratios[m]):.3f}x ({lo:.3f}-{hi:.3f}) | "
              f"{statistics.median(seconds[m]) / steps:.2f} |")


if __name__ == "__main__":
    main()
