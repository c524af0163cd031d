"""One spelling of every option across the sub-commands: the name `adadpo train` (TRL's parser) gives a setting
wherever it has one, underscores everywhere, and the names of earlier releases accepted with a note."""

from __future__ import annotations

import argparse

import pytest
from trl import TrlParser

from adadpo.cli import COMMANDS, build_parser, main
from adadpo.cli.options import rename_old_options
from adadpo.cli.train import _dataclass_types

PARSED = [name for name, module in COMMANDS.items() if not getattr(module, "RAW_ARGS", False)]
#: The options that are no setting of a training run: what only that command does.
OWN = {
    "diagnose": {"config", "ref_model", "num_pairs"},
    "demo": {"world", "seeds", "workers", "cache_dir", "no_progress"},
    "sweep": {"config", "workers", "cache_dir", "title", "no_progress", "report_only"},
    "explain": set(),
    "lc": {"json", "difficulty", "pool_length"},
}
#: Spellings of training settings that the commands once used or a user might guess: none may be an option.
SYNONYMS = ("model", "dataset", "data", "split", "kappa", "clip", "level", "use_reference", "normalize", "placement",
            "lr", "batch_size", "max_len", "out", "output", "alpha_chosen", "ref")


def _train_keys() -> set[str]:
    return {a.dest for a in TrlParser(_dataclass_types())._actions}


def _subparser(command: str) -> argparse.ArgumentParser:
    return build_parser()._subparsers._group_actions[0].choices[command]


def _options(command: str) -> dict[str, argparse.Action]:
    """The options a command's help lists, by name without ``--`` (its hidden ``--no_X`` forms as ``X``)."""
    return {o[2:]: a for a in _subparser(command)._actions if a.help != argparse.SUPPRESS
            for o in a.option_strings if o.startswith("--") and o != "--help"}


def test_every_command_is_covered():
    assert sorted(PARSED) == sorted(OWN) and "train" in COMMANDS


@pytest.mark.parametrize("command", PARSED)
def test_every_option_is_spelt_as_train_spells_it(command):
    train = _train_keys()
    options = _options(command)
    assert options, command
    for name in options:
        assert "-" not in name, f"adadpo {command} --{name}: underscores, as in adadpo train"
        assert name in train or name in OWN[command], (
            f"adadpo {command} --{name} is no key of adadpo train; name it as train does, or list it in OWN")
    for name in OWN[command]:
        assert name in options and name not in train, f"{command} --{name}"
    assert not set(SYNONYMS) & set(options), command


def test_the_shared_settings_have_one_name_everywhere():
    """Each setting two commands share (the model, the data, the loss and its balance, the output directory, the
    learning rate) has the same name in each, and it is train's."""
    train = _train_keys()
    shared = {"model_name_or_path": ("diagnose", "demo"), "dataset_name": ("diagnose",), "max_length": ("diagnose",),
              "output_dir": ("diagnose", "demo", "sweep"), "learning_rate": ("demo",), "beta": ("demo", "explain"),
              "loss": ("diagnose", "explain"), "balance_clip": ("diagnose", "explain"),
              "balance_level": ("diagnose", "explain"), "balance_use_reference": ("diagnose", "explain")}
    for name, commands in shared.items():
        assert name in train, name
        for command in commands:
            assert name in _options(command), f"adadpo {command} lacks --{name}"


@pytest.mark.parametrize("command", PARSED)
def test_dashes_and_old_names_still_work_and_stay_out_of_the_help(command, capsys):
    module = COMMANDS[command]
    renamed = getattr(module, "RENAMED", {})
    parser = build_parser()
    base = {"sweep": ["--config", "c.yaml"]}.get(command, [])
    help_text = _subparser(command).format_help()
    for old, new in renamed.items():
        action = _subparser(command)._option_string_actions[new]
        if action.choices:
            value = [str(list(action.choices)[0])]
        elif action.nargs == "?" or action.nargs == 0:
            value = []
        else:
            value = ["2"] if action.type in (int, float) else ["x"]
        expected = parser.parse_args([command, *base, new, *value])
        for spelling in (old, old.replace("_", "-")):
            argv = rename_old_options([*base, spelling, *value], renamed, f"adadpo {command}")
            assert parser.parse_args([command, *argv]) == expected, spelling
            assert f"adadpo {command}: note: {spelling} is now {new}" in capsys.readouterr().err
        assert f"{old} " not in help_text and f"{old}," not in help_text, f"{command} help lists {old}"
    for name in _options(command):
        assert f"--{name.replace('_', '-')}" in _subparser(command)._option_string_actions  # dashes: silently


def test_diagnose_takes_trains_names_and_says_what_is_missing(capsys):
    args = build_parser().parse_args(["diagnose", "--model_name_or_path", "M", "--dataset_name", "D"])
    assert (args.model_name_or_path, args.dataset_name) == ("M", "D")
    with pytest.raises(SystemExit) as exc:  # before: "the following arguments are required: --model, --dataset"
        main(["diagnose", "--dataset_name", "D"])
    assert exc.value.code == 2
    assert "model_name_or_path is required" in capsys.readouterr().err


def test_an_old_name_in_a_real_run_is_noted_once(capsys):
    assert main(["explain", "--clip", "5", "--level", "sequence"]) == 0
    out, err = capsys.readouterr()
    assert "level=sequence" in out and "clip kappa=5" in out
    assert err.splitlines() == ["adadpo explain: note: --clip is now --balance_clip (the old name works for this "
                                "release)", "adadpo explain: note: --level is now --balance_level (the old name works "
                                "for this release)"]
