"""Cost of balancing: the AdaDPO (balanced) form of each loss vs its plain form, one training step.

    python benchmarks/balance_overhead.py [--repeats 9] [--steps 10]

For each of the six loss families, two ``AdaDPOTrainer``s (``balance=False`` / ``True``, default balance
settings) are built from the same saved tiny Llama (hidden 64, 2 layers, 55-token vocabulary: the model is
tiny so that the balancing's fixed cost is as large a share of the step as it can be). Batch: 8 pairs;
dpo, rdpo and ipo run their live reference model. A step is ``trainer.training_step`` (forward, loss,
backward) on one fixed batch. Each repeat runs ``--steps`` steps of plain then balanced (the order
alternating between repeats); the ratio balanced / plain is taken within each repeat from the median
step times; the table gives the median ratio over repeats and the median absolute difference.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C

PARAMS = {"rdpo": {"length_alpha": 0.05}}


def measure(repeats: int, steps: int, hidden: int, warmup: int = 2) -> dict[str, dict[str, float]]:
    from datasets import Dataset

    import adadpo
    from adadpo.trl import AdaDPOConfig, AdaDPOTrainer

    tokenizer = C.make_tokenizer()
    data = Dataset.from_list(C.make_pairs(32, seed=0))
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = C.save_model(Path(tmp) / "model", hidden=hidden)
        fns: dict[tuple[str, bool], Any] = {}
        for loss in adadpo.LOSSES:
            for balance in (False, True):
                args = AdaDPOConfig(f"{tmp}/{loss}-{balance}", loss=loss, balance=balance, **PARAMS.get(loss, {}),
                                    **C.TRAINER_ARGS)
                trainer = AdaDPOTrainer(str(model_dir), args=args, train_dataset=data, processing_class=tokenizer)
                batch = C.fixed_batch(trainer, C.TRAINER_ARGS["per_device_train_batch_size"])
                fns[loss, balance] = (trainer, C.trainer_step_fn(trainer, batch))
                for _ in range(warmup):
                    fns[loss, balance][1]()
        ratios: dict[str, list[float]] = {loss: [] for loss in adadpo.LOSSES}
        diffs: dict[str, list[float]] = {loss: [] for loss in adadpo.LOSSES}
        plain_ms: dict[str, list[float]] = {loss: [] for loss in adadpo.LOSSES}
        for r in range(repeats):
            for loss in adadpo.LOSSES:
                med = {}
                for balance in C.alternating([False, True], r):
                    trainer, fn = fns[loss, balance]
                    med[balance] = C.median([C.timed(fn) for _ in range(steps)])
                    trainer._metrics["train"].clear()
                ratios[loss].append(med[True] / med[False])
                diffs[loss].append(med[True] - med[False])
                plain_ms[loss].append(med[False])
            print(f"repeat {r + 1}/{repeats} done", file=sys.stderr)
        for loss in adadpo.LOSSES:
            results[loss] = {"ratio": C.median(ratios[loss]), "ratio_min": min(ratios[loss]),
                             "ratio_max": max(ratios[loss]), "extra_ms": 1000 * C.median(diffs[loss]),
                             "plain_ms": 1000 * C.median(plain_ms[loss])}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json-dir", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args()
    C.set_threads(args.threads)
    results = measure(args.repeats, args.steps, args.hidden)
    rows = [[loss, f"{v['ratio']:.3f}", f"{v['ratio_min']:.3f}-{v['ratio_max']:.3f}", f"{v['plain_ms']:.1f}",
             f"{v['extra_ms']:+.2f}"] for loss, v in results.items()]
    machine = C.machine()
    print(f"\nBalanced vs plain, one training step (forward + loss + backward), 8 pairs, hidden {args.hidden}, "
          f"{args.threads} thread(s); {args.repeats} repeats x {args.steps} steps\n{machine}\n")
    print(C.table(["loss", "balanced / plain (median)", "range over repeats", "plain ms", "balanced - plain ms"], rows))
    C.write_result("balance_overhead", {"machine": machine, "settings": {k: v for k, v in vars(args).items()
                                                                          if k != "json_dir"}, "results": results},
                   args.json_dir)


if __name__ == "__main__":
    main()
