"""The oracle world's ground truth: quality, the judge, pair selection, demonstrations."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adadpo.bench.judge import best_and_worst, judge_prob
from adadpo.bench.worlds.oracle.world import (
    WORDS,
    Prompt,
    WorldConfig,
    demonstration,
    make_prompts,
    quality,
)

words = st.sampled_from(WORDS[:12])


def f1_by_counting(targets, response) -> float:
    """Independent F1: precision and recall over the two sets, harmonic mean."""
    got, want = set(response), set(targets)
    tp = sum(1 for w in got if w in want)
    if not got or tp == 0:
        return 0.0
    p, r = tp / len(got), tp / len(want)
    return 2 / (1 / p + 1 / r)


@given(st.lists(words, min_size=1, max_size=6, unique=True), st.lists(words, max_size=10))
def test_quality_is_set_f1(targets, response):
    q = quality(targets, response)
    assert q == pytest.approx(f1_by_counting(targets, response))
    assert 0.0 <= q <= 1.0
    assert quality(targets, response + response) == q  # set-level: repeating words changes length, not quality


def test_quality_best_answer_is_the_target_set():
    targets = ("apple", "river", "stone")
    assert quality(targets, list(targets)) == 1.0
    assert quality(targets, ["apple", "river"]) < 1.0  # omission
    assert quality(targets, ["apple", "river", "stone", "tiger"]) < 1.0  # filler
    assert quality(targets, []) == 0.0


def test_judge_probability_formula_and_bias():
    c = WorldConfig(tau=5.0, eta=2.0, length_scale=4.0)
    p = judge_prob(c, 0.8, 0.6, 7, 3)
    assert p == pytest.approx(1 / (1 + np.exp(-(5.0 * 0.2 + 2.0 * 4 / 4.0))))
    assert judge_prob(c, 0.5, 0.5, 9, 3) > 0.5  # same quality, longer wins: biased
    assert judge_prob(c, 0.5, 0.5, 9, 3, eta=0.0) == 0.5  # the true-quality judge is not
    assert judge_prob(c, 0.7, 0.4, 5, 5) + judge_prob(c, 0.4, 0.7, 5, 5) == pytest.approx(1.0)


def test_best_and_worst_reproduce_the_judge_on_two_answers():
    """With two answers, 'best' is a sample from the Bradley-Terry judge: frequency -> P(a beats b)."""
    c = WorldConfig()
    q, n = np.array([0.7, 0.5]), np.array([3, 8])
    rng = np.random.default_rng(0)
    wins = np.mean([best_and_worst(c, q, n, rng)[0] == 0 for _ in range(20000)])
    assert wins == pytest.approx(float(judge_prob(c, 0.7, 0.5, 3, 8)), abs=0.015)


def test_demonstrations_are_noisy_but_on_topic():
    c = WorldConfig()
    rng = random.Random(0)
    prompts = make_prompts(c, 400, rng)
    demos = [demonstration(c, p, rng) for p in prompts]
    q = np.array([quality(p.targets, d) for p, d in zip(prompts, demos)])
    filler = np.mean([sum(w not in p.targets for w in d) for p, d in zip(prompts, demos)])
    assert all(d for d in demos) and all(len(d) < c.max_new_tokens for d in demos)
    assert 0.5 < q.mean() < 0.95 and (q == 1.0).any() and (q < 1.0).any()
    assert filler == pytest.approx(c.filler_mean, rel=0.25)
    assert all(c.min_targets <= len(p.targets) <= c.max_targets and len(set(p.targets)) == len(p.targets) for p in prompts)


def test_prompt_text_and_config_key():
    assert Prompt(("apple", "river")).text == "apple river ="
    assert WorldConfig().key() == WorldConfig().key() != WorldConfig(eta=2.0).key()


@settings(max_examples=20)
@given(st.integers(1, 3), st.integers(0, 4))
def test_config_rejects_impossible_settings(min_t, extra):
    with pytest.raises(ValueError, match="min_targets"):
        WorldConfig(min_targets=min_t + extra + 1, max_targets=min_t + extra)
    with pytest.raises(ValueError, match="samples_per_prompt"):
        WorldConfig(samples_per_prompt=1)
