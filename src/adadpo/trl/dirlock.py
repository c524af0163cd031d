"""``DirLock``: one process at a time writes into a directory (an ``adadpo train`` output_dir, a sweep's).

``<directory>/.adadpo.lock`` holds ``"<pid> <host> <start>"`` of the holder (``start``: the process's start
time where the system tells it, Linux's ``/proc``). Taking the lock while a live process holds it fails
naming that pid; a lock left by a process that is gone, or whose pid now belongs to another process (a pid
reused after a reboot or a long time: its start time differs), is taken over.
"""

from __future__ import annotations

import os
import socket
from typing import Any

LOCK = ".adadpo.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _start_time(pid: int) -> str:
    """The start time of process ``pid`` (clock ticks since boot, from ``/proc``), or ``""`` where unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            return f.read().rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return ""


class DirLock:
    """``<directory>/.adadpo.lock`` held while this process writes into ``directory`` (a context manager);
    ``key`` names the setting that chose the directory in messages (``output_dir``, ``--output-dir``).

    Raises ``ValueError`` if a live process holds it; a lock of a gone process on this host is taken over.
    """

    def __init__(self, directory: str, key: str = "output_dir") -> None:
        self.path = os.path.join(directory, LOCK)
        self.key = key
        self.held = False

    def __enter__(self) -> DirLock:
        me = f"{os.getpid()} {socket.gethostname()} {_start_time(os.getpid())}".strip() + "\n"
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._take_over_if_stale()
                continue
            with os.fdopen(fd, "w") as f:
                f.write(me)
            self.held = True
            return self
        raise ValueError(f"could not lock {self.path}: another run keeps taking it")

    def _take_over_if_stale(self) -> None:
        try:
            with open(self.path, encoding="utf-8") as f:
                pid_text, host, start = (f.read().split() + ["", "", ""])[:3]
        except FileNotFoundError:
            return  # released meanwhile
        directory = os.path.dirname(self.path)
        pid = int(pid_text) if pid_text.isdigit() else -1
        if host and host != socket.gethostname():
            raise ValueError(f"{self.key}={directory!r} is in use by pid {pid} on host {host} (lock file {self.path}); "
                             "wait for that run, or delete the lock file if it is gone")
        reused = bool(start) and _start_time(pid) not in ("", start)
        if pid > 0 and _alive(pid) and not reused:
            raise ValueError(f"{self.key}={directory!r} is in use by pid {pid} (lock file {self.path}); wait for that "
                             f"run to end or choose another {self.key}; if pid {pid} is not an adadpo run (a reused "
                             "pid), delete the lock file")
        why = "now another process" if pid > 0 and _alive(pid) else "no longer running"
        print(f"adadpo: taking over the lock of {directory} left by pid {pid}, which is {why}")
        stale = f"{self.path}.stale-{os.getpid()}"
        try:
            os.rename(self.path, stale)  # atomic: of two processes taking over, one wins
        except FileNotFoundError:
            return
        os.remove(stale)

    def __exit__(self, *exc: Any) -> None:
        if self.held:
            try:
                os.remove(self.path)
            except OSError:  # gone, or the filesystem turned read-only: the next run takes a dead pid's lock over
                pass
            self.held = False
