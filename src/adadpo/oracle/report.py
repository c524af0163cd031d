"""Statistics, Markdown report and plots of a sweep's runs (rows of ``results.jsonl``).

The paper's headline statistics, per comparison ``base`` vs ``cand`` (e.g. DPO vs AdaDPO), over the grid's
cells (``beta`` x learning rate), each cell averaged over seeds:

* share of cells where ``cand`` has the higher ``LC`` (paper: 81%), and where it enlarges ``LC - WR``
  (paper: 88%); the same for ``TQ``, which only this world can measure;
* per cell, a 95% t-interval of the seed-paired difference (same seed = same data order and init);
  a cell counts as a win or a loss only when the interval excludes zero, otherwise as a tie;
* the global best ``LC``, ``WR`` and ``TQ`` per method (best cell, with its interval over seeds).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from adadpo.oracle.plotting import figure as _figure
from adadpo.oracle.plotting import legend_outside
from adadpo.oracle.plotting import save as _save

#: Metrics in the tables, with their labels.
METRICS = {
    "lc": "LC", "wr": "WR", "tq": "TQ", "lc_minus_wr": "LC-WR", "length": "length", "quality": "quality",
    "kl": "KL", "reward_accuracy": "reward acc", "reward_margin": "margin", "delta_chosen": "d logp chosen",
    "delta_rejected": "d logp rejected",
}
#: What each column means, for the reports and the demo's printed table.
DEFINITIONS = {
    "lc": "length-controlled win rate against the reference (AlpacaEval 2's GLM on the biased judge's outcomes)",
    "wr": "win rate against the reference's answers under the length-biased judge (0.5: level with the reference)",
    "tq": "win rate against the reference under the true-quality judge (no length bias): what LC tries to estimate",
    "lc_minus_wr": "LC minus WR: how much of the win rate the length control removes (more negative: more length "
                   "gaming)",
    "length": "mean answer length in words",
    "quality": "mean true quality of the answers themselves (0 to 1), not compared with the reference as TQ is",
    "kl": "KL(policy || reference) on the policy's own answers, in nats",
    "reward_accuracy": "share of held-out pairs whose chosen answer gains more log-likelihood than the rejected",
    "delta_chosen": "change of the held-out chosen answers' log-likelihood from the reference (< 0: displaced)",
    "delta_rejected": "the same for the rejected answers",
}
HEADLINE = ("lc", "lc_minus_wr", "wr", "tq")
CURVES = (("rewards/margins", "reward margin"), ("logps/chosen", "chosen log-likelihood"),
          ("balance/log_rho", "log rho (imbalance)"))


def json_ready(data: Any) -> Any:
    """``data`` with every non-finite float (an interval over one seed, say) as ``None``: strict JSON's ``null``."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: json_ready(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [json_ready(v) for v in data]
    return data


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


def summary(rows: list[dict], comparisons: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """Everything the report shows, as plain data (written to ``summary.json``)."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    out: dict[str, Any] = {"runs": len(rows), "methods": methods, "comparisons": [], "best": {}, "cells": {}}
    for base, cand in comparisons:
        for metric in HEADLINE:
            c = compare(rows, base, cand, metric)
            out["comparisons"].append({
                "base": base, "cand": cand, "metric": metric, "cells": len(c.cells), "share_higher": c.share_higher,
                "wins": c.wins, "ties": c.ties, "losses": c.losses,
                "pooled_diff": c.pooled.mean, "pooled_lo": c.pooled.lo, "pooled_hi": c.pooled.hi,
            })
    for m in methods:
        out["best"][m] = {}
        for metric in ("lc", "wr", "tq"):
            found = best_cell(rows, m, metric)
            if found:
                cell, iv = found
                out["best"][m][metric] = {"beta": cell[0], "learning_rate": cell[1], "mean": iv.mean, "lo": iv.lo,
                                          "hi": iv.hi, **({"epochs": cell[2]} if len(cell) > 2 else {})}
        per_metric = {k: by_cell(rows, m, k) for k in METRICS}
        out["cells"][m] = {
            _cell_key(cell): {k: interval(list(per_metric[k][cell].values())).mean for k in METRICS}
            for cell in per_metric["lc"]
        }
    out["tracking"] = tracking(rows)
    return out


# ------------------------------------------------------------------------------------------------ Markdown


def _cell_key(cell: Cell) -> str:
    return f"beta={cell[0]:g},lr={cell[1]:g}" + (f",epochs={cell[2]}" if len(cell) > 2 else "")


def cell_label(cell: Cell) -> str:
    return f"β={cell[0]:g}, lr={cell[1]:g}" + (f", {cell[2]} ep" if len(cell) > 2 else "")


def cell_order(cell: Cell) -> tuple:
    return cell[0], cell[1], cell[2] if len(cell) > 2 else 0


def _axes(rows: list[dict]) -> str:
    """The grid's axes: β x learning rate, and epochs where the grid varies them."""
    return "β x learning rate" + (" x epochs" if len({r.get("epochs") for r in rows}) > 1 else "")


def columns_text(keys: Sequence[str]) -> str:
    """One sentence per column in ``keys``: its label and what it measures."""
    return " ".join(f"{METRICS[k]}: {DEFINITIONS[k]}." for k in keys if k in DEFINITIONS)


def ci_text(iv: Interval, digits: int = 3) -> str:
    """``[lo, hi]`` of a 95% interval, saying so when the seeds agree to the digits printed (``[x, x]``)."""
    lo, hi = f"{iv.lo:+.{digits}f}", f"{iv.hi:+.{digits}f}"
    return f"[{lo}, {hi}]" + (f" (the seeds agree to {digits} decimals)" if lo == hi else "")


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:.0f}%"


def _kl_budget_table(rows: list[dict], methods: list[str]) -> list[str]:
    """The report's section: per method, the best TQ and LC among cells within each KL budget."""
    lines = ["## Best cell within a KL budget", "",
              "Methods that move the policy less can look worse at equal hyperparameters and better per nat of "
              "KL(policy || reference). Best seed-mean TQ and LC among cells whose seed-mean KL stays within "
              "the budget (the cell and its KL in parentheses; `-` when no cell stays within it).", "",
              "| method | " + " | ".join(f"{METRICS[k]}, KL <= {b:g}" for k in ("tq", "lc") for b in KL_BUDGETS) + " |",
              "|---|" + "---|" * (2 * len(KL_BUDGETS))]
    for m in methods:
        parts = []
        for k in ("tq", "lc"):
            for b in KL_BUDGETS:
                found = best_within_kl(rows, m, k, b)
                parts.append(f"{found[1]:.3f} ({cell_label(found[0])}; {found[2]:.2f})" if found else "-")
        lines.append(f"| {m} | " + " | ".join(parts) + " |")
    lines.append("")
    return lines


def markdown(rows: list[dict], comparisons: Sequence[tuple[str, str]], *, title: str, preamble: str = "",
             plots: Sequence[tuple[str, str]] = (), appendix: str = "", against_untrained: str = "") -> str:
    """The report: headline statistics (after ``against_untrained``, the section of
    :func:`adadpo.oracle.paired.markdown`, where there is one), best cells, per-cell table, LC vs TQ, plots,
    then ``appendix``. ``rows`` are the trained runs."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    seeds = sorted({r["seed"] for r in rows})
    cells = sorted({cell_of(r) for r in rows}, key=cell_order)
    lines = [f"# {title}", ""]
    if preamble:
        lines += [preamble.strip(), ""]
    lines += [f"{len(rows)} runs: {len(methods)} methods x {len(cells)} cells ({_axes(rows)}) x {len(seeds)} seeds "
              f"({', '.join(map(str, seeds))}). Intervals are 95% t-intervals over seeds; a cell is a win or a "
              "loss only when the seed-paired interval excludes zero.", ""]
    if against_untrained:
        lines += [against_untrained.strip(), ""]
    overview = ("lc", "wr", "tq", "lc_minus_wr", "length", "quality", "kl", "delta_chosen")
    keys = ("lc", "wr", "tq", "length", "quality", "kl", "reward_accuracy", "delta_chosen", "delta_rejected")
    lines += ["Columns. " + columns_text(dict.fromkeys(overview + keys)), ""]
    lines += ["## All methods (mean over every cell and seed)", "",
              "| method | " + " | ".join(METRICS[k] for k in overview) + " |", "|---|" + "---|" * len(overview)]
    for m in methods:
        lines.append(f"| {m} | " + " | ".join(f"{np.mean([value(r, k) for r in rows if r['method'] == m]):.3f}"
                                            for k in overview) + " |")
    lines.append("")
    for base, cand in comparisons:
        lines += [f"## {cand} vs {base}", "",
                  f"| metric | cells where {cand} is higher | seed-separated win / tie / loss | mean difference (all runs) |",
                  "|---|---|---|---|"]
        for metric in HEADLINE:
            c = compare(rows, base, cand, metric)
            label = "LC - WR (enlarged)" if metric == "lc_minus_wr" else METRICS[metric]
            lines.append(f"| {label} | {_pct(c.share_higher)} ({round(c.share_higher * len(c.cells))}/{len(c.cells)}) "
                         f"| {c.wins} / {c.ties} / {c.losses} | {c.pooled.mean:+.3f} {ci_text(c.pooled)} |")
        lines.append("")
    if len(cells) > 1:  # with one cell, the best cell (within a KL budget or not) is that cell: nothing to add
        lines += ["## Best cell per method", "", "| method | best LC | best WR | best TQ |", "|---|---|---|---|"]
        for m in methods:
            parts = []
            for metric in ("lc", "wr", "tq"):
                found = best_cell(rows, m, metric)
                parts.append(f"{found[1].fmt()} ({cell_label(found[0])})" if found else "n/a")
            lines.append(f"| {m} | " + " | ".join(parts) + " |")
        lines.append("")
        lines += _kl_budget_table(rows, methods)
    ref = rows[0]
    lines += ["## Every cell (mean ± half-width over seeds)", "",
              f"Reference policy: length {ref['ref_length']:.2f}, quality {ref['ref_quality']:.3f}. "
              "`d logp` = change of the held-out chosen/rejected log-likelihood from the reference.", "",
              "| cell | method | " + " | ".join(METRICS[k] for k in keys) + " |", "|---|---|" + "---|" * len(keys)]
    for cell in cells:
        for m in methods:
            vals = []
            for k in keys:
                per_seed = by_cell(rows, m, k).get(cell)
                vals.append(interval(list(per_seed.values())).fmt() if per_seed else "")
            lines.append(f"| {cell_label(cell)} | {m} | " + " | ".join(vals) + " |")
    lines.append("")
    t = tracking(rows)
    if t:
        lines += ["## Does LC track the truth?", "",
                  f"Over all {len(rows)} runs, Pearson correlation with TQ (the true-quality win rate): "
                  f"LC {t['r_lc_tq']:.3f}, WR {t['r_wr_tq']:.3f}; mean absolute gap to TQ: LC {t['mae_lc_tq']:.3f}, "
                  f"WR {t['mae_wr_tq']:.3f}.", ""]
    for caption, path in plots:
        lines += [f"![{caption}]({path})", ""]
    if appendix:
        lines += [appendix.strip(), ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------- plots


def _scatter_by_method(ax, rows: list[dict], x: str, y: str) -> None:
    for m in dict.fromkeys(r["method"] for r in rows):
        ax.scatter(*zip(*[(r[x], r[y]) for r in rows if r["method"] == m]), s=14, label=m, alpha=0.7)


def plot_heatmaps(rows: list[dict], base: str, cand: str, path: str | Path) -> None:
    """LC, WR, TQ over the grid: ``base``, ``cand`` and ``cand - base`` (seed means). Rows of the heatmap: β,
    or epochs where the grid varies epochs at one β (cells averaged over the axis not shown)."""
    lrs = sorted({r["learning_rate"] for r in rows})
    by_epochs = len({r["beta"] for r in rows}) == 1 and len({r.get("epochs") for r in rows}) > 1
    row_axis, row_label = (2, "epochs") if by_epochs else (0, "β")
    ys = sorted({cell_of(r)[row_axis] for r in rows})
    metrics = ("lc", "wr", "tq")
    fig, axes = _figure(len(metrics), 3, figsize=(11, 3.1 * len(metrics) + 0.4), squeeze=False)
    for i, metric in enumerate(metrics):
        grids = []
        for m in (base, cand):
            seed_means: dict[tuple, list[float]] = defaultdict(list)
            for cell, per_seed in by_cell(rows, m, metric).items():
                seed_means[(cell[row_axis], cell[1])].append(float(np.mean(list(per_seed.values()))))
            grids.append(np.array([[np.mean(seed_means[(y, lr)]) if (y, lr) in seed_means else np.nan
                                    for lr in lrs] for y in ys]))
        grids.append(grids[1] - grids[0])
        vmin, vmax = np.nanmin(grids[:2]), np.nanmax(grids[:2])
        lim = np.nanmax(np.abs(grids[2])) or 1e-3
        for j, (grid, name) in enumerate(zip(grids, (base, cand, f"{cand} - {base}"))):
            ax = axes[i, j]
            kw = {"cmap": "RdBu", "vmin": -lim, "vmax": lim} if j == 2 else {"cmap": "viridis", "vmin": vmin, "vmax": vmax}
            im = ax.imshow(grid, origin="lower", aspect="auto", **kw)
            for (bi, li), v in np.ndenumerate(grid):
                ax.text(li, bi, f"{v:+.3f}" if j == 2 else f"{v:.3f}", ha="center", va="center", fontsize=8,
                        color="black" if j == 2 else "white")
            ax.set_xticks(range(len(lrs)), [f"{x:.0e}".replace("e-0", "e-") for x in lrs])  # 3e-5, 1e-4
            ax.set_yticks(range(len(ys)), [f"{x:g}" for x in ys])
            ax.set_xlabel("learning rate")
            ax.set_ylabel(row_label)
            ax.set_title(f"{METRICS[metric]}: {name}")
            fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(f"{cand} vs {base}: mean over seeds in each cell ({row_label} x learning rate); right: the difference")
    _save(fig, path)


def _file(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


def cell_curves(rows: list[dict], method: str, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One method's training curve ``key`` per cell: ``(steps [S], seed means [C, S], every run [R, S])``, cut to
    the shortest run (S steps); ``C`` cells (β, learning rate) and ``R`` runs. Empty arrays if no run logged it."""
    runs: dict[Cell, list[list[float]]] = defaultdict(list)
    step_lists = []
    for r in rows:
        curves = r.get("curves") or {}
        if r["method"] == method and curves.get(key):
            runs[cell_of(r)].append(curves[key])
            step_lists.append(curves["step"])
    if not runs:
        return np.zeros(0), np.zeros((0, 0)), np.zeros((0, 0))
    steps = min(step_lists, key=len)
    n = min(len(steps), *(len(c) for cell in runs.values() for c in cell))
    every = [np.asarray(c[:n], dtype=float) for cell in runs.values() for c in cell]
    means = [np.nanmean([np.asarray(c[:n], dtype=float) for c in cell], 0) for cell in runs.values()]
    return np.asarray(steps[:n], dtype=float), np.array(means), np.array(every)


def plot_curves(rows: list[dict], methods: Sequence[str], path: str | Path, band: bool = True) -> str:
    """Training curves (margin, chosen log-likelihood, log rho) per method; returns what lines and bands show.

    Over several cells: the line is the median over cells of the seed-mean curve, the band (``band``) its
    interquartile range over cells, so one diverging cell neither moves the line nor widens the band to the
    whole plot. In a single cell: the line is the mean over seeds, the band min to max over seeds.
    """
    cells = {cell_of(r) for r in rows if r["method"] in methods}
    if len(cells) > 1:
        what = f"line: median over the {len(cells)} cells (β x lr) of the mean over seeds"
        what += "; band: 25th to 75th percentile over cells" if band else ""
    else:
        what = "line: mean over seeds" + ("; band: min to max over seeds" if band else "")
    fig, axes = _figure(1, len(CURVES), figsize=(4.2 * len(CURVES) + 1.6, 3.6))
    for ax, (key, label) in zip(axes, CURVES):
        for m in methods:
            steps, means, every = cell_curves(rows, m, key)
            if not len(steps):
                continue
            if len(cells) > 1:
                line, lo, hi = (np.nanpercentile(means, q, 0) for q in (50, 25, 75))
            else:
                line, lo, hi = np.nanmean(every, 0), np.nanmin(every, 0), np.nanmax(every, 0)
            (drawn,) = ax.plot(steps, line, label=m)
            if band and len(every) > 1:
                ax.fill_between(steps, lo, hi, color=drawn.get_color(), alpha=0.15, lw=0)
        ax.set_xlabel("step")
        ax.set_title(label)
    legend_outside(fig, axes[0])
    fig.suptitle(f"Training curves on the training batches ({what})", fontsize=10)
    _save(fig, path)
    return what


def plot_tracking(rows: list[dict], path: str | Path) -> None:
    """LC and WR against TQ, one point per run."""
    fig, axes = _figure(1, 2, figsize=(10, 4.2), sharey=True)
    for ax, metric in zip(axes, ("wr", "lc")):
        _scatter_by_method(ax, rows, "tq", metric)
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        ax.set_xlabel("TQ (true-quality win rate)")
        ax.set_title(f"{METRICS[metric]} vs TQ")
    axes[0].set_ylabel("judge win rate")
    legend_outside(fig, axes[0])
    lo = min(min(r["tq"], r["wr"], r["lc"]) for r in rows) - 0.02
    hi = max(max(r["tq"], r["wr"], r["lc"]) for r in rows) + 0.02
    for ax in axes:
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
    fig.suptitle(f"Judge win rates against the truth: one point per run ({len(rows)} runs); dashed: y = x",
                 fontsize=10)
    _save(fig, path)


def plot_frontier(rows: list[dict], path: str | Path) -> None:
    """TQ and LC against KL(policy || reference), one point per run: what each method buys per nat moved."""
    fig, axes = _figure(1, 2, figsize=(10, 4), sharex=True)
    for ax, metric in zip(axes, ("tq", "lc")):
        _scatter_by_method(ax, rows, "kl", metric)
        ax.set_xlabel("KL(policy || reference), nats")
        ax.set_ylabel(METRICS[metric])
        ax.set_title(f"{METRICS[metric]} vs KL")
    legend_outside(fig, axes[0])
    fig.suptitle(f"What each method buys per nat moved: one point per run ({len(rows)} runs)", fontsize=10)
    _save(fig, path)


def plot_bars(rows: list[dict], methods: Sequence[str], path: str | Path) -> str:
    """One cell's LC, WR, TQ per method, with 95% intervals over seeds (the demo's plot); returns the caption."""
    metrics = ("lc", "wr", "tq")
    fig, ax = _figure(figsize=(6.4, 4.2))
    width = 0.8 / len(methods)
    seeds = min(sum(r["method"] == m for r in rows) for m in methods)
    for i, m in enumerate(methods):
        ivs = [interval([value(r, k) for r in rows if r["method"] == m]) for k in metrics]
        err = [0 if math.isnan(iv.half) else iv.half for iv in ivs]
        ax.bar(np.arange(len(metrics)) + i * width, [iv.mean for iv in ivs], width, yerr=err, capsize=3, label=m)
    ax.axhline(0.5, color="grey", lw=0.8, ls="--", label="0.5: even with the reference")
    ax.set_xticks(np.arange(len(metrics)) + width * (len(methods) - 1) / 2, [METRICS[k] for k in metrics])
    ax.set_xlabel("metric (LC: length-controlled, WR: raw, TQ: true quality)")
    ax.set_ylabel("win rate vs reference")
    legend_outside(fig, ax, "lower center", ncols=len(methods) + 1)
    bars = "error bars: 95% t-interval of the mean over seeds" if seeds > 1 else "one seed: no error bars"
    fig.suptitle(f"Win rates per method in one cell\nbars: mean over {seeds} seed(s); {bars}", fontsize=10)
    _save(fig, path)
    return f"Win rates per method: mean over {seeds} seed(s); {bars}"


def write_report(rows: list[dict], comparisons: Sequence[tuple[str, str]], output_dir: str | Path, *, title: str,
                 preamble: str = "", order: Sequence[str] = (), appendix: str = "") -> Path:
    """Write the plots, ``summary.json`` and ``report.md`` into ``output_dir``; returns the report's path.

    ``order``: method names in the order tables and legends should list them (default: first seen).
    """
    import json

    from adadpo.oracle import paired
    from adadpo.oracle.run import UNTRAINED

    rank = {m: i for i, m in enumerate(order)}
    every = sorted(rows, key=lambda r: rank.get(r["method"], len(rank)))  # stable: keeps run order within a method
    rows = [r for r in every if r["method"] != UNTRAINED]

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    cells = {cell_of(r) for r in rows}
    plots: list[tuple[str, str]] = []
    many = len(comparisons) > 2  # an ablation: one figure of each kind, not one per comparison
    if len(cells) == 1:
        plots.append((plot_bars(rows, methods, out / "winrates.png"), "winrates.png"))
    elif not many:
        for base, cand in comparisons:
            name = _file(f"heatmaps_{base}_vs_{cand}.png")
            plot_heatmaps(rows, base, cand, out / name)
            plots.append((f"{cand} vs {base} over the grid", name))
    groups = [methods] if many or not comparisons else [[base, cand] for base, cand in comparisons]
    for group in groups:
        name = _file("curves_all.png" if many else f"curves_{'_vs_'.join(group)}.png")
        what = plot_curves(rows, group, out / name, band=not many)
        plots.append((f"training curves, {' vs '.join(group)} ({what})", name))
    if len(rows) >= 3:
        plot_tracking(rows, out / "lc_vs_tq.png")
        plots.append(("LC and WR against the true-quality win rate", "lc_vs_tq.png"))
        plot_frontier(rows, out / "frontier.png")
        plots.append(("TQ and LC against the KL from the reference", "frontier.png"))
    data = summary(rows, comparisons)
    if len(every) > len(rows):
        data["vs_untrained"] = paired.summary(every, methods)
    (out / "summary.json").write_text(json.dumps(json_ready(data), indent=2, allow_nan=False))
    path = out / "report.md"
    path.write_text(markdown(rows, comparisons, title=title, preamble=preamble, plots=plots, appendix=appendix,
                             against_untrained=paired.markdown(every, methods, list(comparisons))))
    return path


def _share(c: dict) -> str:
    return f"{_pct(c['share_higher'])} (W/T/L {c['wins']}/{c['ties']}/{c['losses']})" if c["cells"] else "n/a"


def _best(s: dict, method: str, metric: str) -> str:
    found = s["best"].get(method, {}).get(metric)
    return "n/a" if found is None else f"{found['mean']:.3f}"


def headline_table(result_dirs: Sequence[str | Path]) -> str:
    """One Markdown row per comparison over several sweeps' ``summary.json``: the paper's headline numbers.

    Per comparison: the cells, the share of cells where the candidate is higher on LC, LC - WR, TQ and WR
    (with the seed-separated win/tie/loss counts), the mean seed-paired LC and TQ differences over all runs
    with their 95% intervals, and the best cell's LC and TQ of base and candidate.
    """
    import json

    lines = ["| sweep | comparison | cells | LC higher | LC - WR enlarged | TQ higher | WR higher | mean LC diff "
             "| mean TQ diff | best LC (base / cand) | best TQ (base / cand) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for d in result_dirs:
        path = Path(d) / "summary.json"
        if not path.is_file():
            raise ValueError(f"{d}: no summary.json (expected the output directory of `adadpo sweep` or `adadpo demo`)")
        s = json.loads(path.read_text())
        by = {(c["base"], c["cand"], c["metric"]): c for c in s["comparisons"]}
        for base, cand in dict.fromkeys((b, c) for b, c, _ in by):
            share = {m: _share(by[(base, cand, m)]) for m in HEADLINE}
            lc, tq = by[(base, cand, "lc")], by[(base, cand, "tq")]
            lines.append(f"| {Path(d).name} | {cand} vs {base} | {lc['cells']} | {share['lc']} | {share['lc_minus_wr']} "
                         f"| {share['tq']} | {share['wr']} "
                         f"| {lc['pooled_diff']:+.3f} [{lc['pooled_lo']:+.3f}, {lc['pooled_hi']:+.3f}] "
                         f"| {tq['pooled_diff']:+.3f} [{tq['pooled_lo']:+.3f}, {tq['pooled_hi']:+.3f}] "
                         f"| {_best(s, base, 'lc')} / {_best(s, cand, 'lc')} | {_best(s, base, 'tq')} / {_best(s, cand, 'tq')} |")
    return "\n".join(lines)


if __name__ == "__main__":  # python -m adadpo.oracle.report DIR...: the headline table of several sweeps
    import sys

    try:
        print(headline_table(sys.argv[1:]))
    except ValueError as err:
        sys.exit(f"python -m adadpo.oracle.report: error: {err}")
