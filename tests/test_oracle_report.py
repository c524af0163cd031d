"""The sweep report's statistics: intervals, paired comparisons, shares of cells, best cells, files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from adadpo.bench.report import write_report
from adadpo.bench.stats import best_cell, compare, interval, tracking


def rows_for(effects: dict[tuple[float, float], float], seeds=(0, 1, 2), noise=0.002, base=0.6) -> list[dict]:
    """DPO and AdaDPO runs where AdaDPO's LC is ``base + effect`` (+ per-seed noise) in each cell."""
    rng = np.random.default_rng(0)
    rows = []
    for (beta, lr), effect in effects.items():
        for s in seeds:
            shared = rng.normal(0, 0.01)  # seed effect common to both methods: pairing removes it
            for method, lc in (("DPO", base + shared), ("AdaDPO", base + shared + effect + rng.normal(0, noise))):
                rows.append({"method": method, "beta": beta, "learning_rate": lr, "seed": s, "lc": lc, "wr": lc + 0.05,
                             "tq": lc - 0.02, "length": 5.0, "quality": 0.7, "kl": 1.0, "reward_accuracy": 0.8,
                             "reward_margin": 1.0, "delta_chosen": -0.1, "delta_rejected": -1.0, "ref_length": 4.6,
                             "ref_quality": 0.61, "curves": {"step": [1, 2], "rewards/margins": [0.0, 0.1],
                                                             "logps/chosen": [-10, -11], "balance/log_rho": [1.0, 1.1]}})
    return rows


def test_interval_matches_the_t_formula():
    x = [0.1, 0.3, 0.2, 0.4]
    iv = interval(x)
    half = 3.182446305284263 * np.std(x, ddof=1) / 2  # t_{0.975, 3}
    assert iv.mean == pytest.approx(0.25) and iv.half == pytest.approx(half)
    assert math.isnan(interval([0.5]).lo) and interval([0.5]).verdict() == "n/a"


def test_compare_counts_wins_ties_losses_by_seed_paired_intervals():
    effects = {(0.1, 1e-4): 0.05, (0.1, 3e-4): 0.04, (0.3, 1e-4): 0.0, (0.3, 3e-4): -0.05}
    c = compare(rows_for(effects), "DPO", "AdaDPO", "lc")
    assert (c.wins, c.losses) == (2, 1) and c.ties == 1
    assert c.share_higher in (0.5, 0.75)  # the zero-effect cell goes either way
    assert c.cells[(0.1, 1e-4)].mean == pytest.approx(0.05, abs=0.005)
    assert c.pooled.mean == pytest.approx(0.01, abs=0.003)
    # LC - WR is the same for both methods here: every cell ties, none is "higher" by more than rounding
    d = compare(rows_for(effects), "DPO", "AdaDPO", "lc_minus_wr")
    assert d.wins == d.losses == 0 and abs(d.pooled.mean) < 1e-12


def test_best_cell_and_tracking():
    rows = rows_for({(0.1, 1e-4): 0.05, (0.3, 1e-4): -0.05})
    (beta, lr), iv = best_cell(rows, "AdaDPO", "lc")
    assert (beta, lr) == (0.1, 1e-4) and iv.n == 3
    t = tracking(rows)
    assert t["r_lc_tq"] == pytest.approx(1.0) and t["mae_lc_tq"] == pytest.approx(0.02)


def test_write_report_files(tmp_path):
    rows = rows_for({(0.1, 1e-4): 0.05, (0.1, 3e-4): 0.0, (0.3, 1e-4): 0.01, (0.3, 3e-4): -0.02})
    path = write_report(rows, [("DPO", "AdaDPO")], tmp_path, title="t")
    text = path.read_text()
    assert "## AdaDPO vs DPO" in text and "| LC |" in text and "Best cell per method" in text
    for name in ("heatmaps_DPO_vs_AdaDPO.png", "curves_DPO_vs_AdaDPO.png", "lc_vs_tq.png", "frontier.png"):
        assert (tmp_path / name).stat().st_size > 1000 and f"]({name})" in text
    summary = json.loads((tmp_path / "summary.json").read_text())
    lc = next(c for c in summary["comparisons"] if c["metric"] == "lc")
    assert (lc["cells"], lc["wins"], lc["losses"]) == (4, 2, 1)  # +0.05 and +0.01 separate from noise 0.002


def test_one_cell_report_defines_its_columns_and_has_no_best_cell_tables(tmp_path):
    from adadpo.bench.report import DEFINITIONS
    from adadpo.bench.stats import METRICS

    text = write_report(rows_for({(0.1, 1e-4): 0.05}), [("DPO", "AdaDPO")], tmp_path, title="t").read_text()
    assert "KL budget" not in text and "Best cell per method" not in text  # with one cell: that cell
    columns = text.split("Columns. ", 1)[1].split("\n", 1)[0]
    tables = {cell.strip() for line in text.splitlines() if line.startswith("| method |") or line.startswith(
        "| cell |") for cell in line.strip("|").split("|")} - {"method", "cell"}
    assert tables and all(f"{label}: {DEFINITIONS[key]}." in columns for key, label in METRICS.items()
                          if label in tables), tables  # every column of every table is defined, quality and TQ too
    assert "quality: mean true quality of the answers themselves" in columns


def test_an_interval_whose_ends_print_alike_says_the_seeds_agree():
    from adadpo.bench.report import ci_text
    from adadpo.bench.stats import Interval

    assert ci_text(Interval(-0.0131, -0.01312, -0.01308, 3)) == "[-0.013, -0.013] (the seeds agree to 3 decimals)"
    assert ci_text(Interval(0.02, 0.01, 0.03, 3)) == "[+0.010, +0.030]"
    # one seed: no interval, and not "the seeds agree" (its NaN ends print alike)
    from adadpo.bench.stats import interval

    assert ci_text(interval([0.071])) == "(n=1: no interval)"
    assert "agree" not in ci_text(interval([]))


def test_ablation_report_has_one_figure_per_kind(tmp_path):
    rows = rows_for({(0.1, 1e-4): 0.05, (0.1, 3e-4): 0.0})
    for i, variant in enumerate(("kappa=2", "norm=rejected", "level=sequence")):
        rows += [{**r, "method": variant, "lc": r["lc"] + 0.01 * i} for r in rows_for({(0.1, 1e-4): 0.0, (0.1, 3e-4): 0.0})
                 if r["method"] == "AdaDPO"]
    comparisons = [("DPO", m) for m in ("AdaDPO", "kappa=2", "norm=rejected", "level=sequence")]
    text = write_report(rows, comparisons, tmp_path, title="ablation").read_text()
    assert not list(tmp_path.glob("heatmaps_*")) and (tmp_path / "curves_all.png").exists()
    assert text.count("## ") == 5 + len(comparisons)  # overview, comparisons, best, best within KL, cells, tracking
    overview = text.split("## All methods")[1].split("##")[0]
    assert all(f"| {m} |" in overview for m in ("DPO", "AdaDPO", "kappa=2", "norm=rejected", "level=sequence"))


def test_best_within_kl_respects_the_budget():
    from adadpo.bench.stats import best_within_kl

    rows = rows_for({(0.1, 1e-4): 0.05, (0.1, 3e-4): 0.0})
    for r in rows:
        r["kl"] = 0.4 if r["learning_rate"] == 1e-4 else 1.5
    cell, _, kl = best_within_kl(rows, "AdaDPO", "tq", 1.0)
    assert cell == (0.1, 1e-4) and kl == pytest.approx(0.4)
    assert best_within_kl(rows, "AdaDPO", "tq", 0.1) is None
    assert best_within_kl(rows, "DPO", "lc", 2.0)[0] in {(0.1, 1e-4), (0.1, 3e-4)}


def test_headline_table_one_row_per_comparison_and_sweep(tmp_path):
    from adadpo.bench.report import headline_table

    effects = {(0.1, 1e-4): 0.05, (0.1, 3e-4): 0.04, (0.3, 1e-4): 0.0, (0.3, 3e-4): -0.05}
    write_report(rows_for(effects), [("DPO", "AdaDPO")], tmp_path / "grid", title="t")
    write_report(rows_for({(0.1, 1e-4): -0.05}), [("DPO", "AdaDPO")], tmp_path / "other", title="t")
    table = headline_table([tmp_path / "grid", tmp_path / "other"]).splitlines()
    assert len(table) == 2 + 2 and table[2].startswith("| grid | AdaDPO vs DPO | 4 |")
    assert "(W/T/L 2/1/1)" in table[2]  # LC: two seed-separated wins, one tie, one loss
    assert table[3].startswith("| other | AdaDPO vs DPO | 1 | 0% (W/T/L 0/0/1)")
    summary = json.loads((tmp_path / "grid" / "summary.json").read_text())
    best_lc = summary["best"]["AdaDPO"]["lc"]["mean"]
    assert f"/ {best_lc:.3f} |" in table[2]

    with pytest.raises(ValueError, match="no summary.json"):
        headline_table([tmp_path / "grid", tmp_path / "nowhere"])


def test_demo_differences_say_higher_or_lower_for_length_and_kl():
    from adadpo.cli.demo import differences

    rows = rows_for({(0.1, 1e-4): 0.05})
    for r in rows:
        if r["method"] == "AdaDPO":
            r["length"] -= 1.0 + 0.01 * r["seed"]
    lines = {line.split()[0]: line for line in differences(rows, "DPO", "AdaDPO").splitlines()}
    assert lines["LC"].endswith("win") and lines["length"].endswith("lower")
    assert lines["KL"].endswith("tie")  # identical KL in both methods: no direction


def test_one_seed_prints_no_nan_interval_and_writes_strict_json():
    from adadpo.bench.report import json_ready, summary
    from adadpo.cli.demo import differences

    rows = rows_for({(0.1, 1e-4): 0.05}, seeds=(0,))
    text = differences(rows, "DPO", "AdaDPO")  # before: [+nan, +nan]
    assert "nan" not in text and text.splitlines()[0].endswith("(an interval needs >= 2 seeds)")
    data = json_ready(summary(rows, [("DPO", "AdaDPO")]))
    strict = json.dumps(data, allow_nan=False)  # before: NaN in results.json and summary.json
    assert "null" in strict and json.loads(strict) == data
