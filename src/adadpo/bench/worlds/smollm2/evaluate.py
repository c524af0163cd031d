"""Held-out evaluation of a trained policy against the reference model in the real-model world.

The same measurements as the oracle's (:mod:`adadpo.bench.evaluate`, :mod:`adadpo.bench.worlds.oracle.evaluate`), with the truth of
:func:`adadpo.bench.worlds.smollm2.tasks.quality` and lengths in words. Per held-out prompt the policy answers
``eval_samples`` times with the world's sampling process; answer ``i`` is judged against the reference's
answer ``i``; outcomes are the judge's probabilities (ties count half).

* ``wr``, ``lc`` (AlpacaEval 2's length-controlled win rate of the same outcomes), ``tq`` (the judge with
  ``eta = 0``: true-quality win rate);
* ``length``, ``quality`` (``ref_length``, ``ref_quality`` for the reference's answers);
* ``eval_comparisons``: how many judged comparisons the win rates average (``n_eval_prompts x eval_samples``);
* ``kl``: ``KL(pi_T || pi_ref,T)`` between the two models' sampling processes at the world's temperature,
  Monte Carlo over the policy's first answer to each held-out prompt, each scored exactly
  (:func:`adadpo.bench.worlds.smollm2.policy.response_logps`); 0 for the untrained reference itself;
* on the held-out pairs, whose chosen answer is truly better (:func:`adadpo.bench.worlds.smollm2.data.truth_pairs`), with
  ``r(y) = log pi(y) - log pi_ref(y)`` at temperature 1: ``reward_accuracy`` (the share ranked as the truth
  ranks them, ties half: 0.5 for the untrained reference), ``reward_margin``, ``delta_chosen``,
  ``delta_rejected`` (likelihood displacement when ``delta_chosen < 0``), over ``eval_pairs`` pairs;
* ``length_only``: the reward accuracy of ranking the same pairs by length alone (``fewer`` tokens wins,
  ``more`` tokens wins: :func:`adadpo.bench.evaluate.length_only`), the bar of the gate;
* ``comparisons``: every judged comparison (:mod:`adadpo.bench.records`), which the sweep moves to a
  compressed file beside ``results.jsonl`` before it appends the row;
* ``cap_probe`` (only for a run whose share of answers that ended is below ``probe.below``): on a seeded sample
  of ``probe.prompts`` held-out prompts, one answer each sampled with twice the cap, the share that ended
  within the cap (``ended_at_cap``) and within twice the cap (``ended_at_2cap``): a model that rambles past
  the cap ends by twice the cap, one that has lost the ability to stop does not (:class:`CapProbe`);
* ``examples``: the first answers to a few held-out prompts, beside the reference's, to read;
* ``eval_seconds``: wall time of each part (``sample``, ``kl``, ``pairs``, and ``probe`` when it ran), the
  evaluation's profile.

The scoring passes run the frozen trunk (the blocks the policy shares with the reference) once per batch:
the policy's and the reference's KL scoring of a batch share it, and the held-out pairs' batches, the same in
every run, are computed by a process's first run only (:func:`~adadpo.bench.worlds.smollm2.trunk.shared_trunk`);
the results are bit for bit those of running every block.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from adadpo.bench import records
from adadpo.bench.evaluate import judged, length_only, rewards
from adadpo.bench.judge import judge_prob
from adadpo.bench.worlds.smollm2.data import World
from adadpo.bench.worlds.smollm2.policy import response_logps, sample
from adadpo.bench.worlds.smollm2.tasks import quality, words
from adadpo.bench.worlds.smollm2.trunk import TrunkMemo, shared_blocks, shared_trunk

#: Held-out prompts whose answers are kept in each run's row, to print side by side.
EXAMPLES = 6

#: The frozen trunk's output on the held-out pairs' batches, per world: the same batches in every run.
_PAIR_TRUNKS: dict[str, TrunkMemo] = {}


@dataclass(frozen=True)
class CapProbe:
    """Rambling or collapse: for a run whose share of answers that ended before the cap (``max_new_tokens``) is
    below ``below``, sample one answer to each of ``prompts`` held-out prompts (a sample drawn with the run's
    evaluation seed) with twice the cap, and report the share that ended within the cap and within twice it.
    ``prompts=0`` never probes."""

    prompts: int = 24
    below: float = 0.95


#: The evaluation's default probe (an option of :func:`evaluate_policy`).
CAP_PROBE = CapProbe()


def cap_probe(world: World, policy, tokenizer, seed: int, prompts: int) -> dict:
    """The :class:`CapProbe` figures of ``policy`` on ``prompts`` held-out prompts (see the module doc)."""
    cfg = world.config
    n = len(world.eval_tasks)
    chosen = sorted(np.random.default_rng([seed, 31]).choice(n, size=min(prompts, n), replace=False).tolist())
    cap = cfg.max_new_tokens
    with torch.random.fork_rng():
        out = sample(policy, tokenizer, [world.prompt_text(tokenizer, world.eval_tasks[i]) for i in chosen], n=1,
                     max_new_tokens=2 * cap, temperature=cfg.temperature, seed=20_000 + seed)
    # an answer ends within the cap when its EOS is among the first ``cap`` new tokens (``tokens`` exclude EOS)
    within = [e and len(t) < cap for t, e in zip(out.tokens, out.ended)]
    return {"prompt_ids": chosen, "cap": cap, "ended_at_cap": float(np.mean(within)),
            "ended_at_2cap": float(np.mean(out.ended)), "tokens": float(np.mean([len(t) for t in out.tokens]))}


def evaluate_policy(world: World, policy, reference, tokenizer, seed: int, probe: CapProbe | None = CAP_PROBE
                    ) -> dict:
    """Metrics of ``policy`` vs ``reference`` on the world's held-out prompts and pairs (see module doc);
    ``probe``: when and how widely to probe answers that run into the cap (``None``: never)."""
    cfg, e = world.config, world.config.eval_samples
    prompts = [world.prompt_text(tokenizer, t) for t in world.eval_tasks]
    flat_prompts = [p for p in prompts for _ in range(e)]
    tasks = [t for t in world.eval_tasks for _ in range(e)]
    clock = [time.perf_counter()]
    with torch.random.fork_rng():
        answers = sample(policy, tokenizer, prompts, n=e, max_new_tokens=cfg.max_new_tokens,
                         temperature=cfg.temperature, seed=10_000 + seed)
    ref_texts = world.eval_reference["texts"]
    q = np.array([quality(t, a) for t, a in zip(tasks, answers.texts)])
    q_ref = np.array([quality(t, a) for t, a in zip(tasks, ref_texts)])
    n = np.array([len(words(a)) for a in answers.texts], dtype=float)
    n_ref = np.array([len(words(a)) for a in ref_texts], dtype=float)

    clock.append(time.perf_counter())
    first = slice(0, len(flat_prompts), e)  # the first answer per held-out prompt
    kl = torch.zeros(1)
    # The policy's frozen bottom blocks are the reference's: the two share one trunk pass per batch.
    frozen = 0 if policy is reference else shared_blocks(policy, reference)
    if policy is not reference:
        kl_args = (tokenizer, flat_prompts[first], answers.tokens[first], answers.ended[first], cfg.temperature)
        with shared_trunk([policy, reference], frozen, TrunkMemo()):
            kl = response_logps(policy, *kl_args) - response_logps(reference, *kl_args)

    clock.append(time.perf_counter())
    pairs = world.eval_pairs
    pair_prompts = [prompts[p["prompt"]] for p in pairs]
    delta = {}
    with shared_trunk([policy], frozen, _PAIR_TRUNKS.setdefault(cfg.key(), TrunkMemo())):
        for side in ("chosen", "rejected"):
            ref_logps = torch.tensor([p[f"ref_{side}_logps"] for p in pairs])
            # the untrained reference's own rewards are 0 by definition (not rounding noise of a second pass)
            logps = ref_logps if policy is reference else response_logps(policy, tokenizer, pair_prompts,
                                                                            [p[side] for p in pairs])
            delta[side] = logps - ref_logps
    clock.append(time.perf_counter())
    probed = {}
    if probe is not None and probe.prompts > 0 and np.mean(answers.ended) < probe.below:
        probed = {"cap_probe": {**cap_probe(world, policy, tokenizer, seed, probe.prompts), **asdict(probe)}}
        clock.append(time.perf_counter())
    examples = [{"prompt": world.eval_tasks[i].text, "reference": ref_texts[i * e], "answer": answers.texts[i * e],
                 "quality": float(q[i * e]), "ref_quality": float(q_ref[i * e])}
                for i in range(min(EXAMPLES, len(world.eval_tasks)))]
    ref_tokens = world.eval_reference["tokens"]
    comparisons = records.comparisons(
        prompt=[i // e for i in range(len(tasks))], kind=[t.kind for t in tasks],
        sample=[i % e for i in range(len(tasks))],
        text=answers.texts, words=n.astype(int), tokens=[len(t) for t in answers.tokens], ended=answers.ended,
        quality=q, judge=judge_prob(cfg, q, q_ref, n, n_ref), truth=judge_prob(cfg, q, q_ref, n, n_ref, eta=0.0),
        ref_words=n_ref.astype(int), ref_tokens=[len(t) for t in ref_tokens],
        ref_ended=world.eval_reference["ended"], ref_quality=q_ref)
    bar = length_only(np.array([len(p["chosen"]) for p in pairs]), np.array([len(p["rejected"]) for p in pairs]))
    return {
        "eval_comparisons": len(answers.texts), "eval_pairs": len(pairs),
        **judged(cfg, q, q_ref, n, n_ref), "kl": float(kl.mean()), "ended": float(np.mean(answers.ended)),
        "ref_ended": float(np.mean(world.eval_reference["ended"])),
        **rewards(delta["chosen"], delta["rejected"], tie=0.5), "length_only": bar, **probed, "examples": examples,
        "comparisons": comparisons,
        "eval_seconds": dict(zip(("sample", "kl", "pairs", "probe"), np.diff(clock).round(2).tolist())),
    }
