"""adadpo.eval.length_controlled_winrates: LC of several models with instruction difficulty, on known answers.

Independent references: the data-generating GLM's own LC (synthetic worlds), and the single-model
``length_controlled_winrate`` (scikit-learn's fit, not this module's Newton solver) for the per-model step.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import adadpo.eval.lc as lc_module
from adadpo.eval import estimate_difficulty, length_controlled_winrate, length_controlled_winrates


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _world(rng, n_models=8, n_instructions=300, slope=1.5, d_sd=1.2, hard=True, coverage=1.0):
    """Comparisons from the joint GLM: model m on instruction i wins with sigmoid(a_m + slope tanh(delta/sd_m) + d_i).
    Returns (columns, a, d); ``coverage`` < 1 leaves out a random share of (model, instruction) pairs."""
    a = np.linspace(-2.0, 1.5, n_models)
    d = rng.normal(0.0, d_sd, n_instructions)
    cols = {k: [] for k in ("model", "instruction", "p", "len_model", "len_baseline")}
    len_b = rng.gamma(4.0, 100.0, n_instructions)
    for m in range(n_models):
        keep = rng.random(n_instructions) < coverage
        lm = len_b * np.exp(rng.normal(0.3 * (m % 3 - 1), 0.5, n_instructions))
        delta = (lm - len_b)[keep]
        z = a[m] + slope * np.tanh(delta / delta.std(ddof=1)) + d[keep]
        prob = sigmoid(z)
        cols["p"].append((rng.random(keep.sum()) < prob).astype(float) if hard else prob)
        cols["len_model"].append(lm[keep])
        cols["len_baseline"].append(len_b[keep])
        cols["model"] += [f"model-{m}"] * int(keep.sum())
        cols["instruction"] += [("prompt", int(i)) for i in np.flatnonzero(keep)]  # tuple keys, as a grid's
    for k in ("p", "len_model", "len_baseline"):
        cols[k] = np.concatenate(cols[k])
    return cols, a, d


def _args(cols):
    return cols["model"], cols["instruction"], cols["p"], cols["len_model"], cols["len_baseline"]


def test_recovers_difficulty_and_each_models_lc():
    """Data drawn from the joint GLM: the estimated difficulty tracks the true one and every model's LC lands within
    4 standard errors of mean_i sigmoid(a_m + d_i), its value at equal length."""
    rng = np.random.default_rng(0)
    cols, a, d = _world(rng, n_models=10, n_instructions=400)
    res = length_controlled_winrates(*_args(cols))
    assert res.difficulty_source == "estimated"
    est = np.array([res.difficulty[("prompt", i)] for i in range(len(d))])
    assert np.corrcoef(est, d)[0, 1] > 0.8
    for m, a_m in enumerate(a):
        r = res.models[f"model-{m}"]
        truth = float(np.mean(sigmoid(a_m + d)))
        assert abs(r.lc - truth) < 4 * r.lc_se, (m, r.lc, truth, r.lc_se)
    # The length preference is found (each coefficient alone is noisy at 400 binary verdicts: 0.8 to 2.2 even with
    # the true difficulty; with an estimated one, fitted on the same verdicts, they run ~20% high, as fixed-effect
    # logits do with 10 verdicts per instruction).
    assert 1.2 < np.mean([r.length_coef for r in res.models.values()]) < 2.2


def test_soft_verdicts_from_the_glm_give_its_lc_closely():
    """Soft verdicts equal to the GLM's probabilities: with the true difficulty as the table and no pull, the fit is
    the truth itself (coefficients 1 on difficulty and 1.5 on length)."""
    rng = np.random.default_rng(1)
    cols, a, d = _world(rng, n_models=4, n_instructions=200, hard=False)
    table = {("prompt", i): float(v) for i, v in enumerate(d)}
    res = length_controlled_winrates(*_args(cols), difficulty=table, pool_length=0, C=math.inf)
    for m, a_m in enumerate(a):
        r = res.models[f"model-{m}"]
        assert r.model_coef == pytest.approx(a_m, abs=1e-6)
        assert r.difficulty_coef == pytest.approx(1.0, abs=1e-6)
        assert r.lc == pytest.approx(float(np.mean(sigmoid(a_m + d))), abs=1e-7)


def test_difficulty_removes_the_confounding_of_length_with_easy_instructions():
    """Models write longer answers where the instruction is easy for them: a single-model fit credits length with
    the difficulty's effect and misreads LC; with the difficulty estimated across the models each LC is within
    4 standard errors of its value at equal length, and closer than without."""
    rng = np.random.default_rng(2)
    n_models, n_instructions = 12, 400
    a = np.linspace(-1.5, 1.0, n_models)
    d = rng.normal(0.0, 1.5, n_instructions)
    len_b = rng.gamma(4.0, 100.0, n_instructions)
    cols = {k: [] for k in ("model", "instruction", "p", "len_model", "len_baseline")}
    for m in range(n_models):
        lm = len_b * np.exp(0.5 * d + rng.normal(0.0, 0.4, n_instructions))
        delta = lm - len_b
        prob = sigmoid(a[m] + 0.5 * np.tanh(delta / delta.std(ddof=1)) + d)
        cols["p"].append((rng.random(n_instructions) < prob).astype(float))
        cols["len_model"].append(lm)
        cols["len_baseline"].append(len_b)
        cols["model"] += [m] * n_instructions
        cols["instruction"] += list(range(n_instructions))
    for k in ("p", "len_model", "len_baseline"):
        cols[k] = np.concatenate(cols[k])
    res = length_controlled_winrates(*_args(cols))
    err_with, err_without = [], []
    for m in range(n_models):
        rows = slice(m * n_instructions, (m + 1) * n_instructions)
        plain = length_controlled_winrate(cols["p"][rows], cols["len_model"][rows], cols["len_baseline"][rows],
                                          warn_incomparable=False)
        truth = float(np.mean(sigmoid(a[m] + d)))
        assert abs(res.models[m].lc - truth) < 4 * res.models[m].lc_se
        err_with.append(abs(res.models[m].lc - truth))
        err_without.append(abs(plain.lc - truth))
    assert np.mean(err_with) < 0.5 * np.mean(err_without)


_small = st.integers(2, 4).flatmap(lambda n_models: st.tuples(
    st.just(n_models),
    st.integers(8, 30),
    st.integers(0, 2**32 - 1),
))


@settings(max_examples=25, deadline=None)
@given(_small)
def test_per_model_step_equals_the_single_model_fit(spec):
    """With a difficulty table and no pull, each model's result is the single-model function's (scikit-learn's
    solver) on that model's rows."""
    n_models, n_instructions, seed = spec
    rng = np.random.default_rng(seed)
    cols, _, _ = _world(rng, n_models=n_models, n_instructions=n_instructions, hard=bool(seed % 2))
    table = {("prompt", i): float(v) for i, v in enumerate(rng.normal(size=n_instructions))}
    res = length_controlled_winrates(*_args(cols), difficulty=table, pool_length=0)
    for m in range(n_models):
        rows = [k for k, name in enumerate(cols["model"]) if name == f"model-{m}"]
        d = [table[cols["instruction"][k]] for k in rows]
        ref = length_controlled_winrate(cols["p"][rows], cols["len_model"][rows], cols["len_baseline"][rows], d)
        got = res.models[f"model-{m}"]
        assert got.lc == pytest.approx(ref.lc, abs=1e-5)
        assert got.lc_se == pytest.approx(ref.lc_se, rel=1e-3, abs=1e-5)
        assert got.wr == pytest.approx(ref.wr, abs=1e-12) and got.n == ref.n


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_rows_are_matched_by_key_not_position(seed):
    """Shuffling the rows (and the table's order) changes nothing: difficulty follows the instruction's key."""
    rng = np.random.default_rng(seed)
    cols, _, _ = _world(rng, n_models=3, n_instructions=40)
    order = rng.permutation(len(cols["p"]))
    shuffled = {k: ([v[i] for i in order] if isinstance(v, list) else v[order]) for k, v in cols.items()}
    a = length_controlled_winrates(*_args(cols))
    b = length_controlled_winrates(*_args(shuffled))
    for m in a.models:
        assert b.models[m].lc == pytest.approx(a.models[m].lc, abs=1e-7)
    table = dict(reversed(list(a.difficulty.items())))
    c = length_controlled_winrates(*_args(shuffled), difficulty=table)
    d = length_controlled_winrates(*_args(cols), difficulty=a.difficulty)
    for m in a.models:
        assert c.models[m].lc == pytest.approx(d.models[m].lc, abs=1e-7)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**32 - 1), st.booleans())
def test_mirroring_every_comparison_gives_one_minus_lc(seed, table):
    """Swap model and baseline in every row (p -> 1 - p, lengths swapped): each LC -> 1 - LC, with the difficulty
    estimated (it flips sign) or from a table (its coefficient flips sign)."""
    rng = np.random.default_rng(seed)
    cols, _, _ = _world(rng, n_models=3, n_instructions=30, hard=bool(seed % 2))
    mirrored = {**cols, "p": 1 - cols["p"], "len_model": cols["len_baseline"], "len_baseline": cols["len_model"]}
    kw = {"difficulty": {("prompt", i): float(v) for i, v in enumerate(rng.normal(size=30))}} if table else {}
    fwd = length_controlled_winrates(*_args(cols), **kw)
    bwd = length_controlled_winrates(*_args(mirrored), **kw)
    for m in fwd.models:
        assert bwd.models[m].lc == pytest.approx(1 - fwd.models[m].lc, abs=1e-6)
        assert bwd.models[m].length_coef == pytest.approx(fwd.models[m].length_coef, abs=1e-5)


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_a_fixed_centre_and_table_make_each_model_independent_of_the_others(seed):
    rng = np.random.default_rng(seed)
    cols, _, d = _world(rng, n_models=4, n_instructions=50)
    table = {("prompt", i): float(v) for i, v in enumerate(d)}
    full = length_controlled_winrates(*_args(cols), difficulty=table, length_centre=1.5)
    rows = [k for k, name in enumerate(cols["model"]) if name in ("model-1", "model-3")]
    part = length_controlled_winrates(*(np.asarray(c)[rows] if not isinstance(c, list) else [c[k] for k in rows]
                                        for c in _args(cols)), difficulty=table, length_centre=1.5)
    for m in ("model-1", "model-3"):
        assert part.models[m].lc == pytest.approx(full.models[m].lc, abs=1e-7)


def test_the_pull_tames_a_length_coefficient_its_own_data_cannot_pin():
    """One model is shorter than the baseline in every comparison by about the same factor: its length term is nearly
    collinear with its bias and, fitted alone, its coefficient runs off; pulled towards the others it stays near
    the true 1.5 and its LC near the truth."""
    rng = np.random.default_rng(4)
    cols, a, d = _world(rng, n_models=6, n_instructions=400)
    rows = [k for k, name in enumerate(cols["model"]) if name == "model-0"]
    short = cols["len_baseline"][rows] * np.exp(rng.normal(-3.0, 0.05, len(rows)))
    cols["len_model"][rows] = short
    delta = short - cols["len_baseline"][rows]
    z = a[0] + 1.5 * np.tanh(delta / delta.std(ddof=1)) + d
    cols["p"][rows] = (rng.random(len(rows)) < sigmoid(z)).astype(float)
    truth = float(np.mean(sigmoid(a[0] + d)))
    pulled = length_controlled_winrates(*_args(cols)).models["model-0"]
    alone = length_controlled_winrates(*_args(cols), pool_length=0).models["model-0"]
    assert abs(pulled.length_coef - 1.5) < abs(alone.length_coef - 1.5)
    assert abs(pulled.lc - truth) < abs(alone.lc - truth)
    assert abs(pulled.lc - truth) < 4 * pulled.lc_se


def test_one_model_without_a_table_warns_once_that_it_is_not_the_leaderboards(monkeypatch):
    monkeypatch.setattr(lc_module, "_WARNED", [False])
    rng = np.random.default_rng(5)
    cols, _, _ = _world(rng, n_models=1, n_instructions=50)
    with pytest.warns(UserWarning, match="not comparable with AlpacaEval's leaderboard"):
        res = length_controlled_winrates(*_args(cols))
    assert res.difficulty_source == "none" and res.difficulty is None
    assert res.models["model-0"].difficulty_coef is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        length_controlled_winrates(*_args(cols))  # said once per process
        length_controlled_winrate(cols["p"], cols["len_model"], cols["len_baseline"])


def test_estimate_difficulty_sets_lone_instructions_to_the_median():
    rng = np.random.default_rng(6)
    cols, _, _ = _world(rng, n_models=3, n_instructions=20)
    cols["model"].append("model-0")
    cols["instruction"].append("only once")
    for k, v in (("p", 1.0), ("len_model", 100.0), ("len_baseline", 90.0)):
        cols[k] = np.append(cols[k], v)
    with pytest.warns(UserWarning, match="1 of 21 instructions were answered by only one model"):
        d = estimate_difficulty(*_args(cols))
    others = [v for k, v in d.items() if k != "only once"]
    assert d["only once"] == pytest.approx(float(np.median(others)))


@pytest.mark.parametrize(("change", "message"), [
    (lambda c: c.update(model=c["model"][:-1]), r"model has length \d+ but preference has length \d+"),
    (lambda c: c["instruction"].__setitem__(3, ["a", "list"]), r"instruction\[3\] = \['a', 'list'\] cannot be a key"),
    (lambda c: c["p"].__setitem__(0, 1.5), r"preference\[0\] = 1.5 is outside \[0, 1\]"),
    (lambda c: c["len_model"].__setitem__(2, -1.0), r"len_model\[2\] = -1.0 is negative"),
])
def test_bad_input_names_the_argument(change, message):
    cols, _, _ = _world(np.random.default_rng(7), n_models=2, n_instructions=10)
    change(cols)
    with pytest.raises(ValueError, match=message):
        length_controlled_winrates(*_args(cols))


def test_bad_table_and_options_name_the_value():
    cols, _, _ = _world(np.random.default_rng(8), n_models=2, n_instructions=10)
    with pytest.raises(ValueError, match=r"instruction\[\d+\] = \('prompt', 9\) is not a key of the difficulty table"):
        length_controlled_winrates(*_args(cols), difficulty={("prompt", i): 0.0 for i in range(9)})
    with pytest.raises(ValueError, match=r"difficulty\[\('prompt', 0\)\] = nan is not a finite number"):
        length_controlled_winrates(*_args(cols), difficulty={("prompt", i): math.nan for i in range(10)})
    with pytest.raises(ValueError, match=r"pool_length = -1 is invalid"):
        length_controlled_winrates(*_args(cols), pool_length=-1)
    with pytest.raises(ValueError, match=r"length_centre = 'x' is invalid"):
        length_controlled_winrates(*_args(cols), length_centre="x")


def test_standard_error_is_calibrated_with_an_estimated_difficulty():
    """60 worlds of 8 models x 200 instructions: the spread of LC around its equal-length value matches the mean
    lc_se (the estimated difficulty counted as fixed costs little here), and +-1.96 se covers it ~95% of the time."""
    errs, ses = [], []
    for rep in range(60):
        cols, a, d = _world(np.random.default_rng(1000 + rep), n_models=8, n_instructions=200)
        res = length_controlled_winrates(*_args(cols))
        for m in range(8):
            r = res.models[f"model-{m}"]
            errs.append(r.lc - float(np.mean(sigmoid(a[m] + d))))
            ses.append(r.lc_se)
    errs, ses = np.array(errs), np.array(ses)
    assert np.std(errs) == pytest.approx(np.mean(ses), rel=0.15)
    assert 0.90 <= np.mean(np.abs(errs) < 1.96 * ses) <= 0.99
    assert abs(np.mean(errs)) < 3 * np.std(errs) / np.sqrt(len(errs))


def _anchor_data(rng, d, len_b, slope=1.5):
    """Verbose and concise rewrites of the baseline's answers, judged against it by the same GLM with no model term."""
    rows = {k: [] for k in ("instruction", "preference", "len_model", "len_baseline", "set")}
    for name, shift in (("verbose", 0.7), ("concise", -0.7)):
        lm = len_b * np.exp(rng.normal(shift, 0.3, len(d)))
        delta = lm - len_b
        rows["preference"] += list((rng.random(len(d)) < sigmoid(slope * np.tanh(delta / delta.std(ddof=1)) + d))
                                   .astype(float))
        rows["len_model"] += list(lm)
        rows["len_baseline"] += list(len_b)
        rows["instruction"] += [("prompt", i) for i in range(len(d))]
        rows["set"] += [name] * len(d)
    return rows


def test_the_baseline_anchor_pins_the_length_coefficient():
    """AlpacaEval's regularisation towards the baseline: with rewrites of the baseline's answers as anchor, a model
    that is always much shorter gets a length coefficient near the truth and a far tighter LC around its
    equal-length value, without any pull towards the other models."""
    rng = np.random.default_rng(9)
    cols, a, d = _world(rng, n_models=2, n_instructions=600)
    rows = [k for k, name in enumerate(cols["model"]) if name == "model-0"]
    len_b = cols["len_baseline"][rows]
    short = len_b * np.exp(rng.normal(-3.0, 0.05, len(rows)))
    cols["len_model"][rows] = short
    delta = short - len_b
    prob = sigmoid(a[0] + 1.5 * np.tanh(delta / delta.std(ddof=1)) + d)
    cols["p"][rows] = (rng.random(len(rows)) < prob).astype(float)
    table = {("prompt", i): float(v) for i, v in enumerate(d)}
    anchor = _anchor_data(rng, d, len_b)
    truth = float(np.mean(sigmoid(a[0] + d)))
    alone = length_controlled_winrates(*_args(cols), difficulty=table, pool_length=0).models["model-0"]
    anchored = length_controlled_winrates(*_args(cols), difficulty=table, pool_length=0,
                                          anchor=anchor).models["model-0"]
    assert abs(anchored.length_coef - 1.5) < 0.3 < abs(alone.length_coef - 1.5)
    assert abs(anchored.lc - truth) < 4 * anchored.lc_se
    assert anchored.lc_se < 0.5 * alone.lc_se  # alone, LC at equal length is a far extrapolation
    faint = length_controlled_winrates(*_args(cols), difficulty=table, pool_length=0, anchor=anchor,
                                       anchor_weight=1e-12).models["model-0"]
    assert faint.lc == pytest.approx(alone.lc, abs=1e-6)


def test_bad_anchor_is_named():
    rng = np.random.default_rng(10)
    cols, _, d = _world(rng, n_models=2, n_instructions=10)
    anchor = _anchor_data(rng, d, rng.gamma(4.0, 100.0, 10))
    with pytest.raises(ValueError, match=r"anchor has no len_baseline"):
        length_controlled_winrates(*_args(cols), anchor={k: v for k, v in anchor.items() if k != "len_baseline"})
    with pytest.raises(ValueError, match=r"anchor_weight = 0 is invalid"):
        length_controlled_winrates(*_args(cols), anchor=anchor, anchor_weight=0)
    with pytest.raises(ValueError, match=r"anchor instruction\[0\] = 'elsewhere' is not a key of the difficulty table"):
        length_controlled_winrates(*_args(cols), anchor={**anchor, "instruction": ["elsewhere"] * 20})
