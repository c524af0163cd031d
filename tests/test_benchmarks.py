"""The benchmark scripts run end to end at toy sizes and write the figures run_all.py reads (no timing asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import adadpo

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


def test_balance_overhead_covers_every_family(tmp_path):
    data = _run("balance_overhead", "--repeats", "1", "--steps", "1", "--hidden", "16", json_dir=tmp_path)
    assert list(data["results"]) == ["tiny"]
    assert set(data["results"]["tiny"]) == set(adadpo.LOSSES)


CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory):
    """A tiny stand-in for the real-model config (SmolLM2): a from_pretrained directory whose tokenizer has a
    ChatML template, passed with --model-dir where the real model would come from prepare_model."""
    sys.path.insert(0, str(BENCH))
    try:
        import _common as C
    finally:
        sys.path.remove(str(BENCH))
    directory = tmp_path_factory.mktemp("chat-model")
    tokenizer = C.make_tokenizer()
    tokenizer.add_tokens(["<|im_start|>", "<|im_end|>"], special_tokens=True)
    tokenizer.chat_template = CHATML
    C.make_model(tokenizer, hidden=16).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.mark.slow
def test_trainer_step_real_model_config_runs_on_a_stand_in(chat_model, tmp_path):
    """``--configs smollm2`` with --model-dir: chat data through the template, its own settings, and the
    per-method peak memory measured in worker processes (on by default for this config)."""
    data = _run("trainer_step", "--configs", "smollm2", "--model-dir", str(chat_model), "--repeats", "1",
                "--steps", "1", "--threads", "1", json_dir=tmp_path)
    results = data["results"]["smollm2"]
    assert len(results) == 4 and results["DPOTrainer (stock, TRL fused head)"]["mem_ratio"] == 1.0
    assert all(v["peak_mib"] >= 0 and v["ratio"] > 0 for v in results.values())
    assert results["AdaDPOTrainer dpo plain (chunked)"]["backend"] == "chunked"
    settings = data["settings"]["smollm2"]
    assert (settings["batch"], settings["warmup"], settings["memory"]) == (4, 1, True)
    assert "mean tokens: prompt" in data["about"]["smollm2"] and "input_ids [8, " in data["about"]["smollm2"]


def test_balance_overhead_real_model_config_runs_on_a_stand_in(chat_model, tmp_path):
    data = _run("balance_overhead", "--configs", "smollm2", "--model-dir", str(chat_model), "--repeats", "1",
                "--steps", "1", "--threads", "1", json_dir=tmp_path)
    assert set(data["results"]["smollm2"]) == set(adadpo.LOSSES)
    assert {v["backend"] for v in data["results"]["smollm2"].values()} == {"chunked"}


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
        "balance_overhead": {"results": {"tiny": {"dpo": {"ratio": 1.01}, "orpo": {"ratio": 1.03}},
                                         "smollm2": {"dpo": {"ratio": 1.0}, "orpo": {"ratio": 0.99}}}},
        "reference": {"results": {"tiny": {"dpo plain": {"ratio": 0.7}, "dpo balanced": {"ratio": 0.72}}}},
    }
    rows = run_all.summary(figures)
    assert rows[0][2].endswith("(worst: orpo)") and rows[0][3] == "**missed**"
    assert "(smollm2)" in rows[1][0] and rows[1][3] == "met"
    assert rows[2][3] == "met"
    # the real-model run rewrites its own block of docs/performance.md, never the synthetic one
    assert run_all.markers("smollm2") == ("<!-- measured:smollm2:begin -->", "<!-- measured:smollm2:end -->")
    text = run_all.block(figures, {}, {}, "python benchmarks/run_all.py --model smollm2", "smollm2")
    assert text.startswith(run_all.markers("smollm2")[0]) and run_all.BEGIN not in text
    doc = (BENCH.parent / "docs" / "performance.md").read_text()
    assert all(doc.count(m) == 1 for m in (*run_all.markers(None), *run_all.markers("smollm2")))
