"""Step time with precomputed reference log-probs vs a live reference model.

    python benchmarks/reference.py [--repeats 7] [--steps 10] [--configs tiny head]

Two ``AdaDPOTrainer``s (loss ``dpo``, plain and balanced) per setting: one runs the reference model every
step (TRL's default: a frozen copy loaded from the same path), the other has
``precompute_ref_log_probs=True`` (one pass over the data at construction; the step reads two numbers per
pair from the batch). Model configurations as in ``trainer_step.py``: ``tiny`` (hidden 64, 48-token
vocabulary) and ``head`` (hidden 256, V = 32000). A step is ``trainer.training_step`` (forward, loss,
backward) on one fixed batch of 8 pairs; repeats alternate the order; the ratio precomputed / live is
taken within each repeat, and the table gives its median over repeats.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C

CONFIGS = C.CONFIGS


def measure(config: str, repeats: int, steps: int, warmup: int = 2) -> dict[str, dict[str, float]]:
    from datasets import Dataset

    from adadpo.trl import AdaDPOConfig, AdaDPOTrainer

    tokenizer = C.make_tokenizer()
    data = Dataset.from_list(C.make_pairs(32, seed=0))
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = C.save_model(Path(tmp) / "model", **CONFIGS[config])
        for balance in (False, True):
            fns = {}
            for precompute in (False, True):
                args = AdaDPOConfig(f"{tmp}/{balance}-{precompute}", loss="dpo", balance=balance,
                                    precompute_ref_log_probs=precompute, **C.TRAINER_ARGS)
                trainer = AdaDPOTrainer(str(model_dir), args=args, train_dataset=data, processing_class=tokenizer)
                assert (trainer.ref_model is None) == precompute
                fn = C.trainer_step_fn(trainer, C.fixed_batch(trainer, C.TRAINER_ARGS["per_device_train_batch_size"]))
                for _ in range(warmup):
                    fn()
                fns[precompute] = (trainer, fn)
            ratios, live_ms, pre_ms = [], [], []
            for r in range(repeats):
                med: dict[bool, float] = {}
                for precompute in C.alternating([False, True], r):
                    trainer, fn = fns[precompute]
                    med[precompute] = C.median([C.timed(fn) for _ in range(steps)])
                    trainer._metrics["train"].clear()
                ratios.append(med[True] / med[False])
                live_ms.append(1000 * med[False])
                pre_ms.append(1000 * med[True])
                print(f"{config} balance={balance}: repeat {r + 1}/{repeats} done", file=sys.stderr)
            out[f"dpo {'balanced' if balance else 'plain'}"] = {
                "ratio": C.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
                "live_ms": C.median(live_ms), "precomputed_ms": C.median(pre_ms)}
    return out


def main() -> None:
    C.run_step_benchmark(
        "reference", __doc__, 10, measure,
        "Precomputed vs live reference, one training step (forward + loss + backward), 8 pairs, "
        "{args.threads} thread(s); {args.repeats} repeats x {args.steps} steps",
        ["config", "loss", "precomputed / live (median)", "range over repeats", "live ms", "precomputed ms"],
        lambda v: [f"{v['ratio']:.3f}", f"{v['ratio_min']:.3f}-{v['ratio_max']:.3f}", f"{v['live_ms']:.1f}",
                   f"{v['precomputed_ms']:.1f}"],
    )


if __name__ == "__main__":
    main()
