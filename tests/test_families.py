"""The cross-family table and figure: every family's grid against the untrained model, side by side."""

from __future__ import annotations

import json

import numpy as np
import pytest

from adadpo.bench.families import families_table, write
from adadpo.bench.report import write_report
from tests.test_oracle_report import rows_for


def _grid(tmp_path, name, effects, plain="DPO", balanced="AdaDPO", untrained=True):
    rows = rows_for(effects)
    for r in rows:
        r["method"] = {"DPO": plain, "AdaDPO": balanced}[r["method"]]
        r["balance"] = {} if r["method"] == balanced else None
    if untrained:
        for s in (0, 1, 2):  # the untrained model: TQ 0.55 + a seed effect, 10 words
            rows.append({**rows[0], "method": "untrained", "seed": s, "tq": 0.55 + 0.01 * s, "lc": 0.56,
                         "wr": 0.57, "length": 10.0, "balance": None})
    write_report(rows, [(plain, balanced)], tmp_path / name, title=name)
    return tmp_path / name, rows


def test_one_row_per_family_with_the_paired_differences(tmp_path):
    dpo, rows = _grid(tmp_path, "dpo", {(0.1, 1e-4): 0.05, (0.1, 3e-4): 0.03})
    ipo, _ = _grid(tmp_path, "ipo", {(0.1, 1e-4): 0.0, (0.1, 3e-4): -0.01}, plain="IPO", balanced="AdaIPO")
    table = families_table([dpo, ipo]).splitlines()
    assert len(table) == 2 + 2 and table[2].startswith("| dpo | DPO / AdaDPO | 6 |")
    assert table[3].startswith("| ipo | IPO / AdaIPO | 6 |")
    # ΔTQ of AdaDPO recomputed by hand: each run minus the untrained model of its seed, pooled over cells and seeds
    base = {r["seed"]: r["tq"] for r in rows if r["method"] == "untrained"}
    d = [r["tq"] - base[r["seed"]] for r in rows if r["method"] == "AdaDPO"]
    assert f"| {np.mean(d):+.3f} [" in table[2]
    words = np.mean([r["length"] - 10.0 for r in rows if r["method"] == "DPO"])
    assert f"| {words:+.1f} / " in table[2]
    s = json.loads((dpo / "summary.json").read_text())
    tq = next(c for c in s["comparisons"] if c["metric"] == "tq")
    assert f"| {tq['pooled_diff']:+.3f} [{tq['pooled_lo']:+.3f}, {tq['pooled_hi']:+.3f}] |" in table[2]
    assert "2 of 2 (" in table[2]  # AdaDPO ahead on TQ by the mean in both cells
    path = write(tmp_path, [dpo, ipo])
    assert (tmp_path / "families.png").stat().st_size > 10_000
    assert path.read_text().startswith(families_table([dpo, ipo]))


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
    rows = [r for r in rows_for({(0.1, 1e-4): 0.05}, seeds=(0,))]
    rows.append({**rows[0], "method": "untrained", "seed": 0, "tq": 0.55})
    write_report(rows, [("DPO", "AdaDPO")], tmp_path / "one", title="one")
    table = families_table([tmp_path / "one"]).splitlines()
    assert table[2].count("(no interval: one run)") >= 4 and "nan" not in table[2]
    write(tmp_path, [tmp_path / "one"])
    assert (tmp_path / "families.png").is_file()
