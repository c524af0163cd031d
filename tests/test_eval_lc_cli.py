"""`adadpo lc FILES... [--json OUT]`: AlpacaEval annotation files and adadpo's own records in, a table and JSON out;
each kind of bad file gives exit code 2 and one line naming the file and the record."""

from __future__ import annotations

import json

import numpy as np
import pytest

from adadpo.cli import main
from adadpo.eval import length_controlled_winrates

BASELINE = "reference"


def _comparisons(seed=0, n_models=3, n_instructions=60):
    rng = np.random.default_rng(seed)
    rows = []
    len_b = rng.integers(20, 400, n_instructions)
    for m in range(n_models):
        len_m = (len_b * np.exp(rng.normal(0.3 * m - 0.3, 0.5, n_instructions))).astype(int) + 1
        z = (m - 1) * 0.8 + 1.2 * np.tanh((len_m - len_b) / 200)
        p = np.where(rng.random(n_instructions) < 1 / (1 + np.exp(-z)), 1.0, 0.0)
        p[::7] = rng.random(len(p[::7]))  # some soft verdicts
        for i in range(n_instructions):
            rows.append({"model": f"model-{m}", "instruction": f"Instruction number {i}?", "p": float(p[i]),
                         "len_model": int(len_m[i]), "len_baseline": int(len_b[i])})
    return rows


def _alpaca(rows):
    """AlpacaEval's format: output_1 the baseline's answer, output_2 the model's, preference in [1, 2]."""
    return [{"instruction": r["instruction"], "output_1": "b" * r["len_baseline"], "output_2": "é" * r["len_model"],
             "generator_1": BASELINE, "generator_2": r["model"], "preference": 1.0 + r["p"],
             "annotator": "weighted_alpaca_eval_gpt4_turbo"} for r in rows]


def _own(rows):
    return [{"model": r["model"], "instruction": r["instruction"], "preference": r["p"], "len_model": r["len_model"],
             "len_baseline": r["len_baseline"], "baseline": BASELINE} for r in rows]


def _write(path, records, jsonl=False):
    if jsonl:
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    else:
        path.write_text(json.dumps(records), encoding="utf-8")
    return str(path)


def _expected(rows):
    return length_controlled_winrates([r["model"] for r in rows], [r["instruction"] for r in rows],
                                      [r["p"] for r in rows], [r["len_model"] for r in rows],
                                      [r["len_baseline"] for r in rows])


@pytest.mark.parametrize("layout", ["alpaca-per-model", "own-jsonl", "mixed"])
def test_files_give_the_table_and_json_of_the_api(tmp_path, capsys, layout):
    rows = _comparisons()
    files = []
    for m in ("model-0", "model-1", "model-2"):
        mine = [r for r in rows if r["model"] == m]
        own = layout == "own-jsonl" or (layout == "mixed" and m == "model-1")
        files.append(_write(tmp_path / f"{m}.{'jsonl' if own else 'json'}", _own(mine) if own else _alpaca(mine),
                            jsonl=own))
    out = tmp_path / "lc.json"
    assert main(["lc", *files, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    expected = _expected(rows)
    data = json.loads(out.read_text())
    assert "fractions" in data["units"]["rates"] and data["baseline"] == BASELINE
    assert data["units"]["length"] == ("characters" if layout == "alpaca-per-model" else
                                       "as given in len_model / len_baseline")
    assert data["difficulty"] == "estimated"
    for m, r in expected.models.items():
        got = data["models"][m]
        assert got["lc"] == pytest.approx(r.lc, abs=1e-9) and got["wr"] == pytest.approx(r.wr, abs=1e-12)
        assert got["n"] == 60 and got["lc_se"] == pytest.approx(r.lc_se, rel=1e-6)
        line = next(x for x in printed.splitlines() if x.startswith(m))
        assert line.split()[1:5] == ["60", f"{100 * r.wr:.2f}", f"{100 * r.lc:.2f}", f"{100 * r.lc_se:.2f}"]
    assert "against reference; instruction difficulty estimated across the 3 models" in printed


def test_difficulty_table_and_one_model(tmp_path, capsys):
    rows = [r for r in _comparisons(1) if r["model"] == "model-2"]
    table = tmp_path / "difficulty.csv"
    table.write_text("instruction,difficulty\n" + "".join(f"\"{r['instruction']}\",{i % 5 - 2}\n"
                                                          for i, r in enumerate(rows)))
    f = _write(tmp_path / "a.json", _alpaca(rows))
    out = tmp_path / "o.json"
    assert main(["lc", f, "--difficulty", str(table), "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["difficulty"] == "table" and data["models"]["model-2"]["difficulty_coef"] is not None
    assert main(["lc", f, "--json", str(out)]) == 0
    assert json.loads(out.read_text())["difficulty"] == "none"
    assert "not comparable with the leaderboard" in capsys.readouterr().out


def test_failed_judge_calls_are_dropped_and_counted(tmp_path, capsys):
    recs = _alpaca(_comparisons(2, n_models=2))
    recs[3]["preference"] = None
    assert main(["lc", _write(tmp_path / "a.json", recs)]) == 0
    err = capsys.readouterr().err
    assert "dropped 1 comparisons without a preference" in err
    assert "adadpo lc: note: 1 of 60 instructions were answered by only one model" in err


def _bad_cases(tmp_path):
    good = _alpaca(_comparisons(3, n_models=2, n_instructions=10))
    own = _own(_comparisons(3, n_models=2, n_instructions=10))
    cases = {
        "missing file": (str(tmp_path / "nope.json"), r"nope.json: no such file"),
        "not JSON": (tmp_path / "bad.json", r"bad.json is not valid JSON"),
        "not an array": (tmp_path / "obj.json", r"obj.json holds a JSON dict; expected an array"),
        "bad jsonl line": (tmp_path / "bad.jsonl", r"bad.jsonl:2 is not valid JSON"),
        "empty": (tmp_path / "empty.json", r"empty.json: holds no records"),
        "not UTF-8": (tmp_path / "latin.json", r"latin.json: not UTF-8 text"),
        "record not an object": (tmp_path / "list.json", r"list.json: record 1 is a list; expected an object"),
        "missing field": (tmp_path / "field.json", r"field.json: record 4: no field 'output_2'"),
        "preference out of range": (tmp_path / "range.json",
                                    r"range.json: record 2: preference = 3.0 is outside \[1, 2\]"),
        "preference not a number": (tmp_path / "str.json", r"str.json: record 0: preference = 'yes' is not a number"),
        "own: negative length": (tmp_path / "neg.jsonl", r"neg.jsonl: record 5: len_model = -3.0 is negative"),
        "own: p outside [0, 1]": (tmp_path / "p.jsonl", r"p.jsonl: record 1: preference = 1.5 is outside \[0, 1\]"),
        "own: missing field": (tmp_path / "own.jsonl", r"own.jsonl: record 0: no field 'len_baseline'"),
        "two baselines": (tmp_path / "base.json", r"several baselines \(other, reference\)"),
        "same model twice on an instruction": (tmp_path / "dup.json", r"dup.json: record 10: model 'model-0' already "
                                                                      r"has a comparison on this instruction"),
    }
    (tmp_path / "bad.json").write_text("[{")
    (tmp_path / "obj.json").write_text(json.dumps({"a": 1}))
    (tmp_path / "bad.jsonl").write_text(json.dumps(own[0]) + "\n{oops\n")
    (tmp_path / "empty.json").write_text("[]")
    (tmp_path / "latin.json").write_bytes('[{"instruction": "caf\xe9"}]'.encode("latin-1"))
    (tmp_path / "list.json").write_text(json.dumps([good[0], [1, 2]]))
    _write(tmp_path / "field.json", [r if i != 4 else {k: v for k, v in r.items() if k != "output_2"}
                                     for i, r in enumerate(good)])
    _write(tmp_path / "range.json", [r if i != 2 else {**r, "preference": 3.0} for i, r in enumerate(good)])
    _write(tmp_path / "str.json", [{**good[0], "preference": "yes"}] + good[1:])
    _write(tmp_path / "neg.jsonl", [r if i != 5 else {**r, "len_model": -3} for i, r in enumerate(own)], jsonl=True)
    _write(tmp_path / "p.jsonl", [r if i != 1 else {**r, "preference": 1.5} for i, r in enumerate(own)], jsonl=True)
    _write(tmp_path / "own.jsonl", [{k: v for k, v in own[0].items() if k != "len_baseline"}] + own[1:], jsonl=True)
    _write(tmp_path / "base.json", good[:3] + [{**good[12], "generator_1": "other"}])
    _write(tmp_path / "dup.json", good[:10] + good[:1])
    return cases


@pytest.mark.parametrize("case", ["missing file", "not JSON", "not an array", "bad jsonl line", "empty", "not UTF-8",
                                  "record not an object", "missing field", "preference out of range",
                                  "preference not a number", "own: negative length", "own: p outside [0, 1]",
                                  "own: missing field", "two baselines", "same model twice on an instruction"])
def test_each_kind_of_bad_file_is_one_line_naming_file_and_record(tmp_path, capsys, case):
    path, message = _bad_cases(tmp_path)[case]
    with pytest.raises(SystemExit) as exc:
        main(["lc", str(path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("adadpo lc: error: "), err
    assert __import__("re").search(message, err), err


@pytest.mark.parametrize(("table", "message"), [
    ("instruction,value\nx,1\n", r"columns \['instruction', 'value'\]; expected 'instruction' and 'difficulty'"),
    ("instruction,difficulty\nx,abc\n", r"line 2: difficulty = 'abc' is not a number"),
    ("instruction,difficulty\nx,1\n", r"instruction\[0\] = 'Instruction number 0\?' is not a key of the difficulty"),
])
def test_a_bad_difficulty_table_is_named(tmp_path, capsys, table, message):
    f = _write(tmp_path / "a.json", _alpaca(_comparisons(4, n_models=2, n_instructions=5)))
    (tmp_path / "d.csv").write_text(table)
    with pytest.raises(SystemExit) as exc:
        main(["lc", f, "--difficulty", str(tmp_path / "d.csv")])
    assert exc.value.code == 2
    assert __import__("re").search(message, capsys.readouterr().err)


def test_grid_records_with_prompt_and_answer_index_keys(tmp_path):
    """A grid's records: instruction = [held-out prompt id, answer index], lengths in words; the keys match across
    runs as tuples, as length_controlled_winrates gets them from Python."""
    rows = _comparisons(5, n_models=3, n_instructions=40)
    records = [{**r, "instruction": [i % 20, i // 20]} for r in _own(rows)
               for i in [int(r["instruction"].split()[2].rstrip("?"))]]
    out = tmp_path / "o.json"
    assert main(["lc", _write(tmp_path / "grid.jsonl", records, jsonl=True), "--json", str(out)]) == 0
    expected = length_controlled_winrates([r["model"] for r in records],
                                          [(r["instruction"][0], r["instruction"][1]) for r in records],
                                          [r["preference"] for r in records], [r["len_model"] for r in records],
                                          [r["len_baseline"] for r in records])
    data = json.loads(out.read_text())
    assert {m: v["lc"] for m, v in data["models"].items()} == pytest.approx(
        {m: r.lc for m, r in expected.models.items()}, abs=1e-12)
