"""A world keeps every answer it sampled, and a world with another truth or judge is built from them without
sampling again (the step a truth-program change takes). Tiny stand-in model (tests/lmworld_fixtures.py)."""

from __future__ import annotations

import gzip
import json

import pytest
import torch

pytest.importorskip("gguf")

import lmworld_fixtures
from lmworld_fixtures import stand_in_truth, tiny_config

from adadpo.bench.worlds.smollm2 import data as lmdata
from adadpo.bench.worlds.smollm2 import policy as lmpolicy
from adadpo.bench.worlds.smollm2.data import SAMPLES_FILE, build_world, load_samples, sampling_settings

tiny_model = lmworld_fixtures.tiny_model

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def world(tiny_model, tmp_path_factory):
    with stand_in_truth():
        return build_world(tiny_config(tiny_model), tmp_path_factory.mktemp("cache"))


def test_a_world_keeps_all_its_samples(world):
    cfg = world.config
    train, held = load_samples(world.path, cfg)
    assert len(train.texts) == cfg.n_train_prompts * cfg.samples_per_prompt
    assert len(held.texts) == cfg.n_eval_prompts * cfg.samples_per_prompt
    assert len(train.tokens) == len(train.ended) == len(train.texts)
    # the reference answers of the held-out set are the first eval_samples of each held-out prompt's samples
    k, e = cfg.samples_per_prompt, cfg.eval_samples
    firsts = [held.texts[i * k + j] for i in range(cfg.n_eval_prompts) for j in range(e)]
    assert firsts == world.eval_reference["texts"]
    # every training pair's two answers are samples of its prompt
    for row in world.train_pairs:
        assert row["chosen"][0]["content"] in train.texts and row["rejected"][0]["content"] in train.texts
    with gzip.open(world.path / SAMPLES_FILE, "rt") as f:
        assert json.load(f)["sampling"] == sampling_settings(cfg)


@pytest.mark.parametrize("change", [{"eta": 3.0}, {"tau": 2.0, "length_scale": 5.0}, {"eval_samples": 1},
                                    {"eval_pairs_per_prompt": 1, "eta": 0.0}])
def test_another_judge_is_built_from_the_samples_without_sampling(world, tiny_model, tmp_path, monkeypatch, change):
    """Same samples, other judge: the world equals one built by sampling afresh (sampling is deterministic)."""
    config = tiny_config(tiny_model, **change)
    assert config.key() != world.config.key()
    with stand_in_truth():
        fresh = build_world(config, tmp_path / "fresh")
        monkeypatch.setattr(lmpolicy, "sample", lambda *a, **k: pytest.fail("sampled although samples were given"))
        reused = build_world(config, tmp_path / "reused", samples_from=world.path)
    assert reused.train_pairs == fresh.train_pairs and reused.eval_pairs == fresh.eval_pairs
    assert reused.eval_reference == fresh.eval_reference and reused.stats == fresh.stats


@pytest.mark.parametrize("change", [{"max_new_tokens": 5}, {"seed": 1}, {"temperature": 0.9},
                                    {"samples_per_prompt": 4}, {"n_eval_prompts": 6}, {"system": "Be brief."}])
def test_samples_of_other_sampling_settings_are_refused_naming_them(world, tiny_model, tmp_path, change):
    config = tiny_config(tiny_model, **change)
    with pytest.raises(ValueError, match=f"samples_from=.*other settings \\({next(iter(change))}\\)"):
        build_world(config, tmp_path, samples_from=world.path)


def test_a_world_without_samples_says_so(world, tiny_model, tmp_path):
    with pytest.raises(FileNotFoundError, match=f"samples_from=.*no {SAMPLES_FILE}"):
        build_world(tiny_config(tiny_model, eta=2.0), tmp_path / "c", samples_from=tmp_path)


def test_a_snapshot_carries_the_samples(world, tmp_path):
    dest = lmdata.save_snapshot(world, tmp_path / "snap")
    assert load_samples(dest, world.config)[0] == load_samples(world.path, world.config)[0]
