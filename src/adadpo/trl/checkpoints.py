"""Staged checkpoints: ``checkpoint-N`` is written into a staging directory and renamed into place.

Each checkpoint keeps a manifest of its files' sha256 (:data:`CHECKSUMS`), checked at resume with the other
checks (:func:`check_checkpoint`). A run killed while saving leaves at most a stale staging directory, which ``get_last_checkpoint`` ignores and
the next save removes; every ``checkpoint-N`` on disk is complete. Rotation (``save_total_limit``) and the
replacement of an existing ``checkpoint-N`` first rename the doomed directory out of the ``checkpoint-*``
namespace, then delete it, so a kill half-way through a deletion leaves no half checkpoint either. A checkpoint
resumed from must be complete anyway (:func:`missing_files`): a missing optimizer or trainer state is an error,
not a silently fresh optimizer. Every process waits for the others at most ``ddp_timeout`` seconds per barrier
of the save, so one frozen process cannot hang the others forever.
"""

from __future__ import annotations

import errno
import glob
import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, sort_checkpoints

STAGING_DIR = ".staging"
DELETING_PREFIX = ".deleting-"
TRAINER_STATE = "trainer_state.json"


def _delete(path: str) -> None:
    """Remove directory ``path``: first renamed to ``.deleting-<name>`` (atomic), then deleted."""
    doomed = os.path.join(os.path.dirname(path), DELETING_PREFIX + os.path.basename(path))
    shutil.rmtree(doomed, ignore_errors=True)
    os.replace(path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def rotate(run_dir: str, save_total_limit: int | None, best_model_checkpoint: str | None) -> None:
    """Keep at most ``save_total_limit`` checkpoints (the newest and the best always), as transformers'
    ``rotate_checkpoints`` does, deleting each with :func:`_delete`."""
    if not save_total_limit or save_total_limit <= 0:
        return
    checkpoints = sort_checkpoints(run_dir, PREFIX_CHECKPOINT_DIR, use_mtime=False)
    protected = {checkpoints[-1]} if checkpoints else set()
    if best_model_checkpoint is not None:
        protected.add(str(Path(best_model_checkpoint)))
    excess = len(checkpoints) - max(save_total_limit, len(protected))
    for checkpoint in [c for c in checkpoints if c not in protected][:max(excess, 0)]:
        _delete(checkpoint)


#: The model's weights in a checkpoint, in any of the layouts transformers and PEFT save.
WEIGHTS = "model.safetensors|model.safetensors.index.json|pytorch_model.bin|pytorch_model.bin.index.json|" \
          "adapter_model.safetensors|adapter_model.bin"


def missing_files(checkpoint: str, args: Any) -> list[str]:
    """The files a resume from ``checkpoint`` needs and does not find (trainer state and the model's weights;
    optimizer and scheduler unless ``save_only_model``; DeepSpeed and FSDP keep their weights and optimizer state
    in their own layout)."""
    needed = [TRAINER_STATE]
    if not args.deepspeed and not args.fsdp:
        needed.append(WEIGHTS)
        if not args.save_only_model:
            needed += ["optimizer.pt|optimizer.bin", "scheduler.pt"]
    return [name for name in needed if not any(os.path.isfile(os.path.join(checkpoint, n)) for n in name.split("|"))]


def holds_optimizer(checkpoint: str) -> bool:
    """Whether ``checkpoint`` keeps the optimizer's state (not a ``save_only_model`` one; DeepSpeed and FSDP keep
    it in directories of their own)."""
    return any(os.path.exists(os.path.join(checkpoint, n)) for n in ("optimizer.pt", "optimizer.bin")) or any(
        os.path.isdir(os.path.join(checkpoint, n)) and n.startswith(("global_step", "optimizer"))
        for n in os.listdir(checkpoint))


def corrupt(path: str) -> str | None:
    """Why the checkpoint file ``path`` cannot be read (a JSON file that does not parse, a safetensors file whose
    header or size is wrong, a torch archive without its directory: a file cut short), or ``None``. Cheap: no
    tensor is read."""
    name = os.path.basename(path)
    try:
        if name.endswith(".json"):
            with open(path, encoding="utf-8") as f:
                json.load(f)
        elif name.endswith(".safetensors"):
            from safetensors import safe_open

            with safe_open(path, "pt") as f:
                f.keys()
        elif name.endswith((".pt", ".pth", ".bin")):
            with zipfile.ZipFile(path):
                pass
    except Exception as err:  # noqa: BLE001 -- json, safetensors and zipfile each raise their own
        return " ".join(str(err).split())[:160] or type(err).__name__
    return None


def non_finite_weights(path: str) -> str | None:
    """The first tensor of the safetensors file ``path`` holding NaN or inf (``"name: 3 of 64 values"``), or
    ``None``: weights a resume would train from, which no learning rate could have produced from finite ones
    that were saved (a copy gone wrong, bytes changed inside the data). Reads every tensor, one at a time."""
    import torch
    from safetensors import safe_open

    with safe_open(path, "pt") as f:
        for name in f.keys():
            tensor = f.get_tensor(name)
            if tensor.is_floating_point():
                bad = int((~torch.isfinite(tensor)).sum())
                if bad:
                    return f"{name}: {bad} of {tensor.numel()} values"
    return None


#: A checkpoint's manifest: the sha256 of each of its files as saved, and of the manifest's own list.
CHECKSUMS = "checksums.json"


def _sha256(path: str) -> str:
    import hashlib

    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _manifest_digest(files: dict[str, str]) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def write_checksums(checkpoint: str) -> None:
    """Write :data:`CHECKSUMS` into ``checkpoint``: every file's sha256 (relative paths) and the digest of that
    list, so that bytes changed after the save (a copy gone wrong, a bad sector) are found at resume."""
    files = {}
    for root, _, names in os.walk(checkpoint):
        for name in names:
            path = os.path.join(root, name)
            if os.path.relpath(path, checkpoint) != CHECKSUMS:
                files[os.path.relpath(path, checkpoint)] = _sha256(path)
    with open(os.path.join(checkpoint, CHECKSUMS), "w", encoding="utf-8") as f:
        json.dump({"files": files, "digest": _manifest_digest(files)}, f, indent=1)


def changed_file(checkpoint: str) -> tuple[str, str] | None:
    """``(file, why)`` for the first file of ``checkpoint`` whose bytes differ from those its :data:`CHECKSUMS`
    recorded (the manifest itself when its own digest fails), or ``None`` (no manifest: a checkpoint of an
    earlier release or of stock transformers, not verified)."""
    path = os.path.join(checkpoint, CHECKSUMS)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
        files = manifest["files"]
        intact = isinstance(files, dict) and manifest["digest"] == _manifest_digest(files)
    except (ValueError, KeyError, TypeError):
        intact = False
    if not intact:
        return CHECKSUMS, "it does not match its own digest"
    for name, digest in sorted(files.items()):
        full = os.path.join(checkpoint, name)
        if os.path.isfile(full) and _sha256(full) != digest:
            return name, "its bytes differ from those saved (sha256)"
    return None


def check_checkpoint(checkpoint: str, args: Any) -> None:
    """``ValueError`` naming the checkpoint and the file when it cannot be resumed from as it was saved: a file
    missing (:func:`missing_files`), cut short (:func:`corrupt`), weights holding NaN or inf
    (:func:`non_finite_weights`), or bytes changed since the save (:func:`changed_file`)."""
    missing = missing_files(checkpoint, args)
    if missing:
        raise ValueError(
            f"checkpoint {checkpoint} is incomplete: no {', '.join(m.split('|')[0] for m in missing)} (written or "
            "deleted half-way?); resuming from it would restart the optimizer or the model. Resume from another "
            "checkpoint (resume_from_checkpoint), or delete this one")
    for name in sorted(os.listdir(checkpoint)):
        problem = corrupt(os.path.join(checkpoint, name)) if os.path.isfile(os.path.join(checkpoint, name)) else None
        if problem:
            raise ValueError(
                f"checkpoint {checkpoint} has a corrupt {name} ({problem}; written or copied half-way?). Resume from "
                "another checkpoint (resume_from_checkpoint), or delete this one")
    for name in sorted(n for n in os.listdir(checkpoint) if n.endswith(".safetensors")):
        bad = non_finite_weights(os.path.join(checkpoint, name))
        if bad:
            raise ValueError(
                f"checkpoint {checkpoint} has non-finite weights in {name} ({bad} are NaN or inf): the run would "
                "resume from broken weights. Resume from another checkpoint (resume_from_checkpoint), or delete "
                "this one")
    changed = changed_file(checkpoint)
    if changed:
        raise ValueError(
            f"checkpoint {checkpoint} has a corrupt {changed[0]} ({changed[1]}; changed after it was saved?). "
            "Resume from another checkpoint (resume_from_checkpoint), or delete this one")


class StagedCheckpoints:
    """Mixin for a ``transformers.Trainer`` subclass: its ``_save_checkpoint`` stages, then renames; a resume
    checks that the checkpoint is complete."""

    def _barrier(self, where: str) -> None:
        """Wait for every process, at most ``args.ddp_timeout`` seconds (gloo: ``monitored_barrier``, which also
        names a missing process; transformers does not pass ``ddp_timeout`` to gloo process groups)."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        if dist.get_backend() != "gloo":
            self.accelerator.wait_for_everyone()  # NCCL & co.: transformers gives their group ddp_timeout
            return
        try:
            dist.monitored_barrier(timeout=self.args.ddp_timeout_delta)
        except RuntimeError as err:
            raise TimeoutError(
                f"process {dist.get_rank()}: not every process reached {where} within ddp_timeout="
                f"{self.args.ddp_timeout} s ({' '.join(str(err).split())[:200]}); stopping. Resume with the same command "
                "once every process runs") from err

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        run_dir = self._get_output_dir(trial=trial)
        staging_root = os.path.join(run_dir, STAGING_DIR)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        where = f"the save of {name}"
        if self.args.should_save:
            shutil.rmtree(staging_root, ignore_errors=True)
            for stale in glob.glob(os.path.join(run_dir, DELETING_PREFIX + "*")):
                shutil.rmtree(stale, ignore_errors=True)
            os.makedirs(staging_root, exist_ok=True)
        self._barrier(where)
        self._get_output_dir = lambda trial=None: staging_root  # type: ignore[method-assign]
        try:
            super()._save_checkpoint(model, trial)
        except RuntimeError as err:  # torch's writer: "[enforce fail at inline_container.cc] ... write failed"
            if "enforce fail" not in str(err) and "write" not in str(err).lower():
                raise
            full = shutil.disk_usage(staging_root).free < 64 * 2**20
            raise OSError(errno.ENOSPC if full else errno.EIO, f"writing {name} failed ({str(err).splitlines()[0]})"
                          if not full else "No space left on device", staging_root) from err
        finally:
            del self._get_output_dir
        self._barrier(where)
        if self.args.should_save:
            write_checksums(os.path.join(staging_root, name))  # every process's files are in: the barrier above
            final = os.path.join(run_dir, name)
            if os.path.exists(final):
                _delete(final)
            os.replace(os.path.join(staging_root, name), final)
            shutil.rmtree(staging_root, ignore_errors=True)
            if self.state.best_model_checkpoint and self.state.best_model_checkpoint.startswith(staging_root):
                self.state.best_model_checkpoint = self.state.best_model_checkpoint.replace(staging_root, run_dir)
            rotate(run_dir, self.args.save_total_limit, self.state.best_model_checkpoint)
        self._barrier(where)

    def train(self, resume_from_checkpoint: str | bool | None = None, *args: Any, **kwargs: Any) -> Any:
        if resume_from_checkpoint is True:
            from transformers.trainer_utils import get_last_checkpoint

            resume_from_checkpoint = get_last_checkpoint(self.args.output_dir) or True  # True: transformers says
        if isinstance(resume_from_checkpoint, str):
            check_checkpoint(resume_from_checkpoint, self.args)  # before transformers reads any of it
            self._checked_checkpoint = resume_from_checkpoint  # its weights were read once: not again below
        return super().train(resume_from_checkpoint, *args, **kwargs)

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        if checkpoint is not None and checkpoint != getattr(self, "_checked_checkpoint", None):
            check_checkpoint(checkpoint, self.args)
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is not None and not os.path.isfile(os.path.join(checkpoint, "scheduler.pt")):
            self._continue_schedule(checkpoint)

    def _continue_schedule(self, checkpoint: str) -> None:
        """A model-only checkpoint (``save_only_model``) has no scheduler state: advance the fresh schedule to the
        checkpoint's step, so that the learning rate continues where it was instead of starting over (warm-up
        again)."""
        import warnings

        try:
            with open(os.path.join(checkpoint, TRAINER_STATE), encoding="utf-8") as f:
                step = int(json.load(f).get("global_step", 0))
        except (OSError, ValueError, TypeError):
            return
        scheduler = getattr(self, "lr_scheduler", None)
        if scheduler is None or getattr(scheduler, "last_epoch", 0) >= step:
            return
        with warnings.catch_warnings():  # "lr_scheduler.step() before optimizer.step()": no step is taken here
            warnings.simplefilter("ignore")
            for _ in range(step - scheduler.last_epoch):
                scheduler.step()

    def _load_callback_state(self) -> None:
        """On resume transformers restores the checkpoint's ``logging_steps``, ``eval_steps`` and ``save_steps``;
        these may change on resume (docs/training.md), so the run's own values are taken again."""
        super()._load_callback_state()
        self.state.compute_steps(self.args, self.state.max_steps)
