"""Directories built once and shared: the benchmark worlds' cache."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

#: A temporary build directory without a live owner and older than this is a killed build's: removed.
STALE_SECONDS = 24 * 3600


def default_cache_dir() -> Path:
    """``$ADADPO_CACHE``, else ``~/.cache/adadpo``."""
    return Path(os.environ.get("ADADPO_CACHE", Path.home() / ".cache" / "adadpo"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_builds(path: Path) -> list[Path]:
    """Remove the temporary siblings ``.<name>-<pid>-*`` of ``path`` whose building process is gone (a build
    killed with SIGKILL cannot clean up after itself), and pid-less ones older than :data:`STALE_SECONDS`."""
    removed = []
    for tmp in path.parent.glob(f".{path.name}-*"):
        owner = tmp.name[len(path.name) + 2:].split("-", 1)[0]
        if owner.isdigit():
            stale = not _alive(int(owner))
        else:
            stale = time.time() - tmp.stat().st_mtime > STALE_SECONDS
        if stale and tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    return removed


def build_once(path: Path, marker: str, build: Callable[[Path], None]) -> Path:
    """Make sure ``path`` holds a finished build (``path / marker`` exists), running ``build(tmp)`` if not.

    The build writes into a temporary sibling directory ``.<name>-<pid>-*`` that is renamed to ``path`` only
    when ``build`` returns, so a killed or failed build leaves nothing that looks finished (its temporary
    directory is removed on failure, and by the next build when the process was killed), and two processes
    building the same ``path`` at once keep whichever finished first.
    """
    if (path / marker).exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_builds(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-{os.getpid()}-", dir=path.parent))
    try:
        build(tmp)
        try:
            os.rename(tmp, path)
        except OSError:  # built concurrently by another process: keep theirs
            if not (path / marker).exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


class SavedReference:
    """Mixin for a built world whose reference policy is a ``transformers`` checkpoint at ``reference_path``."""

    @property
    def reference_path(self) -> str | os.PathLike:
        raise NotImplementedError

    def load_reference(self):
        """A fresh copy of the reference policy, in eval mode (train it, or keep it as the reference)."""
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(self.reference_path).eval()

    def load_tokenizer(self):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.reference_path)
