"""What defines a run beyond its config keys: the content of what it reads and the shape of its batch, recorded
with its settings (``adadpo_run.json`` and every checkpoint) so that a resume is the same run or nothing.

* ``dataset_content``: the dataset's files by content (``dataset_name`` or each local path of a ``datasets``
  mixture; a Hub id has none: its name, config and revision are settings already);
* ``model_weights``: the model directory's weights and ``config.json`` by content. TRL's reference model is a copy
  of the model as loaded, so this is the reference's fingerprint too (replacing the model's files mid-run changes
  the reference as well as the starting point);
* ``num_processes`` and ``global_batch`` (``per_device_train_batch_size x processes x
  gradient_accumulation_steps``): a 2-process run resumed in one process would halve its batch.

A path that changed with the same content is the same run (:data:`CONTENT_OF`: a moved dataset file resumes).
"""

from __future__ import annotations

import os
from typing import Any

from adadpo.trl.fingerprint import WEIGHT_SUFFIXES, tree_digest

#: Each path key and the input key that fingerprints its content: equal content, the path may change.
CONTENT_OF = {"dataset_name": "dataset_content", "datasets": "dataset_content", "model_name_or_path": "model_weights"}


def _local_tree(value: Any, only: tuple[str, ...] | None = None) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    return tree_digest(os.path.expanduser(value), only)


def _hub_snapshot(name: str, revision: str | None) -> str | None:
    """The local snapshot directory of a cached Hub model (no network), or ``None``."""
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(name, revision=revision, local_files_only=True)
    except Exception:  # noqa: BLE001 -- not cached, not a repo id, no huggingface_hub: nothing to fingerprint
        return None


def _processes(config: Any) -> int:
    try:
        return int(config.world_size)
    except Exception:  # noqa: BLE001 -- the distributed state cannot be read yet
        return int(os.environ.get("WORLD_SIZE", "1"))


def run_inputs(script: Any, config: Any, model_args: Any, mixture: Any = None) -> dict[str, Any]:
    """The module's inputs of a run, as JSON values."""
    paths = [script.dataset_name] if script.dataset_name and not getattr(mixture, "datasets", None) else [
        getattr(d, "path", None) if not isinstance(d, dict) else d.get("path") for d in mixture.datasets]
    data = [_local_tree(p) for p in paths]
    model = model_args.model_name_or_path
    weights = _local_tree(model, WEIGHT_SUFFIXES)
    if weights is None and model and not os.path.exists(os.path.expanduser(model)):
        weights = _local_tree(_hub_snapshot(model, getattr(model_args, "model_revision", None)), WEIGHT_SUFFIXES)
    processes = _processes(config)
    return {
        "dataset_content": data[0] if len(data) == 1 else data if any(data) else None,
        "model_weights": weights,
        "num_processes": processes,
        "global_batch": config.per_device_train_batch_size * processes * config.gradient_accumulation_steps,
    }
