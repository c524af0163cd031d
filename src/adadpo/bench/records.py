"""Per-comparison records of a run: every judged comparison of its held-out evaluation, kept beside ``results.jsonl``.

A world's evaluation returns its judged comparisons in the row's ``comparisons`` list (the real-model world's
:func:`adadpo.bench.worlds.smollm2.evaluate.evaluate_policy` does); before the sweep appends the row,
:func:`store` takes them out and writes them to ``comparisons/<run>.jsonl.gz`` in the sweep's output directory
(gzip, one JSON object per line, written to a temporary file, synced and renamed into place), and the row keeps
the file's relative path (``records``) and its SHA-256 (``records_sha256``). The file is complete before its row
exists: a sweep killed between the two leaves a file no row names, which nothing reads and the rerun of the run
replaces (the name is fixed by the run's key, world and budget); a row never names a file that is not there.

One record per comparison (answer ``sample`` of held-out prompt ``prompt`` against the reference's answer with
the same index), with the fields of :data:`FIELDS`:

``prompt`` (index of the held-out prompt), ``kind``, ``sample``, ``text`` (the policy's answer), ``words``,
``tokens`` (without EOS), ``ended`` (EOS before the cap), ``quality`` (true quality), ``judge`` (the biased
judge's ``P(answer beats the reference's)``), ``truth`` (the same with ``eta = 0``), ``ref_words``,
``ref_tokens``, ``ref_ended``, ``ref_quality``.

:func:`recompute` gives back a run's ``tq`` (mean ``truth``), ``wr`` (mean ``judge``), ``lc``
(:func:`adadpo.eval.length_controlled_winrate` of ``judge`` on ``words`` against ``ref_words``, as the
evaluation computes it), lengths, qualities and ``ended``, for all records or any subset (one kind of prompt,
half of the prompts), without training again.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: The fields of a record, in the order they are written.
FIELDS = ("prompt", "kind", "sample", "text", "words", "tokens", "ended", "quality", "judge", "truth",
          "ref_words", "ref_tokens", "ref_ended", "ref_quality")
#: The sub-directory of a sweep's output directory that holds the records.
DIR = "comparisons"


def comparisons(**columns: Sequence[Any]) -> list[dict[str, Any]]:
    """Records from one column per field of :data:`FIELDS` (equal lengths, numpy scalars made plain)."""
    missing = sorted(set(FIELDS) - set(columns))
    extra = sorted(set(columns) - set(FIELDS))
    if missing or extra:
        raise ValueError(f"records: missing field(s) {missing}, unknown field(s) {extra}")
    sizes = {k: len(v) for k, v in columns.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"records: columns of different lengths {sizes}")
    plain = {k: [v.item() if isinstance(v, np.generic) else v for v in col] for k, col in columns.items()}
    return [dict(zip(FIELDS, values)) for values in zip(*(plain[k] for k in FIELDS))]


def file_name(row: dict[str, Any]) -> str:
    """``comparisons/<key>-<hash>.jsonl.gz``: the run's key, readable, and a hash of its key, world and budget."""
    ident = json.dumps([row["key"], row.get("world"), row.get("budget")], sort_keys=True)
    readable = "".join(c if c.isalnum() or c in ".-" else "_" for c in row["key"])
    return f"{DIR}/{readable}-{hashlib.sha256(ident.encode()).hexdigest()[:10]}.jsonl.gz"


def _encode(records: Iterable[dict[str, Any]]) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as f:  # mtime 0: the same records, the same bytes
        for r in records:
            f.write((json.dumps(r) + "\n").encode())
    return buffer.getvalue()


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename itself survives a crash
    finally:
        os.close(fd)


def store(output_dir: str | os.PathLike, row: dict[str, Any], source: str | os.PathLike | None = None
          ) -> dict[str, Any]:
    """The row to append to ``output_dir/results.jsonl``, after its records are safely on disk.

    A row with ``comparisons`` has them written to :func:`file_name` (see the module doc) and gets ``records``
    and ``records_sha256`` instead; a row copied from the sweep directory ``source`` (``reuse``) has its records
    file copied along. A row with neither (a world without records, an old row) is returned as it is.
    """
    out = Path(output_dir)
    row = dict(row)
    found = row.pop("comparisons", None)
    if found is not None:
        data = _encode(found)
        name = file_name(row)
        _write_atomic(out / name, data)
        return {**row, "records": name, "records_sha256": hashlib.sha256(data).hexdigest()}
    if source is not None and row.get("records"):
        src = Path(source) / row["records"]
        if not src.is_file():
            raise ValueError(f"reuse: {src} is missing (the records of the run {row['key']!r} in {source})")
        if Path(source).resolve() != out.resolve():
            _write_atomic(out / row["records"], src.read_bytes())
    return row


def load(output_dir: str | os.PathLike, row: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The records of ``row`` (a row of ``output_dir/results.jsonl``); ``None`` when the row has none (a row
    written before runs kept their records, or another world's). A file that is missing or does not match the
    row's checksum is an error naming it."""
    name = row.get("records")
    if not name:
        return None
    path = Path(output_dir) / name
    if not path.is_file():
        raise ValueError(f"{path}: missing (the per-comparison records of the run {row['key']!r})")
    data = path.read_bytes()
    if row.get("records_sha256") and hashlib.sha256(data).hexdigest() != row["records_sha256"]:
        raise ValueError(f"{path}: its SHA-256 is not the one its row {row['key']!r} recorded (rewritten since?)")
    return [json.loads(line) for line in gzip.decompress(data).decode().splitlines() if line]


def attach(output_dir: str | os.PathLike, rows: Sequence[dict[str, Any]], missing: list[str] | None = None
           ) -> dict[str, list[dict[str, Any]]]:
    """``{key: records}`` of every row of ``rows`` that has records in ``output_dir``. A row whose file is not
    there is an error, or, given a ``missing`` list, has its key appended to it (a report written away from
    its sweep's directory says so rather than failing)."""
    out = {}
    for r in rows:
        if missing is not None and r.get("records") and not (Path(output_dir) / r["records"]).is_file():
            missing.append(r["key"])
            continue
        found = load(output_dir, r)
        if found is not None:
            out[r["key"]] = found
    return out


def column(records: Sequence[dict[str, Any]], name: str) -> np.ndarray:
    """One field of every record as an array (floats; booleans as 0/1)."""
    return np.array([r[name] for r in records], dtype=float)


def recompute(records: Sequence[dict[str, Any]], lc: bool = True) -> dict[str, float]:
    """A run's figures from its records (or a subset): ``tq``, ``wr``, ``lc`` (skipped with ``lc=False``: a GLM
    fit), ``length``, ``quality``, ``ref_length``, ``ref_quality``, ``ended``, ``tokens``, ``eval_comparisons``."""
    if not records:
        raise ValueError("recompute: no records")
    judge, n, n_ref = column(records, "judge"), column(records, "words"), column(records, "ref_words")
    out = {"tq": float(column(records, "truth").mean()), "wr": float(judge.mean()),
           "length": float(n.mean()), "quality": float(column(records, "quality").mean()),
           "ref_length": float(n_ref.mean()), "ref_quality": float(column(records, "ref_quality").mean()),
           "ended": float(column(records, "ended").mean()), "tokens": float(column(records, "tokens").mean()),
           "eval_comparisons": len(records)}
    if lc:
        from adadpo.eval import length_controlled_winrate

        out["lc"] = float(length_controlled_winrate(judge, n, n_ref, warn_incomparable=False).lc)
    return out


def by_kind(records: Sequence[dict[str, Any]], lc: bool = False) -> dict[str, dict[str, float]]:
    """:func:`recompute` per kind of prompt, kinds in the order they first appear."""
    kinds = list(dict.fromkeys(r["kind"] for r in records))
    return {k: recompute([r for r in records if r["kind"] == k], lc=lc) for k in kinds}
