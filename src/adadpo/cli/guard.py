"""What ``adadpo train`` could overwrite: ``output_dir`` checked against what the run reads and other runs' files,
before anything is written.

A run writes its final model (``model.safetensors``, ``config.json``, the tokenizer), checkpoints and metrics into
``output_dir``, and ``overwrite_output_dir`` removes files there. So ``output_dir`` must not be:

* a directory the run reads (:func:`sources`): the model, the tokenizer, the dataset (a file or a directory, also
  each local path of a ``datasets`` mixture), nor one that contains any of them (a dataset file's own folder,
  say: its metrics would be read as data by a later run of that folder);
* inside a dataset directory (a later run of that directory would read the run's files as data);
* inside another run's directory (its ``adadpo_run.json`` or lock) or inside, or equal to, a checkpoint (a
  ``checkpoint-N`` with its ``trainer_state.json``): that run would resume from overwritten weights.

Each is a ``ValueError`` in one line naming both paths. Paths are compared after ``~`` expansion and symlink
resolution (``os.path.realpath``).

A path-valued key holding ``$VAR`` or ``${VAR}`` is refused (:func:`check_no_variables`): YAML and TRL do not expand
variables, so ``output_dir: $SCRATCH/run`` would create a directory literally named ``$SCRATCH``. The shell expands
them on the command line; in a config file, write the path out.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

from adadpo.cli.run_dir import RECORD
from adadpo.trl.dirlock import LOCK

CHECKPOINT_NAME = re.compile(r"checkpoint-\d+$")
VARIABLE = re.compile(r"\$(\{\w+\}|\w+)")
#: The keys of ``adadpo train`` whose value is a path (or a Hub id), and those of a ``datasets`` mixture entry.
PATH_KEYS = ("output_dir", "model_name_or_path", "tokenizer_name_or_path", "dataset_name", "resume_from_checkpoint",
             "deepspeed", "fsdp_config", "accelerator_config")
MIXTURE_PATH_KEYS = ("path", "data_dir", "data_files")


def path_values(config: dict[str, Any]) -> list[tuple[str, Any]]:
    """``(key, value)`` of every path-valued key of a config mapping (:data:`PATH_KEYS`, and each mixture entry's
    :data:`MIXTURE_PATH_KEYS`, lists flattened)."""
    values = [(k, config[k]) for k in PATH_KEYS if k in config]
    for n, entry in enumerate(config.get("datasets") or []):
        for k in MIXTURE_PATH_KEYS:
            value = entry.get(k) if isinstance(entry, dict) else getattr(entry, k, None)
            values += [(f"datasets[{n}].{k}", v) for v in (value if isinstance(value, list) else [value])]
    return values


def check_no_variables(values: list[tuple[str, Any]]) -> None:
    """``ValueError`` naming the key and the variable when one of ``values`` (:func:`path_values`) holds an
    unexpanded ``$VAR``."""
    for key, value in values:
        found = VARIABLE.search(value) if isinstance(value, str) else None
        if found:
            name = found.group(1).strip("{}")
            state = "set" if name in os.environ else "not set"
            raise ValueError(f"{key}={value!r} holds the variable {found.group(0)} ({state} here), which is not "
                             "expanded in a config file; write the path out (on the command line the shell expands "
                             "it)")


def _local(value: Any) -> str | None:
    """``value``'s real path when it names something on this machine, else ``None`` (a Hub id, unset)."""
    if not isinstance(value, str) or not value:
        return None
    path = os.path.expanduser(value)
    return os.path.realpath(path) if os.path.exists(path) else None


def sources(script: Any, model_args: Any, mixture: Any = None) -> Iterator[tuple[str, str, bool]]:
    """``(key=value, real path, is_data)`` of every local path the run reads."""
    for key, value in (("model_name_or_path", model_args.model_name_or_path),
                       ("tokenizer_name_or_path", getattr(script, "tokenizer_name_or_path", None)),
                       ("dataset_name", script.dataset_name)):
        path = _local(value)
        if path:
            yield f"{key}={value!r}", path, key == "dataset_name"
    for i, entry in enumerate(getattr(mixture, "datasets", None) or []):
        for attr in ("path", "data_dir"):
            value = getattr(entry, attr, None) if not isinstance(entry, dict) else entry.get(attr)
            path = _local(value)
            if path:
                yield f"datasets[{i}].{attr}={value!r}", path, True


def _within(path: str, root: str) -> bool:
    """``path`` is ``root`` or lies below it."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _is_checkpoint(path: str) -> bool:
    return bool(CHECKPOINT_NAME.match(os.path.basename(path))) and os.path.isfile(
        os.path.join(path, "trainer_state.json"))


def other_run(output_dir: str) -> str | None:
    """The other run's directory or checkpoint that ``output_dir`` (a real path) lies inside, or is (a
    checkpoint), or ``None``."""
    if _is_checkpoint(output_dir):
        return output_dir
    parent = os.path.dirname(output_dir)
    while parent != os.path.dirname(parent):
        if _is_checkpoint(parent) or any(os.path.exists(os.path.join(parent, n)) for n in (RECORD, LOCK)):
            return parent
        parent = os.path.dirname(parent)
    return None


def check_output_dir(output_dir: str, script: Any, model_args: Any, mixture: Any = None) -> None:
    """``ValueError`` (one line, both paths) when writing into ``output_dir`` could overwrite or mix what the run
    reads or another run keeps (the module's rules). Reads only."""
    out = os.path.realpath(os.path.expanduser(output_dir))
    shown = f"output_dir={output_dir!r}"
    for what, path, is_data in sources(script, model_args, mixture):
        if out == path:
            raise ValueError(f"{shown} is the path of {what}: the run's model, checkpoints and metrics would be "
                             "written over it; choose another output_dir")
        if _within(path, out):
            raise ValueError(f"{shown} contains {what} ({path}): the run would write its model, checkpoints and "
                             "metrics beside it; choose an output_dir outside it")
        if is_data and os.path.isdir(path) and _within(out, path):
            raise ValueError(f"{shown} lies inside the dataset directory of {what}: a later run of that directory "
                             "would read this run's files as data; choose an output_dir outside it")
    run = other_run(out)
    if run is not None:
        what = "is a checkpoint" if run == out else f"lies inside {'a checkpoint' if _is_checkpoint(run) else 'the directory'}"
        raise ValueError(f"{shown} {what} of another run ({run}): writing there would overwrite what that run "
                         "resumes from; choose an output_dir outside it")
