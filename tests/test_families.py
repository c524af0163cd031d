"""The cross-family table and figure: every family's grid against the untrained model, side by side."""

from __future__ import annotations

import json

import numpy as np
import pytest

from adadpo.bench.families import MISSING, families_table, write
from adadpo.bench.report import write_report
from tests.test_oracle_report import rows_for


def _grid(tmp_path, name, effects, plain="DPO", balanced="AdaDPO", untrained=True, ended=True, seeds=(0, 1, 2)):
    rows = rows_for(effects, seeds=seeds)
    for r in rows:
        r["method"] = {"DPO": plain, "AdaDPO": balanced}[r["method"]]
        r["balance"] = {} if r["method"] == balanced else None
    if untrained:
        for s in seeds:  # the untrained model: TQ 0.55 + a seed effect, 10 words
            rows.append({**rows[0], "method": "untrained", "seed": s, "tq": 0.55 + 0.01 * s, "lc": 0.56,
                         "wr": 0.57, "length": 10.0, "balance": None})
    if ended:  # a real-model grid: its rows say whether the answers ended, so the report has the study's statistics
        for i, r in enumerate(rows):
            r["ended"] = 0.5 + 0.01 * (i % 7)
    write_report(rows, [(plain, balanced)], tmp_path / name, title=name)
    (tmp_path / name / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path / name, rows


def _t_interval(x) -> tuple[float, float, float]:
    from scipy import stats

    x = np.asarray(x, dtype=float)
    half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    return x.mean(), x.mean() - half, x.mean() + half


def test_one_row_per_family_with_the_paired_differences(tmp_path):
    dpo, rows = _grid(tmp_path, "dpo", {(0.1, 1e-4): 0.05, (0.1, 3e-4): 0.03})
    ipo, _ = _grid(tmp_path, "ipo", {(0.1, 1e-4): 0.0, (0.1, 3e-4): -0.01}, plain="IPO", balanced="AdaIPO")
    table = families_table([dpo, ipo]).splitlines()
    assert len(table) == 2 + 2 and table[2].startswith("| dpo | DPO / AdaDPO | 6 |")
    assert table[3].startswith("| ipo | IPO / AdaIPO | 6 |")
    # the primary ΔTQ of AdaDPO by hand: per seed, the mean over cells of run minus the untrained model of the
    # seed; then a t-interval over the 3 seeds
    base = {r["seed"]: r["tq"] for r in rows if r["method"] == "untrained"}
    per_seed = [np.mean([r["tq"] - base[s] for r in rows if r["method"] == "AdaDPO" and r["seed"] == s])
                for s in (0, 1, 2)]
    assert "| {:+.3f} [{:+.3f}, {:+.3f}] |".format(*_t_interval(per_seed)) in table[2]
    # balanced - plain per seed on TQ, and the sign counts over cells (AdaDPO ahead in both cells)
    tq = {(r["method"], r["learning_rate"], r["seed"]): r["tq"] for r in rows}
    diff = [np.mean([tq["AdaDPO", lr, s] - tq["DPO", lr, s] for lr in (1e-4, 3e-4)]) for s in (0, 1, 2)]
    assert "| {:+.3f} [{:+.3f}, {:+.3f}] | no per-comparison records | 2+ / 0- of 2 |".format(
        *_t_interval(diff)) in table[2]
    words = np.mean([r["length"] - 10.0 for r in rows if r["method"] == "DPO"])
    assert f"| {words:+.1f} / " in table[2]
    path = write(tmp_path, [dpo, ipo])
    assert (tmp_path / "families.png").stat().st_size > 10_000
    text = path.read_text()
    assert text.startswith(families_table([dpo, ipo]))
    # the earlier interval, pooled over cells x seeds, is still there, below, and labelled as not the primary one
    s = json.loads((dpo / "summary.json").read_text())
    pooled = next(c for c in s["comparisons"] if c["metric"] == "tq")
    later = text[text.index("## Pooled over cells x seeds (the earlier interval, not the primary one)"):]
    assert f"| {pooled['pooled_diff']:+.3f} [{pooled['pooled_lo']:+.3f}, {pooled['pooled_hi']:+.3f}] |" in later
    d = [r["tq"] - base[r["seed"]] for r in rows if r["method"] == "AdaDPO"]
    assert f"| {np.mean(d):+.3f} [" in later and "2 of 2 (" in later
    ended = [r["ended"] for r in rows if r["method"] == "untrained"]
    assert f"| dpo | {np.mean(ended):.2f} | " in text  # the untrained model's share of answers that ended
    assert "## Best versus best" in text and "## ΔTQ per kind of prompt" in text and "nan" not in text.lower()
    assert (tmp_path / "families_lc_bias.png").is_file()


def test_a_grid_without_the_study_statistics_says_so(tmp_path):
    """A summary.json written before the study's statistics (the oracle world's, or an old one) still reads."""
    old, _ = _grid(tmp_path, "old", {(0.1, 1e-4): 0.05}, ended=False)
    table = families_table([old]).splitlines()
    assert table[2].count(MISSING) >= 4
    assert "acc 0.800 vs fixed bar 0.6 (does not pass)" in table[2]  # no length-only bar recorded: the old one


def test_directories_that_are_not_grids_against_the_untrained_model_are_named(tmp_path):
    with pytest.raises(ValueError, match="nowhere: no summary.json"):
        families_table([tmp_path / "nowhere"])
    plain, _ = _grid(tmp_path, "plain", {(0.1, 1e-4): 0.05}, untrained=False)
    with pytest.raises(ValueError, match="plain: summary.json has no 'vs_untrained'.*untrained: true"):
        families_table([plain])
    rows = rows_for({(0.1, 1e-4): 0.05}) + [{**r, "method": "AdaIPO"} for r in rows_for({(0.1, 1e-4): 0.0})
                                            if r["method"] == "AdaDPO"]
    rows += [{**rows[0], "method": "untrained", "seed": s} for s in (0, 1, 2)]
    write_report(rows, [("DPO", "AdaDPO"), ("DPO", "AdaIPO")], tmp_path / "two", title="two")
    with pytest.raises(ValueError, match="two: expected exactly one plain-vs-balanced comparison, found 2"):
        families_table([tmp_path / "two"])


def test_the_command_line_reports_errors_without_a_traceback(tmp_path):
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "adadpo.bench.families", str(tmp_path), str(tmp_path / "x")],
                         capture_output=True, text=True)
    assert res.returncode != 0 and "error: " in res.stderr and "Traceback" not in res.stderr
    assert "x: no summary.json" in res.stderr


def test_a_grid_of_one_seed_has_no_interval_and_says_so(tmp_path):
    one, _ = _grid(tmp_path, "one", {(0.1, 1e-4): 0.05}, seeds=(0,))
    table = families_table([one]).splitlines()
    assert table[2].count("(one seed)") >= 3 and "(no interval: one run)" in table[2] and "nan" not in table[2]
    write(tmp_path, [one])
    assert (tmp_path / "families.png").is_file() and "nan" not in (tmp_path / "families.md").read_text().lower()
