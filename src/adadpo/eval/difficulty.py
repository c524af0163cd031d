"""Instruction difficulty for the length-controlled win rate, estimated jointly over several models.

Comparisons ``r = 1..n``, each of model ``m(r)`` against the same baseline on instruction ``i(r)``, with soft
verdict ``p_r`` (P(model wins)) and standardised length difference ``t_r = tanh(delta_r / sd_m)``
(``delta = len_model - len_baseline``, ``sd_m`` its sample standard deviation over model ``m``'s comparisons).
The joint GLM, as in AlpacaEval's ``notebooks/instruction_difficulty.ipynb``, gives every model its own bias and
length slope and every instruction its own offset:

    P(model m wins r) = sigmoid(a_m + b_m * t_r + d_i(r)),

and the instruction offsets ``d_i`` are the difficulty. Sign (AlpacaEval's): a high ``d_i`` is an instruction on
which the models beat the baseline more often. A model's own comparisons alone cannot separate ``d`` from ``a_m``;
many models on the same instructions can (up to a common shift, which LC does not see).

The fit minimises the soft-label cross-entropy plus ``prec_d / 2 * |d|^2 + 1 / (2 C) * (|a|^2 + |b|^2)``: a weak
Gaussian prior on the offsets that keeps instructions every model wins (or loses) finite and fixes the common shift.
It is a damped Newton method whose instruction block is diagonal, so each step costs
``O(n + (2M)^3 + M * I)`` for ``M`` models and ``I`` instructions (a Schur complement), not ``O((2M + I)^3)``.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Sequence

import numpy as np

from adadpo.eval.glm import sigmoid

__all__ = ["DIFFICULTY_PRECISION", "estimate_difficulty", "length_features"]

DIFFICULTY_PRECISION = 0.1
"""Prior precision on the instruction offsets (a N(0, 3.2^2) prior). Measured on AlpacaEval 2's 57 stored models
(docs/evaluation.md): precisions 0.01, 0.1, 0.3, 1 give LC 0.75, 0.76, 0.79, 0.88 points from the leaderboard on
average, and the leaderboard's own stored coefficients read out with the estimated difficulty land 0.35, 0.18,
0.69, 1.77 points from it (0.1 comes closest to AlpacaEval's own difficulty). On 4 to 16 of those models, weaker
priors (0.01) drift further (up to 3 points on average with 4 models) than 0.1 to 0.3 (1.1 to 1.4)."""

_WEAK_PRECISION = 1e-4  # on the model biases and slopes: the library's default C = 1e4


def length_features(model_index: np.ndarray, delta: np.ndarray, n_models: int) -> tuple[np.ndarray, np.ndarray]:
    """``tanh(delta / sd_m)`` per comparison and ``sd_m`` per model (ddof 1; 0 when a model's difference is
    constant or it has one comparison, and then its feature is 0: no length term for that model)."""
    scale = np.zeros(n_models)
    for m in range(n_models):
        values = delta[model_index == m]
        if values.size > 1:
            sd = float(np.std(values, ddof=1))
            scale[m] = sd if np.isfinite(sd) else 0.0
    per_row = scale[model_index]
    t = np.where(per_row > 0, np.tanh(delta / np.where(per_row > 0, per_row, 1.0)), 0.0)
    return t, scale


def _codes(values: Sequence[Hashable]) -> tuple[list[Hashable], np.ndarray]:
    """The distinct values in first-seen order and each row's index into them."""
    index: dict[Hashable, int] = {}
    codes = np.fromiter((index.setdefault(v, len(index)) for v in values), dtype=np.int64, count=len(values))
    return list(index), codes


def _joint_fit(mi: np.ndarray, ii: np.ndarray, t: np.ndarray, p: np.ndarray, M: int, I: int,
               prec_d: float, max_iter: int = 100) -> np.ndarray:
    """Newton for ``(a, b, d)``; returns ``d`` of shape ``(I,)``."""
    prec_ab = np.full(2 * M, _WEAK_PRECISION)
    a, b, d = np.zeros(M), np.zeros(M), np.zeros(I)

    def objective(a, b, d):
        z = a[mi] + b[mi] * t + d[ii]
        return float(np.sum(np.logaddexp(0.0, z) - p * z) + 0.5 * (prec_ab @ np.r_[a, b] ** 2 + prec_d * d @ d))

    value = objective(a, b, d)
    pair = mi * I + ii
    for _ in range(max_iter):
        mu = sigmoid(a[mi] + b[mi] * t + d[ii])
        r, v = mu - p, mu * (1.0 - mu)
        g_ab = np.r_[np.bincount(mi, r, M), np.bincount(mi, r * t, M)] + prec_ab * np.r_[a, b]
        g_d = np.bincount(ii, r, I) + prec_d * d
        A = np.diag(np.r_[np.bincount(mi, v, M), np.bincount(mi, v * t * t, M)] + prec_ab)
        A[np.arange(M), M + np.arange(M)] = A[M + np.arange(M), np.arange(M)] = np.bincount(mi, v * t, M)
        B = np.vstack([np.bincount(pair, v, M * I).reshape(M, I), np.bincount(pair, v * t, M * I).reshape(M, I)])
        D = np.bincount(ii, v, I) + prec_d
        S = A - (B / D) @ B.T
        s_ab = np.linalg.lstsq(S, g_ab - B @ (g_d / D), rcond=None)[0]
        s_d = (g_d - B.T @ s_ab) / D
        decrease = float(g_ab @ s_ab + g_d @ s_d)
        step = 1.0
        while True:
            cand = (a - step * s_ab[:M], b - step * s_ab[M:], d - step * s_d)
            new = objective(*cand)
            if new <= value - 1e-4 * step * decrease or step < 1e-10:
                break
            step /= 2
        a, b, d = cand
        value = new
        if step * max(np.max(np.abs(s_ab)), np.max(np.abs(s_d))) < 1e-9:
            break
    return d


def estimate_difficulty(
    model: Sequence[Hashable],
    instruction: Sequence[Hashable],
    preference: np.ndarray,
    len_model: np.ndarray,
    len_baseline: np.ndarray,
    *,
    precision: float = DIFFICULTY_PRECISION,
) -> dict[Hashable, float]:
    """Difficulty ``d_i`` per instruction from several models' comparisons against one baseline (formula above).

    Args:
        model: per comparison, the model's name (any hashable), length ``n``.
        instruction: per comparison, the instruction's key (text, id, or e.g. ``(prompt_id, answer_index)``).
        preference: per comparison, P(model wins) in ``[0, 1]``, shape ``(n,)``.
        len_model, len_baseline: answer lengths in one unit, shape ``(n,)``.
        precision: prior precision on the offsets (:data:`DIFFICULTY_PRECISION`).

    Returns:
        ``{instruction: d}``, centred to mean zero over the instructions. An instruction that fewer than two
        models answered carries no information about its difficulty (its offset would just absorb that one
        model's verdict): it gets the median of the others, with a warning.

    Inputs are assumed validated (:func:`adadpo.eval.length_controlled_winrates` does it).
    """
    models, mi = _codes(model)
    instructions, ii = _codes(instruction)
    M, I = len(models), len(instructions)
    distinct_pairs = np.unique(mi * I + ii)
    informative = np.bincount(distinct_pairs % I, minlength=I) >= 2  # answered by two or more models
    if not informative.any():
        raise ValueError(
            f"no instruction was answered by two or more models ({M} model(s), {I} instruction(s)); the difficulty "
            "cannot be estimated: pass a difficulty table or compare several models on the same instructions"
        )
    rows = informative[ii]
    # Re-index the informative instructions densely.
    new_index = np.cumsum(informative) - 1
    t, _ = length_features(mi, np.asarray(len_model, float) - np.asarray(len_baseline, float), M)
    d_inf = _joint_fit(mi[rows], new_index[ii[rows]], t[rows], np.asarray(preference, float)[rows], M,
                       int(informative.sum()), precision)
    d_inf = d_inf - d_inf.mean()
    d = np.full(I, float(np.median(d_inf)))
    d[informative] = d_inf
    if not informative.all():
        warnings.warn(
            f"{int((~informative).sum())} of {I} instructions were answered by only one model: their difficulty is "
            "set to the median of the others", UserWarning, stacklevel=3,
        )
    return {key: float(value) for key, value in zip(instructions, d)}
