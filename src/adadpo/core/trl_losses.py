"""TRL 1.16's ``DPOConfig`` losses (``loss_type``, alone or weighted in a list, with ``f_divergence_type`` and
WPO pair weights), plain or AdaDPO-balanced, as a :class:`TrlLossSpec` checked once and applied with
:func:`trl_preference_loss`. Torch-only; written from the papers (references in ``docs/method.md`` section 8)
and checked against stock ``DPOTrainer`` on identical inputs in ``tests/test_trl_loss_types.py``.

Per pair, with the log-ratio ``h = A - R``, the side score ``s = f(h)`` (``f`` from ``f_divergence_type``;
divided by ``T`` for the *mean* terms ipo and sigmoid_norm), ``delta = s_w - s_l`` and ``z = beta delta``
(``eps`` = ``label_smoothing``, ``tau`` = ``discopop_tau``):

==============  =========  ==========================================================================
loss_type       kind       per-pair term
==============  =========  ==========================================================================
sigmoid         margin     ``-log sigma(z)`` (adadpo's ``dpo`` term)
hinge           margin     ``max(0, 1 - z)``
ipo             margin     ``(delta - 1/(2 beta))^2``, mean scores (adadpo's ``ipo`` term)
exo_pair        margin     ``sigma(z) log(sigma(z)/(1-eps)) + sigma(-z) log(sigma(-z)/eps)``
robust          margin     ``(-(1-eps) log sigma(z) + eps log sigma(-z)) / (1 - 2 eps)``
discopop        margin     ``(1 - sigma(z/tau)) (-log sigma(z)) + sigma(z/tau) exp(-z)``
sigmoid_norm    margin     ``-log sigma(z)``, mean scores
nca_pair        sides      ``-log sigma(beta h_w) - 1/2 log sigma(-beta h_w) - 1/2 log sigma(-beta h_l)``
bco_pair        sides      ``-log sigma(beta h_w) - log sigma(-beta h_l)``
sppo_hard       sides      ``(h_w - 1/(2 beta))^2 + (h_l + 1/(2 beta))^2``
apo_zero        sides      ``1 - sigma(beta h_w) + sigma(beta h_l)``
apo_down        sides      ``sigma(beta h_w) + 1 - sigma(beta (h_w - h_l))``
aot             batch      ``-(1-eps) log sigma(beta d) - eps log sigma(-beta d)``,
                           ``d = sort_b(A_w - A_l) - sort_b(R_w - R_l)``
aot_unpaired    batch      same, ``d = sort_b(h_w) - sort_b(h_l)``
sft             batch      ``-sum_b A_w / sum_b T_w`` (mean chosen-token NLL of the batch), every pair
==============  =========  ==========================================================================

The loss is ``sum_k weight_k mean_b(term_k * w_b)``, ``w_b = w_w w_l`` the WPO weights when given.

Balance (``docs/method.md`` section 8): a *margin* term depends on the scores only through ``delta``, so
``dL/ds_w = -dL/ds_l`` and the statistic is the one of adadpo's dpo (sum scores) or ipo (mean scores), plus
``-log|f'(h)|`` for an f-divergence; both placements balance exactly. A *sides* term reaches each
log-likelihood through its own side's score but not through ``delta`` alone, so its slopes differ per side and
enter the statistic, ``X = log P - log(|dL/ds| |f'| d)``; scaling the scores inside the loss would move those
slopes, so only ``placement="gradient"`` balances it exactly. *batch* terms have no balanced form: aot pairs a
chosen side with another pair's rejected one after sorting, sft has no rejected side. A list may hold one
balanced term plus ``sft`` terms, which stay outside the balance as cpo's NLL does. WPO's weight is a
stop-gradient factor common to both sides of a pair, so it leaves the balance intact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from adadpo.core.balance import Balance, Coefficients, balance_coefficients
from adadpo.core.losses import PreferenceLossOutput, _compute_view, _metrics, _pairwise, _side_x
from adadpo.core.pairs import PairLogps
from adadpo.core.spec import LOSSES, LossSpec, check_beta, finite_number


@dataclass(frozen=True)
class LossType:
    """One TRL ``loss_type``: ``kind`` (``margin`` | ``sides`` | ``batch``), ``mean`` (scores divided by the
    length), ``f_divergence`` (TRL accepts a non-default ``f_divergence_type`` with it), ``native`` (the
    adadpo family whose pairwise term it is, else ``None``)."""

    name: str
    kind: str
    mean: bool = False
    f_divergence: bool = True
    native: str | None = None


LOSS_TYPES: dict[str, LossType] = {
    t.name: t
    for t in (
        LossType("sigmoid", "margin", native="dpo"),
        LossType("hinge", "margin"),
        LossType("ipo", "margin", mean=True, native="ipo"),
        LossType("exo_pair", "margin"),
        LossType("nca_pair", "sides", f_divergence=False),
        LossType("robust", "margin"),
        LossType("bco_pair", "sides", f_divergence=False),
        LossType("sppo_hard", "sides", f_divergence=False),
        LossType("aot", "batch", f_divergence=False),
        LossType("aot_unpaired", "batch", f_divergence=False),
        LossType("apo_zero", "sides", f_divergence=False),
        LossType("apo_down", "sides", f_divergence=False),
        LossType("discopop", "margin"),
        LossType("sft", "batch"),
        LossType("sigmoid_norm", "margin", mean=True),
    )
}
F_DIVERGENCES = ("reverse_kl", "forward_kl", "js_divergence", "alpha_divergence")


_number = finite_number


@dataclass(frozen=True)
class TrlLossSpec:
    """TRL 1.16's loss selection, checked once; apply it with :func:`trl_preference_loss`.

    Args:
        loss_types: TRL's ``loss_type`` names (a string or a list), see :data:`LOSS_TYPES`.
        weights: ``loss_weights``, one per loss type (default: all 1).
        beta, label_smoothing, discopop_tau: as ``DPOConfig``.
        f_divergence_type, f_alpha_divergence_coef: as ``DPOConfig`` (``reverse_kl`` is standard DPO).
        use_weighting: WPO; :func:`trl_preference_loss` then needs the ``[B]`` pair weights.
        balance: ``None`` (TRL's loss exactly) or a :class:`Balance`; see the module docstring for where it applies.
        debug: check the coefficients' values (one host sync), as :class:`LossSpec`.

    Derived: ``loss`` (the names joined by ``+``), ``params`` (the settings as a dict, for model cards),
    ``balanced`` (index of the term the balance acts on, or ``None``), ``needs_reference`` (always ``True``:
    TRL's losses and logged rewards use the reference).
    """

    loss_types: tuple[str, ...] | list[str] | str
    weights: tuple[float, ...] | list[float] | None = None
    beta: float = 0.1
    label_smoothing: float = 0.0
    discopop_tau: float = 0.05
    f_divergence_type: str = "reverse_kl"
    f_alpha_divergence_coef: float = 0.5
    use_weighting: bool = False
    balance: Balance | None = None
    debug: bool = False
    loss: str = field(init=False)
    params: dict[str, object] = field(init=False, repr=False, compare=False)
    balanced: int | None = field(init=False, repr=False, compare=False)
    needs_reference: bool = field(init=False, default=True, repr=False, compare=False)
    _native: tuple[LossSpec | None, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        types = (self.loss_types,) if isinstance(self.loss_types, str) else tuple(self.loss_types)
        if not types:
            raise ValueError("loss_type=[] names no loss; give at least one of " + str(list(LOSS_TYPES)))
        for t in types:
            if t not in LOSS_TYPES:
                raise ValueError(f"loss_type={t!r} is not one of TRL 1.16's loss types {list(LOSS_TYPES)}")
        weights = tuple(1.0 for _ in types) if self.weights is None else tuple(self.weights)
        if len(weights) != len(types):
            raise ValueError(f"loss_weights={list(weights)} has {len(weights)} weights for {len(types)} loss types "
                             f"{list(types)}")
        weights = tuple(_number("loss_weights", w) for w in weights)
        beta = check_beta(self.beta)
        eps = _number("label_smoothing", self.label_smoothing)
        if "exo_pair" in types and not 0 < eps < 1:
            raise ValueError(f"loss_type 'exo_pair' needs label_smoothing in (0, 1) (EXO's eps, e.g. 1e-3), got {eps}")
        if self.f_divergence_type not in F_DIVERGENCES:
            raise ValueError(f"f_divergence_type={self.f_divergence_type!r} is not one of {list(F_DIVERGENCES)}")
        if self.f_divergence_type != "reverse_kl":
            bad = [t for t in types if not LOSS_TYPES[t].f_divergence]
            if bad:
                raise ValueError(f"f_divergence_type={self.f_divergence_type!r} does not apply to loss_type {bad}: "
                                 "only "
                                 f"{[n for n, t in LOSS_TYPES.items() if t.f_divergence]} compare a chosen-rejected "
                                 "score difference; use 'reverse_kl'")
        if self.use_weighting and {"aot", "aot_unpaired"} & set(types):
            raise ValueError("use_weighting=True (WPO) does not apply to loss_type aot/aot_unpaired, which sort the "
                             "batch and so lose the pairing the weights belong to")
        object.__setattr__(self, "loss_types", types)
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "loss", "+".join(types))
        object.__setattr__(self, "params", dict(
            loss_weights=list(weights), label_smoothing=eps, discopop_tau=_number("discopop_tau", self.discopop_tau),
            f_divergence_type=self.f_divergence_type,
            f_alpha_divergence_coef=_number("f_alpha_divergence_coef", self.f_alpha_divergence_coef),
            use_weighting=bool(self.use_weighting)))
        object.__setattr__(self, "_native", tuple(
            LossSpec(LOSS_TYPES[t].native, beta=beta) if LOSS_TYPES[t].native else None for t in types))
        object.__setattr__(self, "balanced", self._check_balance(types))

    def _check_balance(self, types: tuple[str, ...]) -> int | None:
        """Index of the term the balance acts on (the statistic's term for ``balance/log_rho`` when plain)."""
        pairwise = [i for i, t in enumerate(types) if LOSS_TYPES[t].kind != "batch"]
        if self.balance is None:
            return pairwise[0] if len(pairwise) == 1 else None
        if not isinstance(self.balance, Balance):
            raise ValueError(f"balance={self.balance!r} must be an adadpo.Balance or None")
        others = [t for t in types if LOSS_TYPES[t].kind == "batch" and t != "sft"]
        if others:
            raise ValueError(f"balance does not apply to loss_type {others}: it sorts the batch, so a pair's chosen "
                             "and rejected sides no longer meet in one term")
        if not pairwise:
            raise ValueError("balance does not apply to loss_type 'sft' alone: it has no rejected side to balance "
                             "against")
        if len(pairwise) > 1:
            raise ValueError(f"balance applies to one pairwise loss_type, got {[types[i] for i in pairwise]}: the sum "
                             "of separately balanced terms is not balanced; keep one (sft may be added)")
        t = LOSS_TYPES[types[pairwise[0]]]
        if t.kind == "sides" and self.balance.placement != "gradient":
            raise ValueError(f"loss_type {t.name!r} gives each side its own slope, which scaling the scores inside the "
                             "loss would move; only Balance(placement='gradient') (balance_placement) balances it "
                             "exactly")
        return pairwise[0]


# --------------------------------------------------------------------------------------------- terms


def _f_scores(spec: TrlLossSpec, h: Tensor) -> Tensor:
    """``f(h)``: f-DPO's ``f'(pi / pi_ref)`` for the chosen f-divergence (``h = log(pi / pi_ref)``)."""
    kind = spec.f_divergence_type
    if kind == "forward_kl":  # f'(t) = 1 - 1/t
        return -torch.expm1(-h)
    if kind == "js_divergence":  # f'(t) = log(2t / (1 + t))
        return math.log(2) + F.logsigmoid(h)
    a = spec.f_alpha_divergence_coef
    if kind == "alpha_divergence" and abs(a - 1) >= 1e-6:  # f'(t) = (t^(a-1) - 1) / (a - 1); exponent capped at 80
        return torch.expm1(((a - 1) * h).clamp(max=80.0)) / (a - 1)
    return h  # reverse KL (and the alpha -> 1 limit): f'(t) = log t


def _log_f_slope(spec: TrlLossSpec, h: Tensor) -> Tensor:
    """``log|f'(h)|``, the score map's contribution to the balance statistic."""
    kind, a = spec.f_divergence_type, spec.f_alpha_divergence_coef
    if kind == "forward_kl":
        return -h
    if kind == "js_divergence":
        return F.logsigmoid(-h)
    if kind == "alpha_divergence" and abs(a - 1) >= 1e-6:
        return (a - 1) * h
    return torch.zeros_like(h)


def _margin_term(spec: TrlLossSpec, i: int, delta: Tensor, T_w: Tensor, T_l: Tensor) -> Tensor:
    name, beta, eps = spec.loss_types[i], spec.beta, spec.params["label_smoothing"]
    native = spec._native[i]
    if native is not None:  # sigmoid -> dpo, ipo -> ipo: adadpo's own pairwise term
        return _pairwise(native, delta, T_w, T_l)
    z = beta * delta
    if name == "hinge":  # SLiC
        return torch.relu(1 - z)
    if name == "sigmoid_norm":
        return -F.logsigmoid(z)
    if name == "exo_pair":  # KL(q || p), q = (sigma(z), sigma(-z)), p = (1 - eps, eps)
        return (torch.sigmoid(z) * (F.logsigmoid(z) - math.log1p(-eps))
                + torch.sigmoid(-z) * (F.logsigmoid(-z) - math.log(eps)))
    if name == "robust":  # unbiased estimate under label flips with rate eps
        return (-(1 - eps) * F.logsigmoid(z) + eps * F.logsigmoid(-z)) / (1 - 2 * eps)
    if name == "discopop":  # log-ratio modulated: logistic for small z, exponential for large z
        mix = torch.sigmoid(z / spec.params["discopop_tau"])
        return -F.logsigmoid(z) * (1 - mix) + torch.exp(-z) * mix
    raise AssertionError(name)


def _sides_term(spec: TrlLossSpec, name: str, h_w: Tensor, h_l: Tensor) -> Tensor:
    beta = spec.beta
    if name == "nca_pair":
        return -F.logsigmoid(beta * h_w) - 0.5 * F.logsigmoid(-beta * h_w) - 0.5 * F.logsigmoid(-beta * h_l)
    if name == "bco_pair":
        return -F.logsigmoid(beta * h_w) - F.logsigmoid(-beta * h_l)
    if name == "sppo_hard":  # hard-probability SPPO: the winner's ratio to +1/(2 beta), the loser's to -1/(2 beta)
        return (h_w - 0.5 / beta) ** 2 + (h_l + 0.5 / beta) ** 2
    if name == "apo_zero":
        return 1 - torch.sigmoid(beta * h_w) + torch.sigmoid(beta * h_l)
    if name == "apo_down":
        return torch.sigmoid(beta * h_w) + 1 - torch.sigmoid(beta * (h_w - h_l))
    raise AssertionError(name)


def _batch_term(spec: TrlLossSpec, name: str, A_w: Tensor, A_l: Tensor, R_w: Tensor, R_l: Tensor, sft_w: Tensor,
                T_sft: Tensor) -> Tensor:
    if name == "sft":
        return (-sft_w.sum() / T_sft.sum()).expand(A_w.shape[0])
    if name == "aot":  # optimal transport of the policy's margins onto the reference's
        d = torch.sort(A_w - A_l).values - torch.sort(R_w - R_l).values
    else:  # aot_unpaired
        d = torch.sort(A_w - R_w).values - torch.sort(A_l - R_l).values
    eps = spec.params["label_smoothing"]
    return -(1 - eps) * F.logsigmoid(spec.beta * d) - eps * F.logsigmoid(-spec.beta * d)


def _side_slopes(spec: TrlLossSpec, name: str, s_w: Tensor, s_l: Tensor) -> tuple[Tensor, Tensor]:
    """``(log|dL/ds_w|, log|dL/ds_l|)`` of a sides term at the detached scores, by autograd, ``[B]`` each."""
    with torch.enable_grad():
        x_w, x_l = s_w.detach().requires_grad_(True), s_l.detach().requires_grad_(True)
        g_w, g_l = torch.autograd.grad(_sides_term(spec, name, x_w, x_l).sum(), (x_w, x_l))
    return torch.log(g_w.abs()), torch.log(g_l.abs())


def _coefficients(spec: TrlLossSpec, A_w: Tensor, A_l: Tensor, T_w: Tensor, T_l: Tensor, R_w: Tensor, R_l: Tensor,
                  s_w: Tensor, s_l: Tensor) -> Coefficients:
    """The statistic ``X`` per side of the balanced (or, plain, the reported) term, and its coefficients."""
    stat = spec.balance or Balance()
    i = spec.balanced
    t = LOSS_TYPES[spec.loss_types[i]] if i is not None else LOSS_TYPES["sigmoid"]
    family = LOSSES["ipo" if t.mean else "dpo"]  # X's d: 1/T for mean scores, 1 for sums
    x_w = _side_x(family, stat, A_w, T_w, R_w, s_w)
    x_l = _side_x(family, stat, A_l, T_l, R_l, s_l)
    with torch.no_grad():
        h_w, h_l = (A_w - R_w).to(x_w.dtype), (A_l - R_l).to(x_l.dtype)
        x_w, x_l = x_w - _log_f_slope(spec, h_w), x_l - _log_f_slope(spec, h_l)
        if t.kind == "sides":
            lw, ll = _side_slopes(spec, t.name, h_w, h_l)
            both_flat = torch.isinf(lw) & torch.isinf(ll)  # no gradient on either side: nothing to balance
            x_w, x_l = torch.where(both_flat, x_w, x_w - lw), torch.where(both_flat, x_l, x_l - ll)
    return balance_coefficients(x_w, x_l, stat, dtype=s_w.dtype, check=spec.debug)


# --------------------------------------------------------------------------------------------- apply


def trl_preference_loss(spec: TrlLossSpec, pairs: PairLogps, pair_weights: Tensor | None = None,
                        sft_chosen_logps: Tensor | None = None) -> PreferenceLossOutput:
    """TRL's loss (``spec``) over a batch of pairs, plain or balanced.

    Args:
        spec: the :class:`TrlLossSpec`.
        pairs: policy and reference sums (LD-DPO's weighted sums when ``ld_alpha`` is used) and lengths, ``[B]``.
        pair_weights: ``[B]`` WPO weights ``w_w w_l`` (required with ``use_weighting``, detached).
        sft_chosen_logps: ``[B]`` unweighted chosen sums for ``sft`` when ``pairs`` hold LD-weighted ones
            (TRL's sft term averages the raw token log-probs); default ``pairs.chosen_logps``.

    Returns:
        :class:`PreferenceLossOutput` with TRL's ``rewards/*`` (``beta h``) and ``logps/*`` (sums) and adadpo's
        ``balance/*``; ``losses`` ``[B]`` sums the weighted terms per pair so that ``losses.mean() == loss``.
    """
    if not pairs.has_reference:
        raise ValueError(f"loss_type {spec.loss!r} needs the reference model's log-probs (ref_chosen_logps, "
                         "ref_rejected_logps)")
    if spec.use_weighting and pair_weights is None:
        raise ValueError("use_weighting=True (WPO) needs the [B] pair weights")
    if spec.debug:
        pairs.check_values()
    A_w, A_l, T_w, T_l, R_w, R_l = _compute_view(pairs)
    sft_w = A_w if sft_chosen_logps is None else sft_chosen_logps.to(A_w.dtype)
    h_w, h_l = A_w - R_w, A_l - R_l
    f_w, f_l = _f_scores(spec, h_w), _f_scores(spec, h_l)
    coefs = _coefficients(spec, A_w, A_l, T_w, T_l, R_w, R_l, f_w, f_l)
    balance = spec.balance
    ones = torch.ones_like(A_w)
    c_w, c_l = (coefs.chosen, coefs.rejected) if balance is not None else (ones, ones)

    losses = torch.zeros_like(A_w)
    for i, (name, weight) in enumerate(zip(spec.loss_types, spec.weights)):
        t = LOSS_TYPES[name]
        if t.kind == "batch":
            term = _batch_term(spec, name, A_w, A_l, R_w, R_l, sft_w, T_w)
        else:
            s_w, s_l = (f_w / T_w, f_l / T_l) if t.mean else (f_w, f_l)
            if balance is not None and i == spec.balanced:
                if balance.placement == "margin":
                    s_w, s_l = c_w * s_w, c_l * s_l
                else:
                    s_w = s_w.detach() + c_w * (s_w - s_w.detach())
                    s_l = s_l.detach() + c_l * (s_l - s_l.detach())
            if t.kind == "margin":
                term = _margin_term(spec, i, s_w - s_l, T_w, T_l)
            else:
                term = _sides_term(spec, name, s_w, s_l)
        if pair_weights is not None and spec.use_weighting:
            term = term * pair_weights.to(term.dtype)
        losses = losses + weight * term

    with torch.no_grad():
        reward_w, reward_l = spec.beta * h_w, spec.beta * h_l
        metrics = _metrics(LOSSES["dpo"], A_w, A_l, reward_w, reward_l, None, coefs, balance, h_w - h_l)
    return PreferenceLossOutput(
        loss=losses.mean(), losses=losses, metrics=metrics, coef_chosen=c_w, coef_rejected=c_l,
        log_rho=coefs.imbalance, chosen_rewards=reward_w.detach(), rejected_rewards=reward_l.detach(),
        coefficients=coefs if balance is not None else None,
    )
