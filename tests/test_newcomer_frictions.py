"""What a newcomer following the README met: the offline example resumes as the README says (a Ctrl-C message that
names a checkpoint that exists, and a rerun that continues from it), each demo world keeps its own report, a
growth in words is not called a win, and ``--help`` prints plain text with the documented defaults."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest
import yaml
from tiny import save_tiny_model
from transformers import TrainerCallback

from adadpo.cli import build_parser, main
from adadpo.trl.callbacks import read_metrics

ROOT = Path(__file__).resolve().parents[1]


class StopAt7(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 7:
            raise KeyboardInterrupt


def _offline(tmp_path: Path, out: str, *extra: str) -> tuple[int, str]:
    """``adadpo train --config examples/train_offline.yaml`` on the tiny model (its LoRA targets q_proj and v_proj
    exist in it) and the example's own data."""
    argv = ["train", "--config", str(ROOT / "examples" / "train_offline.yaml"), "--model_name_or_path",
            str(tmp_path / "model"), "--dataset_name", str(ROOT / "examples" / "data" / "pairs.jsonl"),
            "--output_dir", str(tmp_path / out), "--report_to", "none", "--disable_tqdm", "true", *extra]
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    return code


def test_the_offline_example_resumes_as_the_readme_says(tmp_path, capsys):
    pytest.importorskip("peft")
    save_tiny_model(tmp_path / "model")
    assert _offline(tmp_path, "whole") == 0
    capsys.readouterr()
    assert _offline(tmp_path, "stopped", "--callbacks", "test_newcomer_frictions:StopAt7") == 130
    line = capsys.readouterr().err.strip().splitlines()[-1]
    named = re.search(r"the last checkpoint is (\S+)\. Run the same command again to resume from it$", line)
    assert named and Path(named.group(1)).is_dir(), line  # before: "... (it will start over). ... to resume"
    assert Path(named.group(1)).name == "checkpoint-5" and (Path(named.group(1)) / "optimizer.pt").exists()
    assert _offline(tmp_path, "stopped") == 0
    assert f"adadpo: resuming from {named.group(1)}\n" in capsys.readouterr().out  # a full checkpoint: says no more

    def losses(out: str) -> list[float]:
        return [r["loss"] for r in read_metrics(str(tmp_path / out / "metrics.jsonl")) if "loss" in r]

    assert len(losses("stopped")) == 10 and losses("stopped") == pytest.approx(losses("whole"), rel=1e-5)


def test_each_demo_world_has_its_own_directory_and_keeps_the_others_report(tmp_path, monkeypatch):
    from adadpo.cli import demo

    args = build_parser().parse_args(["demo", "--world", "smollm2"])
    assert args.output_dir is None and demo.OUTPUT_DIRS == {"oracle": "adadpo-demo", "smollm2": "adadpo-demo-smollm2"}
    (tmp_path / "results.json").write_text(json.dumps({"world": "oracle"}))
    with pytest.raises(ValueError, match=r"holds the oracle world's demo report, which the smollm2 demo would replace; "
                                         r"give another --output_dir \(the smollm2 default is adadpo-demo-smollm2\)"):
        demo._check_not_another_world(tmp_path, "smollm2")
    demo._check_not_another_world(tmp_path, "oracle")  # its own report: rerun, resumed


def test_a_growth_in_words_is_longer_not_a_win():
    from adadpo.cli.demo import against_untrained

    rows = []
    for seed in range(3):
        rows.append({"method": "untrained", "seed": seed, "key": f"u{seed}", "tq": 0.1, "lc": 0.5, "wr": 0.5,
                     "quality": 0.1, "length": 10.0})
        rows.append({"method": "DPO", "seed": seed, "key": f"d{seed}", "tq": 0.2 + 0.01 * seed, "lc": 0.5, "wr": 0.6,
                     "quality": 0.2, "length": 12.6 + 0.1 * seed, "beta": 0.1, "learning_rate": 1e-4})
    lines = [line for line in against_untrained(rows, ["DPO"]).splitlines() if "words" in line]
    assert lines and lines[0].endswith("longer"), lines  # before: "Δ words  +2.7 [...]  win"


def _all_help() -> list[str]:
    parser = build_parser()
    texts = [parser.format_help()]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    texts += [p.format_help() for p in sub.choices.values() if p.prog != "adadpo train"]
    return texts


def test_help_is_plain_text_and_train_shows_the_documented_default(capsys):
    for text in _all_help():
        assert not re.search(r"``|:(class|func|mod|meth):`", text), text[:2000]
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    assert "`" not in out  # TRL's and transformers' field help is markdown
    block = out[out.index("--output_dir OUTPUT_DIR"):].split("\n  --", 1)[0]
    assert "(default: trainer_output)" in " ".join(block.split()), block  # docs/training.md says so; before: None
    assert "Prevents resuming" not in out  # save_only_model: it resumes, saying what restarts


def test_the_offline_example_and_the_hub_example_pass_every_check():
    from adadpo.cli.switches import check_switches
    from adadpo.cli.train import parse

    for name in ("train.yaml", "train_offline.yaml"):
        parsed = parse(["--config", str(ROOT / "examples" / name)])
        assert check_switches(parsed.instances, parsed.given) == [], name
        assert yaml.safe_load((ROOT / "examples" / name).read_text())["output_dir"].startswith("runs/")


def test_the_offline_example_is_one_pass_over_its_data_with_a_checkpoint_before_the_end():
    config = yaml.safe_load((ROOT / "examples" / "train_offline.yaml").read_text())
    rows = (ROOT / config["dataset_name"]).read_text().splitlines()
    assert config["max_steps"] * config["per_device_train_batch_size"] == len(rows) == 40
    assert config["save_steps"] < config["max_steps"] and not config.get("save_only_model")
