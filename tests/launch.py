"""Running a multi-process command (torchrun) from a test without letting a hang outlive it."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest


def launch(cmd: list[str], timeout: float = 300) -> str:
    """Run ``cmd`` offline with one thread per process and ``WORLD_SIZE`` unset; return its stderr. A run that
    does not finish in ``timeout`` seconds fails the test (its process group killed: start_new_session + killpg,
    so torchrun's workers die with it), and so does a non-zero exit."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        pytest.fail(f"{' '.join(cmd[:6])} did not finish in {timeout:g} s (hang at exit?):\n{err[-3000:]}")
    assert proc.returncode == 0, err[-4000:]
    return err
