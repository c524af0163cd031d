"""The tail of user mistakes and machine faults that ended in a raw traceback: each is now one line naming the
cause and the way out (issue 22's list, one case each)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from tiny import cli_config as _config
from tiny import make_pairs, make_tokenizer

from adadpo.cli import main


def _last_line(tmp_path: Path, config: dict, capsys) -> tuple[int, str]:
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(["train", "--config", str(tmp_path / "run.yaml")])
    err = capsys.readouterr().err
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.strip().splitlines() if line.startswith("adadpo train")]
    assert len(lines) == 1, err[-3000:]
    return info.value.code, lines[0]


def _data(tmp_path: Path, name: str, text: str) -> str:
    (tmp_path / name).write_text(text)
    return str(tmp_path / name)


def test_dataset_files_that_cannot_be_read(world, tmp_path, capsys):
    good = "".join(json.dumps(r) + "\n" for r in make_pairs(8))
    cases = [
        (_data(tmp_path, "empty.jsonl", ""), "is an empty file; it needs one preference pair per row"),  # StopIteration
        (_data(tmp_path, "cut.jsonl", good + '{"prompt": "a", "chosen": " b", "rej'),  # DatasetGenerationError
         "cut.jsonl, line 9 (the last: a file cut short?) is not valid JSON"),
        (_data(tmp_path, "nulls.jsonl", "".join(json.dumps({**r, "prompt": None}) + "\n" for r in make_pairs(8))),
         "row 0, column 'prompt': is null (a missing value)"),  # "You need to specify either `text` or ..."
    ]
    script = tmp_path / "scripted"
    script.mkdir()
    (script / "scripted.py").write_text("import datasets\n")
    cases.append((str(script), "(datasets runs no loading script); save the data as jsonl or parquet"))  # RuntimeError
    for dataset, message in cases:
        code, line = _last_line(tmp_path, _config(world, tmp_path / "out", dataset_name=dataset), capsys)
        assert code == 2 and message in line, line


def test_models_callbacks_and_reports_that_cannot_be_used(world, tmp_path, capsys, monkeypatch):
    (tmp_path / "empty_model").mkdir()
    big = make_tokenizer()
    big.add_tokens([f"extra{i}" for i in range(8)])
    big.save_pretrained(tmp_path / "big_tokenizer")
    cases = [
        ({"model_name_or_path": str(tmp_path / "empty_model")}, "is an empty directory: not a saved model"),
        ({"callbacks": ["os:getcwd"]}, "callbacks entry 'os:getcwd' is a builtin_function_or_method, not a "
                                       "transformers.TrainerCallback"),  # AttributeError
        ({"tokenizer_name_or_path": str(tmp_path / "big_tokenizer")},  # IndexError in the embedding
         f"the tokenizer has {len(big)} tokens but the model's embeddings only {len(big) - 8} rows"),
        ({"gradient_accumulation_steps": 0}, "gradient_accumulation_steps=0 is out of range: expected an integer >= "
                                             "1"),  # ZeroDivisionError
    ]
    for overrides, message in cases:
        code, line = _last_line(tmp_path, _config(world, tmp_path / "out", **overrides), capsys)
        assert code == 2 and message in line, line
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else
                        real_find_spec(name, *a))
    code, line = _last_line(tmp_path, _config(world, tmp_path / "out", report_to=["tensorboard"]), capsys)
    assert line.endswith("install the 'tensorboard' extra: pip install \"adadpo[tensorboard]\""), line


def test_faults_while_preparing_and_saving(world, tmp_path, capsys, monkeypatch):
    import adadpo.cli.train as train_module
    from adadpo.trl import checkpoints, trainer

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "check_preference_dataset", interrupted)  # Ctrl-C during tokenization
    code, line = _last_line(tmp_path, _config(world, tmp_path / "a"), capsys)
    assert code == 130 and line == ("adadpo train: interrupted before anything was saved; run the same command again "
                                    "to start over"), line  # before: "adadpo train: " and nothing after
    monkeypatch.undo()

    def timed_out(*args, **kwargs):
        raise RuntimeError("[../third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:81] Timed out waiting 20000ms "
                           "for recv operation to complete")

    monkeypatch.setattr(train_module, "_trainer", timed_out)  # a process frozen during tokenization
    code, line = _last_line(tmp_path, _config(world, tmp_path / "b", ddp_timeout=20), capsys)
    assert code == 1 and "another process stopped answering for ddp_timeout=20 s while the data and models were " \
                         "prepared (tokenization, reference log-probs)" in line, line
    monkeypatch.undo()

    import torch

    def full_disk(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", full_disk)  # the disk fills while a checkpoint is written
    monkeypatch.setattr(checkpoints.shutil, "disk_usage", lambda path: type("U", (), {"free": 0})())
    code, line = _last_line(tmp_path, _config(world, tmp_path / "c"), capsys)
    assert code == 1 and line == (f"adadpo train: error: No space left on device: {tmp_path / 'c' / '.staging'}. "
                                  "Free some space, then run the same command again: training resumes from the last "
                                  "complete checkpoint"), line
