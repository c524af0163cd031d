"""Bounded numbers: :class:`Param` declares one (name, kind, default, bounds, help) and checks it where declared.

Every loss parameter (:mod:`adadpo.core.registry`), ``beta``, and the log-prob helpers' ``chunk_size`` is a
:class:`Param`; :class:`adadpo.LossSpec`'s keyword fields and :func:`param_fields` (what a config layer or a
command line generates its options from) derive from those declarations. :data:`LIMIT` is the one magnitude
bound of an unbounded number (a loss parameter, an exponent of :class:`adadpo.Balance`, a loss weight).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

#: The bound of every number the losses multiply with log-prob sums: within ``[1/LIMIT, LIMIT]`` (beta) or
#: ``|x| <= LIMIT`` (the others), beta, ipo's target margin ``1/(2 beta)``, their products with log-prob sums of
#: up to 1e5 and the squares of those stay finite in float32 (max 3.4e38); beyond it the loss or its gradient
#: overflows.
LIMIT = 1e9


def finite_number(name: str, value: object) -> float:
    """``value`` as a float; ``ValueError`` unless it is a finite number of magnitude ``<= LIMIT``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name}={value!r} must be a finite number")
    if abs(value) > LIMIT:
        raise ValueError(f"{name}={value!r} is too large for the loss's float32 arithmetic; expected |{name}| <= "
                         f"{LIMIT:g}")
    return float(value)


def within(x: float, low: float | None, high: float | None, open_low: bool = False, open_high: bool = False) -> bool:
    """Whether ``x`` is within ``[low, high]`` (``(`` / ``)`` where open; ``None``: no bound on that side)."""
    below = low is not None and (x <= low if open_low else x < low)
    above = high is not None and (x >= high if open_high else x > high)
    return not (below or above)


def span(low: float | None, high: float | None, open_low: bool = False, open_high: bool = False) -> str:
    """The bounds of :func:`within` as a message says them: ``"in [0, 0.5)"``, ``">= 0"``, ``"< 1"``, and
    ``"of magnitude <= 1e+09"`` (:data:`LIMIT`) with neither."""
    if low is not None and high is not None:
        return f"in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
    if low is not None:
        return f"{'>' if open_low else '>='} {low:g}"
    if high is not None:
        return f"{'<' if open_high else '<='} {high:g}"
    return f"of magnitude <= {LIMIT:g}"


@dataclass(frozen=True)
class Param:
    """One bounded number.

    Attributes:
        name: its keyword (``LossSpec``'s field, the config field, the CLI option ``--name``).
        default: its value when unset (``None``: unset means automatic, or with ``required`` it must be given).
        help: one sentence for ``--help`` and the config's docs.
        low, high: bounds (``None``: only ``|x| <= LIMIT``), open with ``open_low``/``open_high``.
        example: the value an error suggests.
        kind: ``float`` or ``int``.
        required: the loss that declares it has no default for it (``LossSpec`` refuses to build without it).
        neutral: a value that means "off": given to a loss that does not take the parameter, it is not an error
            (TRL's ``label_smoothing=0.0`` default).
    """

    name: str
    default: float | None
    help: str
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    example: float | None = None
    kind: type = float
    required: bool = False
    neutral: float | None = None

    def span(self) -> str:
        """What is expected, as a message says it: ``"in [0, 0.5)"``, ``">= 0"``, ``"of magnitude <= 1e+09"``."""
        return span(self.low, self.high, self.open_low, self.open_high)

    def holds(self, x: float) -> bool:
        """Whether the number ``x`` is within the bounds."""
        return within(x, self.low, self.high, self.open_low, self.open_high)

    def check(self, value: object, loss: str = "", option: str = "loss") -> float | int:
        """``value`` as a number of :attr:`kind`; ``ValueError`` (naming the ``loss`` it is for, given as ``option``:
        ``loss`` or TRL's ``loss_type``) unless it is finite, of magnitude ``<= LIMIT`` and within the bounds."""
        if self.kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{self.name}={value!r} must be an integer {self.span()}")
            x: float | int = value
        else:
            x = finite_number(self.name, value)
        if self.holds(x):
            return x
        hint = f" (e.g. {self.example:g})" if self.example is not None else ""
        if option == "loss_type":
            raise ValueError(f"loss_type {loss!r} needs {self.name} {self.span()}{hint}, got {value!r}")
        where = f" for loss {loss!r}" if loss else ""
        verb = "must lie" if self.low is not None and self.high is not None else "must be"
        raise ValueError(f"{self.name}={value!r} {verb} {self.span()}{where}{hint}")


class ParamField(NamedTuple):
    """One keyword of the losses' parameters, as a config or a command line declares it: ``name``, ``kind``,
    ``help`` (each loss's own help, with the losses it is for), ``takers`` (the losses that take it, by name, each
    with its :class:`Param`: the bounds and default may differ between losses), ``required_by`` (the losses
    without a default for it) and ``neutral`` (see :class:`Param`). The field's own default is ``None``: unset,
    each loss uses its default."""

    name: str
    kind: type
    help: str
    takers: dict[str, Param]
    required_by: tuple[str, ...]
    neutral: float | None


def param_fields(params_of: dict[str, dict[str, Param]]) -> dict[str, ParamField]:
    """The :class:`ParamField` of every parameter name in ``params_of`` (loss name -> its parameters), in order of
    first declaration; ``ValueError`` if two declarations of one name disagree on its kind or neutral value."""
    grouped: dict[str, dict[str, Param]] = {}
    for loss, params in params_of.items():
        for name, param in params.items():
            grouped.setdefault(name, {})[loss] = param
    out = {}
    for name, takers in grouped.items():
        first = next(iter(takers.values()))
        for loss, p in takers.items():
            if (p.kind, p.neutral) != (first.kind, first.neutral):
                raise ValueError(f"parameter {name!r} of loss {loss!r} is declared with another kind or neutral value "
                                 "than the other losses' parameter of that name")
        helps: dict[str, list[str]] = {}
        for loss, p in takers.items():
            helps.setdefault(p.help, []).append(loss)
        text = " ".join(f"{h} ({', '.join(losses)})" for h, losses in helps.items())
        out[name] = ParamField(name, first.kind, text, takers, tuple(n for n, p in takers.items() if p.required),
                               first.neutral)
    return out
