"""Build (or load from cache) the world's reference policy, on-policy preference pairs and evaluation set.

``build_world(config, cache_dir)``:

1. trains the reference policy by SFT on noisy demonstrations;
2. samples ``samples_per_prompt`` answers per training prompt from it, keeps the judge's best and worst as
   chosen and rejected (on-policy pairs, as in SimPO and AdaDPO); pairs whose two answers are identical
   are dropped;
3. for held-out prompts: the same kind of pairs (held-out reward accuracy, likelihood displacement) and
   reference samples that every trained policy is compared with.

Everything lands in ``cache_dir/oracle-<config.key()>``, written to a temporary directory and renamed into
place, so a killed build leaves nothing half-written and concurrent builds do not collide.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from adadpo.bench.cache import SavedReference, build_once, default_cache_dir
from adadpo.bench.judge import best_and_worst
from adadpo.bench.worlds.oracle.policy import make_model, make_tokenizer, response_logps, sample, sft
from adadpo.bench.worlds.oracle.world import Prompt, WorldConfig, make_prompts, quality

#: Reference samples per held-out prompt that each policy is judged against.
EVAL_SAMPLES = 2

Progress = Callable[[str, int, int], None]


@dataclass
class World(SavedReference):
    """A built world: its config, where the reference policy is saved, and its data."""

    config: WorldConfig
    path: Path
    train_pairs: list[dict]  # prompt, chosen, rejected (TRL's standard format) + targets
    eval_pairs: list[dict]
    eval_prompts: list[Prompt]
    eval_reference: list[list[str]]  # EVAL_SAMPLES reference answers per held-out prompt, prompt-major
    eval_reference_logps: list[float]

    @property
    def reference_path(self) -> Path:
        return self.path / "reference"

def _pairs(config: WorldConfig, prompts: list[Prompt], answers: list[list[str]], rng: np.random.Generator) -> list[dict]:
    k = config.samples_per_prompt
    rows = []
    for i, prompt in enumerate(prompts):
        group = answers[i * k : (i + 1) * k]
        q = np.array([quality(prompt.targets, a) for a in group])
        length = np.array([len(a) for a in group])
        best, worst = best_and_worst(config, q, length, rng)
        if group[best] == group[worst]:
            continue
        rows.append({"prompt": prompt.text, "chosen": " " + " ".join(group[best]),
                     "rejected": " " + " ".join(group[worst]), "targets": list(prompt.targets)})
    return rows


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def _read_jsonl(path: Path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f]


def _build(config: WorldConfig, out: Path, progress: Progress | None) -> None:
    rng = random.Random(config.seed)
    sft_prompts = make_prompts(config, config.n_sft, rng)
    train_prompts = make_prompts(config, config.n_train_prompts, rng)
    eval_prompts = make_prompts(config, config.n_eval_prompts, rng)

    tokenizer = make_tokenizer(config)
    model = make_model(config, tokenizer)
    sft(model, tokenizer, config, sft_prompts, progress=(lambda i, n: progress("SFT of the reference", i, n)) if progress else None)
    model.save_pretrained(out / "reference")
    tokenizer.save_pretrained(out / "reference")

    if progress:
        progress("sampling preference pairs", 0, 1)
    k, gen = config.samples_per_prompt, np.random.default_rng(config.seed + 2)
    train = sample(model, tokenizer, [p.text for p in train_prompts], n=k, max_new_tokens=config.max_new_tokens, seed=config.seed + 3)
    held = sample(model, tokenizer, [p.text for p in eval_prompts], n=k, max_new_tokens=config.max_new_tokens, seed=config.seed + 4)
    ref = sample(model, tokenizer, [p.text for p in eval_prompts], n=EVAL_SAMPLES, max_new_tokens=config.max_new_tokens,
                 seed=config.seed + 5)
    ref_logps = response_logps(model, tokenizer, [p.text for p in eval_prompts for _ in range(EVAL_SAMPLES)], ref)
    _write_jsonl(out / "train_pairs.jsonl", _pairs(config, train_prompts, train, gen))
    _write_jsonl(out / "eval_pairs.jsonl", _pairs(config, eval_prompts, held, gen))
    (out / "eval.json").write_text(json.dumps({
        "targets": [list(p.targets) for p in eval_prompts], "reference": ref, "reference_logps": ref_logps.tolist(),
    }))
    (out / "world.json").write_text(json.dumps(asdict(config), indent=2))
    if progress:
        progress("sampling preference pairs", 1, 1)


def build_world(config: WorldConfig, cache_dir: str | os.PathLike | None = None, progress: Progress | None = None) -> World:
    """Load the world for ``config`` from ``cache_dir`` (default ``$ADADPO_CACHE`` or ``~/.cache/adadpo``),
    building it first if absent (about half a minute, on one thread whatever the core count)."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = root / f"oracle-{config.key()}"

    def build(tmp: Path) -> None:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # the same floats on any machine (and no fight with other processes)
        try:
            with torch.random.fork_rng():
                _build(config, tmp, progress)
        finally:
            torch.set_num_threads(threads)

    build_once(path, "world.json", build)
    data = json.loads((path / "eval.json").read_text())
    return World(
        config=config, path=path,
        train_pairs=_read_jsonl(path / "train_pairs.jsonl"), eval_pairs=_read_jsonl(path / "eval_pairs.jsonl"),
        eval_prompts=[Prompt(tuple(t)) for t in data["targets"]], eval_reference=data["reference"],
        eval_reference_logps=data["reference_logps"],
    )
