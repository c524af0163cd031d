"""Cost of balancing: the AdaDPO (balanced) form of each loss vs its plain form, one training step.

    python benchmarks/balance_overhead.py [--repeats 9] [--steps 10] [--hidden 64]
    python benchmarks/balance_overhead.py --configs smollm2     # the real model: ~12 minutes

For each of the six loss families, two ``AdaDPOTrainer``s (``balance=False`` / ``True``, default balance
settings) are built from the same saved model. By default (``tiny``) that is a tiny Llama (hidden 64,
2 layers, 48-token vocabulary: the model is tiny so that the balancing's fixed cost is as large a share of
the step as it can be), batch 8 pairs, one thread. When asked, ``smollm2``: SmolLM2-135M-Instruct from
the local cache with its tokenizer and chat template over conversational pairs, as in ``trainer_step.py``
(batch 4 pairs, one thread, 3 repeats x 2 steps after one warm-up step; the two trainers of one loss at a
time, so that at most four copies of the model are in memory). dpo, rdpo and ipo run their live reference
model. A step is ``trainer.training_step`` (forward, loss, backward) on one fixed batch. Each repeat runs
``--steps`` steps of plain then balanced (the order alternating between repeats); the ratio balanced /
plain is taken within each repeat from the median step times; the table gives the median ratio over
repeats and the median absolute difference.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C

PARAMS = {"rdpo": {"length_alpha": 0.05}}


def measure(config: str, s: Any) -> dict[str, Any]:
    import adadpo
    from adadpo.trl import AdaDPOConfig, AdaDPOTrainer

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir, tokenizer, data, about = C.load_config(config, Path(tmp), s, pairs=32, hidden=s.hidden)
        # all twelve trainers at once for the synthetic models (the repeats then cycle through the losses);
        # one loss at a time for a real one
        groups = [list(adadpo.LOSSES)] if config in C.CONFIGS else [[loss] for loss in adadpo.LOSSES]
        for losses in groups:
            fns: dict[tuple[str, bool], Any] = {}
            for loss in losses:
                for balance in (False, True):
                    args = AdaDPOConfig(f"{tmp}/{loss}-{balance}", loss=loss, balance=balance, **PARAMS.get(loss, {}),
                                        **C.trainer_args(s))
                    trainer = AdaDPOTrainer(str(model_dir), args=args, train_dataset=data, processing_class=tokenizer)
                    batch = C.fixed_batch(trainer, s.batch)
                    if ";" not in about:  # the model and batch, once
                        about += "; " + C.describe_batch(trainer, batch)
                    fns[loss, balance] = (trainer, C.trainer_step_fn(trainer, batch))
                    for _ in range(s.warmup):
                        fns[loss, balance][1]()
            ratios: dict[str, list[float]] = {loss: [] for loss in losses}
            diffs: dict[str, list[float]] = {loss: [] for loss in losses}
            plain_ms: dict[str, list[float]] = {loss: [] for loss in losses}
            for r in range(s.repeats):
                for loss in losses:
                    med = {}
                    for balance in C.alternating([False, True], r):
                        trainer, fn = fns[loss, balance]
                        med[balance] = C.median([C.timed(fn) for _ in range(s.steps)])
                        trainer._metrics["train"].clear()
                    ratios[loss].append(med[True] / med[False])
                    diffs[loss].append(med[True] - med[False])
                    plain_ms[loss].append(med[False])
                print(f"{config} {'/'.join(losses)}: repeat {r + 1}/{s.repeats} done", file=sys.stderr)
            for loss in losses:
                results[loss] = {"ratio": C.median(ratios[loss]), "ratio_min": min(ratios[loss]),
                                 "ratio_max": max(ratios[loss]), "extra_ms": 1000 * C.median(diffs[loss]),
                                 "plain_ms": 1000 * C.median(plain_ms[loss]),
                                 "backend": fns[loss, True][0].logps_backend_for(fns[loss, True][0].model).name}
            del fns, trainer
            C.release_free_memory()
    results["_about"] = about
    return results


def main() -> None:
    C.run_step_benchmark(
        "balance_overhead", __doc__, 10, measure,
        "Balanced vs plain, one training step (forward + loss + backward), {args.batch} pairs, "
        "{args.threads} thread(s); {args.repeats} repeats x {args.steps} steps",
        ["config", "loss", "balanced / plain (median)", "range over repeats", "plain ms", "balanced - plain ms"],
        lambda v: [f"{v['ratio']:.3f}", f"{v['ratio_min']:.3f}-{v['ratio_max']:.3f}", f"{v['plain_ms']:.1f}",
                   f"{v['extra_ms']:+.2f}"],
        repeats=9, configs=["tiny"], models=True,
        add_arguments=lambda p: p.add_argument("--hidden", type=int, default=None,
                                               help="hidden size of the synthetic configs (tiny: 64)"),
    )


if __name__ == "__main__":
    main()
