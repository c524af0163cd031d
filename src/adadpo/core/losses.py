"""The six preference losses, plain and gradient-balanced (AdaDPO).

Every loss takes a batch of pairs, a :class:`~adadpo.core.pairs.PairLogps` (per-pair sums of response-token
log-probs ``A``, ``[B]``, response lengths ``T``, optional reference sums ``R``), applies a
:class:`~adadpo.core.spec.LossSpec` resolved once, and builds one score per side ``s = k g(u)`` and a
pairwise term of ``s_w - s_l``. Notation (one pair):
``A_w``, ``A_l`` policy sums; ``R_w``, ``R_l`` reference sums; ``h = A - R``; ``abar = A / T``;
``hbar = h / T``; ``sg`` = stop-gradient; ``c_w``, ``c_l`` the AdaDPO coefficients (``1`` when plain).

=====  ================================================================  ==================  ====
loss   pairwise term                                                      u (d)               ref
=====  ================================================================  ==================  ====
dpo    ``-log sigma(beta (c_w h_w - c_l h_l))``                            ``h`` (1)           yes
rdpo   ``-log sigma(beta (c_w h_w - c_l h_l) + length_alpha (T_w - T_l))``  ``h`` (1)           yes
ipo    ``(c_w hbar_w - c_l hbar_l - 1 / (2 beta))^2``                      ``hbar`` (1/T)      yes
simpo  ``-log sigma(beta (c_w abar_w - c_l abar_l) - gamma)``              ``abar`` (1/T)      no
cpo    ``-log sigma(beta (c_w A_w - c_l A_l)) + cpo_alpha NLL_w``          ``A`` (1)           no
orpo   ``NLL_w - beta log sigma(c_w lo_w - c_l lo_l)``, ``lo = log-odds(abar)``  ``abar`` (1/T)  no
=====  ================================================================  ==================  ====

``NLL_w = -sum_b A_w / sum_b T_w`` (mean over every chosen response token of the batch); the
coefficients never touch it. dpo, rdpo, simpo and cpo accept ``label_smoothing`` ``eps`` (conservative
form: ``-(1 - eps) log sigma(z) - eps log sigma(-z)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from adadpo.core.balance import Balance, Coefficients, balance_coefficients, statistic_dtype
from adadpo.core.pairs import PairLogps
from adadpo.core.spec import LOSSES, LossFamily, LossSpec, get_family

__all__ = ["LOSSES", "LossFamily", "LossSpec", "PreferenceLossOutput", "get_family", "preference_loss",
           "side_statistics"]


@dataclass
class PreferenceLossOutput:
    """What :func:`preference_loss` returns.

    Attributes:
        loss: scalar, ``mean_b(losses) + weight * NLL_w`` (the NLL only for cpo and orpo).
        losses: ``[B]`` pairwise term per pair, with gradient; no NLL.
        metrics: detached 0-dim tensors keyed like TRL's logs (``rewards/*``, ``logps/*``, ``nll_loss``)
            plus ``balance/*``: ``log_rho`` (mean base-loss imbalance, reported for the plain loss too),
            and with balance ``coef_chosen``, ``coef_rejected``, ``clipped_frac`` and ``log_rho_after``
            (mean over pairs of the remaining ``log(|G_l| / |G_w|)`` after the coefficients: 0 up to clipping;
            kept in log space because the ratio itself overflows when clipping binds hard).
        coef_chosen, coef_rejected: ``[B]`` coefficients used (ones for the plain loss).
        log_rho: ``[B]`` the base loss's imbalance ``X_w - X_l = log(|G_l| / |G_w|)`` under the balance
            statistic in use (level, reference; the default ``Balance()`` statistic for the plain loss),
            unclipped and without exponents.
        chosen_rewards, rejected_rewards: ``[B]`` detached rewards (``beta h`` with a reference,
            ``beta u`` without).
        nll: scalar chosen NLL (cpo and orpo), else ``None``.
    """

    loss: Tensor
    losses: Tensor
    metrics: dict[str, Tensor]
    coef_chosen: Tensor
    coef_rejected: Tensor
    log_rho: Tensor
    chosen_rewards: Tensor
    rejected_rewards: Tensor
    nll: Tensor | None = None
    coefficients: Coefficients | None = field(default=None, repr=False)


def log1mexp(x: Tensor) -> Tensor:
    """``log(1 - exp(x))`` for ``x < 0``, stable on both sides of ``-log 2``."""
    return torch.where(x < -math.log(2), torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


# ------------------------------------------------------------------------------------------ statistics


def _side_u(family: LossFamily, A: Tensor, T: Tensor, R: Tensor | None) -> Tensor:
    """The side's linear statistic ``u``: ``h`` or ``A`` (sums), ``hbar`` or ``abar`` (means)."""
    v = A - R if R is not None else A
    return v / T if family.mean else v


def _orpo_safe(u: Tensor) -> Tensor:
    """Keep the mean log-prob strictly negative so the log-odds stay finite (``pbar = 1`` only at exactly 0)."""
    return u.clamp(max=-1e-6)


def _log_odds(u: Tensor) -> Tensor:
    """ORPO's side score ``g(u) = u - log(1 - exp(u))``: the log-odds of ``pbar = exp(u)``."""
    u = _orpo_safe(u)
    return u - log1mexp(u)


def _side_x(family: LossFamily, balance: Balance, A: Tensor, T: Tensor, R: Tensor | None, u: Tensor) -> Tensor:
    """``X = log P - log(|g'(u)| d)`` for one side, from detached inputs, in the wide dtype."""
    wide = statistic_dtype(A.device)
    A, T, u = A.detach().to(wide), T.detach().to(wide), u.detach().to(wide)
    v = A - R.detach().to(wide) if balance.use_reference else A
    log_p = v / T if balance.level == "token" else v
    x = log_p + torch.log(T) if family.mean else log_p  # -log d
    if family.log_odds:
        x = x + log1mexp(_orpo_safe(u))  # -log|g'(u)| = log(1 - pbar)
    return x


def _compute_view(pairs: PairLogps) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None, Tensor | None]:
    """``A_w, A_l, T_w, T_l, R_w, R_l`` in the compute dtype (float32, or float64 for float64 sums) on the
    policy sums' device; the reference sums detached (constants)."""
    dtype = torch.promote_types(pairs.chosen_logps.dtype, torch.float32)
    device = pairs.chosen_logps.device

    def cast(x: Tensor) -> Tensor:
        return x.to(device=device, dtype=dtype)

    R_w = R_l = None
    if pairs.has_reference:
        R_w, R_l = cast(pairs.ref_chosen_logps.detach()), cast(pairs.ref_rejected_logps.detach())
    return (cast(pairs.chosen_logps), cast(pairs.rejected_logps), cast(pairs.chosen_lengths),
            cast(pairs.rejected_lengths), R_w, R_l)


def _check_reference(family: LossFamily, pairs: PairLogps) -> None:
    if family.needs_reference and not pairs.has_reference:
        raise ValueError(
            f"loss={family.name!r} needs the reference model's log-probs, but ref_chosen_logps and ref_rejected_logps "
            "are missing; pass the reference sums or use a reference-free loss (simpo, cpo, orpo)"
        )
    if not family.needs_reference and pairs.has_reference:
        raise ValueError(
            f"loss={family.name!r} is reference-free, but reference log-probs were given; drop ref_chosen_logps/"
            "ref_rejected_logps or use dpo, rdpo or ipo"
        )


def _as_pairs(spec: LossSpec, pairs: PairLogps | None, tensors: dict[str, Tensor | None]) -> PairLogps:
    """``pairs``, or the :class:`PairLogps` of the keyword tensors (the keyword form), checked against ``spec``;
    values are checked for keyword tensors and under ``spec.debug``."""
    given = {k: v for k, v in tensors.items() if v is not None}
    if pairs is not None and given:
        raise ValueError(f"pass the pairs either as a PairLogps or as keyword tensors, not both (got {sorted(given)})")
    checked = pairs if pairs is not None else PairLogps(**given)
    _check_reference(spec.family, checked)
    if pairs is None or spec.debug:
        checked.check_values()
    return checked


def side_statistics(
    loss: str,
    pairs: PairLogps | None = None,
    *,
    chosen_logps: Tensor | None = None,
    rejected_logps: Tensor | None = None,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
    ref_chosen_logps: Tensor | None = None,
    ref_rejected_logps: Tensor | None = None,
    balance: Balance | None = None,
) -> tuple[Tensor, Tensor]:
    """The side statistics ``(X_w, X_l)`` (``[B]`` each, float64 where available) of spec section 3.1.

    ``log rho = X_w - X_l`` is how many times harder (in log) the plain loss pushes the rejected side
    than it pulls the chosen one. ``balance`` picks level and reference (default: ``Balance()``). The pairs
    come as a :class:`PairLogps` or as keyword tensors (then their values are checked).
    """
    spec = LossSpec(loss, balance=balance)
    pairs = _as_pairs(spec, pairs, dict(chosen_logps=chosen_logps, rejected_logps=rejected_logps,
                                        chosen_lengths=chosen_lengths, rejected_lengths=rejected_lengths,
                                        ref_chosen_logps=ref_chosen_logps, ref_rejected_logps=ref_rejected_logps))
    A_w, A_l, T_w, T_l, R_w, R_l = _compute_view(pairs)
    u_w, u_l = _side_u(spec.family, A_w, T_w, R_w), _side_u(spec.family, A_l, T_l, R_l)
    return (_side_x(spec.family, spec.statistic, A_w, T_w, R_w, u_w),
            _side_x(spec.family, spec.statistic, A_l, T_l, R_l, u_l))


# ------------------------------------------------------------------------------------------ the losses


def _sigmoid_loss(z: Tensor, eps: float) -> Tensor:
    """``-(1 - eps) log sigma(z) - eps log sigma(-z)``."""
    loss = -F.logsigmoid(z)
    return loss if eps == 0 else (1 - eps) * loss - eps * F.logsigmoid(-z)


def _pairwise(spec: LossSpec, delta: Tensor, T_w: Tensor, T_l: Tensor) -> Tensor:
    """The pairwise term of ``delta = s_w - s_l`` (the module docstring's table), ``[B]``."""
    name, beta, params = spec.family.name, spec.beta, spec.params
    if name == "ipo":  # (c_w hbar_w - c_l hbar_l - 1 / (2 beta))^2
        return (delta - 1 / (2 * beta)) ** 2
    if name == "orpo":  # -beta log sigma(c_w lo_w - c_l lo_l)
        return -beta * F.logsigmoid(delta)
    z = beta * delta
    if name == "rdpo":  # + length_alpha (T_w - T_l)
        z = z + params["length_alpha"] * (T_w - T_l)
    elif name == "simpo":  # - gamma
        z = z - params["gamma"]
    return _sigmoid_loss(z, params["label_smoothing"])


def preference_loss(
    loss: str | LossSpec,
    pairs: PairLogps | None = None,
    *,
    chosen_logps: Tensor | None = None,
    rejected_logps: Tensor | None = None,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
    ref_chosen_logps: Tensor | None = None,
    ref_rejected_logps: Tensor | None = None,
    beta: float | None = None,
    gamma: float | None = None,
    length_alpha: float | None = None,
    cpo_alpha: float | None = None,
    label_smoothing: float | None = None,
    balance: Balance | None = None,
) -> PreferenceLossOutput:
    """A preference loss over a batch of pairs, plain (``balance=None``) or AdaDPO-balanced.

    Two forms:

    - ``preference_loss(spec, pairs)``: a :class:`LossSpec` resolved once and a :class:`PairLogps`; no
      Python validation, and no host sync unless ``spec.debug``. The form for training loops.
    - ``preference_loss("dpo", chosen_logps=..., ..., beta=0.1, balance=Balance())`` (or with ``pairs``): the
      convenience, which builds the :class:`LossSpec` from the keywords and checks every value.

    Args:
        loss: a :class:`LossSpec`, or a loss name (``"dpo" | "rdpo" | "ipo" | "simpo" | "cpo" | "orpo"``;
            the parameters ``beta`` (default 0.1), ``gamma``, ``length_alpha``, ``cpo_alpha``,
            ``label_smoothing`` and ``balance`` are then :class:`LossSpec`'s).
        pairs: the batch as a :class:`PairLogps`, or ``None`` to give its fields as keywords:
            ``chosen_logps``, ``rejected_logps`` ``[B]`` summed response-token log-probs under the policy;
            ``chosen_lengths``, ``rejected_lengths`` ``[B]`` response token counts ``>= 1``;
            ``ref_chosen_logps``, ``ref_rejected_logps`` ``[B]`` reference sums (dpo, rdpo, ipo only).

    Returns:
        :class:`PreferenceLossOutput`. The loss is computed in float32 (float64 for float64 inputs).
    """
    params = dict(beta=beta, gamma=gamma, length_alpha=length_alpha, cpo_alpha=cpo_alpha,
                  label_smoothing=label_smoothing, balance=balance)
    if isinstance(loss, LossSpec):
        set_params = sorted(k for k, v in params.items() if v is not None)
        if set_params:
            raise ValueError(f"preference_loss(spec, ...) takes its parameters from the LossSpec; drop {set_params}")
        spec = loss
    else:
        spec = LossSpec(loss, **{k: v for k, v in params.items() if v is not None}, debug=True)
    pairs = _as_pairs(spec, pairs, dict(chosen_logps=chosen_logps, rejected_logps=rejected_logps,
                                        chosen_lengths=chosen_lengths, rejected_lengths=rejected_lengths,
                                        ref_chosen_logps=ref_chosen_logps, ref_rejected_logps=ref_rejected_logps))
    return _loss(spec, *_compute_view(pairs))


def _loss(spec: LossSpec, A_w: Tensor, A_l: Tensor, T_w: Tensor, T_l: Tensor, R_w: Tensor | None,
          R_l: Tensor | None) -> PreferenceLossOutput:
    """The loss of spec section 3 on ``[B]`` compute-dtype inputs: side scores, coefficients, pairwise term, NLL."""
    family, balance, beta = spec.family, spec.balance, spec.beta
    u_w, u_l = _side_u(family, A_w, T_w, R_w), _side_u(family, A_l, T_l, R_l)
    g_w, g_l = (_log_odds(u_w), _log_odds(u_l)) if family.log_odds else (u_w, u_l)
    s_w, s_l = g_w, g_l

    stat = spec.statistic
    coefs = balance_coefficients(_side_x(family, stat, A_w, T_w, R_w, u_w), _side_x(family, stat, A_l, T_l, R_l, u_l),
                                 stat, dtype=s_w.dtype, check=spec.debug)
    if balance is None:
        c_w, c_l = torch.ones_like(s_w), torch.ones_like(s_l)
    else:
        c_w, c_l = coefs.chosen, coefs.rejected
        if balance.placement == "margin":  # s -> c s
            s_w, s_l = c_w * s_w, c_l * s_l
        else:  # s -> sg(s) + c (s - sg(s)): same value, gradient scaled by c
            s_w = s_w.detach() + c_w * (s_w - s_w.detach())
            s_l = s_l.detach() + c_l * (s_l - s_l.detach())

    losses = _pairwise(spec, s_w - s_l, T_w, T_l)
    total = losses.mean()
    nll = None
    if family.nll_weight is not None:  # NLL_w = -sum_b A_w / sum_b T_w, untouched by the coefficients
        nll = -A_w.sum() / T_w.sum()
        weight = 1.0 if family.nll_weight == "one" else spec.params[family.nll_weight]
        total = total + weight * nll

    with torch.no_grad():
        reward_w = beta * (A_w - R_w if family.needs_reference else u_w)
        reward_l = beta * (A_l - R_l if family.needs_reference else u_l)
        metrics = _metrics(family, A_w, A_l, reward_w, reward_l, nll, coefs, balance, g_w - g_l)
    return PreferenceLossOutput(
        loss=total,
        losses=losses,
        metrics=metrics,
        coef_chosen=c_w,
        coef_rejected=c_l,
        log_rho=coefs.imbalance,
        chosen_rewards=reward_w.detach(),
        rejected_rewards=reward_l.detach(),
        nll=nll,
        coefficients=coefs if balance is not None else None,
    )


def _metrics(
    family: LossFamily,
    A_w: Tensor,
    A_l: Tensor,
    reward_w: Tensor,
    reward_l: Tensor,
    nll: Tensor | None,
    coefs: Coefficients,
    balance: Balance | None,
    base_score_gap: Tensor,
) -> dict[str, Tensor]:
    margins = reward_w - reward_l
    m: dict[str, Tensor] = {
        "rewards/chosen": reward_w.mean(),
        "rewards/rejected": reward_l.mean(),
        "rewards/margins": margins.mean(),
        "rewards/accuracies": (margins > 0).to(reward_w.dtype).mean(),
        "logps/chosen": A_w.detach().mean(),
        "logps/rejected": A_l.detach().mean(),
    }
    if nll is not None:
        m["nll_loss"] = nll.detach()
    if family.log_odds:  # TRL's ORPO logs these two
        log_odds = base_score_gap.detach()  # lo_w - lo_l
        m["log_odds_chosen"] = log_odds.mean()
        m["log_odds_ratio"] = F.logsigmoid(log_odds).mean()
    dtype = reward_w.dtype
    m["balance/log_rho"] = coefs.imbalance.mean().to(dtype)
    if balance is not None:
        m["balance/coef_chosen"] = coefs.chosen.mean()
        m["balance/coef_rejected"] = coefs.rejected.mean()
        m["balance/clipped_frac"] = coefs.clipped.to(dtype).mean()
        m["balance/log_rho_after"] = (coefs.imbalance - coefs.log_rho_used).mean().to(dtype)
    return m
