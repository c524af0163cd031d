"""build_once: the benchmark worlds' atomic cache directories."""

from __future__ import annotations

import os

import pytest

from adadpo.bench.cache import build_once, default_cache_dir


def _writer(calls: list):
    def build(tmp):
        calls.append(tmp)
        (tmp / "part").write_text("x")
        (tmp / "done.json").write_text("{}")
    return build


def test_builds_once_and_leaves_no_temporary(tmp_path):
    calls: list = []
    target = tmp_path / "cache" / "world-abc"
    assert build_once(target, "done.json", _writer(calls)) == target
    assert build_once(target, "done.json", _writer(calls)) == target
    assert len(calls) == 1 and calls[0].parent == target.parent and calls[0] != target
    assert sorted(p.name for p in target.parent.iterdir()) == ["world-abc"]
    assert (target / "part").read_text() == "x"


def test_failed_build_leaves_nothing_and_can_be_retried(tmp_path):
    target = tmp_path / "world-abc"

    def fail(tmp):
        (tmp / "done.json").write_text("{}")  # looks finished inside the temporary directory only
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        build_once(target, "done.json", fail)
    assert list(tmp_path.iterdir()) == []
    calls: list = []
    build_once(target, "done.json", _writer(calls))
    assert len(calls) == 1 and (target / "done.json").exists()


def test_concurrent_build_keeps_the_first(tmp_path):
    target = tmp_path / "world-abc"

    def racing(tmp):  # another process finishes first while this one builds
        target.mkdir()
        (target / "done.json").write_text("theirs")
        (tmp / "done.json").write_text("mine")

    build_once(target, "done.json", racing)
    assert (target / "done.json").read_text() == "theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["world-abc"]


def test_default_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ADADPO_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("ADADPO_CACHE")
    assert default_cache_dir() == type(tmp_path)(os.path.expanduser("~")) / ".cache" / "adadpo"


def test_a_killed_builds_temporary_directory_is_removed_by_the_next_build(tmp_path):
    import subprocess
    import sys
    import time

    target = tmp_path / "world-abc"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    killed = tmp_path / f".world-abc-{int(dead.stdout)}-x1y2"  # a build killed with SIGKILL (before: kept forever)
    live = tmp_path / f".world-abc-{os.getpid()}-z3"  # a build still running in this process
    legacy_old, legacy_new = tmp_path / ".world-abc-oldxyz", tmp_path / ".world-abc-newxyz"
    for d in (killed, live, legacy_old, legacy_new):
        d.mkdir()
    os.utime(legacy_old, (time.time() - 2 * 86400,) * 2)
    build_once(target, "done.json", _writer([]))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, legacy_new.name, "world-abc"])
