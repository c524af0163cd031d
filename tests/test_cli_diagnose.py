"""``adadpo diagnose`` on a tiny model and dataset saved to a temp dir (offline), checked against a plain forward."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
from tiny import make_pairs, save_tiny_model, write_jsonl
from transformers import AutoModelForCausalLM, AutoTokenizer

from adadpo import gradient_imbalance
from adadpo.cli import main

TRAIN = make_pairs(12, seed=0)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("diagnose")
    save_tiny_model(root / "model", seed=0)
    save_tiny_model(root / "ref", seed=1)
    write_jsonl(root / "data" / "train.jsonl", TRAIN)
    write_jsonl(root / "chat" / "train.jsonl", make_pairs(6, seed=2, conversational=True))
    write_jsonl(root / "bad" / "train.jsonl", [{"prompt": r["prompt"], "chosen": r["chosen"]} for r in TRAIN[:4]])
    return root


def _plain_sums(model_dir: Path, rows: list[dict]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``A_w, A_l, T_w, T_l`` by a full-logits forward, one sequence at a time: the response is the completion's
    tokens plus EOS (TRL's tokenisation of string pairs), each scored by log_softmax of the previous position."""
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()

    def score(prompt: str, response: str) -> tuple[float, int]:
        p = tok(prompt, add_special_tokens=False)["input_ids"]
        r = tok(response, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        ids = torch.tensor([p + r])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits.double(), dim=-1)[0]
        return sum(logp[len(p) + i - 1, t].item() for i, t in enumerate(r)), len(r)

    out = [(score(x["prompt"], x["chosen"]), score(x["prompt"], x["rejected"])) for x in rows]
    A_w, A_l = (torch.tensor([o[k][0] for o in out], dtype=torch.float64) for k in (0, 1))
    T_w, T_l = (torch.tensor([o[k][1] for o in out], dtype=torch.float64) for k in (0, 1))
    return A_w, A_l, T_w, T_l


def _printed(stdout: str) -> dict:
    """The numbers of the report's text: mean, quantiles and clip shares."""
    return {
        "mean": float(re.search(r"mean ([+-]\d+\.\d+)", stdout).group(1)),
        "quantiles": {int(q) / 100: float(v) for q, v in re.findall(r"q(\d\d) ([+-]\d+\.\d+)", stdout)},
        "clips": {float(k): float(v) / 100 for k, v in re.findall(r"kappa=([\d.]+): (\d+\.\d)%", stdout)},
        "rejected_dominant": float(re.search(r"in (\d+\.\d)% of pairs", stdout).group(1)) / 100,
    }


def test_dpo_token_level_agrees_with_a_plain_forward(world, tmp_path, capsys):
    out = tmp_path / "out"
    kappas = ["1.01", "1.03", "1.1", "2"]  # the tiny model's log rho is small; these clips bind on some pairs
    argv = ["diagnose", "--model_name_or_path", str(world / "model"), "--dataset_name", str(world / "data"),
            "--num_pairs", "7", "--per_device_eval_batch_size", "3", "--balance_clip", *kappas,
            "--output_dir", str(out)]
    assert main(argv) == 0
    stdout = capsys.readouterr().out

    assert f"model:     {world / 'model'}" in stdout
    assert "the model is its own reference (the start of training" in stdout
    assert "split 'train', 7 pairs" in stdout and "loss:      dpo, level token" in stdout

    # dpo, token level, no reference: X = log P = A / T on each side (adadpo.side_statistics, d = 1), so
    # log rho = A_w / T_w - A_l / T_l.
    A_w, A_l, T_w, T_l = _plain_sums(world / "model", TRAIN[:7])
    expected = A_w / T_w - A_l / T_l

    saved = json.loads((out / "imbalance.json").read_text())
    log_rho = torch.tensor(saved["per_pair"]["log_rho"], dtype=torch.float64)
    torch.testing.assert_close(log_rho, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.tensor(saved["per_pair"]["chosen_logps"], dtype=torch.float64), A_w,
                               atol=1e-4, rtol=0)
    assert saved["per_pair"]["rejected_lengths"] == T_l.long().tolist()

    printed = _printed(stdout)
    assert printed["mean"] == pytest.approx(expected.mean().item(), abs=6e-4)
    qs = torch.quantile(expected, torch.tensor(list(printed["quantiles"]), dtype=torch.float64))
    assert list(printed["quantiles"]) == [0.05, 0.25, 0.5, 0.75, 0.95]
    assert list(printed["quantiles"].values()) == pytest.approx(qs.tolist(), abs=6e-4)
    shares = {float(k): (expected.abs() > math.log(float(k))).double().mean().item() for k in kappas}
    assert printed["clips"] == pytest.approx(shares, abs=6e-4)
    assert 0 < shares[1.01] and shares[2.0] == 0  # the check above is not vacuous
    assert printed["rejected_dominant"] == pytest.approx((expected > 0).double().mean().item(), abs=6e-4)
    assert f"kappa=1.01: {100 * shares[1.01]:.1f}%" in stdout
    assert stdout.count("% of pairs") == 1  # the statistics are printed once (they were also repeated in words)

    # the JSON is consistent with its own per-pair values
    assert saved["num_pairs"] == 7 and saved["settings"]["loss"] == "dpo"
    assert saved["settings"]["balance_clip"] == [1.01, 1.03, 1.1, 2.0]
    assert {float(k): v for k, v in saved["clip_fractions"].items()} == pytest.approx(
        {float(k): (log_rho.abs() > math.log(float(k))).double().mean().item() for k in kappas})
    assert saved["rejected_dominant"] == pytest.approx((log_rho > 0).double().mean().item())
    assert [saved["quantiles"][str(q)] for q in (0.05, 0.5, 0.95)] == pytest.approx(
        torch.quantile(log_rho, torch.tensor([0.05, 0.5, 0.95], dtype=torch.float64)).tolist())
    png = (out / "imbalance.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000


def test_ref_model_sequence_level_on_the_ratios(world, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["diagnose", "--model_name_or_path", str(world / "model"), "--ref_model", str(world / "ref"),
            "--dataset_name", str(world / "data"), "--num_pairs", "4", "--balance_level", "sequence",
            "--balance_use_reference", "--output_dir", str(out)]
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    assert f"reference: {world / 'ref'} (log rho measured on the ratios" in stdout
    assert "dpo (sequence level, reference ratios), 4 pairs" in stdout

    A_w, A_l, _, _ = _plain_sums(world / "model", TRAIN[:4])
    R_w, R_l, _, _ = _plain_sums(world / "ref", TRAIN[:4])
    expected = (A_w - R_w) - (A_l - R_l)  # sequence level on pi / pi_ref: X = A - R
    saved = json.loads((out / "imbalance.json").read_text())
    torch.testing.assert_close(torch.tensor(saved["per_pair"]["log_rho"], dtype=torch.float64), expected,
                               atol=1e-4, rtol=0)
    torch.testing.assert_close(torch.tensor(saved["per_pair"]["ref_rejected_logps"], dtype=torch.float64), R_l,
                               atol=1e-4, rtol=0)
    assert _printed(stdout)["mean"] == pytest.approx(expected.mean().item(), abs=6e-4)


def test_reference_free_loss_on_chat_data(world, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["diagnose", "--model_name_or_path", str(world / "model"), "--dataset_name",
            str(world / "chat" / "train.jsonl"), "--loss", "simpo", "--num_pairs", "100", "--output_dir", str(out)]
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    assert "reference: not used (simpo is reference-free)" in stdout and "split 'train', 6 pairs" in stdout

    saved = json.loads((out / "imbalance.json").read_text())
    pp = {k: torch.tensor(v, dtype=torch.float64) for k, v in saved["per_pair"].items()}
    # simpo scores the mean log-prob (d = 1/T): X = A / T + log T
    hand = pp["chosen_logps"] / pp["chosen_lengths"] + pp["chosen_lengths"].log() - (
        pp["rejected_logps"] / pp["rejected_lengths"] + pp["rejected_lengths"].log())
    torch.testing.assert_close(pp["log_rho"], hand)
    report = gradient_imbalance("simpo", chosen_logps=pp["chosen_logps"], rejected_logps=pp["rejected_logps"],
                                chosen_lengths=pp["chosen_lengths"], rejected_lengths=pp["rejected_lengths"])
    assert report.to_text() in stdout


@pytest.mark.parametrize(
    ("extra", "dataset", "message"),
    [
        (["--balance_use_reference"], "data", "--balance_use_reference needs --ref_model"),
        (["--dataset_train_split", "validation"], "data",
         "dataset_train_split='validation' is not a split of the dataset; it has ['train']"),
        ([], "bad", "has no 'rejected' column"),
        (["--loss", "simpo", "--ref_model", "REF"], "data", "loss 'simpo' is reference-free"),
        (["--balance_clip", "0.5"], "data", "--balance_clip values must all be >= 1"),
    ],
)
def test_errors_exit_2_naming_the_problem(world, capsys, extra, dataset, message):
    extra = [str(world / "ref") if a == "REF" else a for a in extra]
    with pytest.raises(SystemExit) as exc:
        main(["diagnose", "--model_name_or_path", str(world / "model"), "--dataset_name", str(world / dataset), *extra])
    assert exc.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after any progress bars of the dataset loader
    assert last.startswith("adadpo diagnose: error: ") and message in last


def test_config_gives_a_training_configs_model_data_and_loss(world, tmp_path, capsys):
    """``--config`` reads what a training YAML shares with diagnose (the command line still overrides it); the
    old option names still work, each with a note naming the new one."""
    import yaml

    config = {"model_name_or_path": str(world / "model"), "dataset_name": str(world / "data"), "loss": "simpo",
              "balance_level": "sequence", "balance_clip": 3.0, "max_length": 64, "learning_rate": 1e-3,
              "output_dir": "elsewhere"}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["diagnose", "--config", str(path), "--num-pairs", "5", "--kappa", "2", "3"]) == 0
    out, err = capsys.readouterr()
    assert f"model:     {world / 'model'}" in out and "split 'train', 5 pairs" in out
    assert "loss:      simpo, level sequence" in out and "kappa=2: " in out and "kappa=3: " in out
    assert "adadpo diagnose: note: --kappa is now --balance_clip" in err and "--num-pairs" not in err  # dashes: no note
    assert not (tmp_path / "elsewhere").exists()  # training's output_dir is not diagnose's

    assert main(["diagnose", "--config", str(path), "--num_pairs", "2", "--loss", "dpo"]) == 0
    out = capsys.readouterr().out
    assert "loss:      dpo, level sequence" in out and "kappa=3: " in out and "kappa=2: " not in out


def test_config_errors_name_the_missing_key(tmp_path, capsys):
    path = tmp_path / "run.yaml"
    path.write_text("dataset_name: pairs.jsonl\n")
    with pytest.raises(SystemExit) as exc:
        main(["diagnose", "--config", str(path)])
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip() == ("adadpo diagnose: error: model_name_or_path is required: give "
                                               f"--model_name_or_path M, or --config FILE whose YAML sets it")
    path.write_text("model_name_or_path: m\ndataset_name: d\ndtype: float64\n")
    with pytest.raises(SystemExit):
        main(["diagnose", "--config", str(path)])
    assert "error: dtype='float64': expected one of ['float32', 'bfloat16', 'float16', 'auto']" in capsys.readouterr().err
    path.write_text("- a list\n")
    with pytest.raises(SystemExit):
        main(["diagnose", "--config", str(path)])
    assert "expected a YAML mapping of training keys, got list" in capsys.readouterr().err
