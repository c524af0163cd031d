"""Checks on preference datasets, with messages that name the column, the row and the fix.

TRL accepts prompt/chosen/rejected as strings or as chat messages (the prompt may be implicit in
conversational chosen/rejected). These checks run before TRL tokenises, and report what truncation does after.
"""

from __future__ import annotations

import logging
from typing import Any

from datasets import Dataset

logger = logging.getLogger("adadpo")

REQUIRED_COLUMNS = ("chosen", "rejected")


def _text(value: Any) -> str:
    """The text of a response: a string, or the concatenated contents of a list of chat messages."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = []
        for message in value:
            content = message.get("content") if isinstance(message, dict) else message
            if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
                content = " ".join(str(p.get("text") or "") for p in content if isinstance(p, dict))
            parts.append("" if content is None else str(content))
        return "".join(parts)
    return str(value)


def check_preference_dataset(dataset: Any, name: str = "train") -> None:
    """Raise ``ValueError`` if ``dataset`` lacks chosen/rejected columns or has an empty response.

    ``dataset`` is a ``datasets.Dataset`` (every row is checked) or ``IterableDataset`` (the first row).
    """
    columns = list(dataset.column_names or next(iter(dataset)).keys())
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ValueError(
            f"the {name} dataset has no {' or '.join(repr(c) for c in missing)} column "
            f"(it has {columns}); a preference dataset needs 'chosen' and 'rejected', and 'prompt' unless the "
            "prompt is the shared start of conversational chosen/rejected. Rename the columns, e.g. "
            "dataset.rename_column('answer_good', 'chosen')"
        )
    rows = dataset if isinstance(dataset, Dataset) else [next(iter(dataset))]
    if len(rows) == 0:
        raise ValueError(f"the {name} dataset is empty")
    columns_to_check = ["prompt", *REQUIRED_COLUMNS] if "prompt" in columns else list(REQUIRED_COLUMNS)
    for column in columns_to_check:
        values = rows[column] if isinstance(rows, Dataset) else [rows[0][column]]
        empty = [i for i, v in enumerate(values) if not _text(v).strip()]
        if empty and column == "prompt":
            continue  # an empty prompt is unusual but legal (unconditional preferences)
        if empty:
            shown = ", ".join(map(str, empty[:5])) + (", ..." if len(empty) > 5 else "")
            raise ValueError(
                f"the {name} dataset has {len(empty)} empty {column!r} response(s) (rows {shown}); every pair needs "
                f"non-empty chosen and rejected text. Drop them, e.g. dataset.filter(lambda x: x[{column!r}])"
            )


def report_truncation(raw: Any, prepared: Any, name: str, max_length: int | None, mode: str) -> None:
    """Say how many pairs ``max_length`` drops or cuts; ``ValueError`` if it drops all of them.

    ``raw`` is the dataset before TRL's preparation, ``prepared`` after (``prompt_ids``, ``chosen_ids``,
    ``rejected_ids``). With ``keep_start`` TRL drops pairs whose prompt alone reaches ``max_length`` and
    its collator cuts the end of longer responses; with ``keep_end`` the collator cuts the start.
    """
    if max_length is None or not isinstance(raw, Dataset) or not isinstance(prepared, Dataset):
        return
    total = len(raw)
    dropped = total - len(prepared)
    if len(prepared) == 0:
        raise ValueError(
            f"every prompt of the {name} dataset ({total} pairs) is at least max_length={max_length} tokens long, "
            "so no response token is left to train on; raise max_length"
        )
    if dropped:
        logger.warning(
            "%d of %d %s pairs have a prompt of max_length=%d tokens or more; they were dropped "
            "(truncation_mode=%r). Raise max_length to keep them.",
            dropped, total, name, max_length, mode,
        )
    lengths = prepared.map(
        lambda b: {
            "_n": [len(p) + max(len(c), len(r)) for p, c, r in zip(b["prompt_ids"], b["chosen_ids"], b["rejected_ids"])]
        },
        batched=True,
        remove_columns=prepared.column_names,
        keep_in_memory=True,
    )["_n"]
    cut = sum(n > max_length for n in lengths)
    if cut:
        what = "the end of their responses is cut" if mode == "keep_start" else "the start of the sequence is cut"
        logger.warning(
            "%d of %d %s pairs are longer than max_length=%d tokens; %s to fit (truncation_mode=%r).",
            cut, len(prepared), name, max_length, what, mode,
        )
