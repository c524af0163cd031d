"""A sweep file's values checked when it is loaded, before a world is built or a worker starts.

:func:`checked_values` takes the YAML mapping of a sweep file and returns it with each grid key as a list of
the right type, or raises one line naming the file and the key:

* ``betas`` and ``learning_rates``: finite numbers > 0 (YAML 1.1's string ``1e-4`` read as the number); ``seeds``, ``epochs``: integers (``3.0`` is 3, ``0.5`` is
  refused, where ``int()`` truncated it); ``workers``: an integer >= 1; ``untrained``: a bool; ``reuse``:
  directories. A single value where a list is expected (``betas: 0.1``) is the one-element list.
* ``methods``: each a mapping with ``name`` (unique) and ``loss``, ``balance`` (``true`` is the default balance,
  ``{}``; ``false`` or absent the plain loss; else a mapping of ``adadpo.Balance`` fields) and ``params`` (loss
  parameters: ``gamma``, ``length_alpha``, ...). Every method is built into its training config
  (``AdaDPOConfig``) for every beta, so an unknown loss, a bad balance field or parameter, or a beta the loss
  refuses fails here, naming the method, and not inside a worker after the world was built.
* ``comparisons``: pairs of method names.

A key given twice in one mapping of the file (:func:`repeated_key`) is refused too.
"""

from __future__ import annotations

import math
import os
import tempfile
from typing import Any

#: The grid keys that take a list, and the kind of their items.
LISTS = {"betas": "positive", "learning_rates": "positive", "seeds": "integer", "epochs": "integer",
         "reuse": "directory"}
METHOD_KEYS = ("name", "loss", "balance", "params")


def repeated_key(text: str) -> str | None:
    """``"key 'betas' (lines 2 and 5)"`` for the first key a YAML mapping of ``text`` gives twice (PyYAML keeps
    the last without a word), or ``None``; text that does not parse is left to the loader, which says why."""
    import yaml

    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return None
    todo = [root] if root is not None else []
    while todo:
        node = todo.pop()
        if isinstance(node, yaml.MappingNode):
            lines: dict[str, int] = {}
            for key, value in node.value:
                name = str(key.value)
                if name in lines:
                    return f"key {name!r} (lines {lines[name]} and {key.start_mark.line + 1})"
                lines[name] = key.start_mark.line + 1
                todo.append(value)
        elif isinstance(node, yaml.SequenceNode):
            todo += node.value
    return None


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _item(value: Any, kind: str, where: str) -> Any:
    if kind == "directory":
        if not isinstance(value, str) or not value:
            raise ValueError(f"{where}={value!r}: expected a directory (a string)")
        return value
    if kind == "positive" and isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where}={value!r}: expected {'an integer' if kind == 'integer' else 'a finite number'}")
    if kind == "integer":
        if value != int(value):
            raise ValueError(f"{where}={value!r}: expected an integer, not a fraction")
        return int(value)
    if value <= 0:
        raise ValueError(f"{where}={value!r}: expected a number > 0")
    return float(value)


def _balance(value: Any, where: str) -> dict[str, Any] | None:
    if value is None or value is False:
        return None
    if value is True:
        return {}  # the default Balance()
    if not isinstance(value, dict):
        raise ValueError(f"{where}={value!r}: expected true (the default balance), false, or a mapping of "
                         "adadpo.Balance fields")
    return dict(value)


def _method(raw: Any, i: int, path: str) -> dict[str, Any]:
    where = f"{path}: methods[{i}]"
    if not isinstance(raw, dict) or "name" not in raw or "loss" not in raw:
        raise ValueError(f"{where} must be a mapping with 'name' and 'loss', got {raw!r}")
    extra = sorted(set(raw) - set(METHOD_KEYS))
    if extra:
        raise ValueError(f"{where} has unknown key(s) {extra}; allowed: {', '.join(METHOD_KEYS)}")
    params = raw.get("params") or {}
    if not isinstance(params, dict):
        raise ValueError(f"{where}.params={params!r}: expected a mapping of loss parameters (gamma, ...)")
    return {"name": str(raw["name"]), "loss": raw["loss"], "balance": _balance(raw.get("balance"), f"{where}.balance"),
            "params": dict(params)}


def checked_values(raw: dict[str, Any], path: str) -> dict[str, Any]:
    """``raw`` (a sweep file's mapping) with every value checked and normalised (the module's rules)."""
    out = dict(raw)
    for key, kind in LISTS.items():
        if key in raw:
            items = _as_list(raw[key])
            if not items:
                raise ValueError(f"{path}: {key}: needs at least one entry")
            out[key] = [_item(v, kind, f"{path}: {key}[{j}]") for j, v in enumerate(items)]
    if "workers" in raw:
        out["workers"] = _item(raw["workers"], "integer", f"{path}: workers")
        if out["workers"] < 1:
            raise ValueError(f"{path}: workers={raw['workers']!r}: expected an integer >= 1")
    for key in ("untrained",):
        if key in raw and not isinstance(raw[key], bool):
            raise ValueError(f"{path}: {key}={raw[key]!r}: expected true or false")
    for key in ("world", "budget"):
        if raw.get(key) is not None and not isinstance(raw[key], dict):
            raise ValueError(f"{path}: {key}={raw[key]!r}: expected a mapping of its fields")
    if "methods" in raw:
        if not isinstance(raw["methods"], list) or not raw["methods"]:
            raise ValueError(f"{path}: methods={raw['methods']!r}: expected a list of methods")
        out["methods"] = [_method(m, i, path) for i, m in enumerate(raw["methods"])]
    comparisons = raw.get("comparisons") or []
    if not isinstance(comparisons, list) or any(
            not isinstance(c, (list, tuple)) or len(c) != 2 or not all(isinstance(n, str) for n in c)
            for c in comparisons):
        raise ValueError(f"{path}: comparisons={comparisons!r}: expected a list of [plain, balanced] method-name pairs")
    return out


def check_methods(methods: list[Any], betas: list[float], learning_rate: float, path: str) -> None:
    """Build every method (``adadpo.bench.run.Method``) into its ``AdaDPOConfig`` at every beta: what a worker
    would build first; ``ValueError`` naming the file, the method and the key it refused."""
    import logging

    from adadpo.trl import AdaDPOConfig

    quiet = logging.getLogger("adadpo")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the runs give the configs' notices (a loss's usual beta) where they train
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for i, method in enumerate(methods):
                for beta in betas:
                    try:
                        AdaDPOConfig(output_dir=os.path.join(tmp, "check"), beta=beta, learning_rate=learning_rate,
                                     report_to="none", save_strategy="no", use_cpu=True,
                                     **method.config_fields())
                    except TypeError as err:
                        unknown = str(err).rsplit(" ", 1)[-1].strip("'")
                        raise ValueError(f"{path}: methods[{i}] ({method.name}): {unknown!r} is not a parameter of "
                                         f"loss={method.loss!r} nor a balance field") from None
                    except ValueError as err:
                        raise ValueError(f"{path}: methods[{i}] ({method.name}), beta={beta:g}: "
                                         f"{str(err).splitlines()[0]}") from None
    finally:
        quiet.setLevel(level)
