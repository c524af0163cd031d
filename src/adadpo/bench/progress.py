"""Progress bars for the benchmark's stages (world building, training runs), one ``tqdm`` bar per stage."""

from __future__ import annotations

from tqdm.auto import tqdm


class StageProgress:
    """Callable ``(stage, done, total)``: opens a bar when a stage starts, closes it when it completes."""

    def __init__(self, disable: bool = False) -> None:
        self.disable = disable
        self._bars: dict[str, tqdm] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        bar = self._bars.get(stage)
        if bar is None:  # starts at ``done`` (a resumed sweep shows its finished runs, not 0, until the next one)
            bar = self._bars[stage] = tqdm(total=total, initial=done, desc=stage, disable=self.disable,
                                           dynamic_ncols=True)
        bar.total = total
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
