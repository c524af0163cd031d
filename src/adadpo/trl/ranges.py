"""The valid values of every numeric and enum field of ``adadpo train``'s config, checked before anything runs.

transformers and TRL check few of their numbers: ``learning_rate: -1``, ``seed: -5``, ``max_steps: 2.5``,
``logging_steps: 0`` or ``lora_dropout: 3`` would train nonsense or fail deep inside training with a traceback.
:func:`check_fields` refuses, in one line naming the field, the value and what is expected: a value of the wrong
type (a string or a bool for a number, a fraction for an integer), NaN, infinity where it means nothing, a number
outside the field's range (:data:`RANGES`), and a value that is not one of an enum field's choices. An integer
written as a float (``max_steps: 3.0``) is taken as the integer.
``tests/test_config_classes.py`` checks that every numeric field has a range here, so a new one cannot slip through.
The ranges of the loss parameters, ``beta``, ``logps_chunk_size`` and the ``balance_*`` fields derive from their
declarations (:class:`~adadpo.core.params.Param`, :func:`adadpo.core.balance.balance_options`): a bound has one home.
"""

from __future__ import annotations

import enum
import math
import types
from dataclasses import dataclass, fields
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from adadpo.core.balance import balance_options
from adadpo.core.logps import CHUNK_SIZE
from adadpo.core.params import LIMIT, Param, span, within
from adadpo.core.registry import BETA
from adadpo.core.spec import LOSS_PARAMS


@dataclass(frozen=True)
class Range:
    """``lo <= x <= hi`` (``<`` where open); ``None``: no bound; ``also``: other values allowed (``-1``: off, or
    the strings a numeric field takes, such as ``"auto"``)."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    also: tuple[float | str, ...] = ()
    text: str = ""  # the description, where the bounds read badly as numbers

    def holds(self, x: float) -> bool:
        return x in self.also or within(x, self.lo, self.hi, self.lo_open, self.hi_open)

    def describe(self, kind: type = float) -> str:
        """What is expected, e.g. ``-1 or an integer >= 0`` (``kind``: ``int`` or ``float``)."""
        what = "an integer" if kind is int else "a number"
        others = [f"{a:g}" if isinstance(a, (int, float)) else repr(a) for a in self.also]
        return " or ".join([*others, f"{what} {self._bounds()}"])

    def _bounds(self) -> str:
        return self.text or span(self.lo, self.hi, self.lo_open, self.hi_open)


POSITIVE, NON_NEGATIVE, AT_LEAST_ONE = Range(0, lo_open=True), Range(0), Range(1)
FRACTION, PROBABILITY = Range(0, 1, hi_open=True), Range(0, 1)
FINITE = Range(-LIMIT, LIMIT)
SEED = Range(0, 2**32 - 1, text="in [0, 2**32 - 1]")  # numpy's seeds


def param_range(params: list[Param]) -> Range:
    """The values a field shared by ``params`` (one parameter name, declared per loss, e.g. ``label_smoothing``) may
    take: the hull of their bounds (a missing bound: ``|x| <= LIMIT`` for a float, none for an int). The bound of
    the loss at hand is checked when its ``LossSpec`` is built, which names the loss."""
    none = -LIMIT if params[0].kind is float else None

    def side(bounds: list[tuple[float | None, bool]], pick, unbounded) -> tuple[float | None, bool]:
        if any(b is None for b, _ in bounds):
            return unbounded, False
        edge = pick(b for b, _ in bounds)
        return edge, all(is_open for b, is_open in bounds if b == edge)

    lo, lo_open = side([(p.low, p.open_low) for p in params], min, none)
    hi, hi_open = side([(p.high, p.open_high) for p in params], max, None if none is None else LIMIT)
    return Range(lo, hi, lo_open, hi_open)


def _balance_range(low: float | None) -> Range:
    """A ``balance_*`` number's range (:class:`adadpo.core.balance.BalanceOption`): ``|x| <= LIMIT``, or
    ``x >= low`` up to ``math.inf``."""
    return FINITE if low is None else Range(low, math.inf)


#: Every numeric field's valid values (the bounds the code that reads it assumes).
RANGES: dict[str, Range] = {
    # schedule and optimiser
    "per_device_train_batch_size": AT_LEAST_ONE, "per_device_eval_batch_size": AT_LEAST_ONE,
    "num_train_epochs": NON_NEGATIVE, "max_steps": Range(0, also=(-1,)), "learning_rate": POSITIVE,
    "warmup_steps": NON_NEGATIVE, "weight_decay": NON_NEGATIVE, "adam_beta1": FRACTION, "adam_beta2": FRACTION,
    "adam_epsilon": NON_NEGATIVE, "gradient_accumulation_steps": AT_LEAST_ONE, "max_grad_norm": NON_NEGATIVE,
    "label_smoothing_factor": FRACTION, "neftune_noise_alpha": NON_NEGATIVE, "seed": SEED, "data_seed": SEED,
    # logging, evaluation, saving
    "torch_empty_cache_steps": AT_LEAST_ONE, "logging_steps": POSITIVE, "eval_steps": POSITIVE,
    "eval_delay": NON_NEGATIVE, "eval_accumulation_steps": AT_LEAST_ONE, "save_steps": POSITIVE,
    "save_total_limit": NON_NEGATIVE,
    # processes and data loading
    "dataloader_num_workers": NON_NEGATIVE, "dataloader_prefetch_factor": AT_LEAST_ONE,
    "ddp_bucket_cap_mb": AT_LEAST_ONE, "ddp_timeout": AT_LEAST_ONE, "local_rank": Range(-1),
    "dataset_num_proc": AT_LEAST_ONE, "max_length": AT_LEAST_ONE, "pad_to_multiple_of": Range(1, also=("auto",)),
    "precompute_ref_batch_size": AT_LEAST_ONE, "test_split_size": POSITIVE,
    # TRL's options (loss_weights, f_alpha_divergence_coef: the LIMIT LossSpec checks with finite_number)
    "router_aux_loss_coef": NON_NEGATIVE, "loss_weights": FINITE, "ld_alpha": PROBABILITY,
    "f_alpha_divergence_coef": FINITE, "ref_model_mixup_alpha": PROBABILITY, "ref_model_sync_steps": AT_LEAST_ONE,
    # from the declarations: beta, every loss parameter (the hull over the losses taking it), the chunk size, balance
    "beta": param_range([BETA]), "logps_chunk_size": param_range([CHUNK_SIZE]),
    **{name: param_range(list(p.takers.values())) for name, p in LOSS_PARAMS.items()},
    **{f"balance_{o.name}": _balance_range(o.low) for o in balance_options() if o.kind is float},
    # the model
    "lora_r": AT_LEAST_ONE, "lora_alpha": AT_LEAST_ONE, "lora_dropout": FRACTION,
}


def _members(hint: Any) -> list[Any]:
    return list(get_args(hint)) if get_origin(hint) in (Union, types.UnionType) else [hint]


def numeric_kind(hint: Any) -> type | None:
    """``int`` or ``float`` for a field whose values are numbers (``list[float]``: its items), else ``None``."""
    kinds = []
    for member in _members(hint):
        if get_origin(member) is list:
            member = (get_args(member) or (None,))[0]
        if member in (int, float):
            kinds.append(member)
    return (float if float in kinds else int) if kinds else None


def choices(field: Any, hint: Any) -> list[Any] | None:
    """The allowed values of an enum field (argparse ``choices`` in its metadata, an ``Enum`` in its type, or a
    ``Literal`` unless any string is allowed beside it), or ``None`` for a field that is not one."""
    if field.metadata.get("choices") is not None:
        return list(field.metadata["choices"])
    members = _members(hint)
    for member in members:
        if isinstance(member, type) and issubclass(member, enum.Enum):
            return [m.value for m in member]
    literals = [v for m in members if get_origin(m) is Literal for v in get_args(m)]
    return literals if literals and str not in members else None


def _check_number(name: str, value: Any, kind: type, optional: bool) -> None:
    rng = RANGES.get(name, FINITE)
    expected = rng.describe(kind) + (" (or null)" if optional else "")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name}={value!r}: expected {expected}, not {type(value).__name__}")
    if kind is int and isinstance(value, float) and not value.is_integer():
        raise ValueError(f"{name}={value!r}: expected {expected}, not a fraction")
    if math.isnan(value) or (math.isinf(value) and not (rng.hi == math.inf and value > 0)) or not rng.holds(value):
        raise ValueError(f"{name}={value!r} is out of range: expected {expected}")


def check_fields(instance: Any) -> None:
    """``ValueError`` (one line: field, value, what is expected) for the first numeric or enum field of the
    dataclass ``instance`` whose value is of the wrong type, not finite, out of range or not one of its choices."""
    hints = get_type_hints(type(instance))
    for f in fields(instance):
        hint, value = hints[f.name], getattr(instance, f.name)
        optional = type(None) in _members(hint)
        if value is None and optional:
            continue
        allowed = choices(f, hint)
        if allowed is not None:
            if value not in allowed and not (isinstance(value, enum.Enum) and value.value in allowed):
                raise ValueError(f"{f.name}={value!r} is not one of its choices: {', '.join(map(str, allowed))}")
            continue
        kind = numeric_kind(hint)
        if kind is None or isinstance(value, str) and value in RANGES.get(f.name, FINITE).also:
            continue  # not a number, or a string the field also takes (pad_to_multiple_of: "auto")
        if isinstance(value, str) and str in _members(hint):  # the command line gives `int | str` fields strings
            try:
                value = float(value) if kind is float else int(value)
            except ValueError:
                pass
        for item in value if isinstance(value, list) else [value]:
            _check_number(f.name, item, kind, optional)
        if kind is int:  # YAML's 3.0 for an integer field: the integer 3 (code downstream indexes, ranges, formats it)
            if isinstance(value, list) and any(isinstance(v, float) for v in value):
                setattr(instance, f.name, [int(v) if isinstance(v, float) else v for v in value])
            elif isinstance(value, float):
                setattr(instance, f.name, int(value))
