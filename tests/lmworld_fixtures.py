"""Shared pieces of the real-model world's tests (tests/test_lmworld*.py): a tiny stand-in for SmolLM2 (the
``tiny_model`` fixture, imported by the test modules) and tiny world settings (:func:`tiny_config`).

The stand-in is the tiny Llama GGUF of :mod:`gguf_tiny` (byte-level BPE, ChatML control tokens, SmolLM2's chat
template, tied embeddings), written with 4 blocks instead of 2 so that ``LMBudget()``'s default
``train_layers=4`` (what ``adadpo demo`` uses) fits, and converted once per session by
``adadpo.bench.worlds.smollm2.model.convert_gguf`` into an ordinary ``transformers`` checkpoint directory.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import gguf_tiny
import pytest

#: Blocks of the stand-in model.
LAYERS = 4
#: A world small enough to build in about a second on one thread.
TINY_WORLD = dict(n_train_prompts=12, n_eval_prompts=7, samples_per_prompt=3, eval_samples=2, eval_pairs_per_prompt=1,
                  max_new_tokens=6)

_BUILT: dict[str, Path] = {}


def tiny_model_dir(tmp_path_factory) -> Path:
    """The converted tiny model's directory, built on first use in this process."""
    if "dir" not in _BUILT:
        from adadpo.bench.worlds.smollm2.model import convert_gguf

        root = tmp_path_factory.mktemp("lmworld-tiny-model")
        with mock.patch.dict(gguf_tiny.CONFIG, num_hidden_layers=LAYERS):
            gguf_tiny.write_tiny_llama_gguf(root / "tiny.gguf")
        convert_gguf(root / "tiny.gguf", root / "model")
        _BUILT["dir"] = root / "model"
    return _BUILT["dir"]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """The stand-in model's directory (one per test session)."""
    return tiny_model_dir(tmp_path_factory)


def tiny_config(model: Path | str, **overrides):
    """The settings of a tiny world of ``model`` (``TINY_WORLD``, with ``overrides``)."""
    from adadpo.bench.worlds.smollm2.data import LMWorldConfig

    return LMWorldConfig(model=str(model), **{**TINY_WORLD, **overrides})


def tiny_truth(task, answer: str) -> float:
    """A stand-in for the truth program on the tiny model's random answers, which the real program scores 0
    (so no held-out pair would be truly better): the share of letters among the answer's characters, to one
    decimal."""
    return round(sum(c.isalpha() for c in answer) / len(answer), 1) if answer.strip() else 0.0


@contextmanager
def stand_in_truth():
    """Build and evaluate tiny worlds with :func:`tiny_truth` as their truth."""
    with mock.patch("adadpo.bench.worlds.smollm2.data.quality", tiny_truth), \
            mock.patch("adadpo.bench.worlds.smollm2.evaluate.quality", tiny_truth):
        yield
