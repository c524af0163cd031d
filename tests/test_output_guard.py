"""Generated tests: ``output_dir`` pointed at each directory a run reads or another run keeps, in each relation
(the same path, a folder containing it, a folder inside it). Each case ends in one line naming both paths before
anything is written, and every file of the world is byte for byte as it was (before: the source model's
``model.safetensors`` replaced, another run's checkpoint overwritten and then resumed from)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from tiny import cli_config, make_pairs, make_tokenizer, save_tiny_model, train_cli, write_jsonl


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("guard")
    save_tiny_model(root / "models" / "base")
    make_tokenizer().save_pretrained(root / "tokenizers" / "tok")
    write_jsonl(root / "sets" / "dir" / "train.jsonl", make_pairs(8))
    write_jsonl(root / "files" / "pairs.jsonl", make_pairs(8, seed=1))
    write_jsonl(root / "mix" / "part" / "train.jsonl", make_pairs(8, seed=2))
    run = root / "runs" / "a"  # another run: its record and a checkpoint (what the guard reads of it)
    (run / "checkpoint-2").mkdir(parents=True)
    (run / "checkpoint-2" / "trainer_state.json").write_text(json.dumps({"global_step": 2}))
    (run / "adadpo_run.json").write_text(json.dumps({"status": "running", "global_step": 2, "settings": {}}))
    stock = root / "stock"  # a stock transformers run: only its checkpoint says so
    (stock / "checkpoint-7").mkdir(parents=True)
    (stock / "checkpoint-7" / "trainer_state.json").write_text("{}")
    return root


#: The options whose value the run reads: (key, the world's path it names, whether it is data).
SOURCES = [("model_name_or_path", "models/base", False), ("tokenizer_name_or_path", "tokenizers/tok", False),
           ("dataset_name", "sets/dir", True), ("dataset_name", "files/pairs.jsonl", True),
           ("datasets", "mix/part", True)]
#: output_dir relative to the source path: the same path, the folder holding it, a folder inside it (data only).
RELATIONS = {"is": lambda p: p, "contains": lambda p: str(Path(p).parent), "inside": lambda p: f"{p}/run"}
CASES = [(key, source, relation) for key, source, is_data in SOURCES for relation in RELATIONS
         if relation != "inside" or is_data and not source.endswith(".jsonl")]
#: output_dir inside what another run keeps.
OTHER_RUNS = ["runs/a/checkpoint-2", "runs/a/checkpoint-2/sub", "runs/a/sub", "runs/a/sub/deeper", "stock/checkpoint-7",
              "stock/checkpoint-7/x"]


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def _config(world: Path, out: str, key: str | None = None, source: str | None = None) -> dict:
    config = cli_config(world / "models", world / out, model_name_or_path=str(world / "models" / "base"),
                        dataset_name=str(world / "sets" / "dir"))
    if key == "datasets":
        del config["dataset_name"]
        config["datasets"] = [{"path": str(world / source), "split": "train"}]
    elif key is not None:
        config[key] = str(world / source)
    return config


def _refused(world: Path, tmp_path: Path, capsys, config: dict) -> str:
    before = _tree(world)
    code, err = train_cli(config, tmp_path, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err[-2000:]
    assert _tree(world) == before  # nothing written, nothing created
    return lines[0]


@pytest.mark.parametrize(("key", "source", "relation"), CASES, ids=[f"{k}-{s}-{r}" for k, s, r in CASES])
def test_output_dir_at_what_the_run_reads_is_one_line_naming_both(world, tmp_path, capsys, key, source, relation):
    out = RELATIONS[relation](source)
    line = _refused(world, tmp_path, capsys, _config(world, out, key, source))
    assert f"output_dir={str(world / out)!r}" in line and str(world / source) in line, line
    assert line.startswith("adadpo train: error: "), line


@pytest.mark.parametrize("out", OTHER_RUNS)
def test_output_dir_inside_another_runs_directory_or_checkpoint_is_one_line(world, tmp_path, capsys, out):
    line = _refused(world, tmp_path, capsys, _config(world, out))
    run = "runs/a/checkpoint-2" if "checkpoint-2" in out else "runs/a" if out.startswith("runs") else "stock/checkpoint-7"
    assert f"output_dir={str(world / out)!r}" in line and f"({world / run})" in line, line


def test_a_symlink_to_the_model_is_the_model(world, tmp_path, capsys):
    link = tmp_path / "link"
    os.symlink(world / "models" / "base", link)
    config = _config(world, "unused")
    config["output_dir"] = str(link)
    line = _refused(world, tmp_path, capsys, config)
    assert "is the path of model_name_or_path" in line, line


def test_a_sibling_output_dir_trains(world, tmp_path, capsys):
    """The guard refuses only what it must: a fresh directory beside the model and the data trains."""
    code, err = train_cli({**_config(world, "runs/b"), "max_steps": 1, "save_steps": 5}, tmp_path, capsys)
    assert code == 0, err[-2000:]
    assert (world / "runs" / "b" / "model.safetensors").exists()
