"""Generated tests: no config value dropped. Every key of a config given twice, a stray value after each kind of
option, every option whose switch is off, every path-valued key holding an unexpanded ``$VAR``, every integer field
written as a float, and ``--config`` in each spelling: each is taken as meant or refused in one line naming it,
before anything is loaded (before: the last duplicate won, the stray value and the switched-off option were
ignored, ``$VAR`` became a directory name, ``max_steps: 3.0`` crashed in checkpoint rotation)."""

from __future__ import annotations

import math
from dataclasses import fields
from pathlib import Path
from typing import get_type_hints

import pytest
import yaml
from tiny import cli_config, make_pairs, write_jsonl

from adadpo.cli import main
from adadpo.cli.guard import MIXTURE_PATH_KEYS, PATH_KEYS
from adadpo.cli.switches import SWITCHES
from adadpo.cli.train import _dataclass_types, parse
from adadpo.trl.ranges import RANGES, check_fields, numeric_kind

BASE = {"model_name_or_path": "no-such-model", "dataset_name": "no-such-data", "report_to": "none"}


def _one_line(tmp_path: Path, capsys, argv: list[str], config: dict | str | None = None) -> str:
    """Run ``adadpo train`` (the config written as YAML, or as the text given); the single error line."""
    if config is not None:
        path = tmp_path / "run.yaml"
        path.write_text(config if isinstance(config, str) else yaml.safe_dump(config))
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(["train", *argv])
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.startswith("adadpo train")]  # not progress bars
    assert info.value.code == 2 and len(lines) == 1 and "Traceback" not in err, err[-2000:]
    assert not (tmp_path / "out").exists()
    return lines[0]


# ------------------------------------------------------------------------------------------ duplicate keys

DUPLICATED = ["model_name_or_path", "beta", "learning_rate", "max_steps", "report_to", "balance", "env.FOO",
              "fsdp_config.version"]


@pytest.mark.parametrize("key", DUPLICATED)
def test_a_key_given_twice_is_one_line_naming_it_and_both_lines(tmp_path, capsys, key):
    lines = [f"{k}: {v}" for k, v in {**BASE, "output_dir": str(tmp_path / "out"), "beta": 0.1,
                                      "learning_rate": 1e-3, "max_steps": 3, "balance": True}.items()]
    parent, _, child = key.partition(".")
    if child:
        lines += [f"{parent}:", f"  {child}: 1", f"  {child}: 2"]
    else:
        lines.append(next(line for line in lines if line.startswith(f"{key}:")))
    line = _one_line(tmp_path, capsys, ["--config", str(tmp_path / "run.yaml")], "\n".join(lines) + "\n")
    assert f"key {(child or key)!r} is given twice" in line and str(tmp_path / "run.yaml") in line, line


# ------------------------------------------------------------------------------------------ stray values

STRAYS = [["--max_steps", "2", "3"], ["--beta", "0.1", "0.2"], ["--output_dir", "my", "runs"],
          ["--balance", "true", "false"], ["--loss", "dpo", "simpo"], ["--report_to", "none", "--max_steps", "2", "x"]]


@pytest.mark.parametrize("argv", STRAYS, ids=[" ".join(a) for a in STRAYS])
def test_a_stray_value_is_one_line_naming_it_and_its_option(tmp_path, capsys, argv):
    line = _one_line(tmp_path, capsys, ["--model_name_or_path", "m", "--dataset_name", "d", *argv])
    assert f"stray value {argv[-1]!r} after {argv[-3]} {argv[-2]}" in line, line


# ------------------------------------------------------------------------------------- switched-off options

#: Each switch in its off state (most are off by default).
OFF = {"save_strategy": "no", "logging_strategy": "no", "max_steps": 5, "activation_checkpointing": False}
#: A valid, non-default value of the members whose value cannot be derived from their type.
VALUES = {"lora_target_modules": ["q_proj"], "lora_target_parameters": ["mlp.weight"], "lora_modules_to_save":
          ["lm_head"], "lora_task_type": "SEQ_CLS", "bnb_4bit_quant_type": "fp4", "bnb_4bit_quant_storage": "uint8",
          "balance_level": "sequence", "balance_normalize": "geometric", "balance_placement": "gradient",
          "dataset_test_split": "valid", "hub_model_id": "me/model", "hub_strategy": "end", "hub_revision": "dev",
          "activation_checkpointing_kwargs": {"use_reentrant": False}, "liger_kernel_config": {"rope": True},
          "gradient_checkpointing_kwargs": {"use_reentrant": False}}
HINTS = {f.name: (f, get_type_hints(dc)[f.name]) for dc in _dataclass_types() for f in fields(dc)}


def _value(name: str):
    if name in VALUES:
        return VALUES[name]
    f, hint = HINTS[name]
    if hint is bool or "bool" in str(hint):
        return not f.default
    rng, kind = RANGES[name], numeric_kind(hint)
    value = rng.lo + 1 if rng.lo is not None and math.isfinite(rng.lo) and rng.lo + 1 != f.default else 0.5
    value = min(value, rng.hi - 0.25) if rng.hi is not None and rng.hi < math.inf else value
    return int(value) if kind is int else value


MEMBERS = [(rule.switch, member) for rule in SWITCHES for member in rule.members]


def test_every_member_has_a_value():
    assert all(_value(m) is not None for _, m in MEMBERS) and len(MEMBERS) >= 40


@pytest.mark.parametrize(("switch", "member"), MEMBERS, ids=[f"{s}-{m}" for s, m in MEMBERS])
def test_an_option_whose_switch_is_off_is_one_line_naming_both(tmp_path, capsys, switch, member):
    """Said in one line, and the run goes on as stock TRL would run the file (here to the missing dataset)."""
    config = {**BASE, "output_dir": str(tmp_path / "out"), **{k: v for k, v in OFF.items() if k == switch},
              member: _value(member)}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["train", "--config", str(tmp_path / "run.yaml")])
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    if last.startswith("adadpo train: error:") and member in last and switch in last:
        return  # refused by its own library (transformers: dataloader_prefetch_factor), as stock TRL is
    notes = [line for line in err.splitlines() if line.startswith(f"adadpo train: note: {member}=")]
    assert len(notes) == 1 and f"{switch}=" in notes[0] and "has no effect" in notes[0], err[-2000:]
    assert "dataset_name='no-such-data'" in last, err[-2000:]  # the run went on


def test_a_rule_that_refuses_says_so_in_one_line(tmp_path, capsys, monkeypatch):
    """``refuse=True`` (none of today's rules: kept for options whose silent drop would be unsafe) is an error."""
    from dataclasses import replace

    from adadpo.cli import switches

    monkeypatch.setattr(switches, "SWITCHES", tuple(replace(r, refuse=r.switch == "use_peft") for r in SWITCHES))
    config = {**BASE, "output_dir": str(tmp_path / "out"), "lora_r": 8}
    line = _one_line(tmp_path, capsys, ["--config", str(tmp_path / "run.yaml")], config)
    assert "lora_r=8 has no effect: use_peft=False turns it off" in line, line


def test_a_switch_turned_off_on_the_command_line_is_said_not_refused(tmp_path, capsys):
    """``--balance false`` over a file of balance_* keys (README's example) and ``--max_steps`` over a file's
    ``num_train_epochs`` are deliberate: a note each, and the run goes on (here to the missing model)."""
    config = {**BASE, "output_dir": str(tmp_path / "out"), "balance": True, "balance_clip": 5.0, "num_train_epochs": 2}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["train", "--config", str(tmp_path / "run.yaml"), "--balance", "false", "--max_steps", "4"])
    err = capsys.readouterr().err
    assert "note: balance_clip=5.0 has no effect: balance=False turns it off" in err, err
    assert "note: num_train_epochs=2" in err and "max_steps=4 turns it off" in err, err
    assert "dataset_name='no-such-data'" in err.strip().splitlines()[-1], err  # the run went on


# -------------------------------------------------------------------------------- unexpanded $VARIABLES

VARIABLE_CASES = [(key, value) for key in PATH_KEYS for value in ("$ADADPO_UNSET_X/run", "${HOME}/run")]


@pytest.mark.parametrize(("key", "value"), VARIABLE_CASES, ids=[f"{k}-{v}" for k, v in VARIABLE_CASES])
def test_a_path_with_an_unexpanded_variable_is_one_line(tmp_path, capsys, key, value):
    config = {**BASE, "output_dir": str(tmp_path / "out"), key: value}
    line = _one_line(tmp_path, capsys, ["--config", str(tmp_path / "run.yaml")], config)
    assert f"{key}={value!r} holds the variable {value.split('/')[0]}" in line, line
    assert not Path(value.split("/")[0]).exists()  # before: a directory literally named $VAR


@pytest.mark.parametrize("key", MIXTURE_PATH_KEYS)
def test_a_mixture_path_with_an_unexpanded_variable_is_one_line(tmp_path, capsys, key):
    entry = {"path": "json", key: "$ADADPO_UNSET_X/data"} if key != "path" else {"path": "$ADADPO_UNSET_X/data"}
    config = {k: v for k, v in BASE.items() if k != "dataset_name"} | {"output_dir": str(tmp_path / "out"),
                                                                      "datasets": [entry]}
    line = _one_line(tmp_path, capsys, ["--config", str(tmp_path / "run.yaml")], config)
    assert f"datasets[0].{key}=" in line and "$ADADPO_UNSET_X" in line, line


# ----------------------------------------------------------------------------- integers written as floats

INTEGERS = sorted(name for name, (_, hint) in HINTS.items() if numeric_kind(hint) is int)


def _integer(name: str) -> int:
    rng = RANGES[name]
    return int(max(rng.lo if rng.lo is not None and math.isfinite(rng.lo) else 0, 0) + 2)


def test_every_integer_field_is_covered():
    assert len(INTEGERS) >= 20 and {"max_steps", "seed", "max_length", "gradient_accumulation_steps"} <= set(INTEGERS)


@pytest.mark.parametrize("name", INTEGERS)
def test_an_integer_written_as_a_float_is_taken_as_the_integer(tmp_path, name):
    extra = {"dataloader_num_workers": 1} if name == "dataloader_prefetch_factor" else {}
    extra |= {"eval_strategy": "steps"} if name == "eval_accumulation_steps" else {}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({**BASE, **extra, name: float(_integer(name))}))
    parsed = parse(["--config", str(tmp_path / "run.yaml")])
    owner = next(i for i in parsed.instances if hasattr(i, name))
    check_fields(owner)  # AdaDPOConfig did it when built; the CLI does it for the others
    value = getattr(owner, name)
    items = value if isinstance(value, list) else [value]
    assert all(type(v) is int for v in items) and items[0] == _integer(name), value  # before: 3.0 crashed later


# -------------------------------------------------------------------------------------- --config spellings


def test_config_in_every_spelling(world, tmp_path, capsys):
    config = cli_config(world, tmp_path / "out", max_steps=1, save_steps=5)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    for argv in (["--config=" + str(path)], ["-c", str(path)]):  # before: "unknown option --config"
        parsed = parse(argv)
        assert parsed.instances[2].model_name_or_path == config["model_name_or_path"]
    line = _one_line(tmp_path, capsys, ["--config", str(path), "--config", str(path)])
    assert line.endswith(f"--config is given 2 times ({path}, {path}); give one file (merge them, or override its "
                         "keys with --key value)"), line
    line = _one_line(tmp_path, capsys, [str(path)])
    assert f"did you forget --config? (adadpo train --config {path})" in line, line
    line = _one_line(tmp_path, capsys, ["--max_steps", "3"])  # before: "model_name_or_path is required"
    assert "no --config FILE was given: did you forget --config?" in line, line


# ------------------------------------------------------------------------------------- runs that cannot learn


@pytest.mark.parametrize(("overrides", "said"), [
    ({"per_device_train_batch_size": 32, "dataloader_drop_last": True}, "make no batch of per_device_train_batch_size=32"),
    ({"gradient_accumulation_steps": 7}, "gradient_accumulation_steps=7 is more than an epoch's 6 batch(es)"),
])
def test_a_run_with_no_complete_step_is_one_line(world, tmp_path, capsys, overrides, said):
    line = _one_line(tmp_path, capsys, ["--config", str(tmp_path / "run.yaml")],
                     cli_config(world, tmp_path / "out", **overrides))
    assert said in line, line  # before: 0 steps, exit 0, the untrained model recorded as a finished run


@pytest.mark.parametrize("how", ["unknown words", "cut by max_length"])
def test_pairs_that_tokenise_identically_are_one_line(world, tmp_path, capsys, how):
    if how == "unknown words":  # different texts, each word outside the tokenizer's vocabulary: the same <unk> ids
        rows = [{"prompt": "the sky ?", "chosen": f" zebra{i} .", "rejected": f" giraffe{i} ."} for i in range(8)]
        overrides = {}
    else:  # the answers differ only after max_length
        rows = [{**r, "chosen": " yes yes" + r["chosen"], "rejected": " yes yes" + r["rejected"],
                 "prompt": "the sky is blue and the sea is green ?"} for r in make_pairs(8)]
        overrides = {"max_length": 11}
    write_jsonl(tmp_path / "data" / "train.jsonl", rows)
    config = cli_config(world, tmp_path / "out", dataset_name=str(tmp_path / "data"), **overrides)
    line = _one_line(tmp_path, capsys, ["--config", str(tmp_path / "run.yaml")], config)
    assert "tokenises to identical chosen and rejected ids" in line, line  # before: trained on zero gradient
