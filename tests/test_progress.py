"""The benchmark's progress bars: a resumed stage shows what is already done from its first line."""

from __future__ import annotations

from adadpo.bench.progress import StageProgress


def test_a_resumed_stage_starts_at_its_finished_count(capsys):
    progress = StageProgress()
    progress("training runs", 7, 57)  # a sweep resumed with 7 of its 57 runs in results.jsonl
    first = capsys.readouterr().err
    assert "7/57" in first and "0/57" not in first
    progress("training runs", 8, 57)
    progress("training runs", 57, 57)  # the last one closes the bar at its total
    assert "57/57" in capsys.readouterr().err
    progress.close()


def test_a_disabled_progress_prints_nothing(capsys):
    progress = StageProgress(disable=True)
    progress("world", 1, 3)
    progress("world", 3, 3)
    assert capsys.readouterr().err == ""
