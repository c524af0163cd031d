"""The judge of every world: a Bradley-Terry preference that mostly follows true quality and also likes length.

``P(a beats b) = sigmoid(tau (q_a - q_b) + eta (len_a - len_b) / L)``, with a world's true qualities ``q`` and
lengths ``len`` (words) and its config's ``tau``, ``eta`` and ``length_scale`` (``L``); ``eta = 0`` is the
true-quality judge. Pure numpy.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class JudgeConfig(Protocol):
    """What the judge reads from a world's config."""

    tau: float
    eta: float
    length_scale: float


def judge_logit(config: JudgeConfig, q_a: np.ndarray, q_b: np.ndarray, len_a: np.ndarray, len_b: np.ndarray,
                eta: float | None = None) -> np.ndarray:
    """``tau (q_a - q_b) + eta (len_a - len_b) / L``: the judge's log-odds that ``a`` beats ``b``."""
    eta = config.eta if eta is None else eta
    return config.tau * (np.asarray(q_a) - np.asarray(q_b)) + eta * (np.asarray(len_a) - np.asarray(len_b)) / config.length_scale


def judge_prob(config: JudgeConfig, q_a, q_b, len_a, len_b, eta: float | None = None) -> np.ndarray:
    """``P(a beats b)`` under the judge (``eta=0``: the true-quality judge). Identical answers give 0.5."""
    return 1.0 / (1.0 + np.exp(-judge_logit(config, q_a, q_b, len_a, len_b, eta)))


def judge_utility(config: JudgeConfig, q: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Bradley-Terry utility ``tau q + eta len / L``; ``P(a beats b) = sigmoid(u_a - u_b)``."""
    return config.tau * np.asarray(q) + config.eta * np.asarray(length) / config.length_scale


def best_and_worst(config: JudgeConfig, q: np.ndarray, length: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
    """Indices of the chosen and rejected answer among one prompt's samples, as the noisy judge picks them.

    Adding standard Gumbel noise to the Bradley-Terry utilities and ranking reproduces the judge exactly for
    any two answers (the difference of two Gumbels is logistic), so every sampled label has the judge's noise.
    """
    noisy = judge_utility(config, q, length) + rng.gumbel(size=len(q))
    return int(np.argmax(noisy)), int(np.argmin(noisy))
