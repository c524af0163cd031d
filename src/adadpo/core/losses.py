"""The loss engine: every registered preference loss (or weighted list of them), plain or AdaDPO-balanced.

A batch of pairs, a :class:`~adadpo.core.pairs.PairLogps` (per-pair sums of response-token log-probs ``A``,
``[B]``, response lengths ``T``, optional reference sums ``R``, optional WPO weights), and a
:class:`~adadpo.core.spec.LossSpec` resolved once give, per term of the spec, one score per side
(``s = f(v)``, ``f(v) / T`` or ``log-odds(v / T)``, ``v = A - R`` with a reference, else ``A``; see
:mod:`adadpo.core.registry`) and the term's per-pair value; the loss is

    ``loss = sum_k weight_k mean_b(term_k * w_b) + nll_weight * NLL_w``

with ``w_b`` the WPO weights (1 without), ``NLL_w = -sum_b A_w / sum_b T_w`` for cpo and orpo. AdaDPO multiplies
the two side scores of the balanced term by stop-gradient coefficients ``c_w``, ``c_l`` (``placement="margin"``)
or rescales only their gradient (``"gradient"``), from the side statistics

    ``X = log P - log(|g'(u)| d) - log|f'(h)| - log|dL/ds|`` (the last only for two-sided terms)

whose difference ``X_w - X_l`` is the base loss's imbalance ``log rho`` (reported as ``balance/log_rho``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from adadpo.core.balance import Balance, Coefficients, balance_coefficients, plain_coefficients, statistic_dtype
from adadpo.core.pairs import PairLogps
from adadpo.core.registry import REGISTRY, LossDef, example_params, reference_based, reference_free
from adadpo.core.spec import LOSS_PARAMS, LOSSES, LossFamily, LossSpec, get_family
from adadpo.core.terms import f_scores, log_f_slope

__all__ = ["LOSSES", "LossFamily", "LossSpec", "PreferenceLossOutput", "as_pairs", "get_family", "preference_loss",
           "side_statistics"]


@dataclass
class PreferenceLossOutput:
    """What :func:`preference_loss` returns; each value once.

    Attributes:
        loss: scalar, ``sum_k weight_k mean_b(term_k) + nll_weight * NLL_w``.
        losses: ``[B]`` the weighted terms per pair, with gradient, no NLL (``losses.mean()`` is the loss without it).
        metrics: detached 0-dim tensors keyed like TRL's logs (``rewards/*``, ``logps/*``, ``nll_loss``)
            plus ``balance/*``: ``log_rho`` (mean of ``imbalance``, reported for the plain loss too),
            and with balance ``coef_chosen``, ``coef_rejected``, ``clipped_frac`` and ``log_rho_after``
            (mean over pairs of the remaining ``log(|G_l| / |G_w|)`` after the coefficients: 0 up to clipping).
        coefficients: the :class:`~adadpo.core.balance.Coefficients` used (for the plain loss: ones, ``log rho``
            used ``0``), whose ``imbalance`` is the base loss's.
        coef_chosen, coef_rejected: ``[B]`` coefficients used (``coefficients.chosen``, ``.rejected``).
        imbalance: ``[B]`` the base loss's imbalance ``log rho = X_w - X_l = log(|G_l| / |G_w|)`` under the
            balance statistic in use (``Balance()``'s for the plain loss), unclipped and without exponents.
        chosen_rewards, rejected_rewards: ``[B]`` detached rewards (``beta h`` with a reference, ``beta u`` without).
        nll: scalar chosen NLL (cpo and orpo), else ``None``.
    """

    loss: Tensor
    losses: Tensor
    metrics: dict[str, Tensor]
    coefficients: Coefficients
    chosen_rewards: Tensor
    rejected_rewards: Tensor
    nll: Tensor | None = None

    coef_chosen = property(lambda self: self.coefficients.chosen, doc="``[B]`` ``c_w``.")
    coef_rejected = property(lambda self: self.coefficients.rejected, doc="``[B]`` ``c_l``.")
    imbalance = property(lambda self: self.coefficients.imbalance, doc="``[B]`` ``X_w - X_l``.")

    @property
    def log_rho(self) -> Tensor:
        """Alias of :attr:`imbalance`, named as its batch mean is in the metrics (``balance/log_rho``)."""
        return self.imbalance


def log1mexp(x: Tensor) -> Tensor:
    """``log(1 - exp(x))`` for ``x < 0``, stable on both sides of ``-log 2``."""
    return torch.where(x < -math.log(2), torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


def _orpo_safe(u: Tensor) -> Tensor:
    """Keep the mean log-prob strictly negative so the log-odds stay finite (``pbar = 1`` only at exactly 0)."""
    return u.clamp(max=-1e-6)


def _log_odds(u: Tensor) -> Tensor:
    """ORPO's side score ``g(u) = u - log(1 - exp(u))``: the log-odds of ``pbar = exp(u)``."""
    u = _orpo_safe(u)
    return u - log1mexp(u)


# ------------------------------------------------------------------------------------------ the pairs


def as_pairs(spec: LossSpec, pairs: PairLogps | None = None, **tensors: Tensor | None) -> PairLogps:
    """The one door of the keyword convenience: ``pairs``, or the :class:`PairLogps` of the keyword tensors, checked
    against ``spec`` (reference present exactly when it needs one; WPO weights when it uses them). Values are
    read and checked (one host sync) for keyword tensors and under ``spec.debug`` (then the structure too: the
    pairs a trainer builds skip the constructor's checks)."""
    given = {k: v for k, v in tensors.items() if v is not None}
    if pairs is not None and given:
        raise ValueError(f"pass the pairs either as a PairLogps or as keyword tensors, not both (got {sorted(given)})")
    checked = pairs if pairs is not None else PairLogps(**given)
    has_reference = checked.ref_chosen_logps is not None
    if spec.needs_reference and not has_reference:
        raise ValueError(
            f"loss={spec.loss!r} needs the reference model's log-probs, but ref_chosen_logps and ref_rejected_logps "
            f"are missing; pass the reference sums or use a reference-free loss ({reference_free()})")
    if not spec.needs_reference and has_reference:
        raise ValueError(f"loss={spec.loss!r} is reference-free, but reference log-probs were given; drop "
                         f"ref_chosen_logps/ref_rejected_logps or use {reference_based()}")
    if spec.use_weighting and checked.pair_weights is None:
        raise ValueError("use_weighting=True (WPO) needs the [B] pair weights (PairLogps.pair_weights)")
    if pairs is not None and spec.debug:
        checked.check_structure()
    if pairs is None or spec.debug:
        checked.check_values()
    return checked


# ------------------------------------------------------------------------------------------ statistics


def _side_x(definition: LossDef, balance: Balance, pairs: PairLogps, u_w: Tensor, u_l: Tensor) -> tuple[Tensor, Tensor]:
    """``X = log P - log(|g'(u)| d)`` of each side, from detached inputs, in the wide dtype."""
    wide = statistic_dtype(pairs.A_w.device)
    x = []
    for A, T, R, u in ((pairs.A_w, pairs.T_w, pairs.R_w, u_w), (pairs.A_l, pairs.T_l, pairs.R_l, u_l)):
        A, T, u = A.detach().to(wide), T.detach().to(wide), u.detach().to(wide)
        v = A - R.detach().to(wide) if balance.use_reference else A
        log_p = v / T if balance.level == "token" else v
        side = log_p + torch.log(T) if definition.mean else log_p  # -log d
        x.append(side + log1mexp(_orpo_safe(u)) if definition.log_odds else side)  # -log|g'(u)| = log(1 - pbar)
    return x[0], x[1]


def _side_slopes(definition: LossDef, beta: float, p: dict, h_w: Tensor, h_l: Tensor) -> tuple[Tensor, Tensor]:
    """``(log|dL/ds_w|, log|dL/ds_l|)`` of a sides-shaped term at the detached scores, by autograd, ``[B]`` each."""
    with torch.enable_grad():
        x_w, x_l = h_w.detach().requires_grad_(True), h_l.detach().requires_grad_(True)
        g_w, g_l = torch.autograd.grad(definition.term(x_w, x_l, beta, p).sum(), (x_w, x_l))
    return torch.log(g_w.abs()), torch.log(g_l.abs())


def _statistics(spec: LossSpec, pairs: PairLogps, u_w: Tensor, u_l: Tensor) -> tuple[Tensor, Tensor]:
    """``(X_w, X_l)`` of the spec's balanced (or reported) term: TRL's sigmoid statistic when it has none."""
    i = spec.balanced
    definition, _, p = spec.terms[i] if i is not None else (REGISTRY["sigmoid"], 1.0, {})
    x_w, x_l = _side_x(definition, spec.statistic, pairs, u_w, u_l)
    if spec.f_divergence_type == "reverse_kl" and definition.shape != "sides":
        return x_w, x_l
    with torch.no_grad():
        h_w, h_l = (pairs.A_w - pairs.R_w).to(x_w.dtype), (pairs.A_l - pairs.R_l).to(x_l.dtype)
        kind, a = spec.f_divergence_type, spec.f_alpha_divergence_coef
        x_w, x_l = x_w - log_f_slope(kind, a, h_w), x_l - log_f_slope(kind, a, h_l)
        if definition.shape == "sides":
            lw, ll = _side_slopes(definition, spec.beta, p, h_w, h_l)
            both_flat = torch.isinf(lw) & torch.isinf(ll)  # no gradient on either side: nothing to balance
            x_w, x_l = torch.where(both_flat, x_w, x_w - lw), torch.where(both_flat, x_l, x_l - ll)
    return x_w, x_l


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
    spec = LossSpec(loss, balance=balance, **example_params(loss))  # required parameters: no effect on X
    pairs = as_pairs(spec, pairs, chosen_logps=chosen_logps, rejected_logps=rejected_logps,
                     chosen_lengths=chosen_lengths, rejected_lengths=rejected_lengths,
                     ref_chosen_logps=ref_chosen_logps, ref_rejected_logps=ref_rejected_logps)
    pairs = pairs.computed()
    (u_w, u_l), _ = _scores(spec.first, spec, pairs)
    return _statistics(spec, pairs, u_w, u_l)


# ------------------------------------------------------------------------------------------ the loss


def _scores(definition: LossDef, spec: LossSpec, pairs: PairLogps) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """``((u_w, u_l), (g_w, g_l))``: the linear statistic (sum or mean of ``f(v)``) and the side score."""
    A_w, A_l, R_w, R_l = pairs.A_w, pairs.A_l, pairs.R_w, pairs.R_l
    v_w, v_l = (A_w - R_w, A_l - R_l) if R_w is not None else (A_w, A_l)
    if spec.f_divergence_type != "reverse_kl":
        kind, a = spec.f_divergence_type, spec.f_alpha_divergence_coef
        v_w, v_l = f_scores(kind, a, v_w), f_scores(kind, a, v_l)
    u_w, u_l = (v_w / pairs.T_w, v_l / pairs.T_l) if definition.mean else (v_w, v_l)
    g = (_log_odds(u_w), _log_odds(u_l)) if definition.log_odds else (u_w, u_l)
    return (u_w, u_l), g


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
    balance: Balance | None = None,
    **params: float,
) -> PreferenceLossOutput:
    """A preference loss over a batch of pairs, plain (``balance=None``) or AdaDPO-balanced.

    Two forms:

    - ``preference_loss(spec, pairs)``: a :class:`LossSpec` resolved once and a :class:`PairLogps`; no
      Python validation, and no host sync unless ``spec.debug``. The form for training loops, and for TRL's
      loss types and weighted lists (``LossSpec(["sigmoid", "sft"], weights=[1.0, 0.5])``).
    - ``preference_loss("dpo", chosen_logps=..., ..., beta=0.1, balance=Balance())`` (or with ``pairs``): the
      convenience, which builds the :class:`LossSpec` from the keywords and checks every value.

    Args:
        loss: a :class:`LossSpec`, or a loss name (``"dpo" | "rdpo" | "ipo" | "simpo" | "cpo" | "orpo"``, or a TRL
            ``loss_type``; ``beta`` (default 0.1), ``balance`` and the loss's parameters ``**params`` (``gamma``,
            ``length_alpha``, ``cpo_alpha``, ``label_smoothing``, ...: :data:`adadpo.core.spec.LOSS_PARAMS`) are then
            :class:`LossSpec`'s).
        pairs: the batch as a :class:`PairLogps`, or ``None`` to give its fields as keywords:
            ``chosen_logps``, ``rejected_logps`` ``[B]`` summed response-token log-probs under the policy;
            ``chosen_lengths``, ``rejected_lengths`` ``[B]`` response token counts ``>= 1``;
            ``ref_chosen_logps``, ``ref_rejected_logps`` ``[B]`` reference sums (dpo, rdpo, ipo only).

    Returns:
        :class:`PreferenceLossOutput`. The loss is computed in float32 (float64 for float64 inputs).
    """
    unknown = sorted(set(params) - set(LOSS_PARAMS))
    if unknown:
        raise ValueError(f"preference_loss() got {unknown}, which no loss takes; the loss parameters are "
                         f"{list(LOSS_PARAMS)}")
    params = dict(params, beta=beta, balance=balance)
    if isinstance(loss, LossSpec):
        set_params = sorted(k for k, v in params.items() if v is not None)
        if set_params:
            raise ValueError(f"preference_loss(spec, ...) takes its parameters from the LossSpec; drop {set_params}")
        spec = loss
    else:
        spec = LossSpec(loss, **{k: v for k, v in params.items() if v is not None}, debug=True)
    pairs = as_pairs(spec, pairs, chosen_logps=chosen_logps, rejected_logps=rejected_logps,
                     chosen_lengths=chosen_lengths, rejected_lengths=rejected_lengths,
                     ref_chosen_logps=ref_chosen_logps, ref_rejected_logps=ref_rejected_logps)
    return _loss(spec, pairs)


def _loss(spec: LossSpec, pairs: PairLogps) -> PreferenceLossOutput:
    """The loss of the module docstring on one batch: side scores, coefficients, the weighted terms, the NLL."""
    pairs, balance, beta, first = pairs.computed(), spec.balance, spec.beta, spec.first
    cache: dict[str, tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]] = {}

    def scores(definition: LossDef) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
        if definition.score not in cache:
            cache[definition.score] = _scores(definition, spec, pairs)
        return cache[definition.score]

    stat_def = spec.terms[spec.balanced][0] if spec.balanced is not None else REGISTRY["sigmoid"]
    (u_w, u_l), _ = scores(stat_def)
    x_w, x_l = _statistics(spec, pairs, u_w, u_l)
    dtype = pairs.A_w.dtype
    coef = plain_coefficients(x_w, x_l, dtype) if balance is None else \
        balance_coefficients(x_w, x_l, balance, dtype, check=spec.debug)

    losses = None
    for k, (definition, weight, p) in enumerate(spec.terms):
        if definition.shape == "batch":
            term = definition.term(pairs, beta, p)
        else:
            _, (s_w, s_l) = scores(definition)
            if balance is not None and k == spec.balanced and balance.placement == "margin":  # s -> c s
                s_w, s_l = coef.chosen * s_w, coef.rejected * s_l
            elif balance is not None and k == spec.balanced:  # s -> sg(s) + c (s - sg(s)): the gradient scaled by c
                s_w = s_w.detach() + coef.chosen * (s_w - s_w.detach())
                s_l = s_l.detach() + coef.rejected * (s_l - s_l.detach())
            term = definition.term(s_w, s_l, beta, p) if definition.shape == "sides" else \
                definition.term(s_w - s_l, pairs, beta, p)
        if spec.use_weighting:
            term = term * pairs.pair_weights.to(term.dtype)
        term = term if weight == 1.0 else weight * term
        losses = term if losses is None else losses + term
    total = losses.mean()
    nll = None
    if first.nll_weight is not None:  # NLL_w = -sum_b A_w / sum_b T_w, untouched by the coefficients
        nll = -pairs.A_w.sum() / pairs.T_w.sum()
        total = total + (1.0 if first.nll_weight == "1" else spec.params[first.nll_weight]) * nll
    reward_w, reward_l, metrics = _metrics(spec, pairs, scores(first), coef, nll)
    return PreferenceLossOutput(loss=total, losses=losses, metrics=metrics, coefficients=coef,
                                chosen_rewards=reward_w, rejected_rewards=reward_l, nll=nll)


@torch.no_grad()
def _metrics(spec: LossSpec, pairs: PairLogps, first_scores: tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]],
             coef: Coefficients, nll: Tensor | None) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """``(rewards_w, rewards_l, metrics)``: TRL's rewards and logs of the first term, and adadpo's ``balance/*``."""
    (lin_w, lin_l), (gf_w, gf_l) = first_scores
    beta = spec.beta
    reward_w = beta * (pairs.A_w - pairs.R_w if spec.needs_reference else lin_w)
    reward_l = beta * (pairs.A_l - pairs.R_l if spec.needs_reference else lin_l)
    margins = reward_w - reward_l
    m: dict[str, Tensor] = {
        "rewards/chosen": reward_w.mean(),
        "rewards/rejected": reward_l.mean(),
        "rewards/margins": margins.mean(),
        "rewards/accuracies": (margins > 0).to(reward_w.dtype).mean(),
        "logps/chosen": pairs.A_w.detach().mean(),
        "logps/rejected": pairs.A_l.detach().mean(),
    }
    if nll is not None:
        m["nll_loss"] = nll.detach()
    if spec.first.log_odds:  # TRL's ORPO logs these two
        log_odds = (gf_w - gf_l).detach()
        m["log_odds_chosen"] = log_odds.mean()
        m["log_odds_ratio"] = F.logsigmoid(log_odds).mean()
    dtype = reward_w.dtype
    m["balance/log_rho"] = coef.imbalance.mean().to(dtype)
    if spec.balance is not None:
        m["balance/coef_chosen"] = coef.chosen.mean()
        m["balance/coef_rejected"] = coef.rejected.mean()
        m["balance/clipped_frac"] = coef.clipped.to(dtype).mean()
        m["balance/log_rho_after"] = (coef.imbalance - coef.log_rho_used).mean().to(dtype)
    return reward_w.detach(), reward_l.detach(), m
