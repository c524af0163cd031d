"""The loss registry: one declaration per loss, adadpo's six families and TRL 1.16's ``loss_type`` terms alike.

A :class:`LossDef` says what a loss *is*: its side score, whether it needs the reference model, its parameters
(:class:`~adadpo.core.params.Param`: defaults, bounds, help), its paper, its per-pair term
(:mod:`adadpo.core.terms`) and that term's ``shape``, which fixes its balanced form:

- ``"margin"``: the term depends on the scores only through ``delta = s_w - s_l``, so ``dL/ds_w = -dL/ds_l``
  and both placements balance it exactly (balanced form ``"margin"``);
- ``"sides"``: each side's score enters on its own with its own slope, which enters the statistic; scaling
  the scores inside the loss would move those slopes, so only ``placement="gradient"`` balances it exactly
  (balanced form ``"two-sided"``);
- ``"batch"``: the term mixes pairs or has no rejected side: no balanced form, and :attr:`LossDef.unbalanced`
  says why.

Everything else derives from it: :class:`adadpo.LossSpec`'s validation, ``AdaDPOConfig``'s ``loss`` choices and
TRL names, ``adadpo train --help``, the model card's citation and the "which losses need X" messages
(:func:`names`). Add a loss with :func:`register_loss`.

Per pair (``A`` policy sum, ``R`` reference sum, ``T`` length, ``h = A - R``, ``v = h`` with a reference else
``A``; score ``s = f(v)`` (sum), ``f(v) / T`` (mean) or ``log-odds(v / T)`` (ORPO), ``f`` f-DPO's map,
identity by default; ``delta = s_w - s_l``, ``z = beta delta``, ``eps = label_smoothing``):

=============  ========  ===  ==========  ========================================================================
loss           score     ref  balance     per-pair term
=============  ========  ===  ==========  ========================================================================
dpo            sum       yes  margin      ``-(1-eps) log sigma(z) - eps log sigma(-z)``
rdpo           sum       yes  margin      same with ``z + length_alpha (T_w - T_l)``
ipo            mean      yes  margin      ``(delta - 1/(2 beta))^2``
simpo          mean      no   margin      same as dpo with ``z - gamma``
cpo            sum       no   margin      same as dpo, plus ``cpo_alpha NLL_w``
orpo           log_odds  no   margin      ``-beta log sigma(delta)``, plus ``NLL_w``
rpo            sum       yes  margin      ``-log sigma(z)``, plus ``rpo_alpha NLL_w`` (DPO+NLL)
sigmoid        sum       yes  margin      ``-log sigma(z)`` (TRL's name for dpo without label smoothing)
hinge          sum       yes  margin      ``max(0, 1 - z)``
exo_pair       sum       yes  margin      ``sigma(z) log(sigma(z)/(1-eps)) + sigma(-z) log(sigma(-z)/eps)``
robust         sum       yes  margin      ``(-(1-eps) log sigma(z) + eps log sigma(-z)) / (1 - 2 eps)``
discopop       sum       yes  margin      ``(1 - sigma(z/tau)) (-log sigma(z)) + sigma(z/tau) exp(-z)``
sigmoid_norm   mean      yes  margin      ``-log sigma(z)``
nca_pair       sum       yes  two-sided   ``-log sigma(beta s_w) - 1/2 log sigma(-beta s_w) - 1/2 log sigma(-beta s_l)``
bco_pair       sum       yes  two-sided   ``-log sigma(beta s_w) - log sigma(-beta s_l)``
sppo_hard      sum       yes  two-sided   ``(s_w - 1/(2 beta))^2 + (s_l + 1/(2 beta))^2``
apo_zero       sum       yes  two-sided   ``1 - sigma(beta s_w) + sigma(beta s_l)``
apo_down       sum       yes  two-sided   ``sigma(beta s_w) + 1 - sigma(beta (s_w - s_l))``
aot            sum       yes  none        dpo-like on ``d = sort_b(A_w - A_l) - sort_b(R_w - R_l)``
aot_unpaired   sum       yes  none        same, ``d = sort_b(h_w) - sort_b(h_l)``
sft            sum       yes  none        ``-sum_b A_w / sum_b T_w`` for every pair
=============  ========  ===  ==========  ========================================================================

``NLL_w = -sum_b A_w / sum_b T_w``, untouched by the coefficients.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from adadpo.core import terms
from adadpo.core.params import LIMIT, Param, ParamField, param_fields

Score = Literal["sum", "mean", "log_odds"]
Shape = Literal["margin", "sides", "batch"]
BalancedForm = Literal["margin", "two-sided"]
#: The balanced form each shape of term has.
BALANCED_FORM: dict[str, BalancedForm | None] = {"margin": "margin", "sides": "two-sided", "batch": None}


class Paper(NamedTuple):
    """A loss's paper: short ``name`` (as the model card calls the method), ``title``, ``arxiv`` id."""

    name: str
    title: str
    arxiv: str


#: The inverse temperature every loss takes (ipo's regularisation, orpo's weight of the odds-ratio term).
BETA = Param("beta", 0.1, "Inverse temperature beta (ipo: its target margin is 1/(2 beta); orpo: the weight of "
             "the odds-ratio term).", low=1 / LIMIT, high=LIMIT, example=0.1)


@dataclass(frozen=True)
class LossDef:
    """One loss's declaration; see the module docstring.

    Attributes:
        name: the name ``LossSpec`` and the config take.
        term: its per-pair term (:mod:`adadpo.core.terms`), of the signature its ``shape`` gives.
        score: ``"sum"``, ``"mean"`` (divided by ``T``) or ``"log_odds"`` (of the mean; ORPO).
        needs_reference: takes reference log-probs (and must have them).
        params: its parameters besides ``beta``, by name.
        paper: :class:`Paper`, or ``None``.
        shape: ``"margin"``, ``"sides"`` or ``"batch"`` (then ``unbalanced`` says why it has no balanced form).
        balanced, batch, mean, log_odds (derived): its balanced form (``"margin"``, ``"two-sided"``, ``None``), a
            batch term, a score divided by ``T`` (``d = 1/T``), ORPO's log-odds score.
        nll_weight: ``None``, or the parameter weighting the chosen NLL term added to the loss (``"1"``: weight 1).
        family: one of adadpo's ``loss=`` families; ``trl``: one of TRL's ``loss_type`` names.
        same_as: the family this TRL name trains when TRL's defaults apply (``sigmoid`` is ``dpo``).
        f_divergence: TRL accepts an ``f_divergence_type`` other than ``reverse_kl`` with it.
    """

    name: str
    term: Callable
    score: Score = "sum"
    needs_reference: bool = True
    params: dict[str, Param] = field(default_factory=dict)
    paper: Paper | None = None
    shape: Shape = "margin"
    unbalanced: str = ""
    nll_weight: str | None = None
    family: bool = False
    trl: bool = False
    same_as: str | None = None
    f_divergence: bool = True

    # derived from the declaration once (read at every step: plain attributes, not properties)
    balanced: BalancedForm | None = field(init=False, repr=False, compare=False)
    batch: bool = field(init=False, repr=False, compare=False)
    mean: bool = field(init=False, repr=False, compare=False)
    log_odds: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.shape not in BALANCED_FORM:
            raise ValueError(f"loss {self.name!r} has shape={self.shape!r}; expected one of {list(BALANCED_FORM)}")
        object.__setattr__(self, "balanced", BALANCED_FORM[self.shape])
        object.__setattr__(self, "batch", self.shape == "batch")
        object.__setattr__(self, "mean", self.score != "sum")  # d = 1/T in the statistic
        object.__setattr__(self, "log_odds", self.score == "log_odds")


#: Every registered loss by name.
REGISTRY: dict[str, LossDef] = {}


def register_loss(definition: LossDef) -> LossDef:
    """Add ``definition`` to :data:`REGISTRY` (and :data:`LOSSES` / :data:`TRL_LOSS_TYPES` when it is a family or
    a TRL name); ``ValueError`` if the name is taken or the declaration is inconsistent."""
    if definition.name in REGISTRY:
        raise ValueError(f"a loss named {definition.name!r} is already registered")
    if definition.balanced is None and not definition.unbalanced:
        raise ValueError(f"loss {definition.name!r} has no balanced form: say why (unbalanced=...)")
    if definition.family and definition.paper is None:
        raise ValueError(f"loss {definition.name!r} is a family (loss=) without a paper: the model card cites it")
    for name, param in definition.params.items():
        if param.name != name or name == "beta":
            raise ValueError(f"loss {definition.name!r} declares parameter {param.name!r} under the key {name!r}")
        if param.required and param.example is None:
            raise ValueError(f"loss {definition.name!r}: required parameter {name!r} needs an example for its error")
        if _FIELDS is not None and name not in _FIELDS:
            raise ValueError(f"loss {definition.name!r} declares a new parameter {name!r}, but LossSpec's fields were "
                             "generated already: declare the loss in adadpo.core.registry")
    param_fields({**{d.name: d.params for d in REGISTRY.values()}, definition.name: definition.params})
    REGISTRY[definition.name] = definition
    if definition.family:
        LOSSES[definition.name] = definition
    if definition.trl:
        TRL_LOSS_TYPES[definition.name] = definition
    return definition


#: adadpo's loss families (``loss=``), by name.
LOSSES: dict[str, LossDef] = {}
#: TRL 1.16's ``loss_type`` names, by name.
TRL_LOSS_TYPES: dict[str, LossDef] = {}


def get_loss(name: str) -> LossDef:
    """The declaration named ``name``; ``ValueError`` listing the known names otherwise."""
    if name not in REGISTRY:
        raise ValueError(f"loss={name!r} is not a known preference loss; expected one of {list(LOSSES)} (adadpo's "
                         f"families) or TRL's loss types {list(TRL_LOSS_TYPES)}")
    return REGISTRY[name]


#: Alias of :func:`get_loss` (the name before the registry).
get_family = get_loss


def names(where: Callable[[LossDef], bool], among: dict[str, LossDef] | None = None) -> str:
    """The names of the losses (default: the families) for which ``where`` holds, as text for a message:
    ``"dpo, rdpo or ipo"``."""
    found = [d.name for d in (LOSSES if among is None else among).values() if where(d)]
    return ", ".join(found[:-1]) + f" or {found[-1]}" if len(found) > 1 else "".join(found)


def reference_based() -> str:
    """``"dpo, rdpo or ipo"``: the families that take reference log-probs."""
    return names(lambda d: d.needs_reference)


def reference_free() -> str:
    """``"simpo, cpo or orpo"``: the families that take none."""
    return names(lambda d: not d.needs_reference)


def check_beta(value: object) -> float:
    """``beta`` as a float; ``ValueError`` unless it is a number within :data:`BETA`'s bounds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"beta={value!r} must be a finite number > 0")
    if not BETA.holds(value):
        raise ValueError(f"beta={value!r} is outside [{BETA.low:g}, {BETA.high:g}], where the loss stays "
                         "finite in float32 (ipo's target margin 1/(2 beta), beta times the log-prob margins); "
                         "typical values are 0.01 to 10")
    return float(value)


def loss_param_fields() -> dict[str, ParamField]:
    """Every loss parameter's :class:`~adadpo.core.params.ParamField` (besides :data:`BETA`), from the registered
    losses' declarations: the one source of ``LossSpec``'s keyword fields (and of a config's and a command
    line's). Once read, :func:`register_loss` refuses a loss that declares a new parameter name: the fields exist."""
    global _FIELDS
    _FIELDS = param_fields({d.name: d.params for d in REGISTRY.values()})
    return _FIELDS


_FIELDS: dict[str, ParamField] | None = None


def example_params(name: str) -> dict[str, float]:
    """The loss ``name``'s required parameters at their :attr:`Param.example` values (``{}`` for a loss that has a
    default for each): what building it for an illustration or a test needs, ``{"length_alpha": 0.01}`` for rdpo."""
    return {p.name: p.example for p in get_loss(name).params.values() if p.required}


# ------------------------------------------------------------------------------------------ declarations

_SMOOTHING = Param("label_smoothing", 0.0, "Conservative-loss eps: -(1-eps) log sigma(z) - eps log sigma(-z).",
                   low=0.0, high=0.5, open_high=True, neutral=0.0)
_NOISE = Param("label_smoothing", 0.0, "Label-noise rate eps (robust divides by 1 - 2 eps).", low=0.0, high=0.5,
               open_high=True, neutral=0.0)
_EXO_EPS = Param("label_smoothing", 0.0, "EXO's eps (label_smoothing).", low=0.0, high=1.0, open_low=True,
                 open_high=True, example=1e-3, neutral=0.0)
_NO_F = dict(f_divergence=False)
_SORTS = "it sorts the batch, so a pair's chosen and rejected sides no longer meet in one term"

DPO_PAPER = Paper("DPO", "Direct Preference Optimization: Your Language Model is Secretly a Reward Model", "2305.18290")
ADADPO_PAPER = Paper("AdaDPO", "AdaDPO", "2605.28440")

for _d in (
    LossDef("dpo", terms.dpo, params={"label_smoothing": _SMOOTHING}, paper=DPO_PAPER, family=True),
    LossDef("rdpo", terms.rdpo, params={
        "length_alpha": Param("length_alpha", None, "R-DPO length penalty (required).", example=0.01, required=True),
        "label_smoothing": _SMOOTHING},
        paper=Paper("R-DPO", "Disentangling Length from Quality in Direct Preference Optimization", "2403.19159"),
        family=True),
    LossDef("ipo", terms.ipo, score="mean", family=True, trl=True, paper=Paper(
        "IPO", "A General Theoretical Paradigm to Understand Learning from Human Preferences", "2310.12036")),
    LossDef("simpo", terms.simpo, score="mean", needs_reference=False, family=True, params={
        "gamma": Param("gamma", 0.5, "SimPO target margin (default 0.5, TRL's simpo_gamma)."),
        "label_smoothing": _SMOOTHING},
        paper=Paper("SimPO", "SimPO: Simple Preference Optimization with a Reference-Free Reward", "2405.14734")),
    LossDef("cpo", terms.dpo, needs_reference=False, family=True, nll_weight="cpo_alpha", params={
        "cpo_alpha": Param("cpo_alpha", 1.0, "Weight of CPO's chosen NLL term (default 1.0).", low=0.0),
        "label_smoothing": _SMOOTHING},
        paper=Paper("CPO", "Contrastive Preference Optimization: Pushing the Boundaries of LLM Performance in "
                    "Machine Translation", "2401.08417")),
    LossDef("orpo", terms.orpo, score="log_odds", needs_reference=False, family=True, nll_weight="1",
            paper=Paper("ORPO", "ORPO: Monolithic Preference Optimization without Reference Model", "2403.07691")),
    LossDef("rpo", terms.sigmoid, family=True, nll_weight="rpo_alpha", params={
        "rpo_alpha": Param("rpo_alpha", 1.0, "Weight of RPO's chosen NLL term added to DPO's (default 1.0; a token "
                           "mean over the batch, as TRL's former rpo_alpha).", low=0.0)},
        paper=Paper("RPO", "Iterative Reasoning Preference Optimization", "2404.19733")),
    LossDef("sigmoid", terms.sigmoid, trl=True, same_as="dpo", paper=DPO_PAPER),
    LossDef("hinge", terms.hinge, trl=True,
            paper=Paper("SLiC-HF", "SLiC-HF: Sequence Likelihood Calibration with Human Feedback", "2305.10425")),
    LossDef("exo_pair", terms.exo_pair, trl=True, params={"label_smoothing": _EXO_EPS},
            paper=Paper("EXO", "Towards Efficient Exact Optimization of Language Model Alignment", "2402.00856")),
    LossDef("nca_pair", terms.nca_pair, trl=True, shape="sides", **_NO_F,
            paper=Paper("NCA", "Noise Contrastive Alignment of Language Models with Explicit Rewards", "2402.05369")),
    LossDef("robust", terms.robust, trl=True, params={"label_smoothing": _NOISE},
            paper=Paper("rDPO", "Provably Robust DPO: Aligning Language Models with Noisy Feedback", "2403.00409")),
    LossDef("bco_pair", terms.bco_pair, trl=True, shape="sides", **_NO_F,
            paper=Paper("BCO", "Binary Classifier Optimization for Large Language Model Alignment", "2404.04656")),
    LossDef("sppo_hard", terms.sppo_hard, trl=True, shape="sides", **_NO_F,
            paper=Paper("SPPO", "Self-Play Preference Optimization for Language Model Alignment", "2405.00675")),
    LossDef("aot", terms.aot, trl=True, shape="batch", unbalanced=_SORTS, **_NO_F,
            params={"label_smoothing": _NOISE},
            paper=Paper("AOT", "Distributional Preference Alignment of LLMs via Optimal Transport", "2406.05882")),
    LossDef("aot_unpaired", terms.aot_unpaired, trl=True, shape="batch", unbalanced=_SORTS, **_NO_F,
            params={"label_smoothing": _NOISE},
            paper=Paper("AOT", "Distributional Preference Alignment of LLMs via Optimal Transport", "2406.05882")),
    LossDef("apo_zero", terms.apo_zero, trl=True, shape="sides", **_NO_F,
            paper=Paper("APO", "Anchored Preference Optimization and Contrastive Revisions: Addressing "
                        "Underspecification in Alignment", "2408.06266")),
    LossDef("apo_down", terms.apo_down, trl=True, shape="sides", **_NO_F,
            paper=Paper("APO", "Anchored Preference Optimization and Contrastive Revisions: Addressing "
                        "Underspecification in Alignment", "2408.06266")),
    LossDef("discopop", terms.discopop, trl=True, params={
        "discopop_tau": Param("discopop_tau", 0.05, "DiscoPOP's temperature tau.", low=0.0, open_low=True,
                              example=0.05)},
        paper=Paper("DiscoPOP", "Discovering Preference Optimization Algorithms with and for Large Language Models",
                    "2406.08414")),
    LossDef("sft", terms.sft, trl=True, shape="batch",
            unbalanced="it has no rejected side to balance against"),
    LossDef("sigmoid_norm", terms.sigmoid, score="mean", trl=True),  # length-normalised DPO: no one paper
):
    register_loss(_d)

#: adadpo's families that are TRL loss types (with TRL's defaults): ``{"dpo": "sigmoid", "ipo": "ipo"}``.
NATIVE_LOSS_TYPES = {(d.same_as or d.name): d.name for d in TRL_LOSS_TYPES.values()
                     if d.family or d.same_as in LOSSES}
