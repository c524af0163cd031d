"""The life cycle of an ``adadpo train`` output directory: one run at a time, resumed only as itself, finished once.

``output_dir`` holds, besides checkpoints, metrics and the final model:

* ``.adadpo.lock``: ``"<pid> <host>"`` of the process training into it (the main process under torchrun).
  A second run into the same directory fails naming that pid; a lock left by a process that is no longer
  alive (on this host) is taken over.
* ``adadpo_run.json``: ``{"status": "running" | "finished", "global_step": N, "settings": {...}}``, written
  atomically (temporary file, fsync, rename). ``settings`` are the keys that define what is trained (every
  config key but :data:`MAY_CHANGE`, :func:`run_settings`); ``status`` turns ``finished`` only after the final
  model and card are saved.

:func:`plan` reads the directory and the new settings (nothing is written) and decides: train from scratch,
resume from a checkpoint, or stop because the run is finished; it refuses (``ValueError``, one line) to mix
two runs: ``auto_resume: false`` into a used directory, or a resume whose settings changed.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
from dataclasses import dataclass
from typing import Any

from adadpo.trl.dirlock import LOCK, DirLock

RECORD = "adadpo_run.json"
#: The name under which a checkpoint's ``trainer_state.json`` keeps the run's settings (``stateful_callbacks``).
SETTINGS_CALLBACK = "RunSettingsCallback"  # adadpo.trl.callbacks.RunSettingsCallback
#: What ``adadpo train`` writes into output_dir besides the final model: what ``overwrite_output_dir`` removes.
RUN_FILES = ("checkpoint-*", ".staging", "metrics.jsonl", "metrics.csv", RECORD)

#: Config keys that may change when a run resumes: where and how often it logs, saves, evaluates, reports and
#: pushes, how it is launched, and how it computes what it computes (memory and speed options). Every other key
#: of the config is run-defining (:func:`run_settings`): a new field defaults to run-defining, so it cannot
#: slip through; ``tests/test_lifecycle.py`` checks that each name here is a field of the config.
MAY_CHANGE = frozenset({
    # the run's files and life cycle
    "output_dir", "resume_from_checkpoint", "auto_resume", "overwrite_output_dir", "callbacks",
    "restore_callback_states_from_checkpoint", "save_strategy", "save_steps", "save_total_limit", "save_on_each_node",
    "save_only_model", "enable_jit_checkpoint", "do_train", "do_eval", "do_predict",
    # logging and reporting
    "logging_strategy", "logging_steps", "logging_first_step", "log_on_each_node", "logging_nan_inf_filter",
    "include_num_input_tokens_seen", "log_level", "log_level_replica", "disable_tqdm", "report_to", "run_name",
    "project", "trackio_space_id", "trackio_bucket_id", "trackio_static_space_id", "skip_memory_metrics", "debug",
    "loss_debug",
    # evaluation (the eval split and how it is run)
    "dataset_test_split", "eval_strategy", "eval_steps", "eval_delay", "per_device_eval_batch_size",
    "prediction_loss_only", "eval_on_start", "eval_do_concat_batches", "eval_use_gather_object",
    "eval_accumulation_steps", "include_for_metrics", "batch_eval_metrics", "bf16_full_eval", "fp16_full_eval",
    "load_best_model_at_end", "metric_for_best_model", "greater_is_better",
    # the Hub
    "push_to_hub", "hub_token", "hub_private_repo", "hub_model_id", "hub_strategy", "hub_always_push", "hub_revision",
    # launch and processes
    "local_rank", "use_cpu", "ddp_backend", "ddp_timeout", "ddp_find_unused_parameters", "ddp_bucket_cap_mb",
    "ddp_broadcast_buffers", "ddp_static_graph", "ignore_bias_buffers", "dataloader_num_workers",
    "dataloader_pin_memory", "dataloader_persistent_workers", "dataloader_prefetch_factor",
    "dataloader_multiprocessing_context", "dataset_num_proc", "trust_remote_code",
    # how, not what: memory and speed (the same loss, values equal up to rounding)
    "logps_backend", "logps_chunk_size", "attn_implementation", "activation_checkpointing",
    "activation_checkpointing_kwargs", "gradient_checkpointing", "gradient_checkpointing_kwargs",
    "activation_offloading", "torch_compile", "torch_compile_backend", "torch_compile_mode", "use_liger_kernel",
    "liger_kernel_config", "torch_empty_cache_steps", "precompute_ref_batch_size", "use_cache",
})


def run_settings(*instances: Any) -> dict[str, Any]:
    """The run-defining keys of the config dataclass ``instances`` (every field not in :data:`MAY_CHANGE`: what
    changes the loss, the data, the model or the optimisation), as JSON values."""
    from dataclasses import fields

    settings: dict[str, Any] = {}
    for instance in instances:
        for f in fields(instance):
            if f.name not in MAY_CHANGE:
                settings[f.name] = json.loads(json.dumps(getattr(instance, f.name), default=str))
    return settings


def write_json_atomic(path: str, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` so that a crash leaves the old file or the new one, never a mix."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_record(output_dir: str) -> dict[str, Any] | None:
    """``adadpo_run.json`` of ``output_dir``, or ``None`` when there is none (or it is unreadable)."""
    try:
        with open(os.path.join(output_dir, RECORD), encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def write_record(output_dir: str, status: str, settings: dict[str, Any], global_step: int = 0) -> None:
    write_json_atomic(os.path.join(output_dir, RECORD),
                      {"status": status, "global_step": global_step, "settings": settings})


# ---------------------------------------------------------------------------------------------------- plan


@dataclass
class Plan:
    """What to do with ``output_dir``: ``finished`` (nothing to train), else train, resuming from ``resume``."""

    resume: str | None = None
    finished: bool = False
    message: str = ""


def _used(output_dir: str) -> list[str]:
    """The names of a previous run's files in ``output_dir``."""
    found = []
    for pattern in RUN_FILES:
        found += sorted(os.path.basename(p) for p in glob.glob(os.path.join(output_dir, pattern)))
    return found


def _changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``key: old -> new`` of each setting or input (:mod:`adadpo.cli.run_inputs`) both record and that differs;
    a path whose content is recorded on both sides and equal may change (a moved dataset file)."""
    from adadpo.cli.run_inputs import CONTENT_OF

    def same_content(k: str) -> bool:
        content = CONTENT_OF.get(k)
        return content in old and content in new and old[content] is not None and old[content] == new[content]

    return [f"{k}: {old[k]!r} -> {new[k]!r}" for k in sorted(set(old) & set(new))
            if old[k] != new[k] and not same_content(k)]


def resume_request(value: Any) -> tuple[bool, str | None]:
    """``resume_from_checkpoint`` as ``(last, path)``: ``true`` (YAML) or ``"true"`` (command line) means the last
    checkpoint of output_dir, as in TRL and transformers; ``false``/``"false"`` and ``None`` mean none asked for."""
    if isinstance(value, bool) or isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value is True or str(value).strip().lower() == "true", None
    return False, value or None


def checkpoint_settings(checkpoint: str) -> dict[str, Any] | None:
    """The run-defining settings a checkpoint was trained with (saved by :class:`RunSettingsCallback` in its
    ``trainer_state.json``), or ``None`` when it holds none (a stock TRL checkpoint, say)."""
    try:
        with open(os.path.join(checkpoint, "trainer_state.json"), encoding="utf-8") as f:
            state = json.load(f)
        settings = state["stateful_callbacks"][SETTINGS_CALLBACK]["args"]["settings"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return settings if isinstance(settings, dict) else None


def plan(output_dir: str, settings: dict[str, Any], *, auto_resume: bool, resume_from_checkpoint: Any,
         overwrite: bool) -> Plan:
    """Decide how a run with ``settings`` uses ``output_dir`` (read-only; the same on every process)."""
    from transformers.trainer_utils import get_last_checkpoint

    last, resume = resume_request(resume_from_checkpoint)
    if overwrite or not os.path.isdir(output_dir):
        if last:
            raise ValueError(f"resume_from_checkpoint=True, but output_dir={output_dir!r} holds no checkpoint to "
                             "resume from" + (" (overwrite_output_dir: true removes them)" if overwrite else ""))
        return Plan(resume=resume)
    record = read_record(output_dir)
    used = _used(output_dir)
    if record and record.get("status") == "finished" and resume is None:
        return Plan(finished=True, message=(
            f"adadpo: {output_dir} holds a finished run ({record.get('global_step')} steps); nothing to train. "
            "To train again use another output_dir or overwrite_output_dir: true (which removes its checkpoints "
            "and metrics); to train on from its model, give it as model_name_or_path."))
    if resume is None:
        if not auto_resume and not last:
            if used:
                raise ValueError(
                    f"auto_resume=False, but output_dir={output_dir!r} already holds a run ({', '.join(used[:4])}"
                    f"{', ...' if len(used) > 4 else ''}); set auto_resume: true to continue it, overwrite_output_dir: "
                    "true to start over (removes them), or choose another output_dir")
            return Plan()
        resume = get_last_checkpoint(output_dir)
        if resume is None and last:
            raise ValueError(f"resume_from_checkpoint=True, but output_dir={output_dir!r} holds no checkpoint to "
                             "resume from; leave it out to start the run")
        if resume and checkpoint_settings(resume) is None and not (record and isinstance(record.get("settings"), dict)):
            raise ValueError(
                f"output_dir={output_dir!r} holds {os.path.basename(resume)} but no record of the settings it was "
                f"trained with ({RECORD} is missing and the checkpoint has none), so this resume could mix two runs; "
                f"resume from it anyway with resume_from_checkpoint: {resume}, or start over with "
                "overwrite_output_dir: true")
    if resume:
        saved = checkpoint_settings(resume)
        if saved is None and record and isinstance(record.get("settings"), dict):
            saved = record["settings"]
        changed = _changes(saved or {}, settings)
        if changed:
            raise ValueError(
                f"output_dir={output_dir!r} holds a run trained with other settings ({'; '.join(changed)}); resuming "
                "it would mix two runs. Restore them, choose another output_dir, or set overwrite_output_dir: true")
    return Plan(resume=resume, message=f"adadpo: resuming from {resume}{model_only_note(resume)}" if resume else "")


def model_only_note(checkpoint: str) -> str:
    """What restarts when resuming from ``checkpoint``: ``""`` for a full checkpoint; for a model-only one
    (``save_only_model: true``: no optimizer state) the note that the optimizer's moments start fresh."""
    from adadpo.trl.checkpoints import holds_optimizer

    if holds_optimizer(checkpoint):
        return ""
    return (" (a model-only checkpoint, save_only_model: the optimizer's moments start fresh; the step count, the "
            "learning-rate schedule and the data order continue)")


def clear_run(output_dir: str) -> list[str]:
    """Remove a previous run's checkpoints, metrics and record from ``output_dir``; returns the names removed."""
    removed = _used(output_dir)
    for name in removed:
        path = os.path.join(output_dir, name)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    return removed


# ------------------------------------------------------------------------------------------------- session


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during training: the message says where the run stopped and how to resume it."""


class RunSession:
    """``with RunSession(config, settings, ...) as run:`` locks ``config.output_dir`` (main process), plans its
    use (:func:`plan`, on every process), clears it for ``overwrite``; ``run.started()`` and ``run.finish(step)``
    write the run record; leaving the block releases the lock."""

    def __init__(self, config: Any, settings: dict[str, Any], *, auto_resume: bool, overwrite: bool) -> None:
        self.config, self.settings, self.overwrite, self.auto_resume = config, settings, overwrite, auto_resume
        self.output_dir = config.output_dir
        self.main = config.process_index == 0
        self.lock = DirLock(self.output_dir, "output_dir")
        self.plan = Plan()

    def __enter__(self) -> RunSession:
        if self.main:
            try:
                os.makedirs(self.output_dir, exist_ok=True)
                self.lock.__enter__()
            except PermissionError as err:
                raise ValueError(f"output_dir={self.output_dir!r} is not writable ({err.strerror}: {err.filename}); "
                                 "choose a directory you can write to") from err
            except OSError as err:
                raise ValueError(f"output_dir={self.output_dir!r} cannot be created or written ({err.strerror}: "
                                 f"{err.filename})") from err
        try:
            self.plan = plan(self.output_dir, self.settings, auto_resume=self.auto_resume,
                             resume_from_checkpoint=self.config.resume_from_checkpoint, overwrite=self.overwrite)
            if self.plan.resume is not None:
                self.config.resume_from_checkpoint = self.plan.resume
            if self.overwrite and self.main:
                removed = clear_run(self.output_dir)
                if removed:
                    print(f"adadpo: overwrite_output_dir: removed {', '.join(removed)} from {self.output_dir}")
        except BaseException:
            self.lock.__exit__()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.lock.__exit__()

    def started(self) -> None:
        if self.main:
            write_record(self.output_dir, "running", self.settings)

    def finish(self, global_step: int) -> None:
        if self.main:
            write_record(self.output_dir, "finished", self.settings, global_step)


def checkpoint_is_final(checkpoint: str) -> bool:
    """Whether ``checkpoint`` was saved at the run's last step (its ``global_step`` reached its ``max_steps``):
    resuming from it has nothing left to train (transformers would still run one more step)."""
    try:
        with open(os.path.join(checkpoint, "trainer_state.json"), encoding="utf-8") as f:
            state = json.load(f)
    except (OSError, ValueError):
        return False
    return 0 < state.get("max_steps", 0) <= state.get("global_step", 0)


def finish_from_checkpoint(trainer: Any, checkpoint: str) -> None:
    """Load ``checkpoint``'s weights and state into ``trainer`` without training (a run killed during its final
    save) and close its metrics files, as the end of training does."""
    from transformers.trainer_callback import TrainerState

    from adadpo.trl.callbacks import MetricsFileCallback

    from adadpo.trl.checkpoints import check_checkpoint

    check_checkpoint(checkpoint, trainer.args)
    trainer._load_from_checkpoint(checkpoint)
    trainer.state = TrainerState.load_from_json(os.path.join(checkpoint, "trainer_state.json"))
    trainer.accelerator.print(f"adadpo: {checkpoint} is the run's last step; saving the final model from it")
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, MetricsFileCallback):
            callback.on_train_end(trainer.args, trainer.state, trainer.control)


def interrupted_message(trainer: Any, output_dir: str) -> str:
    from transformers.trainer_utils import get_last_checkpoint

    last = get_last_checkpoint(output_dir) if os.path.isdir(output_dir) else None
    if not last:
        return (f"interrupted at step {trainer.state.global_step}; no checkpoint was saved yet (one is saved "
                f"every save_steps={trainer.args.save_steps:g} steps). Run the same command again to start over")
    return (f"interrupted at step {trainer.state.global_step}; the last checkpoint is {last}. Run the same command "
            f"again to resume from it{model_only_note(last)}")
