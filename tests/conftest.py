from __future__ import annotations

import ast
import os
import sys
import warnings
from dataclasses import dataclass
from functools import cache
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from adadpo import LOSSES  # noqa: E402
from adadpo.core.registry import example_params  # noqa: E402

torch.set_num_threads(1)

settings.register_profile(
    "default", max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=False
)
settings.register_profile("ci", max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")

#: Each family's required parameters at their declared examples (rdpo: length_alpha).
PARAMS = {name: example_params(name) for name in LOSSES}

# Every valid (loss, level, use_reference, normalize, placement) combination.
COMBOS = [
    (loss, level, use_ref, norm, place)
    for loss, fam in LOSSES.items()
    for level in ("token", "sequence")
    for use_ref in ((False, True) if fam.needs_reference else (False,))
    for norm in ("sum", "geometric", "rejected", "chosen")
    for place in ("margin", "gradient")
]


@dataclass
class PairBatch:
    """Per-token log-probs ``[B, Tmax]`` with padding beyond each length (garbage, never to be counted)."""

    a_w: torch.Tensor
    a_l: torch.Tensor
    r_w: torch.Tensor
    r_l: torch.Tensor
    mask_w: torch.Tensor
    mask_l: torch.Tensor
    beta: float

    @property
    def T_w(self) -> torch.Tensor:
        return self.mask_w.sum(1).double()

    @property
    def T_l(self) -> torch.Tensor:
        return self.mask_l.sum(1).double()

    def leaves(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Fresh per-token leaves (chosen, rejected) that require grad."""
        return self.a_w.clone().requires_grad_(True), self.a_l.clone().requires_grad_(True)

    def sums(self, a_w: torch.Tensor, a_l: torch.Tensor) -> dict[str, torch.Tensor]:
        return {
            "chosen_logps": (a_w * self.mask_w).sum(1),
            "rejected_logps": (a_l * self.mask_l).sum(1),
            "chosen_lengths": self.T_w,
            "rejected_lengths": self.T_l,
        }

    def refs(self) -> dict[str, torch.Tensor]:
        return {"ref_chosen_logps": (self.r_w * self.mask_w).sum(1), "ref_rejected_logps": (self.r_l * self.mask_l).sum(1)}

    def kwargs(self, loss: str, a_w: torch.Tensor, a_l: torch.Tensor) -> dict:
        kw = self.sums(a_w, a_l)
        if LOSSES[loss].needs_reference:
            kw.update(self.refs())
        return {**kw, **PARAMS.get(loss, {}), "beta": self.beta}


@st.composite
def pair_batches(draw, max_batch: int = 6, max_len: int = 16, max_scale: float = 3.0) -> PairBatch:
    """Random batches: sizes, lengths, per-token log-prob ranges and beta all vary."""
    B = draw(st.integers(1, max_batch))
    Tmax = draw(st.integers(1, max_len))
    seed = draw(st.integers(0, 2**31 - 1))
    scale = draw(st.floats(0.01, max_scale))
    beta = draw(st.sampled_from([0.01, 0.1, 0.5, 2.0]))
    g = torch.Generator().manual_seed(seed)

    def tokens():
        return -scale * torch.rand(B, Tmax, generator=g, dtype=torch.float64) - 1e-3

    def mask():
        T = torch.randint(1, Tmax + 1, (B,), generator=g)
        return (torch.arange(Tmax)[None, :] < T[:, None]).double()

    a_w, a_l, r_w, r_l = tokens(), tokens(), tokens(), tokens()
    m_w, m_l = mask(), mask()
    # Padding holds garbage that must never count.
    a_w = torch.where(m_w.bool(), a_w, torch.full_like(a_w, -777.0))
    a_l = torch.where(m_l.bool(), a_l, torch.full_like(a_l, -555.0))
    return PairBatch(a_w, a_l, r_w, r_l, m_w, m_l, beta)


@pytest.fixture(autouse=True)
def _single_thread():
    torch.set_num_threads(1)
    yield


# ------------------------------------------------------------------------- the quick loops: `core` and `nomodel`
# Every test is marked from what its module imports (read from the source, function bodies included), so a new
# test file is classified without a list to update; CI runs everything (see docs/contributing.md):
# - ``core``: the module imports only the standard library, torch, hypothesis, pytest, adadpo / adadpo.core and
#   the formula helpers (conftest, reference), and starts no interpreter (no subprocess): the loss
#   contributor's loop, ``pytest -m core``;
# - ``nomodel``: neither the module nor the test touches a model: no transformers, no tiny-model or world helper,
#   no model fixture (``pytest -m nomodel``; ``core`` tests are ``nomodel`` too).

#: Helpers and packages that build or load a model.
MODEL_IMPORTS = ("transformers", "peft", "tiny", "gguf_tiny", "lmworld_fixtures", "fsdp_worker", "step_budget",
                 "launch", "adadpo.bench.worlds.smollm2")
#: Fixtures that build a model or a model's run directory.
MODEL_FIXTURES = frozenset({"tiny_model_dirs", "model_dir", "tokenizer", "dataset", "world", "chat_model"})
#: Modules whose tests build a model in a subprocess, out of their imports' sight (the benchmark scripts).
MODEL_SUBPROCESSES = frozenset({"test_benchmarks.py"})
#: What a ``core`` test module may import besides the standard library.
CORE_IMPORTS = ("torch", "hypothesis", "pytest", "conftest", "reference")
#: Standard-library modules a ``core`` test may not use: a fresh interpreter costs seconds.
NOT_CORE = ("subprocess", "multiprocessing")
CORE_ADADPO = ("adadpo", "adadpo.core")


@cache
def _imports(path: Path) -> dict[str | None, frozenset[str]]:
    """The modules ``path`` imports (``from a.b import c`` gives ``a.b``): key ``None`` for the module's own
    (top level and helpers, function bodies included), and each ``test_*`` function's by its name."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a docstring's invalid escape is the module's business, not the marker's
        tree = ast.parse(path.read_text())
    found: dict[str | None, set[str]] = {None: set()}

    def visit(node: ast.AST, owner: str | None) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
            owner = node.name
            found.setdefault(owner, set())
        if isinstance(node, ast.Import):
            found[owner] |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level:
            found[owner].add(node.module or "")
        for child in ast.iter_child_nodes(node):
            visit(child, owner)

    visit(tree, None)
    return {k: frozenset(v) for k, v in found.items()}


def _within(name: str, roots: tuple[str, ...]) -> bool:
    return any(name == r or name.startswith(r + ".") for r in roots)


def _needs_model(imports: frozenset[str]) -> bool:
    return any(_within(name, MODEL_IMPORTS) for name in imports)


def _is_core(imports: frozenset[str]) -> bool:
    for name in imports:
        top = name.split(".")[0]
        if top == "adadpo":
            if name not in CORE_ADADPO and not _within(name, ("adadpo.core",)):
                return False
        elif top in NOT_CORE or (top not in sys.stdlib_module_names and top not in CORE_IMPORTS):
            return False
    return True


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Under ``-m core`` or ``-m nomodel`` alone, do not import a test module none of whose tests can be selected
    (its own imports already rule them out): collecting the trainer's modules costs half a minute."""
    wanted = config.getoption("markexpr", "")
    if wanted not in ("core", "nomodel") or not collection_path.name.startswith("test_") \
            or collection_path.suffix != ".py":
        return None
    own = _imports(collection_path)[None]
    return True if collection_path.name in MODEL_SUBPROCESSES or _needs_model(own) or (wanted == "core" and not _is_core(own)) else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        found = _imports(Path(item.path))
        imports = found[None] | found.get(getattr(item, "originalname", item.name), frozenset())
        if Path(item.path).name in MODEL_SUBPROCESSES or _needs_model(imports) \
                or MODEL_FIXTURES & set(item.fixturenames):
            continue
        item.add_marker(pytest.mark.nomodel)
        if _is_core(imports):
            item.add_marker(pytest.mark.core)

# ------------------------------------------------------------------------- tiny models, data and CLI worlds
# Factories shared by the trainer and CLI tests (the builders are in tiny.py). A module tunes them with constants:
# MODEL_SEED (the tiny model's seed, default 0), PAIRS (``(n, seed)`` of the ``dataset`` fixture, default (48, 0)).


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory: pytest.TempPathFactory):
    """Factory ``(seed=0) -> Path``: a saved tiny Llama and its tokenizer (``tiny.save_tiny_model``), built once
    per seed and session (read-only: tests that change a model load their own copy)."""
    from tiny import save_tiny_model

    built: dict[int, Path] = {}

    def get(seed: int = 0) -> Path:
        if seed not in built:
            built[seed] = save_tiny_model(tmp_path_factory.mktemp(f"tiny-{seed}") / "model", seed=seed)
        return built[seed]

    return get


@pytest.fixture(scope="module")
def model_dir(tiny_model_dirs, request: pytest.FixtureRequest) -> Path:
    """The tiny model of the module's ``MODEL_SEED``."""
    return tiny_model_dirs(getattr(request.module, "MODEL_SEED", 0))


@pytest.fixture(scope="module")
def tokenizer():
    """The tiny word-level tokenizer (``tiny.make_tokenizer``)."""
    from tiny import make_tokenizer

    return make_tokenizer()


@pytest.fixture(scope="module")
def dataset(request: pytest.FixtureRequest):
    """``datasets.Dataset`` of ``tiny.make_pairs(n, seed)``, ``(n, seed)`` the module's ``PAIRS``."""
    from datasets import Dataset
    from tiny import make_pairs

    n, seed = getattr(request.module, "PAIRS", (48, 0))
    return Dataset.from_list(make_pairs(n, seed=seed))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory for ``adadpo train`` runs: ``model/`` (a tiny model), ``data/`` and ``chat/`` (train and test
    jsonl, plain and conversational pairs); see ``tiny.cli_config``."""
    from tiny import make_pairs, save_tiny_model, write_jsonl

    root = tmp_path_factory.mktemp("cli")
    save_tiny_model(root / "model")
    write_jsonl(root / "data" / "train.jsonl", make_pairs(24, seed=0))
    write_jsonl(root / "data" / "test.jsonl", make_pairs(8, seed=1))
    write_jsonl(root / "chat" / "train.jsonl", make_pairs(16, seed=2, conversational=True))
    write_jsonl(root / "chat" / "test.jsonl", make_pairs(4, seed=3, conversational=True))
    return root
