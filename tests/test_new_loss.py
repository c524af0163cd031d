"""A new loss with a new parameter is two declarations in adadpo.core and nothing else (issue 33).

A copy of the package gets one term (core/terms.py) and one ``LossDef`` with a new :class:`~adadpo.Param`
(core/registry.py): a hinge loss with a margin, ``max(0, hinge_margin - beta * delta)`` (SLiC's calibration loss,
which TRL's ``hinge`` fixes at margin 1). In a fresh interpreter on that copy, the loss is then trainable by name
from every entrance: ``LossSpec``, ``AdaDPOConfig``, a YAML config, the command line and its ``--help``, with its
bound checked in one line, and its value equals the formula computed here independently.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import adadpo

TERM = '''

def margin_hinge(delta: Tensor, pairs: PairLogps, beta: float, p: dict) -> Tensor:
    return torch.relu(p["hinge_margin"] - beta * delta)
'''

DECLARATION = '''

register_loss(LossDef("margin_hinge", terms.margin_hinge, family=True, params={
    "hinge_margin": Param("hinge_margin", 1.0, "Target margin of the hinge loss.", low=0.0, example=1.0)},
    paper=Paper("SLiC-HF", "SLiC-HF: Sequence Likelihood Calibration with Human Feedback", "2305.10425")))
'''

SCRIPT = r'''
import contextlib, io, json, sys
import torch
from adadpo import LossSpec, PairLogps, preference_loss
from adadpo.cli import main
from adadpo.cli.train import parse
from adadpo.trl import AdaDPOConfig
from dataclasses import fields

base = ["--model_name_or_path", "m", "--dataset_name", "d", "--output_dir", sys.argv[2], "--report_to", "none"]
out = {}
field = {f.name: f for f in fields(AdaDPOConfig)}["hinge_margin"]
out["field"] = [field.default, field.metadata["help"]]
yaml_config = parse(["--config", sys.argv[1], *base]).instances[1]
cli_config = parse(["--loss", "margin_hinge", "--hinge_margin", "0.4", *base]).instances[1]
out["yaml"] = yaml_config.loss_spec().terms[0][2]
out["cli"] = cli_config.loss_spec().terms[0][2]
out["default"] = AdaDPOConfig("o", loss="margin_hinge", report_to="none").loss_spec().terms[0][2]
for argv in (["train", "--help"], ["train", "--loss", "margin_hinge", "--hinge_margin", "-1", *base]):
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
    out.setdefault("codes", []).append(code)
    out.setdefault("outputs", []).append(stdout.getvalue() + stderr.getvalue())
A_w, A_l, R_w, R_l = (torch.tensor(v, dtype=torch.float64) for v in json.loads(sys.argv[3]))
T = torch.full_like(A_w, 5.0)
pairs = PairLogps(A_w, A_l, T, T, R_w, R_l)
out["loss"] = preference_loss(LossSpec("margin_hinge", beta=0.5, hinge_margin=0.4), pairs).loss.item()
print(json.dumps(out))
'''


def _with_new_loss(tmp_path: Path) -> Path:
    """A copy of the package with the term and the declaration added, and nothing else changed."""
    src = tmp_path / "src"
    shutil.copytree(Path(adadpo.__file__).parent, src / "adadpo", ignore=shutil.ignore_patterns("__pycache__"))
    for name, text in (("terms.py", TERM), ("registry.py", DECLARATION)):
        path = src / "adadpo" / "core" / name
        path.write_text(path.read_text() + text)
    return src


def test_a_loss_declared_in_core_alone_is_configurable_everywhere(tmp_path):
    src = _with_new_loss(tmp_path)
    config = tmp_path / "run.yaml"
    config.write_text("loss: margin_hinge\nhinge_margin: 0.3\n")
    sides = [[-3.0, -5.0, -2.0], [-4.0, -4.5, -6.0], [-3.5, -4.0, -2.5], [-3.8, -5.2, -5.0]]
    env = {**os.environ, "PYTHONPATH": str(src), "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-c", SCRIPT, str(config), str(tmp_path / "out"), json.dumps(sides)],
                         env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])

    assert out["field"][0] is None and out["field"][1] == "Target margin of the hinge loss. Only for margin_hinge; unset: the default."
    assert (out["yaml"], out["cli"], out["default"]) == ({"hinge_margin": 0.3}, {"hinge_margin": 0.4},
                                                         {"hinge_margin": 1.0})
    (help_code, bad_code), (help_text, bad_text) = out["codes"], out["outputs"]
    assert help_code == 0 and "--hinge_margin" in help_text and "margin_hinge" in help_text
    lines = bad_text.strip().splitlines()
    assert bad_code != 0 and len(lines) == 1 and "hinge_margin=-1.0 is out of range: expected a number in [0, 1e+09]" in lines[0], bad_text
    assert not (tmp_path / "out").exists()

    A_w, A_l, R_w, R_l = sides  # the formula, by hand: mean over pairs of max(0, m - beta (h_w - h_l))
    hand = [max(0.0, 0.4 - 0.5 * ((aw - rw) - (al - rl))) for aw, al, rw, rl in zip(A_w, A_l, R_w, R_l)]
    assert abs(out["loss"] - sum(hand) / len(hand)) < 1e-12
