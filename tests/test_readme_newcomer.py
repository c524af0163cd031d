"""The README's offline training example, followed as a newcomer follows it: its commands, taken from the README
and run in a subprocess from the repository's shipped files, with a tiny model in place of SmolLM2 (whose ten
steps take minutes on a CPU). What the README says to look at must be there; so the README cannot drift."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from tiny import save_tiny_model

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _block() -> str:
    """The README's bash block of the offline example."""
    blocks = [b for b in re.findall(r"```bash\n(.*?)```", README, flags=re.S) if "examples/train_offline.yaml" in b
              and "HF_HUB_OFFLINE" in b]
    assert len(blocks) == 1, "README: expected one bash block with the offline training example"
    return blocks[0]


def _commands(block: str) -> list[list[str]]:
    """Each command of ``block`` as argv (continuation lines joined, comments dropped)."""
    return [shlex.split(line, comments=True) for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def _section(start: str, end: str) -> str:
    return README.split(start, 1)[1].split(end, 1)[0]


def test_the_set_up_lines_name_real_extras_and_helpers():
    commands = _commands(_block())
    install = next(c for c in commands if c[:3] == ["pip", "install", "-e"])
    extras = re.fullmatch(r"\.\[(.*)\]", install[3]).group(1).split(",")
    known = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras and set(extras) <= set(known), extras
    assert ["export", "HF_HUB_OFFLINE=1"] in commands
    model = next(c for c in commands if c[0].startswith("MODEL="))
    assert model == ["MODEL=$(python -m adadpo.bench.worlds.smollm2.model)"]
    from adadpo.bench.worlds.smollm2 import model as lm

    assert callable(lm.main)  # what `python -m adadpo.bench.worlds.smollm2.model` runs


def test_the_format_shown_is_the_shipped_files_first_line():
    shown = re.search(r"```json\n(.*?)```", _section("One pair per line", "What to look at"), flags=re.S).group(1)
    first = (ROOT / "examples" / "data" / "pairs.jsonl").read_text().splitlines()[0]
    assert json.loads(shown) == json.loads(first)


@pytest.fixture(scope="module")
def followed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A fresh directory holding the repository's examples, the README's offline commands run in it in order
    (``$MODEL``: a tiny model), and each command's output."""
    root = tmp_path_factory.mktemp("newcomer")
    shutil.copytree(ROOT / "examples", root / "examples")
    model = str(save_tiny_model(root / "tiny-model"))
    env = dict(os.environ)
    for command in _commands(_block()):  # the README's `export K=V` lines
        if command[0] == "export":
            env.update(dict(assignment.split("=", 1) for assignment in command[1:]))
    assert env["HF_HUB_OFFLINE"] == "1"
    outputs = []
    adadpo = [c for c in _commands(_block()) if c[0] == "adadpo"]
    diagnose = next(c for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S) for c in _commands(block)
                    if c[:3] == ["adadpo", "diagnose", "--config"])
    for argv in [*adadpo, diagnose]:
        argv = [model if a == "$MODEL" else a for a in argv]
        res = subprocess.run([sys.executable, "-m", *argv], cwd=root, env=env, capture_output=True, text=True,
                             timeout=600)
        assert res.returncode == 0, f"{shlex.join(argv)}\n{res.stderr[-3000:]}"
        outputs.append(res.stdout + res.stderr)
    return {"root": root, "commands": adadpo, "outputs": outputs}


def _metrics(run: Path) -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


@pytest.mark.slow
def test_two_runs_dpo_then_adadpo(followed):
    assert [c[:2] for c in followed["commands"]] == [["adadpo", "train"]] * 2
    assert "--balance" not in followed["commands"][0] and followed["commands"][1][-4:-2] == ["--balance", "true"]
    runs = followed["root"] / "runs"
    assert sorted(p.name for p in runs.iterdir()) == ["smollm2-adadpo", "smollm2-dpo"]
    for name in ("smollm2-dpo", "smollm2-adadpo"):
        run = runs / name
        # "a checkpoint every 5 steps (adapter and optimizer state)", the last one kept, so the run can resume;
        # the adapter, the metrics and a card whose quick start loads the directory
        assert [p.name for p in run.glob("checkpoint-*")] == ["checkpoint-10"]
        assert list(run.glob("checkpoint-10/optimizer.*")) and (run / "checkpoint-10" / "scheduler.pt").is_file()
        assert (run / "adapter_model.safetensors").is_file() and (run / "metrics.csv").is_file()
        assert f'model="runs/{name}"' in (run / "README.md").read_text()


@pytest.mark.slow
def test_what_the_readme_says_to_look_at_is_logged(followed):
    look = _section("What to look at:", "**With the Hugging Face Hub**")
    named = set(re.findall(r"`(balance/[a-z_]+)`", look))
    assert named == {"balance/log_rho", "balance/coef_chosen", "balance/coef_rejected", "balance/log_rho_after",
                     "balance/clipped_frac"}
    plain, balanced = (_metrics(followed["root"] / "runs" / n) for n in ("smollm2-dpo", "smollm2-adadpo"))
    assert [r["step"] for r in plain] == [r["step"] for r in balanced] == list(range(1, 11))  # a log per step
    assert "0.693 (log 2)" in look and plain[0]["loss"] == pytest.approx(0.6931, abs=1e-4)
    assert all("balance/log_rho" in r and "balance/coef_chosen" not in r for r in plain)
    assert all(named <= set(r) and abs(r["balance/log_rho_after"]) < 1e-5 for r in balanced)
    for output in followed["outputs"][:2]:  # each step's log line is printed
        assert output.count("'loss': ") == 10, output[-2000:]


@pytest.mark.slow
def test_the_readme_diagnose_line_reads_the_training_config(followed):
    out = followed["outputs"][2]
    assert "dataset:   examples/data/pairs.jsonl, split 'train', 40 pairs" in out
    assert "Gradient imbalance of plain dpo (token level), 40 pairs" in out
