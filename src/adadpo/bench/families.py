"""Several grids side by side, each measured against the untrained model: one row per loss family.

Each grid is the output directory of an ``adadpo sweep`` with ``untrained: true`` and one plain-vs-balanced
comparison (``summary.json`` with ``vs_untrained`` and ``comparisons``). Per family it reads

- ``ΔTQ`` of each form, pooled over all its runs: ``TQ(run) - TQ(untrained, same seed)`` with a 95% t-interval;
- ``balanced - plain`` on TQ and LC, paired on cell and seed, with a 95% t-interval;
- in how many cells the balanced form is ahead on TQ by the mean, and the seed-separated win/tie/loss counts;
- ``Δ words`` of each form, and the plain form's best cell (its gate: ΔTQ interval above 0 and held-out reward
  accuracy on truly-better pairs above 0.6).

``python -m adadpo.bench.families OUT_DIR GRID_DIR...`` writes ``OUT_DIR/families.md`` (the table) and
``OUT_DIR/families.png`` (the same numbers as a forest plot).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adadpo.plotting import figure, save


@dataclass(frozen=True)
class Family:
    """One grid's plain method, its balanced form and the grid's ``summary.json``."""

    grid: str
    plain: str
    balanced: str
    summary: dict[str, Any]

    def pooled(self, method: str, metric: str) -> dict[str, float]:
        """``{"mean", "lo", "hi", "n"}`` of ``metric(run) - metric(untrained, same seed)`` over ``method``'s runs."""
        return self.summary["vs_untrained"]["pooled"][method][metric]

    def diff(self, metric: str) -> dict[str, Any]:
        """The summary's ``balanced - plain`` comparison on ``metric`` (paired on cell and seed)."""
        return next(c for c in self.summary["comparisons"]
                    if (c["base"], c["cand"], c["metric"]) == (self.plain, self.balanced, metric))


def load(result_dirs: Sequence[str | Path]) -> list[Family]:
    """The families of ``result_dirs``, in the given order; a clear error for a directory that is not a finished
    plain-vs-balanced grid measured against the untrained model."""
    families = []
    for d in result_dirs:
        path = Path(d) / "summary.json"
        if not path.is_file():
            raise ValueError(f"{d}: no summary.json (expected the output directory of a finished `adadpo sweep`)")
        s = json.loads(path.read_text())
        if "vs_untrained" not in s:
            raise ValueError(f"{d}: summary.json has no 'vs_untrained' section (expected a sweep run with "
                             "`untrained: true`, so that every method is paired with the untrained model)")
        pairs = list(dict.fromkeys((c["base"], c["cand"]) for c in s["comparisons"]))
        if len(pairs) != 1:
            raise ValueError(f"{d}: expected exactly one plain-vs-balanced comparison, found {len(pairs)}: {pairs}")
        families.append(Family(Path(d).name, *pairs[0], s))
    return families


def _interval(mean: float | None, lo: float | None, hi: float | None) -> str:
    """``+m [+lo, +hi]``; a bound that summary.json holds as null (one run: no interval) gives the mean alone."""
    if mean is None:
        return "n/a"
    if lo is None or hi is None:
        return f"{mean:+.3f} (no interval: one run)"
    return f"{mean:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def _ci(iv: dict[str, float]) -> str:
    return _interval(iv["mean"], iv["lo"], iv["hi"])


def _diff_ci(c: dict[str, Any]) -> str:
    return _interval(c["pooled_diff"], c["pooled_lo"], c["pooled_hi"])


def _gate(f: Family) -> str:
    g = f.summary["vs_untrained"]["gates"].get(f.plain)
    if g is None:
        return "n/a"
    verdict = "passes" if g["passed"] else "does not pass"
    return f"{g['label']}: {_interval(g['d_tq'], g['lo'], g['hi'])}, acc {g['reward_accuracy']:.3f} ({verdict})"


def families_table(result_dirs: Sequence[str | Path]) -> str:
    """The Markdown table: one row per grid (see the module docstring for the columns)."""
    return _table(load(result_dirs))


def _table(families: list[Family]) -> str:
    lines = ["| grid | plain / balanced | runs each | ΔTQ plain | ΔTQ balanced | balanced - plain, TQ "
             "| balanced - plain, LC | balanced ahead on TQ (cells; W/T/L) | Δ words plain / balanced "
             "| plain's best cell: ΔTQ, reward acc (gate) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for f in families:
        tq = f.diff("tq")
        ahead = round(tq["share_higher"] * tq["cells"])
        lines.append(
            f"| {f.grid} | {f.plain} / {f.balanced} | {f.pooled(f.plain, 'tq')['n']} "
            f"| {_ci(f.pooled(f.plain, 'tq'))} | {_ci(f.pooled(f.balanced, 'tq'))} | {_diff_ci(tq)} "
            f"| {_diff_ci(f.diff('lc'))} | {ahead} of {tq['cells']} ({tq['wins']}/{tq['ties']}/{tq['losses']}) "
            f"| {_words(f.pooled(f.plain, 'length')['mean'])} / {_words(f.pooled(f.balanced, 'length')['mean'])} "
            f"| {_gate(f)} |")
    return "\n".join(lines)


def _words(x: float) -> str:
    text = f"{x:+.1f}"
    return "+0.0" if text == "-0.0" else text


def _err(mean: float, lo: float | None, hi: float | None) -> list[list[float]]:
    """Error-bar lengths below and above ``mean``; none for a bound that summary.json holds as null (one run)."""
    missing = lo is None or hi is None
    return [[0.0 if missing else mean - lo], [0.0 if missing else hi - mean]]


def plot_families(result_dirs: Sequence[str | Path], path: str | Path) -> str:
    """Forest plot: per family, each form's pooled ΔTQ over the untrained model (left) and balanced - plain on TQ
    and LC (right), with 95% intervals; returns the caption."""
    return _plot(load(result_dirs), path)


def _plot(families: list[Family], path: str | Path) -> str:
    fig, (left, right) = figure(1, 2, figsize=(9.0, 0.55 * len(families) + 1.8), sharey=True)
    ys = range(len(families))
    for y, f in zip(ys, families):
        for dy, method, style, label in ((-0.15, f.plain, "o", "plain form"), (0.15, f.balanced, "s", "balanced form")):
            iv = f.pooled(method, "tq")
            left.errorbar(iv["mean"], y + dy, xerr=_err(iv["mean"], iv["lo"], iv["hi"]), fmt=style, capsize=3,
                          color="tab:blue" if style == "o" else "tab:orange", label=label if y == 0 else None)
        for dy, metric, style, color in ((-0.15, "tq", "D", "tab:green"), (0.15, "lc", "^", "tab:purple")):
            c = f.diff(metric)
            right.errorbar(c["pooled_diff"], y + dy, xerr=_err(c["pooled_diff"], c["pooled_lo"], c["pooled_hi"]),
                           fmt=style, capsize=3, color=color,
                           label=f"balanced - plain, {metric.upper()}" if y == 0 else None)
    for ax in (left, right):
        ax.axvline(0.0, color="grey", lw=0.8, ls="--")
        ax.grid(axis="x", alpha=0.3)
    left.set_yticks(list(ys), [f"{f.plain} / {f.balanced}" for f in families])
    left.invert_yaxis()
    left.set_xlabel("ΔTQ over the untrained model (same evaluation seed)")
    right.set_xlabel("balanced - plain (paired on cell and seed)")
    handles = [h for ax in (left, right) for h in ax.get_legend_handles_labels()[0]]
    labels = [lab for ax in (left, right) for lab in ax.get_legend_handles_labels()[1]]
    fig.legend(handles, labels, loc="outside lower center", ncols=4, fontsize=8)
    caption = "Each family against the untrained model and balanced against plain: mean over all runs, 95% t-intervals"
    fig.suptitle(caption, fontsize=10)
    save(fig, path)
    return caption


def write(output_dir: str | Path, result_dirs: Sequence[str | Path]) -> Path:
    """``families.md`` (the table, and the figure below it) and ``families.png`` in ``output_dir``."""
    out = Path(output_dir)
    families = load(result_dirs)  # each summary.json read once, for the table and the figure
    caption = _plot(families, out / "families.png")
    text = (f"{_table(families)}\n\nGenerated by `python -m adadpo.bench.families` from each grid's "
            f"summary.json.\n\n![{caption}](families.png)\n")
    path = out / "families.md"
    path.write_text(text)
    return path


__all__ = ["Family", "families_table", "load", "plot_families", "write"]


if __name__ == "__main__":  # python -m adadpo.bench.families OUT_DIR GRID_DIR...
    import sys

    if len(sys.argv) < 3:
        sys.exit("usage: python -m adadpo.bench.families OUT_DIR GRID_DIR [GRID_DIR ...]")
    try:
        print(write(sys.argv[1], sys.argv[2:]))
    except ValueError as err:
        sys.exit(f"python -m adadpo.bench.families: error: {err}")
