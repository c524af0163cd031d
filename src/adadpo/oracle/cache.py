"""Directories built once and shared: the benchmark worlds' cache."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def default_cache_dir() -> Path:
    """``$ADADPO_CACHE``, else ``~/.cache/adadpo``."""
    return Path(os.environ.get("ADADPO_CACHE", Path.home() / ".cache" / "adadpo"))


def build_once(path: Path, marker: str, build: Callable[[Path], None]) -> Path:
    """Make sure ``path`` holds a finished build (``path / marker`` exists), running ``build(tmp)`` if not.

    The build writes into a temporary sibling directory that is renamed to ``path`` only when ``build``
    returns, so a killed or failed build leaves nothing that looks finished (its temporary directory is
    removed on failure), and two processes building the same ``path`` at once keep whichever finished first.
    """
    if (path / marker).exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
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
