"""What every world's held-out evaluation computes once it has its answers' true qualities, lengths and rewards.

* :func:`judged`: each policy answer against the reference's answer at the same index, the judge's probability
  as a soft outcome (a tie counts half): ``wr`` (the length-biased judge), ``lc`` (AlpacaEval 2's
  length-controlled win rate of the same outcomes, :mod:`adadpo.eval`), ``tq`` (the judge with ``eta = 0``: the
  true-quality win rate), and the mean length and quality of both sides;
* :func:`rewards`: on held-out pairs, with ``r(y) = log pi(y) - log pi_ref(y)``: ``reward_accuracy`` (share with
  ``r(y_w) > r(y_l)``), ``reward_margin``, and ``delta_chosen`` / ``delta_rejected``, the change of each side's
  log-likelihood from the reference (likelihood displacement when ``delta_chosen < 0``);
* :func:`length_only`: the reward accuracy a ranker that reads only the answers' lengths gets on the same pairs
  (``fewer`` tokens wins, ``more`` tokens wins; equal lengths count half): the bar a trained model's reward
  accuracy has to beat before it says anything beyond length.
"""

from __future__ import annotations

import numpy as np
from torch import Tensor

from adadpo.bench.judge import JudgeConfig, judge_prob
from adadpo.eval import length_controlled_winrate


def judged(config: JudgeConfig, q: np.ndarray, q_ref: np.ndarray, n: np.ndarray, n_ref: np.ndarray
           ) -> dict[str, float]:
    """``wr``, ``lc``, ``tq``, ``length``, ``quality``, ``ref_length``, ``ref_quality`` of answers with true
    qualities ``q`` and lengths ``n`` against the reference's ``q_ref`` and ``n_ref`` (see the module doc)."""
    pref = judge_prob(config, q, q_ref, n, n_ref)
    true_pref = judge_prob(config, q, q_ref, n, n_ref, eta=0.0)
    lc = length_controlled_winrate(pref, n, n_ref, warn_incomparable=False)  # runs compared among themselves
    return {
        "wr": float(pref.mean()), "lc": float(lc.lc), "tq": float(true_pref.mean()),
        "length": float(n.mean()), "quality": float(q.mean()),
        "ref_length": float(n_ref.mean()), "ref_quality": float(q_ref.mean()),
    }


def rewards(delta_chosen: Tensor, delta_rejected: Tensor, tie: float = 0.0) -> dict[str, float]:
    """Reward accuracy and margin of held-out pairs from each side's ``log pi - log pi_ref``; a pair whose two
    rewards are equal counts ``tie`` (0.5 where the untrained model itself is evaluated and ties are exact)."""
    margin = delta_chosen - delta_rejected
    hits = (margin > 0).float()
    if tie:
        hits = hits + tie * (margin == 0).float()
    return {
        "reward_accuracy": float(hits.mean()), "reward_margin": float(margin.mean()),
        "delta_chosen": float(delta_chosen.mean()), "delta_rejected": float(delta_rejected.mean()),
    }


def length_only(chosen: np.ndarray, rejected: np.ndarray) -> dict[str, float]:
    """Reward accuracy of the length-only rankers on pairs whose chosen and rejected answers have ``chosen`` and
    ``rejected`` tokens: ``fewer`` (the shorter answer wins), ``more`` (the longer wins); a tie counts half, so
    ``fewer + more = 1``."""
    chosen, rejected = np.asarray(chosen, dtype=float), np.asarray(rejected, dtype=float)
    if len(chosen) == 0:
        return {"fewer": float("nan"), "more": float("nan")}
    tie = 0.5 * (chosen == rejected)
    return {"fewer": float(np.mean((chosen < rejected) + tie)), "more": float(np.mean((chosen > rejected) + tie))}
