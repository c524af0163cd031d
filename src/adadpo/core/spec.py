"""``LossSpec``: a preference loss resolved once (its terms, beta, their parameters, the balance), reused every step.

A spec is one loss of :mod:`adadpo.core.registry` (``LossSpec("simpo", beta=2.0)``) or a weighted list of them
(TRL's multi-loss, ``LossSpec(["sigmoid", "sft"], weights=[1.0, 0.5])``). All checking happens when it is built;
applying it to a batch (:func:`adadpo.preference_loss`) does no Python validation and, unless ``debug=True``,
waits for no value on the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from adadpo.core.balance import Balance
from adadpo.core.params import ParamField, finite_number
from adadpo.core.registry import (LOSSES, REGISTRY, TRL_LOSS_TYPES, LossDef, check_beta, get_family, get_loss,
                                  loss_param_fields, reference_based)
from adadpo.core.terms import F_DIVERGENCES

__all__ = ["LOSSES", "REGISTRY", "LossDef", "LossFamily", "LossSpec", "check_beta", "finite_number", "get_family",
           "get_loss"]

#: The declaration type's name before the registry (``adadpo.LossFamily``).
LossFamily = LossDef
#: The statistic of the plain loss's reported imbalance (``balance/log_rho``).
DEFAULT_BALANCE = Balance()
#: The loss parameters a spec takes as keywords, by name: generated from the registry's declarations.
LOSS_PARAMS: dict[str, ParamField] = loss_param_fields()


def _with_loss_params(cls: type) -> type:
    """Add one keyword-only field per :data:`LOSS_PARAMS` entry (``float | None``, default ``None``: the loss's
    own default) to ``cls`` before :func:`dataclasses.dataclass` reads its annotations."""
    for name, param in LOSS_PARAMS.items():
        cls.__annotations__[name] = "float | None"
        setattr(cls, name, field(default=None, kw_only=True, metadata={"help": param.help}))
    return cls


@dataclass(frozen=True)
@_with_loss_params
class LossSpec:
    """One preference loss, checked once. Pass it to :func:`adadpo.preference_loss` with a :class:`PairLogps`.

    Args:
        loss: a registered loss name (``"dpo" | "rdpo" | "ipo" | "simpo" | "cpo" | "orpo"`` or one of TRL's
            ``loss_type`` names), or a list of them (TRL's weighted multi-loss).
        beta: inverse temperature; for ipo the regularisation ``tau`` (target margin ``1 / (2 beta)``); for
            orpo the weight ``lambda`` of the odds-ratio term.
        <parameter>: keyword-only, one per parameter a registered loss declares (:data:`LOSS_PARAMS`: ``gamma``,
            ``length_alpha``, ``cpo_alpha``, ``label_smoothing``, ``discopop_tau``, ...; bounds, defaults and help
            in ``adadpo.core.registry``); ``None``: the loss's default. Only the parameters some term takes.
        balance: ``None`` for the plain loss, or a :class:`Balance` (AdaDPO).
        debug: also check every batch's values (finite sums, lengths ``>= 1``, representable coefficients),
            one host sync each; off, a bad batch shows as a non-finite loss.
        weights: one weight per loss of a list (TRL's ``loss_weights``; default all 1).
        f_divergence_type, f_alpha_divergence_coef: f-DPO's score map (``reverse_kl`` is standard).
        use_weighting: WPO: multiply each pair's terms by the pairs' ``pair_weights``.

    Attributes (derived): ``terms`` (``((LossDef, weight, params), ...)``), ``first`` (the first term's
    :class:`LossDef`: the loss itself, or the first of TRL's list), ``params`` (the parameters that apply, as
    floats, defaults filled in, plus the non-default TRL options), ``statistic`` (the :class:`Balance` reported as
    ``balance/log_rho``: ``balance``, or ``Balance()``), ``balanced`` (index of the term the balance acts on and
    whose imbalance is reported, or ``None``), ``needs_reference``.
    """

    loss: str | Sequence[str]
    beta: float = 0.1
    balance: Balance | None = None
    debug: bool = False
    weights: Sequence[float] | None = None
    f_divergence_type: str = "reverse_kl"
    f_alpha_divergence_coef: float = 0.5
    use_weighting: bool = False
    terms: tuple[tuple[LossDef, float, dict[str, float]], ...] = field(init=False, repr=False, compare=False)
    first: LossDef = field(init=False, repr=False, compare=False)
    params: dict[str, object] = field(init=False, repr=False, compare=False)
    statistic: Balance = field(init=False, repr=False, compare=False)
    balanced: int | None = field(init=False, repr=False, compare=False)
    needs_reference: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = (self.loss,) if isinstance(self.loss, str) else tuple(self.loss)
        if not names:
            raise ValueError(f"loss={list(names)} names no loss; give at least one of {list(REGISTRY)}")
        defs = [_lookup(n, not isinstance(self.loss, str)) for n in names]
        weights = tuple(1.0 for _ in defs) if self.weights is None else tuple(self.weights)
        if len(weights) != len(defs):
            raise ValueError(f"loss_weights={list(weights)} has {len(weights)} weights for {len(defs)} loss types "
                             f"{list(names)}")
        weights = tuple(finite_number("loss_weights", w) for w in weights)
        check_beta(self.beta)
        for flag in ("debug", "use_weighting"):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"{flag}={getattr(self, flag)!r} must be True or False")
        if len({d.needs_reference for d in defs}) > 1:
            raise ValueError(f"loss={list(names)} mixes reference-based and reference-free losses")
        terms = tuple((d, w, _term_params(d, self)) for d, w in zip(defs, weights))
        _check_unused(self, defs)
        _check_options(self, defs)
        object.__setattr__(self, "loss", "+".join(names))
        object.__setattr__(self, "terms", terms)
        object.__setattr__(self, "first", defs[0])
        object.__setattr__(self, "needs_reference", defs[0].needs_reference)
        params: dict[str, object] = {k: v for _, _, p in terms for k, v in p.items()}
        if len(terms) > 1 or self.weights is not None:
            params["loss_weights"] = list(weights)
        if self.f_divergence_type != "reverse_kl":
            params.update(f_divergence_type=self.f_divergence_type,
                          f_alpha_divergence_coef=finite_number("f_alpha_divergence_coef", self.f_alpha_divergence_coef))
        if self.use_weighting:
            params["use_weighting"] = True
        object.__setattr__(self, "params", params)
        object.__setattr__(self, "statistic", self.balance or DEFAULT_BALANCE)
        object.__setattr__(self, "balanced", _balanced_term(self, defs))

    @property
    def names(self) -> tuple[str, ...]:
        """The names of the terms, in order."""
        return tuple(d.name for d, _, _ in self.terms)


def _lookup(name: str, listed: bool) -> LossDef:
    """The declaration of ``name``; a list (TRL's ``loss_type``) holds TRL's names only."""
    if listed and name not in TRL_LOSS_TYPES:
        raise ValueError(f"loss_type={name!r} is not one of TRL 1.16's loss types {list(TRL_LOSS_TYPES)}")
    return get_loss(name)


def _term_params(definition: LossDef, spec: LossSpec) -> dict[str, float]:
    """The values of ``definition``'s parameters in ``spec``, defaults filled in, checked against its bounds."""
    values = {}
    option = "loss" if definition.family else "loss_type"
    for name, param in definition.params.items():
        value = getattr(spec, name)
        value = param.default if value is None else value
        if value is None:
            raise ValueError(f"loss={definition.name!r} needs {name} (e.g. {name}={param.example:g}); it has no default")
        values[name] = param.check(value, definition.name, option)
    return values


def _check_unused(spec: LossSpec, defs: list[LossDef]) -> None:
    """``ValueError`` for a parameter given (not at its neutral value) that no term takes."""
    taken = {name for d in defs for name in d.params}
    for name, declared in LOSS_PARAMS.items():
        value = getattr(spec, name)
        if value is None or name in taken or (declared.neutral is not None and value == declared.neutral):
            continue
        takes = sorted(taken) or "only beta"
        named = f"loss={spec.loss!r}" if isinstance(spec.loss, str) else f"loss_type={list(spec.loss)!r}"
        raise ValueError(f"{name}={value!r} does not apply to {named}; it takes {takes}")


def _check_options(spec: LossSpec, defs: list[LossDef]) -> None:
    """TRL's options: the f-divergence, WPO, and the balance's type and reference."""
    if spec.f_divergence_type not in F_DIVERGENCES:
        raise ValueError(f"f_divergence_type={spec.f_divergence_type!r} is not one of {list(F_DIVERGENCES)}")
    if spec.f_divergence_type != "reverse_kl":
        bad = [d.name for d in defs if not d.f_divergence or not d.needs_reference]
        if bad:
            allowed = [n for n, d in TRL_LOSS_TYPES.items() if d.f_divergence]
            raise ValueError(f"f_divergence_type={spec.f_divergence_type!r} does not apply to loss_type {bad}: only "
                             f"{allowed} compare a chosen-rejected score difference; use 'reverse_kl'")
    if spec.use_weighting:
        if not all(d.needs_reference for d in defs):
            raise ValueError("use_weighting=True (WPO) is an option of TRL's loss types; the reference-free losses "
                             "do not take it")
        if any(d.name in ("aot", "aot_unpaired") for d in defs):
            raise ValueError("use_weighting=True (WPO) does not apply to loss_type aot/aot_unpaired, which sort the "
                             "batch and so lose the pairing the weights belong to")
    if spec.balance is not None and not isinstance(spec.balance, Balance):
        raise ValueError(f"balance={spec.balance!r} must be an adadpo.Balance (the AdaDPO form) or None (the plain loss)")
    if spec.balance is not None:
        check_reference(spec.balance, defs[0])


def check_reference(balance: Balance, definition: LossDef) -> None:
    """``ValueError`` if ``balance`` balances ``pi / pi_ref`` (``use_reference``) for the reference-free loss
    ``definition``: the one home of that rule (``LossSpec`` applies it to its balance, a config to its
    ``balance_*`` fields also with the balance off)."""
    if balance.use_reference and not definition.needs_reference:
        raise ValueError(f"balance_use_reference=True (Balance(use_reference=True)) needs a reference model, but "
                         f"loss={definition.name!r} is reference-free ({reference_based()} take one); set it to False")


def _balanced_term(spec: LossSpec, defs: list[LossDef]) -> int | None:
    """Index of the term the balance acts on (with a balance) or whose imbalance is reported (plain)."""
    pairwise = [i for i, d in enumerate(defs) if not d.batch]
    if spec.balance is None:
        return pairwise[0] if len(pairwise) == 1 else None
    others = [d.name for d in defs if d.balanced is None and d.name != "sft"]
    if others:
        raise ValueError(f"balance does not apply to loss_type {others}: {defs[[d.name for d in defs].index(others[0])].unbalanced}")
    if not pairwise:
        raise ValueError(f"balance does not apply to loss_type 'sft' alone: {REGISTRY['sft'].unbalanced}")
    if len(pairwise) > 1:
        raise ValueError(f"balance applies to one pairwise loss_type, got {[defs[i].name for i in pairwise]}: the sum "
                         "of separately balanced terms is not balanced; keep one (sft may be added)")
    d = defs[pairwise[0]]
    if d.balanced == "two-sided" and spec.balance.placement != "gradient":
        raise ValueError(f"loss_type {d.name!r} gives each side its own slope, which scaling the scores inside the "
                         "loss would move; only Balance(placement='gradient') (balance_placement) balances it exactly")
    return pairwise[0]
