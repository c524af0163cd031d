"""Checks ``adadpo train`` makes before the first step: that the run can start (the optional packages its keys
need, the integrations it reports to or pushes through, its callbacks' own requirements) and that it can learn
(at least one complete optimisation step per epoch). Each failure is one line naming the key and the way out,
where transformers would fail deep inside training or, worse, "finish" having trained nothing.
"""

from __future__ import annotations

import importlib.util
import math
import os
from typing import Any

#: ``(key, predicate on its value, module, extra)``: a key whose value needs an optional package.
PACKAGES = (
    ("attn_implementation", lambda v: isinstance(v, str) and v.startswith("flash_attention"), "flash_attn", "flash"),
    ("load_in_4bit", bool, "bitsandbytes", "quant"),
    ("load_in_8bit", bool, "bitsandbytes", "quant"),
    ("use_liger_kernel", bool, "liger_kernel", "liger"),
    ("use_peft", bool, "peft", "peft"),
)
#: ``report_to`` integrations and the package each needs (transformers' names).
REPORTERS = {"wandb": "wandb", "comet_ml": "comet_ml", "mlflow": "mlflow", "neptune": "neptune",
             "clearml": "clearml", "dagshub": "dagshub", "dvclive": "dvclive", "swanlab": "swanlab",
             "trackio": "trackio", "codecarbon": "codecarbon", "tensorboard": "tensorboard",
             "azure_ml": "azureml", "flyte": "flytekit"}


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def check_packages(config: Any, model_args: Any) -> None:
    """``ModuleNotFoundError`` (the CLI names the extra) for a key whose value needs a package not installed."""
    for key, needs, module, extra in PACKAGES:
        owner = model_args if hasattr(model_args, key) else config
        value = getattr(owner, key, None)
        if needs(value) and not _has(module):
            raise ModuleNotFoundError(f"{key}={value!r} needs {module}", name=module)


def reporters(config: Any) -> list[str]:
    value = config.report_to
    return [value] if isinstance(value, str) else list(value or [])


def check_integrations(config: Any, callbacks: list[Any]) -> None:
    """``ValueError`` (``ModuleNotFoundError`` for a package) for what would fail once training started: a
    ``report_to`` integration not installed or, for wandb, neither logged in nor offline; ``push_to_hub`` with
    the Hub offline or no token; an ``EarlyStoppingCallback`` without the evaluation and best-model keys it
    reads."""
    for name in reporters(config):
        module = REPORTERS.get(name)
        if module and not _has(module):
            err = ModuleNotFoundError(f"report_to={name!r} needs the {module} package", name=module)
            err.pip = name.replace("_", "-")  # the CLI names the extra, or else this
            raise err
        if name == "wandb" and os.environ.get("WANDB_MODE") not in ("offline", "disabled", "dryrun") and not (
                os.environ.get("WANDB_API_KEY") or os.path.exists(os.path.expanduser("~/.netrc"))):
            raise ValueError("report_to='wandb' but wandb is not logged in here; run `wandb login`, or set "
                             "WANDB_MODE=offline to log locally (or leave wandb out of report_to)")
    if config.push_to_hub:
        from huggingface_hub import get_token

        if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on"):
            raise ValueError("push_to_hub=True but the Hub is offline here (HF_HUB_OFFLINE is set); set push_to_hub: "
                             "false and upload the output_dir later")
        if not (config.hub_token or get_token()):
            raise ValueError("push_to_hub=True but no Hub token is set; run `hf auth login` (or set HF_TOKEN), or "
                             "set push_to_hub: false")
    from transformers import EarlyStoppingCallback

    if any(isinstance(c, EarlyStoppingCallback) or c is EarlyStoppingCallback for c in callbacks):
        strategy = getattr(config.eval_strategy, "value", config.eval_strategy)
        missing = [text for ok, text in ((config.load_best_model_at_end, "load_best_model_at_end: true"),
                                         (config.metric_for_best_model, "metric_for_best_model (e.g. eval_loss)"),
                                         (strategy != "no", "eval_strategy: steps")) if not ok]
        if missing:
            raise ValueError(f"callbacks: EarlyStoppingCallback stops on an evaluation metric and needs "
                             f"{', '.join(missing)}")


def check_steps(trainer: Any) -> None:
    """``ValueError`` when an epoch of the train dataset gives no complete optimisation step: no batch at all
    (``dataloader_drop_last`` with a batch larger than the data), or fewer batches than
    ``gradient_accumulation_steps``. A dataset without a length (streaming) is not checked."""
    args = trainer.args
    try:
        pairs = len(trainer.train_dataset)
        batches = len(trainer.get_train_dataloader())
    except TypeError:
        return
    batch = args.per_device_train_batch_size
    processes = args.world_size
    if batches == 0:
        drop = " with dataloader_drop_last: true (a short last batch is dropped)" if args.dataloader_drop_last else ""
        raise ValueError(f"the train dataset's {pairs} pairs make no batch of per_device_train_batch_size={batch} x "
                         f"{processes} process(es){drop}: zero optimisation steps; lower the batch size or add data")
    if args.gradient_accumulation_steps > batches:
        raise ValueError(f"gradient_accumulation_steps={args.gradient_accumulation_steps} is more than an epoch's "
                         f"{batches} batch(es) ({pairs} pairs, per_device_train_batch_size={batch} x {processes} "
                         "process(es)): no step would accumulate what it asks for; lower it, or the batch size")


def check_positions(trainer: Any, name: str) -> None:
    """``ValueError`` when a train sequence, as ``max_length`` lets it be, is longer than the model's positions
    (``max_position_embeddings``): learned position tables fail with an IndexError, rotary ones extrapolate past
    what the model saw. Checked on the prepared (tokenised) dataset; streaming data is not."""
    config = trainer.accelerator.unwrap_model(trainer.model).config
    positions = next((getattr(config, k) for k in ("max_position_embeddings", "n_positions", "n_ctx")
                      if isinstance(getattr(config, k, None), int)), None)
    data, max_length = trainer.train_dataset, trainer.args.max_length
    if positions is None or not hasattr(data, "__len__") or max_length is not None and max_length <= positions:
        return
    columns = ("prompt_ids", "chosen_ids", "rejected_ids")
    if not set(columns) <= set(data.column_names or ()):
        return
    lengths = data.map(lambda b: {"_n": [len(p) + max(len(c), len(r)) for p, c, r in zip(*(b[k] for k in columns))]},
                       batched=True, remove_columns=data.column_names, keep_in_memory=True)["_n"]
    longest = min(max(lengths, default=0), max_length or math.inf)
    if longest > positions:
        over = sum(min(n, max_length or math.inf) > positions for n in lengths)
        raise ValueError(f"max_length={max_length} lets {over} train pair(s) reach {longest} tokens, beyond the "
                         f"{positions} positions of model_name_or_path={name!r} (max_position_embeddings); set "
                         f"max_length: {positions} or less")
