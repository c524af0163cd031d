"""Data that cannot teach is counted and dropped (identical pairs) or refused naming the row (malformed chat
messages, a response ending on a user turn, mixed formats, non-UTF-8 bytes): the rules of docs/training.md."""

from __future__ import annotations

import json
import logging

import pytest
from datasets import Dataset
from tiny import cli_config as _config
from tiny import write_yaml as _write
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
     r"row 0, column 'chosen': message 0 has no role"),
    ([{"prompt": chat("user", "q"), "chosen": chat("assistant", "a"), "rejected": [{"role": "assistant"}]}],
     r"row 0, column 'rejected': message 0 \(assistant\) has no content"),
    ([{"prompt": chat("user", "q"), "chosen": chat("assistant", "a"), "rejected": chat("assistant", "b")},
      {"prompt": chat("user", "q"), "chosen": chat("assistant", "a") + chat("user", "and?"),
       "rejected": chat("assistant", "b")}],
     r"row 1, column 'chosen': message 1 has role 'user'; a response holds the assistant's messages"),
    ([{"prompt": chat("user", "q"), "chosen": chat("bogus", "a"), "rejected": chat("assistant", "b")}],
     r"row 0, column 'chosen': message 0 has role 'bogus'; a response holds the assistant's messages"),
    ([{"prompt": chat("user", "q"), "chosen": chat("assistant", "a"),  # before: trained the user's words
       "rejected": chat("assistant", "b") + chat("user", "and?") + chat("assistant", "c")}],
     r"row 0, column 'rejected': message 1 has role 'user'"),
    ([{"chosen": chat("user", "q") + chat("assistant", "a") + chat("system", "s") + chat("assistant", "c"),
       "rejected": chat("user", "q") + chat("assistant", "b")}],  # an implicit prompt: only the shared start
     r"row 0, column 'chosen': message 2 has role 'system'"),
    ([{"prompt": chat("user", "q"), "chosen": chat("assistant", "a") + chat("tool", "22"),
       "rejected": chat("assistant", "b")}],
     r"row 0, column 'chosen': the conversation ends on a tool turn"),
    ([{"prompt": chat("user", "q"), "chosen": [{"role": "assistant", "content": 3}],
       "rejected": chat("assistant", "b")}],
     r"row 0, column 'chosen': message 0 has a content of type int"),
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


#: A chat template that, like real ones, renders content strings, content parts and tool calls.
TOOL_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {% if m['content'] is string %}{{ m['content'] }}"
    "{% elif m['content'] %}{% for p in m['content'] %}{{ p['text'] }} {% endfor %}{% endif %}"
    "{% if m['tool_calls'] %}{% for c in m['tool_calls'] %}tell {{ c['function']['name'] }} "
    "{{ c['function']['arguments']['thing'] }} {% endfor %}{% endif %}</s> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)


def _call(thing: str) -> dict:
    return {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "color",
                                                                                  "arguments": {"thing": thing}}}]}


def tool_rows(n: int) -> list[dict]:
    """Pairs in the shapes of TRL's dataset docs: a tool call with no content, a tool result and an answer, content
    as a list of parts, and a ``tools`` column the template may read."""
    tools = [{"type": "function", "function": {"name": "color", "description": "the color of a thing",
                                               "parameters": {"type": "object", "properties": {
                                                   "thing": {"type": "string"}}}}}]
    things = ["sky", "sea", "tree", "cat"]
    rows = []
    for i in range(n):
        thing = things[i % len(things)]
        prompt = [{"role": "system", "content": "answer ."},
                  {"role": "user", "content": f"what color is the {thing} ?"}]
        if i % 3 == 0:
            chosen, rejected = [_call(thing)], [{"role": "assistant", "content": "no ."}]
        elif i % 3 == 1:
            chosen = [_call(thing), {"role": "tool", "name": "color", "content": "blue"},
                      {"role": "assistant", "content": [{"type": "text", "text": "it is blue ."}]}]
            rejected = [_call("dog"), {"role": "tool", "name": "color", "content": "red"},
                        {"role": "assistant", "content": [{"type": "text", "text": "it is red ."}]}]
        else:
            chosen = [{"role": "assistant", "content": [{"type": "text", "text": "blue ."}]}]
            rejected = [_call("dog")]
        rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected, "tools": tools})
    return rows


@pytest.mark.parametrize("balance", [False, True])
def test_tool_call_data_trains_as_in_trl(tmp_path, balance):
    """TRL's own ``test_train_toolcall_data`` on AdaDPOTrainer, with a local dataset of the same shapes (no Hub):
    before, "message 0 has no role or content ({'role': 'assistant', 'tool_calls': [...]})"."""
    import torch
    from tiny import TRAINER_ARGS, make_model, make_tokenizer

    from adadpo.trl import AdaDPOConfig, AdaDPOTrainer

    tokenizer = make_tokenizer()
    tokenizer.chat_template = TOOL_TEMPLATE
    write_jsonl(tmp_path / "tool.jsonl", tool_rows(8))
    dataset = load_preference_dataset(str(tmp_path / "tool.jsonl"))["train"]  # through Arrow, as a file arrives
    assert check_preference_dataset(dataset) is dataset  # nothing refused, nothing dropped
    args = AdaDPOConfig(str(tmp_path / "out"),
                        **{**TRAINER_ARGS, "learning_rate": 0.1, "per_device_train_batch_size": 2},
                        max_steps=2, balance=balance)
    trainer = AdaDPOTrainer(make_model(tokenizer), make_model(tokenizer), args=args, train_dataset=dataset,
                            processing_class=tokenizer)
    prompt = tokenizer.decode(trainer.train_dataset[1]["prompt_ids"])
    assert "<|system|> answer ." in prompt
    assert "tell color sea" in tokenizer.decode(trainer.train_dataset[1]["chosen_ids"])
    before = {n: p.clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    assert trainer.state.log_history[-1]["train_loss"] is not None
    assert all(not torch.equal(p, trainer.model.get_parameter(n)) for n, p in before.items())
