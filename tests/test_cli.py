"""The ``adadpo`` command (``python -m adadpo``), run as a user would, in a subprocess."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest

from adadpo.cli.explain import EXAMPLES


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "adadpo", *args], capture_output=True, text=True, env=env, timeout=120)


def _rows(stdout: str) -> dict[str, list[str]]:
    names = {p.name for p in EXAMPLES}
    rows = {}
    for line in stdout.splitlines():
        for name in names:
            if line.startswith(name + " "):
                rows[name] = line[len(name):].split()
    return rows


def test_default_run_prints_the_dpo_table_with_balanced_ratios():
    res = run()
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("dpo: beta=0.1; AdaDPO with level=token, normalize=sum")
    rows = _rows(res.stdout)
    assert set(rows) == {p.name for p in EXAMPLES}
    for p in EXAMPLES:
        cells = rows[p.name]
        rho = float(cells[4])
        # DPO at token level: rho = exp(abar_w - abar_l) (the spec's table), printed to 3 significant digits
        assert rho == pytest.approx(math.exp(p.mean_logp_chosen - p.mean_logp_rejected), rel=5e-3)
        after = float(cells[-1])
        assert after == pytest.approx(max(1.0, rho / 10), rel=5e-3)  # balanced, or rho / kappa where clipped


def test_every_loss_and_options():
    res = run("explain", "--loss", "all", "--balance_level", "sequence", "--balance_normalize", "geometric",
              "--balance_clip", "inf")
    assert res.returncode == 0, res.stderr
    for loss in ("dpo", "rdpo", "ipo", "simpo", "cpo", "orpo"):
        assert f"{loss}: beta=0.1; AdaDPO with level=sequence, normalize=geometric, placement=margin, clip kappa=off" in res.stdout


def test_user_mistakes_exit_2_with_a_message_and_no_traceback():
    res = run("--balance_clip", "0.5")
    assert res.returncode == 2
    assert "adadpo explain: error: Balance.clip=0.5 must be a number >= 1" in res.stderr
    assert "Traceback" not in res.stderr
    res = run("explain", "--loss", "kto")
    assert res.returncode == 2 and "invalid choice: 'kto'" in res.stderr


def test_console_script_is_installed():
    exe = os.path.join(os.path.dirname(sys.executable), "adadpo")
    res = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.startswith("adadpo ")
