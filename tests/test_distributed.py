"""Two processes (torchrun, gloo on CPU) train like one process with the same global batch."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
import torch
import yaml
from launch import launch
from tiny import make_pairs, save_tiny_model, write_jsonl
from transformers import AutoModelForCausalLM

from adadpo.trl.callbacks import read_metrics


@pytest.mark.slow
def test_torchrun_two_processes_match_one_process(tmp_path: Path):
    save_tiny_model(tmp_path / "model")
    write_jsonl(tmp_path / "pairs.jsonl", make_pairs(32))
    config = {
        "model_name_or_path": str(tmp_path / "model"), "dataset_name": str(tmp_path / "pairs.jsonl"),
        "loss": "dpo", "balance": True, "max_steps": 8, "learning_rate": 1e-3, "logging_steps": 1,
        "save_steps": 4, "gradient_checkpointing": False, "disable_tqdm": True, "report_to": "none", "seed": 0,
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    def run(launcher: list[str], out: str, batch: int) -> None:
        launch([*launcher, "-m", "adadpo", "train", "--config", str(path), "--output_dir", str(tmp_path / out),
                "--per_device_train_batch_size", str(batch)])

    run([sys.executable], "one", batch=4)
    run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"], "two", batch=2)

    def losses(out: str) -> list[float]:
        return [r["loss"] for r in read_metrics(str(tmp_path / out / "metrics.jsonl")) if "loss" in r]

    one, two = losses("one"), losses("two")
    assert len(one) == len(two) == 8  # one writer: the main process
    assert two == pytest.approx(one, rel=1e-5, abs=1e-6)
    assert (tmp_path / "two" / "checkpoint-8" / "rng_state_1.pth").exists()  # both processes saved their state
    a = AutoModelForCausalLM.from_pretrained(tmp_path / "one")
    b = AutoModelForCausalLM.from_pretrained(tmp_path / "two")
    for (name, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5, msg=name)


DIFFERENT_DATA = """
import os, sys
sys.path.insert(0, {tests!r})
from datasets import Dataset
from tiny import TRAINER_ARGS, make_pairs
from adadpo.trl import AdaDPOConfig, AdaDPOTrainer

rank = int(os.environ["RANK"])
data = Dataset.from_list(make_pairs(16 + 4 * rank, seed=rank))  # each process another file, as by mistake
args = AdaDPOConfig({out!r}, **{{**TRAINER_ARGS, "per_device_train_batch_size": 2}}, max_steps=2, ddp_timeout=60)
AdaDPOTrainer({model!r}, args=args, train_dataset=data).train()
"""


def test_processes_given_different_data_are_refused_naming_both(tmp_path: Path):
    import subprocess

    from adadpo.trl.fingerprint import fingerprint

    rows = make_pairs(16)
    from datasets import Dataset

    assert fingerprint(Dataset.from_list(rows)) == fingerprint(Dataset.from_list(rows))
    assert fingerprint(Dataset.from_list(rows)) != fingerprint(Dataset.from_list(rows[:-1] + make_pairs(1, seed=9)))
    save_tiny_model(tmp_path / "model")
    script = tmp_path / "run.py"
    script.write_text(DIFFERENT_DATA.format(tests=str(Path(__file__).parent), out=str(tmp_path / "out"),
                                            model=str(tmp_path / "model")))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode != 0  # before: both trained, each on its own data
    expected = re.compile(r"ValueError: process 1 prepared a different train dataset \(20 rows, hash \w{12}\) than "
                          r"process 0 \(16 rows, hash \w{12}\); every process must be given the same data")
    assert expected.search(res.stderr), res.stderr[-3000:]
