"""One run in the oracle world: train a policy from the world's reference with ``AdaDPOTrainer``, then evaluate it.

Every method shares the world, the pairs, the seed and the :class:`~adadpo.bench.run.Budget`; only the loss differs.
"""

from __future__ import annotations

import time
from typing import Any

from adadpo import LOSSES
from adadpo.bench.run import Budget, RunSpec, run_fields, start_run, train_policy
from adadpo.bench.worlds.oracle.data import World
from adadpo.bench.worlds.oracle.evaluate import evaluate_policy


def train_and_evaluate(world: World, spec: RunSpec, budget: Budget = Budget(), threads: int | None = 1) -> dict[str, Any]:
    """Train one policy and evaluate it; returns the run's settings, metrics, curves and wall time."""
    from datasets import Dataset

    start = time.perf_counter()
    tokenizer, policy = start_run(world, threads)
    reference = world.load_reference()
    history: list[dict] = []
    if spec.trained:
        data = Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in world.train_pairs])
        needs_ref = LOSSES[spec.method.loss].needs_reference
        history = train_policy(policy, reference if needs_ref else None, data, tokenizer, spec, spec.budget(budget),
                               max_length=64)
    policy.eval()
    metrics = evaluate_policy(world, policy, reference, tokenizer, seed=spec.seed)
    return {**run_fields(spec, world.config.key(), budget, history), **metrics,
            "seconds": time.perf_counter() - start}
