"""Sharded (FSDP2) training on CPU: the worker of tests/test_fsdp.py.

``python fsdp_worker.py DIR one`` trains each case in one process, unsharded, with the global batch;
``torchrun --nproc_per_node 2 fsdp_worker.py DIR two`` trains them in two processes, half the batch each, the
model sharded by FSDP2. ``DIR`` holds ``model/`` (a tiny Llama with tied embeddings) and ``pairs.jsonl``;
rank 0 writes ``DIR/<one|two>/<case>.pt``. The cases:

- ``trainer_*``: :class:`adadpo.trl.AdaDPOTrainer`, sharded by accelerate's own FSDP2 preparation
  (``fsdp2_prepare_model``: one unit per decoder layer, a ``[final norm, embeddings, lm_head]`` unit, the
  root), as on GPUs. accelerate 1.15 does not shard on CPU: ``AcceleratorState`` keeps an FSDP plugin only
  when its ``distributed_type`` is an accelerator one (MULTI_GPU, MULTI_XPU, ...), and a CPU run is
  MULTI_CPU, so the plugin is dropped (``ACCELERATE_USE_FSDP`` and an accelerate config with
  ``distributed_type: FSDP`` end in the same branch). :func:`force_fsdp_on_cpu` sets the state to FSDP after
  the fact, in this test only, so that accelerate's FSDP2 code path runs here on gloo.
- ``example_*``: ``examples/fsdp/train_fsdp2.py``, the torch-native loop (layers, then the root unit).
- ``head_unit`` (two processes only): the chunked head on a model whose LM head is an FSDP unit of its own,
  resharded after forward, against the unsharded model's gradients on the same batch.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples" / "fsdp"))

#: case -> AdaDPOConfig fields (trainer) / train_fsdp2.train keywords (example): plain and balanced DPO with a
#: live and a precomputed reference, and a reference-free loss
TRAINER_CASES = {
    "trainer_dpo_live": dict(loss="dpo", balance=False, save_strategy="steps", save_steps=2),  # and saves
    "trainer_dpo_balanced_precomputed": dict(loss="dpo", balance=True, precompute_ref_log_probs=True),
    "trainer_simpo_balanced_checkpointing": dict(loss="simpo", beta=2.0, balance=True, gradient_checkpointing=True),
    # LoRA: the reference is the base model with the adapter disabled
    "trainer_dpo_balanced_lora": dict(loss="dpo", balance=True),
    # sharded by examples/fsdp/accelerate_fsdp2.yaml as `accelerate launch` exports it, fp32 instead of bf16;
    # rank 1 loads garbage weights: cpu_ram_efficient_loading must broadcast rank 0's
    "trainer_dpo_balanced_accelerate_config": dict(loss="dpo", balance=True),
}
ACCELERATE_CONFIG = ROOT / "examples" / "fsdp" / "accelerate_fsdp2.yaml"
EXAMPLE_CASES = {
    "example_dpo_live": dict(loss="dpo", balance=False, reference="live"),
    "example_dpo_balanced_precomputed": dict(loss="dpo", balance=True, reference="precomputed"),
    "example_simpo_balanced": dict(loss="simpo", beta=2.0, balance=True, reference="none"),
}
STEPS, GLOBAL_BATCH = 4, 4


def force_fsdp_on_cpu() -> Callable[[], None]:
    """Make ``AcceleratorState`` keep an FSDP plugin on a multi-process CPU run (test-only; see module doc).
    Returns the function that undoes it."""
    import accelerate.state
    from accelerate.utils import DistributedType

    init = accelerate.state.AcceleratorState.__init__

    def patched(self, *args, fsdp_plugin=None, **kwargs):
        init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if fsdp_plugin is not None and self.distributed_type in (DistributedType.MULTI_CPU, DistributedType.FSDP):
            # every later AcceleratorState() copies PartialState's distributed_type: set it there too
            accelerate.state.PartialState._shared_state["distributed_type"] = DistributedType.FSDP
            self.distributed_type = DistributedType.FSDP
            self.fsdp_plugin = fsdp_plugin

    def undo() -> None:
        accelerate.state.AcceleratorState.__init__ = init
        accelerate.state.PartialState._shared_state["distributed_type"] = DistributedType.MULTI_CPU
        accelerate.state.AcceleratorState._reset_state()

    accelerate.state.AcceleratorState.__init__ = patched
    return undo


def accelerate_launch_env(config_file: Path) -> dict[str, str]:
    """The ``ACCELERATE_*``/``FSDP_*`` variables ``accelerate launch --config_file config_file`` exports
    (accelerate's own launcher code), with mixed precision off (fp32, to compare with the unsharded run)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env

    args, _, _ = _validate_launch_command(launch_command_parser().parse_args(["--config_file", str(config_file), "x.py"]))
    env = {k: v for k, v in prepare_multi_gpu_env(args).items() if k.startswith(("ACCELERATE_", "FSDP_"))}
    return {**env, "ACCELERATE_MIXED_PRECISION": "no"}


def full_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter as a full tensor (DTensor shards all-gathered), on every rank."""
    params = model.named_parameters(remove_duplicate=False)  # tied weights under both names
    return {n: (p.full_tensor() if hasattr(p, "full_tensor") else p).detach().clone() for n, p in params}


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def run_trainer_cases(data: Path, out: Path, world: int) -> dict[str, dict]:
    from accelerate.state import AcceleratorState
    from datasets import load_dataset
    from peft import LoraConfig
    from tiny import TRAINER_ARGS
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from adadpo.trl import AdaDPOConfig, AdaDPOTrainer

    undo = force_fsdp_on_cpu() if world > 1 else (lambda: None)
    warnings = _Warnings()
    logging.getLogger("adadpo").addHandler(warnings)
    tokenizer = AutoTokenizer.from_pretrained(data / "model")
    # from a file, cached in DIR: TRL's precomputed reference columns are written by rank 0 and read by all
    dataset = load_dataset("json", data_files=str(data / "pairs.jsonl"), split="train", cache_dir=str(out / "cache"))
    sharding = dict(fsdp=True, fsdp_config={"version": 2, "transformer_layer_cls_to_wrap": ["LlamaDecoderLayer"]})
    results = {}
    for name, fields in TRAINER_CASES.items():
        warnings.messages.clear()
        from_config = name.endswith("accelerate_config") and world > 1
        env = accelerate_launch_env(ACCELERATE_CONFIG) if from_config else {}
        os.environ.update(env)  # before the models load: cpu_ram_efficient_loading puts rank 1's on meta
        args = AdaDPOConfig(str(out / name), max_steps=STEPS, use_cpu=True, **{
            **TRAINER_ARGS, "per_device_train_batch_size": GLOBAL_BATCH // world, **fields,
            **(sharding if world > 1 and not from_config else {})})
        model = AutoModelForCausalLM.from_pretrained(data / "model")
        lora = name.endswith("lora")
        ref = AutoModelForCausalLM.from_pretrained(data / "model") if fields["loss"] == "dpo" and not lora else None
        peft = {"peft_config": LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])} if lora else {}
        if from_config and int(os.environ["RANK"]) > 0:
            with torch.no_grad():  # cpu_ram_efficient_loading: accelerate must replace these by rank 0's weights
                for p in model.parameters():
                    p.fill_(0.5)
        AcceleratorState._reset_state()  # each case builds its own accelerator state
        trainer = AdaDPOTrainer(model=model, ref_model=ref, args=args, train_dataset=dataset, processing_class=tokenizer,
                                **peft)
        trainer.train()
        trainer.save_model()
        for key in env:
            del os.environ[key]
        results[name] = {
            "saved": sorted(p.name for p in (out / name).iterdir()), "dir": str(out / name),
            "losses": [h["loss"] for h in trainer.state.log_history if "loss" in h],
            "backends": sorted({b.name for b in trainer._backends.values()}),
            "fsdp2": trainer.accelerator.is_fsdp2,
            "classes": [type(m).__name__ for m in (trainer.model_wrapped, trainer.ref_model) if m is not None],
            "warnings": list(warnings.messages),
            "weights": full_weights(trainer.model),
        }
    undo()
    logging.getLogger("adadpo").removeHandler(warnings)
    return results


def run_cli_without_sharding(data: Path, out: Path) -> dict:
    """``adadpo train`` asking for FSDP in two CPU processes, as accelerate really sets them up (DDP)."""
    import yaml

    from adadpo.cli import main

    config = {"model_name_or_path": str(data / "model"), "dataset_name": str(data / "pairs.jsonl"), "loss": "simpo",
              "beta": 2.0, "max_steps": 1, "per_device_train_batch_size": 2, "report_to": "none", "save_strategy": "no",
              "gradient_checkpointing": False, "disable_tqdm": True, "output_dir": str(out / "cli_fsdp"),
              "fsdp": "full_shard", "fsdp_config": {"version": 2}}
    path = out / f"cli_fsdp_rank{os.environ.get('RANK', '0')}.yaml"
    path.write_text(yaml.safe_dump(config))
    warnings = _Warnings()
    logging.getLogger("adadpo").addHandler(warnings)
    rc = main(["train", "--config", str(path)])
    logging.getLogger("adadpo").removeHandler(warnings)
    return {"rc": rc, "warnings": warnings.messages}


def run_example_cases(data: Path, out: Path) -> dict[str, dict]:
    import train_fsdp2
    from transformers import AutoModelForCausalLM

    results = {}
    for name, kwargs in EXAMPLE_CASES.items():
        losses = train_fsdp2.train(str(data / "model"), str(data / "pairs.jsonl"), str(out / name), steps=STEPS,
                                   global_batch=GLOBAL_BATCH, **kwargs)
        if torch.distributed.is_initialized():
            torch.distributed.barrier()  # rank 0 has written the model
        results[name] = {"losses": losses, "weights": full_weights(AutoModelForCausalLM.from_pretrained(out / name))}
    return results


def check_head_unit(data: Path) -> dict:
    """Chunked-head sums and gradients with ``lm_head`` its own FSDP2 unit (untied, resharded after forward)
    against the unsharded model, both on the same whole batch on every rank."""
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import DTensor
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from train_fsdp2 import collate

    from adadpo.trl.chunked_head import install_chunked_head

    tokenizer = AutoTokenizer.from_pretrained(data / "model")
    rows = [json.loads(line) for line in (data / "pairs.jsonl").read_text().splitlines()][:GLOBAL_BATCH]
    inputs = collate(rows, tokenizer, torch.device("cpu"))
    labels = inputs.pop("labels")
    models = []
    for _ in range(2):
        model = AutoModelForCausalLM.from_pretrained(data / "model")
        model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone())  # untie
        install_chunked_head(model)
        models.append(model)
    full, sharded = models
    for layer in sharded.model.layers:
        fully_shard(layer)
    fully_shard(sharded.lm_head, reshard_after_forward=True)
    fully_shard(sharded)
    sums = []
    for model in (full, sharded):
        tokens = model(**inputs, labels=labels, adadpo_chunked=True).tokens
        tokens.per_sequence().logps.sum().backward()
        sums.append(tokens.per_sequence().logps.detach())
    grads = {n: (p.grad, q.grad) for (n, p), (_, q) in zip(full.named_parameters(), sharded.named_parameters())}
    return {
        "head_resharded": isinstance(sharded.lm_head.weight, DTensor),
        "sums": sums,
        "grads": {n: (g.clone(), h.full_tensor()) for n, (g, h) in grads.items()},
    }


def main(data: Path, run: str) -> None:
    torch.set_num_threads(1)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    out = data / run
    results = run_trainer_cases(data, out, world)
    results.update(run_example_cases(data, out))
    if world > 1:
        results["head_unit"] = check_head_unit(data)
        results["cli_fsdp_unsharded"] = run_cli_without_sharding(data, out)
    if int(os.environ.get("RANK", "0")) == 0:
        torch.save(results, out / "results.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
