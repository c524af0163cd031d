"""The real-model world end to end on a tiny stand-in for SmolLM2: one run through AdaDPOTrainer (what is
trained, what the row holds), the sweep with ``world: {kind: smollm2}`` (resume, config errors) and
``adadpo demo --world <yaml>`` in-process."""

from __future__ import annotations

import json
import math
import os
from dataclasses import replace

import numpy as np
import pytest
import torch
import yaml

pytest.importorskip("gguf")

import lmworld_fixtures
from lmworld_fixtures import LAYERS, TINY_WORLD, stand_in_truth, tiny_config

from adadpo.bench.run import CURVE_KEYS, Method, RunSpec
from adadpo.bench.sweep import load_sweep_config, read_results, run_sweep
from adadpo.bench.worlds.smollm2 import run as lmrun
from adadpo.bench.worlds.smollm2.data import LMWorldConfig, build_world
from adadpo.bench.worlds.smollm2.evaluate import CapProbe
from adadpo.bench.worlds.smollm2.run import LMBudget, train_and_evaluate
from adadpo.bench.worlds.smollm2.tasks import make_tasks
from adadpo.cli import main

tiny_model = lmworld_fixtures.tiny_model  # the session's stand-in model (a fixture)

torch.set_num_threads(1)

BUDGET = LMBudget(batch_size=4, train_layers=1, logging_steps=1)
#: What the oracle report and the demo read from a row.
ROW_KEYS = ("lc", "wr", "tq", "length", "quality", "ref_length", "ref_quality", "kl", "reward_accuracy",
            "reward_margin", "delta_chosen", "delta_rejected", "curves", "examples", "model_parameters", "steps")


@pytest.fixture(scope="module", autouse=True)
def truth():
    """The tiny model's answers all score 0 under the real truth program, so no held-out pair would be truly
    better: every world here is built and evaluated with the stand-in truth (workers run in-process)."""
    with stand_in_truth():
        yield


@pytest.fixture(scope="module")
def world(tiny_model, tmp_path_factory, truth):
    return build_world(tiny_config(tiny_model), tmp_path_factory.mktemp("lmworld-cache"))


@pytest.fixture
def one_thread_sweeps(monkeypatch):
    """A smollm2 sweep gives each worker (its cores) // workers threads; keep the tests on one thread."""
    import adadpo.bench.worlds.smollm2 as smollm2

    monkeypatch.setattr(smollm2, "_cores", lambda: 1)
    yield
    torch.set_num_threads(1)


@pytest.mark.parametrize("method", [Method("AdaDPO", "dpo", {}), Method("SimPO", "simpo", params={"gamma": 0.5})],
                         ids=["dpo-balanced", "simpo"])
def test_one_run_trains_the_top_block_and_evaluates(world, method, monkeypatch):
    seen = {}

    def spy(world_, policy, reference, tokenizer, seed, **options):
        seen.update(policy=policy, reference=reference)
        return evaluate(world_, policy, reference, tokenizer, seed, **options)

    evaluate = lmrun.evaluate_policy
    monkeypatch.setattr(lmrun, "evaluate_policy", spy)
    row = train_and_evaluate(world, RunSpec(method, 0.1, 1e-3, 0), BUDGET, threads=1)

    for key in ROW_KEYS:
        assert key in row, key
    assert row["steps"] == -(-len(world.train_pairs) // BUDGET.batch_size) * BUDGET.epochs > 0
    assert row["method"] == method.name and row["world"] == world.config.key()
    assert row["budget"]["train_layers"] == 1
    for key in ("lc", "wr", "tq", "reward_accuracy"):
        assert 0.0 <= row[key] <= 1.0, key
    for key in ("length", "quality", "ref_length", "ref_quality", "kl", "reward_margin", "delta_chosen",
                "delta_rejected"):
        assert math.isfinite(row[key]), key
    assert row["length"] > 0 and row["ref_length"] > 0
    assert row["delta_chosen"] != 0  # the policy moved
    curves = row["curves"]
    assert set(curves) == {"step", *CURVE_KEYS} and len(curves["step"]) == row["steps"]
    assert all(math.isfinite(v) for v in curves["loss"])
    assert len(row["examples"]) == min(6, len(world.eval_tasks))
    assert row["examples"][0]["prompt"] == world.eval_tasks[0].text
    assert row["examples"][0]["reference"] == world.eval_reference["texts"][0]

    policy, reference = seen["policy"], seen["reference"]
    assert row["model_parameters"] == sum(p.numel() for p in policy.parameters())
    top = f"model.layers.{LAYERS - 1}."
    trained = {n for n, p in policy.named_parameters() if p.requires_grad}
    assert trained == {n for n, _ in policy.named_parameters() if n.startswith(top)} | {"model.norm.weight"}
    assert row["trainable_parameters"] == sum(p.numel() for n, p in policy.named_parameters() if n in trained)
    before = dict(reference.named_parameters())
    changed = {n for n, p in policy.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= trained  # frozen parameters untouched, bit for bit
    assert any(n.startswith(top) for n in changed)
    assert not policy.training and not reference.training


def test_the_trunk_cache_is_filled_once_saved_and_loaded_by_the_next_process(world, monkeypatch):
    """The first run fills the frozen trunk for every training sequence (TRL's precompute plus fill_trunk for
    a loss without a reference) and saves it beside the world; a fresh process (an empty in-memory cache)
    loads it and computes nothing; a run then gives the same row as a run that computed its own trunk."""
    spec = RunSpec(Method("SimPO", "simpo", params={"gamma": 0.5}), 2.0, 1e-3, 0)
    path = lmrun.trunk_path(world, BUDGET.train_layers)
    path.unlink(missing_ok=True)
    monkeypatch.setattr(lmrun, "_TRUNKS", {})
    first = train_and_evaluate(world, spec, BUDGET, threads=1)
    (cache,) = lmrun._TRUNKS.values()
    assert path.exists() and cache.saved
    assert cache.misses == len(cache.outputs) == 2 * len(world.train_pairs)  # every chosen and rejected, once

    monkeypatch.setattr(lmrun, "_TRUNKS", {})  # the next process
    fill = lmrun.TrunkCache.fill
    calls = []
    monkeypatch.setattr(lmrun.TrunkCache, "fill", lambda self, *a: calls.append(fill(self, *a)) or calls[-1])
    again = train_and_evaluate(world, spec, BUDGET, threads=1)
    (loaded,) = lmrun._TRUNKS.values()
    assert loaded.misses == 0 and loaded.hits > 0 and calls and sum(calls) == 0
    for key in ("tq", "lc", "kl", "reward_margin", "delta_chosen", "delta_rejected"):
        assert again[key] == first[key], key
    assert again["curves"]["loss"] == first["curves"]["loss"]


def test_unpadded_top_is_the_worlds_default_and_its_switch(world, monkeypatch):
    """A run serves its trunk with the trained blocks unpadded (``UNPADDED_TOP``, on by default); switched off
    they run on the padded batch, and the run's losses and evaluation agree up to float rounding."""
    assert lmrun.UNPADDED_TOP
    spec = RunSpec(Method("DPO", "dpo"), 0.1, 1e-3, 0)
    served, serve = [], lmrun.cached_trunk
    monkeypatch.setattr(lmrun, "cached_trunk", lambda *a, **k: served.append(k["unpadded"]) or serve(*a, **k))
    on = train_and_evaluate(world, spec, BUDGET, threads=1)
    monkeypatch.setattr(lmrun, "UNPADDED_TOP", False)
    off = train_and_evaluate(world, spec, BUDGET, threads=1)
    assert served == [True, False] and len(on["curves"]["loss"]) > 1
    assert (on["trained_blocks_path"], off["trained_blocks_path"]) == ("unpadded", "padded")  # the row says which
    np.testing.assert_allclose(on["curves"]["loss"], off["curves"]["loss"], rtol=1e-5)
    for key in ("reward_margin", "delta_chosen", "delta_rejected"):
        np.testing.assert_allclose(on[key], off[key], rtol=1e-4, atol=1e-6, err_msg=key)


def test_a_budget_can_use_part_of_the_world(world):
    """``train_pairs``, ``eval_prompts`` and ``probe_prompts`` (what ``adadpo demo`` uses): the first pairs, the
    first held-out prompts with their reference answers and pairs, and no probe; the same answers to those
    prompts as the whole evaluation draws (each row's answer depends on its seed and place, not the batch)."""
    e = world.config.eval_samples
    part = LMBudget(batch_size=4, train_layers=1, logging_steps=1, train_pairs=4, eval_prompts=3, probe_prompts=0)
    row = train_and_evaluate(world, RunSpec(Method("DPO", "dpo"), 0.1, 1e-3, 0), part, threads=1)
    assert row["steps"] == 1 < -(-len(world.train_pairs) // 4)
    assert row["eval_comparisons"] == 3 * e and len(row["comparisons"]) == 3 * e
    assert {c["prompt"] for c in row["comparisons"]} == {0, 1, 2}
    assert row["eval_pairs"] == sum(p["prompt"] < 3 for p in world.eval_pairs) > 0
    assert "cap_probe" not in row and row["budget"]["eval_prompts"] == 3
    assert row["ended"] < CapProbe().below  # the tiny model's answers run to the cap: a default budget would probe
    probed = train_and_evaluate(world, RunSpec(Method("DPO", "dpo"), 0.1, 1e-3, 0), replace(part, probe_prompts=2),
                                threads=1)
    assert len(probed["cap_probe"]["prompt_ids"]) == 2 and probed["cap_probe"]["prompts"] == 2
    whole = train_and_evaluate(world, RunSpec.untrained(0), BUDGET, threads=1)
    first = train_and_evaluate(world, RunSpec.untrained(0), part, threads=1)
    assert [c["text"] for c in first["comparisons"]] == [c["text"] for c in whole["comparisons"][: 3 * e]]
    held = world.held_out(3)
    assert held.eval_reference["texts"] == world.eval_reference["texts"][: 3 * e]
    assert held.train_pairs is world.train_pairs
    with pytest.raises(ValueError, match=f"eval_prompts=99: the world has {len(world.eval_tasks)} held-out prompts"):
        world.held_out(99)
    with pytest.raises(ValueError, match=r"budget.eval_prompts=-1: expected >= 0"):
        LMBudget(eval_prompts=-1)


def test_rows_written_before_a_budget_field_existed_still_count():
    """A sweep finds a finished run whose recorded budget lacks a field added since (it reads as the default,
    which is what runs did before), and not one whose recorded value differs."""
    from dataclasses import asdict

    from adadpo.bench.sweep import same_budget

    now = asdict(LMBudget())
    older = {k: v for k, v in now.items() if k not in ("train_pairs", "eval_prompts", "probe_prompts")}
    assert same_budget(older, LMBudget()) and same_budget(now, LMBudget())
    assert not same_budget(older, LMBudget(eval_prompts=24))  # the old run used every prompt
    assert not same_budget({**now, "epochs": 2}, LMBudget()) and not same_budget(None, LMBudget())
    assert not same_budget({**now, "retired_field": 1}, LMBudget())  # a field the class no longer has


def _sweep_yaml(path, model, **overrides) -> str:
    grid = {"world": {"kind": "smollm2", "model": str(model), **TINY_WORLD},
            "budget": {"batch_size": 4, "train_layers": 1, "logging_steps": 1},
            "betas": [0.1], "learning_rates": [1e-3], "seeds": [0], "workers": 1,
            "methods": [{"name": "DPO", "loss": "dpo"}, {"name": "AdaDPO", "loss": "dpo", "balance": {}}],
            **overrides}
    path.write_text(yaml.safe_dump(grid))
    return str(path)


def test_sweep_in_the_smollm2_world_resumes(tiny_model, tmp_path, monkeypatch, one_thread_sweeps):
    config = load_sweep_config(_sweep_yaml(tmp_path / "grid.yaml", tiny_model))
    assert config.world_kind == "smollm2" and type(config.world) is LMWorldConfig
    assert config.world == tiny_config(tiny_model)
    assert config.budget == BUDGET and config.comparisons == [("DPO", "AdaDPO")]
    out, cache = tmp_path / "out", tmp_path / "cache"
    rows = run_sweep(config, out, str(cache))
    assert sorted(r["method"] for r in rows) == ["AdaDPO", "DPO"]
    assert all(r["world"] == config.world.key() and r["steps"] > 0 and 0 <= r["lc"] <= 1 for r in rows)
    assert len(read_results(out / "results.jsonl")) == 2
    saved = json.loads((out / "sweep.json").read_text())
    assert saved["world_kind"] == "smollm2" and saved["budget"]["train_layers"] == 1
    read_back = load_sweep_config(out / "sweep.json")  # what --report_only reads: the settings as they were
    assert (read_back.world_kind, read_back.world, read_back.budget, read_back.methods) == (
        "smollm2", config.world, config.budget, config.methods)
    (tmp_path / "mixed.json").write_text(json.dumps({**saved, "world": {"kind": "oracle"}}))
    with pytest.raises(ValueError, match="world_kind='smollm2' but world: kind='oracle'"):
        load_sweep_config(tmp_path / "mixed.json")
    assert (cache / f"lmworld-{config.world.key()}" / "world.json").exists()
    # a rerun finds both runs done: nothing is trained again
    monkeypatch.setattr(lmrun, "train_and_evaluate", lambda *a, **k: pytest.fail("reran a finished run"))
    again = run_sweep(config, out, str(cache))
    assert [r["key"] for r in again] == [r["key"] for r in rows]
    assert len(read_results(out / "results.jsonl")) == 2


def test_sweep_with_untrained_rows_and_an_epochs_axis(tiny_model, tmp_path, one_thread_sweeps):
    """``untrained: true`` evaluates the untrained reference with every seed; ``epochs`` is a grid axis; the
    report measures every method against the untrained model on the same seed."""
    path = _sweep_yaml(tmp_path / "grid.yaml", tiny_model, untrained=True, epochs=[1, 2], seeds=[0, 1])
    config = load_sweep_config(path)
    assert [s.key for s in config.runs()][:5] == [
        "untrained|seed=0", "DPO|beta=0.1|lr=0.001|epochs=1|seed=0", "AdaDPO|beta=0.1|lr=0.001|epochs=1|seed=0",
        "DPO|beta=0.1|lr=0.001|epochs=2|seed=0", "AdaDPO|beta=0.1|lr=0.001|epochs=2|seed=0"]
    rows = run_sweep(config, tmp_path / "out", str(tmp_path / "cache"))
    assert len(rows) == 10
    untrained = [r for r in rows if r["method"] == "untrained"]
    assert [r["seed"] for r in untrained] == [0, 1]
    for r in untrained:  # the reference itself: no training, no distance, rewards 0 (accuracy counts ties half)
        assert r["steps"] == 0 and r["kl"] == 0.0 and r["reward_accuracy"] == 0.5 and r["beta"] is None
        assert r["eval_comparisons"] == TINY_WORLD["n_eval_prompts"] * TINY_WORLD["eval_samples"]
    one, two = (next(r for r in rows if r["key"] == f"DPO|beta=0.1|lr=0.001|epochs={e}|seed=0") for e in (1, 2))
    assert two["steps"] == 2 * one["steps"] > 0 and one["epochs"] == 1 and two["epochs"] == 2
    # the same evaluation seed: a trained run and the untrained one judge against the same reference answers
    assert one["ref_quality"] == untrained[0]["ref_quality"] and one["ref_length"] == untrained[0]["ref_length"]

    from adadpo.bench import paired
    from adadpo.bench.report import write_report

    d = paired.paired(rows, "DPO", "tq")
    assert set(d) == {(0.1, 1e-3, 1), (0.1, 1e-3, 2)}
    base = {r["seed"]: r["tq"] for r in untrained}
    runs = [r for r in rows if r["method"] == "DPO" and r["epochs"] == 2]
    assert d[(0.1, 1e-3, 2)].mean == pytest.approx(np.mean([r["tq"] - base[r["seed"]] for r in runs]))
    report = write_report(rows, config.comparisons, tmp_path / "report", title="t",
                          records_dir=tmp_path / "out").read_text()
    assert "## Against the untrained model" in report and "**Gate**" in report and "| untrained, seed |" in report
    assert "β=0.1, lr=0.001, 2 ep" in report
    # the head-to-head per cell: AdaDPO - DPO paired on the seed, against the rows themselves
    lines = paired.head_to_head(rows, "DPO", "AdaDPO")
    cols = [c.strip() for c in next(x for x in lines if x.startswith("| β=0.1, lr=0.001, 2 ep |")).split("|")[1:-1]]
    ada = {r["seed"]: r["tq"] for r in rows if r["method"] == "AdaDPO" and r["epochs"] == 2}
    dpo = {r["seed"]: r["tq"] for r in runs}
    assert cols[1] == "2/2" and cols[4].startswith(f"{np.mean([ada[s] - dpo[s] for s in dpo]):+.3f} [")
    assert cols[2].startswith(f"{d[(0.1, 1e-3, 2)].mean:+.3f}")
    assert "AdaDPO vs DPO per cell" in report and lines[-1].endswith("of 2 cells with both.")
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert set(summary["vs_untrained"]["pooled"]) == {"DPO", "AdaDPO"} and "DPO" in summary["vs_untrained"]["gates"]
    assert "AdaDPO" not in summary["vs_untrained"]["gates"]  # the gate is about the plain method
    assert summary["runs"] == 8  # the untrained rows are not runs of a method
    # one seed so far (a grid in progress): no interval, and never a NaN in the report
    first = paired.markdown([r for r in rows if r["seed"] == 0], ["DPO", "AdaDPO"], config.comparisons)
    assert "over 1 seed (no interval yet)" in first and "nan" not in first.lower()


@pytest.mark.parametrize(("overrides", "match"), [
    ({"epochs": [0]}, r"epochs=\[0\]"),
    ({"epochs": [2.5]}, r"epochs\[0\]=2.5: expected an integer, not a fraction"),  # 2 alone is [2]
    ({"untrained": "yes"}, "untrained='yes': expected true or false"),
    ({"methods": [{"name": "untrained", "loss": "dpo"}]}, "'untrained' is the name of the untrained reference"),
    ({"budget": {"batch_size": 4, "train_layer": 1}}, r"budget: unknown field\(s\) \['train_layer'\]"),
    ({"budget": {"train_layers": "top"}}, "train_layers='top' must be an integer"),
    ({"world": {"kind": "smollm2", "n_words": 10}}, r"world: unknown field\(s\) \['n_words'\]"),  # an oracle field
    ({"world": {"kind": "smollm2", "samples_per_prompt": 1}}, "samples_per_prompt=1"),
    ({"world": {"kind": "nonsense"}}, "kind='nonsense'"),
    ({"world": {"n_words": 10}, "budget": {"train_layers": 1}}, r"unknown field\(s\) \['train_layers'\]"),  # oracle
])
def test_sweep_config_errors_name_the_key(tiny_model, tmp_path, overrides, match):
    with pytest.raises(ValueError, match=match):
        load_sweep_config(_sweep_yaml(tmp_path / "bad.yaml", tiny_model, **overrides))


def test_demo_in_the_smollm2_world(tiny_model, tmp_path, capsys, monkeypatch, one_thread_sweeps):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)  # set by benchmarks/_common.py when a test imported it
    # the YAML names a model that does not exist: --model replaces it
    (tmp_path / "world.yaml").write_text(yaml.safe_dump({"kind": "smollm2", "model": "no/such-model", **TINY_WORLD}))
    out = tmp_path / "demo"
    code = main(["demo", "--world", str(tmp_path / "world.yaml"), "--model", str(tiny_model), "--seeds", "2",
                 "--workers", "1", "--no-progress", "--output-dir", str(out), "--cache-dir", str(tmp_path / "cache")])
    assert code == 0
    stdout, stderr = capsys.readouterr()
    assert "Computing reference log probs" not in stderr  # TRL's bar stays quiet under the sweep's
    assert "TQDM_DISABLE" not in os.environ  # and the setting that quiets it does not outlive the run
    first = make_tasks(TINY_WORLD["n_train_prompts"], TINY_WORLD["n_eval_prompts"], 0)[1][0]
    assert "AdaDPO - DPO" in stdout and f"[1] {first.text}" in stdout and "  reference (q=" in stdout
    report = (out / "report.md").read_text()
    assert "## Answers before and after training" in report and "| reference |" in report
    assert "real-model world" in report
    # the study's statistics read the runs' per-comparison records (kept in the demo's runs/ folder)
    assert "no per-comparison records" not in report and "bootstrap" in report.lower()
    data = json.loads((out / "results.json").read_text())
    assert data["world"] == "smollm2"
    assert isinstance(data["model_parameters"], int) and data["model_parameters"] > 0
    assert set(data["methods"]) == {"DPO", "AdaDPO"}
    for m in ("DPO", "AdaDPO"):
        assert set(data["methods"][m]) == {"LC", "WR", "TQ"}
        assert all(0.0 <= v <= 1.0 for v in data["methods"][m].values())
    assert len(data["runs"]) == 6 and {r["seed"] for r in data["runs"]} == {0, 1}
    assert sorted(r["key"] for r in data["runs"] if r["method"] == "untrained") == ["untrained|seed=0",
                                                                                     "untrained|seed=1"]
    assert "minus the untrained model" in stdout and "## Against the untrained model" in report
    assert data["config"]["world_kind"] == "smollm2" and data["config"]["world"]["model"] == str(tiny_model)
    assert all(r["budget"] == data["runs"][0]["budget"] for r in data["runs"])
    # the demo's budget (demo.DEMO_BUDGETS): the study's 2 epochs, half the training prompts' pairs, a quarter of the
    # held-out prompts (here 7 // 4 = 1: best versus best has nothing to split), no cap probe; said in the report
    budget = data["runs"][0]["budget"]
    assert (budget["epochs"], budget["train_pairs"], budget["eval_prompts"], budget["probe_prompts"]) == (2, 6, 1, 0)
    assert "2 seeds, 2 epochs; trained on the first 6 training pairs" in report
    assert all(r["eval_comparisons"] == TINY_WORLD["eval_samples"] for r in data["runs"])
    scope = "evaluated on the first 1 of the 7 held-out prompts (2 judged comparisons per run), without the cap probe"
    assert scope in report and scope in stdout and "one held-out prompt: nothing to split" in report


@pytest.mark.parametrize(("argv", "message"), [
    (["--world", "oracle", "--model_name_or_path", "some/model"],
     "--model_name_or_path='some/model': only the smollm2 world takes a model"),
    (["--world", "nonsense"], "--world='nonsense': expected one of ['oracle', 'smollm2'] or a YAML file"),
    (["--world", "WORLD"], "kind='nonsense'; expected one of ['oracle', 'smollm2']"),
])
def test_demo_world_errors_are_one_line(tmp_path, capsys, argv, message):
    (tmp_path / "w.yaml").write_text("kind: nonsense\n")
    argv = [str(tmp_path / "w.yaml") if a == "WORLD" else a for a in argv]
    with pytest.raises(SystemExit) as exc:
        main(["demo", *argv, "--output-dir", str(tmp_path / "out"), "--no-progress"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("adadpo demo: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()  # nothing was run


def test_trunk_benchmark_measures_the_four_modes(world):
    """benchmarks/smollm2_trunk.py on the tiny world: every mode trains, the cold runs compute each training
    sequence once (2 per pair), the ratios are each mode's time over the uncached run (and unpadded's over
    warm's) of the same repeat, and the four modes log the same losses up to float rounding."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "smollm2_trunk.py"
    spec = importlib.util.spec_from_file_location("smollm2_trunk", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = bench.measure(world, pairs=12, repeats=2, train_layers=1)
    assert out["steps"] == 2 and all(len(v) == 2 for v in out["seconds"].values())
    assert out["misses"] == [24, 24]  # chosen and rejected of 12 pairs, each computed once per cold run
    for mode in ("cold", "warm", "unpadded"):
        assert out["ratios"][mode] == [t / u for t, u in zip(out["seconds"][mode], out["seconds"]["uncached"])]
    assert out["unpadded_vs_warm"] == [u / w for u, w in zip(out["seconds"]["unpadded"], out["seconds"]["warm"])]
    curves = [c for runs in out["losses"].values() for c in runs]
    assert len(curves) == 8 and all(len(c) == 2 for c in curves)  # a loss per step
    assert out["losses"]["cold"] == out["losses"]["warm"]  # the same cached values: bit for bit
    for curve in curves:
        assert max(bench.relative_differences(curve, out["losses"]["uncached"][0])) < 1e-4
    assert max(bench.relative_differences(out["losses"]["unpadded"][1], out["losses"]["warm"][0])) < 1e-5
    with pytest.raises(ValueError, match="'warm,nope': expected"):
        bench.measure(world, pairs=8, repeats=1, modes=("warm", "nope"))
    torch.set_num_threads(1)
