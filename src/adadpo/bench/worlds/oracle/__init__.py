"""The oracle world: prompts naming target words, true quality = F1 with the targets, a length-biased judge and
a tiny Llama reference trained by SFT in process (docs/benchmark.md). ``WORLD`` is its
:class:`adadpo.bench.world.World`; the modules load lazily, so naming the world imports no ``transformers``."""

from __future__ import annotations

from adadpo.bench.run import Budget
from adadpo.bench.world import World
from adadpo.bench.worlds.oracle.world import WorldConfig


def _build(config, cache_dir=None, progress=None):
    from adadpo.bench.worlds.oracle.data import build_world

    return build_world(config, cache_dir, progress)


def _run(world, spec, budget, threads=1):
    from adadpo.bench.worlds.oracle.run import train_and_evaluate

    return train_and_evaluate(world, spec, budget, threads=threads)


def _evaluate(world, policy, reference, tokenizer, seed):
    from adadpo.bench.worlds.oracle.evaluate import evaluate_policy

    return evaluate_policy(world, policy, reference, tokenizer, seed)


# one thread per worker: the committed oracle results are reproducible on one machine that way
WORLD = World("oracle", WorldConfig, Budget, _build, _run, _evaluate, threads=lambda workers: 1, title="Oracle",
              describe=lambda rows: "the oracle world")
