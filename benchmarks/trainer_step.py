"""Step time of AdaDPOTrainer vs stock trl.DPOTrainer on the same tiny model, data and batch.

    python benchmarks/trainer_step.py [--steps 30] [--repeats 5]

Both trainers are built from the same saved model; each repeat runs ``--steps`` training steps per method,
methods interleaved so that machine drift hits all of them alike. Reported: the median step time of each
method relative to stock DPOTrainer, measured in this run (bare times are secondary).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from tiny import make_model, make_pairs, make_tokenizer  # noqa: E402
from trl import DPOConfig, DPOTrainer  # noqa: E402

from adadpo.trl import AdaDPOConfig, AdaDPOTrainer  # noqa: E402

COMMON = {"per_device_train_batch_size": 8, "learning_rate": 1e-4, "seed": 0, "report_to": "none",
          "save_strategy": "no", "logging_steps": 10_000, "disable_tqdm": True, "bf16": False,
          "gradient_checkpointing": False}


def step_times(trainer, steps: int) -> list[float]:
    times: list[float] = []
    step = trainer.training_step

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        out = step(*args, **kwargs)
        times.append(time.perf_counter() - t0)
        return out

    trainer.training_step = timed
    trainer.args.max_steps = steps
    trainer.train()
    return times[3:]  # drop warm-up steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)
    tokenizer = make_tokenizer()
    data = Dataset.from_list(make_pairs(8 * args.steps, seed=0))
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        make_model(tokenizer, hidden=args.hidden).save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
        methods = {
            "DPOTrainer (stock)": lambda: DPOTrainer(str(model_dir), args=DPOConfig(f"{tmp}/a", **COMMON),
                                                     train_dataset=data, processing_class=tokenizer),
            "AdaDPOTrainer dpo plain": lambda: AdaDPOTrainer(str(model_dir), args=AdaDPOConfig(f"{tmp}/b", **COMMON),
                                                             train_dataset=data, processing_class=tokenizer),
            "AdaDPOTrainer dpo balanced": lambda: AdaDPOTrainer(
                str(model_dir), args=AdaDPOConfig(f"{tmp}/c", balance=True, **COMMON), train_dataset=data,
                processing_class=tokenizer),
        }
        medians: dict[str, list[float]] = {name: [] for name in methods}
        for r in range(args.repeats):
            for name, build in methods.items():
                medians[name].append(statistics.median(step_times(build(), args.steps)))
            print(f"repeat {r + 1}/{args.repeats} done", file=sys.stderr)
    base = statistics.median(medians["DPOTrainer (stock)"])
    print(f"\nmedian step time over {args.repeats} repeats x {args.steps} steps (batch 8 pairs, hidden {args.hidden}, "
          "1 thread)")
    print(f"{'method':<30} {'ratio vs stock':>15} {'median ms':>10}")
    for name, values in medians.items():
        m = statistics.median(values)
        print(f"{name:<30} {m / base:>15.3f} {1000 * m:>10.2f}")


if __name__ == "__main__":
    main()
