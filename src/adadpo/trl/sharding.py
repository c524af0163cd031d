"""Sharded training (FSDP, DeepSpeed ZeRO-3): where the chunked head may run, and whether sharding happened.

Under PyTorch FSDP2 (``torch.distributed.fsdp.fully_shard``) every parameter is a sharded ``DTensor`` except
while the FSDP unit that owns it is gathered: between its pre-forward hook (all-gather) and post-forward
hook (reshard, unless ``reshard_after_forward=False``), and again in backward. The chunked head reads the LM
head weight itself instead of calling the head, so it must run where that weight is gathered.
:func:`call_gathered` runs a function *as* a module's forward, through ``module.__call__``, so the hooks
registered on the head (by ``fully_shard(lm_head)``, by a group such as accelerate's ``fully_shard([norm,
embed_tokens, lm_head])``, or none when the head belongs to the root unit, which is gathered for the whole
forward) gather its weight, tied to ``embed_tokens`` or not, and register the backward hooks that gather it
again and reduce-scatter its gradient. Only ``[chunk, V]`` logits exist at any time.

:func:`head_sharding` tells which sharding an ``accelerate.Accelerator`` applies; FSDP1 (flat parameters)
and ZeRO-3 are not served by the chunked head (see :data:`UNSERVED`). :func:`warn_if_not_sharded` says so
when a run asks for FSDP or DeepSpeed and accelerate set up something else, and :func:`check_sharding_request`
fails a single-process run that asks for FSDP (on a machine without GPUs,
accelerate 1.15 turns every multi-process run into CPU DDP and drops the FSDP plugin without a word).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import torch

logger = logging.getLogger("adadpo")

#: Why the chunked head does not serve a sharding: its name -> the reason given in the fallback warning.
UNSERVED = {
    "fsdp1": "its LM head is sharded by FSDP1 (flat parameters; use FSDP2: fsdp_version 2)",
    "zero3": "its LM head weight is partitioned by DeepSpeed ZeRO-3 (the chunked head serves FSDP2, not ZeRO-3)",
}


def call_gathered(module: torch.nn.Module, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` run as ``module``'s forward, inside ``module.__call__``: the forward hooks registered on
    ``module`` (FSDP2's all-gather and reshard, DeepSpeed's fetch and release) wrap it, so ``module``'s
    parameters are gathered while ``fn`` reads them. Tensors in ``fn``'s output (tuples, named tuples, dicts
    of them) get FSDP's pre-backward hook, which gathers the parameters again for backward."""
    patched = "forward" in module.__dict__
    previous = module.__dict__.get("forward")
    module.forward = fn
    try:
        return module(*args)
    finally:
        if patched:
            module.forward = previous
        else:
            del module.forward


def head_sharding(accelerator: Any) -> str | None:
    """The sharding ``accelerator`` applies to models it prepares: ``"fsdp2"``, ``"fsdp1"``, ``"zero3"`` or
    ``None`` (replicated: single process, DDP, ZeRO-1/2)."""
    state = accelerator.state
    if getattr(accelerator, "is_fsdp2", False):
        return "fsdp2"
    if getattr(state, "fsdp_plugin", None) is not None and str(state.distributed_type).endswith("FSDP"):
        return "fsdp1"
    plugin = getattr(state, "deepspeed_plugin", None)
    if str(state.distributed_type).endswith("DEEPSPEED") and getattr(plugin, "zero_stage", None) == 3:
        return "zero3"
    return None


def requested_sharding(args: Any) -> str | None:
    """The FSDP or DeepSpeed setting a run asks for (``fsdp``, ``fsdp_config``, ``deepspeed`` of its
    ``TrainingArguments``, or accelerate's ``ACCELERATE_USE_FSDP``/``ACCELERATE_USE_DEEPSPEED`` set by
    ``accelerate launch --config_file``), as ``"name=value"``, or ``None``."""
    fsdp = getattr(args, "fsdp", None)
    if fsdp:
        return f"fsdp={fsdp!r}"
    if getattr(args, "deepspeed", None):
        return f"deepspeed={args.deepspeed!r}"
    for var in ("ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED"):
        if os.environ.get(var, "false").lower() in ("1", "true"):
            return f"{var}={os.environ[var]}"
    return None


def check_sharding_request(args: Any) -> None:
    """Fail, naming the setting, when ``args`` ask for FSDP in a single process (transformers refuses it with
    "Using fsdp only works in distributed training"): FSDP shards over several processes."""
    asked = requested_sharding(args)
    if asked is not None and asked.startswith("fsdp=") and int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        raise ValueError(
            f"{asked} asks for FSDP, which shards the model over several processes, but this is one process "
            f"(WORLD_SIZE unset or 1): launch with `accelerate launch --config_file <fsdp config>` or `torchrun "
            f"--nproc_per_node N`, or drop fsdp"
        )


def warn_if_not_sharded(args: Any, accelerator: Any) -> str | None:
    """Log one warning (main process) when ``args`` ask for FSDP or DeepSpeed but ``accelerator`` does not
    apply it; returns the warning (``None`` when nothing was asked, or it is applied)."""
    asked = requested_sharding(args)
    kind = str(accelerator.state.distributed_type).rsplit(".", 1)[-1]
    if asked is None or kind in ("FSDP", "DEEPSPEED"):
        return None
    why = (
        "accelerate shards only on accelerators (GPU, XPU, NPU, ...); on CPU it drops the FSDP plugin and runs DDP"
        if kind in ("MULTI_CPU", "NO") and not torch.cuda.is_available() else "accelerate did not set it up"
    )
    message = (
        f"{asked} was requested, but this run is not sharded (accelerate distributed_type={kind}): {why}. "
        f"Every process holds the whole model, gradients and optimizer state."
    )
    if accelerator.is_main_process:
        logger.warning(message)
    return message
