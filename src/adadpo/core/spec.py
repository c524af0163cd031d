"""``LossSpec``: a preference loss resolved once (family, beta, its parameters, the balance) and reused every step.

All checking of the configuration happens when a :class:`LossSpec` is built; applying it to a batch
(:func:`adadpo.preference_loss`) does no Python validation and, unless ``debug=True``, waits for no value
on the device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from adadpo.core.balance import Balance


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

#: The statistic of the plain loss's reported imbalance (``balance/log_rho``).
DEFAULT_BALANCE = Balance()


def get_family(loss: str) -> LossFamily:
    """The :class:`LossFamily` named ``loss``; ``ValueError`` listing the known names otherwise."""
    if loss not in LOSSES:
        raise ValueError(f"loss={loss!r} is not a known preference loss; expected one of {list(LOSSES)}")
    return LOSSES[loss]


#: The loss parameters' bound: within ``[1/PARAM_LIMIT, PARAM_LIMIT]`` (beta) or ``|x| <= PARAM_LIMIT`` (the
#: others), beta, ipo's target margin ``1/(2 beta)``, their products with log-prob sums of up to 1e5 and the
#: squares of those stay finite in float32 (max 3.4e38); beyond it the loss or its gradient overflows (ipo with
#: beta=1e-40 gives an infinite loss; beta=1e300 is inf in float32, a zero loss with NaN gradients).
PARAM_LIMIT = 1e9


def finite_number(name: str, value: object) -> float:
    """``value`` as a float; ``ValueError`` unless it is a finite number of magnitude ``<= PARAM_LIMIT``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name}={value!r} must be a finite number")
    if abs(value) > PARAM_LIMIT:
        raise ValueError(f"{name}={value!r} is too large for the loss's float32 arithmetic; expected |{name}| <= "
                         f"{PARAM_LIMIT:g}")
    return float(value)


def check_beta(value: object) -> float:
    """``beta`` as a float; ``ValueError`` unless it is a number in ``[1/PARAM_LIMIT, PARAM_LIMIT]``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"beta={value!r} must be a finite number > 0")
    if not 1 / PARAM_LIMIT <= value <= PARAM_LIMIT:
        raise ValueError(f"beta={value!r} is outside [{1 / PARAM_LIMIT:g}, {PARAM_LIMIT:g}], where the loss stays "
                         "finite in float32 (ipo's target margin 1/(2 beta), beta times the log-prob margins); "
                         "typical values are 0.01 to 10")
    return float(value)


_finite = finite_number


@dataclass(frozen=True)
class LossSpec:
    """One preference loss, checked once. Pass it to :func:`adadpo.preference_loss` with a :class:`PairLogps`.

    Args:
        loss: ``"dpo" | "rdpo" | "ipo" | "simpo" | "cpo" | "orpo"``.
        beta: inverse temperature; for ipo the regularisation ``tau`` (target margin ``1 / (2 beta)``); for
            orpo the weight ``lambda`` of the odds-ratio term.
        gamma: simpo's target margin (default 0.5, as TRL's ``simpo_gamma``).
        length_alpha: rdpo's length coefficient (required for rdpo).
        cpo_alpha: weight of cpo's chosen NLL term (default 1.0).
        label_smoothing: conservative-loss ``eps`` in ``[0, 0.5)`` for dpo, rdpo, simpo, cpo (default 0).
        balance: ``None`` for the plain loss, or a :class:`Balance` (AdaDPO).
        debug: also check every batch's values (finite sums, lengths ``>= 1``, representable coefficients),
            one host sync each; off, a bad batch shows as a non-finite loss.

    Attributes (derived): ``family`` (:class:`LossFamily`), ``params`` (the parameters that apply, as
    floats, defaults filled in), ``statistic`` (the :class:`Balance` whose statistic is reported as
    ``balance/log_rho``: ``balance``, or ``Balance()`` for the plain loss).
    """

    loss: str
    beta: float = 0.1
    gamma: float | None = None
    length_alpha: float | None = None
    cpo_alpha: float | None = None
    label_smoothing: float | None = None
    balance: Balance | None = None
    debug: bool = False
    family: LossFamily = field(init=False, repr=False, compare=False)
    params: dict[str, float] = field(init=False, repr=False, compare=False)
    statistic: Balance = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        family = get_family(self.loss)
        check_beta(self.beta)
        params: dict[str, float] = {}
        for name in PARAM_DEFAULTS:
            value = getattr(self, name)
            if name not in family.params:
                if value is not None and not (name == "label_smoothing" and value == 0):
                    raise ValueError(
                        f"{name}={value!r} does not apply to loss={family.name!r}; it takes {list(family.params) or 'only beta'}"
                    )
                continue
            value = PARAM_DEFAULTS[name] if value is None else value
            if value is None:
                raise ValueError(f"loss={family.name!r} needs {name} (e.g. {name}=0.01); it has no default")
            params[name] = _finite(name, value)
        if not 0.0 <= params.get("label_smoothing", 0.0) < 0.5:
            raise ValueError(f"label_smoothing={params['label_smoothing']!r} must lie in [0, 0.5)")
        if params.get("cpo_alpha", 0.0) < 0:
            raise ValueError(f"cpo_alpha={params['cpo_alpha']!r} must be >= 0")
        if self.balance is not None and not isinstance(self.balance, Balance):
            raise ValueError(f"balance={self.balance!r} must be an adadpo.Balance (the AdaDPO form) or None (the plain loss)")
        if self.balance is not None and self.balance.use_reference and not family.needs_reference:
            raise ValueError(
                f"Balance(use_reference=True) needs a reference model, but loss={family.name!r} is reference-free; "
                "set use_reference=False"
            )
        object.__setattr__(self, "family", family)
        object.__setattr__(self, "params", params)
        object.__setattr__(self, "statistic", self.balance or DEFAULT_BALANCE)

    @property
    def needs_reference(self) -> bool:
        """Whether the loss takes reference log-probs (``family.needs_reference``)."""
        return self.family.needs_reference
