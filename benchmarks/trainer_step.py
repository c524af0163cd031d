"""Step time of AdaDPOTrainer vs stock trl.DPOTrainer on the same model, data and batch.

    python benchmarks/trainer_step.py [--repeats 7] [--steps 12] [--configs tiny head]

Configurations: ``tiny`` (Llama, hidden 64, 2 layers, vocabulary of the 55-token word-level tokenizer: the
step is mostly Python and small kernels) and ``head`` (hidden 256, 2 layers, V = 32000: the LM head
dominates). Batch: 8 pairs, live reference model (loss ``dpo``, beta 0.1), fp32, one thread.

Methods: stock ``DPOTrainer``; ``AdaDPOTrainer`` plain and balanced DPO with the default log-prob backend
(``chunked``); and plain DPO with ``logps_backend="trl_fused"`` (TRL's own LM head, so that row isolates
the cost of the trainer override from the cost of the backend). Every trainer is built once from the same
saved model; a step is ``trainer.training_step`` (forward, loss, backward) on one fixed batch. Each repeat
runs ``--steps`` steps of every method, the order alternating between repeats; the ratio to stock is taken
within each repeat (median step of the method / median step of stock), and the table gives the median
ratio over repeats.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C

CONFIGS = C.CONFIGS
STOCK = "DPOTrainer (stock, TRL fused head)"


def build(model_dir: Path, out: Path, data: Any, tokenizer: Any) -> dict[str, Any]:
    from trl import DPOConfig, DPOTrainer

    from adadpo.trl import AdaDPOConfig, AdaDPOTrainer

    def ada(name: str, **kw: Any) -> Any:
        return AdaDPOTrainer(str(model_dir), args=AdaDPOConfig(str(out / name), **C.TRAINER_ARGS, **kw),
                             train_dataset=data, processing_class=tokenizer)

    return {
        STOCK: DPOTrainer(str(model_dir), args=DPOConfig(str(out / "stock"), **C.TRAINER_ARGS), train_dataset=data,
                          processing_class=tokenizer),
        "AdaDPOTrainer dpo plain (chunked)": ada("plain"),
        "AdaDPOTrainer dpo balanced (chunked)": ada("balanced", balance=True),
        "AdaDPOTrainer dpo plain (trl_fused)": ada("fused", logps_backend="trl_fused"),
    }


def measure(config: str, repeats: int, steps: int, warmup: int = 2) -> dict[str, dict[str, float]]:
    """Per method: median ratio to stock over repeats, and the median step time (seconds)."""
    from datasets import Dataset

    tokenizer = C.make_tokenizer()
    data = Dataset.from_list(C.make_pairs(64, seed=0))
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = C.save_model(Path(tmp) / "model", **CONFIGS[config])
        trainers = build(model_dir, Path(tmp), data, tokenizer)
        batch = C.fixed_batch(trainers[STOCK], C.TRAINER_ARGS["per_device_train_batch_size"])
        fns = {name: C.trainer_step_fn(t, batch) for name, t in trainers.items()}
        for fn in fns.values():
            for _ in range(warmup):
                fn()
        ratios: dict[str, list[float]] = {name: [] for name in fns}
        times: dict[str, list[float]] = {name: [] for name in fns}
        for r in range(repeats):
            medians = {}
            for name in C.alternating(list(fns), r):
                medians[name] = C.median([C.timed(fns[name]) for _ in range(steps)])
                trainers[name]._metrics["train"].clear()
            for name in fns:
                ratios[name].append(medians[name] / medians[STOCK])
                times[name].append(medians[name])
            print(f"{config}: repeat {r + 1}/{repeats} done", file=sys.stderr)
    return {name: {"ratio": C.median(ratios[name]), "ratio_min": min(ratios[name]), "ratio_max": max(ratios[name]),
                   "ms": 1000 * C.median(times[name])} for name in fns}


def main() -> None:
    C.run_step_benchmark(
        "trainer_step", __doc__, 12, measure,
        "Trainer step (forward + loss + backward), 8 pairs, live reference, fp32, {args.threads} thread(s); "
        "{args.repeats} repeats x {args.steps} steps",
        ["config", "method", "ratio vs stock (median)", "range over repeats", "median ms"],
        lambda v: [f"{v['ratio']:.3f}", f"{v['ratio_min']:.3f}-{v['ratio_max']:.3f}", f"{v['ms']:.1f}"],
    )


if __name__ == "__main__":
    main()
