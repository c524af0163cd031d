"""The study's statistics (adadpo.bench.evidence) on synthetic grids with per-comparison records: the per-seed
interval against a hand t-interval, the bootstrap against its point estimate and a normal approximation, best
versus best and ΔTQ per kind against hand computations, the length left in LC, sign counts, the gate's
length-only bar, and a report written from stored records."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from adadpo.bench import evidence as ev
from adadpo.bench import records
from adadpo.bench.evaluate import length_only
from adadpo.bench.paired import GATE_ACCURACY, gate, length_bar

KINDS = ("capital", "arithmetic", "list")


def _t_interval(x) -> tuple[float, float, float]:
    from scipy import stats

    x = np.asarray(x, dtype=float)
    half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return x.mean(), x.mean() - half, x.mean() + half


def _run_records(rng, prompts: int, samples: int, shift: float) -> list[dict]:
    """Records of one run: prompt-major, kinds cycling over KINDS, truth around 0.5 + shift."""
    n = prompts * samples
    truth = np.clip(rng.normal(0.5 + shift, 0.15, n), 0, 1)
    words = rng.integers(3, 40, n)
    ref_words = rng.integers(3, 40, n)
    return records.comparisons(
        prompt=[i // samples for i in range(n)], kind=[KINDS[(i // samples) % len(KINDS)] for i in range(n)],
        sample=[i % samples for i in range(n)], text=["x"] * n, words=words, tokens=words + 2,
        ended=rng.random(n) < 0.8, quality=truth, judge=np.clip(truth + 0.01 * (words - ref_words), 0, 1),
        truth=truth, ref_words=ref_words, ref_tokens=ref_words + 2, ref_ended=[True] * n, ref_quality=[0.5] * n)


def _grid(seed=0, cells=((0.1, 1e-4), (0.1, 3e-4)), seeds=(0, 1, 2), prompts=12, samples=2,
          effect=None) -> tuple[list[dict], dict[str, list[dict]]]:
    """Rows (plain DPO, balanced AdaDPO, untrained) whose figures are recomputed from their records."""
    rng = np.random.default_rng(seed)
    effect = effect or {"DPO": 0.02, "AdaDPO": 0.06}
    rows, recs = [], {}
    for s in seeds:
        specs = [("untrained", None, 0.0)] + [(m, c, effect[m]) for c in cells for m in ("DPO", "AdaDPO")]
        for method, cell, shift in specs:
            key = f"{method}|{cell}|seed={s}"
            recs[key] = _run_records(rng, prompts, samples, shift)
            row = {"key": key, "method": method, "seed": s, "beta": None if cell is None else cell[0],
                   "learning_rate": None if cell is None else cell[1], "balance": {} if method == "AdaDPO" else None,
                   **records.recompute(recs[key]), "reward_accuracy": 0.7}
            rows.append(row)
    return rows, recs


@given(st.dictionaries(st.tuples(st.floats(0.01, 1), st.floats(1e-5, 1e-3)),
                       st.dictionaries(st.integers(0, 4), st.floats(-1, 1), min_size=2, max_size=5),
                       min_size=1, max_size=4))
def test_per_seed_interval_is_the_t_interval_of_each_seeds_mean_over_its_cells(diffs):
    iv, means = ev.per_seed(diffs)
    seeds = sorted({s for per in diffs.values() for s in per})
    hand = [np.mean([per[s] for per in diffs.values() if s in per]) for s in seeds]
    assert list(means) == seeds and np.allclose(list(means.values()), hand)
    if len(seeds) >= 2 and np.std(hand) > 1e-9:
        assert (iv.mean, iv.lo, iv.hi) == pytest.approx(_t_interval(hand))
    signs = ev.signs(diffs)
    cell_means = [np.mean(list(per.values())) for per in diffs.values()]
    assert (signs["above"], signs["below"], signs["cells"]) == (sum(m > 0 for m in cell_means),
                                                                 sum(m < 0 for m in cell_means), len(diffs))


@given(st.integers(1, 4), st.integers(1, 3), st.integers(2, 30), st.integers(0, 2**31 - 1))
def test_bootstrap_interval_contains_its_point_estimate(seeds, cells, prompts, seed):
    d = np.random.default_rng(seed).normal(0.05, 0.3, (seeds, cells, prompts))
    if cells > 1:
        d[0, 0] = np.nan  # a cell that seed 0 lacks
    iv = ev.bootstrap(d, draws=400, seed=seed)
    assert iv.lo - 1e-12 <= iv.mean <= iv.hi + 1e-12 and iv.n == seeds
    assert iv.mean == pytest.approx(ev.point(d))


def test_bootstrap_of_constant_differences_is_that_constant_and_matches_the_normal_width():
    const = np.full((3, 2, 10), 0.07)
    iv = ev.bootstrap(const)
    assert iv.mean == pytest.approx(0.07) and iv.lo == pytest.approx(0.07) and iv.hi == pytest.approx(0.07)
    # one seed, one cell: resampling prompts only, the width is about 2 x 1.96 x sd / sqrt(P)
    x = np.random.default_rng(1).normal(0, 1, 400)
    iv = ev.bootstrap(x[None, None, :], draws=4000)
    assert (iv.hi - iv.lo) / 2 == pytest.approx(1.96 * x.std() / math.sqrt(len(x)), rel=0.1)


def test_records_intervals_are_the_rows_intervals():
    """The per-seed interval from per-prompt differences is the one from the rows' TQ (equal answers per
    prompt): the records carry every figure of the rows."""
    rows, recs = _grid()
    for method, against in (("AdaDPO", "untrained"), ("AdaDPO", "DPO"), ("DPO", "untrained")):
        pairs = ev.pairs_of(rows, method, against)
        from_records = ev.seed_interval(ev.prompt_diffs(pairs, recs))
        from_rows, _ = ev.per_seed(ev.row_diffs(rows, method, against, "tq"))
        assert (from_records.mean, from_records.lo, from_records.hi) == pytest.approx(
            (from_rows.mean, from_rows.lo, from_rows.hi))
        assert ev.point(ev.prompt_diffs(pairs, recs)) == pytest.approx(from_rows.mean)
    missing = dict(recs)
    del missing[rows[1]["key"]]
    assert ev.prompt_diffs(ev.pairs_of(rows, "DPO", "untrained"), missing) is None


def test_per_kind_is_the_hand_computed_difference_on_that_kinds_prompts():
    rows, recs = _grid(seed=3)
    kinds = ev.per_kind(rows, recs, "DPO", "AdaDPO", draws=300)
    assert list(kinds) == list(KINDS) and sum(k["prompts"] for k in kinds.values()) == 12
    run = {(r["method"], r["learning_rate"], r["seed"]): recs[r["key"]] for r in rows if r["method"] != "untrained"}
    for kind, e in kinds.items():
        def tq(found):
            return np.mean([r["truth"] for r in found if r["kind"] == kind])

        per_seed = [np.mean([tq(run["AdaDPO", lr, s]) - tq(run["DPO", lr, s]) for lr in (1e-4, 3e-4)])
                    for s in (0, 1, 2)]
        assert (e["diff"].mean, e["diff"].lo, e["diff"].hi) == pytest.approx(_t_interval(per_seed))
        assert e["bootstrap"].mean == pytest.approx(e["diff"].mean)
        base = {r["seed"]: recs[r["key"]] for r in rows if r["method"] == "untrained"}
        per_seed = [np.mean([tq(run["DPO", lr, s]) - tq(base[s]) for lr in (1e-4, 3e-4)]) for s in (0, 1, 2)]
        assert e["DPO"].mean == pytest.approx(np.mean(per_seed))


def test_best_versus_best_chooses_on_even_prompts_and_reports_on_odd_ones():
    """The balanced form's second cell is best on the even prompts and worst on the odd ones: it is chosen, and
    the figures reported are its odd-prompt ones."""
    rows, recs = _grid(seed=5)
    for r in rows:
        if r["method"] == "AdaDPO" and r["learning_rate"] == 3e-4:
            for x in recs[r["key"]]:
                x["truth"] = 0.99 if x["prompt"] % 2 == 0 else 0.01
    b = ev.best_vs_best(rows, recs, "DPO", "AdaDPO", "tq", draws=300)
    assert b["cells"]["AdaDPO"] == (0.1, 3e-4) and b["seeds"] == [0, 1, 2]

    def odd(found):
        return np.mean([x["truth"] for x in found if x["prompt"] % 2 == 1])

    plain = {}
    for s in (0, 1, 2):
        runs = [r for r in rows if r["method"] == "DPO" and r["seed"] == s]
        plain[s] = {r["learning_rate"]: r for r in runs}
    even = {lr: np.mean([np.mean([x["truth"] for x in recs[plain[s][lr]["key"]] if x["prompt"] % 2 == 0])
                         for s in (0, 1, 2)]) for lr in (1e-4, 3e-4)}
    best = max(even, key=even.get)
    assert b["cells"]["DPO"] == (0.1, best)
    diff = [0.01 - odd(recs[plain[s][best]["key"]]) for s in (0, 1, 2)]
    assert (b["diff"].mean, b["diff"].lo, b["diff"].hi) == pytest.approx(_t_interval(diff))
    assert b["bootstrap"].mean == pytest.approx(b["diff"].mean) and b["bootstrap"].hi < 0
    base = {r["seed"]: recs[r["key"]] for r in rows if r["method"] == "untrained"}
    assert b["delta"]["AdaDPO"].mean == pytest.approx(np.mean([0.01 - odd(base[s]) for s in (0, 1, 2)]))
    lc = ev.best_vs_best(rows, recs, "DPO", "AdaDPO", "lc")
    assert lc["bootstrap"] is None and set(lc["cells"]) == {"DPO", "AdaDPO"}
    assert ev.best_vs_best(rows, {}, "DPO", "AdaDPO") is None


@given(st.floats(-0.01, 0.01), st.floats(-0.1, 0.1), st.lists(st.floats(-20, 20), min_size=3, max_size=12,
                                                               unique=True))
def test_lc_bias_recovers_an_exact_line(slope, intercept, xs):
    if np.ptp(xs) < 1e-3:
        return
    rows = [{"method": "A" if i % 2 else "B", "tq": 0.5, "lc": 0.5 + intercept + slope * x, "length": 10 + x,
             "ref_length": 10.0} for i, x in enumerate(xs)]
    b = ev.lc_bias(rows)
    assert b["slope"] == pytest.approx(slope, abs=1e-9) and b["intercept"] == pytest.approx(intercept, abs=1e-9)
    assert b["slope_se"] == pytest.approx(0, abs=1e-8) and b["runs"] == len(xs)
    assert b["methods"]["B"]["words"] == pytest.approx(np.mean(xs[::2]))
    assert b["mean_abs"] == pytest.approx(np.mean([abs(intercept + slope * x) for x in xs]), abs=1e-9)
    assert ev.lc_bias(rows[:2]) is None


def test_the_estimator_with_less_length_left_is_the_one_with_the_flatter_line():
    from adadpo.bench.evidence_report import less_length_left

    xs = [-6.0, -2.0, 1.0, 4.0, 9.0]
    rows = [{"key": f"r{i}", "method": "A", "tq": 0.5, "lc": 0.5 + 0.003 * x, "length": 10 + x, "ref_length": 10.0}
            for i, x in enumerate(xs)]
    own = ev.lc_bias(rows)
    flatter = ev.lc_bias(rows, {f"r{i}": 0.52 - 0.001 * x for i, x in enumerate(xs)})
    steeper = ev.lc_bias(rows, {f"r{i}": 0.5 + 0.01 * x for i, x in enumerate(xs)})
    assert less_length_left(own, flatter) == "joint" and less_length_left(own, steeper) == "own"
    # equal slopes: the smaller mean |LC - TQ| decides
    shifted = ev.lc_bias(rows, {f"r{i}": 0.6 + 0.003 * x for i, x in enumerate(xs)})
    assert less_length_left(own, shifted) == "own" and less_length_left(shifted, own) == "joint"
    assert less_length_left(own, None) is None and less_length_left(None, own) is None


def test_lc_bias_of_another_estimator_uses_its_values_over_the_runs_it_has():
    xs = [-6.0, -2.0, 1.0, 4.0, 9.0]
    rows = [{"key": f"r{i}", "method": "A", "tq": 0.5, "lc": 0.9, "length": 10 + x, "ref_length": 10.0}
            for i, x in enumerate(xs)]
    other = {f"r{i}": 0.5 + 0.002 * x for i, x in enumerate(xs[:4])}  # r4 not estimated: left out
    b = ev.lc_bias(rows, other)
    assert b["runs"] == 4 and b["slope"] == pytest.approx(0.002) and b["intercept"] == pytest.approx(0.0, abs=1e-12)
    assert ev.lc_bias(rows)["intercept"] == pytest.approx(0.4)  # the rows' own LC otherwise


def test_joint_lc_is_the_across_models_estimator_on_the_grids_records():
    """One LC per run with records, from length_controlled_winrates over all of them with (prompt, answer index)
    as the instruction; nothing to estimate a difficulty from with fewer than two runs."""
    from adadpo.eval import POOL_LENGTH, length_controlled_winrates

    rows, recs = _grid(seed=3, cells=((0.1, 1e-4),), seeds=(0, 1))
    joint = ev.joint_lc(rows, recs)
    assert set(joint) == {r["key"] for r in rows} and all(0.0 <= v <= 1.0 for v in joint.values())
    comps = [(k, c) for k in recs for c in recs[k]]
    direct = length_controlled_winrates([k for k, _ in comps], [(c["prompt"], c["sample"]) for _, c in comps],
                                        [c["judge"] for _, c in comps], [c["words"] for _, c in comps],
                                        [c["ref_words"] for _, c in comps], pool_length=0.0)
    assert direct.difficulty_source == "estimated" and ev.WORLD_POOL_LENGTH == 0.0
    assert joint == pytest.approx({k: r.lc for k, r in direct.models.items()})
    pulled = length_controlled_winrates([k for k, _ in comps], [(c["prompt"], c["sample"]) for _, c in comps],
                                        [c["judge"] for _, c in comps], [c["words"] for _, c in comps],
                                        [c["ref_words"] for _, c in comps])  # the library's default pull
    assert ev.joint_lc(rows, recs, pool_length=POOL_LENGTH) == pytest.approx({k: r.lc for k, r in pulled.models.items()})
    assert ev.joint_lc(rows, {k: v for k, v in recs.items() if k == rows[0]["key"]}) == {}
    assert len(ev.joint_lc(rows, {k: recs[k] for k in list(recs)[:3]})) == 3  # runs without records left out


def test_length_only_rankers_and_the_gates_bar():
    chosen, rejected = np.array([3, 5, 5, 9]), np.array([4, 5, 2, 10])
    bar = length_only(chosen, rejected)
    assert bar == {"fewer": pytest.approx((1 + 0.5 + 0 + 1) / 4), "more": pytest.approx((0 + 0.5 + 1 + 0) / 4)}
    rows, _ = _grid(prompts=30, effect={"DPO": 0.15, "AdaDPO": 0.2})
    for r in rows:
        r["length_only"] = {"fewer": 0.62, "more": 0.38}
    g = gate(rows, "DPO")
    assert (g["bar"], g["bar_rule"]) == (0.62, "fewer") and g["lo"] > 0  # the synthetic DPO improves on the truth
    assert g["passed"] == (g["reward_accuracy"] > 0.62)
    for r in rows:
        r["reward_accuracy"] = 0.61  # above the old fixed 0.6, below what length alone gets
    assert not gate(rows, "DPO")["passed"]
    for r in rows:
        r["length_only"] = {"fewer": 0.4, "more": 0.6}
    assert length_bar(rows)["rule"] == "more" and gate(rows, "DPO")["passed"]
    for r in rows:
        del r["length_only"]
    assert (gate(rows, "DPO")["bar"], gate(rows, "DPO")["bar_rule"]) == (GATE_ACCURACY, "fixed")


def test_a_report_from_stored_records_has_every_section(tmp_path):
    from adadpo.bench.report import write_report

    rows, recs = _grid(seed=7)
    stored = [records.store(tmp_path, {**r, "world": "w", "budget": {}, "comparisons": recs[r["key"]]})
              for r in rows]
    for r in stored:
        r.update({"ended": 0.9, "cap_probe": {"ended_at_cap": 0.9, "ended_at_2cap": 1.0}, "wr": r["wr"], "kl": 1.0,
                  "quality": 0.5, "reward_margin": 0.1, "delta_chosen": 0.0, "delta_rejected": -0.1, "curves": {
                      "step": [1], "rewards/margins": [0.0], "logps/chosen": [0.0], "balance/log_rho": [0.0]}})
    report = write_report(stored, [("DPO", "AdaDPO")], tmp_path, title="t").read_text()
    data = json.loads((tmp_path / "summary.json").read_text())["evidence"]
    assert data["records"] and data["missing"] is None
    tq = data["comparisons"][0]["tq"]
    boot = ev.bootstrap(ev.prompt_diffs(ev.pairs_of(stored, "AdaDPO", "DPO"), recs))
    assert tq["bootstrap"]["lo"] == pytest.approx(boot.lo) and f"[{boot.lo:+.3f}, {boot.hi:+.3f}]" in report
    assert "no per-comparison records" not in report and "nan" not in report.lower()
    assert "| capital | 4 |" in report and "**Best versus best**" in report and "(lc_bias.png)" in report
    assert data["lc_bias_joint"]["runs"] == data["lc_bias"]["runs"] and "estimated jointly over the grid" in report
    assert set(data["joint_lc"]) == {r["key"] for r in stored} and "Less length left in LC: **" in report
    # families.md: both estimators' lines for the grid, one marked as leaving less length in LC
    from adadpo.bench import families

    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in stored))
    (tmp_path / "families").mkdir()
    text = families.write(tmp_path / "families", [tmp_path]).read_text()
    bias = [line for line in text.splitlines() if line.split(" | ")[1:2] in (["own"], ["joint"])]
    assert len(bias) == 2 and sum("**yes**" in line for line in bias) == 1
    assert "| β=0.1, lr=0.0001 | DPO | 3 | 0.90 | 0.90-0.90 | 3 | 0.90 | 1.00 |" in report
    assert "| seed 0 | untrained | 1 | 0.90 | | 1 | 0.90 | 1.00 |" in report
    # the same report written away from the records says where it looked instead of failing
    away = write_report(stored, [("DPO", "AdaDPO")], tmp_path / "away", title="t").read_text()
    assert f"are not in `{tmp_path / 'away'}`" in away


@given(st.integers(1, 6), st.integers(1, 4), st.integers(0, 2**31 - 1))
def test_records_round_trip_and_recompute_the_judges_figures(prompts, samples, seed):
    """Stored records read back identical, and recompute gives the means of their probabilities, words and
    ended, and LC as adadpo.eval computes it from the same columns."""
    import tempfile

    from adadpo.eval import length_controlled_winrate

    found = _run_records(np.random.default_rng(seed), prompts, samples, 0.0)
    with tempfile.TemporaryDirectory() as tmp:
        row = records.store(tmp, {"key": "k", "comparisons": found})
        back = records.load(tmp, row)
    assert back == json.loads(json.dumps(found))
    again = records.recompute(back)
    judge = [r["judge"] for r in found]
    assert again["tq"] == pytest.approx(np.mean([r["truth"] for r in found]), abs=1e-15)
    assert again["wr"] == pytest.approx(np.mean(judge), abs=1e-15)
    assert again["ended"] == pytest.approx(np.mean([r["ended"] for r in found]))
    assert again["lc"] == length_controlled_winrate(judge, [r["words"] for r in found],
                                                    [r["ref_words"] for r in found]).lc
    halves = [r for r in found if r["prompt"] % 2 == 0]
    assert ev.half_value(found, "tq", 0) == pytest.approx(np.mean([r["truth"] for r in halves]))
