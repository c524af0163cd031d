"""Sharded (FSDP2) training on CPU: two processes train like one, through AdaDPOTrainer and the example loop.

The worker (tests/fsdp_worker.py) runs every case once unsharded in one process with the global batch and
once in two processes under torchrun (gloo), half the batch each, the model sharded by FSDP2; the chunked
head must be the backend in both (no fallback to TRL's head). A run that asks for FSDP and is not sharded
must say so.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import yaml
from fsdp_worker import EXAMPLE_CASES, TRAINER_CASES
from launch import launch
from tiny import make_model, make_pairs, make_tokenizer, write_jsonl
from transformers import AutoModelForCausalLM

WORKER = Path(__file__).with_name("fsdp_worker.py")
#: two processes against one: relative on the logged losses; (rtol, atol) on the final weights after 4 AdamW
#: steps (Adam's normalisation turns float-rounding differences of tiny gradients into up to ~lr per step)
LOSS_RTOL, WEIGHT_TOL = 1e-5, (1e-4, 1e-5)
INITIAL: dict[str, torch.Tensor] = {}  # the model's weights before training, filled by the fixture


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    """(one process, two processes): case -> losses, weights, backends, ... (see fsdp_worker.py)."""
    root = tmp_path_factory.mktemp("fsdp")
    tokenizer = make_tokenizer()
    model = make_model(tokenizer, hidden=32)
    model.config.tie_word_embeddings = True  # like SmolLM2, Llama 3.2, Qwen2.5 small
    model.lm_head.weight = model.get_input_embeddings().weight
    model.save_pretrained(root / "model")
    INITIAL.update({n: p.detach().clone() for n, p in model.named_parameters(remove_duplicate=False)})
    tokenizer.save_pretrained(root / "model")
    write_jsonl(root / "pairs.jsonl", make_pairs(16))
    launch([sys.executable, str(WORKER), str(root), "one"])
    launch([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(WORKER),
             str(root), "two"])
    return torch.load(root / "one" / "results.pt"), torch.load(root / "two" / "results.pt")


def _assert_same_run(one: dict, two: dict) -> None:
    assert len(one["losses"]) == 4
    assert two["losses"] == pytest.approx(one["losses"], rel=LOSS_RTOL, abs=1e-7)
    assert one["weights"].keys() == two["weights"].keys()
    names = {n.removeprefix("base_model.model.") for n in one["weights"]}  # LoRA's names wrap the model's
    assert {"lm_head.weight", "model.embed_tokens.weight"} <= names  # tied: both names, one tensor
    for name, p in one["weights"].items():
        torch.testing.assert_close(two["weights"][name], p, rtol=WEIGHT_TOL[0], atol=WEIGHT_TOL[1], msg=name)
    lora_b = [p for n, p in one["weights"].items() if "lora_B" in n]
    if lora_b:  # it trained: LoRA's B matrices start at zero, the head is frozen
        assert all(p.abs().max() > 0 for p in lora_b)
    else:
        assert not torch.equal(one["weights"]["lm_head.weight"], INITIAL["lm_head.weight"])


@pytest.mark.slow
@pytest.mark.parametrize("case", list(TRAINER_CASES))
def test_fsdp2_trainer_two_processes_match_one(runs, case):
    one, two = runs[0][case], runs[1][case]
    assert two["fsdp2"] and not one["fsdp2"]
    assert all(c.startswith("FSDP") for c in two["classes"])  # policy (and live reference) sharded
    assert one["backends"] == two["backends"] == ["chunked"]  # the chunked head served the sharded model
    assert not two["warnings"] and not one["warnings"]
    _assert_same_run(one, two)
    if TRAINER_CASES[case].get("save_strategy") == "steps":  # staged checkpoints and the final model under FSDP2
        assert {"checkpoint-2", "checkpoint-4", "model.safetensors"} <= set(two["saved"]), two["saved"]
        saved = AutoModelForCausalLM.from_pretrained(two["dir"])
        for name, p in saved.named_parameters(remove_duplicate=False):
            torch.testing.assert_close(p, two["weights"][name], rtol=0, atol=0, msg=name)


@pytest.mark.slow
@pytest.mark.parametrize("case", list(EXAMPLE_CASES))
def test_fsdp2_example_loop_two_processes_match_one(runs, case):
    _assert_same_run(runs[0][case], runs[1][case])


@pytest.mark.slow
def test_fsdp2_chunked_head_on_a_head_sharded_on_its_own(runs):
    check = runs[1]["head_unit"]
    assert check["head_resharded"]  # outside its forward the head weight is a DTensor shard
    torch.testing.assert_close(check["sums"][1], check["sums"][0], rtol=1e-6, atol=1e-6)
    for name, (full, sharded) in check["grads"].items():
        torch.testing.assert_close(sharded, full, rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.slow
def test_fsdp_asked_but_not_sharded_by_accelerate_warns_once(runs):
    """Two CPU processes: accelerate drops the FSDP plugin and runs DDP; ``adadpo train`` says so, once."""
    run = runs[1]["cli_fsdp_unsharded"]
    assert run["rc"] == 0
    assert run["warnings"] == [
        "fsdp=True was requested, but this run is not sharded (accelerate distributed_type=MULTI_CPU): accelerate "
        "shards only on accelerators (GPU, XPU, NPU, ...); on CPU it drops the FSDP plugin and runs DDP. Every "
        "process holds the whole model, gradients and optimizer state."
    ]


def test_adadpo_train_with_fsdp_in_one_process_fails_naming_the_setting(tmp_path, capsys):
    from tiny import save_tiny_model

    from adadpo.cli import main

    save_tiny_model(tmp_path / "model")
    write_jsonl(tmp_path / "pairs.jsonl", make_pairs(8))
    config = {"model_name_or_path": str(tmp_path / "model"), "dataset_name": str(tmp_path / "pairs.jsonl"),
              "loss": "simpo", "max_steps": 1, "report_to": "none", "fsdp": "full_shard", "fsdp_config": {"version": 2},
              "output_dir": str(tmp_path / "out")}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--config", str(tmp_path / "run.yaml")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("adadpo train: error: fsdp=True asks for FSDP, which shards the model over several "
                          "processes, but this is one process (WORLD_SIZE unset or 1): launch with"), err


def _accelerator(kind: str, **state):
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    fsdp2 = state.pop("fsdp2", False)
    return SimpleNamespace(state=SimpleNamespace(distributed_type=DistributedType[kind], **state), is_fsdp2=fsdp2,
                           is_main_process=True)


@pytest.mark.parametrize("accelerator, expected", [
    (lambda: _accelerator("FSDP", fsdp_plugin=object(), fsdp2=True), "fsdp2"),
    (lambda: _accelerator("FSDP", fsdp_plugin=object()), "fsdp1"),
    (lambda: _accelerator("DEEPSPEED", deepspeed_plugin=type("P", (), {"zero_stage": 3})()), "zero3"),
    (lambda: _accelerator("DEEPSPEED", deepspeed_plugin=type("P", (), {"zero_stage": 2})()), None),
    (lambda: _accelerator("MULTI_CPU"), None),
])
def test_fsdp_head_sharding_names_what_accelerate_applies(accelerator, expected):
    from adadpo.trl.sharding import head_sharding

    assert head_sharding(accelerator()) == expected


@pytest.mark.parametrize("sharding, backend, reason", [
    ("fsdp2", "chunked", None), (None, "chunked", None),
    ("fsdp1", "trl_fused", "its LM head is sharded by FSDP1"),
    ("zero3", "trl_fused", "its LM head weight is partitioned by DeepSpeed ZeRO-3"),
])
def test_fsdp_chunked_backend_serves_fsdp2_and_falls_back_once_for_fsdp1_and_zero3(caplog, sharding, backend, reason):
    from adadpo.trl.backends import choose_backend

    model = make_model(make_tokenizer())
    with caplog.at_level("WARNING", logger="adadpo"):
        assert choose_backend(model, "chunked", sharding=sharding).name == backend
        choose_backend(model, "chunked", sharding=sharding)
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == (reason is not None), warned
    if reason:
        assert f"logps_backend='chunked' cannot serve LlamaForCausalLM: {reason}" in warned[0]
