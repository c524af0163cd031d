"""The core is torch-only: importing adadpo must not pull in TRL, transformers or datasets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_core_imports_no_integration_libraries():
    code = (
        "import sys, adadpo, adadpo.core, adadpo.cli; "
        "bad = [m for m in ('trl', 'transformers', 'datasets', 'accelerate', 'peft') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


def test_public_api():
    import adadpo

    for name in ("preference_loss", "Balance", "PreferenceLossOutput", "gradient_imbalance", "sequence_logps",
                 "linear_sequence_logps", "side_statistics", "LOSSES", "DPOLoss", "ORPOLoss"):
        assert hasattr(adadpo, name), name
    assert list(adadpo.LOSSES) == ["dpo", "rdpo", "ipo", "simpo", "cpo", "orpo"]


def test_benchmark_is_a_client_of_the_public_api():
    """adadpo.oracle imports adadpo only through its public faces: adadpo, adadpo.trl, adadpo.eval."""
    import ast

    public = {"adadpo", "adadpo.trl", "adadpo.eval"}
    for path in (ROOT / "src" / "adadpo" / "oracle").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("adadpo"):
                assert node.module in public or node.module.startswith("adadpo.oracle"), f"{path.name}: {node.module}"
