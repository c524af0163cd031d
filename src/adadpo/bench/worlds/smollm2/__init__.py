"""The real-model world: SmolLM2-135M-Instruct answering prompts whose truth a program checks, a length-biased
judge, on-policy pairs of its own answers (docs/benchmark.md, "The real-model world"). ``WORLD`` is its
:class:`adadpo.bench.world.World`; the heavy modules load lazily."""

from __future__ import annotations

import os

from adadpo.bench.world import World
from adadpo.bench.worlds.smollm2.data import LMWorldConfig
from adadpo.bench.worlds.smollm2.report import examples_markdown, examples_text
from adadpo.bench.worlds.smollm2.run import LMBudget


def _build(config, cache_dir=None, progress=None):
    from adadpo.bench.worlds.smollm2.data import build_world

    return build_world(config, cache_dir, progress)


def _cores() -> int:
    """The cores this process may run on (its affinity: ``taskset`` and cgroup cpusets count), else all."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _run(world, spec, budget, threads=None):
    from adadpo.bench.worlds.smollm2.run import train_and_evaluate

    return train_and_evaluate(world, spec, budget, threads=threads)


def _evaluate(world, policy, reference, tokenizer, seed):
    from adadpo.bench.worlds.smollm2.evaluate import evaluate_policy

    return evaluate_policy(world, policy, reference, tokenizer, seed)


def _describe(rows: list[dict]) -> str:
    return f"the real-model world ({rows[0]['model_parameters'] / 1e6:.1f}M-parameter policy)"


WORLD = World("smollm2", LMWorldConfig, LMBudget, _build, _run, _evaluate,
              threads=lambda workers: max(1, _cores() // workers), title="Real-model (smollm2)",
              describe=_describe, examples_markdown=examples_markdown, examples_text=examples_text)
