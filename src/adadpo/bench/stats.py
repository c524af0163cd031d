"""The statistics of a sweep's runs: grid cells, 95% t-intervals over seeds, seed-paired comparisons, best cells.

Rows are the lines of ``results.jsonl``; a cell is ``(beta, learning_rate)`` or, where runs record their epochs,
``(beta, learning_rate, epochs)``. Shared by the report (:mod:`adadpo.bench.report`), its figures and the paired
differences from the untrained model (:mod:`adadpo.bench.paired`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Metrics in the tables, with their labels.
METRICS = {
    "lc": "LC", "wr": "WR", "tq": "TQ", "lc_minus_wr": "LC-WR", "length": "length", "quality": "quality",
    "kl": "KL", "reward_accuracy": "reward acc", "reward_margin": "margin", "delta_chosen": "d logp chosen",
    "delta_rejected": "d logp rejected",
}

def value(row: dict[str, Any], metric: str) -> float:
    if metric == "lc_minus_wr":
        return row["lc"] - row["wr"]
    return float(row[metric])


@dataclass(frozen=True)
class Interval:
    """Mean and 95% t-interval (``lo``, ``hi``; NaN with one value)."""

    mean: float
    lo: float
    hi: float
    n: int

    @property
    def half(self) -> float:
        return (self.hi - self.lo) / 2

    def verdict(self) -> str:
        """``win`` / ``loss`` when the interval excludes 0, else ``tie`` (``n/a`` with one seed)."""
        if self.n < 2 or math.isnan(self.lo):
            return "n/a"
        return "win" if self.lo > 0 else "loss" if self.hi < 0 else "tie"

    def fmt(self, digits: int = 3) -> str:
        if self.n < 2:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.half:.{digits}f}"


def interval(values: Sequence[float]) -> Interval:
    from scipy import stats

    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    if len(x) < 2:
        return Interval(mean, math.nan, math.nan, len(x))
    half = float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return Interval(mean, mean - half, mean + half, len(x))


Cell = tuple  # (beta, learning_rate) or, in rows that record their epochs, (beta, learning_rate, epochs)


def cell_of(row: dict[str, Any]) -> Cell:
    """The grid cell a run belongs to: ``(beta, learning_rate, epochs)``, or ``(beta, learning_rate)`` for rows
    written before runs recorded their epochs."""
    epochs = row.get("epochs")
    return (row["beta"], row["learning_rate"]) if epochs is None else (row["beta"], row["learning_rate"], epochs)


def by_cell(rows: list[dict], method: str, metric: str) -> dict[Cell, dict[int, float]]:
    """``{(beta, lr, epochs): {seed: value}}`` for one method."""
    out: dict[Cell, dict[int, float]] = defaultdict(dict)
    for r in rows:
        if r["method"] == method:
            out[cell_of(r)][r["seed"]] = value(r, metric)
    return dict(out)


@dataclass(frozen=True)
class Comparison:
    base: str
    cand: str
    metric: str
    cells: dict[Cell, Interval]  # seed-paired difference cand - base per cell
    share_higher: float  # share of cells where mean(cand) > mean(base)
    wins: int
    ties: int
    losses: int
    pooled: Interval  # all seed-paired differences over all cells


def compare(rows: list[dict], base: str, cand: str, metric: str) -> Comparison:
    a, b = by_cell(rows, base, metric), by_cell(rows, cand, metric)
    cells: dict[Cell, Interval] = {}
    pooled: list[float] = []
    for cell in sorted(set(a) & set(b)):
        seeds = sorted(set(a[cell]) & set(b[cell]))
        diffs = [b[cell][s] - a[cell][s] for s in seeds]
        if diffs:
            cells[cell] = interval(diffs)
            pooled += diffs
    verdicts = [c.verdict() for c in cells.values()]
    share = float(np.mean([c.mean > 0 for c in cells.values()])) if cells else math.nan
    return Comparison(base, cand, metric, cells, share, verdicts.count("win"), verdicts.count("tie"),
                      verdicts.count("loss"), interval(pooled))


def best_cell(rows: list[dict], method: str, metric: str) -> tuple[Cell, Interval] | None:
    cells = by_cell(rows, method, metric)
    if not cells:
        return None
    scored = {c: interval(list(v.values())) for c, v in cells.items()}
    cell = max(scored, key=lambda c: scored[c].mean)
    return cell, scored[cell]


KL_BUDGETS = (0.5, 1.0, 2.0)


def best_within_kl(rows: list[dict], method: str, metric: str, budget: float) -> tuple[Cell, float, float] | None:
    """The cell with the best seed-mean ``metric`` among cells whose seed-mean KL is at most ``budget``:
    ``(cell, metric mean, KL mean)``; ``None`` if no cell stays within the budget."""
    kl, val = by_cell(rows, method, "kl"), by_cell(rows, method, metric)
    inside = [(float(np.mean(list(val[c].values()))), c) for c in kl if np.mean(list(kl[c].values())) <= budget]
    if not inside:
        return None
    best, cell = max(inside)
    return cell, best, float(np.mean(list(kl[cell].values())))


def tracking(rows: list[dict]) -> dict[str, float]:
    """How well LC and WR track TQ over all runs: Pearson r and mean absolute gap."""
    lc, wr, tq = (np.array([r[k] for r in rows], dtype=float) for k in ("lc", "wr", "tq"))
    if len(rows) < 3 or tq.std() == 0:
        return {}
    return {"r_lc_tq": float(np.corrcoef(lc, tq)[0, 1]), "r_wr_tq": float(np.corrcoef(wr, tq)[0, 1]),
            "mae_lc_tq": float(np.abs(lc - tq).mean()), "mae_wr_tq": float(np.abs(wr - tq).mean())}


def cell_label(cell: Cell) -> str:
    return f"β={cell[0]:g}, lr={cell[1]:g}" + (f", {cell[2]} ep" if len(cell) > 2 else "")


def cell_order(cell: Cell) -> tuple:
    return cell[0], cell[1], cell[2] if len(cell) > 2 else 0
