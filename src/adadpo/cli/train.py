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
import contextlib
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
EXTRA = "trainer"
HELP = "train a model with a plain or balanced preference loss (YAML config + overrides)"

HELP_USAGE = "adadpo train --config FILE [--key value ...]"


def help_intro() -> str:
    """The head of ``adadpo train --help``; the loss names come from the registry (imported only for the help)."""
    from adadpo.core.registry import LOSSES, TRL_LOSS_TYPES

    return (
        "--config FILE: a YAML mapping of the keys below (what `trl dpo --config` takes, plus adadpo's); --key value "
        "on the command line overrides it. The main keys: --model_name_or_path, --dataset_name, --output_dir, --loss "
        f"({'|'.join(LOSSES)}), --loss_type (TRL's: {'|'.join(TRL_LOSS_TYPES)}), --balance (AdaDPO), --beta, "
        "--learning_rate, --max_steps, --save_steps; --auto_resume (default true) continues the run in output_dir, "
        "--overwrite_output_dir starts it over. Every key, with its default:"
    )

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
        overwrite_output_dir: bool = field(
            default=False,
            metadata={"help": "Start over in a used output_dir: remove its checkpoints, metrics and run record first."},
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

        from adadpo.cli.options import plain_help

        parser = TrlParser(_dataclass_types(), prog="adadpo train", usage=HELP_USAGE, description=help_intro())
        _negations_say_what_they_do(parser)
        _help_says_what_adadpo_does(parser)
        plain_help(parser)
        parser.print_help()
        return 0
    parsed = parse(argv)
    if not parsed.instances[2].model_name_or_path and not any(t in ("--config", "-c") or t.startswith(
            ("--config=", "-c=")) for t in argv):
        raise ValueError("model_name_or_path is required, and no --config FILE was given: did you forget --config?")
    if parsed.launch_args and not os.environ.get(_LAUNCHED):
        return launch(parsed)
    train(*parsed.instances, parsed.given, parsed.overridden)
    return 0


#: Help of transformers' keys whose behaviour under ``adadpo train`` differs from what transformers says.
HELP_OVERRIDES = {
    "output_dir": ("The output directory of the run (model, checkpoints, metrics); it must not hold or lie inside "
                   "what the run reads or another run's files."),
    "save_only_model": ("Save only the model weights in checkpoints, not the optimizer, scheduler and RNG state; a "
                        "resume from such a checkpoint continues the step count and learning-rate schedule with fresh "
                        "optimizer moments (and says so)."),
}
#: Defaults the help shows where the dataclass's is a placeholder (transformers' output_dir=None means this).
HELP_DEFAULTS = {"output_dir": "trainer_output"}


def _help_says_what_adadpo_does(parser: argparse.ArgumentParser) -> None:
    for action in parser._actions:
        if action.dest in HELP_OVERRIDES:
            action.help = HELP_OVERRIDES[action.dest]
        if action.dest in HELP_DEFAULTS:
            action.default = HELP_DEFAULTS[action.dest]


def _negations_say_what_they_do(parser: argparse.ArgumentParser) -> None:
    """Transformers' parser gives ``--no_X`` (for a boolean ``X`` that defaults to true) ``X``'s own help and
    "(default: False)", which reads as the opposite of what it does; say that it turns ``X`` off."""
    for action in parser._actions:
        negation = next((o for o in action.option_strings if o.startswith("--no_")), None)
        if negation is not None:
            action.help = f"Set {negation[5:]} to false (it is true by default; see --{negation[5:]})."


def train(script, config, model_args, mixture=None, given: set[str] = frozenset(),
          overridden: set[str] = frozenset()):
    """Load model, tokenizer and data as named (``dataset_name``, or TRL's ``datasets`` mixture), train, save;
    returns the trainer."""

    from adadpo.cli.run_dir import (Interrupted, RunSession, checkpoint_is_final, finish_from_checkpoint,
                                    interrupted_message, run_settings)

    from adadpo.cli.guard import check_no_variables, check_output_dir, path_values
    from adadpo.cli.preflight import check_integrations, check_packages, check_steps
    from adadpo.trl.loading import import_callback
    from adadpo.cli.switches import check_switches
    from adadpo.cli.run_inputs import run_inputs
    from adadpo.trl.ranges import check_fields

    for instance in (script, model_args, mixture):
        if instance is not None:
            check_fields(instance)  # AdaDPOConfig checks its own fields when it is built
    if not model_args.model_name_or_path:
        raise ValueError("model_name_or_path is required (a Hugging Face Hub id or a local directory)")
    use_mixture = mixture is not None and mixture.datasets
    if not script.dataset_name and not use_mixture:
        raise ValueError("dataset_name is required (a Hub id, or a local jsonl/json/parquet/csv file or directory)")
    check_packages(config, model_args)

    _check_training_args(config)
    check_no_variables(path_values({**vars(script), **vars(model_args), "output_dir": config.output_dir,
                                    "resume_from_checkpoint": config.resume_from_checkpoint,
                                    "datasets": getattr(mixture, "datasets", None)}))
    for note in check_switches((script, config, model_args), given, overridden):
        if config.process_index == 0:
            print(f"adadpo train: note: {note}", file=sys.stderr)
    check_output_dir(config.output_dir, script, model_args, mixture if use_mixture else None)
    check_integrations(config, [import_callback(spec) for spec in script.callbacks])
    settings = {**run_settings(*(i for i in (script, config, model_args, mixture) if i is not None)),
                **run_inputs(script, config, model_args, mixture if use_mixture else None)}
    with _removed_if_unused(config.output_dir, config.process_index == 0), \
            RunSession(config, settings, auto_resume=script.auto_resume, overwrite=script.overwrite_output_dir) as run:
        if run.plan.finished:
            if config.process_index == 0:  # once, not once per process
                print(run.plan.message)
            return None
        try:
            trainer = _trainer(script, config, model_args, mixture if use_mixture else None, given, settings)
        except RuntimeError as err:  # a collective timed out while the data was prepared
            timeout = _timed_out(err, config, "while the data and models were prepared (tokenization, reference "
                                 "log-probs); stopping. Run the same command again once every process runs")
            if timeout is None:
                raise
            raise timeout from err
        check_steps(trainer)
        run.started()
        if run.plan.message:
            trainer.accelerator.print(run.plan.message)
        if run.plan.resume and checkpoint_is_final(run.plan.resume):
            finish_from_checkpoint(trainer, run.plan.resume)
        else:
            try:
                trainer.train(resume_from_checkpoint=run.plan.resume)
            except KeyboardInterrupt:
                raise Interrupted(interrupted_message(trainer, config.output_dir)) from None
            except RuntimeError as err:  # a collective timed out: another process stopped, froze, or had no batch
                timeout = _timed_out(err, config, f"at step {trainer.state.global_step} (it stopped, froze, or ran "
                                     "out of batches first); stopping. Run the same command again to resume once "
                                     "every process runs on the same data")
                if timeout is None:
                    raise
                raise timeout from err
        trainer.save_model(config.output_dir)
        trainer.create_model_card(model_name=os.path.basename(os.path.abspath(config.output_dir)),
                                  dataset_name=script.dataset_name)
        run.finish(trainer.state.global_step)
    trainer.accelerator.print(_summary(trainer, config.output_dir))
    _end(trainer)
    return trainer


def _trainer(script, config, model_args, mixture, given, settings=None):
    """The dataset, tokenizer and ``AdaDPOTrainer`` the keys name."""
    import importlib.util

    import torch
    from transformers import AutoTokenizer
    from trl import get_peft_config, get_quantization_config

    from adadpo.trl import AdaDPOTrainer, MetricsFileCallback
    from adadpo.trl.callbacks import RunSettingsCallback
    from adadpo.cli.preflight import check_positions
    from adadpo.trl.loading import import_callback

    train_dataset, eval_dataset = _datasets(script, config, mixture)
    config.model_init_kwargs = {
        "revision": model_args.model_revision,
        "trust_remote_code": config.trust_remote_code,
        "attn_implementation": model_args.attn_implementation,
        "dtype": model_args.dtype,
        **(config.model_init_kwargs or {}),
    }
    key = "tokenizer_name_or_path" if script.tokenizer_name_or_path else "model_name_or_path"
    with _loading(key, script.tokenizer_name_or_path or model_args.model_name_or_path, needs=TOKENIZER_FILES):
        tokenizer = AutoTokenizer.from_pretrained(
            script.tokenizer_name_or_path or model_args.model_name_or_path,
            revision=model_args.model_revision,
            trust_remote_code=config.trust_remote_code,
        )
    if tokenizer.eos_token_id is None:
        raise ValueError(f"{key}={script.tokenizer_name_or_path or model_args.model_name_or_path!r}: the tokenizer has "
                         "no EOS token (eos_token), which ends every chosen and rejected answer in training; set one "
                         "(tokenizer.eos_token = ..., then save_pretrained), or use the model's own tokenizer")
    if "report_to" not in given and importlib.util.find_spec("tensorboard") is not None:
        config.report_to = ["tensorboard"]
    if "dataloader_pin_memory" not in given and (config.use_cpu or not torch.cuda.is_available()):
        config.dataloader_pin_memory = False  # pinned memory needs an accelerator; torch warns at every loader
    callbacks = [MetricsFileCallback(), RunSettingsCallback(settings),
                 *(import_callback(spec) for spec in script.callbacks)]

    with _loading("model_name_or_path", model_args.model_name_or_path, needs=("config.json",)):
        _check_model_kind(model_args, config.trust_remote_code)
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
    check_positions(trainer, model_args.model_name_or_path)
    embeddings = trainer.model.get_input_embeddings()
    if embeddings is not None and len(tokenizer) > embeddings.num_embeddings:
        name = script.tokenizer_name_or_path or model_args.model_name_or_path
        raise ValueError(f"{key}={name!r}: the tokenizer has {len(tokenizer)} tokens but the model's embeddings only "
                         f"{embeddings.num_embeddings} rows, so some token ids have no embedding; use the model's own "
                         "tokenizer")
    return trainer


def _check_model_kind(model_args, trust_remote_code: bool) -> None:
    """``ValueError`` naming the model when its config says it is no causal LM (:func:`causal_lm_problem`); a
    config that cannot be read is left to the model's loading, which says why."""
    from transformers import AutoConfig

    from adadpo.trl.loading import causal_lm_problem

    try:
        model_config = AutoConfig.from_pretrained(model_args.model_name_or_path, revision=model_args.model_revision,
                                                  trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError):
        return
    problem = causal_lm_problem(model_config)
    if problem:
        raise ValueError(f"model_name_or_path={model_args.model_name_or_path!r} is {problem}")


#: Files of which a local tokenizer directory holds at least one.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model", "spiece.model")


def _timed_out(err: RuntimeError, config, when: str) -> TimeoutError | None:
    """A collective's timeout as a one-line ``TimeoutError`` saying ``when`` it happened; ``None`` for any other
    ``RuntimeError`` (the caller raises it unchanged)."""
    if "timed out" not in str(err).lower():
        return None
    return TimeoutError(f"process {config.process_index}: another process stopped answering for ddp_timeout="
                        f"{config.ddp_timeout} s {when}")


@contextlib.contextmanager
def _removed_if_unused(output_dir: str, main: bool):
    """Remove ``output_dir``, and the parents created for it, when the block fails before anything was written
    into it (a model that cannot be loaded, say): a failed start leaves no empty folder behind. The main process
    does it, as it creates the folder."""
    created, path = [], os.path.abspath(output_dir)
    while main and not os.path.exists(path) and os.path.dirname(path) != path:
        created.append(path)
        path = os.path.dirname(path)
    try:
        yield
    except BaseException:
        for directory in created:  # deepest first; rmdir removes only empty directories
            try:
                os.rmdir(directory)
            except OSError:
                break
        raise


@contextlib.contextmanager
def _loading(key: str, name: str, needs: tuple[str, ...] = ()):
    """Turn a failure to load ``name`` (a missing path or Hub id, a local directory without any of the files
    ``needs``, a corrupt weights file) into a one-line ``ValueError`` naming ``key``."""
    path = os.path.expanduser(name)
    if name.startswith((".", "/", "~")) and not os.path.exists(path):
        raise ValueError(f"{key}={name!r}: no such directory (expected a local model directory or a Hub id)")
    if os.path.isdir(path) and needs and not any(os.path.isfile(os.path.join(path, n)) for n in needs):
        what = "an empty directory" if not os.listdir(path) else f"a directory without {' or '.join(needs[:2])}"
        raise ValueError(f"{key}={name!r} is {what}: not a saved model or tokenizer (save_pretrained writes one)")
    try:
        yield
    except OSError as err:  # transformers: not a directory / not on the Hub / no weights file
        if isinstance(err, (PermissionError, TimeoutError)) or getattr(err, "errno", None) is not None:
            raise
        raise ValueError(f"{key}={name!r} could not be loaded: {_first_line(err)}") from err
    except Exception as err:
        if type(err).__name__ != "SafetensorsError" and "safetensors" not in type(err).__module__:
            raise
        raise ValueError(f"{key}={name!r}: a weights file is corrupt ({_first_line(err)}); re-download or re-save the "
                         "model") from err


def _first_line(err: BaseException) -> str:
    return next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)


def _check_training_args(config) -> None:
    """``max_steps: 0`` (or ``num_train_epochs: 0`` under ``max_steps: -1``) trains nothing, and fp16 on a
    machine without a GPU trains in float32: refuse them."""
    import torch

    if config.max_steps == 0:
        raise ValueError("max_steps=0 trains no step; give a number of steps >= 1, or -1 to train num_train_epochs")
    if config.max_steps < 0 and not config.num_train_epochs > 0:
        raise ValueError(f"num_train_epochs={config.num_train_epochs!r} trains no step (max_steps={config.max_steps} "
                         "defers to it); give a number of epochs > 0, or max_steps >= 1")
    if config.fp16 and config.use_cpu or config.fp16 and not torch.cuda.is_available():
        raise ValueError("fp16=True needs a GPU (fp16 mixed precision is CUDA-only; on this machine training would run "
                         "in float32); set fp16: false, or bf16: true with use_cpu: true to train in bfloat16 on the "
                         "CPU")


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
    logged = f"; last log: {shown}" if shown else f" (no training log: logging_steps={trainer.args.logging_steps})"
    return (
        f"adadpo: trained {trainer.state.global_step} steps{logged}\n"
        f"adadpo: model, tokenizer and model card in {output_dir}; metrics in "
        f"{os.path.join(output_dir, 'metrics.jsonl')} and metrics.csv"
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run(argparse.Namespace(args=sys.argv[1:])))
