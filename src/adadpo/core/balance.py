"""Gradient balancing: from per-side statistics to the AdaDPO coefficients.

For one pair, each side's score is ``s = k * g(u)`` with ``u`` linear in that side's token
log-probs (weight ``d`` per token). The gradient on the probability ``P`` being balanced scales as
``k |g'(u)| d / P``, so with the side statistic

    X = log P - log(|g'(u)| d)

the base loss pushes the rejected side ``rho = exp(X_w - X_l)`` times harder than it pulls the chosen
one. AdaDPO multiplies the sides by stop-gradient coefficients with ``c_w / c_l = rho`` (clipped to
``[1/kappa, kappa]``), which makes the two gradient magnitudes equal.

This module knows nothing about particular losses: :mod:`adadpo.core.losses` supplies ``X``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Literal, NamedTuple, get_args, get_origin, get_type_hints

import torch
from torch import Tensor

from adadpo.core.params import LIMIT

Level = Literal["token", "sequence"]
Normalize = Literal["sum", "geometric", "rejected", "chosen"]
Placement = Literal["margin", "gradient"]

LEVELS: tuple[str, ...] = get_args(Level)
NORMALIZATIONS: tuple[str, ...] = get_args(Normalize)
PLACEMENTS: tuple[str, ...] = get_args(Placement)


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"Balance.{name}={value!r} is not supported; expected one of {list(choices)}")


@dataclass(frozen=True)
class Balance:
    """How AdaDPO balances a pairwise loss (``None`` in its place means: the plain loss).

    Args:
        level: ``"token"`` balances the geometric-mean token probability ``pbar = exp(A / T)``
            (the practical default); ``"sequence"`` balances the sequence probability ``pi = exp(A)``.
        use_reference: balance the ratios ``pi / pi_ref`` (``h = A - R``) instead of ``pi``.
            Only for losses with a reference model (dpo, rdpo, ipo).
        alpha_chosen, alpha_rejected: exponents in ``log rho = alpha_w X_w - alpha_l X_l``;
            ``0`` on both sides gives back the base loss exactly.
        clip: ``kappa >= 1``; ``log rho`` is clamped to ``[-log kappa, log kappa]``. ``math.inf``
            disables clipping.
        normalize: which scale the pair keeps, all with ``c_w / c_l = rho``:
            ``"sum"`` (``c_w + c_l = 2``), ``"geometric"`` (``c_w c_l = 1``),
            ``"rejected"`` (``c_l = 1``) or ``"chosen"`` (``c_w = 1``).
        placement: ``"margin"`` multiplies the side scores inside the loss (the paper's form);
            ``"gradient"`` replaces each score ``s`` by ``sg(s) + c (s - sg(s))``, which keeps the
            loss value and rewards of the base loss and rescales only the gradient.
    """

    level: Level = field(default="token", metadata={"help": "Probability whose gradient is balanced."})
    use_reference: bool = field(
        default=False, metadata={"help": "Balance pi/pi_ref instead of pi (reference-based losses only)."}
    )
    # numbers: |x| <= LIMIT, or at least "low" (and up to math.inf, which "inf" says what it means)
    alpha_chosen: float = field(default=1.0, metadata={"help": "Exponent on X_w."})
    alpha_rejected: float = field(default=1.0, metadata={"help": "Exponent on X_l."})
    clip: float = field(default=10.0, metadata={"help": "kappa >= 1; inf disables clipping.", "low": 1.0,
                                                "inf": "to disable clipping"})
    normalize: Normalize = field(default="sum", metadata={"help": "Scale kept by the coefficient pair."})
    placement: Placement = field(default="margin", metadata={"help": "Where the coefficients act."})

    def __post_init__(self) -> None:
        _check_choice("level", self.level, LEVELS)
        _check_choice("normalize", self.normalize, NORMALIZATIONS)
        _check_choice("placement", self.placement, PLACEMENTS)
        if not isinstance(self.use_reference, bool):
            raise ValueError(f"Balance.use_reference={self.use_reference!r} must be a bool")
        for o in balance_options():
            if o.kind is float:
                _check_number(o, getattr(self, o.name))


def _check_number(o: BalanceOption, value: object) -> None:
    """``ValueError`` unless ``value`` is a number within ``o``'s bounds (see :class:`BalanceOption`)."""
    if o.low is not None:  # clip: at least low, up to math.inf
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or value < o.low:
            raise ValueError(f"Balance.{o.name}={value!r} must be a number >= {o.low:g}, or math.inf {o.inf}")
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"Balance.{o.name}={value!r} must be a finite real number")
    if abs(value) > LIMIT:  # alpha * X leaves float32's range (inf, or NaN where X = 0)
        raise ValueError(f"Balance.{o.name}={value!r} is too large for float32 arithmetic; expected "
                         f"|{o.name}| <= {LIMIT:g}")


class BalanceOption(NamedTuple):
    """One field of :class:`Balance`, described for a config or command line: ``kind`` is ``str``, ``bool`` or
    ``float``; ``choices`` lists the allowed strings of a ``Literal`` field, else ``None``. A number's bounds, the
    one place they are declared (``Balance`` checks them, a config's ranges derive from them): ``low`` ``None``,
    ``|x| <= LIMIT``; else ``x >= low`` or ``math.inf``, which ``inf`` says what it does."""

    name: str
    kind: type
    default: object
    help: str
    choices: tuple[str, ...] | None
    low: float | None = None
    inf: str = ""


def balance_options() -> tuple[BalanceOption, ...]:
    """:class:`Balance`'s fields in order: the one source of the ``balance_*`` config fields, CLI flags and
    ranges."""
    global _OPTIONS
    if _OPTIONS is None:
        hints = get_type_hints(Balance)
        options = []
        for f in fields(Balance):
            hint = hints[f.name]
            choices = get_args(hint) if get_origin(hint) is Literal else None
            options.append(BalanceOption(f.name, str if choices else hint, f.default, f.metadata["help"], choices,
                                         f.metadata.get("low"), f.metadata.get("inf", "")))
        _OPTIONS = tuple(options)
    return _OPTIONS


_OPTIONS: tuple[BalanceOption, ...] | None = None


@dataclass(frozen=True)
class Coefficients:
    """Per-pair AdaDPO coefficients and the statistics they came from. All tensors are ``[B]``, detached.

    Attributes:
        chosen: ``c_w``.
        rejected: ``c_l``.
        imbalance: ``X_w - X_l``, the base loss's imbalance ``log(|G_l| / |G_w|)`` (no exponents, unclipped).
        log_rho: unclipped ``log rho = alpha_w X_w - alpha_l X_l`` (``= imbalance`` when ``alpha = 1``).
        log_rho_used: ``log rho`` after clipping, ``= log(c_w / c_l)``.
        clipped: whether clipping changed this pair's ``log rho``.
    """

    chosen: Tensor
    rejected: Tensor
    imbalance: Tensor
    log_rho: Tensor
    log_rho_used: Tensor
    clipped: Tensor


def statistic_dtype(device: torch.device) -> torch.dtype:
    """Wide dtype for ``X``, ``rho`` and ``c``: float64 where the device has it, float32 otherwise."""
    return torch.float32 if device.type == "mps" else torch.float64


def normalized_coefficients(log_rho: Tensor, normalize: Normalize) -> tuple[Tensor, Tensor]:
    """``(c_w, c_l)`` with ``c_w / c_l = exp(log_rho)`` under the given normalization.

    ``sum``: ``c_w = 2 rho / (1 + rho) = 2 sigma(log rho)``, ``c_l = 2 sigma(-log rho)`` (stable for any rho);
    ``geometric``: ``c_w = rho^(1/2)``, ``c_l = rho^(-1/2)``; ``rejected``: ``(rho, 1)``; ``chosen``: ``(1, 1/rho)``.
    """
    if normalize == "sum":
        return 2 * torch.sigmoid(log_rho), 2 * torch.sigmoid(-log_rho)
    if normalize == "geometric":
        return torch.exp(0.5 * log_rho), torch.exp(-0.5 * log_rho)
    if normalize == "rejected":
        return torch.exp(log_rho), torch.ones_like(log_rho)
    if normalize == "chosen":
        return torch.ones_like(log_rho), torch.exp(-log_rho)
    _check_choice("normalize", normalize, NORMALIZATIONS)
    raise AssertionError("unreachable")


@torch.no_grad()
def balance_coefficients(
    x_chosen: Tensor, x_rejected: Tensor, balance: Balance, dtype: torch.dtype, check: bool = True
) -> Coefficients:
    """AdaDPO coefficients from the side statistics ``X_w``, ``X_l`` (``[B]`` each, any float dtype).

    ``log rho = alpha_w X_w - alpha_l X_l``, clamped to ``[-log kappa, log kappa]``, then normalized.
    The statistics are computed in :func:`statistic_dtype`; the coefficients are returned in ``dtype``
    (the loss's compute dtype). With ``check`` (one host sync), raises ``ValueError`` if they overflow it or
    vanish (``clip=inf`` with extreme inputs); without, such coefficients make the loss non-finite.
    """
    wide = statistic_dtype(x_chosen.device)
    x_w, x_l = x_chosen.to(wide), x_rejected.to(wide)
    log_rho = balance.alpha_chosen * x_w - balance.alpha_rejected * x_l
    used = log_rho if math.isinf(balance.clip) else log_rho.clamp(-math.log(balance.clip), math.log(balance.clip))
    c_w, c_l = normalized_coefficients(used, balance.normalize)
    c_w, c_l = c_w.to(dtype), c_l.to(dtype)
    if check and not bool(torch.isfinite(c_w).all() & torch.isfinite(c_l).all() & (c_w > 0).all() & (c_l > 0).all()):
        worst = float(log_rho.abs().max())
        raise ValueError(
            f"AdaDPO coefficients are not representable in {dtype} (|log rho| up to {worst:.4g} with "
            f"Balance.clip={balance.clip!r}, normalize={balance.normalize!r}): they overflow or reach 0; "
            "set a finite Balance.clip such as 10"
        )
    return Coefficients(chosen=c_w, rejected=c_l, imbalance=x_w - x_l, log_rho=log_rho, log_rho_used=used,
                        clipped=used != log_rho)


@torch.no_grad()
def plain_coefficients(x_chosen: Tensor, x_rejected: Tensor, dtype: torch.dtype) -> Coefficients:
    """The plain loss's :class:`Coefficients`: ``c_w = c_l = 1`` (in ``dtype``), ``log rho`` used ``0``, and the
    imbalance ``X_w - X_l`` it leaves (what ``balance/log_rho`` reports)."""
    imbalance = x_chosen.to(statistic_dtype(x_chosen.device)) - x_rejected.to(statistic_dtype(x_chosen.device))
    ones = torch.ones(imbalance.shape, dtype=dtype, device=imbalance.device)
    return Coefficients(chosen=ones, rejected=ones, imbalance=imbalance, log_rho=imbalance,
                        log_rho_used=torch.zeros_like(imbalance), clipped=torch.zeros_like(imbalance, dtype=torch.bool))
