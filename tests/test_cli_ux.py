"""What a user sees: help that starts with how to call, both option spellings, a summary that says something,
and no warnings from the libraries on a plain run."""

from __future__ import annotations

import warnings

import pytest
from tiny import cli_config as _config
from tiny import write_yaml as _write

from adadpo import LOSSES
from adadpo.cli import build_parser, main


def test_train_help_starts_with_the_config_file(capsys):
    assert main(["train", "--help"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "usage: adadpo train --config FILE [--key value ...]"  # before: 150 lines of usage, no --config
    assert lines[2].startswith("--config FILE: a YAML mapping")
    text = "\n".join(lines)
    # the loss parameters' help comes from their declarations in adadpo.core.registry
    assert "SimPO target margin (default 0.5, TRL's simpo_gamma). Only for simpo; unset: the default. (default: None)" \
        in " ".join(text.split())
    assert f"--loss ({'|'.join(LOSSES)}), --loss_type (TRL's: ipo|sigmoid|hinge" in " ".join(text.split())
    # before: --no_auto_resume had --auto_resume's help, "Resume from the last checkpoint ... (default: False)"
    assert "--no_auto_resume, --no-auto-resume Set auto_resume to false (it is true by default; see --auto_resume)." \
        in " ".join(text.split())


@pytest.mark.parametrize("command", ["diagnose", "demo", "sweep"])
def test_every_command_takes_both_spellings_of_its_options(command):
    parser = build_parser()
    base = {"diagnose": ["--model_name_or_path", "m"], "demo": [], "sweep": ["--config", "c.yaml"]}[command]
    for spelling in ("--output-dir", "--output_dir"):
        assert parser.parse_args([command, *base, spelling, "here"]).output_dir == "here"
    if command != "diagnose":
        assert parser.parse_args([command, *base, "--cache-dir", "c"]).cache_dir == "c"


def test_explain_options_all_have_help():
    parser = build_parser()
    explain = parser._subparsers._group_actions[0].choices["explain"]
    assert all(a.help for a in explain._actions), [a.dest for a in explain._actions if not a.help]


def test_a_run_without_a_log_says_so_and_warns_of_nothing(world, tmp_path, capsys):
    config = _config(world, tmp_path / "out", max_steps=2, save_steps=1, logging_steps=5)
    config.pop("gradient_checkpointing")  # TRL's default (True), as a user's config leaves it
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["train", "--config", str(_write(tmp_path / "run.yaml", config))]) == 0
    out = capsys.readouterr().out
    assert "adadpo: trained 2 steps (no training log: logging_steps=5)" in out  # before: "last log: " and nothing
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "pin_memory" in m or "checkpointing" in m], messages  # before: 1 + 3 a pass
