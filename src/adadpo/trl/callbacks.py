"""Trainer callbacks: metrics written to files, as JSON lines and CSV; a run's settings kept in its checkpoints."""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

logger = logging.getLogger("adadpo")


class MetricsFileCallback(TrainerCallback):
    """Append every log (train and eval) to ``<output_dir>/metrics.jsonl``; rewrite ``metrics.csv`` from it.

    One JSON object per log with ``step`` and ``epoch`` first, appended in one write and fsync'd, so a crash
    loses at most the row being written. On resume, rows after the checkpoint's step (written by the interrupted
    run) are dropped, and so is a torn last row (a crash or a full disk while writing it), each with a message
    naming the file, so the files read as one uninterrupted run. Only the main process writes.
    """

    def __init__(self, output_dir: str | None = None) -> None:
        self.output_dir = output_dir

    def _paths(self, args: Any) -> tuple[str, str]:
        root = self.output_dir or args.output_dir
        return os.path.join(root, "metrics.jsonl"), os.path.join(root, "metrics.csv")

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        jsonl, _ = self._paths(args)
        if not state.is_world_process_zero or not os.path.exists(jsonl):
            return
        rows, torn = _read_rows(jsonl)
        kept = [r for r in rows if r.get("step", 0) <= state.global_step]
        if torn:
            logger.warning("adadpo: %s ended in a torn row (a crash while it was written); dropped it", jsonl)
        if len(kept) != len(rows):
            logger.warning("adadpo: dropped %d row(s) of %s after step %d (written after the checkpoint resumed from)",
                           len(rows) - len(kept), jsonl, state.global_step)
        if torn or len(kept) != len(rows):
            _write_jsonl(jsonl, kept)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        jsonl, _ = self._paths(args)
        os.makedirs(os.path.dirname(jsonl), exist_ok=True)
        row = {"step": state.global_step, "epoch": state.epoch, **{k: _plain(v) for k, v in logs.items()}}
        fd = os.open(jsonl, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (json.dumps(row) + "\n").encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            jsonl, csv_path = self._paths(args)
            if os.path.exists(jsonl):
                write_csv(read_metrics(jsonl), csv_path)


class RunSettingsCallback(TrainerCallback, ExportableState):
    """Keeps ``settings`` (``adadpo train``'s run-defining keys) in every checkpoint's ``trainer_state.json``
    (transformers saves the state of ``ExportableState`` callbacks there), so a checkpoint says what it was
    trained with even when the run record is gone. It does nothing during training."""

    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        self.settings = dict(settings or {})

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # a state resumed from a checkpoint that kept none (stock TRL's) needs the entry, or transformers' next
        # checkpoint save fails on it (a KeyError)
        state.stateful_callbacks[type(self).__name__] = self.state()

    def state(self) -> dict[str, Any]:
        return {"args": {"settings": self.settings}, "attributes": {}}


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf
    return value


def read_metrics(path: str) -> list[dict[str, Any]]:
    """The rows of a ``metrics.jsonl`` file (a torn last row, from a crash while writing it, is left out)."""
    return _read_rows(path)[0]


def _read_rows(path: str) -> tuple[list[dict[str, Any]], bool]:
    """The rows of ``path`` and whether its last row was torn; ``ValueError`` naming the line of any other bad row."""
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().split("\n")
    rows, torn = [], False
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            if number == len(lines) or not any(rest.strip() for rest in lines[number:]):
                torn = True  # the last row, cut short
                break
            raise ValueError(f"{path}, line {number}: not a JSON object ({err}); fix or delete that line") from err
    return rows, torn


def _write_jsonl(path: str, rows: list[dict[str, Any]]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_csv(rows: list[dict[str, Any]], path: str) -> None:
    """Write ``rows`` as CSV with the union of their keys as columns (first-seen order)."""
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)
