"""The World interface: what the benchmark framework needs from a world, and the registry of worlds by name.

A world is a package under :mod:`adadpo.bench.worlds` whose ``__init__`` defines ``WORLD``, a :class:`World`:
how to build it (or load it from the cache), how to train and evaluate one run in it, how to evaluate a policy,
and how it describes itself in reports. The sweep, the report and ``adadpo demo`` work with any of them.

The registry maps names to module paths, not to modules: a world is imported when a sweep or the demo names
it, so the framework never imports a world at import time and a world's modules may import the framework
(:mod:`adadpo.bench.run`, :mod:`adadpo.bench.judge`, ...) without an import cycle.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: The worlds, by the name a sweep's ``world: {kind: ...}`` or ``adadpo demo --world`` gives.
WORLDS = {"oracle": "adadpo.bench.worlds.oracle", "smollm2": "adadpo.bench.worlds.smollm2"}


def _nothing(rows: list[dict], methods: list[str]) -> str:
    return ""


@dataclass(frozen=True)
class World:
    """A benchmark world.

    ``config_cls`` and ``budget_cls`` are frozen dataclasses (the config has ``key()``, the hash its results and
    cache entries carry); ``build(config, cache_dir=None, progress=None)`` returns the built world;
    ``run(built, spec, budget, threads=...)`` trains one :class:`~adadpo.bench.run.RunSpec` and returns its
    results row; ``evaluate(built, policy, reference, tokenizer, seed)`` returns a policy's metrics;
    ``threads(workers)`` is each worker process's torch thread count. ``title`` names the world in a sweep
    report's default title, ``describe(rows)`` in the demo's ("the oracle world"), and ``examples_markdown`` /
    ``examples_text(rows, methods)`` give answers to read, for a report's appendix and the demo's terminal
    (empty where the world has none)."""

    name: str
    config_cls: type
    budget_cls: type
    build: Callable[..., Any]
    run: Callable[..., dict[str, Any]]
    evaluate: Callable[..., dict[str, Any]]
    threads: Callable[[int], int]
    title: str
    describe: Callable[[list[dict]], str]
    examples_markdown: Callable[[list[dict], list[str]], str] = _nothing
    examples_text: Callable[[list[dict], list[str]], str] = _nothing


def get_world(name: str) -> World:
    """The world registered as ``name`` (see :data:`WORLDS`)."""
    if name not in WORLDS:
        raise ValueError(f"world kind {name!r}: expected one of {list(WORLDS)}")
    return importlib.import_module(WORLDS[name]).WORLD
