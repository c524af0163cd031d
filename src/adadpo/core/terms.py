"""The per-pair terms of every registered loss, and f-DPO's score maps; torch only, no configuration.

Three shapes of term, each declared on its loss's :class:`~adadpo.core.registry.LossDef` (``shape``); ``beta``
the inverse temperature, ``p`` the term's own parameters (by name), ``pairs`` the batch as the losses compute with
it (:meth:`adadpo.PairLogps.computed`: ``pairs.A_w``, ``pairs.T_l``, ...), every other argument a ``[B]`` tensor:

- ``"margin"`` ``term(delta, pairs, beta, p)``: depends on the side scores only through ``delta = s_w - s_l``;
- ``"sides"`` ``term(s_w, s_l, beta, p)``: each side's score enters on its own;
- ``"batch"`` ``term(pairs, beta, p)``: mixes pairs (sorting) or has no rejected side.

``eps`` is ``label_smoothing``; formulas in :mod:`adadpo.core.registry` next to each declaration.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from adadpo.core.pairs import PairLogps


def sigmoid_loss(z: Tensor, eps: float) -> Tensor:
    """``-(1 - eps) log sigma(z) - eps log sigma(-z)`` (conservative form; ``eps = 0``: ``-log sigma(z)``)."""
    loss = -F.logsigmoid(z)
    return loss if eps == 0 else (1 - eps) * loss - eps * F.logsigmoid(-z)


# ------------------------------------------------------------------------------------------- margin terms


def dpo(delta: Tensor, pairs: PairLogps, beta: float, p: dict) -> Tensor:
    return sigmoid_loss(beta * delta, p["label_smoothing"])


def rdpo(delta: Tensor, pairs: PairLogps, beta: float, p: dict) -> Tensor:
    return sigmoid_loss(beta * delta + p["length_alpha"] * (pairs.T_w - pairs.T_l), p["label_smoothing"])


def ipo(delta: Tensor, pairs: PairLogps, beta: float, p: dict) -> Tensor:
    return (delta - 1 / (2 * beta)) ** 2


def simpo(delta: Tensor, pairs: PairLogps, beta: float, p: dict) -> Tensor:
    return sigmoid_loss(beta * delta - p["gamma"], p["label_smoothing"])


def orpo(delta: Tensor, pairs: PairLogps, beta: float, p: dict) -> Tensor:
    return -beta * F.logsigmoid(delta)


def sigmoid(delta: Tensor, pairs: PairLogps, beta: float, p: dict) -> Tensor:
    return sigmoid_loss(beta * delta, 0.0)


def hinge(delta: Tensor, pairs: PairLogps, beta: float, p: dict) -> Tensor:
    return torch.relu(1 - beta * delta)


def exo_pair(delta: Tensor, pairs: PairLogps, beta: float, p: dict) -> Tensor:
    z, eps = beta * delta, p["label_smoothing"]
    return (torch.sigmoid(z) * (F.logsigmoid(z) - math.log1p(-eps))
            + torch.sigmoid(-z) * (F.logsigmoid(-z) - math.log(eps)))


def robust(delta: Tensor, pairs: PairLogps, beta: float, p: dict) -> Tensor:
    z, eps = beta * delta, p["label_smoothing"]
    return (-(1 - eps) * F.logsigmoid(z) + eps * F.logsigmoid(-z)) / (1 - 2 * eps)


def discopop(delta: Tensor, pairs: PairLogps, beta: float, p: dict) -> Tensor:
    z = beta * delta
    mix = torch.sigmoid(z / p["discopop_tau"])
    return -F.logsigmoid(z) * (1 - mix) + torch.exp(-z) * mix


# -------------------------------------------------------------------------------------------- sides terms


def nca_pair(s_w: Tensor, s_l: Tensor, beta: float, p: dict) -> Tensor:
    return -F.logsigmoid(beta * s_w) - 0.5 * F.logsigmoid(-beta * s_w) - 0.5 * F.logsigmoid(-beta * s_l)


def bco_pair(s_w: Tensor, s_l: Tensor, beta: float, p: dict) -> Tensor:
    return -F.logsigmoid(beta * s_w) - F.logsigmoid(-beta * s_l)


def sppo_hard(s_w: Tensor, s_l: Tensor, beta: float, p: dict) -> Tensor:
    return (s_w - 0.5 / beta) ** 2 + (s_l + 0.5 / beta) ** 2


def apo_zero(s_w: Tensor, s_l: Tensor, beta: float, p: dict) -> Tensor:
    return 1 - torch.sigmoid(beta * s_w) + torch.sigmoid(beta * s_l)


def apo_down(s_w: Tensor, s_l: Tensor, beta: float, p: dict) -> Tensor:
    return torch.sigmoid(beta * s_w) + 1 - torch.sigmoid(beta * (s_w - s_l))


# -------------------------------------------------------------------------------------------- batch terms


def _aot_loss(d: Tensor, beta: float, eps: float) -> Tensor:
    return -(1 - eps) * F.logsigmoid(beta * d) - eps * F.logsigmoid(-beta * d)


def aot(pairs: PairLogps, beta: float, p: dict) -> Tensor:
    d = torch.sort(pairs.A_w - pairs.A_l).values - torch.sort(pairs.R_w - pairs.R_l).values
    return _aot_loss(d, beta, p["label_smoothing"])


def aot_unpaired(pairs: PairLogps, beta: float, p: dict) -> Tensor:
    d = torch.sort(pairs.A_w - pairs.R_w).values - torch.sort(pairs.A_l - pairs.R_l).values
    return _aot_loss(d, beta, p["label_smoothing"])


def sft(pairs: PairLogps, beta: float, p: dict) -> Tensor:
    """The chosen NLL, of the raw sums under LD-DPO (``raw_chosen_logps``), for every pair."""
    A_w = pairs.raw_chosen_logps if pairs.raw_chosen_logps is not None else pairs.A_w
    return (-A_w.sum() / pairs.T_w.sum()).expand(pairs.A_w.shape[0])


# ------------------------------------------------------------------------------------- f-DPO score maps

F_DIVERGENCES = ("reverse_kl", "forward_kl", "js_divergence", "alpha_divergence")


def f_scores(kind: str, a: float, h: Tensor) -> Tensor:
    """``f(h)``: f-DPO's ``f'(pi / pi_ref)`` for divergence ``kind`` (``h = log(pi / pi_ref)``, ``a`` the alpha)."""
    if kind == "forward_kl":  # f'(t) = 1 - 1/t
        return -torch.expm1(-h)
    if kind == "js_divergence":  # f'(t) = log(2t / (1 + t))
        return math.log(2) + F.logsigmoid(h)
    if kind == "alpha_divergence" and abs(a - 1) >= 1e-6:  # (t^(a-1) - 1) / (a - 1); exponent capped at 80
        return torch.expm1(((a - 1) * h).clamp(max=80.0)) / (a - 1)
    return h  # reverse KL (and the alpha -> 1 limit): f'(t) = log t


def log_f_slope(kind: str, a: float, h: Tensor) -> Tensor:
    """``log|f'(h)|``, the score map's contribution to the balance statistic."""
    if kind == "forward_kl":
        return -h
    if kind == "js_divergence":
        return F.logsigmoid(-h)
    if kind == "alpha_divergence" and abs(a - 1) >= 1e-6:
        return (a - 1) * h
    return torch.zeros_like(h)
