"""Generated tests: every numeric and enum field of ``adadpo train``'s config (adadpo's, TRL's, transformers') driven
through ``adadpo train`` with a wrong type, NaN, values out of range and values at the boundary.

A bad value ends in a non-zero exit and one line that names the field, with no traceback, before anything is
loaded or trained; a boundary value passes the config's checks (parsed and checked, nothing trained)."""

from __future__ import annotations

import math
from dataclasses import fields
from pathlib import Path
from typing import get_type_hints

import pytest
import yaml

from adadpo.cli import main
from adadpo.cli.train import _dataclass_types, parse
from adadpo.core.balance import Balance, balance_options
from adadpo.core.logps import CHUNK_SIZE
from adadpo.core.params import LIMIT
from adadpo.core.registry import BETA
from adadpo.core.spec import LOSS_PARAMS
from adadpo.trl.config import LOSS_PARAM_FIELDS
from adadpo.trl.ranges import RANGES, check_fields, choices, numeric_kind


def _fields() -> list[tuple[str, object, object]]:
    return [(f.name, f, get_type_hints(dc)[f.name]) for dc in _dataclass_types() for f in fields(dc)]


NUMERIC = {name: numeric_kind(hint) for name, _, hint in _fields() if numeric_kind(hint)}
ENUMS = {name: choices(f, hint) for name, f, hint in _fields() if choices(f, hint) is not None}
BASE = {"model_name_or_path": "no-such-model", "dataset_name": "no-such-data", "report_to": "none"}


def test_every_numeric_field_has_a_range():
    assert sorted(set(NUMERIC) - set(RANGES)) == []  # a new numeric field needs its range in adadpo.trl.ranges
    assert sorted(set(RANGES) - set(NUMERIC)) == []  # a renamed or removed one


def _bad_values(name: str) -> list[tuple[str, object]]:
    """(label, value) of a YAML value that must be refused for numeric field ``name``."""
    rng, kind = RANGES[name], NUMERIC[name]
    cases: list[tuple[str, object]] = [("string", "abc"), ("bool", True), ("nan", math.nan)]
    if rng.lo is not None and rng.lo > -math.inf:
        below = rng.lo if rng.lo_open else rng.lo - (1 if kind is int or rng.lo >= 1 else max(rng.lo, 1e-3) / 2 + 1e-3)
        if below not in rng.also and not rng.holds(below):
            cases.append(("below", int(below) if kind is int else below))
    if rng.hi is not None and rng.hi < math.inf:
        above = rng.hi if rng.hi_open else rng.hi + (1 if kind is int or rng.hi >= 1 else 0.5)
        cases.append(("above", int(above) if kind is int else above))
    if rng.hi is None or rng.hi == math.inf and rng.lo is not None:
        cases.append(("inf", -math.inf if rng.hi == math.inf else math.inf))
    if kind is int:
        cases.append(("fraction", (rng.lo if rng.lo is not None and rng.lo > 0 else 1) + 0.5))
    return cases


def _boundary_values(name: str) -> list[object]:
    rng, kind = RANGES[name], NUMERIC[name]
    values = [v for v in (rng.lo, rng.hi) if v is not None and math.isfinite(v) and rng.holds(v)]
    if rng.lo is not None and rng.lo_open:
        values.append(rng.lo + 1 if kind is int else rng.lo + 1e-3)
    return [int(v) if kind is int else v for v in values] + list(rng.also)


BAD = [(name, label, value) for name in sorted(NUMERIC) for label, value in _bad_values(name)]
BAD += [(name, "choice", value) for name in sorted(ENUMS) for value in ("bogus-choice", 5)]
BOUNDARY = [(name, value) for name in sorted(NUMERIC) for value in _boundary_values(name)]


def _train(tmp_path: Path, config: dict, *argv: str) -> int:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({**BASE, "output_dir": str(tmp_path / "out"), **config}))
    return main(["train", "--config", str(path), *argv])


@pytest.mark.parametrize(("name", "label", "value"), BAD, ids=[f"{n}-{label}-{v!r}" for n, label, v in BAD])
def test_a_bad_value_is_one_line_naming_the_field(tmp_path, capsys, name, label, value):
    with pytest.raises(SystemExit) as info:  # before: many trained (learning_rate: -1), or failed deep inside
        _train(tmp_path, {name: value})
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert info.value.code != 0 and len(lines) == 1 and "Traceback" not in err, err[-2000:]
    assert lines[0].startswith("adadpo train: error: ") and name in lines[0], lines[0]
    assert not (tmp_path / "out").exists()  # refused before the run touched anything


@pytest.mark.parametrize("name", sorted(NUMERIC)[::6])
def test_a_bad_value_on_the_command_line_is_one_line_too(tmp_path, capsys, name):
    with pytest.raises(SystemExit):
        _train(tmp_path, {}, f"--{name}", "abc")
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and name in lines[0], lines


@pytest.mark.parametrize(("name", "value"), BOUNDARY, ids=[f"{n}={v!r}" for n, v in BOUNDARY])
def test_a_boundary_value_passes_the_checks(name, value):
    """The config's checks refuse only what is out of range (other keys' rules aside, nothing is trained)."""
    extra = {"eval_strategy": "steps"} if name in ("eval_steps", "eval_delay", "eval_accumulation_steps") else {}
    extra |= {"dataloader_num_workers": 1} if name == "dataloader_prefetch_factor" else {}
    if name in LOSS_PARAM_FIELDS:  # adadpo's loss parameters: for a loss that takes the value (the registry's)
        extra["loss"] = next(loss for loss, p in LOSS_PARAM_FIELDS[name].takers.items() if p.holds(value))
    argv = [token for key, v in {**BASE, **extra, name: value}.items() for token in (f"--{key}", str(v))]
    parsed = parse(argv)
    for instance in parsed.instances:
        check_fields(instance)


def _probes(bounds: list[float], step: float = 1e-3) -> list[float]:
    """Values at, just inside and just outside each bound, and the magnitude limit's edges."""
    near = [b + d for b in bounds for d in (-step, 0.0, step)]
    return sorted({*near, 0.0, -LIMIT, LIMIT, -2 * LIMIT, 2 * LIMIT, math.inf, -math.inf})


def _declared_ok(check, value: float) -> bool:
    try:
        check(value)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("name", sorted(LOSS_PARAMS))
def test_a_loss_parameter_range_is_its_declarations(name):
    """A loss parameter's config range is the union of its losses' declared bounds (they overlap, so the union is
    the hull ``param_range`` takes): no value a loss takes is refused, none that every loss refuses passes."""
    takers = LOSS_PARAMS[name].takers
    for x in _probes([b for p in takers.values() for b in (p.low, p.high) if b is not None]):
        declared = any(_declared_ok(lambda v, p=p, loss=loss: p.check(v, loss), x) for loss, p in takers.items())
        assert (RANGES[name].holds(x) and math.isfinite(x)) == declared, x


@pytest.mark.parametrize(("name", "param"), [("beta", BETA), ("logps_chunk_size", CHUNK_SIZE)])
def test_beta_and_chunk_size_ranges_are_their_declarations(name, param):
    for x in _probes([b for b in (param.low, param.high) if b is not None], 1 if param.kind is int else 1e-3):
        value = int(x) if param.kind is int and math.isfinite(x) else x  # fractions: test_a_bad_value_...
        assert (RANGES[name].holds(value) and math.isfinite(value)) == _declared_ok(param.check, value), value


@pytest.mark.parametrize("option", [o for o in balance_options() if o.kind is float], ids=lambda o: o.name)
def test_a_balance_range_is_what_balance_accepts(option):
    for x in _probes([option.low] if option.low is not None else []):
        accepted = _declared_ok(lambda v: Balance(**{option.name: v}), x)
        rng = RANGES[f"balance_{option.name}"]
        assert (rng.holds(x) and (math.isfinite(x) or rng.hi == math.inf and x > 0)) == accepted, x
