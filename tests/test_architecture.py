"""The core is torch-only: `pip install adadpo` brings torch and numpy, and importing adadpo needs nothing else."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.mark.parametrize(("argv", "extra"), [
    (["train", "--config", "run.yaml"], "trainer"), (["diagnose", "--model_name_or_path", "m", "--dataset_name", "d"],
                                                     "trainer"),
    (["demo"], "bench"), (["sweep", "--config", "grid.yaml"], "bench")])
def test_a_missing_extra_is_named_once_and_is_the_commands(argv, extra):
    res = _torch_only(f"from adadpo.cli import main; main({argv!r})")
    hint = f"install the {extra!r} extra: pip install \"adadpo[{extra}]\""
    last = res.stderr.strip().splitlines()[-1]
    assert res.returncode == 2 and last.startswith(f"adadpo {argv[0]}: error: No module named ") and last.endswith(hint)
    assert res.stderr.count("install the") == 1, res.stderr[-2000:]  # before: diagnose's hint came twice


def test_the_hint_names_the_extra_the_command_needs():
    from adadpo.cli import missing_extra

    sklearn = ModuleNotFoundError("No module named 'sklearn'", name="sklearn")
    assert missing_extra(sklearn, "bench").endswith('pip install "adadpo[bench]"')  # the demo (README: bench)
    assert missing_extra(sklearn).endswith('pip install "adadpo[eval]"')  # the library function alone
    assert missing_extra(ModuleNotFoundError(name="gguf"), "trainer").endswith('"adadpo[bench]"')
    assert missing_extra(ModuleNotFoundError(name="peft"), "trainer").endswith('"adadpo[peft]"')
    assert missing_extra(ModuleNotFoundError(name="numpy_extra_thing")) is None


def test_importing_the_trainer_without_its_extra_names_it():
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
