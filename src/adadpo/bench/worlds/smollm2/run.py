"""One run in the real-model world: train the reference's top layers with ``AdaDPOTrainer``, then evaluate.

What is trained: the top ``train_layers`` transformer blocks and the final norm; the embeddings (tied to the
LM head in SmolLM2) and the blocks below stay frozen. On 2 CPU cores a full fine-tune of the 135M model costs
about 11x a top-4-block step (the backward pass through all 30 blocks and the 28M-parameter embedding's
gradient and AdamW state), which would leave a handful of runs per session; LoRA still backpropagates
through every block. Every method gets the same trainable set, data, seed, steps and schedule.

The reference log-probs are precomputed by TRL (``precompute_ref_log_probs``) on the world's on-disk
dataset, so TRL's cache makes them a one-time cost per world rather than a second forward in every step.
The frozen blocks' output is cached per token sequence (:mod:`adadpo.bench.worlds.smollm2.trunk`) and kept
beside the world (``trunk-<trained blocks>.pt``), so it is computed once per world, by the first run of the
first process (the others wait for it: :func:`shared_trunk_cache`), and a step runs the trained blocks and
the head only. The trained blocks run on each row's real tokens, not on the padded batch (:data:`UNPADDED_TOP`,
``cached_trunk(..., unpadded=True)``): the same losses and gradients up to float rounding, 0.62x the training
time of the padded path with a warm cache (``benchmarks/smollm2_trunk.py``; the figures in
:mod:`adadpo.bench.worlds.smollm2.trunk`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from adadpo import LOSSES
from adadpo.bench.run import Budget, RunSpec, run_fields, start_run, train_policy
from adadpo.bench.worlds.smollm2.data import World
from adadpo.bench.worlds.smollm2.evaluate import CAP_PROBE, evaluate_policy
from adadpo.bench.worlds.smollm2.trunk import TrunkCache, cached_trunk, file_lock


@dataclass(frozen=True)
class LMBudget(Budget):
    """The benchmark's :class:`~adadpo.bench.run.Budget` plus how many top blocks are trained (see the module doc)
    and how much of the world a run uses: ``train_pairs``, the first N training pairs (0, or more than the world
    has: all); ``eval_prompts``, the first N held-out prompts, with their reference answers and held-out pairs
    (0: all; the world orders its prompts round-robin by kind, so a prefix keeps the kinds balanced);
    ``probe_prompts``, how many held-out prompts the cap probe samples at twice the cap (0: never probe;
    :class:`~adadpo.bench.worlds.smollm2.evaluate.CapProbe`). The study uses all of it; ``adadpo demo`` a part."""

    batch_size: int = 8
    epochs: int = 1
    logging_steps: int = 2
    train_layers: int = 4
    train_pairs: int = 0
    eval_prompts: int = 0
    probe_prompts: int = CAP_PROBE.prompts

    def __post_init__(self) -> None:
        for name in ("train_pairs", "eval_prompts", "probe_prompts"):
            if getattr(self, name) < 0:
                raise ValueError(f"budget.{name}={getattr(self, name)}: expected >= 0 (0: "
                                 f"{'never probe' if name == 'probe_prompts' else 'all of the world'})")


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
#: With the trunk cache, run the trained blocks on each row's real tokens only, not on the padded batch
#: (False: on the padded batch, as before; see the module doc).
UNPADDED_TOP = True
_TRUNKS: dict[tuple[str, int], TrunkCache] = {}


def trunk_path(world: World, trained: int) -> Path:
    """Where the world's trunk cache for ``trained`` top blocks is kept between processes (beside the world)."""
    return Path(world.path) / f"trunk-{trained}.pt"


def fill_trunk(trainer, cache: TrunkCache, trained: int) -> int:
    """Put every training sequence of ``trainer``'s dataset (as its collator builds them) into ``cache``;
    returns how many were computed. After TRL's precomputed reference log-probs this finds them all."""
    from torch.utils.data import DataLoader

    computed = 0
    loader = DataLoader(trainer.train_dataset, batch_size=trainer.args.per_device_train_batch_size,
                        collate_fn=trainer.data_collator, shuffle=False)
    for batch in loader:
        computed += cache.fill(trainer.model, trained, batch["input_ids"], batch["attention_mask"])
    return computed


@contextmanager
def shared_trunk_cache(world: World, policy, trained: int) -> Iterator[Callable[[Any], None]]:
    """Serve ``policy``'s frozen trunk, inside the block, from the process's cache for ``world``, loaded from
    :func:`trunk_path` when a process has saved it; yields the ``before_train(trainer)`` hook that completes
    the cache (:func:`fill_trunk`) and saves it.

    While no process has saved it, a run holds a lock on it from before its trainer is built (TRL's reference
    precompute fills most of the cache) until it is saved, so two workers do not compute the same trunk
    twice: the second waits, then loads the cache and finds TRL's reference log-probs cached as well."""
    if trained >= len(policy.get_decoder().layers):  # nothing frozen: nothing to cache
        yield lambda trainer: None
        return
    key, path = (world.config.key(), trained), trunk_path(world, trained)
    lock = contextlib.ExitStack()
    if not path.exists():
        lock.enter_context(file_lock(path.with_name(f".{path.name}.lock")))
    try:
        cache = _TRUNKS.setdefault(key, TrunkCache())
        if not cache.saved and path.exists():  # saved by another process (or an earlier one)
            cache.outputs.update(TrunkCache.load(path).outputs)
            cache.saved = True

        def before_train(trainer) -> None:
            if fill_trunk(trainer, cache, trained) or not path.exists():
                cache.save(path)
                cache.saved = True
            lock.close()

        with cached_trunk(policy, trained, cache, unpadded=UNPADDED_TOP):
            yield before_train
    finally:
        lock.close()


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
        if budget.train_pairs and budget.train_pairs < len(data):
            data = data.select(range(budget.train_pairs))
        needs_ref = LOSSES[spec.method.loss].needs_reference
        # No truncation (answers are at most max_new_tokens): TRL's truncation filter closes over the whole
        # config, which changes the dataset's fingerprint every run and defeats TRL's cache of the reference
        # log-probs.
        blocks = len(policy.get_decoder().layers)
        trained = budget.train_layers if TRUNK_CACHE and 0 < budget.train_layers else blocks
        with shared_trunk_cache(world, policy, trained) as before_train:
            history = train_policy(policy, None, data, tokenizer, spec, spec.budget(budget), max_length=None,
                                   precompute_ref_log_probs=needs_ref, before_train=before_train)
    train_seconds = time.perf_counter() - start
    policy.eval()
    metrics = evaluate_policy(world.held_out(budget.eval_prompts) if budget.eval_prompts else world, policy,
                              world.load_reference() if spec.trained else policy, tokenizer, seed=spec.seed,
                              probe=replace(CAP_PROBE, prompts=budget.probe_prompts))
    return {
        **run_fields(spec, world.config.key(), budget, history),
        "model_parameters": sum(p.numel() for p in policy.parameters()), "trainable_parameters": trainable,
        **metrics, "train_seconds": train_seconds, "seconds": time.perf_counter() - start,
        # how the trained blocks ran (the same losses up to float rounding either way): rows written before this
        # field trained them on the padded batch
        "trained_blocks_path": ("unpadded" if TRUNK_CACHE and UNPADDED_TOP else "padded") if spec.trained else None,
    }
