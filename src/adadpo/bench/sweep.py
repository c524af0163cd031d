"""A sweep: methods x beta x learning rate x seeds in one world, run in parallel, resumable.

A :class:`SweepConfig` comes from YAML (see ``examples/sweep_dpo.yaml``)::

    world: {seed: 0}               # WorldConfig fields (optional); {kind: smollm2, ...}: the real-LM world
    budget: {epochs: 1}            # Budget fields (optional)
    betas: [0.05, 0.1, 0.2]
    learning_rates: [1.0e-4, 2.0e-4, 4.0e-4]
    seeds: [0, 1, 2]
    methods:
      - {name: DPO, loss: dpo}
      - {name: AdaDPO, loss: dpo, balance: {}}      # {} = the default Balance(); fields override
    comparisons: [[DPO, AdaDPO]]   # optional; default: each balanced method vs the plain one of its loss
    epochs: [2, 3]                 # optional grid axis: each run's epochs (default: the budget's, no axis)
    untrained: true                # optional: also evaluate the untrained reference with every seed
    reuse: [docs/results/smollm2/dpo]  # optional: take finished runs from these sweeps' output directories
    workers: 2                     # processes, one thread each

Every value is checked when the file is loaded, before a world is built or a worker starts
(:mod:`adadpo.bench.sweep_config`: each method is built into its training config at every beta; a single value
where a list is expected is the one-element list; ``balance: true`` is the default balance).

The ``sweep.json`` a sweep writes beside its results is such a file too (its world's kind as ``world_kind``), so
``adadpo sweep --config DIR/sweep.json --output_dir DIR --report_only`` rewrites a sweep's report from its results.

Each finished run is appended to ``results.jsonl`` at once; a rerun skips the runs already there (same
world, budget and key), so a killed sweep resumes where it stopped. With ``reuse``, a run already finished in
another sweep's output directory with the same world, budget and key (the untrained model's evaluation, which
every grid in one world shares, or a gate's runs inside a grid) is copied from there, marked ``reused_from``,
instead of being run again.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from adadpo.bench import records
from adadpo.bench.run import UNTRAINED, Budget, Method, RunSpec
from adadpo.bench.sweep_config import check_methods, checked_values, repeated_key
from adadpo.bench.world import WORLDS, World, get_world


def _oracle_config() -> Any:
    return get_world("oracle").config_cls()


@dataclass
class SweepConfig:
    methods: list[Method]
    betas: list[float]
    learning_rates: list[float]
    seeds: list[int]
    world: Any = field(default_factory=_oracle_config)  # the kind's config (WorldConfig for the oracle)
    budget: Any = field(default_factory=Budget)  # the kind's budget
    comparisons: list[tuple[str, str]] = field(default_factory=list)
    workers: int = 2
    world_kind: str = "oracle"
    epochs: list[int] | None = None
    untrained: bool = False
    reuse: list[str] = field(default_factory=list)  # other sweeps' output directories to take finished runs from

    def __post_init__(self) -> None:
        kind = get_world(self.world_kind)
        for name, value, cls in (("world", self.world, kind.config_cls), ("budget", self.budget, kind.budget_cls)):
            if type(value) is not cls:
                raise ValueError(f"{name}: a {self.world_kind} sweep needs a {cls.__name__}, got {type(value).__name__}")
        names = [m.name for m in self.methods]
        if len(set(names)) != len(names):
            raise ValueError(f"methods: names must be unique, got {names}")
        for key in ("methods", "betas", "learning_rates", "seeds"):
            if not getattr(self, key):
                raise ValueError(f"{key}: needs at least one entry")
        if not self.comparisons:
            self.comparisons = default_comparisons(self.methods)
        for base, cand in self.comparisons:
            for name in (base, cand):
                if name not in names:
                    raise ValueError(f"comparisons: unknown method {name!r}; methods are {names}")
        if self.workers < 1:
            raise ValueError(f"workers={self.workers}: need >= 1")
        if self.epochs is not None and (not self.epochs or any(e < 1 for e in self.epochs)):
            raise ValueError(f"epochs={self.epochs}: need a non-empty list of integers >= 1")
        if UNTRAINED in names:
            raise ValueError(f"methods: {UNTRAINED!r} is the name of the untrained reference's rows")

    def runs(self) -> list[RunSpec]:
        """Every run, seed-major, so an interrupted sweep has full grids for the first seeds; with
        ``untrained``, each seed starts with the untrained reference's evaluation."""
        epochs = self.epochs or [None]
        out = []
        for s in self.seeds:
            if self.untrained:
                out.append(RunSpec.untrained(s))
            out += [RunSpec(m, b, lr, s, e) for b in self.betas for lr in self.learning_rates for e in epochs
                    for m in self.methods]
        return out


def default_comparisons(methods: Iterable[Method]) -> list[tuple[str, str]]:
    """Each balanced method vs the plain method with the same loss and parameters, where there is one."""
    methods = list(methods)
    plain = {(m.loss, json.dumps(m.params, sort_keys=True)): m.name for m in methods if m.balance is None}
    out = []
    for m in methods:
        base = plain.get((m.loss, json.dumps(m.params, sort_keys=True)))
        if m.balance is not None and base is not None:
            out.append((base, m.name))
    return out


def _dataclass_from(cls: type, values: dict[str, Any] | None, where: str):
    values = dict(values or {})
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown}; known: {sorted(known)}")
    defaults = cls()
    for key, given in values.items():
        kind = type(getattr(defaults, key))
        if kind in (int, float):
            if isinstance(given, bool) or not isinstance(given, (int, float)) or (kind is int and given != int(given)):
                raise ValueError(f"{where}: {key}={given!r} must be {'an integer' if kind is int else 'a number'}")
            values[key] = kind(given)
    return cls(**values)


def _yaml_mapping(path: str | os.PathLike, expected: str) -> dict[str, Any]:
    """The YAML mapping in ``path``; a missing file, a syntax error or another top-level type is a ValueError
    naming the file and what was expected (the CLI shows it without a traceback)."""
    import yaml

    try:
        with open(path) as f:
            text = f.read()
        raw = yaml.safe_load(text) or {}
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file (expected a YAML file with {expected})") from None
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected {expected}, got {type(raw).__name__}")
    repeated = repeated_key(text)
    if repeated:
        raise ValueError(f"{path}: {repeated} is given twice; the last would silently win: keep one")
    return raw


def load_world_config(path: str | os.PathLike, kind: str | None = None) -> tuple[str, Any]:
    """``(kind, config)`` from a YAML mapping of the world's config fields (the rest keep their defaults).

    The world's kind is the file's ``kind`` key (``oracle`` when absent); a ``kind`` argument, if given, must
    agree with it.
    """
    raw = _yaml_mapping(path, "a mapping of world config fields")
    given = str(raw.pop("kind", kind or "oracle"))
    if kind is not None and given != kind:
        raise ValueError(f"{path}: kind={given!r} but the {kind} world was asked for")
    if given not in WORLDS:
        raise ValueError(f"{path}: kind={given!r}; expected one of {list(WORLDS)}")
    return given, _dataclass_from(get_world(given).config_cls, raw, str(path))


def load_sweep_config(path: str | os.PathLike) -> SweepConfig:
    """Read a sweep YAML file; errors name the offending key."""
    raw = _yaml_mapping(path, "a mapping at the top level")
    allowed = {"world", "budget", "betas", "learning_rates", "seeds", "methods", "comparisons", "workers", "epochs",
               "untrained", "reuse", "world_kind"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    for key in ("methods", "betas", "learning_rates", "seeds"):
        if key not in raw:
            raise ValueError(f"{path}: missing {key!r}")
    raw = checked_values(raw, str(path))
    methods = []
    for i, m in enumerate(raw["methods"]):
        try:
            methods.append(Method(m["name"], m["loss"], m["balance"], m["params"]))
        except ValueError as err:
            raise ValueError(f"{path}: methods[{i}]: {err}") from None
    check_methods(methods, raw["betas"], raw["learning_rates"][0], str(path))
    world = dict(raw.get("world") or {})
    # a sweep's own sweep.json names its world's kind at the top level (sweep_config_dict), a YAML file in world:
    name = str(world.pop("kind", raw.get("world_kind", "oracle")))
    if raw.get("world_kind", name) != name:
        raise ValueError(f"{path}: world_kind={raw['world_kind']!r} but world: kind={name!r}")
    if name not in WORLDS:
        key = "world_kind" if "world_kind" in raw else "world: kind"
        raise ValueError(f"{path}: {key}={name!r}; expected one of {list(WORLDS)}")
    kind = get_world(name)
    try:
        return SweepConfig(
            methods=methods, betas=raw["betas"], learning_rates=raw["learning_rates"], seeds=raw["seeds"],
            world=_dataclass_from(kind.config_cls, world, f"{path}: world"),
            budget=_dataclass_from(kind.budget_cls, raw.get("budget"), f"{path}: budget"),
            comparisons=[tuple(c) for c in raw.get("comparisons") or []], workers=int(raw.get("workers", 2)),
            world_kind=name, epochs=_int_list(raw["epochs"], f"{path}: epochs") if "epochs" in raw else None,
            untrained=_flag(raw.get("untrained", False), f"{path}: untrained"),
            reuse=_str_list(raw.get("reuse", []), f"{path}: reuse"),
        )
    except ValueError as err:  # SweepConfig's own checks (comparisons, names): the file too
        raise ValueError(err if str(err).startswith(str(path)) else f"{path}: {err}") from None


def _int_list(values: Any, where: str) -> list[int]:
    if not isinstance(values, list) or any(isinstance(v, bool) or not isinstance(v, int) for v in values):
        raise ValueError(f"{where}={values!r}: expected a list of integers")
    return list(values)


def _str_list(values: Any, where: str) -> list[str]:
    if not isinstance(values, list) or any(not isinstance(v, str) for v in values):
        raise ValueError(f"{where}={values!r}: expected a list of directories")
    return list(values)


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{where}={value!r}: expected true or false")
    return value


def sweep_config_dict(config: SweepConfig) -> dict[str, Any]:
    """The config as plain data (written next to the results)."""
    kind = {} if config.world_kind == "oracle" else {"world_kind": config.world_kind}
    return {
        **kind, "world": asdict(config.world), "budget": asdict(config.budget), "betas": config.betas,
        "learning_rates": config.learning_rates, "seeds": config.seeds,
        "methods": [{"name": m.name, "loss": m.loss, "balance": m.balance, "params": m.params} for m in config.methods],
        "comparisons": [list(c) for c in config.comparisons], "workers": config.workers,
        **({"epochs": config.epochs} if config.epochs is not None else {}),
        **({"untrained": True} if config.untrained else {}),
        **({"reuse": config.reuse} if config.reuse else {}),
    }


def read_results(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a ``results.jsonl``; a torn last line (a killed write) is ignored."""
    rows = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    return rows


def wall_time(output_dir: str | os.PathLike) -> tuple[int, float]:
    """Runs trained and seconds spent by the invocations of :func:`run_sweep` on ``output_dir`` (``timing.jsonl``)."""
    rows = read_results(Path(output_dir) / "timing.jsonl")
    return sum(r["runs"] for r in rows), sum(r["seconds"] for r in rows)


def _drop_torn_tail(path: Path) -> None:
    """Cut a last line without its newline (a write killed half-way), so the next append starts clean."""
    if not path.exists() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])


def _quiet() -> None:
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore")


_WORLD: Any = None
_KIND: World | None = None
_THREADS = 1


def _init_worker(kind: str, config: Any, cache_dir: str | None, threads: int) -> None:
    global _WORLD, _KIND, _THREADS
    import torch

    torch.set_num_threads(threads)
    _quiet()
    _KIND, _THREADS = get_world(kind), threads
    _WORLD = _KIND.build(config, cache_dir)


def _run_in_worker(spec: RunSpec, budget: Any) -> dict[str, Any]:
    assert _WORLD is not None and _KIND is not None
    return _KIND.run(_WORLD, spec, budget, threads=_THREADS)


def run_sweep(config: SweepConfig, output_dir: str | os.PathLike, cache_dir: str | None = None,
              progress: Callable[[str, int, int], None] | None = None) -> list[dict[str, Any]]:
    """Run every run not yet in ``output_dir/results.jsonl``; return all rows for this world and budget."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    from adadpo.trl import DirLock

    with DirLock(str(out), "--output-dir"):  # two sweeps into one directory would train every run twice
        return _run_sweep(config, out, cache_dir, progress)


def _run_sweep(config: SweepConfig, out: Path, cache_dir: str | None,
               progress: Callable[[str, int, int], None] | None) -> list[dict[str, Any]]:
    (out / "sweep.json").write_text(json.dumps(sweep_config_dict(config), indent=2))
    results_path = out / "results.jsonl"
    _drop_torn_tail(results_path)
    get_world(config.world_kind).build(config.world, cache_dir, progress)  # once, here, before the workers load it
    done = {r["key"] for r in finished_rows(config, out)}
    _copy_reused(config, out, done)
    todo = [s for s in config.runs() if s.key not in done]
    total = len(config.runs())
    if progress:
        progress("training runs", total - len(todo), total)
    if todo:
        started = time.time()
        _run_all(config, todo, results_path, cache_dir, progress, total - len(todo), total)
        with open(out / "timing.jsonl", "a") as f:
            f.write(json.dumps({"runs": len(todo), "workers": config.workers, "seconds": time.time() - started}) + "\n")
    return finished_rows(config, out)


def finished_rows(config: SweepConfig, output_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of ``output_dir/results.jsonl`` that belong to ``config``: its world, budget and runs, one row per
    run (the first written; a run recorded twice, by sweeps that once ran side by side, counts once)."""
    wkey = config.world.key()
    wanted = {s.key for s in config.runs()}
    rows: dict[str, dict[str, Any]] = {}
    for r in read_results(Path(output_dir) / "results.jsonl"):
        if r.get("world") == wkey and same_budget(r.get("budget"), config.budget) and r.get("key") in wanted:
            rows.setdefault(r["key"], r)
    return list(rows.values())


def same_budget(recorded: dict[str, Any] | None, budget: Any) -> bool:
    """Whether a row's recorded budget is ``budget``. A field the budget class gained after the row was written
    reads as its default there (what runs did before the field existed), so adding a field with a default
    that keeps the old behaviour does not orphan finished runs."""
    if not isinstance(recorded, dict):
        return False
    defaults = asdict(type(budget)())
    return {**{k: v for k, v in defaults.items() if k not in recorded}, **recorded} == asdict(budget)


def _copy_reused(config: SweepConfig, out: Path, done: set[str]) -> None:
    """Append to ``out/results.jsonl`` the runs of ``config`` not in ``done`` that another sweep listed in
    ``config.reuse`` has finished (same world, budget and key), each marked ``reused_from``; adds their keys to
    ``done``. A directory that does not exist is an error naming it."""
    for source in config.reuse:
        if not (Path(source) / "results.jsonl").is_file():
            raise ValueError(f"reuse: {source!r} has no results.jsonl (expected a sweep's output directory)")
        if Path(source).resolve() == out.resolve():
            continue
        for row in finished_rows(config, source):
            if row["key"] not in done:
                _append_row(out / "results.jsonl",
                            records.store(out, {**row, "reused_from": row.get("reused_from", source)}, source))
                done.add(row["key"])


def _append_row(path: Path, row: dict) -> None:
    """Append one row to a ``results.jsonl``, flushed and synced: a killed sweep loses at most the row being
    written (cut by :func:`_drop_torn_tail` on the next start)."""
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _run_all(config: SweepConfig, todo: list[RunSpec], results_path: Path, cache_dir: str | None,
             progress: Callable[[str, int, int], None] | None, finished: int, total: int) -> None:
    def record(row: dict) -> None:
        nonlocal finished
        _append_row(results_path, records.store(results_path.parent, row))  # the records first, then the row
        finished += 1
        if progress:
            progress("training runs", finished, total)

    threads = get_world(config.world_kind).threads(config.workers)
    if config.workers == 1:
        _init_worker(config.world_kind, config.world, cache_dir, threads)
        for spec in todo:
            record(_run_in_worker(spec, config.budget))
        return
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(config.workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(config.world_kind, config.world, cache_dir, threads)) as pool:
        pending = {pool.submit(_run_in_worker, spec, config.budget) for spec in todo}
        while pending:
            ready, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in ready:
                record(fut.result())
