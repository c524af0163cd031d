"""Options that only act when another one switches them on: given while their switch is off, they would be
dropped without a word (``lora_r: 8`` without ``use_peft``: a full fine-tune). :func:`check_switches` says each
in one line naming the option, its switch and how to turn it on, and the run goes on as stock TRL runs the same
file (drop-in: a config that ``trl dpo`` accepts is not refused). A rule with ``refuse=True`` raises instead.

:data:`SWITCHES` lists every such group of ``adadpo train``'s keys (TRL's ``ModelConfig``, transformers'
``TrainingArguments``, TRL's ``DPOConfig`` and adadpo's); ``tests/test_config_classes.py`` gives each member a
value with its switch off.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any


def _value(config: Any, name: str) -> Any:
    value = getattr(config, name)
    return getattr(value, "value", value)  # transformers' enums (eval_strategy: IntervalStrategy.NO)


@dataclass(frozen=True)
class Switch:
    """``members`` act only when ``on(value of switch)``; ``turn_on`` says how (e.g. ``use_peft: true``);
    ``refuse=True``: an error instead of a note (unless the switch was turned off on the command line)."""

    switch: str
    members: tuple[str, ...]
    on: Callable[[Any], bool]
    turn_on: str
    refuse: bool = False


def _truthy(value: Any) -> bool:
    return bool(value)


SWITCHES: tuple[Switch, ...] = (
    Switch("use_peft", ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "lora_target_parameters",
                        "lora_modules_to_save", "lora_task_type", "use_rslora", "use_dora"), _truthy,
           "use_peft: true (LoRA)"),
    Switch("load_in_4bit", ("bnb_4bit_quant_type", "use_bnb_nested_quant", "bnb_4bit_quant_storage"), _truthy,
           "load_in_4bit: true"),
    Switch("balance", ("balance_level", "balance_use_reference", "balance_normalize", "balance_alpha_chosen",
                       "balance_alpha_rejected", "balance_clip", "balance_placement"), _truthy,
           "balance: true (AdaDPO)"),
    Switch("eval_strategy", ("eval_steps", "eval_delay", "eval_on_start", "per_device_eval_batch_size",
                             "eval_accumulation_steps", "dataset_test_split", "eval_do_concat_batches",
                             "batch_eval_metrics"), lambda v: v != "no", "eval_strategy: steps (or epoch)"),
    Switch("save_strategy", ("save_steps", "save_total_limit", "save_only_model", "save_on_each_node"),
           lambda v: v != "no", "save_strategy: steps (or epoch)"),
    Switch("logging_strategy", ("logging_steps", "logging_first_step"), lambda v: v != "no",
           "logging_strategy: steps (or epoch)"),
    Switch("push_to_hub", ("hub_model_id", "hub_strategy", "hub_private_repo", "hub_always_push", "hub_revision"),
           _truthy, "push_to_hub: true"),
    Switch("activation_checkpointing", ("activation_checkpointing_kwargs", "gradient_checkpointing_kwargs"), _truthy,
           "activation_checkpointing: true"),
    Switch("use_liger_kernel", ("liger_kernel_config",), _truthy, "use_liger_kernel: true"),
    Switch("dataloader_num_workers", ("dataloader_persistent_workers", "dataloader_prefetch_factor"),
           lambda v: v > 0, "dataloader_num_workers: 1 or more"),
    Switch("precompute_ref_log_probs", ("precompute_ref_batch_size",), _truthy, "precompute_ref_log_probs: true"),
    Switch("sync_ref_model", ("ref_model_mixup_alpha", "ref_model_sync_steps"), _truthy, "sync_ref_model: true"),
    Switch("max_steps", ("num_train_epochs",), lambda v: v < 0, "max_steps: -1 to train num_train_epochs"),
)


def check_switches(instances: Iterable[Any], given: set[str], overridden: set[str] = frozenset()) -> list[str]:
    """One note per key of ``given`` (set in the file or on the command line) whose switch, in the config
    dataclasses ``instances``, is off; ``ValueError`` instead for a rule with ``refuse=True``, unless the switch
    was turned off on the command line (``overridden``: ``--balance false`` over a file of balance_* keys is a
    deliberate choice)."""
    owner = {name: instance for instance in instances if instance is not None for name in vars(instance)}
    notes = []
    for rule in SWITCHES:
        if rule.switch not in owner:
            continue
        state = _value(owner[rule.switch], rule.switch)
        if rule.on(state):
            continue
        for member in rule.members:
            if member in given and member in owner:
                line = (f"{member}={_value(owner[member], member)!r} has no effect: {rule.switch}={state!r} turns it "
                        f"off; set {rule.turn_on}, or remove {member}")
                if rule.refuse and rule.switch not in overridden:
                    raise ValueError(line)
                notes.append(line)
    return notes
