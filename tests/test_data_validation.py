"""Data that cannot teach is counted and dropped (identical pairs) or refused naming the row (malformed chat
messages, a response ending on a user turn, mixed formats, non-UTF-8 bytes): the rules of docs/training.md."""

from __future__ import annotations

import json
import logging

import pytest
from datasets import Dataset
from test_cli_train import _config, _write, world  # noqa: F401 (world: the module's fixture)
from tiny import make_pairs, write_jsonl

from adadpo.cli import main
from adadpo.trl.callbacks import read_metrics
from adadpo.trl.data import check_preference_dataset
from adadpo.trl.loading import load_preference_dataset


def chat(role: str, text: str) -> list[dict]:
    return [{"role": role, "content": text}]


def test_identical_pairs_are_counted_and_dropped(caplog):
    rows = make_pairs(6)
    for i in (1, 4):
        rows[i]["rejected"] = rows[i]["chosen"] + "  "  # the same text up to whitespace
    with caplog.at_level(logging.WARNING, logger="adadpo"):
        kept = check_preference_dataset(Dataset.from_list(rows))
    assert len(kept) == 4 and all(r["chosen"] != r["rejected"] for r in kept)
    assert "2 of 6 train pairs have identical chosen and rejected responses (rows 1, 4); dropped them" in caplog.text
    same = [{**r, "rejected": r["chosen"]} for r in make_pairs(3)]
    with pytest.raises(ValueError, match=r"every pair of the train dataset \(3\) has identical chosen and rejected"):
        check_preference_dataset(Dataset.from_list(same))
    same_chat = [{"prompt": chat("user", "q"), "chosen": chat("assistant", "a"), "rejected": chat("assistant", "a")},
                 {"prompt": chat("user", "q"), "chosen": chat("assistant", "a"), "rejected": chat("assistant", "b")}]
    assert len(check_preference_dataset(Dataset.from_list(same_chat))) == 1


@pytest.mark.parametrize(("rows", "message"), [
    ([{"prompt": chat("user", "q"), "chosen": [{"content": "a"}], "rejected": chat("assistant", "b")}],
     r"row 0, column 'chosen': message 0 has no role or content"),
    ([{"prompt": chat("user", "q"), "chosen": chat("assistant", "a"), "rejected": [{"role": "assistant"}]}],
     r"row 0, column 'rejected': message 0 has no role or content"),
    ([{"prompt": chat("user", "q"), "chosen": chat("assistant", "a"), "rejected": chat("assistant", "b")},
      {"prompt": chat("user", "q"), "chosen": chat("assistant", "a") + chat("user", "and?"),
       "rejected": chat("assistant", "b")}],
     r"row 1, column 'chosen': the conversation ends on a user turn"),
    ([{"prompt": "q", "chosen": " a", "rejected": " b"},
      {"prompt": "q", "chosen": chat("assistant", "a"), "rejected": chat("assistant", "b")}],
     r"mixes formats: row 1, column 'chosen' is chat messages but row 0, column 'prompt' is a string"),
])
def test_malformed_rows_are_refused_naming_row_and_column(tmp_path, rows, message):
    path = write_jsonl(tmp_path / "data.jsonl", rows)  # through the loader, as a user's file arrives
    dataset = load_preference_dataset(str(path))["train"]
    with pytest.raises(ValueError, match=message):  # before: accepted; mixed formats failed later as
        check_preference_dataset(dataset)           # "rejected_lengths must be >= 1 ... found 0 at index 1"


def test_non_utf8_bytes_name_the_file_and_line(tmp_path):
    path = tmp_path / "latin1.jsonl"
    good = [json.dumps(r) for r in make_pairs(3)]
    path.write_bytes(("\n".join(good) + "\n").encode() + '{"prompt": "caf\xe9", "chosen": " a", "rejected": " b"}\n'
                     .encode("latin-1"))
    with pytest.raises(ValueError, match=rf"dataset_name='{path}': {path}, line 4: byte 0xe9 at column 16 is not "
                                         r"UTF-8; save the file as UTF-8"):
        load_preference_dataset(str(path))


def test_train_drops_identical_pairs_and_says_so(world, tmp_path, caplog):
    rows = make_pairs(12)
    rows[3]["rejected"] = rows[3]["chosen"]
    write_jsonl(tmp_path / "pairs.jsonl", rows)
    config = _config(world, tmp_path / "out", dataset_name=str(tmp_path / "pairs.jsonl"), max_steps=1)
    with caplog.at_level(logging.WARNING, logger="adadpo"):
        assert main(["train", "--config", str(_write(tmp_path / "run.yaml", config))]) == 0
    assert "1 of 12 train pairs have identical chosen and rejected responses (rows 3); dropped them" in caplog.text
    assert [r["step"] for r in read_metrics(str(tmp_path / "out" / "metrics.jsonl")) if "loss" in r] == [1]
