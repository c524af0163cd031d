"""The classes of user mistakes end in one line naming the field, file or row and what was expected:
paths (model, dataset, output_dir), broken model files, bad sweep configs, the Python API given wrong types."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from tiny import cli_config as _config
from tiny import write_yaml as _write

from adadpo.cli import main


def _last_error(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code in (1, 2)
    return capsys.readouterr().err.strip().splitlines()[-1]


def _train_error(tmp_path: Path, capsys, config: dict) -> str:
    return _last_error(capsys, ["train", "--config", str(_write(tmp_path / "run.yaml", config))])


def _broken_model(world: Path, tmp_path: Path, how: str) -> Path:
    import shutil

    from transformers import AutoModelForCausalLM

    broken = tmp_path / f"model-{how}"
    shutil.copytree(world / "model", broken)
    weights = broken / "model.safetensors"
    if how == "truncated":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif how == "nan":
        model = AutoModelForCausalLM.from_pretrained(broken)
        with torch.no_grad():
            model.model.layers[0].mlp.up_proj.weight.fill_(float("nan"))
        model.save_pretrained(broken)
    return broken


@pytest.mark.parametrize(("key", "value", "message"), [
    ("model_name_or_path", "./no/such/model", r"model_name_or_path='./no/such/model': no such directory"),
    ("model_name_or_path", "typo-org/typo-model", r"model_name_or_path='typo-org/typo-model' could not be loaded: "),
    ("tokenizer_name_or_path", "~/no_tokenizer_here", r"tokenizer_name_or_path='~/no_tokenizer_here': no such"),
    ("dataset_name", "typo-org/typo-data", r"could not load dataset_name='typo-org/typo-data' from the Hugging Face"),
])
def test_a_path_or_hub_id_that_does_not_exist(world, tmp_path, capsys, key, value, message):
    err = _train_error(tmp_path, capsys, _config(world, tmp_path / "runs" / "out", **{key: value}))
    assert err.startswith("adadpo train: error: ") and re.search(message, err), err
    assert not (tmp_path / "runs").exists()  # a run that failed before writing anything leaves no folder behind


def test_a_failed_run_keeps_a_folder_it_did_not_create_or_that_holds_files(world, tmp_path, capsys):
    (tmp_path / "mine").mkdir()
    _train_error(tmp_path, capsys, _config(world, tmp_path / "mine", model_name_or_path="./no/such/model"))
    assert (tmp_path / "mine").is_dir()
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("a user's file")
    _train_error(tmp_path, capsys, _config(world, tmp_path / "used" / "out", model_name_or_path="./no/such/model"))
    assert sorted(p.name for p in (tmp_path / "used").iterdir()) == ["notes.txt"]


def test_a_corrupt_weights_file_names_the_model(world, tmp_path, capsys):
    broken = _broken_model(world, tmp_path, "truncated")
    err = _train_error(tmp_path, capsys, _config(world, tmp_path / "out", model_name_or_path=str(broken)))
    assert err.startswith(f"adadpo train: error: model_name_or_path='{broken}': a weights file is corrupt ("), err


def test_nan_weights_blame_the_model_not_the_learning_rate(world, tmp_path, capsys):
    broken = _broken_model(world, tmp_path, "nan")
    with pytest.raises(SystemExit) as info:
        main(["train", "--config", str(_write(tmp_path / "run.yaml", _config(world, tmp_path / "out",
                                                                                 model_name_or_path=str(broken))))])
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert "adadpo train: error: non-finite loss at step 1" in err
    assert "weight tensors hold NaN or inf before any update: the model (or its weights file) is broken" in err
    assert "lower learning_rate" not in err  # before: "Try a lower learning_rate"


@pytest.mark.parametrize(("content", "message"), [
    ("methods: [DPO]\nbetas: [0.1]\n", r"sweep.yaml"),
    ("betas: [0.1\n", r"sweep.yaml"),
    ("- just\n- a list\n", r"sweep.yaml"),
    ("methods:\n  - {name: DPO, loss: dpoo}\nbetas: [0.1]\nlearning_rates: [1e-4]\nseeds: [0]\n", r"dpoo"),
])
def test_bad_sweep_configs(tmp_path, capsys, content, message):
    path = tmp_path / "sweep.yaml"
    path.write_text(content)
    err = _last_error(capsys, ["sweep", "--config", str(path), "--output_dir", str(tmp_path / "out")])
    assert err.startswith("adadpo sweep: error: ") and re.search(message, err), err


def test_the_python_api_given_wrong_types(world):
    from datasets import Dataset

    from adadpo.trl import AdaDPOConfig, AdaDPOTrainer

    cases = [
        (lambda: AdaDPOConfig("o", beta="0.1", report_to="none"), ValueError,
         r"beta='0.1': expected a number in \[1e-09, 1e\+09\], not str"),
        (lambda: AdaDPOConfig("o", balance="yes", report_to="none"), ValueError, r"balance='yes' must be a bool"),
        (lambda: AdaDPOConfig("o", loss=3, report_to="none"), ValueError,
         r"loss=3 is not one of its choices: dpo, rdpo"),
        (lambda: AdaDPOConfig("o", balance_clip="10", report_to="none"), ValueError,
         r"balance_clip='10': expected a number in \[1, inf\], not str"),
        (lambda: AdaDPOTrainer(model=42), TypeError, r"model must be a Hub id, a local directory or a transformers "
                                                     r"model, got int"),
        (lambda: AdaDPOTrainer(model=str(world / "model"), args={"loss": "simpo"}), TypeError,
         r"args must be an adadpo.trl.AdaDPOConfig .* got dict"),
        (lambda: AdaDPOTrainer(model=str(world / "model"), args=AdaDPOConfig("o", loss="simpo", report_to="none"),
                               train_dataset=[{"prompt": "a", "chosen": "b", "rejected": "c"}]),
         TypeError, r"train_dataset` must be a `Dataset` or `IterableDataset`, got `list`"),
        (lambda: AdaDPOTrainer(model=str(world / "model"), args=AdaDPOConfig("o", loss="simpo", report_to="none"),
                               train_dataset=Dataset.from_list([{"prompt": "a", "chosen": " b", "rejected": " b"}])),
         ValueError, r"every pair of the train dataset \(1\) has identical chosen and rejected"),
        (lambda: AdaDPOTrainer(model=str(world / "model"), args=AdaDPOConfig("o", loss="simpo", report_to="none"),
                               train_dataset=Dataset.from_list([{"prompt": "a", "good": " b", "rejected": " c"}])),
         ValueError, r"the train dataset has no 'chosen' column"),
    ]
    for call, kind, pattern in cases:
        with pytest.raises(kind, match=pattern):
            call()
