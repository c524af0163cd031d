"""``adadpo train`` end to end on a tiny model and dataset saved to a temp dir (offline)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from tiny import cli_config as _config
from tiny import make_pairs, write_jsonl
from tiny import write_yaml as _write
from transformers import AutoModelForCausalLM

import adadpo
from adadpo.cli import main
from adadpo.core.registry import example_params
from adadpo.trl.callbacks import read_metrics

ROOT = Path(__file__).resolve().parents[1]


def _train(tmp_path: Path, config: dict, *extra: str) -> int:
    return main(["train", "--config", str(_write(tmp_path / "run.yaml", config)), *extra])


@pytest.mark.parametrize("loss", list(adadpo.LOSSES))
@pytest.mark.parametrize("balance", [False, True])
def test_train_each_loss_plain_and_balanced(world, tmp_path, loss, balance):
    out = tmp_path / "out"
    params = example_params(loss)  # rdpo: its required length_alpha
    assert _train(tmp_path, _config(world, out, loss=loss, balance=balance, **params), "--beta", "0.2") == 0

    rows = read_metrics(str(out / "metrics.jsonl"))
    steps = [r for r in rows if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3]
    assert all(isinstance(r["loss"], float) for r in steps)
    assert all(("balance/coef_chosen" in r) == balance and "balance/log_rho" in r for r in steps)
    assert (out / "metrics.csv").read_text().splitlines()[0].startswith("step,epoch,loss")
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]
    assert not (out / ".staging").exists()
    card = (out / "README.md").read_text()
    assert f"| loss | {loss} |" in card and f"| balance (AdaDPO) | {balance} |" in card and "beta: 0.2" in card
    model = AutoModelForCausalLM.from_pretrained(out)
    start = AutoModelForCausalLM.from_pretrained(world / "model")
    moved = sum((p - q).abs().sum().item() for p, q in zip(model.parameters(), start.parameters()))
    assert moved > 0


@pytest.mark.parametrize("options", [
    dict(loss_type=["sigmoid", "sft"], loss_weights=[1.0, 0.5], ld_alpha=0.5),
    dict(loss_type="nca_pair", balance=True),  # placement unset: gradient, the one that balances it (and said)
    dict(loss_type="robust", label_smoothing=0.1, use_weighting=True, balance=True),
], ids=["mpo_ld", "nca_balanced", "robust_wpo_balanced"])
def test_train_with_trls_loss_options_from_yaml(world, tmp_path, options):
    """TRL's loss keys in the YAML file train end to end; the card names the loss."""
    out = tmp_path / "out"
    assert _train(tmp_path, _config(world, out, **options)) == 0
    steps = [r for r in read_metrics(str(out / "metrics.jsonl")) if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3] and all(math.isfinite(r["loss"]) for r in steps)
    assert all(("balance/coef_chosen" in r) == options.get("balance", False) for r in steps)
    types = options["loss_type"]
    card = (out / "README.md").read_text()
    assert f"| loss | {types if isinstance(types, str) else '+'.join(types)} |" in card
    if types == "nca_pair":  # before: an error unless balance_placement: gradient was set
        assert "| balance.placement | gradient (chosen for loss nca_pair: balance_placement unset) |" in card


def test_train_chat_dataset_with_evaluation(world, tmp_path):
    out = tmp_path / "out"
    config = _config(world, out, dataset_name=str(world / "chat"), loss="dpo", balance=True,
                     eval_strategy="steps", eval_steps=2, per_device_eval_batch_size=4)
    assert _train(tmp_path, config) == 0
    rows = read_metrics(str(out / "metrics.jsonl"))
    evals = [r for r in rows if "eval_loss" in r]
    assert evals and "eval_rewards/margins" in evals[0] and "eval_balance/log_rho" in evals[0]


def test_train_lora_writes_a_loadable_adapter(world, tmp_path):
    from peft import AutoPeftModelForCausalLM

    out = tmp_path / "out"
    config = _config(world, out, loss="dpo", balance=True, use_peft=True, lora_r=4, lora_alpha=8,
                     lora_target_modules=["q_proj", "v_proj"], learning_rate=5e-2)
    assert _train(tmp_path, config) == 0
    assert (out / "adapter_config.json").exists()
    model = AutoPeftModelForCausalLM.from_pretrained(out)
    assert any("lora_A" in name for name, _ in model.named_parameters())
    import peft
    from huggingface_hub import ModelCard

    card = ModelCard.load(out / "README.md")  # before: TRL's card replaced what PEFT writes (and stock keeps)
    assert card.data.base_model == str(world / "model") and card.data.pipeline_tag == "text-generation"
    assert {f"base_model:adapter:{world / 'model'}", "lora", "adadpo"} <= set(card.data.tags)
    assert f"- PEFT {peft.__version__}" in card.text and "## adadpo" in card.text
    assert not card.data.get("datasets") and f"`{world / 'data'}` (local data)" in card.text  # no local path there


def test_precomputed_reference_from_the_command_line(world, tmp_path):
    out = tmp_path / "out"
    assert _train(tmp_path, _config(world, out, loss="rdpo", length_alpha=0.01, precompute_ref_log_probs=True)) == 0
    assert len([r for r in read_metrics(str(out / "metrics.jsonl")) if "loss" in r]) == 3


def test_a_registry_parameter_is_a_command_line_option(world, tmp_path):
    """rpo_alpha exists in AdaDPOConfig and on the command line by its Param alone (no rpo code in cli/ or trl/).
    At step 1 the policy is its reference, so DPO's term is log 2 and the loss is log 2 + rpo_alpha * NLL_w."""
    out = tmp_path / "out"
    assert _train(tmp_path, _config(world, out, max_steps=1), "--loss", "rpo", "--rpo_alpha", "0.5") == 0
    settings = json.loads((out / "adadpo_run.json").read_text())["settings"]
    assert (settings["loss"], settings["rpo_alpha"]) == ("rpo", 0.5)
    (step,) = [r for r in read_metrics(str(out / "metrics.jsonl")) if "loss" in r]
    assert step["loss"] == pytest.approx(math.log(2) + 0.5 * step["nll_loss"], abs=2e-4)  # TRL rounds to 4 places


def test_command_line_overrides_the_config_file(world, tmp_path):
    from adadpo.cli.train import parse

    path = _write(tmp_path / "run.yaml", _config(world, tmp_path / "out", loss="simpo", gamma=0.3, balance_clip=float("inf")))
    parsed = parse(["--config", str(path), "--gamma", "0.7", "--balance", "true"])
    script, config, model_args, _ = parsed.instances
    assert (config.loss, config.gamma, config.balance, config.balance_clip) == ("simpo", 0.7, True, float("inf"))
    assert script.dataset_name == str(world / "data") and model_args.model_name_or_path == str(world / "model")
    assert {"gamma", "balance", "loss", "output_dir"} <= parsed.given and parsed.launch_args == []


# --------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("overrides", "argv", "message"),
    [
        ({"lerning_rate": 1e-3}, [], "unknown key 'lerning_rate' in .*run.yaml \\(did you mean learning_rate"),
        ({"learning_rate": "fast"}, [], "argument --learning_rate.*: invalid float value: 'fast'"),
        ({"loss": "dpoo"}, [], "loss='dpoo' is not one of its choices: dpo, rdpo, ipo, simpo, cpo, orpo"),
        ({"max_steps": [1, 2]}, [], "max_steps=\\[1, 2\\] in .*run.yaml: expected int, not a list"),
        ({"beta": {"chosen": 0.1}}, [], "beta=\\{'chosen': 0.1\\} in .*run.yaml: expected float, not a mapping"),
        ({}, ["--bta", "0.1"], "unknown option --bta \\(did you mean beta"),
        ({}, ["--beta", "x"], "argument --beta: invalid float value: 'x'"),
        ({"dataset_name": "./nowhere.jsonl"}, [], "dataset_name='./nowhere.jsonl' does not exist"),
        ({"dataset_train_split": "training"}, [], "dataset_train_split='training' is not a split of the dataset; it has \\['test', 'train'\\]"),
        ({"loss": "rdpo"}, [], "loss='rdpo' needs length_alpha"),
        ({"loss": "simpo", "balance_use_reference": True}, [], "balance_use_reference=True .* needs a reference model"),
        ({}, ["--logps_backend", "fused"], "--logps_backend.*invalid choice: 'fused' \\(choose from 'chunked', 'trl_fused', 'full'\\)"),
        ({"logps_chunk_size": 0}, [], "logps_chunk_size=0 is out of range: expected an integer >= 1"),
    ],
)
def test_train_errors_name_the_key(world, tmp_path, capsys, overrides, argv, message):
    config = _config(world, tmp_path / "out", **overrides)
    with pytest.raises(SystemExit) as exit_info:
        _train(tmp_path, config, *argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("adadpo train: error: "), err  # the last line (after progress bars)
    import re

    assert re.search(message, err), err


def test_train_missing_column_and_empty_response(world, tmp_path, capsys):
    rows = make_pairs(8)
    for r in rows:
        r["good"] = r.pop("chosen")
    write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(SystemExit):
        _train(tmp_path, _config(world, tmp_path / "out", dataset_name=str(tmp_path / "bad.jsonl")))
    assert "the train dataset has no 'chosen' column" in capsys.readouterr().err
    rows = make_pairs(8)
    rows[5]["rejected"] = ""
    write_jsonl(tmp_path / "empty.jsonl", rows)
    with pytest.raises(SystemExit):
        _train(tmp_path, _config(world, tmp_path / "out", dataset_name=str(tmp_path / "empty.jsonl")))
    assert "1 empty 'rejected' response(s) (rows 5)" in capsys.readouterr().err


def test_help_lists_adadpo_and_trainer_keys(capsys):
    assert main(["train", "--help"]) == 0
    text = capsys.readouterr().out
    for key in ("--loss", "--balance_clip", "--balance_use_reference", "--model_name_or_path", "--dataset_name",
                "--lora_r", "--learning_rate", "--deepspeed"):
        assert key in text


# ------------------------------------------------------------------------------ checkpoints and resume


def test_checkpoint_is_staged_so_a_crash_mid_save_leaves_none(world, tmp_path, monkeypatch, capsys):
    from transformers import Trainer

    def crash(self, output_dir):
        raise KeyboardInterrupt("killed while saving")

    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", crash)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as info:  # Ctrl-C: one line saying how to resume
        _train(tmp_path, _config(world, out, loss="simpo"))
    assert info.value.code == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "adadpo train: interrupted at step 2; no checkpoint was saved yet (one is saved every save_steps=2 steps). "
        "Run the same command again to start over")  # before: "(it will start over). ... again to resume"
    assert not list(out.glob("checkpoint-*"))  # the half-written save stayed in the staging directory
    assert (out / ".staging" / "checkpoint-2" / "model.safetensors").exists()
    monkeypatch.undo()
    assert _train(tmp_path, _config(world, out, loss="simpo")) == 0
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]
    assert not (out / ".staging").exists()


KILLER = """
import os, signal
from transformers import TrainerCallback

class KillAtStep(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == int(os.environ.get("KILL_AT_STEP", "0")):
            os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.slow
def test_resume_after_sigkill_continues_with_the_same_losses(world, tmp_path, monkeypatch):
    (tmp_path / "killer.py").write_text(KILLER)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}

    def config(out: Path) -> Path:
        return _write(tmp_path / f"{out.name}.yaml", _config(world, out, loss="dpo", balance=True, max_steps=10,
                      save_steps=4, per_device_train_batch_size=2, callbacks=["killer:KillAtStep"]))

    def run(out: Path, kill_at: int) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "adadpo", "train", "--config", str(config(out))],
                              env={**env, "KILL_AT_STEP": str(kill_at)}, capture_output=True, text=True, timeout=300)

    # the uninterrupted run, the losses' reference, is not about the process boundary: in process (one interpreter
    # start fewer), with the same callback and one thread as the subprocesses
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("KILL_AT_STEP", "0")
    assert main(["train", "--config", str(config(tmp_path / "straight"))]) == 0
    killed = run(tmp_path / "killed", kill_at=6)
    assert killed.returncode == -signal.SIGKILL
    assert sorted(p.name for p in (tmp_path / "killed").glob("checkpoint-*")) == ["checkpoint-4"]
    assert max(r["step"] for r in read_metrics(str(tmp_path / "killed" / "metrics.jsonl"))) == 5
    resumed = run(tmp_path / "killed", kill_at=0)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout and "checkpoint-4" in resumed.stdout

    def losses(out: Path) -> list[tuple[int, float]]:
        return [(r["step"], r["loss"]) for r in read_metrics(str(out / "metrics.jsonl")) if "loss" in r]

    got, expected = losses(tmp_path / "killed"), losses(tmp_path / "straight")
    assert [s for s, _ in got] == list(range(1, 11))
    assert [v for _, v in got] == pytest.approx([v for _, v in expected], rel=1e-6, abs=1e-7)
    final = json.loads((tmp_path / "killed" / "checkpoint-10" / "trainer_state.json").read_text())
    assert final["global_step"] == 10


def test_example_config_is_valid():
    from adadpo.cli.train import parse

    from adadpo.cli.switches import check_switches

    parsed = parse(["--config", str(ROOT / "examples" / "train.yaml")])
    script, config, model_args, _ = parsed.instances
    assert (config.loss, config.balance, config.balance_clip) == ("dpo", True, 10.0)
    assert (config.logps_backend, config.logps_chunk_size) == ("chunked", None)
    assert script.dataset_name == "trl-lib/ultrafeedback_binarized"
    assert check_switches(parsed.instances, parsed.given) == []  # before: lora_* under use_peft: false, ignored
    lora = parse(["--config", str(ROOT / "examples" / "train.yaml"), "--use_peft", "true", "--lora_target_modules",
                  "q_proj", "v_proj"])
    assert check_switches(lora.instances, lora.given) == [] and lora.instances[2].lora_target_modules == ["q_proj",
                                                                                                          "v_proj"]


# ---------------------------------------------------------------------------------------- TRL's parser

#: TRL's documented ``trl dpo --config dpo_config.yaml`` files (docs/source/clis.md of TRL 1.x).
TRL_DPO_CONFIGS = {
    "basic": {"model_name_or_path": "Qwen/Qwen2.5-0.5B", "dataset_name": "anthropic/hh-rlhf"},
    "num_processes": {"model_name_or_path": "Qwen/Qwen2.5-0.5B", "dataset_name": "anthropic/hh-rlhf", "num_processes": 4},
    "accelerate_config": {"model_name_or_path": "Qwen/Qwen2.5-0.5B", "dataset_name": "anthropic/hh-rlhf",
                          "accelerate_config": "zero2"},
}
#: One field of each kind of type of TrainingArguments / DPOConfig / ModelConfig, and TRL's ``env:`` section.
EVERY_FIELD_TYPE = {
    "report_to": [],  # None | str | list[str], as an empty list
    "label_names": ["chosen_input_ids"],  # list[str] | None
    "fsdp_config": {"min_num_params": 0},  # dict | str | None
    "model_init_kwargs": {"dtype": "float32"},  # dict | None
    "gradient_checkpointing_kwargs": {"use_reentrant": False},
    "max_length": None,  # int | None
    "lr_scheduler_type": "cosine",  # enums: SchedulerType, OptimizerNames, IntervalStrategy
    "optim": "adamw_torch",
    "save_strategy": "no",
    "learning_rate": "5e-4",  # a float that YAML reads as a string
    "warmup_steps": 0.1,  # int | float
    "bf16": False,
    "seed": 7,
    "lora_target_modules": ["q_proj", "v_proj"],  # ModelConfig's list
    "env": {"ADADPO_TEST_FROM_YAML": "1"},
}


def _trl_dpo_parse(path: Path):
    """What ``trl dpo --config path`` parses: its dataclasses and the keys it hands to ``accelerate launch``."""
    from trl.scripts.dpo import make_parser

    *instances, from_file, _ = make_parser().parse_args_and_config(
        ["--config", str(path)], return_remaining_strings=True, separate_remaining_strings=True)
    return instances, from_file


@pytest.mark.parametrize("name", [*TRL_DPO_CONFIGS, "every field type"])
def test_configs_parse_exactly_as_trl_dpo_parses_them(tmp_path, monkeypatch, name):
    from dataclasses import fields

    from adadpo.cli.train import parse
    from trl.cli.accelerate_config import resolve_accelerate_config_argument

    monkeypatch.delenv("ADADPO_TEST_FROM_YAML", raising=False)
    # bf16: false because TRL's default (bf16 on) is refused by transformers on this CPU-only machine.
    config = {**TRL_DPO_CONFIGS.get(name, EVERY_FIELD_TYPE), **TRL_DPO_CONFIGS["basic"], "bf16": False}
    path = _write(tmp_path / "dpo_config.yaml", config)
    theirs, their_launch_keys = _trl_dpo_parse(path)
    parsed = parse(["--config", str(path)])
    for trl_instance, ours in zip(theirs, parsed.instances, strict=True):
        for f in fields(trl_instance):
            assert getattr(ours, f.name) == getattr(trl_instance, f.name), f.name
    assert parsed.launch_args == resolve_accelerate_config_argument(their_launch_keys)
    assert ("--num_processes" in parsed.launch_args) == (name == "num_processes")
    assert os.environ.get("ADADPO_TEST_FROM_YAML") == ("1" if name == "every field type" else None)


def test_a_trl_config_trains_with_our_fields_added(world, tmp_path, monkeypatch):
    """TRL's keys of every type as ``trl dpo`` takes them, no output_dir (TRL's default), plus loss and balance."""
    monkeypatch.chdir(tmp_path)
    # without use_peft / with checkpointing off (for speed) these would act on nothing: refused (tests/test_value_classes)
    every = {k: v for k, v in EVERY_FIELD_TYPE.items() if k not in ("lora_target_modules", "gradient_checkpointing_kwargs")}
    config = {**every, "model_name_or_path": str(world / "model"), "dataset_name": str(world / "data"),
              "max_steps": 2, "per_device_train_batch_size": 4, "logging_steps": 1, "disable_tqdm": True,
              "gradient_checkpointing": False, "loss": "simpo", "balance": True, "balance_clip": float("inf")}
    assert main(["train", "--config", str(_write(tmp_path / "dpo_config.yaml", config))]) == 0
    rows = [r for r in read_metrics(str(tmp_path / "trainer_output" / "metrics.jsonl")) if "loss" in r]
    assert [r["step"] for r in rows] == [1, 2] and all("balance/coef_chosen" in r for r in rows)
