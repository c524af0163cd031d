"""Held-out evaluation of a trained policy against the reference policy, in a world where truth is known.

Per held-out prompt the policy answers ``EVAL_SAMPLES`` times; answer ``i`` is judged against the reference's
answer ``i`` to the same prompt. Soft outcomes (the judge's probability) are used, so ties count half.

* ``wr``: win rate as the length-biased judge sees it;
* ``lc``: the AlpacaEval 2 length-controlled win rate of those outcomes (:mod:`adadpo.eval`);
* ``tq``: true-quality win rate, the judge with ``eta = 0``: what ``lc`` tries to estimate;
* ``length``, ``quality``: the policy's mean answer length and true quality (``ref_*``: the reference's);
* ``kl``: ``KL(pi || pi_ref)`` by Monte Carlo, ``mean(log pi(y) - log pi_ref(y))`` over the policy's answers,
  both scored as the sampling process that produced them (see :func:`adadpo.bench.worlds.oracle.policy.response_logps`);
* on held-out preference pairs, with ``r(y) = log pi(y) - log pi_ref(y)``: ``reward_accuracy``
  (share with ``r(y_w) > r(y_l)``), ``reward_margin`` (mean ``r(y_w) - r(y_l)``), and ``delta_chosen`` /
  ``delta_rejected``: mean ``r`` of the chosen and of the rejected answers, the change of their
  log-likelihood from the reference (likelihood displacement when ``delta_chosen < 0``).
"""

from __future__ import annotations

import numpy as np

from adadpo.bench.evaluate import judged, rewards
from adadpo.bench.worlds.oracle.data import EVAL_SAMPLES, World
from adadpo.bench.worlds.oracle.policy import response_logps, sample
from adadpo.bench.worlds.oracle.world import quality


def _words(text: str) -> list[str]:
    return text.split()


def evaluate_policy(world: World, policy, reference, tokenizer, seed: int) -> dict[str, float]:
    """Metrics of ``policy`` vs ``reference`` on the world's held-out prompts and pairs (see module doc)."""
    cfg = world.config
    prompts = [p.text for p in world.eval_prompts]
    flat_prompts = [p for p in prompts for _ in range(EVAL_SAMPLES)]
    targets = [p.targets for p in world.eval_prompts for _ in range(EVAL_SAMPLES)]
    answers, ended = sample(policy, tokenizer, prompts, n=EVAL_SAMPLES, max_new_tokens=cfg.max_new_tokens,
                            seed=10_000 + seed, with_ended=True)
    q = np.array([quality(t, a) for t, a in zip(targets, answers)])
    q_ref = np.array([quality(t, a) for t, a in zip(targets, world.eval_reference)])
    n = np.array([len(a) for a in answers], dtype=float)
    n_ref = np.array([len(a) for a in world.eval_reference], dtype=float)
    kl = (response_logps(policy, tokenizer, flat_prompts, answers, ended)
          - response_logps(reference, tokenizer, flat_prompts, answers, ended)).mean().item()

    pair_prompts = [r["prompt"] for r in world.eval_pairs]
    sides = {}
    for side in ("chosen", "rejected"):
        ans = [_words(r[side]) for r in world.eval_pairs]
        sides[side] = (response_logps(policy, tokenizer, pair_prompts, ans)
                       - response_logps(reference, tokenizer, pair_prompts, ans))
    return {**judged(cfg, q, q_ref, n, n_ref), "kl": float(kl), **rewards(sides["chosen"], sides["rejected"])}
