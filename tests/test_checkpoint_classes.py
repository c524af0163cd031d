"""Generated tests: every file of a checkpoint, truncated, deleted, emptied, overwritten with random bytes and
changed by one bit in turn, then the run resumed with the same command. Each case either resumes correctly (the
run finishes its steps) or stops with one line that names the checkpoint and the file; never a traceback, never a
resume that silently restarts the optimizer or the model, or trains on from changed bytes."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest
import yaml
from tiny import cli_config as _config
from tiny import make_pairs, save_tiny_model, train_cli, write_jsonl
from transformers import TrainerCallback

from adadpo.cli import main
from adadpo.trl.callbacks import read_metrics

#: What a resume cannot do without (deleted: an error naming it); every other file may go (tokenizer, config, ...).
REQUIRED = {"trainer_state.json", "optimizer.pt", "scheduler.pt", "model.safetensors"}


class StopAtThree(TrainerCallback):
    """Ctrl-C at the end of step 3 (checkpoint-2 is on disk)."""

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 3:
            raise KeyboardInterrupt


def _interrupted(root: Path) -> tuple[Path, dict]:
    save_tiny_model(root / "model")
    write_jsonl(root / "data" / "train.jsonl", make_pairs(24, seed=0))
    config = _config(root, root / "out", max_steps=4, callbacks=["test_checkpoint_classes:StopAtThree"])
    (root / "run.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(SystemExit) as info:
        main(["train", "--config", str(root / "run.yaml")])
    assert info.value.code == 130 and (root / "out" / "checkpoint-2" / "optimizer.pt").exists()
    return root / "out", {k: v for k, v in config.items() if k != "callbacks"}


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory) -> tuple[Path, dict]:
    return _interrupted(tmp_path_factory.mktemp("interrupted"))


#: The files of this run's checkpoints; the first test checks them against a real checkpoint, so a file added by
#: a new transformers, TRL or adadpo is covered (or fails that test) rather than skipped.
FILES = ["chat_template.jinja", "checksums.json", "config.json", "generation_config.json", "model.safetensors",
         "optimizer.pt", "rng_state.pth", "scheduler.pt", "tokenizer.json", "tokenizer_config.json",
         "trainer_state.json", "training_args.bin"]


def test_the_listed_files_are_every_file_of_a_checkpoint(interrupted):
    out, _ = interrupted
    assert sorted(p.name for p in (out / "checkpoint-2").iterdir()) == FILES


CASES = [(name, how) for name in FILES for how in ("truncated", "deleted", "zero bytes", "random bytes", "one byte")]


@pytest.mark.parametrize(("name", "how"), CASES, ids=[f"{n}-{h}" for n, h in CASES])
def test_a_damaged_checkpoint_file_resumes_or_is_one_line(interrupted, tmp_path, capsys, name, how):
    template, config = interrupted
    out = tmp_path / "out"
    shutil.copytree(template, out)
    path = out / "checkpoint-2" / name
    data = path.read_bytes()
    if how == "deleted":
        path.unlink()
    elif how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "zero bytes":
        path.write_bytes(b"")
    elif how == "random bytes":  # the same size, other bytes (a copy gone wrong)
        path.write_bytes(random.Random(name).randbytes(len(data)))
    else:  # one bit of one byte in the middle (a bad sector): the file's structure intact
        middle = len(data) // 2
        path.write_bytes(data[:middle] + bytes([data[middle] ^ 1]) + data[middle + 1:])
    code, err = train_cli({**config, "output_dir": str(out)}, tmp_path, capsys)
    expected_error = name in REQUIRED if how == "deleted" else True  # every file's bytes are in checksums.json
    if code == 0:  # a correct resume: the run ends at its last step, from checkpoint-2
        assert not expected_error, f"{name} {how}: resumed"
        assert [r["step"] for r in read_metrics(str(out / "metrics.jsonl")) if "loss" in r] == [1, 2, 3, 4]
    else:  # before: raw tracebacks (SafetensorError, "Invalid argument", a JSON parse error naming no file)
        lines = [line for line in err.strip().splitlines() if line.startswith("adadpo train: ")]
        assert expected_error and len(lines) == 1 and "Traceback" not in err, err[-2000:]
        assert f"checkpoint {out / 'checkpoint-2'}" in lines[0] and name.split(".")[0] in lines[0], lines[0]


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_in_a_checkpoint_are_one_line_not_blamed_on_the_learning_rate(interrupted, tmp_path,
                                                                                          capsys, value):
    from safetensors.torch import load_file, save_file

    template, config = interrupted
    out = tmp_path / "out"
    shutil.copytree(template, out)
    path = out / "checkpoint-2" / "model.safetensors"
    tensors = load_file(path)
    name = sorted(tensors)[1]
    tensors[name].view(-1)[:3] = value  # a valid file, bytes changed inside the data
    save_file(tensors, path, metadata={"format": "pt"})
    code, err = train_cli({**config, "output_dir": str(out)}, tmp_path, capsys)
    lines = [line for line in err.strip().splitlines() if line.startswith("adadpo train: ")]
    assert code == 2 and len(lines) == 1, err[-2000:]  # before: "training diverged: try a lower learning_rate"
    assert f"has non-finite weights in model.safetensors ({name}: 3 of" in lines[0], lines[0]
