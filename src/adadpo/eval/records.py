"""Reading pairwise comparisons of several models against one baseline from files, for the LC across models.

Two record formats, one JSON object per comparison, in a ``.json`` array or a ``.jsonl`` file (one a line):

* AlpacaEval's annotations: ``instruction``, ``output_1`` (the baseline's answer), ``output_2`` (the model's),
  ``generator_1`` (the baseline), ``generator_2`` (the model), ``preference`` in ``[1, 2]`` (2: the model's answer
  preferred, 1.5 or the legacy 0 a tie). Lengths are counted in characters, as AlpacaEval counts them.
* adadpo's per-comparison records: ``model``, ``instruction`` (text, id or ``[prompt_id, answer_index]``),
  ``preference`` = P(model wins) in ``[0, 1]``, ``len_model``, ``len_baseline`` (any one unit, e.g. words) and
  optionally ``baseline``.

Records whose preference is missing or NaN (failed judge calls) are dropped and counted, as AlpacaEval drops them.
Every other problem is a ``ValueError`` naming the file, the record (0-based) and the field.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

from adadpo.eval.lc import _annotation_preference, read_annotations

__all__ = ["Comparisons", "read_comparisons", "read_difficulty_table"]

_ALPACA_FIELDS = ("instruction", "output_1", "output_2", "generator_1", "generator_2", "preference")
_OWN_FIELDS = ("model", "instruction", "preference", "len_model", "len_baseline")


@dataclass
class Comparisons:
    """Parallel per-comparison lists, ready for :func:`adadpo.eval.length_controlled_winrates`."""

    model: list[Hashable] = field(default_factory=list)
    instruction: list[Hashable] = field(default_factory=list)
    preference: list[float] = field(default_factory=list)
    len_model: list[float] = field(default_factory=list)
    len_baseline: list[float] = field(default_factory=list)
    baselines: set[str] = field(default_factory=set)
    units: set[str] = field(default_factory=set)
    dropped: int = 0

    @property
    def length_unit(self) -> str:
        return "characters" if self.units == {"characters"} else "as given in len_model / len_baseline"


def _key(value: Any) -> Hashable:
    return tuple(_key(v) for v in value) if isinstance(value, list) else value


def _number(where: str, name: str, value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where}: {name} = {value!r:.60} is not a finite number; expected {what}")
    return float(value)


def _parse(where: str, record: Mapping[str, Any], i: int) -> tuple[Any, Any, float | None, float, float, Any, str]:
    """(model, instruction, p or None, len_model, len_baseline, baseline, unit) of one record."""
    alpaca = "output_1" in record or "generator_2" in record
    needed = _ALPACA_FIELDS if alpaca else _OWN_FIELDS
    missing = [k for k in needed if k not in record]
    if missing:
        kind = "an AlpacaEval annotation" if alpaca else "a comparison record"
        raise ValueError(f"{where}: no field {', '.join(map(repr, missing))} (as {kind} it needs {', '.join(needed)})")
    instruction = _key(record["instruction"])
    if not isinstance(instruction, Hashable) or instruction is None:
        raise ValueError(f"{where}: instruction = {record['instruction']!r:.60} is not usable as a key; expected a "
                         "text, number or list")
    if alpaca:
        try:
            p = _annotation_preference(i, record)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: {str(err).split(': ', 1)[-1]}") from None
        lengths = []
        for side in ("output_2", "output_1"):
            if not isinstance(record[side], str):
                raise ValueError(f"{where}: {side} is a {type(record[side]).__name__}; expected the answer's text")
            lengths.append(float(len(record[side])))
        return record["generator_2"], instruction, p, lengths[0], lengths[1], record["generator_1"], "characters"
    raw = record["preference"]
    if raw is None or (isinstance(raw, float) and math.isnan(raw)):
        p = None
    else:
        p = _number(where, "preference", raw, "P(model wins) in [0, 1]")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{where}: preference = {p!r} is outside [0, 1]; expected P(model wins) (1 win, 0 loss)")
    lens = [_number(where, k, record[k], "a non-negative answer length") for k in ("len_model", "len_baseline")]
    for k, v in zip(("len_model", "len_baseline"), lens):
        if v < 0:
            raise ValueError(f"{where}: {k} = {v!r} is negative; expected a non-negative answer length")
    return record["model"], instruction, p, lens[0], lens[1], record.get("baseline"), "given"


def read_comparisons(paths: Sequence[str | PathLike[str]]) -> Comparisons:
    """All comparisons in ``paths`` (formats in the module docstring), checked: one baseline, and each model judged at
    most once per instruction."""
    out = Comparisons()
    seen: dict[tuple[Hashable, Hashable], str] = {}
    for path in map(Path, paths):
        if not path.is_file():
            raise ValueError(f"{path}: no such file; expected an annotation file (.json or .jsonl)")
        try:
            records = read_annotations(path)
        except TypeError as err:  # a record that is not an object; the message names the file and record
            raise ValueError(str(err)) from None
        except UnicodeDecodeError as err:
            raise ValueError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
        if not records:
            raise ValueError(f"{path}: holds no records; expected one JSON object per comparison")
        for i, record in enumerate(records):
            where = f"{path}: record {i}"
            model, instruction, p, lm, lb, baseline, unit = _parse(where, record, i)
            if not isinstance(model, Hashable) or isinstance(model, (list, dict)) or model is None:
                raise ValueError(f"{where}: the model's name {model!r:.60} is not a string")
            if p is None:
                out.dropped += 1
                continue
            if (model, instruction) in seen:
                raise ValueError(f"{where}: model {model!r} already has a comparison on this instruction "
                                 f"({seen[model, instruction]}); expected each model judged once per instruction "
                                 "(is a file given twice?)")
            seen[model, instruction] = where
            if baseline is not None:
                out.baselines.add(str(baseline))
            out.units.add(unit)
            for name, value in (("model", str(model)), ("instruction", instruction), ("preference", p),
                                ("len_model", lm), ("len_baseline", lb)):
                getattr(out, name).append(value)
    if len(out.baselines) > 1:
        raise ValueError(f"the files compare against several baselines ({', '.join(sorted(out.baselines))}); LC across "
                         "models needs one shared baseline")
    if not out.preference:
        raise ValueError(f"no usable comparison in {', '.join(map(str, paths))} ({out.dropped} without a preference)")
    return out


def read_difficulty_table(path: str | PathLike[str]) -> dict[Hashable, float]:
    """``{instruction: difficulty}`` from a ``.json`` object or a ``.csv`` with columns ``instruction`` and
    ``difficulty`` (or AlpacaEval's name, ``instruction_difficulty``). Keys are matched to the records' instructions
    by value: AlpacaEval's published table is keyed by row position in its evaluation set, so join it with the
    set's instruction texts first."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file; expected a difficulty table (.csv or .json)")
    if path.suffix == ".json":
        try:
            table = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON ({err}); expected an object "
                             "{instruction: difficulty}") from None
        if not isinstance(table, dict):
            raise ValueError(f"{path} holds a JSON {type(table).__name__}; expected an object "
                             "{instruction: difficulty}")
        return {k: _number(f"{path}: key {k!r:.60}", "difficulty", v, "a number") for k, v in table.items()}
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        value_col = next((c for c in ("difficulty", "instruction_difficulty") if c in columns), None)
        if "instruction" not in columns or value_col is None:
            raise ValueError(f"{path}: columns {columns}; expected 'instruction' and 'difficulty' "
                             "(or 'instruction_difficulty')")
        table = {}
        for row_number, row in enumerate(reader, 2):
            try:
                table[row["instruction"]] = float(row[value_col])
            except (TypeError, ValueError):
                raise ValueError(f"{path}: line {row_number}: {value_col} = {row[value_col]!r:.60} is not a "
                                 "number") from None
            if not math.isfinite(table[row["instruction"]]):
                raise ValueError(f"{path}: line {row_number}: {value_col} = {row[value_col]!r} is not finite")
    return table
