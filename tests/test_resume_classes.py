"""Generated tests: every run-defining input (:func:`adadpo.cli.run_inputs.run_inputs`) changed between a Ctrl-C and
the resume. Each is refused in one line naming what changed, before the model is loaded (before: the new data, the
replaced weights or the halved global batch were trained on without a word); what may change does: a moved
dataset of the same content resumes, ``save_steps``/``logging_steps`` given on resume take effect, and a model-only
checkpoint resumes saying what restarts, with the learning-rate schedule continued."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from tiny import cli_config, make_pairs, save_tiny_model, train_cli, write_jsonl, write_yaml
from transformers import TrainerCallback

from adadpo.cli import main

from adadpo.cli.run_dir import RECORD
from adadpo.cli.run_inputs import run_inputs
from adadpo.trl.callbacks import read_metrics


class StopAt3(TrainerCallback):
    """Ctrl-C at the end of step 3 (checkpoint-2 is on disk)."""

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 3:
            raise KeyboardInterrupt


def _train(config: dict, root: Path, capsys) -> tuple[int, str, str]:
    """``adadpo train`` on ``config``: exit code, stdout, stderr."""
    capsys.readouterr()
    try:
        code = main(["train", "--config", str(write_yaml(root / "run.yaml", config))])
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


class _Quiet:
    """Stands in for ``capsys`` where a module fixture runs the CLI (its output is not looked at)."""

    def readouterr(self):
        return SimpleNamespace(out="", err="")


def _world(root: Path) -> Path:
    save_tiny_model(root / "model")
    write_jsonl(root / "data" / "train.jsonl", make_pairs(24, seed=0))
    return root


def _config(root: Path, **overrides) -> dict:
    return cli_config(root, root / "out", max_steps=6, lr_scheduler_type="linear", warmup_steps=2, **overrides)


def _interrupted(root: Path, capsys, **overrides) -> dict:
    config = _config(root, **overrides)
    code, err = train_cli({**config, "callbacks": ["test_resume_classes:StopAt3"]}, root, capsys)
    assert code == 130 and (root / "out" / "checkpoint-2").is_dir(), err[-2000:]
    return config


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A world whose run was stopped at step 3 (copied for each case)."""
    root = _world(tmp_path_factory.mktemp("resume"))
    _interrupted(root, _Quiet())
    return root


def _settings(out: Path) -> list[Path]:
    """The files that keep the run's settings: the record and each checkpoint's trainer state."""
    return [out / RECORD, *sorted(out.glob("checkpoint-*/trainer_state.json"))]


def _recorded_with(out: Path, key: str, value) -> None:
    """Rewrite the run's recorded ``key`` (as if the run had been started with ``value``)."""
    for path in _settings(out):
        data = json.loads(path.read_text())
        settings = data["settings"] if path.name == RECORD else \
            data["stateful_callbacks"]["RunSettingsCallback"]["args"]["settings"]
        settings[key] = value
        path.write_text(json.dumps(data))


def _replace_data(root: Path) -> str:
    write_jsonl(root / "data" / "train.jsonl", make_pairs(24, seed=5))  # the same path, other pairs
    return "dataset_content"


def _replace_weights(root: Path) -> str:
    save_tiny_model(root / "model", seed=7)  # the same path, other weights (and so another reference)
    return "model_weights"


def _more_processes(root: Path) -> str:
    _recorded_with(root / "out", "num_processes", 2)  # the run was started under torchrun with 2 processes
    _recorded_with(root / "out", "global_batch", 8)
    return "num_processes: 2 -> 1"


def _smaller_batch(root: Path) -> str:
    _recorded_with(root / "out", "global_batch", 8)  # the run's global batch was 8 (say 2 x 4 accumulated)
    return "global_batch: 8 -> 4"


#: One change per input of :func:`run_inputs`: what it does to the world, and what the refusal names.
CHANGES = {"dataset_content": _replace_data, "model_weights": _replace_weights, "num_processes": _more_processes,
           "global_batch": _smaller_batch}


def test_every_run_input_has_a_change(template):
    from adadpo.cli.train import parse

    parsed = parse(["--model_name_or_path", str(template / "model"), "--dataset_name", str(template / "data")])
    assert sorted(run_inputs(*parsed.instances[:1], parsed.instances[1], parsed.instances[2])) == sorted(CHANGES)


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_a_changed_input_refuses_the_resume_naming_it(template, tmp_path, capsys, name):
    root = tmp_path / "w"
    shutil.copytree(template, root)
    said = CHANGES[name](root)
    before = {p: p.read_bytes() for p in _settings(root / "out")}
    code, err = train_cli(_config(root), root, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err[-2000:]
    assert "holds a run trained with other settings" in lines[0] and said in lines[0], lines[0]
    assert {p: p.read_bytes() for p in _settings(root / "out")} == before  # nothing of the run rewritten


def test_a_moved_dataset_of_the_same_content_resumes(template, tmp_path, capsys):
    root = tmp_path / "w"
    shutil.copytree(template, root)
    shutil.move(root / "data", root / "moved")
    code, err = train_cli({**_config(root), "dataset_name": str(root / "moved")}, root, capsys)
    assert code == 0, err[-2000:]
    assert [r["step"] for r in read_metrics(str(root / "out" / "metrics.jsonl")) if "loss" in r] == list(range(1, 7))


def test_save_and_logging_steps_given_on_resume_take_effect(template, tmp_path, capsys):
    root = tmp_path / "w"
    shutil.copytree(template, root)
    code, err = train_cli({**_config(root), "save_steps": 3, "logging_steps": 2}, root, capsys)
    assert code == 0, err[-2000:]  # before: checkpoints 4 and 6, a log at every step (the checkpoint's values)
    assert sorted(p.name for p in (root / "out").glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3",
                                                                           "checkpoint-6"]
    steps = [r["step"] for r in read_metrics(str(root / "out" / "metrics.jsonl")) if "loss" in r]
    assert steps == [1, 2, 4, 6], steps


def test_a_model_only_checkpoint_says_what_restarts_and_continues_the_schedule(tmp_path, capsys):
    full = _world(tmp_path / "full")
    code, err = train_cli(_config(full), full, capsys)
    assert code == 0, err[-2000:]
    expected = {r["step"]: r["learning_rate"] for r in read_metrics(str(full / "out" / "metrics.jsonl")) if "loss" in r}
    root = _world(tmp_path / "model_only")
    config = _interrupted(root, capsys, save_only_model=True)
    assert not (root / "out" / "checkpoint-2" / "optimizer.pt").exists()
    code, out, err = _train(config, root, capsys)
    assert code == 0, err[-2000:]
    assert "a model-only checkpoint, save_only_model: the optimizer's moments start fresh" in out, out[-2000:]
    got = {r["step"]: r["learning_rate"] for r in read_metrics(str(root / "out" / "metrics.jsonl")) if "loss" in r}
    assert got == pytest.approx(expected)  # before: warm-up again from step 3 (the schedule restarted)
