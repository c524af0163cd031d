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
    assert list(adadpo.LOSSES) == [n for n, d in adadpo.REGISTRY.items() if d.family]


def test_every_module_stays_small():
    """Small modules with one job: every module of src/adadpo stays under 450 lines."""
    sizes = {p.relative_to(ROOT).as_posix(): len(p.read_text().splitlines()) for p in (ROOT / "src").rglob("*.py")}
    assert len(sizes) > 60 and {p: n for p, n in sizes.items() if n >= 450} == {}


def _import_graph() -> dict[str, set[str]]:
    """Every module of ``src/adadpo`` (a package by its own name) and the adadpo modules it imports anywhere in
    its source, function bodies included: an import deferred to the function that needs it is still a dependency."""
    import ast

    src = ROOT / "src"
    modules = {}
    for path in (src / "adadpo").rglob("*.py"):
        parts = path.relative_to(src).with_suffix("").parts
        package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if package else parts)] = (path, package)

    def known(name: str) -> str:  # the module itself, or the package that defines the imported name
        while name not in modules:
            name = name.rpartition(".")[0]
        return name

    graph = {}
    for name, (path, package) in modules.items():
        here = name if package else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps |= {known(a.name) for a in node.names if a.name.split(".")[0] == "adadpo"}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(here.split(".")[: len(here.split(".")) - node.level + 1] + ([base] if base else []))
                if base.split(".")[0] == "adadpo":
                    deps |= {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else known(base) for a in node.names}
        graph[name] = deps - {name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan): each is an import cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_module_imports_itself_through_others():
    graph = _import_graph()
    assert len(graph) > 60 and "adadpo.bench.sweep" in graph["adadpo.cli.sweep"]
    assert _cycles(graph) == []
    # the test sees a cycle: report -> paired -> report, as it was before adadpo.bench.stats
    assert _cycles({**graph, "adadpo.bench.stats": graph["adadpo.bench.stats"] | {"adadpo.bench.report"}})


def test_no_package_imports_itself_through_others():
    """Collapsed to packages (``adadpo.bench``, ``adadpo.bench.worlds.oracle``, ``adadpo.cli``, ...), the imports
    still form no cycle: the worlds use the benchmark framework, which reaches them only through its registry of
    module names (adadpo.bench.world.WORLDS). Entry points (``__main__``) are left out: nothing imports them."""
    graph = _import_graph()

    def package(name: str) -> str:
        return name if name in graph and (ROOT / "src" / Path(*name.split(".")) / "__init__.py").exists() \
            else name.rpartition(".")[0]

    packages: dict[str, set[str]] = {}
    for name, deps in graph.items():
        if name.rpartition(".")[2] != "__main__":
            packages.setdefault(package(name), set()).update(package(d) for d in deps)
    packages = {p: deps - {p} for p, deps in packages.items()}
    assert {"adadpo.bench", "adadpo.bench.worlds.oracle", "adadpo.bench.worlds.smollm2"} <= set(packages)
    assert _cycles(packages) == []


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += graph.get(name, ())
    return seen


@pytest.mark.parametrize("command", ["train", "diagnose", "explain"])
def test_user_commands_import_no_benchmark(command):
    """What ``adadpo train``, ``diagnose`` and ``explain`` can import, however deep and however deferred, holds no
    world and nothing of the benchmark (adadpo.bench); ``demo`` and ``sweep`` are the benchmark's commands."""
    graph = _import_graph()
    reached = _reachable(graph, f"adadpo.cli.{command}")
    assert not {m for m in reached if m.startswith("adadpo.bench")}, sorted(reached)
    assert "adadpo.bench.sweep" in _reachable(graph, "adadpo.cli.demo")  # the benchmark's commands do


def test_running_explain_and_importing_the_commands_loads_no_benchmark():
    code = ("import sys, adadpo.cli, adadpo.cli.train, adadpo.cli.diagnose\n"
            "assert adadpo.cli.main(['explain', '--loss', 'dpo']) == 0\n"
            "print(sorted(m for m in sys.modules if m.startswith('adadpo.bench')))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip().splitlines()[-1] == "[]", res.stderr[-2000:]


def test_benchmark_is_a_client_of_the_public_api():
    """The benchmark (adadpo.bench, its worlds included) imports adadpo only through its public faces
    (adadpo, adadpo.trl, adadpo.eval), the generic figure helpers (adadpo.plotting) and itself."""
    import ast

    public = {"adadpo", "adadpo.trl", "adadpo.eval", "adadpo.plotting"}
    paths = list((ROOT / "src" / "adadpo" / "bench").rglob("*.py"))
    assert len(paths) > 20
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("adadpo"):
                assert node.module in public or node.module.startswith("adadpo.bench"), f"{path.name}: {node.module}"


def test_ci_runs_the_slow_tests_and_the_readme_names_the_quick_loop():
    """``slow`` is a registered marker (``--strict-markers`` rejects a misspelt one), nothing deselects it by
    default (CI, ``.ci/run``, runs ``python -m pytest``), and the README's test section names the quick loop."""
    import tomllib

    pytest_ini = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert any(m.startswith("slow:") for m in pytest_ini["markers"]) and "--strict-markers" in pytest_ini["addopts"]
    assert "-m" not in pytest_ini["addopts"].split()
    assert (ROOT / ".ci" / "run").read_text().strip().endswith("python -m pytest")
    readme = (ROOT / "README.md").read_text()
    assert 'python -m pytest -m "not slow"' in readme and "python -m pytest -m core" in readme


def test_the_shipped_world_snapshot_is_package_data():
    """Every file of the real-model world's shipped snapshots is matched by pyproject's package data, so the wheel
    carries the world the committed results were trained in."""
    import fnmatch
    import tomllib

    from adadpo.bench.worlds.smollm2.data import SHIPPED

    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["adadpo"]
    package = ROOT / "src" / "adadpo"
    files = [p.relative_to(package).as_posix() for p in SHIPPED.rglob("*") if p.is_file()]
    assert len(files) >= 3 and "bench/worlds/smollm2/snapshots/bcb7ad44de71/world.json" in files
    assert all(any(fnmatch.fnmatch(f, pattern) for pattern in patterns) for f in files), (files, patterns)
