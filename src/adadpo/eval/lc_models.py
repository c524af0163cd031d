"""The length-controlled win rate of several models against one baseline, as AlpacaEval 2's leaderboard computes it.

Input: one row per comparison, as plain arrays: the model's name, the instruction's key (text, id, or e.g.
``(prompt_id, answer_index)``), ``p`` = P(model wins) in ``[0, 1]``, and both answers' lengths in one unit. Steps:

1. Instruction difficulty ``d_i``: from a table (``difficulty={key: value}``, matched by key, never by row
   position), or estimated jointly over the models (:func:`adadpo.eval.difficulty.estimate_difficulty`).
2. Per model ``m``, the GLM of :func:`adadpo.eval.length_controlled_winrate` with the difficulty covariate,

       P(m wins r) = sigmoid(theta_m + theta_len * tanh(delta_r / sd_m) + theta_d * d_i(r)),

   fitted with a weak L2 penalty (``1 / C``) and, unless ``pool_length=0``, a Gaussian pull of ``theta_len``
   towards the median of the models' unpulled length coefficients, of precision ``pool_length * n_m``.
   With ``anchor=`` (verdicts on rewrites of the baseline's own answers), those rows join every model's fit with
   no model term, which is AlpacaEval's own regularisation towards the baseline.
3. ``LC_m = mean_r sigmoid(theta_m + theta_d * d_i(r))`` with its influence-function standard error (the
   difficulty, the pooled centre and the anchor count as fixed).

Why the pull: AlpacaEval's leaderboard fit adds annotations of verbose and concise rewrites of its baseline
(weight 0.2 in all), which anchor the length coefficient of a model whose lengths barely vary in sign (e.g. one
that always answers in a few words: its length term is nearly collinear with its bias). Those annotations are not
public in AlpacaEval's repository, so here the other models anchor it. Measured on AlpacaEval 2's 56 stored
models (docs/results/alpaca_eval_lc.md): without the pull 1.31 LC points from the leaderboard on average, 15.9 at
worst (gpt4_gamed, 69-character answers); with ``pool_length=0.03`` 0.76 on average, 3.3 at worst.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from adadpo.eval.difficulty import estimate_difficulty, length_features
from adadpo.eval.glm import fit_soft_logistic, lc_and_se, sigmoid
from adadpo.eval.lc import DEFAULT_C, LCResult, _check_C, _warn_not_comparable_once, validated_comparisons

__all__ = ["POOL_LENGTH", "ModelsLC", "length_controlled_winrates"]

POOL_LENGTH = 0.03
"""Precision per comparison of the pull of each model's length coefficient towards the models' median (a model
with 805 comparisons: precision 24, a prior standard deviation of 0.2 on a coefficient that ranges 1 to 4).
Measured on AlpacaEval 2's 56 stored models: 0.01, 0.03, 0.1 give 0.79, 0.76, 0.79 LC points from the leaderboard on
average, 5.1, 3.3, 4.9 at worst."""


@dataclass(frozen=True)
class ModelsLC:
    """Per-model results of :func:`length_controlled_winrates`.

    Attributes:
        models: ``{model: LCResult}`` in first-seen order; rates are fractions in ``[0, 1]``.
        difficulty: ``{instruction: d}`` used (estimated or from the table), ``None`` when none was used.
        difficulty_source: ``"estimated"`` (jointly over the models), ``"table"`` or ``"none"`` (one model, no table).
        length_centre: the pooled centre of the length coefficient, ``None`` without pooling.
        mean_length: ``{model: mean length of the model's answers}`` in the input's unit.
    """

    models: dict[Hashable, LCResult]
    difficulty: dict[Hashable, float] | None
    difficulty_source: str
    length_centre: float | None
    mean_length: dict[Hashable, float]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable: model names as strings, rates as fractions."""
        def plain(value: Any) -> Any:  # NaN (a standard error of one comparison) is not JSON
            return None if isinstance(value, float) and math.isnan(value) else value

        return {
            "models": {str(m): {k: plain(v) for k, v in {**r.to_dict(), "mean_length": self.mean_length[m]}.items()}
                       for m, r in self.models.items()},
            "difficulty_source": self.difficulty_source,
            "length_centre": self.length_centre,
        }


def _keys(name: str, values: Sequence[Hashable], n: int) -> list[Hashable]:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise ValueError(f"{name} must be a sequence with one entry per comparison; got {type(values).__name__}")
    values = list(values)
    if len(values) != n:
        raise ValueError(f"{name} has length {len(values)} but preference has length {n}; expected one per comparison")
    for i, v in enumerate(values):
        if not isinstance(v, Hashable) or (isinstance(v, float) and math.isnan(v)):
            raise ValueError(f"{name}[{i}] = {v!r} cannot be a key; expected a name, text, number or tuple")
    return values


def _table_values(difficulty: Mapping[Hashable, float], instruction: list[Hashable],
                  name: str = "instruction") -> np.ndarray:
    out = np.empty(len(instruction))
    for r, key in enumerate(instruction):
        if key not in difficulty:
            raise ValueError(f"{name}[{r}] = {key!r:.80} is not a key of the difficulty table "
                             f"({len(difficulty)} keys); expected every instruction to have a difficulty")
        value = difficulty[key]
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
                or not math.isfinite(value):
            raise ValueError(f"difficulty[{key!r:.80}] = {value!r} is not a finite number")
        out[r] = float(value)
    return out


@dataclass(frozen=True)
class _Anchor:
    """Anchor comparisons, per row: the standardised length feature, the instruction key, the verdict, and the row's
    share of the anchor's total weight (the sets share it evenly, and each set's rows share theirs evenly)."""

    t: np.ndarray
    instruction: list[Hashable]
    p: np.ndarray
    share: np.ndarray


def _anchor(anchor: Mapping[str, Any]) -> _Anchor:
    """Validated anchor rows, each set's length difference standardised by its own sd."""
    missing = [k for k in ("instruction", "preference", "len_model", "len_baseline") if k not in anchor]
    if missing:
        raise ValueError(f"anchor has no {', '.join(missing)}; expected instruction, preference, len_model, "
                         "len_baseline (and optionally set) per comparison of a rewrite of the baseline's answer")
    p, len_m, len_b = validated_comparisons(anchor["preference"], anchor["len_model"], anchor["len_baseline"])
    instruction = _keys("anchor instruction", anchor["instruction"], p.size)
    sets = _keys("anchor set", anchor.get("set", [0] * p.size), p.size)
    names = list(dict.fromkeys(sets))
    si = np.array([names.index(x) for x in sets])
    t, _ = length_features(si, len_m - len_b, len(names))
    return _Anchor(t, instruction, p, 1.0 / (len(names) * np.bincount(si)[si]))


def _fit_model(p: np.ndarray, t: np.ndarray, has_length: bool, d: np.ndarray | None, C: float,
               length_prior: tuple[float, float] | None,
               anchor: tuple[_Anchor, np.ndarray | None, float] | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``theta``, design ``X`` (the model's rows) and the Hessian of everything else in the objective (penalty and
    anchor rows) for one model; columns [bias, length?, difficulty?]. Anchor rows have no model term: they share the
    length and difficulty coefficients only."""
    columns = [np.ones(p.size)] + ([t] if has_length else []) + ([d] if d is not None else [])
    X = np.column_stack(columns)
    precision = np.full(X.shape[1], 1.0 / C if math.isfinite(C) else 0.0)
    mean = np.zeros(X.shape[1])
    if has_length and length_prior is not None:
        precision[1] += length_prior[1]
        mean[1] = length_prior[0]
    if anchor is None:
        return fit_soft_logistic(X, p, precision, mean), X, np.diag(precision)
    rows, d_anchor, total = anchor
    weight = total * rows.share
    Xa = np.column_stack([np.zeros(rows.p.size)] + ([rows.t] if has_length else [])
                         + ([d_anchor] if d is not None else []))
    theta = fit_soft_logistic(np.r_[X, Xa], np.r_[p, rows.p], precision, mean, np.r_[np.ones(p.size), weight])
    mu = sigmoid(Xa @ theta)
    return theta, X, np.diag(precision) + Xa.T @ (Xa * (weight * mu * (1 - mu))[:, None])


def length_controlled_winrates(
    model: Sequence[Hashable],
    instruction: Sequence[Hashable],
    preference: ArrayLike,
    len_model: ArrayLike,
    len_baseline: ArrayLike,
    *,
    difficulty: Mapping[Hashable, float] | None = None,
    pool_length: float = POOL_LENGTH,
    length_centre: float | None = None,
    anchor: Mapping[str, Any] | None = None,
    anchor_weight: float = 0.2,
    C: float = DEFAULT_C,
) -> ModelsLC:
    """LC of every model against the shared baseline, with instruction difficulty (module docstring).

    Args:
        model: per comparison, the model's name; length ``n``.
        instruction: per comparison, the instruction's key; the same key on every model's comparison of it.
        preference: per comparison, P(model wins) in ``[0, 1]`` (1 win, 0 loss, 0.5 tie), shape ``(n,)``.
        len_model, len_baseline: answer lengths, one unit for all rows (characters, words, tokens), ``(n,)``.
        difficulty: ``{instruction: d}`` to use instead of estimating it (e.g. AlpacaEval's table, keyed by
            instruction text). ``None``: estimated jointly when two or more models share instructions; with one
            model there is nothing to estimate it from, LC has no difficulty term, and a warning (once per
            process) says that it is not comparable with AlpacaEval's leaderboard.
        pool_length: see :data:`POOL_LENGTH`; 0 fits each model's length coefficient on its own data only.
        length_centre: where the pull goes; ``None``: the median of these models' unpulled length coefficients.
            Given (with ``difficulty``), each model's result no longer depends on which other models are in the
            call: e.g. the centre and difficulty of a larger evaluation, reused for one new model.
        anchor: AlpacaEval's regularisation towards the baseline, when you have its data: comparisons of rewrites
            of the baseline's own answers (e.g. a verbose and a concise version) against the baseline, as a mapping
            of per-row sequences ``instruction``, ``preference`` (P(rewrite wins)), ``len_model`` (the rewrite's
            length), ``len_baseline`` and optionally ``set`` (which rewrite; each set's length difference is
            standardised on its own). They join every model's fit with no model term (a rewrite of the baseline is
            the baseline), sharing its length and difficulty coefficients. Their instructions need a difficulty.
        anchor_weight: the anchor's total weight per comparison of the model (AlpacaEval's
            ``regularize_to_baseline_lambda``, 0.2: a model with 805 comparisons gets anchor rows weighing 161 in
            all), split evenly over the sets and each set's rows.
        C: inverse strength of the weak L2 penalty on every coefficient (:data:`adadpo.eval.DEFAULT_C`).

    Returns:
        :class:`ModelsLC`.

    Raises:
        ValueError: an input is empty, of the wrong length, not finite, out of range, a key is missing from
            ``difficulty``, or ``pool_length`` / ``C`` is invalid; the message names the argument and entry.
    """
    p, len_m, len_b = validated_comparisons(preference, len_model, len_baseline)
    n = p.size
    model = _keys("model", model, n)
    instruction = _keys("instruction", instruction, n)
    C = _check_C(C)
    if isinstance(pool_length, bool) or not isinstance(pool_length, (int, float)) or not pool_length >= 0 \
            or not math.isfinite(pool_length):
        raise ValueError(f"pool_length = {pool_length!r} is invalid; expected a finite number >= 0 (0: no pooling)")
    if length_centre is not None and (isinstance(length_centre, bool) or not isinstance(length_centre, (int, float))
                                      or not math.isfinite(length_centre)):
        raise ValueError(f"length_centre = {length_centre!r} is invalid; expected a finite number or None")

    names = list(dict.fromkeys(model))
    index = {m: k for k, m in enumerate(names)}
    mi = np.fromiter((index[m] for m in model), dtype=np.int64, count=n)
    if difficulty is not None:
        d_rows, table, source = _table_values(difficulty, instruction), dict(difficulty), "table"
    elif len(names) > 1:
        table = estimate_difficulty(model, instruction, p, len_m, len_b)
        d_rows, source = np.array([table[k] for k in instruction]), "estimated"
    else:
        d_rows, table, source = None, None, "none"
        _warn_not_comparable_once()

    t, scale = length_features(mi, len_m - len_b, len(names))
    rows = [np.flatnonzero(mi == k) for k in range(len(names))]
    anchored = None
    if anchor is not None:
        if isinstance(anchor_weight, bool) or not isinstance(anchor_weight, (int, float)) or not anchor_weight > 0 \
                or not math.isfinite(anchor_weight):
            raise ValueError(f"anchor_weight = {anchor_weight!r} is invalid; expected a finite number > 0")
        anchor_rows = _anchor(anchor)
        d_anchor = None if table is None else _table_values(table, anchor_rows.instruction, "anchor instruction")
        anchored = (anchor_rows, d_anchor)

    def fit(k: int, r: np.ndarray, prior: tuple[float, float] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return _fit_model(p[r], t[r], scale[k] > 0, None if d_rows is None else d_rows[r], C, prior,
                          None if anchored is None else (*anchored, anchor_weight * r.size))

    centre = None if length_centre is None or pool_length == 0 else float(length_centre)
    fits = [fit(k, r, None if centre is None else (centre, pool_length * r.size)) for k, r in enumerate(rows)]
    length_coefs = [theta[1] for k, (theta, _, _) in enumerate(fits) if scale[k] > 0]
    if pool_length > 0 and length_centre is None and length_coefs:  # second pass, pulled to the first's median
        centre = float(np.median(length_coefs))
        fits = [fit(k, r, (centre, pool_length * r.size)) for k, r in enumerate(rows)]

    results: dict[Hashable, LCResult] = {}
    for k, (name, r, (theta, X, other_hessian)) in enumerate(zip(names, rows, fits)):
        has_length = scale[k] > 0
        Z = X.copy()
        if has_length:
            Z[:, 1] = 0.0
        lc, lc_se = lc_and_se(X, Z, p[r], theta, other_hessian)
        wr_se = float(np.std(p[r], ddof=1) / math.sqrt(r.size)) if r.size > 1 else math.nan
        results[name] = LCResult(
            lc=lc, wr=float(p[r].mean()), lc_se=lc_se, wr_se=wr_se, n=int(r.size), model_coef=float(theta[0]),
            length_coef=float(theta[1]) if has_length else 0.0,
            difficulty_coef=None if d_rows is None else float(theta[-1]),
            length_scale=float(scale[k]),
        )
    constant = [str(names[k]) for k, r in enumerate(rows) if scale[k] == 0 and np.any(len_m[r] != len_b[r])]
    if constant:
        warnings.warn(f"{', '.join(constant)}: the same length difference in every comparison (or one comparison): "
                      "no length term, LC estimates WR there", UserWarning, stacklevel=2)
    mean_length = {name: float(len_m[r].mean()) for name, r in zip(names, rows)}
    return ModelsLC(results, table, source, centre, mean_length)
