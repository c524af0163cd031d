"""The README's promises: its usage example runs, and CI runs exactly its test command."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_usage_example_runs_and_balances(capsys):
    example = _blocks("python")[0]
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)
    out = namespace["out"]
    assert out.loss.grad_fn is not None
    assert namespace["chosen_logps"].grad is not None
    assert "rewards/margins" in capsys.readouterr().out
    assert not (out.coef_chosen == 1).all()


def test_ci_runs_the_readme_test_command():
    test_cmd = next(line for block in _blocks("bash") for line in block.splitlines() if "pytest" in line)
    steps = [s.strip() for s in test_cmd.split("&&")]
    ci = (ROOT / ".ci" / "run").read_text()
    for step in steps[2:]:  # after creating and activating the venv
        assert re.search(rf"^{re.escape(step)}$", ci, flags=re.M), f".ci/run lacks the README step: {step}"


def test_readme_main_command_names_a_real_subcommand():
    from adadpo.cli import COMMANDS

    main_cmd = next(line for block in _blocks("bash") for line in block.splitlines() if line.endswith("adadpo demo"))
    assert main_cmd.split()[-1] in COMMANDS
