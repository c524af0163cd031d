"""Generated tests: every key of a sweep file given a wrong value, and every field of a method, through
``adadpo sweep``: one line naming the file and the key, before a world is built or a worker starts (before:
``seeds: [0.5, 1.5]`` ran seeds 0 and 1, ``balance: true`` failed inside a worker). A single value where a list is
expected, and ``balance: true``, are taken as meant."""

from __future__ import annotations

import math

import pytest
import yaml

from adadpo.bench import sweep
from adadpo.bench.sweep import load_sweep_config
from adadpo.cli import main

GOOD = {"methods": [{"name": "DPO", "loss": "dpo"}, {"name": "AdaDPO", "loss": "dpo", "balance": {}}],
        "betas": [0.1], "learning_rates": [1.0e-4], "seeds": [0]}

#: (key, wrong value) for every top-level key of a sweep file.
BAD = [("world", 5), ("world", {"bogus_field": 1}), ("budget", [1]), ("budget", {"epochs": 0.5}),
       ("betas", ["x"]), ("betas", [0]), ("betas", [-0.1]), ("betas", [math.inf]), ("betas", []),
       ("learning_rates", ["abc"]), ("learning_rates", [0]), ("seeds", [0.5, 1.5]), ("seeds", ["a"]),
       ("seeds", [True]), ("methods", 5), ("methods", []), ("comparisons", [["DPO"]]), ("comparisons", 5),
       ("comparisons", [["DPO", "Nope"]]), ("workers", 0), ("workers", 1.5), ("workers", "two"), ("epochs", [0.5]),
       ("epochs", ["x"]), ("untrained", "yes"), ("reuse", [5]), ("world_kind", "bogus")]
#: (field of a method, wrong value): each is refused naming the method.
BAD_METHOD = [("loss", "dpoo"), ("loss", 5), ("balance", 5), ("balance", "yes"), ("balance", {"clip": 0.5}),
              ("balance", {"bogus": 1}), ("balance", {"level": "word"}), ("params", {"bogus": 1}),
              ("params", {"gamma": math.nan}), ("params", 3), ("extra", 1)]
KEYS = {"world", "budget", "betas", "learning_rates", "seeds", "methods", "comparisons", "workers", "epochs",
        "untrained", "reuse", "world_kind"}


def test_every_key_has_a_bad_value():
    assert {key for key, _ in BAD} == KEYS


def _refused(tmp_path, capsys, monkeypatch, content: dict) -> str:
    def no_world(*args, **kwargs):
        raise AssertionError("a world was built or a worker started")

    monkeypatch.setattr(sweep, "run_sweep", no_world)  # builds the world and starts the workers
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(content))
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(["sweep", "--config", str(path), "--output_dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert info.value.code == 2 and len(lines) == 1 and "Traceback" not in err, err[-2000:]
    assert str(path) in lines[0] and not (tmp_path / "out").exists(), lines[0]
    return lines[0]


@pytest.mark.parametrize(("key", "value"), BAD, ids=[f"{k}={v!r}" for k, v in BAD])
def test_a_bad_value_of_any_key_is_one_line_naming_it(tmp_path, capsys, monkeypatch, key, value):
    line = _refused(tmp_path, capsys, monkeypatch, {**GOOD, key: value})
    assert key in line or key == "comparisons" and "Nope" in line, line


@pytest.mark.parametrize(("field", "value"), BAD_METHOD, ids=[f"{k}={v!r}" for k, v in BAD_METHOD])
def test_a_bad_method_is_one_line_naming_it(tmp_path, capsys, monkeypatch, field, value):
    methods = [GOOD["methods"][0], {**GOOD["methods"][1], field: value}]
    line = _refused(tmp_path, capsys, monkeypatch, {**GOOD, "methods": methods})
    assert "methods[1]" in line, line


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("betas", 0.1, [0.1]), ("learning_rates", "1e-4", [1e-4]), ("seeds", 3, [3]), ("seeds", [1.0, 2.0], [1, 2]),
    ("epochs", 2, [2]), ("reuse", "runs/a", ["runs/a"]), ("workers", 3.0, 3),
])
def test_a_single_value_is_a_one_element_list_and_integral_floats_are_integers(tmp_path, key, value, expected):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({**GOOD, key: value}))
    got = getattr(load_sweep_config(path), key)
    assert got == expected and all(type(g) is type(e) for g, e in zip(got, expected)) if isinstance(expected, list) \
        else got == expected and type(got) is int


def test_balance_true_is_the_default_balance(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({**GOOD, "methods": [{"name": "DPO", "loss": "dpo"},
                                                        {"name": "AdaDPO", "loss": "dpo", "balance": True},
                                                        {"name": "Off", "loss": "dpo", "balance": False}]}))
    config = load_sweep_config(path)
    assert [m.balance for m in config.methods] == [None, {}, None]  # before: True reached a worker and failed there
    assert [b for _, b in config.comparisons] == ["AdaDPO"]


@pytest.mark.parametrize("key", sorted(KEYS - {"world_kind"}) + ["world.eta", "methods[0].loss"])
def test_a_key_given_twice_is_one_line_naming_it(tmp_path, capsys, monkeypatch, key):
    content = {**GOOD, "world": {"eta": 1.0}, "budget": {"epochs": 1}, "comparisons": [["DPO", "AdaDPO"]],
               "workers": 1, "epochs": [1], "untrained": True, "reuse": []}
    text = yaml.safe_dump(content, default_flow_style=False, sort_keys=False).splitlines()
    if key == "world.eta":
        at = text.index("  eta: 1.0")
    elif key == "methods[0].loss":
        at = text.index("  loss: dpo")
    else:
        at = next(i for i, line in enumerate(text) if line.startswith(f"{key}:"))
    end = at + 1
    while end < len(text) and text[end].startswith(" " * (len(text[at]) - len(text[at].lstrip()) + 1)):
        end += 1  # the key's nested lines go with it
    doubled = text[:end] + text[at:end] + text[end:]
    monkeypatch.setattr(sweep, "run_sweep", lambda *a, **k: pytest.fail("a world was built"))
    path = tmp_path / "sweep.yaml"
    path.write_text("\n".join(doubled) + "\n")
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["sweep", "--config", str(path), "--output_dir", str(tmp_path / "out")])
    line = capsys.readouterr().err.strip().splitlines()[-1]
    name = key.split(".")[-1]
    assert f"key {name!r} (lines {at + 1} and {end + 1}) is given twice" in line, (line, doubled)
