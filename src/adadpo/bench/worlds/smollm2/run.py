"""One run in the real-model world: train the reference's top layers with ``AdaDPOTrainer``, then evaluate.

What is trained: the top ``train_layers`` transformer blocks and the final norm; the embeddings (tied to the
LM head in SmolLM2) and the blocks below stay frozen. On 2 CPU cores a full fine-tune of the 135M model costs
about 11x a top-4-block step (the backward pass through all 30 blocks and the 28M-parameter embedding's
gradient and AdamW state), which would leave a handful of runs per session; LoRA still backpropagates
through every block. Every method gets the same trainable set, data, seed, steps and schedule.

The reference log-probs are precomputed by TRL (``precompute_ref_log_probs``) on the world's on-disk
dataset, so TRL's cache makes them a one-time cost per world rather than a second forward in every step.
The frozen blocks' output is cached per token sequence (:mod:`adadpo.bench.worlds.smollm2.trunk`), once per process and
world, so a step runs the trained blocks and the head only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from adadpo import LOSSES
from adadpo.bench.run import Budget, RunSpec, run_fields, start_run, train_policy
from adadpo.bench.worlds.smollm2.data import World
from adadpo.bench.worlds.smollm2.evaluate import evaluate_policy
from adadpo.bench.worlds.smollm2.trunk import TrunkCache, cached_trunk


@dataclass(frozen=True)
class LMBudget(Budget):
    """The benchmark's :class:`~adadpo.bench.run.Budget` plus how many top blocks are trained (see the module doc)."""

    batch_size: int = 8
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


#: Serve the frozen blocks from a cache while training (False: run them every step, as before the cache).
TRUNK_CACHE = True
_TRUNKS: dict[tuple[str, int], TrunkCache] = {}


def train_and_evaluate(world: World, spec: RunSpec, budget: LMBudget = LMBudget(), threads: int | None = None
                       ) -> dict[str, Any]:
    """Train one policy and evaluate it; returns the run's settings, metrics, curves, examples and wall time."""
    from datasets import load_from_disk

    start = time.perf_counter()
    tokenizer, policy = start_run(world, threads)
    trainable = freeze_below(policy, budget.train_layers)
    history: list[dict] = []
    if spec.trained:
        data = load_from_disk(str(world.train_dataset_path))
        needs_ref = LOSSES[spec.method.loss].needs_reference
        # No truncation (answers are at most max_new_tokens): TRL's truncation filter closes over the whole
        # config, which changes the dataset's fingerprint every run and defeats TRL's cache of the reference
        # log-probs.
        cache = _TRUNKS.setdefault((world.config.key(), budget.train_layers), TrunkCache())
        blocks = len(policy.get_decoder().layers)
        trained = budget.train_layers if TRUNK_CACHE and 0 < budget.train_layers else blocks
        with cached_trunk(policy, trained, cache):
            history = train_policy(policy, None, data, tokenizer, spec, spec.budget(budget), max_length=None,
                                   precompute_ref_log_probs=needs_ref)
    train_seconds = time.perf_counter() - start
    policy.eval()
    metrics = evaluate_policy(world, policy, world.load_reference() if spec.trained else policy, tokenizer,
                              seed=spec.seed)
    return {
        **run_fields(spec, world.config.key(), budget, history),
        "model_parameters": sum(p.numel() for p in policy.parameters()), "trainable_parameters": trainable,
        **metrics, "train_seconds": train_seconds, "seconds": time.perf_counter() - start,
    }
