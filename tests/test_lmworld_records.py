"""Per-comparison records of the real-model world, end to end on the tiny stand-in: every run of a sweep (the
untrained rows too) writes its judged comparisons beside results.jsonl, its row's figures recompute from them,
reused rows bring their records along, and a sweep killed between the records and the row resumes cleanly."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import torch
import yaml

pytest.importorskip("gguf")

import lmworld_fixtures
from lmworld_fixtures import TINY_WORLD, stand_in_truth

from adadpo.bench import records
from adadpo.bench import sweep as sweep_module
from adadpo.bench.sweep import load_sweep_config, read_results, run_sweep

tiny_model = lmworld_fixtures.tiny_model

torch.set_num_threads(1)


@pytest.fixture(scope="module", autouse=True)
def truth():
    with stand_in_truth():
        yield


@pytest.fixture
def one_thread(monkeypatch):
    import adadpo.bench.worlds.smollm2 as smollm2

    monkeypatch.setattr(smollm2, "_cores", lambda: 1)
    yield
    torch.set_num_threads(1)


def _config(tmp_path, model, name="grid.yaml", **overrides):
    grid = {"world": {"kind": "smollm2", "model": str(model), **TINY_WORLD},
            "budget": {"batch_size": 4, "train_layers": 1, "logging_steps": 1},
            "betas": [0.1], "learning_rates": [1e-3], "seeds": [0, 1], "workers": 1, "untrained": True,
            "methods": [{"name": "DPO", "loss": "dpo"}, {"name": "AdaDPO", "loss": "dpo", "balance": {}}],
            **overrides}
    (tmp_path / name).write_text(yaml.safe_dump(grid))
    return load_sweep_config(tmp_path / name)


@pytest.fixture(scope="module")
def swept(tiny_model, tmp_path_factory):
    import adadpo.bench.worlds.smollm2 as smollm2

    tmp = tmp_path_factory.mktemp("records")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(smollm2, "_cores", lambda: 1)
        config = _config(tmp, tiny_model)
        rows = run_sweep(config, tmp / "out", str(tmp / "cache"))
    torch.set_num_threads(1)
    return config, tmp, rows


def test_every_run_has_records_and_its_row_recomputes_from_them(swept):
    config, tmp, rows = swept
    assert len(rows) == 6 and {r["method"] for r in rows} == {"untrained", "DPO", "AdaDPO"}
    n = TINY_WORLD["n_eval_prompts"] * TINY_WORLD["eval_samples"]
    for row in rows:
        assert "comparisons" not in row and row["records"].startswith("comparisons/")
        found = records.load(tmp / "out", row)
        assert len(found) == n == row["eval_comparisons"]
        assert [set(r) for r in found] == [set(records.FIELDS)] * n
        # prompt-major, answer i of prompt p against the reference's answer i
        assert [(r["prompt"], r["sample"]) for r in found] == [(p, i) for p in range(TINY_WORLD["n_eval_prompts"])
                                                              for i in range(TINY_WORLD["eval_samples"])]
        again = records.recompute(found)
        for key in ("tq", "wr", "length", "quality", "ref_length", "ref_quality", "ended"):
            assert again[key] == pytest.approx(row[key], abs=1e-12), key
        assert again["lc"] == pytest.approx(row["lc"], abs=1e-9)
        assert found[0]["text"] == row["examples"][0]["answer"]
        assert all(r["tokens"] <= TINY_WORLD["max_new_tokens"] and (r["ended"] or r["tokens"] ==
                                                                    TINY_WORLD["max_new_tokens"]) for r in found)
        # the truth's probability is the judge's at equal length: sigmoid(tau (q - q_ref))
        q, q_ref = records.column(found, "quality"), records.column(found, "ref_quality")
        assert np.allclose(records.column(found, "truth"), 1 / (1 + np.exp(-config.world.tau * (q - q_ref))))
    # every run judged against the same reference answers
    ref = [[(r["ref_words"], r["ref_tokens"], r["ref_ended"], r["ref_quality"]) for r in records.load(tmp / "out", row)]
           for row in rows]
    assert all(x == ref[0] for x in ref)
    kinds = records.by_kind(records.load(tmp / "out", rows[0]))
    assert sum(k["eval_comparisons"] for k in kinds.values()) == n


def test_the_row_keeps_the_length_only_bar_and_ended(swept):
    _, _, rows = swept
    for row in rows:
        bar = row["length_only"]
        assert bar["fewer"] + bar["more"] == pytest.approx(1.0) and 0 <= bar["fewer"] <= 1
        assert 0 <= row["ended"] <= 1 and 0 <= row["ref_ended"] <= 1
    assert len({json.dumps(r["length_only"]) for r in rows}) == 1  # the same pairs in every run


def test_runs_that_hit_the_cap_are_probed_at_twice_the_cap(swept):
    """The tiny model rarely stops within 6 tokens: its runs are probed, with answers up to 12 tokens."""
    _, _, rows = swept
    probed = [r for r in rows if r["ended"] < 0.95]
    assert probed and all("cap_probe" in r for r in probed)
    assert all("cap_probe" not in r for r in rows if r["ended"] >= 0.95)
    for r in probed:
        p = r["cap_probe"]
        assert p["cap"] == TINY_WORLD["max_new_tokens"] and 0 <= p["ended_at_cap"] <= p["ended_at_2cap"] <= 1
        assert p["prompts"] == 24 and len(p["prompt_ids"]) == min(24, TINY_WORLD["n_eval_prompts"])
        assert p["tokens"] <= 2 * p["cap"] and "probe" in r["eval_seconds"]


def test_reused_rows_bring_their_records(swept, tiny_model, one_thread, monkeypatch):
    config, tmp, rows = swept
    other = _config(tmp, tiny_model, "other.yaml", methods=[{"name": "IPO", "loss": "ipo"}], seeds=[0],
                    reuse=[str(tmp / "out")])
    monkeypatch.setattr(sweep_module, "_run_in_worker", lambda spec, budget: pytest.fail(f"ran {spec.key}"))
    monkeypatch.setattr(other, "methods", [])  # only the untrained row, which is reused
    other.comparisons = []
    got = run_sweep(other, tmp / "reusing", str(tmp / "cache"))
    (row,) = got
    assert row["reused_from"] == str(tmp / "out") and row["key"] == "untrained|seed=0"
    assert (tmp / "reusing" / row["records"]).read_bytes() == (tmp / "out" / row["records"]).read_bytes()
    assert records.load(tmp / "reusing", row) == records.load(tmp / "out", next(r for r in rows if r["key"] ==
                                                                                 row["key"]))


def test_a_sweep_killed_between_the_records_and_the_row_resumes(tiny_model, tmp_path, one_thread, monkeypatch):
    config = _config(tmp_path, tiny_model, seeds=[0], untrained=False,
                     methods=[{"name": "DPO", "loss": "dpo"}])
    append = sweep_module._append_row

    def killed(path, row):
        raise KeyboardInterrupt  # after store() wrote the records, before the row

    monkeypatch.setattr(sweep_module, "_append_row", killed)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(config, tmp_path / "out", str(tmp_path / "cache"))
    assert read_results(tmp_path / "out" / "results.jsonl") == []
    (orphan,) = (tmp_path / "out" / "comparisons").glob("*.jsonl.gz")  # a file no row names, read by nothing
    monkeypatch.setattr(sweep_module, "_append_row", append)
    (row,) = run_sweep(config, tmp_path / "out", str(tmp_path / "cache"))
    assert (tmp_path / "out" / row["records"]) == orphan  # the rerun replaced it
    assert records.recompute(records.load(tmp_path / "out", row))["tq"] == pytest.approx(row["tq"], abs=1e-12)
    assert not list((tmp_path / "out" / "comparisons").glob(".*tmp"))


def test_store_and_load_errors_name_the_file(tmp_path):
    row = {"key": "DPO|beta=0.1|lr=0.001|seed=0", "world": "w", "budget": {"b": 1},
           "comparisons": records.comparisons(**{k: [0] for k in records.FIELDS})}
    stored = records.store(tmp_path, row)
    assert "comparisons" in row and "comparisons" not in stored  # the caller's row is left as it was
    assert records.load(tmp_path, stored) == [dict.fromkeys(records.FIELDS, 0)]
    path = tmp_path / stored["records"]
    assert gzip.decompress(path.read_bytes()).decode().count("\n") == 1
    assert records.store(tmp_path, row)["records_sha256"] == stored["records_sha256"]  # deterministic bytes
    path.write_bytes(gzip.compress(b"{}\n"))
    with pytest.raises(ValueError, match="SHA-256 is not the one its row"):
        records.load(tmp_path, stored)
    path.unlink()
    with pytest.raises(ValueError, match="missing"):
        records.load(tmp_path, stored)
    assert records.load(tmp_path, {"key": "old"}) is None and records.store(tmp_path, {"key": "old"}) == {"key": "old"}
    with pytest.raises(ValueError, match=r"missing field\(s\) \['words'\]"):
        records.comparisons(**{k: [0] for k in records.FIELDS if k != "words"})
    with pytest.raises(ValueError, match="different lengths"):
        records.comparisons(**{k: [0] * (2 if k == "text" else 1) for k in records.FIELDS})


def test_the_sweeps_report_reads_its_records(swept):
    """The report of a real-model sweep, written in its directory, bootstraps from the records; its per-seed
    interval is the one of the rows."""
    from adadpo.bench import evidence as ev
    from adadpo.bench.report import write_report

    config, tmp, rows = swept
    report = write_report(rows, config.comparisons, tmp / "out", title="t").read_text()
    data = json.loads((tmp / "out" / "summary.json").read_text())["evidence"]
    assert data["records"] and "no per-comparison records" not in report and "nan" not in report.lower()
    tq = data["comparisons"][0]["tq"]
    iv, _ = ev.per_seed(ev.row_diffs(rows, "AdaDPO", "DPO", "tq"))
    assert tq["per_seed"]["mean"] == pytest.approx(iv.mean) and tq["bootstrap"]["n"] == 2
    assert data["comparisons"][0]["per_kind"] and data["comparisons"][0]["best_vs_best"]["tq"]["cells"]
    assert "ΔTQ per kind of prompt, DPO and AdaDPO" in report and "| kind | prompts |" in report
