"""The benchmark scripts run end to end at toy sizes and write the figures run_all.py reads (no timing asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _run(script: str, *args: str, json_dir: Path) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    proc = subprocess.run([sys.executable, str(BENCH / f"{script}.py"), "--json-dir", str(json_dir), *args],
                          capture_output=True, text=True, env=env, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "|" in proc.stdout  # the printed table
    return json.loads((json_dir / f"{script}.json").read_text())


@pytest.mark.parametrize("script", ["trainer_step", "reference"])
def test_step_benchmarks_run_on_the_tiny_config(script, tmp_path):
    data = _run(script, "--configs", "tiny", "--repeats", "1", "--steps", "1", json_dir=tmp_path)
    results = data["results"]["tiny"]
    assert results and all(v["ratio"] > 0 for v in results.values())
    if script == "trainer_step":
        assert results["DPOTrainer (stock, TRL fused head)"]["ratio"] == 1.0


def test_balance_overhead_covers_the_six_losses(tmp_path):
    data = _run("balance_overhead", "--repeats", "1", "--steps", "1", "--hidden", "16", json_dir=tmp_path)
    assert set(data["results"]) == {"dpo", "rdpo", "ipo", "simpo", "cpo", "orpo"}


def test_chunked_benchmark_measures_memory_and_agrees_with_full_logits(tmp_path):
    data = _run("chunked_logps", "--lengths", "32", "64", "--repeats", "1", "--vocab", "2048", "--hidden", "32",
                "--methods", "full", "chunked", json_dir=tmp_path)
    rows = {(r["T"], r["method"]): r for r in data["rows"]}
    assert set(rows) == {(32, "full"), (32, "chunked"), (64, "full"), (64, "chunked")}
    assert all(r["loss_matches_full"] and r["peak_mib"] >= 0 for r in rows.values())
    assert rows[64, "full"]["mem_ratio"] == 1.0


def test_run_all_summary_gives_a_verdict_per_goal():
    sys.path.insert(0, str(BENCH))
    try:
        import run_all
    finally:
        sys.path.remove(str(BENCH))
    figures = {
        "balance_overhead": {"results": {"dpo": {"ratio": 1.01}, "orpo": {"ratio": 1.03}}},
        "reference": {"results": {"tiny": {"dpo plain": {"ratio": 0.7}, "dpo balanced": {"ratio": 0.72}}}},
    }
    rows = run_all.summary(figures)
    assert rows[0][2].endswith("(worst: orpo)") and rows[0][3] == "**missed**"
    assert rows[1][3] == "met"
