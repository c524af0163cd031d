"""The life of an ``adadpo train`` output_dir: finished runs stay finished, one run at a time, resumed only as
itself, metrics and checkpoints that survive crashes (kills, torn writes, frozen processes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny import cli_config as _config
from tiny import write_yaml as _write
from transformers import AutoModelForCausalLM, TrainerCallback

from adadpo.cli import main
from adadpo.cli.run_dir import LOCK, RECORD
from adadpo.trl.callbacks import read_metrics


def _run(tmp_path: Path, config: dict, *extra: str) -> int:
    return main(["train", "--config", str(_write(tmp_path / "run.yaml", config)), *extra])


def _steps(out: Path) -> list[int]:
    return [r["step"] for r in read_metrics(str(out / "metrics.jsonl")) if "loss" in r]


def _checkpoints(out: Path) -> list[str]:
    return sorted(p.name for p in out.glob("checkpoint-*"))


def _weights(out: Path) -> list:
    return [p.detach().clone() for p in AutoModelForCausalLM.from_pretrained(out).parameters()]


class StopAt(TrainerCallback):
    """Ctrl-C (``KeyboardInterrupt``) at the end of step ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt


def _interrupt_at(monkeypatch, step: int) -> None:
    from adadpo.trl import callbacks

    original = callbacks.MetricsFileCallback.on_step_end

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == step:
            raise KeyboardInterrupt
        return original(self, args, state, control, **kwargs)

    monkeypatch.setattr(callbacks.MetricsFileCallback, "on_step_end", on_step_end)


def _stopped_at_step_3(tmp_path, config, monkeypatch) -> None:
    """Run ``config`` and stop it with Ctrl-C at step 3 (exit 130, steps 1-2 logged), then lift the stop."""
    _interrupt_at(monkeypatch, 3)
    with pytest.raises(SystemExit) as info:
        _run(tmp_path, config)
    assert info.value.code == 130
    monkeypatch.undo()


def test_a_finished_run_stays_finished(world, tmp_path, capsys):
    out = tmp_path / "out"
    config = _config(world, out, lr_scheduler_type="constant")
    assert _run(tmp_path, config) == 0
    before = _weights(out)
    assert json.loads((out / RECORD).read_text())["status"] == "finished"
    capsys.readouterr()
    assert _run(tmp_path, config) == 0  # before: trained a 4th step, added checkpoint-4, changed the weights
    assert "holds a finished run (3 steps); nothing to train" in capsys.readouterr().out
    assert _checkpoints(out) == ["checkpoint-2", "checkpoint-3"] and _steps(out) == [1, 2, 3]
    assert all((a == b).all() for a, b in zip(before, _weights(out)))
    assert not (out / LOCK).exists()
    # overwrite_output_dir starts over
    assert _run(tmp_path, config, "--overwrite_output_dir", "true") == 0
    assert _steps(out) == [1, 2, 3] and _checkpoints(out) == ["checkpoint-2", "checkpoint-3"]


def test_a_kill_during_the_final_save_finishes_without_another_step(world, tmp_path, monkeypatch, capsys):
    from adadpo.trl import AdaDPOTrainer

    out = tmp_path / "out"
    config = _config(world, out, lr_scheduler_type="constant")

    original = AdaDPOTrainer.save_model

    def killed(self, output_dir=None, _internal_call=False):  # the final save, not a checkpoint's
        if not _internal_call:
            raise KeyboardInterrupt
        return original(self, output_dir, _internal_call)

    monkeypatch.setattr(AdaDPOTrainer, "save_model", killed)
    with pytest.raises(SystemExit):
        _run(tmp_path, config)
    monkeypatch.undo()
    assert json.loads((out / RECORD).read_text())["status"] == "running"
    capsys.readouterr()
    assert _run(tmp_path, config) == 0  # before: resumed from checkpoint-3 and trained a 4th step
    assert "checkpoint-3 is the run's last step; saving the final model from it" in capsys.readouterr().out
    assert _checkpoints(out) == ["checkpoint-2", "checkpoint-3"] and _steps(out) == [1, 2, 3]
    assert (out / "metrics.csv").exists() and (out / "model.safetensors").exists()
    assert json.loads((out / RECORD).read_text()) == {**json.loads((out / RECORD).read_text()), "status": "finished",
                                                       "global_step": 3}


def test_a_torn_last_metrics_row_is_dropped_on_resume(world, tmp_path, monkeypatch, caplog):
    out = tmp_path / "out"
    config = _config(world, out, max_steps=4)
    _stopped_at_step_3(tmp_path, config, monkeypatch)
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"step": 3, "epoch": 0.5, "loss": 0.69, "rewards/chosen": "unterminat')  # a crash mid-write
    assert _run(tmp_path, config) == 0  # before: "Unterminated string starting at: line 1 column 652"
    assert _steps(out) == [1, 2, 3, 4]
    assert f"{out / 'metrics.jsonl'} ended in a torn row" in caplog.text
    (out / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2, "lo\n{"step": 3}\n')  # not the last row: an error
    with pytest.raises(ValueError, match=r"metrics.jsonl, line 2: not a JSON object"):
        read_metrics(str(out / "metrics.jsonl"))


def test_auto_resume_false_into_a_used_directory_refuses(world, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    _stopped_at_step_3(tmp_path, _config(world, out), monkeypatch)
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:  # before: dropped the old rows silently, kept its checkpoints
        _run(tmp_path, _config(world, out, auto_resume=False))
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"auto_resume=False, but output_dir='{out}' already holds a run (checkpoint-2, metrics.jsonl" in err
    assert "overwrite_output_dir: true to start over" in err
    assert _steps(out) == [1, 2]  # the interrupted run's rows are kept


def test_resuming_with_changed_settings_refuses_naming_them(world, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    _stopped_at_step_3(tmp_path, _config(world, out), monkeypatch)
    capsys.readouterr()
    with pytest.raises(SystemExit):  # before: resumed silently; the card reported the new settings for all steps
        _run(tmp_path, _config(world, out, loss="simpo"), "--beta", "0.3")
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "holds a run trained with other settings (beta: 0.1 -> 0.3; loss: None -> 'simpo')" in err
    assert _run(tmp_path, _config(world, out)) == 0  # the same settings resume
    assert _steps(out) == [1, 2, 3]


def test_every_config_field_is_run_defining_or_may_change():
    from dataclasses import fields

    from adadpo.cli.run_dir import MAY_CHANGE, run_settings
    from adadpo.cli.train import _dataclass_types, parse

    names = {f.name for dc in _dataclass_types() for f in fields(dc)}
    assert MAY_CHANGE <= names, sorted(MAY_CHANGE - names)  # a renamed or removed field listed here
    parsed = parse(["--model_name_or_path", "m", "--dataset_name", "d", "--report_to", "none"])
    recorded = set(run_settings(*parsed.instances))
    assert recorded == names - MAY_CHANGE and not recorded & MAY_CHANGE
    # before: a hand-written list that missed TRL's loss options, so a resume could change the loss
    assert {"loss_type", "loss_weights", "use_weighting", "ld_alpha", "f_divergence_type", "f_alpha_divergence_coef",
            "discopop_tau", "loss", "beta", "balance_clip", "model_name_or_path", "dataset_name", "datasets",
            "learning_rate", "max_length"} <= recorded
    assert not {"hub_token", "output_dir", "logging_steps", "save_steps"} & recorded


def test_a_resume_that_changes_the_loss_type_or_lost_its_record_refuses(world, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    config = _config(world, out)
    _stopped_at_step_3(tmp_path, config, monkeypatch)
    capsys.readouterr()
    with pytest.raises(SystemExit):  # before: "resuming from checkpoint-2", steps 3 on trained with hinge
        _run(tmp_path, config, "--loss_type", "hinge")
    assert "other settings (loss_type: ['sigmoid'] -> ['hinge'])" in capsys.readouterr().err
    (out / RECORD).unlink()  # the checkpoint keeps the settings it was trained with
    with pytest.raises(SystemExit):  # before: resumed with beta 0.5, mixing two runs
        _run(tmp_path, config, "--beta", "0.5")
    assert "other settings (beta: 0.1 -> 0.5)" in capsys.readouterr().err
    state_path = out / "checkpoint-2" / "trainer_state.json"
    state = json.loads(state_path.read_text())
    assert state["stateful_callbacks"]["RunSettingsCallback"]["args"]["settings"]["beta"] == 0.1
    del state["stateful_callbacks"]["RunSettingsCallback"]  # a checkpoint that says nothing (stock TRL's) ...
    state_path.write_text(json.dumps(state))
    (out / "checkpoint-2" / "checksums.json").unlink()  # ... and keeps no manifest of its files
    with pytest.raises(SystemExit):
        _run(tmp_path, config, "--beta", "0.5")
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "holds checkpoint-2 but no record of the settings it was trained with" in err
    assert f"resume_from_checkpoint: {out / 'checkpoint-2'}" in err
    assert _run(tmp_path, config, "--resume_from_checkpoint", str(out / "checkpoint-2")) == 0  # asked for by name
    assert _steps(out) == [1, 2, 3]


@pytest.mark.parametrize("spelling", ["yaml", "command line"])
def test_resume_from_checkpoint_true_means_the_last_checkpoint(world, tmp_path, monkeypatch, capsys, spelling):
    out = tmp_path / "out"
    config = _config(world, out)
    extra = ("--resume_from_checkpoint", "true") if spelling == "command line" else ()
    asked = config if extra else {**config, "resume_from_checkpoint": True}
    with pytest.raises(SystemExit):  # nothing to resume from
        _run(tmp_path, asked, *extra)
    assert "resume_from_checkpoint=True, but output_dir=" in capsys.readouterr().err
    _stopped_at_step_3(tmp_path, config, monkeypatch)
    capsys.readouterr()
    # before: TypeError (expected str, not bool) from the YAML; "resuming from true" and no such checkpoint
    assert _run(tmp_path, asked, *extra) == 0
    assert f"resuming from {out / 'checkpoint-2'}" in capsys.readouterr().out
    assert _steps(out) == [1, 2, 3]
    assert _run(tmp_path, asked, *extra) == 0  # finished: stays finished
    assert "holds a finished run (3 steps); nothing to train" in capsys.readouterr().out


def test_output_dir_null_max_steps_zero_and_fp16_on_cpu_are_refused(world, tmp_path, capsys):
    for overrides, message in [
        ({"output_dir": None}, "output_dir=None in .*run.yaml: expected a directory"),
        ({"max_steps": 0}, "max_steps=0 trains no step"),
        ({"max_steps": -1, "num_train_epochs": 0}, r"num_train_epochs=0(\.0)? trains no step \(max_steps=-1"),
        ({"fp16": True}, "fp16=True needs a GPU"),
    ]:
        with pytest.raises(SystemExit):
            _run(tmp_path, {**_config(world, tmp_path / "out"), **overrides})
        import re

        assert re.search(message, capsys.readouterr().err), overrides
    assert not (tmp_path / "trainer_output").exists()


# ----------------------------------------------------------------------------- two runs, one directory

SLOW = """
import time
from transformers import TrainerCallback

class Slow(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 2:
            time.sleep(120)
"""


def test_a_second_run_into_a_used_directory_is_refused_and_a_dead_runs_lock_taken_over(world, tmp_path, capsys):
    out = tmp_path / "out"
    (tmp_path / "slow.py").write_text(SLOW)
    config = _config(world, out, callbacks=["slow:Slow"])
    path = _write(tmp_path / "first.yaml", config)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    first = subprocess.Popen([sys.executable, "-m", "adadpo", "train", "--config", str(path)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (out / "metrics.jsonl").exists() and time.time() < deadline:  # training: step 1 is logged
            time.sleep(0.2)
        assert (out / LOCK).read_text().split()[0] == str(first.pid)
        with pytest.raises(SystemExit):  # before: both trained into it, interleaving metrics rows
            _run(tmp_path, _config(world, out))
        assert f"output_dir='{out}' is in use by pid {first.pid}" in capsys.readouterr().err
    finally:
        first.kill()
        first.wait()
    assert _run(tmp_path, _config(world, out)) == 0  # the dead run's lock is taken over, its run resumed
    assert f"taking over the lock of {out} left by pid {first.pid}" in capsys.readouterr().out
    assert _steps(out) == [1, 2, 3] and not (out / LOCK).exists()


def test_an_output_dir_that_cannot_be_written_is_one_line(world, tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(SystemExit):
        _run(tmp_path, _config(world, tmp_path / "a_file" / "out"))
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"adadpo train: error: output_dir='{tmp_path / 'a_file' / 'out'}' cannot be created or written (Not a "
        f"directory: {tmp_path / 'a_file' / 'out'})")
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(SystemExit):
            _run(tmp_path, _config(world, locked / "out"))
        assert f"output_dir='{locked / 'out'}' is not writable (Permission denied" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ checkpoints


def test_rotation_is_atomic_and_an_incomplete_checkpoint_is_refused(world, tmp_path, monkeypatch, capsys):
    from transformers.trainer_utils import get_last_checkpoint

    from adadpo.trl import checkpoints

    out = tmp_path / "out"
    real_rmtree = checkpoints.shutil.rmtree

    def killed_half_way(path, *args, **kwargs):  # a kill while rotation deletes checkpoint-2
        if os.path.basename(path) == ".deleting-checkpoint-2" and os.path.exists(path):
            os.remove(os.path.join(path, "optimizer.pt"))
            raise KeyboardInterrupt
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(checkpoints.shutil, "rmtree", killed_half_way)
    config = _config(world, out, max_steps=6, save_total_limit=1)
    with pytest.raises(SystemExit):
        _run(tmp_path, config)
    monkeypatch.undo()
    assert _checkpoints(out) == ["checkpoint-4"]  # before: a checkpoint-2 without optimizer.pt stayed
    assert get_last_checkpoint(str(out)).endswith("checkpoint-4")
    # a checkpoint missing its optimizer (deleted by hand, a copy cut short) is not resumed with a fresh one
    (out / "checkpoint-4" / "optimizer.pt").unlink()
    capsys.readouterr()
    with pytest.raises(SystemExit):
        _run(tmp_path, config)
    assert f"checkpoint {out / 'checkpoint-4'} is incomplete: no optimizer.pt" in capsys.readouterr().err


def test_a_full_disk_while_logging_is_one_line(world, tmp_path, monkeypatch, capsys):
    import errno

    from adadpo.trl import callbacks

    real_write = os.write

    def full(fd, data):
        if b'"step": 2' in data:
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out" / "metrics.jsonl"))
        return real_write(fd, data)

    monkeypatch.setattr(callbacks.os, "write", full)
    with pytest.raises(SystemExit) as info:
        _run(tmp_path, _config(world, tmp_path / "out"))
    assert info.value.code == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"adadpo train: error: No space left on device: {tmp_path / 'out' / 'metrics.jsonl'}. Free some space, then "
        "run the same command again: training resumes from the last complete checkpoint")


FREEZE = """
import os, signal
from transformers import TrainerCallback

class FreezeRankOne(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 2 and int(os.environ.get("RANK", "0")) == 1:
            with open(os.environ["FROZEN_PID_FILE"], "w") as f:
                f.write(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGSTOP)
"""


@pytest.mark.slow
def test_a_frozen_process_does_not_hang_the_others(world, tmp_path):
    import re

    (tmp_path / "freeze.py").write_text(FREEZE)
    config = _config(world, tmp_path / "out", per_device_train_batch_size=2, ddp_timeout=5,
                     callbacks=["freeze:FreezeRankOne"])
    path = _write(tmp_path / "run.yaml", config)
    pid_file, log = tmp_path / "frozen.pid", tmp_path / "stderr.txt"
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "FROZEN_PID_FILE": str(pid_file)}
    env.pop("WORLD_SIZE", None)
    expected = re.compile(r"adadpo train: error: process 0: (not every process reached the save of checkpoint-2 "
                          r"within ddp_timeout=5 s|another process stopped answering for ddp_timeout=5 s at step 2)")
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                                 "2", "-m", "adadpo", "train", "--config", str(path)], env=env,
                                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    try:
        deadline = time.time() + 180  # before: rank 0 waited 30 minutes (transformers gives gloo no ddp_timeout)
        while not expected.search(log.read_text()) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.5)
        assert expected.search(log.read_text()), log.read_text()[-3000:]
        os.kill(int(pid_file.read_text()), signal.SIGCONT)  # let torchrun's SIGTERM end it (no 30 s grace)
        assert proc.wait(timeout=60) != 0
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


@pytest.mark.parametrize(("loss", "balance", "name", "arxiv"), [
    ("dpo", True, "AdaDPO", "2605.28440"), ("simpo", True, "AdaDPO (SimPO)", "2605.28440"),
    ("dpo", False, "DPO", "2305.18290"), ("orpo", False, "ORPO", "2403.07691"),
])
def test_the_model_card_cites_the_method_and_names_local_paths(world, tmp_path, loss, balance, name, arxiv):
    out = tmp_path / "out"
    assert _run(tmp_path, _config(world, out, loss=loss, balance=balance, max_steps=1, save_steps=5)) == 0
    card = (out / "README.md").read_text()
    assert f"This model was trained with {name}, a method introduced in [" in card
    assert f"(https://huggingface.co/papers/{arxiv})" in card and f"eprint        = {{{arxiv}}}" in card or (
        "rafailov2023direct" in card and not balance)
    assert "2305.18290" not in card or not balance  # before: AdaDPO was "introduced in" the DPO paper
    if balance:  # what the arXiv id says (May 2026), no invented title or authors
        assert "    year          = {2026},\n    month         = {may}," in card and "    author" not in card
        assert "note          = {authors and title: see the arXiv record 2605.28440}" in card
        assert "title         = {AdaDPO}" not in card
    assert "[None]" not in card and f"fine-tuned version of `{world / 'model'}` (a local model)" in card
    assert "huggingface.co/datasets/" not in card and f"`{world / 'data'}` (local data)" in card
    assert "| mixed precision (as run) | none (float32) |" in card
    # the card's blanks, filled from the run: a quick start that loads it, no licence placeholder, the procedure
    assert f'pipeline("text-generation", model="{out}"' in card and 'model="None"' not in card
    assert "licence: license" not in card
    procedure = card.split("## Training procedure\n", 1)[1].split("\n## ", 1)[0]
    balanced = "balanced (AdaDPO): level token, clip kappa 10" if balance else "plain (no balance)"
    assert f"- loss: {loss}, beta 0.1, {balanced}" in procedure
    assert "- 1 optimizer step of 4 pairs (4 per device x 1 accumulation x 1 process)" in procedure
    assert "- learning rate 0.001 (linear schedule), max_length" in procedure
    assert "- last training log (step 1): loss " in procedure


@pytest.mark.parametrize(("options", "name", "arxiv"), [
    ({"loss_type": ["hinge"]}, "DPO (hinge)", "2305.18290"),
    ({"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, 0.5]}, "DPO (sigmoid+sft)", "2305.18290"),
    ({"loss_type": ["hinge"], "balance": True}, "AdaDPO (hinge)", "2605.28440"),
    ({"loss": "ipo", "balance": True}, "AdaDPO (IPO)", "2605.28440"),
])
def test_the_model_card_names_trl_loss_types(tmp_path, options, name, arxiv):
    """TRL's loss_types have no paper of their own in the card: stock TRL cites DPO; balanced, AdaDPO."""
    from adadpo.trl import AdaDPOConfig
    from adadpo.trl.modelcard import method_paper

    spec = AdaDPOConfig(output_dir=str(tmp_path), report_to=[], **options).loss_spec()
    got_name, paper = method_paper(spec, dpo_citation="@inproceedings{rafailov2023direct}")
    assert (got_name, paper["id"]) == (name, arxiv)
    assert (paper["citation"] == "@inproceedings{rafailov2023direct}") == (arxiv == "2305.18290")


def test_a_lock_whose_pid_was_reused_is_taken_over(tmp_path, capsys):
    import socket

    from adadpo.trl.dirlock import DirLock, _start_time

    lock = tmp_path / LOCK
    lock.write_text(f"{os.getpid()} {socket.gethostname()} {_start_time(os.getpid())}\n")  # alive, the same process
    with pytest.raises(ValueError, match=r"is in use by pid \d+ .*if pid \d+ is not an adadpo run \(a reused pid\), "
                                         "delete the lock file"):
        DirLock(str(tmp_path)).__enter__()
    if _start_time(os.getpid()):  # where the system says when a process started (Linux)
        lock.write_text(f"{os.getpid()} {socket.gethostname()} 1\n")  # this pid, started at another time
        with DirLock(str(tmp_path)):  # before: "in use by pid N", with no way out but deleting the file
            assert lock.read_text().split()[0] == str(os.getpid())
        assert "which is now another process" in capsys.readouterr().out and not lock.exists()


def test_a_lock_that_cannot_be_removed_does_not_hide_the_error(tmp_path, monkeypatch):
    import errno

    from adadpo.trl import dirlock

    def read_only(path):
        raise OSError(errno.EROFS, "Read-only file system", path)

    with pytest.raises(OSError, match="the write that failed"):  # before: the lock's removal error replaced it
        with dirlock.DirLock(str(tmp_path)):
            monkeypatch.setattr(dirlock.os, "remove", read_only)
            raise OSError(errno.EROFS, "the write that failed", str(tmp_path / "metrics.jsonl"))
