"""The six preference losses, plain and gradient-balanced (AdaDPO).

Every loss takes per-pair sums of response-token log-probs ``A`` (``[B]``) and response lengths ``T``,
builds one score per side ``s = k g(u)`` and a pairwise term of ``s_w - s_l``. Notation (one pair):
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


@dataclass(frozen=True)
class LossFamily:
    """Static description of one loss: what its side score is and which parameters it takes."""

    name: str
    needs_reference: bool
    mean: bool  # u is the per-token mean (d = 1/T) rather than the sum (d = 1)
    log_odds: bool  # g = log-odds (ORPO); identity otherwise
    nll_weight: str | None  # parameter weighting the chosen NLL term, "one" for a fixed weight of 1
    params: tuple[str, ...]  # loss-specific keyword parameters it accepts


LOSSES: dict[str, LossFamily] = {
    f.name: f
    for f in (
        LossFamily("dpo", True, False, False, None, ("label_smoothing",)),
        LossFamily("rdpo", True, False, False, None, ("length_alpha", "label_smoothing")),
        LossFamily("ipo", True, True, False, None, ()),
        LossFamily("simpo", False, True, False, None, ("gamma", "label_smoothing")),
        LossFamily("cpo", False, False, False, "cpo_alpha", ("cpo_alpha", "label_smoothing")),
        LossFamily("orpo", False, True, True, "one", ()),
    )
}

#: Defaults of the loss-specific parameters (``None`` = required when the loss takes it).
PARAM_DEFAULTS: dict[str, float | None] = {
    "gamma": 0.5,
    "length_alpha": None,
    "cpo_alpha": 1.0,
    "label_smoothing": 0.0,
}


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


def get_family(loss: str) -> LossFamily:
    """The :class:`LossFamily` named ``loss``; ``ValueError`` listing the known names otherwise."""
    if loss not in LOSSES:
        raise ValueError(f"loss={loss!r} is not a known preference loss; expected one of {list(LOSSES)}")
    return LOSSES[loss]


def log1mexp(x: Tensor) -> Tensor:
    """``log(1 - exp(x))`` for ``x < 0``, stable on both sides of ``-log 2``."""
    return torch.where(x < -math.log(2), torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


# ---------------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class _Pairs:
    """Validated inputs in the compute dtype. ``A`` = policy sums, ``T`` = lengths, ``R`` = reference sums."""

    A_w: Tensor
    A_l: Tensor
    T_w: Tensor
    T_l: Tensor
    R_w: Tensor | None
    R_l: Tensor | None


def _check_tensor(name: str, x: object, shape: torch.Size | None) -> Tensor:
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape [B], got {type(x).__name__}")
    if x.dim() != 1 or x.numel() == 0:
        raise ValueError(f"{name} must be a non-empty 1-D tensor of shape [B] (one value per pair), got shape {tuple(x.shape)}")
    if shape is not None and x.shape != shape:
        raise ValueError(f"{name} has shape {tuple(x.shape)} but chosen_logps has shape {tuple(shape)}; every input must be [B]")
    return x


def _validate(
    family: LossFamily,
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    chosen_lengths: Tensor,
    rejected_lengths: Tensor,
    ref_chosen_logps: Tensor | None,
    ref_rejected_logps: Tensor | None,
    balance: Balance | None,
) -> _Pairs:
    shape = _check_tensor("chosen_logps", chosen_logps, None).shape
    if not chosen_logps.is_floating_point():
        raise ValueError(f"chosen_logps must be a floating-point tensor, got {chosen_logps.dtype}")
    named = {"rejected_logps": rejected_logps, "chosen_lengths": chosen_lengths, "rejected_lengths": rejected_lengths}
    has_ref = (ref_chosen_logps is not None, ref_rejected_logps is not None)
    if family.needs_reference:
        if not all(has_ref):
            missing = [n for n, h in zip(("ref_chosen_logps", "ref_rejected_logps"), has_ref) if not h]
            raise ValueError(
                f"loss={family.name!r} needs the reference model's log-probs, but {' and '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} missing; pass the reference sums or use a reference-free loss "
                "(simpo, cpo, orpo)"
            )
        named.update(ref_chosen_logps=ref_chosen_logps, ref_rejected_logps=ref_rejected_logps)
    elif any(has_ref):
        raise ValueError(
            f"loss={family.name!r} is reference-free, but reference log-probs were given; drop ref_chosen_logps/"
            "ref_rejected_logps or use dpo, rdpo or ipo"
        )
    if balance is not None and balance.use_reference and not family.needs_reference:
        raise ValueError(
            f"Balance(use_reference=True) needs a reference model, but loss={family.name!r} is reference-free; "
            "set use_reference=False"
        )
    for name, x in named.items():
        _check_tensor(name, x, shape)
        if name.endswith("logps") and not x.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got {x.dtype}")

    dtype = torch.promote_types(chosen_logps.dtype, torch.float32)
    device = chosen_logps.device
    values = {"chosen_logps": chosen_logps, **named}
    cast = {n: x.to(device=device, dtype=dtype) for n, x in values.items()}
    for n in ("ref_chosen_logps", "ref_rejected_logps"):
        if n in cast:
            cast[n] = cast[n].detach()  # the reference is a constant

    # One host sync for all checks; find the culprit only on failure.
    checks = {n: torch.isfinite(x.detach()).all() for n, x in cast.items()}
    checks.update({f"{n}>=1": (cast[n].detach() >= 1).all() for n in ("chosen_lengths", "rejected_lengths")})
    flags = torch.stack(list(checks.values())).tolist()
    for (key, ok) in zip(checks, flags):
        if ok:
            continue
        if key.endswith(">=1"):
            n = key[:-3]
            bad = torch.nonzero(cast[n].detach() < 1).flatten()
            raise ValueError(
                f"{n} must be >= 1 for every pair (an empty response has no tokens to train on); "
                f"found {cast[n][bad[0]].item():g} at index {bad[0].item()} ({bad.numel()} pair(s) in all)"
            )
        bad = torch.nonzero(~torch.isfinite(cast[key].detach())).flatten()
        raise ValueError(
            f"{key} must be finite; found {cast[key][bad[0]].item()} at index {bad[0].item()} ({bad.numel()} pair(s) in all)"
        )
    return _Pairs(
        A_w=cast["chosen_logps"],
        A_l=cast["rejected_logps"],
        T_w=cast["chosen_lengths"],
        T_l=cast["rejected_lengths"],
        R_w=cast.get("ref_chosen_logps"),
        R_l=cast.get("ref_rejected_logps"),
    )


def resolve_loss_params(family: LossFamily, beta: float, given: dict[str, float | None]) -> dict[str, float]:
    """Check ``beta`` and the loss-specific keywords in ``given`` for ``family``; fill in defaults.

    Keywords that do not apply to the loss must be ``None`` (``label_smoothing`` may also be 0); returns the
    ones that apply, as floats. ``ValueError`` naming the keyword otherwise.
    """
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not (math.isfinite(beta) and beta > 0):
        raise ValueError(f"beta={beta!r} must be a finite number > 0")
    resolved: dict[str, float] = {}
    for name, value in given.items():
        if name not in family.params:
            if value is not None and not (name == "label_smoothing" and value == 0):
                raise ValueError(f"{name}={value!r} does not apply to loss={family.name!r}; it takes {list(family.params) or 'only beta'}")
            continue
        if value is None:
            value = PARAM_DEFAULTS[name]
        if value is None:
            raise ValueError(f"loss={family.name!r} needs {name} (e.g. {name}=0.01); it has no default")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name}={value!r} must be a finite number")
        resolved[name] = float(value)
    eps = resolved.get("label_smoothing", 0.0)
    if not 0.0 <= eps < 0.5:
        raise ValueError(f"label_smoothing={eps!r} must lie in [0, 0.5)")
    if resolved.get("cpo_alpha", 0.0) < 0:
        raise ValueError(f"cpo_alpha={resolved['cpo_alpha']!r} must be >= 0")
    return resolved


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


def side_statistics(
    loss: str,
    *,
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    chosen_lengths: Tensor,
    rejected_lengths: Tensor,
    ref_chosen_logps: Tensor | None = None,
    ref_rejected_logps: Tensor | None = None,
    balance: Balance | None = None,
) -> tuple[Tensor, Tensor]:
    """The side statistics ``(X_w, X_l)`` (``[B]`` each, float64 where available) of spec section 3.1.

    ``log rho = X_w - X_l`` is how many times harder (in log) the plain loss pushes the rejected side
    than it pulls the chosen one. ``balance`` picks level and reference (default: ``Balance()``).
    """
    family = get_family(loss)
    balance = balance or Balance()
    p = _validate(family, chosen_logps, rejected_logps, chosen_lengths, rejected_lengths,
                  ref_chosen_logps, ref_rejected_logps, balance)
    u_w, u_l = _side_u(family, p.A_w, p.T_w, p.R_w), _side_u(family, p.A_l, p.T_l, p.R_l)
    return (_side_x(family, balance, p.A_w, p.T_w, p.R_w, u_w),
            _side_x(family, balance, p.A_l, p.T_l, p.R_l, u_l))


# ------------------------------------------------------------------------------------------ the losses


def _sigmoid_loss(z: Tensor, eps: float) -> Tensor:
    """``-(1 - eps) log sigma(z) - eps log sigma(-z)``."""
    loss = -F.logsigmoid(z)
    return loss if eps == 0 else (1 - eps) * loss - eps * F.logsigmoid(-z)


def _pairwise(family: LossFamily, delta: Tensor, p: _Pairs, beta: float, params: dict[str, float]) -> Tensor:
    name = family.name
    if name == "ipo":
        return (delta - 1 / (2 * beta)) ** 2
    if name == "orpo":
        return -beta * F.logsigmoid(delta)
    z = beta * delta
    if name == "rdpo":
        z = z + params["length_alpha"] * (p.T_w - p.T_l)
    elif name == "simpo":
        z = z - params["gamma"]
    return _sigmoid_loss(z, params["label_smoothing"])


def preference_loss(
    loss: str,
    *,
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    chosen_lengths: Tensor,
    rejected_lengths: Tensor,
    ref_chosen_logps: Tensor | None = None,
    ref_rejected_logps: Tensor | None = None,
    beta: float = 0.1,
    gamma: float | None = None,
    length_alpha: float | None = None,
    cpo_alpha: float | None = None,
    label_smoothing: float | None = None,
    balance: Balance | None = None,
) -> PreferenceLossOutput:
    """A preference loss over a batch of pairs, plain (``balance=None``) or AdaDPO-balanced.

    Args:
        loss: ``"dpo" | "rdpo" | "ipo" | "simpo" | "cpo" | "orpo"`` (see the module docstring).
        chosen_logps, rejected_logps: ``[B]`` summed response-token log-probs under the policy.
        chosen_lengths, rejected_lengths: ``[B]`` response token counts, ``>= 1``.
        ref_chosen_logps, ref_rejected_logps: ``[B]`` sums under the reference (dpo, rdpo, ipo only);
            treated as constants.
        beta: inverse temperature; for ipo the regularisation ``tau`` (target margin ``1 / (2 beta)``);
            for orpo the weight ``lambda`` of the odds-ratio term.
        gamma: simpo's target margin (default 0.5, as TRL's ``simpo_gamma``).
        length_alpha: rdpo's length coefficient (required for rdpo).
        cpo_alpha: weight of cpo's chosen NLL term (default 1.0).
        label_smoothing: conservative-loss ``eps`` in ``[0, 0.5)`` for dpo, rdpo, simpo, cpo (default 0).
        balance: ``None`` for the plain loss, or a :class:`Balance`.

    Returns:
        :class:`PreferenceLossOutput`. The loss is computed in float32 (float64 for float64 inputs).
    """
    family = get_family(loss)
    params = resolve_loss_params(family, beta, {"gamma": gamma, "length_alpha": length_alpha,
                                            "cpo_alpha": cpo_alpha, "label_smoothing": label_smoothing})
    p = _validate(family, chosen_logps, rejected_logps, chosen_lengths, rejected_lengths,
                  ref_chosen_logps, ref_rejected_logps, balance)

    u_w, u_l = _side_u(family, p.A_w, p.T_w, p.R_w), _side_u(family, p.A_l, p.T_l, p.R_l)
    g_w, g_l = (_log_odds(u_w), _log_odds(u_l)) if family.log_odds else (u_w, u_l)
    s_w, s_l = g_w, g_l

    stat = balance or Balance()
    coefs = balance_coefficients(
        _side_x(family, stat, p.A_w, p.T_w, p.R_w, u_w),
        _side_x(family, stat, p.A_l, p.T_l, p.R_l, u_l),
        stat,
        dtype=s_w.dtype,
    )
    if balance is None:
        c_w, c_l = torch.ones_like(s_w), torch.ones_like(s_l)
    else:
        c_w, c_l = coefs.chosen, coefs.rejected
        if balance.placement == "margin":
            s_w, s_l = c_w * s_w, c_l * s_l
        else:
            s_w = s_w.detach() + c_w * (s_w - s_w.detach())
            s_l = s_l.detach() + c_l * (s_l - s_l.detach())

    losses = _pairwise(family, s_w - s_l, p, beta, params)
    total = losses.mean()
    nll = None
    if family.nll_weight is not None:
        nll = -p.A_w.sum() / p.T_w.sum()
        weight = 1.0 if family.nll_weight == "one" else params[family.nll_weight]
        total = total + weight * nll

    with torch.no_grad():
        reward_w = beta * (p.A_w - p.R_w if family.needs_reference else u_w)
        reward_l = beta * (p.A_l - p.R_l if family.needs_reference else u_l)
        metrics = _metrics(family, p, reward_w, reward_l, nll, coefs, balance, g_w - g_l)
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
    p: _Pairs,
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
        "logps/chosen": p.A_w.detach().mean(),
        "logps/rejected": p.A_l.detach().mean(),
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
