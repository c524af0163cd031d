"""Trainer callbacks: metrics written to files, as JSON lines and CSV."""

from __future__ import annotations

import csv
import json
import math
import os
from typing import Any

from transformers import TrainerCallback


class MetricsFileCallback(TrainerCallback):
    """Append every log (train and eval) to ``<output_dir>/metrics.jsonl``; rewrite ``metrics.csv`` from it.

    One JSON object per log with ``step`` and ``epoch`` first. On resume, rows after the checkpoint's step
    (written by the interrupted run) are dropped, so the files read as one uninterrupted run.
    Only the main process writes.
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
        rows = read_metrics(jsonl)
        kept = [r for r in rows if r.get("step", 0) <= state.global_step]
        if len(kept) != len(rows):
            _write_jsonl(jsonl, kept)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        jsonl, _ = self._paths(args)
        os.makedirs(os.path.dirname(jsonl), exist_ok=True)
        row = {"step": state.global_step, "epoch": state.epoch, **{k: _plain(v) for k, v in logs.items()}}
        with open(jsonl, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            jsonl, csv_path = self._paths(args)
            if os.path.exists(jsonl):
                write_csv(read_metrics(jsonl), csv_path)


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf
    return value


def read_metrics(path: str) -> list[dict[str, Any]]:
    """The rows of a ``metrics.jsonl`` file."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _write_jsonl(path: str, rows: list[dict[str, Any]]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
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
