"""Checks on preference datasets, with messages that name the column, the row and the fix.

TRL accepts prompt/chosen/rejected as strings or as chat messages (the prompt may be implicit in
conversational chosen/rejected). These checks run before TRL tokenises, and report what truncation does after.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from datasets import Dataset

logger = logging.getLogger("adadpo")

REQUIRED_COLUMNS = ("chosen", "rejected")


#: The roles a chosen or rejected response may hold: the assistant's turns, and tool results between them (a
#: response that calls a tool, reads its result and answers). Other turns belong in the prompt.
RESPONSE_ROLES = ("assistant", "tool")


def _content_text(content: Any) -> str:
    if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
        return " ".join(str(p.get("text") or "") if isinstance(p, dict) else str(p) for p in content)
    return "" if content is None else str(content)


def _text(value: Any) -> str:
    """The text of a response: a string, or the contents (and tool calls) of a list of chat messages."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = []
        for message in value:
            if not isinstance(message, dict):
                parts.append(str(message))
                continue
            parts.append(_content_text(message.get("content")))
            if message.get("tool_calls"):
                parts.append(json.dumps(message["tool_calls"], sort_keys=True, default=str))
        return "".join(parts)
    return str(value)


def _rows(indices: list[int]) -> str:
    return ", ".join(map(str, indices[:5])) + (", ..." if len(indices) > 5 else "")


def _format_problem(value: Any) -> str | None:
    """What is wrong with one prompt/chosen/rejected value's structure, or ``None``. As in TRL, a chat message
    has a ``role`` and a ``content`` (a string or a list of parts), or, an assistant calling a tool,
    ``tool_calls`` instead of a content; any other field is the chat template's business."""
    if value is None:
        return "is null (a missing value); give a string ('' for no prompt) or chat messages, or drop the row"
    if isinstance(value, str):
        return None
    if not value:
        return "is an empty conversation; a chat value needs at least one message"
    if not isinstance(value, list):
        return f"is a {type(value).__name__}, expected a string or a list of chat messages"
    for j, message in enumerate(value):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str) or not message["role"]:
            return f"message {j} has no role ({message!r:.80}); chat messages look like " \
                   "{'role': 'assistant', 'content': '...'}"
        content = message.get("content")
        if content is None and not message.get("tool_calls"):
            return f"message {j} ({message['role']}) has no content ({message!r:.80}); a message needs a 'content' " \
                   "(a string or a list of parts), or 'tool_calls' for an assistant calling a tool"
        if content is not None and not isinstance(content, (str, list)):
            return f"message {j} has a content of type {type(content).__name__} ({content!r:.40}); expected a " \
                   "string or a list of parts such as [{'type': 'text', 'text': '...'}]"
    return None


def _shared_turns(chosen: Any, rejected: Any) -> int:
    """How many leading messages chosen and rejected share: TRL's implicit prompt when there is no prompt column."""
    n = 0
    while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
        n += 1
    return n


def _response_problem(messages: list[dict[str, Any]], start: int) -> str | None:
    """What is wrong with the roles of a chat response (its messages from ``start`` on), or ``None``."""
    for j in range(start, len(messages)):
        role = messages[j]["role"]
        if role not in RESPONSE_ROLES:
            return (f"message {j} has role {role!r}; a response holds the assistant's messages (and 'tool' results "
                    "between them): earlier turns belong in 'prompt', and roles are "
                    "'system', 'user', 'assistant' or 'tool'")
    if messages and messages[-1]["role"] != "assistant":
        return (f"the conversation ends on a {messages[-1]['role']} turn; a response must end with the assistant's "
                "message")
    return None


def check_formats(rows: Any, columns: list[str], name: str, start: int = 0,
                  first: tuple[int, str, str] | None = None) -> tuple[int, str, str] | None:
    """``ValueError`` naming the row and column when a dataset mixes string and chat formats, a chat message
    lacks a role or content, or a chat response holds other turns than the assistant's (and tool results) or does
    not end with the assistant's (it would teach the user's words). ``start``: the index of ``rows[0]``;
    ``first``: the first value's ``(row, format, column)`` seen so far (a stream checked row by row); returns it."""
    for i, row in enumerate(rows, start):
        for column in columns:
            value = row[column]
            problem = _format_problem(value)
            if problem:
                raise ValueError(f"the {name} dataset, row {i}, column {column!r}: {problem}")
            kind = "chat messages" if isinstance(value, list) else "a string"
            first = first or (i, kind, column)
            if first[1] != kind:
                raise ValueError(
                    f"the {name} dataset mixes formats: row {i}, column {column!r} is {kind} but row {first[0]}, "
                    f"column {first[2]!r} is {first[1]}; every prompt, chosen and rejected must be strings, or every "
                    "one chat messages")
        for column in REQUIRED_COLUMNS:
            value = row[column]
            if isinstance(value, list):
                other = row["rejected" if column == "chosen" else "chosen"]
                shared = 0 if "prompt" in columns or not isinstance(other, list) else _shared_turns(value, other)
                problem = _response_problem(value, shared)
                if problem:
                    raise ValueError(f"the {name} dataset, row {i}, column {column!r}: {problem}")
    return first


def drop_identical_pairs(dataset: Any, name: str) -> Any:
    """``dataset`` without the pairs whose chosen and rejected texts are identical (they carry no preference:
    the loss's gradient is zero or pushes both down alike), with a warning counting them; ``ValueError`` if
    every pair is such."""
    if not isinstance(dataset, Dataset):
        return dataset.filter(lambda row: _text(row["chosen"]).strip() != _text(row["rejected"]).strip())
    same = [i for i, (c, r) in enumerate(zip(dataset["chosen"], dataset["rejected"])) if _text(c).strip() == _text(r).strip()]
    if not same:
        return dataset
    if len(same) == len(dataset):
        raise ValueError(f"every pair of the {name} dataset ({len(same)}) has identical chosen and rejected "
                         "responses; there is no preference to learn")
    logger.warning("adadpo: %d of %d %s pairs have identical chosen and rejected responses (rows %s); dropped them",
                   len(same), len(dataset), name, _rows(same))
    doomed = set(same)
    return dataset.select([i for i in range(len(dataset)) if i not in doomed])


def check_preference_dataset(dataset: Any, name: str = "train") -> Any:
    """``dataset`` checked, without the pairs that cannot teach; ``ValueError`` naming the rows for data that is
    wrong. Rules (docs/training.md, "Dataset checks"):

    * refused: a missing chosen/rejected column; an empty response; chat messages without a role, or without
      content and tool calls; a chosen/rejected response holding other turns than the assistant's and tool results,
      or not ending with the assistant's; rows mixing string and chat formats;
    * dropped, with a warning counting them: pairs whose chosen and rejected texts are identical (refused if
      that is every pair).

    ``dataset`` is a ``datasets.Dataset`` (every row is checked now) or ``IterableDataset`` (every row is checked
    as the stream reads it, by the same rules: the error comes at the step that reads the row; identical pairs
    are filtered lazily).
    """
    first = None if dataset.column_names else next(iter(dataset), None)
    if not dataset.column_names and first is None:
        raise ValueError(f"the {name} dataset is empty (no rows)")
    columns = list(dataset.column_names or first.keys())
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ValueError(
            f"the {name} dataset has no {' or '.join(repr(c) for c in missing)} column "
            f"(it has {columns}); a preference dataset needs 'chosen' and 'rejected', and 'prompt' unless the "
            "prompt is the shared start of conversational chosen/rejected. Rename the columns, e.g. "
            "dataset.rename_column('answer_good', 'chosen')"
        )
    columns_to_check = ["prompt", *REQUIRED_COLUMNS] if "prompt" in columns else list(REQUIRED_COLUMNS)
    if not isinstance(dataset, Dataset):  # a stream: each row checked as it is read, by the same rules
        if first is None and next(iter(dataset), None) is None:
            raise ValueError(f"the {name} dataset is empty")
        seen: list[tuple[int, str, str] | None] = [None]

        def check_row(row: dict[str, Any], i: int) -> dict[str, Any]:
            seen[0] = check_formats([row], columns_to_check, name, start=i, first=seen[0])
            _check_empty({c: [row[c]] for c in columns_to_check}, name, start=i)
            return row

        return drop_identical_pairs(dataset.map(check_row, with_indices=True), name)
    if len(dataset) == 0:
        raise ValueError(f"the {name} dataset is empty")
    check_formats(dataset, columns_to_check, name)
    _check_empty({c: dataset[c] for c in columns_to_check}, name)
    return drop_identical_pairs(dataset, name)


def _check_empty(values: dict[str, list[Any]], name: str, start: int = 0) -> None:
    """``ValueError`` naming the rows (numbered from ``start``) of an empty chosen or rejected response."""
    for column, column_values in values.items():
        empty = [i for i, v in enumerate(column_values, start) if not _text(v).strip()]
        if empty and column == "prompt":
            continue  # an empty prompt is unusual but legal (unconditional preferences)
        if empty:
            raise ValueError(
                f"the {name} dataset has {len(empty)} empty {column!r} response(s) (rows {_rows(empty)}); every pair "
                f"needs non-empty chosen and rejected text. Drop them, e.g. dataset.filter(lambda x: x[{column!r}])"
            )


def report_truncation(raw: Any, prepared: Any, name: str, max_length: int | None, mode: str) -> None:
    """Say how many pairs ``max_length`` drops or cuts; ``ValueError`` if it drops all of them.

    ``raw`` is the dataset before TRL's preparation, ``prepared`` after (``prompt_ids``, ``chosen_ids``,
    ``rejected_ids``). With ``keep_start`` TRL drops pairs whose prompt alone reaches ``max_length`` and
    its collator cuts the end of longer responses; with ``keep_end`` the collator cuts the start.
    """
    if isinstance(prepared, Dataset):
        check_distinct_tokens(prepared, name, max_length, mode)
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


def _same_tokens(p: list[int], c: list[int], r: list[int], max_length: int | None, mode: str) -> bool:
    """Whether a pair's chosen and rejected token ids are identical as trained on (after ``max_length``)."""
    if max_length is not None and mode == "keep_end":
        return (p + c)[-max_length:] == (p + r)[-max_length:]
    if max_length is not None:
        keep = max(max_length - len(p), 0)
        return c[:keep] == r[:keep]
    return c == r


def check_distinct_tokens(prepared: Any, name: str, max_length: int | None, mode: str) -> None:
    """``ValueError`` when every pair of the tokenised ``prepared`` dataset has identical chosen and rejected token
    ids as trained on (texts that differ only in what the tokenizer drops or maps to one unknown token, or only
    past ``max_length``): such a pair gives the loss no gradient, so the run would learn nothing; a warning counting
    them when only some do."""
    if len(prepared) == 0 or not set(TOKEN_COLUMNS) <= set(prepared.column_names):
        return
    same = prepared.map(
        lambda b: {"_same": [_same_tokens(p, c, r, max_length, mode)
                             for p, c, r in zip(b["prompt_ids"], b["chosen_ids"], b["rejected_ids"])]},
        batched=True, remove_columns=prepared.column_names, keep_in_memory=True,
    )["_same"]
    rows = [i for i, flag in enumerate(same) if flag]
    where = f" within max_length={max_length} ({mode})" if max_length is not None else ""
    if len(rows) == len(prepared):
        raise ValueError(f"every pair of the {name} dataset ({len(rows)}) tokenises to identical chosen and rejected "
                         f"ids{where}: the loss has no gradient, so the run would learn nothing; check the tokenizer "
                         "(unknown tokens?) and max_length")
    if rows:
        logger.warning("adadpo: %d of %d %s pairs tokenise to identical chosen and rejected ids%s (rows %s); they add "
                       "no gradient", len(rows), len(prepared), name, where, _rows(rows))


#: The token-id columns of a prepared (tokenised) preference dataset.
TOKEN_COLUMNS = ("prompt_ids", "chosen_ids", "rejected_ids")


def check_token_ids(dataset: Any, vocab: int, name: str = "train") -> None:
    """``ValueError`` naming the first row and column whose token id is outside ``[0, vocab)`` (the model's
    vocabulary): checked once here, where the data enters, so that no training step has to (``loss_debug=True``
    checks every batch's labels again). Iterable datasets and ``None`` are skipped."""
    if dataset is None or not hasattr(dataset, "column_names") or not hasattr(dataset, "__len__"):
        return
    for column in TOKEN_COLUMNS:
        if column not in (dataset.column_names or ()):
            continue
        for row, ids in enumerate(dataset[column]):
            if ids and (min(ids) < 0 or max(ids) >= vocab):
                bad = next(i for i in ids if not 0 <= i < vocab)
                raise ValueError(f"{name} dataset row {row}: {column} holds token id {bad}, outside the model's "
                                 f"vocabulary [0, {vocab}); the tokenizer does not belong to this model (or the "
                                 "embeddings were not resized after adding tokens)")
