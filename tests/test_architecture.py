"""The core is torch-only: `pip install adadpo` brings torch and numpy, and importing adadpo needs nothing else."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


#: What `pip install adadpo` does not bring (the extras do).
OPTIONAL = ("trl", "transformers", "datasets", "accelerate", "peft", "yaml", "tqdm", "matplotlib", "sklearn")

TORCH_ONLY = f"""
import importlib.abc, sys
class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {OPTIONAL!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, NotInstalled())
"""


def _torch_only(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter where every optional dependency is missing, as after `pip install adadpo`."""
    return subprocess.run([sys.executable, "-c", TORCH_ONLY + code], capture_output=True, text=True, timeout=120)


def test_the_core_install_is_torch_only():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert [d.split(">")[0] for d in project["dependencies"]] == ["torch", "numpy"]
    res = _torch_only(
        "import torch, adadpo, adadpo.cli\n"
        "pairs = adadpo.PairLogps(torch.tensor([-4.0]), torch.tensor([-6.0]), torch.tensor([4]), torch.tensor([3]))\n"
        "print(adadpo.preference_loss(adadpo.LossSpec('simpo', balance=adadpo.Balance()), pairs).loss.item())\n"
        "assert adadpo.cli.main(['explain', '--loss', 'orpo']) == 0\n"
    )
    assert res.returncode == 0 and "orpo: beta=0.1" in res.stdout, res.stderr[-2000:]


def test_a_missing_extra_is_named():
    res = _torch_only("from adadpo.cli import main; main(['train', '--config', 'run.yaml'])")
    assert res.returncode == 2 and res.stderr.strip().endswith(
        "install the 'trainer' extra: pip install \"adadpo[trainer]\""), res.stderr[-2000:]
    res = _torch_only("import adadpo.trl")
    assert "adadpo.trl needs the 'trainer' extra" in res.stderr, res.stderr[-2000:]


def test_public_api():
    import adadpo

    for name in ("preference_loss", "Balance", "PreferenceLossOutput", "gradient_imbalance", "sequence_logps",
                 "linear_sequence_logps", "side_statistics", "LOSSES", "DPOLoss", "ORPOLoss", "PairLogps", "LossSpec"):
        assert hasattr(adadpo, name), name
    assert list(adadpo.LOSSES) == ["dpo", "rdpo", "ipo", "simpo", "cpo", "orpo"]


def test_benchmark_is_a_client_of_the_public_api():
    """The benchmark worlds (adadpo.oracle, adadpo.lmworld) import adadpo only through its public faces
    (adadpo, adadpo.trl, adadpo.eval) and each other."""
    import ast

    public = {"adadpo", "adadpo.trl", "adadpo.eval"}
    benchmark = ("adadpo.oracle", "adadpo.lmworld")
    paths = [p for world in ("oracle", "lmworld") for p in (ROOT / "src" / "adadpo" / world).glob("*.py")]
    assert len(paths) > 10
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("adadpo"):
                assert node.module in public or node.module.startswith(benchmark), f"{path.name}: {node.module}"
