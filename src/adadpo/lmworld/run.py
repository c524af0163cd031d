"""One run in the real-model world: train the reference's top layers with ``AdaDPOTrainer``, then evaluate.

What is trained: the top ``train_layers`` transformer blocks and the final norm; the embeddings (tied to the
LM head in SmolLM2) and the blocks below stay frozen. On 2 CPU cores a full fine-tune of the 135M model costs
about 11x a top-4-block step (the backward pass through all 30 blocks and the 28M-parameter embedding's
gradient and AdamW state), which would leave a handful of runs per session; LoRA still backpropagates
through every block. Every method gets the same trainable set, data, seed, steps and schedule.

The reference log-probs are precomputed by TRL (``precompute_ref_log_probs``) on the world's on-disk
dataset, so TRL's cache makes them a one-time cost per world rather than a second forward in every step.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch

from adadpo import LOSSES
from adadpo.lmworld.data import World
from adadpo.lmworld.evaluate import evaluate_policy
from adadpo.oracle.run import Budget, RunSpec, curves


@dataclass(frozen=True)
class LMBudget(Budget):
    """The oracle's :class:`Budget` plus how many top blocks are trained (see the module doc)."""

    batch_size: int = 16
    epochs: int = 1
    logging_steps: int = 2
    train_layers: int = 4


def freeze_below(model, train_layers: int) -> int:
    """Leave only the top ``train_layers`` decoder blocks and the final norm trainable; returns how many
    parameters are trainable. ``train_layers <= 0`` trains everything."""
    if train_layers <= 0:
        return sum(p.numel() for p in model.parameters())
    backbone = model.get_decoder() if hasattr(model, "get_decoder") else model.model
    blocks = backbone.layers
    if train_layers > len(blocks):
        raise ValueError(f"train_layers={train_layers}: the model has only {len(blocks)} blocks")
    model.requires_grad_(False)
    for block in blocks[len(blocks) - train_layers :]:
        block.requires_grad_(True)
    backbone.norm.requires_grad_(True)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def train_and_evaluate(world: World, spec: RunSpec, budget: LMBudget = LMBudget(), threads: int | None = None
                       ) -> dict[str, Any]:
    """Train one policy and evaluate it; returns the run's settings, metrics, curves, examples and wall time."""
    from datasets import load_from_disk
    from transformers import PrinterCallback

    from adadpo.trl import AdaDPOConfig, AdaDPOTrainer

    if threads:
        torch.set_num_threads(threads)
    logging.getLogger("adadpo").setLevel(logging.WARNING)
    start = time.perf_counter()
    tokenizer = world.load_tokenizer()
    policy = world.load_reference()
    policy.train()
    trainable = freeze_below(policy, budget.train_layers)
    data = load_from_disk(str(world.train_dataset_path))
    needs_ref = LOSSES[spec.method.loss].needs_reference
    with tempfile.TemporaryDirectory() as tmp:
        config = AdaDPOConfig(
            output_dir=os.path.join(tmp, "out"), beta=spec.beta, learning_rate=spec.learning_rate, seed=spec.seed,
            per_device_train_batch_size=budget.batch_size, num_train_epochs=budget.epochs,
            warmup_steps=budget.warmup_ratio, lr_scheduler_type=budget.scheduler, logging_steps=budget.logging_steps,
            save_strategy="no", report_to="none", disable_tqdm=True, gradient_checkpointing=False,
            # No truncation (answers are at most max_new_tokens): TRL's truncation filter closes over the whole
            # config, which changes the dataset's fingerprint every run and defeats TRL's reference-log-prob cache.
            max_length=None, dataset_num_proc=None, precompute_ref_log_probs=needs_ref,
            **spec.method.config_fields(),
        )
        trainer = AdaDPOTrainer(policy, None, args=config, train_dataset=data, processing_class=tokenizer)
        trainer.remove_callback(PrinterCallback)  # the sweep shows its own progress
        trainer.train()
        history = trainer.state.log_history
    train_seconds = time.perf_counter() - start
    policy.eval()
    reference = world.load_reference()
    metrics = evaluate_policy(world, policy, reference, tokenizer, seed=spec.seed)
    return {
        "key": spec.key, "method": spec.method.name, "loss": spec.method.loss,
        "balance": spec.method.balance, "params": spec.method.params,
        "beta": spec.beta, "learning_rate": spec.learning_rate, "seed": spec.seed,
        "world": world.config.key(), "budget": asdict(budget), "steps": trainer.state.global_step,
        "model_parameters": sum(p.numel() for p in policy.parameters()), "trainable_parameters": trainable,
        **metrics, "curves": curves(history), "train_seconds": train_seconds,
        "seconds": time.perf_counter() - start,
    }
