"""Independent reference formulas, written from the spec's tables (section 3.3), sharing no code with adadpo.

Everything is float64 and per-pair; coefficients are passed in as constants.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

FAMILIES = ("dpo", "rdpo", "ipo", "simpo", "cpo", "orpo", "rpo")  # test_registry checks these against the registry
REFERENCE_LOSSES = ("dpo", "rdpo", "ipo", "rpo")
#: The losses that add the chosen NLL ``-sum_b A_w / sum_b T_w``, with its default weight.
NLL_WEIGHTS = {"cpo": 1.0, "orpo": 1.0, "rpo": 1.0}
MEAN_LOSSES = ("ipo", "simpo", "orpo")  # u is a per-token mean (d = 1/T)


def log_p_table(A, T, R=None, *, level="token", use_reference=False) -> Tensor:
    """log P of the balanced probability: abar (or hbar) at token level, A (or h) at sequence level."""
    v = A - R if use_reference else A
    return v / T if level == "token" else v


def log_rho_table(loss: str, A_w, A_l, T_w, T_l, R_w=None, R_l=None, *, level="token", use_reference=False) -> Tensor:
    """log rho at alpha = 1 from the spec's table: token level uses abar (or hbar), sequence level A (or h)."""
    out = log_p_table(A_w, T_w, R_w, level=level, use_reference=use_reference) - log_p_table(
        A_l, T_l, R_l, level=level, use_reference=use_reference
    )
    if loss in MEAN_LOSSES:
        out = out + torch.log(T_w / T_l)
    if loss == "orpo":
        pbar_w, pbar_l = torch.exp(A_w / T_w), torch.exp(A_l / T_l)
        out = out + torch.log((1 - pbar_w) / (1 - pbar_l))
    return out


def side_x_table(loss: str, A, T, R=None, *, level="token", use_reference=False) -> Tensor:
    """X = log P - log(|g'(u)| d) for one side (spec 3.1), token level P = pbar (or ratio), sequence P = pi."""
    log_p = log_p_table(A, T, R, level=level, use_reference=use_reference)
    log_d = -torch.log(T) if loss in MEAN_LOSSES else torch.zeros_like(T)
    log_gprime = -torch.log(1 - torch.exp(A / T)) if loss == "orpo" else torch.zeros_like(T)
    return log_p - log_d - log_gprime


def coefficients_table(log_rho: Tensor, normalize: str) -> tuple[Tensor, Tensor]:
    rho = torch.exp(log_rho)
    if normalize == "sum":
        return 2 * rho / (1 + rho), 2 / (1 + rho)
    if normalize == "geometric":
        return torch.sqrt(rho), 1 / torch.sqrt(rho)
    if normalize == "rejected":
        return rho, torch.ones_like(rho)
    if normalize == "chosen":
        return torch.ones_like(rho), 1 / rho
    raise ValueError(normalize)


def _smooth(z: Tensor, eps: float) -> Tensor:
    return -(1 - eps) * torch.log(torch.sigmoid(z)) - eps * torch.log(torch.sigmoid(-z))


def pairwise_margin_form(
    loss: str,
    A_w, A_l, T_w, T_l, R_w=None, R_l=None,
    *, c_w=1.0, c_l=1.0, beta=0.1, gamma=0.5, length_alpha=0.0, eps=0.0,
) -> Tensor:
    """The pairwise term per pair, coefficients multiplying the side scores (margin placement)."""
    if loss in REFERENCE_LOSSES:
        h_w, h_l = A_w - R_w, A_l - R_l
    if loss in ("dpo", "rpo"):  # rpo: DPO's term (no smoothing), plus the NLL in total_loss
        return _smooth(beta * (c_w * h_w - c_l * h_l), eps)
    if loss == "rdpo":
        return _smooth(beta * (c_w * h_w - c_l * h_l) + length_alpha * (T_w - T_l), eps)
    if loss == "ipo":
        return (c_w * h_w / T_w - c_l * h_l / T_l - 1 / (2 * beta)) ** 2
    if loss == "simpo":
        return _smooth(beta * (c_w * A_w / T_w - c_l * A_l / T_l) - gamma, eps)
    if loss == "cpo":
        return _smooth(beta * (c_w * A_w - c_l * A_l), eps)
    if loss == "orpo":
        ab_w, ab_l = A_w / T_w, A_l / T_l
        lo_w = ab_w - torch.log(1 - torch.exp(ab_w))
        lo_l = ab_l - torch.log(1 - torch.exp(ab_l))
        return -beta * torch.log(torch.sigmoid(c_w * lo_w - c_l * lo_l))
    raise ValueError(loss)


def total_loss(loss: str, pairwise: Tensor, A_w: Tensor, T_w: Tensor, nll_weight: float | None = None) -> Tensor:
    """The pairwise terms' mean plus, for the losses of :data:`NLL_WEIGHTS`, the weighted chosen NLL."""
    if loss not in NLL_WEIGHTS:
        return pairwise.mean()
    weight = NLL_WEIGHTS[loss] if nll_weight is None else nll_weight
    return pairwise.mean() + weight * (-A_w.sum() / T_w.sum())


def rewards(loss: str, beta: float, A, T, R=None) -> Tensor:
    if loss in REFERENCE_LOSSES:
        return beta * (A - R)
    if loss in ("simpo", "orpo"):
        return beta * A / T
    return beta * A


def isclose_log(a: float, b: float, tol: float = 1e-8) -> bool:
    return math.isclose(a, b, rel_tol=tol, abs_tol=tol)
