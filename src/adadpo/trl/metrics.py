"""One step's metrics, reduced across processes in one gather and one host sync; the non-finite-loss stop.

Per-pair means (the loss's metrics, the MoE aux loss) are averaged over processes, which equals the mean over
all pairs since every process sees the same batch size; token-weighted ones (entropy, logits, token accuracy)
are reduced as sums over counts. The loss of every process is gathered too, so that a non-finite loss on any
process stops training on all of them.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from adadpo.core.pairs import PairLogps
from adadpo.trl.backends import MetricSums


class NonFiniteLossError(FloatingPointError):
    """Training stopped because the loss (or the log-probs it is built from) was not finite."""


def all_finite(losses: list[float]) -> bool:
    """Whether every process's loss is finite."""
    return all(math.isfinite(v) for v in losses)


def reduce_step(accelerator: Any, loss: Tensor, means: dict[str, Tensor], sums: MetricSums,
                num_tokens: Tensor) -> tuple[list[float], dict[str, float], int]:
    """Gather ``loss``, the per-pair ``means`` and the token ``sums`` of every process and reduce them, in one
    gather and one device read: ``(loss per process, values by TRL/adadpo name, attention-mask tokens over all
    processes)``."""
    device = loss.device
    parts = [loss.detach().float().reshape(1), num_tokens.float().reshape(1)]
    parts += [v.detach().float().reshape(1) for v in means.values()]
    parts += [torch.stack([n.float(), d.float()]) for n, d in sums.values()]
    local = torch.cat([p.to(device) for p in parts])
    gathered = accelerator.gather(local).reshape(-1, local.numel()).tolist()  # the step's one host sync
    columns = list(zip(*gathered))
    values = {key: sum(columns[i]) / len(gathered) for i, key in enumerate(means, start=2)}
    offset = 2 + len(means)
    for j, key in enumerate(sums):
        num, den = sum(columns[offset + 2 * j]), sum(columns[offset + 2 * j + 1])
        values[key] = num / den if den > 0 else 0.0
    return list(columns[0]), values, int(sum(columns[1]))


def non_finite_message(step: int, losses: list[float], pairs: PairLogps, settings: str, bad_weights: int = 0) -> str:
    """What :class:`NonFiniteLossError` says: the step, each process's loss and this process's batch statistics,
    and what to try: with ``bad_weights`` (the number of model tensors holding NaN/inf) the model, else the settings."""

    def describe(name: str, x: Tensor | None) -> str:
        if x is None:
            return ""
        x = x.detach().double().cpu()
        bad = (~torch.isfinite(x)).sum().item()
        finite = x[torch.isfinite(x)]
        span = f"min {finite.min().item():.4g}, max {finite.max().item():.4g}" if finite.numel() else "none finite"
        return f"\n  {name}: {bad} non-finite of {x.numel()}; finite {span}"

    per_process = ", ".join(f"{v:.4g}" for v in losses)
    return (
        f"non-finite loss at step {step} (loss per process: {per_process}); training stopped. "
        f"This process's batch ({settings}):"
        + describe("chosen_logps (sum over response tokens)", pairs.chosen_logps)
        + describe("rejected_logps", pairs.rejected_logps)
        + describe("ref_chosen_logps", pairs.ref_chosen_logps)
        + describe("ref_rejected_logps", pairs.ref_rejected_logps)
        + describe("chosen_lengths", pairs.chosen_lengths.float())
        + describe("rejected_lengths", pairs.rejected_lengths.float())
        + (f"\n{bad_weights} of the model's weight tensors hold NaN or inf"
           + (" before any update: the model (or its weights file) is broken; load another"
              if step == 1 else "; training diverged: try a lower learning_rate, bf16/fp32 instead of fp16, or "
              "gradient clipping (max_grad_norm)")
           if bad_weights else
           "\nTry a lower learning_rate, bf16/fp32 instead of fp16, or gradient clipping (max_grad_norm).")
    )
