"""``adadpo train``: train any causal LM on any preference dataset with :class:`adadpo.trl.AdaDPOTrainer`.

    adadpo train --config run.yaml [--key value ...]
    torchrun --nproc_per_node 2 -m adadpo train --config run.yaml      # several processes (CPU: gloo)

Keys: the script's (``dataset_name``, ``dataset_config``, ``dataset_train_split``, ``dataset_test_split``,
``tokenizer_name_or_path``, ``callbacks``, ``auto_resume``), TRL's ``ModelConfig`` (``model_name_or_path``,
``dtype``, ``use_peft``, ``lora_*``, ...), and every ``AdaDPOConfig`` field (``loss``, ``balance``,
``balance_*``, ``beta``, ``output_dir``, ``learning_rate``, ``save_steps``, ``deepspeed``, ``fsdp``, ...).
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from adadpo.cli.config import ParsedConfig

NAME = "train"
RAW_ARGS = True  # YAML config + overrides, parsed by adadpo.cli.config
HELP = "train a model with a plain or balanced preference loss (YAML config + overrides)"

logger = logging.getLogger("adadpo")
_LAUNCHED = "ADADPO_LAUNCHED"  # set for the processes `accelerate launch` starts


def _script_arguments() -> type:
    from trl import ScriptArguments

    @dataclass
    class TrainScriptArguments(ScriptArguments):
        """``trl.ScriptArguments`` plus adadpo's own: tokenizer, callbacks and automatic resume."""

        tokenizer_name_or_path: str | None = field(
            default=None, metadata={"help": "Tokenizer hub id or path (default: the model's)."}
        )
        callbacks: list[str] = field(
            default_factory=list,
            metadata={"help": "Extra TrainerCallbacks as 'package.module:ClassName'.", "nargs": "+"},
        )
        auto_resume: bool = field(
            default=True,
            metadata={"help": "Resume from the last checkpoint in output_dir when there is one."},
        )

    return TrainScriptArguments


def _dataclass_types() -> tuple[type, ...]:
    """``trl dpo``'s dataclasses (script, config, model, dataset mixture) with ``AdaDPOConfig`` for ``DPOConfig``."""
    from trl import DatasetMixtureConfig, ModelConfig

    from adadpo.trl import AdaDPOConfig

    return (_script_arguments(), AdaDPOConfig, ModelConfig, DatasetMixtureConfig)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(NAME, help=HELP, description=__doc__, add_help=False, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("args", nargs=argparse.REMAINDER, help="--config FILE and --key value overrides")


def parse(argv: list[str]) -> ParsedConfig:
    """``argv`` (``--config FILE``, ``--key value``) as ``(script, AdaDPOConfig, ModelConfig)`` instances, the
    keys given and the ``accelerate launch`` arguments (see :mod:`adadpo.cli.config`)."""
    from adadpo.cli.config import parse_config

    return parse_config(_dataclass_types(), argv, prog="adadpo train")


def launch(parsed: ParsedConfig) -> int:
    """Run ``accelerate launch <launch args> -m adadpo train <the rest>``, as ``trl dpo`` does for launch keys such
    as ``num_processes`` or ``accelerate_config``; the launched processes ignore the launch keys."""
    from accelerate.commands.launch import launch_command, launch_command_parser

    os.environ[_LAUNCHED] = "1"
    launch_command(launch_command_parser().parse_args([*parsed.launch_args, "--module", "adadpo", "train",
                                                       *parsed.script_argv]))
    return 0


def run(args: argparse.Namespace) -> int:
    argv = list(args.args)
    if argv[:1] in (["-h"], ["--help"]):
        from trl import TrlParser

        TrlParser(_dataclass_types(), prog="adadpo train").print_help()
        return 0
    parsed = parse(argv)
    if parsed.launch_args and not os.environ.get(_LAUNCHED):
        return launch(parsed)
    train(*parsed.instances, parsed.given)
    return 0


def train(script, config, model_args, mixture=None, given: set[str] = frozenset()):
    """Load model, tokenizer and data as named (``dataset_name``, or TRL's ``datasets`` mixture), train, save;
    returns the trainer."""
    import importlib.util

    from transformers import AutoTokenizer
    from transformers.trainer_utils import get_last_checkpoint
    from trl import get_peft_config, get_quantization_config

    from adadpo.trl import AdaDPOTrainer, MetricsFileCallback
    from adadpo.trl.loading import import_callback

    if not model_args.model_name_or_path:
        raise ValueError("model_name_or_path is required (a Hugging Face Hub id or a local directory)")
    use_mixture = mixture is not None and mixture.datasets
    if not script.dataset_name and not use_mixture:
        raise ValueError("dataset_name is required (a Hub id, or a local jsonl/json/parquet/csv file or directory)")
    if model_args.use_peft and importlib.util.find_spec("peft") is None:
        raise ValueError("use_peft=True needs the peft package: pip install 'adadpo[peft]'")

    train_dataset, eval_dataset = _datasets(script, config, mixture if use_mixture else None)
    config.model_init_kwargs = {
        "revision": model_args.model_revision,
        "trust_remote_code": config.trust_remote_code,
        "attn_implementation": model_args.attn_implementation,
        "dtype": model_args.dtype,
        **(config.model_init_kwargs or {}),
    }
    tokenizer = AutoTokenizer.from_pretrained(
        script.tokenizer_name_or_path or model_args.model_name_or_path,
        revision=model_args.model_revision,
        trust_remote_code=config.trust_remote_code,
    )
    if "report_to" not in given and importlib.util.find_spec("tensorboard") is not None:
        config.report_to = ["tensorboard"]
    callbacks = [MetricsFileCallback(), *(import_callback(spec) for spec in script.callbacks)]

    trainer = AdaDPOTrainer(
        model=model_args.model_name_or_path,
        args=config,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        callbacks=callbacks,
        peft_config=get_peft_config(model_args),
        quantization_config=get_quantization_config(model_args),
    )
    resume = config.resume_from_checkpoint
    if resume is None and script.auto_resume and os.path.isdir(config.output_dir):
        resume = get_last_checkpoint(config.output_dir)
        if resume:
            trainer.accelerator.print(f"adadpo: resuming from {resume}")
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(config.output_dir)
    trainer.create_model_card(model_name=os.path.basename(os.path.abspath(config.output_dir)), dataset_name=script.dataset_name)
    trainer.accelerator.print(_summary(trainer, config.output_dir))
    _end(trainer)
    return trainer


def _datasets(script, config, mixture) -> tuple:
    """The train split and (when ``eval_strategy`` is not ``no``) the test split: of TRL's dataset ``mixture``
    (``datasets:``, loaded by TRL as ``trl dpo`` does), or of ``dataset_name``."""
    from adadpo.trl.loading import load_preference_dataset, select_split

    if mixture is not None:
        from trl import get_dataset

        data = get_dataset(mixture)
    else:
        data = load_preference_dataset(script.dataset_name, script.dataset_config, script.dataset_streaming)
    train_dataset = select_split(data, script.dataset_train_split, "dataset_train_split")
    if config.eval_strategy == "no":
        return train_dataset, None
    return train_dataset, select_split(data, script.dataset_test_split, "dataset_test_split")


def _end(trainer) -> None:
    """Release the trainer's distributed state (``trainer.end()``) without hanging at exit."""
    if hasattr(trainer, "end"):
        # Free the DDP wrapper before end() destroys the process group: DDP's C++ Reducer holds the group, and a
        # gloo group whose last reference goes with it is destroyed under the GIL while a gloo worker may need the
        # GIL to free its last work -- a hang at exit (pytorch/pytorch#56297).
        trainer.model_wrapped = trainer.model
        trainer.accelerator.free_memory()
        gc.collect()
        trainer.end()


def _summary(trainer, output_dir: str) -> str:
    last = next((h for h in reversed(trainer.state.log_history) if "loss" in h), {})
    keys = ("loss", "rewards/margins", "rewards/accuracies", "logps/chosen", "logps/rejected", "balance/log_rho")
    shown = "  ".join(f"{k}={last[k]:.4g}" for k in keys if k in last)
    return (
        f"adadpo: trained {trainer.state.global_step} steps; last log: {shown}\n"
        f"adadpo: model, tokenizer and model card in {output_dir}; metrics in "
        f"{os.path.join(output_dir, 'metrics.jsonl')} and metrics.csv"
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run(argparse.Namespace(args=sys.argv[1:])))
