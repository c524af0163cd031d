"""Every process trains on the same data: a cheap fingerprint of each prepared dataset, compared across processes
before training.

Under torchrun each process loads and prepares its own copy of the data; given different data (another file, a
different preprocessing) stock DDP trains on silently, and a different number of batches ends in a collective
timeout far from its cause. The fingerprint is the dataset's size and a hash of a few of its rows (spread over it),
compared in one ``gather_object`` when the trainer is built.

What a run reads is fingerprinted by content too (:func:`tree_digest`: the dataset's files, the model's weights),
so that ``adadpo train`` can refuse to resume a run whose data or model was replaced at the same path.
"""

from __future__ import annotations

import hashlib
import json
import os
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


# ------------------------------------------------------------------------------------- what a run reads, by content

#: Files up to this size are hashed whole; a larger one by its size, its first MiB (a safetensors header and
#: tensor index) and :data:`SAMPLED_BLOCKS` blocks spread over it (see :func:`file_digest`).
WHOLE_FILE_LIMIT = 512 * 2**20
SAMPLED_BLOCKS, BLOCK = 256, 64 * 2**10
#: The files of a model directory that hold its weights and architecture.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".index.json", "config.json")


def file_digest(path: str) -> str:
    """sha256 of ``path``'s bytes (12 hex), whole up to :data:`WHOLE_FILE_LIMIT`; beyond it, of the size, the first
    MiB and 256 blocks of 64 KiB evenly spread (17 MiB read, a fraction of a second even for a 16 GB shard).

    Why sampled is sound for what it guards against: weights or data *replaced* at the same path (another
    checkpoint, a fine-tune, a re-export, another data file) differ in essentially every block; what a sample can
    miss is an edit of a few bytes in the middle of a file larger than 512 MiB."""
    digest = hashlib.sha256()
    size = os.path.getsize(path)
    digest.update(str(size).encode())
    with open(path, "rb") as f:
        if size <= WHOLE_FILE_LIMIT:
            for chunk in iter(lambda: f.read(2**20), b""):
                digest.update(chunk)
        else:
            digest.update(f.read(2**20))
            for i in range(SAMPLED_BLOCKS):
                f.seek(2**20 + (size - 2**20 - BLOCK) * i // (SAMPLED_BLOCKS - 1))
                digest.update(f.read(BLOCK))
    return digest.hexdigest()[:12]


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return ""


def tree_digest(path: str, only: tuple[str, ...] | None = None) -> str | None:
    """``"<n> file(s), <size>, sha256 <12 hex>"`` of a file, or of a directory's files (recursively, hidden ones
    left out; ``only``: names ending so), over their relative paths and :func:`file_digest`; ``None`` when
    ``path`` does not exist or holds no such file."""
    if os.path.isfile(path):
        files = [(os.path.basename(path), path)]
    elif os.path.isdir(path):
        files = []
        for root, dirs, names in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            files += [(os.path.relpath(os.path.join(root, n), path), os.path.join(root, n)) for n in sorted(names)
                      if not n.startswith(".") and (only is None or n.endswith(only))]
    else:
        return None
    if not files:
        return None
    digest = hashlib.sha256()
    for name, full in files:
        digest.update(f"{name}\0{file_digest(full)}\0".encode())
    total = sum(os.path.getsize(full) for _, full in files)
    return f"{len(files)} file{'s' if len(files) > 1 else ''}, {_size(total)}, sha256 {digest.hexdigest()[:12]}"
