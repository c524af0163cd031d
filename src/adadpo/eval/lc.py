"""The AlpacaEval 2 length-controlled win rate (Dubois et al., 2024, arXiv 2404.04475).

A pairwise judge compares a model's answer with a baseline's answer to the same instruction; ``p_i`` is the
probability (or the judge's hard verdict) that the model wins comparison ``i``. The raw win rate is
``mean(p)``. Judges like long answers, so the raw win rate rewards verbosity. The length-controlled win rate
fits a logistic GLM

    P(model wins i) = sigmoid(theta_model + theta_length * tanh(delta_i / sd(delta)) [+ theta_d * d_i])

with ``delta_i = len_model_i - len_baseline_i`` and ``d_i`` an optional instruction-difficulty covariate, then
reads the fit with the length term set to zero:

    LC = mean_i sigmoid(theta_model [+ theta_d * d_i]),

the win rate the judge would give if both answers had the same length.

What AlpacaEval does, and what this module does the same way (``alpaca_eval/metrics/glm_winrate.py``):

* the length difference is divided by its sample standard deviation (ddof 1), not centred, and squashed
  by ``tanh``; the GLM has no free intercept beyond the model term;
* soft preferences (ties are 0.5, weighted judges give any value in ``[0, 1]``) are fitted by the
  cross-entropy with the soft target: each comparison appears twice, once labelled "model wins" with weight
  ``p_i`` and once labelled "baseline wins" with weight ``1 - p_i``; the fit is scikit-learn's
  ``LogisticRegression`` without an intercept;
* the raw win rate is ``mean(p)``, and annotation files use ``preference`` in ``[1, 2]`` (2: ``output_2``
  preferred; the legacy value 0 is a tie) with lengths counted in characters.

Where it differs (measured on AlpacaEval 2's published annotations, ``docs/results/alpaca_eval_lc.md``):

* The instruction difficulty is an input here. One model's own comparisons cannot estimate it without absorbing
  the model effect; AlpacaEval estimates it jointly over many models. Left out, this function's LC is 6.6 points
  above the leaderboard's on average (28 at worst); with a difficulty estimated across models
  (:func:`adadpo.eval.length_controlled_winrates` does both steps) the gap is 1.3 points. Without difficulty a
  call warns once that its LC is not comparable with the leaderboard.
* The penalty: AlpacaEval chooses an L1 strength by 5-fold cross-validation; here it is a fixed, weak L2
  (``C=1e4`` by default, ``C=math.inf`` for the plain maximum-likelihood fit), there only to keep the fit finite
  when outcomes are perfectly separated. The two fits differ by 0.06 LC points on average (0.5 at most).
* AlpacaEval's leaderboard also fits on annotations of verbose and concise rewrites of its baseline, which
  pull the length coefficient towards the baseline's own; those annotations are not public in its repository.
  :func:`adadpo.eval.length_controlled_winrates` pulls each model's length coefficient towards the other
  models' instead.
* Signs: ``delta`` is model minus baseline, so a judge that favours the longer answer gets
  ``length_coef > 0`` (AlpacaEval's weights use baseline minus model).
* Scale: rates are fractions in ``[0, 1]``, not percentages, like every other rate in adadpo.
* Uncertainty: ``lc_se`` is an influence-function (delta method with sandwich covariance) standard error
  that includes the fit's uncertainty. AlpacaEval's ``lc_standard_error`` is only the standard error of the
  mean of the per-instruction predictions, which is zero without a difficulty term.
"""

from __future__ import annotations

import json
import math
import numbers
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from adadpo.eval.glm import lc_and_se

__all__ = [
    "DEFAULT_C",
    "LCResult",
    "length_controlled_winrate",
    "length_controlled_winrate_from_annotations",
    "read_annotations",
]

DEFAULT_C = 1e4
"""Inverse strength of the L2 penalty on the GLM coefficients (scikit-learn's ``C``; the penalty is
``|theta|^2 / (2 C)`` against a summed log-loss, so its pull is ~``1 / (C n)`` of the data's)."""

_PREFERENCE_MEANING = "the probability that the model's answer wins (1 = model wins, 0 = baseline wins, 0.5 = tie)"


@dataclass(frozen=True)
class LCResult:
    """Length-controlled and raw win rate of a model against a baseline, as fractions in ``[0, 1]``.

    Attributes:
        lc: length-controlled win rate, ``mean_i sigmoid(model_coef + difficulty_coef * d_i)``.
        wr: raw win rate, ``mean(preference)``.
        lc_se: standard error of ``lc`` (influence function / delta method, sandwich covariance); NaN if n < 2.
        wr_se: standard error of ``wr`` (standard error of the mean); NaN if n < 2.
        n: number of comparisons.
        model_coef: the GLM's model term (log-odds of winning at equal length and zero difficulty).
        length_coef: the GLM's coefficient on ``tanh((len_model - len_baseline) / length_scale)``; positive
            when the judge favours the longer answer. 0.0 when there is no length term (see ``length_scale``).
        difficulty_coef: coefficient on the difficulty covariate, ``None`` when none was given.
        length_scale: the sample standard deviation of the length difference used to standardise it; 0.0
            when the difference is constant, in which case the length term is left out of the GLM (its effect
            cannot be told apart from the model's).
    """

    lc: float
    wr: float
    lc_se: float
    wr_se: float
    n: int
    model_coef: float
    length_coef: float
    difficulty_coef: float | None
    length_scale: float

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python fields, JSON-serialisable."""
        return asdict(self)


_WARNED = [False]
NOT_COMPARABLE = (
    "an LC without an instruction-difficulty term is not comparable with AlpacaEval's leaderboard (on AlpacaEval 2's "
    "published annotations it reads 6.6 points higher on average, 28 at worst); for leaderboard-comparable numbers "
    "estimate difficulty across models with adadpo.eval.length_controlled_winrates or pass difficulty="
)


def _warn_not_comparable_once() -> None:
    """Say once per process that a single-model LC without difficulty is not the leaderboard's number."""
    if not _WARNED[0]:
        _WARNED[0] = True
        warnings.warn(NOT_COMPARABLE, UserWarning, stacklevel=3)


def _vector(name: str, values: ArrayLike, what: str, n: int | None = None) -> np.ndarray:
    """``values`` as a finite 1-D float64 array (of length ``n`` if given), or a ValueError naming ``name``."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a 1-D array of numbers ({what}); could not convert it: {err}") from None
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array ({what}); got shape {arr.shape}")
    if n is None and arr.size == 0:
        raise ValueError(f"{name} is empty; expected at least one comparison ({what})")
    if n is not None and arr.size != n:
        raise ValueError(f"{name} has length {arr.size} but preference has length {n}; expected one per comparison")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{name}[{i}] = {float(arr[i])!r} is not finite ({bad.size} such entries); expected {what}")
    return arr


def _check_C(C: float) -> float:
    if isinstance(C, bool) or not isinstance(C, numbers.Real) or math.isnan(C) or C <= 0:
        raise ValueError(f"C = {C!r} is invalid; expected a positive number (math.inf for no penalty)")
    return float(C)


def _fit_soft_logistic(X: np.ndarray, p: np.ndarray, C: float) -> np.ndarray:
    """Coefficients of a logistic GLM without intercept fitted to soft targets ``p`` (AlpacaEval's duplication)."""
    from sklearn.linear_model import LogisticRegression  # heavy import, only when a rate is computed

    # Row i as "model wins" with weight p_i and as "baseline wins" with weight 1 - p_i. Rows of weight zero are
    # left out (they change nothing, and older scikit-learn's Newton solver gives up on many zero Hessians),
    # except one placeholder when a class would be missing (the model wins, or loses, every comparison).
    wins, losses = p > 0.0, p < 1.0
    if not wins.any():
        wins[0] = True
    if not losses.any():
        losses[0] = True
    X2 = np.concatenate([X[wins], X[losses]])
    y2 = np.concatenate([np.ones(int(wins.sum())), np.zeros(int(losses.sum()))])
    w2 = np.concatenate([p[wins], 1.0 - p[losses]])
    clf = LogisticRegression(C=C, fit_intercept=False, solver="newton-cholesky", tol=1e-10, max_iter=1000)
    clf.fit(X2, y2, sample_weight=w2)
    return clf.coef_[0].astype(np.float64)


def validated_comparisons(preference: ArrayLike, len_model: ArrayLike,
                          len_baseline: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``preference``, ``len_model``, ``len_baseline`` as float64 arrays of one length ``n``, or a ValueError naming the
    argument, the entry and what was expected (empty, mismatched lengths, non-finite, ``p`` outside ``[0, 1]``,
    negative length)."""
    p = _vector("preference", preference, _PREFERENCE_MEANING)
    n = p.size
    outside = np.flatnonzero((p < 0.0) | (p > 1.0))
    if outside.size:
        i = int(outside[0])
        raise ValueError(
            f"preference[{i}] = {float(p[i])!r} is outside [0, 1] ({outside.size} such entries); expected "
            f"{_PREFERENCE_MEANING}. AlpacaEval files use 1..2: convert with p = preference - 1, or use "
            "length_controlled_winrate_from_annotations"
        )
    lengths = {}
    for name, values in (("len_model", len_model), ("len_baseline", len_baseline)):
        arr = _vector(name, values, "non-negative answer lengths", n)
        negative = np.flatnonzero(arr < 0)
        if negative.size:
            i = int(negative[0])
            raise ValueError(f"{name}[{i}] = {float(arr[i])!r} is negative; expected non-negative answer lengths")
        lengths[name] = arr
    return p, lengths["len_model"], lengths["len_baseline"]


def length_controlled_winrate(
    preference: ArrayLike,
    len_model: ArrayLike,
    len_baseline: ArrayLike,
    difficulty: ArrayLike | None = None,
    *,
    C: float = DEFAULT_C,
    warn_incomparable: bool = True,
) -> LCResult:
    """AlpacaEval 2's length-controlled win rate of a model against a baseline, as a fraction in ``[0, 1]``.

    Args:
        preference: per comparison, the probability that the model's answer wins: 1 the model wins, 0 the
            baseline wins, 0.5 a tie, anything in between a soft verdict (e.g. a judge's probability).
        len_model: length of the model's answer per comparison (characters for AlpacaEval; tokens or words
            work too, the rate does not depend on the unit).
        len_baseline: length of the baseline's answer per comparison, in the same unit.
        difficulty: optional per-comparison instruction difficulty, a covariate estimated elsewhere (e.g.
            AlpacaEval's ``instruction_difficulty.csv``, or the logit of the mean preference of many models per
            instruction). It is kept, not zeroed, when reading the fit.
        C: inverse L2 penalty strength of the GLM (see :data:`DEFAULT_C`); ``math.inf`` for no penalty.
        warn_incomparable: without ``difficulty``, warn (once per process) that the number is not comparable with
            AlpacaEval's leaderboard. ``False`` for callers that compare runs among themselves (the benchmark).

    Returns:
        :class:`LCResult` with ``lc``, ``wr``, their standard errors, ``n`` and the GLM's coefficients.

    Raises:
        ValueError: an input is empty, not 1-D, has the wrong length, is not finite, a preference lies
            outside ``[0, 1]``, a length is negative, or ``C`` is not positive.
    """
    p, len_m, len_b = validated_comparisons(preference, len_model, len_baseline)
    n = p.size
    d = None if difficulty is None else _vector("difficulty", difficulty, "a finite difficulty per comparison", n)
    C = _check_C(C)

    delta = len_m - len_b
    scale = float(np.std(delta, ddof=1)) if n > 1 else 0.0
    has_length = scale > 0.0 and math.isfinite(scale)
    if not has_length and n > 1 and delta[0] != 0.0:
        warnings.warn(
            f"every comparison has the same length difference ({float(delta[0])!r}): the length effect cannot be "
            "separated from the model's, so the GLM has no length term and lc estimates wr",
            stacklevel=2,
        )

    # Design: [model term, tanh(standardised length difference), difficulty]; Z is X with the length term zeroed.
    columns = [np.ones(n)]
    if has_length:
        columns.append(np.tanh(delta / scale))
    if d is not None:
        columns.append(d)
    X = np.column_stack(columns)
    Z = X.copy()
    if has_length:
        Z[:, 1] = 0.0

    theta = _fit_soft_logistic(X, p, C)
    penalty = np.eye(X.shape[1]) / C if math.isfinite(C) else np.zeros((X.shape[1], X.shape[1]))
    lc, lc_se = lc_and_se(X, Z, p, theta, penalty)
    wr_se = float(np.std(p, ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    if d is None and warn_incomparable:
        _warn_not_comparable_once()

    return LCResult(
        lc=lc,
        wr=float(p.mean()),
        lc_se=lc_se,
        wr_se=wr_se,
        n=n,
        model_coef=float(theta[0]),
        length_coef=float(theta[1]) if has_length else 0.0,
        difficulty_coef=None if d is None else float(theta[-1]),
        length_scale=scale if has_length else 0.0,
    )


def read_annotations(path: str | PathLike[str]) -> list[dict[str, Any]]:
    """Records of an AlpacaEval annotation file: a JSON array of objects (``.json``) or one object a line
    (``.jsonl``). Fields used downstream: ``output_1``, ``output_2``, ``preference``, and optionally
    ``generator_1``, ``generator_2`` and ``instruction``."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        records = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{lineno} is not valid JSON: {err}") from None
    else:
        try:
            records = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON ({err}); expected an array of annotation objects") from None
        if not isinstance(records, list):
            raise ValueError(f"{path} holds a JSON {type(records).__name__}; expected an array of annotation objects")
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise TypeError(f"{path}: record {i} is a {type(record).__name__}; expected an object")
    return records


def _annotation_preference(i: int, record: Mapping[str, Any]) -> float | None:
    """``preference`` in ``[1, 2]`` of record ``i`` as P(output_2 wins); ``None`` when missing (judge failure)."""
    value = record["preference"]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"annotation {i}: preference = {value!r} is not a number; expected a value in [1, 2]")
    value = float(value)
    if math.isnan(value):
        return None
    if value == 0.0:  # AlpacaEval's legacy encoding of a tie
        return 0.5
    if not 1.0 <= value <= 2.0:
        raise ValueError(
            f"annotation {i}: preference = {value!r} is outside [1, 2]; expected 1 (output_1 preferred), "
            "2 (output_2 preferred), anything between for a soft verdict, or 0 for a tie"
        )
    return value - 1.0


def length_controlled_winrate_from_annotations(
    annotations: str | PathLike[str] | Sequence[Mapping[str, Any]],
    *,
    model: str | None = None,
    baseline: str | None = None,
    difficulty: Mapping[str, float] | None = None,
    C: float = DEFAULT_C,
) -> LCResult:
    """:func:`length_controlled_winrate` of AlpacaEval-style pairwise annotations.

    Each record has ``output_1``, ``output_2`` (strings; lengths are counted in characters, as AlpacaEval
    does) and ``preference`` in ``[1, 2]``: 1 when ``output_1`` is preferred, 2 when ``output_2`` is, 1.5 (or
    the legacy 0) for a tie, anything between for a soft verdict. Records whose preference is missing or NaN
    (failed judge calls) are dropped with a warning, as AlpacaEval drops them.

    Args:
        annotations: a path to a ``.json`` / ``.jsonl`` file (see :func:`read_annotations`) or the records.
        model: the generator being evaluated. ``None``: AlpacaEval's convention, the model wrote
            ``output_2`` and the baseline ``output_1``. Given: records where ``generator_2 == model`` count as
            they are, records where ``generator_1 == model`` are mirrored, others are skipped.
        baseline: when given, only records whose opponent generator is ``baseline`` are used.
        difficulty: optional instruction difficulty keyed by the record's ``instruction`` text.
        C: see :func:`length_controlled_winrate`.

    Raises:
        ValueError: a record lacks a field or has an invalid value (the message names the record), the
            records compare several models or baselines without ``model`` / ``baseline`` to choose, or no
            record is left.
        TypeError: a record is not a mapping, or its preference or an output has the wrong type.
    """
    if isinstance(annotations, (str, PathLike)):
        records: Sequence[Mapping[str, Any]] = read_annotations(annotations)
    elif hasattr(annotations, "to_dict"):  # a pandas DataFrame
        records = annotations.to_dict("records")  # type: ignore[union-attr]
    else:
        records = annotations

    prefs: list[float] = []
    len_m: list[float] = []
    len_b: list[float] = []
    diffs: list[float] = []
    models: set[Any] = set()
    opponents: set[Any] = set()
    n_missing = 0
    for i, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise TypeError(f"annotation {i} is a {type(record).__name__}; expected a mapping of fields")
        needed = ["output_1", "output_2", "preference"] + (["instruction"] if difficulty is not None else [])
        if model is not None or baseline is not None:
            needed += ["generator_1", "generator_2"]
        missing = [k for k in needed if k not in record]
        if missing:
            raise ValueError(f"annotation {i} has no field {', '.join(map(repr, missing))}; it has {sorted(record)}")
        if model is None or record["generator_2"] == model:
            model_side = 2
        elif record["generator_1"] == model:
            model_side = 1
        else:
            continue
        opponent = record.get(f"generator_{3 - model_side}")
        if baseline is not None and opponent != baseline:
            continue
        pref = _annotation_preference(i, record)
        if pref is None:
            n_missing += 1
            continue
        outputs = {}
        for side in (1, 2):
            output = record[f"output_{side}"]
            if not isinstance(output, str):
                raise TypeError(f"annotation {i}: output_{side} is a {type(output).__name__}; expected a string")
            outputs[side] = output
        prefs.append(pref if model_side == 2 else 1.0 - pref)
        len_m.append(len(outputs[model_side]))
        len_b.append(len(outputs[3 - model_side]))
        models.add(record.get(f"generator_{model_side}"))
        opponents.add(opponent)
        if difficulty is not None:
            instruction = record["instruction"]
            if instruction not in difficulty:
                raise ValueError(f"annotation {i}: its instruction is not a key of difficulty: {instruction!r:.80}")
            diffs.append(float(difficulty[instruction]))

    if n_missing:
        warnings.warn(f"dropped {n_missing} annotations without a preference (failed judge calls)", stacklevel=2)
    if not prefs:
        chosen = f" with model={model!r}" if model is not None else ""
        chosen += f" and baseline={baseline!r}" if baseline is not None else ""
        raise ValueError(f"no usable annotations{chosen} among {len(records)} records")
    if len(models) > 1:
        raise ValueError(
            f"the annotations compare several models as output_2 ({sorted(map(str, models))}); pass model=... to "
            "choose the one to evaluate"
        )
    if len(opponents) > 1:
        raise ValueError(
            f"the model is compared with several baselines ({sorted(map(str, opponents))}); pass baseline=... "
            "to choose one"
        )
    return length_controlled_winrate(prefs, len_m, len_b, diffs if difficulty is not None else None, C=C)
