"""Generated tests: every column of a dataset row emptied, nulled, retyped and given a wrong role, in both of TRL's
formats (strings, chat messages), written to a jsonl file and trained with ``adadpo train``, loaded in memory and
streamed. Each case either
trains (what TRL trains too: an empty prompt) or stops with one line naming the column, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny import make_pairs, save_tiny_model, train_cli

COLUMNS = ("prompt", "chosen", "rejected")
ROW = 3  # the damaged row (of 8)


def _mutations(chat: bool) -> list[tuple[str, object]]:
    """(label, value) put in one column of one row."""
    cases: list[tuple[str, object]] = [("null", None), ("number", 5), ("mapping", {"text": "a"})]
    if chat:
        cases += [("empty", []), ("string", "the sky"), ("no-content", [{"role": "assistant"}]),
                  ("content-number", [{"role": "assistant", "content": 7}]),
                  ("role-bogus", [{"role": "bogus", "content": "the sky ."}]),
                  ("role-user", [{"role": "user", "content": "the sky ?"}]),
                  ("role-missing", [{"content": "the sky ."}])]
    else:
        cases += [("empty", ""), ("blank", "   "), ("list", ["the", "sky"])]
    return cases


#: (format, column, mutation) that train, as they do in TRL: an empty or blank prompt string (unconditional
#: preferences), a chat prompt of one user turn, and a prompt turn of a role the chat template renders (roles in
#: the prompt are the template's business; only chosen and rejected must be the assistant's).
TRAINS = {("string", "prompt", "empty"), ("string", "prompt", "blank"), ("chat", "prompt", "role-user"),
          ("chat", "prompt", "role-bogus")}


CASES = [(fmt, column, label, value) for fmt in ("string", "chat") for column in COLUMNS
         for label, value in _mutations(fmt == "chat")]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.mark.parametrize("streaming", [False, True], ids=["in-memory", "streaming"])
@pytest.mark.parametrize(("fmt", "column", "label", "value"), CASES,
                         ids=[f"{f}-{c}-{label}" for f, c, label, _ in CASES])
def test_a_damaged_column_trains_or_is_one_line(model, tmp_path, capsys, fmt, column, label, value, streaming):
    """Streaming (``dataset_streaming: true``) checks every row by the same rules (before: the first row only)."""
    rows = make_pairs(8, seed=1, conversational=fmt == "chat")
    rows[ROW][column] = value
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = {"model_name_or_path": str(model), "dataset_name": str(data), "output_dir": str(tmp_path / "out"),
              "max_steps": 1, "per_device_train_batch_size": 8, "save_strategy": "no", "report_to": "none",
              "disable_tqdm": True, "gradient_checkpointing": False, "dataset_streaming": streaming}
    code, err = train_cli(config, tmp_path, capsys)
    if (fmt, column, label) in TRAINS:
        assert code == 0, err[-2000:]
        return
    lines = [line for line in err.strip().splitlines() if line.startswith("adadpo train: ")]
    assert code not in (0, None) and len(lines) == 1 and "Traceback" not in err, err[-3000:]
    assert repr(column) in lines[0] or f"/{column}" in lines[0], lines[0]  # the column, by name
