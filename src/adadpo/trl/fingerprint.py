"""Every process trains on the same data: a cheap fingerprint of each prepared dataset, compared across processes
before training.

Under torchrun each process loads and prepares its own copy of the data; given different data (another file, a
different preprocessing) stock DDP trains on silently, and a different number of batches ends in a collective
timeout far from its cause. The fingerprint is the dataset's size and a hash of a few of its rows (spread over it),
compared in one ``gather_object`` when the trainer is built.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

#: Rows hashed per dataset, evenly spread (first and last included).
SAMPLED_ROWS = 8


def fingerprint(dataset: Any) -> str | None:
    """``"<rows> rows, hash <12 hex>"`` of a map-style dataset, or ``None`` for one without a length (streaming)."""
    try:
        n = len(dataset)
    except TypeError:
        return None
    picked = sorted({round(i * (n - 1) / (SAMPLED_ROWS - 1)) for i in range(SAMPLED_ROWS)}) if n else []
    digest = hashlib.sha256()
    for i in picked:
        digest.update(json.dumps(dataset[i], sort_keys=True, default=str).encode("utf-8"))
    return f"{n} rows, hash {digest.hexdigest()[:12]}"


def check_same_data(accelerator: Any, datasets: dict[str, Any]) -> None:
    """``ValueError`` on every process, naming both fingerprints, when a process prepared other data than process
    0 (``datasets``: name -> dataset, e.g. ``{"train": ..., "eval": ...}``)."""
    if accelerator.num_processes <= 1:
        return
    from accelerate.utils import gather_object

    mine = {name: fingerprint(data) for name, data in datasets.items() if data is not None}
    every = gather_object([mine])
    for rank, theirs in enumerate(every[1:], start=1):
        for name, value in theirs.items():
            first = every[0].get(name)
            if value is not None and first is not None and value != first:
                raise ValueError(
                    f"process {rank} prepared a different {name} dataset ({value}) than process 0 ({first}); every "
                    "process must be given the same data (the same file, split and preprocessing), or DDP trains on "
                    "a mix")
