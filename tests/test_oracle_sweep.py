"""The oracle benchmark end to end on a tiny world: build + cache, a run through AdaDPOTrainer, the sweep
(resume, workers), `adadpo sweep` and `adadpo demo` in subprocesses, and config errors."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from adadpo.bench.run import Budget, Method, RunSpec
from adadpo.bench.sweep import SweepConfig, finished_rows, load_sweep_config, read_results, run_sweep
from adadpo.bench.worlds.oracle.data import EVAL_SAMPLES, build_world
from adadpo.bench.worlds.oracle.run import train_and_evaluate
from adadpo.bench.worlds.oracle.world import WorldConfig, quality
from adadpo.trl import DirLock

TINY = dict(n_words=10, min_targets=2, max_targets=3, hidden=16, layers=1, heads=2, n_sft=96, sft_epochs=1,
            sft_batch=32, max_new_tokens=6, n_train_prompts=48, n_eval_prompts=12, samples_per_prompt=3)
BUDGET = Budget(batch_size=8, logging_steps=1)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    torch.set_num_threads(1)
    return build_world(WorldConfig(**TINY), tmp_path_factory.mktemp("cache"))


def test_world_is_built_once_and_consistent(world, tmp_path):
    cfg = world.config
    assert world.path.name == f"oracle-{cfg.key()}" and (world.reference_path / "config.json").exists()
    assert 0 < len(world.train_pairs) <= cfg.n_train_prompts
    assert len(world.eval_reference) == len(world.eval_reference_logps) == cfg.n_eval_prompts * EVAL_SAMPLES
    for row in world.train_pairs:
        assert row["chosen"].split() != row["rejected"].split() and row["chosen"].strip() and row["rejected"].strip()
        assert row["prompt"] == " ".join(row["targets"]) + " ="
        assert all(len(row[k].split()) <= cfg.max_new_tokens for k in ("chosen", "rejected"))
    # chosen answers are better on average: the judge is mostly about quality
    qc = sum(quality(r["targets"], r["chosen"].split()) for r in world.train_pairs)
    qr = sum(quality(r["targets"], r["rejected"].split()) for r in world.train_pairs)
    assert qc > qr
    mtime = (world.path / "world.json").stat().st_mtime
    again = build_world(cfg, world.path.parent)  # cached: not rebuilt
    assert (again.path / "world.json").stat().st_mtime == mtime and again.train_pairs == world.train_pairs
    assert not [p for p in world.path.parent.iterdir() if p.name.startswith(".oracle-")]  # no temp dirs left


def test_one_run_trains_through_adadpo_trainer_and_evaluates(world):
    row = train_and_evaluate(world, RunSpec(Method("AdaDPO", "dpo", {"clip": 5.0}), 0.1, 1e-3, 0), BUDGET)
    assert row["steps"] == -(-len(world.train_pairs) // BUDGET.batch_size)
    for key in ("wr", "lc", "tq", "reward_accuracy"):
        assert 0.0 <= row[key] <= 1.0, key
    assert row["kl"] > 0  # the policy moved (MC estimate of a KL between different models)
    assert row["delta_chosen"] != 0 and row["length"] > 0
    curves = row["curves"]
    assert len(curves["step"]) == row["steps"] and all(len(v) == row["steps"] for v in curves.values())
    assert not any(math.isnan(v) for v in curves["balance/log_rho"])  # logged for every step
    # same seed, same result: runs are reproducible
    again = train_and_evaluate(world, RunSpec(Method("AdaDPO", "dpo", {"clip": 5.0}), 0.1, 1e-3, 0), BUDGET)
    assert again["wr"] == row["wr"] and again["curves"]["loss"] == pytest.approx(row["curves"]["loss"], rel=1e-6)


def test_sweep_resumes_and_skips_finished_runs(world, tmp_path):
    config = SweepConfig(methods=[Method("DPO", "dpo"), Method("AdaDPO", "dpo", {})], betas=[0.1],
                         learning_rates=[1e-3], seeds=[0], world=world.config, budget=BUDGET, workers=1)
    assert config.comparisons == [("DPO", "AdaDPO")]
    rows = run_sweep(config, tmp_path, world.path.parent)
    assert {r["method"] for r in rows} == {"DPO", "AdaDPO"}
    with open(tmp_path / "results.jsonl", "a") as f:
        f.write('{"torn": ')  # a write cut by a kill
    config.seeds = [0, 1]
    rows = run_sweep(config, tmp_path, world.path.parent)
    assert len(rows) == 4 and len(read_results(tmp_path / "results.jsonl")) == 4  # seed 0 was not rerun
    with open(tmp_path / "results.jsonl", "a") as f:  # a run recorded twice (two sweeps that ran side by side)
        f.write(json.dumps({**rows[0], "wr": -1.0}) + "\n")
    again = finished_rows(config, tmp_path)
    assert len(again) == 4 and sorted(r["key"] for r in again) == sorted(r["key"] for r in rows)  # before: 5 of 4
    assert all(r["wr"] >= 0 for r in again)  # the first row of a key is kept
    with DirLock(str(tmp_path), "--output-dir"), pytest.raises(ValueError, match=r"--output-dir=.* is in use by pid"):
        run_sweep(config, tmp_path, world.path.parent)  # before: a second sweep trained the same runs again


def test_sweep_reuses_finished_runs_of_other_sweeps(world, tmp_path, monkeypatch):
    """``reuse``: the untrained model's rows (and any run with the same world, budget and key) come from another
    sweep's directory instead of being evaluated again; runs of another budget are not taken."""
    monkeypatch.chdir(tmp_path)
    first = SweepConfig(methods=[Method("DPO", "dpo")], betas=[0.1], learning_rates=[1e-3], seeds=[0],
                        world=world.config, budget=BUDGET, workers=1, untrained=True)
    run_sweep(first, "a", world.path.parent)
    a_rows = {r["key"]: r for r in read_results(tmp_path / "a" / "results.jsonl")}
    other_budget = Budget(batch_size=4, logging_steps=1)
    run_sweep(SweepConfig(methods=[Method("IPO", "ipo")], betas=[0.1], learning_rates=[1e-3], seeds=[0],
                          world=world.config, budget=other_budget, workers=1, untrained=True), "c", world.path.parent)
    second = SweepConfig(methods=[Method("IPO", "ipo")], betas=[0.1], learning_rates=[1e-3], seeds=[0],
                         world=world.config, budget=BUDGET, workers=1, untrained=True, reuse=["c", "a"])
    rows = {r["key"]: r for r in run_sweep(second, "b", world.path.parent)}
    assert set(rows) == {"untrained|seed=0", "IPO|beta=0.1|lr=0.001|seed=0"}
    assert rows["untrained|seed=0"]["reused_from"] == "a"  # not "c": another budget
    assert {k: v for k, v in rows["untrained|seed=0"].items() if k != "reused_from"} == a_rows["untrained|seed=0"]
    assert "reused_from" not in rows["IPO|beta=0.1|lr=0.001|seed=0"]
    assert json.loads((tmp_path / "b" / "sweep.json").read_text())["reuse"] == ["c", "a"]
    assert len(read_results(tmp_path / "b" / "results.jsonl")) == 2
    run_sweep(second, "b", world.path.parent)  # again: nothing copied twice
    assert len(read_results(tmp_path / "b" / "results.jsonl")) == 2
    missing = SweepConfig(**{**second.__dict__, "reuse": ["nowhere"]})
    with pytest.raises(ValueError, match="reuse: 'nowhere' has no results.jsonl"):
        run_sweep(missing, "d", world.path.parent)


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "adadpo", *args], cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=600, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def _in_process(args: list[str], cwd: Path, capsys, monkeypatch) -> tuple[int, str, str]:
    """``adadpo *args`` run from ``cwd`` in this interpreter, for runs that train nothing (a report, a refusal): the
    exit code, stdout and stderr (earlier captured output dropped)."""
    from adadpo.cli import main

    monkeypatch.chdir(cwd)
    capsys.readouterr()
    try:
        code = main(args)
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_cli_sweep_two_workers_and_report(world, tmp_path, capsys, monkeypatch):
    grid = {"world": TINY, "budget": {"batch_size": 8, "logging_steps": 1}, "betas": [0.1, 0.3],
            "learning_rates": [1e-3], "seeds": [0, 1], "workers": 2,
            "methods": [{"name": "SimPO", "loss": "simpo", "params": {"gamma": 0.5}},
                        {"name": "AdaSimPO", "loss": "simpo", "balance": {"level": "sequence"}, "params": {"gamma": 0.5}}]}
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(grid))
    res = _cli(["sweep", "--config", "grid.yaml", "--output-dir", "out", "--cache-dir", str(world.path.parent),
                "--no-progress"], tmp_path)
    rows = read_results(tmp_path / "out" / "results.jsonl")
    assert len(rows) == 8 and "8 runs" in res.stdout
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## AdaSimPO vs SimPO" in report and "heatmaps_SimPO_vs_AdaSimPO.png" in report
    assert (tmp_path / "out" / "heatmaps_SimPO_vs_AdaSimPO.png").exists()
    # a grid with one more seed, reported from what has finished: nothing is trained
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump({**grid, "seeds": [0, 1, 2]}))
    code, out, err = _in_process(["sweep", "--config", "grid.yaml", "--output-dir", "out", "--report-only"], tmp_path,
                                 capsys, monkeypatch)
    assert code in (0, None), err[-3000:]
    assert len(read_results(tmp_path / "out" / "results.jsonl")) == 8 and "8 runs" in out
    assert "Partial: 8 of 12 runs finished so far." in (tmp_path / "out" / "report.md").read_text()
    code, _, err = _in_process(["sweep", "--config", "grid.yaml", "--output-dir", "none", "--report-only"], tmp_path,
                               capsys, monkeypatch)
    assert code not in (0, None) and "has no finished run" in err


@pytest.mark.slow
def test_cli_demo_writes_table_report_results(world, tmp_path, capsys, monkeypatch):
    (tmp_path / "world.yaml").write_text(yaml.safe_dump(TINY))
    argv = ["demo", "--output_dir", "demo", "--world", "world.yaml", "--seeds", "2", "--learning_rate", "1e-3",
            "--cache_dir", str(world.path.parent), "--no_progress"]
    res = _cli(argv, tmp_path)
    assert "AdaDPO" in res.stdout and "LC" in res.stdout and "report.md" in res.stdout
    assert res.stdout.lstrip().startswith("Verdict (2 seeds, β=0.1, lr=0.001): AdaDPO's true quality (TQ) is ")
    assert "  quality: mean true quality of the answers themselves" in res.stdout  # every column defined
    data = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert len(data["runs"]) == 6 and data["summary"]["comparisons"][0]["base"] == "DPO"  # 2 untrained rows
    assert data["summary"]["runs"] == 4 and "minus the untrained model" in res.stdout
    assert (tmp_path / "demo" / "winrates.png").exists()
    report = (tmp_path / "demo" / "report.md").read_text()
    assert report.split("\n")[2].startswith("**Verdict (2 seeds") and "min on this machine: the world was cached; 4 " \
        "training runs" in report  # before: "including the world when it was not cached", whether it was or not
    assert "Best cell within a KL budget" not in report and "Best cell per method" not in report  # one cell
    code, _, err = _in_process(argv, tmp_path, capsys, monkeypatch)  # again (in process: it trains nothing)
    assert code in (0, None), err[-3000:]  # the runs are reused, and the report says so
    assert "no training (every run was already in" in (tmp_path / "demo" / "report.md").read_text()


@pytest.mark.parametrize("text, match", [
    ("betas: [0.1]\nlearning_rates: [1e-4]\nseeds: [0]\n", "missing 'methods'"),
    ("betas: [0.1]\nlearning_rates: [1e-4]\nseeds: [0]\nmethods: [{name: A, loss: dpx}]\n", "dpx"),
    ("betas: [0.1]\nlearning_rates: [1e-4]\nseeds: [0]\nmethods: [{name: A, loss: dpo}]\nworld: {etta: 1}\n", "etta"),
    ("betas: [0.1]\nlearning_rates: [1e-4]\nseeds: [0]\nmethods: [{name: A, loss: dpo}]\nworld: {eta: high}\n", "eta='high'"),
    ("betas: []\nlearning_rates: [1e-4]\nseeds: [0]\nmethods: [{name: A, loss: dpo}]\n", "betas"),
    ("betas: [0.1]\nlearning_rates: [1e-4]\nseeds: [0]\nmethods: [{name: A, loss: dpo}, {name: A, loss: ipo}]\n", "unique"),
    ("betas: [0.1]\nlearning_rates: [1e-4]\nseeds: [0]\nmethods: [{name: A, loss: dpo}]\ncomparisons: [[A, B]]\n", "'B'"),
    ("betas: [0.1]\nlearning_rates: [1e-4]\nseeds: [0]\nmethods: [{name: A, loss: dpo}]\ngrid: 1\n", "grid"),
    ("betas: [0.1\nseeds: [0]\n", "not valid YAML"),
    ("- betas\n- seeds\n", "expected a mapping at the top level, got list"),
    ("betas: [0.1]\nlearning_rates: [1e-4]\nseeds: [0]\nmethods: [{name: A, loss: dpo}]\nreuse: [5]\n",
     r"reuse\[0\]=5: expected a directory"),  # a single directory is a one-element list (tests/test_sweep_config.py)
])
def test_sweep_config_errors_name_the_problem(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        load_sweep_config(path)


@pytest.mark.parametrize("args", [["sweep", "--config", "missing.yaml"], ["demo", "--world", "missing.yaml"]])
def test_cli_missing_yaml_is_a_one_line_error(tmp_path, args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-m", "adadpo", *args], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=120, check=False)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"adadpo {args[0]}: error: missing.yaml: no such file (expected a YAML file with" in res.stderr


def test_sampling_process_log_probs_are_exact(world):
    """Scored with `ended`, the log-probs of every answer `sample` can produce (max 2 tokens) sum to 1."""
    from adadpo.bench.worlds.oracle.policy import response_logps, sample

    tokenizer, model = world.load_tokenizer(), world.load_reference()
    words = list(world.config.words)
    prompt = world.eval_prompts[0].text
    answers = [[a] for a in words] + [[a, b] for a in words for b in words]
    ended = [True] * len(words) + [False] * len(words) ** 2  # one word + EOS, or two words cut at the limit
    logps = response_logps(model, tokenizer, [prompt] * len(answers), answers, ended)
    assert torch.logsumexp(logps.double(), 0).item() == pytest.approx(0.0, abs=1e-5)
    # the same answers scored as the trainer scores pairs (plain distribution, EOS appended) differ
    plain = response_logps(model, tokenizer, [prompt] * len(answers), answers)
    assert not torch.allclose(plain, logps)
    got, got_ended = sample(model, tokenizer, [prompt], n=50, max_new_tokens=2, seed=0, with_ended=True)
    assert all((len(a) == 1) == e for a, e in zip(got, got_ended)) and all(1 <= len(a) <= 2 for a in got)
